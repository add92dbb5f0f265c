"""A fake Polygon on 127.0.0.1 (port 0): REST aggregates and the stocks websocket, real wire formats.

REST (http.server, one thread per request): `/v2/aggs/ticker/{T}/range/{n}/{minute|day}/{from}/{to}`
(paginated with an absolute `next_url` on another host, as Polygon sends it: the SDK must join
only its path and query to the base) and `/v2/aggs/grouped/locale/us/market/stocks/{date}`.
`Authorization: Bearer <key>` is checked. Minute bars are served only once complete on the
fake market clock (`ts + 60 s <= clock.now_ns()`), like a live server.

Websocket (the `websockets` package, its own thread and loop): greeting, auth (`auth_failed` on a
wrong key), subscribe, then `AM` events as JSON arrays.

Faults: `rest_faults` (a queue consumed one per request: an HTTP status such as 429 or 500, with
optional headers such as `Retry-After`, a malformed body, a hang), and on the websocket `mute`, `drop_connections` (no close frame),
`send_raw` (a malformed message), `send_bars(duplicate=True)`, and bursts for a slow reader.
Everything the websocket sent is recorded in `sent` for the tests' accounting.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections import deque
from datetime import date, datetime, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Iterable
from urllib.parse import parse_qs, urlsplit
from zoneinfo import ZoneInfo

from websockets.asyncio.server import ServerConnection, serve

from live_runner.core.models import Bar

NY = ZoneInfo("America/New_York")
MINUTE_NS = 60_000_000_000


class FakeMarketClock:
    """The market time the fakes serve at (thread-safe); tests and the player move it."""

    def __init__(self, now_ns: int = 0) -> None:
        self._now = now_ns
        self._lock = threading.Lock()

    def now_ns(self) -> int:
        with self._lock:
            return self._now

    def set(self, ns: int) -> None:
        with self._lock:
            self._now = max(self._now, ns)


def am_event(bar: Bar) -> dict[str, Any]:
    s = bar.ts // 1_000_000
    return {"ev": "AM", "sym": bar.symbol, "v": bar.volume, "av": bar.volume, "op": bar.open,
            "vw": round((bar.high + bar.low + bar.close) / 3, 4), "o": bar.open, "c": bar.close,
            "h": bar.high, "l": bar.low, "a": bar.close, "z": 100, "s": s, "e": s + 60_000}


def agg_result(bar: Bar) -> dict[str, Any]:
    return {"v": bar.volume, "vw": round((bar.high + bar.low + bar.close) / 3, 4), "o": bar.open,
            "c": bar.close, "h": bar.high, "l": bar.low, "t": bar.ts // 1_000_000, "n": 10}


class FakePolygon:
    def __init__(self, api_key: str = "fake-polygon-key", clock: FakeMarketClock | None = None,
                 page_size: int = 50) -> None:
        self.api_key = api_key
        self.clock = clock or FakeMarketClock(2**62)
        self.page_size = page_size
        self.minute: dict[str, dict[int, Bar]] = {}
        self.daily: dict[date, dict[str, tuple[float, float, float, float, float]]] = {}
        self.rest_faults: deque[tuple[Any, ...]] = deque()
        self.extra_rows: dict[str, list[dict[str, Any]]] = {}  # raw results appended (bad records)
        self.requests: list[dict[str, Any]] = []
        self.sent: list[Bar] = []          # every AM event the websocket sent (duplicates included)
        self.connections = 0
        self.auth_attempts: list[str] = []
        self.subscriptions: list[str] = []
        self.muted = False
        self.ack_subscribe = True
        self._clients: set[ServerConnection] = set()
        self._subs: dict[ServerConnection, set[str]] = {}
        self._lock = threading.Lock()
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="fake-polygon-ws", daemon=True)
        self._http: ThreadingHTTPServer | None = None
        self._ws_server: Any = None
        self.rest_port = self.ws_port = 0

    # --- lifecycle -----------------------------------------------------------------------------
    def __enter__(self) -> "FakePolygon":
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self) -> None:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self) -> None:  # noqa: N802
                fake._serve_rest(self)

            def log_message(self, *args: object) -> None:
                return

        self._http = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._http.daemon_threads = True
        self.rest_port = self._http.server_address[1]
        threading.Thread(target=self._http.serve_forever, name="fake-polygon-rest", daemon=True).start()
        self._thread.start()
        async def open_server() -> Any:
            return await serve(self._ws_handler, "127.0.0.1", 0)

        self._ws_server = self._call(open_server())
        self.ws_port = self._ws_server.sockets[0].getsockname()[1]

    def stop(self) -> None:
        if self._http is not None:
            self._http.shutdown()
            self._http.server_close()
        if self._ws_server is not None:
            async def close() -> None:
                self._ws_server.close()
                await self._ws_server.wait_closed()
            try:
                self._call(close(), timeout=5)
            except Exception:  # noqa: BLE001
                pass
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=5)

    @property
    def rest_url(self) -> str:
        return f"http://127.0.0.1:{self.rest_port}"

    @property
    def ws_feed(self) -> str:
        return f"127.0.0.1:{self.ws_port}"

    def config(self, **overrides: Any) -> dict[str, Any]:
        """The `polygon:` config section pointing at this fake."""
        return {"rest_base_url": self.rest_url, "ws_feed": self.ws_feed, "secure": False,
                "connect_timeout_s": 2.0, "read_timeout_s": 2.0, "rest_backoff_s": 0.01,
                "rest_backoff_max_s": 0.05, "reconnect_backoff_s": 0.05,
                "reconnect_backoff_max_s": 0.2, **overrides}

    def _call(self, coro: Any, timeout: float = 10.0) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(timeout)

    # --- data ----------------------------------------------------------------------------------
    def add_bars(self, bars: Iterable[Bar]) -> None:
        """Minute bars the REST endpoints know (served once complete on the clock)."""
        with self._lock:
            for b in bars:
                self.minute.setdefault(b.symbol, {})[b.ts] = b

    def add_daily(self, day: date, symbol: str, o: float, h: float, l: float, c: float, v: float) -> None:
        with self._lock:
            self.daily.setdefault(day, {})[symbol] = (o, h, l, c, v)

    # --- REST ----------------------------------------------------------------------------------
    def _serve_rest(self, h: BaseHTTPRequestHandler) -> None:
        parts = urlsplit(h.path)
        query = {k: v[-1] for k, v in parse_qs(parts.query).items()}
        auth_ok = h.headers.get("Authorization") == f"Bearer {self.api_key}"
        with self._lock:
            self.requests.append({"path": parts.path, "query": query, "auth_ok": auth_ok,
                                  "at_ns": self.clock.now_ns()})
            fault = self.rest_faults.popleft() if self.rest_faults else None
        if fault is not None:
            kind = fault[0]
            if kind == "status":
                return self._reply(h, fault[1], {"status": "ERROR", "request_id": "fake",
                                                 "error": f"fake fault {fault[1]}"},
                                   fault[2] if len(fault) > 2 else None)
            if kind == "malformed":
                return self._reply_raw(h, 200, b"<html>upstream hiccup</html>", "text/html")
            if kind == "hang":
                time.sleep(fault[1])
        if not auth_ok:
            return self._reply(h, 401, {"status": "ERROR", "request_id": "fake",
                                        "error": "Unknown API Key"})
        seg = parts.path.strip("/").split("/")
        try:
            if seg[:3] == ["v2", "aggs", "ticker"] and len(seg) == 9 and seg[4] == "range":
                return self._reply(h, 200, self._aggs(seg[3], int(seg[5]), seg[6], seg[7], seg[8], query))
            if seg[:4] == ["v2", "aggs", "grouped", "locale"] and len(seg) == 8:
                return self._reply(h, 200, self._grouped(date.fromisoformat(seg[7])))
        except ValueError as exc:
            return self._reply(h, 400, {"status": "ERROR", "error": str(exc)})
        self._reply(h, 404, {"status": "NOT_FOUND", "message": "Not found"})

    @staticmethod
    def _reply(h: BaseHTTPRequestHandler, status: int, body: dict[str, Any],
               headers: dict[str, str] | None = None) -> None:
        FakePolygon._reply_raw(h, status, json.dumps(body).encode(), "application/json", headers)

    @staticmethod
    def _reply_raw(h: BaseHTTPRequestHandler, status: int, data: bytes, ctype: str,
                   headers: dict[str, str] | None = None) -> None:
        h.send_response(status)
        for name, value in (headers or {}).items():
            h.send_header(name, value)
        h.send_header("Content-Type", ctype)
        h.send_header("Content-Length", str(len(data)))
        h.end_headers()
        try:
            h.wfile.write(data)
        except (BrokenPipeError, ConnectionResetError):  # the client gave up (a timeout test)
            pass

    @staticmethod
    def _ms(text: str, end: bool) -> int:
        if text.isdigit():
            return int(text)
        d = date.fromisoformat(text)
        t = datetime(d.year, d.month, d.day, tzinfo=NY).timestamp() * 1000
        return int(t) + (86_400_000 - 1 if end else 0)

    def _aggs(self, sym: str, mult: int, span: str, frm: str, to: str, q: dict[str, str]) -> dict[str, Any]:
        lo, hi = self._ms(frm, False), self._ms(to, True)
        if span == "minute":
            now = self.clock.now_ns()
            with self._lock:
                bars = sorted((b for b in self.minute.get(sym, {}).values()
                               if lo <= b.ts // 1_000_000 <= hi and b.ts + MINUTE_NS <= now),
                              key=lambda b: b.ts)
            rows = [agg_result(b) for b in bars] + self.extra_rows.get(sym, [])
        elif span == "day":
            rows = []
            with self._lock:
                for d in sorted(self.daily):
                    t = self._ms(d.isoformat(), False)
                    if lo <= t <= hi and sym in self.daily[d]:
                        o, h, l, c, v = self.daily[d][sym]
                        rows.append({"o": o, "h": h, "l": l, "c": c, "v": v, "t": t, "n": 1})
        else:
            raise ValueError(f"timespan {span} not served by the fake")
        start = int(q.get("cursor", "0"))
        page = rows[start:start + self.page_size]
        body: dict[str, Any] = {"ticker": sym, "queryCount": len(rows), "resultsCount": len(page),
                                "adjusted": True, "status": "OK", "request_id": "fake"}
        if page:
            body["results"] = page
        if start + self.page_size < len(rows):
            body["next_url"] = (f"https://api.polygon.io/v2/aggs/ticker/{sym}/range/{mult}/{span}/"
                                f"{frm}/{to}?cursor={start + self.page_size}&limit={self.page_size}")
        return body

    def _grouped(self, d: date) -> dict[str, Any]:
        t = self._ms(d.isoformat(), False)
        with self._lock:
            rows = [{"T": s, "o": o, "h": h, "l": l, "c": c, "v": v, "vw": c, "t": t, "n": 1}
                    for s, (o, h, l, c, v) in sorted(self.daily.get(d, {}).items())]
        body: dict[str, Any] = {"queryCount": len(rows), "resultsCount": len(rows), "adjusted": True,
                                "status": "OK", "request_id": "fake"}
        if rows:
            body["results"] = rows
        return body

    # --- websocket -----------------------------------------------------------------------------
    async def _ws_handler(self, ws: ServerConnection) -> None:
        self.connections += 1
        await ws.send(json.dumps([{"ev": "status", "status": "connected",
                                   "message": "Connected Successfully"}]))
        try:
            auth = json.loads(await ws.recv())
            self.auth_attempts.append(str(auth.get("params")))
            if auth.get("action") != "auth" or auth.get("params") != self.api_key:
                await ws.send(json.dumps([{"ev": "status", "status": "auth_failed",
                                           "message": "authentication failed"}]))
                await ws.close()
                return
            await ws.send(json.dumps([{"ev": "status", "status": "auth_success",
                                       "message": "authenticated"}]))
            self._subs[ws] = set()
            self._clients.add(ws)
            async for msg in ws:
                req = json.loads(msg)
                topics = [t for t in str(req.get("params", "")).split(",") if t]
                if req.get("action") == "subscribe":
                    self._subs[ws].update(topics)
                    self.subscriptions.extend(topics)
                    if self.ack_subscribe and not self.muted:
                        await ws.send(json.dumps([{"ev": "status", "status": "success",
                                                   "message": f"subscribed to: {t}"} for t in topics]))
                elif req.get("action") == "unsubscribe":
                    self._subs[ws].difference_update(topics)
        except Exception:  # noqa: BLE001 - a client going away
            pass
        finally:
            self._clients.discard(ws)
            self._subs.pop(ws, None)

    def _wanted(self, ws: ServerConnection, sym: str) -> bool:
        subs = self._subs.get(ws, set())
        return f"AM.{sym}" in subs or "AM.*" in subs

    async def _send_bars(self, bars: list[Bar], duplicate: bool) -> int:
        if self.muted:
            return 0
        sent = 0
        for ws in list(self._clients):
            events = [am_event(b) for b in bars if self._wanted(ws, b.symbol)]
            if duplicate:
                events = events + events
            if not events:
                continue
            try:
                await ws.send(json.dumps(events))
            except Exception:  # noqa: BLE001 - gone
                continue
            mine = [b for b in bars if self._wanted(ws, b.symbol)]
            self.sent.extend(mine + mine if duplicate else mine)
            sent += len(events)
        return sent

    def send_bars(self, bars: Iterable[Bar], duplicate: bool = False) -> int:
        """One frame (a JSON array of AM events) to every subscribed client; muted: nothing."""
        return self._call(self._send_bars(list(bars), duplicate))

    def send_burst(self, bars: Iterable[Bar], per_frame: int = 1) -> int:
        """Many frames back to back (a slow reader's test): `per_frame` events each."""
        async def burst(items: list[Bar]) -> int:
            n = 0
            for i in range(0, len(items), per_frame):
                n += await self._send_bars(items[i:i + per_frame], False)
            return n
        return self._call(burst(list(bars)), timeout=60)

    def send_raw(self, text: str) -> None:
        async def go() -> None:
            for ws in list(self._clients):
                await ws.send(text)
        self._call(go())

    def kick_slow_consumers(self) -> None:
        """What Polygon does to a client that reads too slowly: a status, then a close (1008)."""
        async def go() -> None:
            for ws in list(self._clients):
                await ws.send(json.dumps([{"ev": "status", "status": "slow_consumer",
                                           "message": "client is too slow, disconnecting"}]))
                await ws.close(code=1008, reason="slow consumer")
        self._call(go())

    def drop_connections(self) -> None:
        """Kill every socket without a close frame (the client sees an abnormal closure)."""
        async def go() -> None:
            for ws in list(self._clients):
                ws.transport.abort()
        self._call(go())

    def live_clients(self) -> int:
        return len(self._clients)

    def wait_clients(self, n: int = 1, timeout: float = 10.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if len(self._clients) >= n and all(self._subs.get(ws) for ws in list(self._clients)):
                return
            time.sleep(0.01)
        raise TimeoutError(f"{n} subscribed websocket client(s) expected, {len(self._clients)} connected")

    # --- a paced session -----------------------------------------------------------------------
    def play(self, bars: Iterable[Bar], interval_s: float, *, on_minute: Any = None,
             from_ts: int | None = None) -> "asyncio.Future[None]":
        """Send the bars minute by minute (each minute's events in one frame) every `interval_s`,
        moving the clock to each minute's end first; `on_minute(ts)` runs before each minute (in
        the fake's thread: e.g. mute or unmute at a given minute). Returns a concurrent future."""
        by_minute: dict[int, list[Bar]] = {}
        for b in sorted(bars, key=lambda b: (b.ts, b.symbol)):
            if from_ts is None or b.ts >= from_ts:
                by_minute.setdefault(b.ts, []).append(b)

        async def run() -> None:
            for ts in sorted(by_minute):
                if on_minute is not None:
                    on_minute(ts)
                self.clock.set(ts + MINUTE_NS)
                await self._send_bars(by_minute[ts], False)
                await asyncio.sleep(interval_s)

        return asyncio.run_coroutine_threadsafe(run(), self._loop)  # type: ignore[return-value]


def utc_ns(dt: datetime) -> int:
    return int(dt.astimezone(timezone.utc).timestamp()) * 1_000_000_000
