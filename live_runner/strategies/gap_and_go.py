"""gap_and_go: buy the first regular-session break of the premarket high by a qualified gapper."""

from __future__ import annotations

from functools import lru_cache
from typing import TYPE_CHECKING, NamedTuple

from live_runner.core.config import GapAndGoConfig
from live_runner.core.exact import MAX_PRICE, MAX_VOLUME, at_least_ratio, gap_at_least, ratio, units, volume_units
from live_runner.core.models import Bar, Fill, OrderRole, Side, Signal
from live_runner.strategies.base import PremarketStats, Strategy, StrategyContext

if TYPE_CHECKING:
    from live_runner.core.calendar import SessionTimes


class GapRule(NamedTuple):
    """gap_and_go's thresholds as exact integers (see live_runner.core.exact)."""

    gap: tuple[int, int]
    volume_min_u: int
    price_min_u: int
    price_max_u: int
    hold: tuple[int, int]


@lru_cache(maxsize=16)
def gap_rule(cfg: GapAndGoConfig) -> GapRule:
    return GapRule(ratio(cfg.gap_pct_min), volume_units(cfg.premarket_volume_min),
                   units(cfg.price_min), units(cfg.price_max), ratio(cfg.hold_ratio_min))


def qualifies(stats: PremarketStats | None, cfg: GapAndGoConfig) -> bool:
    """DESIGN.md's gap qualification at 09:30 (shared with the Dagster premarket scan), exact:
    `pm_last / prev_close - 1 >= gap_pct_min`, `pm_volume >= premarket_volume_min`,
    `price_min <= pm_last <= price_max`, `pm_last >= hold_ratio_min * pm_high` on the decimals the
    prices stand for (16.90 over 16.25 is a gap of exactly 4%)."""
    if stats is None:
        return False
    return qualifies_values(stats.prev_close, stats.pm_high, stats.pm_volume, stats.pm_last, cfg)


def qualifies_values(prev_close: float, pm_high: float, pm_volume: float, pm_last: float,
                     cfg: GapAndGoConfig) -> bool:
    """`qualifies` on plain numbers (NaN or a missing price never qualifies)."""
    if not (0 < prev_close < MAX_PRICE and 0 < pm_high < MAX_PRICE and 0 < pm_last < MAX_PRICE
            and 0 <= pm_volume < MAX_VOLUME):
        return False  # NaN compares False
    p, h, last = units(prev_close), units(pm_high), units(pm_last)
    vol = volume_units(pm_volume)
    r = gap_rule(cfg)
    return (
        p > 0 and h > 0
        and gap_at_least(last, p, r.gap)
        and vol >= r.volume_min_u
        and r.price_min_u <= last <= r.price_max_u
        and at_least_ratio(last, h, r.hold)
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
