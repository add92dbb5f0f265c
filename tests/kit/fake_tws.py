"""A fake TWS / IB Gateway on 127.0.0.1 (port 0) for running the real ib_async / ib_insync client.

It speaks the real framing and layouts (`tws_wire`), answers the connect sequence (nextValidId,
managedAccounts, open/completed orders, positions, account updates, executions), and keeps a small
order book per client id: market orders fill at once (or on `trade_bar`), limit and stop orders
rest until `fill`/`trade_bar`; cancels answer 202 + Cancelled. Every message received is logged
with its arrival time (`received`), so tests can count placeOrders per orderRef or measure rates.

Fault hooks: `drop_on_place` (close the socket right after a placeOrder, before or after the ack,
with or without booking the order), `go_down`/`come_up`/`restart` (a Gateway restart: listener
closed, sessions cut, book kept), `duplicate_exec`, `corrupt_next_exec`, `reject` (a rule giving
an error code such as 201), `send_error` (e.g. farm notices 2104/2106/2158), `send_raw`.
Runs in its own thread with its own event loop, like a real Gateway in another process, so the
arrival times it records do not depend on how busy the client's loop is. Test-side calls are
marshalled onto that loop (stdlib only: asyncio streams and one thread).
"""

from __future__ import annotations

import asyncio
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from decimal import ROUND_HALF_UP, Decimal
from typing import Any, Callable

from tests.kit import tws_wire as wire


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
    status: str = "PreSubmitted"
    filled: float = 0.0
    avg_price: float = 0.0
    last_fill_price: float = 0.0
    commission: Decimal = Decimal(0)
    updated: datetime = field(default_factory=lambda: datetime.now(timezone.utc))

    @property
    def done(self) -> bool:
        return self.status in ("Filled", "Cancelled", "Inactive")


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


@dataclass(eq=False)
class _Session:
    writer: asyncio.StreamWriter
    client_id: int = -1

    def send(self, fields: list[Any]) -> None:
        if not self.writer.is_closing():
            self.writer.write(wire.frame(fields))


class FakeTws:
    def __init__(self, accounts: tuple[str, ...] = ("DU123",), next_order_id: int = 1,
                 market_fill: bool = True, default_price: float = 10.0,
                 commission_per_share: str = "0.0035", commission_min: str = "0.35") -> None:
        self.accounts = accounts
        self.next_valid_id = next_order_id
        self.market_fill = market_fill
        self.prices: dict[str, float] = {}
        self.default_price = default_price
        self.per_share = Decimal(commission_per_share)
        self.min_commission = Decimal(commission_min)
        self.port = 0
        self.up = False
        self.now: Callable[[], datetime] = lambda: datetime.now(timezone.utc)
        self.orders: list[FakeOrder] = []
        self.executions: list[FakeExecution] = []
        self.positions: dict[tuple[str, str], list[float]] = {}  # (account, symbol) -> [qty, cost]
        self.received: list[tuple[float, int, list[str]]] = []  # (monotonic, client id, fields)
        self.sessions: list[_Session] = []
        self.handshakes = 0
        # faults
        self.drop_on_place: dict[str, bool] | None = None  # {"ack": bool, "accept": bool}
        self.duplicate_exec = False
        self.corrupt_next_exec = False
        self.reject: Callable[[FakeOrder], tuple[int, str] | None] = lambda o: None
        self._server: asyncio.AbstractServer | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._perm = 900_000
        self._exec_seq = 0
        self._con_ids: dict[str, int] = {}

    # --- lifecycle (awaited from the test's loop; the work runs on the fake's own loop) -------------
    async def start(self) -> "FakeTws":
        ready = threading.Event()

        def serve() -> None:
            loop = asyncio.new_event_loop()
            self._loop = loop
            loop.call_soon(ready.set)
            loop.run_forever()
            loop.close()

        self._thread = threading.Thread(target=serve, name="fake-tws", daemon=True)
        self._thread.start()
        ready.wait(5)
        await self.come_up()
        return self

    async def _on_loop(self, coro: Any) -> Any:
        return await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(coro, self._loop))

    def _sync(self, fn: Callable[..., Any], *args: Any) -> Any:
        """Run fn on the fake's loop and wait for its result (quick: no client I/O involved)."""
        async def call() -> Any:
            return fn(*args)
        return asyncio.run_coroutine_threadsafe(call(), self._loop).result(5)

    async def come_up(self) -> None:
        async def up() -> None:
            self._server = await asyncio.start_server(self._handle, "127.0.0.1", self.port, reuse_address=True)
            self.port = self._server.sockets[0].getsockname()[1]
            self.up = True
        await self._on_loop(up())

    async def go_down(self) -> None:
        """The Gateway goes away: no listener, every session cut (the book survives)."""
        async def down() -> None:
            self.up = False
            if self._server is not None:
                self._server.close()
            for s in list(self.sessions):
                s.writer.transport.abort()
            self.sessions.clear()
            await asyncio.sleep(0)
        await self._on_loop(down())

    async def restart(self, down_s: float = 0.3, while_down: Callable[[], Any] | None = None) -> None:
        await self.go_down()
        if while_down is not None:
            result = while_down()
            if asyncio.iscoroutine(result):
                await result
        await asyncio.sleep(down_s)
        await self.come_up()

    async def stop(self) -> None:
        if self._loop is None or self._loop.is_closed():
            return
        await self.go_down()
        if self._server is not None:
            await self._on_loop(self._server.wait_closed())
        self._loop.call_soon_threadsafe(self._loop.stop)
        await asyncio.to_thread(self._thread.join, 5)

    # --- queries for tests -------------------------------------------------------------------------
    def messages(self, msg_id: int) -> list[list[str]]:
        return [f for _, _, f in list(self.received) if f and f[0] == str(msg_id)]

    def placed(self, order_ref: str) -> list[list[str]]:
        """placeOrder messages carrying this orderRef (field 26 at these versions)."""
        return [f for f in self.messages(3) if len(f) > 26 and f[26] == order_ref]

    def order(self, order_ref: str) -> FakeOrder:
        [o] = [o for o in list(self.orders) if o.order_ref == order_ref]
        return o

    # --- the connection ------------------------------------------------------------------------------
    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        s = _Session(writer)
        try:
            if await reader.readexactly(4) != b"API\0":
                writer.close()
                return
            versions = (await wire.read_message(reader))[0]  # "v157..178"
            high = int(versions.lstrip("v").split("..")[1].split()[0])
            s.send([min(wire.SERVER_VERSION, high), datetime.now().strftime("%Y%m%d %H:%M:%S EST")])
            start = await wire.read_message(reader)  # startApi: 71, 2, clientId, optCapab
            s.client_id = int(start[2])
            self.handshakes += 1
            self.sessions.append(s)
            s.send([9, 1, self._next_id()])
            s.send([15, 1, ",".join(self.accounts)])
            while True:
                fields = await wire.read_message(reader)
                self.received.append((time.monotonic(), s.client_id, fields))
                self._dispatch(s, fields)
        except (asyncio.IncompleteReadError, ConnectionError, OSError):
            pass
        finally:
            if s in self.sessions:
                self.sessions.remove(s)
            writer.transport.abort()

    def _next_id(self) -> int:
        used = [o.order_id for o in self.orders]
        return max([self.next_valid_id] + [i + 1 for i in used])

    def _dispatch(self, s: _Session, f: list[str]) -> None:
        msg = int(f[0])
        if msg == 3:
            self._place(s, f)
        elif msg == 4:
            self._cancel(s, int(f[2]))
        elif msg in (5, 16):  # reqOpenOrders (this client) / reqAllOpenOrders
            for o in self.orders:
                if not o.done and (msg == 16 or o.client_id == s.client_id):
                    s.send(wire.open_order(o, o.status))
                    s.send(wire.order_status(o))
            s.send([53, 1])
        elif msg == 99:
            for o in self.orders:
                if o.done:
                    s.send(wire.completed_order(o))
            s.send([102])
        elif msg == 7:
            self._executions(s, f)
        elif msg == 61:
            for (acct, sym), (qty, cost) in self.positions.items():
                s.send(wire.position(acct, self._con_id(sym), sym, qty, cost))
            s.send([62, 1])
        elif msg == 6:
            if f[2] == "1":
                s.send([54, 1, f[3]])
        elif msg == 76:
            s.send([74, 1, f[2]])
        elif msg == 8:
            s.send([9, 1, self._next_id()])
        elif msg == 49:
            s.send([49, 1, int(time.time())])

    # --- orders ---------------------------------------------------------------------------------------
    def _con_id(self, symbol: str) -> int:
        return self._con_ids.setdefault(symbol, 265_598 + len(self._con_ids))

    def _place(self, s: _Session, f: list[str]) -> None:
        order_id, symbol = int(f[1]), f[3]
        self._perm += 1
        o = FakeOrder(order_id, s.client_id, self._perm, self._con_id(symbol), symbol, f[16],
                      float(f[17]), f[18], float(f[19] or 0), float(f[20] or 0), f[21], f[23], f[26],
                      f[33] == "1", f)
        if any(x.order_id == order_id and x.client_id == s.client_id for x in self.orders):
            s.send(wire.error(order_id, 103, "Duplicate order id"))
            return
        fault, self.drop_on_place = self.drop_on_place, None
        if fault is not None:
            if fault.get("accept", True):
                self.orders.append(o)
                o.status = "Submitted" if o.order_type != "MKT" else "PreSubmitted"
                if fault.get("ack", False):
                    s.send(wire.open_order(o, o.status))
                    s.send(wire.order_status(o))
                s.writer.transport.abort()
                if o.order_type == "MKT" and self.market_fill:
                    self._execute(o, o.qty, self.prices.get(symbol, self.default_price))
            else:
                s.writer.transport.abort()
            return
        rejection = self.reject(o)
        if rejection is not None:
            o.status = "Inactive"
            self.orders.append(o)
            s.send(wire.error(order_id, rejection[0], rejection[1]))
            s.send(wire.order_status(o))
            return
        self.orders.append(o)
        s.send(wire.open_order(o, "PreSubmitted"))
        s.send(wire.order_status(o))
        if o.order_type == "MKT" and self.market_fill:
            self._execute(o, o.qty, self.prices.get(symbol, self.default_price))
        else:
            o.status = "Submitted"
            s.send(wire.open_order(o, o.status))
            s.send(wire.order_status(o))

    def _cancel(self, s: _Session, order_id: int) -> None:
        mine = [o for o in self.orders if o.order_id == order_id and o.client_id == s.client_id]
        if not mine:
            s.send(wire.error(order_id, 10147, f"OrderId {order_id} that needs to be cancelled is not found."))
            return
        o = mine[0]
        if o.done:
            s.send(wire.error(order_id, 10148, f"OrderId {order_id} that needs to be cancelled cannot be "
                                               f"cancelled, state: {o.status}."))
            return
        o.status = "Cancelled"
        o.updated = self.now()
        s.send(wire.error(order_id, 202, "Order Canceled - reason:"))
        s.send(wire.order_status(o))

    def _session_for(self, client_id: int) -> _Session | None:
        for s in reversed(self.sessions):
            if s.client_id == client_id:
                return s
        return None

    def _execute(self, o: FakeOrder, qty: float, price: float) -> FakeExecution:
        self._exec_seq += 1
        before = o.commission
        total = max(self.min_commission, self.per_share * Decimal(int(o.filled + qty))).quantize(
            Decimal("0.01"), rounding=ROUND_HALF_UP)  # cumulative per order, to the cent
        o.avg_price = (o.avg_price * o.filled + price * qty) / (o.filled + qty)
        o.filled += qty
        o.last_fill_price = price
        o.commission = total
        o.status = "Filled" if o.filled >= o.qty else "Submitted"
        o.updated = self.now()
        ex = FakeExecution(f"{o.perm_id:08x}.{self._exec_seq:08x}.01.01", o, qty, price, self.now(),
                           o.filled, o.avg_price, total - before)
        self.executions.append(ex)
        key = (o.account or self.accounts[0], o.symbol)
        pos = self.positions.setdefault(key, [0.0, 0.0])
        signed = qty if o.action == "BUY" else -qty
        pos[1] = (pos[0] * pos[1] + signed * price) / (pos[0] + signed) if pos[0] + signed else 0.0
        pos[0] += signed
        s = self._session_for(o.client_id)
        if s is not None:
            details = wire.exec_details(-1, ex)
            if self.corrupt_next_exec:
                self.corrupt_next_exec = False
                details[19] = "x" + str(details[19])  # shares: not a number
            s.send(details)
            if self.duplicate_exec:
                s.send(details)
            s.send(wire.order_status(o))
            if o.status == "Filled":
                s.send(wire.open_order(o, "Filled"))
            s.send(wire.commission_report(ex))
        for other in self.sessions:
            other.send(wire.position(key[0], o.con_id, o.symbol, pos[0], pos[1]))
        return ex

    def _executions(self, s: _Session, f: list[str]) -> None:
        req_id, client_id, acct, since, symbol = int(f[2]), int(f[3] or 0), f[4], f[5], f[6]
        start = wire.parse_filter_time(since)
        for ex in self.executions:
            o = ex.order
            if client_id and o.client_id != client_id or acct and o.account != acct:
                continue
            if symbol and o.symbol != symbol or start is not None and ex.time < start:
                continue
            s.send(wire.exec_details(req_id, ex))
            s.send(wire.commission_report(ex))
        s.send([55, 1, req_id])

    # --- the market and faults, for tests ------------------------------------------------------------------
    def fill(self, order_ref: str, qty: float | None = None, price: float | None = None) -> FakeExecution:
        return self._sync(self._fill, order_ref, qty, price)

    def trade_bar(self, symbol: str, o: float, h: float, l: float, c: float, ts_ns: int | None = None) -> int:
        """Match resting orders against one bar (market at the open, then stops, then limits), as
        the paper broker does; returns the number of executions."""
        return self._sync(self._trade_bar, symbol, o, h, l, c, ts_ns)

    def cancel_by_broker(self, order_ref: str, code: int = 202, message: str = "Order Canceled - reason:") -> None:
        self._sync(self._cancel_by_broker, order_ref, code, message)

    def send_error(self, req_id: int, code: int, message: str) -> None:
        self._sync(self._broadcast, wire.error(req_id, code, message))

    def send_raw(self, fields: list[Any]) -> None:
        self._sync(self._broadcast, fields)

    def _broadcast(self, fields: list[Any]) -> None:
        for s in self.sessions:
            s.send(fields)

    def _fill(self, order_ref: str, qty: float | None, price: float | None) -> FakeExecution:
        o = self.order(order_ref)
        price = price if price is not None else (o.lmt_price or o.aux_price or self.default_price)
        return self._execute(o, qty if qty is not None else o.qty - o.filled, price)

    def _trade_bar(self, symbol: str, o: float, h: float, l: float, c: float, ts_ns: int | None) -> int:
        if ts_ns is not None:
            at = datetime.fromtimestamp(ts_ns / 1e9, timezone.utc)
            self.now = lambda: at
        n = 0
        book = [x for x in self.orders if x.symbol == symbol and not x.done]
        for x in book:
            if x.order_type == "MKT":
                self._execute(x, x.qty - x.filled, o)
                n += 1
        for x in book:
            if x.done or x.order_type != "STP":
                continue
            stop = x.aux_price
            if x.action == "SELL" and l <= stop:
                self._execute(x, x.qty - x.filled, o if o < stop else stop)
                n += 1
            elif x.action == "BUY" and h >= stop:
                self._execute(x, x.qty - x.filled, o if o > stop else stop)
                n += 1
        for x in book:
            if x.done or x.order_type != "LMT":
                continue
            lim = x.lmt_price
            if x.action == "SELL" and h >= lim:
                self._execute(x, x.qty - x.filled, o if o > lim else lim)
                n += 1
            elif x.action == "BUY" and l <= lim:
                self._execute(x, x.qty - x.filled, o if o < lim else lim)
                n += 1
        return n

    def _cancel_by_broker(self, order_ref: str, code: int, message: str) -> None:
        o = self.order(order_ref)
        o.status = "Cancelled"
        s = self._session_for(o.client_id)
        if s is not None:
            s.send(wire.error(o.order_id, code, message))
            s.send(wire.order_status(o))

