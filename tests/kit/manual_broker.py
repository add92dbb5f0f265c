"""ManualBroker: a native-OCO execution client whose confirmations the test hands out one by one.

It behaves as DESIGN.md says a real broker does where the order manager's safety depends on it:
a cancel is only a request until `confirm_cancel`; an OCO pair is one unit whose legs share their
shares (a fill of one leg shrinks the other, a full fill cancels it); a replace keeps the pair
working until `confirm_replace`. Market orders fill at the next bar's open (optionally in parts)
so that a TradingNode can run real strategy sessions against it. It records every call it got.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from live_runner.core.models import Bar, Fill, OrderEvent, OrderRequest, OrderStatus, OrderType, Side


class ManualBroker:
    name = "manual"
    native_oco = True

    def __init__(self, partial_entry: int = 0) -> None:
        self.calls: list[tuple[Any, ...]] = []
        self.working: dict[str, OrderRequest] = {}
        self.filled: dict[str, int] = {}
        self.position: dict[str, int] = {}
        self.partial_entry = partial_entry  # first market-buy fill size (0: all at once)
        self._pending_replace: dict[str, tuple[str, str, OrderRequest, OrderRequest]] = {}
        self._execs = 0
        self._on_event: Any = None
        self._on_fill: Any = None

    def set_handlers(self, on_event: Any, on_fill: Any) -> None:
        self._on_event, self._on_fill = on_event, on_fill

    # --- what the runner calls -------------------------------------------------------------------
    def submit(self, req: OrderRequest) -> None:
        self.calls.append(("submit", req.client_order_id, req.side.value, req.qty))
        self._accept(req)

    def submit_oco(self, stop: OrderRequest, target: OrderRequest) -> None:
        self.calls.append(("oco", stop.client_order_id, target.client_order_id, stop.qty, stop.oco_group))
        self._accept(stop)
        self._accept(target)

    def replace_exits(self, old_stop: str, old_target: str, stop: OrderRequest, target: OrderRequest) -> None:
        self.calls.append(("replace", old_stop, old_target, stop.client_order_id, target.client_order_id, stop.qty))
        self._pending_replace[target.client_order_id] = (old_stop, old_target, stop, target)

    def cancel(self, cid: str) -> None:
        self.calls.append(("cancel", cid))

    def recover(self, req: OrderRequest, **_: Any) -> None:
        self._accept(req)

    def on_bar(self, bar: Bar) -> None:
        for cid, req in list(self.working.items()):
            if req.symbol == bar.symbol and req.order_type is OrderType.MARKET and req.ts <= bar.ts:
                left = req.qty - self.filled.get(cid, 0)
                qty = self.partial_entry if req.side is Side.BUY and self.partial_entry and \
                    not self.filled.get(cid) else left
                self.fill(cid, min(qty, left), bar.open, bar.ts)

    def end_session(self, ts: int) -> None:
        pass

    def positions(self) -> dict[str, int]:
        return {s: q for s, q in sorted(self.position.items()) if q}

    # --- what the test hands out ---------------------------------------------------------------
    def confirm_cancel(self, cid: str, ts: int = 0) -> None:
        if self.working.pop(cid, None) is not None:
            self._on_event(OrderEvent(cid, OrderStatus.CANCELED, ts))

    def confirm_replace(self, target_cid: str, ts: int = 0) -> None:
        old_stop, old_target, stop, target = self._pending_replace.pop(target_cid)
        for cid in (old_stop, old_target):
            self.working.pop(cid, None)
            self._on_event(OrderEvent(cid, OrderStatus.CANCELED, ts, "replaced"))
        self._accept(stop)
        self._accept(target)

    def reject(self, cid: str, reason: str = "refused", ts: int = 0) -> None:
        self.working.pop(cid, None)
        self._on_event(OrderEvent(cid, OrderStatus.REJECTED, ts, reason))

    def fill(self, cid: str, qty: int, price: float, ts: int = 0, *, oversell: bool = False) -> None:
        """Fill `qty` of a working order; its OCO sibling shrinks (or is canceled when this one is
        done), unless `oversell` plays a broker that lets both legs fill."""
        req = self.working[cid]
        self.filled[cid] = self.filled.get(cid, 0) + qty
        signed = qty if req.side is Side.BUY else -qty
        self.position[req.symbol] = self.position.get(req.symbol, 0) + signed
        self._execs += 1
        if self.filled[cid] >= req.qty:
            del self.working[cid]
        self._on_fill(Fill(cid, f"X{self._execs}", req.symbol, req.side, qty, price, Decimal("1.00"), ts))
        if req.oco_group and not oversell:
            for other, o in list(self.working.items()):
                if o.oco_group == req.oco_group and other != cid:
                    self.filled[other] = self.filled.get(other, 0) + qty
                    if cid not in self.working:
                        self.confirm_cancel(other, ts)

    def _accept(self, req: OrderRequest) -> None:
        self.working[req.client_order_id] = req
        self._on_event(OrderEvent(req.client_order_id, OrderStatus.ACCEPTED, req.ts,
                                  broker_order_id=req.client_order_id))

    def sells_sent(self) -> list[tuple[Any, ...]]:
        return [c for c in self.calls if c[0] == "submit" and c[2] == "sell"]
