"""The live service's health: the ops probes (/health, /ready) and the once-a-second watchdog.

Mixed into LiveService (live/service.py): beats on the components' behalf from their progress,
judges the data feed and the journal, and alerts on what is unhealthy.
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING, Any, Callable

from live_runner.core.models import Severity, SystemState, TradingState

if TYPE_CHECKING:
    from live_runner.core.config import SystemConfig
    from live_runner.live.feeds import DataFeed
    from live_runner.live.health import HealthMonitor
    from live_runner.live.node import TradingNode
    from live_runner.persistence.journal import Journal

log = logging.getLogger("live_runner.live.service")


class HealthChecks:
    """LiveService's probes and watchdog (the attributes below are the service's)."""

    config: SystemConfig
    node: TradingNode
    journal: Journal
    health: HealthMonitor
    data_feed: DataFeed | None
    feed_done: bool
    error: str | None
    _last_bars: int
    _feed_alerted: bool
    _bar_due: float | None
    _check_lease: Callable[[], None]  # LeaseFencing's

    def health_check(self) -> tuple[bool, dict[str, Any]]:
        age = self.health.age("event_loop")
        ok = age <= self.config.ops.heartbeat_allowance_s
        return ok, {"status": "ok" if ok else "stalled", "event_loop_heartbeat_age_s": round(age, 3),
                    "system_state": self.node.state.value}

    def readiness(self) -> tuple[bool, dict[str, Any]]:
        reasons = []
        if self.node.calendar is None:
            reasons.append("calendar not loaded")
        if self.journal.closed:
            reasons.append("journal closed")
        if self.feed_done:
            reasons.append("data feed finished")
        if not self.node.execution.connected:
            reasons.append("execution client disconnected")
        if self.data_feed is not None and not self.data_feed.connected:
            reasons.append("data feed disconnected")
        if self.node.state is SystemState.ERROR:
            reasons.append(f"runner error: {self.error}")
        system = self.health.system_health()
        reasons += [f"{name} unhealthy" for name in system["unhealthy"]]  # type: ignore[union-attr]
        return not reasons, {"ready": not reasons, "reasons": reasons}

    async def _watchdog(self, stop: asyncio.Event) -> None:
        """Once a second: `check_health`."""
        while not stop.is_set():
            self.check_health()
            try:
                await asyncio.wait_for(stop.wait(), timeout=1.0)
            except asyncio.TimeoutError:
                pass

    def check_health(self) -> None:
        """Beat on the components' behalf from their progress; alert on what is unhealthy (every
        call while it lasts: the alert system's per-key limit decides how often that pages)."""
        h = self.health
        node = self.node
        h.beat("event_loop")
        self._check_lease()
        for name in ("strategy_engine", "risk_manager", "order_manager", "performance_tracker"):
            h.beat(name)  # synchronous parts of the chain: alive whenever the loop turns
        execution = node.execution
        h.beat("execution_engine", f"{getattr(execution.active, 'name', 'broker')} "
                                   f"{'connected' if execution.connected else 'DISCONNECTED'}")
        self._check_data()
        self._check_journal()
        node.reconcile_if_due()
        h.beat("alert_system", f"queue {node.alerts.queue_depth}")
        system = h.system_health()
        for name in system["unhealthy"]:  # type: ignore[union-attr]
            detail = system["components"][name]["detail"]  # type: ignore[index]
            node.alerts.raise_alert(f"unhealthy:{name}", Severity.CRITICAL,
                                    f"component {name} unhealthy for {h.age(name):.0f} s"
                                    + (f": {detail}" if detail else ""), component=name,
                                    min_interval_s=self.config.ops.alert_repeat_s)

    def _check_data(self) -> None:
        """A quiet feed is not a dead one: a live feed is judged by its connection and whether a
        bar is overdue (DataFeed.liveness); a paced file is alive while it waits for a bar's time."""
        h, node = self.health, self.node
        progressed = node.data.bars_processed != self._last_bars
        self._last_bars = node.data.bars_processed
        if self.feed_done:
            h.beat("data_manager", "feed finished")
            return
        if self.data_feed is not None:
            alive, detail = self.data_feed.liveness()
            h.report("data_manager", alive, f"{detail}; {self._last_bars} bars")
            return
        due = self._bar_due
        waiting = due is not None and h.now() <= due + self.config.ops.heartbeat_allowance_s
        if progressed or waiting:
            h.beat("data_manager", f"{self._last_bars} bars")
            self._feed_alerted = False
        elif h.age("data_manager") > self.config.ops.feed_stale_after_s and not self._feed_alerted:
            self._feed_alerted = True
            node.alerts.raise_alert("feed_stale", Severity.WARNING,
                                    f"no bar for {h.age('data_manager'):.0f} s", component="data_manager")

    def _check_journal(self) -> None:
        """A journal that cannot write stops new risk: REDUCING (exits only) and a CRITICAL alert.
        The loop never waits for it (journal hand-offs and flushes do not block on the database)."""
        journal, node = self.journal, self.node
        if not journal.closed:
            journal.hand_off()  # events appended between bars (alerts, commands) wait at most a second
        problem = journal.health()
        if problem is None:
            self.health.beat("journal", f"{journal.written} written, {journal.pending} pending")
            return
        # CRITICAL `unhealthy:journal` follows from check_health's loop, with this detail.
        self.health.report("journal", False, f"cannot write ({journal.pending} events pending): {problem}")
        if node.risk.state is TradingState.ACTIVE:
            node.risk.set_state(TradingState.REDUCING, f"journal unhealthy: {problem}")
