"""Broker-native exits at IB: a position's stop and target as one OCA group per pair.

A pair is never resized here: the client offers no `replace_exits`, so the runner grows exits by
another OCA group for the shares bought after the pair was placed (execution/pairs.py). An IB
modify sets a leg's totalQuantity; when the other leg fills while the modify travels, IB has
shrunk this leg for that fill (ocaType 2) and the modify undoes it, so the group could sell more
than is held (the race suite found it: the target sells 900 of 1,000 while the stop is modified to
1,538; IB then holds a stop for 1,538 against 638).

- `submit_oco(stop, target)`: both orders go out with `ocaGroup = stop.oco_group` and
  `ocaType = ibkr.oca_type`. The default is 2, "reduce the others with block": a fill of either leg
  reduces the other by the filled shares, so with equal-sized legs a partial target fill leaves the
  stop covering exactly the shares still held, and the group ends when one leg is fully filled.
  With 1 ("cancel the others with block") IB cancels the other leg as soon as one executes, even
  partly, which would leave the rest of the position without a stop. Orders without a group are
  independent at IB: both legs could fill and the account would go short.
"""

from __future__ import annotations

from typing import Any

import msgspec

from live_runner.adapters.ibkr import compat
from live_runner.adapters.ibkr.reports import TrackedOrder
from live_runner.core.models import OrderRequest, OrderType, Side

NOT_SENT = "not sent"  # reason prefix of rejections that provably never reached the broker


class ExitsMixin:
    """OCA groups for IbkrExecutionClient (state lives on the client)."""

    native_oco = True
    _orders: dict[str, TrackedOrder]
    may_send: Any  # GatedSends, on the client (the lease fence)

    # --- the ExecutionClient's optional exits ----------------------------------------------------------
    def submit_oco(self, stop: OrderRequest, target: OrderRequest) -> None:
        """The stop and the target as one OCA group (the stop goes first: protection first)."""
        if not self.may_send("submit_oco"):  # the live service's lease fence
            return
        group = stop.oco_group or target.oco_group or target.client_order_id
        for req in (stop, target):
            self.submit(req if req.oco_group == group else msgspec.structs.replace(req, oco_group=group))  # type: ignore[attr-defined]

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

    @staticmethod
    def _oca_group(o: TrackedOrder) -> str:
        """The OCA group of the IB order behind `o`."""
        group = o.request.oco_group if o.request is not None else ""
        return group or (getattr(o.trade.order, "ocaGroup", "") if o.trade is not None else "")

    # --- OCA groups in the reports (called from reports.ReportsMixin) -----------------------------
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

