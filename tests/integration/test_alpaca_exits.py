"""Exits at Alpaca as Alpaca really treats them: the real alpaca-py client against the fake on
127.0.0.1, whose book reserves shares for open sells (403 "insufficient qty available"), runs OCO
orders, replaces asynchronously and confirms cancels after a delay on an injected clock.

Every test ends with the broker's own invariant: no sell ever exceeded the position
(`book.violations` is empty) and the account is never short.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any, Callable

import pytest

from live_runner.adapters.alpaca import AlpacaExecutionClient
from live_runner.core.config import AlpacaConfig
from live_runner.core.models import Fill, OrderEvent, OrderRequest, OrderRole, OrderStatus, OrderType, Side
from tests.kit.alpaca_book import ManualClock
from tests.kit.fake_alpaca import KEY, SECRET, FakeAlpaca
from tests.kit.sessions import et_ns

REGULAR = et_ns("2024-03-15", "10:00")
SYM = "AAPL"


# --- harness --------------------------------------------------------------------------------------
@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(REGULAR)


@pytest.fixture
def fake(clock: ManualClock) -> Any:
    f = FakeAlpaca(clock=clock).start()
    yield f
    f.stop()
    assert f.book.violations == []                       # no sell beyond the position, ever
    assert all(q >= 0 for q in f.position_qty().values())  # never short


class Seen:
    """What the runner would be told."""

    def __init__(self) -> None:
        self.events: list[OrderEvent] = []
        self.fills: list[Fill] = []
        self.alerts: list[tuple[str, str, str]] = []
        self.faults: list[tuple[str, str]] = []
        self.links: list[tuple[bool, str]] = []

    def statuses(self, cid: str) -> list[OrderStatus]:
        return [e.status for e in self.events if e.client_order_id == cid]

    def reasons(self, cid: str) -> list[str]:
        return [e.reason for e in self.events if e.client_order_id == cid]

    def filled(self, cid: str) -> int:
        return sum(f.qty for f in self.fills if f.client_order_id == cid)

    def critical(self, prefix: str) -> list[str]:
        return [m for k, s, m in self.alerts if k.startswith(prefix) and s == "critical"]


def client_for(fake: FakeAlpaca, seen: Seen) -> AlpacaExecutionClient:
    cfg = AlpacaConfig(base_url=fake.base_url, stream_url=fake.stream_url, request_timeout_s=0.5,
                       stale_after_s=0.6, lookup_settle_s=0.05, lookup_retry_max_s=0.2,
                       reconnect_min_s=0.05, reconnect_max_s=0.2, account_refresh_s=30.0)
    c = AlpacaExecutionClient(cfg, KEY, SECRET, clock=lambda: REGULAR, wall_clock=fake.clock)
    c.set_handlers(seen.events.append, seen.fills.append)
    c.set_alert_handler(lambda k, s, m: seen.alerts.append((k, s, m)))
    c.set_fault_handler(lambda k, m: seen.faults.append((k, m)))
    c.set_connection_handler(lambda up, detail: seen.links.append((up, detail)))
    return c


async def until(pred: Callable[[], bool], what: str, timeout: float = 8.0) -> None:
    end = time.monotonic() + timeout
    while not pred():
        if time.monotonic() > end:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.01)


def run(coro: Any) -> Any:
    return asyncio.run(asyncio.wait_for(coro, 60))


def req(cid: str, side: Side, kind: OrderType, role: OrderRole, qty: int, *, limit: float = 0.0,
        stop: float = 0.0, oco: str = "") -> OrderRequest:
    return OrderRequest(cid, "s", SYM, side, qty, kind, role, REGULAR, limit_price=limit,
                        stop_price=stop, oco_group=oco)


def exits(n: int, qty: int, stop_px: float = 9.5, target_px: float = 11.0) -> tuple[OrderRequest, OrderRequest]:
    """The n-th (stop, target) pair: named by the target's id, as the OrderManager does."""
    tid = f"LR-T{n}"
    return (req(f"LR-S{n}", Side.SELL, OrderType.STOP, OrderRole.STOP, qty, stop=stop_px, oco=tid),
            req(tid, Side.SELL, OrderType.LIMIT, OrderRole.TARGET, qty, limit=target_px, oco=tid))


async def holding(fake: FakeAlpaca, c: AlpacaExecutionClient, seen: Seen, qty: int) -> None:
    """Buy `qty` at 10.00 (filled at once) through the client."""
    fake.set_price(SYM, 10.0)
    await c.start()
    c.submit(req("LR-E1", Side.BUY, OrderType.MARKET, OrderRole.ENTRY, qty))
    await until(lambda: seen.filled("LR-E1") == qty, "the entry fill")


# --- item 1, reproduced: two independent sells of one position ----------------------------------
def test_two_independent_sells_of_one_position_the_second_is_refused(fake: FakeAlpaca) -> None:
    """What the runner did before: stop and target as two plain sells of the whole position.
    Alpaca holds the shares for the first; the second is refused 403 (and is now CRITICAL)."""
    seen = Seen()

    async def scenario() -> None:
        c = client_for(fake, seen)
        await holding(fake, c, seen, 1538)
        stop, target = exits(1, 1538)
        c.submit(stop)
        await until(lambda: seen.statuses("LR-S1"), "the stop's answer")
        c.submit(target)
        await until(lambda: OrderStatus.REJECTED in seen.statuses("LR-T1"), "the target's refusal")
        await c.aclose()

    run(scenario())
    assert seen.statuses("LR-S1") == [OrderStatus.ACCEPTED]
    assert "insufficient qty available for order (requested: 1538, available: 0)" in seen.reasons("LR-T1")[-1]
    assert fake.book.refused == [("LR-T1", "insufficient qty available for order (requested: 1538, available: 0)")]
    assert len(seen.critical("unprotected:AAPL")) == 1


# --- one OCO per position --------------------------------------------------------------------------
def test_one_oco_per_position_reserves_the_shares_once_and_the_target_cancels_the_stop(fake: FakeAlpaca) -> None:
    seen = Seen()

    async def scenario() -> AlpacaExecutionClient:
        c = client_for(fake, seen)
        await holding(fake, c, seen, 100)
        assert c.native_oco
        stop, target = exits(1, 100)
        c.submit_oco(stop, target)
        await until(lambda: seen.statuses("LR-S1") and seen.statuses("LR-T1"), "both legs accepted")
        assert fake.book.reserved(SYM) == 100 and fake.book.available(SYM) == 0
        fake.walk(SYM, [10.5, 10.9, 11.05])           # the target is touched
        await until(lambda: OrderStatus.CANCELED in seen.statuses("LR-S1"), "the stop canceled")
        await c.aclose()
        return c

    c = run(scenario())
    [body] = [b for b in fake.bodies if b["side"] == "sell"]     # ONE POST for both exits
    assert body["order_class"] == "oco" and body["client_order_id"] == "LR-T1"
    assert body["take_profit"]["limit_price"] == 11.0 and body["stop_loss"]["stop_price"] == 9.5
    parent = fake.order("LR-T1")
    assert parent is not None and [leg["type"] for leg in parent["legs"]] == ["stop"]
    assert parent["legs"][0]["client_order_id"] != "LR-S1"      # Alpaca names the leg itself
    assert seen.filled("LR-T1") == 100 and seen.filled("LR-S1") == 0
    assert seen.statuses("LR-S1") == [OrderStatus.ACCEPTED, OrderStatus.CANCELED]
    assert fake.position_qty() == {} == c.positions()


def test_partial_entry_fills_resize_the_oco_by_replace_never_cancel_then_new(
        fake: FakeAlpaca, clock: ManualClock) -> None:
    """1,000 of 1,538 fill: an OCO for 1,000. The other 538 fill: the OCO is replaced in place
    (PATCH; asynchronous: nothing is reported until Alpaca says `replaced`). Then the stop."""
    fake.book.replace_delay_ns = 1_000_000_000
    seen = Seen()

    async def scenario() -> AlpacaExecutionClient:
        c = client_for(fake, seen)
        fake.set_price(SYM, 10.2)
        await c.start()
        c.submit(req("LR-E1", Side.BUY, OrderType.LIMIT, OrderRole.ENTRY, 1538, limit=10.0))
        await until(lambda: seen.statuses("LR-E1"), "the entry accepted")
        fake.fill("LR-E1", 1000, 10.0)
        await until(lambda: seen.filled("LR-E1") == 1000, "the first partial fill")
        c.submit_oco(*exits(1, 1000))
        await until(lambda: len(seen.statuses("LR-S1")) == 1, "the first pair accepted")
        fake.fill("LR-E1", 538, 10.0)
        await until(lambda: seen.filled("LR-E1") == 1538, "the rest of the entry")
        assert fake.book.available(SYM) == 538
        c.replace_exits("LR-S1", "LR-T1", *exits(2, 1538))
        await until(lambda: fake.order("LR-T1")["status"] == "pending_replace", "the PATCH")
        await asyncio.sleep(0.2)
        assert seen.statuses("LR-T2") == [] and seen.statuses("LR-T1") == [OrderStatus.ACCEPTED]
        clock.advance(1.0)
        fake.tick()                                      # Alpaca confirms: `replaced`
        await until(lambda: OrderStatus.ACCEPTED in seen.statuses("LR-S2"), "the new pair")
        assert fake.book.reserved(SYM) == 1538 == fake.book.position(SYM)
        fake.walk(SYM, [9.8, 9.6, 9.45])                 # the (new) stop triggers
        await until(lambda: seen.filled("LR-S2") == 1538, "the stop fill")
        await until(lambda: OrderStatus.CANCELED in seen.statuses("LR-T2"), "the target canceled")
        await c.aclose()
        return c

    c = run(scenario())
    assert len(fake.patches) == 1 and fake.book.cancels == []            # replaced, not canceled
    assert [b["client_order_id"] for b in fake.bodies] == ["LR-E1", "LR-T1"]  # no second sell
    assert fake.patches[0][1]["qty"] == 1538 and fake.patches[0][1]["client_order_id"] == "LR-T2"
    for old in ("LR-S1", "LR-T1"):
        assert seen.statuses(old) == [OrderStatus.ACCEPTED, OrderStatus.CANCELED]
        assert seen.reasons(old)[-1] == "replaced"
    assert fake.order("LR-T1")["status"] == "replaced"
    assert seen.filled("LR-S1") == seen.filled("LR-T1") == seen.filled("LR-T2") == 0
    assert fake.position_qty() == {} == c.positions() and seen.critical("unprotected") == []


def test_a_target_partial_fill_reduces_the_stop_leg(fake: FakeAlpaca) -> None:
    seen = Seen()

    async def scenario() -> None:
        c = client_for(fake, seen)
        await holding(fake, c, seen, 100)
        c.submit_oco(*exits(1, 100))
        await until(lambda: seen.statuses("LR-S1"), "the pair")
        fake.fill("LR-T1", 30, 11.0)                     # 30 sold at the target
        await until(lambda: seen.filled("LR-T1") == 30, "the partial target fill")
        leg = fake.order("LR-T1")["legs"][0]
        assert int(leg["qty"]) == 70 and fake.book.reserved(SYM) == 70 == fake.book.position(SYM)
        fake.walk(SYM, [10.0, 9.4])                      # the stop sells what is left
        await until(lambda: seen.filled("LR-S1") == 70, "the stop fill")
        await until(lambda: OrderStatus.CANCELED in seen.statuses("LR-T1"), "the target canceled")
        await c.aclose()

    run(scenario())
    assert seen.statuses("LR-S1") == [OrderStatus.ACCEPTED, OrderStatus.FILLED] or \
        seen.statuses("LR-S1") == [OrderStatus.ACCEPTED]
    assert seen.filled("LR-T1") + seen.filled("LR-S1") == 100 and fake.position_qty() == {}


# --- refusals --------------------------------------------------------------------------------------
def test_a_refused_oco_raises_unprotected(fake: FakeAlpaca) -> None:
    """Someone else's sell holds the shares: Alpaca refuses the exits (403), and the runner hears
    it as CRITICAL `unprotected:AAPL`, both ids REJECTED."""
    seen = Seen()

    async def scenario() -> None:
        c = client_for(fake, seen)
        await holding(fake, c, seen, 100)
        with fake.lock:
            _, o = fake._new_order({"client_order_id": "manual-1", "symbol": SYM, "qty": "100",
                                    "side": "sell", "type": "limit", "limit_price": "20",
                                    "time_in_force": "day"})
            fake._after_accept(o)
        c.submit_oco(*exits(1, 100))
        await until(lambda: seen.statuses("LR-S1"), "the verdict")
        await c.aclose()

    run(scenario())
    assert seen.statuses("LR-T1") == seen.statuses("LR-S1") == [OrderStatus.REJECTED]
    assert "insufficient qty available" in seen.reasons("LR-S1")[0]
    [msg] = seen.critical("unprotected:AAPL")
    assert "LR-T1" in msg


def test_a_refused_replace_leaves_the_old_pair_working(fake: FakeAlpaca) -> None:
    seen = Seen()

    async def scenario() -> None:
        c = client_for(fake, seen)
        await holding(fake, c, seen, 100)
        c.submit_oco(*exits(1, 100))
        await until(lambda: seen.statuses("LR-S1"), "the pair")
        c.replace_exits("LR-S1", "LR-T1", *exits(2, 150))   # more than is held: 403
        await until(lambda: seen.statuses("LR-S2"), "the refusal")
        fake.walk(SYM, [9.4])                              # the old stop still protects
        await until(lambda: seen.filled("LR-S1") == 100, "the old stop's fill")
        await c.aclose()

    run(scenario())
    assert seen.statuses("LR-T2") == seen.statuses("LR-S2") == [OrderStatus.REJECTED]
    assert "insufficient qty available for order (requested: 150, available: 100)" in seen.reasons("LR-T2")[0]
    assert len(seen.critical("unprotected:AAPL")) == 1
    assert fake.book.cancels == [] and fake.position_qty() == {}


# --- cancel is a request ---------------------------------------------------------------------------
def test_the_stop_fills_while_its_cancel_is_pending(fake: FakeAlpaca, clock: ManualClock) -> None:
    """Flatten asks to cancel the pair; before Alpaca confirms, the stop triggers. The fill is
    reported (the runner must sell nothing more), and the late confirmation changes nothing."""
    fake.book.cancel_delay_ns = 2_000_000_000
    seen = Seen()

    async def scenario() -> AlpacaExecutionClient:
        c = client_for(fake, seen)
        await holding(fake, c, seen, 100)
        c.submit_oco(*exits(1, 100))
        await until(lambda: seen.statuses("LR-S1"), "the pair")
        c.cancel("LR-T1")
        c.cancel("LR-S1")
        await until(lambda: fake.order("LR-T1")["status"] == "pending_cancel", "the cancel request")
        fake.walk(SYM, [9.6, 9.3])                       # the stop triggers meanwhile
        await until(lambda: seen.filled("LR-S1") == 100, "the stop's fill")
        await until(lambda: OrderStatus.CANCELED in seen.statuses("LR-T1"), "the target done")
        clock.advance(2.0)
        fake.tick()
        await asyncio.sleep(0.2)
        await c.aclose()
        return c

    c = run(scenario())
    assert OrderStatus.CANCELED not in seen.statuses("LR-S1")
    assert fake.order("LR-T1")["legs"][0]["status"] == "filled"
    assert fake.position_qty() == {} == c.positions()


def test_cancel_of_an_order_already_done_is_quiet(fake: FakeAlpaca, caplog: Any) -> None:
    seen = Seen()

    async def scenario() -> None:
        c = client_for(fake, seen)
        await holding(fake, c, seen, 100)
        c.submit_oco(*exits(1, 100))
        await until(lambda: seen.statuses("LR-S1"), "the pair")
        with fake.lock:   # filled at the broker; the runner has not heard yet when it cancels
            fake.book.fill(fake.book.find("LR-T1"), 100, 11.0)
        c.cancel("LR-T1")
        await until(lambda: seen.filled("LR-T1") == 100, "the fill")
        await asyncio.sleep(0.3)
        await c.aclose()

    with caplog.at_level(logging.WARNING, logger="live_runner.adapters.alpaca"):
        run(scenario())
    assert not [r for r in caplog.records if "cancel of" in r.getMessage()]
    assert seen.statuses("LR-T1")[-1] is not OrderStatus.CANCELED and seen.faults == []


# --- restart ----------------------------------------------------------------------------------------
def test_recover_finds_the_stop_leg_through_its_parent(fake: FakeAlpaca) -> None:
    first, second = Seen(), Seen()

    async def scenario() -> None:
        c = client_for(fake, first)
        await holding(fake, c, first, 100)
        stop, target = exits(1, 100)
        c.submit_oco(stop, target)
        await until(lambda: first.statuses("LR-S1"), "the pair")
        await c.aclose()                                 # the runner dies here
        c2 = client_for(fake, second)
        await c2.start()
        c2.recover(target)
        c2.recover(stop)
        await until(lambda: second.statuses("LR-S1") and second.statuses("LR-T1"), "both found")
        fake.walk(SYM, [9.4])
        await until(lambda: second.filled("LR-S1") == 100, "the stop's fill, under the stop's id")
        await c2.aclose()

    run(scenario())
    assert second.statuses("LR-T1")[0] is OrderStatus.ACCEPTED and fake.lookups["LR-S1"] == 0
    assert fake.posts == {"LR-E1": 1, "LR-T1": 1} and second.faults == []


def test_an_oco_the_journal_lost_is_adopted_with_its_stop(fake: FakeAlpaca) -> None:
    """Sent in the instant before a crash, missing from the journal: the restart lists it (nested)
    and offers both exits for adoption; recovering them finds the leg through its parent."""
    first, second = Seen(), Seen()

    async def scenario() -> list[OrderRequest]:
        c = client_for(fake, first)
        await holding(fake, c, first, 100)
        c.submit_oco(*exits(1, 100))
        await until(lambda: first.statuses("LR-S1"), "the pair")
        await c.aclose()
        c2 = client_for(fake, second)
        await c2.start()
        found = c2.unclaimed()
        for r in found:
            c2.recover(r)
        await until(lambda: second.statuses("LR-T1-stop"), "the stop adopted")
        assert c2.unclaimed() == []
        fake.walk(SYM, [9.4])
        await until(lambda: second.filled("LR-T1-stop") == 100, "the stop's fill")
        await c2.aclose()
        return found

    found = run(scenario())
    assert [(r.client_order_id, r.role, r.qty, r.oco_group) for r in found if r.side is Side.SELL] == [
        ("LR-T1", OrderRole.TARGET, 100, "LR-T1"), ("LR-T1-stop", OrderRole.STOP, 100, "LR-T1")]
    assert second.faults == []


# --- items 5 and 8 ---------------------------------------------------------------------------------
def test_no_disconnect_alert_on_a_clean_start_but_a_real_drop_alerts(fake: FakeAlpaca) -> None:
    seen = Seen()

    async def scenario() -> None:
        c = client_for(fake, seen)
        await c.start()
        await asyncio.sleep(0.3)
        assert seen.links == []                          # a clean start is not news
        for ws in list(fake._listeners):
            fake._loop.call_soon_threadsafe(lambda w=ws: asyncio.ensure_future(w.close()))
        await until(lambda: [up for up, _ in seen.links] == [False, True], "down, then up again")
        await c.aclose()

    run(scenario())


def test_an_exception_while_applying_a_report_is_a_fault_not_a_malformed_message(fake: FakeAlpaca) -> None:
    seen = Seen()

    def broken_fill(f: Fill) -> None:
        raise ValueError(f"sell of {f.qty} {f.symbol} exceeds the position of 0")

    async def scenario() -> AlpacaExecutionClient:
        c = client_for(fake, seen)
        c.set_handlers(seen.events.append, broken_fill)
        fake.set_price(SYM, 10.0)
        await c.start()
        c.submit(req("LR-E1", Side.BUY, OrderType.MARKET, OrderRole.ENTRY, 100))
        await until(lambda: seen.faults, "the fault")
        await c.aclose()
        return c

    c = run(scenario())
    [(key, msg)] = seen.faults[:1]
    assert key in ("alpaca_apply_failed", "alpaca_internal") and "exceeds the position" in msg
    assert c.counters["malformed"] == 0


def test_a_fill_of_an_unknown_order_under_our_prefix_is_a_fault(fake: FakeAlpaca) -> None:
    seen = Seen()

    async def scenario() -> None:
        c = client_for(fake, seen)
        fake.set_price(SYM, 10.0)
        await c.start()
        with fake.lock:   # sent in the instant before a crash; no journal, no adoption
            _, o = fake._new_order({"client_order_id": "LR-X9", "symbol": SYM, "qty": "10",
                                    "side": "buy", "type": "market", "time_in_force": "day"})
            fake._after_accept(o)
        await until(lambda: seen.faults, "the fault")
        await c.aclose()

    run(scenario())
    assert seen.faults[0][0] == "alpaca_unknown_fill:LR-X9"


def test_a_failed_adoption_listing_is_a_fault(fake: FakeAlpaca) -> None:
    seen = Seen()
    fake.list_faults.append("500")

    async def scenario() -> None:
        c = client_for(fake, seen)
        await c.start()
        await c.aclose()

    run(scenario())
    assert [k for k, _ in seen.faults] == ["alpaca_adoption_listing"]
    assert "HTTP 500" in seen.faults[0][1]
