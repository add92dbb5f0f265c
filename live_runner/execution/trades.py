"""The OrderManager's vocabulary: order transitions, strategy codes in client ids, exit reasons,
and the open round trip (also rebuilt by a live restart, `live_runner.recovery.restore`)."""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal

from live_runner.core.models import OrderRequest, OrderRole, OrderStatus
from live_runner.core.money import ZERO, target_price

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
    # A flatten or trim waiting for the broker to confirm the cancels of the sells it replaces
    # (`awaiting`): at a real broker a cancel is a request, and the shares stay reserved (Alpaca)
    # or sellable twice (IB) until it is confirmed.
    pending_exit: str = ""                 # "", "flatten" or "trim"
    pending_role: OrderRole = OrderRole.MANUAL
    pending_trim_qty: int = 0
    pending_req: "OrderRequest | None" = None  # the approved sell, sized when it is sent
    awaiting: set[str] = field(default_factory=set)
    # The pair being resized in place at a native-OCO broker: (old stop id, old target id).
    replacing: tuple[str, str] = ("", "")
    # A resize the broker refused whose other leg's verdict may still be on its way, and how many
    # resizes in a row were refused (tried again at the size held, bounded).
    refused: tuple[str, str] = ("", "")
    resize_refusals: int = 0
    flatten_refusals: int = 0  # flatten sells the broker refused (or never got): re-sent, bounded

    @classmethod
    def opened(cls, req: OrderRequest, ts: int) -> OpenTrade:
        """The round trip an entry order's first fill (at `ts`) opens."""
        return cls(req.strategy, req.protective_stop, req.target_r, entry_ts=ts)

    def add_entry(self, qty: int, price: Decimal, fee: Decimal) -> Decimal:
        """An entry fill (`price` the Decimal of its float price): the target follows the exact
        average entry, which is returned. The OrderManager and a restart's scan both use this."""
        self.entry_qty += qty
        self.entry_cost += price * qty
        self.commission += fee
        avg = self.entry_cost / self.entry_qty
        self.target = target_price(avg, self.stop, self.target_r)
        return avg

    def add_exit(self, qty: int, price: Decimal, fee: Decimal, role: OrderRole, ts: int) -> None:
        """An exit fill of the order with `role` at `ts`."""
        self.exit_qty += qty
        self.exit_proceeds += price * qty
        self.commission += fee
        self.last_exit_role = role
        self.exit_ts = ts
