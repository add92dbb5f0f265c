"""PerformanceTracker against hand-computed numbers."""

from __future__ import annotations

import json
import math
from decimal import Decimal
from fractions import Fraction

import pytest
from hypothesis import given
from hypothesis import strategies as st

from live_runner.core.models import NANOS_PER_MINUTE, NANOS_PER_SECOND
from live_runner.portfolio.performance import PerformanceTracker, StrategyStats, TradeRecord

D = Decimal
C = D("0.35")  # one order's commission


def _three_trades() -> list[TradeRecord]:
    # T1: (10.50 - 10.00) * 100 = 50.00 - 0.70 = 49.30; risk 100 * 0.20 = 20 -> R 2.465
    t1 = TradeRecord.from_prices(
        symbol="AAPL", strategy="gap_and_go", qty=100, entry_ts=1, entry_price=10.0,
        exit_ts=2, exit_price=10.5, exit_reason="target", entry_commission=C,
        exit_commission=C, stop=9.8)
    # T2: (4.90 - 5.00) * 200 = -20.00 - 1.40 = -21.40; risk 200 * 0.10 = 20 -> R -1.07
    t2 = TradeRecord.from_prices(
        symbol="MSFT", strategy="vwap_reclaim", qty=200, entry_ts=3, entry_price=5.0,
        exit_ts=4, exit_price=4.9, exit_reason="stop", entry_commission=D("0.70"),
        exit_commission=D("0.70"), stop=4.9)
    # T3: (8.40 - 8.00) * 50 = 20.00 - 0.70 = 19.30; risk 50 * 0.20 = 10 -> R 1.93
    t3 = TradeRecord.from_prices(
        symbol="TSLA", strategy="gap_and_go", qty=50, entry_ts=5, entry_price=8.0,
        exit_ts=6, exit_price=8.4, exit_reason="eod", entry_commission=C,
        exit_commission=C, stop=7.8)
    return [t1, t2, t3]


def _tracker_with_trades() -> PerformanceTracker:
    tracker = PerformanceTracker(D("100000"))
    for t in _three_trades():
        tracker.record_trade(t)
    return tracker


def _trade(pnl: Decimal, strategy: str = "s", risk: Decimal = D(0)) -> TradeRecord:
    return TradeRecord("X", strategy, 1, 0, 10.0, 1, 10.0, "manual", pnl, D(0), risk)


def test_trade_record_exact_values() -> None:
    t1, t2, t3 = _three_trades()
    assert (t1.pnl, t1.commission, t1.initial_risk) == (D("49.30"), D("0.70"), D("20.0"))
    assert (t2.pnl, t2.commission, t2.initial_risk) == (D("-21.40"), D("1.40"), D("20.0"))
    assert t3.pnl == D("19.30")
    assert t1.r_multiple == 2.465
    assert t2.r_multiple == -1.07
    assert t3.r_multiple == 1.93


def test_r_multiple_none_without_stop_and_validation() -> None:
    t = TradeRecord.from_prices(symbol="A", strategy="s", qty=1, entry_ts=0, entry_price=5.0,
                                exit_ts=1, exit_price=6.0, exit_reason="manual")
    assert t.initial_risk == 0 and t.r_multiple is None and t.pnl == D("1.0")
    with pytest.raises(ValueError):
        TradeRecord("X", "s", 1, 0, 1.0, 1, 1.0, "bogus", D(0), D(0))
    with pytest.raises(ValueError):
        TradeRecord("X", "s", 0, 0, 1.0, 1, 1.0, "stop", D(0), D(0))


def test_overall_stats_hand_computed() -> None:
    tracker = _tracker_with_trades()
    s = tracker.overall_stats()
    assert (s.trades, s.wins, s.losses) == (3, 2, 1)
    assert s.win_rate == 2 / 3
    assert s.gross_profit == D("68.60")
    assert s.gross_loss == D("21.40")
    assert s.profit_factor == float(Fraction(6860, 2140))
    assert s.avg_r == pytest.approx((2.465 - 1.07 + 1.93) / 3, rel=1e-15)
    assert s.net_pnl == D("47.20")
    # cumulative: 49.30, 27.90, 47.20 -> peak 49.30, trough 27.90
    assert s.max_drawdown == D("21.40")
    # per-trade returns: pnl / (entry * qty)
    r = [49.30 / 1000, -21.40 / 1000, 19.30 / 400]
    mean = sum(r) / 3
    std = math.sqrt(sum((x - mean) ** 2 for x in r) / 2)
    assert s.sharpe == pytest.approx(mean / std, rel=1e-12)
    assert tracker.realized_pnl == D("47.20")
    assert tracker.commissions == D("2.80")


def test_per_strategy_split() -> None:
    stats = _tracker_with_trades().stats_by_strategy()
    assert list(stats) == ["gap_and_go", "vwap_reclaim"]
    gg, vr = stats["gap_and_go"], stats["vwap_reclaim"]
    assert (gg.trades, gg.wins, gg.losses, gg.win_rate) == (2, 2, 0, 1.0)
    assert gg.profit_factor is None  # no losing trade
    assert gg.net_pnl == D("68.60") and gg.max_drawdown == 0
    assert gg.avg_r == pytest.approx((2.465 + 1.93) / 2, rel=1e-15)
    assert (vr.trades, vr.wins, vr.losses, vr.win_rate) == (1, 0, 1, 0.0)
    assert vr.profit_factor == 0.0
    assert vr.max_drawdown == D("21.40")  # peak starts at 0
    assert vr.sharpe is None  # a single trade


def test_no_trades_edge_cases() -> None:
    tracker = PerformanceTracker(D("50000"))
    s = tracker.overall_stats()
    assert s == StrategyStats(0, 0, 0, 0.0, D(0), D(0), None, None, D(0), D(0), None)
    assert tracker.stats_by_strategy() == {}
    assert tracker.realized_pnl == 0 and tracker.commissions == 0
    assert tracker.trades == [] and tracker.equity_curve == []


def test_breakeven_trade_is_neither_win_nor_loss() -> None:
    s = StrategyStats.from_trades([_trade(D(0)), _trade(D(5))])
    assert (s.trades, s.wins, s.losses, s.win_rate) == (2, 1, 0, 0.5)


def test_same_per_trade_returns_give_no_sharpe() -> None:
    s = StrategyStats.from_trades([_trade(D(1)), _trade(D(1))])
    assert s.sharpe is None


def test_one_mark_per_minute() -> None:
    tracker = PerformanceTracker(D("100"))
    tracker.mark_equity(0, D("100"))
    tracker.mark_equity(30 * NANOS_PER_SECOND, D("101"))
    tracker.mark_equity(59 * NANOS_PER_SECOND, D("102"))
    tracker.mark_equity(NANOS_PER_MINUTE, D("103"))
    assert tracker.equity_curve == [(59 * NANOS_PER_SECOND, D("102")), (NANOS_PER_MINUTE, D("103"))]
    with pytest.raises(ValueError):
        tracker.mark_equity(10, D("1"))
    # a full 04:00-20:00 session of per-second marks stays at 960 points
    full = PerformanceTracker(D("100"))
    for s in range(0, 960 * 60, 7):
        full.mark_equity(s * NANOS_PER_SECOND, D(s))
    assert len(full.equity_curve) == 960


def test_decimal_exactness_over_1000_trades() -> None:
    tracker = PerformanceTracker(D("10000"))
    float_sum = 0.0
    for i in range(1000):
        tracker.record_trade(TradeRecord.from_prices(
            symbol="Z", strategy="s", qty=1, entry_ts=i, entry_price=0.2, exit_ts=i,
            exit_price=0.3, exit_reason="target"))
        float_sum += 0.3 - 0.2
    assert tracker.realized_pnl == D("100.0")
    assert float_sum != 100.0  # what a running float sum would have reported
    tracker2 = PerformanceTracker(D("10000"))
    for i in range(1000):
        tracker2.record_trade(TradeRecord.from_prices(
            symbol="Z", strategy="s", qty=3, entry_ts=i, entry_price=0.1, exit_ts=i,
            exit_price=0.3, exit_reason="target", entry_commission=D("0.35"),
            exit_commission=D("0.35")))
    # per trade: 0.2 * 3 - 0.70 = -0.10
    assert tracker2.realized_pnl == D("-100.00")
    assert tracker2.commissions == D("700.00")


def test_stats_and_trades_serialize_money_exactly() -> None:
    """The session summary's stats and the journaled trades: money as exact 0.0001 strings."""
    tracker = _tracker_with_trades()
    stats = json.loads(json.dumps({k: v.to_dict() for k, v in tracker.stats_by_strategy().items()}))
    overall = json.loads(json.dumps(tracker.overall_stats().to_dict()))
    trades = json.loads(json.dumps([t.to_dict() for t in tracker.trades]))
    assert tracker.realized_pnl == D("47.2") and tracker.commissions == D("2.8")
    assert overall["profit_factor"] == float(Fraction(6860, 2140))
    assert stats["vwap_reclaim"]["max_drawdown"] == "21.4000"
    assert trades[0]["pnl"] == "49.3000"


pnls = st.lists(
    st.integers(min_value=-1_000_000, max_value=1_000_000).map(lambda c: D(c) / 100),
    max_size=60)


@given(pnls)
def test_max_drawdown_bounded_by_losses(values: list[Decimal]) -> None:
    s = StrategyStats.from_trades([_trade(v) for v in values])
    assert 0 <= s.max_drawdown <= s.gross_loss
    assert s.net_pnl == sum(values, D(0))


@given(st.lists(st.tuples(st.integers(100, 5000), st.integers(-300, 300), st.integers(1, 900),
                          st.sampled_from(["gap_and_go", "vwap_reclaim"]), st.booleans()), max_size=40))
def test_incremental_statistics_equal_the_batch_formulas(rows: list[tuple[int, int, int, str, bool]]) -> None:
    """/status reads statistics kept one trade at a time: they must equal the textbook batch
    formulas (statistics.fmean / stdev, a running-peak drawdown) exactly, not approximately."""
    import statistics

    tracker = PerformanceTracker(Decimal("100000"))
    for i, (entry_cents, move_cents, qty, strategy, has_stop) in enumerate(rows):
        entry = entry_cents / 100
        tracker.record_trade(TradeRecord.from_prices(
            symbol="A", strategy=strategy, qty=qty, entry_ts=i, entry_price=entry, exit_ts=i + 1,
            exit_price=(entry_cents + move_cents) / 100, exit_reason="stop",
            entry_commission=Decimal("0.35"), exit_commission=Decimal("0.35"),
            stop=(entry_cents - 25) / 100 if has_stop else None))
    for name, stats in [("all", tracker.overall_stats()), *tracker.stats_by_strategy().items()]:
        trades = [t for t in tracker.trades if name in ("all", t.strategy)]
        returns = [t.trade_return for t in trades if t.trade_return is not None]
        expected = None
        if len(returns) >= 2 and statistics.stdev(returns) != 0:
            expected = statistics.fmean(returns) / statistics.stdev(returns)
        assert stats.sharpe == expected
        peak, worst, running = Decimal(0), Decimal(0), Decimal(0)
        for t in trades:
            running += t.pnl
            peak = max(peak, running)
            worst = max(worst, peak - running)
        assert (stats.max_drawdown, stats.net_pnl, stats.trades) == (worst, running, len(trades))
        assert stats.wins == sum(t.pnl > 0 for t in trades) and stats.losses == sum(t.pnl < 0 for t in trades)
        rs = [Fraction(t.pnl) / Fraction(t.initial_risk) for t in trades if t.initial_risk > 0]
        assert stats.avg_r == (float(sum(rs, Fraction(0)) / len(rs)) if rs else None)
