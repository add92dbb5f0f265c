"""Broker-native exits at IB: a position's stop and target as one OCA group per pair.

The runner never grows a pair here (`resize_in_place = False` on the client): shares bought after
the pair was placed get an OCA group of their own. A modify sets a leg's totalQuantity; when the
other leg fills while the modify travels, IB has shrunk this leg for that fill (ocaType 2) and the
modify undoes it, so the group could sell more than is held (the race suite found it: the target
sells 900 of 1,000 while the stop is modified to 1,538; IB then holds a stop for 1,538 against 638).

- `submit_oco(stop, target)`: both orders go out with `ocaGroup = stop.oco_group` and
  `ocaType = ibkr.oca_type`. The default is 2, "reduce the others with block": a fill of either leg
  reduces the other by the filled shares, so with equal-sized legs a partial target fill leaves the
  stop covering exactly the shares still held, and the group ends when one leg is fully filled.
  With 1 ("cancel the others with block") IB cancels the other leg as soon as one executes, even
  partly, which would leave the rest of the position without a stop. Orders without a group are
  independent at IB: both legs could fill and the account would go short.
- `replace_exits(old_stop, old_target, stop, target)` (kept, tested on the wire, unused by the
  runner for the reason above): each leg is modified in place (placeOrder
  again with the SAME orderId: new quantity, prices, and orderRef = the new client order id), never
  cancel-then-new. IB's totalQuantity counts what the orderId already filled, so it is sent as the
  new quantity plus the fills of that orderId. When IB shows the new orderRef the old client id is
  reported CANCELED ("replaced") and the new one ACCEPTED; fills are attributed by the orderRef
  they executed under. The IB ocaGroup keeps its first name (a leg whose modify IB refuses must
  stay in the same group as the other). A refused modify (filled order, mismatch...) rejects the new client id and
  the old one keeps working.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

import msgspec

from live_runner.adapters.ibkr import compat, mapping
from live_runner.adapters.ibkr.mapping import ErrorKind
from live_runner.adapters.ibkr.reports import TrackedOrder, log
from live_runner.core.models import OrderRequest, OrderStatus, OrderType, Side

if TYPE_CHECKING:
    import asyncio

NOT_SENT = "not sent"  # reason prefix of rejections that provably never reached the broker
_MODIFY_REFUSALS = (ErrorKind.ORDER_REJECTED, ErrorKind.DUPLICATE_ORDER_ID, ErrorKind.UNKNOWN)


class ExitsMixin:
    """OCA groups and modifies for IbkrExecutionClient (state lives on the client)."""

    native_oco = True
    _orders: dict[str, TrackedOrder]
    _outbox: "asyncio.Queue | None"
    stats: dict[str, Any]

    # --- the ExecutionClient's optional exits ----------------------------------------------------------
    def submit_oco(self, stop: OrderRequest, target: OrderRequest) -> None:
        """The stop and the target as one OCA group (the stop goes first: protection first)."""
        group = stop.oco_group or target.oco_group or target.client_order_id
        for req in (stop, target):
            self.submit(req if req.oco_group == group else msgspec.structs.replace(req, oco_group=group))  # type: ignore[attr-defined]

    def replace_exits(self, old_stop: str, old_target: str, stop: OrderRequest, target: OrderRequest) -> None:
        """Resize the working pair in place: the same IB orderIds, new quantity and orderRef."""
        for old_cid, req in ((old_stop, stop), (old_target, target)):
            self._modify(old_cid, req)

    # --- building and sending ------------------------------------------------------------------------
    def _ib_order(self, req: OrderRequest, qty: int) -> Any:
        action = "BUY" if req.side is Side.BUY else "SELL"
        if req.order_type is OrderType.LIMIT:
            order = compat.LimitOrder(action, qty, req.limit_price)
        elif req.order_type is OrderType.STOP:
            order = compat.StopOrder(action, qty, req.stop_price)
        else:
            order = compat.MarketOrder(action, qty)
        order.orderRef = req.client_order_id
        order.tif = "DAY"
        order.account = self.account  # type: ignore[attr-defined]
        order.outsideRth = self._outside_rth(req)  # type: ignore[attr-defined]
        if req.oco_group:
            order.ocaGroup = req.oco_group
            order.ocaType = self.config.oca_type  # type: ignore[attr-defined]
        return order

    def _modify(self, old_cid: str, req: OrderRequest) -> None:
        cid = req.client_order_id
        if cid in self._orders:
            log.error("duplicate client order id %s: not sent again", cid, extra={"client_order_id": cid})
            return
        old = self._orders.get(old_cid)
        o = self._orders[cid] = TrackedOrder(cid, req, replaces=old)
        problem = self._order_rule(req) or self._not_modifiable(old_cid, old)  # type: ignore[attr-defined]
        if not problem and (not self.connected or self._outbox is None):  # type: ignore[attr-defined]
            problem = "broker not connected"
        if problem:
            self.stats["rejected_not_sent"] += 1
            self._finish(o, OrderStatus.REJECTED, f"{NOT_SENT}: {problem}; {old_cid} keeps working")  # type: ignore[attr-defined]
            return
        assert old is not None and self._outbox is not None
        old.replacement = o
        self._outbox.put_nowait(("modify", o))

    @staticmethod
    def _oca_group(o: TrackedOrder) -> str:
        """The OCA group of the IB order behind `o` (the first of a chain of replaces)."""
        while o.replaces is not None:
            o = o.replaces
        group = o.request.oco_group if o.request is not None else ""
        return group or (getattr(o.trade.order, "ocaGroup", "") if o.trade is not None else "")

    @staticmethod
    def _not_modifiable(old_cid: str, old: TrackedOrder | None) -> str:
        if old is None or old.request is None:
            return f"no order {old_cid} to replace"
        if old.terminal is not None or old.deferred is not None:
            return f"{old_cid} is no longer working"
        if old.replacement is not None:
            return f"a replace of {old_cid} is already on its way"
        if old.cancel_requested:
            return f"{old_cid} is being canceled"
        if not old.sent or old.trade is None:
            return f"{old_cid} is not at the broker yet"
        return ""

    def _send_modify(self, o: TrackedOrder) -> None:
        """placeOrder with the old order's id: IB modifies it in place."""
        old = o.replaces
        assert old is not None and o.request is not None
        problem = "" if self.connected else "broker disconnected before sending"  # type: ignore[attr-defined]
        if not problem and (old.terminal is not None or old.trade is None or old.trade.isDone()):
            problem = f"{old.cid} is no longer working"
        if problem:
            if old.replacement is o:
                old.replacement = None
            self.stats["rejected_not_sent"] += 1
            self._finish(o, OrderStatus.REJECTED, f"{NOT_SENT}: {problem}")  # type: ignore[attr-defined]
            return
        order = self._ib_order(o.request, o.request.qty + o.prior_fills)
        group = self._oca_group(old)
        if group:  # the group IB knows the pair by (a leg whose modify fails must stay linked)
            order.ocaGroup = group
            order.ocaType = self.config.oca_type  # type: ignore[attr-defined]
        order.orderId = old.order_id
        o.order_id, o.perm_id, o.trade = old.order_id, old.perm_id, old.trade
        try:
            o.trade = self._ib.placeOrder(old.trade.contract, order)  # type: ignore[attr-defined]
        except ConnectionError:
            old.replacement = None
            self.stats["rejected_not_sent"] += 1
            self._finish(o, OrderStatus.REJECTED, f"{NOT_SENT}: broker disconnected before sending")  # type: ignore[attr-defined]
            return
        o.sent = True
        o.sent_at = time.time()
        self.stats["modifies_sent"] = self.stats.get("modifies_sent", 0) + 1

    # --- reports about modifies and OCA groups (called from reports.ReportsMixin) -------------------
    def _modify_refused(self, o: TrackedOrder, code: int, message: str, from_status: bool = False) -> bool:
        """An order error while a modify of `o` is on its way is IB refusing the modify: the new
        client id is rejected, and IB keeps the order as it was (the old client id works on)."""
        new = o.replacement
        if new is None or new.accepted or mapping.classify(code) not in _MODIFY_REFUSALS:
            return False
        o.replacement = None
        o.refused_modify_code = code if from_status else 0  # its error event is still to come
        new.acked = True
        self._finish(new, OrderStatus.REJECTED, f"ibkr {code}: {message} (modify refused; {o.cid} keeps working)")
        return True

    def _replaced(self, o: TrackedOrder) -> None:
        """IB shows the modify: the old client id ends as CANCELED "replaced", then `o` is accepted."""
        old = o.replaces
        assert old is not None
        if old.replacement is o:
            old.replacement = None
        self._finish(old, OrderStatus.CANCELED, "replaced")
        self._accept(o)

    def _orphan_replacement(self, o: TrackedOrder) -> None:
        """`o` ended (canceled, expired) while a modify of it was on its way: the modify cannot
        take effect, so its new client id is rejected."""
        new, o.replacement = o.replacement, None
        if new is not None and not new.accepted and new.terminal is None:
            self._finish(new, OrderStatus.REJECTED, f"the order it replaces ({o.cid}) ended before the modify")

    def _group_fill_pending(self, o: TrackedOrder) -> bool:
        """A fill of another order of `o`'s OCA group waits for its commission: IB's cancel of
        `o` (the group reacting to that fill) is reported after it, in causal order."""
        group = self._oca_group(o)
        return bool(group) and any(x.pending_qty for x in self._orders.values()
                                   if x is not o and x.terminal is None and self._oca_group(x) == group)

    def _flush_group(self, o: TrackedOrder) -> None:
        group = self._oca_group(o)
        if group:
            for x in list(self._orders.values()):
                if x is not o and x.deferred is not None and self._oca_group(x) == group:
                    self._flush_deferred(x)

