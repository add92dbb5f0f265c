"""Opening-range breakout: a user strategy written against the public Strategy interface.

Run it with `active_strategies: ["examples.opening_range:OpeningRangeBreakout"]` and its parameters
under `strategies: {custom: {"examples.opening_range:OpeningRangeBreakout": {minutes: 15}}}`.
"""

from __future__ import annotations

from live_runner.core.models import Bar, Side, Signal
from live_runner.strategies.base import Strategy


class OpeningRangeBreakout(Strategy):
    """Buy the first close above the first N minutes' high; stop at that range's low."""

    name = "orb"

    def on_session_start(self, session) -> None:  # type: ignore[no-untyped-def]
        minutes = int(self.params.get("minutes", 15))
        self.range_end = session.open + minutes * 60_000_000_000
        self.entry_end = self.ctx.et_ns(self.params.get("entry_end", "11:00"))
        self.open = session.open
        self.high: dict[str, float] = {}
        self.low: dict[str, float] = {}
        self.done: set[str] = set()

    def on_bar(self, bar: Bar) -> Signal | None:
        if bar.ts < self.open or bar.symbol in self.done:
            return None
        if bar.ts < self.range_end:
            self.high[bar.symbol] = max(self.high.get(bar.symbol, 0.0), bar.high)
            self.low[bar.symbol] = min(self.low.get(bar.symbol, float("inf")), bar.low)
            return None
        if bar.ts < self.entry_end and bar.symbol in self.high and bar.close > self.high[bar.symbol]:
            self.done.add(bar.symbol)
            return Signal(self.name, bar.symbol, bar.ts, Side.BUY, stop=self.low[bar.symbol],
                          reason="orb", reference_price=bar.close,
                          target_r=float(self.params.get("target_r", 2.0)))
        return None
