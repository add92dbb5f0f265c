"""Warm-up: history bars (a live feed's REST seed) rebuild the strategies' state, trade nothing.

A live runner that starts after the premarket (late, or restarting after a crash) gets the day's
bars so far from the feed. Sent through the whole chain they would fire signals on minutes long
gone and send real orders at today's prices for an hour-old setup. During the
warm-up the DataManager's bars go here instead of `TradingNode._on_bar` (the hot path is not
touched): the clock and marks advance, the strategies see each bar and, on a restart, the fills
the journal recorded, at their time. Signals are never executed: one the journal shows was acted
on keeps that outcome, any other is refused with reason "warmup" (a strategy may free the setup).
No broker sees these bars; the session boundary they cross is handled by the node as usual.
"""

from __future__ import annotations

from collections import Counter, deque
from typing import TYPE_CHECKING

from live_runner.core.models import NANOS_PER_MINUTE, Bar, Side

if TYPE_CHECKING:
    from live_runner.recovery.node_parts import NodeParts as TradingNode  # recovery sits below live
    from live_runner.recovery.restore import RestorePlan


class Warmup:
    def __init__(self, node: "TradingNode", plan: "RestorePlan | None") -> None:
        self.node = node
        self.plan = plan
        self.fills = deque(plan.fills if plan is not None and plan.session_open else ())
        self.bars = 0
        self.outcomes: Counter[str] = Counter()
        self._signals_before = node.strategies.signals

    def on_bar(self, bar: Bar) -> None:
        node = self.node
        ts = bar.ts
        self.bars += 1
        node.clock.advance_to(ts + NANOS_PER_MINUTE)
        node.portfolio.mark(bar.symbol, bar.close)
        if node.session is None:
            node.strategies.on_bar(bar)  # an earlier session's bar: context (previous close) only
            return
        self.deliver_fills(ts + NANOS_PER_MINUTE)
        plan = self.plan
        for signal in node.strategies.on_bar(bar):
            if signal.side is not Side.BUY:
                self.outcomes["exit_ignored"] += 1
                continue
            key = (signal.strategy, signal.symbol, signal.ts)
            if plan is not None and key in plan.accepted:
                self.outcomes["accepted_before"] += 1
            elif plan is not None and key in plan.denied:
                self.outcomes["denied_before"] += 1
                node.strategies.on_signal_rejected(signal, "denied")
            else:
                self.outcomes["not_chased"] += 1
                node.strategies.on_signal_rejected(signal, "warmup")

    def deliver_fills(self, before_ts: int | None = None) -> None:
        """The journal's fills up to `before_ts` (all of them with None), to their strategies."""
        fills = self.fills
        on_fill = self.node.strategies.on_fill
        while fills and (before_ts is None or fills[0].fill.ts < before_ts):
            f = fills.popleft()
            on_fill(f.strategy, f.fill, f.role)

    def finish(self) -> dict[str, object]:
        """Warm-up over: the rest of the journal's fills, and the signal count as the journal has
        it (warm-up signals are the ones already counted, or not taken)."""
        self.deliver_fills()
        self.node.strategies.restore(self._signals_before)
        return {"bars": self.bars, "signals": dict(sorted(self.outcomes.items()))}


__all__ = ["Warmup"]
