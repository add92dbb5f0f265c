"""Runs one seeded race session: a TradingNode wired to a simulated broker on one SimClock, fed a
tick-level price path (the broker matches on ticks, the runner gets the 1-minute bars), with the
plan's entries, trims and operator commands at their moments, then a shutdown or the close, a
settling period, and the end-of-session agreement check. The checker runs after every event."""

from __future__ import annotations

import logging
import random
from collections import Counter, deque
from contextlib import contextmanager
from typing import Any, Iterator

from functools import lru_cache

from live_runner.core.calendar import MarketCalendar
from live_runner.core.clock import SimClock
from live_runner.core.config import SystemConfig, parse_config
from live_runner.core.models import Alert, Bar
from live_runner.live.node import TradingNode

from tests.kit.broker_sim import AlpacaSim, IbSim, SimBroker
from tests.kit.race.checker import Checker, RaceViolation, RecordingJournal
from tests.kit.race.plan import TICK_NS, TICKS_PER_MINUTE, Action, SessionPlan, make_plan
from tests.kit.race.strategy import IMPORT_PATH

BROKERS = {"alpaca": AlpacaSim, "ibkr": IbSim}
_S = 1_000_000_000


class _QuietSink:
    """Alerts are read from the journal; nothing to deliver."""

    name = "log"

    def deliver(self, alert: Alert) -> None:
        return None


@lru_cache(maxsize=None)
def _config(flatten_on_shutdown: bool) -> SystemConfig:
    """Parsed once: a frozen config is shared by every session."""
    return parse_config({"active_strategies": [IMPORT_PATH], "flatten_on_shutdown": flatten_on_shutdown})


@lru_cache(maxsize=None)
def _calendar() -> MarketCalendar:
    config = _config(False)
    return MarketCalendar(premarket_start=config.premarket_start, afterhours_end=config.afterhours_end)


class Session:
    """One race session, kept for inspection after it ran (regression tests read its parts)."""

    def __init__(self, plan: SessionPlan) -> None:
        self.plan = plan
        self.clock = SimClock(plan.start_ns)
        self.sim: SimBroker = BROKERS[plan.broker](self.clock, random.Random(plan.seed * 7919 + 1), plan.params)
        self.journal = RecordingJournal("sqlite://", self.clock)
        self.node = TradingNode(_config(plan.shutdown == "sigterm_flatten"), self.journal, clock=self.clock,
                                calendar=_calendar(), execution_client=self.sim, universe=plan.symbols, alert_sinks=[_QuietSink()])  # type: ignore[list-item]
        self.checker = Checker(plan.seed, plan.broker, self.sim, self.node, self.journal, plan.symbols)
        self.sim.observer = self.checker.event
        self.stopped = False
        self.node.start()
        self.strategy: Any = self.node.strategies.by_name["race"]

    def tick_ns(self, i: int) -> int:
        return self.plan.start_ns + i * TICK_NS

    def tick(self, i: int) -> None:
        """The market at tick i: timers due by then fire first, then the prints."""
        self.clock.advance_to(self.tick_ns(i))
        for sym in self.plan.symbols:
            self.sim.on_tick(sym, self.plan.prices[sym][i])
        self.checker.event(f"tick {i} " + " ".join(f"{s}={self.plan.prices[s][i]}" for s in self.plan.symbols))

    def bars(self, minute: int) -> None:
        """The minute's bars (built from its ticks) reach the runner at the minute's end."""
        ts = self.plan.start_ns + minute * TICKS_PER_MINUTE * TICK_NS
        out = []
        for sym in self.plan.symbols:
            p = self.plan.prices[sym][minute * TICKS_PER_MINUTE:(minute + 1) * TICKS_PER_MINUTE]
            out.append(Bar(sym, ts, p[0], max(p), min(p), p[-1], 10_000.0))
        self.node.feed(out)
        self.checker.event(f"bars of minute {minute}")

    def act(self, action: Action) -> None:
        node, kind, sym = self.node, action.kind, action.symbol
        if kind == "entry" and not self.stopped:
            self.strategy.queue(sym, action.a, action.b)
        elif kind == "trim" and not self.stopped:
            qty = int(node.portfolio.position_qty(sym) * action.a)
            if qty >= 1:
                node.orders.trim(sym, qty)
        elif kind == "flatten" and not self.stopped:
            node.command("flatten", source="race", symbol=sym)
        elif kind == "flatten_all" and not self.stopped:
            node.command("flatten", source="race")
        elif kind == "emergency_stop" and not self.stopped:
            node.command("emergency_stop", source="race")
        elif kind == "shutdown" and not self.stopped:
            node.stop(close_session=self.plan.shutdown == "data_end")
            self.stopped = True
        self.checker.event(f"driver: {kind} {sym}".rstrip())

    def run(self) -> Counter[str]:
        plan = self.plan
        actions = deque(plan.actions)
        n = len(plan.prices[plan.symbols[0]])
        try:
            for i in range(n):
                self.tick(i)
                while actions and actions[0].tick <= i:
                    self.act(actions.popleft())
                minute, edge = divmod(i + 1, TICKS_PER_MINUTE)
                if edge == 0 and minute <= plan.minutes and not self.stopped:
                    self.bars(minute - 1)
                    if plan.to_close and minute == plan.minutes:  # the 15:59 bar ends at the close
                        self.sim.close_market()
                        self.checker.event("16:00 close: day orders expired")
                        self.node.stop(close_session=True)
                        self.stopped = True
                        self.checker.event("runner stopped at the close")
                        break
            self.clock.advance_to(self.clock.now_ns() + 180 * _S)  # reports still on their way
            self.checker.finish(reached_close=plan.to_close)
        except RaceViolation:
            raise
        except Exception as exc:  # the runner (or the kit) raised: a failure with its seed
            self.checker.trace.append((self.clock.now_ns(), f"RAISED {type(exc).__name__}: {exc}"))
            try:
                self.checker.fail("the runner never raises", f"{type(exc).__name__}: {exc}")
            except RaceViolation as violation:
                raise violation from exc
        finally:
            self.node.alerts.close(0.5)
            self.journal.close()
        stats = Counter(self.sim.stats)
        stats.update(sessions=1, invariant_checks=self.checker.checks, events=self.checker.index)
        return stats


def run_session(seed: int, broker: str) -> Counter[str]:
    """One session's counts; raises RaceViolation."""
    return Session(make_plan(seed, broker)).run()


def play(seed: int, broker: str) -> tuple[Counter[str], RaceViolation | None]:
    """One session's counts (a broken session's too) and its violation, if any."""
    session = Session(make_plan(seed, broker))
    try:
        return session.run(), None
    except RaceViolation as violation:
        stats = Counter(session.sim.stats)
        stats.update(sessions=1, invariant_checks=session.checker.checks, events=session.checker.index)
        return stats, violation


@contextmanager
def quiet_logs() -> Iterator[None]:
    """Thousands of sessions: the runner's warnings are expected and would dominate the time."""
    logger = logging.getLogger("live_runner")
    level = logger.level
    logger.setLevel(logging.CRITICAL + 1)
    try:
        yield
    finally:
        logger.setLevel(level)


def run_many(broker: str, seeds: range) -> Counter[str]:
    total: Counter[str] = Counter()
    with quiet_logs():
        for seed in seeds:
            total += run_session(seed, broker)
    return total
