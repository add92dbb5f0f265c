"""Structured logging for the runner: text or JSON lines, and a rotated log file per session.

Every record, whatever logger it comes from, leaves with three context fields:

- `session`: the trading session the runner is in (the node's session date, as in the journal's
  `session` column; before the first bar, the session it was launched for when the launcher
  said (Dagster Pipes), else the date the run started),
- `component`: the part of the runner that logged it (`order_manager`, `data_manager`,
  `ops_server`, ...; from the logger name unless the call passes `extra={"component": ...}`),
- `client_order_id`: the order the line is about, when there is one (`extra=` or `order_context`).

The fields are filled in by a handler filter when a record is emitted, never by the callers, so
the hot path carries no logging calls and pays nothing for this. The file is the sketch's
`trading_system_YYYYMMDD.log` (the New York date of the run, so a restart on the same day appends
to the same file; each line also names the `run`), rotated by size.
"""

from __future__ import annotations

import contextlib
import contextvars
import json
import logging
import logging.handlers
import os
import sys
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import IO, Any, Callable, Iterator
from zoneinfo import ZoneInfo

NY = ZoneInfo("America/New_York")

SESSION: contextvars.ContextVar[str] = contextvars.ContextVar("log_session", default="")
COMPONENT: contextvars.ContextVar[str] = contextvars.ContextVar("log_component", default="")
CLIENT_ORDER_ID: contextvars.ContextVar[str] = contextvars.ContextVar("log_client_order_id", default="")

# Logger name -> component (the names the health monitor and the metrics use).
COMPONENTS = {
    "live_runner.data": "data_manager",
    "live_runner.orders": "order_manager",
    "live_runner.live.node": "node",
    "live_runner.ops.alerts": "alert_system",
    "live_runner.ops.story": "story",  # not the ops server's: the session story (ops/story.py)
    "live_runner.ops": "ops_server",
    "live_runner.live.service": "service",
    "live_runner.persistence.journal": "journal",
    "live_runner.execution": "execution_engine",
    "live_runner.risk": "risk_manager",
    "live_runner.strategies": "strategy_engine",
    "live_runner.portfolio.performance": "performance_tracker",
}
CONTEXT_FIELDS = ("session", "component", "client_order_id", "run")
# Attributes every LogRecord has; anything else on a record came from `extra=` and is kept.
_STANDARD = frozenset(logging.LogRecord("", 0, "", 0, "", None, None).__dict__) | {"message", "asctime"}

_session_source: Callable[[], str] | None = None
# The session the process was started for (e.g. by Dagster), when known: the date lines carry
# before the first bar, instead of the wall-clock date.
_launch_session = ""


def set_session_source(source: Callable[[], str] | None) -> None:
    """Where `session` comes from when no context sets it (the service binds its node here)."""
    global _session_source
    _session_source = source


def set_launch_session(session: str) -> None:
    """The session this process was started to trade (YYYY-MM-DD), when the launcher says so."""
    global _launch_session
    _launch_session = session


def component_for(logger_name: str) -> str:
    name = logger_name
    while name:
        found = COMPONENTS.get(name)
        if found is not None:
            return found
        name = name.rpartition(".")[0]
    return logger_name.rpartition(".")[2] or "root"


@contextlib.contextmanager
def log_context(session: str | None = None, component: str | None = None,
                client_order_id: str | None = None) -> Iterator[None]:
    """Set context fields for the lines logged inside the block (also across awaits)."""
    tokens = []
    for var, value in ((SESSION, session), (COMPONENT, component), (CLIENT_ORDER_ID, client_order_id)):
        if value is not None:
            tokens.append((var, var.set(value)))
    try:
        yield
    finally:
        for var, token in reversed(tokens):
            var.reset(token)


def order_context(client_order_id: str) -> contextlib.AbstractContextManager[None]:
    return log_context(client_order_id=client_order_id)


class ContextFilter(logging.Filter):
    """Adds the context fields to each record passing a handler (never drops one)."""

    def __init__(self, run_id: str = "", default_session: str = "") -> None:
        super().__init__()
        self.run_id = run_id
        self.default_session = default_session

    def filter(self, record: logging.LogRecord) -> bool:
        d = record.__dict__
        if not d.get("session"):
            session = SESSION.get()
            if not session and _session_source is not None:
                try:
                    session = _session_source()
                except Exception:  # a log line must never fail because of its context
                    session = ""
            record.session = session or _launch_session or self.default_session
        if not d.get("component"):
            record.component = COMPONENT.get() or component_for(record.name)
        if not d.get("client_order_id"):
            record.client_order_id = CLIENT_ORDER_ID.get()
        if not d.get("run"):
            record.run = self.run_id
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object per line: ts (UTC), level, logger, the context fields, msg, extras, exc."""

    def format(self, record: logging.LogRecord) -> str:
        d = record.__dict__
        out: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, tz=timezone.utc).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
        }
        for key in CONTEXT_FIELDS:
            out[key] = d.get(key) or None
        out["msg"] = record.getMessage()
        for key, value in d.items():
            if key not in _STANDARD and key not in out:
                out[key] = value
        if record.exc_info:
            out["exc"] = self.formatException(record.exc_info)
        if record.stack_info:
            out["stack"] = self.formatStack(record.stack_info)
        return json.dumps(out, default=str, ensure_ascii=False)


class TextFormatter(logging.Formatter):
    """The classic line, with the context: `... LEVEL component [session] message cid=...`."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(component)s [%(session)s] %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        d = record.__dict__
        for key in ("component", "session"):
            d.setdefault(key, "")
        line = super().format(record)
        cid = d.get("client_order_id")
        if cid:
            head, sep, tail = line.partition("\n")  # keep a traceback below the first line
            line = f"{head} cid={cid}{sep}{tail}"
        return line


def make_formatter(fmt: str) -> logging.Formatter:
    if fmt == "json":
        return JsonFormatter()
    if fmt == "text":
        return TextFormatter()
    raise ValueError(f"unknown log format {fmt!r}: use text or json")


def new_run_id() -> str:
    return f"{time.strftime('%Y%m%dT%H%M%S', time.gmtime())}-{os.getpid()}"


def log_file_path(log_dir: str | Path, when: datetime | None = None) -> Path:
    """The sketch's per-session file: trading_system_YYYYMMDD.log (New York date)."""
    day = (when or datetime.now(tz=NY)).astimezone(NY)
    return Path(log_dir) / f"trading_system_{day:%Y%m%d}.log"


@dataclass
class LogSetup:
    run_id: str
    file: Path | None
    handlers: list[logging.Handler]

    def close(self) -> None:
        """Detach and close the handlers installed by `setup_logging` (tests, embedding)."""
        root = logging.getLogger()
        for h in self.handlers:
            root.removeHandler(h)
            h.close()


_installed: list[logging.Handler] = []


def setup_logging(level: str = "INFO", fmt: str = "text", log_dir: str | Path | None = None, *,
                  max_bytes: int = 50 * 1024 * 1024, backups: int = 5,
                  stream: IO[str] | None = None, run_id: str | None = None,
                  now: datetime | None = None) -> LogSetup:
    """Configure the root logger: a stream handler (stderr) and, with `log_dir`, the session file.

    Both use the same format and the same context filter. Calling it again replaces what an
    earlier call installed (not other handlers)."""
    for h in _installed:
        logging.getLogger().removeHandler(h)
        h.close()
    _installed.clear()
    run_id = run_id or new_run_id()
    started = (now or datetime.now(tz=NY)).astimezone(NY)
    context = ContextFilter(run_id=run_id, default_session=started.date().isoformat())
    formatter = make_formatter(fmt)
    handlers: list[logging.Handler] = [logging.StreamHandler(stream if stream is not None else sys.stderr)]
    path: Path | None = None
    if log_dir is not None:
        path = log_file_path(log_dir, started)
        path.parent.mkdir(parents=True, exist_ok=True)
        handlers.append(logging.handlers.RotatingFileHandler(
            path, maxBytes=max_bytes, backupCount=backups, encoding="utf-8"))
    root = logging.getLogger()
    for h in handlers:
        h.addFilter(context)
        h.setFormatter(formatter)
        root.addHandler(h)
    root.setLevel(level)
    _installed.extend(handlers)
    return LogSetup(run_id, path, handlers)


def setup_from_config(config: Any, *, with_file: bool = True, stream: IO[str] | None = None,
                      run_id: str | None = None) -> LogSetup:
    """`setup_logging` from a SystemConfig (log_level, log_format, log_dir, rotation)."""
    return setup_logging(config.log_level, config.log_format, config.log_dir if with_file else None,
                         max_bytes=config.log_file_max_bytes, backups=config.log_file_backups,
                         stream=stream, run_id=run_id)


__all__ = ["setup_logging", "setup_from_config", "LogSetup", "JsonFormatter", "TextFormatter",
           "ContextFilter", "log_context", "order_context", "set_session_source", "component_for",
           "set_launch_session",
           "log_file_path", "SESSION", "COMPONENT", "CLIENT_ORDER_ID"]
