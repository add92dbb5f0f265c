"""Seeded session plans for the race suite: symbols, a tick-level price path (bars are built from
it), entries, trims and operator commands at random moments, and how the session ends."""

from __future__ import annotations

import math
import random
from dataclasses import dataclass, field

from tests.kit.broker_sim.orders import SimParams
from tests.kit.sessions import et_ns

TICKS_PER_MINUTE = 6
TICK_NS = 60_000_000_000 // TICKS_PER_MINUTE
DAYS = ("2024-03-12", "2024-03-13", "2024-03-14", "2024-03-15")
SETTLE_MINUTES = 2  # after a shutdown the market goes on; the broker keeps reporting
SHUTDOWNS = ("data_end", "sigterm", "sigterm_flatten")


@dataclass(frozen=True)
class Action:
    tick: int  # index of the tick (in the whole path) after which it happens
    kind: str  # entry | trim | flatten | flatten_all | emergency_stop | shutdown
    symbol: str = ""
    a: float = 0.0
    b: float = 0.0


@dataclass
class SessionPlan:
    seed: int
    broker: str
    day: str
    symbols: list[str]
    start_ns: int  # the first minute (a bar start)
    minutes: int  # bars fed to the runner
    to_close: bool  # the session runs through the 15:55 flatten to the 16:00 close
    shutdown: str  # how the runner stops (for sessions that end before the close)
    params: SimParams
    prices: dict[str, list[float]] = field(default_factory=dict)  # per tick, settle included
    actions: list[Action] = field(default_factory=list)

    def describe(self) -> str:
        end = "close" if self.to_close else self.shutdown
        return (f"seed={self.seed} broker={self.broker} day={self.day} symbols={self.symbols} "
                f"minutes={self.minutes} end={end} params={self.params}")


def make_plan(seed: int, broker: str) -> SessionPlan:
    rng = random.Random(seed)
    day = rng.choice(DAYS)
    symbols = rng.sample(["AAA", "BBB", "CCC", "DDD"], rng.choice((1, 1, 2, 3)))
    to_close = rng.random() < 0.35
    if to_close:
        start = et_ns(day, f"15:{rng.randint(30, 50):02d}")
        minutes = (et_ns(day, "16:00") - start) // 60_000_000_000
    else:
        start = et_ns(day, "09:31") + rng.randint(0, 340) * 60_000_000_000
        minutes = rng.randint(6, 25)
    plan = SessionPlan(seed, broker, day, symbols, start, minutes, to_close, rng.choice(SHUTDOWNS),
                       SimParams.random(rng, broker))
    ticks = (minutes + SETTLE_MINUTES) * TICKS_PER_MINUTE
    for sym in symbols:
        price = rng.uniform(5, 60)
        sigma = rng.choice((0.001, 0.003, 0.006))
        path = []
        for _ in range(ticks):
            jump = rng.choice((-1, 1)) * 0.02 if rng.random() < 0.01 else 0.0
            price = max(1.0, price * math.exp(rng.gauss(0, sigma) + jump))
            path.append(round(price, 2))
        plan.prices[sym] = path
    last = minutes * TICKS_PER_MINUTE - 1
    entry_end = max(TICKS_PER_MINUTE + 1, last - 2 * TICKS_PER_MINUTE)
    for sym in symbols:
        for _ in range(rng.choice((1, 1, 2))):
            plan.actions.append(Action(rng.randint(TICKS_PER_MINUTE, entry_end), "entry", sym,
                                       rng.uniform(0.004, 0.03), rng.uniform(0.8, 3.0)))
        if rng.random() < 0.3:
            plan.actions.append(Action(rng.randint(TICKS_PER_MINUTE, last), "trim", sym, rng.uniform(0.2, 0.7)))
        if rng.random() < 0.2:
            plan.actions.append(Action(rng.randint(TICKS_PER_MINUTE, last), "flatten", sym))
    if rng.random() < 0.1:
        plan.actions.append(Action(rng.randint(TICKS_PER_MINUTE, last), "flatten_all"))
    if rng.random() < 0.12:
        plan.actions.append(Action(rng.randint(TICKS_PER_MINUTE, last), "emergency_stop"))
    if not to_close:
        plan.actions.append(Action(last + rng.randint(1, TICKS_PER_MINUTE), "shutdown"))
    plan.actions.sort(key=lambda a: a.tick)
    return plan
