"""The daily report: P&L, per-strategy statistics, the trades table and the equity curve, as
Markdown (Dagster metadata), PNG and one self-contained HTML file.

Statistics are live_runner.portfolio.performance's (the same code the runner reports with), so the report
and the runner never disagree on what a win rate or a drawdown is. Every P&L in it (realized, per
trade, per strategy) is net of commissions, as in the runner's --json. Money is in US dollars; the
max drawdown is the largest fall of the cumulative closed-trade P&L in dollars; the Sharpe ratio
is per trade (mean / standard deviation of trade returns), not annualized.
"""

from __future__ import annotations

import base64
import html
import io
from decimal import Decimal
from pathlib import Path
from typing import Any

from live_runner.core.money import money_str
from live_runner.core.trades import TradeRecord
from live_runner.portfolio.performance import StrategyStats
from trading_pipeline.partitions import ns_to_ny


def _fmt(v: float | None, pattern: str = "{:.2f}") -> str:
    return "n/a" if v is None else pattern.format(v)


def strategy_stats(records: list[TradeRecord]) -> list[tuple[str, StrategyStats]]:
    """One entry per strategy plus the total ("all"), last."""
    groups: dict[str, list[TradeRecord]] = {}
    for r in records:
        groups.setdefault(r.strategy, []).append(r)
    return [(name, StrategyStats.from_trades(trades))
            for name, trades in [*sorted(groups.items()), ("all", records)]]


def stats_rows(records: list[TradeRecord]) -> list[dict[str, str]]:
    """One row per strategy plus the total, as display strings."""
    return [{"strategy": name, "trades": str(s.trades), "win rate": f"{s.win_rate:.0%}",
             "profit factor": _fmt(s.profit_factor), "avg R": _fmt(s.avg_r),
             "net P&L ($)": f"{s.net_pnl:.2f}", "max drawdown ($)": f"{s.max_drawdown:.2f}",
             "Sharpe (per trade)": _fmt(s.sharpe)}
            for name, s in strategy_stats(records)]


def stats_numbers(records: list[TradeRecord]) -> list[dict[str, Any]]:
    """The same statistics as numbers (metadata, plots)."""
    return [{"strategy": name, "trades": s.trades, "win_rate": s.win_rate,
             "net_pnl": money_str(s.net_pnl), "max_drawdown": money_str(s.max_drawdown),
             "sharpe": s.sharpe}
            for name, s in strategy_stats(records)]


def trade_rows(records: list[TradeRecord]) -> list[dict[str, str]]:
    return [{"symbol": r.symbol, "strategy": r.strategy, "qty": str(r.qty),
             "entry (ET)": ns_to_ny(r.entry_ts).strftime("%H:%M"), "entry": _price(r.entry_price),
             "exit (ET)": ns_to_ny(r.exit_ts).strftime("%H:%M"), "exit": _price(r.exit_price),
             "reason": r.exit_reason, "R": _fmt(r.r_multiple), "net P&L ($)": f"{r.pnl:.2f}"}
            for r in records]


def _price(p: float) -> str:
    """A fill price as traded: cents, or the sub-penny print itself (4.795 stays 4.795)."""
    text = repr(p)
    return f"{p:.2f}" if "." not in text or len(text.split(".")[1]) <= 2 else text


def markdown(rows: list[dict[str, str]]) -> str:
    if not rows:
        return "_none_"
    cols = list(rows[0])
    lines = ["| " + " | ".join(cols) + " |", "|" + "|".join("---" for _ in cols) + "|"]
    lines += ["| " + " | ".join(r[c] for c in cols) + " |" for r in rows]
    return "\n".join(lines)


def html_table(rows: list[dict[str, str]]) -> str:
    if not rows:
        return "<p><em>none</em></p>"
    cols = list(rows[0])
    head = "".join(f"<th>{html.escape(c)}</th>" for c in cols)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(r[c])}</td>" for c in cols) + "</tr>"
                   for r in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def equity_png(curve: list[list[Any]], title: str, start: str | None = None) -> bytes:
    """The intraday equity curve (ET times) as PNG bytes, the session's starting equity dashed;
    a 'no equity marks' chart without data."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.dates as mdates
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 3.2), dpi=100)
    try:
        if curve:
            times = [ns_to_ny(int(ts)) for ts, _ in curve]
            values = [float(v) for _, v in curve]
            ax.plot(times, values, color="#1f77b4", linewidth=1.2)
            ax.axhline(float(start) if start else values[0], color="#999999", linewidth=0.6, linestyle="--")
            ax.xaxis.set_major_formatter(mdates.DateFormatter("%H:%M", tz=times[0].tzinfo))
        else:
            ax.text(0.5, 0.5, "no equity marks", ha="center", va="center", transform=ax.transAxes)
        ax.set_title(title, fontsize=10)
        ax.set_ylabel("equity ($)")
        ax.grid(alpha=0.3)
        fig.tight_layout()
        buf = io.BytesIO()
        fig.savefig(buf, format="png")
        return buf.getvalue()
    finally:
        plt.close(fig)


def build(snap: dict[str, Any], records: list[TradeRecord], out_dir: Path) -> dict[str, Any]:
    """Write equity.png and report.html into out_dir; return the numbers and the Markdown."""
    out_dir.mkdir(parents=True, exist_ok=True)
    day = snap["session"]
    trades_pnl = sum((r.pnl for r in records), Decimal(0))
    png = equity_png(snap["equity_curve"], f"Equity, {day}", snap.get("starting_equity"))
    png_path = out_dir / "equity.png"
    png_path.write_bytes(png)
    b64 = base64.b64encode(png).decode()
    stats, trades = stats_rows(records), trade_rows(records)
    positions = snap["positions"]
    status = ("no live session ran" if not snap["ran"] else
              "session closed" if snap["ended"] else "session NOT closed (stopped early)")
    head = (f"**{day}**: realized P&L **${snap['realized_pnl']}** (net of commissions "
            f"${snap['commissions']}), "
            f"{len(records)} trades, {status}"
            + (f", open positions {positions}" if positions else ""))
    md = "\n\n".join([head, "### Per strategy", markdown(stats), "### Trades", markdown(trades)])
    page = f"""<!doctype html><html><head><meta charset="utf-8"><title>Daily report {day}</title>
<style>body{{font-family:sans-serif;margin:2em}}table{{border-collapse:collapse}}
td,th{{border:1px solid #ccc;padding:3px 8px;text-align:right}}</style></head><body>
<h1>Daily report {html.escape(day)}</h1><p>{html.escape(head.replace('**', ''))}</p>
<img alt="equity curve" src="data:image/png;base64,{b64}">
<h2>Per strategy</h2>{html_table(stats)}<h2>Trades</h2>{html_table(trades)}</body></html>"""
    html_path = out_dir / "report.html"
    html_path.write_text(page)
    return {"session": day, "realized_pnl": snap["realized_pnl"], "trades_pnl": money_str(trades_pnl),
            "trades": len(records), "stats": stats_numbers(records), "markdown": md, "png_b64": b64, "png_path": str(png_path),
            "html_path": str(html_path), "ended": snap["ended"], "ran": snap["ran"]}
