"""GET /metrics content: what RunnerMetrics reads from a LiveService's state at scrape time.

The service is real (config, journal, node, health monitor); bars go straight into
DataManager.on_bar, as the service's feed would hand them, and the text is parsed back with
prometheus_client's own parser. The last test runs `promtool check metrics` on it.
"""

from __future__ import annotations

import asyncio
import math
import socket
import time
from pathlib import Path
from typing import Any

import pytest

from live_runner.core.config import parse_config
from live_runner.live.health import HealthMonitor
from live_runner.core.latency import LatencyHistogram
from live_runner.core.models import Bar
from live_runner.live.runs import RunOptions
from live_runner.live.service import LiveService
from tests.kit.metrics import Scrape, promtool_check
from tests.kit.sessions import SessionBuilder
from tests.kit.sessions import gapper as kit_gapper, et_ns

DAY, NEXT_DAY = "2024-03-15", "2024-03-18"


def gapper() -> SessionBuilder:
    """GAPR breaks out at 09:31 (signal), the entry fills at 09:32, the target at 09:33."""
    return kit_gapper(day=DAY)


def make_service(tmp_path: Path, environ: dict[str, str] | None = None, **config: Any) -> LiveService:
    bars = tmp_path / "bars.csv"
    bars.write_text("symbol,timestamp,open,high,low,close,volume\n")
    cfg = parse_config({"active_strategies": ["gap_and_go"], **config})
    svc = LiveService(cfg, RunOptions(bars=bars, journal_url="sqlite://"), environ=environ or {})
    svc.node.start()
    return svc


def feed(svc: LiveService, bars: list[Bar]) -> None:
    for bar in bars:
        svc.node.data.on_bar(bar)


def scrape(svc: LiveService) -> Scrape:
    return Scrape(svc.metrics_text().decode())


# --- the latency histogram ----------------------------------------------------------------------
def test_latency_histogram_buckets_are_le_and_cumulative() -> None:
    h = LatencyHistogram((10_000, 50_000))
    for ns in (1, 10_000, 10_001, 50_000, 50_001, 10**9):
        h.record(ns)
    assert h.counts == [2, 2, 2]
    assert h.cumulative() == [(1e-05, 2), (5e-05, 4), (math.inf, 6)]
    assert h.sum_ns == 1 + 10_000 + 10_001 + 50_000 + 50_001 + 10**9 and h.count == 6
    assert h.quantile(0.5) == 5e-05 and h.quantile(0.34) == 5e-05 and h.quantile(0.33) == 1e-05
    assert LatencyHistogram().quantile(0.5) is None
    with pytest.raises(ValueError):
        LatencyHistogram((0, 5))


# --- trading ------------------------------------------------------------------------------------
def test_round_trip_shows_in_trades_orders_durations_and_the_account(tmp_path: Path) -> None:
    svc = make_service(tmp_path)
    feed(svc, gapper().sorted_bars())
    m = scrape(svc)
    st = svc.status()
    # Entry filled; the OCO pair: target filled, stop canceled.
    assert m.series("trading_trades_total") == {
        frozenset({"strategy": "gap_and_go", "side": "buy", "status": "filled"}.items()): 1,
        frozenset({"strategy": "gap_and_go", "side": "sell", "status": "filled"}.items()): 1,
        frozenset({"strategy": "gap_and_go", "side": "sell", "status": "canceled"}.items()): 1,
    }
    assert m.by("trading_orders_total", "status") == {
        "submitted": 3, "filled": 2, "canceled": 1, "rejected": 0, "expired": 0}
    assert set(m.by("trading_open_orders", "status").values()) == {0}
    assert m("trading_fills_total") == 2
    [trade] = svc.node.performance.trades
    assert (trade.exit_ts - trade.entry_ts) / 1e9 == 60
    assert m("trading_trade_duration_seconds_count", strategy="gap_and_go") == 1
    assert m("trading_trade_duration_seconds_sum", strategy="gap_and_go") == 60
    assert m("trading_trade_duration_seconds_bucket", strategy="gap_and_go", le="30.0") == 0
    assert m("trading_trade_duration_seconds_bucket", strategy="gap_and_go", le="60.0") == 1
    # The account, as /status shows it.
    assert m("trading_account_equity_dollars") == float(st["equity"]) == 100_000 + float(trade.pnl)
    assert m("trading_positions_count") == len(st["positions"]) == 0
    assert m.types["trading_positions_count"] == "unknown"  # untyped: see live_runner.ops.metrics
    assert round(m("trading_daily_pnl_dollars"), 2) == st["daily_pnl"] == float(trade.pnl)
    assert m("trading_realized_pnl_dollars") == float(st["realized_pnl"])
    assert m("trading_account_cash_dollars") == float(st["cash"])
    # One signal bar caused an order; the exits placed by the entry fill are not signal orders.
    assert m("trading_tick_to_order_latency_seconds_count") == 1
    assert 0 < m("trading_tick_to_order_latency_seconds_sum") < 1
    assert m("trading_tick_to_order_latency_seconds_bucket", le="+Inf") == 1
    assert m("trading_bars_processed_total") == st["bars_processed"] == 7


def test_open_position_and_working_orders(tmp_path: Path) -> None:
    svc = make_service(tmp_path)
    feed(svc, gapper().sorted_bars()[:-1])  # up to the 09:32 entry fill
    m = scrape(svc)
    st = svc.status()
    assert m("trading_positions_count") == len(st["positions"]) == 1
    assert m.by("trading_open_orders", "status")["accepted"] == len(st["open_orders"]) == 2
    assert m("trading_unrealized_pnl_dollars") == pytest.approx(st["unrealized_pnl"], abs=0.005)
    assert m("trading_account_equity_dollars") == float(st["equity"])
    assert m("trading_trades_total", strategy="gap_and_go", side="buy", status="filled") == 1
    assert m.series("trading_trade_duration_seconds_count") == {}


def test_counters_stay_cumulative_across_sessions(tmp_path: Path) -> None:
    """The order manager forgets closed orders at a session start; the counters must not."""
    svc = make_service(tmp_path)
    feed(svc, gapper().sorted_bars())
    before = scrape(svc)
    feed(svc, [Bar("GAPR", et_ns(NEXT_DAY, "09:30"), 12.0, 12.1, 11.9, 12.0, 10_000)])
    assert not any(o.status.value == "filled" for o in svc.node.orders.orders.values())
    after = scrape(svc)
    for name in ("trading_trades_total", "trading_orders_total",
                 "trading_trade_duration_seconds_count", "trading_fills_total"):
        assert after.series(name) == before.series(name), name


def test_risk_denials_by_reason_and_no_latency_for_denied_signals(tmp_path: Path) -> None:
    svc = make_service(tmp_path)
    bars = gapper().sorted_bars()
    feed(svc, bars[:4])  # up to 09:30
    svc.control("pause", source="test")
    feed(svc, bars[4:])  # the 09:31 breakout is refused: paused
    m = scrape(svc)
    denials = m.by("trading_risk_denials_total", "reason")
    assert denials["PAUSED"] == 1 and denials["MAX_POSITIONS"] == 0 and sum(denials.values()) == 1
    assert {k: v for k, v in denials.items() if v} == svc.status()["risk_denials"]
    assert m("trading_tick_to_order_latency_seconds_count") == 0
    assert m.by("trading_orders_total", "status")["submitted"] == 0
    assert m.by("trading_system_state", "state") == {
        "starting": 0, "running": 0, "paused": 1, "stopping": 0, "stopped": 0, "error": 0}


def test_bad_bars_are_counted_by_reason(tmp_path: Path) -> None:
    svc = make_service(tmp_path)
    good = gapper().sorted_bars()
    feed(svc, good)
    t = et_ns(DAY, "09:34")
    last = good[-1]
    nan = float("nan")
    feed(svc, [
        Bar("BAD", t, 10.0, 10.0, 10.0, nan, 100.0),            # NAN
        Bar("BAD", t, 10.0, 10.0, 0.0, 10.0, 100.0),            # NON_POSITIVE_PRICE
        Bar("BAD", t, 10.0, 10.0, 10.0, 10.0, -1.0),            # NEGATIVE_VOLUME
        Bar("BAD", t, 10.0, 9.0, 11.0, 10.0, 100.0),            # HIGH_BELOW_LOW
        Bar("BAD", t, 12.0, 11.0, 9.0, 10.0, 100.0),            # OPEN_OUTSIDE_RANGE
        Bar("BAD", t, 10.0, 11.0, 9.0, 12.0, 100.0),            # CLOSE_OUTSIDE_RANGE
        last,                                                    # DUPLICATE
        Bar("GAPR", et_ns(DAY, "09:00"), 11.0, 11.0, 11.0, 11.0, 1.0),   # OUT_OF_ORDER
        Bar("BAD", et_ns("2024-03-17", "12:00"), 10.0, 10.0, 10.0, 10.0, 1.0),  # OUTSIDE_SESSION
    ])
    m = scrape(svc)
    assert m.by("trading_bars_rejected_total", "reason") == {
        "NAN": 1, "NON_POSITIVE_PRICE": 1, "NEGATIVE_VOLUME": 1, "HIGH_BELOW_LOW": 1,
        "OPEN_OUTSIDE_RANGE": 1, "CLOSE_OUTSIDE_RANGE": 1, "DUPLICATE": 1, "OUT_OF_ORDER": 1,
        "OUTSIDE_SESSION": 1}
    assert svc.status()["bars_rejected"] == 9
    assert m("trading_bars_processed_total") == len(good)


# --- states, brokers, feeds, health -------------------------------------------------------------
def test_states_and_broker_connection(tmp_path: Path) -> None:
    svc = make_service(tmp_path)
    feed(svc, gapper().sorted_bars()[:-1])
    m = scrape(svc)
    assert m.by("trading_trading_state", "state") == {"active": 1, "reducing": 0, "halted": 0}
    assert m.by("trading_system_state", "state")["running"] == 1
    assert m.by("trading_broker_connected", "broker") == {"paper": 1}
    assert m.by("trading_broker_active", "broker") == {"paper": 1}
    svc.control("emergency_stop", source="test")
    svc.node.execution.connected = False  # what an adapter reports through on_connection_change
    m = scrape(svc)
    assert m.by("trading_trading_state", "state") == {"active": 0, "reducing": 0, "halted": 1}
    assert m.by("trading_broker_connected", "broker") == {"paper": 0}
    assert m.by("trading_risk_denials_total", "reason")["HALTED"] == 0  # the flatten is allowed
    assert m("trading_positions_count") == 1  # the flatten order fills on the next bar


def test_feed_staleness_follows_the_last_bar(tmp_path: Path) -> None:
    svc = make_service(tmp_path)
    time.sleep(0.05)
    assert scrape(svc)("trading_feed_staleness_seconds", feed="replay") >= 0.05  # since the start
    feed(svc, gapper().sorted_bars()[:1])
    fresh = scrape(svc)("trading_feed_staleness_seconds", feed="replay")
    time.sleep(0.05)
    later = scrape(svc)("trading_feed_staleness_seconds", feed="replay")
    assert fresh < 0.05 and later >= fresh + 0.05
    assert scrape(svc)("trading_feed_connected", feed="replay") == 1


def test_heartbeat_age_and_health_per_component(tmp_path: Path) -> None:
    now = [1000.0]
    svc = make_service(tmp_path)
    svc.health = HealthMonitor(default_allowance_s=30.0, monotonic=lambda: now[0])
    now[0] += 45.0
    svc.health.beat("event_loop")
    m = scrape(svc)
    ages = m.by("trading_component_heartbeat_age_seconds", "component")
    healthy = m.by("trading_component_healthy", "component")
    assert ages["event_loop"] == 0 and healthy["event_loop"] == 1
    assert ages["data_manager"] == 45 and healthy["data_manager"] == 0
    assert set(ages) == set(healthy) >= {"data_manager", "order_manager", "journal", "alert_system"}
    assert m("trading_ready") == 0


# --- operations: journal, alerts, errors --------------------------------------------------------
def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_alert_delivery_failures_are_system_errors(tmp_path: Path) -> None:
    url = f"http://127.0.0.1:{_closed_port()}/hook"  # nothing listens there
    svc = make_service(tmp_path, environ={"TRADING_ALERT_WEBHOOK_URL": url})
    alerts = svc.node.alerts
    alerts.backoff_s = 0.0
    alerts.raise_alert("test_critical", "critical", "webhook down", component="test")
    assert alerts.flush(10)
    m = scrape(svc)
    assert m.by("trading_alerts_sent_total", "sink") == {"log": 1, "webhook": 0}
    assert m.by("trading_alerts_failed_total", "sink") == {"log": 0, "webhook": 1}
    assert m("trading_system_errors_total", component="alert_system", error_type="delivery_failed") == 1
    assert m("trading_system_errors_total", component="journal", error_type="divergence") == 0
    assert m("trading_alerts_dropped_total") == 0 and m("trading_alert_queue_depth") == 0
    assert m("trading_journal_queue_depth") == svc.journal.pending > 0


def test_ops_server_500s_are_system_errors(tmp_path: Path) -> None:
    """A handler that raises answers 500 over real HTTP, and the error is counted by type."""
    from live_runner.ops.server import OpsServer

    svc = make_service(tmp_path)

    def broken_status() -> dict:
        raise RuntimeError("status is broken")

    svc.status = broken_status  # type: ignore[method-assign]

    async def get(path: str) -> bytes:
        server = OpsServer(svc, "127.0.0.1", 0, None)
        port = await server.start()
        svc.server = server
        try:
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(f"GET {path} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
            await writer.drain()
            data = await reader.read()
            writer.close()
            return data
        finally:
            await server.stop()

    assert asyncio.run(get("/status")).startswith(b"HTTP/1.1 500")
    m = scrape(svc)
    assert m("trading_system_errors_total", component="ops_server", error_type="RuntimeError") == 1


# --- the exposition format ----------------------------------------------------------------------
def test_promtool_accepts_the_exposition(tmp_path: Path) -> None:
    svc = make_service(tmp_path)
    feed(svc, gapper().sorted_bars())
    feed(svc, [Bar("BAD", et_ns(DAY, "09:40"), 10.0, 9.0, 11.0, 10.0, 1.0)])
    text = svc.metrics_text().decode()
    for name in ("trading_trades_total", "trading_trade_duration_seconds",
                 "trading_account_equity_dollars", "trading_positions_count",
                 "trading_daily_pnl_dollars", "trading_system_errors_total",
                 "trading_tick_to_order_latency_seconds", "trading_risk_denials_total",
                 "trading_orders_total", "trading_feed_staleness_seconds",
                 "trading_broker_connected", "trading_bars_rejected_total",
                 "trading_journal_queue_depth", "trading_component_heartbeat_age_seconds"):
        assert f"# TYPE {name} " in text, name
    promtool_check(text)
