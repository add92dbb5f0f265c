"""A strategy that trades only what the race driver scripts: the next bar of a symbol turns a
queued request into a buy signal with its protective stop, through the runner's real signal path."""

from __future__ import annotations

from live_runner.core.models import Bar, Side, Signal
from live_runner.strategies.base import Strategy

IMPORT_PATH = "tests.kit.race.strategy:Scripted"


class Scripted(Strategy):
    name = "race"

    def __init__(self, params: object, ctx: object) -> None:
        super().__init__(params, ctx)  # type: ignore[arg-type]
        self.queued: dict[str, tuple[float, float]] = {}

    def queue(self, symbol: str, stop_pct: float, target_r: float) -> None:
        self.queued[symbol] = (stop_pct, target_r)

    def on_bar(self, bar: Bar) -> Signal | None:
        ask = self.queued.pop(bar.symbol, None)
        if ask is None:
            return None
        stop_pct, target_r = ask
        return Signal(self.name, bar.symbol, bar.ts, Side.BUY, stop=round(bar.close * (1 - stop_pct), 2),
                      reason="race", reference_price=bar.close, target_r=target_r)
