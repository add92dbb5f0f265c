"""The OrderManager's vocabulary: order transitions, strategy codes in client ids, exit reasons,
and the open round trip (also rebuilt by a live restart, `live_runner.restore`)."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

from live_runner.models import OrderRole, OrderStatus
from live_runner.money import ZERO

# Allowed transitions; fills drive PARTIALLY_FILLED/FILLED themselves.
TRANSITIONS: dict[OrderStatus, frozenset[OrderStatus]] = {
    OrderStatus.NEW: frozenset({OrderStatus.SUBMITTED, OrderStatus.REJECTED}),
    OrderStatus.SUBMITTED: frozenset({OrderStatus.ACCEPTED, OrderStatus.REJECTED, OrderStatus.CANCELED,
                                      OrderStatus.PARTIALLY_FILLED, OrderStatus.FILLED, OrderStatus.EXPIRED}),
    OrderStatus.ACCEPTED: frozenset({OrderStatus.PARTIALLY_FILLED, OrderStatus.FILLED, OrderStatus.CANCELED,
                                     OrderStatus.EXPIRED, OrderStatus.REJECTED}),
    OrderStatus.PARTIALLY_FILLED: frozenset({OrderStatus.PARTIALLY_FILLED, OrderStatus.FILLED,
                                             OrderStatus.CANCELED, OrderStatus.EXPIRED}),
}

STRATEGY_CODES = {"gap_and_go": "GG", "vwap_reclaim": "VR"}
EXIT_REASON = {OrderRole.STOP: "stop", OrderRole.TARGET: "target", OrderRole.VWAP_LOSS: "vwap_loss",
               OrderRole.EOD: "eod", OrderRole.MANUAL: "manual"}


@dataclass(slots=True)
class OpenTrade:
    """The round trip in progress for a symbol, accumulated exactly."""

    strategy: str
    stop: float
    target_r: float
    entry_ts: int = 0
    entry_qty: int = 0
    entry_cost: Decimal = ZERO
    exit_qty: int = 0
    exit_proceeds: Decimal = ZERO
    commission: Decimal = ZERO
    target: float = 0.0
    stop_id: str = ""
    target_id: str = ""
    flatten_id: str = ""
    trim_id: str = ""
    last_exit_role: OrderRole = OrderRole.MANUAL
    exit_ts: int = 0
