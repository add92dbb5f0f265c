"""Interactive Brokers' order semantics on the race suite's simulated book.

What IB does (DESIGN.md; notes/broker-sdk-facts.md): no shares are held for open orders, so two
sells for the same shares both work and both can fill (the account goes short) unless they share
an OCA group: `ocaType` 1 cancels the other orders of the group on any fill (even a partial one),
2 reduces them by the filled quantity (both "with block": no overfill). An order is modified by
placing it again under the same orderId: its fills stay, its total quantity changes (the adapter
sends the fills it knew of plus the new quantity, so fills racing the modify shrink what is left).
A cancel is a request: the order can fill until the status says Cancelled, and a pending cancel
follows the orderId through a modify.
"""

from __future__ import annotations

import random

from live_runner.core.clock import SimClock
from live_runner.core.models import OrderRequest, OrderRole, OrderStatus

from tests.kit.broker_sim.core import SimBroker
from tests.kit.broker_sim.orders import Group, SimOrder, SimParams


class IbSim(SimBroker):
    name = "ibkr-sim"
    resize_in_place = False  # as IbkrExecutionClient: the runner grows exits by another OCA group

    def __init__(self, clock: SimClock, rng: random.Random, params: SimParams | None = None) -> None:
        super().__init__(clock, rng, params)
        self.groups: dict[str, Group] = {}

    def _group(self, name: str) -> Group | None:
        if not name or self.p.oca_type not in (1, 2):
            return None
        group = self.groups.get(name)
        if group is None:
            group = self.groups[name] = Group(name, reduce=self.p.oca_type == 2)
        return group

    def _place_one(self, requests: list[OrderRequest]) -> None:
        req = requests[0]
        order = SimOrder(req, req.qty, group=self._group(req.oco_group))
        if order.group is not None:
            order.group.members.append(order)
        self.orders[req.client_order_id] = order
        self._accept(order)

    def submit_oco(self, stop: OrderRequest, target: OrderRequest) -> None:
        self.stats["oco_submits"] += 1
        self._arrive([stop, target], lambda reqs: [self._place_one([r]) for r in reqs])

    def replace_exits(self, old_stop: str, old_target: str, stop: OrderRequest, target: OrderRequest) -> None:
        self.received.update((stop.client_order_id, target.client_order_id))
        self.replacements.update((stop.client_order_id, target.client_order_id))
        self.stats["replace_requests"] += 1
        self.log.append((self.now, f"modify requested {old_stop}/{old_target} -> "
                                   f"{stop.client_order_id}/{target.client_order_id} qty {stop.qty}"))
        for old_cid, new in ((old_stop, stop), (old_target, target)):
            old = self.orders.get(old_cid)
            base = old.filled if old is not None else 0

            def apply(_: int, old: SimOrder | None = old, new: OrderRequest = new, base: int = base) -> None:
                self._apply_modify(old, new, base)
                self.observer(f"{self.name} modify {new.client_order_id}")
            self._seq += 1
            self.clock.set_timer(f"{self.name}:mod:{self._seq}", self.now + self._ms(self.p.replace_ms), apply)

    def _apply_modify(self, old: SimOrder | None, new: OrderRequest, base: int) -> None:
        while old is not None and old.successor is not None:
            old = old.successor
        pair = new.role is OrderRole.STOP  # counted once per pair
        if old is None or not old.working:
            self.stats["replace_refused"] += pair
            order = SimOrder(new, new.qty)
            self.orders[new.client_order_id] = order
            self._reject(order, f"order is not modifiable (status {old.status if old else 'unknown'})")
            return
        self.stats["replaces"] += pair
        left = new.qty - (old.filled - base)  # totalQuantity = base + new.qty, fills stay
        order = SimOrder(new, max(left, 0), group=old.group, cancel_pending=old.cancel_pending)
        old.successor = order
        old.status = "replaced"
        if old.group is not None:
            old.group.members = [order if m is old else m for m in old.group.members]
        self.orders[new.client_order_id] = order
        self._terminal_report(old, OrderStatus.CANCELED, "replaced")
        if left <= 0:
            self.replacements.discard(new.client_order_id)
            order.status = "canceled"
            self._terminal_report(order, OrderStatus.CANCELED, "modified to nothing left")
            return
        self._accept(order)

    def confirm_cancel(self, order: SimOrder) -> None:
        while order.successor is not None:  # the cancel names the orderId, which a modify keeps
            order = order.successor
        order.cancel_pending = False
        super().confirm_cancel(order)
