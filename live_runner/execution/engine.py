"""ExecutionEngine: the single door to the brokers.

It routes orders to the primary execution client and wires broker reports back to the
OrderManager. Failover to a backup broker only ever moves an order that the primary provably did
not accept:

- a client reports "not accepted" through `set_not_accepted_handler` only when it knows: the
  connection was refused before anything was sent, the broker refused it outright (auth), or an
  ambiguous outcome was looked up by client id and found absent once the broker answered again;
- an ambiguous outcome (timeout, 5xx, disconnect) stays with its broker until that lookup decides:
  nothing is ever resent blindly, and an order is only ever tried once per broker;
- new entries go to the primary unless it is known unreachable (`available` False), in which case
  they go straight to the backup (never sent to the primary, so provably not there);
- exits go to the broker that holds the position (selling at the other one would open a short):
  when that broker cannot take the exit it is refused (REJECTED + critical alert), never moved.

Positions are tracked per broker (from each client's fills and its own `positions()`), merged for
reconciliation and shown side by side in `status()`.

Optional client hooks, beyond core/clients.py's protocol (the paper broker has none of them):
`set_not_accepted_handler(cb(request, reason, recovering))`, `set_alert_handler(cb(key, severity,
message))`, `set_connection_handler(cb(connected, detail))`, `available` (REST reachable).
"""

from __future__ import annotations

import logging
from decimal import Decimal
from functools import partial
from time import perf_counter_ns as _perf_ns
from typing import Any, Callable

from live_runner.core.clients import ExecutionClient, FillHandler, OrderEventHandler
from live_runner.core.models import (
    TERMINAL_STATUSES, Bar, Fill, OrderEvent, OrderRequest, OrderStatus, Side,
)

log = logging.getLogger("live_runner.execution")


class ExecutionEngine:
    def __init__(self, primary: ExecutionClient, backup: ExecutionClient | None = None,
                 on_alert: Callable[[str, str, str], None] | None = None) -> None:
        self.primary = primary
        self.backup = backup
        self.last_submit_ns = 0  # perf_counter_ns of the latest submit (tick-to-order latency)
        self.connected = True  # the paper broker is always connected; adapters report changes
        self._alert = on_alert
        self._on_event: OrderEventHandler = lambda e: None
        self._on_fill: FillHandler = lambda f: None
        self._on_fault: Callable[[str, str], None] = lambda key, msg: log.critical("%s: %s", key, msg)
        self.routes: dict[str, ExecutionClient] = {}       # client order id -> its broker
        self._tried: dict[str, list[str]] = {}             # client order id -> roles tried
        self._unfilled: dict[str, int] = {}                # client order id -> shares not yet filled
        self.fill_positions: dict[str, dict[str, int]] = {"primary": {}, "backup": {}}
        self.failovers = 0
        self.refused_exits = 0

    # --- wiring --------------------------------------------------------------------------------
    @property
    def active(self) -> ExecutionClient:
        """Where new entries go now: the primary unless it is known unreachable."""
        if self.backup is not None and not getattr(self.primary, "available", True):
            return self.backup
        return self.primary

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

    def connect(self, on_event: OrderEventHandler, on_fill: FillHandler,
                on_fault: Callable[[str, str], None] | None = None) -> None:
        self._on_event = on_event
        self._on_fill = on_fill
        if on_fault is not None:
            self._on_fault = on_fault
        self._wire(self.primary, "primary")
        if self.backup is not None:
            self._wire(self.backup, "backup")

    def attach_backup(self, backup: ExecutionClient) -> None:
        """Add the backup broker after construction (wired like the primary)."""
        self.backup = backup
        self._wire(backup, "backup")

    def _wire(self, client: ExecutionClient, role: str) -> None:
        client.set_handlers(self._event, partial(self._fill, role))  # partial: no Python frame
        hook = getattr(client, "set_not_accepted_handler", None)
        if hook is not None:
            hook(lambda req, reason, recovering: self._not_accepted(client, req, reason, recovering))
        hook = getattr(client, "set_alert_handler", None)
        if hook is not None and self._alert is not None:
            hook(self._alert)
        hook = getattr(client, "set_connection_handler", None)
        if hook is not None:
            hook(lambda up, detail: self._client_connection(role, up, detail))
        hook = getattr(client, "set_fault_handler", None)
        if hook is not None:
            hook(self.fault)

    def fault(self, key: str, message: str) -> None:
        """A broker report the runner could not apply, or a broker state it cannot explain:
        fail closed (the node halts, alerts CRITICAL and reconciles)."""
        self._on_fault(key, message)

    def _client_connection(self, role: str, up: bool, detail: str) -> None:
        client = self.primary if role == "primary" else self.backup
        name = getattr(client, "name", role)
        if role == "primary":
            change = getattr(self, "on_connection_change", None)
            if change is not None:
                change(up, detail)
                return
        if self._alert is not None:
            self._alert(f"broker_{'reconnected' if up else 'disconnected'}:{role}",
                        "warning" if up else "critical",
                        f"{role} broker {name} {'reconnected' if up else 'disconnected'}: {detail}")

    # --- orders --------------------------------------------------------------------------------
    def submit(self, request: OrderRequest) -> None:
        self.last_submit_ns = _perf_ns()
        if self.backup is None:  # one broker: nothing to route or remember
            self.primary.submit(request)
            return
        self._send(self._route(request), request, recovering=False)

    def recover(self, request: OrderRequest, *, filled: int = 0, notional: Decimal | None = None) -> None:
        """A journaled order: asked of the primary first; one it does not know is asked of the
        backup (through the not-accepted path), never sent again. `filled`/`notional`: its fills
        the journal already holds (a live restart)."""
        self._send(self.primary, request, recovering=True, filled=filled, notional=notional)

    def cancel(self, client_order_id: str) -> None:
        self.routes.get(client_order_id, self.primary).cancel(client_order_id)

    # --- exit pairs ------------------------------------------------------------------------------
    def native_oco(self, symbol: str) -> bool:
        """True when the broker holding `symbol` places one-cancels-other pairs natively."""
        client = self._holder(symbol) if self.backup is not None else None
        return bool(getattr(client or self.primary, "native_oco", False))

    def resizes_in_place(self, symbol: str) -> bool:
        """True when the broker holding `symbol` resizes a native pair in place (its client offers
        `replace_exits` only where that can never sell more than held, Alpaca); False (IB, the
        paper broker): a pair keeps its size and added shares get a pair of their own
        (execution/pairs.py)."""
        client = (self._holder(symbol) if self.backup is not None else None) or self.primary
        return hasattr(client, "replace_exits")

    def submit_oco(self, stop: OrderRequest, target: OrderRequest) -> None:
        """A position's stop and target: one native unit where the broker has one, else two orders
        (the OrderManager emulates one-cancels-other)."""
        client = self._route(stop)
        place = getattr(client, "submit_oco", None) if getattr(client, "native_oco", False) else None
        if place is None:
            self._send(client, stop, recovering=False)
            self._send(client, target, recovering=False)
            return
        for req in (stop, target):
            self._track(client, req)
        place(stop, target)

    def replace_exits(self, old_stop: str, old_target: str, stop: OrderRequest,
                      target: OrderRequest) -> None:
        """Resize a working native pair in place (the broker that holds it)."""
        client = self.routes.get(old_target) or self.routes.get(old_stop) or self.primary
        for req in (stop, target):
            self._track(client, req)
        client.replace_exits(old_stop, old_target, stop, target)  # type: ignore[attr-defined]

    def _track(self, client: ExecutionClient, req: OrderRequest) -> None:
        if self.backup is not None:
            cid = req.client_order_id
            self.routes[cid] = client
            self._tried.setdefault(cid, []).append(self._role(client))
            self._unfilled[cid] = req.qty

    def _send(self, client: ExecutionClient, request: OrderRequest, recovering: bool, filled: int = 0,
              notional: Decimal | None = None) -> None:
        cid = request.client_order_id
        if self.backup is not None:  # with one broker there is nothing to route or remember
            self.routes[cid] = client
            self._tried.setdefault(cid, []).append(self._role(client))
            self._unfilled[cid] = request.qty
        if recovering and filled:
            client.recover(request, filled=filled, notional=notional)
        elif recovering:
            client.recover(request)
        else:
            client.submit(request)

    def _event(self, ev: OrderEvent) -> None:
        """Reports pass through; an order that is done is forgotten (bounded memory all day).
        A report the chain fails to apply fails closed (`fault`), never silently."""
        if self.backup is not None and ev.status in TERMINAL_STATUSES:
            self._forget(ev.client_order_id)
        try:
            self._on_event(ev)
        except Exception as exc:  # noqa: BLE001 - any failure to apply a report halts trading
            log.exception("applying %s for %s failed", ev.status.value, ev.client_order_id)
            self.fault(f"report_failed:{ev.client_order_id}",
                       f"applying {ev.status.value} of {ev.client_order_id} failed: {type(exc).__name__}: {exc}")

    def _forget(self, cid: str) -> None:
        self.routes.pop(cid, None)
        self._tried.pop(cid, None)
        self._unfilled.pop(cid, None)

    def _route(self, req: OrderRequest) -> ExecutionClient:
        if self.backup is None:
            return self.primary
        if req.side is Side.SELL:
            return self._holder(req.symbol) or self.primary
        return self.active

    def _holder(self, symbol: str) -> ExecutionClient | None:
        """The broker holding a long position in `symbol` (the primary first)."""
        for client in (self.primary, self.backup):
            if client is not None and self._held(client, symbol) > 0:
                return client
        return None

    def _held(self, client: ExecutionClient, symbol: str) -> int:
        get = getattr(client, "positions", None)
        held = get() if get is not None else None
        if held is None:
            return self.fill_positions[self._role(client)].get(symbol, 0)
        return held.get(symbol, 0)

    def _not_accepted(self, client: ExecutionClient, req: OrderRequest, reason: str,
                      recovering: bool) -> None:
        """`client` provably does not hold `req`: the other broker may take it, once."""
        cid = req.client_order_id
        if self.backup is None:  # one broker: no route is kept, and there is nowhere else to go
            self._refuse(req, f"{'not found at the broker' if recovering else 'not accepted'}: {reason}")
            return
        if self.routes.get(cid) is not client:
            log.warning("stale not-accepted report for %s from %s", cid, getattr(client, "name", "?"))
            return
        other = self.backup if client is self.primary else self.primary
        tried = self._tried.get(cid, [])
        if other is None or self._role(other) in tried:
            what = "not found at any broker" if recovering else "not accepted"
            self._refuse(req, f"{what}: {reason}")
            return
        if req.side is Side.SELL and not recovering and self._held(other, req.symbol) < req.qty:
            # The shares are not at the other broker: selling there would open a short.
            self.refused_exits += 1
            if self._alert is not None:
                self._alert(f"exit_refused:{req.symbol}", "critical",
                            f"exit {cid} for {req.symbol} not accepted ({reason}); the other broker "
                            f"does not hold the shares, so it is not moved there")
            self._refuse(req, f"exit not accepted: {reason}")
            return
        self.failovers += 1
        name = getattr(other, "name", self._role(other))
        log.warning("order %s moves to the %s broker %s: %s", cid, self._role(other), name, reason,
                    extra={"client_order_id": cid})
        if self._alert is not None:
            self._alert(f"order_failover:{req.symbol}", "warning",
                        f"order {cid} sent to {self._role(other)} broker {name}: {reason}")
        self._send(other, req, recovering)

    def _refuse(self, req: OrderRequest, reason: str) -> None:
        self.routes.pop(req.client_order_id, None)
        self._on_event(OrderEvent(req.client_order_id, OrderStatus.REJECTED, req.ts, reason))

    def _fill(self, role: str, fill: Fill) -> None:
        left = self._unfilled.get(fill.client_order_id)
        if left is not None:
            if left - fill.qty <= 0:
                self._forget(fill.client_order_id)  # filled: nothing left to route or retry
            else:
                self._unfilled[fill.client_order_id] = left - fill.qty
        book = self.fill_positions[role]
        signed = fill.qty if fill.side is Side.BUY else -fill.qty
        book[fill.symbol] = book.get(fill.symbol, 0) + signed
        if not book[fill.symbol]:
            del book[fill.symbol]
        try:
            self._on_fill(fill)
        except Exception as exc:  # noqa: BLE001 - any failure to apply a fill halts trading
            log.exception("applying fill %s of %s failed", fill.exec_id, fill.client_order_id)
            self.fault(f"report_failed:{fill.client_order_id}",
                       f"applying fill {fill.exec_id} of {fill.client_order_id} failed: "
                       f"{type(exc).__name__}: {exc}")

    def _role(self, client: ExecutionClient) -> str:
        return "primary" if client is self.primary else "backup"

    # --- market and session --------------------------------------------------------------------
    def on_bar(self, bar: Bar) -> None:
        self.primary.on_bar(bar)
        if self.backup is not None:
            self.backup.on_bar(bar)

    def end_session(self, ts: int) -> None:
        self.primary.end_session(ts)
        if self.backup is not None:
            self.backup.end_session(ts)

    @property
    def resuming(self) -> bool:
        """True while a broker is re-sending reports it already holds (after a restart)."""
        return any(bool(getattr(c, "resuming", False)) for c in (self.primary, self.backup) if c is not None)

    def unclaimed(self) -> list[OrderRequest]:
        """Orders the brokers hold under our id prefix that the runner does not know (adoption)."""
        out: list[OrderRequest] = []
        for client in (self.primary, self.backup):
            fn = getattr(client, "unclaimed", None) if client is not None else None
            if fn is not None:
                out += fn()
        return out

    # --- positions -----------------------------------------------------------------------------
    def positions(self) -> dict[str, int] | None:
        """Broker-side positions for reconciliation, summed over both brokers (None when no
        client can tell)."""
        views = [v for v in self.positions_by_broker().values() if v is not None]
        if not views:
            return None
        out: dict[str, int] = {}
        for view in views:
            for sym, qty in view.items():
                out[sym] = out.get(sym, 0) + qty
        return {s: q for s, q in sorted(out.items()) if q}

    def positions_by_broker(self) -> dict[str, dict[str, int] | None]:
        out: dict[str, dict[str, int] | None] = {}
        for role, client in (("primary", self.primary), ("backup", self.backup)):
            if client is None:
                continue
            get = getattr(client, "positions", None)
            out[role] = get() if get is not None else dict(sorted(self.fill_positions[role].items()))
        return out

    def status(self) -> dict[str, Any]:
        """For /status: each broker's name, link and positions, and the merged view."""
        brokers: dict[str, Any] = {}
        by_broker = self.positions_by_broker()
        for role, client in (("primary", self.primary), ("backup", self.backup)):
            if client is None:
                continue
            brokers[role] = {"name": getattr(client, "name", role),
                             "connected": bool(getattr(client, "connected", True)),
                             "available": bool(getattr(client, "available", True)),
                             "active": client is self.active,
                             "positions": by_broker.get(role)}
        return {"brokers": brokers, "positions": self.positions(), "failovers": self.failovers,
                "refused_exits": self.refused_exits}

    def close(self) -> None:
        for client in (self.primary, self.backup):
            close = getattr(client, "close", None)
            if close is not None:
                close()
