"""Polygon websocket: minute aggregates (AM.<sym>) into a bounded queue, with reconnects.

How the SDK's `WebSocketClient.connect` behaves (both generations, read from the source):
- it authenticates (`{"action":"auth"}`), raises AuthError on `auth_failed`, subscribes, then
  awaits `processor(msg)` for every message: a slow processor stops the reads, and Polygon's
  server then disconnects the client as a slow consumer. Our processor only parses and puts into
  the queue; the chain consumes the queue elsewhere.
- with `raw=False` a frame that is not JSON, or an event without "ev", raises out of `connect` and
  ends the stream. We use `raw=True` and parse here: a malformed frame or event is counted,
  logged and skipped, and the connection goes on.
- a refused connection is retried inside `connect` forever (websockets' backoff) without a word:
  the state stays CONNECTING, which the failover treats as down after its grace period.
- `max_reconnects=0`: a dropped connection returns from (or raises out of) `connect`; this
  module then counts it, waits with its own backoff and reconnects with a new client, and puts a
  `reconnected` marker in the queue so the consumer backfills the gap over REST.

Overflow policy of the queue: a bar is never dropped. When the queue is full the processor
awaits room, which stops the socket reads (TCP backpressure); each wait is counted.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter
from typing import Any, Callable, Mapping, Sequence

import orjson

from live_runner.core.clients import FeedMarker, FeedState
from live_runner.adapters.polygon import sdk
from live_runner.core.models import Bar

log = logging.getLogger("live_runner.adapters.polygon")

_NS_PER_MS = 1_000_000
_OK_STATUSES = frozenset({"connected", "auth_success", "success"})


def _number(x: Any) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and x == x


class PolygonStream:
    """One websocket subscription to AM.<symbol> for a universe."""

    def __init__(self, api_key: str, *, feed: str | None = None, secure: bool = True,
                 connect_timeout_s: float = 10.0, queue_size: int = 10_000,
                 backoff_s: float = 1.0, backoff_max_s: float = 30.0,
                 monotonic: Callable[[], float] = time.monotonic) -> None:
        self._api_key = api_key
        self._feed = feed
        self._secure = secure
        self._open_timeout = connect_timeout_s
        self._backoff_s = backoff_s
        self._backoff_max_s = backoff_max_s
        self._now = monotonic
        self.queue: asyncio.Queue[Bar | FeedMarker] = asyncio.Queue(maxsize=queue_size)
        self.state = FeedState.IDLE
        self.state_since = monotonic()
        self.state_reason = ""
        self.last_bar_at = 0.0
        self.counts: Counter[str] = Counter()
        self.server_statuses: Counter[str] = Counter()
        self._symbols: list[str] = []
        self._on_data: Callable[[], None] = lambda: None
        self._task: asyncio.Task[None] | None = None
        self._client: Any = None
        self._stopping = False
        self._was_live = False
        self._logged: set[str] = set()

    # --- lifecycle -----------------------------------------------------------------------------
    async def start(self, symbols: Sequence[str], on_data: Callable[[], None],
                    since: Mapping[str, int] | None = None) -> None:
        if self._task is not None and not self._task.done():
            return
        self._symbols = sorted(set(symbols))
        self._on_data = on_data
        self._stopping = False
        self._task = asyncio.create_task(self._run(), name="polygon-stream")

    async def stop(self) -> None:
        self._stopping = True
        client, task = self._client, self._task
        if client is not None and getattr(client, "websocket", None) is not None:
            try:
                await asyncio.wait_for(client.close(), timeout=2.0)
            except Exception:  # noqa: BLE001 - closing a broken socket
                pass
        if task is not None and not task.done():
            try:
                await asyncio.wait_for(asyncio.shield(task), timeout=2.0)
            except (asyncio.TimeoutError, Exception):  # noqa: BLE001
                task.cancel()
                try:
                    await task
                except (asyncio.CancelledError, Exception):  # noqa: BLE001
                    pass
        if self.state is not FeedState.FAILED:  # keep why it failed for /status
            self._set_state(FeedState.STOPPED, "stopped")

    def reconnect(self) -> None:
        """Close the current socket (a mute one): the run loop opens a new connection."""
        client = self._client
        if client is None or getattr(client, "websocket", None) is None:
            return
        self.counts["forced_reconnects"] += 1
        log.warning("polygon websocket: reconnecting a silent connection")
        asyncio.ensure_future(self._close_quietly(client))

    @staticmethod
    async def _close_quietly(client: Any) -> None:
        try:
            await asyncio.wait_for(client.close(), timeout=2.0)
        except Exception:  # noqa: BLE001
            pass

    def _set_state(self, state: FeedState, reason: str = "") -> None:
        if state is not self.state:
            log.info("polygon websocket: %s -> %s%s", self.state.value, state.value,
                     f" ({reason})" if reason else "")
            self.state = state
            self.state_since = self._now()
        self.state_reason = reason

    # --- the connection loop -------------------------------------------------------------------
    def _new_client(self) -> Any:
        kwargs: dict[str, Any] = {"api_key": self._api_key, "market": "stocks", "raw": True,
                                  "secure": self._secure, "max_reconnects": 0,
                                  "subscriptions": [f"AM.{s}" for s in self._symbols]}
        if self._feed:
            kwargs["feed"] = self._feed
        return sdk.WebSocketClient(**kwargs)

    async def _run(self) -> None:
        delay = self._backoff_s
        while not self._stopping:
            self._set_state(FeedState.CONNECTING)
            self._client = client = self._new_client()
            self.counts["connects"] += 1
            connected_at = self._now()
            try:
                await client.connect(self._on_message, open_timeout=self._open_timeout)
                reason = "closed"
            except sdk.AuthError as exc:
                self.counts["auth_failed"] += 1
                log.critical("polygon websocket: authentication failed: %s (check POLYGON_API_KEY)", exc)
                self._set_state(FeedState.FAILED, f"authentication failed: {exc}")
                return
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - any drop: count, back off, reconnect
                reason = f"{type(exc).__name__}: {exc}"
            finally:
                self._client = None
            if self._stopping:
                break
            self.counts["disconnects"] += 1
            self._set_state(FeedState.DISCONNECTED, reason)
            if self._now() - connected_at > 30.0:
                delay = self._backoff_s  # it had been up a while: start the backoff again
            log.warning("polygon websocket disconnected (%s); reconnecting in %.1f s", reason, delay)
            await asyncio.sleep(delay)
            delay = min(max(delay * 2, 0.05), self._backoff_max_s)

    # --- the reader ----------------------------------------------------------------------------
    def _malformed(self, what: str, raw: Any) -> None:
        self.counts[what] += 1
        if what not in self._logged:
            self._logged.add(what)
            text = raw if isinstance(raw, str) else repr(raw)
            log.error("polygon websocket: %s skipped (further ones are counted, not logged): %.200s",
                      what.replace("_", " "), text)

    async def _on_message(self, raw: str | bytes) -> None:
        self.counts["messages"] += 1
        if self.state is not FeedState.LIVE:  # the first message after auth and subscribe
            if self._was_live:
                self.counts["reconnects"] += 1
                await self._put(FeedMarker("reconnected", self._now()))
            self._was_live = True
            self._set_state(FeedState.LIVE)
        try:
            events = orjson.loads(raw)
        except orjson.JSONDecodeError:
            self._malformed("malformed_messages", raw)
            return
        if not isinstance(events, list):
            events = [events]  # one event not wrapped in an array: accept it
        for ev in events:
            if not isinstance(ev, dict):
                self._malformed("malformed_events", ev)
                continue
            kind = ev.get("ev")
            if kind == "AM":
                bar = self._to_bar(ev)
                if bar is not None:
                    await self._put(bar)
            elif kind == "status":
                self._on_status(ev)
            elif kind is None:
                self._malformed("malformed_events", ev)
            else:
                self.counts["ignored_events"] += 1

    def _on_status(self, ev: dict[str, Any]) -> None:
        status = str(ev.get("status"))
        self.server_statuses[status] += 1
        if status not in _OK_STATUSES:
            log.warning("polygon websocket server status %s: %s", status, ev.get("message"))

    def _to_bar(self, ev: dict[str, Any]) -> Bar | None:
        agg = sdk.EquityAgg.from_dict(ev)
        sym, start, end = agg.symbol, agg.start_timestamp, agg.end_timestamp
        o, h, lo, c, v = agg.open, agg.high, agg.low, agg.close, agg.volume
        if not (isinstance(sym, str) and sym and _number(start)
                and all(_number(x) for x in (o, h, lo, c, v))):
            self._malformed("malformed_events", ev)
            return None
        if start % 60_000 or (end is not None and end - start != 60_000):
            self._malformed("malformed_events", ev)  # not a minute aggregate
            return None
        return Bar(sym, int(start) * _NS_PER_MS, float(o), float(h), float(lo), float(c), float(v))

    async def _put(self, item: Bar | FeedMarker) -> None:
        q = self.queue
        if q.full():
            self.counts["reader_waits"] += 1
            t0 = self._now()
            await q.put(item)  # backpressure: the socket is not read until there is room
            self.counts["reader_wait_ms"] += int((self._now() - t0) * 1000)
        else:
            q.put_nowait(item)
        if isinstance(item, Bar):
            self.counts["bars"] += 1
            self.last_bar_at = self._now()
        self._on_data()

    def stats(self) -> dict[str, Any]:
        return {"state": self.state.value, "state_reason": self.state_reason,
                "queue_depth": self.queue.qsize(), "queue_size": self.queue.maxsize,
                **dict(self.counts), "server_statuses": dict(self.server_statuses)}
