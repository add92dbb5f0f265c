"""Interactive Brokers' order semantics on the race suite's simulated book.

What IB does (DESIGN.md; notes/broker-sdk-facts.md): no shares are held for open orders, so two
sells for the same shares both work and both can fill (the account goes short) unless they share
an OCA group: `ocaType` 1 cancels the other orders of the group on any fill (even a partial one),
2 reduces them by the filled quantity (both "with block": no overfill). A cancel is a request:
the order can fill until the status says Cancelled. Like IbkrExecutionClient, the sim offers no
`replace_exits`: the runner never grows a pair at IB, the added shares get an OCA group of their own.
"""

from __future__ import annotations

import random

from live_runner.core.clock import SimClock
from live_runner.core.models import OrderRequest

from tests.kit.broker_sim.core import SimBroker
from tests.kit.broker_sim.orders import Group, SimOrder, SimParams


class IbSim(SimBroker):
    name = "ibkr-sim"

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
