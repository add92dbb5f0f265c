"""One session as the journal holds it: the figures, the tables and the marks the charts draw.

The state (positions at their last price, cash, realized P&L, open orders, trades) is the runner's
own projection, `live_runner.persistence.journal_state.load_state`; the timeline (equity marks, fills, order
prices, alerts, commands) comes from `live_runner.persistence.journal.iter_events`. Money stays Decimal.
Reads are cached keyed by the journal's last seq: a refresh on an unchanged journal costs one query.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

import pandas as pd
import streamlit as st

from dashboard.sources import engine_for
from live_runner.persistence.journal import iter_events
from live_runner.persistence.journal_state import TERMINAL, load_state

ROWS = 200  # recent orders / fills / alerts shown
CURVE_POINTS = 1000  # equity marks drawn at most
TIMELINE = ("session_start", "session_end", "order", "order_event", "fill", "trade", "equity", "alert",
            "command", "denial")


@dataclass
class SessionView:
    session: str
    seq: int = 0  # the journal's last seq when read (a cache key for what is drawn from it)
    start_equity: Decimal | None = None
    equity: Decimal | None = None
    cash: Decimal | None = None
    realized: Decimal = Decimal(0)
    commissions: Decimal = Decimal(0)
    unrealized: Decimal = Decimal(0)
    trading_state: str = "active"
    paused: bool = False
    ended: bool = False
    last_ts: int = 0  # time of the session's last event
    summary: dict[str, Any] = field(default_factory=dict)
    positions: list[dict[str, Any]] = field(default_factory=list)
    open_orders: list[dict[str, Any]] = field(default_factory=list)
    orders: list[dict[str, Any]] = field(default_factory=list)  # newest first, ROWS at most
    fills: list[dict[str, Any]] = field(default_factory=list)  # newest first, ROWS at most
    trades: list[dict[str, Any]] = field(default_factory=list)  # in order
    curve: list[tuple[int, Decimal]] = field(default_factory=list)  # (ts, equity), downsampled
    alerts: list[dict[str, Any]] = field(default_factory=list)  # newest first
    commands: list[dict[str, Any]] = field(default_factory=list)  # newest first
    marks: dict[str, list[dict[str, Any]]] = field(default_factory=dict)  # symbol -> chart marks
    symbols: tuple[str, ...] = ()  # open positions first, then every other symbol traded

    @property
    def daily_pnl(self) -> Decimal | None:
        if self.start_equity is None or self.equity is None:
            return None
        return self.equity - self.start_equity


@st.cache_data(show_spinner=False, max_entries=16)
def session_view(url: str, session: str, last_seq: int) -> SessionView:
    """Everything the page shows of one session (as of the journal's `last_seq`)."""
    state = load_state(url, session)
    ses = state.sessions.get(session)
    view = SessionView(session, last_seq)
    if ses is None:
        return view
    view.realized, view.commissions = ses.realized, ses.commissions
    view.trading_state, view.ended, view.summary = ses.trading_state, ses.ended, dict(ses.end or {})
    view.start_equity, view.cash, view.equity = ses.sod_equity, ses.cash, ses.equity
    view.unrealized, view.last_ts = ses.unrealized, ses.last_ts
    if view.equity is None and ses.last_equity is not None:  # cash unknown: the runner's last mark
        view.equity, view.cash = ses.last_equity.equity, ses.last_equity.cash
    orders: dict[str, dict[str, Any]] = {}
    fills, trades, marks, alerts, commands = [], [], [], [], []
    for ev in iter_events(engine_for(url), session=session, kinds=TIMELINE):
        kind, key, p, ts = ev["kind"], ev["key"], ev["payload"], ev["ts"]
        if kind == "order":
            orders[key] = {"time": ts, "client_order_id": key, "symbol": p["symbol"], "strategy": p["strategy"],
                           "side": p["side"], "qty": int(p["qty"]), "type": p["type"], "role": p["role"],
                           "limit": p.get("limit"), "stop": p.get("stop"), "status": "submitted",
                           "filled_qty": 0, "end": None}
        elif kind == "order_event" and key in orders:
            o = orders[key]
            o["status"] = p.get("status", o["status"])
            if o["status"] in TERMINAL and o["end"] is None:
                o["end"] = ts
        elif kind == "fill":
            fills.append({"time": ts, "client_order_id": key, **p})
            o = orders.get(key)
            if o is not None:
                o["filled_qty"] += int(p["qty"])
                o["status"] = "filled" if o["filled_qty"] >= o["qty"] else "partially_filled"
                if o["status"] == "filled":
                    o["end"] = ts
        elif kind == "trade":
            trades.append(p)
        elif kind == "equity":
            marks.append((ts, Decimal(p["equity"])))
        elif kind == "alert":
            alerts.append({"time": ts, "severity": p.get("severity"), "key": key,
                           "message": p.get("message"), "component": p.get("component")})
        elif kind == "denial":
            alerts.append({"time": ts, "severity": "denial", "key": p.get("reason", key),
                           "message": f"{p.get('side')} {p.get('qty')} {p.get('symbol')} "
                                      f"({p.get('strategy')}) denied: {p.get('reason')}", "component": "risk"})
        elif kind == "command":
            commands.append({"time": ts, "command": key, "source": p.get("source"), "symbol": p.get("symbol")})
            if key in ("pause_trading", "resume_trading"):
                view.paused = key == "pause_trading"
    if view.equity is not None and view.last_ts and (not marks or marks[-1][0] < view.last_ts):
        marks.append((view.last_ts, view.equity))  # the curve ends where the figures are
    step = max(1, len(marks) // CURVE_POINTS)
    view.curve = marks[::step] + ([marks[-1]] if marks and (len(marks) - 1) % step else [])
    _positions_and_orders(view, state, ses, orders)
    view.fills = fills[::-1][:ROWS]
    view.trades = trades
    view.alerts = alerts[::-1][:ROWS]
    view.commands = commands[::-1]
    _chart_marks(view, orders, fills)
    return view


def _positions_and_orders(view: SessionView, state: Any, ses: Any, orders: dict[str, dict[str, Any]]) -> None:
    open_ids = {cid for cid, o in ses.orders.items() if o.is_open} | set(state.open_orders)
    view.open_orders = [o for cid, o in sorted(orders.items(), key=lambda kv: kv[1]["time"]) if cid in open_ids]
    exits: dict[str, dict[str, Any]] = defaultdict(dict)
    for o in view.open_orders:
        if o["role"] == "stop" and o["stop"]:
            exits[o["symbol"]]["stop"] = o["stop"]
        elif o["role"] == "target" and o["limit"]:
            exits[o["symbol"]]["target"] = o["limit"]
    view.positions = []
    for s, ps in sorted(ses.positions.items()):
        last = ses.prices.get(s)
        view.positions.append({
            "symbol": s, "strategy": ps.strategy, "qty": ps.qty, "avg_price": ps.cost_basis / ps.qty,
            "last": last, "unrealized_pnl": None if last is None else last * ps.qty - ps.cost_basis,
            "stop": exits[s].get("stop"), "target": exits[s].get("target"), "opened": ps.opened_ts,
            "entry_commission": ps.entry_commission})
    view.orders = sorted(orders.values(), key=lambda o: o["time"], reverse=True)[:ROWS]


def _chart_marks(view: SessionView, orders: dict[str, dict[str, Any]], fills: list[dict[str, Any]]) -> None:
    """Per symbol: entries and exits (fills, at their price and time), and each stop and target
    order as a level from its placement to its end (fill, cancel) or the session's last event."""
    marks: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for f in fills:
        o = orders.get(f["client_order_id"], {})
        entry = f.get("side") == "buy"
        marks[f["symbol"]].append({"kind": "entry" if entry else "exit", "ts": f["time"],
                                   "price": float(f["price"]), "qty": int(f["qty"]),
                                   "role": o.get("role", f.get("role", ""))})
    for o in orders.values():
        if o["role"] == "stop" and o["stop"]:
            level = o["stop"]
        elif o["role"] == "target" and o["limit"]:
            level = o["limit"]
        else:
            continue
        marks[o["symbol"]].append({"kind": o["role"], "ts": o["time"], "price": float(level),
                                   "end": o["end"] or max(view.last_ts, o["time"]), "qty": o["qty"],
                                   "role": o["role"]})
    held = [p["symbol"] for p in view.positions]
    traded = sorted(s for s in marks if s not in held)
    view.symbols = tuple(held + traded)
    view.marks = dict(marks)


def strategy_pnl(view: SessionView, positions: list[dict[str, Any]] | None = None) -> pd.DataFrame:
    """Per strategy: closed trades' P&L (net of their commissions) and open positions at their
    last price less their entry commissions (already paid): together, the day's P&L."""
    rows: dict[str, dict[str, Decimal]] = defaultdict(lambda: {"closed": Decimal(0), "open": Decimal(0)})
    for t in view.trades:
        rows[t["strategy"]]["closed"] += Decimal(str(t["pnl"]))
    paid = {p["symbol"]: p.get("entry_commission") or Decimal(0) for p in view.positions}
    for p in view.positions if positions is None else positions:
        if p.get("unrealized_pnl") is not None:
            rows[p.get("strategy") or "?"]["open"] += Decimal(str(p["unrealized_pnl"])) - paid.get(p["symbol"], 0)
    return pd.DataFrame([{"strategy": s, "closed": v["closed"], "open": v["open"]} for s, v in sorted(rows.items())],
                        columns=["strategy", "closed", "open"])


def strategy_stats(trades: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per-strategy figures of closed trades (as the daily report: net P&L, win rate, avg R)."""
    by: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for t in trades:
        by[t["strategy"]].append(t)
    out = []
    for name, ts in sorted(by.items()):
        pnl = [Decimal(str(t["pnl"])) for t in ts]
        wins = [x for x in pnl if x > 0]
        losses = [x for x in pnl if x <= 0]
        gross_loss = -sum(losses, Decimal(0))
        rs = [float(t["r_multiple"]) for t in ts if t.get("r_multiple") is not None]
        out.append({"strategy": name, "trades": len(ts), "wins": len(wins), "losses": len(losses),
                    "win_rate": len(wins) / len(ts), "net_pnl": sum(pnl, Decimal(0)),
                    "profit_factor": (sum(wins, Decimal(0)) / gross_loss) if gross_loss > 0 else None,
                    "avg_r": sum(rs) / len(rs) if rs else None})
    return out
