"""Seeded random exit races through a real broker SDK and its wire fake (tests/integration/
test_exit_races_wire.py drives them): the plan of one session, the loop that plays it, and the
invariants of DESIGN.md ("How the real brokers behave") checked at the FAKE's side after every step.

A session: the gap_and_go breakout (tests/kit/sessions.py) makes a TradingNode buy GAPR through
the real client; then minutes of sub-steps on one simulated clock shared by the node and the fake
(price moves and jumps through the stop or the target, entry fills in parts, partial exit fills,
time passing so that delayed cancels and replaces are confirmed), an operator command or an EOD
flatten at a random moment, an armed wire fault, and a shutdown (node.stop, SIGTERM-like stop
without flatten, or a kill of the client). Each step ends when the runner and the fake agree
(bounded wait: nothing depends on how long anything sleeps), then the invariants are checked.
"""

from __future__ import annotations

import asyncio
import os
import random
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Protocol

from live_runner.core.config import parse_config
from live_runner.core.models import Bar, NANOS_PER_MINUTE
from live_runner.live.node import TradingNode
from tests.kit.sessions import et_ns, gapper_breakout

SYM = "GAPR"
DAY = "2024-03-15"
NS = 1_000_000_000
EXPLAINS = ("unprotected:", "cancel_unconfirmed:", "exits_not_resized:")
OPERATOR = ("none", "flatten", "flatten_all", "emergency", "eod")
ENDS = ("stop", "stop", "run", "sigterm", "kill", "kill_in_flight")


def seeds() -> list[int]:
    """TRADING_WIRE_SEED=n replays one session; TRADING_WIRE_RACES=n runs n (default 24)."""
    one = os.environ.get("TRADING_WIRE_SEED")
    if one:
        return [int(one)]
    return list(range(int(os.environ.get("TRADING_WIRE_RACES", "24"))))


@dataclass
class Plan:
    """Everything random about one session, drawn from its seed before it starts."""

    seed: int
    broker: str
    rng: random.Random
    cancel_delay_s: float
    replace_delay_s: float
    entry_parts: int
    duplicate: bool
    fault: str
    fault_step: int
    operator: str
    operator_step: int
    end: str
    end_step: int
    minutes: int
    flatten_time: str

    def describe(self) -> str:
        return (f"{self.broker} seed {self.seed}: cancel delay {self.cancel_delay_s}s, replace delay "
                f"{self.replace_delay_s}s, entry in {self.entry_parts}, duplicates {self.duplicate}, "
                f"fault {self.fault}@{self.fault_step}, operator {self.operator}@{self.operator_step}, "
                f"end {self.end}@{self.end_step}, {self.minutes} min, flatten_time {self.flatten_time}")


def make_plan(seed: int, broker: str, faults: tuple[str, ...]) -> Plan:
    rng = random.Random(f"{broker}:{seed}")
    minutes = rng.randint(3, 7)
    steps = minutes * 3
    operator = rng.choice(OPERATOR)
    return Plan(
        seed=seed, broker=broker, rng=rng,
        cancel_delay_s=rng.choice([0.0, 0.5, 1.0, 2.0, 3.0, 5.0, 12.0]),
        replace_delay_s=rng.choice([0.0, 0.5, 1.0, 2.0]),
        entry_parts=rng.choice([1, 1, 2, 3]),
        duplicate=rng.random() < 0.3,
        fault=rng.choice(("none",) + faults), fault_step=rng.randint(-1, steps),
        operator=operator, operator_step=rng.randint(0, steps),
        end=rng.choice(ENDS), end_step=rng.randint(1, steps + 2),
        minutes=minutes, flatten_time=f"09:{rng.randint(33, 31 + minutes):02d}" if operator == "eod" else "15:55")


@dataclass
class Book:
    """The broker's truth for one symbol, as a rig reads it from its fake."""

    position: int
    sells: int            # shares held by working sells (a one-cancels-other unit once)
    stops: int            # shares covered by working stop sells
    market_sells: int     # working market sells (a flatten on its way out)
    resizing: bool        # a replace is pending at the broker
    ours: int             # orders of ours working at the broker


class Rig(Protocol):
    """What the loop needs from a broker's rig (its fake, its real client, the node)."""

    node: TradingNode
    stats: Counter[str]

    def book(self) -> Book: ...
    def violations(self) -> list[str]: ...
    def refused(self) -> list[str]: ...
    def agreed(self) -> str: ...
    def reached(self, cid: str, req: dict[str, Any]) -> bool: ...
    def price(self, px: float, volume: int | None = None) -> None: ...
    def fill_entry(self, parts: int, px: float) -> bool: ...
    def fill_target(self, qty: int) -> bool: ...
    def exit_prices(self) -> tuple[float, float] | None: ...
    def confirm_due(self) -> None: ...
    async def fault(self, kind: str) -> None: ...
    async def kill(self) -> None: ...


def node_config(plan: Plan) -> Any:
    return parse_config({"active_strategies": ["gap_and_go"], "log_dir": None,
                         "flatten_time": plan.flatten_time})


@dataclass
class Session:
    """Plays a plan against a rig and checks the invariants; `trace` says what happened."""

    plan: Plan
    rig: Rig
    trace: list[str] = field(default_factory=list)
    last: float = 11.2
    minute_prices: list[float] = field(default_factory=list)
    parts_left: int = 0

    # --- helpers ---------------------------------------------------------------------------------
    @property
    def node(self) -> TradingNode:
        return self.rig.node

    def note(self, what: str) -> None:
        b = self.rig.book()
        t = self.node.clock.now_ns()
        self.trace.append(f"{(t // NS) % 86400 // 3600:02d}:{(t // NS) % 3600 // 60:02d}:{(t / NS) % 60:06.3f} "
                          f"{what:<38} broker pos {b.position} sells {b.sells} stops {b.stops} "
                          f"mkt {b.market_sells}{' resizing' if b.resizing else ''} | runner pos "
                          f"{self.node.portfolio.position_qty(SYM)} open {sorted(self.node.orders.open_orders)}")

    def fail(self, why: str) -> AssertionError:
        tail = "\n".join(self.trace[-80:])
        return AssertionError(f"{why}\n{self.plan.describe()}\nreproduce: TRADING_WIRE_SEED={self.plan.seed} "
                              f"pytest tests/integration/test_exit_races_wire.py -k {self.plan.broker}\n{tail}")

    async def settle(self, what: str) -> None:
        """Wait (bounded) until the runner and the broker agree on every order and the position."""
        loop = asyncio.get_running_loop()
        end = loop.time() + 20.0
        for _ in range(2):  # twice, a moment apart: a trailing duplicate report must change nothing
            while (why := self.rig.agreed()):
                if loop.time() > end:
                    raise self.fail(f"runner and broker never agreed after {what}: {why}")
                await asyncio.sleep(0.01)
            await asyncio.sleep(0.02)
        self.note(what)
        self.check(what)

    def critical_keys(self) -> list[str]:
        return [a.key for a in self.node.alerts.recent if a.severity.value == "critical"]

    def explained(self) -> bool:
        return any(k.startswith(EXPLAINS) for k in self.critical_keys())

    def check(self, what: str) -> None:
        """DESIGN.md's invariants, at the broker."""
        b = self.rig.book()
        bad = self.rig.violations()
        refused = self.rig.refused()   # the runner asked on stale news; the broker said no
        if refused:
            self.rig.stats["refused_by_broker"] = len(refused)
            if not self.explained():
                bad.append(f"refused by the broker with no CRITICAL alert: {refused}")
        if b.position < 0:
            bad.append(f"short {b.position}")
        if b.sells > max(b.position, 0):
            bad.append(f"working sells {b.sells} > position {b.position}")
        if b.position > 0 and not (b.stops or b.market_sells) and not self.explained():
            bad.append(f"position {b.position} without a working stop (or a flatten's sell) at the broker "
                       "and no CRITICAL alert saying why")
        elif b.position > b.stops + b.market_sells:
            # Part of the position is bare: only while the broker has a resize pending, the runner
            # waits for cancels it asked for (a flatten), or a CRITICAL alert says why.
            trade = self.node.orders.trades.get(SYM)
            waiting = trade is not None and trade.pending_exit != ""
            self.rig.stats["steps_partly_covered"] += 1
            if not (b.resizing or waiting or self.explained()):
                bad.append(f"position {b.position} covered by stops {b.stops} + market sells "
                           f"{b.market_sells} with no CRITICAL alert saying why")
        if bad:
            raise self.fail(f"after {what}: " + "; ".join(bad))

    def check_journal(self) -> None:
        """Every order the runner journaled reached the broker or is journaled as not sent."""
        journal = self.node.journal
        journal.flush()
        rejected = {e["key"] for e in journal.read(kinds=("order_event",)) if e["payload"]["status"] == "rejected"}
        orders = journal.read(kinds=("order",))
        self.rig.stats["journaled_orders"] += len(orders)
        missing = [e["key"] for e in orders if e["key"] not in rejected and not self.rig.reached(e["key"], e["payload"])]
        if missing:
            raise self.fail(f"journaled but never at the broker nor journaled as not sent: {missing}")
        excess = journal.read(kinds=("excess_fill",))
        if excess:
            raise self.fail(f"the broker sold beyond the position: {excess}")

    # --- the market -------------------------------------------------------------------------------
    def step_time(self, seconds: float, within_minute: bool = True) -> None:
        """Time passes for both (the node's timers fire; the fake confirms what is due), inside the
        current minute while bars still come (its bar moves the node to the next one)."""
        clock = self.node.clock
        now = clock.now_ns()
        at = now + int(seconds * NS)
        if within_minute:
            at = min(at, now - now % NANOS_PER_MINUTE + NANOS_PER_MINUTE - 1_000_000)
        clock.advance_to(at)
        self.rig.confirm_due()

    def trade(self, px: float, volume: int | None = None) -> None:
        self.last = round(max(px, 0.5), 2)
        self.minute_prices.append(self.last)
        self.rig.price(self.last, volume)

    async def bar(self) -> None:
        """The minute ends: the runner sees its bar (and time moves to the next minute)."""
        now = self.node.clock.now_ns()
        start = now - now % NANOS_PER_MINUTE
        px = self.minute_prices or [self.last]
        self.node.data.on_bar(Bar(SYM, start, px[0], max(px), min(px), px[-1], 20_000))
        self.minute_prices = []
        await self.settle(f"bar {px[0]}..{px[-1]}")

    # --- the session --------------------------------------------------------------------------------
    async def breakout(self) -> None:
        """GAPR's premarket and its 09:31 breakout: the runner sends its market buy (1,785)."""
        for b in gapper_breakout(DAY).sorted_bars():
            if b.ts >= et_ns(DAY, "09:30"):
                for px in (b.open, b.low, b.high, b.close):
                    self.trade(px)
            self.node.data.on_bar(b)
            await self.settle(f"bar {b.symbol} {b.close}")

    async def run(self) -> None:
        plan, rig = self.plan, self.rig
        rng = plan.rng
        if plan.fault_step == -1:
            await self.arm(plan.fault)   # it hits the entry's submit
        await self.breakout()
        self.parts_left = plan.entry_parts
        step = 0
        for _minute in range(plan.minutes):
            for _ in range(rng.randint(2, 4)):
                if step == plan.end_step and plan.end == "kill_in_flight":
                    await self.one_step(step, settle=False)
                    await self.killed_in_flight()
                    return
                if step == plan.end_step and plan.end != "run":
                    await self.settle("before the end")
                    await (self.finish() if plan.end == "stop" else self.end(plan.end))
                    return
                await self.one_step(step)
                step += 1
            await self.bar()
        await self.finish()

    async def arm(self, fault: str) -> None:
        if fault != "none":
            self.rig.stats[f"fault:{fault}"] += 1
            await self.rig.fault(fault)
            self.note(f"fault {fault} armed")

    async def one_step(self, step: int, settle: bool = True) -> None:
        plan, rig, rng = self.plan, self.rig, self.plan.rng
        self.step_time(rng.choice([0.1, 0.3, 0.5, 1.0, 2.0]))
        if step == plan.fault_step:
            await self.arm(plan.fault)
        if step == 0 and plan.operator == "eod":
            rig.stats["operator:eod"] += 1
        if step == plan.operator_step and plan.operator not in ("none", "eod"):
            name, symbol = {"flatten": ("flatten", SYM), "flatten_all": ("flatten", ""),
                            "emergency": ("emergency_stop", "")}[plan.operator]
            self.node.command(name, source="race", symbol=symbol)
            rig.stats[f"operator:{plan.operator}"] += 1
            self.note(f"operator {plan.operator}")
        if self.parts_left > 1 and rng.random() < 0.7 and rig.fill_entry(self.parts_left, self.last):
            self.parts_left -= 1      # the next event may race the resize this part causes
            rig.stats["entry_parts"] += 1
            self.note("entry part")
            if rng.random() < 0.5:
                await self.settle("entry part")
        r = rng.random()
        if r < 0.25:
            if rig.fill_target(rng.randint(1, 400)):
                self.note("partial target fill")
        elif r < 0.55:
            self.trade(self.last + rng.choice([-0.08, -0.05, -0.03, 0.02, 0.04, 0.07]))
        elif r < 0.7:
            exits = rig.exit_prices()
            stop, target = exits if exits else (self.last - 0.3, self.last + 0.3)
            up = rng.random() < 0.5
            self.trade(target if up else stop - 0.02, volume=rng.choice([None, None, 300]))
            rig.stats["jumps_to_" + ("target" if up else "stop")] += 1
        else:
            self.step_time(rng.choice([0.5, 1.0, 2.0, 3.0, 6.0]))
        if settle:
            await self.settle(f"step {step}")

    async def end(self, how: str) -> None:
        """SIGTERM without flatten_on_shutdown (the session stays open, exits stay at the broker)
        or a kill: the client goes away; what is at the broker must still protect the position."""
        if how == "sigterm":
            self.node.stop(close_session=False)
        await self.rig.kill()
        self.rig.stats[f"end:{how}"] += 1
        b = self.rig.book()
        self.note(f"end {how}")
        self.check(how)   # what stays at the broker still protects what is held
        if b.position != self.node.portfolio.position_qty(SYM):
            raise self.fail(f"{how}: the broker holds {b.position}, the runner's portfolio says "
                            f"{self.node.portfolio.position_qty(SYM)}")
        self.check_journal()

    async def killed_in_flight(self) -> None:
        """The client dies mid-step (requests and reports in flight). The broker keeps what it
        holds; whatever the market does next, it must never sell more than the position."""
        stops = self.rig.exit_prices()
        for _ in range(self.plan.rng.choice([0, 1, 3, 10])):   # a few turns of the loop: some
            await asyncio.sleep(0)                               # requests out, some not
        await self.rig.kill()
        self.rig.stats["end:kill_in_flight"] += 1
        self.note("killed in flight")
        stop, target = stops or (self.last - 0.3, self.last + 0.3)
        for px in (target + 0.05, stop - 0.05, self.last, target + 0.1):
            self.step_time(3.0, within_minute=False)
            self.trade(px)
            b = self.rig.book()
            self.note(f"after the kill, the market at {px:.2f}")
            bad = self.rig.violations() + ([f"short {b.position}"] if b.position < 0 else []) + (
                [f"working sells {b.sells} > position {b.position}"] if b.sells > max(b.position, 0) else [])
            if bad:
                raise self.fail("after a kill in flight: " + "; ".join(bad))

    async def finish(self) -> None:
        """Shutdown at the data's end (node.stop: EOD flatten), then time passes until flat."""
        self.node.stop()
        self.rig.stats["end:stop"] += 1
        await self.settle("node.stop")
        for _ in range(120):
            b = self.rig.book()
            if b.position == 0 and b.ours == 0 and not self.node.orders.open_orders:
                break
            rng = self.plan.rng
            self.step_time(rng.choice([0.3, 1.0, 2.0]), within_minute=False)
            exits = self.rig.exit_prices()
            if exits and rng.random() < 0.4:   # the stop triggers while its cancel is pending
                self.trade(exits[0] - 0.02)
                self.rig.stats["jumps_to_stop"] += 1
            else:
                self.trade(self.last + rng.choice([-0.03, 0.0, 0.03]))
            await self.settle("waiting for flat")
        else:
            raise self.fail("not flat 120 s after the shutdown")
        if self.node.portfolio.position_qty(SYM) != 0:
            raise self.fail("the broker is flat, the runner's portfolio is not")
        self.check_journal()
