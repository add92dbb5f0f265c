"""Optional reporting to Dagster when the runner was started through Dagster Pipes.

The runner never depends on Dagster: `attach()` returns a no-op unless the process was launched by
a Pipes client (DAGSTER_PIPES_CONTEXT in the environment) and `dagster_pipes` is importable; it
is imported lazily, only then. When attached:

- log records of INFO and above are forwarded to the Dagster run's log, each prefixed with its
  session date (`[2024-11-26] story: 09:32 ET ENTRY ...`); the launcher's `session` extra is the
  date lines carry before the first bar (not the wall-clock date);
- the session's story (live_runner/ops/story.py: start and end, entries, exits with their reason,
  trades, risk denials, trading-state changes, commands) is told from the journal, at INFO;
- the end-of-session summary is sent as a Pipes custom message; the Dagster side turns it into
  the asset's typed metadata (trading_pipeline/live_session.py).

The Pipes channel is closed at interpreter exit, so every exit path (errors, SIGTERM/SIGINT,
normal end) closes it once.
"""

from __future__ import annotations

import atexit
import logging
import os
from typing import Any

_FORWARD_LEVEL = logging.INFO


class NoBridge:
    """Not launched by Dagster: reporting does nothing."""

    active = False
    journal_observer = None

    def report(self, summary: dict[str, Any]) -> None:
        return None

    def close(self) -> None:
        return None


class _PipesLogHandler(logging.Handler):
    def __init__(self, pipes: Any) -> None:
        super().__init__(_FORWARD_LEVEL)
        self._pipes = pipes
        from live_runner.ops.logs import ContextFilter

        self.addFilter(ContextFilter())  # fills record.session / component like the other handlers

    def emit(self, record: logging.LogRecord) -> None:
        try:
            if not self._pipes.is_closed:
                d = record.__dict__
                session = d.get("session") or "-"
                component = d.get("component") or record.name
                self._pipes.log.log(record.levelno, f"[{session}] {component}: {record.getMessage()}")
        except Exception:  # reporting must never take the trading process down
            self.handleError(record)


class PipesBridge:
    """Launched by Dagster: logs, the story and the session summary go back through Pipes."""

    active = True

    def __init__(self, pipes: Any) -> None:
        from live_runner.ops import logs
        from live_runner.ops import story

        self._pipes = pipes
        session = _extra(pipes, "session")
        if session:
            logs.set_launch_session(str(session))
        self.journal_observer = story.Story(str(session or ""))
        self._handler = _PipesLogHandler(pipes)
        logging.getLogger().addHandler(self._handler)
        if logging.getLogger("live_runner.ops.story").getEffectiveLevel() > logging.INFO:
            logging.getLogger("live_runner.ops.story").setLevel(logging.INFO)  # told even at WARNING

    def report(self, summary: dict[str, Any]) -> None:
        try:
            self._pipes.report_custom_message({"summary": summary})
        except Exception as exc:  # the summary is also on stdout; Dagster would say it is missing
            logging.getLogger("live_runner.pipes").warning("pipes report failed: %r", exc)

    def close(self) -> None:
        logging.getLogger().removeHandler(self._handler)
        try:
            self._pipes.close()
        except Exception:
            pass


def _extra(pipes: Any, name: str) -> Any:
    try:
        return pipes.extras.get(name)
    except Exception:
        return None


def attach() -> NoBridge | PipesBridge:
    """The bridge for this process: a PipesBridge under Dagster Pipes, else a NoBridge."""
    if not os.environ.get("DAGSTER_PIPES_CONTEXT"):
        return NoBridge()
    try:
        from dagster_pipes import open_dagster_pipes
    except ImportError:
        return NoBridge()
    bridge = PipesBridge(open_dagster_pipes())
    atexit.register(bridge.close)
    return bridge
