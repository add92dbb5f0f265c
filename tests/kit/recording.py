"""Recording what the chain accepted, for feed tests (no SDK imports: the legacy venv uses it)."""

from __future__ import annotations

from live_runner.core.models import Bar
from live_runner.live.node import TradingNode


def record_accepted(node: TradingNode) -> list[Bar]:
    """Every bar the DataManager accepted (its validation passed), in order, warm-up included."""
    accepted: list[Bar] = []
    data = node.data
    inner = data.on_bar

    def on_bar(bar: Bar) -> None:
        before = data.bars_processed
        inner(bar)
        if data.bars_processed > before:
            accepted.append(bar)

    data.on_bar = on_bar  # type: ignore[method-assign]
    return accepted
