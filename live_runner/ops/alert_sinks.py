"""Alert sinks: where an operator alert is delivered (log, Slack-compatible webhook, SMTP email),
and which sinks the environment asks for. `deliver` runs on the alert worker thread
(live_runner.ops.alerts), so blocking I/O here never delays a bar or an order."""

from __future__ import annotations

import json
import logging
import smtplib
import ssl
import urllib.request
from collections.abc import Mapping, Sequence
from datetime import datetime, timezone
from email.message import EmailMessage
from typing import Any, Protocol, runtime_checkable

from live_runner.core.models import NANOS_PER_SECOND, Alert, Severity

logger = logging.getLogger("live_runner.ops.alerts")


@runtime_checkable
class AlertSink(Protocol):
    """A delivery channel. `deliver` runs on the alert worker thread and raises on failure."""

    name: str

    def deliver(self, alert: Alert) -> None: ...


_LOG_LEVELS = {Severity.INFO: logging.INFO, Severity.WARNING: logging.WARNING,
               Severity.CRITICAL: logging.CRITICAL}
_SLACK_COLORS = {Severity.INFO: "#439FE0", Severity.WARNING: "warning", Severity.CRITICAL: "danger"}


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
