"""The contracts between the runner and its data and execution clients.

Adapters translate a vendor's world into these calls; nothing outside `live_runner/adapters/`
sees a vendor type. Execution clients report through two callbacks, synchronously for the paper
broker and from the event loop for real brokers.
"""

from __future__ import annotations

from typing import Callable, Iterator, Protocol

from live_runner.models import Bar, Fill, OrderEvent, OrderRequest

OrderEventHandler = Callable[[OrderEvent], None]
FillHandler = Callable[[Fill], None]


class ExecutionClient(Protocol):
    name: str

    def set_handlers(self, on_event: OrderEventHandler, on_fill: FillHandler) -> None: ...

    def submit(self, request: OrderRequest) -> None:
        """Send a new order. Never retried blindly: an ambiguous outcome is resolved by lookup."""

    def cancel(self, client_order_id: str) -> None: ...

    def recover(self, request: OrderRequest) -> None:
        """An order the journal already holds: find it at the broker, never send it again."""

    def on_bar(self, bar: Bar) -> None:
        """Market data reaches simulated brokers here; real brokers ignore it."""

    def end_session(self, ts: int) -> None:
        """The session is over: day orders expire."""


class DataClient(Protocol):
    name: str

    def bars(self) -> Iterator[Bar]:
        """Bars in time order (the replay client); live clients push through the DataManager."""
