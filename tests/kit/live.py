"""Harness for the live service: LiveService on its own event loop in a thread, a feed the test
releases bar by bar, real HTTP clients, and real receivers for alerts (HTTP webhook, aiosmtpd).

Everything listens on 127.0.0.1 with port 0.
"""

from __future__ import annotations

import asyncio
import http.client
import json
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Callable, Iterable

from aiosmtpd.controller import Controller

from live_runner.core.config import SystemConfig, parse_config
from live_runner.core.models import Bar, Signal
from live_runner.live.runs import RunOptions
from live_runner.live.service import LiveService
from live_runner.strategies.base import Strategy
from tests.kit.sessions import SessionBuilder, et_ns

TOKEN = "s3cret-token"
TOKEN_ENV = "TEST_CONTROL_TOKEN"
DAY = "2024-03-15"


def live_config(**overrides: Any) -> SystemConfig:
    ops = {"port": 0, "token_env": TOKEN_ENV, **overrides.pop("ops", {})}
    data: dict[str, Any] = {"active_strategies": ["gap_and_go"], "log_dir": None, "ops": ops,
                            "journal": {"batch_size": 1}}
    data.update(overrides)
    return parse_config(data)


# --- market -------------------------------------------------------------------------------------
class Market:
    """Bars of one session keyed by (symbol, HH:MM), released in time order by a GatedFeed."""

    def __init__(self) -> None:
        self.s = SessionBuilder(day=DAY)
        self.bars: dict[tuple[str, str, str], Bar] = {}

    def put(self, sym: str, hhmm: str, o: float, h: float, l: float, c: float, v: float,
            day: str = DAY) -> "Market":
        self.bars[(day, hhmm, sym)] = Bar(sym, et_ns(day, hhmm), o, h, l, c, v)
        return self

    def gapper(self, sym: str, brk: str, until: str = "10:00") -> "Market":
        """A qualified gap_and_go name: prev close 10.00, premarket high 11.00 (60k shares),
        quiet at 10.90 from the open, breaks out at `brk` (close 11.20, low 10.90 = the stop);
        the entry fills at the next bar's open 11.25 (target 11.95), then it drifts at 11.30."""
        self.put(sym, "15:59", 10.0, 10.0, 10.0, 10.0, 10_000, day=self.s.prev_day)
        self.put(sym, "08:00", 10.5, 10.8, 10.4, 10.7, 30_000)
        self.put(sym, "09:00", 10.7, 11.0, 10.6, 10.9, 30_000)
        t, b, end = et_ns(DAY, "09:30"), et_ns(DAY, brk), et_ns(DAY, until)
        while t <= end:
            hhmm = _hhmm(t)
            if t < b:
                self.put(sym, hhmm, 10.9, 10.95, 10.85, 10.9, 20_000)
            elif t == b:
                self.put(sym, hhmm, 10.95, 11.3, 10.9, 11.2, 60_000)
            else:
                self.put(sym, hhmm, 11.25, 11.4, 11.1, 11.3, 40_000)
            t += 60_000_000_000
        return self

    def sorted(self) -> list[Bar]:
        return sorted(self.bars.values(), key=lambda b: (b.ts, b.symbol))

    def until(self, hhmm: str, after: str | None = None) -> list[Bar]:
        """Bars of the session day up to HH:MM inclusive (and the previous day), after `after`."""
        hi = et_ns(DAY, hhmm)
        lo = et_ns(DAY, after) if after else -1
        return [b for b in self.sorted() if lo < b.ts <= hi]

    def csv(self, path: Path) -> Path:
        rows = ["symbol,timestamp,open,high,low,close,volume"]
        rows += [f"{b.symbol},{b.ts},{b.open},{b.high},{b.low},{b.close},{b.volume}" for b in self.sorted()]
        path.write_text("\n".join(rows) + "\n")
        return path


def _hhmm(ts: int) -> str:
    from datetime import datetime

    from tests.kit.sessions import NY

    return datetime.fromtimestamp(ts / 1e9, tz=NY).strftime("%H:%M")


class Boom(Strategy):
    """A user strategy with a bug: raises on the first regular-session bar of BOOM."""

    name = "boom"

    def on_bar(self, bar: Bar) -> Signal | None:
        if bar.symbol == "BOOM" and bar.ts >= et_ns(DAY, "09:31"):
            raise ZeroDivisionError("strategy bug on BOOM")
        return None


# --- the service ----------------------------------------------------------------------------------
class GatedFeed:
    """An async iterator of bars that the test thread releases (`push`), then ends (`end`)."""

    _END = object()

    def __init__(self) -> None:
        self.loop: asyncio.AbstractEventLoop | None = None
        self.queue: asyncio.Queue[Any] | None = None
        self.ready = threading.Event()
        self.idle = threading.Event()
        self.released = 0

    def __aiter__(self) -> "GatedFeed":
        return self

    async def __anext__(self) -> Bar:
        if self.queue is None:
            self.loop = asyncio.get_running_loop()
            self.queue = asyncio.Queue()
            self.ready.set()
        if self.queue.empty():
            self.idle.set()  # everything released so far has been through the chain
        item = await self.queue.get()
        if item is self._END:
            self.idle.set()
            raise StopAsyncIteration
        return item

    def push(self, bars: Iterable[Bar], timeout: float = 10.0) -> None:
        """Release bars and wait until the chain has handled all of them."""
        assert self.ready.wait(timeout), "the feed was never started"
        bars = list(bars)
        queue = self.queue
        assert queue is not None and self.loop is not None
        self.idle.clear()
        # One callback for all: the chain must not see the queue empty half way through.
        self.loop.call_soon_threadsafe(lambda: [queue.put_nowait(b) for b in bars])
        self.released += len(bars)
        assert self.idle.wait(timeout), "the chain did not take the bars"

    def push_nowait(self, bars: Iterable[Bar]) -> None:
        """Release bars without waiting for the chain (e.g. when one of them kills the run)."""
        assert self.ready.wait(10) and self.loop is not None and self.queue is not None
        bars, queue = list(bars), self.queue
        self.loop.call_soon_threadsafe(lambda: [queue.put_nowait(b) for b in bars])

    def end(self) -> None:
        assert self.ready.wait(10)
        self.loop.call_soon_threadsafe(self.queue.put_nowait, self._END)  # type: ignore[union-attr]


class ServiceThread:
    """LiveService.run() on a fresh event loop in a thread; HTTP from the test thread."""

    def __init__(self, tmp_path: Path, config: SystemConfig | None = None, *,
                 env: dict[str, str] | None = None, feed: GatedFeed | None = None,
                 bars: Path | None = None, speed: float | None = None, linger: bool = True,
                 health: Any = None) -> None:
        self.config = config or live_config()
        self.journal_url = f"sqlite:///{tmp_path / 'journal.db'}"
        opts = RunOptions(bars=bars or tmp_path / "unused.csv", journal_url=self.journal_url,
                          speed=speed, linger=linger)
        environ = {TOKEN_ENV: TOKEN} if env is None else env
        self.feed = feed if feed is not None or bars is not None else GatedFeed()
        self.service = LiveService(self.config, opts, environ=environ, bar_source=self.feed,
                                   health=health)
        self.summary: dict[str, Any] | None = None
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._main, name="live-service", daemon=True)

    def _main(self) -> None:
        try:
            self.summary = asyncio.run(self.service.run())
        except BaseException as exc:  # handed to the test by stop()
            self.error = exc

    def __enter__(self) -> "ServiceThread":
        self.thread.start()
        if not self.service.serving.wait(20):
            raise RuntimeError(f"the ops server did not start: {self.error!r}")
        return self

    def __exit__(self, *exc: Any) -> None:
        if self.thread.is_alive():
            self.service.request_stop()
            self.thread.join(20)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.service.bound_port}"

    @property
    def port(self) -> int:
        return self.service.bound_port

    @property
    def node(self) -> Any:
        return self.service.node

    def stop(self, timeout: float = 20.0) -> dict[str, Any]:
        self.service.request_stop()
        self.thread.join(timeout)
        assert not self.thread.is_alive(), "the service did not stop"
        if self.error is not None:
            raise self.error
        assert self.summary is not None
        return self.summary

    def wait_done(self, timeout: float = 30.0) -> None:
        self.thread.join(timeout)
        assert not self.thread.is_alive(), "the service did not finish"

    def on_loop(self, fn: Callable[[], Any], timeout: float = 10.0) -> Any:
        """Run fn on the service's loop (between bars, like a command) and return its result."""
        loop = self.service._loop
        assert loop is not None
        done = threading.Event()
        box: list[Any] = []

        def call() -> None:
            try:
                box.append(fn())
            finally:
                done.set()
        loop.call_soon_threadsafe(call)
        assert done.wait(timeout)
        return box[0] if box else None

    # HTTP --------------------------------------------------------------------------------------
    def get(self, path: str) -> tuple[int, Any]:
        return http_call(self.port, "GET", path)

    def post(self, path: str, token: str | None = TOKEN, body: Any = None,
             raw: bytes | None = None) -> tuple[int, Any]:
        return http_call(self.port, "POST", path, token=token, body=body, raw=raw)

    def control(self, command: str, operator: str = "tester") -> dict[str, Any]:
        status, data = self.post(f"/control/{command}", body={"operator": operator})
        assert status == 200, data
        return data

    def status(self) -> dict[str, Any]:
        code, data = self.get("/status")
        assert code == 200, data
        return data


def http_call(port: int, method: str, path: str, *, token: str | None = None, body: Any = None,
              raw: bytes | None = None, headers: dict[str, str] | None = None,
              timeout: float = 10.0) -> tuple[int, Any]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    hdrs = dict(headers or {})
    payload = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
    if payload is not None:
        hdrs.setdefault("Content-Type", "application/json")
    if token is not None:
        hdrs["Authorization"] = f"Bearer {token}"
    try:
        conn.request(method, path, body=payload, headers=hdrs)
        resp = conn.getresponse()
        data = resp.read()
        ctype = resp.getheader("Content-Type", "")
        return resp.status, (json.loads(data) if ctype.startswith("application/json") else data.decode())
    finally:
        conn.close()


def raw_exchange(port: int, chunks: Iterable[bytes], pause_s: float = 0.0,
                 timeout: float = 10.0) -> bytes:
    """Send chunks (sleeping between them), then read the whole answer (the server closes)."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        try:
            for chunk in chunks:
                sock.sendall(chunk)
                if pause_s:
                    time.sleep(pause_s)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the server answered and closed before we were done: read what it said
        out = b""
        while True:
            try:
                data = sock.recv(65536)
            except ConnectionResetError:
                break
            if not data:
                break
            out += data
        return out


def status_of(raw: bytes) -> int:
    return int(raw.split(b" ", 2)[1]) if raw.startswith(b"HTTP/1.1 ") else 0


def free_port() -> int:
    """A port nothing listens on (bound, then released)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def journal_rows(url: str, kind: str | None = None) -> list[dict[str, Any]]:
    import sqlalchemy as sa

    engine = sa.create_engine(url)
    try:
        with engine.connect() as conn:
            q = "select session, ts, kind, key, payload from journal_events"
            params = {}
            if kind:
                q += " where kind = :kind"
                params["kind"] = kind
            rows = conn.execute(sa.text(q + " order by seq"), params).all()
    finally:
        engine.dispose()
    out = []
    for r in rows:
        payload = r.payload
        if isinstance(payload, (bytes, str)):
            payload = json.loads(payload)
        out.append({"session": r.session, "ts": r.ts, "kind": r.kind, "key": r.key, "payload": payload})
    return out


# --- alert receivers ------------------------------------------------------------------------------
class WebhookReceiver:
    """A Slack-style webhook endpoint (http.server on a thread); `hang` makes it never answer."""

    def __init__(self, hang: bool = False) -> None:
        self.bodies: list[dict[str, Any]] = []
        self.received = threading.Event()
        self.release = threading.Event()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 (http.server API)
                body = self.rfile.read(int(self.headers["Content-Length"]))
                outer.bodies.append(json.loads(body))
                outer.received.set()
                if hang:
                    outer.release.wait(30)
                self.send_response(200)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/hook"
        self.thread = threading.Thread(target=self.httpd.serve_forever, args=(0.05,), daemon=True)
        self.thread.start()

    def keys(self) -> list[str]:
        return [b["alert"]["key"] for b in self.bodies]

    def wait_for(self, key: str, timeout: float = 10.0) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for b in list(self.bodies):
                if b["alert"]["key"] == key:
                    return b
            time.sleep(0.02)
        raise AssertionError(f"no {key!r} alert reached the webhook; got {self.keys()}")

    def close(self) -> None:
        self.release.set()
        self.httpd.shutdown()
        self.httpd.server_close()


class _Collect:
    def __init__(self) -> None:
        self.envelopes: list[Any] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # noqa: N802
        self.envelopes.append(envelope)
        return "250 Message accepted for delivery"


class _PortZeroController(Controller):
    def _trigger_server(self) -> None:
        self.port = self.server.sockets[0].getsockname()[1]
        super()._trigger_server()


class SmtpReceiver:
    """aiosmtpd on 127.0.0.1; `env()` gives the runner's TRADING_ALERT_SMTP_* variables."""

    def __init__(self) -> None:
        self.handler = _Collect()
        self.controller = _PortZeroController(self.handler, hostname="127.0.0.1", port=0)
        self.controller.start()

    def env(self) -> dict[str, str]:
        return {"TRADING_ALERT_SMTP_HOST": "127.0.0.1", "TRADING_ALERT_SMTP_PORT": str(self.controller.port),
                "TRADING_ALERT_EMAIL_FROM": "runner@example.com", "TRADING_ALERT_EMAIL_TO": "ops@example.com"}

    def subjects(self) -> list[str]:
        from email import message_from_bytes

        return [message_from_bytes(e.content)["Subject"] for e in self.handler.envelopes]

    def wait_for(self, needle: str, timeout: float = 10.0) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for subject in self.subjects():
                if needle in subject:
                    return subject
            time.sleep(0.02)
        raise AssertionError(f"no mail with {needle!r}; got {self.subjects()}")

    def close(self) -> None:
        self.controller.stop()
