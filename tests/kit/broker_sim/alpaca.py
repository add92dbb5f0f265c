"""Alpaca's order semantics on the race suite's simulated book.

What Alpaca does (DESIGN.md, "How the real brokers behave"; notes/broker-sdk-facts.md): every open
sell order holds its shares, so a sell for more than `position - held by open sells` is refused
(403 "insufficient qty available for order (requested: N, available: M)"); an OCO order
(`order_class: oco`) is one unit whose legs share one quantity: it holds its shares once, a fill on
one leg reduces the other, a complete fill cancels the other, and cancelling either leg cancels the
unit; a replace (`PATCH /v2/orders/{id}`) is asynchronous: the old legs end `replaced` (reported
CANCELED, reason "replaced") and new ids appear, or the replace is refused and the old unit works on.
The account cannot go short here: the runner is long-only, and a sell above what is available is
refused whatever the position.
"""

from __future__ import annotations

from live_runner.core.models import OrderRequest, OrderStatus, Side

from tests.kit.broker_sim.core import SimBroker
from tests.kit.broker_sim.orders import Group, SimOrder


class AlpacaSim(SimBroker):
    name = "alpaca-sim"

    def available(self, symbol: str, excluding: Group | None = None) -> int:
        held = self.working_sells(symbol) - (excluding.remaining() if excluding is not None else 0)
        return max(0, self.position.get(symbol, 0) - held)

    def refusal(self, req: OrderRequest) -> str:
        if req.side is Side.SELL:
            available = self.available(req.symbol)
            if req.qty > available:
                return f"insufficient qty available for order (requested: {req.qty}, available: {available})"
        return ""

    # --- OCO ---------------------------------------------------------------------------------
    def submit_oco(self, stop: OrderRequest, target: OrderRequest) -> None:
        self.stats["oco_submits"] += 1
        self._arrive([stop, target], self._place_oco)

    def _place_oco(self, requests: list[OrderRequest]) -> None:
        stop, target = requests
        refusal = ("oco legs must have the same qty" if stop.qty != target.qty else self.refusal(stop))
        self._new_unit(stop, target, refusal)

    def _new_unit(self, stop: OrderRequest, target: OrderRequest, refusal: str) -> None:
        unit = Group(target.client_order_id, reduce=True)
        for req in (stop, target):
            order = SimOrder(req, req.qty, group=unit)
            unit.members.append(order)
            self.orders[req.client_order_id] = order
        for order in unit.members:
            if refusal:
                self._reject(order, refusal)
            else:
                self._accept(order)

    def _request_cancel(self, order: SimOrder) -> None:
        """Cancelling either leg of an OCO cancels the unit."""
        if order.group is None:
            super()._request_cancel(order)
            return
        legs = order.group.working()
        for leg in legs:
            leg.cancel_pending = True
        self.log.append((self.now, f"cancel requested {order.cid} (the OCO unit {order.group.name})"))

        def confirm(_: int) -> None:
            for leg in legs:
                leg.cancel_pending = False
                self.confirm_cancel(leg)
            self.observer(f"{self.name} cancel confirmed {order.cid}")
        self._seq += 1
        self.clock.set_timer(f"{self.name}:cxl:{self._seq}", self.now + self._ms(self.p.cancel_ms), confirm)

    # --- replace -----------------------------------------------------------------------------
    def replace_exits(self, old_stop: str, old_target: str, stop: OrderRequest, target: OrderRequest) -> None:
        self.received.update((stop.client_order_id, target.client_order_id))
        self.replacements.update((stop.client_order_id, target.client_order_id))
        self.stats["replace_requests"] += 1
        old = self.orders.get(old_target) or self.orders.get(old_stop)
        self.log.append((self.now, f"replace requested {old_stop}/{old_target} -> "
                                   f"{stop.client_order_id}/{target.client_order_id} qty {stop.qty}"))

        def apply(_: int) -> None:
            self._apply_replace(old, stop, target)
            self.observer(f"{self.name} replace {old_target}")
        self._seq += 1
        self.clock.set_timer(f"{self.name}:rpl:{self._seq}", self.now + self._ms(self.p.replace_ms), apply)

    def _apply_replace(self, old: SimOrder | None, stop: OrderRequest, target: OrderRequest) -> None:
        unit = old.group if old is not None else None
        live = unit.working() if unit is not None else []
        if not live:
            status = old.status if old is not None else "unknown"
            self.stats["replace_refused"] += 1
            self._new_unit(stop, target, f"order is not replaceable (status {status})")
            return
        if any(leg.cancel_pending for leg in live):
            self.stats["replace_refused"] += 1
            self._new_unit(stop, target, "order is pending cancel")
            return
        available = self.available(stop.symbol, excluding=unit)
        if stop.qty != target.qty or stop.qty > available:
            self.stats["replace_refused"] += 1
            self._new_unit(stop, target, f"insufficient qty available for order (requested: {stop.qty}, "
                                         f"available: {available})")
            return
        self.stats["replaces"] += 1
        for leg in live:
            leg.status = "replaced"
            self._terminal_report(leg, OrderStatus.CANCELED, "replaced")
        self._new_unit(stop, target, "")
