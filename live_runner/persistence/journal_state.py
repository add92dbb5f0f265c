"""Positions, orders, P&L and the day's state, derived by replaying the journal.

`rebuild` is a pure function over journal events (dicts as yielded by
`live_runner.persistence.journal.iter_events`, in seq order). Fills go through the reducer
`Portfolio.apply_fill` uses, `live_runner.core.ledger` (Decimal of the price's shortest repr,
average-cost basis, commissions charged to realized P&L when paid), so the result equals what the
live node held:
positions (overall, and per session as of its last event); orders with their last status (open:
neither terminal nor fully filled; fills drive FILLED/PARTIALLY_FILLED, never journaled as order
events); realized P&L net of commissions and the commissions, per session (the node resets both
at each session start) and overall (their sum); closed trades; trading state; the last equity
mark; event counts. `load_state(url)` does the same from a journal's SQLAlchemy URL.

Marks: each held position is marked at its symbol's last price, from the runner's `mark` events
(one per bar of a held symbol, journaled after that bar's fills) or, for a position opened
since, its entry fill. Cash follows the fills from the last equity mark (or from the start of the
first session), so `equity = cash + positions at their last price` and `daily P&L = equity -
start-of-day equity` hold as of the journal's last event, with no lag behind the last bar.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field, replace
from decimal import Decimal
from typing import Any, Iterable

import sqlalchemy as sa

from live_runner.core import ledger
from live_runner.core.trades import ClosedTrade, trade_record

ZERO = Decimal(0)
TERMINAL = frozenset({"filled", "canceled", "rejected", "expired"})


class JournalStateError(ValueError):
    """The journal holds something no run could have produced (e.g. selling more than held)."""


@dataclass(slots=True)
class PositionState:
    symbol: str
    strategy: str
    qty: int = 0
    cost_basis: Decimal = ZERO
    opened_ts: int = 0
    entry_commission: Decimal = ZERO

    @property
    def avg_price(self) -> float:
        """As `Position.avg_price`: the float of the exact average cost."""
        return float(self.cost_basis / self.qty) if self.qty else 0.0


@dataclass(slots=True)
class OrderState:
    client_order_id: str
    session: str
    ts: int
    symbol: str
    strategy: str
    side: str
    qty: int
    order_type: str
    role: str
    status: str = "submitted"
    filled_qty: int = 0
    fills: int = 0
    commission: Decimal = ZERO
    reason: str = ""

    @property
    def is_open(self) -> bool:
        return self.status not in TERMINAL and self.filled_qty < self.qty

    @property
    def remaining(self) -> int:
        return self.qty - self.filled_qty


@dataclass(frozen=True, slots=True)
class EquityMark:
    ts: int
    equity: Decimal
    cash: Decimal
    positions: int


@dataclass(slots=True)
class SessionState:
    name: str
    realized: Decimal = ZERO  # net of commissions, as Portfolio.realized for that session
    commissions: Decimal = ZERO
    trades: list[ClosedTrade] = field(default_factory=list)
    trading_state: str = "active"
    last_equity: EquityMark | None = None
    counts: Counter[str] = field(default_factory=Counter)
    started: bool = False
    ended: bool = False
    end: dict[str, Any] | None = None  # the session_end payload
    positions: dict[str, PositionState] = field(default_factory=dict)  # as of its last event
    orders: dict[str, OrderState] = field(default_factory=dict)  # placed in this session
    sod_equity: Decimal | None = None  # the session_start mark
    cash: Decimal | None = None  # as of its last event (None: the journal cannot tell)
    prices: dict[str, Decimal] = field(default_factory=dict)  # last price per symbol, as of its last event
    last_ts: int = 0  # time of its last event

    @property
    def unrealized(self) -> Decimal:
        """Open positions at their last price, less their cost basis (exact)."""
        return sum((self.prices.get(s, p.cost_basis / p.qty) * p.qty - p.cost_basis
                    for s, p in self.positions.items()), ZERO)

    @property
    def market_value(self) -> Decimal:
        return sum((self.prices.get(s, p.cost_basis / p.qty) * p.qty for s, p in self.positions.items()), ZERO)

    @property
    def equity(self) -> Decimal | None:
        """Cash plus positions at their last price, as of the session's last event."""
        return None if self.cash is None else self.cash + self.market_value

    @property
    def daily_pnl(self) -> Decimal | None:
        eq = self.equity
        return None if eq is None or self.sod_equity is None else eq - self.sod_equity

    @property
    def open_orders(self) -> dict[str, OrderState]:
        return {cid: o for cid, o in self.orders.items() if o.is_open}

    @property
    def trades_pnl(self) -> Decimal:
        return sum((t.pnl for t in self.trades), ZERO)


@dataclass(slots=True)
class JournalState:
    sessions: dict[str, SessionState] = field(default_factory=dict)
    positions: dict[str, PositionState] = field(default_factory=dict)
    orders: dict[str, OrderState] = field(default_factory=dict)
    trades: list[ClosedTrade] = field(default_factory=list)
    realized: Decimal = ZERO
    commissions: Decimal = ZERO
    trading_state: str = "active"
    last_equity: EquityMark | None = None
    counts: Counter[str] = field(default_factory=Counter)
    events: int = 0
    last_seq: int = 0
    cash: Decimal | None = None
    prices: dict[str, Decimal] = field(default_factory=dict)

    @property
    def open_orders(self) -> dict[str, OrderState]:
        return {cid: o for cid, o in self.orders.items() if o.is_open}

    @property
    def position_qty(self) -> dict[str, int]:
        """symbol -> qty, sorted by symbol (the summary's `final_positions`)."""
        return {s: p.qty for s, p in sorted(self.positions.items())}

    @property
    def trades_pnl(self) -> Decimal:
        """Sum of closed-trade P&L (the summary's `realized_pnl`)."""
        return sum((t.pnl for t in self.trades), ZERO)

    @property
    def trades_commission(self) -> Decimal:
        """Commissions of closed trades (the summary's `commissions`)."""
        return sum((t.commission for t in self.trades), ZERO)


def _price(value: Any) -> Decimal:
    """A journaled float price as the portfolio saw it: Decimal of its shortest repr."""
    return Decimal(repr(float(value)))


class _Builder:
    def __init__(self) -> None:
        self.state = JournalState()
        self.current: SessionState | None = None

    def snapshot(self) -> None:
        """Positions, cash and marks as of the current session's last event."""
        cur = self.current
        if cur is not None:
            cur.positions = {s: replace(p) for s, p in self.state.positions.items()}
            cur.cash = self.state.cash
            cur.prices = {s: self.state.prices[s] for s in cur.positions if s in self.state.prices}

    def session(self, name: str) -> SessionState:
        s = self.state.sessions.get(name)
        if s is None:
            s = self.state.sessions[name] = SessionState(name, trading_state=self.state.trading_state)
        return s

    def apply(self, ev: dict[str, Any]) -> None:
        st = self.state
        kind, key, p = ev["kind"], ev["key"], ev["payload"]
        seq = ev.get("seq", st.last_seq + 1)
        if seq <= st.last_seq:
            raise JournalStateError(f"journal event {seq} is out of order (after {st.last_seq})")
        st.last_seq = seq
        st.events += 1
        st.counts[kind] += 1
        ses = self.session(ev["session"])
        if ses is not self.current:
            self.snapshot()
            self.current = ses
        ses.counts[kind] += 1
        ses.last_ts = max(ses.last_ts, ev["ts"])
        handler = getattr(self, f"_on_{kind}", None)
        if handler is not None:
            handler(ev, ses, key, p)

    # --- event kinds ---------------------------------------------------------------------------
    def _on_session_start(self, ev: dict, ses: SessionState, key: str, p: dict) -> None:
        ses.started = True
        if "equity" in p:
            ses.sod_equity = Decimal(p["equity"])
            if self.state.cash is None and not self.state.positions:
                self.state.cash = ses.sod_equity  # nothing held yet: the account is its cash
        if "state" in p:
            ses.trading_state = self.state.trading_state = p["state"]

    def _on_session_end(self, ev: dict, ses: SessionState, key: str, p: dict) -> None:
        ses.ended = True
        ses.end = p

    def _on_trading_state(self, ev: dict, ses: SessionState, key: str, p: dict) -> None:
        ses.trading_state = self.state.trading_state = key

    def _on_equity(self, ev: dict, ses: SessionState, key: str, p: dict) -> None:
        mark = EquityMark(ev["ts"], Decimal(p["equity"]), Decimal(p["cash"]), int(p["positions"]))
        ses.last_equity = self.state.last_equity = mark
        self.state.cash = mark.cash  # the runner's own figure: exact, and an anchor for what follows

    def _on_mark(self, ev: dict, ses: SessionState, key: str, p: dict) -> None:
        self.state.prices[key] = _price(p["close"])

    def _on_order(self, ev: dict, ses: SessionState, key: str, p: dict) -> None:
        self.state.orders[key] = ses.orders[key] = OrderState(
            key, ev["session"], ev["ts"], p["symbol"], p["strategy"], p["side"], int(p["qty"]),
            p["type"], p["role"])

    def _on_order_event(self, ev: dict, ses: SessionState, key: str, p: dict) -> None:
        order = self.state.orders.get(key)
        if order is not None:
            order.status = p["status"]
            order.reason = p.get("reason", "")

    def _on_trade(self, ev: dict, ses: SessionState, key: str, p: dict) -> None:
        trade = trade_record(p, ev["session"])
        ses.trades.append(trade)
        self.state.trades.append(trade)

    def _on_fill(self, ev: dict, ses: SessionState, key: str, p: dict) -> None:
        st = self.state
        qty = int(p["qty"])
        price = _price(p["price"])
        fee = Decimal(p["commission"])
        order = st.orders.get(key)
        if order is not None:
            order.filled_qty += qty
            order.fills += 1
            order.commission += fee
            order.status = "filled" if order.filled_qty >= order.qty else "partially_filled"
        # The portfolio's reducer (live_runner.core.ledger), as Portfolio.apply_fill applies it.
        symbol = p["symbol"]
        pos = st.positions.get(symbol)
        is_buy = p["side"] == "buy"
        try:
            eff = ledger.apply_fill(0 if pos is None else pos.qty, ZERO if pos is None else pos.cost_basis,
                                    is_buy, qty, price, fee)
        except ledger.OversellError as exc:
            raise JournalStateError(
                f"journal event {st.last_seq}: sell of {qty} {symbol} exceeds the position of {exc.held}") from None
        ses.commissions += fee
        ses.realized = ledger.realized_after(ses.realized, fee, eff.pnl)
        st.commissions += fee
        st.realized = ledger.realized_after(st.realized, fee, eff.pnl)
        if st.cash is not None:
            st.cash += eff.cash_delta
        if pos is None:
            pos = st.positions[symbol] = PositionState(symbol, p.get("strategy", ""), opened_ts=ev["ts"])
            st.prices[symbol] = price  # marked at its entry until its next bar's mark
        pos.cost_basis, pos.qty = eff.cost_basis, eff.qty
        if is_buy:
            pos.entry_commission += fee
        elif pos.qty == 0:
            del st.positions[symbol]


def rebuild(events: Iterable[dict[str, Any]]) -> JournalState:
    """Derive the state from journal events in seq order (pure: reads nothing else)."""
    builder = _Builder()
    for ev in events:
        builder.apply(ev)
    builder.snapshot()
    return builder.state


def load_state(url: str, session: str | None = None) -> JournalState:
    """The state held by the journal at `url`; with `session`, as of the end of that session
    (earlier sessions' events are included, so positions carried overnight stay right).
    A journal without an event table yet is an empty state."""
    from live_runner.persistence.journal import events as table, make_engine

    engine = make_engine(url)
    try:
        if not sa.inspect(engine).has_table(table.name):
            return JournalState()
        query = sa.select(table).order_by(table.c.seq)
        if session is not None:
            query = query.where(table.c.session <= session)
        with engine.connect() as conn:
            return rebuild({"seq": r.seq, "session": r.session, "ts": r.ts, "kind": r.kind,
                            "key": r.key, "payload": json.loads(r.payload)}
                           for r in conn.execute(query))
    finally:
        engine.dispose()


__all__ = ["rebuild", "load_state", "JournalState", "SessionState", "PositionState", "OrderState",
           "ClosedTrade", "EquityMark", "JournalStateError"]
