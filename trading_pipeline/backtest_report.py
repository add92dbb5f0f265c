"""The backtest summary as Markdown (Dagster metadata), PNG charts and one self-contained HTML.

Figures come from `backtest_summary.summarize_set`; this module only lays them out: parameter
sets side by side, then per set the monthly P&L, per strategy, top symbols and the P&L
distribution. Charts: equity curves with drawdown beneath, and the per-trade P&L histogram.
"""

from __future__ import annotations

import base64
import html
import io
from decimal import Decimal
from pathlib import Path
from typing import Any

from live_runner.core.money import money_str
from live_runner.portfolio.performance import StrategyStats
from trading_pipeline.backtest_summary import BASIS, SetSummary, drawdown, equity_curve
from trading_pipeline.report import html_table, markdown


def _f(v: float | None, pattern: str = "{:.2f}") -> str:
    return "n/a" if v is None else pattern.format(v)


def side_by_side(figures: list[dict[str, Any]]) -> list[dict[str, str]]:
    """One row per measure, one column per parameter set."""
    rows = [("sessions", lambda f: str(f["sessions"])), ("trades", lambda f: str(f["trades"])),
            ("net P&L ($)", lambda f: money_str(f["net_pnl"])),
            ("commissions ($)", lambda f: money_str(f["commissions"])),
            ("final equity ($)", lambda f: money_str(f["final_equity"])),
            ("max drawdown ($)", lambda f: money_str(f["max_drawdown"])),
            ("max drawdown (%)", lambda f: f"{f['max_drawdown_pct']:.2%}"),
            ("Sharpe (daily, ann.)", lambda f: _f(f["sharpe"])),
            ("Sortino (daily, ann.)", lambda f: _f(f["sortino"])),
            ("win rate", lambda f: f"{f['win_rate']:.1%}"),
            ("profit factor", lambda f: _f(f["profit_factor"])), ("avg R", lambda f: _f(f["avg_r"])),
            ("exposure", lambda f: f"{f['exposure']:.1%}"),
            ("winning sessions", lambda f: f"{f['winning_sessions']}/{f['sessions']}")]
    return [{"measure": name, **{f["name"]: fn(f) for f in figures}} for name, fn in rows]


def stats_table(stats: dict[str, StrategyStats], label: str, limit: int | None = None) -> list[dict[str, str]]:
    items = sorted(stats.items(), key=lambda kv: -abs(kv[1].net_pnl))[:limit] if limit else stats.items()
    return [{label: k, "trades": str(s.trades), "win rate": f"{s.win_rate:.0%}",
             "profit factor": _f(s.profit_factor), "avg R": _f(s.avg_r),
             "net P&L ($)": money_str(s.net_pnl)} for k, s in items]


def _png(fig: Any) -> bytes:
    buf = io.BytesIO()
    fig.tight_layout()
    fig.savefig(buf, format="png")
    return buf.getvalue()


def charts(sets: list[SetSummary]) -> tuple[bytes, bytes]:
    """(equity curves with drawdowns, P&L histograms) as PNG bytes."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax, ax_dd) = plt.subplots(2, 1, figsize=(9, 5), dpi=100, sharex=True,
                                    gridspec_kw={"height_ratios": [3, 1]})
    try:
        for s in sets:
            curve = equity_curve(s)
            ax.plot([d for d, _ in curve], [float(v) for _, v in curve], label=s.name, linewidth=1.2)
            _, _, dd = drawdown(s)
            ax_dd.plot([d for d, _ in dd], [-float(v) for _, v in dd], linewidth=1.0)
        ax.set_title("Equity by parameter set (end of session)", fontsize=10)
        ax.set_ylabel("equity ($)")
        ax_dd.set_ylabel("drawdown ($)")
        ax.legend(fontsize=8)
        for a in (ax, ax_dd):
            a.grid(alpha=0.3)
        fig.autofmt_xdate()
        equity = _png(fig)
    finally:
        plt.close(fig)
    fig, ax = plt.subplots(figsize=(9, 3), dpi=100)
    try:
        for s in sets:
            pnl = [float(t.pnl) for ses in s.sessions for t in ses.trades]
            if pnl:
                ax.hist(pnl, bins=40, alpha=0.5, label=s.name)
        ax.set_title("Per-trade P&L distribution", fontsize=10)
        ax.set_xlabel("P&L per trade ($, net of commissions)")
        ax.legend(fontsize=8)
        ax.grid(alpha=0.3)
        hist = _png(fig)
    finally:
        plt.close(fig)
    return equity, hist


def render(sets: list[SetSummary], figures: list[dict[str, Any]], out_dir: Path) -> dict[str, Any]:
    """Write equity.png, pnl_hist.png and report.html; return the Markdown and file paths."""
    out_dir.mkdir(parents=True, exist_ok=True)
    equity, hist = charts(sets)
    (out_dir / "equity.png").write_bytes(equity)
    (out_dir / "pnl_hist.png").write_bytes(hist)
    eq64, hist64 = base64.b64encode(equity).decode(), base64.b64encode(hist).decode()
    md = ["### Parameter sets side by side", markdown(side_by_side(figures)), f"_Basis: {BASIS}._"]
    page = [f"<h2>Parameter sets side by side</h2>{html_table(side_by_side(figures))}"
            f"<p><em>Basis: {html.escape(BASIS)}.</em></p>",
            f'<img alt="equity" src="data:image/png;base64,{eq64}">',
            f'<img alt="P&amp;L distribution" src="data:image/png;base64,{hist64}">']
    for f in figures:
        monthly = [{"month": m["month"], "sessions": str(m["sessions"]), "trades": str(m["trades"]),
                    "P&L ($)": money_str(m["pnl"])} for m in f["monthly"]]
        daily = [{"session": d["day"], "trades": str(d["trades"]), "P&L ($)": money_str(d["pnl"]),
                  "equity ($)": money_str(d["equity"])} for d in f["daily"]]
        dist = [{k: money_str(v) for k, v in f["distribution"].items()}] if f["distribution"] else []
        strat, sym = stats_table(f["per_strategy"], "strategy"), stats_table(f["per_symbol"], "symbol")
        md += [f"## {f['name']}", "**Monthly P&L**", markdown(monthly), "**Per strategy**",
               markdown(strat), "**Top symbols by |P&L|**", markdown(stats_table(
                   f["per_symbol"], "symbol", 10)), "**Per-trade P&L ($) quantiles**", markdown(dist)]
        page += [f"<h2>{html.escape(f['name'])}</h2>", "<h3>Monthly P&amp;L</h3>", html_table(monthly),
                 "<h3>Daily P&amp;L</h3>", html_table(daily), "<h3>Per strategy</h3>", html_table(strat),
                 "<h3>Per symbol</h3>", html_table(sym), "<h3>Per-trade P&amp;L quantiles ($)</h3>",
                 html_table(dist)]
    doc = f"""<!doctype html><html><head><meta charset="utf-8"><title>Backtest summary</title>
<style>body{{font-family:sans-serif;margin:2em}}table{{border-collapse:collapse;margin-bottom:1em}}
td,th{{border:1px solid #ccc;padding:3px 8px;text-align:right}}</style></head><body>
<h1>Backtest summary</h1>{''.join(page)}</body></html>"""
    (out_dir / "report.html").write_text(doc)
    return {"markdown": "\n\n".join(md), "equity_b64": eq64, "hist_b64": hist64,
            "html_path": str(out_dir / "report.html"), "equity_png": str(out_dir / "equity.png"),
            "hist_png": str(out_dir / "pnl_hist.png")}


def total_of(figures: list[dict[str, Any]]) -> Decimal:
    return sum((f["net_pnl"] for f in figures), Decimal(0))
