"""Data failover (Polygon -> Yahoo -> Polygon) and a paced live session, against the fakes.

The market clock is the fakes' (a hand-built gapper session of 2024-03-15, played a minute every
0.1 s); staleness and failback timers run on the wall clock with small settings.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections import Counter
from datetime import date
from pathlib import Path
from typing import Any, Callable

import pytest

from live_runner.adapters.polygon import PolygonDataClient
from live_runner.adapters.yahoo import YahooDataClient
from live_runner.core.config import SystemConfig, parse_config
from live_runner.data.data_manager import DUPLICATE
from live_runner.live.feeds import DataFeed, FeedConfigError, build_live_feed
from live_runner.persistence.journal import Journal
from live_runner.core.models import Bar
from live_runner.live.node import TradingNode
from live_runner.risk.rules import BACKUP_DATA
from live_runner.live.runs import RunOptions
from live_runner.live.service import LiveService
from tests.kit.fake_polygon import FakeMarketClock, FakePolygon
from tests.kit.fake_yahoo import FakeYahoo
from tests.kit.recording import record_accepted
from tests.kit.sessions import SessionBuilder, et_ns

pytestmark = pytest.mark.timeout(180)

DAY, PREV = "2024-03-15", date(2024, 3, 14)
MINUTE = 60_000_000_000


def gapper_session(end: str = "10:15") -> SessionBuilder:
    """GAPA gaps 10% and breaks its premarket high at 09:31 (entry filled 09:32 at 5.65, stop
    5.45, target 6.05 reached at 09:47); GAPB gaps 10% and breaks out only at 09:45."""
    s = SessionBuilder(day=DAY, prev_day=PREV.isoformat())
    s.prev_close("GAPA", 5.0).prev_close("GAPB", 10.0)
    s.flat("GAPA", "04:00", "09:29", 5.5, 1_000)
    s.flat("GAPB", "04:00", "09:29", 11.0, 1_000)
    s.bar("GAPA", "09:30", 5.5, 5.55, 5.45, 5.5, 5_000)
    s.bar("GAPA", "09:31", 5.5, 5.7, 5.45, 5.65, 8_000)
    s.bar("GAPA", "09:32", 5.65, 5.75, 5.6, 5.7, 6_000)
    s.flat("GAPA", "09:33", "09:46", 5.7, 4_000)
    s.bar("GAPA", "09:47", 5.8, 6.1, 5.78, 6.0, 9_000)
    s.flat("GAPA", "09:48", end, 6.0, 3_000)
    s.flat("GAPB", "09:30", "09:44", 11.0, 4_000)
    s.bar("GAPB", "09:45", 11.0, 11.3, 10.98, 11.2, 9_000)
    s.flat("GAPB", "09:46", end, 11.2, 3_000)
    return s


def serve_session(s: SessionBuilder, poly: FakePolygon, yahoo: FakeYahoo | None = None) -> list[Bar]:
    today = [b for b in s.sorted_bars() if b.ts >= et_ns(DAY, "04:00")]
    poly.add_bars(today)
    for b in s.sorted_bars():
        if b.ts < et_ns(DAY, "04:00"):
            poly.add_daily(PREV, b.symbol, b.close, b.close, b.close, b.close, 1e6)
            if yahoo is not None:
                yahoo.add_daily(b.symbol, PREV, b.close, b.close, b.close, b.close, 1e6)
    if yahoo is not None:
        yahoo.add_bars(today)
    return today


def config(poly: FakePolygon, **extra: Any) -> SystemConfig:
    data: dict[str, Any] = {
        "universe": ["GAPA", "GAPB"], "primary_data_provider": "polygon",
        "polygon": poly.config(stale_after_s=0.5),
        "yahoo": {"poll_interval_s": 0.1, "timeout_s": 5},
        "data_failover": {"disconnect_grace_s": 0.3, "failback_after_s": 1.0, "check_interval_s": 0.05},
        "ops": {"port": 0},
    }
    data.update(extra)
    return parse_config(data)


async def wait_for(cond: Callable[[], bool], timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise TimeoutError("condition not met")
        await asyncio.sleep(0.02)


def keys(bars: list[Bar]) -> list[tuple[str, int]]:
    return [(b.symbol, b.ts) for b in bars]


def test_a_mute_polygon_fails_over_to_yahoo_halts_entries_and_fails_back() -> None:
    s = gapper_session()
    clock = FakeMarketClock(et_ns(DAY, "09:30"))
    with FakePolygon(clock=clock) as poly, FakeYahoo(clock, delay_minutes=1) as yahoo:
        today = serve_session(s, poly, yahoo)
        cfg = config(poly, backup_data_provider="yahoo")
        node = TradingNode(cfg, Journal("sqlite://"), universe=cfg.universe)
        accepted = record_accepted(node)
        primary = PolygonDataClient(cfg.polygon, poly.api_key)
        backup = YahooDataClient(cfg.yahoo, session=yahoo.session(), market_now=clock.now_ns)
        feed = DataFeed(cfg, primary, backup, cfg.universe or [], market_now=clock.now_ns)
        states: list[tuple[str, bool]] = []

        def on_minute(ts: int) -> None:
            if ts == et_ns(DAY, "09:35"):
                poly.muted = True
            if ts == et_ns(DAY, "09:52"):
                poly.muted = False
            states.append((feed.active.name, bool(feed.gate and feed.gate.active)))

        async def main() -> None:
            stop = asyncio.Event()
            node.start()
            task = asyncio.create_task(feed.run(node, stop))
            await asyncio.to_thread(poly.wait_clients, 1)
            await wait_for(lambda: feed.counts["seed_bars"] > 0)
            played = poly.play(today, 0.1, on_minute=on_minute, from_ts=et_ns(DAY, "09:30"))
            await asyncio.wrap_future(played)  # type: ignore[arg-type]
            await wait_for(lambda: len(accepted) == len(s.bars) and feed.counts["failbacks"] == 1)
            stop.set()
            await task

        asyncio.run(asyncio.wait_for(main(), 120))
        node.stop(close_session=False)

    # failover with an alert, Yahoo's bars while Polygon was mute, then back to Polygon
    assert [e["event"] for e in feed.events] == ["failover", "failback"]
    assert "silent" in feed.events[0]["reason"] or "connecting" in feed.events[0]["reason"]
    alerts = {a.key: a for a in node.alerts.recent}
    assert alerts["data_failover"].severity.value == "critical" and "yahoo" in alerts["data_failover"].message
    assert "data_failback" in alerts
    assert ("yahoo", True) in states and states[-1] == ("polygon", False)
    assert backup.counts["bars"] > 0 and feed.counts["backfill_bars"] > 0
    # entries halted on backup data (GAPB's 09:45 break), exits managed (GAPA's target on Yahoo)
    assert node.risk.denials[BACKUP_DATA] == 1
    trades = node.performance.trades
    assert [(t.symbol, t.exit_reason, t.entry_price, t.exit_price) for t in trades] == [
        ("GAPA", "target", 5.65, 6.05)]
    # nothing lost, nothing twice: every bar of the session reached the chain exactly once
    assert Counter(keys(accepted)) == Counter(keys(s.sorted_bars()))
    assert set(node.data.rejected) <= {DUPLICATE, "OUT_OF_ORDER"}


def test_no_backup_and_a_dead_feed_alerts(tmp_path: Path) -> None:
    s = gapper_session(end="09:40")
    clock = FakeMarketClock(et_ns(DAY, "09:30"))
    with FakePolygon(clock=clock) as poly:
        serve_session(s, poly)
        cfg = config(poly)
        node = TradingNode(cfg, Journal("sqlite://"), universe=cfg.universe)
        feed = DataFeed(cfg, PolygonDataClient(cfg.polygon, poly.api_key), None, ["GAPA", "GAPB"],
                        market_now=clock.now_ns)

        async def main() -> None:
            stop = asyncio.Event()
            node.start()
            task = asyncio.create_task(feed.run(node, stop))
            await asyncio.to_thread(poly.wait_clients, 1)
            await wait_for(lambda: any(a.key == "data_feed_down" for a in node.alerts.recent))
            assert not feed.on_backup
            stop.set()
            await task

        asyncio.run(asyncio.wait_for(main(), 60))
    assert feed.primary.stats()["forced_reconnects"] >= 1  # a silent socket is also reopened


def test_a_live_feed_needs_a_key_and_a_universe() -> None:
    cfg = parse_config({"primary_data_provider": "polygon", "universe": ["AAA"]})
    with pytest.raises(FeedConfigError, match="POLYGON_API_KEY"):
        build_live_feed(cfg, {}, None)
    with pytest.raises(FeedConfigError, match="universe"):
        build_live_feed(parse_config({"primary_data_provider": "polygon"}), {"POLYGON_API_KEY": "k"}, None)
    feed = build_live_feed(cfg, {"MASSIVE_API_KEY": "k"}, None)
    assert feed.primary.name == "polygon" and feed.backup is None and feed.symbols == ["AAA"]


def test_a_paced_live_session_polygon_to_strategies_to_paper_orders(tmp_path: Path) -> None:
    """LiveService with primary_data_provider polygon: premarket and previous closes over REST,
    the regular session over the websocket, the gap_and_go trade on the paper broker."""
    s = gapper_session(end="10:00")
    clock = FakeMarketClock(et_ns(DAY, "09:30"))
    with FakePolygon(clock=clock) as poly:
        today = serve_session(s, poly)
        cfg = config(poly, universe=["GAPA"])
        env = {"POLYGON_API_KEY": poly.api_key}
        feed = build_live_feed(cfg, env, ["GAPA"], market_now=clock.now_ns)
        opts = RunOptions(bars=tmp_path / "unused.parquet", journal_url=f"sqlite:///{tmp_path / 'j.db'}",
                          universe=["GAPA"])
        service = LiveService(cfg, opts, environ=env, data_feed=feed)
        assert service.bar_file is None
        result: dict[str, Any] = {}
        runner = threading.Thread(target=lambda: result.update(asyncio.run(service.run())))
        runner.start()
        poly.wait_clients(1)
        deadline = time.monotonic() + 20
        while feed.counts["seed_bars"] == 0 and time.monotonic() < deadline:
            time.sleep(0.02)
        ready, why = service.readiness()
        assert "data feed disconnected" not in why["reasons"]
        poly.play([b for b in today if b.symbol == "GAPA"], 0.05,
                  from_ts=et_ns(DAY, "09:30")).result(60)
        expected = len([b for b in s.bars if b.symbol == "GAPA"])  # 1 + 330 premarket + 31
        while service.node.data.bars_processed < expected and time.monotonic() < deadline + 30:
            time.sleep(0.02)
        status = service.status()
        clock.set(et_ns(DAY, "20:00"))  # the day is over: the feed ends, the session closes
        runner.join(60)
        assert not runner.is_alive()

    assert status["data_feed"]["active"] == "polygon" and not status["data_feed"]["entries_halted"]
    assert result["bars_processed"] == expected == 362
    assert result["bars_rejected"] == result["bars_rejected_by_reason"].get(DUPLICATE, 0)
    (trade,) = result["trades"]
    assert (trade["symbol"], trade["strategy"], trade["qty"], trade["entry_price"], trade["exit_price"],
            trade["exit_reason"]) == ("GAPA", "gap_and_go", 3539, 5.65, 6.05, "target")
