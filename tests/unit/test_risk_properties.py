"""Property tests of the risk limits over random multi-symbol sessions run through the whole chain.

Each example builds a session with SessionBuilder (gappers with premarket volume and random price
paths, each drawn from a seed and a few parameters), runs it through a TradingNode with random
limits, and replays the journal against an independent model of the account (cash and holdings
from the journaled fills, marks from the bars fed) to check what a trader would check:

- never more than `max_positions` positions open, nor more entries working than that allows;
- no entry bigger than `max_position_size_pct` of the equity of the moment, nor beyond the cash;
- no entry once the day's P&L reached `-max_daily_loss_pct` of the start-of-day equity, and the
  breach moves the trading state to REDUCING (journaled) at the bar where it happens;
- after `emergency_stop` nothing is sent but the flattening of what was held.

Plus the sizing formula of DESIGN.md "Strategies" on the OrderManager alone.
"""

from __future__ import annotations

import math
import os
import random
from collections import Counter
from dataclasses import dataclass, field
from decimal import Decimal
from fractions import Fraction
from typing import Any, Callable

from hypothesis import HealthCheck, event, example, given, settings, strategies as st

from live_runner.core.calendar import MarketCalendar
from live_runner.core.config import parse_config
from live_runner.execution.order_manager import OrderManager
from live_runner.persistence.journal import Journal
from live_runner.core.models import Bar, Fill, OrderRole, OrderType, Side, Signal, TradingState
from live_runner.core.money import round_to_tick
from live_runner.live.node import TradingNode
from live_runner.portfolio.performance import PerformanceTracker
from live_runner.portfolio.portfolio import Portfolio
from live_runner.risk import rules as R
from live_runner.risk.manager import RiskManager
from tests.kit.sessions import SessionBuilder, et_ns

DAY = "2024-03-15"
# RISK_EXAMPLES raises the example count for a longer hunt (e.g. RISK_EXAMPLES=1000).
PROPS = settings(max_examples=int(os.environ.get("RISK_EXAMPLES", "60")), deadline=None, database=None,
                 suppress_health_check=[HealthCheck.too_slow])
CALENDAR = MarketCalendar()  # loading exchange_calendars is slow: share one across examples

# --- random sessions ------------------------------------------------------------------------


@dataclass(frozen=True)
class SymbolSpec:
    seed: int
    prev_close: float
    gap: float          # premarket last over previous close, minus 1
    pm_volume: int
    drift: float        # per bar, log return
    vol: float          # per bar, log return
    n_bars: int         # regular-session bars from 09:30
    tail: bool          # also trade 15:50-15:59 (the EOD flatten)


@dataclass(frozen=True)
class Scenario:
    symbols: tuple[SymbolSpec, ...]
    max_positions: int
    max_position_size_pct: float
    max_daily_loss_pct: float
    account_size: int
    strategies: tuple[str, ...]

    def config(self) -> dict[str, Any]:
        return dict(max_positions=self.max_positions,
                    max_position_size_pct=self.max_position_size_pct,
                    max_daily_loss_pct=self.max_daily_loss_pct, account_size=self.account_size,
                    active_strategies=list(self.strategies))


def hhmm(minutes: int) -> str:
    return f"{minutes // 60:02d}:{minutes % 60:02d}"


def _bar(rng: random.Random, o: float, vol: float, drift: float) -> tuple[float, float, float, float]:
    shock = rng.gauss(0.0, vol) * (3.0 if rng.random() < 0.05 else 1.0)
    c = max(o * math.exp(drift + shock), 0.05)
    h = max(o, c) * (1.0 + abs(rng.gauss(0.0, vol)))
    lo = min(o, c) * (1.0 - abs(rng.gauss(0.0, vol)))
    o, c = round(o, 2), round(c, 2)
    h = max(round(h, 2), o, c)
    lo = max(min(round(lo, 2), o, c), 0.01)
    return o, h, lo, c


def add_symbol(s: SessionBuilder, sym: str, spec: SymbolSpec) -> None:
    rng = random.Random(spec.seed)
    s.prev_close(sym, spec.prev_close)
    # Premarket: a few bars from 08:00 drifting up to prev_close * (1 + gap).
    k = rng.randint(2, 6)
    target = spec.prev_close * (1.0 + spec.gap)
    p = spec.prev_close * (1.0 + spec.gap * rng.uniform(0.3, 0.9))
    for j in range(k):
        nxt = p + (target - p) / (k - j) if j < k - 1 else target
        o, c = round(p, 2), round(nxt, 2)
        h = round(max(o, c) * (1.0 + abs(rng.gauss(0.0, 0.01))), 2)
        lo = round(min(o, c) * (1.0 - abs(rng.gauss(0.0, 0.01))), 2)
        s.bar(sym, hhmm(8 * 60 + 10 * j), o, max(h, o, c), max(min(lo, o, c), 0.01), c,
              spec.pm_volume / k)
        p = nxt
    # Regular session: a random walk with volume bursts (the vwap_reclaim trigger needs them).
    minutes = list(range(9 * 60 + 30, 9 * 60 + 30 + spec.n_bars))
    if spec.tail:
        minutes += list(range(15 * 60 + 50, 16 * 60))
    base = rng.uniform(5_000, 50_000)
    for m in minutes:
        o = p * (1.0 + rng.gauss(0.0, spec.vol / 4))
        o, h, lo, c = _bar(rng, max(o, 0.05), spec.vol, spec.drift)
        volume = round(base * rng.lognormvariate(0.0, 0.5) * (4.0 if rng.random() < 0.1 else 1.0))
        s.bar(sym, hhmm(m), o, h, lo, c, volume)
        p = c


def spec_from_seed(seed: int, gapper: bool) -> SymbolSpec:
    """A symbol's whole day from one drawn seed: a qualifying gapper, or (mostly) not."""
    rng = random.Random(seed)
    gap = rng.uniform(0.045, 0.30) if gapper else rng.uniform(-0.05, 0.06)
    return SymbolSpec(seed, round(rng.uniform(1.0, 16.0), 2), gap, rng.randint(30_000, 400_000),
                      rng.uniform(-0.004, 0.004), rng.uniform(0.002, 0.03), rng.randint(40, 80),
                      rng.random() < 0.5)


symbol_specs = st.builds(spec_from_seed, st.integers(0, 2**32 - 1),
                         st.sampled_from([True, True, True, False]))

@st.composite
def scenarios(draw: st.DrawFn) -> Scenario:
    n = draw(st.integers(1, 8))
    return Scenario(
        symbols=tuple(draw(st.lists(symbol_specs, min_size=n, max_size=n))),
        max_positions=draw(st.integers(1, 5)),
        max_position_size_pct=draw(st.floats(0.05, 0.5)),
        max_daily_loss_pct=draw(st.one_of(st.floats(0.001, 0.01), st.floats(0.01, 0.05))),
        account_size=draw(st.sampled_from([25_000, 100_000, 1_000_000])),
        strategies=draw(st.sampled_from([("gap_and_go",), ("vwap_reclaim",),
                                         ("gap_and_go", "vwap_reclaim")])),
    )


def bars_of(sc: Scenario) -> list[Bar]:
    s = SessionBuilder()
    for i, spec in enumerate(sc.symbols):
        add_symbol(s, f"SYM{i}", spec)
    return s.sorted_bars()


@dataclass
class Run:
    node: TradingNode
    events: list[dict[str, Any]]
    # (first journal seq of the bar, first seq after it, bar); the same for the command, if any.
    bars: list[tuple[int, int, Bar]]
    command: tuple[int, int] | None


def run(sc: Scenario, halt_at: int | None = None) -> Run:
    """Run the session; with halt_at, the operator's emergency stop comes after that many bars."""
    journal = Journal("sqlite://")
    node = TradingNode(parse_config(sc.config()), journal, calendar=CALENDAR)
    marks: list[tuple[int, int, Bar]] = []
    def recording_on_bar(bar: Bar) -> None:
        start = journal.next_seq
        on_bar(bar)
        marks.append((start, journal.next_seq, bar))

    on_bar: Callable[[Bar], None] = node.data.set_bar_sink(recording_on_bar)
    node.start()
    bars = bars_of(sc)
    command = None
    if halt_at is None:
        node.feed(bars)
    else:
        node.feed(bars[:halt_at])
        start = journal.next_seq
        node.command("emergency_stop", source="test")
        command = (start, journal.next_seq)
        node.feed(bars[halt_at:])
    node.stop()
    try:
        events = journal.read()
    finally:
        journal.close()
    return Run(node, events, marks, command)


# --- an independent model of the account, replayed from the journal -------------------------


def D(x: float | str) -> Decimal:
    return Decimal(repr(x)) if isinstance(x, float) else Decimal(x)


@dataclass
class Model:
    sc: Scenario
    cash: Decimal
    held: dict[str, int] = field(default_factory=dict)
    last: dict[str, float] = field(default_factory=dict)
    sod: Decimal = Decimal(0)
    state: str = "active"
    session: str = ""
    open_orders: dict[str, list[Any]] = field(default_factory=dict)  # cid -> [payload, remaining]
    stats: Counter = field(default_factory=Counter)
    halted_at: int | None = None
    max_open: int = 0

    def equity(self) -> Decimal:
        return self.cash + sum((D(self.last[s]) * q for s, q in self.held.items() if q), Decimal(0))

    def pnl(self) -> Decimal:
        return self.equity() - self.sod

    def limit(self) -> Decimal:
        return D(self.sc.max_daily_loss_pct) * self.sod

    def open_symbols(self) -> set[str]:
        return {s for s, q in self.held.items() if q > 0}

    def pending_entries(self) -> dict[str, list[Any]]:
        return {cid: o for cid, o in self.open_orders.items() if o[0]["role"] == "entry"}

    # -- the checks ------------------------------------------------------------------------
    def after_bar(self, bar: Bar) -> None:
        """Once a bar is through the chain, a breached daily loss limit must have been acted on."""
        if self.state == "active" and self.session == DAY:
            assert self.pnl() > -self.limit() - Decimal("0.01"), (
                f"daily P&L {self.pnl()} beyond -{self.limit()} after {bar.symbol} {bar.ts} "
                f"but the trading state is still active")

    def on_event(self, e: dict[str, Any]) -> None:
        kind, p = e["kind"], e["payload"]
        if kind == "session_start":
            self.session = e["session"]
            self.sod = self.equity()
            assert D(p["equity"]) == self.sod
            self.state = p["state"]
        elif kind == "trading_state":
            self.on_state(e)
        elif kind == "order":
            self.on_order(e)
        elif kind == "order_event":
            if p["status"] in ("canceled", "expired", "rejected"):
                self.open_orders.pop(e["key"], None)
        elif kind == "fill":
            self.on_fill(e)
        elif kind == "denial":
            self.stats[p["reason"]] += 1

    def on_state(self, e: dict[str, Any]) -> None:
        new, old = e["key"], e["payload"]["from"]
        assert old == self.state
        if new == "reducing":
            assert old == "active"
            assert self.pnl() <= -self.limit() + Decimal("0.01"), (
                f"REDUCING at daily P&L {self.pnl()} within the limit {self.limit()}")
            self.stats["breach"] += 1
        elif new == "halted":
            assert self.halted_at is not None, "HALTED without an emergency stop"
        else:
            assert new == "active" and e["payload"]["reason"] == "new session"
        self.state = new

    def on_order(self, e: dict[str, Any]) -> None:
        p = e["payload"]
        sym, qty, role = p["symbol"], p["qty"], p["role"]
        assert qty >= 1
        if self.state == "halted":
            assert role in ("manual", "eod") and p["side"] == "sell" and p["type"] == "market", (
                f"{role} {p['side']} {sym} sent while HALTED")
        if p["side"] == "sell":
            assert qty <= self.held.get(sym, 0), f"sell of {qty} {sym} exceeds the position"
        else:
            assert role == "entry"
            self.on_entry(e)
        self.open_orders[e["key"]] = [p, qty]

    def on_entry(self, e: dict[str, Any]) -> None:
        p = e["payload"]
        sc, sym = self.sc, p["symbol"]
        qty, ref = p["qty"], D(p["ref"])
        self.stats["entries"] += 1
        assert self.state == "active", f"entry {sym} while {self.state}"
        assert et_ns(DAY, "09:30") <= e["ts"] < et_ns(DAY, "15:55")
        # Daily loss limit: no entry once the P&L reached the limit.
        assert self.pnl() > -self.limit() - Decimal("1e-6"), (
            f"entry {sym} at daily P&L {self.pnl()} beyond -{self.limit()}")
        # Position size against the equity of the moment (the reference is the last close).
        assert ref == D(self.last[sym])
        equity = self.equity()
        assert qty * ref <= D(sc.max_position_size_pct) * equity + Decimal("1e-6"), (
            f"entry {qty} {sym} @ {ref} = {qty * ref} > {sc.max_position_size_pct} * {equity}")
        # Max positions, counting the entries still working; one position per symbol.
        pending = self.pending_entries()
        pending_symbols = {o[0]["symbol"] for o in pending.values()}
        busy = self.open_symbols() | pending_symbols
        assert sym not in busy
        assert len(busy) < sc.max_positions, f"entry {sym} with {sorted(busy)} open or pending"
        # Buying power, counting the cash committed to working entries.
        committed = sum((D(o[0]["ref"]) * o[1] for o in pending.values()), Decimal(0))
        assert qty * ref + committed <= self.cash + Decimal("1e-6")

    def on_fill(self, e: dict[str, Any]) -> None:
        p = e["payload"]
        sym, qty, price = p["symbol"], p["qty"], D(p["price"])
        commission = Decimal(p["commission"])
        if p["side"] == "buy":
            assert self.state != "halted", f"entry fill {sym} after the emergency stop"
            self.cash -= price * qty + commission
            self.held[sym] = self.held.get(sym, 0) + qty
        else:
            self.cash += price * qty - commission
            self.held[sym] = self.held.get(sym, 0) - qty
            assert self.held[sym] >= 0, f"short {sym}"
        order = self.open_orders.get(e["key"])
        assert order is not None, f"fill for an order not open: {e['key']}"
        order[1] -= qty
        if order[1] == 0:
            del self.open_orders[e["key"]]
        n_open = len(self.open_symbols())
        self.max_open = max(self.max_open, n_open)
        assert n_open <= self.sc.max_positions, f"{n_open} positions open > {self.sc.max_positions}"


def replay(sc: Scenario, r: Run) -> Model:
    """Walk the journal and the bars in the order they happened, checking every step."""
    model = Model(sc, Decimal(sc.account_size))
    # (seq, order, kind, item): a bar's end sorts before the events that follow it, its start too.
    timeline: list[tuple[int, int, str, Any]] = []
    for start, end, bar in r.bars:
        timeline.append((start, 1, "bar_start", bar))
        timeline.append((end, 0, "bar_end", bar))
    if r.command is not None:
        timeline.append((r.command[0], 1, "command_start", None))
        timeline.append((r.command[1], 0, "command_end", None))
    for e in r.events:
        timeline.append((e["seq"], 2, "event", e))
    timeline.sort(key=lambda x: (x[0], x[1]))
    held_at_halt: dict[str, int] = {}
    open_at_halt: set[str] = set()
    for seq, _, what, item in timeline:
        if what == "bar_start":
            model.last[item.symbol] = item.close
        elif what == "bar_end":
            model.after_bar(item)
        elif what == "command_start":
            model.halted_at = seq
            held_at_halt = {s: q for s, q in model.held.items() if q > 0}
            open_at_halt = set(model.open_orders)
        elif what == "command_end":
            assert model.state == "halted"
            # Every order working at the stop was canceled, and every position got exactly one
            # market sell of all of it.
            assert not open_at_halt & set(model.open_orders)
            flattens = {o[0]["symbol"]: o[0]["qty"] for cid, o in model.open_orders.items()
                        if cid not in open_at_halt}
            assert flattens == held_at_halt
            model.stats["halted_with_positions"] += bool(held_at_halt)
        else:
            model.on_event(item)
    return model


def check_end_of_run(sc: Scenario, r: Run, model: Model) -> None:
    node = r.node
    assert node.portfolio.positions == {}, "positions left open after the session"
    assert all(q == 0 for q in model.held.values())
    assert model.cash == node.portfolio.cash  # the model agrees with the node, to the cent
    assert sum(node.risk.denials.values()) == sum(
        v for k, v in model.stats.items() if k in R.REASON_CODES)
    breaches = [e for e in r.events if e["kind"] == "trading_state" and e["key"] == "reducing"]
    assert len(breaches) <= 1  # at most once per session


def describe(sc: Scenario, model: Model) -> None:
    """Hypothesis statistics (pytest --hypothesis-show-statistics): are the limits exercised?"""
    n = model.stats["entries"]
    event(f"entries: {n if n < 3 else '3+'}")
    event(f"daily loss breach: {model.stats['breach'] > 0}")
    event(f"max positions reached: {model.max_open == sc.max_positions}")
    event(f"MAX_POSITIONS denials: {model.stats[R.MAX_POSITIONS] > 0}")


@PROPS
@given(sc=scenarios())
def test_risk_limits_hold_over_random_sessions(sc: Scenario) -> None:
    r = run(sc)
    model = replay(sc, r)
    check_end_of_run(sc, r, model)
    describe(sc, model)
    assert r.node.risk.state in (TradingState.ACTIVE, TradingState.REDUCING)
    assert (r.node.risk.state is TradingState.REDUCING) == (model.stats["breach"] == 1)


def bar_after_first_entry_fill(sc: Scenario) -> int | None:
    """How many bars to feed so that the first entry of the session has just filled."""
    r = run(sc)
    fills = [e["seq"] for e in r.events if e["kind"] == "fill" and e["payload"]["role"] == "entry"]
    if not fills:
        return None
    for i, (start, end, _) in enumerate(r.bars):
        if start <= fills[0] < end:
            return i + 1
    raise AssertionError("entry fill outside any bar")


@PROPS
@given(sc=scenarios(), where=st.one_of(st.floats(0.05, 0.95), st.integers(0, 10)))
def test_after_emergency_stop_only_flattening_is_sent(sc: Scenario, where: float | int) -> None:
    """The stop comes at a fraction of the session's bars, or a few bars after the first entry
    filled (so that there is something to flatten)."""
    n_bars = len(bars_of(sc))
    if isinstance(where, float):
        halt_at = int(n_bars * where)
    else:
        first = bar_after_first_entry_fill(sc)
        halt_at = min(first + where, n_bars) if first is not None else n_bars // 2
    r = run(sc, halt_at)
    model = replay(sc, r)
    check_end_of_run(sc, r, model)
    assert r.node.risk.state is TradingState.HALTED
    halts = [e for e in r.events if e["kind"] == "trading_state" and e["key"] == "halted"]
    assert len(halts) == 1 and r.command is not None and r.command[0] <= halts[0]["seq"] < r.command[1]
    after = [e for e in r.events if e["seq"] >= r.command[1]]
    assert not [e for e in after if e["kind"] == "order" and e["payload"]["role"] == "entry"]
    assert not [e for e in after if e["kind"] == "fill" and e["payload"]["side"] == "buy"]
    describe(sc, model)
    event(f"halted with positions: {model.stats['halted_with_positions'] > 0}")


def random_scenario(rng: random.Random) -> Scenario:
    specs = tuple(spec_from_seed(rng.randrange(2**32), rng.random() < 0.8)
                  for _ in range(rng.randint(3, 8)))
    return Scenario(specs, rng.randint(1, 3), rng.uniform(0.05, 0.5), rng.uniform(0.001, 0.01),
                    100_000, ("gap_and_go", "vwap_reclaim"))


def test_the_random_sessions_exercise_the_limits() -> None:
    """Guard against vacuous properties: over a fixed set of generated sessions, entries happen,
    max_positions binds and refuses entries, the daily loss limit is breached, and emergency stops
    hit open positions."""
    totals: Counter = Counter()
    rng = random.Random(20240315)
    for i in range(16):
        sc = random_scenario(rng)
        halt_at = bar_after_first_entry_fill(sc) if i % 2 else None
        r = run(sc, halt_at)
        model = replay(sc, r)
        check_end_of_run(sc, r, model)
        totals.update(model.stats)
        totals["max_open_reached"] += model.max_open == sc.max_positions
    assert totals["entries"] >= 16
    assert totals[R.MAX_POSITIONS] >= 3
    assert totals["max_open_reached"] >= 3
    assert totals["breach"] >= 2
    assert totals["halted_with_positions"] >= 1


# --- the sizing formula ---------------------------------------------------------------------


class _Clock:
    def __init__(self, ns: int) -> None:
        self.ns = ns

    def now_ns(self) -> int:
        return self.ns


class _Execution:
    def __init__(self) -> None:
        self.sent: list[Any] = []

    def submit(self, req: Any) -> None:
        self.sent.append(req)

    def recover(self, req: Any) -> None:
        raise AssertionError("nothing to recover")

    def cancel(self, cid: str) -> None:
        pass


class _Journal:
    resuming = False

    def __init__(self) -> None:
        self.events: list[tuple[str, str, dict[str, Any]]] = []

    def append(self, session: str, ts: int, kind: str, key: str, payload: dict[str, Any]) -> int:
        self.events.append((kind, key, payload))
        return len(self.events)


def cents(lo: int, hi: int) -> st.SearchStrategy[float]:
    return st.integers(lo, hi).map(lambda c: c / 100)


@st.composite
def close_and_stop(draw: st.DrawFn) -> tuple[float, float]:
    """The signal bar's close (cents, or sub-dollar prices in 1/100 cents) and a stop mostly below
    it, sometimes at or above it, sometimes not on the tick."""
    close = draw(st.one_of(cents(1, 5_000), st.integers(1, 9_999).map(lambda x: x / 10_000)))
    stop = draw(st.one_of(
        st.integers(1, 500).map(lambda d: round(close - d / 100, 2)),
        st.floats(0.5, 0.999).map(lambda f: close * f),
        st.floats(0.01, 60.0),
        st.just(close),
    ))
    return close, max(stop, 0.01)


@PROPS
@given(
    cash=st.integers(1_000_00, 2_000_000_00).map(lambda c: Decimal(c) / 100),
    held=st.one_of(st.none(), st.tuples(st.integers(1, 5_000), cents(100, 5_000), cents(100, 5_000))),
    prices=close_and_stop(),
)
# Exact quotients that binary floats floor one share short: 1000 / (1.02 - 0.94) = 12_500.
@example(cash=Decimal(100_000), held=None, prices=(1.02, 0.94))
@example(cash=Decimal(100_000), held=None, prices=(1.00, 0.95))
@example(cash=Decimal(50_000), held=None, prices=(10.40, 10.20))
@example(cash=Decimal(100_000), held=None, prices=(10.00, 10.00))   # c == stop: no order
@example(cash=Decimal(1_000), held=None, prices=(30.00, 10.00))     # 0.2 * 1000 / 30 < 1
def test_entry_size_follows_the_formula(cash: Decimal, held: tuple[int, float, float] | None,
                                        prices: tuple[float, float]) -> None:
    """qty = min(floor(equity * 0.01 / (c - stop)), floor(0.2 * equity / c)) with c the signal
    bar's close, stop rounded to the tick and equity = cash + positions at their last close; no
    order when qty < 1 or c <= stop."""
    close, stop = prices
    pf = Portfolio(cash)
    if held is not None:  # another position (worth at most twice the cash), marked away from cost
        qty_held, bought, marked = held
        qty_held = max(1, min(qty_held, int(2 * cash / Decimal(repr(max(bought, marked))))))
        held = (qty_held, bought, marked)
        pf.cash += Decimal(repr(bought)) * qty_held  # keep the cash as drawn
        pf.apply_fill(Fill("X-1", "X-1-F1", "OTHER", Side.BUY, qty_held, bought, Decimal(0), 0), "x")
        pf.mark("OTHER", marked)
        pf.start_session()  # the day starts here: the sizing is about equity, not today's P&L
    pf.mark("ABC", close)
    risk = RiskManager(R.RiskLimits(max_positions=5, max_position_size_pct=0.2,
                                    max_daily_loss_pct=1.0, max_orders_per_minute=60,
                                    price_collar_pct=0.1))
    execution, journal, rejected = _Execution(), _Journal(), []
    om = OrderManager(portfolio=pf, risk=risk, execution=execution, journal=journal,  # type: ignore[arg-type]
                      performance=PerformanceTracker(cash), clock=_Clock(et_ns(DAY, "10:00")),
                      risk_per_trade_pct=0.01, max_position_size_pct=0.2,
                      on_signal_rejected=lambda s, reason: rejected.append(s))
    om.start_session(DAY, et_ns(DAY, "09:30"), et_ns(DAY, "15:55"), et_ns(DAY, "16:00"))
    signal = Signal("gap_and_go", "ABC", et_ns(DAY, "09:59"), Side.BUY, stop=stop,
                    reason="test", reference_price=close, target_r=2.0)

    cid = om.on_signal(signal)

    c, s = Fraction(repr(close)), Fraction(repr(round_to_tick(stop)))
    equity = Fraction(pf.cash) + (Fraction(repr(held[2])) * held[0] if held else 0)
    expected = 0
    if c > s:
        expected = min(math.floor(equity * Fraction(1, 100) / (c - s)), math.floor(Fraction(1, 5) * equity / c))
    if expected < 1:
        assert cid is None and execution.sent == [] and rejected == [signal]
        assert risk.denials == Counter({R.SIZE_ZERO: 1})
        assert [k for k, _, _ in journal.events] == ["signal", "denial"]
        event("no order")
    else:
        [req] = execution.sent
        assert cid == req.client_order_id and rejected == []
        assert req.qty == expected
        assert (req.side, req.order_type, req.role) == (Side.BUY, OrderType.MARKET, OrderRole.ENTRY)
        assert req.reference_price == close and req.protective_stop == round_to_tick(stop)
        # The order's worth never exceeds 20% of equity, and its risk to the stop 1% of it.
        assert req.qty * c <= equity / 5 and req.qty * (c - s) <= equity / 100
        event("order")
