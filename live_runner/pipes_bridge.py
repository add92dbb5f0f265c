"""Optional reporting to Dagster when the runner was started through Dagster Pipes.

The runner never depends on Dagster: `attach()` returns a no-op unless the process was launched by
a Pipes client (DAGSTER_PIPES_CONTEXT in the environment) and `dagster_pipes` is importable; it
is imported lazily, only then. When attached, log records of INFO and above are forwarded to the
Dagster run's log, and the end-of-session summary is sent as a Pipes custom message (and as
asset materialization metadata when the step targets an asset). The Pipes channel is closed at
interpreter exit, so every exit path (errors, SIGTERM/SIGINT, normal end) closes it once.
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

    def report(self, summary: dict[str, Any]) -> None:
        return None

    def close(self) -> None:
        return None


class _PipesLogHandler(logging.Handler):
    def __init__(self, pipes: Any) -> None:
        super().__init__(_FORWARD_LEVEL)
        self._pipes = pipes

    def emit(self, record: logging.LogRecord) -> None:
        try:
            if not self._pipes.is_closed:
                self._pipes.log.log(record.levelno, f"{record.name}: {record.getMessage()}")
        except Exception:  # reporting must never take the trading process down
            self.handleError(record)


def _metadata(summary: dict[str, Any]) -> dict[str, Any]:
    """Flat, typed metadata of the summary (Dagster shows these in the UI)."""
    keys = ("signals", "orders_submitted", "bars_processed", "bars_rejected", "elapsed_s")
    meta: dict[str, Any] = {k: summary[k] for k in keys if k in summary}
    for k in ("realized_pnl", "commissions", "final_equity"):
        if k in summary:
            meta[k] = {"raw_value": float(summary[k]), "type": "float"}
    meta["trades"] = len(summary.get("trades", []))
    return meta


class PipesBridge:
    """Launched by Dagster: logs and the session summary go back through the Pipes channel."""

    active = True

    def __init__(self, pipes: Any) -> None:
        self._pipes = pipes
        self._handler = _PipesLogHandler(pipes)
        logging.getLogger().addHandler(self._handler)

    def report(self, summary: dict[str, Any]) -> None:
        try:
            self._pipes.report_custom_message({"summary": summary})
            if self._pipes.is_asset_step:
                self._pipes.report_asset_materialization(metadata=_metadata(summary))
        except Exception as exc:  # the summary is also on stdout; Dagster would say it is missing
            logging.getLogger("live_runner.pipes").warning("pipes report failed: %r", exc)

    def close(self) -> None:
        logging.getLogger().removeHandler(self._handler)
        try:
            self._pipes.close()
        except Exception:
            pass


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
