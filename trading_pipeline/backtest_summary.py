"""Statistics across backtested sessions, per parameter set (pure functions, no Dagster).

Bases, stated once (they are shown in the report too):
- Every session starts from the set's `account_size` (partitions are independent replays), so
  the equity curve is `account_size + cumulative session P&L` (no compounding) and a session's
  return is `session P&L / account_size`.
- Sharpe = mean / stdev (ddof=1) of the daily returns x sqrt(252); Sortino = mean / downside
  deviation x sqrt(252), downside deviation = sqrt(mean(min(r, 0)^2)) over all sessions; risk-free
  rate 0; None with fewer than two sessions or a zero denominator.
- Drawdown: the largest fall of the end-of-session equity curve from its running peak (the
  starting equity included), in dollars and as a share of that peak.
- Win rate, profit factor and average R are live_runner.portfolio.performance.StrategyStats' (the runner's
  own definitions); exposure is the share of regular-session minutes with at least one position.
Money is Decimal throughout; only ratios are floats.
"""

from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import date
from decimal import Decimal
from typing import Any

from live_runner.core.trades import TradeRecord
from live_runner.portfolio.performance import StrategyStats
from trading_pipeline.partitions import market_calendar

TRADING_DAYS_PER_YEAR = 252
BASIS = ("daily returns = session P&L / account_size (each session starts from account_size); "
         "Sharpe and Sortino annualised by sqrt(252), risk-free 0; drawdown on end-of-session equity")


@dataclass
class SessionResult:
    """One backtested (session, parameter set), as its journal says."""

    day: date
    realized: Decimal
    commissions: Decimal
    trades: list[TradeRecord]
    bars: int = 0


@dataclass
class SetSummary:
    name: str
    account_size: Decimal
    sessions: list[SessionResult] = field(default_factory=list)

    @property
    def total(self) -> Decimal:
        return sum((s.realized for s in self.sessions), Decimal(0))


def _ratio_stats(returns: list[float]) -> tuple[float | None, float | None]:
    n = len(returns)
    if n < 2:
        return None, None
    mean = sum(returns) / n
    sd = math.sqrt(sum((r - mean) ** 2 for r in returns) / (n - 1))
    down = math.sqrt(sum(min(r, 0.0) ** 2 for r in returns) / n)
    scale = math.sqrt(TRADING_DAYS_PER_YEAR)
    return (mean / sd * scale if sd > 0 else None), (mean / down * scale if down > 0 else None)


def equity_curve(s: SetSummary) -> list[tuple[date, Decimal]]:
    out, equity = [], s.account_size
    for ses in s.sessions:
        equity += ses.realized
        out.append((ses.day, equity))
    return out


def drawdown(s: SetSummary) -> tuple[Decimal, float, list[tuple[date, Decimal]]]:
    """(max drawdown $, as a share of its peak, the drawdown series)."""
    peak, worst, worst_pct, series = s.account_size, Decimal(0), 0.0, []
    for day, equity in equity_curve(s):
        peak = max(peak, equity)
        dd = peak - equity
        series.append((day, dd))
        if dd > worst:
            worst, worst_pct = dd, float(dd / peak)
    return worst, worst_pct, series


def exposure(s: SetSummary) -> float:
    """Share of regular-session minutes with at least one open position."""
    cal = market_calendar()
    held = total = 0
    for ses in s.sessions:
        times = cal.session(ses.day)
        total += times.close - times.open
        spans = sorted((max(t.entry_ts, times.open), min(t.exit_ts, times.close)) for t in ses.trades)
        end = times.open
        for a, b in spans:
            a = max(a, end)
            if b > a:
                held += b - a
                end = b
    return held / total if total else 0.0


def monthly(s: SetSummary) -> list[dict[str, Any]]:
    by: dict[str, list[SessionResult]] = defaultdict(list)
    for ses in s.sessions:
        by[ses.day.strftime("%Y-%m")].append(ses)
    return [{"month": m, "sessions": len(v), "trades": sum(len(x.trades) for x in v),
             "pnl": sum((x.realized for x in v), Decimal(0))} for m, v in sorted(by.items())]


def grouped(trades: list[TradeRecord], key: str) -> dict[str, StrategyStats]:
    groups: dict[str, list[TradeRecord]] = defaultdict(list)
    for t in trades:
        groups[getattr(t, key)].append(t)
    return {k: StrategyStats.from_trades(v) for k, v in sorted(groups.items())}


def distribution(trades: list[TradeRecord]) -> dict[str, Decimal]:
    """Quantiles of per-trade P&L (nearest rank, so every value is a real trade's P&L)."""
    pnl = sorted(t.pnl for t in trades)
    if not pnl:
        return {}
    pick = {"min": 0.0, "p10": 0.10, "p25": 0.25, "median": 0.5, "p75": 0.75, "p90": 0.90, "max": 1.0}
    return {k: pnl[min(len(pnl) - 1, max(0, math.ceil(q * len(pnl)) - 1))] for k, q in pick.items()}


def summarize_set(s: SetSummary) -> dict[str, Any]:
    """Every figure of one parameter set (money as Decimal)."""
    s.sessions.sort(key=lambda x: x.day)
    trades = [t for ses in s.sessions for t in ses.trades]
    returns = [float(ses.realized / s.account_size) for ses in s.sessions]
    sharpe, sortino = _ratio_stats(returns)
    dd, dd_pct, _ = drawdown(s)
    overall = StrategyStats.from_trades(trades)
    return {
        "name": s.name, "sessions": len(s.sessions), "trades": len(trades),
        "first": s.sessions[0].day.isoformat() if s.sessions else None,
        "last": s.sessions[-1].day.isoformat() if s.sessions else None,
        "net_pnl": s.total, "trades_pnl": overall.net_pnl,
        "commissions": sum((x.commissions for x in s.sessions), Decimal(0)),
        "final_equity": s.account_size + s.total, "account_size": s.account_size,
        "max_drawdown": dd, "max_drawdown_pct": dd_pct, "sharpe": sharpe, "sortino": sortino,
        "win_rate": overall.win_rate, "profit_factor": overall.profit_factor, "avg_r": overall.avg_r,
        "exposure": exposure(s), "winning_sessions": sum(1 for x in s.sessions if x.realized > 0),
        "bars": sum(x.bars for x in s.sessions),
        "per_strategy": grouped(trades, "strategy"), "per_symbol": grouped(trades, "symbol"),
        "distribution": distribution(trades), "monthly": monthly(s),
        "daily": [{"day": ses.day.isoformat(), "trades": len(ses.trades), "pnl": ses.realized,
                   "equity": eq} for ses, (_, eq) in zip(s.sessions, equity_curve(s))],
    }
