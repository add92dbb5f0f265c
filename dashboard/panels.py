"""The page's panels: the live day (runner /status + journal) and past sessions (journal)."""

from __future__ import annotations

from typing import Any

import pandas as pd
import streamlit as st

from dashboard import journal_view as jv
from dashboard.runner import RunnerView
from dashboard.settings import Settings
from live_runner.redact import redact_url, scrub

POSITION_COLS = ["symbol", "strategy", "qty", "avg_price", "last", "unrealized_pnl", "stop", "target", "opened"]
HEALTH_COLS = ["component", "healthy", "running", "heartbeat_age_s", "detail"]


def _num(v: Any) -> float | None:
    try:
        return None if v is None or v == "" else float(v)
    except (TypeError, ValueError):
        return None


def _money(v: Any) -> str:
    x = _num(v)
    return "-" if x is None else f"{x:,.2f}"


def _table(df: pd.DataFrame, empty: str, rows: int | None = jv.ROWS) -> None:
    if df is None or df.empty:
        st.caption(empty)
        return
    st.dataframe(df.head(rows) if rows else df, hide_index=True, width="stretch")
    if rows and len(df) > rows:
        st.caption(f"first {rows} of {len(df)} rows")


def journal_view(template: str, session: str | None) -> tuple[jv.SessionView | None, str]:
    """The cached view of `session` in the journal, or None with a sentence saying why."""
    if not template:
        return None, "No journal configured (set TRADING_JOURNAL_URL): the journal panels are empty."
    url = jv.url_for(template, session)
    shown = redact_url(url)  # the URL may hold the journal's password: never on the page
    probe = jv.probe(url)
    if probe.error:
        return None, f"Journal unreadable at {shown}: {scrub(probe.error)}"
    if not probe.exists or not probe.sessions:
        return None, f"The journal at {shown} is empty or missing (a fresh install): nothing recorded yet."
    session = session or probe.sessions[-1]
    if session not in probe.sessions:
        return None, f"The journal at {shown} holds nothing for session {session} yet."
    try:
        return jv.session_view(url, session, probe.last_seq), ""
    except Exception as exc:  # a journal the dashboard cannot read is shown, not raised
        return None, f"Journal at {shown} could not be read: {type(exc).__name__}: {scrub(str(exc))}"


# --- the live day ---------------------------------------------------------------------------------
def live(settings: Settings, runner: RunnerView) -> None:
    status = runner.status or {}
    template = settings.journal_url or (status.get("journal") or {}).get("url", "")
    session = status.get("session") or None
    if runner.up:
        st.success(f"Runner up at {runner.url}: system **{status.get('system_state')}**, trading "
                   f"**{status.get('trading_state')}**{' (PAUSED: no new entries)' if status.get('paused') else ''}"
                   f", session {session or '-'}, market time {status.get('market_time') or '-'}")
    else:
        st.error(f"Runner DOWN: no answer from {runner.url} ({runner.error}). "
                 "Showing what the journal holds; the controls cannot reach it.")
    if not session:
        sessions, _ = jv.list_sessions(template) if template else ([], "")
        session = sessions[-1] if sessions else None
    view, why = journal_view(template, session)
    if why:
        st.info(why)
    else:
        st.caption(f"Journal {redact_url(jv.url_for(template, session))}, session {view.session}")
    _state(status, runner, view)
    _account(status, view)
    _positions(status, view)
    _orders(status, view)
    _strategies(status, view)
    _alerts(status, view)


def _state(status: dict, runner: RunnerView, view: jv.SessionView | None) -> None:
    st.subheader("State and health")
    c = st.columns(5)
    c[0].metric("System", status.get("system_state", "unreachable"))
    c[1].metric("Trading", status.get("trading_state") or (view.trading_state if view else "-"))
    c[2].metric("Paused", ("yes" if status.get("paused") else "no") if runner.up else "-")
    c[3].metric("Session", status.get("session") or (view.session if view else "-"))
    c[4].metric("Ready", ("yes" if runner.ready.get("ready") else "NO") if runner.up else "-")
    if runner.up and not runner.ready.get("ready"):
        st.warning("Not ready: " + "; ".join(map(str, runner.ready.get("reasons") or ["no answer from /ready"])))
    comps = ((status.get("health") or {}).get("components") or {})
    rows = [{"component": name, "healthy": bool(c_.get("is_healthy")), "running": c_.get("is_running"),
             "heartbeat_age_s": c_.get("heartbeat_age_s"), "detail": c_.get("detail", "")}
            for name, c_ in sorted(comps.items())]
    unhealthy = [r["component"] for r in rows if not r["healthy"]]
    if unhealthy:
        st.error("Unhealthy: " + ", ".join(unhealthy))
    oldest = max((r["heartbeat_age_s"] or 0 for r in rows), default=None)
    label = (f"Components: {len(rows) - len(unhealthy)}/{len(rows)} healthy, oldest heartbeat {oldest:.1f} s"
             if rows else "Components")
    with st.expander(label, expanded=bool(unhealthy) or not rows):
        _table(pd.DataFrame(rows, columns=HEALTH_COLS), "Component health comes from the runner's /status "
               "(runner down)." if not runner.up else "no components")


def _account(status: dict, view: jv.SessionView | None) -> None:
    st.subheader("Account")
    v = view or jv.SessionView("")
    src = status if status else {"equity": v.last_equity, "daily_pnl": v.daily_pnl, "realized_pnl": v.realized,
                                 "unrealized_pnl": v.unrealized, "commissions": v.commissions, "cash": v.cash}
    c = st.columns(6)
    for col, (label, key) in zip(c, [("Equity", "equity"), ("Daily P&L", "daily_pnl"), ("Realized", "realized_pnl"),
                                      ("Unrealized", "unrealized_pnl"), ("Commissions", "commissions"),
                                      ("Cash", "cash")]):
        col.metric(label, _money(src.get(key)))
    if not status and view is not None:
        st.caption("From the journal's last equity mark (the runner is not answering).")
    if view is not None and not view.equity.empty:
        st.line_chart(view.equity, x="time", y="equity", height=260)
    else:
        st.caption("No equity marks in the journal for this session yet.")


def _positions(status: dict, view: jv.SessionView | None) -> None:
    st.subheader("Open positions")
    if status:
        df = pd.DataFrame(status.get("positions") or [], columns=POSITION_COLS)
    else:
        df = view.positions if view else pd.DataFrame(columns=POSITION_COLS)
    if len(df):
        shown = ", ".join(map(str, df["symbol"].head(20))) + (" …" if len(df) > 20 else "")
        st.markdown(f"**{len(df)} open position{'s' if len(df) != 1 else ''}**: {shown}")
    _table(df, "No open positions." if status else "No open positions in the journal.", rows=None)


def _orders(status: dict, view: jv.SessionView | None) -> None:
    st.subheader("Orders and fills")
    st.markdown("**Open orders**")
    if status:
        df = pd.DataFrame(status.get("open_orders") or [],
                          columns=["client_order_id", "symbol", "side", "qty", "filled_qty", "type", "role",
                                   "status", "limit", "stop"])
        _table(df, "No open orders.")
    else:
        _table(view.open_orders if view else pd.DataFrame(), "No open orders in the journal.")
    st.markdown("**Recent orders** (journal, newest first)")
    _table(view.orders if view else pd.DataFrame(), "No orders in the journal for this session.")
    st.markdown("**Recent fills** (journal, newest first)")
    _table(view.fills if view else pd.DataFrame(), "No fills in the journal for this session.")


def _strategies(status: dict, view: jv.SessionView | None) -> None:
    st.subheader("Strategies")
    stats = status.get("stats") if status else None
    if stats:
        df = pd.DataFrame.from_dict(stats, orient="index").rename_axis("strategy").reset_index()
        _table(df, "No strategy statistics.")
    else:
        _table(view.stats if view else pd.DataFrame(), "No closed trades yet today.")
    denials = status.get("risk_denials") if status else None
    if denials:
        st.caption("Risk denials: " + ", ".join(f"{k} {v}" for k, v in denials.items()))


def _alerts(status: dict, view: jv.SessionView | None) -> None:
    st.subheader("Alerts (newest first)")
    if status:
        df = pd.DataFrame(status.get("alerts") or [], columns=["ts", "severity", "key", "message", "component"])
        df = df.sort_values("ts", ascending=False, kind="stable") if len(df) else df
    else:
        df = view.alerts if view else pd.DataFrame()
    _table(df, "No alerts.")
    if view is not None and not view.commands.empty:
        st.markdown("**Operator commands** (journal, newest first)")
        _table(view.commands, "")


# --- past sessions ----------------------------------------------------------------------------------
def past(settings: Settings, template: str) -> None:
    sessions, err = jv.list_sessions(template) if template else ([], "")
    if err:
        st.error(f"Journal unreadable: {scrub(err)}")
    if not sessions:
        st.info("No past sessions: the journal is empty or missing (a fresh install)." if template
                else "No journal configured (set TRADING_JOURNAL_URL).")
        return
    day = st.selectbox("Session date", list(reversed(sessions)), key="past_session")
    view, why = journal_view(template, day)
    if why or view is None:
        st.info(why)
        return
    st.subheader(f"Session {day}" + ("" if view.ended else " (not ended)"))
    s = view.summary
    c = st.columns(6)
    c[0].metric("Start equity", _money(view.start_equity))
    c[1].metric("End equity", _money(s.get("equity", view.last_equity)))
    c[2].metric("Day P&L", _money(view.daily_pnl))
    c[3].metric("Realized", _money(s.get("realized_pnl", view.realized)))
    c[4].metric("Commissions", _money(s.get("commissions", view.commissions)))
    c[5].metric("Trades", len(view.trades))
    if s.get("universe") is not None:
        st.caption(f"Universe ({len(s['universe'])}): {', '.join(s['universe'][:50])}")
    if not view.equity.empty:
        st.line_chart(view.equity, x="time", y="equity", height=260)
    st.markdown("**Trades**")
    _table(view.trades, "No trades that day.", rows=500)
    st.markdown("**Strategies**")
    _table(view.stats, "No closed trades.")
    st.markdown("**Alerts and denials**")
    _table(view.alerts, "No alerts that day.")
    report = settings.pipeline_dir / "reports" / day / "report.html"
    if report.is_file():
        st.download_button("Daily report (HTML)", report.read_bytes(), file_name=f"report_{day}.html",
                           mime="text/html", key="report_download")
        st.caption(f"Dagster's daily report: {report}")
