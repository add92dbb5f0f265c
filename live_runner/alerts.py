"""Operator alerts: severity routing, per-key rate limiting and non-blocking delivery.

`AlertSystem.raise_alert` is called from the trading path (the asyncio loop), so it only does
in-memory work (rate limit, `recent` ring, optional journal callback, `put_nowait`). Delivery to
sinks (log, Slack-compatible webhook, SMTP email) happens on one daemon worker thread, where
blocking I/O, retries and backoff sleeps cannot delay a bar or an order.
"""

from __future__ import annotations

import json
import logging
import queue
import smtplib
import ssl
import threading
import time
import urllib.request
from collections import deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import datetime, timezone
from email.message import EmailMessage
from typing import Any, Protocol, runtime_checkable

from live_runner.models import NANOS_PER_SECOND, Alert, Severity

logger = logging.getLogger("live_runner.alerts")

_LOG_LEVELS = {Severity.INFO: logging.INFO, Severity.WARNING: logging.WARNING,
               Severity.CRITICAL: logging.CRITICAL}
_SLACK_COLORS = {Severity.INFO: "#439FE0", Severity.WARNING: "warning", Severity.CRITICAL: "danger"}
# CRITICAL alerts are rate limited too (a flapping critical condition must not flood the pager),
# but with a six times shorter interval so that a recurring critical problem stays visible.
CRITICAL_INTERVAL_DIVISOR = 6
RECENT_SIZE = 100
_PRUNE_THRESHOLD = 4096  # per-key rate-limit entries kept before stale ones are pruned


class SupportsNowNs(Protocol):
    """The part of the injected Clock the alert system needs (LiveClock or SimClock)."""

    def now_ns(self) -> int: ...


@runtime_checkable
class AlertSink(Protocol):
    """A delivery channel. `deliver` runs on the alert worker thread and raises on failure."""

    name: str

    def deliver(self, alert: Alert) -> None: ...


def iso_ts(ts_ns: int) -> str:
    """UTC ISO-8601 of an epoch-ns timestamp (microsecond precision), for humans at the edge."""
    seconds, nanos = divmod(ts_ns, NANOS_PER_SECOND)
    dt = datetime.fromtimestamp(seconds, tz=timezone.utc).replace(microsecond=nanos // 1000)
    return dt.isoformat()


def alert_to_dict(alert: Alert) -> dict[str, Any]:
    """JSON-friendly view of an alert, shared by the webhook payload and /status."""
    return {"key": alert.key, "severity": alert.severity.value, "message": alert.message,
            "ts": iso_ts(alert.ts), "ts_ns": alert.ts, "component": alert.component,
            "data": dict(alert.data)}


class LogSink:
    """Python logging: always routable, so every alert leaves a trace even with the network down."""

    def __init__(self, name: str = "log", logger_: logging.Logger | None = None) -> None:
        self.name = name
        self._logger = logger_ or logger

    def deliver(self, alert: Alert) -> None:
        extra = ([("component", alert.component)] if alert.component else []) + list(alert.data)
        tail = "".join(f" {k}={v}" for k, v in extra)
        sev = alert.severity.value.upper()
        context = {"component": alert.component or "alert_system",
                   "client_order_id": dict(alert.data).get("client_order_id", "")}
        self._logger.log(_LOG_LEVELS[alert.severity], "ALERT [%s] %s: %s%s", sev, alert.key,
                         alert.message, tail, extra=context)


class WebhookSink:
    """POSTs Slack-compatible JSON (`text`, `attachments`) plus a machine-readable `alert`."""

    def __init__(self, url: str, timeout_s: float = 5.0, name: str = "webhook") -> None:
        self.name, self.url, self.timeout_s = name, url, timeout_s

    @staticmethod
    def payload(alert: Alert) -> dict[str, Any]:
        text = f"[{alert.severity.value.upper()}] {alert.key}: {alert.message}"
        fields = [{"title": k, "value": v, "short": True} for k, v in alert.data]
        if alert.component:
            fields.insert(0, {"title": "component", "value": alert.component, "short": True})
        attachment = {"color": _SLACK_COLORS[alert.severity], "fields": fields,
                      "footer": iso_ts(alert.ts)}
        return {"text": text, "attachments": [attachment], "alert": alert_to_dict(alert)}

    def deliver(self, alert: Alert) -> None:
        body = json.dumps(self.payload(alert)).encode("utf-8")
        headers = {"Content-Type": "application/json; charset=utf-8"}
        req = urllib.request.Request(self.url, data=body, headers=headers, method="POST")
        # urlopen raises HTTPError for 4xx/5xx; other non-2xx (e.g. an unfollowed 3xx) raise here.
        with urllib.request.urlopen(req, timeout=self.timeout_s) as resp:
            resp.read()
            if not 200 <= resp.status < 300:
                raise RuntimeError(f"webhook {self.url} returned HTTP {resp.status}")


SMTP_TLS_MODES = ("starttls", "ssl", "none")
_SMTP_DEFAULT_PORT = {"starttls": 587, "ssl": 465, "none": 25}


class SmtpPlaintextLogin(RuntimeError):
    """Credentials would cross the network in clear text: refused before connecting."""


class EmailSink:
    """SMTP email; credentials come from the caller (env vars), never from config files.

    `tls`: "starttls" (upgrade, usually port 587), "ssl" (SMTPS, implicit TLS, port 465) or "none"
    (a local relay without login). A login is only ever sent inside TLS: with "none" and a username
    every delivery fails with SmtpPlaintextLogin (the other sinks still deliver), and a server that
    does not offer STARTTLS is refused by smtplib before the login. `cafile` trusts a private CA."""

    def __init__(
        self, host: str, port: int, sender: str, recipients: Sequence[str],
        username: str | None = None, password: str | None = None, starttls: bool = False,
        timeout_s: float = 10, name: str = "email", tls: str | None = None,
        cafile: str | None = None,
    ) -> None:
        if not recipients:
            raise ValueError("EmailSink needs at least one recipient")
        tls = tls or ("starttls" if starttls else "ssl" if port == 465 else "none")
        if tls not in SMTP_TLS_MODES:
            raise ValueError(f"SMTP tls must be one of {', '.join(SMTP_TLS_MODES)}, got {tls!r}")
        self.name = name
        self.host, self.port = host, port
        self.sender, self.recipients = sender, list(recipients)
        self.username, self.password = username, password
        self.tls, self.cafile = tls, cafile
        self.starttls, self.timeout_s = tls == "starttls", timeout_s

    @property
    def refusal(self) -> str | None:
        """Why this sink will not deliver (a login without TLS), or None."""
        if self.username and self.tls == "none":
            return (f"refusing to send SMTP credentials to {self.host}:{self.port} in clear text: "
                    f"set TRADING_ALERT_SMTP_TLS=starttls (port 587) or ssl (port 465)")
        return None

    def build_message(self, alert: Alert) -> EmailMessage:
        msg = EmailMessage()
        msg["Subject"] = f"[{alert.severity.value.upper()}] {alert.key}"
        msg["From"] = self.sender
        msg["To"] = ", ".join(self.recipients)
        lines = [alert.message, "", f"time: {iso_ts(alert.ts)}"]
        if alert.component:
            lines.append(f"component: {alert.component}")
        lines.extend(f"{k}: {v}" for k, v in alert.data)
        msg.set_content("\n".join(lines) + "\n")
        return msg

    def deliver(self, alert: Alert) -> None:
        if (refusal := self.refusal) is not None:
            raise SmtpPlaintextLogin(refusal)
        msg = self.build_message(alert)
        context = ssl.create_default_context(cafile=self.cafile)
        if self.tls == "ssl":
            smtp: smtplib.SMTP = smtplib.SMTP_SSL(self.host, self.port, timeout=self.timeout_s,
                                                  context=context)
        else:
            smtp = smtplib.SMTP(self.host, self.port, timeout=self.timeout_s)
        with smtp:
            if self.tls == "starttls":
                smtp.starttls(context=context)  # SMTPNotSupportedError when not offered: no login
            if self.username:
                smtp.login(self.username, self.password or "")
            smtp.send_message(msg, from_addr=self.sender, to_addrs=self.recipients)


def smtp_tls_mode(environ: Mapping[str, str], has_login: bool, port: int | None) -> str:
    """TRADING_ALERT_SMTP_TLS, else the older TRADING_ALERT_SMTP_STARTTLS=true, else SMTPS on
    port 465, STARTTLS when there is a login, plain only for a relay without one."""
    mode = environ.get("TRADING_ALERT_SMTP_TLS", "").strip().lower()
    if mode:
        return mode
    if _truthy(environ.get("TRADING_ALERT_SMTP_STARTTLS", "")):
        return "starttls"
    if port == 465:
        return "ssl"
    return "starttls" if has_login else "none"


def _truthy(value: str) -> bool:
    return value.strip().lower() in {"1", "true", "yes", "on"}


def sinks_from_env(environ: Mapping[str, str]) -> list[AlertSink]:
    """Build sinks from TRADING_ALERT_* variables: log always, webhook/email when configured."""
    sinks: list[AlertSink] = [LogSink()]
    url = environ.get("TRADING_ALERT_WEBHOOK_URL", "").strip()
    if url:
        sinks.append(WebhookSink(url))
    host = environ.get("TRADING_ALERT_SMTP_HOST", "").strip()
    sender = environ.get("TRADING_ALERT_EMAIL_FROM", "").strip()
    to = environ.get("TRADING_ALERT_EMAIL_TO", "").split(",")
    recipients = [r.strip() for r in to if r.strip()]
    if host and sender and recipients:
        port_s = environ.get("TRADING_ALERT_SMTP_PORT", "").strip()
        user = environ.get("TRADING_ALERT_SMTP_USER") or None
        password = environ.get("TRADING_ALERT_SMTP_PASSWORD") or None
        tls = smtp_tls_mode(environ, bool(user), int(port_s) if port_s else None)
        port = int(port_s) if port_s else _SMTP_DEFAULT_PORT.get(tls, 25)
        email = EmailSink(host, port, sender, recipients, user, password, tls=tls,
                          cafile=environ.get("TRADING_ALERT_SMTP_CAFILE") or None)
        if email.refusal:
            logger.error("email alerts will fail: %s", email.refusal)
        sinks.append(email)
    elif host or sender or recipients:
        logger.warning("email alerts disabled: TRADING_ALERT_SMTP_HOST, TRADING_ALERT_EMAIL_FROM"
                       " and TRADING_ALERT_EMAIL_TO are all required")
    return sinks


_STOP = object()


class AlertSystem:
    """Rate-limits, records and routes alerts; one daemon thread delivers them to the sinks.

    Rate limiting is per key, measured from the last accepted alert with that key: an alert inside
    `min_interval_s` is suppressed (counted in `suppressed`). CRITICAL alerts use
    `min_interval_s / 6` (the interval of the incoming alert's severity applies, so an escalation
    to CRITICAL gets through sooner); a caller that re-raises a lasting condition passes its own
    `min_interval_s`. The limit is measured on `rate_clock` (monotonic seconds) when set, else on
    the injected clock: a live run sets it, because its market clock moves only with bars (so
    alerts a minute apart looked far apart, and with a dead feed time stood still). Accepted alerts go to `recent`, to `journal`, then
    to a bounded queue; on a full queue the alert is dropped (`dropped`) rather than blocking.

    Default routing: INFO -> "log", WARNING -> "log" + "webhook", CRITICAL -> every sink. A
    `routes` mapping overrides this per severity (sink names); severities it omits keep the default.
    """

    def __init__(
        self,
        sinks: Iterable[AlertSink],
        clock: SupportsNowNs,
        min_interval_s: float = 60.0,
        routes: Mapping[Severity, set[str]] | None = None,
        queue_size: int = 1000,
        max_retries: int = 3,
        backoff_s: float = 0.5,
        journal: Callable[[Alert], None] | None = None,
        on_metric: Callable[[str, str], None] | None = None,
    ) -> None:
        self.sinks: dict[str, AlertSink] = {}
        for sink in sinks:
            if sink.name in self.sinks:
                raise ValueError(f"duplicate alert sink name {sink.name!r}")
            self.sinks[sink.name] = sink
        self.clock = clock
        self.interval_ns = int(min_interval_s * NANOS_PER_SECOND)
        self.critical_interval_ns = self.interval_ns // CRITICAL_INTERVAL_DIVISOR
        self.routes = self._build_routes(routes)
        self.max_retries, self.backoff_s = max_retries, backoff_s
        self.journal, self.on_metric = journal, on_metric
        self.recent: deque[Alert] = deque(maxlen=RECENT_SIZE)
        self.sent: dict[str, int] = {name: 0 for name in self.sinks}
        self.failed: dict[str, int] = {name: 0 for name in self.sinks}
        self.dropped = self.suppressed = 0
        self.suppressed_by_key: dict[str, int] = {}
        self._last_ns: dict[str, int] = {}
        self.rate_clock: Callable[[], float] | None = None
        self._queue: queue.Queue[Any] = queue.Queue(maxsize=queue_size)
        self._lock = threading.Lock()
        self._idle = threading.Condition(self._lock)
        self._pending = 0  # accepted alerts not yet fully delivered (queue + in flight)
        self._abort = threading.Event()
        self._closed = False
        self._worker: threading.Thread | None = None

    def _build_routes(
        self, routes: Mapping[Severity, set[str]] | None
    ) -> dict[Severity, frozenset[str]]:
        names = set(self.sinks)
        default = {
            Severity.INFO: frozenset({"log"} & names),
            Severity.WARNING: frozenset({"log", "webhook"} & names),
            Severity.CRITICAL: frozenset(names),
        }
        for sev, wanted in (routes or {}).items():
            unknown = set(wanted) - names
            if unknown:
                raise ValueError(f"route for {Severity(sev).value}: unknown sinks {unknown}")
            default[Severity(sev)] = frozenset(wanted)
        return default

    def raise_alert(
        self, key: str, severity: Severity | str, message: str, component: str = "",
        min_interval_s: float | None = None, **data: object
    ) -> bool:
        """Never blocks (safe on the trading path); True if the alert was queued for delivery."""
        severity = Severity(severity)
        now = self.clock.now_ns()
        if min_interval_s is not None:
            interval = int(min_interval_s * NANOS_PER_SECOND)
        else:
            interval = self.critical_interval_ns if severity is Severity.CRITICAL else self.interval_ns
        rate_clock = self.rate_clock
        rate_now = int(rate_clock() * NANOS_PER_SECOND) if rate_clock is not None else now
        with self._lock:
            last = self._last_ns.get(key)
            if last is not None and 0 <= rate_now - last < interval:
                self.suppressed += 1
                self.suppressed_by_key[key] = self.suppressed_by_key.get(key, 0) + 1
                suppressed = True
            else:
                suppressed = False
                self._last_ns[key] = rate_now
                if len(self._last_ns) > _PRUNE_THRESHOLD:
                    self._prune(rate_now)
        if suppressed:
            self._metric("suppressed", "")
            return False
        pairs = tuple((str(k), str(v)) for k, v in data.items())
        alert = Alert(key, severity, message, now, component, pairs)
        with self._lock:
            self.recent.append(alert)
        if self.journal is not None:
            try:
                self.journal(alert)
            except Exception:  # the journal must not take the trading path down with it
                logger.exception("alert journal callback failed for %s", key)
                self._metric("journal_error", "")
        return self._enqueue(alert)

    def _prune(self, now: int) -> None:
        """Forget keys whose rate-limit window has passed, so unbounded key sets cannot leak."""
        self._last_ns = {k: t for k, t in self._last_ns.items() if 0 <= now - t < self.interval_ns}

    def _enqueue(self, alert: Alert) -> bool:
        with self._lock:
            accepted = not self._closed
            try:
                if accepted:
                    self._queue.put_nowait(alert)
                    self._pending += 1
            except queue.Full:
                accepted = False
            self.dropped += not accepted
        if not accepted:
            logger.error("alert dropped (queue full or closed): %s %s", alert.key, alert.message)
            self._metric("dropped", "")
            return False
        self._metric("queued", "")
        if self._worker is None:
            self._ensure_worker()
        return True

    def start(self) -> None:
        """Start the delivery thread now (otherwise the first queued alert starts it)."""
        self._ensure_worker()

    def _ensure_worker(self) -> None:
        with self._lock:
            if self._worker is None:
                self._worker = threading.Thread(target=self._run, name="alert-worker", daemon=True)
                self._worker.start()

    def _run(self) -> None:
        while True:
            item = self._queue.get()
            if item is _STOP:
                return
            try:
                if self._abort.is_set():
                    with self._lock:
                        self.dropped += 1
                    self._metric("dropped", "")
                else:
                    for name in sorted(self.routes[item.severity]):
                        self._deliver(self.sinks[name], item)
            finally:
                with self._lock:
                    self._pending -= 1
                    self._idle.notify_all()
            if self._abort.is_set() and self._queue.empty():
                return  # closed after a timed-out flush: nothing more can arrive

    def _deliver(self, sink: AlertSink, alert: Alert) -> None:
        """Try 1 + max_retries times with exponential backoff, then count a failure for the sink."""
        for attempt in range(self.max_retries + 1):
            try:
                sink.deliver(alert)
            except Exception as exc:
                if attempt >= self.max_retries or self._abort.is_set():
                    logger.error("alert %s not delivered to %s after %d attempt(s): %r",
                                 alert.key, sink.name, attempt + 1, exc)
                    with self._lock:
                        self.failed[sink.name] += 1
                    self._metric("failed", sink.name)
                    return
                self._metric("retry", sink.name)
                # Event.wait instead of time.sleep so close() can cut a long backoff short.
                self._abort.wait(self.backoff_s * (2**attempt))
            else:
                with self._lock:
                    self.sent[sink.name] += 1
                self._metric("sent", sink.name)
                return

    def _metric(self, event: str, sink: str) -> None:
        if self.on_metric is not None:
            try:
                self.on_metric(event, sink)
            except Exception:
                logger.exception("alert on_metric hook failed")

    @property
    def queue_depth(self) -> int:
        return self._queue.qsize()

    def flush(self, timeout_s: float = 5.0) -> bool:
        """Wait until every queued alert has been delivered or given up on; False on timeout."""
        deadline = time.monotonic() + timeout_s
        with self._idle:
            while self._pending:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self._idle.wait(remaining)
        return True

    def close(self, timeout_s: float = 5.0) -> bool:
        """Flush, then stop the worker; alerts still queued after the timeout are dropped."""
        with self._lock:
            self._closed = True  # no new alerts from here on
        flushed = self.flush(timeout_s)
        if not flushed:
            self._abort.set()
        worker = self._worker
        if worker is not None:
            try:
                self._queue.put(_STOP, timeout=1.0)
            except queue.Full:
                pass  # aborted worker exits by itself once it has dropped what is queued
            worker.join(max(timeout_s, 0.1) if flushed else 1.0)
        return flushed

    def stats(self) -> dict[str, Any]:
        """Snapshot of counters and recent alerts for /status."""
        with self._lock:
            return {"sent": dict(self.sent), "failed": dict(self.failed),
                    "dropped": self.dropped, "suppressed": self.suppressed,
                    "queue_depth": self._queue.qsize(),
                    "recent": [alert_to_dict(a) for a in self.recent]}
