"""TradingNode: builds the chain from the config, runs sessions, owns the system state.

Hot path, synchronous and allocation-light: DataManager.on_bar -> clock -> broker matching ->
StrategyEngine -> OrderManager (sizing, RiskManager, journal buffer) -> ExecutionEngine.submit.
Everything else (session boundaries, equity marks, commands) happens around it.
"""

from __future__ import annotations

import hashlib
import logging
from datetime import date
from decimal import Decimal
from typing import Callable, Iterable

import orjson

from live_runner.live.brokers import broker_risk_rules, build_client
from live_runner.live.node_operations import NodeOperations
from live_runner.ops.alerts import AlertSink, AlertSystem, LogSink
from live_runner.core.calendar import MarketCalendar, SessionTimes
from live_runner.core.clock import SimClock
from live_runner.core.config import SystemConfig, hhmm
from live_runner.data.data_manager import DataManager
from live_runner.execution.engine import ExecutionEngine
from live_runner.execution.order_manager import OrderManager
from live_runner.persistence.journal import Journal
from live_runner.core.latency import LatencyHistogram
from live_runner.core.models import (
    NANOS_PER_MINUTE, Alert, Bar, OrderRole, Severity, SystemState, TradingState,
)
from live_runner.core.money import money_str
from live_runner.portfolio.performance import PerformanceTracker
from live_runner.portfolio.portfolio import Portfolio
from live_runner.risk.manager import RiskManager
from live_runner.recovery.restore import RestorePlan
from live_runner.risk.rules import RiskLimits
from live_runner.strategies.engine import StrategyEngine
from live_runner.recovery.warmup import Warmup

log = logging.getLogger("live_runner.live.node")
RETIRE_PER_BAR = 32  # the session before's orders folded into the counts per bar (~10 us)

# The settings that shape trading decisions. Endpoints, logging, pacing and storage locations are
# left out, so a restart may point at another log folder or gain a new adapter section.
DECISION_FIELDS = frozenset({
    "account_size", "max_positions", "max_daily_loss_pct", "max_position_size_pct",
    "risk_per_trade_pct", "active_strategies", "flatten_time", "flatten_on_shutdown", "universe",
    "strategies", "paper", "risk", "session_id_prefix", "premarket_start", "afterhours_end",
})


def config_fingerprint(config: SystemConfig) -> str:
    """What a resumed run must share with the original (a different fingerprint diverges at the
    first event, so the resume is refused)."""
    data = config.model_dump(mode="json", include=set(DECISION_FIELDS))
    data["paper"].pop("state_url", None)
    return hashlib.sha256(orjson.dumps(data, option=orjson.OPT_SORT_KEYS)).hexdigest()[:16]


class TradingNode(NodeOperations):
    """The chain for one account; the operator's view and commands are NodeOperations
    (live/node_operations.py)."""

    def __init__(self, config: SystemConfig, journal: Journal, clock: SimClock | None = None,
                 calendar: MarketCalendar | None = None, execution_client: object | None = None,
                 universe: Iterable[str] | None = None,
                 alert_sinks: list[AlertSink] | None = None) -> None:
        self.config = config
        self.state = SystemState.STARTING
        self.clock = clock or SimClock(0)
        self.calendar = calendar or MarketCalendar(premarket_start=config.premarket_start,
                                                   afterhours_end=config.afterhours_end)
        self.journal = journal
        # A writer process's chunks are shipped after each bar (`_on_bar`); a thread's batches
        # are handed off by `append` itself, so replays skip the per-bar call.
        self._ship_due = journal.ship_due if getattr(journal, "writer", "thread") == "process" else None
        self.alerts = AlertSystem(alert_sinks or [LogSink()], self.clock, journal=self._journal_alert)
        start = Decimal(repr(config.account_size))
        self.portfolio = Portfolio(start)
        self.performance = PerformanceTracker(start)
        self.risk = RiskManager(
            RiskLimits(config.max_positions, config.max_position_size_pct, config.max_daily_loss_pct,
                       config.risk.max_orders_per_minute, config.risk.price_collar_pct),
            on_state_change=self._on_trading_state)
        if execution_client is None:
            execution_client = build_client(config.primary_broker, config, calendar=self.calendar,
                                            clock=self.clock.now_ns, continue_log=journal.continued)
        self.execution = ExecutionEngine(execution_client, on_alert=self._alert)  # type: ignore[arg-type]
        self.strategies = StrategyEngine(config, self.portfolio.position_qty, universe)
        self.orders = OrderManager(
            portfolio=self.portfolio, risk=self.risk, execution=self.execution, journal=journal,
            performance=self.performance, clock=self.clock,
            risk_per_trade_pct=config.risk_per_trade_pct,
            max_position_size_pct=config.max_position_size_pct, id_prefix=config.session_id_prefix,
            on_strategy_fill=self.strategies.on_fill,
            on_signal_rejected=self.strategies.on_signal_rejected, on_alert=self._alert,
            on_fault=self._fault, on_reconcile=self._request_reconcile,
            cancel_timeout_s=config.risk.cancel_confirm_timeout_s)
        self.execution.connect(self.orders.on_order_event, self.orders.on_fill, self._fault)
        if config.backup_broker and config.backup_broker != config.primary_broker:
            self.execution.attach_backup(build_client(config.backup_broker, config,
                                                      calendar=self.calendar, clock=self.clock.now_ns))
        for rule in broker_risk_rules(config.risk, self.execution.primary, self.execution.backup):
            self.risk.add_rule(rule)  # e.g. Alpaca's PDT rule
        self.data = DataManager(self.calendar, self._on_bar, self._on_session)
        self.tick_to_order = LatencyHistogram()  # DataManager.on_bar entry -> ExecutionEngine.submit
        self.session: SessionTimes | None = None
        self.session_name = ""
        self._flatten_ns = 0
        self._mark_from = 0
        self._mark_until = 0
        self._next_mark = 0
        self.session_summaries: list[dict] = []
        # Reconcile with the broker once the regenerated prefix (journal and broker) is behind us.
        self._reconcile_due = True
        self.reconciliation_mismatches = 0
        self.faults = 0
        self.on_session_closed: Callable[[dict], None] | None = None
        # Live restart (journal in continue mode): the state read back, and the warm-up.
        self.restored: RestorePlan | None = None
        self.warmup: Warmup | None = None
        self._warm_until: date | None = None
        self.restart_info: dict = {}

    # --- lifecycle -----------------------------------------------------------------------------
    def start(self) -> None:
        self.state = SystemState.RUNNING
        self._replay_commands()
        if self.restored is not None:
            # Orders working when the runner went down: found at the broker, never sent again.
            notional = self.restored.fill_notional
            if self.restored.emergency_stop:
                # The emergency stop asked the broker to cancel these before the crash: their
                # cancels are expected, not a broker cancelling a protective leg on its own.
                self.orders.expect_cancels(self.restored.cancel_asked)
            for cid, order in sorted(self.restored.open_orders.items()):
                self.execution.recover(order.request, filled=order.filled_qty, notional=notional.get(cid))

    # --- live restart --------------------------------------------------------------------------
    def restore_from_journal(self) -> RestorePlan | None:
        """A journal opened in continue mode holds a live session's record: load its state (see
        live_runner.recovery.restore) before the first bar. None when there is nothing to restore."""
        if not self.journal.continued:
            return None
        plan = RestorePlan.from_events(self.journal.stored_events(), Decimal(repr(self.config.account_size)))
        plan.apply(self)
        self.restored = plan
        log.warning("restored from the journal (%d events, session %s%s): %d positions, %d open orders, "
                    "trading state %s", plan.events, plan.session, "" if plan.session_open else " closed",
                    len(plan.positions), len(plan.open_orders), plan.trading_state.value)
        return plan

    def begin_warmup(self, session_date: date | None) -> None:
        """Bars from now until `end_warmup` are history (a feed's seed): they rebuild strategy state
        and trade nothing; sessions before `session_date` are context (previous closes) only."""
        self.warmup = Warmup(self, self.restored)
        self._warm_until = session_date
        self._live_on_bar = self.data.set_bar_sink(self.warmup.on_bar)

    def end_warmup(self) -> dict:
        warmup = self.warmup
        if warmup is None:
            return {}
        info = warmup.finish()
        self.warmup = None
        self._warm_until = None
        self.data.set_bar_sink(self._live_on_bar)
        plan = self.restored
        if plan is not None:
            self.restart_info = {
                "restart": plan.restarts, "journal_events": plan.events, "warmup": info,
                "positions": plan.journal_positions, "open_orders": plan.journal_open_orders,
                "cash": money_str(plan.cash),
                "trading_state": self.risk.state.value, "paused": self.risk.paused}
            self.journal.append(self.session_name or plan.session, max(self.clock.now_ns(), plan.last_ts),
                                "restart", str(plan.restarts), self.restart_info)
            self.alerts.raise_alert("runner_restarted", Severity.WARNING,
                                    f"restarted from the journal (restart {plan.restarts}): positions "
                                    f"{plan.journal_positions or 'none'}, {len(plan.journal_open_orders)} "
                                    f"working orders, warm-up {info['signals'] or 'no signals'}", component="node")
        else:
            self.journal.append(self.session_name, self.clock.now_ns(), "warmup", "", info)
        if self._reconcile_due and not self.journal.resuming and not self.execution.resuming:
            self.reconcile()  # the broker is connected: halt (or adopt) before the first live bar
        return info

    def _replay_commands(self) -> None:
        """Resuming: re-apply the operator commands the journal holds at this point of the stream
        (a pause, a flatten...), so the regenerated run is the one that happened."""
        journal = self.journal
        while (stored := journal.peek()) is not None:
            session, ts, kind, key, payload = stored
            if kind == "command":
                self.command(key, source=payload.get("source", "journal"), symbol=payload.get("symbol", ""))
            elif kind == "alert" and key == "command_not_durable":
                journal.append(session, ts, kind, key, payload)  # the wall clock raised it: as stored
            else:
                return

    def feed(self, bars: Iterable[Bar]) -> None:
        on_bar = self.data.on_bar
        for bar in bars:
            on_bar(bar)

    def stop(self, close_session: bool = True) -> None:
        """Stop and flush the journal. At the end of the data the session is closed (EOD flatten);
        on a shutdown signal it is left open unless `flatten_on_shutdown`, so a restart resumes it."""
        self.begin_stop(close_session)
        self.finish_stop()

    def begin_stop(self, close_session: bool = True) -> bool:
        """The first half of `stop`: send the session's flatten (cancels, then market sells).
        True when the session is being closed, i.e. the caller should wait for it to be flat
        (a real broker confirms and fills over several loop turns) before `finish_stop`."""
        self.state = SystemState.STOPPING
        self._closing = None
        if self.session is not None and (close_session or self.config.flatten_on_shutdown):
            self._closing = self.session
            self.orders.flatten_all(OrderRole.EOD)
            self.execution.end_session(self.clock.now_ns())  # paper: fills them at the last close
            return True
        return False

    def finish_stop(self) -> None:
        """The second half: close the session in the journal (with what the flatten left) and
        flush."""
        closing, self._closing = getattr(self, "_closing", None), None
        if closing is not None:
            self._end_session(closing, flattened=True)
            self.session = None
        self.journal.flush()
        self.state = SystemState.STOPPED

    # --- hot path ------------------------------------------------------------------------------
    def _on_bar(self, bar: Bar) -> None:
        ts = bar.ts
        self.clock.advance_to(ts + NANOS_PER_MINUTE)
        if self._reconcile_due and not self.journal.resuming and not self.execution.resuming:
            self.reconcile()  # before this bar can trade: a mismatch must halt it first
        sym = bar.symbol
        positions = self.portfolio.positions
        # The daily P&L moves only on this symbol's mark or fills; a fill that closes the position
        # (a stop) realizes the loss, so the check also runs when the symbol was held before it.
        held = sym in positions
        self.execution.on_bar(bar)
        self.portfolio.mark(sym, bar.close)
        if sym in positions:
            # The held symbol's price after this bar's fills: the journal's projection (and a
            # dashboard reading it with the runner down) marks the position here, with no lag.
            self.journal.append(self.session_name, ts, "mark", sym, {"close": bar.close})
        signals = self.strategies.on_bar(bar)
        if signals:
            execution = self.execution
            sent = execution.last_submit_ns
            for signal in signals:
                self.orders.on_signal(signal)
            if execution.last_submit_ns != sent:  # the signals caused an order: time it
                self.tick_to_order.record(execution.last_submit_ns - self.data.bar_start_ns)
        if held or sym in positions:
            if ts >= self._flatten_ns and sym in positions:
                self.orders.flatten(sym, OrderRole.EOD)
            if self.risk.check_daily_loss(self.portfolio.daily_pnl(), float(self.portfolio.sod_equity)):
                if self.config.risk.flatten_on_daily_loss:
                    self.orders.flatten_all(OrderRole.MANUAL)
        if ts >= self._next_mark and ts < self._mark_until:
            self._mark_equity(ts)
        if self._reconcile_due and self.journal.resuming:
            self._replay_commands()
        # After the bar's orders are out: the journal's shipping, and the session before's orders
        # a few at a time.
        if self._ship_due is not None:
            self._ship_due()
        if self.orders.retiring:
            self.orders.retire_orders(RETIRE_PER_BAR)

    def reconcile_if_due(self) -> None:
        """Between bars (the live watchdog): a reconciliation asked for by a restart or a fault
        runs as soon as the brokers' lookups are in, not only at the next bar."""
        if self._reconcile_due and self.session is not None and self.warmup is None \
                and not self.journal.resuming and not self.execution.resuming:
            self.reconcile()

    def reconcile(self) -> bool:
        """Adopt the broker's orders under our prefix that the journal lost, then compare our
        positions with the broker's; a difference we cannot explain halts trading."""
        self._reconcile_due = False
        known = self.restored.known_ids if self.restored is not None else frozenset()
        adopted = 0
        for req in self.execution.unclaimed():
            if req.client_order_id not in known and req.client_order_id not in self.orders.orders:
                self.orders.adopt(req)
                self.execution.recover(req)  # claims it: its reports (fills) reach us now
                adopted += 1
        if adopted and self.execution.resuming:
            self._reconcile_due = True  # their fills are still being looked up: compare after
            return True
        ours = {s: p.qty for s, p in sorted(self.portfolio.positions.items())}
        theirs = self.execution.positions()
        if theirs is None or ours == theirs:
            if self.restored is not None and self.restored.emergency_stop:
                # An emergency stop answered 200 is durable: a flatten the crash cut short is
                # finished (a flatten already working is left to fill).
                self.orders.flatten_all(OrderRole.MANUAL)
            elif self.restored is not None:
                self.orders.protect_all()  # a restart: no position stays without its exits
            return True
        diff = {s: {"runner": ours.get(s, 0), "broker": theirs.get(s, 0)}
                for s in sorted(set(ours) | set(theirs)) if ours.get(s, 0) != theirs.get(s, 0)}
        self.reconciliation_mismatches += 1
        self.journal.append(self.session_name, self.clock.now_ns(), "reconciliation", "mismatch",
                            {"diff": diff})
        self.risk.set_state(TradingState.HALTED, "reconciliation mismatch")
        self.alerts.raise_alert("reconciliation_mismatch", Severity.CRITICAL,
                                f"positions differ from the broker's: {diff}", component="node")
        return False

    def _mark_equity(self, ts: int) -> None:
        self._next_mark = ts - ts % NANOS_PER_MINUTE + NANOS_PER_MINUTE
        equity = self.portfolio.equity_decimal()
        self.performance.mark_equity(ts, equity)
        self.journal.append(self.session_name, ts, "equity", "", {
            "equity": money_str(equity), "cash": money_str(self.portfolio.cash),
            "positions": len(self.portfolio.positions)})

    # --- sessions ------------------------------------------------------------------------------
    def _on_session(self, previous: SessionTimes | None, session: SessionTimes) -> None:
        if self._warm_until is not None and session.date < self._warm_until:
            self.strategies.on_session_start(session)  # warm-up context: previous closes only
            return
        if self.session is not None:
            self._end_session(self.session)
        plan = self.restored
        name = session.date.isoformat()
        if plan is not None and plan.session_open and self.session is None and plan.session != name:
            self._close_stale_session(plan)
        self.session = session
        self.session_name = name
        h, m = hhmm(self.config.flatten_time)
        flatten = session.at_et(h, m)
        # On early-close days: five minutes before the close.
        self._flatten_ns = min(flatten, session.close - 5 * NANOS_PER_MINUTE)
        self._mark_from = session.open
        self._next_mark = session.open
        self._mark_until = session.close
        if plan is not None and plan.session_open and plan.session == name:
            # A restart inside the session: its P&L, limits and orders go on where they were.
            plan.session_open = False
            self.orders.start_session(name, session.open, self._flatten_ns, session.close)
            self.orders.set_restart(plan.restarts)
            self.strategies.on_session_start(session)
            return
        self.portfolio.start_session()
        self.performance.start_session(self.portfolio.sod_equity)
        self.risk.start_session()
        self.orders.start_session(self.session_name, session.open, self._flatten_ns, session.close)
        self.strategies.on_session_start(session)
        self.journal.append(self.session_name, session.premarket_open, "session_start", "", {
            "config_sha": self._config_sha(),
            "equity": money_str(self.portfolio.equity_decimal()),
            "early_close": session.early_close, "state": self.risk.state.value})

    def _config_sha(self) -> str:
        """The config's fingerprint, hashed once per config object (it is frozen): ~0.2 ms saved
        in the first bar of every session."""
        cached = self.__dict__.get("_sha_of")
        if cached is None or cached[0] is not self.config:
            cached = self.__dict__["_sha_of"] = (self.config, config_fingerprint(self.config))
        return cached[1]

    def _close_stale_session(self, plan: RestorePlan) -> None:
        """The journal's session never ended (the runner died in it) and a later one has begun:
        close it in the journal as it stood; its positions are carried (no order is sent)."""
        plan.session_open = False
        self.journal.append(plan.session, plan.last_ts, "session_end", "", {
            "date": plan.session, "equity": money_str(self.portfolio.equity_decimal()),
            "realized_pnl": money_str(plan.realized), "commissions": money_str(plan.commissions),
            "positions": sorted(self.portfolio.positions), "universe": [], "closed_by": "restart"})

    def _end_session(self, session: SessionTimes, flattened: bool = False) -> None:
        now = self.clock.now_ns()
        if not flattened:
            self.orders.flatten_all(OrderRole.EOD)
            self.execution.end_session(now)
        self.strategies.on_session_end(session)
        equity = self.portfolio.equity_decimal()
        summary = {
            "date": self.session_name, "equity": money_str(equity),
            "realized_pnl": money_str(self.portfolio.realized),
            "commissions": money_str(self.portfolio.commissions),
            "positions": sorted(self.portfolio.positions),
            "universe": self.strategies.universe_snapshot(),
            # premarket symbols without the previous session's close: refused by the gap scan
            "prev_close_missing": self.strategies.prev_close_missing(),
        }
        self.journal.append(self.session_name, max(now, session.close), "session_end", "", summary)
        # To the writer now, without waiting for it: this runs inside the next session's first
        # bar (the hot path); `stop` flushes, and a crash loses at most the bar in flight.
        self.journal.hand_off()
        self.session_summaries.append(summary)
        if self.on_session_closed is not None:
            self.on_session_closed(summary)

    # --- commands and alerts -------------------------------------------------------------------
    def _on_trading_state(self, old: TradingState, new: TradingState, reason: str) -> None:
        self.journal.append(self.session_name, self.clock.now_ns(), "trading_state", new.value,
                            {"from": old.value, "reason": reason})
        severity = "critical" if new is not TradingState.ACTIVE else "info"
        self._alert(f"trading_state:{new.value}", severity, f"trading state {old.value} -> {new.value}: {reason}")

    def _journal_alert(self, alert: Alert) -> None:
        self.journal.append(self.session_name, alert.ts, "alert", alert.key, {
            "severity": alert.severity.value, "message": alert.message, "component": alert.component})

    def _fault(self, key: str, message: str) -> None:
        """Fail closed: a broker report the runner could not apply (or an account state it
        cannot explain) halts new entries, pages, and has positions compared with the broker's
        before the next bar trades. Protective exits and flattening still pass while HALTED."""
        self.faults += 1
        if self.risk.state is not TradingState.HALTED:
            self.risk.set_state(TradingState.HALTED, message)
        self.alerts.raise_alert(key, Severity.CRITICAL, message, component="execution")
        self._reconcile_due = True

    def _request_reconcile(self) -> None:
        self._reconcile_due = True

    def _alert(self, key: str, severity: str, message: str) -> None:
        self.alerts.raise_alert(key, Severity(severity), message, component="node")
