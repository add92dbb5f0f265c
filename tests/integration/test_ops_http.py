"""The ops HTTP server of a running LiveService, over real HTTP on 127.0.0.1.

The service runs on its own event loop in a thread; the test releases the session's bars through a
gated feed, so each command lands at a known point of the session (between two bars, as an operator
command does in production). Every endpoint, every command with its semantics, the journal record
of each accepted command, and what bad input, slow clients and floods get.
"""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from live_runner.live.health import HealthMonitor
from tests.kit.live import (
    TOKEN, Market, ServiceThread, http_call, journal_rows, live_config, raw_exchange,
    status_of,
)

pytestmark = pytest.mark.timeout(60)


def three_gappers() -> Market:
    """AAA breaks out at 09:31 (long from 09:32), BBB at 09:33, CCC at 09:35."""
    m = Market()
    m.gapper("AAA", "09:31").gapper("BBB", "09:33").gapper("CCC", "09:35")
    return m


def symbols(status: dict) -> list[str]:
    return [p["symbol"] for p in status["positions"]]


def orders_of(status: dict, symbol: str) -> list[dict]:
    return [o for o in status["open_orders"] if o["symbol"] == symbol]


def commands(svc: ServiceThread) -> list[dict]:
    svc.node.journal.flush()
    return journal_rows(svc.journal_url, "command")


# --- read-only endpoints -----------------------------------------------------------------------
def test_health_ready_status_metrics(tmp_path: Path) -> None:
    m = three_gappers()
    with ServiceThread(tmp_path) as svc:
        svc.feed.push(m.until("09:32"))
        code, health = svc.get("/health")
        assert code == 200 and health["status"] == "ok" and health["system_state"] == "running"
        code, ready = svc.get("/ready")
        assert (code, ready) == (200, {"ready": True, "reasons": []})
        st = svc.status()
        assert st["system_state"] == "running" and st["trading_state"] == "active"
        assert st["session"] == "2024-03-15" and st["market_time"] == "2024-03-15T13:33:00Z"
        [pos] = st["positions"]
        assert (pos["symbol"], pos["qty"], pos["avg_price"]) == ("AAA", 1785, 11.25)
        assert sorted(o["role"] for o in st["open_orders"]) == ["stop", "target"]
        assert {"equity", "cash", "realized_pnl", "unrealized_pnl", "daily_pnl", "stats", "alerts",
                "health", "journal", "alert_delivery", "broker_connected"} <= set(st)
        assert st["health"]["healthy"] is True and "data_manager" in st["health"]["components"]
        assert st["broker_connected"] is True
        code, text = svc.get("/metrics")
        assert code == 200 and "trading_" in text


# --- commands ----------------------------------------------------------------------------------
def test_pause_blocks_entries_but_exits_are_still_managed_then_resume(tmp_path: Path) -> None:
    m = three_gappers()
    m.put("AAA", "09:33", 11.0, 11.05, 10.8, 10.85, 30_000)  # AAA's stop (10.90) is hit
    with ServiceThread(tmp_path) as svc:
        svc.feed.push(m.until("09:32"))
        assert symbols(svc.status()) == ["AAA"]

        out = svc.control("pause", operator="alice")
        assert out == {"ok": True, "durable": True, "command": "pause_trading", "state": "paused", "trading_state": "active"}
        assert svc.status()["paused"] is True

        svc.feed.push(m.until("09:34", after="09:32"))  # BBB breaks out; AAA is stopped out
        st = svc.status()
        assert st["positions"] == [] and st["open_orders"] == []  # the stop filled, target canceled
        assert st["risk_denials"] == {"PAUSED": 1}  # BBB's entry
        assert [(t.symbol, t.exit_reason) for t in svc.node.performance.trades] == [("AAA", "stop")]

        out = svc.control("resume", operator="alice")
        assert (out["state"], out["trading_state"]) == ("running", "active")
        svc.feed.push(m.until("09:36", after="09:34"))  # CCC breaks out at 09:35, fills at 09:36
        st = svc.status()
        assert st["paused"] is False and symbols(st) == ["CCC"]
        assert st["risk_denials"] == {"PAUSED": 1}


def test_emergency_stop_halts_cancels_flattens_and_alerts(tmp_path: Path) -> None:
    m = three_gappers()
    with ServiceThread(tmp_path) as svc:
        svc.feed.push(m.until("09:34"))  # AAA and BBB held, each with its stop and target
        st = svc.status()
        assert symbols(st) == ["AAA", "BBB"] and len(st["open_orders"]) == 4

        out = svc.control("emergency_stop", operator="bob")
        assert out["trading_state"] == "halted"
        st = svc.status()
        # Every resting order canceled; a market sell per position is all that is left.
        assert sorted((o["symbol"], o["role"], o["side"]) for o in st["open_orders"]) == [
            ("AAA", "manual", "sell"), ("BBB", "manual", "sell")]
        alert = st["alerts"][0]
        assert alert["key"] == "trading_state:halted" and alert["severity"] == "critical"
        assert "emergency stop by http:127.0.0.1:bob" in alert["message"]

        svc.feed.push(m.until("09:36", after="09:34"))  # sells fill; CCC's breakout is refused
        st = svc.status()
        assert st["positions"] == [] and st["open_orders"] == []
        assert st["trading_state"] == "halted" and st["risk_denials"].get("HALTED") == 1
        reasons = {t.symbol: t.exit_reason for t in svc.node.performance.trades}
        assert reasons == {"AAA": "manual", "BBB": "manual"}

        # A second stop while already HALTED still pages (no state change to carry the alert).
        svc.control("emergency_stop", operator="bob")
        assert svc.status()["alerts"][0]["key"] == "emergency_stop"


def test_rebalance_closes_the_newest_positions_beyond_max_positions(tmp_path: Path) -> None:
    m = three_gappers()
    with ServiceThread(tmp_path) as svc:
        svc.feed.push(m.until("09:36"))
        assert symbols(svc.status()) == ["AAA", "BBB", "CCC"]
        out = svc.control("rebalance")
        assert out["command"] == "rebalance_portfolio"
        assert all(o["role"] != "manual" for o in svc.status()["open_orders"])  # within the limit

        # The operator lowers max_positions (as a restart with a new config would): rebalance
        # closes the newest (CCC opened 09:36, BBB 09:34) and keeps the oldest.
        node = svc.node
        svc.on_loop(lambda: setattr(node, "config", node.config.model_copy(update={"max_positions": 1})))
        svc.control("rebalance")
        st = svc.status()
        manual = sorted(o["symbol"] for o in st["open_orders"] if o["role"] == "manual")
        assert manual == ["BBB", "CCC"]
        assert [o["role"] for o in orders_of(st, "AAA")] in (["stop", "target"], ["target", "stop"])
        svc.feed.push(m.until("09:37", after="09:36"))
        assert symbols(svc.status()) == ["AAA"]


def test_flatten_one_symbol_then_all(tmp_path: Path) -> None:
    m = three_gappers()
    with ServiceThread(tmp_path) as svc:
        svc.feed.push(m.until("09:36"))
        code, out = svc.post("/control/flatten/bbb", body={"operator": "carol"})
        assert code == 200 and out["command"] == "flatten"
        st = svc.status()
        assert [o["role"] for o in orders_of(st, "BBB")] == ["manual"]  # exits canceled, sell sent
        assert len(orders_of(st, "AAA")) == 2 and len(orders_of(st, "CCC")) == 2
        svc.feed.push(m.until("09:37", after="09:36"))
        assert symbols(svc.status()) == ["AAA", "CCC"]

        svc.control("flatten", operator="carol")
        svc.feed.push(m.until("09:38", after="09:37"))
        st = svc.status()
        assert st["positions"] == [] and st["open_orders"] == []
        assert st["trading_state"] == "active"  # flatten is not a halt: entries stay allowed


def test_each_accepted_command_is_journaled_with_who_and_when(tmp_path: Path) -> None:
    m = three_gappers()
    with ServiceThread(tmp_path) as svc:
        svc.feed.push(m.until("09:32"))
        svc.control("pause", operator="alice")
        svc.feed.push(m.until("09:33", after="09:32"))
        svc.control("resume", operator="bob")
        svc.post("/control/flatten/AAA", body={"operator": "carol"})
        svc.control("rebalance", operator="dave")
        svc.post("/control/flatten")  # no body: the peer address is who
        svc.control("emergency_stop", operator="erin")
        rows = commands(svc)
    got = [(r["key"], r["payload"]["source"], r["payload"]["symbol"], r["ts"]) for r in rows]
    t1, t2 = 1710509580 * 10**9, 1710509640 * 10**9  # 09:33 and 09:34 ET (the runner's clock)
    assert got == [
        ("pause_trading", "http:127.0.0.1:alice", "", t1),
        ("resume_trading", "http:127.0.0.1:bob", "", t2),
        ("flatten", "http:127.0.0.1:carol", "AAA", t2),
        ("rebalance_portfolio", "http:127.0.0.1:dave", "", t2),
        ("flatten", "http:127.0.0.1", "", t2),
        ("emergency_stop", "http:127.0.0.1:erin", "", t2),
    ]
    assert all(r["session"] == "2024-03-15" for r in rows)


# --- bad input ---------------------------------------------------------------------------------
@pytest.mark.parametrize("method, path, token, raw, status, error", [
    ("POST", "/control/pause", None, None, 401, "missing or wrong bearer token"),
    ("POST", "/control/pause", "wrong-token", None, 401, "missing or wrong bearer token"),
    ("POST", "/control/liquidate", TOKEN, None, 404, "unknown command 'liquidate'"),
    ("POST", "/control/pause/now", TOKEN, None, 404, "unknown command"),
    ("POST", "/control/resume/AAA", TOKEN, None, 404, "unknown command 'resume/AAA'"),
    ("POST", "/control/pause", TOKEN, b"{not json", 400, "body is not JSON"),
    ("POST", "/control/pause", TOKEN, b"[1, 2]", 400, "body must be a JSON object"),
    ("POST", "/control/pause", TOKEN, b'{"operator": 7}', 400, "operator must be a string"),
    ("POST", "/control/flatten/A%20B", TOKEN, None, 400, "bad symbol"),
    ("GET", "/control/pause", TOKEN, None, 405, "control endpoints take POST"),
    ("POST", "/status", TOKEN, None, 405, "/status takes GET"),
    ("DELETE", "/health", None, None, 405, "/health takes GET"),
    ("GET", "/nope", None, None, 404, "no such endpoint"),
])
def test_bad_requests_get_json_errors_and_change_nothing(
        tmp_path: Path, method: str, path: str, token: str | None, raw: bytes | None, status: int,
        error: str) -> None:
    m = three_gappers()
    with ServiceThread(tmp_path) as svc:
        svc.feed.push(m.until("09:32"))
        before = svc.status()
        code, body = http_call(svc.port, method, path, token=token, raw=raw)
        assert code == status and isinstance(body, dict) and error in body["error"]
        after = svc.status()
        for key in ("system_state", "trading_state", "paused", "positions", "open_orders"):
            assert after[key] == before[key]
        assert commands(svc) == []


def test_oversized_body_gets_413(tmp_path: Path) -> None:
    cfg = live_config(ops={"max_body_bytes": 1024})
    with ServiceThread(tmp_path, cfg) as svc:
        head = (f"POST /control/pause HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {TOKEN}\r\n"
                "Content-Type: application/json\r\nContent-Length: 100000\r\n\r\n").encode()
        answer = raw_exchange(svc.port, [head])
        assert status_of(answer) == 413 and b"larger than 1024 bytes" in answer
        huge = b"GET /health HTTP/1.1\r\nX-Pad: " + b"a" * 20_000 + b"\r\n\r\n"
        assert status_of(raw_exchange(svc.port, [huge])) == 431
        assert svc.status()["paused"] is False and commands(svc) == []


def test_control_is_refused_when_the_runner_has_no_token(tmp_path: Path) -> None:
    with ServiceThread(tmp_path, env={}) as svc:
        code, body = svc.post("/control/pause", token="anything")
        assert code == 401 and "no token configured" in body["error"]


# --- slow clients and floods -------------------------------------------------------------------
def test_slow_client_gets_408_while_others_are_served(tmp_path: Path) -> None:
    cfg = live_config(ops={"request_timeout_s": 0.5})
    with ServiceThread(tmp_path, cfg) as svc:
        result: dict[str, bytes] = {}
        # Headers one byte every 50 ms: the 500 ms budget runs out long before they are complete.
        request = b"GET /status HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: " + b"z" * 40 + b"\r\n\r\n"
        slow = threading.Thread(target=lambda: result.setdefault(
            "slow", raw_exchange(svc.port, [bytes([c]) for c in request], pause_s=0.05)))
        started = time.monotonic()
        slow.start()
        latencies = []
        for _ in range(10):  # meanwhile, others are answered at once
            t0 = time.monotonic()
            code, _ = svc.get("/health")
            latencies.append(time.monotonic() - t0)
            assert code == 200
            time.sleep(0.02)
        slow.join(10)
        assert status_of(result["slow"]) == 408 and b"request timeout" in result["slow"]
        assert max(latencies) < 0.25
        assert time.monotonic() - started < 5
        assert svc.get("/health")[0] == 200


def test_flood_of_requests_is_answered(tmp_path: Path) -> None:
    m = three_gappers()
    with ServiceThread(tmp_path) as svc:
        svc.feed.push(m.until("09:32"))
        paths = ["/health", "/ready", "/status", "/nope"] * 125

        def one(path: str) -> int:
            return http_call(svc.port, "GET", path)[0]

        with ThreadPoolExecutor(max_workers=50) as pool:
            codes = list(pool.map(one, paths))
        assert len(codes) == 500
        assert codes.count(200) == 375 and codes.count(404) == 125
        assert svc.service.server.requests >= 500
        svc.feed.push(m.until("09:34", after="09:32"))  # and trading went on
        assert symbols(svc.status()) == ["AAA", "BBB"]


def test_connections_beyond_the_cap_are_turned_away_at_once(tmp_path: Path) -> None:
    import socket

    cfg = live_config(ops={"max_connections": 4, "request_timeout_s": 1.0})
    with ServiceThread(tmp_path, cfg) as svc:
        idle = [socket.create_connection(("127.0.0.1", svc.port)) for _ in range(4)]
        try:
            time.sleep(0.1)  # let the server accept them
            t0 = time.monotonic()
            code, body = svc.get("/health")
            assert code == 503 and body["error"] == "too many connections"
            assert time.monotonic() - t0 < 0.5
        finally:
            for s in idle:
                s.close()
        deadline = time.monotonic() + 5
        while svc.get("/health")[0] != 200:  # freed once those time out or close
            assert time.monotonic() < deadline
            time.sleep(0.05)
        assert svc.service.server.turned_away >= 1


# --- readiness ---------------------------------------------------------------------------------
def test_ready_is_503_with_reasons_after_the_feed_finished(tmp_path: Path) -> None:
    m = three_gappers()
    with ServiceThread(tmp_path) as svc:
        svc.feed.push(m.until("09:32"))
        assert svc.get("/ready")[0] == 200
        svc.feed.end()
        deadline = time.monotonic() + 5
        while not svc.service.feed_done:
            assert time.monotonic() < deadline
            time.sleep(0.01)
        code, body = svc.get("/ready")
        assert code == 503 and body == {"ready": False, "reasons": ["data feed finished"]}
        assert svc.get("/health")[0] == 200  # alive, just not ready


class FakeMonotonic:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


def test_a_silent_component_makes_the_runner_not_ready_and_alerts(tmp_path: Path) -> None:
    clock = FakeMonotonic()
    cfg = live_config(ops={"heartbeat_allowance_s": 30, "feed_stale_after_s": 60})
    health = HealthMonitor(default_allowance_s=30, monotonic=clock)
    m = three_gappers()
    with ServiceThread(tmp_path, cfg, health=health) as svc:
        svc.feed.push(m.until("09:32"))
        time.sleep(1.2)  # one watchdog round: the data manager beats for its progress
        assert svc.get("/ready")[0] == 200
        clock.t += 90  # 90 s without a bar (the watchdog beats the others again on its next round)
        deadline = time.monotonic() + 5
        while True:
            code, body = svc.get("/ready")
            if body["reasons"] == ["data_manager unhealthy"]:
                break
            assert time.monotonic() < deadline, body
            time.sleep(0.1)
        assert code == 503
        st = svc.status()
        assert st["health"]["unhealthy"] == ["data_manager"]
        assert st["health"]["components"]["data_manager"]["heartbeat_age_s"] >= 90
        deadline = time.monotonic() + 5
        while not {"feed_stale", "unhealthy:data_manager"} <= {a["key"] for a in st["alerts"]}:
            assert time.monotonic() < deadline, st["alerts"]
            time.sleep(0.1)
            st = svc.status()
        sev = {a["key"]: a["severity"] for a in st["alerts"]}
        assert sev["feed_stale"] == "warning" and sev["unhealthy:data_manager"] == "critical"

        svc.feed.push(m.until("09:33", after="09:32"))  # a bar again: healthy and ready
        deadline = time.monotonic() + 5
        while svc.get("/ready")[0] != 200:
            assert time.monotonic() < deadline
            time.sleep(0.1)
