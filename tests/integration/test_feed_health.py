"""Health of a live minute feed on simulated time: a quiet feed is not a dead one.

A real PolygonDataClient (massive, or polygon-api-client under `make test-legacy`) reads the fake
Polygon's websocket; the health monitor, the feed, the stream and the alert limiter share one
injected monotonic clock that the test advances second by second, calling the service's health
check (what the watchdog runs once a second) and /ready's function. Real time only carries the
bars over the socket; nothing asserts on it."""

from __future__ import annotations

import asyncio
import re
import time
from datetime import date
from typing import Any, Callable

import pytest

from live_runner.core.clients import FeedState
from live_runner.adapters.polygon import PolygonDataClient
from live_runner.core.config import parse_config
from live_runner.live.feeds import DataFeed
from live_runner.live.health import HealthMonitor
from live_runner.core.models import Severity
from live_runner.live.runs import RunOptions
from live_runner.live.service import LiveService
from tests.kit.fake_polygon import FakeMarketClock, FakePolygon
from tests.kit.sessions import SessionBuilder, et_ns

pytestmark = [pytest.mark.legacy_sdk, pytest.mark.timeout(120)]

DAY, PREV = "2024-03-15", date(2024, 3, 14)
MINUTE = 60_000_000_000


class SimMonotonic:
    def __init__(self, start: float = 1000.0) -> None:
        self.t = start

    def __call__(self) -> float:
        return self.t


async def until(cond: Callable[[], bool], what: str, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.01)


class Rig:
    """A LiveService over the fake Polygon with every health clock on `sim`."""

    def __init__(self, poly: FakePolygon, market: FakeMarketClock, **ops: Any) -> None:
        self.poly, self.market, self.sim = poly, market, SimMonotonic()
        s = SessionBuilder(day=DAY, prev_day=PREV.isoformat())
        s.flat("AAA", "04:00", "15:59", 5.0, 1_000)
        self.bars = {b.ts: b for b in s.sorted_bars()}
        poly.add_daily(PREV, "AAA", 5.0, 5.0, 5.0, 5.0, 1e6)
        poly.add_bars(b for b in s.sorted_bars() if b.ts < market.now_ns())
        cfg = parse_config({"universe": ["AAA"], "primary_data_provider": "polygon",
                            "polygon": poly.config(), "ops": {"port": 0, **ops}})
        client = PolygonDataClient(cfg.polygon, poly.api_key, monotonic=self.sim)
        self.feed = DataFeed(cfg, client, None, ["AAA"], market_now=market.now_ns, monotonic=self.sim)
        self.service = LiveService(cfg, RunOptions(bars=None, journal_url="sqlite://"),
                                   data_feed=self.feed, health=HealthMonitor(monotonic=self.sim))
        self.node = self.service.node

    def tick(self, seconds: int = 1) -> list[tuple[bool, list[str]]]:
        """Advance simulated time second by second, checking health and readiness each second."""
        out = []
        for _ in range(seconds):
            self.sim.t += 1.0
            self.service.check_health()
            ok, body = self.service.readiness()
            out.append((ok, body["reasons"]))
        return out

    def alerts(self, key: str | None = None) -> list[Any]:
        return [a for a in self.node.alerts.recent if key is None or a.key == key]


def run_feed(rig: Rig, scenario: Callable[[], Any]) -> None:
    async def main() -> None:
        stop = asyncio.Event()
        rig.node.start()
        task = asyncio.create_task(rig.feed.run(rig.node, stop))
        try:
            await until(lambda: rig.feed.primary.state is FeedState.LIVE and rig.feed.counts["seed_bars"] > 0,
                        "the websocket to be live and the seed loaded")
            await scenario()
        finally:
            stop.set()
            await task

    asyncio.run(asyncio.wait_for(main(), 90))
    rig.node.stop(close_session=False)
    rig.node.alerts.close(1.0)


async def deliver_minute(rig: Rig, ts: int) -> None:
    """The bar of minute `ts` completes: the fake's clock moves past it and it is streamed."""
    before = rig.node.data.bars_processed
    rig.market.set(ts + MINUTE)
    rig.poly.send_bars([rig.bars[ts]])
    await until(lambda: rig.node.data.bars_processed == before + 1, "the bar to reach the chain")


def test_a_healthy_minute_feed_stays_ready_for_ten_minutes_without_an_alert() -> None:
    market = FakeMarketClock(et_ns(DAY, "09:35"))
    with FakePolygon(clock=market) as poly:
        rig = Rig(poly, market)

        async def scenario() -> None:
            for m in range(10):
                await deliver_minute(rig, et_ns(DAY, "09:35") + m * MINUTE)
                checks = rig.tick(60)  # a whole quiet minute until the next bar
                assert all(ok for ok, _ in checks), [r for ok, r in checks if not ok][:1]

        run_feed(rig, scenario)
    health = rig.service.health.get_health("data_manager")
    assert health["is_healthy"] and "polygon live" in str(health["detail"])
    assert rig.alerts() == [] and rig.node.alerts.suppressed == 0


def test_a_feed_down_in_regular_hours_is_flagged_and_pages_once_per_window() -> None:
    market = FakeMarketClock(et_ns(DAY, "10:00"))
    with FakePolygon(clock=market) as poly:
        rig = Rig(poly, market, alert_repeat_s=600.0)
        results: list[tuple[bool, list[str]]] = []

        async def scenario() -> None:
            await deliver_minute(rig, et_ns(DAY, "10:00"))
            results.extend(rig.tick(30))
            poly.ack_subscribe = False  # reconnects are accepted but never subscribed: no data
            poly.drop_connections()
            await until(lambda: rig.feed.primary.state is not FeedState.LIVE, "the feed to drop")
            results.extend(rig.tick(25 * 60))  # 25 simulated minutes down

        run_feed(rig, scenario)
    assert all(ok for ok, _ in results[:30])
    grace = int(rig.feed.config.data_failover.disconnect_grace_s)
    flagged = ["data_manager unhealthy" in reasons for _, reasons in results[30:]]
    # /ready says "disconnected" at once; the feed is called dead only after the reconnect grace
    assert all("data feed disconnected" in reasons for _, reasons in results[30:])
    assert flagged[:grace] == [False] * grace and all(flagged[grace + 1:])
    pages = rig.alerts("unhealthy:data_manager")
    assert len(pages) == 3  # at the start, after 10 and after 20 simulated minutes
    assert all(a.severity is Severity.CRITICAL and re.search(r"polygon (disconnected|connecting) for", a.message)
               for a in pages)
    assert rig.node.alerts.suppressed_by_key["unhealthy:data_manager"] > 1000
