"""How a live run ends badly: the exceptions `LiveService.run` raises, each with the run's summary
so far; the CLI maps each to its exit code (live_runner/__main__.py)."""

from __future__ import annotations

from typing import Any


class RunnerError(RuntimeError):
    """An exception escaped the feed or the chain: the run stopped in SystemState.ERROR.

    Raised by `LiveService.run` after the error was alerted (CRITICAL), journaled and the journal
    flushed; `summary` is what the run did up to it. The CLI exits non-zero on it."""

    def __init__(self, message: str, summary: dict[str, Any]) -> None:
        super().__init__(message)
        self.summary = summary


class ShutdownIncomplete(RunnerError):
    """The runner gave up waiting (shutdown_flatten_timeout_s) for its flatten or for orders
    still in flight at a broker: alerted CRITICAL and journaled; the CLI exits 5."""


class LeaseLostError(RunnerError):
    """The runner lost its account lease (live_runner/live/lease.py): it sent nothing after that,
    left the resting exits at the broker, alerted CRITICAL `lease_lost`; the CLI exits 7."""
