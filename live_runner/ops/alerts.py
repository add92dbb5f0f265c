"""Operator alerts: severity routing, per-key rate limiting and non-blocking delivery.

`AlertSystem.raise_alert` is called from the trading path (the asyncio loop), so it only does
in-memory work (rate limit, `recent` ring, optional journal callback, `put_nowait`). Delivery to
sinks (log, Slack-compatible webhook, SMTP email) happens on one daemon worker thread, where
blocking I/O, retries and backoff sleeps cannot delay a bar or an order.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from typing import Any, Protocol

from live_runner.ops.alert_sinks import (  # the sinks' names stay importable from here
    SMTP_TLS_MODES, AlertSink, EmailSink, LogSink, SmtpPlaintextLogin, WebhookSink, alert_to_dict, iso_ts,
    sinks_from_env, smtp_tls_mode,
)
from live_runner.core.models import NANOS_PER_SECOND, Alert, Severity

logger = logging.getLogger("live_runner.ops.alerts")
__all__ = ["AlertSink", "AlertSystem", "EmailSink", "LogSink", "SMTP_TLS_MODES", "SmtpPlaintextLogin",
           "WebhookSink", "alert_to_dict", "iso_ts", "sinks_from_env", "smtp_tls_mode"]

# CRITICAL alerts are rate limited too (a flapping critical condition must not flood the pager),
# but with a six times shorter interval so that a recurring critical problem stays visible.
CRITICAL_INTERVAL_DIVISOR = 6
RECENT_SIZE = 100
_PRUNE_THRESHOLD = 4096  # per-key rate-limit entries kept before stale ones are pruned


class SupportsNowNs(Protocol):
    """The part of the injected Clock the alert system needs (LiveClock or SimClock)."""

    def now_ns(self) -> int: ...


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

    def set_journal(self, journal: Callable[[Alert], None] | None) -> None:
        """Where accepted alerts are journaled from now on (None: nowhere, e.g. once this runner
        lost its lease and a successor may be appending to the journal)."""
        self.journal = journal

    def set_rate_clock(self, rate_clock: Callable[[], float] | None) -> None:
        """The monotonic seconds the rate limit is measured on (None: the injected clock)."""
        self.rate_clock = rate_clock

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
