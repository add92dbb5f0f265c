"""gap_and_go: buy the first regular-session break of the premarket high by a qualified gapper."""

from __future__ import annotations

from typing import TYPE_CHECKING

from live_runner.config import GapAndGoConfig
from live_runner.models import Bar, Fill, OrderRole, Side, Signal
from live_runner.strategies.base import PremarketStats, Strategy, StrategyContext

if TYPE_CHECKING:
    from live_runner.calendar import SessionTimes


def qualifies(stats: PremarketStats | None, cfg: GapAndGoConfig) -> bool:
    """DESIGN.md's gap qualification at 09:30 (shared with the Dagster premarket scan)."""
    if stats is None or stats.prev_close <= 0 or stats.pm_high <= 0:
        return False
    return (
        stats.pm_last / stats.prev_close - 1.0 >= cfg.gap_pct_min
        and stats.pm_volume >= cfg.premarket_volume_min
        and cfg.price_min <= stats.pm_last <= cfg.price_max
        and stats.pm_last >= cfg.hold_ratio_min * stats.pm_high
    )


class GapAndGo(Strategy):
    name = "gap_and_go"

    def __init__(self, params: GapAndGoConfig, ctx: StrategyContext) -> None:
        super().__init__(params, ctx)
        self._open = 0
        self._entry_end = 0
        self._target_r = params.target_r
        # symbol -> pm_high for qualified symbols still waiting for their break; None = decided.
        self._watch: dict[str, float | None] = {}

    def on_session_start(self, session: "SessionTimes") -> None:
        self._open = session.open
        self._entry_end = self.ctx.et_ns(self.params.entry_end)
        self._watch = {}

    def on_bar(self, bar: Bar) -> Signal | None:
        ts = bar.ts
        if ts < self._open or ts >= self._entry_end:
            return None
        watch = self._watch
        sym = bar.symbol
        if sym in watch:
            pm_high = watch[sym]
            if pm_high is None:
                return None
        else:
            stats = self.ctx.premarket(sym)
            if not qualifies(stats, self.params) or not self.ctx.in_universe(sym):
                watch[sym] = None
                return None
            pm_high = stats.pm_high  # type: ignore[union-attr]
            watch[sym] = pm_high
        if bar.close > pm_high:
            watch[sym] = None  # one entry per symbol per session
            return Signal(self.name, sym, ts, Side.BUY, stop=bar.low, reason="pm_high_break",
                          reference_price=bar.close, target_r=self._target_r)
        return None

    def on_fill(self, fill: Fill, role: OrderRole) -> None:
        return None
