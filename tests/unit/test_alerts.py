"""AlertSystem and sinks against real servers on 127.0.0.1 (HTTP webhook receiver, aiosmtpd)."""

from __future__ import annotations

import json
import logging
import socket
import threading
from collections.abc import Callable, Iterator
from email import message_from_bytes
from email.message import Message
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from aiosmtpd.controller import Controller

from live_runner.ops.alerts import (
    AlertSystem,
    EmailSink,
    LogSink,
    WebhookSink,
    sinks_from_env,
)
from live_runner.core.models import NANOS_PER_SECOND, Alert, Severity

T0 = 1_700_000_000 * NANOS_PER_SECOND
FAST = {"backoff_s": 0.001}


@pytest.fixture(autouse=True)
def _no_proxy(monkeypatch: pytest.MonkeyPatch) -> None:
    """urllib honours *_proxy env vars; the webhook receiver is local."""
    for var in ("http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY", "all_proxy", "ALL_PROXY"):
        monkeypatch.delenv(var, raising=False)


class FakeClock:
    def __init__(self, ns: int = T0) -> None:
        self.ns = ns

    def now_ns(self) -> int:
        return self.ns

    def advance(self, seconds: float) -> None:
        self.ns += int(seconds * NANOS_PER_SECOND)


class RecordingSink:
    def __init__(self, name: str) -> None:
        self.name = name
        self.alerts: list[Alert] = []

    def deliver(self, alert: Alert) -> None:
        self.alerts.append(alert)


class WebhookServer:
    """ThreadingHTTPServer on port 0; `behaviour(n)` returns the status for the n-th request."""

    def __init__(self, behaviour: Callable[[int], int] = lambda n: 200) -> None:
        self.bodies: list[dict[str, Any]] = []
        self.statuses: list[int] = []
        self.started = threading.Event()
        self.release = threading.Event()
        self.responded = threading.Event()
        self.delay_s = 0.0
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 (http.server API)
                body = self.rfile.read(int(self.headers["Content-Length"]))
                outer.started.set()
                if outer.delay_s:
                    # A slow receiver: up to delay_s, released early by the test once checked.
                    outer.release.wait(outer.delay_s)
                status = behaviour(len(outer.statuses))
                outer.bodies.append(json.loads(body))
                outer.statuses.append(status)
                outer.responded.set()  # before writing: the client may return as soon as it reads
                self.send_response(status)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/hook"
        self.thread = threading.Thread(target=self.httpd.serve_forever, args=(0.05,), daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.release.set()
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def webhook() -> Iterator[WebhookServer]:
    server = WebhookServer()
    yield server
    server.close()


def make_system(sinks: list[Any], clock: FakeClock | None = None, **kw: Any) -> AlertSystem:
    return AlertSystem(sinks, clock or FakeClock(), **{**FAST, **kw})


def test_webhook_receives_slack_compatible_json(webhook: WebhookServer) -> None:
    log = RecordingSink("log")
    system = make_system([log, WebhookSink(webhook.url)])
    assert system.raise_alert("feed_stale", Severity.WARNING, "no bars for 90s", "data", symbol="AAPL")
    assert system.flush(5)
    assert len(webhook.bodies) == 1
    body = webhook.bodies[0]
    assert "feed_stale" in body["text"] and "no bars for 90s" in body["text"]
    assert "WARNING" in body["text"]
    alert = body["alert"]
    assert alert["key"] == "feed_stale"
    assert alert["severity"] == "warning"
    assert alert["message"] == "no bars for 90s"
    assert alert["component"] == "data"
    assert alert["data"] == {"symbol": "AAPL"}
    assert alert["ts"] == "2023-11-14T22:13:20+00:00"
    assert system.sent == {"log": 1, "webhook": 1}
    assert system.failed == {"log": 0, "webhook": 0}
    assert len(log.alerts) == 1
    system.close(1)


def test_webhook_500_twice_then_200_is_delivered_after_retries() -> None:
    server = WebhookServer(lambda n: 500 if n < 2 else 200)
    events: list[tuple[str, str]] = []
    try:
        system = make_system([WebhookSink(server.url)], on_metric=lambda e, s: events.append((e, s)))
        system.raise_alert("k", Severity.CRITICAL, "boom")
        assert system.flush(5)
        assert server.statuses == [500, 500, 200]
        assert system.sent["webhook"] == 1
        assert system.failed["webhook"] == 0
        assert events.count(("retry", "webhook")) == 2
        assert ("sent", "webhook") in events
        system.close(1)
    finally:
        server.close()


def test_webhook_gives_up_after_max_retries() -> None:
    server = WebhookServer(lambda n: 503)
    try:
        system = make_system([WebhookSink(server.url)], max_retries=2)
        system.raise_alert("k", Severity.CRITICAL, "boom")
        assert system.flush(5)
        assert len(server.statuses) == 3
        assert system.sent["webhook"] == 0
        assert system.failed["webhook"] == 1
        system.close(1)
    finally:
        server.close()


def _refused_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]  # closed on exit: nothing listens there


def test_webhook_down_counts_failed_and_other_sinks_still_deliver() -> None:
    log = RecordingSink("log")
    url = f"http://127.0.0.1:{_refused_port()}/hook"
    system = make_system([log, WebhookSink(url, timeout_s=1)], max_retries=1)
    assert system.raise_alert("k", Severity.WARNING, "broker disconnected")
    assert system.flush(5)
    assert system.failed["webhook"] == 1
    assert system.sent == {"log": 1, "webhook": 0}
    assert len(log.alerts) == 1
    system.close(1)


def test_raise_alert_returns_before_slow_webhook_responds() -> None:
    server = WebhookServer()
    server.delay_s = 2.0
    try:
        system = make_system([WebhookSink(server.url)])
        assert system.raise_alert("k", Severity.CRITICAL, "slow receiver")
        # raise_alert is back while the receiver has not answered yet.
        assert not server.responded.is_set()
        assert server.started.wait(5)  # the worker's request is in flight ...
        assert not server.responded.is_set()  # ... and still unanswered
        assert system.queue_depth == 0
        server.release.set()
        assert system.flush(5)
        assert server.responded.is_set()
        assert system.sent["webhook"] == 1
        system.close(1)
    finally:
        server.close()


def test_rate_limit_per_key_with_fake_clock() -> None:
    clock = FakeClock()
    sink = RecordingSink("log")
    events: list[tuple[str, str]] = []
    system = make_system(
        [sink], clock, min_interval_s=60, on_metric=lambda e, s: events.append((e, s))
    )
    assert system.raise_alert("a", Severity.WARNING, "first")
    clock.advance(30)
    assert not system.raise_alert("a", Severity.WARNING, "suppressed")
    assert system.raise_alert("b", Severity.WARNING, "other key is independent")
    clock.advance(29.999)
    assert not system.raise_alert("a", Severity.WARNING, "still inside the interval")
    clock.advance(0.001)  # 60 s after the last delivered "a"
    assert system.raise_alert("a", Severity.WARNING, "after the interval")
    assert not system.raise_alert("b", Severity.WARNING, "b's window runs from its own alert")
    assert system.flush(5)
    assert [a.message for a in sink.alerts] == [
        "first", "other key is independent", "after the interval",
    ]
    assert system.suppressed == 3
    assert system.suppressed_by_key == {"a": 2, "b": 1}
    assert events.count(("suppressed", "")) == 3
    assert [a.message for a in system.recent] == [a.message for a in sink.alerts]
    system.close(1)


def test_repeats_are_limited_on_the_rate_clock_while_the_market_clock_stands_still() -> None:
    """A live run's market clock moves only with bars: with a dead feed it stands still (repeats
    were suppressed for ever) and between bars alerts a minute apart looked 60 s apart (a
    condition flapping once a minute paged every minute). The rate clock is monotonic time."""
    market = FakeClock()
    seconds = [0.0]
    sink = RecordingSink("log")
    system = make_system([sink], market, min_interval_s=60)
    system.rate_clock = lambda: seconds[0]
    sent = []
    for second in range(0, 1801):  # 30 minutes of a condition re-raised every second
        seconds[0] = float(second)
        if second % 60 == 0:
            market.advance(60)  # a bar now and then: the market clock jumps a minute
        sent.append(system.raise_alert("unhealthy:data_manager", Severity.CRITICAL, f"t={second}",
                                       min_interval_s=600))
    assert [i for i, ok in enumerate(sent) if ok] == [0, 600, 1200, 1800]
    assert system.suppressed_by_key["unhealthy:data_manager"] == 1797
    assert system.flush(5) and [a.message for a in sink.alerts] == ["t=0", "t=600", "t=1200", "t=1800"]
    # the alerts keep their market-time stamps (the journal's time); only the limit is monotonic
    assert [a.ts for a in sink.alerts] == [T0 + s * NANOS_PER_SECOND for s in (60, 660, 1260, 1860)]
    system.close(1)


def test_critical_is_rate_limited_with_a_sixth_of_the_interval() -> None:
    clock = FakeClock()
    system = make_system([RecordingSink("log")], clock, min_interval_s=60)
    assert system.raise_alert("halt", Severity.CRITICAL, "1")
    clock.advance(9)
    assert not system.raise_alert("halt", Severity.CRITICAL, "2")
    clock.advance(1)
    assert system.raise_alert("halt", Severity.CRITICAL, "3")
    clock.advance(10)
    assert not system.raise_alert("halt", Severity.WARNING, "warning keeps the full interval")
    system.close(1)


def test_routing_info_is_not_sent_to_webhook(webhook: WebhookServer) -> None:
    log, mail = RecordingSink("log"), RecordingSink("email")
    system = make_system([log, WebhookSink(webhook.url), mail])
    system.raise_alert("i", Severity.INFO, "info")
    assert system.flush(5)
    assert webhook.bodies == [] and len(log.alerts) == 1 and mail.alerts == []
    system.raise_alert("w", Severity.WARNING, "warn")
    assert system.flush(5)
    assert len(webhook.bodies) == 1 and len(log.alerts) == 2 and mail.alerts == []
    system.raise_alert("c", Severity.CRITICAL, "crit")
    assert system.flush(5)
    assert len(webhook.bodies) == 2 and len(log.alerts) == 3 and len(mail.alerts) == 1
    assert system.sent == {"log": 3, "webhook": 2, "email": 1}
    system.close(1)


def test_custom_routes_and_unknown_sink_rejected() -> None:
    log, mail = RecordingSink("log"), RecordingSink("email")
    system = make_system([log, mail], routes={Severity.INFO: {"email"}})
    system.raise_alert("i", Severity.INFO, "info")
    assert system.flush(5)
    assert len(mail.alerts) == 1 and log.alerts == []
    system.close(1)
    with pytest.raises(ValueError):
        make_system([log], routes={Severity.INFO: {"pager"}})
    with pytest.raises(ValueError):
        make_system([log, RecordingSink("log")])


def test_full_queue_drops_without_blocking_and_journal_sees_accepted_alerts() -> None:
    gate = threading.Event()
    entered = threading.Event()

    class BlockingSink(RecordingSink):
        def deliver(self, alert: Alert) -> None:
            entered.set()
            gate.wait(5)
            super().deliver(alert)

    journaled: list[Alert] = []
    sink = BlockingSink("log")
    system = make_system([sink], queue_size=1, journal=journaled.append)
    assert system.raise_alert("a", Severity.INFO, "in flight")
    assert entered.wait(5)  # the worker holds "a"; the queue is empty again
    assert system.raise_alert("b", Severity.INFO, "queued")
    assert not system.raise_alert("c", Severity.INFO, "dropped")
    assert system.dropped == 1
    assert [a.key for a in journaled] == ["a", "b", "c"]
    assert not system.flush(0.05)
    gate.set()
    assert system.flush(5)
    assert [a.key for a in sink.alerts] == ["a", "b"]
    assert system.close(1)
    assert not system.raise_alert("d", Severity.INFO, "after close")
    assert system.dropped == 2


def test_failing_journal_does_not_break_raise_alert() -> None:
    def journal(alert: Alert) -> None:
        raise RuntimeError("db down")

    sink = RecordingSink("log")
    system = make_system([sink], journal=journal)
    assert system.raise_alert("k", Severity.INFO, "still delivered")
    assert system.flush(5) and len(sink.alerts) == 1
    system.close(1)


def test_close_stops_worker_and_stats_snapshot() -> None:
    system = make_system([RecordingSink("log")])
    system.start()
    system.raise_alert("k", Severity.WARNING, "m", qty=5)
    assert system.close(5)
    assert system._worker is not None and not system._worker.is_alive()
    stats = system.stats()
    assert stats["sent"] == {"log": 1} and stats["dropped"] == 0 and stats["queue_depth"] == 0
    assert stats["recent"][0]["data"] == {"qty": "5"}


def test_log_sink_levels(caplog: pytest.LogCaptureFixture) -> None:
    sink = LogSink()
    with caplog.at_level(logging.INFO, logger="live_runner.ops.alerts"):
        for sev in Severity:
            sink.deliver(Alert(f"k_{sev.value}", sev, "msg", T0, "risk", (("x", "1"),)))
    levels = [(r.name, r.levelno) for r in caplog.records]
    assert levels == [
        ("live_runner.ops.alerts", logging.INFO),
        ("live_runner.ops.alerts", logging.WARNING),
        ("live_runner.ops.alerts", logging.CRITICAL),
    ]
    assert "k_critical" in caplog.records[2].getMessage()
    assert "x=1" in caplog.records[2].getMessage()


class _CollectingHandler:
    def __init__(self) -> None:
        self.envelopes: list[Any] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # noqa: N802
        self.envelopes.append(envelope)
        return "250 Message accepted for delivery"


class _PortZeroController(Controller):
    """aiosmtpd's readiness probe connects to `self.port`; read the real port after binding 0."""

    def _trigger_server(self) -> None:
        self.port = self.server.sockets[0].getsockname()[1]
        super()._trigger_server()


@pytest.fixture
def smtp_server() -> Iterator[tuple[_PortZeroController, _CollectingHandler]]:
    handler = _CollectingHandler()
    controller = _PortZeroController(handler, hostname="127.0.0.1", port=0)
    controller.start()
    yield controller, handler
    controller.stop()


def test_email_through_real_smtp_server(smtp_server: tuple[Any, _CollectingHandler]) -> None:
    controller, handler = smtp_server
    sink = EmailSink("127.0.0.1", controller.port, "bot@example.com", ["ops@example.com", "b@x.io"])
    system = make_system([RecordingSink("log"), sink])
    system.raise_alert("daily_loss", Severity.CRITICAL, "daily loss limit hit", "risk", pnl=-1500)
    assert system.flush(10)
    assert system.sent["email"] == 1
    assert len(handler.envelopes) == 1
    env = handler.envelopes[0]
    assert env.mail_from == "bot@example.com"
    assert sorted(env.rcpt_tos) == ["b@x.io", "ops@example.com"]
    msg: Message = message_from_bytes(env.content)
    assert msg["Subject"] == "[CRITICAL] daily_loss"
    body = msg.get_payload(decode=True).decode()
    assert "daily loss limit hit" in body
    assert "pnl: -1500" in body and "component: risk" in body
    system.close(1)


def test_sinks_from_env() -> None:
    assert [s.name for s in sinks_from_env({})] == ["log"]
    sinks = sinks_from_env(
        {
            "TRADING_ALERT_WEBHOOK_URL": "https://hooks.example/T/B/X",
            "TRADING_ALERT_SMTP_HOST": "smtp.example",
            "TRADING_ALERT_SMTP_USER": "u",
            "TRADING_ALERT_SMTP_PASSWORD": "p",
            "TRADING_ALERT_EMAIL_FROM": "bot@example.com",
            "TRADING_ALERT_EMAIL_TO": "a@example.com, b@example.com,",
            "TRADING_ALERT_SMTP_STARTTLS": "true",
        }
    )
    assert [s.name for s in sinks] == ["log", "webhook", "email"]
    web, mail = sinks[1], sinks[2]
    assert isinstance(web, WebhookSink) and web.url == "https://hooks.example/T/B/X"
    assert isinstance(mail, EmailSink)
    assert mail.port == 587 and mail.starttls
    assert mail.recipients == ["a@example.com", "b@example.com"]
    assert (mail.username, mail.password) == ("u", "p")
    partial = sinks_from_env({"TRADING_ALERT_SMTP_HOST": "h", "TRADING_ALERT_SMTP_PORT": "2525"})
    assert [s.name for s in partial] == ["log"]
