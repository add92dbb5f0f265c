"""The Past sessions tab: any session the journals hold, read from the journal only."""

from __future__ import annotations

import streamlit as st

from dashboard import fmt, journal_view as jv, tables
from dashboard.panels import Today, load_view, overview_charts, price_charts, table
from dashboard.settings import Settings
from live_runner.ops.redact import scrub


def past(settings: Settings, t: Today) -> None:
    cat = t.catalog
    if cat.error:
        st.error(f"Journal unreadable: {scrub(cat.error)}")
    sessions = cat.sessions
    if not sessions:
        st.info("No past sessions: the journal is empty or missing (a fresh install)." if cat.template
                else "No journal configured (set TRADING_JOURNAL_URL).")
        return
    day = st.selectbox("Session date", list(reversed(sessions)), key="past_session")
    view, why, _ = load_view(cat, day)
    if view is None:
        st.info(why)
        return
    st.subheader(f"Session {day}" + ("" if view.ended else " (not ended)"))
    st.caption(f"Read from the journal; last event {fmt.et(view.last_ts, date=True)}.")
    s = view.summary
    end_equity = s.get("equity", view.equity) if view.ended else view.equity
    rows = [[("Start equity", fmt.money(view.start_equity)), ("End equity", fmt.money(end_equity)),
             ("Day P&L", fmt.money(view.daily_pnl, signed=True))],
            [("Realized", fmt.money(view.realized, signed=True)),
             ("Commissions (in Realized)", fmt.money(view.commissions)), ("Trades", str(len(view.trades)))]]
    for row in rows:
        for col, (label, value) in zip(st.columns(3), row):
            col.metric(label, value)
    st.caption(fmt.REALIZED_DEFINITION)
    if s.get("universe"):
        st.caption(f"Universe ({len(s['universe'])}): {', '.join(s['universe'][:50])}")
    overview_charts(view, None)
    held = [p["symbol"] for p in view.positions]
    price_charts(view, held, None if view.ended else view.last_ts + 60_000_000_000, settings,
                 t.bars_file, f"past_{day}")
    st.markdown("**Trades**")
    table(tables.trades(view.trades), "No trades that day.")
    st.markdown("**Strategies**")
    table(tables.strategies(jv.strategy_stats(view.trades)), "No closed trades.")
    st.markdown("**Alerts and denials**")
    table(tables.alerts(view.alerts), "No alerts that day.")
    report = settings.pipeline_dir / "reports" / day / "report.html"
    if report.is_file():
        st.download_button("Daily report (HTML)", report.read_bytes(), file_name=f"report_{day}.html",
                           mime="text/html", key="report_download")
        st.caption(f"Dagster's daily report: {report}")
