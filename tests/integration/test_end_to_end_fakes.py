"""The whole chain against the fakes together (issue 5, "Done when"): a paced session from Polygon
(websocket + REST) through the strategies to orders at IB (the fake TWS), with Alpaca configured
as the backup broker and Yahoo as the backup data provider, both standing by while the primaries
are healthy. The real LiveService builds everything from the config.

The session is the hand-built gapper of test_chain_smoke (one gap_and_go trade of 1785 shares,
entry 11.25, target 11.95). The fake TWS fills a market order at the next bar's open, so before
each minute reaches the websocket the same bar is traded at the TWS (`trade_bar`), and the test
waits on conditions (chain caught up, orders and fills settled), never on sleeps.
"""

from __future__ import annotations

import asyncio
import threading
import time
from decimal import Decimal
from pathlib import Path
from typing import Any, Callable

import pytest

from live_runner.core.config import parse_config
from live_runner.live.feeds import build_live_feed
from live_runner.persistence.journal import Journal
from live_runner.live.runs import RunOptions
from live_runner.live.service import LiveService
from tests.integration.test_data_failover import DAY, serve_session
from tests.kit.fake_alpaca import KEY, SECRET, FakeAlpaca
from tests.kit.fake_polygon import FakeMarketClock, FakePolygon
from tests.kit.fake_tws import FakeTws
from tests.kit.fake_yahoo import FakeYahoo
from tests.kit.sessions import et_ns, gapper

pytestmark = pytest.mark.timeout(120)

ALPACA_ENV = {"APCA_API_KEY_ID": KEY, "APCA_API_SECRET_KEY": SECRET}


def wait_until(cond: Callable[[], bool], what: str, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.005)


def test_a_paced_session_polygon_to_strategies_to_ib_with_backups_standing_by(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for k, v in ALPACA_ENV.items():  # the node builds the backup broker from os.environ
        monkeypatch.setenv(k, v)
    s = gapper()
    clock = FakeMarketClock(et_ns(DAY, "09:30"))
    tws = asyncio.run(FakeTws(market_fill=False).start())  # market orders fill at the next bar's open
    alpaca = FakeAlpaca().start()
    journal_url = f"sqlite:///{tmp_path / 'journal.db'}"
    try:
        with FakePolygon(clock=clock) as poly, FakeYahoo(clock, delay_minutes=1) as yahoo:
            today = serve_session(s, poly, yahoo)
            cfg = parse_config({
                "universe": ["GAPR"], "active_strategies": ["gap_and_go"],
                "primary_broker": "ibkr", "backup_broker": "alpaca",
                "ibkr": {"host": "127.0.0.1", "port": tws.port, "client_id": 7, "account": "DU123",
                         "connect_timeout_s": 3.0, "reconnect_initial_s": 0.05, "reconnect_max_s": 0.2,
                         "commission_wait_s": 0.5, "order_id_state": str(tmp_path / "ibkr_ids.json")},
                "alpaca": {"base_url": alpaca.base_url, "stream_url": alpaca.stream_url},
                "primary_data_provider": "polygon", "backup_data_provider": "yahoo",
                # stale only if Polygon is really silent: the test holds a minute while it settles
                "polygon": poly.config(stale_after_s=5.0),
                "yahoo": {"poll_interval_s": 0.1, "timeout_s": 5},
                "data_failover": {"disconnect_grace_s": 2.0, "failback_after_s": 1.0,
                                  "check_interval_s": 0.05},
                "ops": {"port": 0},
            })
            env = {"POLYGON_API_KEY": poly.api_key, **ALPACA_ENV}
            feed = build_live_feed(cfg, env, ["GAPR"], market_now=clock.now_ns, yahoo_session=yahoo.session())
            assert (feed.primary.name, getattr(feed.backup, "name", None)) == ("polygon", "yahoo")
            opts = RunOptions(bars=None, journal_url=journal_url, universe=["GAPR"])
            service = LiveService(cfg, opts, environ=env, data_feed=feed)
            node = service.node
            ib, backup = node.execution.primary, node.execution.backup
            assert type(ib).__name__ == "IbkrExecutionClient"
            assert type(backup).__name__ == "AlpacaExecutionClient"

            def settled() -> bool:
                """Every order the chain made is at the TWS, every cancel too, every TWS execution
                reached the chain (the client's own counters agree)."""
                cancels = sum(1 for o in list(ib._orders.values()) if o.cancel_requested)
                return (len(node.orders.orders) == len(ib._orders) == len(tws.orders)
                        == len(tws.messages(3)) == ib.stats["orders_sent"]
                        and len(tws.messages(4)) == ib.stats["cancels_sent"] == cancels
                        and node.orders.fills == ib.stats["fills_reported"] == len(tws.executions)
                        and ib._outbox.empty() and not ib._pending)

            def bars_before(ts: int) -> int:
                return sum(1 for b in s.bars if b.ts < ts)

            def on_minute(ts: int) -> None:
                """In the fake Polygon's thread, before minute `ts` goes out: the chain has handled
                the previous minute and its orders are at the TWS; then the TWS trades this bar
                and its fills reach the chain, as a live market runs ahead of the minute bar."""
                wait_until(lambda: node.data.bars_processed == bars_before(ts), f"bars before {ts}")
                wait_until(settled, f"orders before {ts}")
                for b in (b for b in today if b.ts == ts):
                    tws.trade_bar(b.symbol, b.open, b.high, b.low, b.close, b.ts)
                wait_until(settled, f"fills of {ts}")

            result: dict[str, Any] = {}
            errors: list[BaseException] = []

            def run() -> None:
                try:
                    result.update(asyncio.run(service.run()))
                except BaseException as exc:  # noqa: BLE001 - reported by the test
                    errors.append(exc)

            runner = threading.Thread(target=run, name="live-service")
            runner.start()
            poly.wait_clients(1)  # brokers connect before the feed starts: both are up by now
            assert ib.connected and backup.connected
            wait_until(lambda: node.data.bars_processed == bars_before(et_ns(DAY, "09:30")), "seeding")
            ready, why = service.readiness()
            assert ready, why
            poly.play(today, 0.05, on_minute=on_minute, from_ts=et_ns(DAY, "09:30")).result(60)
            wait_until(lambda: node.data.bars_processed == len(s.bars) and settled(), "the last minute")
            status = service.status()
            clock.set(et_ns(DAY, "20:00"))  # the day is over: the feed ends, the session closes
            runner.join(60)
            assert not runner.is_alive() and not errors, errors
    finally:
        alpaca.stop()
        asyncio.run(tws.stop())

    # the trade a trader sees: the same as the paper chain's (test_chain_smoke)
    (trade,) = result["trades"]
    assert (trade["symbol"], trade["strategy"], trade["qty"], trade["entry_price"], trade["exit_price"],
            trade["exit_reason"]) == ("GAPR", "gap_and_go", 1785, 11.25, 11.95, "target")
    assert trade["entry_time"] == "2024-03-15T13:32:00Z"
    assert trade["commission"] == "12.50"  # IB's 0.0035/share on each side, to the cent
    assert Decimal(trade["pnl"]) == Decimal("0.70") * 1785 - Decimal("12.50")
    assert result["final_positions"] == {}
    assert result["bars_processed"] == len(s.bars) == 7

    # every order reached the TWS exactly once, by orderRef: entry, stop, target; the stop and the
    # target share an OCA group, so IB canceled the stop when the target filled (no cancel sent)
    cids = set(node.orders.orders)
    assert len(cids) == 3 and {o.order_ref for o in tws.orders} == cids
    assert all(len(tws.placed(cid)) == 1 for cid in cids)
    assert len(tws.messages(3)) == 3 and len(tws.messages(4)) == 0
    assert next(o for o in tws.orders if o.order_type == "STP").status == "Cancelled"
    assert node.orders.duplicate_fills == 0 and node.orders.open_orders == {}
    fills = sorted((o.action, o.order_type, o.filled, o.avg_price) for o in tws.orders if o.filled)
    assert fills == [("BUY", "MKT", 1785, 11.25), ("SELL", "LMT", 1785, 11.95)]

    # the backups stood by: no order reached Alpaca, the data never left Polygon
    assert not alpaca.bodies and not alpaca.posts and not alpaca.orders
    assert feed.events == [] and status["data_feed"]["active"] == "polygon"
    assert not status["data_feed"]["entries_halted"]
    assert status["broker_connected"] is True

    # the journal holds the fills, with IB's execution ids and commissions
    journal = Journal(journal_url)
    try:
        stored = journal.read(kinds=("fill",))
    finally:
        journal.close()
    assert sorted((e["key"], e["payload"]["exec_id"]) for e in stored) == sorted(
        (ex.order.order_ref, ex.exec_id) for ex in tws.executions)
    assert [(e["payload"]["side"], e["payload"]["qty"], e["payload"]["price"], e["payload"]["commission"])
            for e in stored] == [("buy", 1785, 11.25, "6.25"), ("sell", 1785, 11.95, "6.25")]
