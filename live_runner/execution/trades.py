"""The OrderManager's vocabulary: order transitions, strategy codes in client ids, exit reasons,
the open round trip, and an order's journal payload (also read back by a live restart)."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

from live_runner.models import OrderRequest, OrderRole, OrderStatus
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


def request_payload(req: OrderRequest) -> dict:
    return {"strategy": req.strategy, "symbol": req.symbol, "side": req.side.value, "qty": req.qty,
            "type": req.order_type.value, "role": req.role.value, "limit": req.limit_price,
            "stop": req.stop_price, "ref": req.reference_price, "protective_stop": req.protective_stop,
            "target_r": req.target_r, "oco": req.oco_group}
