"""A benchmark-only strategy that makes every other bar a signal: buy when flat (bar 0 of a cycle of
four), sell when held (bar 2). Fills happen on the bars in between, so a measured bar carries the
signal's own work (sizing, risk, journal, submit), not the bookkeeping of an earlier fill."""

from __future__ import annotations

from live_runner.core.models import Bar, Side, Signal
from live_runner.strategies.base import Strategy


class PingPong(Strategy):
    name = "pingpong"

    def on_session_start(self, session) -> None:  # type: ignore[no-untyped-def]
        self._open = session.open
        self._cutoff = session.close - 10 * 60_000_000_000
        self._phase: dict[str, int] = {}

    def on_bar(self, bar: Bar) -> Signal | None:
        if not self._open <= bar.ts < self._cutoff:
            return None
        phase = self._phase.get(bar.symbol, 0)
        self._phase[bar.symbol] = (phase + 1) % 4
        if phase == 0 and self.ctx.position_qty(bar.symbol) == 0:
            return Signal(self.name, bar.symbol, bar.ts, Side.BUY, stop=round(bar.close * 0.98, 2),
                          reason="ping", reference_price=bar.close, target_r=2.0)
        if phase == 2 and self.ctx.position_qty(bar.symbol) > 0:
            return Signal(self.name, bar.symbol, bar.ts, Side.SELL, reason="exit",
                          reference_price=bar.close)
        return None
