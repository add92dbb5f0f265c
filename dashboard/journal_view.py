"""Read-only views of the journal, as DataFrames for the page.

The state (positions, orders, realized P&L, trades) is `live_runner.journal_state.load_state`; the
session's timeline (equity marks, fills, alerts, commands, prices of orders) comes from
`live_runner.journal.iter_events`. Reads are cached by Streamlit keyed by the journal's last seq,
so a refresh on an unchanged journal costs one `SELECT max(seq)`. A missing SQLite file or a
database without the table is an empty journal (a fresh install), never created by reading.
"""

from __future__ import annotations

import glob
import re
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
import sqlalchemy as sa
import streamlit as st

from live_runner.journal import events as TABLE, iter_events, make_engine
from live_runner.journal_state import load_state

ET = "America/New_York"
ROWS = 200  # recent orders / fills / alerts shown
CURVE_POINTS = 1000  # equity marks drawn at most
TIMELINE = ("session_start", "session_end", "order", "fill", "trade", "equity", "alert", "command",
            "denial", "trading_state", "reconciliation")


def sqlite_path(url: str) -> Path | None:
    if not url.startswith("sqlite:///"):
        return None
    path = url[len("sqlite:///"):].split("?", 1)[0]
    return Path(path) if path and path != ":memory:" else None


def journal_urls(template: str) -> dict[str | None, str]:
    """session (YYYY-MM-DD) -> URL for a `{session}` SQLite template (the files present);
    {None: url} for a single journal; {} when there is none."""
    if not template:
        return {}
    if "{session}" not in template:
        return {None: template}
    path = sqlite_path(template)
    if path is None:
        return {}
    pattern = re.compile(re.escape(str(path)).replace(re.escape("{session}"), r"(\d{8})") + "$")
    found: dict[str | None, str] = {}
    for f in sorted(glob.glob(str(path).replace("{session}", "*"))):
        m = pattern.match(f)
        if m:
            d = m.group(1)
            found[f"{d[:4]}-{d[4:6]}-{d[6:]}"] = "sqlite:///" + f
    return found


@st.cache_resource(show_spinner=False)
def engine_for(url: str) -> sa.Engine:
    return make_engine(url)


@dataclass(frozen=True, slots=True)
class Probe:
    url: str
    exists: bool = False
    last_seq: int = 0
    sessions: tuple[str, ...] = ()
    error: str = ""


def probe(url: str) -> Probe:
    """Is there a journal at `url`, its last seq and its sessions; never raises."""
    path = sqlite_path(url)
    if path is not None and not path.exists():
        return Probe(url)
    try:
        engine = engine_for(url)
        if not sa.inspect(engine).has_table(TABLE.name):
            return Probe(url)
        with engine.connect() as conn:
            last = conn.execute(sa.select(sa.func.max(TABLE.c.seq))).scalar() or 0
        return Probe(url, True, int(last), sessions_of(url, int(last)))
    except Exception as exc:  # a down database is shown, not raised
        return Probe(url, error=f"{type(exc).__name__}: {exc}"[:400])


@st.cache_data(show_spinner=False, max_entries=32)
def sessions_of(url: str, last_seq: int) -> tuple[str, ...]:
    with engine_for(url).connect() as conn:
        rows = conn.execute(sa.select(TABLE.c.session).distinct().order_by(TABLE.c.session)).all()
    return tuple(r[0] for r in rows)


def _et(ts: pd.Series) -> pd.Series:
    return pd.to_datetime(ts.astype("int64"), unit="ns", utc=True).dt.tz_convert(ET).dt.tz_localize(None)


def _frame(rows: list[dict[str, Any]], columns: list[str], newest_first: bool = True,
           limit: int | None = ROWS) -> pd.DataFrame:
    df = pd.DataFrame(rows, columns=columns)
    if "time" in df and len(df):
        df["time"] = _et(df["time"])
    if newest_first:
        df = df.iloc[::-1]
    if limit is not None:
        df = df.head(limit)
    return df.reset_index(drop=True)


@dataclass
class SessionView:
    session: str
    start_equity: float | None = None
    last_equity: float | None = None
    cash: float | None = None
    realized: float = 0.0
    commissions: float = 0.0
    unrealized: float | None = None
    trading_state: str = "active"
    ended: bool = False
    summary: dict[str, Any] = field(default_factory=dict)
    counts: dict[str, int] = field(default_factory=dict)
    positions: pd.DataFrame = field(default_factory=pd.DataFrame)
    open_orders: pd.DataFrame = field(default_factory=pd.DataFrame)
    orders: pd.DataFrame = field(default_factory=pd.DataFrame)  # newest first, ROWS at most
    fills: pd.DataFrame = field(default_factory=pd.DataFrame)  # newest first, ROWS at most
    trades: pd.DataFrame = field(default_factory=pd.DataFrame)  # all, in order
    equity: pd.DataFrame = field(default_factory=pd.DataFrame)  # time, equity (downsampled)
    alerts: pd.DataFrame = field(default_factory=pd.DataFrame)  # newest first
    commands: pd.DataFrame = field(default_factory=pd.DataFrame)  # newest first
    stats: pd.DataFrame = field(default_factory=pd.DataFrame)  # per strategy

    @property
    def daily_pnl(self) -> float | None:
        if self.start_equity is None or self.last_equity is None:
            return None
        return round(self.last_equity - self.start_equity, 2)


ORDER_COLS = ["time", "client_order_id", "symbol", "strategy", "side", "qty", "type", "role", "limit",
              "stop", "status", "filled_qty"]


@st.cache_data(show_spinner=False, max_entries=16)
def session_view(url: str, session: str, last_seq: int) -> SessionView:
    """Everything the page shows of one session (as of the journal's `last_seq`)."""
    state = load_state(url, session)
    ses = state.sessions.get(session)
    view = SessionView(session)
    if ses is None:
        return view
    view.realized, view.commissions = float(ses.realized), float(ses.commissions)
    view.trading_state, view.ended, view.summary = ses.trading_state, ses.ended, dict(ses.end or {})
    view.counts = dict(ses.counts)
    prices: dict[str, dict[str, Any]] = {}
    fills, trades, marks, alerts, commands = [], [], [], [], []
    for ev in iter_events(engine_for(url), session=session, kinds=TIMELINE):
        kind, key, p, ts = ev["kind"], ev["key"], ev["payload"], ev["ts"]
        if kind == "order":
            prices[key] = p
        elif kind == "fill":
            fills.append({"time": ts, "client_order_id": key, **p})
        elif kind == "trade":
            trades.append(p)
        elif kind == "equity":
            marks.append((ts, float(p["equity"]), float(p["cash"])))
        elif kind in ("alert", "trading_state", "reconciliation", "denial"):
            if kind == "alert":
                alerts.append({"time": ts, "severity": p.get("severity"), "key": key,
                               "message": p.get("message"), "component": p.get("component")})
            elif kind == "denial":
                alerts.append({"time": ts, "severity": "denial", "key": p.get("reason", key),
                               "message": f"{p.get('side')} {p.get('qty')} {p.get('symbol')} "
                                          f"({p.get('strategy')}) denied: {p.get('reason')}",
                               "component": "risk"})
        elif kind == "command":
            commands.append({"time": ts, "command": key, "source": p.get("source"), "symbol": p.get("symbol")})
        elif kind == "session_start" and "equity" in p:
            view.start_equity = float(p["equity"])
    if marks:
        view.last_equity, view.cash = marks[-1][1], marks[-1][2]
        step = max(1, len(marks) // CURVE_POINTS)
        curve = marks[::step] + ([marks[-1]] if (len(marks) - 1) % step else [])
        view.equity = pd.DataFrame({"time": _et(pd.Series([m[0] for m in curve])),
                                    "equity": [m[1] for m in curve]})
    # positions as of the end of the session, with the stop/target of their open exit orders
    exits: dict[str, dict[str, float]] = defaultdict(dict)
    open_rows = []
    for cid, o in sorted(state.open_orders.items(), key=lambda kv: kv[1].ts):
        p = prices.get(cid, {})
        row = {"time": o.ts, "client_order_id": cid, "symbol": o.symbol, "strategy": o.strategy,
               "side": o.side, "qty": o.qty, "type": o.order_type, "role": o.role,
               "limit": p.get("limit") or None, "stop": p.get("stop") or None, "status": o.status,
               "filled_qty": o.filled_qty}
        open_rows.append(row)
        if o.role == "stop" and row["stop"]:
            exits[o.symbol]["stop"] = row["stop"]
        elif o.role == "target" and row["limit"]:
            exits[o.symbol]["target"] = row["limit"]
    view.open_orders = _frame(open_rows, ORDER_COLS, newest_first=False, limit=None)
    pos_rows = [{"symbol": s, "strategy": ps.strategy, "qty": ps.qty, "avg_price": round(ps.avg_price, 4),
                 "last": None, "unrealized_pnl": None, "stop": exits[s].get("stop"),
                 "target": exits[s].get("target"), "opened": ps.opened_ts}
                for s, ps in sorted(state.positions.items())]
    positions = pd.DataFrame(pos_rows, columns=["symbol", "strategy", "qty", "avg_price", "last",
                                                "unrealized_pnl", "stop", "target", "opened"])
    if len(positions):
        positions["opened"] = _et(positions["opened"])
    view.positions = positions
    if marks:  # equity = cash + market value, so the open P&L is what the cost basis does not explain
        basis = sum(float(ps.cost_basis) for ps in state.positions.values())
        view.unrealized = round(view.last_equity - view.cash - basis, 2) if state.positions else 0.0
    order_rows = [{"time": o.ts, "client_order_id": cid, "symbol": o.symbol, "strategy": o.strategy,
                   "side": o.side, "qty": o.qty, "type": o.order_type, "role": o.role,
                   "limit": prices.get(cid, {}).get("limit") or None,
                   "stop": prices.get(cid, {}).get("stop") or None, "status": o.status,
                   "filled_qty": o.filled_qty}
                  for cid, o in ses.orders.items()]
    view.orders = _frame(sorted(order_rows, key=lambda r: r["time"]), ORDER_COLS)
    view.fills = _frame(fills, ["time", "client_order_id", "symbol", "strategy", "side", "qty", "price",
                                "commission", "role"])
    view.trades = pd.DataFrame(trades, columns=["symbol", "strategy", "qty", "entry_ts", "entry_price",
                                                "exit_ts", "exit_price", "exit_reason", "pnl",
                                                "commission", "r_multiple"])
    if len(view.trades):
        for col in ("entry_ts", "exit_ts"):
            view.trades[col] = _et(view.trades[col])
        view.trades["pnl"] = view.trades["pnl"].astype(float)
        view.trades["commission"] = view.trades["commission"].astype(float)
    view.alerts = _frame(alerts, ["time", "severity", "key", "message", "component"])
    view.commands = _frame(commands, ["time", "command", "source", "symbol"])
    view.stats = strategy_stats(view.trades)
    return view


def strategy_stats(trades: pd.DataFrame) -> pd.DataFrame:
    """Per-strategy figures of closed trades (as the daily report: net P&L, win rate, avg R)."""
    cols = ["strategy", "trades", "wins", "losses", "win_rate", "net_pnl", "profit_factor", "avg_r"]
    if trades.empty:
        return pd.DataFrame(columns=cols)
    rows = []
    for name, t in trades.groupby("strategy"):
        wins, losses = t[t.pnl > 0], t[t.pnl <= 0]
        gross_loss = -losses.pnl.sum()
        rows.append({"strategy": name, "trades": len(t), "wins": len(wins), "losses": len(losses),
                     "win_rate": round(len(wins) / len(t), 3), "net_pnl": round(t.pnl.sum(), 2),
                     "profit_factor": round(wins.pnl.sum() / gross_loss, 3) if gross_loss > 0 else None,
                     "avg_r": round(float(pd.to_numeric(t.r_multiple, errors="coerce").mean()), 3)})
    return pd.DataFrame(rows, columns=cols)


def url_for(template: str, session: str | None) -> str:
    """The journal URL of `session` (a `{session}` template gets YYYYMMDD)."""
    if session and "{session}" in template:
        return template.replace("{session}", session.replace("-", ""))
    return template


def list_sessions(template: str) -> tuple[list[str], str]:
    """Sessions recorded under the journal URL (template), oldest first, and an error if any."""
    urls = journal_urls(template)
    if None in urls:
        p = probe(urls[None])
        return list(p.sessions), p.error
    return [s for s in urls if s], ""
