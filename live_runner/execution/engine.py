"""ExecutionEngine: the single door to the brokers.

It routes orders to the primary execution client and wires broker reports back to the
OrderManager. Failover to a backup broker (issue: real brokers) plugs in here and only ever moves
an order that the primary provably did not accept.
"""

from __future__ import annotations

from typing import Callable

from live_runner.adapters.base import ExecutionClient, FillHandler, OrderEventHandler
from live_runner.models import Bar, OrderRequest


class ExecutionEngine:
    def __init__(self, primary: ExecutionClient, backup: ExecutionClient | None = None,
                 on_alert: Callable[[str, str, str], None] | None = None) -> None:
        self.primary = primary
        self.backup = backup
        self.active = primary
        self.connected = True  # the paper broker is always connected; adapters report changes
        self._alert = on_alert

    def on_connection_change(self, connected: bool, detail: str = "") -> None:
        """Adapters report their link to the broker here (off the hot path): the state feeds
        /ready and the metrics, and each change raises an alert."""
        if connected == self.connected:
            return
        self.connected = connected
        name = getattr(self.active, "name", "broker")
        tail = f": {detail}" if detail else ""
        if self._alert is not None:
            if connected:
                self._alert("broker_reconnected", "warning", f"broker {name} reconnected{tail}")
            else:
                self._alert("broker_disconnected", "critical", f"broker {name} disconnected{tail}")

    def connect(self, on_event: OrderEventHandler, on_fill: FillHandler) -> None:
        self.primary.set_handlers(on_event, on_fill)
        if self.backup is not None:
            self.backup.set_handlers(on_event, on_fill)

    def submit(self, request: OrderRequest) -> None:
        self.active.submit(request)

    def recover(self, request: OrderRequest) -> None:
        self.active.recover(request)

    def cancel(self, client_order_id: str) -> None:
        self.active.cancel(client_order_id)

    def on_bar(self, bar: Bar) -> None:
        self.active.on_bar(bar)

    def end_session(self, ts: int) -> None:
        self.active.end_session(ts)

    @property
    def resuming(self) -> bool:
        """True while the broker is re-sending reports it already holds (after a restart)."""
        return bool(getattr(self.active, "resuming", False))

    def positions(self) -> dict[str, int] | None:
        """Broker-side positions for reconciliation (None when the client cannot tell)."""
        get = getattr(self.active, "positions", None)
        return get() if get is not None else None

    def close(self) -> None:
        for client in (self.primary, self.backup):
            close = getattr(client, "close", None)
            if close is not None:
                close()
