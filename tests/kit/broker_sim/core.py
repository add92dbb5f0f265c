"""The order book shared by the in-process simulated brokers of the race suite.

A `SimBroker` is an ExecutionClient (core/clients.py) that keeps its own book on the runner's
SimClock: orders arrive when `submit` is called, fill against a price path the driver feeds tick
by tick (`on_tick`), and every report reaches the runner later, through `clock.set_timer`, in the
broker's stream order, after a seeded random latency, never inside the call that caused it (the
real brokers report from the event loop). Seeded faults: partial fills, duplicate fill reports
(same exec id), an ACCEPTED that overtakes nothing and arrives after the fills, cancels confirmed
after a delay during which the order can still fill, and disconnects between a submit and its ack
(the order reached the broker or not; the runner learns which at the reconnect).

Broker-specific rules (Alpaca's share reservation, OCO unit and replace, IB's OCA groups) live
in the subclasses; `observer` is called after every broker-side event and every delivered report,
which is where the race checker runs.
"""

from __future__ import annotations

import random
from collections import Counter
from decimal import Decimal
from typing import Any, Callable

from live_runner.core.clock import SimClock
from live_runner.core.models import Bar, Fill, OrderEvent, OrderRequest, OrderStatus, OrderType, Side

from tests.kit.broker_sim.orders import MS, SimOrder, SimParams

class SimBroker:
    """Book, matching, report stream and faults; see the module docstring."""

    name = "sim"
    native_oco = True

    def __init__(self, clock: SimClock, rng: random.Random, params: SimParams | None = None) -> None:
        self.clock = clock
        self.rng = rng
        self.p = params or SimParams()
        self.orders: dict[str, SimOrder] = {}
        self.position: dict[str, int] = {}
        self.price: dict[str, float] = {}
        self.fills: list[Fill] = []  # every execution, in order (the broker's truth)
        self.received: set[str] = set()  # client order ids the runner sent (or asked to recover)
        self.stats: Counter[str] = Counter()
        self.log: list[tuple[int, str]] = []  # broker-side events for the trace
        self.errors: list[str] = []  # exceptions raised by the runner's handlers
        # Called at the end of every broker-side event the clock fires (the checker runs there);
        # events inside a runner call (an order arriving) are only logged: the runner is mid-way.
        self.observer: Callable[[str], None] = lambda label: None
        self.market_open = True
        self.chunks: list[int] = []  # scripted sizes of the next fills (regression scenarios)
        self.lose_roles: set[str] = set()  # scripted: the next submit of such a role is lost
        # Replacement ids asked for but not yet at the broker; a cancel of one waits for it.
        self.replacements: set[str] = set()
        self._cancel_on_arrival: set[str] = set()
        self._on_event: Callable[[OrderEvent], None] = lambda e: None
        self._on_fill: Callable[[Fill], None] = lambda f: None
        self._not_accepted: Callable[[OrderRequest, str, bool], None] | None = None
        self._connection: Callable[[bool, str], None] | None = None
        self._tail = 0  # time of the latest report in the stream (reports keep their order)
        self._down_until = 0  # a disconnect: reports wait until the reconnect
        self._lost: list[OrderRequest] = []
        self._seq = 0
        self._exec = 0

    # --- ExecutionClient --------------------------------------------------------------------
    def set_handlers(self, on_event: Callable[[OrderEvent], None], on_fill: Callable[[Fill], None]) -> None:
        self._on_event, self._on_fill = on_event, on_fill

    def set_not_accepted_handler(self, cb: Callable[[OrderRequest, str, bool], None]) -> None:
        self._not_accepted = cb

    def set_connection_handler(self, cb: Callable[[bool, str], None]) -> None:
        self._connection = cb

    def positions(self) -> dict[str, int]:
        return {s: q for s, q in sorted(self.position.items()) if q}

    def on_bar(self, bar: Bar) -> None:
        """The simulated market moves through `on_tick`; bars are the runner's view of it."""

    def end_session(self, ts: int) -> None:
        """Day orders expire at the close (`close_market`), not when the runner says so."""

    def recover(self, request: OrderRequest, *, filled: int = 0, notional: Decimal | None = None) -> None:
        cid = request.client_order_id
        self.received.add(cid)
        order = self.orders.get(cid)
        if order is None:
            self._report(lambda: self._refuse(request, "not found at the broker", True), f"not found {cid}")
        elif order.working:
            self._report(lambda: self._on_event(OrderEvent(cid, OrderStatus.ACCEPTED, self.now)), f"ack {cid}")

    def submit(self, request: OrderRequest) -> None:
        self._arrive([request], self._place_one)

    def cancel(self, client_order_id: str) -> None:
        order = self.orders.get(client_order_id)
        self.stats["cancel_requests"] += 1
        if order is None and client_order_id in self.replacements:
            self._cancel_on_arrival.add(client_order_id)  # the adapter cancels it once it exists
            return
        if order is None or not order.working or order.cancel_pending:
            self.stats["cancel_noop"] += 1  # 422 "not cancelable" at the broker: nothing to report
            return
        self._request_cancel(order)

    # --- the market --------------------------------------------------------------------------
    @property
    def now(self) -> int:
        return self.clock.now_ns()

    def on_tick(self, symbol: str, price: float) -> None:
        """A trade print: stops at or above it trigger, limits at or below it fill."""
        self.price[symbol] = price
        if not self.market_open:
            return
        for order in [o for o in self.orders.values() if o.req.symbol == symbol and o.working]:
            if not order.working:
                continue  # an OCO sibling filled just before
            req = order.req
            if req.order_type is OrderType.STOP and not order.triggered:
                if (price <= req.stop_price) if req.side is Side.SELL else (price >= req.stop_price):
                    order.triggered = True
                    self._fill_chunk(order, price, "stop triggered")
            elif req.order_type is OrderType.LIMIT:
                if (price >= req.limit_price) if req.side is Side.SELL else (price <= req.limit_price):
                    self._fill_chunk(order, req.limit_price, "limit touched")

    def close_market(self) -> None:
        """16:00 ET: day orders expire."""
        self.market_open = False
        for order in list(self.orders.values()):
            if order.working:
                order.status = "expired"
                self._terminal_report(order, OrderStatus.EXPIRED, "day order expired")

    # --- orders ------------------------------------------------------------------------------
    def _arrive(self, requests: list[OrderRequest], place: Callable[[list[OrderRequest]], None]) -> None:
        """Submit path: maybe a disconnect between the submit and its ack."""
        for r in requests:
            self.received.add(r.client_order_id)
        scripted = {r.role.value for r in requests} & self.lose_roles
        self.lose_roles -= scripted
        if scripted or (self.rng.random() < self.p.p_disconnect and self.now >= self._down_until):
            self._disconnect()
            if scripted or self.rng.random() < 0.5:  # lost on the way: the broker never had it
                self.stats["lost_in_disconnect"] += len(requests)
                self._lost.extend(requests)
                for r in requests:
                    self.orders[r.client_order_id] = SimOrder(r, r.qty, status="lost", reached=False)
                self.log.append((self.now, f"LOST in disconnect: {[r.client_order_id for r in requests]}"))
                return
        place(requests)

    def _place_one(self, requests: list[OrderRequest]) -> None:
        req = requests[0]
        refusal = self.refusal(req)
        order = SimOrder(req, req.qty)
        self.orders[req.client_order_id] = order
        if refusal:
            self._reject(order, refusal)
            return
        self._accept(order)

    def refusal(self, req: OrderRequest) -> str:
        """Why the broker refuses a new order ('' = accepted)."""
        return ""

    def _accept(self, order: SimOrder) -> None:
        self.log.append((self.now, f"accepted {order.cid} {order.req.side.value} {order.qty} "
                                   f"{order.req.symbol} {order.req.order_type.value} "
                                   f"stop={order.req.stop_price} limit={order.req.limit_price}"))
        cid = order.cid
        if self.rng.random() < self.p.p_late_ack:
            self.stats["late_acks"] += 1  # the REST answer arrives after the stream's fills
            at = self.now + self._ms(self.p.ack_ms) + self._ms((500, 3000))
            self._at(at, lambda: self._on_event(OrderEvent(cid, OrderStatus.ACCEPTED, self.now)),
                     f"late ack {cid}")
        else:
            self._report(lambda: self._on_event(OrderEvent(cid, OrderStatus.ACCEPTED, self.now)), f"ack {cid}")
        order.status = "accepted"
        self.replacements.discard(cid)
        if cid in self._cancel_on_arrival:
            self._cancel_on_arrival.discard(cid)
            self._request_cancel(order)
        if order.req.order_type is OrderType.MARKET:
            self._schedule_market(order)

    def _reject(self, order: SimOrder, reason: str) -> None:
        order.status = "rejected"
        self.replacements.discard(order.cid)
        self._cancel_on_arrival.discard(order.cid)
        self.stats["rejects"] += 1
        self._terminal_report(order, OrderStatus.REJECTED, reason)

    def _schedule_market(self, order: SimOrder) -> None:
        def fill(_: int) -> None:
            if order.working and self.market_open:
                self._fill_chunk(order, self.price[order.req.symbol], "market")
                self.observer(f"{self.name} market fill {order.cid}")
        self._seq += 1
        self.clock.set_timer(f"{self.name}:mkt:{self._seq}", self.now + self._ms(self.p.market_fill_ms), fill)

    def _fill_chunk(self, order: SimOrder, price: float, why: str) -> None:
        left = order.remaining
        q = left
        if self.chunks:
            q = min(self.chunks.pop(0), left)
            self.stats["partial_fills"] += q < left
        elif left > 1 and self.rng.random() < self.p.p_partial:
            q = self.rng.randint(1, left - 1)
            self.stats["partial_fills"] += 1
        self._execute(order, q, price, why)
        if order.working and (order.req.order_type is OrderType.MARKET or order.triggered):
            self._schedule_market(order)  # the rest of a market (or triggered stop) order

    def _execute(self, order: SimOrder, q: int, price: float, why: str) -> None:
        req = order.req
        sym = req.symbol
        self._exec += 1
        fill = Fill(req.client_order_id, f"{self.name}-E{self._exec}", sym, req.side, q, round(price, 2),
                    Decimal("0"), self.now)
        self.fills.append(fill)
        order.filled += q
        signed = q if req.side is Side.BUY else -q
        self.position[sym] = self.position.get(sym, 0) + signed
        self.stats["fills"] += 1
        if order.cancel_pending:
            self.stats["fills_during_cancel"] += 1
        if order.remaining <= 0:
            order.status = "filled"
            order.reported_terminal = True  # the fill report tells it
        else:
            order.status = "partially_filled"
        self.log.append((self.now, f"FILL {req.client_order_id} {req.side.value} {q} {sym} @ {price:.2f} "
                                   f"({why}; position {self.position[sym]})"))
        self._report(lambda: self._on_fill(fill), f"fill {fill.exec_id} {req.client_order_id}")
        if self.rng.random() < self.p.p_duplicate:
            self.stats["duplicate_reports"] += 1
            self._report(lambda: self._on_fill(fill), f"duplicate fill {fill.exec_id}")
        if order.group is not None:
            self.group_fill(order, q)

    def group_fill(self, order: SimOrder, q: int) -> None:
        """The siblings of a filled order: reduced by the fill, or cancelled."""
        group = order.group
        assert group is not None
        for other in group.working():
            if other is order:
                continue
            if group.reduce:
                other.qty -= q
                if other.remaining <= 0:
                    other.qty = other.filled
                    other.status = "canceled"
                    self._terminal_report(other, OrderStatus.CANCELED, "oco: the other leg filled")
            else:
                other.status = "canceled"
                self._terminal_report(other, OrderStatus.CANCELED, "oca: another order of the group filled")

    def _request_cancel(self, order: SimOrder) -> None:
        order.cancel_pending = True
        self.log.append((self.now, f"cancel requested {order.cid}"))

        def confirm(_: int) -> None:
            order.cancel_pending = False
            self.confirm_cancel(order)
            self.observer(f"{self.name} cancel confirmed {order.cid}")
        self._seq += 1
        self.clock.set_timer(f"{self.name}:cxl:{self._seq}", self.now + self._ms(self.p.cancel_ms), confirm)

    def confirm_cancel(self, order: SimOrder) -> None:
        if order.working:
            order.status = "canceled"
            self.stats["cancels"] += 1
            self._terminal_report(order, OrderStatus.CANCELED, "canceled")

    # --- reports -----------------------------------------------------------------------------
    def _terminal_report(self, order: SimOrder, status: OrderStatus, reason: str) -> None:
        cid = order.cid

        def deliver() -> None:
            order.reported_terminal = True
            self._on_event(OrderEvent(cid, status, self.now, reason))
        self.log.append((self.now, f"{status.value.upper()} {cid}: {reason}"))
        self._report(deliver, f"{status.value} {cid}")

    def _refuse(self, req: OrderRequest, reason: str, recovering: bool) -> None:
        if self._not_accepted is not None:
            self._not_accepted(req, reason, recovering)
        else:
            self._on_event(OrderEvent(req.client_order_id, OrderStatus.REJECTED, self.now, reason))

    def _report(self, deliver: Callable[[], None], label: str) -> None:
        """Into the stream: after the latest report, and after a reconnect."""
        at = max(self._tail, self.now + self._ms(self.p.ack_ms), self._down_until)
        self._tail = at
        self._at(at, deliver, label)

    def _at(self, at: int, deliver: Callable[[], None], label: str) -> None:
        def run(_: int) -> None:
            self.stats["reports"] += 1
            try:
                deliver()
            except Exception as exc:  # the runner must never raise out of a report handler
                self.errors.append(f"{label}: {type(exc).__name__}: {exc}")
            self.log.append((self.now, f"delivered: {label}"))
            self.observer(f"report {label}")
        self._seq += 1
        self.clock.set_timer(f"{self.name}:rep:{self._seq}", at, run)

    def _disconnect(self) -> None:
        self.stats["disconnects"] += 1
        self._down_until = self.now + self._ms(self.p.disconnect_ms)
        self.log.append((self.now, "DISCONNECTED"))
        if self._connection is not None:
            self._connection(False, "simulated disconnect")

        def reconnect(_: int) -> None:
            self.log.append((self.now, "RECONNECTED"))
            lost, self._lost = self._lost, []
            for cb in ([lambda: self._connection(True, "simulated reconnect")] if self._connection else []):
                self._guard(cb, "reconnect")
            for req in lost:  # looked up by client order id: absent, so provably not accepted
                self.orders[req.client_order_id].reported_terminal = True
                self._guard(lambda req=req: self._refuse(req, "not found at the broker after a reconnect", False),
                            f"not accepted {req.client_order_id}")
            self.observer("reconnected")
        self._seq += 1
        self.clock.set_timer(f"{self.name}:up:{self._seq}", self._down_until, reconnect)

    def _guard(self, fn: Callable[[], Any], label: str) -> None:
        try:
            fn()
        except Exception as exc:
            self.errors.append(f"{label}: {type(exc).__name__}: {exc}")

    def _ms(self, bounds: tuple[int, int]) -> int:
        return self.rng.randint(bounds[0] * MS, bounds[1] * MS)

    # --- views for the checker ---------------------------------------------------------------
    def working(self, symbol: str) -> list[SimOrder]:
        return [o for o in self.orders.values() if o.working and o.req.symbol == symbol]

    def working_sells(self, symbol: str) -> int:
        """Shares the working sell orders can still sell, a group counted once."""
        total, seen = 0, set()
        for o in self.working(symbol):
            if o.req.side is not Side.SELL:
                continue
            if o.group is None:
                total += o.remaining
            elif id(o.group) not in seen:
                seen.add(id(o.group))
                total += o.group.remaining()
        return total

    def protected(self, symbol: str) -> int:
        """Shares covered by a working stop or a working market sell (a group counted once), plus
        stops the runner has not yet been told are gone (it cannot act before it knows)."""
        total, seen = 0, set()
        for o in self.orders.values():
            req = o.req
            if req.symbol != symbol or req.side is not Side.SELL:
                continue
            if req.order_type is OrderType.LIMIT:
                continue
            if o.working or (req.order_type is OrderType.STOP and not o.reported_terminal
                             and o.status != "filled"):
                if o.group is not None and o.working:
                    if id(o.group) in seen:
                        continue
                    seen.add(id(o.group))
                total += o.remaining if o.working else o.req.qty
        return total
