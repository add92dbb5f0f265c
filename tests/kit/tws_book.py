"""The order book of the fake TWS: what IB does with orders, without any socket (clock injected).

Written from IB's documentation, so that a client that would lose money at IB loses it here too:
- OCA groups (`ocaGroup`, `ocaType`): 1 cancels the other orders of the group when one fills,
  even partly; 2 (and 3, simulated like 2: no overfill) reduces the others by the filled quantity
  and cancels an order reduced to nothing. Orders with an empty group are independent: a stop and
  a target for the same shares can BOTH fill, and the account goes short (IB allows shorting).
- Modify: placeOrder with the orderId of a working order of the same client changes it in place
  (quantity, prices, orderRef, OCA fields); a filled order cannot be modified (104), a cancelled
  one's id is a duplicate (103), a different contract/side/type does not match (105).
- Cancel is a request: PendingCancel at once; Cancelled (202) only `cancel_delay_s` later on the
  book's clock (moved by `advance`), and until then the order can still trigger and fill.
- Stops and limits trigger from a price path the test drives (`set_price`, or `trade_bar`).
- Each fill: execDetails, orderStatus, openOrder once Filled, what the OCA group did to the other
  orders, commissionReport, then positions, which follow fills and may go negative.

Every call returns the notes to send, in order, each with a snapshot of the order as it was then:
("status", order) (openOrder + orderStatus), ("order_status", order), ("exec", execution, order),
("commission", execution), ("error", order, code, message), ("error_id", order_id, code, message), ("position", key, qty, cost).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from decimal import ROUND_HALF_UP, Decimal
from typing import Any, Callable

Note = tuple[Any, ...]
DONE = ("Filled", "Cancelled", "Inactive")


@dataclass(eq=False)
class FakeOrder:
    order_id: int
    client_id: int
    perm_id: int
    con_id: int
    symbol: str
    action: str
    qty: float
    order_type: str
    lmt_price: float
    aux_price: float
    tif: str
    account: str
    order_ref: str
    outside_rth: bool
    fields: list[str]
    oca_group: str = ""
    oca_type: int = 0
    status: str = "PreSubmitted"
    filled: float = 0.0
    avg_price: float = 0.0
    last_fill_price: float = 0.0
    commission: Decimal = Decimal(0)
    updated: datetime = field(default_factory=lambda: datetime.now(timezone.utc))
    cancel_due: datetime | None = None  # a cancel requested, confirmed at this time
    modifications: int = 0

    @property
    def done(self) -> bool:
        return self.status in DONE

    @property
    def remaining(self) -> float:
        return max(0.0, self.qty - self.filled)


@dataclass(eq=False)
class FakeExecution:
    exec_id: str
    order: FakeOrder
    shares: float
    price: float
    time: datetime
    cum_qty: float
    avg_price: float
    commission: Decimal
    order_ref: str = ""  # the orderRef when it executed (a later modify does not rewrite it)


class ManualClock:
    """The fake's time: moves only when the test says so (`advance`, or a bar's timestamp)."""

    def __init__(self, start: datetime | None = None) -> None:
        self.at = start or datetime.now(timezone.utc).replace(microsecond=0)

    def __call__(self) -> datetime:
        return self.at


def _snap(o: FakeOrder) -> FakeOrder:
    return copy.copy(o)


class TwsBook:
    def __init__(self, accounts: tuple[str, ...] = ("DU123",), clock: Callable[[], datetime] | None = None,
                 cancel_delay_s: float = 0.0, default_price: float = 10.0,
                 commission_per_share: str = "0.0035", commission_min: str = "0.35") -> None:
        self.accounts = accounts
        self.clock: Callable[[], datetime] = clock or ManualClock()
        self.cancel_delay_s = cancel_delay_s
        self.default_price = default_price
        self.per_share = Decimal(commission_per_share)
        self.min_commission = Decimal(commission_min)
        self.orders: list[FakeOrder] = []
        self.executions: list[FakeExecution] = []
        self.positions: dict[tuple[str, str], list[float]] = {}  # (account, symbol) -> [qty, cost]
        self.last: dict[str, float] = {}  # the price path set by the test
        self.cancels_requested: list[tuple[int, int]] = []  # (client id, order id)
        self._perm = 900_000
        self._exec_seq = 0
        self._con_ids: dict[str, int] = {}

    # --- lookups -------------------------------------------------------------------------------
    def con_id(self, symbol: str) -> int:
        return self._con_ids.setdefault(symbol, 265_598 + len(self._con_ids))

    def find(self, client_id: int, order_id: int) -> FakeOrder | None:
        for o in self.orders:
            if o.order_id == order_id and o.client_id == client_id:
                return o
        return None

    def by_ref(self, order_ref: str) -> FakeOrder:
        [o] = [o for o in self.orders if o.order_ref == order_ref]
        return o

    def position(self, symbol: str, account: str | None = None) -> float:
        return self.positions.get((account or self.accounts[0], symbol), [0.0, 0.0])[0]

    def next_perm(self) -> int:
        self._perm += 1
        return self._perm

    # --- orders --------------------------------------------------------------------------------
    def modify(self, o: FakeOrder, new: FakeOrder) -> list[Note]:
        """placeOrder with a working order's id: change it in place, as TWS does."""
        if o.status == "Filled":
            return [("error", _snap(o), 104, "Can't modify a filled order.")]
        if o.done:
            return [("error", _snap(o), 103, "Duplicate order id")]
        if (new.symbol, new.action, new.order_type) != (o.symbol, o.action, o.order_type):
            return [("error", _snap(o), 105, "Order being modified does not match original order.")]
        if new.qty <= o.filled:
            return [("error", _snap(o), 105, "Order quantity cannot be below the quantity already filled.")]
        o.qty, o.lmt_price, o.aux_price, o.tif = new.qty, new.lmt_price, new.aux_price, new.tif
        o.order_ref, o.oca_group, o.oca_type, o.fields = new.order_ref, new.oca_group, new.oca_type, new.fields
        o.outside_rth = new.outside_rth
        o.modifications += 1
        o.updated = self.clock()
        return [("status", _snap(o))] + self.match(o.symbol)

    def add(self, o: FakeOrder, fill_market: float | None = None) -> list[Note]:
        """A new order: PreSubmitted, then Submitted and matched against the last price (a market
        order fills at once at `fill_market` when given)."""
        self.orders.append(o)
        o.updated = self.clock()
        notes: list[Note] = [("status", _snap(o))]
        if o.order_type == "MKT" and fill_market is not None:
            return notes + self.fill_market(o, fill_market)
        o.status = "Submitted"
        return notes + [("status", _snap(o))] + (self.match(o.symbol) if o.order_type != "MKT" else [])

    def fill_market(self, o: FakeOrder, price: float | None = None) -> list[Note]:
        """A market order fills at once at the last price (or the given one)."""
        px = price if price is not None else self.last.get(o.symbol, self.default_price)
        return self.execute(o, o.remaining, px)

    def cancel(self, client_id: int, order_id: int) -> list[Note]:
        """The request: PendingCancel now, Cancelled after the delay (or at once without one)."""
        self.cancels_requested.append((client_id, order_id))
        o = self.find(client_id, order_id)
        if o is None:
            return [("error_id", order_id, 10147, f"OrderId {order_id} that needs to be cancelled is not found.")]
        if o.done:
            return [("error", _snap(o), 10148, f"OrderId {order_id} that needs to be cancelled cannot be cancelled, "
                                        f"state: {o.status}.")]
        if o.cancel_due is not None:
            return []
        o.cancel_due = self.clock() + timedelta(seconds=self.cancel_delay_s)
        if self.cancel_delay_s <= 0:
            return self._confirm_cancel(o)
        o.status = "PendingCancel"
        return [("order_status", _snap(o))]

    def _confirm_cancel(self, o: FakeOrder, code: int = 202, message: str = "Order Canceled - reason:") -> list[Note]:
        o.cancel_due = None
        if o.done:
            return []  # it filled while the cancel was pending: nothing left to cancel
        o.status = "Cancelled"
        o.updated = self.clock()
        return [("error", _snap(o), code, message), ("order_status", _snap(o))]

    def cancel_by_broker(self, o: FakeOrder, code: int, message: str) -> list[Note]:
        return self._confirm_cancel(o, code, message)

    def advance(self, seconds: float) -> list[Note]:
        """Time passes at the broker: due cancel confirmations arrive (in request order)."""
        clock = self.clock
        if isinstance(clock, ManualClock):
            clock.at += timedelta(seconds=seconds)
        now = clock()
        notes: list[Note] = []
        for o in sorted((x for x in self.orders if x.cancel_due is not None), key=lambda x: x.cancel_due):
            if o.cancel_due <= now:
                notes += self._confirm_cancel(o)
        return notes

    # --- the market ----------------------------------------------------------------------------
    def set_price(self, symbol: str, price: float, volume: float | None = None) -> list[Note]:
        """The market trades at `price` (up to `volume` shares): resting orders it reaches fill."""
        self.last[symbol] = price
        return self.match(symbol, volume)

    def match(self, symbol: str, volume: float | None = None) -> list[Note]:
        price = self.last.get(symbol)
        if price is None:
            return []
        notes: list[Note] = []
        left = float("inf") if volume is None else volume
        for o in list(self.orders):  # in placement order; an OCA fill changes the later ones
            if left <= 0:
                break
            if o.symbol != symbol or o.done or o.remaining <= 0:
                continue
            px = self._trigger_price(o, price)
            if px is None:
                continue
            qty = min(o.remaining, left)
            left -= qty
            notes += self.execute(o, qty, px)
        return notes

    @staticmethod
    def _trigger_price(o: FakeOrder, price: float) -> float | None:
        sell = o.action == "SELL"
        if o.order_type == "MKT":
            return price
        if o.order_type == "STP":
            return price if (price <= o.aux_price if sell else price >= o.aux_price) else None
        if o.order_type == "LMT":
            return o.lmt_price if (price >= o.lmt_price if sell else price <= o.lmt_price) else None
        return None

    def trade_bar(self, symbol: str, o: float, h: float, l: float, c: float) -> list[Note]:
        """One bar, as the paper broker matches it: market at the open, then stops, then limits."""
        notes: list[Note] = []
        book = [x for x in self.orders if x.symbol == symbol and not x.done]
        for x in book:
            if x.order_type == "MKT" and not x.done:
                notes += self.execute(x, x.remaining, o)
        for x in book:
            if x.done or x.order_type != "STP":
                continue
            stop = x.aux_price
            if x.action == "SELL" and l <= stop:
                notes += self.execute(x, x.remaining, o if o < stop else stop)
            elif x.action == "BUY" and h >= stop:
                notes += self.execute(x, x.remaining, o if o > stop else stop)
        for x in book:
            if x.done or x.order_type != "LMT":
                continue
            lim = x.lmt_price
            if x.action == "SELL" and h >= lim:
                notes += self.execute(x, x.remaining, o if o > lim else lim)
            elif x.action == "BUY" and l <= lim:
                notes += self.execute(x, x.remaining, o if o < lim else lim)
        self.last[symbol] = c
        return notes

    def execute(self, o: FakeOrder, qty: float, price: float) -> list[Note]:
        """One execution of `qty` shares of `o`, with its commission, position and OCA effects."""
        if qty <= 0:
            return []
        self._exec_seq += 1
        now = self.clock()
        before = o.commission
        total = max(self.min_commission, self.per_share * Decimal(int(o.filled + qty))).quantize(
            Decimal("0.01"), rounding=ROUND_HALF_UP)  # cumulative per order, to the cent
        o.avg_price = (o.avg_price * o.filled + price * qty) / (o.filled + qty)
        o.filled += qty
        o.last_fill_price = price
        o.commission = total
        o.status = "Filled" if o.filled >= o.qty else ("PendingCancel" if o.cancel_due else "Submitted")
        if o.done:
            o.cancel_due = None
        o.updated = now
        ex = FakeExecution(f"{o.perm_id:08x}.{self._exec_seq:08x}.01.01", o, qty, price, now, o.filled,
                           o.avg_price, total - before, o.order_ref)
        self.executions.append(ex)
        key = (o.account or self.accounts[0], o.symbol)
        pos = self.positions.setdefault(key, [0.0, 0.0])
        signed = qty if o.action == "BUY" else -qty
        pos[1] = (pos[0] * pos[1] + signed * price) / (pos[0] + signed) if pos[0] + signed else 0.0
        pos[0] += signed
        # IB applies the OCA group at the execution; the commission report is computed after it
        return ([("exec", ex, _snap(o))] + self._oca(o, qty)
                + [("commission", ex), ("position", key, pos[0], pos[1])])

    def _oca(self, o: FakeOrder, qty: float) -> list[Note]:
        """What a fill of `qty` shares of `o` does to the other orders of its OCA group."""
        if not o.oca_group:
            return []
        notes: list[Note] = []
        for x in self.orders:
            if x is o or x.done or x.oca_group != o.oca_group or x.account != o.account:
                continue
            if o.oca_type == 1:
                notes += self._confirm_cancel(x, 202, "Order Canceled - reason:OCA group cancel")
            else:  # 2 (and 3): reduce by the filled quantity
                x.qty = max(x.filled, x.qty - qty)
                x.updated = self.clock()
                if x.remaining <= 0:
                    notes += self._confirm_cancel(x, 202, "Order Canceled - reason:OCA group reduced to zero")
                else:
                    notes.append(("status", _snap(x)))
        return notes
