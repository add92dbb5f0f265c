"""PolygonDataClient: the runner's live data client over Polygon (massive) REST and websocket."""

from __future__ import annotations

import asyncio
import time
from datetime import date
from typing import TYPE_CHECKING, Any, Callable, Mapping, Sequence

from live_runner.core.clients import DailyBar, FeedMarker, FeedState
from live_runner.adapters.polygon import sdk
from live_runner.adapters.polygon.rest import PolygonError, PolygonRest
from live_runner.adapters.polygon.stream import PolygonStream
from live_runner.core.config import secret
from live_runner.core.models import Bar

if TYPE_CHECKING:
    from live_runner.core.config import PolygonConfig


def api_key_from_env(environ: Mapping[str, str] | None = None) -> str | None:
    """POLYGON_API_KEY, else MASSIVE_API_KEY; never a config file."""
    for name in sdk.API_KEY_ENVS:
        value = secret(name, dict(environ) if environ is not None else None)
        if value:
            return value
    return None


class PolygonDataClient:
    """Minute aggregates over the websocket (live), REST for bars the websocket cannot give:
    premarket bars at start, previous closes (grouped daily), a reconnect's gap, daily history."""

    name = "polygon"
    delayed = False

    def __init__(self, cfg: "PolygonConfig", api_key: str, *,
                 monotonic: Callable[[], float] = time.monotonic,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        if not api_key:
            raise PolygonError("config", f"no API key: set {' or '.join(sdk.API_KEY_ENVS)}")
        self.cfg = cfg
        self.rest = PolygonRest(api_key, base_url=cfg.rest_base_url,
                                connect_timeout_s=cfg.connect_timeout_s,
                                read_timeout_s=cfg.read_timeout_s, max_attempts=cfg.rest_max_attempts,
                                backoff_s=cfg.rest_backoff_s, backoff_max_s=cfg.rest_backoff_max_s,
                                retry_after_max_s=cfg.rest_retry_after_max_s,
                                sleep=sleep)
        self.stream = PolygonStream(api_key, feed=cfg.ws_feed, secure=cfg.secure,
                                    connect_timeout_s=cfg.connect_timeout_s, queue_size=cfg.queue_size,
                                    backoff_s=cfg.reconnect_backoff_s,
                                    backoff_max_s=cfg.reconnect_backoff_max_s, monotonic=monotonic)

    @classmethod
    def from_env(cls, cfg: "PolygonConfig", environ: Mapping[str, str] | None = None,
                 **kwargs: Any) -> "PolygonDataClient":
        return cls(cfg, api_key_from_env(environ) or "", **kwargs)

    # --- LiveDataClient ------------------------------------------------------------------------
    @property
    def state(self) -> FeedState:
        return self.stream.state

    @property
    def state_since(self) -> float:
        return self.stream.state_since

    @property
    def queue(self) -> "asyncio.Queue[Bar | FeedMarker]":
        return self.stream.queue

    @property
    def last_bar_at(self) -> float:
        return self.stream.last_bar_at

    async def start(self, symbols: Sequence[str], on_data: Callable[[], None],
                    since: Mapping[str, int] | None = None) -> None:
        await self.stream.start(symbols, on_data, since)

    async def stop(self) -> None:
        await self.stream.stop()

    def reconnect(self) -> None:
        self.stream.reconnect()

    async def minute_bars(self, symbols: Sequence[str], start_ns: int, end_ns: int) -> list[Bar]:
        return await asyncio.to_thread(self.rest.minute_bars_many, list(symbols), start_ns, end_ns)

    async def daily_bars(self, day: date, symbols: Sequence[str] | None) -> list[DailyBar]:
        return await asyncio.to_thread(self.rest.grouped_daily, day, symbols)

    def stats(self) -> dict[str, Any]:
        return {"provider": self.name, "sdk": f"{sdk.SDK_NAME} {sdk.SDK_VERSION}",
                **self.stream.stats(), "rest": dict(self.rest.stats)}
