"""Render time of the dashboard with a big session: 500 symbols, 2,000 orders.

A journal is written through live_runner.persistence.journal.Journal (250 round trips and 500 open positions
with a stop and a target each: 2,000 orders, 1,000 fills, 250 trades, 390 equity marks, 100
alerts), and a stand-in runner serves the matching /status (500 positions, 1,000 open orders) on
127.0.0.1. The page is run with Streamlit's AppTest: cold (nothing cached), warm (an auto-refresh
on an unchanged journal) and after new events (the cache is keyed by the journal's last seq).
Prints one JSON object (seconds)."""

from __future__ import annotations

import json
import os
import statistics
import sys
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from live_runner.persistence.journal import Journal  # noqa: E402

DAY = "2024-11-26"
T0 = 1732631400_000_000_000  # 2024-11-26 09:30 ET
MIN = 60_000_000_000
SYMBOLS = 500


def build_journal(url: str) -> dict:
    j = Journal(url, batch_size=5000)
    ses = DAY
    j.append(ses, T0 - 30 * MIN, "session_start", "", {"equity": "1000000.00", "state": "active"})
    positions, open_orders, orders = [], [], 0
    for i in range(SYMBOLS):
        sym, strat = f"S{i:03d}", ("gap_and_go" if i % 2 else "vwap_reclaim")
        t = T0 + (i % 300) * MIN
        # a closed round trip, on every other symbol
        for n, (side, px, role) in enumerate([("buy", 10.0, "entry"), ("sell", 10.5 if i % 3 else 9.8, "target")]
                                             if i % 2 == 0 else []):
            cid = f"LR-{sym}-{n}"
            j.append(ses, t + n * MIN, "order", cid, {"symbol": sym, "strategy": strat, "side": side, "qty": 100,
                                                    "type": "market", "role": role, "limit": 0.0, "stop": 0.0})
            j.append(ses, t + n * MIN, "order_event", cid, {"status": "accepted", "reason": ""})
            j.append(ses, t + n * MIN, "fill", cid, {"symbol": sym, "strategy": strat, "side": side, "qty": 100,
                                                   "price": px, "commission": "0.35", "role": role})
            orders += 1
        if i % 2 == 0:
            j.append(ses, t + MIN, "trade", sym, {
                "symbol": sym, "strategy": strat, "qty": 100, "entry_ts": t, "entry_price": 10.0, "exit_ts": t + MIN,
                "exit_price": 10.5 if i % 3 else 9.8, "exit_reason": "target", "pnl": "49.30" if i % 3 else "-20.70",
                "commission": "0.70", "r_multiple": 1.0 if i % 3 else -0.5})
        # an open position with its stop and target
        cid = f"LR-{sym}-2"
        j.append(ses, t + 2 * MIN, "order", cid, {"symbol": sym, "strategy": strat, "side": "buy", "qty": 200,
                                                "type": "market", "role": "entry", "limit": 0.0, "stop": 0.0})
        j.append(ses, t + 2 * MIN, "fill", cid, {"symbol": sym, "strategy": strat, "side": "buy", "qty": 200,
                                               "price": 10.2, "commission": "0.70", "role": "entry"})
        for role, lim, stp in (("stop", 0.0, 9.9), ("target", 10.8, 0.0)):
            oid = f"LR-{sym}-{role}"
            j.append(ses, t + 2 * MIN, "order", oid, {"symbol": sym, "strategy": strat, "side": "sell", "qty": 200,
                                                    "type": "stop" if role == "stop" else "limit", "role": role,
                                                    "limit": lim, "stop": stp, "oco": sym})
            j.append(ses, t + 2 * MIN, "order_event", oid, {"status": "accepted", "reason": ""})
            open_orders.append({"client_order_id": oid, "symbol": sym, "side": "sell", "qty": 200, "filled_qty": 0,
                                "type": "stop" if role == "stop" else "limit", "role": role, "status": "accepted",
                                "limit": lim or None, "stop": stp or None})
        orders += 3
        positions.append({"symbol": sym, "strategy": strat, "qty": 200, "avg_price": 10.2, "last": 10.3,
                          "unrealized_pnl": 20.0, "stop": 9.9, "target": 10.8, "opened": "2024-11-26T15:00:00Z"})
    for k in range(390):
        j.append(ses, T0 + k * MIN, "equity", "", {"equity": f"{1000000 + 30 * k:.2f}", "cash": "900000.00",
                                                  "positions": min(k, SYMBOLS)})
    for k in range(100):
        j.append(ses, T0 + k * MIN, "alert", f"a{k}", {"severity": "warning", "message": f"alert {k}",
                                                      "component": "node"})
    j.close()
    status = {"system_state": "running", "trading_state": "active", "paused": False, "session": DAY,
              "market_time": "2024-11-26T20:00:00Z", "equity": "1011670.00", "cash": "900000.00",
              "realized_pnl": "10000.00", "unrealized_pnl": 10000.0, "daily_pnl": 11670.0, "commissions": "700.00",
              "positions": positions, "open_orders": open_orders,
              "stats": {"gap_and_go": {"trades": 250, "win_rate": 0.66}, "vwap_reclaim": {"trades": 250}},
              "risk_denials": {}, "alerts": [{"ts": "2024-11-26T15:00:00Z", "severity": "info", "key": "k",
                                              "message": "m"}] * 20,
              "health": {"components": {"event_loop": {"is_healthy": True, "is_running": True,
                                                       "heartbeat_age_s": 0.2, "detail": ""}},
                         "healthy": True, "unhealthy": []},
              "journal": {"url": url, "pending": 0, "written": 0}}
    return {"status": status, "orders": orders, "events": j.next_seq - 1}


def serve(status: dict) -> ThreadingHTTPServer:
    body = json.dumps(status).encode()

    class H(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802
            data = body if self.path == "/status" else b'{"ready": true, "reasons": []}'
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *a: object) -> None:
            pass

    srv = ThreadingHTTPServer(("127.0.0.1", 0), H)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    return srv


def main() -> None:
    import logging

    logging.getLogger("streamlit").setLevel(logging.ERROR)
    from streamlit.testing.v1 import AppTest

    with tempfile.TemporaryDirectory() as d:
        url = f"sqlite:///{d}/bench.db"
        t = time.perf_counter()
        built = build_journal(url)
        build_s = time.perf_counter() - t
        srv = serve(built["status"])
        os.environ.update({"TRADING_RUNNER_URL": f"http://127.0.0.1:{srv.server_port}",
                           "TRADING_JOURNAL_URL": url, "TRADING_CONTROL_TOKEN": "x"})

        def render() -> tuple[float, AppTest]:
            at = AppTest.from_file(str(ROOT / "dashboard" / "app.py"), default_timeout=120)
            t0 = time.perf_counter()
            at.run()
            dt = time.perf_counter() - t0
            assert not at.exception, [e.value for e in at.exception]
            return dt, at

        cold, at = render()
        warm = [render()[0] for _ in range(5)]
        j = Journal(url)  # new events: the cache is keyed by the last seq, so this is a miss
        j.next_seq = j.recorded_events + 1
        j.append(DAY, T0 + 391 * MIN, "equity", "", {"equity": "1011700.00", "cash": "900000.00", "positions": 500})
        j.close()
        after_append, _ = render()
        srv.shutdown()
        print(json.dumps({
            "symbols": SYMBOLS, "orders": built["orders"], "journal_events": built["events"],
            "journal_build_s": round(build_s, 3),
            "render_cold_s": round(cold, 3), "render_warm_median_s": round(statistics.median(warm), 3),
            "render_warm_max_s": round(max(warm), 3), "render_after_new_events_s": round(after_append, 3),
            "tables": len(at.dataframe), "table_rows": [len(df.value) for df in at.dataframe],
        }, sort_keys=True))


if __name__ == "__main__":
    main()
