"""The `trade_updates` consumer: alpaca-py's TradingStream, driven inside the runner's loop.

`TradingStream.run()` calls `asyncio.run`, which cannot nest in the running loop, so the stream's
own coroutine `_run_forever()` runs as a task instead (alpaca-py 0.44; the SDK then keeps its
reconnect loop with exponential backoff, whose bounds we set). Around it:

- every frame is timestamped (the client's staleness watchdog reads `last_frame_mono`);
- a frame that is not JSON, or a trade update the SDK's strict model refuses, is counted and
  reported to the owner (which re-reads its open orders over REST: nothing lost) instead of being
  only logged by the SDK; an exception while the owner applies a valid update is a fault
  (`on_stream_fault`: the runner halts and reconciles), never mistaken for a malformed message;
- (re)connections and losses are reported, and `force_reconnect()` drops a connection that the
  watchdog found mute (the SDK reconnects by itself).
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from typing import Any, Protocol

from alpaca.trading.stream import TradingStream

log = logging.getLogger("live_runner.adapters.alpaca.stream")


class StreamOwner(Protocol):
    def on_stream_message(self, msg: dict[str, Any]) -> None: ...
    def on_stream_malformed(self, detail: str) -> None: ...
    def on_stream_fault(self, detail: str) -> None: ...
    def on_stream_up(self) -> None: ...
    def on_stream_down(self, detail: str) -> None: ...
    def on_stream_auth_failed(self) -> None: ...


class TradeUpdateStream(TradingStream):
    """A TradingStream that reports to its owner; raw messages (the owner parses them)."""

    def __init__(self, owner: StreamOwner, api_key: str, secret_key: str, *, paper: bool,
                 url: str | None, min_backoff: float, max_backoff: float,
                 open_timeout: float, ping_interval: float = 10.0) -> None:
        super().__init__(api_key, secret_key, paper=paper, raw_data=True, url_override=url,
                         websocket_params={"ping_interval": ping_interval,
                                           "ping_timeout": max(ping_interval * 2, open_timeout),
                                           "open_timeout": open_timeout, "close_timeout": 2,
                                           "max_queue": 1024})
        self._owner = owner
        self._reconnect_min_backoff = min_backoff
        self._reconnect_max_backoff = max_backoff
        self.last_frame_mono = time.monotonic()
        self.frames = 0
        self.connects = 0
        self.listening = False
        self._task: asyncio.Task[None] | None = None
        self.subscribe_trade_updates(self._handler)

    @property
    def endpoint(self) -> str:
        return str(self._endpoint)

    async def _handler(self, msg: Any) -> None:
        try:
            self._owner.on_stream_message(msg)
        except Exception as exc:  # never into the SDK's loop: it would only log it
            # the message parsed (malformed ones are handled by the owner): a fault, not noise
            log.exception("trade update handling failed")
            self._owner.on_stream_fault(f"handling failed: {type(exc).__name__}: {exc}")

    # --- SDK hooks ---------------------------------------------------------------------------
    async def _auth(self) -> None:
        try:
            await super()._auth()
        except (ValueError, AttributeError, TypeError):
            self._owner.on_stream_auth_failed()
            raise ValueError("trade stream login rejected") from None

    async def _start_ws(self) -> None:
        self.listening = False
        await super()._start_ws()
        # The SDK sets `_running` only after this returns: set it now, so that the owner, told
        # the stream is up, sees it connected (no disconnect alert on a clean start).
        self._running = True
        self.connects += 1
        self.last_frame_mono = time.monotonic()
        self._owner.on_stream_up()

    async def close(self) -> None:
        was = self._ws is not None
        try:
            await super().close()
        finally:
            self.listening = False
            if was:
                self._owner.on_stream_down("connection closed")

    async def _consume(self) -> None:
        """The SDK's `_consume`, with malformed frames counted instead of escaping as exceptions."""
        while True:
            if not self._stop_stream_queue.empty():
                self._stop_stream_queue.get(timeout=1)
                await self.close()
                break
            ws = self._ws
            if ws is None:  # closed under us (force_reconnect): let the SDK reconnect
                raise ConnectionError("websocket gone")
            try:
                raw = await asyncio.wait_for(ws.recv(), 5)
            except asyncio.TimeoutError:
                continue
            self.frames += 1
            self.last_frame_mono = time.monotonic()
            try:
                msg = json.loads(raw)
            except (ValueError, UnicodeDecodeError):
                self._owner.on_stream_malformed(f"not JSON: {bytes(raw[:60]) if isinstance(raw, (bytes, bytearray)) else raw[:60]!r}")
                continue
            if not isinstance(msg, dict):
                self._owner.on_stream_malformed(f"not an object: {str(msg)[:60]}")
                continue
            stream = msg.get("stream")
            if stream == "listening":
                self.listening = True
            if stream == "trade_updates":
                self._data_received = True
            await self._dispatch(msg)

    # --- lifecycle ---------------------------------------------------------------------------
    def start(self) -> asyncio.Task[None]:
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._run_forever(),
                                                                name="alpaca-trade-stream")
        return self._task

    @property
    def connected(self) -> bool:
        return self._ws is not None and self._running

    def force_reconnect(self) -> None:
        """Drop the current connection; the SDK's loop reconnects (with its backoff)."""
        ws = self._ws
        if ws is not None:
            asyncio.get_running_loop().create_task(ws.close())

    async def stop(self, timeout: float = 2.0) -> None:
        task = self._task
        if task is None:
            return
        await self.stop_ws()
        ws = self._ws
        if ws is not None:
            try:
                await asyncio.wait_for(ws.close(), timeout)
            except Exception:
                pass
        try:
            await asyncio.wait_for(asyncio.shield(task), timeout)
        except Exception:
            task.cancel()
            try:
                await task
            except BaseException:
                pass
        self._task = None

    def cancel(self) -> None:
        """Synchronous stop (from `close()`): the task is cancelled on the loop."""
        self._should_run = False
        if self._task is not None and not self._task.done():
            self._task.cancel()
