"""A fake TWS / IB Gateway on 127.0.0.1 (port 0) for running the real ib_async / ib_insync client.

It speaks the real framing and layouts (`tws_wire`), answers the connect sequence (nextValidId,
managedAccounts, open/completed orders, positions, account updates, executions), and keeps a small
order book (`tws_book.TwsBook`: OCA groups, modify by orderId, cancels confirmed after
`cancel_delay_s` of the fake's clock, stops and limits triggered by `set_price`/`trade_bar`,
positions that follow fills and can go short). Market orders fill at once (or on `trade_bar`).
Time at the fake moves only when the test says so (`advance`, a bar's timestamp), so no outcome
depends on how long anything sleeps. Every message received is logged with its arrival time
(`received`), so tests can count placeOrders per orderRef or measure rates.

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
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, Callable

from tests.kit import tws_wire as wire
from tests.kit.tws_book import FakeExecution, FakeOrder, ManualClock, Note, TwsBook

__all__ = ["FakeExecution", "FakeOrder", "FakeTws"]


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
                 commission_per_share: str = "0.0035", commission_min: str = "0.35",
                 cancel_delay_s: float = 0.0, clock: Callable[[], datetime] | None = None) -> None:
        self.accounts = accounts
        self.next_valid_id = next_order_id
        self.market_fill = market_fill
        self.prices: dict[str, float] = {}
        self.clock = clock or ManualClock()
        self.book = TwsBook(accounts, self.clock, cancel_delay_s, default_price,
                            commission_per_share, commission_min)
        self.port = 0
        self.up = False
        self.received: list[tuple[float, int, list[str]]] = []  # (monotonic, client id, fields)
        self.sessions: list[_Session] = []
        self.handshakes = 0
        # faults
        self.drop_on_place: dict[str, bool] | None = None  # {"ack": bool, "accept": bool}
        self.duplicate_exec = False
        self.corrupt_next_exec = False
        self.reject: Callable[[FakeOrder], tuple[int, str] | None] = lambda o: None
        self.silent: set[int] = set()  # request message ids left unanswered (a listing that hangs)
        self._server: asyncio.AbstractServer | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None

    # the book's state, as tests read it
    @property
    def orders(self) -> list[FakeOrder]:
        return self.book.orders

    @property
    def executions(self) -> list[FakeExecution]:
        return self.book.executions

    @property
    def positions(self) -> dict[tuple[str, str], list[float]]:
        return self.book.positions

    @property
    def cancel_delay_s(self) -> float:
        return self.book.cancel_delay_s

    @cancel_delay_s.setter
    def cancel_delay_s(self, value: float) -> None:
        self.book.cancel_delay_s = value

    def now(self) -> datetime:
        return self.clock()

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
        return self.book.by_ref(order_ref)

    def position(self, symbol: str) -> float:
        return self.book.position(symbol)

    def cancels(self) -> list[int]:
        """The orderIds of every cancelOrder received."""
        return [int(f[2]) for f in self.messages(4)]

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
        if msg in self.silent:
            return
        if msg == 3:
            self._place(s, f)
        elif msg == 4:
            self._deliver(self.book.cancel(s.client_id, int(f[2])))
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
                s.send(wire.position(acct, self.book.con_id(sym), sym, qty, cost))
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
    def _deliver(self, notes: list[Note]) -> None:
        """The book's notes as TWS sends them, to the session of the order's client id."""
        for note in notes:
            kind = note[0]
            if kind == "position":
                (acct, sym), qty, cost = note[1], note[2], note[3]
                self._broadcast(wire.position(acct, self.book.con_id(sym), sym, qty, cost))
                continue
            if kind == "commission":
                s = self._session_for(note[1].order.client_id)
                if s is not None:
                    s.send(wire.commission_report(note[1]))
                continue
            if kind == "error_id":
                for s in self.sessions:
                    s.send(wire.error(note[1], note[2], note[3]))
                continue
            o = note[2] if kind == "exec" else note[1]
            s = self._session_for(o.client_id)
            if s is None:
                continue
            if kind == "status":
                s.send(wire.open_order(o, o.status))
                s.send(wire.order_status(o))
            elif kind == "order_status":
                s.send(wire.order_status(o))
            elif kind == "error":
                s.send(wire.error(o.order_id, note[2], note[3]))
            elif kind == "exec":
                details = wire.exec_details(-1, note[1])
                if self.corrupt_next_exec:
                    self.corrupt_next_exec = False
                    details[19] = "x" + str(details[19])  # shares: not a number
                s.send(details)
                if self.duplicate_exec:
                    s.send(details)
                s.send(wire.order_status(o))
                if o.status == "Filled":
                    s.send(wire.open_order(o, "Filled"))

    def _market_price(self, symbol: str) -> float:
        return self.book.last.get(symbol, self.prices.get(symbol, self.book.default_price))

    def _place(self, s: _Session, f: list[str]) -> None:
        P = wire.PLACE
        order_id, symbol = int(f[P["order_id"]]), f[P["symbol"]]
        oca_type = f[P["oca_type"]] if len(f) > P["oca_type"] else ""
        o = FakeOrder(order_id, s.client_id, 0, self.book.con_id(symbol), symbol, f[P["action"]],
                      float(f[P["qty"]]), f[P["order_type"]], float(f[P["lmt_price"]] or 0),
                      float(f[P["aux_price"]] or 0), f[P["tif"]], f[P["account"]], f[P["order_ref"]],
                      f[P["outside_rth"]] == "1", f, oca_group=f[P["oca_group"]],
                      oca_type=int(oca_type) if oca_type.lstrip("-").isdigit() else 0)
        existing = self.book.find(s.client_id, order_id)
        if existing is not None:  # the same orderId again: a modification
            self._deliver(self.book.modify(existing, o))
            return
        o.perm_id = self.book.next_perm()
        fault, self.drop_on_place = self.drop_on_place, None
        if fault is not None:
            if fault.get("accept", True):
                self.book.orders.append(o)
                o.status = "Submitted" if o.order_type != "MKT" else "PreSubmitted"
                if fault.get("ack", False):
                    s.send(wire.open_order(o, o.status))
                    s.send(wire.order_status(o))
                s.writer.transport.abort()
                if o.order_type == "MKT" and self.market_fill:
                    self._deliver(self.book.fill_market(o, self._market_price(symbol)))
            else:
                s.writer.transport.abort()
            return
        rejection = self.reject(o)
        if rejection is not None:
            o.status = "Inactive"
            self.book.orders.append(o)
            s.send(wire.error(order_id, rejection[0], rejection[1]))
            s.send(wire.order_status(o))
            return
        self._deliver(self.book.add(o, self._market_price(symbol) if self.market_fill else None))

    def _session_for(self, client_id: int) -> _Session | None:
        for s in reversed(self.sessions):
            if s.client_id == client_id:
                return s
        return None

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

    def set_price(self, symbol: str, price: float, volume: float | None = None) -> int:
        """The market trades at `price` (up to `volume` shares): the resting stops, limits and
        market orders it reaches fill, with their OCA effects. Returns the number of executions."""
        return self._sync(self._run, self.book.set_price, symbol, price, volume)

    def advance(self, seconds: float) -> int:
        """Time passes at the broker: cancels requested `cancel_delay_s` ago are confirmed now.
        Returns how many notes were sent."""
        return self._sync(self._run, self.book.advance, seconds)

    def trade_bar(self, symbol: str, o: float, h: float, l: float, c: float, ts_ns: int | None = None) -> int:
        """Match resting orders against one bar (market at the open, then stops, then limits), as
        the paper broker does; returns the number of executions."""
        return self._sync(self._trade_bar, symbol, o, h, l, c, ts_ns)

    def place_external(self, order_ref: str, symbol: str, action: str, qty: float, client_id: int = 7,
                       order_id: int = 90_000, price: float | None = None) -> None:
        """A market order booked without this client's placeOrder (another runner with the same
        prefix, a manual order in TWS): it fills at once and its reports go to `client_id`."""
        def book() -> None:
            o = FakeOrder(order_id, client_id, self.book.next_perm(), self.book.con_id(symbol), symbol, action,
                          qty, "MKT", 0.0, 0.0, "DAY", self.accounts[0], order_ref, False, [])
            self._deliver(self.book.add(o, price if price is not None else self._market_price(symbol)))
        self._sync(book)

    def cancel_by_broker(self, order_ref: str, code: int = 202, message: str = "Order Canceled - reason:") -> None:
        self._sync(lambda: self._deliver(self.book.cancel_by_broker(self.order(order_ref), code, message)))

    def send_error(self, req_id: int, code: int, message: str) -> None:
        self._sync(self._broadcast, wire.error(req_id, code, message))

    def send_raw(self, fields: list[Any]) -> None:
        self._sync(self._broadcast, fields)

    def _broadcast(self, fields: list[Any]) -> None:
        for s in self.sessions:
            s.send(fields)

    def _run(self, fn: Callable[..., list[Note]], *args: Any) -> int:
        notes = fn(*args)
        self._deliver(notes)
        return sum(1 for n in notes if n[0] == "exec") if fn != self.book.advance else len(notes)

    def _fill(self, order_ref: str, qty: float | None, price: float | None) -> FakeExecution:
        o = self.order(order_ref)
        price = price if price is not None else (o.lmt_price or o.aux_price or self.book.default_price)
        notes = self.book.execute(o, qty if qty is not None else o.remaining, price)
        self._deliver(notes)
        return notes[0][1]

    def _trade_bar(self, symbol: str, o: float, h: float, l: float, c: float, ts_ns: int | None) -> int:
        if ts_ns is not None:
            at = datetime.fromtimestamp(ts_ns / 1e9, timezone.utc)
            if isinstance(self.clock, ManualClock):
                self.clock.at = at
        notes = self.book.advance(0) + self.book.trade_bar(symbol, o, h, l, c)
        self._deliver(notes)
        return sum(1 for n in notes if n[0] == "exec")
