"""The live day: the runner's /status while it answers, the journal's projection of the runner's
last session when it does not (said, with the time of the journal's last event)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pandas as pd
import streamlit as st

from dashboard import bars as bars_mod, charts, fmt, journal_view as jv, sources, tables
from dashboard.runner import RunnerView
from dashboard.settings import Settings
from live_runner.ops.redact import redact_url, scrub

CSS = """<style>
[data-testid="stMainBlockContainer"] { padding-top: 2.5rem; }
[data-testid="stMetricValue"] { font-size: clamp(1.15rem, 1.7vw, 1.75rem); }
[data-testid="stMetricValue"] > div { white-space: nowrap; }
[data-testid="stMetricLabel"] p { font-size: 0.85rem; }
</style>"""
MAX_CHARTS = 12  # price charts drawn at once; the others are picked


@dataclass
class Today:
    """What the Today tab shows, from one refresh."""

    catalog: sources.Catalog
    session: str | None
    view: jv.SessionView | None
    why: str  # why there is no view ("" when there is one)
    url: str  # the journal URL of the session (may hold a password: never shown unredacted)
    bars_file: str | None


def table(df: pd.DataFrame, empty: str, rows: int | None = None) -> None:
    if df.empty:
        st.caption(empty)
        return
    st.dataframe(df.head(rows) if rows else df, hide_index=True, width="stretch")
    if rows and len(df) > rows:
        st.caption(f"first {rows} of {len(df)} rows")


def journal_template(settings: Settings, status: dict[str, Any] | None) -> str:
    return settings.journal_url or ((status or {}).get("journal") or {}).get("url", "")


def load_view(cat: sources.Catalog, session: str | None) -> tuple[jv.SessionView | None, str, str]:
    """(view, why not, url) of `session` (None: the newest) in the catalog."""
    if not cat.template:
        return None, "No journal configured (set TRADING_JOURNAL_URL): the journal panels are empty.", ""
    shown = redact_url(cat.template)  # the URL may hold the journal's password: never on the page
    if cat.error and not cat.urls:
        return None, f"Journal unreadable at {shown}: {scrub(cat.error)}", ""
    session = session or cat.latest()
    if not session:
        return None, f"The journal at {shown} is empty or missing (a fresh install): nothing recorded yet.", ""
    url = cat.url(session)
    probe = sources.probe(url)
    if probe.error:
        return None, f"Journal unreadable at {redact_url(url)}: {scrub(probe.error)}", url
    if session not in probe.sessions:
        return None, f"The journal at {shown} holds nothing for session {session} yet.", url
    try:
        return jv.session_view(url, session, probe.last_seq), "", url
    except Exception as exc:  # a journal the dashboard cannot read is shown, not raised
        return None, f"Journal at {redact_url(url)} could not be read: {type(exc).__name__}: {scrub(str(exc))}", url


def today(settings: Settings, runner: RunnerView, last: dict[str, Any] | None) -> Today:
    """The runner's session: the one it reports, else the one it reported last, else the
    journal's newest."""
    status = runner.status or last or {}
    cat = sources.catalog(journal_template(settings, status))
    session = status.get("session") or None
    view, why, url = load_view(cat, session)
    if view is None and session and runner.status is None:  # its session is not in this journal
        view, why, url = load_view(cat, None)
    return Today(cat, view.session if view else session, view, why, url, status.get("bars_file"))


# --- the banner ------------------------------------------------------------------------------------
def banner(runner: RunnerView, t: Today) -> None:
    status = runner.status
    if status is not None:
        level, words = fmt.headline(status.get("trading_state"), bool(status.get("paused")))
        getattr(st, level)(f"**{words}**")
        extra = "" if status.get("system_state") in ("running", "paused") else \
            f" · runner {str(status.get('system_state')).upper()}"
        st.caption(f"Runner up at {runner.url} · session {status.get('session') or fmt.MISSING} · "
                   f"market time {fmt.et(status.get('market_time'))}{extra}")
        return
    st.error(f"**Runner DOWN**: no answer from {runner.url} ({runner.error}). The controls are disabled.")
    if t.view is None:
        st.info(t.why)
        return
    v = t.view
    level, words = fmt.headline(v.trading_state, v.paused)
    getattr(st, level)(f"**{words}**: session {v.session} read from the journal, "
                       f"last event {fmt.et(v.last_ts, date=True)}" + (" (session ended)" if v.ended else ""))


def readiness(runner: RunnerView) -> None:
    status = runner.status or {}
    comps = ((status.get("health") or {}).get("components") or {})
    if not runner.up:
        return
    if not runner.ready.get("ready"):
        st.warning("Not ready: " + "; ".join(map(str, runner.ready.get("reasons") or ["no answer from /ready"])))
    unhealthy = [n for n, c in comps.items() if not c.get("is_healthy")]
    if unhealthy:
        st.error("Unhealthy: " + ", ".join(sorted(unhealthy)))
    with st.expander(f"Components: {len(comps) - len(unhealthy)}/{len(comps)} healthy",
                     expanded=bool(unhealthy)):
        table(tables.health(comps), "No components reported.")


# --- account ---------------------------------------------------------------------------------------
FIGURES = [("Equity", "equity"), ("Cash", "cash"), ("Daily P&L", "daily_pnl"), ("Realized", "realized_pnl"),
           ("Unrealized", "unrealized_pnl"), ("Commissions (in Realized)", "commissions")]


def figures_of(view: jv.SessionView | None) -> dict[str, Any]:
    if view is None:
        return {}
    return {"equity": view.equity, "cash": view.cash, "daily_pnl": view.daily_pnl, "realized_pnl": view.realized,
            "unrealized_pnl": view.unrealized, "commissions": view.commissions}


def account(figures: dict[str, Any], source: str) -> None:
    st.subheader("Account")
    for row in (FIGURES[:3], FIGURES[3:]):
        cols = st.columns(3)
        for col, (label, key) in zip(cols, row):
            col.metric(label, fmt.money(figures.get(key), signed=key in ("daily_pnl", "realized_pnl", "unrealized_pnl")))
    st.caption(f"{source} {fmt.REALIZED_DEFINITION}")


# --- charts ----------------------------------------------------------------------------------------
def overview_charts(view: jv.SessionView | None, positions: list[dict[str, Any]] | None) -> None:
    if view is None:
        return
    left, right = st.columns([3, 2])
    with left:
        if view.curve:
            st.vega_lite_chart(charts.spec("equity", (view.session, view.seq),
                                           (view.session, view.curve, view.start_equity)), width="stretch")
        else:
            st.caption("No equity marks in the journal for this session yet.")
    with right:
        df = jv.strategy_pnl(view, positions)
        if df.empty:
            st.caption("No P&L by strategy yet: nothing traded this session.")
        else:
            key = (view.session, view.seq, tuple(map(tuple, df.astype(str).to_numpy())))
            st.vega_lite_chart(charts.spec("strategies", key, (df,)), width="stretch")


def price_charts(view: jv.SessionView, held: list[str], until_ns: int | None, settings: Settings,
                 bars_file: str | None, key: str) -> None:
    """Candles of each open position's symbol, then of every other symbol traded (folded); past
    MAX_CHARTS symbols, the rest are picked from a list."""
    symbols = list(dict.fromkeys([*held, *view.symbols]))
    if not symbols:
        st.caption("No symbol traded this session yet: no price chart.")
        return
    shown = symbols[:MAX_CHARTS]
    if len(symbols) > MAX_CHARTS:
        more = st.multiselect(f"{len(symbols) - MAX_CHARTS} more symbols traded: chart them too",
                              symbols[MAX_CHARTS:], key=f"{key}_more")
        shown += more
    frame, source = bars_mod.session_bars(view.session, tuple(shown), until_ns, settings.pipeline_dir, bars_file)
    if source:
        st.caption(f"1-minute candles from {source}; marks from the journal (entry ▲, exit ▼, stop and "
                   "target levels while their order worked).")
    else:
        st.caption("No stored bars for this session (a live feed's bars are stored after the close by "
                   "intraday_bars): the charts show the journal's marks only.")
    opened = [s for s in shown if s in held]
    closed = [s for s in shown if s not in held]
    _grid(view, opened, frame, key + "_open", (source, until_ns))
    if closed:
        with st.expander(f"Closed this session: {len(closed)} symbol{'s' if len(closed) != 1 else ''}",
                         expanded=not opened):
            _grid(view, closed, frame, key + "_closed", (source, until_ns))


def _grid(view: jv.SessionView, symbols: list[str], frame: pd.DataFrame, key: str, bars_key: tuple) -> None:
    for i in range(0, len(symbols), 2):
        cols = st.columns(2)
        for col, sym in zip(cols, symbols[i:i + 2]):
            marks = view.marks.get(sym, [])
            with col:
                bars = frame[frame.symbol == sym].reset_index(drop=True)
                st.vega_lite_chart(charts.spec("candles", (view.session, view.seq, sym, *bars_key),
                                               (sym, view.session, bars, marks)), width="stretch", key=f"{key}_{sym}")
                st.caption(f"{sym}: {charts.legend(marks)}")


# --- the tab ---------------------------------------------------------------------------------------
def live(settings: Settings, runner: RunnerView, t: Today) -> None:
    status = runner.status
    view = t.view
    if status is not None:
        figures = {k: status.get(k) for _, k in FIGURES}
        source = "From the runner's /status."
        positions = status.get("positions") or []
        known = {o["client_order_id"]: o for o in (view.open_orders + view.orders if view else [])}
        opened = [{"time": known.get(o.get("client_order_id"), {}).get("time"),
                   "strategy": known.get(o.get("client_order_id"), {}).get("strategy"), **o}
                  for o in status.get("open_orders") or []]
    else:
        figures = figures_of(view)
        source = ("Read from the journal (the runner is not answering): positions at their last price "
                  "in it.") if view else ""
        positions = view.positions if view else []
        opened = view.open_orders if view else []
    account(figures, source)
    readiness(runner)
    if t.why and status is not None:
        st.info(t.why)
    elif view is not None and status is not None:
        st.caption(f"Journal {redact_url(t.url)}, session {view.session}, last event {fmt.et(view.last_ts, date=True)}")
    overview_charts(view, positions if status is not None else None)

    st.subheader("Open positions")
    if positions:
        st.markdown(f"**{len(positions)} open position{'s' if len(positions) != 1 else ''}**: "
                    + ", ".join(p["symbol"] for p in positions[:20]) + (" …" if len(positions) > 20 else ""))
    table(tables.positions(positions), "No open positions." if status is not None else "No open positions in the journal.")
    if view is not None:
        until = _chart_until(status, view)
        price_charts(view, [p["symbol"] for p in positions], until, settings, t.bars_file, "live")

    st.subheader("Orders and fills")
    st.markdown("**Open orders**")
    table(tables.orders(opened[:jv.ROWS]), "No open orders.")
    if len(opened) > jv.ROWS:
        st.caption(f"first {jv.ROWS} of {len(opened)} open orders")
    st.markdown("**Recent orders** (journal, newest first)")
    table(tables.orders(view.orders if view else []), "No orders in the journal for this session.")
    st.markdown("**Recent fills** (journal, newest first)")
    table(tables.fills(view.fills if view else []), "No fills in the journal for this session.")

    st.subheader("Strategies")
    stats = status.get("stats") if status else None
    rows = [{"strategy": k, **v} for k, v in sorted(stats.items())] if stats else \
        jv.strategy_stats(view.trades if view else [])
    table(tables.strategies(rows), "No closed trades yet this session.")
    denials = status.get("risk_denials") if status else None
    if denials:
        st.caption("Risk denials: " + ", ".join(f"{k} {v}" for k, v in denials.items()))

    st.subheader("Alerts (newest first)")
    alerts = status.get("alerts") if status else (view.alerts if view else [])
    table(tables.alerts(alerts or []), "No alerts.")
    if view is not None and view.commands:
        st.markdown("**Operator commands** (journal, newest first)")
        table(tables.commands(view.commands), "")


def _chart_until(status: dict[str, Any] | None, view: jv.SessionView) -> int | None:
    """Candles up to what the runner has processed: its market time, else the journal's last
    event's minute; all of it once the session ended."""
    if view.ended:
        return None
    if status and status.get("market_time"):
        dt = fmt.to_dt(status["market_time"])
        if dt is not None:
            return int(dt.timestamp()) * 1_000_000_000
    return view.last_ts + bars_mod.MINUTE_NS if view.last_ts else None

