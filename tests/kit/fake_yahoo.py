"""A fake Yahoo Finance on 127.0.0.1 (port 0), and the curl_cffi session that reaches it.

yfinance has no base-URL option (its URLs are constants and literals), so the test session
rewrites `https://*.yahoo.com/...` to the fake and refuses every other URL (recorded in
`refused`, raised as `RefusedHost`): nothing can leave the machine. The fake answers what
yfinance asks for: `fc.yahoo.com/` (404 with a Set-Cookie), `/v1/test/getcrumb` (a text crumb),
`guce.yahoo.com/consent` (a page without a form: yfinance falls back) and
`/v8/finance/chart/{SYM}` (meta, timestamp[], indicators.quote[0], adjclose).

Minute bars are visible once complete on the market clock plus `delay_minutes` (Yahoo's delay).
Faults: `faults` (consumed one per chart request): an HTTP status (429, 500), "malformed" (an
HTML page), "unknown" (Yahoo's 404 JSON for a delisted symbol).
"""

from __future__ import annotations

import json
import threading
from collections import deque
from datetime import date, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Iterable
from urllib.parse import parse_qs, urlsplit
from zoneinfo import ZoneInfo

from curl_cffi import requests as curl_requests

from live_runner.core.models import Bar

NY = ZoneInfo("America/New_York")
MINUTE_NS = 60_000_000_000


class RefusedHost(RuntimeError):
    """The test session was asked for a URL that is not Yahoo's: never sent."""


class LocalYahooSession(curl_requests.Session):
    """curl_cffi Session for yfinance: Yahoo URLs go to the fake, any other URL is refused."""

    def __init__(self, base_url: str, **kwargs: Any) -> None:
        kwargs.setdefault("impersonate", "chrome")
        kwargs.setdefault("trust_env", False)
        super().__init__(**kwargs)
        self.base_url = base_url.rstrip("/")
        self.refused: list[str] = []
        self.seen: list[str] = []

    def request(self, method: Any, url: str, *args: Any, **kwargs: Any) -> Any:  # type: ignore[override]
        parts = urlsplit(url)
        host = parts.hostname or ""
        if parts.scheme != "https" or not (host == "yahoo.com" or host.endswith(".yahoo.com")):
            self.refused.append(url)
            raise RefusedHost(f"refused a non-Yahoo URL in an offline test: {url}")
        self.seen.append(url)
        local = f"{self.base_url}{parts.path or '/'}" + (f"?{parts.query}" if parts.query else "")
        headers = dict(kwargs.pop("headers", None) or {})
        headers["X-Fake-Yahoo-Host"] = host
        kwargs["allow_redirects"] = False  # a redirect would be followed inside curl, unchecked
        return super().request(method, local, *args, headers=headers, **kwargs)


def _ts_s(ns: int) -> int:
    return ns // 1_000_000_000


class FakeYahoo:
    def __init__(self, clock: Any = None, delay_minutes: int = 0) -> None:
        self.clock = clock
        self.delay_minutes = delay_minutes
        self.minute: dict[str, dict[int, Bar]] = {}
        self.daily: dict[str, dict[date, tuple[float, float, float, float, float]]] = {}
        self.faults: deque[tuple[Any, ...]] = deque()
        self.requests: list[dict[str, Any]] = []
        self.chart_requests = 0
        self._lock = threading.Lock()
        self._http: ThreadingHTTPServer | None = None
        self.port = 0

    def __enter__(self) -> "FakeYahoo":
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self) -> None:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self) -> None:  # noqa: N802
                fake._serve(self)

            def do_POST(self) -> None:  # noqa: N802
                fake._send(self, 404, b"not here", "text/plain")

            def log_message(self, *args: object) -> None:
                return

        self._http = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._http.daemon_threads = True
        self.port = self._http.server_address[1]
        threading.Thread(target=self._http.serve_forever, name="fake-yahoo", daemon=True).start()

    def stop(self) -> None:
        if self._http is not None:
            self._http.shutdown()
            self._http.server_close()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def session(self) -> LocalYahooSession:
        return LocalYahooSession(self.url)

    # --- data ----------------------------------------------------------------------------------
    def add_bars(self, bars: Iterable[Bar]) -> None:
        with self._lock:
            for b in bars:
                self.minute.setdefault(b.symbol, {})[b.ts] = b

    def add_daily(self, symbol: str, day: date, o: float, h: float, l: float, c: float, v: float) -> None:
        with self._lock:
            self.daily.setdefault(symbol, {})[day] = (o, h, l, c, v)

    def visible(self, bar: Bar) -> bool:
        if self.clock is None:
            return True
        return bar.ts + MINUTE_NS * (1 + self.delay_minutes) <= self.clock.now_ns()

    # --- HTTP ----------------------------------------------------------------------------------
    @staticmethod
    def _send(h: BaseHTTPRequestHandler, status: int, data: bytes, ctype: str,
              extra: dict[str, str] | None = None) -> None:
        h.send_response(status)
        h.send_header("Content-Type", ctype)
        h.send_header("Content-Length", str(len(data)))
        for k, v in (extra or {}).items():
            h.send_header(k, v)
        h.end_headers()
        h.wfile.write(data)

    def _json(self, h: BaseHTTPRequestHandler, status: int, body: Any) -> None:
        self._send(h, status, json.dumps(body).encode(), "application/json;charset=utf-8")

    def _serve(self, h: BaseHTTPRequestHandler) -> None:
        parts = urlsplit(h.path)
        host = h.headers.get("X-Fake-Yahoo-Host", "")
        q = {k: v[-1] for k, v in parse_qs(parts.query).items()}
        with self._lock:
            self.requests.append({"host": host, "path": parts.path, "query": q})
        if host == "fc.yahoo.com":
            return self._send(h, 404, b"<html>not found</html>", "text/html",
                              {"Set-Cookie": "A3=d=fake&S=fake; Max-Age=31557600; Path=/; SameSite=None"})
        if parts.path == "/v1/test/getcrumb":
            return self._send(h, 200, b"fakeCrumb0123", "text/plain;charset=utf-8")
        if parts.path.startswith("/v8/finance/chart/"):
            return self._chart(h, parts.path.rsplit("/", 1)[1], q)
        if parts.path.startswith("/v10/finance/quoteSummary/"):
            return self._json(h, 404, {"quoteSummary": {"result": None, "error": {
                "code": "Not Found", "description": "Quote not found for symbol"}}})
        if parts.path == "/v7/finance/quote":
            return self._json(h, 200, {"quoteResponse": {"result": [], "error": None}})
        if parts.path.startswith("/ws/fundamentals-timeseries/"):
            return self._json(h, 200, {"timeseries": {"result": [], "error": None}})
        if host.startswith("guce.") or host.startswith("consent."):
            return self._send(h, 200, b"<html><body>consent</body></html>", "text/html")
        self._send(h, 404, b"<html>not found</html>", "text/html")

    def _chart(self, h: BaseHTTPRequestHandler, sym: str, q: dict[str, str]) -> None:
        with self._lock:
            self.chart_requests += 1
            fault = self.faults.popleft() if self.faults else None
        if fault is not None:
            if fault[0] == "status":
                body = b"Too Many Requests" if fault[1] == 429 else b"<html>server error</html>"
                return self._send(h, fault[1], body, "text/html")
            if fault[0] == "malformed":
                return self._send(h, 200, b"<html>Will be right back</html>", "text/html")
        interval = q.get("interval", "1d")
        with self._lock:
            known = sym in self.minute or sym in self.daily
        if not known or (fault is not None and fault[0] == "unknown"):
            return self._json(h, 404, {"chart": {"result": None, "error": {
                "code": "Not Found", "description": "No data found, symbol may be delisted"}}})
        if interval == "1m":
            rows = self._minute_rows(sym, q)
        else:
            rows = self._daily_rows(sym, q)
        self._json(h, 200, self._chart_body(sym, interval, rows, q))

    def _minute_rows(self, sym: str, q: dict[str, str]) -> list[tuple[int, float, float, float, float, float]]:
        with self._lock:
            bars = sorted((b for b in self.minute.get(sym, {}).values() if self.visible(b)),
                          key=lambda b: b.ts)
        if "period1" in q:
            lo, hi = int(q["period1"]), int(q["period2"])
            bars = [b for b in bars if lo <= _ts_s(b.ts) < hi]
        elif bars:  # range=1d: the latest day that has bars
            last_day = datetime.fromtimestamp(_ts_s(bars[-1].ts), NY).date()
            bars = [b for b in bars if datetime.fromtimestamp(_ts_s(b.ts), NY).date() == last_day]
        return [(_ts_s(b.ts), b.open, b.high, b.low, b.close, b.volume) for b in bars]

    def _daily_rows(self, sym: str, q: dict[str, str]) -> list[tuple[int, float, float, float, float, float]]:
        with self._lock:
            days = sorted(self.daily.get(sym, {}).items())
        rows = []
        for d, (o, hi, lo, c, v) in days:
            t = int(datetime(d.year, d.month, d.day, 9, 30, tzinfo=NY).timestamp())
            if "period1" in q and not int(q["period1"]) <= t < int(q["period2"]):
                continue
            rows.append((t, o, hi, lo, c, v))
        if "period1" not in q:
            rows = rows[-1:]
        return rows

    @staticmethod
    def _chart_body(sym: str, interval: str, rows: list[tuple[int, float, float, float, float, float]],
                    q: dict[str, str]) -> dict[str, Any]:
        last = rows[-1] if rows else (0, 0.0, 0.0, 0.0, 0.0, 0.0)
        day = datetime.fromtimestamp(last[0], NY).date() if rows else date(2024, 1, 2)

        def period(h1: int, m1: int, h2: int, m2: int) -> dict[str, Any]:
            a = datetime(day.year, day.month, day.day, h1, m1, tzinfo=NY)
            b = datetime(day.year, day.month, day.day, h2, m2, tzinfo=NY)
            off = int(a.utcoffset().total_seconds()) if a.utcoffset() else 0  # type: ignore[union-attr]
            return {"timezone": a.tzname(), "start": int(a.timestamp()), "end": int(b.timestamp()),
                    "gmtoffset": off}

        pre, regular, post = period(4, 0, 9, 30), period(9, 30, 16, 0), period(16, 0, 20, 0)
        meta = {
            "currency": "USD", "symbol": sym, "exchangeName": "NMS", "fullExchangeName": "NasdaqGS",
            "instrumentType": "EQUITY", "firstTradeDate": 345479400,
            "regularMarketTime": last[0], "hasPrePostMarketData": True,
            "gmtoffset": regular["gmtoffset"], "timezone": regular["timezone"],
            "exchangeTimezoneName": "America/New_York", "regularMarketPrice": last[4],
            "chartPreviousClose": last[4], "previousClose": last[4], "scale": 3, "priceHint": 2,
            "currentTradingPeriod": {"pre": pre, "regular": regular, "post": post},
            "dataGranularity": interval, "range": q.get("range", ""),
            "validRanges": ["1d", "5d", "1mo", "3mo", "6mo", "1y", "2y", "5y", "10y", "ytd", "max"],
        }
        if interval == "1m":
            meta["tradingPeriods"] = {"pre": [[pre]], "regular": [[regular]], "post": [[post]]}
        quote = {"open": [r[1] for r in rows], "high": [r[2] for r in rows],
                 "low": [r[3] for r in rows], "close": [r[4] for r in rows],
                 "volume": [int(r[5]) for r in rows]}
        result: dict[str, Any] = {"meta": meta, "timestamp": [r[0] for r in rows],
                                  "indicators": {"quote": [quote]}}
        if interval != "1m":
            result["indicators"]["adjclose"] = [{"adjclose": [r[4] for r in rows]}]
        if not rows:
            result.pop("timestamp")
            result["indicators"] = {"quote": [{}]}
        return {"chart": {"result": [result], "error": None}}


def previous_weekday(d: date) -> date:
    d -= timedelta(days=1)
    while d.weekday() >= 5:
        d -= timedelta(days=1)
    return d
