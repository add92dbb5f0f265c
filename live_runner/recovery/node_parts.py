"""The parts of a trading node that recovery touches, as a structural type.

Restore and warm-up work on the node's components (risk, portfolio, orders, performance,
strategies, clock, session). They name them through this Protocol rather than importing
`live_runner.live.node`, so recovery stays below the live layer (no import cycle, TYPE_CHECKING
ones included); `TradingNode` satisfies it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from live_runner.core.calendar import SessionTimes
    from live_runner.core.clock import SimClock
    from live_runner.execution.order_manager import OrderManager
    from live_runner.portfolio.performance import PerformanceTracker
    from live_runner.portfolio.portfolio import Portfolio
    from live_runner.risk.manager import RiskManager
    from live_runner.strategies.engine import StrategyEngine


class NodeParts(Protocol):
    """What restore and warm-up read and restore on a running node."""

    clock: SimClock
    session: SessionTimes | None
    risk: RiskManager
    portfolio: Portfolio
    performance: PerformanceTracker
    orders: OrderManager
    strategies: StrategyEngine
