"""PolygonDataClient against the fake Polygon (REST + websocket on 127.0.0.1), with the real SDK.

Runs with `massive` (the project's venv) and with `polygon-api-client` (the legacy venv,
`make test-legacy`, marker `legacy_sdk`): the adapter's one import site picks whichever is there.
Every fault ends in a clear error or a counted skip, and no bar is lost: what the fake sent
reaches the DataManager exactly once, or is rejected there by reason (duplicates).
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from datetime import date
from typing import Any, Callable

import pytest

from live_runner.core.clients import FeedState
from live_runner.adapters.polygon import SDK_NAME, PolygonDataClient, PolygonError
from live_runner.core.calendar import MarketCalendar
from live_runner.core.config import parse_config
from live_runner.data.data_manager import DUPLICATE, DataManager
from live_runner.live.feeds import DataFeed
from live_runner.persistence.journal import Journal
from live_runner.core.models import Bar
from live_runner.live.node import TradingNode
from tests.kit.fake_polygon import FakeMarketClock, FakePolygon
from tests.kit.recording import record_accepted
from tests.kit.sessions import SessionBuilder, et_ns

pytestmark = [pytest.mark.legacy_sdk, pytest.mark.timeout(120)]

DAY, PREV = "2024-03-15", date(2024, 3, 14)


@pytest.fixture
def fake() -> Any:
    with FakePolygon() as f:
        yield f


def client_for(fake: FakePolygon, sleeps: list[float] | None = None, key: str | None = None,
               **overrides: Any) -> PolygonDataClient:
    cfg = parse_config({"polygon": fake.config(**overrides)})
    sleep: Callable[[float], None] = (lambda s: sleeps.append(s)) if sleeps is not None else time.sleep
    return PolygonDataClient(cfg.polygon, key or fake.api_key, sleep=sleep)


def premarket(symbol: str = "AAA", end: str = "09:29") -> list[Bar]:
    s = SessionBuilder(day=DAY)
    s.flat(symbol, "04:00", end, 5.0, 1_000)
    return s.sorted_bars()


def keys(bars: list[Bar]) -> list[tuple[str, int]]:
    return [(b.symbol, b.ts) for b in bars]


def run(coro: Any) -> Any:
    return asyncio.run(asyncio.wait_for(coro, 60))


# --- REST -----------------------------------------------------------------------------------------

def test_sdk_generation_is_reported() -> None:
    assert SDK_NAME in ("massive", "polygon-api-client")


def test_minute_bars_follow_next_url_pages_to_the_fake(fake: FakePolygon) -> None:
    bars = premarket()
    fake.add_bars(bars)
    client = client_for(fake)
    got = client.rest.minute_bars("AAA", et_ns(DAY, "04:00"), et_ns(DAY, "09:30"))
    assert keys(got) == keys(bars)  # 330 bars over 7 pages, every one exactly once
    pages = [r for r in fake.requests if r["path"].startswith("/v2/aggs/ticker/AAA/")]
    assert len(pages) == 7 and all(r["auth_ok"] for r in pages)
    # next_url pointed at https://api.polygon.io/...: only its path and query were followed
    assert [r["query"].get("cursor") for r in pages[1:]] == [str(50 * i) for i in range(1, 7)]


def test_grouped_daily_gives_previous_closes(fake: FakePolygon) -> None:
    fake.add_daily(PREV, "AAA", 4.0, 5.0, 3.5, 4.5, 1e6)
    fake.add_daily(PREV, "BBB", 9.0, 9.5, 8.5, 9.25, 2e6)
    fake.add_daily(PREV, "CCC", 1.0, 1.1, 0.9, 1.05, 3e6)
    client = client_for(fake)
    got = client.rest.grouped_daily(PREV, ["AAA", "BBB", "ZZZ"])
    assert [(d.symbol, d.day, d.close) for d in got] == [("AAA", PREV, 4.5), ("BBB", PREV, 9.25)]
    req = fake.requests[-1]
    assert req["path"] == "/v2/aggs/grouped/locale/us/market/stocks/2024-03-14"
    assert req["query"]["adjusted"] == "true"
    assert len(client.rest.grouped_daily(PREV)) == 3  # the whole market


def test_dagster_daily_bars_come_from_polygon_when_a_key_is_set(fake: FakePolygon) -> None:
    from live_runner.live.feeds import daily_bars_for

    fake.add_daily(PREV, "AAA", 4.0, 5.0, 3.5, 4.5, 1e6)
    fake.add_daily(PREV, "BBB", 9.0, 9.5, 8.5, 9.25, 2e6)
    cfg = parse_config({"polygon": fake.config()})
    provider, bars = daily_bars_for(cfg, {"POLYGON_API_KEY": fake.api_key}, PREV, None)
    assert provider == "polygon" and [(b.symbol, b.close) for b in bars] == [("AAA", 4.5), ("BBB", 9.25)]


def test_a_429_storm_is_retried_with_backoff_counted_and_nothing_lost(fake: FakePolygon) -> None:
    bars = premarket()
    fake.add_bars(bars)
    sleeps: list[float] = []
    client = client_for(fake, sleeps, rest_backoff_s=0.5, rest_backoff_max_s=2.0)
    fake.rest_faults.extend([("status", 429)] * 4)
    got = client.rest.minute_bars("AAA", et_ns(DAY, "04:00"), et_ns(DAY, "09:30"))
    assert keys(got) == keys(bars)
    assert client.rest.stats["error_rate_limited"] == 4 and client.rest.stats["retries"] == 4
    assert sleeps == [0.5, 1.0, 2.0, 2.0]  # exponential, capped


def sim_sleep(fake: FakePolygon, sleeps: list[float]) -> Callable[[float], None]:
    """An injected sleep that moves the fake's clock instead of waiting."""
    def sleep(s: float) -> None:
        sleeps.append(s)
        fake.clock.set(fake.clock.now_ns() + round(s * 1e9))
    return sleep


def test_a_429_retry_after_is_waited_before_the_request_is_sent_again(fake: FakePolygon) -> None:
    bars = premarket()
    fake.add_bars(bars)
    sleeps: list[float] = []
    cfg = parse_config({"polygon": fake.config(rest_backoff_s=0.25, rest_backoff_max_s=0.5)})
    client = PolygonDataClient(cfg.polygon, fake.api_key, sleep=sim_sleep(fake, sleeps))
    fake.rest_faults.extend([("status", 429, {"Retry-After": "3"}), ("status", 429, {"Retry-After": "3"})])
    got = client.rest.minute_bars("AAA", et_ns(DAY, "04:00"), et_ns(DAY, "09:30"))
    assert keys(got) == keys(bars)
    assert sleeps == [3.0, 3.0]  # not the 0.25 s and 0.5 s of our own backoff
    first, second, third = (r["at_ns"] for r in fake.requests[:3])
    assert second - first == 3_000_000_000 and third - second == 3_000_000_000
    assert client.rest.stats["retry_after_honoured"] == 2 and client.rest.stats["error_rate_limited"] == 2


def test_a_retry_after_longer_than_the_configured_max_is_capped(fake: FakePolygon) -> None:
    sleeps: list[float] = []
    cfg = parse_config({"polygon": fake.config(rest_retry_after_max_s=5.0, rest_max_attempts=2)})
    client = PolygonDataClient(cfg.polygon, fake.api_key, sleep=sim_sleep(fake, sleeps))
    fake.rest_faults.extend([("status", 429, {"Retry-After": "600"})] * 2)
    with pytest.raises(PolygonError) as err:
        client.rest.grouped_daily(PREV)
    assert sleeps == [5.0]
    assert err.value.kind == "rate_limited" and err.value.retry_after_s == 600.0
    assert "Retry-After 600 s" in str(err.value)


def test_a_503_with_retry_after_is_honoured_too(fake: FakePolygon) -> None:
    fake.add_daily(PREV, "AAA", 4.0, 5.0, 3.5, 4.5, 1e6)
    sleeps: list[float] = []
    client = PolygonDataClient(parse_config({"polygon": fake.config()}).polygon, fake.api_key,
                               sleep=sim_sleep(fake, sleeps))
    fake.rest_faults.append(("status", 503, {"Retry-After": "2"}))
    assert [b.symbol for b in client.rest.grouped_daily(PREV)] == ["AAA"]
    assert sleeps == [2.0] and client.rest.stats["error_server_error"] == 1


def test_a_429_storm_longer_than_the_budget_is_a_clear_error(fake: FakePolygon) -> None:
    client = client_for(fake, [], rest_max_attempts=3)
    fake.rest_faults.extend([("status", 429)] * 10)
    with pytest.raises(PolygonError) as err:
        client.rest.grouped_daily(PREV)
    assert err.value.kind == "rate_limited" and err.value.status == 429
    assert client.rest.stats["error_rate_limited"] == 3 and client.rest.stats["failed_calls"] == 1


def test_500s_mid_pagination_are_retried_without_duplicates(fake: FakePolygon) -> None:
    bars = premarket()
    fake.add_bars(bars)
    client = client_for(fake, [])
    orig = fake._serve_rest
    served = {"n": 0}

    def flaky(h: Any) -> None:  # the third page fails twice
        served["n"] += 1
        if served["n"] in (3, 4):
            fake.rest_faults.append(("status", 500 if served["n"] == 3 else 503))
        orig(h)

    fake._serve_rest = flaky  # type: ignore[method-assign]
    got = client.rest.minute_bars("AAA", et_ns(DAY, "04:00"), et_ns(DAY, "09:30"))
    assert keys(got) == keys(bars)
    assert client.rest.stats["error_server_error"] == 2


def test_persistent_500s_end_in_a_server_error(fake: FakePolygon) -> None:
    client = client_for(fake, [], rest_max_attempts=2)
    fake.rest_faults.extend([("status", 502)] * 5)
    with pytest.raises(PolygonError) as err:
        client.rest.minute_bars("AAA", et_ns(DAY, "04:00"), et_ns(DAY, "09:30"))
    assert err.value.kind == "server_error" and err.value.status == 502


def test_a_bad_key_is_a_bad_response_and_not_retried(fake: FakePolygon) -> None:
    client = client_for(fake, [], key="wrong-key")
    with pytest.raises(PolygonError) as err:
        client.rest.grouped_daily(PREV)
    assert err.value.kind == "bad_response" and "Unknown API Key" in str(err.value)
    assert client.rest.stats["attempts"] == 1


def test_a_malformed_page_is_detected_retried_and_nothing_lost(fake: FakePolygon) -> None:
    bars = premarket()
    fake.add_bars(bars)
    client = client_for(fake, [])
    orig = fake._serve_rest
    served = {"n": 0}

    def hiccup(h: Any) -> None:  # the SDK would end the list silently at this page
        served["n"] += 1
        if served["n"] == 2:
            fake.rest_faults.append(("malformed",))
        orig(h)

    fake._serve_rest = hiccup  # type: ignore[method-assign]
    got = client.rest.minute_bars("AAA", et_ns(DAY, "04:00"), et_ns(DAY, "09:30"))
    assert keys(got) == keys(bars)
    assert client.rest.stats["error_malformed"] == 1
    fake.rest_faults.extend([("malformed",)] * 10)
    with pytest.raises(PolygonError) as err:
        client.rest.grouped_daily(PREV)
    assert err.value.kind == "malformed"


def test_records_without_fields_are_skipped_and_counted(fake: FakePolygon) -> None:
    bars = premarket(end="04:09")
    fake.add_bars(bars)
    fake.extra_rows["AAA"] = [{"o": 1.0, "h": 1.0, "l": 1.0, "v": 5, "t": et_ns(DAY, "04:30") // 10**6},
                              {"o": None, "h": 1, "l": 1, "c": 1, "v": 1, "t": et_ns(DAY, "04:31") // 10**6}]
    client = client_for(fake)
    got = client.rest.minute_bars("AAA", et_ns(DAY, "04:00"), et_ns(DAY, "09:30"))
    assert keys(got) == keys(bars)
    assert client.rest.stats["malformed_records"] == 2


def test_a_hung_server_times_out_and_the_retry_succeeds(fake: FakePolygon) -> None:
    fake.add_daily(PREV, "AAA", 4.0, 5.0, 3.5, 4.5, 1e6)
    client = client_for(fake, [], read_timeout_s=0.3)  # polygon-api-client needs our pool timeout
    fake.rest_faults.append(("hang", 2.0))
    t0 = time.monotonic()
    got = client.rest.grouped_daily(PREV)
    assert [d.symbol for d in got] == ["AAA"]
    assert time.monotonic() - t0 < 1.8
    assert client.rest.stats["error_timeout"] == 1


# --- websocket ------------------------------------------------------------------------------------

async def wait_for(cond: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise TimeoutError("condition not met")
        await asyncio.sleep(0.01)


async def take(client: PolygonDataClient, n: int) -> list[Any]:
    return [await asyncio.wait_for(client.queue.get(), 5) for _ in range(n)]


def test_the_stream_subscribes_and_queues_minute_aggregates(fake: FakePolygon) -> None:
    bars = premarket(end="04:04") + premarket("BBB", end="04:04")

    async def main() -> list[Any]:
        client = client_for(fake)
        await client.start(["AAA", "BBB"], lambda: None)
        await asyncio.to_thread(fake.wait_clients, 1)
        await wait_for(lambda: client.state is FeedState.LIVE)
        for minute in sorted({b.ts for b in bars}):
            await asyncio.to_thread(fake.send_bars, [b for b in bars if b.ts == minute])
        got = await take(client, len(bars))
        await client.stop()
        return got

    got = run(main())
    assert keys(got) == keys(sorted(bars, key=lambda b: (b.ts, b.symbol)))
    assert sorted(fake.subscriptions) == ["AM.AAA", "AM.BBB"]
    assert fake.auth_attempts == [fake.api_key]


def test_a_rejected_key_fails_the_stream_without_retrying(fake: FakePolygon) -> None:
    async def main() -> PolygonDataClient:
        client = client_for(fake, key="wrong-key")
        await client.start(["AAA"], lambda: None)
        await wait_for(lambda: client.state is FeedState.FAILED)
        await asyncio.sleep(0.3)
        await client.stop()
        return client

    client = run(main())
    assert client.stream.counts["auth_failed"] == 1 and fake.connections == 1
    assert "authentication failed" in client.stream.state_reason


def test_malformed_messages_are_counted_and_the_connection_goes_on(fake: FakePolygon) -> None:
    bars = premarket(end="04:02")
    bad_events = ('[{"ev":"AM","sym":"AAA","o":1}]'                      # fields missing
                  + '\n')[:-1]

    async def main() -> tuple[PolygonDataClient, list[Any]]:
        client = client_for(fake)
        await client.start(["AAA"], lambda: None)
        await asyncio.to_thread(fake.wait_clients, 1)
        await wait_for(lambda: client.state is FeedState.LIVE)
        await asyncio.to_thread(fake.send_bars, bars[:1])
        await asyncio.to_thread(fake.send_raw, "this is not JSON")
        await asyncio.to_thread(fake.send_raw, bad_events)
        await asyncio.to_thread(fake.send_raw, '[{"sym":"AAA"}, 7]')  # no "ev"; not an object
        await asyncio.to_thread(fake.send_raw, '[{"ev":"AM","sym":"AAA","o":1,"h":1,"l":1,"c":1,'
                                               '"v":1,"s":1710489630000,"e":1710489690000}]')  # not a minute
        await asyncio.to_thread(fake.send_raw, '[{"ev":"T","sym":"AAA","p":5}]')  # a trade: ignored
        await asyncio.to_thread(fake.send_bars, bars[1:])
        got = await take(client, len(bars))
        await client.stop()
        return client, got

    client, got = run(main())
    assert keys(got) == keys(bars)
    c = client.stream.counts
    assert c["malformed_messages"] == 1 and c["malformed_events"] == 4 and c["ignored_events"] == 1
    assert c["disconnects"] == 0


def test_duplicate_aggregates_reach_the_data_manager_once_and_are_rejected_by_reason(
        fake: FakePolygon) -> None:
    bars = premarket(end="04:09")
    accepted: list[Bar] = []
    dm = DataManager(MarketCalendar(), accepted.append, lambda prev, s: None)

    async def main() -> None:
        client = client_for(fake)
        await client.start(["AAA"], lambda: None)
        await asyncio.to_thread(fake.wait_clients, 1)
        await wait_for(lambda: client.state is FeedState.LIVE)
        for b in bars:
            await asyncio.to_thread(fake.send_bars, [b], b.ts % (3 * 60_000_000_000) == 0)
        for item in await take(client, len(fake.sent)):
            dm.on_bar(item)
        await client.stop()

    run(main())
    dupes = len(fake.sent) - len(bars)
    assert dupes == 4
    assert keys(accepted) == keys(bars)
    assert dm.rejected == Counter({DUPLICATE: dupes})


def test_a_slow_reader_waits_never_drops(fake: FakePolygon) -> None:
    bars = SessionBuilder(day=DAY).flat("AAA", "04:00", "19:59", 5.0, 100).sorted_bars()[:800]

    async def main() -> tuple[PolygonDataClient, list[Any]]:
        client = client_for(fake, queue_size=8)
        await client.start(["AAA"], lambda: None)
        await asyncio.to_thread(fake.wait_clients, 1)
        await wait_for(lambda: client.state is FeedState.LIVE)
        burst = asyncio.create_task(asyncio.to_thread(fake.send_burst, bars, 1))
        got = []
        while len(got) < len(bars):
            got.append(await asyncio.wait_for(client.queue.get(), 10))
            if len(got) % 50 == 0:
                await asyncio.sleep(0.02)  # the chain stalls now and then
        assert await burst == len(bars)
        await client.stop()
        return client, got

    client, got = run(main())
    assert keys(got) == keys(bars)
    assert client.stream.counts["reader_waits"] > 0
    assert client.stream.counts["disconnects"] == 0


def test_a_slow_consumer_kick_is_counted_and_the_stream_reconnects(fake: FakePolygon) -> None:
    bars = premarket(end="04:03")

    async def main() -> PolygonDataClient:
        client = client_for(fake)
        await client.start(["AAA"], lambda: None)
        await asyncio.to_thread(fake.wait_clients, 1)
        await wait_for(lambda: client.state is FeedState.LIVE)
        await asyncio.to_thread(fake.send_bars, bars[:2])
        await asyncio.to_thread(fake.kick_slow_consumers)
        await wait_for(lambda: client.stream.counts["connects"] == 2)
        await asyncio.to_thread(fake.wait_clients, 1)
        await asyncio.to_thread(fake.send_bars, bars[2:])
        got = await take(client, len(bars) + 1)  # the reconnect marker sits between the two
        assert [type(x).__name__ for x in got] == ["Bar", "Bar", "FeedMarker", "Bar", "Bar"]
        await client.stop()
        return client

    client = run(main())
    assert client.stream.server_statuses["slow_consumer"] == 1
    assert client.stream.counts["disconnects"] == 1 and client.stream.counts["reconnects"] == 1


def test_a_dropped_connection_reconnects_and_the_gap_is_backfilled(fake: FakePolygon) -> None:
    """Minutes published while the socket was down come back over REST: each exactly once."""
    s = SessionBuilder(day=DAY)
    s.prev_close("AAA", 4.0)
    s.flat("AAA", "04:00", "04:20", 5.0, 1_000)
    fake.add_bars(s.bars)
    fake.add_daily(PREV, "AAA", 4.0, 4.0, 4.0, 4.0, 1e6)
    clock = fake.clock = FakeMarketClock(et_ns(DAY, "04:05"))
    cfg = parse_config({"universe": ["AAA"], "polygon": fake.config(),
                        "data_failover": {"check_interval_s": 0.05}})
    node = TradingNode(cfg, Journal("sqlite://"))
    accepted = record_accepted(node)  # warm-up (the seed) included
    client = PolygonDataClient(cfg.polygon, fake.api_key)
    feed = DataFeed(cfg, client, None, ["AAA"], market_now=clock.now_ns)
    today = [b for b in s.sorted_bars() if b.ts >= et_ns(DAY, "04:00")]

    async def main() -> None:
        stop = asyncio.Event()
        node.start()
        task = asyncio.create_task(feed.run(node, stop))
        await asyncio.to_thread(fake.wait_clients, 1)
        await wait_for(lambda: feed.counts["seed_bars"] == 6)  # prev close + 04:00..04:04
        for b in today[5:9]:  # 04:05..04:08 live
            clock.set(b.ts + 60_000_000_000)
            await asyncio.to_thread(fake.send_bars, [b])
        await wait_for(lambda: len(accepted) == 10)
        await asyncio.to_thread(fake.drop_connections)
        for b in today[9:13]:  # 04:09..04:12 published while nobody listens
            clock.set(b.ts + 60_000_000_000)
            await asyncio.to_thread(fake.send_bars, [b])
        await wait_for(lambda: client.stream.counts["reconnects"] == 1)
        await asyncio.to_thread(fake.wait_clients, 1)
        for b in today[13:]:  # 04:13.. live again
            clock.set(b.ts + 60_000_000_000)
            await asyncio.to_thread(fake.send_bars, [b])
        await wait_for(lambda: len(accepted) == 1 + len(today))
        stop.set()
        await task

    run(main())
    assert Counter(keys(accepted)) == Counter(keys(s.sorted_bars()))
    assert feed.counts["backfill_bars"] >= 4 and client.stream.counts["disconnects"] == 1
    assert node.data.bars_rejected == node.data.rejected[DUPLICATE]  # overlap only: duplicates


# --- against the real service (off by default) ----------------------------------------------------
live_account = pytest.mark.skipif(
    __import__("os").environ.get("TRADING_LIVE_TESTS") != "1",
    reason="needs POLYGON_API_KEY and the internet; run with TRADING_LIVE_TESTS=1")


@pytest.mark.live_account
@live_account
def test_real_polygon_rest_and_websocket() -> None:
    """The previous session's grouped daily and SPY's minute bars over REST, then a websocket
    subscription that authenticates (bars only flow while the market trades)."""
    from live_runner.adapters.polygon import api_key_from_env
    from live_runner.core.calendar import MarketCalendar

    key = api_key_from_env()
    assert key, "set POLYGON_API_KEY (or MASSIVE_API_KEY)"
    cal = MarketCalendar()
    today = cal.session_date_for_ts(time.time_ns())
    prev = cal.session(cal.previous_session(today))
    client = PolygonDataClient(parse_config({}).polygon, key)
    daily = client.rest.grouped_daily(prev.date, ["SPY"])
    assert [d.symbol for d in daily] == ["SPY"] and daily[0].close > 0
    bars = client.rest.minute_bars("SPY", prev.open, prev.close)
    assert len(bars) > 300

    async def main() -> None:
        await client.start(["SPY"], lambda: None)
        await wait_for(lambda: client.state is FeedState.LIVE, timeout=30)
        await client.stop()

    run(main())
