"""Decisions exactly at the rules' boundaries, generated (hypothesis), asserted both ways.

Prices are generated in whole ticks (cents, or 1e-4 below $1) so that the boundary value itself is
a price: a gap of exactly `gap_pct_min`, a premarket last of exactly `hold_ratio_min * pm_high`,
a last exactly on `price_min`/`price_max`, a premarket volume exactly at the minimum, a close
exactly on VWAP, a volume of exactly `volume_mult` times the mean, and the first/last minute of
each entry window. On the boundary the rule is inclusive (or, for VWAP, neither below nor above);
one tick or one share away it is not. Binary floats decide some of these wrongly (16.90 / 16.25 - 1
is 0.0399999999999998); the runner's `qualifies` and the Dagster scan's vectorised `qualify` must
both decide them exactly and agree.
"""

from __future__ import annotations

from datetime import date
from math import gcd

import pandas as pd
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from live_runner.core.calendar import MarketCalendar
from live_runner.core.config import GapAndGoConfig, parse_config
from live_runner.core.models import Bar
from live_runner.strategies.base import PremarketStats
from live_runner.strategies.gap_and_go import qualifies
from live_runner.strategies.engine import StrategyEngine
from tests.kit.sessions import et_ns
from trading_pipeline.universe_scan import qualify

FAST = settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
# Wide-open thresholds, so that each test moves one rule alone.
OPEN = dict(gap_pct_min=0.0, premarket_volume_min=0, price_min=0.0001, price_max=100_000.0,
            hold_ratio_min=0.0)
DAY = date(2024, 3, 15)


def decide(cfg: GapAndGoConfig, prev: int, high: int, vol: float, last: int, scale: int) -> bool:
    """The runner's decision; asserts the premarket scan takes the same one."""
    p, h, lst = prev / scale, high / scale, last / scale
    runner = qualifies(PremarketStats(prev_close=p, pm_high=h, pm_volume=vol, pm_last=lst), cfg)
    frame = pd.DataFrame({"prev_close": [p], "pm_high": [h], "pm_volume": [vol], "pm_last": [lst]})
    assert bool(qualify(frame, cfg)[0]) is runner, (p, h, vol, lst)
    return runner


ticks = st.sampled_from([100, 10_000])  # cents, or 1e-4 dollars (sub-dollar prices)


@FAST
@given(scale=ticks, pct=st.integers(1, 40), k=st.integers(1, 400))
def test_gap_exactly_at_the_minimum_qualifies(scale: int, pct: int, k: int) -> None:
    """prev_close P and pm_last = P * (1 + pct/100), both whole ticks."""
    step = 100 // gcd(100, 100 + pct)  # the smallest P (in ticks) whose gap price is a tick
    prev = step * k
    last = prev * (100 + pct) // 100
    cfg = GapAndGoConfig(**{**OPEN, "gap_pct_min": pct / 100})
    assert decide(cfg, prev, last, 0, last, scale)
    assert not decide(cfg, prev, last, 0, last - 1, scale)  # one tick short of the gap
    assert not decide(cfg, prev + 1, last, 0, last, scale)  # a tick higher close: gap below


def test_the_issues_gap_example() -> None:
    cfg = GapAndGoConfig(**{**OPEN, "gap_pct_min": 0.04})
    assert decide(cfg, 1625, 1690, 0, 1690, 100)  # 16.90 / 16.25 - 1 == 0.04 exactly
    assert 16.90 / 16.25 - 1.0 < 0.04  # (what binary floats say)


@FAST
@given(scale=ticks, ratio=st.integers(50, 99), k=st.integers(1, 2000))
def test_hold_ratio_exactly_at_the_minimum_qualifies(scale: int, ratio: int, k: int) -> None:
    """pm_last = ratio/100 * pm_high, both whole ticks."""
    high = (100 // gcd(100, ratio)) * k
    last = high * ratio // 100
    cfg = GapAndGoConfig(**{**OPEN, "hold_ratio_min": ratio / 100})
    assert decide(cfg, 1, high, 0, last, scale)
    assert not decide(cfg, 1, high, 0, last - 1, scale)
    assert not decide(cfg, 1, high + 1, 0, last, scale) or (high + 1) * ratio <= last * 100


def test_the_issues_hold_example() -> None:
    cfg = GapAndGoConfig(**{**OPEN, "hold_ratio_min": 0.9})
    assert decide(cfg, 100, 1290, 0, 1161, 100)  # 11.61 == 0.9 * 12.90 exactly
    assert 11.61 < 0.9 * 12.90


@FAST
@given(scale=ticks, lo=st.integers(1, 5000), width=st.integers(0, 5000))
def test_price_band_is_inclusive_at_both_ends(scale: int, lo: int, width: int) -> None:
    hi = lo + width
    cfg = GapAndGoConfig(**{**OPEN, "price_min": lo / scale, "price_max": hi / scale})
    for last in (lo, hi):
        assert decide(cfg, 1, last, 0, last, scale)
    assert not decide(cfg, 1, hi + 1, 0, hi + 1, scale)
    if lo > 1:
        assert not decide(cfg, 1, lo - 1, 0, lo - 1, scale)


@FAST
@given(minimum=st.integers(1, 5_000_000), parts=st.integers(1, 30), seed=st.integers(0, 10**6))
def test_premarket_volume_exactly_at_the_minimum_qualifies(minimum: int, parts: int, seed: int) -> None:
    """Summed by the StrategyEngine from premarket bars, as the runner does."""
    import random

    rnd = random.Random(seed)
    cuts = sorted(rnd.randint(0, minimum) for _ in range(parts - 1))
    volumes = [b - a for a, b in zip([0, *cuts], [*cuts, minimum])]
    cfg = GapAndGoConfig(**{**OPEN, "premarket_volume_min": minimum})
    for total_delta, expected in ((0, True), (-1, False)):
        vols = volumes[:-1] + [volumes[-1] + total_delta] if volumes[-1] + total_delta >= 0 else None
        if vols is None:
            continue
        stats = premarket_via_engine(vols)
        assert qualifies(stats, cfg) is expected
        assert decide(cfg, 100, 1000, stats.pm_volume, 1000, 100) is expected


def premarket_via_engine(volumes: list[int]) -> PremarketStats:
    cal = MarketCalendar()
    engine = StrategyEngine(parse_config({}), lambda s: 0)
    session = cal.session(DAY)
    engine.on_session_start(session)
    for i, v in enumerate(volumes):
        engine.on_bar(Bar("VOL", session.premarket_open + i * 60_000_000_000, 10.0, 10.0, 10.0, 10.0, float(v)))
    stats = engine.premarket("VOL")
    assert stats is not None
    return PremarketStats(prev_close=1.0, pm_high=stats.pm_high, pm_volume=stats.pm_volume,
                          pm_last=stats.pm_last)


# --- vwap_reclaim ------------------------------------------------------------------------------

VR_CFG = {"active_strategies": ["vwap_reclaim"], "universe": ["VWP"]}


class VwapRun:
    """A VwapReclaim inside a real StrategyEngine, fed bars at New York minutes."""

    def __init__(self, **params: object) -> None:
        cfg = parse_config({**VR_CFG, "strategies": {"vwap_reclaim": params}})
        self.engine = StrategyEngine(cfg, lambda s: 0)
        self.engine.on_session_start(MarketCalendar().session(DAY))
        self.signals: list[tuple[str, str]] = []

    def bar(self, hhmm: str, price_ticks: int, volume: int, scale: int = 100, low: int | None = None) -> None:
        p = price_ticks / scale
        lo = p if low is None else low / scale
        for sig in self.engine.on_bar(Bar("VWP", et_ns(DAY, hhmm), p, p, lo, p, float(volume))):
            self.signals.append((hhmm, sig.reason))


def minute(i: int) -> str:
    return f"{9 + (30 + i) // 60:02d}:{(30 + i) % 60:02d}"


@FAST
@given(scale=ticks, a=st.integers(200, 5000), drop=st.integers(1, 150), w=st.integers(1, 5000),
       v=st.integers(1, 10**6), j=st.integers(0, 5))
def test_a_close_exactly_on_vwap_is_neither_below_nor_above(scale: int, a: int, drop: int, w: int,
                                                           v: int, j: int) -> None:
    """15 flat bars at A, 3 below at B (a stretch), then a bar at X = (5A + B) / 6, exactly the
    session VWAP (a flat bar on the VWAP keeps it there). It ends the stretch without triggering,
    whatever its volume, so the next bar above VWAP on big volume is no trigger either; one tick
    above X is a trigger, one tick below continues the stretch."""
    b = a - drop
    b -= (5 * a + b) % 6 + 6 * j  # 5A + B a multiple of 6: X is a whole tick
    if b <= 0 or b >= a:
        return
    x = (5 * a + b) // 6
    assert b < x < a

    def run(candidate: int) -> list[tuple[str, str]]:
        r = VwapRun()
        for i in range(15):
            r.bar(minute(i), a, w, scale)
        for i in range(15, 18):
            r.bar(minute(i), b, w, scale)
        r.bar(minute(18), candidate, max(v, 2 * w), scale)
        r.bar(minute(19), a * 2, 100 * (w + v), scale)  # far above VWAP on a huge volume
        return r.signals

    assert run(x) == []  # on VWAP: the stretch ends, no trigger; 09:49 has no stretch before it
    assert run(x + 1) == [(minute(18), "vwap_reclaim")]
    assert run(x - 1) == [(minute(19), "vwap_reclaim")]  # a 4th bar below, then the trigger


def test_the_issues_vwap_example() -> None:
    """VWAP 18.00 in decimals (floats give 18.000000000000004): a close of 18.00 is on it."""
    r = VwapRun()
    for i in range(15):
        r.bar(minute(i), 1801, 1300)
    for i in range(15, 18):
        r.bar(minute(i), 1795, 1300)
    r.bar(minute(18), 1800, 5000)  # (15 * 18.01 + 3 * 17.95) / 18 = 18.00: on VWAP
    assert r.engine.by_name["vwap_reclaim"].vwap("VWP") == 18.0
    r.bar(minute(19), 2000, 50_000)
    assert r.signals == []  # (floats: 18.00 "below" 18.000000000000004, a 4th bar, a trigger)


@FAST
@given(mult=st.sampled_from([1.0, 1.1, 1.25, 1.5, 2.0, 2.5, 3.75]), q=st.integers(1, 2000),
       seed=st.integers(0, 10**6), lookback=st.sampled_from([5, 10, 20]), extra=st.integers(0, 8))
def test_volume_exactly_volume_mult_times_the_mean_triggers(mult: float, q: int, seed: int,
                                                            lookback: int, extra: int) -> None:
    """The trigger bar's volume is exactly `volume_mult` times the mean of the previous
    `volume_lookback` bars (random volumes): a trigger; one share less: the setup resets."""
    import random
    from fractions import Fraction

    k, d = Fraction(repr(mult)).as_integer_ratio()
    rnd = random.Random(seed)
    n_prev = 15 + extra + 3  # flat bars, then the 3-bar stretch
    n = min(lookback, n_prev)  # bars in the mean
    total = n * d * q  # the mean d * q is a whole number; volume = k * q exactly mult * mean
    cuts = sorted(rnd.randint(0, total - n) for _ in range(n - 1))
    window = [hi - lo + 1 for lo, hi in zip([0, *cuts], [*cuts, total - n])]  # n volumes >= 1, sum total
    assert sum(window) == total
    older = [rnd.randint(1, 10 * d * q) for _ in range(n_prev - n)]
    volumes = older + window
    for delta, expected in ((0, True), (-1, False)):
        r = VwapRun(volume_mult=mult, volume_lookback=lookback)
        for i in range(n_prev - 3):
            r.bar(minute(i), 2000, volumes[i])
        for i in range(n_prev - 3, n_prev):
            r.bar(minute(i), 1900, volumes[i])
        r.bar(minute(n_prev), 2500, k * q + delta)
        assert bool(r.signals) is expected, (volumes, k * q + delta)


# --- entry windows -----------------------------------------------------------------------------

@FAST
@given(end=st.integers(1, 120))
def test_gap_and_go_entry_window_first_and_last_minute(end: int) -> None:
    """entry_end = 09:30 + `end` minutes: a break on the bar starting at entry_end - 1 minute
    signals, one starting at entry_end does not; the 09:30 bar itself is inside the window."""
    entry_end = minute(end)
    for start_minute, expected in ((end - 1, True), (end, False), (0, True)):
        cfg = parse_config({"active_strategies": ["gap_and_go"],
                            "strategies": {"gap_and_go": {"entry_end": entry_end}}})
        engine = StrategyEngine(cfg, lambda s: 0)
        cal = MarketCalendar()
        engine.on_session_start(cal.session(date(2024, 3, 14)))
        engine.on_bar(Bar("GAP", et_ns("2024-03-14", "15:59"), 10.0, 10.0, 10.0, 10.0, 1000.0))
        engine.on_session_start(cal.session(DAY))
        engine.on_bar(Bar("GAP", et_ns(DAY, "08:00"), 10.8, 11.0, 10.8, 10.9, 60_000.0))
        got = []
        for i in range(start_minute + 1):
            close = 11.2 if i == start_minute else 10.95
            got += engine.on_bar(Bar("GAP", et_ns(DAY, minute(i)), 10.95, 11.3, 10.9, close, 1000.0))
        assert bool(got) is expected, (entry_end, minute(start_minute))


@FAST
@given(start=st.integers(5, 60), length=st.integers(1, 300))
def test_vwap_reclaim_entry_window_first_and_last_minute(start: int, length: int) -> None:
    """A trigger on the bar starting at entry_start signals, one a minute before does not; one
    starting at entry_end - 1 minute signals, one at entry_end does not."""
    end = start + length
    if end > 380:
        return
    params = {"entry_start": minute(start), "entry_end": minute(end), "min_lookback_bars": 1}
    for trigger, expected in ((start, True), (start - 1, False), (end - 1, True), (end, False)):
        r = VwapRun(**params)
        for i in range(trigger - 3):
            r.bar(minute(i), 2000, 1000)
        for i in range(max(trigger - 3, 0), trigger):
            r.bar(minute(i), 1900, 1000)
        r.bar(minute(trigger), 2500, 10_000)
        assert bool(r.signals) is expected, (params, minute(trigger))


def test_infinite_prices_and_volumes_are_rejected_bars() -> None:
    """The decisions work in exact integers, which have no infinity: such a bar is rejected (NAN)
    by the DataManager, counted, and the run goes on."""
    from live_runner.data.data_manager import DataManager

    got: list[Bar] = []
    dm = DataManager(MarketCalendar(), got.append, lambda previous, session: None)
    t = et_ns(DAY, "10:00")
    inf = float("inf")
    dm.on_bar(Bar("A", t, 1.0, inf, 1.0, 1.0, 1.0))
    dm.on_bar(Bar("B", t, 1.0, 1.0, 1.0, 1.0, inf))
    dm.on_bar(Bar("C", t, 1.0, 1.0, 1.0, 1.0, 1.0))
    assert [b.symbol for b in got] == ["C"] and dict(dm.rejected) == {"NAN": 2}
