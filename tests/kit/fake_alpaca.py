"""A fake Alpaca on 127.0.0.1 (port 0) that the real alpaca-py client talks to.

REST (threaded http.server): /v2/account, /v2/orders (POST, GET, DELETE), /v2/orders/{id},
/v2/orders:by_client_order_id, /v2/positions, answering with the fields alpaca-py's strict models
require. Websocket (`websockets`, own loop thread): /stream speaking trade_updates (JSON
authenticate -> authorization, listen -> listening, updates as binary frames like the paper server).

A tiny market: `set_price(sym, px)` fills market orders (at once when `auto_fill`), sell/buy
limits and stops crossing it; `fill(cid, qty, price)` fills by hand (partial fills).

Faults, each consumed by the next request of its kind:
- `post_faults`: "504_accept" / "504_drop" (504 after accepting the order, or without),
  "hang_accept" / "hang_drop" (no answer until `release()` or stop), "drop_accept" / "drop_drop"
  (the connection closed without an answer), "429", "500_accept", "reject:<message>" (403),
  "reject_async" (accepted, then a `rejected` trade update);
- `lookup_faults`: "503", "hang", "drop" on GET .../orders:by_client_order_id;
- `down()` / `up()`: the REST port refuses connections, then listens again (same port);
- websocket: `ws_mute_connections = n` (the first n connections get nothing), `ws_duplicate`
  (every update twice), `ws_corrupt_next = n` (the next n updates arrive malformed instead, i.e.
  lost), `send_garbage(frame)`.
Counters: `posts[cid]` (POSTs per client order id), `lookups[cid]`, `accepted[cid]`, `requests`.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
import uuid
from collections import Counter, deque
from datetime import datetime, timezone
from decimal import Decimal
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Callable
from urllib.parse import parse_qs, urlsplit

import websockets
from websockets.asyncio.server import serve

KEY, SECRET = "fake-key-id", "fake-secret-key"
OPEN = frozenset({"new", "accepted", "pending_new", "partially_filled"})


def _iso(ns: int) -> str:
    s, rem = divmod(ns, 1_000_000_000)
    return datetime.fromtimestamp(s, tz=timezone.utc).replace(microsecond=rem // 1000).strftime(
        "%Y-%m-%dT%H:%M:%S.%fZ")


def _num(x: Decimal | float | int) -> str:
    d = Decimal(str(x)).normalize()
    return format(d, "f")


class FakeAlpaca:
    def __init__(self, *, clock: Callable[[], int] = time.time_ns, equity: float = 100_000.0) -> None:
        self.clock = clock
        self.lock = threading.RLock()
        self.orders: dict[str, dict[str, Any]] = {}      # id -> order json
        self.by_cid: dict[str, str] = {}
        self.posts: Counter[str] = Counter()
        self.lookups: Counter[str] = Counter()
        self.accepted: Counter[str] = Counter()
        self.requests: list[tuple[str, str]] = []
        self.bodies: list[dict[str, Any]] = []            # POST /v2/orders bodies
        self.positions: dict[str, list[Decimal]] = {}     # sym -> [qty, cost]
        self.prices: dict[str, float] = {}
        self.auto_fill = True
        self.post_faults: deque[str] = deque()
        self.lookup_faults: deque[str] = deque()
        self.account: dict[str, Any] = {
            "id": str(uuid.uuid4()), "account_number": "PA1FAKE0001", "status": "ACTIVE",
            "currency": "USD", "cash": _num(equity), "equity": _num(equity),
            "last_equity": _num(equity), "buying_power": _num(equity * 4),
            "daytrading_buying_power": _num(equity * 4), "portfolio_value": _num(equity),
            "pattern_day_trader": False, "daytrade_count": 0, "trading_blocked": False,
            "account_blocked": False, "transfers_blocked": False, "shorting_enabled": False,
            "multiplier": "4", "created_at": "2020-01-02T15:00:00Z"}
        self.pdt_protect = False   # Alpaca's own PDT check (40310100) on buys
        self._bought_today: set[str] = set()
        self._release = threading.Event()
        self._http: ThreadingHTTPServer | None = None
        self.rest_port = 0
        # websocket side
        self.ws_port = 0
        self.ws_mute_connections = 0
        self.ws_duplicate = False
        self.ws_corrupt_next = 0
        self.ws_connections = 0
        self.updates_sent = 0
        self.updates_lost = 0
        self.garbage_sent = 0
        self._listeners: set[Any] = set()
        self._mute: set[Any] = set()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._outbox: asyncio.Queue[Any] | None = None
        self._ws_thread: threading.Thread | None = None
        self._ws_stop: asyncio.Event | None = None

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

    # --- market --------------------------------------------------------------------------------
    def set_price(self, symbol: str, price: float) -> None:
        with self.lock:
            self.prices[symbol] = price
            for o in list(self.orders.values()):
                if o["symbol"] != symbol or o["status"] not in OPEN:
                    continue
                px = self._crossing(o, price)
                if px is not None:
                    self._fill(o, int(o["qty"]) - int(o["filled_qty"]), px)

    def _crossing(self, o: dict[str, Any], price: float) -> float | None:
        kind, side = o["type"], o["side"]
        if kind == "market":
            return price
        if kind == "limit":
            limit = float(o["limit_price"])
            if (side == "sell" and price >= limit) or (side == "buy" and price <= limit):
                return limit
        if kind == "stop":
            stop = float(o["stop_price"])
            if (side == "sell" and price <= stop) or (side == "buy" and price >= stop):
                return price
        return None

    def fill(self, client_order_id: str, qty: int, price: float) -> None:
        with self.lock:
            self._fill(self.orders[self.by_cid[client_order_id]], qty, price)

    def cancel_by_broker(self, client_order_id: str, status: str = "canceled") -> None:
        with self.lock:
            o = self.orders[self.by_cid[client_order_id]]
            self._close(o, status)

    def order(self, client_order_id: str) -> dict[str, Any] | None:
        with self.lock:
            oid = self.by_cid.get(client_order_id)
            return dict(self.orders[oid]) if oid else None

    def position_qty(self) -> dict[str, int]:
        with self.lock:
            return {s: int(p[0]) for s, p in sorted(self.positions.items()) if p[0]}

    def _fill(self, o: dict[str, Any], qty: int, price: float) -> None:
        now = self.clock()
        done = int(o["filled_qty"])
        qty = min(qty, int(o["qty"]) - done)
        if qty <= 0:
            return
        avg = Decimal(o["filled_avg_price"] or 0)
        cum = done + qty
        new_avg = (avg * done + Decimal(str(price)) * qty) / cum
        o["filled_qty"] = str(cum)
        o["filled_avg_price"] = _num(round(new_avg, 6))
        o["updated_at"] = _iso(now)
        full = cum >= int(o["qty"])
        o["status"] = "filled" if full else "partially_filled"
        if full:
            o["filled_at"] = _iso(now)
        sym = o["symbol"]
        pos = self.positions.setdefault(sym, [Decimal(0), Decimal(0)])
        signed = qty if o["side"] == "buy" else -qty
        if o["side"] == "buy":
            pos[1] += Decimal(str(price)) * qty
            self._bought_today.add(sym)
        elif pos[0]:
            pos[1] -= pos[1] * qty / pos[0]
        pos[0] += signed
        if o["side"] == "sell" and pos[0] == 0 and sym in self._bought_today:
            self.account["daytrade_count"] += 1
        self._push("fill" if full else "partial_fill", o, execution_id=str(uuid.uuid4()),
                   qty=str(qty), price=_num(price), position_qty=str(int(pos[0])))

    def _close(self, o: dict[str, Any], status: str) -> None:
        now = _iso(self.clock())
        o["status"] = status
        o["updated_at"] = now
        o[{"canceled": "canceled_at", "expired": "expired_at", "rejected": "failed_at"}[status]] = now
        self._push(status, o)

    # --- REST logic (called from handler threads) ------------------------------------------------
    def _new_order(self, body: dict[str, Any]) -> tuple[int, Any]:
        """Validate and store an order; (status, json)."""
        cid = body.get("client_order_id") or str(uuid.uuid4())
        try:
            qty = Decimal(str(body["qty"]))
        except Exception:
            return 422, {"code": 40010001, "message": "qty is required"}
        if qty <= 0 or qty != qty.to_integral_value():
            return 422, {"code": 40010001, "message": "qty must be a positive integer"}
        kind = body.get("type")
        if kind not in ("market", "limit", "stop"):
            return 422, {"code": 40010001, "message": f"invalid order type {kind}"}
        if kind == "limit" and not body.get("limit_price"):
            return 422, {"code": 40010001, "message": "limit_price is required"}
        if kind == "stop" and not body.get("stop_price"):
            return 422, {"code": 40010001, "message": "stop_price is required"}
        if body.get("extended_hours") and (kind != "limit" or body.get("time_in_force") != "day"):
            return 422, {"code": 42210000,
                         "message": "extended hours order must be DAY limit orders"}
        if cid in self.by_cid:
            return 422, {"code": 40010001, "message": "client_order_id must be unique"}
        if (self.pdt_protect and body.get("side") == "buy"
                and float(self.account["equity"]) < 25_000 and self.account["daytrade_count"] >= 3):
            return 403, {"code": 40310100, "message": "trade denied due to pattern day trading protection"}
        now = _iso(self.clock())
        o = {
            "id": str(uuid.uuid4()), "client_order_id": cid, "created_at": now, "updated_at": now,
            "submitted_at": now, "filled_at": None, "expired_at": None, "expires_at": None,
            "canceled_at": None, "failed_at": None, "replaced_at": None, "replaced_by": None,
            "replaces": None, "asset_id": str(uuid.uuid5(uuid.NAMESPACE_DNS, body.get("symbol", ""))),
            "symbol": body.get("symbol"), "asset_class": "us_equity", "notional": None,
            "qty": str(int(qty)), "filled_qty": "0", "filled_avg_price": None, "order_class": "simple",
            "order_type": kind, "type": kind, "side": body.get("side"),
            "time_in_force": body.get("time_in_force", "day"),
            "limit_price": body.get("limit_price") and _num(body["limit_price"]),
            "stop_price": body.get("stop_price") and _num(body["stop_price"]),
            "status": "accepted", "extended_hours": bool(body.get("extended_hours", False)),
            "legs": None, "trail_percent": None, "trail_price": None, "hwm": None,
        }
        self.orders[o["id"]] = o
        self.by_cid[cid] = o["id"]
        self.accepted[cid] += 1
        return 200, o

    def _after_accept(self, o: dict[str, Any], reject_async: bool = False) -> None:
        o["status"] = "new"
        self._push("new", o)
        if reject_async:
            self._close(o, "rejected")
            return
        if self.auto_fill and o["type"] == "market" and o["symbol"] in self.prices:
            self._fill(o, int(o["qty"]), self.prices[o["symbol"]])

    def _position_json(self, sym: str, p: list[Decimal]) -> dict[str, Any]:
        qty, cost = p
        avg = cost / qty if qty else Decimal(0)
        return {"asset_id": str(uuid.uuid5(uuid.NAMESPACE_DNS, sym)), "symbol": sym,
                "exchange": "NASDAQ", "asset_class": "us_equity", "asset_marginable": True,
                "avg_entry_price": _num(round(avg, 4)), "qty": str(int(qty)),
                "side": "long" if qty > 0 else "short", "cost_basis": _num(round(cost, 2)),
                "qty_available": str(int(qty))}

    # --- websocket -----------------------------------------------------------------------------
    def _push(self, event: str, o: dict[str, Any], **extra: Any) -> None:
        msg = {"stream": "trade_updates",
               "data": {"event": event, "order": dict(o), "timestamp": o["updated_at"], **extra}}
        if self._loop is not None and self._outbox is not None:
            self._loop.call_soon_threadsafe(self._outbox.put_nowait, msg)

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
        while True:
            msg = await self._outbox.get()
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

    def do_GET(self) -> None:
        fake = self.fake
        url = urlsplit(self.path)
        fake.requests.append(("GET", url.path))
        if not self._authorized():
            return
        q = parse_qs(url.query)
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
                oid = fake.by_cid.get(cid)
                o = dict(fake.orders[oid]) if oid else None
            return self._send(200, o) if o else self._send(404, {"code": 40410000, "message": "order not found"})
        with fake.lock:
            if url.path == "/v2/account":
                return self._send(200, dict(fake.account))
            if url.path == "/v2/positions":
                return self._send(200, [fake._position_json(s, p) for s, p in sorted(fake.positions.items()) if p[0]])
            if url.path == "/v2/orders":
                status = (q.get("status") or ["open"])[0]
                rows = [o for o in fake.orders.values()
                        if status == "all" or (status == "open") == (o["status"] in OPEN)]
                return self._send(200, rows)
            if url.path.startswith("/v2/orders/"):
                o = fake.orders.get(url.path.rsplit("/", 1)[1])
                return self._send(200, dict(o)) if o else self._send(404, {"code": 40410000, "message": "order not found"})
        self._send(404, {"code": 40400000, "message": "not found"})

    def do_POST(self) -> None:
        fake = self.fake
        url = urlsplit(self.path)
        fake.requests.append(("POST", url.path))
        length = int(self.headers.get("Content-Length") or 0)
        body = json.loads(self.rfile.read(length) or b"{}")
        if not self._authorized():
            return
        if url.path != "/v2/orders":
            return self._send(404, {"code": 40400000, "message": "not found"})
        cid = body.get("client_order_id", "")
        with fake.lock:
            fake.posts[cid] += 1
            fake.bodies.append(body)
            fault = fake.post_faults.popleft() if fake.post_faults else None
            if fault == "429":
                pass
            elif fault and fault.startswith("reject:"):
                pass
            elif fault in ("504_drop", "hang_drop", "drop_drop"):
                pass
            else:
                status, o = fake._new_order(body)
                if status == 200:
                    fake._after_accept(o, reject_async=fault == "reject_async")
                    o = dict(o)
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

    def do_DELETE(self) -> None:
        fake = self.fake
        url = urlsplit(self.path)
        fake.requests.append(("DELETE", url.path))
        if not self._authorized():
            return
        with fake.lock:
            if url.path == "/v2/orders":
                out = []
                for o in fake.orders.values():
                    if o["status"] in OPEN:
                        fake._close(o, "canceled")
                        out.append({"id": o["id"], "status": 200})
                return self._send(207, out)
            if url.path.startswith("/v2/orders/"):
                o = fake.orders.get(url.path.rsplit("/", 1)[1])
                if o is None:
                    return self._send(404, {"code": 40410000, "message": "order not found"})
                if o["status"] not in OPEN:
                    return self._send(422, {"code": 42210000, "message": "order is not cancelable"})
                fake._close(o, "canceled")
                return self._send(204)
        self._send(404, {"code": 40400000, "message": "not found"})
