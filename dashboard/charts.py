"""The charts (Altair, drawn by Streamlit's Vega-Lite as SVG): price candles with the trade's
marks, the intraday equity curve and P&L by strategy.

Times are drawn as New York wall-clock time (the axis says which zone), whatever the browser's
own zone. Each entry, exit, stop and target is one mark with a text description (`entry 2525 @
7.0500 at 09:36:00 EST`): a screen reader reads it, and the tests count them.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import altair as alt
import pandas as pd
import streamlit as st

from dashboard import fmt

SVG = {"embedOptions": {"renderer": "svg"}}
COLORS = {"entry": "#1a7f37", "exit": "#8250df", "stop": "#cf222e", "target": "#0969da"}
UP, DOWN = "#2da44e", "#cf222e"


def _wall_ms(ns: Any) -> pd.Series:
    """UTC ns -> New York wall-clock time as epoch ms read as UTC (drawn with a UTC scale)."""
    t = pd.to_datetime(pd.Series(ns, dtype="int64"), unit="ns", utc=True).dt.tz_convert(fmt.ET)
    return t.dt.tz_localize(None).astype("datetime64[ms]").astype("int64")


def _x(day: str, title: bool = True) -> alt.X:
    return alt.X("t:T", scale=alt.Scale(type="utc"),
                 axis=alt.Axis(format="%H:%M", title=f"New York time ({fmt.zone(day)})" if title else None))


def count_marks(marks: list[dict[str, Any]]) -> dict[str, int]:
    out = {"entry": 0, "exit": 0, "stop": 0, "target": 0}
    for m in marks:
        out[m["kind"]] += 1
    return out


def legend(marks: list[dict[str, Any]]) -> str:
    """`1 entry · 0 exits · 1 stop · 1 target`: what the chart marks, said under it."""
    plural = {"entry": "entries", "exit": "exits", "stop": "stops", "target": "targets"}
    return " · ".join(f"{n} {k if n == 1 else plural[k]}" for k, n in count_marks(marks).items())


def candles(symbol: str, day: str, bars: pd.DataFrame, marks: list[dict[str, Any]], height: int = 260) -> alt.LayerChart:
    layers: list[alt.Chart] = []
    if len(bars):
        b = pd.DataFrame({"t": _wall_ms(bars["ts"]).to_numpy(), "open": bars["open"].to_numpy(),
                          "high": bars["high"].to_numpy(), "low": bars["low"].to_numpy(),
                          "close": bars["close"].to_numpy(), "volume": bars["volume"].to_numpy()})
        b["t2"] = b["t"] + 50_000
        b["color"] = (b["close"] >= b["open"]).map({True: UP, False: DOWN})
        b["bar"] = [f"{fmt.et(int(ns))} O {o:.2f} H {h:.2f} L {lo:.2f} C {c:.2f}"
                    for ns, o, h, lo, c in zip(bars["ts"], b["open"], b["high"], b["low"], b["close"])]
        color = alt.Color("color:N", scale=None)
        base = alt.Chart(b)
        layers.append(base.mark_rule(strokeWidth=1).encode(
            x=_x(day), y=alt.Y("low:Q", scale=alt.Scale(zero=False), title="price"), y2="high:Q", color=color,
            tooltip=[alt.Tooltip("bar:N", title="bar")], description=alt.Description("bar:N")))
        layers.append(base.mark_bar().encode(x="t:T", x2="t2:T", y="open:Q", y2="close:Q", color=color,
                                             description=alt.Description("bar:N")))
    m = pd.DataFrame(marks or [], columns=["kind", "ts", "price", "qty", "role", "end"])
    if len(m):
        m["t"] = _wall_ms(m["ts"]).to_numpy()
        ends = m["end"].fillna(m["ts"]).astype("int64")
        m["t2"] = _wall_ms(ends).to_numpy()
        m["label"] = [f"{k} {q} @ {fmt.price(p)} at {fmt.et(int(ts))}" if k in ("entry", "exit") else
                      f"{k} {fmt.price(p)} from {fmt.et(int(ts))} to {fmt.et(int(e))}"
                      for k, q, p, ts, e in zip(m["kind"], m["qty"], m["price"], m["ts"], ends)]
        kind_color = alt.Color("kind:N", scale=alt.Scale(domain=list(COLORS), range=list(COLORS.values())),
                               legend=alt.Legend(title=None, orient="top"))
        levels = m[m.kind.isin(["stop", "target"])]
        if len(levels):
            layers.append(alt.Chart(levels).mark_rule(strokeWidth=2, strokeDash=[6, 3]).encode(
                x=_x(day), x2="t2:T", y=alt.Y("price:Q", scale=alt.Scale(zero=False), title="price"),
                color=kind_color, tooltip=[alt.Tooltip("label:N", title=symbol)],
                description=alt.Description("label:N")))
        for kind, shape in (("entry", "triangle-up"), ("exit", "triangle-down")):
            pts = m[m.kind == kind]
            if len(pts):
                layers.append(alt.Chart(pts).mark_point(shape=shape, size=140, filled=True, opacity=1,
                                                        stroke="black", strokeWidth=0.5).encode(
                    x=_x(day), y=alt.Y("price:Q", scale=alt.Scale(zero=False), title="price"),
                    color=kind_color, tooltip=[alt.Tooltip("label:N", title=symbol)],
                    description=alt.Description("label:N")))
    if not layers:
        layers.append(alt.Chart(pd.DataFrame({"t": [], "price": []})).mark_point().encode(x=_x(day), y="price:Q"))
    return alt.layer(*layers).properties(height=height, title=symbol, usermeta=SVG,
                                         description=f"price chart {symbol}: {legend(marks)}")


def equity_curve(day: str, curve: list[tuple[int, Decimal]], start: Decimal | None, height: int = 240) -> alt.LayerChart:
    df = pd.DataFrame({"t": _wall_ms([ts for ts, _ in curve]).to_numpy() if curve else [],
                       "equity": [float(e) for _, e in curve],
                       "label": [f"{fmt.et(ts)} equity {fmt.money(e)}" for ts, e in curve]})
    line = alt.Chart(df).mark_line(interpolate="step-after").encode(
        x=_x(day), y=alt.Y("equity:Q", scale=alt.Scale(zero=False), title="equity ($)"),
        tooltip=[alt.Tooltip("label:N", title="equity")])
    layers: list[Any] = [line]
    if start is not None:
        layers.append(alt.Chart(pd.DataFrame({"equity": [float(start)], "label": [f"start {fmt.money(start)}"]}))
                      .mark_rule(strokeDash=[4, 4], color="gray").encode(y="equity:Q", tooltip="label:N"))
    return alt.layer(*layers).properties(height=height, title="Equity (cash + positions at their last price)",
                                         usermeta=SVG)


def strategy_bars(df: pd.DataFrame) -> alt.Chart:
    """Stacked horizontal bars: closed trades and open positions per strategy."""
    long = df.melt(id_vars="strategy", value_vars=["closed", "open"], var_name="part", value_name="pnl")
    long["pnl"] = long["pnl"].astype(float)
    long["label"] = [f"{s} {p}: {fmt.money(v, signed=True)}" for s, p, v in zip(long.strategy, long.part, long.pnl)]
    return alt.Chart(long).mark_bar().encode(
        y=alt.Y("strategy:N", title=None), x=alt.X("pnl:Q", stack="zero", title="P&L ($)"),
        color=alt.Color("part:N", scale=alt.Scale(domain=["closed", "open"], range=["#0969da", "#bf8700"]),
                        legend=alt.Legend(title=None, orient="bottom")),
        tooltip=[alt.Tooltip("label:N", title="P&L")], description=alt.Description("label:N"),
    ).properties(height=alt.Step(36), title="P&L by strategy", usermeta=SVG)


@st.cache_data(show_spinner=False, max_entries=256)
def spec(kind: str, key: tuple, _args: tuple) -> dict[str, Any]:
    """The Vega-Lite spec of a chart, cached by `key` (what its data is a function of: the
    journal's last seq, the symbol, the bars' end), so a refresh on unchanged data neither
    rebuilds nor hashes it."""
    chart = {"candles": candles, "equity": equity_curve, "strategies": strategy_bars}[kind](*_args)
    return chart.to_dict(validate=False)
