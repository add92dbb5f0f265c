"""Alerts raised where things happen in a running service, delivered to real receivers on
127.0.0.1: a webhook (http.server) and an SMTP server (aiosmtpd), configured the way operators do,
through the TRADING_ALERT_* environment variables.

Daily loss limit, emergency stop, broker disconnected/reconnected, order rejected, runner error
(CRITICAL, journaled, SystemState.ERROR, exit non-zero); and a webhook that is down or hangs never
delays trading.
"""

from __future__ import annotations

import json
import subprocess
import sys
from email import message_from_bytes
from pathlib import Path
from typing import Iterator

import pytest

from live_runner.core.models import OrderEvent, OrderStatus
from live_runner.live.service import RunnerError
from tests.kit.live import (
    TOKEN, TOKEN_ENV, Market, ServiceThread, SmtpReceiver, WebhookReceiver, free_port,
    journal_rows, live_config,
)

pytestmark = pytest.mark.timeout(60)
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def webhook() -> Iterator[WebhookReceiver]:
    r = WebhookReceiver()
    yield r
    r.close()


@pytest.fixture
def smtp() -> Iterator[SmtpReceiver]:
    r = SmtpReceiver()
    yield r
    r.close()


def losing_day() -> Market:
    """AAA is bought at 11.25 (1785 shares) at 09:32 and stopped out at 10.90 at 09:33: -637.25
    with commissions, beyond a 0.5 % daily loss limit on 100,000."""
    m = Market()
    m.gapper("AAA", "09:31").gapper("BBB", "09:34")
    m.put("AAA", "09:33", 11.0, 11.05, 10.8, 10.85, 30_000)
    return m


def test_daily_loss_limit_and_emergency_stop_reach_webhook_and_email(
        tmp_path: Path, webhook: WebhookReceiver, smtp: SmtpReceiver) -> None:
    env = {TOKEN_ENV: TOKEN, "TRADING_ALERT_WEBHOOK_URL": webhook.url, **smtp.env()}
    m = losing_day()
    with ServiceThread(tmp_path, live_config(max_daily_loss_pct=0.005), env=env) as svc:
        svc.feed.push(m.until("09:36"))
        body = webhook.wait_for("trading_state:reducing")
        assert body["text"].startswith("[CRITICAL] trading_state:reducing")
        assert "daily loss limit: -637.25" in body["text"]
        assert body["attachments"][0]["color"] == "danger"
        assert body["alert"]["severity"] == "critical" and body["alert"]["component"] == "node"
        subject = smtp.wait_for("trading_state:reducing")
        assert subject == "[CRITICAL] trading_state:reducing"
        st = svc.status()
        assert st["trading_state"] == "reducing" and st["risk_denials"].get("REDUCING_ONLY") == 1  # BBB

        svc.control("emergency_stop", operator="ops-oncall")
        body = webhook.wait_for("trading_state:halted")
        assert "emergency stop by http:127.0.0.1:ops-oncall" in body["text"]
        smtp.wait_for("trading_state:halted")
        [mail] = [e for e in smtp.handler.envelopes
                  if message_from_bytes(e.content)["Subject"].endswith("trading_state:halted")]
        assert mail.mail_from == "runner@example.com" and mail.rcpt_tos == ["ops@example.com"]
        assert "ops-oncall" in message_from_bytes(mail.content).get_payload(decode=True).decode()
        svc.stop()
    assert svc.service.node.alerts.failed == {"log": 0, "webhook": 0, "email": 0}
    alerts = journal_rows(svc.journal_url, "alert")
    assert [a["key"] for a in alerts if a["key"].startswith("trading_state")] == [
        "trading_state:reducing", "trading_state:halted"]


def test_broker_disconnect_and_reconnect(tmp_path: Path, webhook: WebhookReceiver) -> None:
    env = {TOKEN_ENV: TOKEN, "TRADING_ALERT_WEBHOOK_URL": webhook.url}
    m = losing_day()
    with ServiceThread(tmp_path, env=env) as svc:
        svc.feed.push(m.until("09:32"))
        engine = svc.node.execution
        svc.on_loop(lambda: engine.on_connection_change(False, "socket closed by peer"))
        code, body = svc.get("/ready")
        assert code == 503 and body["reasons"] == ["execution client disconnected"]
        assert svc.status()["broker_connected"] is False
        hook = webhook.wait_for("broker_disconnected")
        assert hook["alert"]["severity"] == "critical"
        assert hook["alert"]["message"] == "broker paper disconnected: socket closed by peer"
        svc.on_loop(lambda: engine.on_connection_change(False))  # no change: no second alert
        svc.on_loop(lambda: engine.on_connection_change(True))
        hook = webhook.wait_for("broker_reconnected")
        assert hook["alert"]["severity"] == "warning"
        assert svc.get("/ready")[0] == 200
        assert webhook.keys().count("broker_disconnected") == 1


def test_order_rejected_alert(tmp_path: Path, webhook: WebhookReceiver) -> None:
    env = {TOKEN_ENV: TOKEN, "TRADING_ALERT_WEBHOOK_URL": webhook.url}
    m = losing_day()
    with ServiceThread(tmp_path, env=env) as svc:
        svc.feed.push(m.until("09:32"))
        node = svc.node
        [target] = [o for o in node.orders.open_orders.values() if o.request.role.value == "target"]
        cid = target.client_order_id
        # The broker reports a reject for a working order (what a real broker may do at any time).
        svc.on_loop(lambda: node.orders.on_order_event(
            OrderEvent(cid, OrderStatus.REJECTED, node.clock.now_ns(), "venue closed")))
        hook = webhook.wait_for("order_rejected:AAA")
        assert hook["alert"]["severity"] == "warning"
        assert hook["alert"]["message"] == f"order {cid} rejected: venue closed"
        assert cid not in node.orders.open_orders


def test_runner_error_alerts_journals_and_stops_in_error(tmp_path: Path, webhook: WebhookReceiver) -> None:
    env = {TOKEN_ENV: TOKEN, "TRADING_ALERT_WEBHOOK_URL": webhook.url}
    cfg = live_config(active_strategies=["gap_and_go", "tests.kit.live:Boom"])
    m = losing_day()
    m.gapper("BOOM", "09:45")
    with ServiceThread(tmp_path, cfg, env=env) as svc:
        svc.feed.push(m.until("09:30"))
        svc.feed.push_nowait(m.until("09:32", after="09:30"))  # BOOM's 09:31 bar raises
        svc.wait_done()
        with pytest.raises(RunnerError, match="ZeroDivisionError: strategy bug on BOOM") as err:
            svc.stop()
    node = svc.node
    assert node.state.value == "error"
    assert err.value.summary["system_state"] == "error"
    assert err.value.summary["error"] == "ZeroDivisionError: strategy bug on BOOM"
    hook = webhook.wait_for("runner_error")
    assert hook["alert"]["severity"] == "critical" and hook["alert"]["component"] == "service"
    [row] = journal_rows(svc.journal_url, "runner_error")
    assert row["key"] == "ZeroDivisionError" and "strategy bug on BOOM" in row["payload"]["traceback"]
    assert [r["key"] for r in journal_rows(svc.journal_url, "alert")][-1] == "runner_error"
    # Flushed and not closed as if the day had ended: no session_end, no EOD flatten.
    assert journal_rows(svc.journal_url, "session_end")[-1]["session"] == "2024-03-14"


def test_runner_error_exits_non_zero_from_the_cli(tmp_path: Path, webhook: WebhookReceiver) -> None:
    m = losing_day()
    m.gapper("BOOM", "09:45")
    bars = m.csv(tmp_path / "bars.csv")
    cfg = tmp_path / "cfg.yaml"
    cfg.write_text("active_strategies: [gap_and_go, 'tests.kit.live:Boom']\nlog_dir: null\n"
                   "ops: {port: 0}\n")
    journal = f"sqlite:///{tmp_path / 'j.db'}"
    proc = subprocess.run(
        [sys.executable, "-m", "live_runner", "run", "--mode", "paper", "--config", str(cfg),
         "--bars", str(bars), "--speed", "100000", "--journal", journal, "--json"],
        cwd=ROOT, capture_output=True, text=True, timeout=60,
        env={"PATH": "/usr/bin:/bin", "TRADING_ALERT_WEBHOOK_URL": webhook.url})
    assert proc.returncode == 4, proc.stderr[-3000:]
    assert "error: the runner failed: ZeroDivisionError: strategy bug on BOOM" in proc.stderr
    summary = json.loads(proc.stdout)
    assert summary["system_state"] == "error" and summary["bars_processed"] > 0
    assert webhook.wait_for("runner_error")["alert"]["severity"] == "critical"
    assert [r["key"] for r in journal_rows(journal, "runner_error")] == ["ZeroDivisionError"]


@pytest.mark.parametrize("mode", ["down", "hanging"])
def test_a_webhook_that_is_down_or_hangs_does_not_delay_trading(tmp_path: Path, mode: str) -> None:
    hanging = WebhookReceiver(hang=True) if mode == "hanging" else None
    url = hanging.url if hanging else f"http://127.0.0.1:{free_port()}/hook"
    m = losing_day()
    bars = m.csv(tmp_path / "bars.csv")
    cfg = live_config(max_daily_loss_pct=0.005)
    try:
        with ServiceThread(tmp_path, cfg, env={"TRADING_ALERT_WEBHOOK_URL": url}, bars=bars,
                           linger=False) as svc:
            svc.wait_done()
            summary = svc.stop()
        node = svc.node
        assert summary["bars_processed"] == len(m.sorted())
        assert [(t["symbol"], t["exit_reason"]) for t in summary["trades"]] == [("AAA", "stop")]
        assert node.risk.state.value == "reducing"
        stats = node.alerts.stats()
        if mode == "down":
            assert stats["failed"]["webhook"] >= 1 and stats["sent"]["webhook"] == 0
        else:
            assert hanging is not None and hanging.received.is_set()  # the request sat unanswered
            assert stats["sent"]["webhook"] == 0
    finally:
        if hanging is not None:
            hanging.close()
