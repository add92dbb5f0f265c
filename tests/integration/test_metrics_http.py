"""GET /metrics of a real `python -m live_runner run --mode paper` process, over HTTP.

One runner for the module: a generated sample session (two days, 20 symbols) with a few bad bars
appended, paced at 20000x, `max_positions: 1` so that some signals are denied, the ops server on a
free port (ops.port: 0; the bound port is read from the runner's log), and an alert webhook that
nothing listens on. The tests compare what an operator would look at with /status, run
`promtool check metrics` on the scraped text, and drive controls that must show in the metrics.
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any, Iterator

import pytest

from live_runner.data import sample_data
from tests.kit.metrics import Scrape, promtool_check

pytestmark = pytest.mark.timeout(180)

TOKEN = "metrics-test-token"
BAD_ROWS = [
    "BADX,2024-11-26T20:59:00Z,10,9,11,10,100",    # HIGH_BELOW_LOW
    "BADX,2024-11-26T20:59:00Z,10,10,10,10,-5",    # NEGATIVE_VOLUME
    "SYM000,2024-11-26T15:00:00Z,10,10,10,10,1",   # OUT_OF_ORDER (the feed is past 20:59)
    "BADX,2024-11-30T15:00:00Z,10,10,10,10,1",     # OUTSIDE_SESSION (a Saturday)
]


@dataclass
class Runner:
    proc: subprocess.Popen
    url: str
    rows: int
    stderr: list[str] = field(default_factory=list)

    def get(self, path: str) -> tuple[int, str, dict[str, str]]:
        try:
            with urllib.request.urlopen(self.url + path, timeout=10) as resp:
                return resp.status, resp.read().decode(), dict(resp.headers)
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read().decode(), dict(exc.headers)

    def post(self, path: str) -> dict[str, Any]:
        req = urllib.request.Request(self.url + path, data=b"{}", method="POST",
                                     headers={"Authorization": f"Bearer {TOKEN}",
                                              "Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=10) as resp:
            return json.loads(resp.read())

    def metrics(self) -> Scrape:
        code, text, _ = self.get("/metrics")
        assert code == 200
        return Scrape(text)

    def status(self) -> dict[str, Any]:
        code, text, _ = self.get("/status")
        assert code == 200
        return json.loads(text)


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _bars(out: Path) -> tuple[Path, int]:
    df = sample_data.generate(date(2024, 11, 26), sessions=1, symbols=20, seed=7)
    path = sample_data.write(df, out, "csv")
    lines = path.read_text().splitlines()
    rows = lines[1:] + [lines[-1]] + BAD_ROWS  # the last row again: DUPLICATE
    path.write_text("\n".join([lines[0], *rows]) + "\n")
    return path, len(rows)


@pytest.fixture(scope="module")
def runner(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Runner]:
    tmp = tmp_path_factory.mktemp("metrics_http")
    bars, rows = _bars(tmp)
    cfg = tmp / "config.yaml"
    cfg.write_text("max_positions: 1\nops: {port: 0}\njournal: {batch_size: 50}\n")
    env = {**os.environ, "TRADING_CONTROL_TOKEN": TOKEN,
           "TRADING_ALERT_WEBHOOK_URL": f"http://127.0.0.1:{_closed_port()}/hook"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "live_runner", "run", "--mode", "paper", "--config", str(cfg),
         "--bars", str(bars), "--speed", "20000", "--linger", "--json",
         "--journal", f"sqlite:///{tmp / 'journal.db'}"],
        cwd=tmp, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    lines: list[str] = []
    bound = threading.Event()
    port: list[str] = []

    def read_stderr() -> None:
        assert proc.stderr is not None
        for line in proc.stderr:
            lines.append(line)
            if not port and (m := re.search(r"ops server on http://([\d.]+):(\d+)", line)):
                port.append(f"http://{m.group(1)}:{m.group(2)}")
                bound.set()

    reader = threading.Thread(target=read_stderr, daemon=True)
    reader.start()
    try:
        if not bound.wait(60):
            raise AssertionError("the runner did not log its ops port:\n" + "".join(lines[-40:]))
        r = Runner(proc, port[0], rows, lines)
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:  # until the whole file went through the chain
            code, text, _ = r.get("/ready")
            if "data feed finished" in text:
                break
            assert proc.poll() is None, "".join(lines[-40:])
            time.sleep(0.2)
        else:
            raise AssertionError("the feed did not finish: " + text)
        yield r
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        reader.join(5)


def test_metrics_agree_with_status_after_the_session(runner: Runner) -> None:
    code, text, headers = runner.get("/metrics")
    assert code == 200 and headers["Content-Type"].startswith("text/plain; version=0.0.4")
    m = Scrape(text)
    st = runner.status()
    # The account, as an operator reads it on /status.
    assert m("trading_account_equity_dollars") == float(st["equity"])
    assert m("trading_positions_count") == len(st["positions"])
    assert round(m("trading_daily_pnl_dollars"), 2) == pytest.approx(st["daily_pnl"], abs=0.011)
    assert m("trading_realized_pnl_dollars") == float(st["realized_pnl"])
    # Risk denials (max_positions: 1 refuses some entries), by reason code.
    denials = m.by("trading_risk_denials_total", "reason")
    assert denials["MAX_POSITIONS"] > 0
    assert {k: v for k, v in denials.items() if v} == st["risk_denials"]
    # The bad rows appended to the file, by reason; every other row went through the chain.
    assert {k: v for k, v in m.by("trading_bars_rejected_total", "reason").items() if v} == {
        "HIGH_BELOW_LOW": 1, "NEGATIVE_VOLUME": 1, "DUPLICATE": 1, "OUT_OF_ORDER": 1,
        "OUTSIDE_SESSION": 1}
    assert st["bars_rejected"] == 5
    assert m("trading_bars_processed_total") == st["bars_processed"] == runner.rows - 5
    # Orders and trades: every order reached a final status (the session was flattened).
    orders = m.by("trading_orders_total", "status")
    finals = sum(v for k, v in orders.items() if k != "submitted")
    assert orders["submitted"] == finals > 0 and orders["filled"] > 0
    trades = m.series("trading_trades_total")
    assert sum(trades.values()) == finals
    assert sum(v for k, v in trades.items() if ("status", "filled") in k) == orders["filled"]
    assert {dict(k)["side"] for k in trades} == {"buy", "sell"}
    assert {dict(k)["strategy"] for k in trades} <= {"gap_and_go", "vwap_reclaim"}
    closed = sum(s["trades"] for s in st["stats"].values())
    assert sum(m.series("trading_trade_duration_seconds_count").values()) == closed > 0
    # The tick-to-order latency of the signals that caused orders.
    samples = m("trading_tick_to_order_latency_seconds_count")
    assert 0 < samples <= orders["submitted"]
    assert 0 < m("trading_tick_to_order_latency_seconds_sum") < samples  # well under 1 s each
    # Connections, queues, heartbeats.
    assert m.by("trading_broker_connected", "broker") == {"paper": 1}
    assert m("trading_feed_staleness_seconds", feed="replay") > 0
    assert m("trading_journal_queue_depth") >= 0
    ages = m.by("trading_component_heartbeat_age_seconds", "component")
    assert {"data_manager", "order_manager", "journal", "event_loop"} <= set(ages)
    assert max(ages.values()) < 30
    assert set(m.by("trading_component_healthy", "component").values()) == {1}
    assert m.by("trading_system_state", "state")["running"] == 1
    assert m.by("trading_trading_state", "state")["active"] == 1


def test_promtool_accepts_the_scraped_metrics(runner: Runner) -> None:
    code, text, _ = runner.get("/metrics")
    assert code == 200
    promtool_check(text)


def test_controls_and_failed_alerts_show_in_the_metrics(runner: Runner) -> None:
    runner.post("/control/pause")
    assert runner.metrics().by("trading_system_state", "state")["paused"] == 1
    runner.post("/control/emergency_stop")
    m = runner.metrics()
    assert m.by("trading_trading_state", "state") == {"active": 0, "reducing": 0, "halted": 1}
    # The HALTED alert goes to the webhook too, which is down: retried, then counted as failed.
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        m = runner.metrics()
        if m("trading_alerts_failed_total", sink="webhook") >= 1:
            break
        time.sleep(0.25)
    assert m("trading_alerts_failed_total", sink="webhook") >= 1
    assert m("trading_system_errors_total", component="alert_system",
             error_type="delivery_failed") == sum(m.by("trading_alerts_failed_total", "sink").values())
    assert m("trading_alerts_sent_total", sink="log") >= 1


def test_sigterm_ends_the_runner_cleanly(runner: Runner) -> None:
    runner.proc.send_signal(signal.SIGTERM)
    assert runner.proc.stdout is not None
    out = runner.proc.stdout.read()  # stderr is drained by the fixture's reader thread
    runner.proc.wait(30)
    assert runner.proc.returncode == 0, "".join(runner.stderr[-40:])
    assert json.loads(out)["bars_processed"] == runner.rows - 5
