"""The Alpaca client's listing of our orders at start (adoption after a crash), against the fake on
127.0.0.1 with the real alpaca-py SDK: the fake lists as Alpaca does (limit <= 500, after/until
exclusive on submitted_at, newest first), so a listing that does not page, or that takes its bound
from a market clock reading 0 or a replayed time, misses orders here as it would at Alpaca.
"""

from __future__ import annotations

import asyncio
from datetime import date, timedelta
from typing import Any

import pytest
from alpaca.common.exceptions import APIError
from alpaca.trading.client import TradingClient
from alpaca.trading.enums import QueryOrderStatus
from alpaca.trading.requests import GetOrdersRequest

from live_runner.adapters.alpaca import adoption
from live_runner.core.calendar import MarketCalendar
from live_runner.core.clock import to_utc
from tests.integration.test_alpaca_exits import REGULAR, Seen, client_for, run
from tests.kit.alpaca_book import ManualClock
from tests.kit.alpaca_listing import parse_ts
from tests.kit.fake_alpaca import KEY, SECRET, FakeAlpaca
from tests.kit.sessions import et_ns

MS = 1_000_000
DAY_OPEN = et_ns("2024-03-15", "04:00")   # the day's first orders, premarket


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(DAY_OPEN)


@pytest.fixture
def fake(clock: ManualClock) -> Any:
    f = FakeAlpaca(clock=clock).start()
    yield f
    f.stop()


def seed(fake: FakeAlpaca, cid: str, *, state: str = "new", side: str = "buy", limit: str = "9.00") -> str:
    """An order at Alpaca as if sent before the crash (no journal); `state`: new, canceled, filled."""
    with fake.lock:
        status, o = fake._new_order({"client_order_id": cid, "symbol": "AAPL", "qty": "10", "side": side,
                                     "type": "limit", "limit_price": limit, "time_in_force": "day"})
        assert status == 200, o
        fake._after_accept(o)
        if state == "canceled":
            fake.book.close(fake.book.orders[o["id"]], "canceled")
        elif state == "filled":
            fake.book.fill(fake.book.orders[o["id"]], 10, 9.0)
        return str(o["submitted_at"])


def rest(fake: FakeAlpaca) -> TradingClient:
    c = TradingClient(KEY, SECRET, url_override=fake.base_url)
    c._retry = 0
    return c


def busy_day(fake: FakeAlpaca, clock: ManualClock, n: int) -> None:
    """An open order of ours and a filled one among the day's first, then `n` more of ours (closed)
    and foreign ones, three to each instant so that pages end inside a group of equal times."""
    seed(fake, "LR-OPEN-1")
    seed(fake, "LR-FILLED-1", state="filled")
    clock.advance(0.001)
    for i in range(n):
        seed(fake, f"LR-B{i}" if i % 5 else f"other-{i}", state="canceled")
        if i % 3 == 2:
            clock.advance(0.001)
    clock.now = REGULAR


# --- the client at start ------------------------------------------------------------------------
def test_an_open_order_among_the_oldest_of_a_busy_day_is_still_adopted(fake: FakeAlpaca,
                                                                       clock: ManualClock) -> None:
    """More than 500 orders today: a single request (newest first, 500 at most) ends before the
    first orders of the day; the client pages back until the listing is complete."""
    busy_day(fake, clock, 1200)
    seen = Seen()

    async def scenario() -> list[str]:
        c = client_for(fake, seen)
        await c.start()
        found = [r.client_order_id for r in c.unclaimed()]
        await c.aclose()
        return found

    found = run(scenario())
    assert seen.faults == []
    assert "LR-OPEN-1" in found and "LR-FILLED-1" in found
    ours = {f"LR-B{i}" for i in range(1200) if i % 5} | {"LR-OPEN-1", "LR-FILLED-1"}
    assert set(found) == ours and len(found) == len(ours)   # every one, each once, no foreign one
    pages = [q for q in fake.listings if q.get("status") == "all"]
    assert len(pages) == 3 and all(q["limit"] == "500" and q["direction"] == "desc" for q in pages)
    assert "until" not in pages[0] and all("until" in q for q in pages[1:])


@pytest.mark.parametrize("market_now", [0, et_ns("2024-03-20", "09:31")],
                         ids=["clock_reads_0", "clock_replays_a_later_day"])
def test_the_listing_bound_comes_from_the_wall_clock_not_the_market_clock(
        fake: FakeAlpaca, clock: ManualClock, market_now: int) -> None:
    """The market clock may read 0 before the first bar, or a replayed time: today's orders (a
    filled one the journal lost, an open one) are listed all the same, each stamped with its
    submission time at Alpaca (what the journal's `adopted` order then carries), never 1970."""
    filled_at = parse_ts(seed(fake, "LR-FILLED-1", state="filled"))
    clock.advance(3600)
    open_at = parse_ts(seed(fake, "LR-OPEN-1"))
    clock.now = REGULAR
    seen = Seen()

    async def scenario() -> list[tuple[str, int]]:
        c = client_for(fake, seen)
        c.now_ns = lambda: market_now
        await c.start()
        found = [(r.client_order_id, r.ts) for r in c.unclaimed()]
        await c.aclose()
        return found

    assert run(scenario()) == [("LR-FILLED-1", filled_at), ("LR-OPEN-1", open_at)] and seen.faults == []
    assert filled_at == DAY_OPEN and open_at == DAY_OPEN + 3600 * 10**9
    recent = next(q for q in fake.listings if q.get("status") == "all")
    after = parse_ts(recent["after"])
    assert REGULAR - 5 * 86_400 * 10**9 <= after <= REGULAR - 86_400 * 10**9


def test_a_failed_second_listing_is_a_fault_and_nothing_is_offered(fake: FakeAlpaca) -> None:
    seed(fake, "LR-OPEN-1")
    fake.list_faults.extend(["ok", "500"])   # the open orders are read, the recent ones are not
    seen = Seen()

    async def scenario() -> list[Any]:
        c = client_for(fake, seen)
        await c.start()
        found = c.unclaimed()
        await c.aclose()
        return found

    assert run(scenario()) == []
    assert [k for k, _ in seen.faults] == ["alpaca_adoption_listing"] and "HTTP 500" in seen.faults[0][1]


# --- paging, on the wire --------------------------------------------------------------------------
def fetcher(fake: FakeAlpaca) -> adoption.Fetch:
    client = rest(fake)

    async def fetch(query: GetOrdersRequest) -> Any:
        return await asyncio.to_thread(client.get_orders, query)
    return fetch


def test_more_pages_than_the_cap_is_an_error_not_a_partial_listing(fake: FakeAlpaca, clock: ManualClock) -> None:
    for i in range(25):
        seed(fake, f"LR-{i}")
        clock.advance(0.001)
    got = run(adoption.list_all(fetcher(fake), open_only=True, limit=10, max_pages=3))
    assert len(got) == 25
    with pytest.raises(adoption.ListingError, match="more than 2 pages"):
        run(adoption.list_all(fetcher(fake), open_only=True, limit=10, max_pages=2))


def test_a_page_of_orders_all_submitted_at_one_instant_is_an_error(fake: FakeAlpaca) -> None:
    for i in range(12):
        seed(fake, f"LR-{i}")   # the clock does not move: one submission instant
    with pytest.raises(adoption.ListingError, match="no progress"):
        run(adoption.list_all(fetcher(fake), open_only=True, limit=10))


def test_since_is_the_previous_session_start_or_a_day_back_whichever_is_earlier() -> None:
    cal = MarketCalendar(date(2024, 1, 1), date(2024, 12, 31))
    monday = et_ns("2024-03-18", "09:00")
    assert adoption.since_ns(monday, cal) == et_ns("2024-03-15", "04:00")      # Friday premarket
    friday_late = et_ns("2024-03-15", "19:00")
    assert adoption.since_ns(friday_late, cal) == et_ns("2024-03-14", "04:00")
    friday_early = et_ns("2024-03-15", "02:00")
    assert adoption.since_ns(friday_early, cal) == friday_early - adoption.DAY_NS  # a day back
    assert adoption.since_ns(et_ns("2024-03-18", "09:00"), MarketCalendar(date(2025, 1, 1), date(2025, 12, 31))) \
        == monday - adoption.FALLBACK_NS        # outside the calendar: the wide fallback
    assert adoption.since_ns(monday, None) == monday - adoption.FALLBACK_NS


# --- the fake lists as Alpaca does ---------------------------------------------------------------
def test_the_fake_refuses_a_limit_above_500_like_alpaca(fake: FakeAlpaca) -> None:
    client = rest(fake)
    assert client.get_orders(GetOrdersRequest(status=QueryOrderStatus.ALL, limit=500)) == []
    with pytest.raises(APIError) as err:
        client.get_orders(GetOrdersRequest(status=QueryOrderStatus.ALL, limit=501))
    assert err.value.status_code == 422 and "invalid limit" in err.value.message


def test_after_and_until_are_exclusive_on_submission_time(fake: FakeAlpaca, clock: ManualClock) -> None:
    stamps = []
    for i in range(3):
        stamps.append(seed(fake, f"LR-{i}"))
        clock.advance(0.001)
    t0, t1, t2 = (parse_ts(s) for s in stamps)
    client = rest(fake)

    def ids(**kw: Any) -> list[str]:
        kw.setdefault("status", QueryOrderStatus.ALL)
        return [o.client_order_id for o in client.get_orders(GetOrdersRequest(**kw))]

    def at(ns: int) -> Any:
        return to_utc(ns)

    assert ids() == ["LR-2", "LR-1", "LR-0"]                                # newest first
    assert ids(direction="asc") == ["LR-0", "LR-1", "LR-2"]
    assert ids(after=at(t0), until=at(t2)) == ["LR-1"]                      # both ends exclusive
    assert ids(after=at(t0) - timedelta(microseconds=1), until=at(t2) + timedelta(microseconds=1)) == [
        "LR-2", "LR-1", "LR-0"]
    assert ids(until=at(t1)) == ["LR-0"] and ids(after=at(t1)) == ["LR-2"]
    assert ids(limit=2, direction="asc") == ["LR-0", "LR-1"]
    assert [o.client_order_id for o in client.get_orders(GetOrdersRequest())] == ["LR-2", "LR-1", "LR-0"]
    fake.cancel_by_broker("LR-1")
    assert [o.client_order_id for o in client.get_orders(GetOrdersRequest())] == ["LR-2", "LR-0"]  # open
    assert ids(status=QueryOrderStatus.CLOSED) == ["LR-1"]


def test_the_default_limit_is_50(fake: FakeAlpaca, clock: ManualClock) -> None:
    for i in range(60):
        seed(fake, f"LR-{i}")
        clock.advance(0.001)
    got = rest(fake).get_orders(GetOrdersRequest(status=QueryOrderStatus.ALL))
    assert len(got) == 50 and got[0].client_order_id == "LR-59"
