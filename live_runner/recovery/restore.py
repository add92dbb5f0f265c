"""Live restart: the runner's state rebuilt from its journal, then warmed up and reconciled.

A replay resumes by regenerating its journal (same bars, same paper fills, verified event by
event). A live session cannot: its fills came from a broker and its bars from a feed, neither of
which repeats itself. So a live restart reads the journal as the record of what happened:

1. `RestorePlan.from_events` derives positions (exact cost), cash, the session's realized P&L,
   commissions and start-of-day equity, the orders (requests, fills seen by exec id), the open
   round trips with their protective stop, target and exit orders, trading state and pause, the
   closed trades, and what became of each entry signal (an order, or a denial).
2. `RestorePlan.apply` loads it into a fresh node before any bar, and journals a `restart` event.
3. Warm-up (`TradingNode.begin_warmup`): the day's bars so far pass through the strategies with
   order submission off, so their indicators are what they were; the journal's fills reach the
   strategies at their time; a signal the journal holds keeps its outcome, one it does not hold
   is refused with reason "warmup" (a setup missed while down is not chased).
4. The open orders are recovered at the broker (found by client id, never re-sent), fills it
   reports that the journal lacks are recorded, and positions are reconciled: a mismatch that
   cannot be explained halts trading.
Client ids after a restart carry a restart number (`LR-20240315R1-GG-ABC-1`), so they can never
collide with an id sent before the crash whose journal event was lost with it.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from decimal import Decimal
from typing import TYPE_CHECKING, Any, Iterable

from live_runner.execution.trades import OpenTrade
from live_runner.persistence.journal_state import rebuild
from live_runner.core.models import (
    Fill, Order, OrderRequest, OrderRole, OrderStatus, OrderType, Position, Side, TradingState,
)
from live_runner.core.ledger import average_price
from live_runner.core.money import ZERO, dec
from live_runner.core.trades import TradeRecord, trade_record

if TYPE_CHECKING:
    from live_runner.recovery.node_parts import NodeParts as TradingNode  # recovery sits below live

SignalKey = tuple[str, str, int]  # (strategy, symbol, bar ts)


@dataclass(slots=True)
class StrategyFill:
    """A journaled fill, for the strategies' warm-up (they learn of entries and exits this way)."""

    strategy: str
    role: OrderRole
    fill: Fill


@dataclass
class RestorePlan:
    session: str                        # the journal's latest session ("" for an empty journal)
    session_open: bool                  # started and not ended: the restart continues it
    restarts: int                       # restarts of that session so far, this one included
    cash: Decimal
    sod_equity: Decimal | None
    realized: Decimal
    commissions: Decimal
    positions: dict[str, Position]
    orders: dict[str, Order]            # the session's orders, and open ones carried from before
    closed_before: Counter[tuple[str, Side, OrderStatus]]
    trades: dict[str, OpenTrade]
    closed_trades: list[TradeRecord]
    equity_marks: list[tuple[int, Decimal]]
    trading_state: TradingState
    paused: bool
    denials: Counter[str]
    emergency_stop: bool = False  # the session saw one: a restart finishes its flatten
    # Its cancels were asked before the crash: the orders working then are on their way out, no
    # longer a position's pair (as the stop's flatten left them; see `_link_exit_orders`).
    cancel_asked: frozenset[str] = frozenset()
    accepted: set[SignalKey] = field(default_factory=set)
    denied: set[SignalKey] = field(default_factory=set)
    fills: list[StrategyFill] = field(default_factory=list)
    signals: int = 0
    orders_submitted: int = 0
    events: int = 0
    last_ts: int = 0                    # the latest event time (a restart is journaled after it)

    known_ids: frozenset[str] = frozenset()  # every client id the journal holds (all sessions)
    fill_notional: dict[str, Decimal] = field(default_factory=dict)  # cid -> sum of price * qty
    journal_positions: dict[str, int] = field(default_factory=dict)  # as the journal left them
    journal_open_orders: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.journal_positions = {s: p.qty for s, p in sorted(self.positions.items())}
        self.journal_open_orders = sorted(self.open_orders)

    @property
    def open_orders(self) -> dict[str, Order]:
        return {cid: o for cid, o in self.orders.items() if o.is_open}

    # --- building ------------------------------------------------------------------------------
    @classmethod
    def from_events(cls, events: Iterable[dict[str, Any]], account_size: Decimal) -> "RestorePlan":
        events = list(events)
        state = rebuild(events)
        sessions = [name for name, s in state.sessions.items() if s.started]
        session = sessions[-1] if sessions else (events[-1]["session"] if events else "")
        ses = state.sessions.get(session)
        session_open = bool(ses is not None and ses.started and not ses.ended)
        scan = _Scan(session)
        for ev in events:
            scan.apply(ev)
        positions = {}
        for sym, p in sorted(state.positions.items()):
            trade = scan.trades.get(sym)
            positions[sym] = Position(
                symbol=sym, strategy=p.strategy, qty=p.qty, avg_price=p.avg_price,
                cost_basis=p.cost_basis, opened_ts=p.opened_ts, last_price=p.avg_price,
                stop=trade.stop if trade else 0.0, target=trade.target if trade else 0.0,
                entry_commission=p.entry_commission)
        orders: dict[str, Order] = {}
        closed_before: Counter[tuple[str, Side, OrderStatus]] = Counter()
        for cid, o in state.orders.items():
            req = scan.requests[cid]
            order = Order(req, OrderStatus(o.status), o.filled_qty, scan.avg_price.get(cid, 0.0),
                          exec_ids=tuple(scan.exec_ids.get(cid, ())))
            if not order.is_open and order.filled_qty >= req.qty:
                order.status = OrderStatus.FILLED
            if o.session == session or (order.is_open and order.filled_qty < req.qty):
                orders[cid] = order
            elif not order.is_open:
                closed_before[(req.strategy, req.side, order.status)] += 1
        cancel_asked = frozenset(cid for cid, o in orders.items() if o.is_open) if scan.emergency_stop \
            else frozenset()
        for sym, trade in scan.trades.items():
            _link_exit_orders(sym, trade, orders, positions, cancel_asked)
        open_cost = sum((p.cost_basis for p in state.positions.values()), ZERO)
        cash = account_size + state.realized - open_cost
        trading_state = TradingState(ses.trading_state if ses is not None else state.trading_state)
        return cls(
            session=session, session_open=session_open, restarts=scan.restarts + 1, cash=cash,
            sod_equity=scan.sod_equity, realized=ses.realized if ses is not None else ZERO,
            commissions=ses.commissions if ses is not None else ZERO, positions=positions,
            orders=orders, closed_before=closed_before, trades=scan.trades,
            closed_trades=scan.closed_trades, equity_marks=scan.equity_marks,
            trading_state=trading_state, paused=scan.paused, denials=scan.denials,
            emergency_stop=scan.emergency_stop, cancel_asked=cancel_asked, accepted=scan.accepted,
            denied=scan.denied, fills=scan.fills, signals=scan.signals,
            orders_submitted=scan.orders_submitted, events=len(events),
            last_ts=max((ev["ts"] for ev in events), default=0), known_ids=frozenset(scan.requests),
            fill_notional=scan.notional)

    # --- applying ------------------------------------------------------------------------------
    def apply(self, node: "TradingNode") -> None:
        """Load the plan into a node that has not seen a bar yet, through each component's own
        `restore` (the risk manager's raises no state-change event and no alert: nothing changed)."""
        session = self.session_open
        node.portfolio.restore(
            self.cash, self.positions, realized=self.realized if session else None,
            commissions=self.commissions if session else None,
            sod_equity=self.sod_equity if session else None)
        node.orders.restore(self.orders, self.trades, self.closed_before, self.orders_submitted)
        node.risk.restore(self.trading_state, self.paused, self.denials)
        if session:
            for record in self.closed_trades:
                node.performance.record_trade(record)
            for ts, equity in self.equity_marks:
                node.performance.mark_equity(ts, equity)
            node.strategies.restore(self.signals)


class _Scan:
    """One pass over the events for what `journal_state` does not keep: requests, exec ids,
    the OrderManager's open round trips, signal outcomes, pause, the session's trades."""

    def __init__(self, session: str) -> None:
        self.session = session
        self.requests: dict[str, OrderRequest] = {}
        self.exec_ids: dict[str, list[str]] = {}
        self.avg_price: dict[str, float] = {}
        self._filled: dict[str, int] = {}
        self.notional: dict[str, Decimal] = {}
        self.trades: dict[str, OpenTrade] = {}
        self.closed_trades: list[TradeRecord] = []
        self.equity_marks: list[tuple[int, Decimal]] = []
        self.accepted: set[SignalKey] = set()
        self.denied: set[SignalKey] = set()
        self.fills: list[StrategyFill] = []
        self.denials: Counter[str] = Counter()
        self.sod_equity: Decimal | None = None
        self.paused = False
        self.emergency_stop = False
        self.restarts = 0
        self.signals = 0
        self.orders_submitted = 0
        self._last_signal: SignalKey | None = None

    def apply(self, ev: dict[str, Any]) -> None:
        kind, key, p, ts = ev["kind"], ev["key"], ev["payload"], ev["ts"]
        current = ev["session"] == self.session
        pending, self._last_signal = self._last_signal, None
        if kind == "order":
            req = _request(key, ts, p)
            self.requests[key] = req
            self.orders_submitted += current
            if pending is not None and req.role is OrderRole.ENTRY:
                self.accepted.add(pending)
        elif kind == "denial":
            if current:
                self.denials[p["reason"]] += 1
            if pending is not None:
                self.denied.add(pending)
        elif kind == "signal":
            self.signals += current
            if p["side"] == "buy":
                self._last_signal = (p["strategy"], key, ts)
        elif kind == "fill":
            self._fill(key, ts, p, current)
        elif kind == "trade":
            self.trades.pop(key, None)
            if current:
                self.closed_trades.append(trade_record(p))
        elif kind == "equity" and current:
            self.equity_marks.append((ts, Decimal(p["equity"])))
        elif kind == "session_start" and current:
            self.sod_equity = Decimal(p["equity"])
        elif kind == "restart" and current:
            self.restarts += 1
        elif kind == "command" and current:
            if key == "pause_trading":
                self.paused = True
            elif key == "resume_trading":
                self.paused = False
            elif key == "emergency_stop":
                self.emergency_stop = True

    def _fill(self, cid: str, ts: int, p: dict[str, Any], current: bool) -> None:
        req = self.requests.get(cid)
        if req is None:
            return
        qty, price, fee = int(p["qty"]), float(p["price"]), Decimal(p["commission"])
        self.exec_ids.setdefault(cid, []).append(p["exec_id"])
        done = self._filled.get(cid, 0)
        self.avg_price[cid] = average_price(self.avg_price.get(cid, 0.0), done, price, qty)
        self._filled[cid] = done + qty
        self.notional[cid] = self.notional.get(cid, ZERO) + Decimal(p["price"] if isinstance(p["price"], str)
                                                                    else repr(float(p["price"]))) * qty
        fill = Fill(cid, p["exec_id"], req.symbol, req.side, qty, price, fee, ts)
        if current:
            self.fills.append(StrategyFill(req.strategy, req.role, fill))
        sym = req.symbol
        trade = self.trades.get(sym)
        if req.role is OrderRole.ENTRY:  # as the OrderManager accumulates its round trips
            if trade is None:
                trade = self.trades[sym] = OpenTrade.opened(req, ts)
            trade.add_entry(qty, dec(price), fee)
        elif trade is not None:
            trade.add_exit(qty, dec(price), fee, req.role, ts)


def _link_exit_orders(symbol: str, trade: OpenTrade, orders: dict[str, Order],
                      positions: dict[str, Position], cancel_asked: frozenset[str] = frozenset()) -> None:
    """The open trade's working exits, as the OrderManager had them: the OCO pair, and a market
    sell that is a flatten (the whole position) or a trim (part of it). A stop or target whose
    cancel an emergency stop asked is not linked: its flatten had unlinked the pair, and a late
    acknowledgement of a leg (its report lost with the crash) would otherwise read as the pair
    coming back, and re-protect the shares with a new pair that the flatten must cancel again."""
    held = positions[symbol].qty if symbol in positions else 0
    for cid, o in sorted(orders.items()):
        req = o.request
        if req.symbol != symbol or req.side is not Side.SELL or not o.is_open:
            continue
        if cid in cancel_asked and req.role in (OrderRole.STOP, OrderRole.TARGET):
            continue  # still working, and still cancelled by the flatten the restart finishes
        if req.role is OrderRole.STOP:
            trade.stop_id = cid
        elif req.role is OrderRole.TARGET:
            trade.target_id = cid
        elif req.role is OrderRole.MANUAL and o.remaining < held:
            trade.trim_id = cid
        else:
            trade.flatten_id = cid
    # Several pairs at IB (one per later entry fill): link a stop and target of the same group (the
    # others are found among the open orders).
    stop = orders.get(trade.stop_id)
    if stop is not None and stop.request.oco_group and stop.request.oco_group != trade.target_id:
        group = stop.request.oco_group
        if group in orders and orders[group].is_open:
            trade.target_id = group


def _request(cid: str, ts: int, p: dict[str, Any]) -> OrderRequest:
    return OrderRequest(
        client_order_id=cid, strategy=p["strategy"], symbol=p["symbol"], side=Side(p["side"]),
        qty=int(p["qty"]), order_type=OrderType(p["type"]), role=OrderRole(p["role"]), ts=ts,
        limit_price=float(p.get("limit") or 0.0), stop_price=float(p.get("stop") or 0.0),
        reference_price=float(p.get("ref") or 0.0),
        protective_stop=float(p.get("protective_stop") or 0.0),
        target_r=float(p.get("target_r") or 0.0), oco_group=p.get("oco") or "")


__all__ = ["RestorePlan", "StrategyFill"]
