"""Broker-native exits at Alpaca: a position's stop and target as ONE `order_class: oco` order,
resized in place with a replace (`PATCH /v2/orders/{id}`).

Why: Alpaca reserves shares for every open sell, so a stop and a target sent as two sells of the
same shares cannot both work (the second is refused, 403 "insufficient qty available"). The OCO
reserves them once. Its parent is the target's sell limit, under the target's client id; the stop
is its leg, which Alpaca names with a client id of its own: the leg is tracked by broker id and
reported under the stop's client id.

A replace is asynchronous at Alpaca: the answer is the new order (new id, new leg), the old one
goes `pending_replace`, then `replaced`. Only then are the old ids reported CANCELED with reason
"replaced" and the new ones ACCEPTED. A refusal (4xx, or the new order `rejected` because the old
one filled first) reports the new ids REJECTED; the old pair keeps working. Never cancel-then-new.
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from typing import Any, Callable

from live_runner.adapters.alpaca.mapping import (
    NotAllowed, Outcome, Snapshot, classify, error_text, snapshot, to_alpaca_oco, to_alpaca_replace,
)
from live_runner.adapters.alpaca.tracking import DONE, LIVE, RESOLVING, SENDING, Tracked
from live_runner.core.models import OrderEvent, OrderRequest, OrderStatus

log = logging.getLogger("live_runner.adapters.alpaca")

REPLACED = "replaced"


class ExitPairs:
    """Mixed into AlpacaExecutionClient (which provides the attributes annotated here)."""

    may_send: Callable[[str], bool]  # GatedSends (the lease fence)

    name: str
    native_oco = True
    _rest: Any
    _closed: bool
    _orders: dict[str, Tracked]
    _by_broker: dict[str, Tracked]
    counters: Counter[str]
    posts: Counter[str]
    now_ns: Callable[[], int]
    _on_event: Callable[[OrderEvent], None]
    _boot: Callable[[], Any]
    _call: Callable[..., Any]
    _spawn: Callable[[Any, str], None]
    _phase: Callable[[int], str]
    _set_available: Callable[..., None]
    _apply: Callable[..., bool]
    _final: Callable[..., bool]
    _raise: Callable[[str, str, str], None]
    _resolve: Callable[..., Any]
    _submit_flow: Callable[..., Any]

    def submit_oco(self, stop: OrderRequest, target: OrderRequest) -> None:
        """ONE POST (`order_class: oco`, client id = the target's) for the position's exits."""
        if not self.may_send("submit_oco"):  # the live service's lease fence
            return
        for r in (stop, target):
            if r.client_order_id in self._orders:
                log.error("submit of %s again refused: never sent twice", r.client_order_id)
                return
        parent = self._orders[target.client_order_id] = Tracked(target, leg=stop.client_order_id)
        leg = self._orders[stop.client_order_id] = Tracked(stop, parent=target.client_order_id)
        try:
            areq = to_alpaca_oco(stop, target, self._phase(target.ts))
        except NotAllowed as exc:
            self.counters["refused_locally"] += 1
            self._final(parent, OrderStatus.REJECTED, f"{self.name}: {exc}")
            self._final(leg, OrderStatus.REJECTED, f"{self.name}: {exc}")
            return
        self._spawn(self._submit_flow(parent, areq), f"submit oco {target.client_order_id}")

    def replace_exits(self, old_stop: str, old_target: str, stop: OrderRequest,
                      target: OrderRequest) -> None:
        """Resize a working OCO in place: PATCH its parent (new qty, prices, client id)."""
        if not self.may_send("replace_exits"):  # the live service's lease fence
            return
        for r in (stop, target):
            if r.client_order_id in self._orders:
                log.error("replace to %s refused: the id is taken", r.client_order_id)
                return
        new_parent = self._orders[target.client_order_id] = Tracked(
            target, leg=stop.client_order_id, replaces=old_target, confirmed=False)
        new_leg = self._orders[stop.client_order_id] = Tracked(
            stop, parent=target.client_order_id, replaces=old_stop, confirmed=False)
        old = self._orders.get(old_target)
        if old is None or old.phase == DONE or old.leg != old_stop:
            why = "the pair to resize is not working" if old is None or old.phase == DONE else \
                f"{old_stop} is not the stop of {old_target}"
            self._replace_failed(new_parent, new_leg, why)
            return
        try:
            areq = to_alpaca_replace(stop, target)
        except NotAllowed as exc:
            self._replace_failed(new_parent, new_leg, str(exc))
            return
        old.replaced_by = target.client_order_id
        old_leg = self._orders.get(old_stop)
        if old_leg is not None:
            old_leg.replaced_by = stop.client_order_id
        self._spawn(self._replace_flow(old, new_parent, new_leg, areq), f"replace {old_target}")

    async def _replace_flow(self, old: Tracked, new: Tracked, new_leg: Tracked, areq: Any) -> None:
        await self._boot()
        while old.phase in (SENDING, RESOLVING) and not self._closed:
            await asyncio.sleep(0.02)   # the OCO itself is still being sent: wait for its id
        if old.phase == DONE or not old.broker_id:
            self._replace_failed(new, new_leg, f"{old.request.client_order_id} ended before the replace")
            return
        cid = new.request.client_order_id
        self.posts[cid] += 1
        self.counters["replaces"] += 1
        try:
            snap = snapshot(await self._call(self._rest.replace_order_by_id, old.broker_id, areq))
        except Exception as exc:
            outcome, reason = classify(exc), error_text(exc)
            if outcome in (Outcome.NOT_SENT, Outcome.REFUSED, Outcome.REJECTED, Outcome.NOT_FOUND):
                self._set_available(outcome is not Outcome.NOT_SENT, reason)
                self._replace_failed(new, new_leg, reason)
                return
            self.counters["ambiguous"] += 1
            found = await self._resolve(new, reason)
            if found is False:
                self._replace_failed(new, new_leg, f"{reason}; not found by client id")
            return
        self._set_available(True)
        self._apply(new, snap)

    # --- what the reports mean for a pair (called from `_apply`) ----------------------------------
    def _exit_update(self, t: Tracked, snap: Snapshot) -> bool:
        """Pair bookkeeping before the plain order logic; True when `snap` is fully handled."""
        if snap.legs and t.leg:
            leg = self._orders.get(t.leg)
            if leg is not None:
                self._apply(leg, snap.legs[0])
        if snap.status == REPLACED:
            self._on_replaced(t, snap)
            return True
        if not t.confirmed:
            if snap.status in ("rejected", "canceled", "expired"):
                old = self._orders.get(t.replaces)
                if old is not None and old.replaced_by == t.request.client_order_id:
                    old.replaced_by = ""
                t.confirmed = True  # reported REJECTED below (an `unprotected` alert with it)
                return False
            if snap.status in ("new", "partially_filled", "filled", "held"):
                self._confirm(t)
            else:
                return True  # accepted, waiting for the old order to be replaced
        return False

    def _on_replaced(self, t: Tracked, snap: Snapshot) -> None:
        """The old order of a replace is gone: report it, and confirm the new one."""
        new = self._orders.get(t.replaced_by) if t.replaced_by else None
        if new is None:
            self._raise(f"alpaca_replaced:{t.request.client_order_id}", "critical",
                        f"{t.request.client_order_id} was replaced at {self.name} by an order the "
                        f"runner did not ask for ({snap.replaced_by}): reconcile")
            fault = getattr(self, "_fault", None)
            if fault is not None:
                fault(f"alpaca_replaced:{t.request.client_order_id}",
                      f"{t.request.client_order_id} replaced by an unknown order")
            return
        if new.parent:
            parent = self._orders.get(new.parent)
            if parent is not None:
                self._confirm(parent)
        else:
            self._confirm(new)

    def _confirm(self, new: Tracked) -> None:
        """A replace is done: old ids CANCELED ("replaced"), then the new ids ACCEPTED."""
        if new.parent and new.parent in self._orders:
            new = self._orders[new.parent]
        pair = [new] + ([self._orders[new.leg]] if new.leg in self._orders else [])
        for n in pair:
            if n.confirmed:
                continue
            n.confirmed = True
            old = self._orders.get(n.replaces)
            if old is not None and old.phase != DONE:
                self._final(old, OrderStatus.CANCELED, REPLACED)
            if n.status is OrderStatus.SUBMITTED:
                n.status = OrderStatus.ACCEPTED
                n.phase = LIVE if n.phase != DONE else n.phase
                self._on_event(OrderEvent(n.request.client_order_id, OrderStatus.ACCEPTED,
                                          self.now_ns(), broker_order_id=n.broker_id))

    def _replace_failed(self, new: Tracked, new_leg: Tracked, reason: str) -> None:
        for n in (new, new_leg):
            old = self._orders.get(n.replaces)
            if old is not None and old.replaced_by == n.request.client_order_id:
                old.replaced_by = ""
            n.confirmed = True
            self._final(n, OrderStatus.REJECTED, f"replace refused: {reason}")
