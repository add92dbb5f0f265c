"""The contracts between the runner and its data and execution clients.

Adapters translate a vendor's world into these calls; nothing outside `live_runner/adapters/`
sees a vendor type. Execution clients report through two callbacks, synchronously for the paper
broker and from the event loop for real brokers.
"""

from __future__ import annotations

import asyncio
from datetime import date
from decimal import Decimal
from enum import Enum
from typing import Any, Callable, Iterable, Iterator, Mapping, Protocol, Sequence

import msgspec

from live_runner.core.models import Bar, Fill, OrderEvent, OrderRequest

OrderEventHandler = Callable[[OrderEvent], None]
FillHandler = Callable[[Fill], None]


class AccountModeError(RuntimeError):
    """The broker is logged in to a live account in paper mode, or to a paper account in live mode.
    Raised by an execution client's `start()` before any order can be sent; the CLI exits 2."""


SendGate = Callable[[str], bool]
"""Asked before each send with the call's name ("submit", "submit_oco", "replace_exits",
"cancel"); False: the call sends nothing (the live service's account-lease fence)."""


class GatedSends:
    """Mixed into every execution client: its sends ask the gate first, so the live service can
    fence a client (lease lost: nothing more reaches the broker) without wrapping its methods.
    Internal sends (an IB reconcile's cancel, an extra OCA group) go through the same methods."""

    _send_gate: SendGate | None = None

    def set_send_gate(self, gate: SendGate | None) -> None:
        self._send_gate = gate

    def may_send(self, call: str) -> bool:
        gate = self._send_gate
        return gate is None or gate(call)


class ExecutionClient(Protocol):
    name: str

    def set_handlers(self, on_event: OrderEventHandler, on_fill: FillHandler) -> None: ...

    def submit(self, request: OrderRequest) -> None:
        """Send a new order. Never retried blindly: an ambiguous outcome is resolved by lookup."""

    def cancel(self, client_order_id: str) -> None:
        """A request, not a fact: the order is gone only when CANCELED (or a terminal status) is
        reported. It can still fill meanwhile."""

    # Optional (broker-native exits; the ExecutionEngine falls back to two plain orders, with the
    # OrderManager emulating one-cancels-other, for a client without them, e.g. the paper broker):
    #
    # def submit_oco(self, stop: OrderRequest, target: OrderRequest) -> None:
    #     """A position's protective stop and target as ONE broker-native one-cancels-other unit
    #     for the same shares (Alpaca `order_class: oco`, IB an OCA group). `stop.oco_group ==
    #     target.oco_group == target.client_order_id` names the pair. A fill on either leg reduces
    #     the other by the same quantity (the legs share the shares); when one leg is filled the
    #     broker cancels the other. Reports come per client order id, as for any order."""
    #
    # def replace_exits(self, old_stop: str, old_target: str, stop: OrderRequest,
    #                   target: OrderRequest) -> None:
    #     """Resize a working pair in place (Alpaca PATCH replace), never cancel-then-new. Once the broker confirms, the old ids are reported CANCELED with
    #     reason "replaced" and the new ids ACCEPTED; later fills arrive under the new ids. If the
    #     broker refuses, BOTH new ids are REJECTED and the old pair keeps working."""
    #
    # native_oco: bool  (True when submit_oco exists)
    #
    # A client offers `replace_exits` only when the broker checks a resize against the position
    # as it applies it, so that it can never sell more than held (Alpaca: a replace above the
    # available shares is refused). IB does not: a modify sets a leg's total quantity and undoes
    # the shrink IB made for a fill of the other leg while the modify travelled. Without it the
    # OrderManager never grows a pair: the added shares get a pair (an OCA group) of their own,
    # so a position may have several pairs working at once, each selling at most its own shares;
    # a trim or flatten cancels them all.
    #
    # def pdt_state(self) -> PdtState | None:
    #     """The account's pattern-day-trader state as last read (Alpaca); the node wires a risk
    #     rule (risk.rules.pdt_rule_factory) to it. None until the account was read."""

    def recover(self, request: OrderRequest, *, filled: int = 0, notional: Decimal = ...) -> None:
        """An order the journal already holds: find it at the broker, never send it again.
        `filled` and `notional` (Decimal): what the journal already holds of its fills (a live
        restart), so that a broker reporting cumulative fills reports only the newer ones."""

    def on_bar(self, bar: Bar) -> None:
        """Market data reaches simulated brokers here; real brokers ignore it."""

    def end_session(self, ts: int) -> None:
        """The session is over: day orders expire."""


class PdtState(msgspec.Struct, frozen=True, gc=False):
    """The broker account's pattern-day-trader state (Alpaca: `daytrade_count`,
    `pattern_day_trader`, `equity`), as last read by the execution client."""

    daytrade_count: int
    pattern_day_trader: bool
    equity: float


class EventLog(Protocol):
    """A durable, append-only log an embedded broker keeps its own record in (the paper broker's
    `paper.state_url`: a persistence Journal, handed in by the wiring so adapters never import
    persistence). `continued`: a restart continued an existing log; `resuming`: the run is still
    regenerating events the log already holds (an append then verifies instead of writing)."""

    @property
    def continued(self) -> bool: ...

    @property
    def resuming(self) -> bool: ...

    def stored_events(self) -> Iterable[dict[str, Any]]:
        """The events the log held when it was opened, in order."""

    def append(self, session: str, ts: int, kind: str, key: str, payload: dict[str, Any]) -> int: ...

    def flush(self) -> bool:
        """Make everything appended so far durable."""

    def close(self) -> None: ...


class DataClient(Protocol):
    name: str

    def bars(self) -> Iterator[Bar]:
        """Bars in time order (the replay client); live clients are `LiveDataClient`s below."""


# --- live data (push feeds) ------------------------------------------------------------------


class FeedState(str, Enum):
    """Connection state of a live data client."""

    IDLE = "idle"                  # not started (a backup waiting for a failover)
    CONNECTING = "connecting"      # opening, authenticating, subscribing (or retrying to)
    LIVE = "live"                  # subscribed; data flows when the market trades
    DISCONNECTED = "disconnected"  # lost; reconnecting with backoff
    FAILED = "failed"              # will not recover by itself (bad key): needs an operator
    STOPPED = "stopped"


class DailyBar(msgspec.Struct, frozen=True, gc=False):
    """One session's OHLCV for a symbol (previous closes, Dagster's daily assets)."""

    symbol: str
    day: date
    open: float
    high: float
    low: float
    close: float
    volume: float


class FeedMarker(msgspec.Struct, frozen=True, gc=False):
    """A control item in a client's queue, in order with its bars: `reconnected` means bars before
    it came from an earlier connection (a reconnect's gap is backfilled when it is consumed)."""

    kind: str
    at: float  # monotonic seconds


class LiveDataClient(Protocol):
    """A push feed (Polygon websocket, Yahoo polling) as the runner sees it.

    Ingress is one bounded `asyncio.Queue` of bars (and FeedMarkers) per client. Overflow policy:
    bars are never dropped; when the queue is full the reader waits for room (the socket's own
    backpressure) and the wait is counted (`stats()["reader_waits"]`). `on_data` is called after
    each put so the consumer wakes without polling. The consumer (live_runner.live.feeds) hands each
    bar to DataManager.on_bar synchronously."""

    name: str
    delayed: bool  # True for a degraded source (Yahoo): entries halt while it is the active feed
    state: FeedState
    queue: "asyncio.Queue[Bar | FeedMarker]"
    last_bar_at: float  # monotonic seconds of the latest bar queued (0.0: none yet)
    state_since: float  # monotonic seconds of the latest state change

    async def start(self, symbols: Sequence[str], on_data: Callable[[], None],
                    since: Mapping[str, int] | None = None) -> None:
        """Begin delivering bars newer than `since` (symbol -> bar ts) into `queue`; returns at once."""

    async def stop(self) -> None: ...

    def reconnect(self) -> None:
        """Drop the connection and open a new one (a mute socket); a no-op for polling clients."""

    async def minute_bars(self, symbols: Sequence[str], start_ns: int, end_ns: int) -> list[Bar]:
        """Complete 1-minute bars with start_ns <= ts < end_ns, sorted by (ts, symbol)."""

    async def daily_bars(self, day: date, symbols: Sequence[str] | None) -> list[DailyBar]:
        """Each symbol's bar for session `day` (None: every symbol the source has, if it can)."""

    def stats(self) -> dict[str, Any]: ...
