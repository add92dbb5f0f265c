"""The public Strategy interface.

A strategy is a plain class: it gets bars and its own fills, does no I/O, and returns signals.
Everything it may read about the world comes through `StrategyContext`, so the same strategy runs
unchanged in a replay and live.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Iterable, Protocol

from live_runner.core.models import Bar, Fill, OrderRole, Signal

if TYPE_CHECKING:
    from live_runner.core.calendar import SessionTimes


@dataclass(slots=True)
class PremarketStats:
    """What the gap scan needs per symbol: previous close and the premarket's shape."""

    prev_close: float = 0.0
    pm_high: float = 0.0
    pm_volume: float = 0.0
    pm_last: float = 0.0


class StrategyContext(Protocol):
    """Read-only view of the runner a strategy may consult."""

    @property
    def session(self) -> "SessionTimes": ...

    def premarket(self, symbol: str) -> PremarketStats | None: ...

    def in_universe(self, symbol: str) -> bool: ...

    def position_qty(self, symbol: str) -> int: ...

    def et_ns(self, hhmm: str) -> int: ...


class Strategy:
    """Base class for strategies; subclass it and override the hooks you need.

    `name` identifies the strategy in client order ids, journals and metrics. `params` is the
    mapping from the config file (`strategies.custom["pkg.mod:Class"]` for user strategies).
    """

    name: str = "strategy"

    def __init__(self, params: Any, ctx: StrategyContext) -> None:
        self.params = params
        self.ctx = ctx

    def on_session_start(self, session: "SessionTimes") -> None:
        """Called before the session's first bar (premarket included)."""

    def on_bar(self, bar: Bar) -> Signal | Iterable[Signal] | None:
        """Called at each bar's close (every symbol, every phase). Return signals or None."""
        return None

    def on_fill(self, fill: Fill, role: OrderRole) -> None:
        """Called for each fill of an order this strategy caused (entries and exits)."""

    def on_signal_rejected(self, signal: Signal, reason: str) -> None:
        """Called when a signal produced no order (risk denial, sizing to zero, broker reject)."""

    def on_session_end(self, session: "SessionTimes") -> None:
        """Called after the session's last bar; positions are flat by then."""
