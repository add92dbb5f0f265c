"""Prometheus metrics for GET /metrics, read from the runner's own state at scrape time.

Nothing is recorded for Prometheus on the hot path: the chain keeps the plain counters it needs
anyway (bars processed, rejections and denials by reason, orders and fills), orders carry their
status (the order manager folds the final ones into `closed_before` when it forgets them at a
session start), and the only additions to the hot path are two perf_counter_ns stamps and the
node's tick-to-order `LatencyHistogram.record` per signal bar (bench/metrics_overhead.py).
`RunnerCollector` turns that state into metric families when a scrape arrives. A scrape runs on
the event loop between bars, so it reads a consistent state without locks (about a millisecond,
exported as `trading_metrics_render_seconds`).

Metrics (the sketch's names first; all counters are cumulative over the process's life):
  trading_trades_total{strategy,side,status}       counter: orders sent to the broker that reached a
      final status (filled, canceled, rejected, expired), by strategy and side (buy/sell). An order
      canceled after a partial fill counts as canceled. Risk denials never reach the broker: see
      trading_risk_denials_total.
  trading_trade_duration_seconds{strategy}          histogram: closed round trips, exit - entry fill.
  trading_account_equity_dollars                    gauge: cash + positions at their last price
      (the /status "equity", exact to the cent).
  trading_positions_count                           untyped: open positions. The sketch's name ends in
      `_count`, which Prometheus reserves for histograms and summaries on typed metrics (promtool
      rejects it on a gauge), so it is declared untyped (queried exactly like a gauge).
  trading_daily_pnl_dollars                         gauge: equity - start-of-session equity.
  trading_system_errors_total{component,error_type} counter: alert deliveries given up and alerts
      dropped (alert_system), duplicate broker fills (order_manager), journal writer failure and
      resume divergence (journal, 0/1), ops requests that failed with a 500 (ops_server, by
      exception type), the error that stopped the run (service, by exception type).
  trading_tick_to_order_latency_seconds             histogram: per signal bar that caused an order,
      DataManager.on_bar entry -> ExecutionEngine.submit (the last submit of the bar).
  trading_risk_denials_total{reason}                counter, every reason code present from 0.
  trading_orders_total{status}                      counter: orders submitted, and orders that reached
      each final status (filled/canceled/rejected/expired); the chosen "orders by status" metric.
  trading_open_orders{status}                       gauge: working orders by current status.
  trading_fills_total                               counter: broker fills applied.
  trading_feed_staleness_seconds{feed}              gauge: wall seconds since the feed last delivered
      a bar (since the service started, before the first bar). Per live data client (primary and
      backup of live_runner.live.feeds) when the runner has a live feed, else one "replay" feed.
  trading_feed_connected{feed}, trading_feed_active{feed}   gauges 1/0.
  trading_broker_connected{broker}, trading_broker_active{broker}   gauges 1/0.
  trading_bars_processed_total, trading_bars_rejected_total{reason}  counters.
  trading_journal_queue_depth                       gauge: events appended, not yet written.
  trading_journal_events_written_total              counter.
  trading_alerts_sent_total{sink}, trading_alerts_failed_total{sink}, trading_alerts_dropped_total,
  trading_alerts_suppressed_total (counters), trading_alert_queue_depth (gauge).
  trading_component_heartbeat_age_seconds{component}, trading_component_healthy{component} (1/0),
  trading_ready (1/0, as GET /ready).
  trading_system_state{state}, trading_trading_state{state}   one-hot enum gauges (1 = current).
  trading_realized_pnl_dollars, trading_unrealized_pnl_dollars, trading_account_cash_dollars.
  process_* from prometheus_client's ProcessCollector (own registry, so no global state).
"""

from __future__ import annotations

import time
from collections import Counter
from typing import Any, Iterator

from prometheus_client import CollectorRegistry, ProcessCollector, generate_latest
from prometheus_client.core import (
    CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric, UnknownMetricFamily,
)
from prometheus_client.registry import Collector
from prometheus_client.utils import floatToGoString

from live_runner.data import data_manager as D
from live_runner.core.models import OrderStatus, SystemState, TradingState
from live_runner.risk import rules as R

TRADE_DURATION_BOUNDS_S: tuple[float, ...] = (
    30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 14400, 23400)  # 23400 s: a regular session
FINAL_STATUSES = (OrderStatus.FILLED, OrderStatus.CANCELED, OrderStatus.REJECTED, OrderStatus.EXPIRED)
OPEN_STATUSES = (OrderStatus.NEW, OrderStatus.SUBMITTED, OrderStatus.ACCEPTED,
                 OrderStatus.PARTIALLY_FILLED)
BAR_REJECT_REASONS = (D.NAN, D.NON_POSITIVE_PRICE, D.NEGATIVE_VOLUME, D.HIGH_BELOW_LOW,
                      D.OPEN_OUTSIDE_RANGE, D.CLOSE_OUTSIDE_RANGE, D.OUT_OF_ORDER, D.DUPLICATE,
                      D.OUTSIDE_SESSION)
# Every reason code of the risk rules (exported from 0, so that rate() sees the first denial).
DENIAL_REASONS = tuple(sorted(getattr(R, "REASON_CODES", None)
                              or (v for k, v in vars(R).items() if k.isupper() and v == k)))
FIXED_ERRORS = (("alert_system", "delivery_failed"), ("alert_system", "dropped"),
                ("order_manager", "duplicate_fill"), ("journal", "divergence"),
                ("journal", "writer_failed"))
NS = 1e9


def _counter(name: str, doc: str, labels: list[str], values: dict[tuple[str, ...], float]) -> Metric:
    fam = CounterMetricFamily(name, doc, labels=labels)
    for key in sorted(values):
        fam.add_metric(list(key), values[key])
    return fam


def _gauge(name: str, doc: str, value: float | None = None, labels: list[str] | None = None,
           values: dict[tuple[str, ...], float] | None = None) -> Metric:
    fam = GaugeMetricFamily(name, doc, value=value, labels=labels)
    for key in sorted(values or {}):
        fam.add_metric(list(key), values[key])  # type: ignore[index]
    return fam


def _one_hot(name: str, doc: str, states: Any, current: Any) -> Metric:
    return _gauge(name, doc, labels=["state"],
                  values={(s.value,): 1.0 if s is current else 0.0 for s in states})


class _Buckets:
    """Cumulative histogram state kept by the collector (for series it derives incrementally)."""

    __slots__ = ("counts", "total")

    def __init__(self, n: int) -> None:
        self.counts = [0] * (n + 1)
        self.total = 0.0


class RunnerCollector(Collector):
    """Builds every runner metric family from the service's state when collected."""

    def __init__(self, service: Any, feed_name: str = "replay") -> None:
        self.service = service
        self.node = service.node
        self.feed_name = getattr(service, "feed_name", None) or feed_name
        self._durations: dict[str, _Buckets] = {}
        self._trades_seen = 0
        started = getattr(service, "started", None)  # time.perf_counter() at service start
        since = time.perf_counter() - started if started is not None else 0.0
        self._started_ns = time.perf_counter_ns() - int(since * NS)
        self._started_mono = time.monotonic() - since

    def collect(self) -> Iterator[Metric]:
        yield from self._trading()
        yield from self._orders()
        yield from self._data_and_risk()
        yield from self._operations()
        yield from self._breaches()

    # --- the sketch's metrics ------------------------------------------------------------------
    def _trading(self) -> Iterator[Metric]:
        node = self.node
        pf = node.portfolio
        closed = self._final_statuses()
        yield _counter("trading_trades_total",
                       "Orders sent to the broker that reached a final status, by strategy, side "
                       "and status (filled, canceled, rejected, expired).",
                       ["strategy", "side", "status"],
                       {(st, side.value, status.value): n for (st, side, status), n in closed.items()})
        yield self._trade_durations()
        yield _gauge("trading_account_equity_dollars",
                     "Account equity: cash plus open positions at their last price.",
                     float(pf.equity_decimal()))
        yield UnknownMetricFamily("trading_positions_count",
                                  "Open positions (a gauge; untyped because of the sketch's _count name).",
                                  value=len(pf.positions))
        yield _gauge("trading_daily_pnl_dollars", "P&L since the start of the session (realized, "
                     "net of commissions, plus unrealized).", pf.daily_pnl())
        yield _gauge("trading_realized_pnl_dollars", "Realized P&L of the session, net of commissions.",
                     float(pf.realized))
        yield _gauge("trading_unrealized_pnl_dollars", "Unrealized P&L of the open positions.",
                     pf.unrealized())
        yield _gauge("trading_account_cash_dollars", "Cash.", float(pf.cash))
        yield _counter("trading_system_errors_total", "Errors the runner survived, by component "
                       "and error type.", ["component", "error_type"], self._errors())

    def _final_statuses(self) -> Counter:
        """(strategy, side, status) -> orders in a final status: those the order manager forgot at
        session starts (its `closed_before`) plus those of the current session. Counted here, at
        scrape time, so that closing an order costs the hot path nothing."""
        om = self.node.orders
        if hasattr(om, "retire_orders"):
            om.retire_orders()  # the session before's orders the bars have not folded in yet
        counts = Counter(getattr(om, "closed_before", ()))
        for o in om.orders.values():
            if o.status in FINAL_STATUSES:
                req = o.request
                counts[(req.strategy, req.side, o.status)] += 1
        return counts

    def _trade_durations(self) -> Metric:
        perf = self.node.performance
        if perf.trade_count < self._trades_seen:  # the tracker was reset: count on from its start
            self._trades_seen = 0
        n = len(TRADE_DURATION_BOUNDS_S)
        for t in perf.trades_from(self._trades_seen):
            seconds = max(t.exit_ts - t.entry_ts, 0) / NS
            b = self._durations.get(t.strategy)
            if b is None:
                b = self._durations[t.strategy] = _Buckets(n)
            i = 0
            while i < n and seconds > TRADE_DURATION_BOUNDS_S[i]:
                i += 1
            b.counts[i] += 1
            b.total += seconds
        self._trades_seen = perf.trade_count
        fam = HistogramMetricFamily("trading_trade_duration_seconds",
                                    "Closed round trips: exit fill time minus entry fill time.",
                                    labels=["strategy"])
        for strategy in sorted(self._durations):
            b = self._durations[strategy]
            fam.add_metric([strategy], _cumulative(TRADE_DURATION_BOUNDS_S, b.counts), b.total)
        return fam

    def _breaches(self) -> Iterator[Metric]:
        yield CounterMetricFamily(
            "trading_daily_loss_limit_breaches",
            "Times the daily loss limit moved the trading state to REDUCING.",
            value=self.node.risk.daily_loss_breaches)

    def _errors(self) -> dict[tuple[str, ...], float]:
        node, journal = self.node, self.node.journal
        alerts = node.alerts
        errors: dict[tuple[str, ...], float] = {
            ("alert_system", "delivery_failed"): sum(alerts.failed.values()),
            ("alert_system", "dropped"): alerts.dropped,
            ("order_manager", "duplicate_fill"): node.orders.duplicate_fills,
            ("journal", "divergence"): int(journal.divergence is not None),
            ("journal", "writer_failed"): int(getattr(journal, "_error", None) is not None),
            ("reconciliation", "mismatch"): node.reconciliation_mismatches,
        }
        failure = getattr(self.service, "_failure", None)  # the exception that stopped the run
        if failure is not None:
            errors[("service", type(failure).__name__)] = 1
        server = getattr(self.service, "server", None)
        for error_type, count in (getattr(server, "errors", None) or {}).items():
            errors[("ops_server", error_type)] = count
        return errors

    # --- orders --------------------------------------------------------------------------------
    def _orders(self) -> Iterator[Metric]:
        node = self.node
        om = node.orders
        lat = node.tick_to_order
        yield HistogramMetricFamily(
            "trading_tick_to_order_latency_seconds",
            "Per signal bar that caused an order: DataManager.on_bar entry to ExecutionEngine.submit.",
            buckets=_cumulative(tuple(b / NS for b in lat.bounds_ns), lat.counts),
            sum_value=lat.sum_ns / NS)
        by_status: dict[tuple[str, ...], float] = {(s.value,): 0 for s in FINAL_STATUSES}
        for (_, _, status), n in self._final_statuses().items():
            by_status[(status.value,)] = by_status.get((status.value,), 0) + n
        by_status[("submitted",)] = om.orders_submitted
        yield _counter("trading_orders_total", "Orders submitted, and orders that reached each final "
                       "status.", ["status"], by_status)
        working: dict[tuple[str, ...], float] = {(s.value,): 0 for s in OPEN_STATUSES}
        for order in om.open_orders.values():
            key = (order.status.value,)
            working[key] = working.get(key, 0) + 1
        yield _gauge("trading_open_orders", "Working orders by status.", labels=["status"],
                     values=working)
        yield CounterMetricFamily("trading_fills_total", "Broker fills applied.", value=om.fills)

    # --- data, risk, states --------------------------------------------------------------------
    def _data_and_risk(self) -> Iterator[Metric]:
        node = self.node
        data = node.data
        denials = {(r,): 0 for r in DENIAL_REASONS}
        denials.update({(r,): n for r, n in node.risk.denials.items()})
        yield _counter("trading_risk_denials_total", "Orders refused by the risk manager, by reason "
                       "code.", ["reason"], denials)
        yield CounterMetricFamily("trading_bars_processed_total",
                                  "Bars that passed validation and went through the chain.",
                                  value=data.bars_processed)
        rejected = {(r,): 0 for r in BAR_REJECT_REASONS}
        rejected.update({(r,): n for r, n in data.rejected.items()})
        yield _counter("trading_bars_rejected_total", "Bars rejected by the DataManager, by reason.",
                       ["reason"], rejected)
        yield from self._feeds()
        ex = node.execution
        connected: dict[tuple[str, ...], float] = {}
        active: dict[tuple[str, ...], float] = {}
        for client in (ex.primary, ex.backup):
            if client is None:
                continue
            name = (str(getattr(client, "name", type(client).__name__)),)
            state = getattr(ex, "connected", True) if client is ex.active else True
            connected[name] = float(bool(getattr(client, "connected", state)))
            active[name] = float(client is ex.active)
        yield _gauge("trading_broker_connected", "Execution client connected (1) or not (0).",
                     labels=["broker"], values=connected)
        yield _gauge("trading_broker_active", "The execution client orders go to (1).",
                     labels=["broker"], values=active)
        yield _one_hot("trading_system_state", "System state (1 = current).", SystemState, node.state)
        yield _one_hot("trading_trading_state", "Trading state of the risk manager (1 = current).",
                       TradingState, node.risk.state)

    def _feeds(self) -> Iterator[Metric]:
        """Per feed: the live clients of a DataFeed (primary, backup) when there is one, else the
        replay feed, timed by the DataManager's own stamp of its latest bar."""
        stale: dict[tuple[str, ...], float] = {}
        connected: dict[tuple[str, ...], float] = {}
        active: dict[tuple[str, ...], float] = {}
        feed = getattr(self.service, "data_feed", None)
        if feed is not None:
            now = time.monotonic()
            for client in (feed.primary, feed.backup):
                if client is None:
                    continue
                key = (str(client.name),)
                last = getattr(client, "last_bar_at", 0.0) or self._started_mono
                stale[key] = max(now - last, 0.0)
                connected[key] = float(getattr(client.state, "value", client.state) == "live")
                active[key] = float(client is feed.active)
        else:
            last_ns = getattr(self.node.data, "bar_start_ns", 0) or self._started_ns
            key = (self.feed_name,)
            stale[key] = max(time.perf_counter_ns() - last_ns, 0) / NS
            connected[key] = active[key] = 1.0
        yield _gauge("trading_feed_staleness_seconds", "Wall seconds since the feed last delivered a "
                     "bar (since the runner started, before its first bar).", labels=["feed"],
                     values=stale)
        yield _gauge("trading_feed_connected", "Data feed connected (1) or not (0).",
                     labels=["feed"], values=connected)
        yield _gauge("trading_feed_active", "The data feed bars come from (1).", labels=["feed"],
                     values=active)

    # --- operations ----------------------------------------------------------------------------
    def _operations(self) -> Iterator[Metric]:
        node = self.node
        journal, alerts = node.journal, node.alerts
        yield _gauge("trading_journal_queue_depth", "Journal events appended but not yet written.",
                     journal.pending)
        yield CounterMetricFamily("trading_journal_events_written_total",
                                  "Journal events written to the database.", value=journal.written)
        yield _counter("trading_alerts_sent_total", "Alerts delivered, by sink.", ["sink"],
                       {(k,): v for k, v in alerts.sent.items()})
        yield _counter("trading_alerts_failed_total", "Alert deliveries given up after retries, by "
                       "sink.", ["sink"], {(k,): v for k, v in alerts.failed.items()})
        yield CounterMetricFamily("trading_alerts_dropped_total", "Alerts dropped (queue full or "
                                  "closed).", value=alerts.dropped)
        yield CounterMetricFamily("trading_alerts_suppressed_total", "Alerts suppressed by the "
                                  "per-key rate limit.", value=alerts.suppressed)
        yield _gauge("trading_alert_queue_depth", "Alerts waiting for delivery.", alerts.queue_depth)
        health = getattr(self.service, "health", None)
        if health is not None:
            comps = health.system_health()["components"]
            yield _gauge("trading_component_heartbeat_age_seconds", "Seconds since the component's "
                         "last heartbeat.", labels=["component"],
                         values={(n,): float(h["heartbeat_age_s"]) for n, h in comps.items()})
            yield _gauge("trading_component_healthy", "Component healthy (1) or not (0).",
                         labels=["component"],
                         values={(n,): float(bool(h["is_healthy"])) for n, h in comps.items()})
        readiness = getattr(self.service, "readiness", None)
        if readiness is not None:
            yield _gauge("trading_ready", "1 when GET /ready answers 200.", float(readiness()[0]))


def _cumulative(bounds: tuple[float, ...], counts: list[int]) -> list[tuple[str, float]]:
    out, running = [], 0
    for bound, n in zip(bounds + (float("inf"),), counts):
        running += n
        out.append((floatToGoString(bound), running))
    return out


class RunnerMetrics:
    """The /metrics endpoint's registry: the runner collector (plus process metrics)."""

    def __init__(self, service: Any, process_metrics: bool = True) -> None:
        self.registry = CollectorRegistry(auto_describe=False)
        self.collector = RunnerCollector(service)
        self.registry.register(self.collector)
        if process_metrics:
            ProcessCollector(registry=self.registry)
        self.last_render_s = 0.0
        self.registry.register(_RenderTime(self))

    def render(self) -> bytes:
        """The Prometheus text format (0.0.4) of every metric, as of now."""
        t0 = time.perf_counter()
        out = generate_latest(self.registry)
        self.last_render_s = time.perf_counter() - t0
        return out


class _RenderTime(Collector):
    def __init__(self, metrics: RunnerMetrics) -> None:
        self.metrics = metrics

    def collect(self) -> Iterator[Metric]:
        yield GaugeMetricFamily("trading_metrics_render_seconds",
                                "Time the previous /metrics render took on the event loop.",
                                value=self.metrics.last_render_s)
