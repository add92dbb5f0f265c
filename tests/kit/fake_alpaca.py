"""A fake Alpaca on 127.0.0.1 (port 0) that the real alpaca-py client talks to.

The broker's order book (share reservation, OCO, asynchronous replace, delayed cancels, stops and
limits triggered by a price path) is `tests/kit/alpaca_book.py`; this module is its wire.

REST (threaded http.server): /v2/account, /v2/orders (POST, GET, DELETE), /v2/orders/{id} (GET,
PATCH = replace, DELETE), /v2/orders:by_client_order_id, /v2/positions, answering with the fields
alpaca-py's strict models require (`nested=true` rolls OCO legs up under their parent). The order
listing (GET /v2/orders) filters and pages as Alpaca does (alpaca_listing.py: status, limit <= 500,
after/until exclusive on submitted_at, direction); `listings` keeps each one's query. Websocket
(`websockets`, own loop thread): /stream speaking trade_updates (JSON authenticate ->
authorization, listen -> listening, updates as binary frames like the paper server).

The market: `set_price(sym, px)` / `walk(sym, [px, ...])` fill market orders (at once when
`auto_fill`), limits and stops crossing the price; `fill(cid, qty, price)` fills by hand (partial
fills). `book.cancel_delay_ns` / `book.replace_delay_ns` delay confirmations on the clock;
`tick()` confirms what is due (every request ticks too).

Faults, each consumed by the next request of its kind:
- `post_faults`: "504_accept" / "504_drop" (504 after accepting the order, or without),
  "hang_accept" / "hang_drop" (no answer until `release()` or stop), "drop_accept" / "drop_drop"
  (the connection closed without an answer), "429", "500_accept", "reject:<message>" (403),
  "reject_async" (accepted, then a `rejected` trade update);
- `patch_faults`: "504_accept" / "504_drop";
- `lookup_faults`: "503", "hang", "drop" on GET .../orders:by_client_order_id;
- `list_faults`: "500" on GET /v2/orders (the listing for adoption);
- `down()` / `up()`: the REST port refuses connections, then listens again (same port);
- websocket: `ws_mute_connections = n` (the first n connections get nothing), `ws_duplicate`
  (every update twice), `ws_corrupt_next = n` (the next n updates arrive malformed instead, i.e.
  lost), `ws_swap_next = n` (each of the next n updates arrives after the one that follows it: out
  of order), `send_garbage(frame)`.
Counters: `posts[cid]` (POSTs per client order id), `lookups[cid]`, `accepted[cid]`, `requests`,
`patches`, `events`; the book's `refused`, `replaces`, `cancels`, `violations`.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
import uuid
from collections import Counter, deque
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Callable
from urllib.parse import parse_qs, urlsplit

import websockets
from websockets.asyncio.server import serve

from tests.kit.alpaca_book import OPEN, AlpacaBook
from tests.kit.alpaca_book import num as _num
from tests.kit.alpaca_listing import listing

KEY, SECRET = "fake-key-id", "fake-secret-key"


class FakeAlpaca:
    """The wire around an `AlpacaBook`: REST and trade_updates as alpaca-py expects them."""

    def __init__(self, *, clock: Callable[[], int] = time.time_ns, equity: float = 100_000.0) -> None:
        self.lock = threading.RLock()
        self.book = AlpacaBook(clock, self._push)
        self.posts: Counter[str] = Counter()
        self.lookups: Counter[str] = Counter()
        self.requests: list[tuple[str, str]] = []
        self.bodies: list[dict[str, Any]] = []            # POST /v2/orders bodies
        self.patches: list[tuple[str, dict[str, Any]]] = []  # (order id, PATCH body)
        self.post_faults: deque[str] = deque()
        self.patch_faults: deque[str] = deque()
        self.lookup_faults: deque[str] = deque()
        self.list_faults: deque[str] = deque()
        self.listings: list[dict[str, str]] = []            # GET /v2/orders query parameters
        self.book.account = {
            "id": str(uuid.uuid4()), "account_number": "PA1FAKE0001", "status": "ACTIVE",
            "currency": "USD", "cash": _num(equity), "equity": _num(equity),
            "last_equity": _num(equity), "buying_power": _num(equity * 4),
            "daytrading_buying_power": _num(equity * 4), "portfolio_value": _num(equity),
            "pattern_day_trader": False, "daytrade_count": 0, "trading_blocked": False,
            "account_blocked": False, "transfers_blocked": False, "shorting_enabled": False,
            "multiplier": "4", "created_at": "2020-01-02T15:00:00Z"}
        self._release = threading.Event()
        self._http: ThreadingHTTPServer | None = None
        self.rest_port = 0
        # websocket side
        self.ws_port = 0
        self.ws_mute_connections = 0
        self.ws_duplicate = False
        self.ws_corrupt_next = 0
        self.ws_swap_next = 0
        self.ws_connections = 0
        self.updates_sent = 0
        self.updates_lost = 0
        self.garbage_sent = 0
        self.events: list[tuple[str, str]] = []   # (event, client order id) pushed, in order
        self._listeners: set[Any] = set()
        self._mute: set[Any] = set()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._outbox: asyncio.Queue[Any] | None = None
        self._ws_thread: threading.Thread | None = None
        self._ws_stop: asyncio.Event | None = None

    # --- the book's state, as the tests read it --------------------------------------------------
    clock = property(lambda self: self.book.clock,
                     lambda self, v: setattr(self.book, "clock", v))
    auto_fill = property(lambda self: self.book.auto_fill,
                         lambda self, v: setattr(self.book, "auto_fill", v))
    pdt_protect = property(lambda self: self.book.pdt_protect,
                           lambda self, v: setattr(self.book, "pdt_protect", v))
    orders = property(lambda self: self.book.orders)
    by_cid = property(lambda self: self.book.by_cid)
    accepted = property(lambda self: self.book.accepted)
    positions = property(lambda self: self.book.positions)
    prices = property(lambda self: self.book.prices)
    account = property(lambda self: self.book.account)

    # --- lifecycle -----------------------------------------------------------------------------
    def start(self) -> "FakeAlpaca":
        self._start_http(0)
        ready = threading.Event()
        self._ws_thread = threading.Thread(target=self._ws_main, args=(ready,), daemon=True,
                                           name="fake-alpaca-ws")
        self._ws_thread.start()
        if not ready.wait(5):
            raise RuntimeError("fake alpaca websocket did not start")
        return self

    def stop(self) -> None:
        self._release.set()
        self.down()
        if self._loop is not None and self._ws_stop is not None:
            self._loop.call_soon_threadsafe(self._ws_stop.set)
        if self._ws_thread is not None:
            self._ws_thread.join(5)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.rest_port}"

    @property
    def stream_url(self) -> str:
        return f"ws://127.0.0.1:{self.ws_port}/stream"

    def _start_http(self, port: int) -> None:
        fake = self

        class Handler(_Handler):
            pass

        Handler.fake = fake
        server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        server.daemon_threads = True
        self._http = server
        self.rest_port = server.server_address[1]
        threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True,
                         name="fake-alpaca-rest").start()

    def down(self) -> None:
        """The REST port stops listening: connections are refused."""
        if self._http is not None:
            self._http.shutdown()
            self._http.server_close()
            self._http = None

    def up(self) -> None:
        if self._http is None:
            self._start_http(self.rest_port)

    def release(self) -> None:
        """Let hung requests finish (they answer into closed sockets)."""
        self._release.set()

    # --- market and broker-side actions (the test drives them) -----------------------------------
    def set_price(self, symbol: str, price: float) -> None:
        with self.lock:
            self.book.set_price(symbol, price)

    def walk(self, symbol: str, prices: list[float]) -> None:
        """A scripted price path: stops and limits trigger as it passes them."""
        with self.lock:
            self.book.walk(symbol, prices)

    def tick(self) -> None:
        """Confirm the cancels and replaces whose delay has passed on the clock."""
        with self.lock:
            self.book.tick()

    def fill(self, key: str, qty: int, price: float) -> None:
        """Fill `qty` of an order (by client id or id) at `price`: partial fills by hand."""
        with self.lock:
            o = self.book.find(key)
            assert o is not None, key
            self.book.fill(o, qty, price)

    def cancel_by_broker(self, client_order_id: str, status: str = "canceled") -> None:
        with self.lock:
            o = self.book.find(client_order_id)
            assert o is not None, client_order_id
            self.book.close(o, status)

    def order(self, key: str) -> dict[str, Any] | None:
        """An order by client id or id, with its legs."""
        with self.lock:
            o = self.book.find(key)
            return self.book.view(o) if o else None

    def position_qty(self) -> dict[str, int]:
        with self.lock:
            return {s: int(p[0]) for s, p in sorted(self.book.positions.items()) if p[0]}

    def open_sells(self, symbol: str) -> list[dict[str, Any]]:
        """Working sell orders (legs included), for the tests' share accounting."""
        with self.lock:
            return [dict(o) for o in self.book.orders.values() if o["symbol"] == symbol
                    and o["side"] == "sell" and o["status"] in OPEN]

    # kept for tests that seed orders directly
    def _new_order(self, body: dict[str, Any]) -> tuple[int, Any]:
        return self.book.new_order(body)

    def _after_accept(self, o: dict[str, Any], reject_async: bool = False) -> None:
        self.book.after_accept(o["id"], reject_async)

    def _position_json(self, sym: str, p: list[Any]) -> dict[str, Any]:
        qty, cost = p
        avg = cost / qty if qty else 0
        return {"asset_id": str(uuid.uuid5(uuid.NAMESPACE_DNS, sym)), "symbol": sym,
                "exchange": "NASDAQ", "asset_class": "us_equity", "asset_marginable": True,
                "avg_entry_price": _num(round(avg, 4)), "qty": str(int(qty)),
                "side": "long" if qty > 0 else "short", "cost_basis": _num(round(cost, 2)),
                "qty_available": str(self.book.available(sym))}

    # --- websocket -----------------------------------------------------------------------------
    def _push(self, event: str, o: dict[str, Any], **extra: Any) -> None:
        self.events.append((event, o["client_order_id"]))
        msg = {"stream": "trade_updates",
               "data": {"event": event, "order": o, "timestamp": o["updated_at"], **extra}}
        if self._loop is not None and self._outbox is not None:
            self._loop.call_soon_threadsafe(self._outbox.put_nowait, json.loads(json.dumps(msg)))

    def send_garbage(self, frame: bytes | str = b"{this is not json") -> None:
        if self._loop is not None and self._outbox is not None:
            self._loop.call_soon_threadsafe(self._outbox.put_nowait, ("raw", frame))

    def outbox_empty(self) -> bool:
        return self._outbox is None or self._outbox.empty()

    def _ws_main(self, ready: threading.Event) -> None:
        asyncio.run(self._ws_serve(ready))

    async def _ws_serve(self, ready: threading.Event) -> None:
        self._loop = asyncio.get_running_loop()
        self._outbox = asyncio.Queue()
        self._ws_stop = asyncio.Event()
        async with serve(self._ws_handler, "127.0.0.1", 0) as server:
            self.ws_port = server.sockets[0].getsockname()[1]
            sender = asyncio.create_task(self._sender())
            ready.set()
            await self._ws_stop.wait()
            sender.cancel()

    async def _sender(self) -> None:
        assert self._outbox is not None
        held: Any = None
        while True:
            msg = await self._outbox.get()
            if not isinstance(msg, tuple) and self.ws_swap_next > 0 and held is None:
                held, self.ws_swap_next = msg, self.ws_swap_next - 1  # overtaken by the next one
                continue
            if held is not None and not isinstance(msg, tuple):
                await self._send_all(msg)
                msg, held = held, None
            await self._send_all(msg)

    async def _send_all(self, msg: Any) -> None:
        """One outbox item to every listener (with the duplicate / corrupt / mute faults)."""
        for ws in list(self._listeners):
            try:
                if isinstance(msg, tuple):
                    self.garbage_sent += 1
                    await ws.send(msg[1])
                    continue
                if ws in self._mute:
                    self.updates_lost += 1
                    continue
                if self.ws_corrupt_next > 0:
                    self.ws_corrupt_next -= 1
                    self.updates_lost += 1
                    bad = json.loads(json.dumps(msg))
                    bad["data"]["order"]["status"] = "exploded"
                    await ws.send(json.dumps(bad).encode())
                    continue
                frame = json.dumps(msg).encode()
                for _ in range(2 if self.ws_duplicate else 1):
                    await ws.send(frame)
                    self.updates_sent += 1
            except websockets.ConnectionClosed:
                self._listeners.discard(ws)

    async def _ws_handler(self, ws: Any) -> None:
        if ws.request.path != "/stream":
            await ws.close(1008, "unknown path")
            return
        self.ws_connections += 1
        if self.ws_connections <= self.ws_mute_connections:
            self._mute.add(ws)
        try:
            auth = json.loads(await ws.recv())
            data = auth.get("data") or {}
            ok = (auth.get("action") == "authenticate" and data.get("key_id") == KEY
                  and data.get("secret_key") == SECRET)
            await ws.send(json.dumps({"stream": "authorization", "data": {
                "status": "authorized" if ok else "unauthorized", "action": "authenticate"}}).encode())
            if not ok:
                await ws.close()
                return
            async for raw in ws:
                msg = json.loads(raw)
                if msg.get("action") == "listen":
                    streams = (msg.get("data") or {}).get("streams") or []
                    await ws.send(json.dumps({"stream": "listening",
                                              "data": {"streams": streams}}).encode())
                    if "trade_updates" in streams:
                        self._listeners.add(ws)
        except websockets.ConnectionClosed:
            pass
        finally:
            self._listeners.discard(ws)
            self._mute.discard(ws)


class _Handler(BaseHTTPRequestHandler):
    fake: FakeAlpaca
    protocol_version = "HTTP/1.0"

    def log_message(self, fmt: str, *args: Any) -> None:
        pass

    def handle(self) -> None:
        try:
            super().handle()
        except (BrokenPipeError, ConnectionResetError):
            pass

    def _send(self, status: int, body: Any = None) -> None:
        raw = b"" if body is None else (body if isinstance(body, bytes) else json.dumps(body).encode())
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(raw)))
        self.end_headers()
        if raw:
            self.wfile.write(raw)

    def _authorized(self) -> bool:
        if (self.headers.get("APCA-API-KEY-ID") == KEY
                and self.headers.get("APCA-API-SECRET-KEY") == SECRET):
            return True
        self._send(401, {"code": 40110000, "message": "request is not authorized"})
        return False

    def _hang(self) -> None:
        self.fake._release.wait(60)
        self.close_connection = True

    def _drop(self) -> None:
        self.close_connection = True  # no answer at all: the client sees the connection closed

    def _body(self) -> dict[str, Any]:
        length = int(self.headers.get("Content-Length") or 0)
        return json.loads(self.rfile.read(length) or b"{}")

    def do_GET(self) -> None:
        fake = self.fake
        url = urlsplit(self.path)
        fake.requests.append(("GET", url.path))
        if not self._authorized():
            return
        q = parse_qs(url.query)
        nested = (q.get("nested") or ["false"])[0].lower() == "true"
        if url.path == "/v2/orders:by_client_order_id":
            cid = (q.get("client_order_id") or [""])[0]
            with fake.lock:
                fake.lookups[cid] += 1
                fault = fake.lookup_faults.popleft() if fake.lookup_faults else None
            if fault == "503":
                return self._send(503, b"<html>503 Service Unavailable</html>")
            if fault == "hang":
                return self._hang()
            if fault == "drop":
                return self._drop()
            with fake.lock:
                fake.book.tick()
                oid = fake.book.by_cid.get(cid)
                o = fake.book.view(fake.book.orders[oid]) if oid else None
            return self._send(200, o) if o else self._send(404, {"code": 40410000, "message": "order not found"})
        with fake.lock:
            book = fake.book
            book.tick()
            if url.path == "/v2/account":
                return self._send(200, dict(book.account))
            if url.path == "/v2/positions":
                return self._send(200, [fake._position_json(s, p) for s, p in sorted(book.positions.items()) if p[0]])
            if url.path == "/v2/orders":
                fake.listings.append({k: v[0] for k, v in q.items()})
                if fake.list_faults and fake.list_faults.popleft() == "500":
                    return self._send(500, {"code": 50010000, "message": "internal server error"})
                status, rows = listing(book, q, nested)
                return self._send(status, rows)
            if url.path.startswith("/v2/orders/"):
                o = book.orders.get(url.path.rsplit("/", 1)[1])
                return self._send(200, book.view(o, nested)) if o else self._send(404, {"code": 40410000, "message": "order not found"})
        self._send(404, {"code": 40400000, "message": "not found"})

    def do_POST(self) -> None:
        fake = self.fake
        url = urlsplit(self.path)
        fake.requests.append(("POST", url.path))
        body = self._body()
        if not self._authorized():
            return
        if url.path != "/v2/orders":
            return self._send(404, {"code": 40400000, "message": "not found"})
        cid = body.get("client_order_id", "")
        with fake.lock:
            fake.posts[cid] += 1
            fake.bodies.append(body)
            fault = fake.post_faults.popleft() if fake.post_faults else None
            if fault == "429" or (fault and fault.startswith("reject:")):
                pass
            elif fault in ("504_drop", "hang_drop", "drop_drop"):
                pass
            else:
                fake.book.tick()
                status, o = fake.book.new_order(body)
                if status == 200:
                    fake.book.after_accept(o["id"], reject_async=fault == "reject_async")
                    o = fake.book.view(fake.book.orders[o["id"]])
        if fault == "429":
            return self._send(429, {"code": 42910000, "message": "rate limit exceeded"})
        if fault and fault.startswith("reject:"):
            return self._send(403, {"code": 40310000, "message": fault.split(":", 1)[1]})
        if fault in ("504_accept", "504_drop"):
            return self._send(504, b"<html><body><h1>504 Gateway Time-out</h1></body></html>")
        if fault == "500_accept":
            return self._send(500, b"internal error")
        if fault in ("hang_accept", "hang_drop"):
            return self._hang()
        if fault in ("drop_accept", "drop_drop"):
            return self._drop()
        self._send(status, o)

    def do_PATCH(self) -> None:
        """Replace an order (asynchronous at Alpaca: the answer is the new order, `accepted`)."""
        fake = self.fake
        url = urlsplit(self.path)
        fake.requests.append(("PATCH", url.path))
        body = self._body()
        if not self._authorized():
            return
        if not url.path.startswith("/v2/orders/"):
            return self._send(404, {"code": 40400000, "message": "not found"})
        oid = url.path.rsplit("/", 1)[1]
        with fake.lock:
            fake.patches.append((oid, body))
            fault = fake.patch_faults.popleft() if fake.patch_faults else None
            if fault != "504_drop":
                status, o = fake.book.replace(oid, body)
        if fault in ("504_accept", "504_drop"):
            return self._send(504, b"<html><body><h1>504 Gateway Time-out</h1></body></html>")
        self._send(status, o)

    def do_DELETE(self) -> None:
        fake = self.fake
        url = urlsplit(self.path)
        fake.requests.append(("DELETE", url.path))
        if not self._authorized():
            return
        with fake.lock:
            if url.path == "/v2/orders":
                return self._send(207, [{"id": i, "status": 200} for i in fake.book.cancel_all()])
            if url.path.startswith("/v2/orders/"):
                status, body = fake.book.cancel(url.path.rsplit("/", 1)[1])
                return self._send(status, body)
        self._send(404, {"code": 40400000, "message": "not found"})
