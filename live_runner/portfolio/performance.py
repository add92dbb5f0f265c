"""Closed-trade and equity-curve statistics for the session report and the /status endpoint.

Money (P&L, commissions, risk, equity) stays `Decimal` end to end so that a report reconciles to
the cent with the journal; ratios (win rate, profit factor, R multiples, Sharpe) are derived at the
end through `Fraction`, so each float is the correctly rounded value of the exact ratio.
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal
from fractions import Fraction
from typing import Any

from live_runner.core.models import NANOS_PER_MINUTE
from live_runner.core.trades import (
    TradeRecord,  # re-exported: the record lives in core (one type)
)
from live_runner.core.trades import money_str_4 as _money_str
from live_runner.core.trades import ratio as _ratio

_ZERO = Decimal(0)


@dataclass(frozen=True, slots=True)
class StrategyStats:
    """Closed-trade statistics for one strategy (or all trades, see `PerformanceTracker`).

    - wins: pnl > 0; losses: pnl < 0; a break-even trade (pnl == 0) is neither but counts in
      `trades`, so `win_rate = wins / trades` (0.0 with no trades).
    - gross_loss is positive. profit_factor = gross_profit / gross_loss, None when there is no
      losing trade (it would be infinite, or undefined with no trades at all).
    - avg_r: mean R multiple over the trades whose initial risk is known; None when none is.
    - max_drawdown: largest peak-to-trough fall (positive) of the cumulative closed-trade P&L in
      the order trades were recorded, starting from a peak of 0 (so a first losing trade counts).
    - sharpe: mean / stdev (ddof=1) of per-trade returns `pnl / (entry_price * qty)`, NOT
      annualised (trades are not evenly spaced in time); None with fewer than two trades or zero
      stdev.
    """

    trades: int
    wins: int
    losses: int
    win_rate: float
    gross_profit: Decimal
    gross_loss: Decimal
    profit_factor: float | None
    avg_r: float | None
    net_pnl: Decimal
    max_drawdown: Decimal
    sharpe: float | None

    @classmethod
    def from_trades(cls, trades: Sequence[TradeRecord]) -> StrategyStats:
        """Compute the statistics of `trades` taken in closing order."""
        acc = StatsAccumulator()
        for t in trades:
            acc.add(t)
        return acc.stats()

    def to_dict(self) -> dict[str, Any]:
        return {
            "trades": self.trades,
            "wins": self.wins,
            "losses": self.losses,
            "win_rate": self.win_rate,
            "gross_profit": _money_str(self.gross_profit),
            "gross_loss": _money_str(self.gross_loss),
            "profit_factor": self.profit_factor,
            "avg_r": self.avg_r,
            "net_pnl": _money_str(self.net_pnl),
            "max_drawdown": _money_str(self.max_drawdown),
            "sharpe": self.sharpe,
        }


class StatsAccumulator:
    """`StrategyStats` kept up to date one trade at a time, so /status and /metrics cost O(1) in
    the number of trades. Sums are exact (Decimal money, Fraction ratios and returns), so the
    result equals the batch formulas bit for bit: the mean is `fsum / n` and the stdev the
    correctly rounded root of the exact sample variance, as `statistics` computes them."""

    __slots__ = ("trades", "wins", "losses", "gross_profit", "gross_loss", "r_sum", "r_count",
                 "running", "peak", "worst", "ret_n", "ret_sum", "ret_sq", "_cached")

    def __init__(self) -> None:
        self.trades = self.wins = self.losses = self.r_count = self.ret_n = 0
        self.gross_profit = self.gross_loss = self.running = self.peak = self.worst = _ZERO
        self.r_sum = self.ret_sum = self.ret_sq = Fraction(0)
        self._cached: StrategyStats | None = None

    def add(self, t: TradeRecord) -> None:
        self._cached = None
        self.trades += 1
        if t.pnl > 0:
            self.wins += 1
            self.gross_profit += t.pnl
        elif t.pnl < 0:
            self.losses += 1
            self.gross_loss -= t.pnl
        if t.initial_risk > 0:
            self.r_sum += Fraction(t.pnl) / Fraction(t.initial_risk)
            self.r_count += 1
        self.running += t.pnl
        if self.running > self.peak:
            self.peak = self.running
        elif self.peak - self.running > self.worst:
            self.worst = self.peak - self.running
        r = t.trade_return
        if r is not None:
            x = Fraction(r)
            self.ret_n += 1
            self.ret_sum += x
            self.ret_sq += x * x

    def _sharpe(self) -> float | None:
        n = self.ret_n
        if n < 2:
            return None
        ss = self.ret_sq - self.ret_sum * self.ret_sum / n
        if ss == 0:
            return None
        var = ss / (n - 1)
        std = statistics._float_sqrt_of_frac(var.numerator, var.denominator)  # type: ignore[attr-defined]
        return (float(self.ret_sum) / n) / std

    def stats(self) -> StrategyStats:
        if self._cached is None:
            self._cached = StrategyStats(
                trades=self.trades, wins=self.wins, losses=self.losses,
                win_rate=self.wins / self.trades if self.trades else 0.0,
                gross_profit=self.gross_profit, gross_loss=self.gross_loss,
                profit_factor=_ratio(self.gross_profit, self.gross_loss) if self.gross_loss > 0 else None,
                avg_r=float(self.r_sum / self.r_count) if self.r_count else None,
                net_pnl=self.running, max_drawdown=self.worst, sharpe=self._sharpe())
        return self._cached


class PerformanceTracker:
    """Session P&L bookkeeping: closed trades plus an equity curve of at most one mark a minute.

    The curve holds one mark per UTC minute (a later mark in the same minute replaces the
    earlier one), so a full 04:00-20:00 session is at most 960 points; `start_session` (the
    node, at each session) starts the next day's, so a long run keeps one
    day of marks, not all of them (the journal has every mark). Marks must arrive in time order
    (the injected clock is monotonic).
    """

    def __init__(self, starting_equity: Decimal) -> None:
        self._starting_equity = Decimal(starting_equity)
        self._trades: list[TradeRecord] = []
        self._curve: list[tuple[int, Decimal]] = []
        self._realized = _ZERO
        self._commissions = _ZERO
        self._overall = StatsAccumulator()
        self._by_strategy: dict[str, StatsAccumulator] = {}

    @property
    def starting_equity(self) -> Decimal:
        return self._starting_equity

    def record_trade(self, t: TradeRecord) -> None:
        """Add a closed trade; running totals are exact Decimal sums."""
        self._trades.append(t)
        self._realized += t.pnl
        self._commissions += t.commission
        self._overall.add(t)
        acc = self._by_strategy.get(t.strategy)
        if acc is None:
            acc = self._by_strategy[t.strategy] = StatsAccumulator()
        acc.add(t)

    def start_session(self, equity: Decimal) -> None:
        """A new session's equity curve (the journal keeps every mark); trades and their
        statistics carry on. `equity` is the session's starting equity."""
        self._curve.clear()

    def mark_equity(self, ts: int, equity: Decimal) -> None:
        """Record equity at `ts` (UTC ns), replacing the last mark when in the same minute.

        Raises ValueError for a mark older than the last one: that means a clock bug, and a
        silently reordered curve would corrupt the drawdown and Sharpe.
        """
        point = (ts, Decimal(equity))
        if self._curve:
            last_ts = self._curve[-1][0]
            if ts < last_ts:
                raise ValueError(f"equity mark at {ts} is older than the last mark {last_ts}")
            if ts // NANOS_PER_MINUTE == last_ts // NANOS_PER_MINUTE:
                self._curve[-1] = point
                return
        self._curve.append(point)

    @property
    def trades(self) -> list[TradeRecord]:
        return list(self._trades)

    @property
    def trade_count(self) -> int:
        return len(self._trades)

    def trades_from(self, start: int) -> list[TradeRecord]:
        """The trades closed since the first `start` (for scrapers that count on incrementally)."""
        return self._trades[start:]

    @property
    def equity_curve(self) -> list[tuple[int, Decimal]]:
        return list(self._curve)

    @property
    def realized_pnl(self) -> Decimal:
        """Sum of closed-trade pnl, net of commissions."""
        return self._realized

    @property
    def commissions(self) -> Decimal:
        return self._commissions

    def stats_by_strategy(self) -> dict[str, StrategyStats]:
        """Per-strategy statistics, keyed in sorted order so reports are deterministic."""
        return {name: self._by_strategy[name].stats() for name in sorted(self._by_strategy)}

    def overall_stats(self) -> StrategyStats:
        """All trades as one book (per-trade Sharpe, as for a strategy)."""
        return self._overall.stats()
