"""The real alpaca-py client against a fake Alpaca on 127.0.0.1 (tests/kit/fake_alpaca.py).

Every fault asserts that no order was placed twice (the fake counts POSTs and accepted orders per
client order id) and that the final state is reconciled (what the runner was told matches what the
broker holds). Nothing leaves 127.0.0.1.
"""

from __future__ import annotations

import asyncio
import os
import socket
import time
from decimal import Decimal
from typing import Any, Callable

import pytest

from live_runner.adapters.alpaca import AlpacaExecutionClient
from live_runner.core.config import AlpacaConfig, RiskConfig, parse_config
from live_runner.persistence.journal import Journal
from live_runner.core.models import (
    Bar, Fill, OrderEvent, OrderRequest, OrderRole, OrderStatus, OrderType, Side,
)
from live_runner.live.brokers import broker_risk_rules
from live_runner.live.node import TradingNode
from live_runner.risk.rules import PDT, RiskLimits, RiskView
from live_runner.live.runs import summarize
from tests.kit.fake_alpaca import KEY, SECRET, FakeAlpaca
from tests.kit.sessions import SessionBuilder, et_ns

DAY = "2024-03-15"
REGULAR = et_ns(DAY, "10:00")


# --- harness --------------------------------------------------------------------------------------
@pytest.fixture
def fake() -> Any:
    f = FakeAlpaca().start()
    yield f
    f.stop()


def config(fake: FakeAlpaca, **kw: Any) -> AlpacaConfig:
    base = dict(base_url=fake.base_url, stream_url=fake.stream_url, request_timeout_s=0.5,
                stale_after_s=0.6, lookup_settle_s=0.05, lookup_retry_max_s=0.2,
                reconnect_min_s=0.05, reconnect_max_s=0.2, account_refresh_s=30.0)
    base.update(kw)
    return AlpacaConfig(**base)


class Reports:
    """What the runner would be told."""

    def __init__(self) -> None:
        self.events: list[OrderEvent] = []
        self.fills: list[Fill] = []
        self.alerts: list[tuple[str, str, str]] = []
        self.not_accepted: list[tuple[str, str]] = []

    def statuses(self, cid: str) -> list[OrderStatus]:
        return [e.status for e in self.events if e.client_order_id == cid]

    def filled(self, cid: str) -> int:
        return sum(f.qty for f in self.fills if f.client_order_id == cid)

    def last(self, cid: str) -> OrderEvent:
        return [e for e in self.events if e.client_order_id == cid][-1]


def client_for(fake: FakeAlpaca, rep: Reports, *, failover: bool = False, **kw: Any) -> AlpacaExecutionClient:
    c = AlpacaExecutionClient(config(fake, **kw), KEY, SECRET)
    c.set_handlers(rep.events.append, rep.fills.append)
    c.set_alert_handler(lambda k, s, m: rep.alerts.append((k, s, m)))
    if failover:
        c.set_not_accepted_handler(lambda req, reason, rec: rep.not_accepted.append((req.client_order_id, reason)))
    return c


async def until(pred: Callable[[], bool], timeout: float = 8.0, what: str = "") -> None:
    end = time.monotonic() + timeout
    while not pred():
        if time.monotonic() > end:
            raise AssertionError(f"timed out waiting for {what or pred}")
        await asyncio.sleep(0.01)


def run(coro: Any, timeout: float = 60.0) -> Any:
    return asyncio.run(asyncio.wait_for(coro, timeout))


def market(cid: str, qty: int = 100, side: Side = Side.BUY, sym: str = "AAPL", ts: int = REGULAR) -> OrderRequest:
    return OrderRequest(cid, "s", sym, side, qty, OrderType.MARKET, OrderRole.ENTRY, ts)


def limit(cid: str, px: float, qty: int = 100, side: Side = Side.BUY, sym: str = "AAPL",
          ts: int = REGULAR) -> OrderRequest:
    return OrderRequest(cid, "s", sym, side, qty, OrderType.LIMIT, OrderRole.ENTRY, ts, limit_price=px)


def assert_no_duplicates(fake: FakeAlpaca) -> None:
    assert all(n <= 1 for n in fake.accepted.values()), fake.accepted


def assert_reconciled(fake: FakeAlpaca, c: AlpacaExecutionClient, rep: Reports) -> None:
    """The client's positions, the fills reported and the broker's positions agree."""
    reported: dict[str, int] = {}
    for f in rep.fills:
        reported[f.symbol] = reported.get(f.symbol, 0) + (f.qty if f.side is Side.BUY else -f.qty)
    reported = {s: q for s, q in reported.items() if q}
    assert fake.position_qty() == c.positions() == reported
    for cid in fake.by_cid:
        o = fake.order(cid)
        assert o is not None and rep.filled(cid) == int(o["filled_qty"]), cid
    assert len({f.exec_id for f in rep.fills}) == len(rep.fills)


# --- SDK retry, timeouts, ambiguous outcomes ------------------------------------------------------
def test_sdk_retry_disabled_a_504_is_one_post_then_a_lookup(fake: FakeAlpaca) -> None:
    fake.ws_mute_connections = 99    # the lookup alone must decide
    rep = Reports()

    async def scenario() -> float:
        c = client_for(fake, rep)
        assert c._rest._retry == 0 and c._rest._retry_codes == []
        await c.start()
        fake.post_faults.extend(["504_drop"] * 5)   # the SDK would POST 4 times over 9 s
        c.submit(market("R1"))
        await until(lambda: rep.statuses("R1"), what="a verdict")
        await c.aclose()

    run(scenario())
    assert fake.posts["R1"] == 1 and fake.lookups["R1"] == 2 and fake.accepted["R1"] == 0
    assert rep.statuses("R1") == [OrderStatus.REJECTED]
    assert "not found by client id" in rep.last("R1").reason


@pytest.mark.parametrize("fault", ["504_accept", "hang_accept", "drop_accept", "500_accept"])
def test_ambiguous_submit_of_an_accepted_order_is_found_not_resent(fake: FakeAlpaca, fault: str) -> None:
    fake.ws_mute_connections = 99
    fake.set_price("AAPL", 10.0)
    rep = Reports()

    async def scenario() -> AlpacaExecutionClient:
        c = client_for(fake, rep, failover=True)
        await c.start()
        fake.post_faults.append(fault)
        c.submit(market("A1"))
        await until(lambda: rep.filled("A1") == 100, what="the fill")
        await c.aclose()
        return c

    c = run(scenario())
    assert fake.posts["A1"] == 1 and fake.lookups["A1"] >= 1
    assert rep.statuses("A1") == [OrderStatus.ACCEPTED] and rep.not_accepted == []
    assert_no_duplicates(fake)
    assert_reconciled(fake, c, rep)


@pytest.mark.parametrize("fault", ["504_drop", "hang_drop", "drop_drop"])
def test_ambiguous_submit_of_a_lost_order_is_handed_off_not_resent(fake: FakeAlpaca, fault: str) -> None:
    rep = Reports()

    async def scenario() -> None:
        c = client_for(fake, rep, failover=True)
        await c.start()
        fake.post_faults.append(fault)
        c.submit(market("L1"))
        await until(lambda: rep.not_accepted, what="the hand-off")
        await c.aclose()

    run(scenario())
    assert fake.posts["L1"] == 1 and fake.accepted["L1"] == 0 and fake.lookups["L1"] == 2
    assert [cid for cid, _ in rep.not_accepted] == ["L1"] and rep.events == []


def test_the_loop_keeps_turning_while_a_request_hangs(fake: FakeAlpaca) -> None:
    rep = Reports()

    async def scenario() -> int:
        c = client_for(fake, rep, request_timeout_s=1.5, lookup_settle_s=0.5)
        await c.start()
        fake.post_faults.append("hang_accept")
        c.submit(limit("H1", 5.0))
        ticks = 0
        t_end = time.monotonic() + 1.0
        while time.monotonic() < t_end:      # the POST hangs all this time
            await asyncio.sleep(0.01)
            ticks += 1
        await until(lambda: rep.statuses("H1"), what="the lookup")
        await c.aclose()
        return ticks

    assert run(scenario()) > 50
    assert rep.statuses("H1") == [OrderStatus.ACCEPTED] and fake.posts["H1"] == 1


def test_422_duplicate_client_id_is_adopted_not_rejected(fake: FakeAlpaca) -> None:
    """An earlier attempt was accepted but its answer lost (what the SDK's own retry produces)."""
    fake.set_price("AAPL", 10.0)
    with fake.lock:
        fake._new_order({"client_order_id": "D1", "symbol": "AAPL", "qty": "100", "side": "buy",
                         "type": "limit", "time_in_force": "day", "limit_price": "9.5"})
    rep = Reports()

    async def scenario() -> AlpacaExecutionClient:
        c = client_for(fake, rep, failover=True)
        await c.start()
        c.submit(limit("D1", 9.5))
        await until(lambda: rep.statuses("D1"), what="adoption")
        fake.set_price("AAPL", 9.4)
        await until(lambda: rep.filled("D1") == 100, what="the fill")
        await c.aclose()
        return c

    c = run(scenario())
    assert fake.posts["D1"] == 1 and fake.accepted["D1"] == 1 and fake.lookups["D1"] >= 1
    assert rep.statuses("D1") == [OrderStatus.ACCEPTED] and rep.not_accepted == []
    assert_reconciled(fake, c, rep)


def test_429_storm_is_looked_up_then_sent_again_with_the_same_id(fake: FakeAlpaca) -> None:
    fake.set_price("AAPL", 10.0)
    rep = Reports()

    async def scenario() -> AlpacaExecutionClient:
        c = client_for(fake, rep)
        await c.start()
        fake.post_faults.extend(["429"] * 3)
        c.submit(market("S1"))
        await until(lambda: rep.filled("S1") == 100, what="the fill")
        await c.aclose()
        return c

    c = run(scenario())
    assert fake.posts["S1"] == 4 and fake.accepted["S1"] == 1 and fake.lookups["S1"] == 3
    assert c.counters["rate_limited"] == 3
    assert_no_duplicates(fake)
    assert_reconciled(fake, c, rep)


def test_429_storm_beyond_the_limit_is_not_accepted(fake: FakeAlpaca) -> None:
    rep = Reports()

    async def scenario() -> None:
        c = client_for(fake, rep, rate_limit_resends=2)
        await c.start()
        fake.post_faults.extend(["429"] * 10)
        c.submit(market("S2"))
        await until(lambda: rep.statuses("S2"), what="a verdict")
        await c.aclose()

    run(scenario())
    assert fake.posts["S2"] == 3 and fake.accepted["S2"] == 0
    assert rep.statuses("S2") == [OrderStatus.REJECTED] and "429" in rep.last("S2").reason


# --- the trade-updates stream ------------------------------------------------------------------
def test_mute_websocket_is_detected_and_nothing_is_lost(fake: FakeAlpaca) -> None:
    """The first connection authorizes and listens but never delivers an update."""
    fake.ws_mute_connections = 1
    rep = Reports()

    async def scenario() -> AlpacaExecutionClient:
        c = client_for(fake, rep)
        await c.start()
        c.submit(limit("M1", 10.0))            # rests at the broker
        await until(lambda: rep.statuses("M1"), what="acceptance (from the POST answer)")
        fake.fill("M1", 100, 10.0)             # the update is lost on the mute connection
        await until(lambda: rep.filled("M1") == 100, what="the fill, read over REST")
        await until(lambda: fake.ws_connections == 2 and c._stream.listening, what="the reconnect")
        updates = c.counters["updates"]
        c.submit(limit("M2", 10.0, side=Side.SELL))
        await until(lambda: rep.statuses("M2"), what="acceptance")
        fake.fill("M2", 100, 10.5)
        await until(lambda: rep.filled("M2") == 100, what="the second fill")
        assert c.counters["updates"] > updates      # ... delivered by the new connection
        await c.aclose()
        return c

    c = run(scenario())
    assert c.counters["stream_stale"] == 1 and fake.updates_lost >= 2
    assert any(k == "alpaca_stream_stale" for k, _, _ in rep.alerts)
    assert fake.posts == {"M1": 1, "M2": 1}
    assert_reconciled(fake, c, rep)


def test_malformed_messages_are_counted_and_nothing_is_lost(fake: FakeAlpaca) -> None:
    fake.set_price("AAPL", 10.0)
    rep = Reports()

    async def scenario() -> AlpacaExecutionClient:
        c = client_for(fake, rep)
        await c.start()
        fake.send_garbage(b"\x00\x01 not json")
        fake.send_garbage(b"[1, 2, 3]")
        fake.ws_corrupt_next = 2          # 'new' and 'fill' of the next order arrive broken
        c.submit(market("B1"))
        await until(lambda: rep.filled("B1") == 100, what="the fill, recovered")
        await c.aclose()
        return c

    c = run(scenario())
    assert c.counters["malformed"] == 4
    assert any(k == "alpaca_malformed" for k, _, _ in rep.alerts)
    assert rep.statuses("B1") == [OrderStatus.ACCEPTED] and fake.posts["B1"] == 1
    assert_reconciled(fake, c, rep)


def test_duplicated_trade_updates_count_once(fake: FakeAlpaca) -> None:
    fake.ws_duplicate = True
    rep = Reports()

    async def scenario() -> AlpacaExecutionClient:
        c = client_for(fake, rep)
        await c.start()
        c.submit(limit("U1", 10.0, qty=300))
        await until(lambda: rep.statuses("U1"), what="acceptance")
        fake.fill("U1", 100, 10.0)
        fake.fill("U1", 150, 9.9)
        fake.fill("U1", 50, 9.8)
        await until(lambda: fake.outbox_empty() and c.counters["updates"] >= 8, what="all updates")
        await asyncio.sleep(0.1)
        await c.aclose()
        return c

    c = run(scenario())
    assert [f.qty for f in rep.fills] == [100, 150, 50]
    assert [f.price for f in rep.fills] == [10.0, 9.9, 9.8]
    assert rep.statuses("U1") == [OrderStatus.ACCEPTED]
    assert_reconciled(fake, c, rep)


def test_partial_fill_then_cancel(fake: FakeAlpaca) -> None:
    rep = Reports()

    async def scenario() -> AlpacaExecutionClient:
        c = client_for(fake, rep)
        await c.start()
        c.submit(limit("P1", 10.0, qty=100))
        await until(lambda: rep.statuses("P1"), what="acceptance")
        fake.fill("P1", 40, 10.0)
        await until(lambda: rep.filled("P1") == 40, what="the partial fill")
        c.cancel("P1")
        await until(lambda: OrderStatus.CANCELED in rep.statuses("P1"), what="the cancel")
        await c.aclose()
        return c

    c = run(scenario())
    assert rep.statuses("P1") == [OrderStatus.ACCEPTED, OrderStatus.CANCELED]
    assert fake.order("P1")["status"] == "canceled" and fake.posts["P1"] == 1
    assert c.positions() == {"AAPL": 40}
    assert_reconciled(fake, c, rep)


def test_a_cancel_asked_twice_in_a_row_sends_one_delete(fake: FakeAlpaca) -> None:
    """cancel_all then the flatten's own cancel, in one loop turn: Alpaca gets one DELETE."""
    rep = Reports()

    async def scenario() -> None:
        c = client_for(fake, rep)
        await c.start()
        c.submit(limit("D1", 10.0, qty=100))
        await until(lambda: rep.statuses("D1"), what="acceptance")
        c.cancel("D1")
        c.cancel("D1")
        await until(lambda: OrderStatus.CANCELED in rep.statuses("D1"), what="the cancel")
        await c.aclose()

    run(scenario())
    deletes = [r for r in fake.requests if r[0] == "DELETE" and r[1].endswith(fake.order("D1")["id"])]
    assert len(deletes) == 1, fake.requests


def test_cancel_while_the_outcome_is_unknown(fake: FakeAlpaca) -> None:
    """A cancel during an ambiguous submit waits for the lookup, then cancels at the broker; a
    cancel before anything was sent just never sends it."""
    fake.ws_mute_connections = 99
    rep = Reports()

    async def scenario() -> None:
        c = client_for(fake, rep, failover=True)
        await c.start()
        fake.post_faults.append("hang_accept")
        c.submit(limit("C1", 5.0))
        await until(lambda: fake.posts["C1"] == 1, what="the POST")
        c.cancel("C1")                    # the POST is hanging: outcome unknown
        c.submit(limit("C2", 5.0))
        c.cancel("C2")                    # not sent yet
        await until(lambda: OrderStatus.CANCELED in rep.statuses("C1"), what="the cancel")
        await until(lambda: OrderStatus.CANCELED in rep.statuses("C2"), what="the cancel")
        await c.aclose()

    run(scenario())
    assert fake.order("C1")["status"] == "canceled" and fake.posts["C1"] == 1
    assert rep.statuses("C1") == [OrderStatus.ACCEPTED, OrderStatus.CANCELED]
    assert fake.posts["C2"] == 0 and fake.order("C2") is None
    assert rep.not_accepted == []


@pytest.mark.parametrize("how", ["sync", "async"])
def test_rejected_order(fake: FakeAlpaca, how: str) -> None:
    rep = Reports()

    async def scenario() -> None:
        c = client_for(fake, rep, failover=True)
        await c.start()
        fake.post_faults.append("reject:insufficient buying power" if how == "sync" else "reject_async")
        c.submit(market("J1"))
        await until(lambda: OrderStatus.REJECTED in rep.statuses("J1"), what="the rejection")
        await c.aclose()

    run(scenario())
    assert fake.posts["J1"] == 1 and rep.not_accepted == []     # a rejection never fails over
    if how == "sync":
        assert "insufficient buying power" in rep.last("J1").reason
    assert rep.fills == []


def test_stream_reconnects_after_the_server_drops_it(fake: FakeAlpaca) -> None:
    fake.set_price("AAPL", 10.0)
    rep = Reports()

    async def scenario() -> AlpacaExecutionClient:
        c = client_for(fake, rep)
        await c.start()
        for ws in list(fake._listeners):
            fake._loop.call_soon_threadsafe(lambda w=ws: asyncio.ensure_future(w.close()))
        await until(lambda: fake.ws_connections == 2 and c._stream.listening, what="the reconnect")
        c.submit(market("W1"))
        await until(lambda: rep.filled("W1") == 100, what="the fill")
        await c.aclose()
        return c

    c = run(scenario())
    assert c.counters["stream_connects"] == 2
    assert_reconciled(fake, c, rep)


def test_recover_looks_up_and_never_sends(fake: FakeAlpaca) -> None:
    """After a restart the journal's orders are looked up by client id: one the broker holds is
    reported as it stands (fills included); one it never got is handed off, not sent."""
    fake.set_price("AAPL", 10.0)
    with fake.lock:
        o = fake._new_order({"client_order_id": "R1", "symbol": "AAPL", "qty": "50", "side": "buy",
                             "type": "market", "time_in_force": "day"})[1]
        fake._after_accept(o)
    rep = Reports()

    async def scenario() -> AlpacaExecutionClient:
        c = client_for(fake, rep, failover=True)
        await c.start()
        c.recover(market("R1", qty=50))
        c.recover(market("R2"))
        await until(lambda: rep.filled("R1") == 50 and rep.not_accepted, what="both verdicts")
        await c.aclose()
        return c

    c = run(scenario())
    assert fake.posts == {} and fake.lookups["R1"] == 1 and fake.lookups["R2"] == 2
    assert rep.statuses("R1") == [OrderStatus.ACCEPTED]
    assert [cid for cid, _ in rep.not_accepted] == ["R2"]
    # The fill was already in the positions read at start: not counted twice.
    assert c.positions() == fake.position_qty() == {"AAPL": 50}


def test_sdk_internals_we_rely_on_exist() -> None:
    """alpaca-py 0.44: the stream is driven by `_run_forever` (run() would nest asyncio.run), and
    the REST retry lives in `_retry`/`_retry_codes`. Fail here, not in production, if they move."""
    from alpaca.common.rest import RESTClient
    from alpaca.trading.stream import TradingStream

    for name in ("_run_forever", "_consume", "_start_ws", "_auth", "_dispatch", "stop_ws", "close"):
        assert callable(getattr(TradingStream, name, None)), name
    stream = TradingStream("k", "s", url_override="ws://127.0.0.1:9/stream")
    for name in ("_reconnect_min_backoff", "_reconnect_max_backoff", "_ws", "_running",
                 "_stop_stream_queue", "_data_received", "_trade_updates_handler"):
        assert hasattr(stream, name), name
    import inspect
    assert "_retry_codes" in inspect.getsource(RESTClient._one_request)
    assert "self._retry" in inspect.getsource(RESTClient._request)


# --- order rules and account -----------------------------------------------------------------
def test_extended_hours_only_day_limit_with_extended_hours(fake: FakeAlpaca) -> None:
    pre, post, night = et_ns(DAY, "08:00"), et_ns(DAY, "17:00"), et_ns(DAY, "21:00")
    rep = Reports()

    async def scenario() -> None:
        c = client_for(fake, rep)
        await c.start()
        c.submit(limit("X1", 9.0, ts=pre))
        c.submit(market("X2", ts=pre))
        c.submit(OrderRequest("X3", "s", "AAPL", Side.SELL, 10, OrderType.STOP, OrderRole.STOP,
                              post, stop_price=8.0))
        c.submit(limit("X4", 9.0, ts=night))
        c.submit(limit("X5", 9.0, ts=REGULAR))
        await until(lambda: all(rep.statuses(x) for x in ("X1", "X2", "X3", "X4", "X5")))
        await c.aclose()

    run(scenario())
    bodies = {b["client_order_id"]: b for b in fake.bodies}
    assert set(bodies) == {"X1", "X5"}                       # the others were never sent
    assert bodies["X1"]["extended_hours"] is True and bodies["X1"]["time_in_force"] == "day"
    assert bodies["X1"]["type"] == "limit"
    assert "extended_hours" not in bodies["X5"] and bodies["X5"]["time_in_force"] == "day"
    for cid in ("X2", "X3", "X4"):
        assert rep.statuses(cid) == [OrderStatus.REJECTED]
    assert "only DAY LIMIT" in rep.last("X2").reason and "closed" in rep.last("X4").reason
    assert rep.statuses("X1") == [OrderStatus.ACCEPTED]


def _view() -> RiskView:
    from live_runner.core.models import TradingState
    return RiskView(TradingState.ACTIVE, False, 20_000.0, 20_000.0, 20_000.0, 0.0, 0, 0.0, 0, 0, 0.0,
                    False, 10.0, REGULAR, 0, 2**62, 2**62, 0)


def test_pdt_state_from_the_account_feeds_the_risk_rule(fake: FakeAlpaca) -> None:
    fake.account.update(equity="20000", daytrade_count=3, pattern_day_trader=False)
    rep = Reports()
    lim = RiskLimits(5, 0.2, 0.05, 60, 0.1)

    async def scenario() -> AlpacaExecutionClient:
        c = client_for(fake, rep)
        await c.start()
        await c.aclose()
        return c

    c = run(scenario())
    assert c.pdt_state() is not None and c.pdt_state().daytrade_count == 3
    [rule] = broker_risk_rules(RiskConfig(), c)
    assert rule(market("E"), _view(), lim) == PDT
    assert rule(market("X", side=Side.SELL), _view(), lim) is None     # exits always pass
    [lenient] = broker_risk_rules(RiskConfig(pdt_max_day_trades=4), c)
    assert lenient(market("E"), _view(), lim) is None
    assert broker_risk_rules(RiskConfig(pdt_check=False), c) == []
    fake.account.update(equity="30000")
    c2 = client_for(fake, Reports())

    async def again() -> None:
        await c2.start(wait_stream=False)
        await c2.aclose()

    run(again())
    assert broker_risk_rules(RiskConfig(), c2)[0](market("E"), _view(), lim) is None


def test_day_trades_counted_by_the_broker_reach_the_rule(fake: FakeAlpaca) -> None:
    """Round trips at the fake raise its daytrade_count; the client re-reads it after sells."""
    fake.account.update(equity="20000")
    fake.set_price("AAPL", 10.0)
    rep = Reports()

    async def scenario() -> AlpacaExecutionClient:
        c = client_for(fake, rep)
        await c.start()
        for i in range(3):
            c.submit(market(f"B{i}", qty=10))
            await until(lambda i=i: rep.filled(f"B{i}") == 10)
            c.submit(market(f"S{i}", qty=10, side=Side.SELL))
            await until(lambda i=i: rep.filled(f"S{i}") == 10)
        await until(lambda: c.pdt_state().daytrade_count == 3, what="the PDT count")
        await c.aclose()
        return c

    c = run(scenario())
    assert broker_risk_rules(RiskConfig(), c)[0](market("E"), _view(), RiskLimits(5, 0.2, 0.05, 60, 0.1)) == PDT


def test_keys_only_from_the_environment(fake: FakeAlpaca) -> None:
    from live_runner.core.config import ConfigError

    with pytest.raises(ConfigError, match="APCA_API_KEY_ID"):
        AlpacaExecutionClient.from_config(config(fake), environ={})
    c = AlpacaExecutionClient.from_config(
        parse_config({"alpaca": {"base_url": fake.base_url, "stream_url": fake.stream_url}}),
        environ={"APCA_API_KEY_ID": KEY, "APCA_API_SECRET_KEY": SECRET})
    out = run(c.check())
    assert out["reachable"] and out["account"] == "PA1FAKE0001"
    c.close()


def test_config_refuses_endpoints_that_contradict_paper() -> None:
    from live_runner.core.config import ConfigError

    with pytest.raises(ConfigError, match="live endpoint"):
        parse_config({"alpaca": {"paper": True, "base_url": "https://api.alpaca.markets"}})
    with pytest.raises(ConfigError, match="paper endpoint"):
        parse_config({"alpaca": {"paper": False, "stream_url": "wss://paper-api.alpaca.markets/stream"}})
    with pytest.raises(ConfigError, match="ws"):
        parse_config({"alpaca": {"stream_url": "http://127.0.0.1:1/stream"}})


# --- the whole chain ---------------------------------------------------------------------------
def gapper() -> SessionBuilder:
    s = SessionBuilder(day=DAY)
    s.prev_close("GAPR", 10.00)
    s.bar("GAPR", "08:00", 10.5, 10.8, 10.4, 10.7, 30_000)
    s.bar("GAPR", "09:00", 10.7, 11.0, 10.6, 10.9, 30_000)
    s.bar("GAPR", "09:30", 10.9, 11.0, 10.8, 10.95, 50_000)
    s.bar("GAPR", "09:31", 10.95, 11.3, 10.9, 11.2, 60_000)   # signal: market buy at 11.20
    s.bar("GAPR", "09:32", 11.25, 11.4, 11.1, 11.35, 40_000)  # stop 10.90, target 11.80 rest
    s.bar("GAPR", "09:33", 11.4, 12.0, 11.35, 11.9, 40_000)   # the target fills
    s.bar("GAPR", "09:34", 11.9, 11.95, 11.8, 11.85, 40_000)
    return s


async def settle(*pairs: tuple[FakeAlpaca, AlpacaExecutionClient]) -> None:
    def quiet() -> bool:
        return all(not c.busy and f.outbox_empty() and c.counters["updates"] >= f.updates_sent
                   for f, c in pairs)
    await until(quiet, what="quiet brokers")
    await asyncio.sleep(0.02)
    await until(quiet, what="quiet brokers")


async def trade_session(node: TradingNode, bars: list[Bar], *pairs: tuple[FakeAlpaca, AlpacaExecutionClient]) -> None:
    """Each bar: the fake market walks through it (open, low, high, close; resting orders fill),
    then the runner sees the bar; orders it sends fill at the bar's close (the current price)."""
    for b in bars:
        for f, _ in pairs:
            for px in (b.open, b.low, b.high, b.close):
                f.set_price(b.symbol, px)
        await settle(*pairs)
        node.data.on_bar(b)
        await settle(*pairs)


def chain_node(client: AlpacaExecutionClient) -> TradingNode:
    cfg = parse_config({"active_strategies": ["gap_and_go"], "log_dir": None})
    return TradingNode(cfg, Journal("sqlite://"), execution_client=client)  # wires the PDT rule


def test_whole_chain_round_trip_through_the_fake(fake: FakeAlpaca) -> None:
    rep = Reports()

    async def scenario() -> tuple[TradingNode, AlpacaExecutionClient]:
        c = AlpacaExecutionClient(config(fake), KEY, SECRET)
        node = chain_node(c)
        c.now_ns = fake.clock = node.clock.now_ns
        await c.start()
        node.start()
        await trade_session(node, gapper().sorted_bars(), (fake, c))
        node.stop()
        await settle((fake, c))
        await c.aclose()
        return node, c

    node, c = run(scenario())
    summary = summarize(node, 0.0)
    [trade] = summary["trades"]
    assert trade["qty"] == 1785 and trade["exit_reason"] == "target"
    assert trade["entry_price"] == 11.2 and trade["exit_price"] == 11.8
    assert Decimal(trade["pnl"]) == Decimal("0.60") * 1785
    assert trade["entry_time"] == "2024-03-15T13:32:00Z"             # the broker's (sim) time
    assert len(fake.posts) == 2 and set(fake.posts.values()) == {1}  # entry, ONE oco exit
    assert_no_duplicates(fake)
    assert fake.book.refused == [] and fake.book.violations == []
    stop = [o for o in fake.orders.values() if o["type"] == "stop"][0]
    assert stop["status"] == "canceled"                              # OCO: canceled by the target
    assert fake.position_qty() == {} and c.positions() == {} and node.execution.positions() == {}
    assert summary["final_positions"] == {} and node.orders.duplicate_fills == 0
    assert node.risk.state.value == "active" and node.orders.open_orders == {}


def _dead_port() -> int:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def test_failover_chain_primary_refuses_backup_alpaca_trades(fake: FakeAlpaca) -> None:
    """The primary (up at start) then refuses connections: the entry is refused before anything
    is sent, so it goes to the backup Alpaca, and so do its exits (the shares are there). No order
    ever reaches two brokers."""
    primary_fake = FakeAlpaca().start()

    async def scenario() -> tuple[TradingNode, AlpacaExecutionClient, AlpacaExecutionClient]:
        primary = AlpacaExecutionClient(config(primary_fake), KEY, SECRET, name="alpaca-primary")
        backup = AlpacaExecutionClient(config(fake), KEY, SECRET, name="alpaca-backup")
        node = chain_node(primary)
        node.execution.attach_backup(backup)
        primary.now_ns = backup.now_ns = fake.clock = node.clock.now_ns
        await asyncio.gather(primary.start(), backup.start())
        primary_fake.down()              # connection refused from now on
        node.start()
        await trade_session(node, gapper().sorted_bars(), (fake, backup))
        node.stop()
        await settle((fake, backup))
        await asyncio.gather(primary.aclose(), backup.aclose())
        return node, primary, backup

    try:
        node, primary, backup = run(scenario())
    finally:
        primary_fake.stop()
    [trade] = summarize(node, 0.0)["trades"]
    assert trade["exit_reason"] == "target" and trade["qty"] == 1785
    assert primary_fake.posts == {}                       # nothing reached the primary
    assert list(primary.posts.values()) == [1]            # the entry, refused at connect
    assert len(fake.posts) == 2 and set(fake.posts.values()) == {1}  # entry, ONE oco exit
    assert set(primary.posts).issubset(fake.posts)
    assert_no_duplicates(fake)
    assert node.execution.failovers == 1
    assert node.execution.positions_by_broker() == {"primary": {}, "backup": {}}
    status = node.execution.status()
    assert status["brokers"]["backup"]["active"] and not status["brokers"]["primary"]["available"]
    assert node.risk.state.value == "active"


def test_failover_after_an_ambiguous_submit_only_once_the_primary_answers_not_found() -> None:
    """504 at the primary, whose lookups then fail (unreachable) before it answers 'not found':
    only then does the order go to the backup. And the same 504 for an order the primary did
    accept never reaches the backup."""
    primary_fake, backup_fake = FakeAlpaca().start(), FakeAlpaca().start()
    for f in (primary_fake, backup_fake):
        f.ws_mute_connections = 99
        f.set_price("AAPL", 10.0)
    events: list[OrderEvent] = []
    fills: list[Fill] = []

    async def scenario() -> tuple[int, int]:
        from live_runner.execution.engine import ExecutionEngine

        p = AlpacaExecutionClient(config(primary_fake), KEY, SECRET, name="p")
        b = AlpacaExecutionClient(config(backup_fake), KEY, SECRET, name="b")
        eng = ExecutionEngine(p, b)
        eng.connect(events.append, fills.append)
        await asyncio.gather(p.start(), b.start())
        primary_fake.post_faults.extend(["504_drop", "504_accept"])
        primary_fake.lookup_faults.extend(["503", "drop", "hang"])
        eng.submit(market("F1"))
        await until(lambda: backup_fake.posts["F1"] == 1, what="the failover")
        looked = primary_fake.lookups["F1"]
        eng.submit(market("F2"))
        await until(lambda: sum(f.qty for f in fills if f.client_order_id == "F2") == 100)
        await until(lambda: sum(f.qty for f in fills if f.client_order_id == "F1") == 100)
        await asyncio.gather(p.aclose(), b.aclose())
        return looked, eng.failovers

    try:
        looked, failovers = run(scenario())
    finally:
        primary_fake.stop()
        backup_fake.stop()
    assert looked == 5                   # 3 failed lookups, then 'not found' twice
    assert primary_fake.accepted == {"F2": 1} and backup_fake.accepted == {"F1": 1}
    assert primary_fake.posts == {"F1": 1, "F2": 1} and backup_fake.posts == {"F1": 1}
    assert failovers == 1


# --- against a real paper account (off by default) --------------------------------------------
live_account = pytest.mark.skipif(
    os.environ.get("TRADING_LIVE_TESTS") != "1",
    reason="needs APCA paper keys; run with TRADING_LIVE_TESTS=1")


@pytest.mark.live_account
@live_account
def test_paper_account_submit_lookup_cancel() -> None:
    """A far-from-market DAY limit buy of one share at the paper account: accepted, found by
    client id, canceled. Needs APCA_API_KEY_ID / APCA_API_SECRET_KEY of a *paper* account."""
    rep = Reports()
    cfg = AlpacaConfig(paper=True)
    c = AlpacaExecutionClient.from_config(cfg)
    c.set_handlers(rep.events.append, rep.fills.append)
    cid = f"LRTEST-{int(time.time())}"

    if c._phase(time.time_ns()) == "closed":
        pytest.skip("no US equities session (regular or extended) right now")

    async def scenario() -> None:
        await c.start()
        assert c.pdt_state() is not None
        c.submit(OrderRequest(cid, "test", "SPY", Side.BUY, 1, OrderType.LIMIT, OrderRole.MANUAL,
                              time.time_ns(), limit_price=1.00))
        await until(lambda: rep.statuses(cid), timeout=20)
        c.cancel(cid)
        await until(lambda: rep.last(cid).status in (OrderStatus.CANCELED, OrderStatus.REJECTED), timeout=20)
        await c.aclose()

    run(scenario())
    assert rep.fills == [] and c.posts[cid] == 1
