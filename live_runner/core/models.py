"""Domain value types shared by every component.

Timestamps are integer nanoseconds since the Unix epoch, UTC (NautilusTrader's convention): they are
unambiguous, cheap to compare on the hot path, and converted to tz-aware datetimes only at the edges
(`live_runner.core.clock`). Prices are floats rounded to the tick when an order is created; money is
accumulated as `Decimal` (see `live_runner.core.money`).

The value types are frozen msgspec Structs: immutable like frozen dataclasses, but built in ~70 ns
instead of ~1.5 us, which matters at a million bars a second.
"""

from __future__ import annotations

from decimal import Decimal
from enum import Enum

import msgspec

NANOS_PER_SECOND = 1_000_000_000
NANOS_PER_MINUTE = 60 * NANOS_PER_SECOND


class SystemState(str, Enum):
    """Lifecycle of the runner process (the sketch's states)."""

    STARTING = "starting"
    RUNNING = "running"
    PAUSED = "paused"
    STOPPING = "stopping"
    STOPPED = "stopped"
    ERROR = "error"


class TradingState(str, Enum):
    """What the risk manager lets through."""

    ACTIVE = "active"
    REDUCING = "reducing"
    HALTED = "halted"


class Side(str, Enum):
    BUY = "buy"
    SELL = "sell"


class OrderType(str, Enum):
    MARKET = "market"
    LIMIT = "limit"
    STOP = "stop"


class OrderStatus(str, Enum):
    NEW = "new"
    SUBMITTED = "submitted"
    ACCEPTED = "accepted"
    PARTIALLY_FILLED = "partially_filled"
    FILLED = "filled"
    CANCELED = "canceled"
    REJECTED = "rejected"
    EXPIRED = "expired"


TERMINAL_STATUSES = frozenset(
    {OrderStatus.FILLED, OrderStatus.CANCELED, OrderStatus.REJECTED, OrderStatus.EXPIRED}
)


class OrderRole(str, Enum):
    """Why an order exists; exits carry the reason reported in the trades table."""

    ENTRY = "entry"
    STOP = "stop"
    TARGET = "target"
    VWAP_LOSS = "vwap_loss"
    EOD = "eod"
    MANUAL = "manual"


class Severity(str, Enum):
    INFO = "info"
    WARNING = "warning"
    CRITICAL = "critical"


class Bar(msgspec.Struct, frozen=True, gc=False):
    """A 1-minute bar; `ts` is the bar's start (UTC epoch ns)."""

    symbol: str
    ts: int
    open: float
    high: float
    low: float
    close: float
    volume: float


class Quote(msgspec.Struct, frozen=True, gc=False):
    symbol: str
    ts: int
    bid: float
    ask: float
    bid_size: float
    ask_size: float


class Signal(msgspec.Struct, frozen=True, gc=False):
    """A strategy's decision at a bar's close: buy (with its protective stop) or exit."""

    strategy: str
    symbol: str
    ts: int
    side: Side
    stop: float = 0.0
    reason: str = ""
    reference_price: float = 0.0
    # Multiple of R used for the target once the entry fills.
    target_r: float = 0.0


class OrderRequest(msgspec.Struct, frozen=True, gc=False):
    """What the strategy engine asks for; the risk manager approves or denies it."""

    client_order_id: str
    strategy: str
    symbol: str
    side: Side
    qty: int
    order_type: OrderType
    role: OrderRole
    ts: int
    limit_price: float = 0.0
    stop_price: float = 0.0
    reference_price: float = 0.0
    # For entries: the protective stop and the R multiple of the target.
    protective_stop: float = 0.0
    target_r: float = 0.0
    parent_id: str = ""
    oco_group: str = ""
    signal_key: str = ""


class Order(msgspec.Struct, gc=False):
    """Mutable order record owned by the OrderManager. Untracked by the garbage collector (it
    holds no containers that could close a cycle), so a day of orders triggers no collections."""

    request: OrderRequest
    status: OrderStatus = OrderStatus.NEW
    filled_qty: int = 0
    avg_fill_price: float = 0.0
    broker_order_id: str = ""
    exec_ids: tuple[str, ...] = ()  # the fills applied (an order has one or a few)

    @property
    def client_order_id(self) -> str:
        return self.request.client_order_id

    @property
    def remaining(self) -> int:
        return self.request.qty - self.filled_qty

    @property
    def is_open(self) -> bool:
        return self.status not in TERMINAL_STATUSES


class OrderEvent(msgspec.Struct, frozen=True, gc=False):
    """A status change reported by the execution client."""

    client_order_id: str
    status: OrderStatus
    ts: int
    reason: str = ""
    broker_order_id: str = ""


class Fill(msgspec.Struct, frozen=True, gc=False):
    client_order_id: str
    exec_id: str
    symbol: str
    side: Side
    qty: int
    price: float
    commission: Decimal
    ts: int


class Position(msgspec.Struct):
    symbol: str
    strategy: str
    qty: int = 0
    avg_price: float = 0.0
    cost_basis: Decimal = Decimal(0)
    opened_ts: int = 0
    last_price: float = 0.0
    stop: float = 0.0
    target: float = 0.0
    entry_commission: Decimal = Decimal(0)

    @property
    def unrealized(self) -> float:
        return self.qty * self.last_price - float(self.cost_basis)


class Alert(msgspec.Struct, frozen=True):
    key: str
    severity: Severity
    message: str
    ts: int
    component: str = ""
    data: tuple[tuple[str, str], ...] = ()


class Command(msgspec.Struct, frozen=True):
    """An operator command (the sketch's system events)."""

    name: str
    ts: int
    source: str = "cli"
    symbol: str = ""
