"""How the Alpaca client turns what the broker says about an order (a REST read or a trade
update) into the runner's reports: each status change and each share filled exactly once."""

from __future__ import annotations

import logging
from collections import Counter
from decimal import Decimal
from typing import Any, Callable

from live_runner.adapters.alpaca.mapping import Snapshot
from live_runner.adapters.alpaca.tracking import (
    DONE, LIVE, RESOLVING, SENDING, FaultHandler, NotAcceptedHandler, Tracked, ZERO,
)
from live_runner.core.clients import FillHandler, OrderEventHandler
from live_runner.core.models import TERMINAL_STATUSES, Fill, OrderEvent, OrderRole, OrderStatus, Side

log = logging.getLogger("live_runner.adapters.alpaca")

PROTECTIVE = frozenset({OrderRole.STOP, OrderRole.TARGET})


class Reports:
    """Mixed into AlpacaExecutionClient (which provides the attributes annotated here)."""

    name: str
    _prefix: str
    _orders: dict[str, Tracked]
    _by_broker: dict[str, Tracked]
    _fill_positions: dict[str, int]
    _on_event: OrderEventHandler
    _on_fill: FillHandler
    _not_accepted: NotAcceptedHandler | None
    _fault_handler: FaultHandler | None
    counters: Counter[str]
    now_ns: Callable[[], int]
    _spawn: Callable[[Any, str], None]
    _raise: Callable[[str, str, str], None]
    _cancel_flow: Callable[[Tracked], Any]
    _refresh_account: Callable[[], Any]
    _exit_update: Callable[[Tracked, Snapshot], bool]

    def _apply(self, t: Tracked, snap: Snapshot, extras: dict[str, Any] | None = None) -> bool:
        """Bring our view of one order up to `snap`; emits only what is new. True if anything was."""
        changed = False
        if snap.broker_id and not t.broker_id:
            t.broker_id = snap.broker_id
            self._by_broker[snap.broker_id] = t
        if t.phase in (SENDING, RESOLVING):
            t.phase = LIVE
        if (t.leg or t.parent or t.replaces or t.replaced_by) and self._exit_update(t, snap):
            return True
        mapped = snap.mapped
        ts = snap.ts or self.now_ns()
        if t.status is OrderStatus.SUBMITTED and mapped is not None and mapped is not OrderStatus.REJECTED:
            t.status = OrderStatus.ACCEPTED
            self._on_event(OrderEvent(t.request.client_order_id, OrderStatus.ACCEPTED, ts,
                                      broker_order_id=t.broker_id))
            changed = True
        if snap.filled_qty > t.filled:
            self._fill(t, snap, extras or {})
            changed = True
        if mapped in (OrderStatus.CANCELED, OrderStatus.EXPIRED, OrderStatus.REJECTED):
            changed |= self._final(t, mapped, snap.reason or f"{self.name}: {snap.status}", ts)
        elif t.filled >= t.request.qty or (snap.status == "filled" and t.filled >= snap.qty > 0):
            # filled (an OCO leg's quantity shrinks by what the other leg filled)
            t.status = OrderStatus.FILLED
            t.phase = DONE
        if t.cancel_requested and t.phase == LIVE and t.broker_id and not t.cancel_inflight:
            t.cancel_inflight = True  # before the task runs, so a second request sends no DELETE
            self._spawn(self._cancel_flow(t), "cancel")
        return changed

    def _fill(self, t: Tracked, snap: Snapshot, extras: dict[str, Any]) -> None:
        req = t.request
        cum = min(snap.filled_qty, req.qty)
        delta = cum - t.filled
        if delta <= 0:
            return
        qty_hint, price_hint = extras.get("qty"), extras.get("price")
        if qty_hint and price_hint and int(qty_hint) == delta:
            price = Decimal(str(price_hint))
        elif snap.filled_avg_price > 0:
            price = (snap.filled_avg_price * cum - t.notional) / delta
        else:
            price = Decimal(str(price_hint or 0))
        t.filled = cum
        t.notional += price * delta
        signed = delta if req.side is Side.BUY else -delta
        if not t.recovering:
            self._fill_positions[req.symbol] = self._fill_positions.get(req.symbol, 0) + signed
        ts = extras.get("ts") or snap.ts or self.now_ns()
        self.counters["fills"] += 1
        self._on_fill(Fill(req.client_order_id, f"{t.broker_id}:{cum}", req.symbol, req.side, delta,
                           round(float(price), 4), ZERO, ts))
        if req.side is Side.SELL:  # may have been a day trade: re-read the PDT count soon
            self._spawn(self._refresh_account(), "account")

    def _final(self, t: Tracked, status: OrderStatus, reason: str, ts: int | None = None) -> bool:
        t.phase = DONE
        if t.status in TERMINAL_STATUSES:
            return False
        t.status = status
        req = t.request
        self._on_event(OrderEvent(req.client_order_id, status, ts or self.now_ns(), reason,
                                  broker_order_id=t.broker_id))
        leg = self._orders.get(t.leg) if t.leg else None
        if leg is not None and not leg.broker_id and leg.phase != DONE and not leg.replaces:
            # an OCO that never reached the broker takes its stop leg with it
            self._final(leg, status, reason, ts)
        if status is OrderStatus.REJECTED and req.role in PROTECTIVE:
            parent = self._orders.get(t.parent) if t.parent else None
            if parent is None or parent.status is not OrderStatus.REJECTED:
                self._raise(f"unprotected:{req.symbol}", "critical",
                            f"{req.symbol}: {req.role.value} {req.client_order_id} refused by "
                            f"{self.name} ({reason}): the position is not fully protected")
        return True

    def _hand_off(self, t: Tracked, reason: str) -> None:
        """Provably not accepted: to the failover handler, or REJECTED without one."""
        self.counters["not_accepted"] += 1
        if t.cancel_requested:
            self._final(t, OrderStatus.CANCELED, f"canceled; {reason}")
            return
        handler = self._not_accepted
        if handler is None or t.leg or t.parent:
            # an OCO exit belongs where its shares are: not to another broker
            self._final(t, OrderStatus.REJECTED, f"not accepted by {self.name}: {reason}")
            return
        t.phase = DONE
        t.handed_off = True
        handler(t.request, f"{self.name}: {reason}", t.recovering)

    def _foreign(self, event: str, snap: Snapshot, extras: dict[str, Any]) -> None:
        """An order the runner did not place (manual, another process): its fills still move the
        positions at the broker, so reconciliation sees them. A fill under our own prefix that we
        do not track is a fault: the runner's books are missing an order."""
        self.counters["foreign_updates"] += 1
        if event in ("fill", "partial_fill") and extras.get("qty") and snap.side is not None:
            qty = int(extras["qty"])
            signed = qty if snap.side is Side.BUY else -qty
            self._fill_positions[snap.symbol] = self._fill_positions.get(snap.symbol, 0) + signed
            if snap.client_order_id.startswith(self._prefix + "-"):
                self._fault(f"alpaca_unknown_fill:{snap.client_order_id}",
                            f"{self.name}: fill of {qty} {snap.symbol} for {snap.client_order_id}, "
                            f"an order under our prefix the runner does not know")
                return
            self._raise(f"alpaca_foreign:{snap.symbol}", "warning",
                        f"{self.name}: fill of an order the runner did not place ({snap.client_order_id})")

    def _fault(self, key: str, message: str) -> None:
        """Fail closed: something the runner's books cannot account for (the node halts and
        reconciles); a CRITICAL alert when nobody listens for faults."""
        self.counters["faults"] += 1
        log.critical("%s: %s", key, message)
        if self._fault_handler is not None:
            self._fault_handler(key, message)
        else:
            self._raise(key, "critical", message)
