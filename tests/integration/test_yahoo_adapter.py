"""YahooDataClient against the fake Yahoo, through yfinance's own code (cookie, crumb, chart parsing).

The injected curl_cffi session sends Yahoo URLs to the fake and refuses any other: nothing reaches
the internet. yfinance's caches are cleared per test and its cache folder is temporary.
"""

from __future__ import annotations

import asyncio
import tempfile
import time
from datetime import date
from typing import Any

import pytest

from live_runner.core.clients import FeedState
from live_runner.adapters.yahoo import YahooDataClient, YahooError
from live_runner.core.config import parse_config
from tests.kit.fake_polygon import FakeMarketClock
from tests.kit.fake_yahoo import FakeYahoo, RefusedHost
from tests.kit.sessions import SessionBuilder, et_ns

pytestmark = pytest.mark.timeout(120)

DAY = "2024-03-15"
MINUTE = 60_000_000_000


@pytest.fixture
def clock() -> FakeMarketClock:
    return FakeMarketClock(et_ns(DAY, "09:40"))


@pytest.fixture
def fake(clock: FakeMarketClock) -> Any:
    with FakeYahoo(clock, delay_minutes=1) as f:
        s = SessionBuilder(day=DAY)
        s.flat("AAA", "04:00", "10:30", 5.0, 1_000)
        s.flat("BBB", "09:30", "10:30", 7.0, 2_000)
        f.add_bars(s.bars)
        f.add_daily("AAA", date(2024, 3, 13), 4.0, 4.6, 3.9, 4.4, 1e6)
        f.add_daily("AAA", date(2024, 3, 14), 4.4, 5.0, 4.3, 4.5, 2e6)
        f.add_daily("BBB", date(2024, 3, 14), 6.0, 7.0, 5.9, 6.5, 3e6)
        yield f


@pytest.fixture
def client(fake: FakeYahoo, clock: FakeMarketClock) -> YahooDataClient:
    cfg = parse_config({"yahoo": {"poll_interval_s": 0.05, "timeout_s": 5}})
    return YahooDataClient(cfg.yahoo, session=fake.session(), market_now=clock.now_ns)


def test_intraday_bars_come_through_cookie_crumb_and_chart(fake: FakeYahoo, client: YahooDataClient) -> None:
    bars = client.intraday_bars("AAA")
    # 04:00 .. 09:38: complete by 09:40 less Yahoo's one-minute delay
    assert len(bars) == 339 and bars[0].ts == et_ns(DAY, "04:00") and bars[-1].ts == et_ns(DAY, "09:38")
    assert all(b.ts + MINUTE <= et_ns(DAY, "09:40") for b in bars)
    hosts = [r["host"] for r in fake.requests]
    assert "fc.yahoo.com" in hosts and "query1.finance.yahoo.com" in hosts
    chart = [r for r in fake.requests if r["path"] == "/v8/finance/chart/AAA" and r["query"]["interval"] == "1m"]
    assert chart[0]["query"]["crumb"] == "fakeCrumb0123" and chart[0]["query"]["includePrePost"] == "true"
    assert client.session.refused == []


def test_a_time_range_and_daily_bars(client: YahooDataClient) -> None:
    bars = client.intraday_bars("BBB", et_ns(DAY, "09:30"), et_ns(DAY, "09:35"))
    assert [b.ts for b in bars] == [et_ns(DAY, f"09:3{i}") for i in range(5)]
    daily = client.daily_history("AAA", date(2024, 3, 13), date(2024, 3, 14))
    assert [(d.day, d.close) for d in daily] == [(date(2024, 3, 13), 4.4), (date(2024, 3, 14), 4.5)]
    closes = client.daily_for(date(2024, 3, 14), ["AAA", "BBB", "NOPE"])  # NOPE: no data, skipped
    assert [(d.symbol, d.close) for d in closes] == [("AAA", 4.5), ("BBB", 6.5)]


def test_faults_are_clear_errors_and_counted(fake: FakeYahoo, client: YahooDataClient) -> None:
    client.intraday_bars("AAA")  # cookie, crumb and time zone cached
    fake.faults.extend([("status", 429)] * 2)  # yfinance retries once with its other cookie strategy
    with pytest.raises(YahooError) as err:
        client.intraday_bars("AAA")
    assert err.value.kind == "rate_limited"
    fake.faults.extend([("malformed",)])
    with pytest.raises(YahooError) as err:
        client.intraday_bars("AAA")
    assert err.value.kind == "unavailable"
    fake.faults.extend([("status", 500)] * 2)
    with pytest.raises(YahooError) as err:
        client.intraday_bars("AAA")
    assert err.value.kind in ("unavailable", "malformed")
    with pytest.raises(YahooError) as err:
        client.intraday_bars("NOPE")
    assert err.value.kind == "no_data"
    assert client.counts["error_rate_limited"] == 1 and client.counts["error_no_data"] == 1
    assert len(client.intraday_bars("AAA")) == 339  # and it recovers


def test_caches_are_cleared_and_kept_in_a_temporary_folder(fake: FakeYahoo, client: YahooDataClient) -> None:
    import yfinance.cache as yf_cache

    assert client.cache_dir.startswith(tempfile.gettempdir())
    assert yf_cache._TzDBManager.get_location() == client.cache_dir
    client.intraday_bars("AAA")
    crumbs = sum(r["path"] == "/v1/test/getcrumb" for r in fake.requests)
    client.intraday_bars("AAA")
    assert sum(r["path"] == "/v1/test/getcrumb" for r in fake.requests) == crumbs  # reused
    client.clear_caches()
    client.intraday_bars("AAA")
    assert sum(r["path"] == "/v1/test/getcrumb" for r in fake.requests) == crumbs + 1


def test_the_session_refuses_any_other_host(fake: FakeYahoo) -> None:
    session = fake.session()
    with pytest.raises(RefusedHost):
        session.get("https://example.com/")
    with pytest.raises(RefusedHost):
        session.get("http://query1.finance.yahoo.com/v1/test/getcrumb")  # not https
    assert session.refused == ["https://example.com/", "http://query1.finance.yahoo.com/v1/test/getcrumb"]
    assert session.get("https://query1.finance.yahoo.com/v1/test/getcrumb").text == "fakeCrumb0123"


def test_the_poller_delivers_only_new_complete_bars_in_order(
        fake: FakeYahoo, client: YahooDataClient, clock: FakeMarketClock) -> None:
    since = {"AAA": et_ns(DAY, "09:35"), "BBB": et_ns(DAY, "09:34")}

    async def main() -> list[Any]:
        woken = []
        await client.start(["AAA", "BBB"], lambda: woken.append(1), since=since)
        got = []
        deadline = time.monotonic() + 20
        while len(got) < 9 and time.monotonic() < deadline:
            got.append(await asyncio.wait_for(client.queue.get(), 10))
            if len(got) == 5:  # 09:35 BBB .. 09:38 both: five bars so far; the clock moves on
                clock.set(et_ns(DAY, "09:42"))
        assert client.state is FeedState.LIVE and woken
        await client.stop()
        return got

    got = asyncio.run(main())
    assert [(b.symbol, b.ts) for b in got] == [
        ("BBB", et_ns(DAY, "09:35")), ("AAA", et_ns(DAY, "09:36")), ("BBB", et_ns(DAY, "09:36")),
        ("AAA", et_ns(DAY, "09:37")), ("BBB", et_ns(DAY, "09:37")),
        ("AAA", et_ns(DAY, "09:38")), ("BBB", et_ns(DAY, "09:38")),
        ("AAA", et_ns(DAY, "09:39")), ("BBB", et_ns(DAY, "09:39"))]


def test_the_poller_reports_a_dead_source(fake: FakeYahoo, client: YahooDataClient) -> None:
    async def main() -> None:
        fake.faults.extend([("status", 500)] * 1000)
        await client.start(["AAA"], lambda: None)
        deadline = time.monotonic() + 10
        while client.state is not FeedState.DISCONNECTED and time.monotonic() < deadline:
            await asyncio.sleep(0.02)
        assert client.state is FeedState.DISCONNECTED and "AAA" in client.state_reason
        await client.stop()

    asyncio.run(main())


def test_dagster_daily_bars_come_from_yahoo_without_a_polygon_key(fake: FakeYahoo) -> None:
    from live_runner.live.feeds import FeedConfigError, daily_bars_for

    cfg = parse_config({})
    provider, bars = daily_bars_for(cfg, {}, date(2024, 3, 14), ["AAA", "BBB"], yahoo_session=fake.session())
    assert provider == "yahoo" and [(b.symbol, b.close) for b in bars] == [("AAA", 4.5), ("BBB", 6.5)]
    with pytest.raises(FeedConfigError, match="symbol list"):
        daily_bars_for(cfg, {}, date(2024, 3, 14), None)


live_account = pytest.mark.skipif(
    __import__("os").environ.get("TRADING_LIVE_TESTS") != "1",
    reason="needs the internet; run with TRADING_LIVE_TESTS=1")


@pytest.mark.live_account
@live_account
def test_real_yahoo_daily_and_intraday_bars() -> None:
    from datetime import timedelta

    y = YahooDataClient(parse_config({}).yahoo)  # its own curl_cffi session, real Yahoo
    end = date.today()
    assert y.daily_history("SPY", end - timedelta(days=10), end)
    assert y.intraday_bars("SPY") is not None
