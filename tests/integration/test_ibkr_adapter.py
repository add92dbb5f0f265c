"""IbkrExecutionClient with the real SDK (ib_async, or ib_insync in `make test-legacy`) against the
fake TWS on 127.0.0.1: orders, fills, faults, throttle, and a gap_and_go round trip through the
whole chain. Each fault test asserts that no orderRef reached the broker twice."""

from __future__ import annotations

import asyncio
import os
import contextlib
import logging
from decimal import Decimal
from typing import Any, AsyncIterator, Callable

import pytest

from live_runner.adapters.ibkr import compat, mapping
from live_runner.adapters.ibkr.client import NOT_SENT, IbkrExecutionClient
from live_runner.core.calendar import MarketCalendar
from live_runner.core.config import IbkrConfig
from live_runner.core.models import Fill, OrderEvent, OrderRequest, OrderRole, OrderStatus, OrderType, Side
from tests.kit.fake_tws import FakeTws
from tests.kit.sessions import et_ns

pytestmark = pytest.mark.legacy_sdk

DAY = "2024-03-15"
RTH = et_ns(DAY, "10:00")
PREMARKET = et_ns(DAY, "08:00")
_CALENDAR: MarketCalendar | None = None


def calendar() -> MarketCalendar:
    global _CALENDAR
    if _CALENDAR is None:
        _CALENDAR = MarketCalendar()
    return _CALENDAR


def run(coro: Any, timeout: float = 60.0) -> Any:
    return asyncio.run(asyncio.wait_for(coro, timeout))


async def until(pred: Callable[[], bool], timeout: float = 5.0, what: str = "") -> None:
    loop = asyncio.get_running_loop()
    end = loop.time() + timeout
    while not pred():
        if loop.time() > end:
            raise AssertionError(f"timed out waiting for {what or pred}")
        await asyncio.sleep(0.01)


def req(cid: str, order_type: OrderType = OrderType.MARKET, side: Side = Side.BUY, qty: int = 100,
        symbol: str = "AAPL", ts: int = RTH, limit: float = 0.0, stop: float = 0.0) -> OrderRequest:
    return OrderRequest(cid, "gap_and_go", symbol, side, qty, order_type, OrderRole.ENTRY, ts,
                        limit_price=limit, stop_price=stop)


class Rig:
    def __init__(self, fake: FakeTws, client: IbkrExecutionClient) -> None:
        self.fake = fake
        self.client = client
        self.events: list[OrderEvent] = []
        self.fills: list[Fill] = []
        self.log: list[OrderEvent | Fill] = []
        self.links: list[bool] = []
        client.set_handlers(self._event, self._fill)
        client.set_connection_handler(lambda up, detail: self.links.append(up))

    def _event(self, ev: OrderEvent) -> None:
        self.events.append(ev)
        self.log.append(ev)

    def _fill(self, f: Fill) -> None:
        self.fills.append(f)
        self.log.append(f)

    def statuses(self, cid: str) -> list[OrderStatus]:
        return [e.status for e in self.events if e.client_order_id == cid]

    def fills_of(self, cid: str) -> list[Fill]:
        return [f for f in self.fills if f.client_order_id == cid]

    async def terminal(self, cid: str, timeout: float = 5.0) -> OrderStatus:
        done = {OrderStatus.CANCELED, OrderStatus.REJECTED, OrderStatus.EXPIRED}
        await until(lambda: any(s in done for s in self.statuses(cid)), timeout, f"{cid} terminal")
        return next(s for s in self.statuses(cid) if s in done)


def make_client(fake: FakeTws, tmp_path: Any, **overrides: Any) -> IbkrExecutionClient:
    cfg = dict(host="127.0.0.1", port=fake.port, client_id=7, account="DU123", connect_timeout_s=3.0,
               reconnect_initial_s=0.05, reconnect_max_s=0.2, commission_wait_s=0.5,
               order_id_state=str(tmp_path / "ibkr_ids.json"))
    cfg.update(overrides)
    return IbkrExecutionClient(IbkrConfig(**cfg), prefix="LR", calendar=calendar())


@contextlib.asynccontextmanager
async def rig(tmp_path: Any, fake: FakeTws | None = None, **overrides: Any) -> AsyncIterator[Rig]:
    fake = fake or FakeTws()
    if not fake.up:
        await fake.start()
    r = Rig(fake, make_client(fake, tmp_path, **overrides))
    try:
        assert await r.client.start(), "client did not connect to the fake"
        yield r
    finally:
        await r.client.stop()
        await fake.stop()


# --- connect, orders, fills ------------------------------------------------------------------------

def test_connects_and_farm_advisories_are_not_failures(tmp_path: Any) -> None:
    async def scenario() -> None:
        async with rig(tmp_path) as r:
            assert r.client.connected and r.links == [True]
            assert r.client.positions() == {}
            for code, text in ((2104, "Market data farm connection is OK:usfarm"),
                               (2106, "HMDS data farm connection is OK:ushmds"),
                               (2158, "Sec-def data farm connection is OK:secdefil"),
                               (10090, "Part of requested market data is not subscribed")):
                r.fake.send_error(-1, code, text)
            await until(lambda: r.client.stats["advisories"] == 4)
            r.client.submit(req("LR-20240315-GG-AAPL-1"))
            await until(lambda: len(r.fills) == 1)
            assert r.client.connected and r.links == [True]
            assert r.client.stats["disconnects"] == 0 and r.statuses("LR-20240315-GG-AAPL-1") == [OrderStatus.ACCEPTED]

    run(scenario())
    for code in (2104, 2106, 2158, 10090):
        assert not mapping.is_failure(code)
    assert mapping.classify(201) is mapping.ErrorKind.ORDER_REJECTED
    assert mapping.classify(1100) is mapping.ErrorKind.LINK_LOST


def test_market_limit_stop_carry_the_client_order_id(tmp_path: Any) -> None:
    async def scenario() -> None:
        async with rig(tmp_path) as r:
            r.client.submit(req("LR-1-GG-AAPL-1"))
            r.client.submit(req("LR-1-GG-AAPL-2", OrderType.LIMIT, Side.BUY, 50, limit=9.5))
            r.client.submit(req("LR-1-GG-AAPL-3", OrderType.STOP, Side.SELL, 100, stop=9.0))
            await until(lambda: len(r.events) == 3 and len(r.fills) == 1)
            for cid, kind in (("LR-1-GG-AAPL-1", "MKT"), ("LR-1-GG-AAPL-2", "LMT"), ("LR-1-GG-AAPL-3", "STP")):
                [msg] = r.fake.placed(cid)
                assert msg[18] == kind and msg[23] == "DU123" and msg[21] == "DAY" and msg[33] == "0"
                assert r.statuses(cid) == [OrderStatus.ACCEPTED]
            [fill] = r.fills
            assert (fill.client_order_id, fill.symbol, fill.side, fill.qty, fill.price) == (
                "LR-1-GG-AAPL-1", "AAPL", Side.BUY, 100, 10.0)
            assert fill.commission == Decimal("0.35") and fill.exec_id == r.fake.executions[0].exec_id
            assert r.fake.order("LR-1-GG-AAPL-2").lmt_price == 9.5 and r.fake.order("LR-1-GG-AAPL-3").aux_price == 9.0
            await until(lambda: r.client.positions() == {"AAPL": 100})
            ids = [int(m[1]) for m in r.fake.messages(3)]
            assert len(set(ids)) == 3

    run(scenario())


def test_duplicated_exec_details_reach_on_fill_once(tmp_path: Any) -> None:
    async def scenario() -> None:
        fake = FakeTws()
        fake.duplicate_exec = True
        async with rig(tmp_path, fake) as r:
            r.client.submit(req("LR-1-GG-AAPL-1", qty=300))
            await until(lambda: len(r.fills) == 1)
            r.client._request_reconcile("test")  # the same execution again, from reqExecutions
            await until(lambda: r.client.stats["reconciles"] >= 2)
            await asyncio.sleep(0.1)
            assert len(r.fills) == 1 and r.fills[0].commission == Decimal("1.05")
            assert len(r.fake.messages(7)) >= 2

    run(scenario())


def test_partial_fill_then_cancel(tmp_path: Any) -> None:
    async def scenario() -> None:
        async with rig(tmp_path) as r:
            cid = "LR-1-GG-AAPL-1"
            r.client.submit(req(cid, OrderType.LIMIT, qty=100, limit=10.0))
            await until(lambda: r.statuses(cid) == [OrderStatus.ACCEPTED])
            r.fake.fill(cid, 40, 9.99)
            await until(lambda: len(r.fills) == 1)
            r.client.cancel(cid)
            assert await r.terminal(cid) is OrderStatus.CANCELED
            [fill] = r.fills
            assert (fill.qty, fill.price, fill.commission) == (40, 9.99, Decimal("0.35"))
            kinds = [type(x).__name__ + (f":{x.status.value}" if isinstance(x, OrderEvent) else "") for x in r.log]
            assert kinds == ["OrderEvent:accepted", "Fill", "OrderEvent:canceled"]
            assert r.fake.order(cid).status == "Cancelled" and len(r.fake.messages(4)) == 1

    run(scenario())


def test_rejected_order_is_reported_rejected(tmp_path: Any) -> None:
    async def scenario() -> None:
        fake = FakeTws()
        fake.reject = lambda o: (201, "Order rejected - reason:Insufficient buying power") if o.symbol == "TSLA" else None
        async with rig(tmp_path, fake) as r:
            r.client.submit(req("LR-1-GG-TSLA-1", symbol="TSLA"))
            assert await r.terminal("LR-1-GG-TSLA-1") is OrderStatus.REJECTED
            await asyncio.sleep(0.1)
            [ev] = [e for e in r.events if e.client_order_id == "LR-1-GG-TSLA-1"]
            assert "201" in ev.reason and "buying power" in ev.reason
            assert r.fills == [] and r.client.connected

    run(scenario())


def test_premarket_limit_is_outside_rth_and_market_is_refused(tmp_path: Any) -> None:
    async def scenario() -> None:
        async with rig(tmp_path) as r:
            r.client.submit(req("LR-1-GG-AAPL-1", OrderType.LIMIT, limit=10.5, ts=PREMARKET))
            r.client.submit(req("LR-1-GG-AAPL-2", OrderType.MARKET, ts=PREMARKET))
            r.client.submit(req("LR-1-GG-AAPL-3", OrderType.LIMIT, limit=10.5, ts=et_ns(DAY, "17:00")))
            await until(lambda: len(r.events) == 3)
            assert r.fake.placed("LR-1-GG-AAPL-1")[0][33] == "1"  # outsideRth as the broker got it
            assert r.fake.placed("LR-1-GG-AAPL-3")[0][33] == "1"
            assert r.fake.order("LR-1-GG-AAPL-1").outside_rth
            assert r.fake.placed("LR-1-GG-AAPL-2") == []
            [ev] = [e for e in r.events if e.client_order_id == "LR-1-GG-AAPL-2"]
            assert ev.status is OrderStatus.REJECTED and ev.reason.startswith(NOT_SENT)

    run(scenario())


def test_day_orders_canceled_by_the_broker_after_the_session_expire(tmp_path: Any) -> None:
    async def scenario() -> None:
        async with rig(tmp_path) as r:
            r.client.submit(req("LR-1-GG-AAPL-1", OrderType.LIMIT, limit=9.0))
            r.client.submit(req("LR-1-GG-AAPL-2", OrderType.LIMIT, limit=9.0))
            await until(lambda: len(r.events) == 2)
            r.fake.cancel_by_broker("LR-1-GG-AAPL-1")  # during the session: the broker canceled it
            assert await r.terminal("LR-1-GG-AAPL-1") is OrderStatus.CANCELED
            r.client.end_session(et_ns(DAY, "16:00"))
            r.fake.cancel_by_broker("LR-1-GG-AAPL-2")  # at the close: a day order expiring
            assert await r.terminal("LR-1-GG-AAPL-2") is OrderStatus.EXPIRED

    run(scenario())


def test_probe_reports_reachability_and_accounts(tmp_path: Any) -> None:
    from live_runner.adapters.ibkr import probe
    from live_runner.core.config import parse_config

    async def scenario() -> tuple[dict, dict]:
        fake = await FakeTws(accounts=("DU123", "DU456")).start()
        try:
            up = await probe(parse_config({"ibkr": {"port": fake.port, "connect_timeout_s": 2}}))
        finally:
            await fake.stop()
        down = await probe(parse_config({"ibkr": {"port": fake.port, "connect_timeout_s": 2}}))
        return up, down

    up, down = run(scenario())
    assert up["ok"] and up["accounts"] == ["DU123", "DU456"] and up["server_version"] == 176
    assert not down["ok"] and "error" in down


# --- faults ------------------------------------------------------------------------------------------

def test_disconnect_before_ack_order_accepted_is_found_not_resent(tmp_path: Any) -> None:
    async def scenario() -> None:
        fake = FakeTws()
        async with rig(tmp_path, fake) as r:
            cid = "LR-1-GG-AAPL-1"
            fake.drop_on_place = {"ack": False, "accept": True}  # TWS took it (and filled it), then the link died
            r.client.submit(req(cid))
            await until(lambda: len(r.fills) == 1, what="the fill found after reconnect")
            assert r.links[:2] == [True, False] and r.client.connected
            assert len(fake.placed(cid)) == 1 and fake.handshakes == 2
            assert r.fills[0].commission == Decimal("0.35") and r.fills[0].qty == 100
            assert OrderStatus.REJECTED not in r.statuses(cid)
            assert r.client.stats["ambiguous_found"] == 1 and r.client.stats["ambiguous_absent"] == 0

    run(scenario())


def test_disconnect_before_ack_order_never_reached_tws_is_rejected_not_resent(tmp_path: Any) -> None:
    async def scenario() -> None:
        fake = FakeTws()
        async with rig(tmp_path, fake) as r:
            cid = "LR-1-GG-AAPL-1"
            fake.drop_on_place = {"ack": False, "accept": False}
            r.client.submit(req(cid, OrderType.LIMIT, limit=9.0))
            assert await r.terminal(cid) is OrderStatus.REJECTED
            [ev] = r.events
            assert "not accepted" in ev.reason and "never re-sent" in ev.reason
            await asyncio.sleep(0.2)
            assert len(fake.placed(cid)) == 1 and fake.orders == [] and r.fills == []
            assert r.client.stats["ambiguous_absent"] == 1

    run(scenario())


def test_disconnect_after_ack_keeps_the_working_order(tmp_path: Any) -> None:
    async def scenario() -> None:
        fake = FakeTws()
        async with rig(tmp_path, fake) as r:
            cid = "LR-1-GG-AAPL-1"
            fake.drop_on_place = {"ack": True, "accept": True}
            r.client.submit(req(cid, OrderType.LIMIT, limit=9.0))
            await until(lambda: fake.handshakes == 2 and r.client.connected and r.client.stats["reconciles"] >= 2)
            assert r.statuses(cid) == [OrderStatus.ACCEPTED]
            fake.fill(cid, price=9.0)
            await until(lambda: len(r.fills) == 1)
            assert r.fills[0].price == 9.0 and len(fake.placed(cid)) == 1

    run(scenario())


def test_gateway_restart_mid_session(tmp_path: Any) -> None:
    async def scenario() -> None:
        fake = FakeTws()
        async with rig(tmp_path, fake) as r:
            cid = "LR-1-GG-AAPL-1"
            r.client.submit(req(cid, OrderType.LIMIT, qty=200, limit=9.0))
            await until(lambda: r.statuses(cid) == [OrderStatus.ACCEPTED])

            async def while_down() -> None:
                await until(lambda: not r.client.connected)
                fake.fill(cid, 120, 9.0)  # fills while the runner cannot hear them
                r.client.submit(req("LR-1-GG-AAPL-2"))  # provably not sent: rejected at once

            await fake.restart(down_s=0.4, while_down=while_down)
            await until(lambda: len(r.fills) == 1, what="fill made while down")
            assert r.links[:3] == [True, False, True]
            [fill] = r.fills
            assert (fill.qty, fill.price, fill.commission) == (120, 9.0, Decimal("0.42"))
            assert r.client.stats["fills_from_reconcile"] == 1
            [ev] = [e for e in r.events if e.client_order_id == "LR-1-GG-AAPL-2"]
            assert ev.status is OrderStatus.REJECTED and ev.reason.startswith(NOT_SENT)
            assert r.fake.placed("LR-1-GG-AAPL-2") == [] and len(fake.placed(cid)) == 1
            await until(lambda: r.client.positions() == {"AAPL": 120})
            fake.fill(cid, 80, 9.0)  # the rest, live on the new connection
            await until(lambda: len(r.fills) == 2)
            assert sum(f.qty for f in r.fills) == 200 and len({f.exec_id for f in r.fills}) == 2
            reconciles = r.client.stats["reconciles"]
            await fake.restart(down_s=0.1)  # the nightly restart again: nothing new to report
            await until(lambda: r.client.stats["reconciles"] > reconciles and r.client.connected)
            assert [m[5] for m in fake.messages(7)][-1] != ""  # executions "since the last seen"
            await asyncio.sleep(0.1)
            assert len(r.fills) == 2 and r.client.stats["duplicate_execs"] >= 2

    run(scenario())


def test_every_message_to_the_broker_passes_the_throttle_in_order(tmp_path: Any) -> None:
    """The rate itself is tested on simulated time (tests/unit/test_ibkr_throttle.py); here, on the
    wire, 100 orders and their 100 cancels all reach the broker, in order, each through the throttle."""
    async def scenario() -> None:
        async with rig(tmp_path) as r:
            start = len(r.fake.received)
            before = r.client._throttle.acquired
            cids = [f"LR-1-GG-AAPL-{i}" for i in range(100)]
            for cid in cids:
                r.client.submit(req(cid, OrderType.LIMIT, qty=1, limit=5.0))
            for cid in cids:
                r.client.cancel(cid)
            await until(lambda: len(r.fake.messages(4)) == 100, timeout=30.0)
            for cid in cids:
                assert await r.terminal(cid) is OrderStatus.CANCELED
            ours = [f for _, _, f in r.fake.received[start:] if f and f[0] in ("3", "4")]
            assert len(ours) == 200 and [f[0] for f in ours] == ["3"] * 100 + ["4"] * 100
            assert r.client._throttle.acquired - before == 200

    run(scenario())


def test_malformed_message_is_counted_and_nothing_is_lost(tmp_path: Any, caplog: Any) -> None:
    async def scenario() -> None:
        fake = FakeTws()
        async with rig(tmp_path, fake) as r:
            fake.send_raw([9999, 1, "junk"])  # an unknown message id
            await until(lambda: r.client.stats["malformed_messages"] == 1)
            fake.corrupt_next_exec = True  # the live execDetails of the next fill cannot be parsed
            r.client.submit(req("LR-1-GG-AAPL-1"))
            await until(lambda: len(r.fills) == 1, what="the fill recovered by reconcile")
            assert r.client.stats["malformed_messages"] == 2
            assert r.fills[0].qty == 100 and r.fills[0].commission == Decimal("0.35")
            assert r.client.connected and r.client.stats["disconnects"] == 0
            await asyncio.sleep(0.2)
            assert len(r.fills) == 1

    with caplog.at_level(logging.ERROR, logger="live_runner.adapters.ibkr"):
        run(scenario())
    assert any("malformed message from the broker" in rec.getMessage() for rec in caplog.records)


def test_order_ids_are_never_reused_across_sessions(tmp_path: Any) -> None:
    async def scenario() -> None:
        async with rig(tmp_path) as r:
            r.client.submit(req("LR-1-GG-AAPL-1"))
            r.client.submit(req("LR-1-GG-AAPL-2"))
            await until(lambda: len(r.fills) == 2)
            first = [int(m[1]) for m in r.fake.messages(3)]
        # The next day: a freshly restarted Gateway that offers nextValidId 1 again.
        async with rig(tmp_path, FakeTws(next_order_id=1)) as r:
            r.client.submit(req("LR-2-GG-AAPL-1"))
            await until(lambda: len(r.fills) == 1)
            [second] = [int(m[1]) for m in r.fake.messages(3)]
        assert second > max(first)

    run(scenario())


def test_recover_finds_the_order_by_order_ref_and_never_sends_it(tmp_path: Any) -> None:
    async def scenario() -> None:
        fake = await FakeTws().start()
        first = Rig(fake, make_client(fake, tmp_path))
        assert await first.client.start()
        request = req("LR-1-GG-AAPL-1", OrderType.LIMIT, qty=100, limit=9.0)
        first.client.submit(request)
        await until(lambda: first.statuses("LR-1-GG-AAPL-1") == [OrderStatus.ACCEPTED])
        await first.client.stop()  # the runner dies
        fake.fill("LR-1-GG-AAPL-1", 30, 9.0)
        r = Rig(fake, make_client(fake, tmp_path))  # the restarted runner
        try:
            assert await r.client.start()
            r.client.recover(request)
            r.client.recover(req("LR-1-GG-AAPL-9"))  # journaled, but TWS never got it
            await until(lambda: len(r.fills) == 1 and OrderStatus.REJECTED in r.statuses("LR-1-GG-AAPL-9"))
            assert r.statuses("LR-1-GG-AAPL-1") == [OrderStatus.ACCEPTED]
            assert r.fills[0].qty == 30 and r.fills[0].commission == Decimal("0.35")
            assert len(fake.placed("LR-1-GG-AAPL-1")) == 1 and fake.placed("LR-1-GG-AAPL-9") == []
            r.client.cancel("LR-1-GG-AAPL-1")  # the recovered order is fully usable
            assert await r.terminal("LR-1-GG-AAPL-1") is OrderStatus.CANCELED
            assert not r.client.resuming
        finally:
            await r.client.stop()
            await fake.stop()

    run(scenario())


# --- the whole chain ------------------------------------------------------------------------------

def test_gap_and_go_round_trip_through_the_chain(tmp_path: Any) -> None:
    """The hand-built gap_and_go session of test_chain_smoke, traded through IB: same trade."""
    from live_runner.core.clock import SimClock
    from live_runner.core.config import parse_config
    from live_runner.persistence.journal import Journal
    from live_runner.live.node import TradingNode
    from live_runner.live.runs import summarize
    from tests.kit.sessions import gapper

    async def scenario() -> dict:
        fake = await FakeTws(market_fill=False).start()  # market orders fill at the next bar's open
        clock = SimClock(0)
        client = make_client(fake, tmp_path)
        client._now = clock.now_ns
        node = TradingNode(parse_config({"active_strategies": ["gap_and_go"]}), Journal("sqlite://"),
                           clock=clock, calendar=calendar(), execution_client=client)
        try:
            assert await client.start()
            node.start()

            def settled() -> bool:
                sent = len(fake.messages(3)) + len(fake.messages(4))
                return (client._outbox.empty() and client.stats["orders_sent"] + client.stats["cancels_sent"] == sent
                        and client.stats["fills_reported"] == len(fake.executions) and not client._pending)

            for bar in gapper().sorted_bars():
                fake.trade_bar(bar.symbol, bar.open, bar.high, bar.low, bar.close, bar.ts)
                await until(settled, what=f"fills of {bar}")
                node.data.on_bar(bar)
                await until(settled, what=f"orders of {bar}")
                await asyncio.sleep(0.02)
            node.stop()
            # entry, stop, target; the stop and target share an OCA group, so the target's fill
            # cancelled the stop at IB: nothing left for the runner to cancel
            assert len(fake.messages(3)) == 3 and len(fake.messages(4)) == 0
            stop, target = (next(o for o in fake.orders if o.order_type == t) for t in ("STP", "LMT"))
            assert stop.oca_group == target.oca_group != "" and stop.oca_type == target.oca_type == 2
            assert stop.status == "Cancelled" and target.status == "Filled" and fake.position("GAPR") == 0
            assert all(len(fake.placed(o.order_ref)) == 1 for o in fake.orders)
            assert node.orders.duplicate_fills == 0 and node.orders.open_orders == {}
            return summarize(node, 0.0)
        finally:
            await client.stop()
            await fake.stop()

    summary = run(scenario())
    [trade] = summary["trades"]
    assert trade["qty"] == 1785 and trade["entry_price"] == 11.25 and trade["exit_price"] == 11.95
    assert trade["entry_time"] == "2024-03-15T13:32:00Z" and trade["exit_reason"] == "target"
    assert trade["commission"] == "12.50"
    assert Decimal(trade["pnl"]) == Decimal("0.70") * 1785 - Decimal("12.50")
    assert summary["final_positions"] == {}


def test_one_sdk_generation_per_environment() -> None:
    """ib_async and ib_insync both install a top-level `eventkit`: never both in one venv."""
    import importlib.util
    import os

    assert compat.LIBRARY in ("ib_async", "ib_insync")
    other = "ib_insync" if compat.LIBRARY == "ib_async" else "ib_async"
    assert importlib.util.find_spec(other) is None, f"{other} installed next to {compat.LIBRARY}"
    assert compat.LIBRARY == (os.environ.get("LIVE_RUNNER_IB_LIBRARY") or compat.LIBRARY)


# --- against a real paper Gateway (off by default) -------------------------------------------------
@pytest.mark.live_account
@pytest.mark.skipif(os.environ.get("TRADING_LIVE_TESTS") != "1",
                    reason="needs a paper IB Gateway/TWS; run with TRADING_LIVE_TESTS=1 "
                           "IBKR_HOST=... IBKR_PORT=4002 IBKR_ACCOUNT=DU...")
def test_paper_gateway_is_reachable_with_the_paper_account() -> None:
    """`check-connections` against a real *paper* Gateway: reachable, and the account is listed.
    Never a live port: 7496/4001 are refused here as they are by `run --mode paper`."""
    from live_runner.adapters.ibkr import probe
    from live_runner.core.config import parse_config

    port = int(os.environ.get("IBKR_PORT", "4002"))
    assert port not in (7496, 4001), "live-trading port: use a paper Gateway (4002) or TWS (7497)"
    cfg = parse_config({"primary_broker": "ibkr", "ibkr": {
        "host": os.environ.get("IBKR_HOST", "127.0.0.1"), "port": port, "client_id": 97}})
    result = asyncio.run(probe(cfg))
    assert result["ok"] is True
    assert os.environ["IBKR_ACCOUNT"] in result["accounts"]
