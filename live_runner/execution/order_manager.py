"""OrderManager: signals become sized, risk-checked, journaled orders; fills become positions.

It owns the order state machine, the deterministic client order ids, the one-cancels-other exit
pair (stop + target) placed after each entry fill and resized on partial fills, flattening, and
the round-trip trade records.
"""

from __future__ import annotations

import logging
from collections import Counter
from fractions import Fraction
from typing import TYPE_CHECKING, Callable, Iterable, Mapping

import msgspec

from live_runner.core.models import (
    Fill, Order, OrderEvent, OrderRequest, OrderRole, OrderStatus, OrderType, Side, Signal,
    TERMINAL_STATUSES, TradingState,
)
from live_runner.execution.exits import ExitsMixin
from live_runner.execution.payloads import (
    event_payload, fill_payload, request_payload, signal_payload, trade_payload,
)
from live_runner.execution.trades import EXIT_REASON, STRATEGY_CODES, TRANSITIONS, OpenTrade
from live_runner.persistence.journal import Deferred
from live_runner.core.ledger import average_price
from live_runner.core.money import ZERO, dec, price_4, round_to_tick
from live_runner.core.trades import TradeRecord
from live_runner.risk.rules import RiskView

if TYPE_CHECKING:
    from live_runner.execution.engine import ExecutionEngine
    from live_runner.persistence.journal import Journal
    from live_runner.portfolio.performance import PerformanceTracker
    from live_runner.portfolio.portfolio import Portfolio
    from live_runner.risk.manager import RiskManager

log = logging.getLogger("live_runner.orders")

# Module constants for the hot path (an Enum class attribute costs a metaclass lookup).
_BUY, _SELL = Side.BUY, Side.SELL
_ENTRY, _MANUAL, _VWAP_LOSS = OrderRole.ENTRY, OrderRole.MANUAL, OrderRole.VWAP_LOSS
_STOP_ROLE, _TARGET_ROLE = OrderRole.STOP, OrderRole.TARGET
_MARKET, _STOP, _LIMIT = OrderType.MARKET, OrderType.STOP, OrderType.LIMIT
_SUBMITTED, _FILLED, _PARTIAL = OrderStatus.SUBMITTED, OrderStatus.FILLED, OrderStatus.PARTIALLY_FILLED
_REJECTED = OrderStatus.REJECTED
_NO_TRANSITION: frozenset[OrderStatus] = frozenset()

class OrderManager(ExitsMixin):
    def __init__(self, *, portfolio: "Portfolio", risk: "RiskManager", execution: "ExecutionEngine",
                 journal: "Journal", performance: "PerformanceTracker", clock: object,
                 risk_per_trade_pct: float, max_position_size_pct: float, id_prefix: str = "LR",
                 on_strategy_fill: Callable[[str, Fill, OrderRole], None] | None = None,
                 on_signal_rejected: Callable[[Signal, str], None] | None = None,
                 on_alert: Callable[[str, str, str], None] | None = None,
                 on_fault: Callable[[str, str], None] | None = None,
                 on_reconcile: Callable[[], None] | None = None,
                 cancel_timeout_s: float = 10.0) -> None:
        self.portfolio = portfolio
        self.risk = risk
        self.execution = execution
        self.journal = journal
        self.performance = performance
        self.clock = clock
        self.risk_pct = risk_per_trade_pct
        self.size_pct = max_position_size_pct
        # The percentages as exact ratios of their decimal text (0.01 -> 1/100), for integer sizing.
        self._risk_ratio = Fraction(repr(risk_per_trade_pct)).as_integer_ratio()
        self._size_ratio = Fraction(repr(max_position_size_pct)).as_integer_ratio()
        self.prefix = id_prefix
        self._on_strategy_fill = on_strategy_fill or (lambda s, f, r: None)
        self._on_signal_rejected = on_signal_rejected or (lambda s, r: None)
        self._alert = on_alert or (lambda key, sev, msg: None)
        # A report the runner cannot apply (a fill for an unknown order, an oversell): HALTED,
        # CRITICAL alert and reconciliation (the node's), never silently dropped.
        self._fault = on_fault or (lambda key, msg: self._alert(key, "critical", msg))
        self._on_reconcile = on_reconcile or (lambda: None)
        self.cancel_timeout_s = cancel_timeout_s
        self._flatten_wanted: dict[str, OrderRole] = {}
        self._cancel_asked: set[str] = set()  # cancel_all's orders (not cancelled "unasked")
        self.orders: dict[str, Order] = {}
        self.open_orders: dict[str, Order] = {}
        self.trades: dict[str, OpenTrade] = {}
        self.pending_entries: dict[str, Order] = {}
        self.session = ""
        self._id_head = self.prefix
        self._codes: dict[str, str] = {}
        self._seq = 0
        self._session_open = 0
        self._entry_cutoff = 0
        self._session_close = 0
        self.orders_submitted = 0
        self.fills = 0
        self.duplicate_fills = 0
        # Final statuses of the orders forgotten at session starts (metrics; the rest are in orders).
        self.closed_before: Counter[tuple[str, Side, OrderStatus]] = Counter()
        self.retiring: dict[str, Order] = {}  # the session before's orders, not yet folded in

    # --- session -----------------------------------------------------------------------------
    def start_session(self, session: str, open_ns: int, flatten_ns: int, close_ns: int) -> None:
        self.session = session
        self._cancel_asked &= self.open_orders.keys()  # bounded: only orders still working
        self._id_head = f"{self.prefix}-{session.replace('-', '')}"
        self._seq = 0
        self._session_open = open_ns
        self._entry_cutoff = flatten_ns
        self._session_close = close_ns
        self.retire_orders()  # what is left of the session before (none, unless it had no bars)
        # The finished orders are forgotten; counting and freeing thousands of them here would
        # cost the first bar of the session ~1 ms, so it is done a few per bar (`retire_orders`).
        self.retiring, self.orders = self.orders, dict(self.open_orders)

    def retire_orders(self, n: int | None = None) -> None:
        """Fold up to `n` (all: None) orders of the previous session into `closed_before` and
        drop them; those still working were carried into this session's `orders` and are skipped."""
        retired = self.retiring
        if not retired:
            return
        orders, closed = self.orders, self.closed_before
        for _ in range(len(retired) if n is None else min(n, len(retired))):
            cid, o = retired.popitem()
            if o.status in TERMINAL_STATUSES and cid not in orders:
                closed[(o.request.strategy, o.request.side, o.status)] += 1

    def restore(self, orders: Mapping[str, Order], trades: Mapping[str, OpenTrade],
                closed_before: Mapping[tuple[str, Side, OrderStatus], int], orders_submitted: int) -> None:
        """A live restart, before any bar: the orders (the session's, and open ones carried from
        before), the open round trips, the final statuses of older orders and the session's order
        count, as the journal left them. The fills applied are the orders' exec ids."""
        self.orders = dict(orders)
        self.open_orders = {cid: o for cid, o in self.orders.items() if o.is_open}
        self.pending_entries = {o.request.symbol: o for o in self.open_orders.values()
                                if o.request.role is _ENTRY}
        self.trades = dict(trades)
        self.closed_before = Counter(closed_before)
        self.orders_submitted = orders_submitted
        self.fills = sum(len(o.exec_ids) for o in self.orders.values())

    def expect_cancels(self, client_order_ids: Iterable[str]) -> None:
        """Orders whose cancels were asked before a restart (an emergency stop's): their cancels
        are expected, not a broker cancelling a protective leg on its own."""
        self._cancel_asked.update(client_order_ids)

    def set_restart(self, n: int) -> None:
        """Ids after the n-th restart in a session: `LR-20240315R1-GG-ABC-1`, never one sent before
        the crash (its journal event may have been lost with the process)."""
        self._id_head = f"{self.prefix}-{self.session.replace('-', '')}R{n}"
        self._seq = 0

    def next_id(self, strategy: str, symbol: str) -> str:
        self._seq += 1
        code = self._codes.get(strategy)
        if code is None:
            code = STRATEGY_CODES.get(strategy) or "".join(c for c in strategy.upper() if c.isalnum())[:6]
            self._codes[strategy] = code
        return f"{self._id_head}-{code}-{symbol}-{self._seq}"

    # --- signals -> orders --------------------------------------------------------------------
    def on_signal(self, signal: Signal) -> str | None:
        """Turn a signal into an order; returns the client order id or None when refused."""
        self.journal.append(self.session, signal.ts, "signal", signal.symbol,
                            Deferred(signal_payload, signal))
        if signal.side is _SELL:
            role = _VWAP_LOSS if signal.reason == "vwap_loss" else _MANUAL
            return self.flatten(signal.symbol, role)
        close = signal.reference_price
        stop = round_to_tick(signal.stop)
        qty = 0
        if close > stop > 0:
            # Exact integer arithmetic in 1e-8 dollars (live_runner.core.exact; sub-penny closes
            # included): in floats, 1000 / (1.02 - 0.94) floors to 12499, not 12500, and Decimal
            # costs microseconds on the hot path.
            e8 = self.portfolio.equity_units()
            c8, s8 = round(close * 1e8), round(stop * 1e8)
            rn, rd = self._risk_ratio
            sn, sd = self._size_ratio
            qty = min((e8 * rn) // (rd * (c8 - s8)), (e8 * sn) // (sd * c8)) if c8 > s8 else 0
        strategy, symbol = signal.strategy, signal.symbol
        req = OrderRequest(
            self.next_id(strategy, symbol), strategy, symbol, _BUY, max(qty, 0), _MARKET, _ENTRY,
            self.clock.now_ns(), reference_price=close,  # type: ignore[attr-defined]
            protective_stop=stop, target_r=signal.target_r,
            signal_key=f"{strategy}|{symbol}|{signal.ts}")
        if not self._submit(req):
            self._on_signal_rejected(signal, "denied")
            return None
        return req.client_order_id

    def risk_view(self, req: OrderRequest) -> RiskView:
        pf = self.portfolio
        positions = pf.positions
        symbol = req.symbol
        pos = positions.get(symbol)
        pending = self.pending_entries
        equity = pf.equity()
        now = self.clock.now_ns()  # type: ignore[attr-defined]
        pending_symbols, pending_notional = 0, 0.0
        if pending:  # loops, not generator sums: the same float additions in the same order
            pending_notional = 0
            for s, o in pending.items():
                if s not in positions:
                    pending_symbols += 1
                pending_notional += (o.request.qty - o.filled_qty) * o.request.reference_price
        risk = self.risk
        sod = pf.sod_f
        if pos is None:
            qty, value = 0, 0.0
        else:
            qty = pos.qty
            value = qty * pos.last_price
        return RiskView(
            risk.state, risk.paused, equity, pf.cash_f, sod, equity - sod, qty, value, len(positions),
            pending_symbols, pending_notional, symbol in pending, pf.last_price.get(symbol, 0.0), now,
            self._session_open, self._entry_cutoff, self._session_close, risk.orders_last_minute(now))

    def _submit(self, req: OrderRequest) -> bool:
        if not self._approve(req):
            return False
        self._send(req)
        return True

    def _approve(self, req: OrderRequest) -> bool:
        """The risk check; a denial is journaled with its reason code."""
        reason = self.risk.check(req, self.risk_view(req))
        if reason is not None:
            self._journal("denial", req.ts, req.client_order_id, {
                "strategy": req.strategy, "symbol": req.symbol, "side": req.side.value,
                "qty": req.qty, "role": req.role.value, "reason": reason})
            return False
        return True

    def _send(self, req: OrderRequest) -> bool:
        """Journal the order, then hand it to the broker (recovered, not re-sent, on a resume).
        A sell that does not fit in the shares free of working sells is refused (never short)."""
        if req.side is _SELL and not self._fits(req, ()):
            return False
        recorded = self.journal.resuming
        self._register(req)
        if recorded:
            self.execution.recover(req)
        else:
            self.execution.submit(req)
        return True

    def _register(self, req: OrderRequest) -> None:
        """Track and journal an order about to be sent (written before it leaves)."""
        order = Order(req)
        cid = req.client_order_id
        self.orders[cid] = order
        self.open_orders[cid] = order
        if req.role is _ENTRY:
            self.pending_entries[req.symbol] = order
        self.journal.append(self.session, req.ts, "order", cid, Deferred(request_payload, req))
        order.status = _SUBMITTED
        self.orders_submitted += 1

    def adopt(self, req: OrderRequest) -> None:
        """An order at the broker under our prefix that the journal lost (sent just before a
        crash): journaled now (`adopted`), tracked like any other, never sent again."""
        code = req.client_order_id.split("-")[2] if req.client_order_id.count("-") >= 4 else ""
        strategy = next((s for s, c in STRATEGY_CODES.items() if c == code), code.lower())
        trade = self.trades.get(req.symbol)
        if trade is not None:
            strategy = trade.strategy
        req = msgspec.structs.replace(req, strategy=req.strategy or strategy)
        order = Order(req, status=OrderStatus.SUBMITTED)
        cid = req.client_order_id
        self.orders[cid] = self.open_orders[cid] = order
        if req.role is OrderRole.ENTRY:
            self.pending_entries[req.symbol] = order
        elif trade is not None:
            if req.role is OrderRole.STOP:
                trade.stop_id = cid
            elif req.role is OrderRole.TARGET:
                trade.target_id = cid
            else:
                trade.flatten_id = cid
        self.orders_submitted += 1
        self._journal("order", req.ts, cid, {**request_payload(req), "adopted": True})
        self._alert(f"order_adopted:{cid}", "warning",
                    f"order {cid} ({req.side.value} {req.qty} {req.symbol} {req.order_type.value}) was at the "
                    "broker but not in the journal: adopted")

    # --- broker reports ------------------------------------------------------------------------
    def on_order_event(self, ev: OrderEvent) -> None:
        order = self.orders.get(ev.client_order_id)
        if order is None:
            log.warning("event for unknown order %s: %s", ev.client_order_id, ev.status.value,
                        extra={"client_order_id": ev.client_order_id})
            return
        status = ev.status
        if status is order.status or status is _FILLED or status is _PARTIAL:
            return  # fills drive the fill states; repeated reports are harmless
        if status not in TRANSITIONS.get(order.status, _NO_TRANSITION):
            log.warning("ignored transition %s -> %s for %s", order.status.value, ev.status.value,
                        ev.client_order_id, extra={"client_order_id": ev.client_order_id})
            return
        order.status = status
        if ev.broker_order_id:
            order.broker_order_id = ev.broker_order_id
        self.journal.append(self.session, ev.ts, "order_event", ev.client_order_id,
                            Deferred(event_payload, ev))
        if status in TERMINAL_STATUSES:
            self._closed(order)
        elif status is OrderStatus.ACCEPTED and order.request.role in (_STOP_ROLE, _TARGET_ROLE):
            self._pair_acknowledged(order)
        if status is _REJECTED:
            req = order.request
            self._alert(f"order_rejected:{req.symbol}", "warning",
                        f"order {req.client_order_id} rejected: {ev.reason}")
            if (req.role is _STOP_ROLE or req.role is _TARGET_ROLE) and req.order_type is not _MARKET:
                self._pair_refused(order)
            elif req.side is _SELL:  # a flatten's sell (a stop hit at the entry's fill included)
                self._exit_refused(order, ev.reason)

    def _closed(self, order: Order) -> None:
        self.open_orders.pop(order.client_order_id, None)
        req = order.request
        if req.role is OrderRole.ENTRY and self.pending_entries.get(req.symbol) is order:
            del self.pending_entries[req.symbol]
        self._awaited_done(order)

    def on_fill(self, fill: Fill) -> None:
        order = self.orders.get(fill.client_order_id)
        if order is None:
            self._fault(f"unknown_fill:{fill.symbol}",
                        f"fill {fill.exec_id} of {fill.side.value} {fill.qty} {fill.symbol} for unknown "
                        f"order {fill.client_order_id}: halting to reconcile with the broker")
            return
        if fill.exec_id in order.exec_ids:
            self.duplicate_fills += 1
            return
        order.exec_ids += (fill.exec_id,)
        req = order.request
        if fill.side is _SELL:
            held = self.portfolio.position_qty(fill.symbol)
            if fill.qty > held:
                fill = self._excess_fill(fill, held)
                if fill.qty <= 0:
                    return
        total = order.filled_qty + fill.qty
        order.avg_fill_price = average_price(order.avg_fill_price, order.filled_qty, fill.price, fill.qty)
        order.filled_qty = total
        order.status = _FILLED if total >= req.qty or self._pair_exhausted(order) else _PARTIAL
        self.fills += 1
        self.journal.append(self.session, fill.ts, "fill", fill.client_order_id,
                            Deferred(fill_payload, fill, req))
        closed = self.portfolio.apply_fill(fill, req.strategy)
        if order.status is _FILLED:
            self._closed(order)
        if req.role is _ENTRY:
            self._on_entry_fill(req, fill)
        else:
            self._on_exit_fill(req, fill, closed)
        self._on_strategy_fill(req.strategy, fill, req.role)

    def _on_entry_fill(self, req: OrderRequest, fill: Fill) -> None:
        trade = self.trades.get(req.symbol)
        if trade is None:
            trade = self.trades[req.symbol] = OpenTrade.opened(req, fill.ts)
        avg = float(trade.add_entry(fill.qty, dec(fill.price), fill.commission))
        pos = self.portfolio.positions.get(req.symbol)
        if pos is not None:
            pos.stop, pos.target = trade.stop, trade.target
        wanted = self._flatten_wanted.pop(req.symbol, None)
        if wanted is not None:  # filled while its cancel was pending: out again at once
            self.flatten(req.symbol, wanted)
            return
        if (fill.price <= trade.stop or avg <= trade.stop) and self.execution.native_oco(req.symbol):
            # Filled at or through its own stop (the market fell between signal and fill): at a
            # real broker a stop placed now triggers at once, and its target, reaching the broker
            # after it, would be left selling shares already sold (at IB, below the stop even). The
            # stop is hit: out. (The paper broker keeps DESIGN.md's fill model: the pair is placed
            # and the stop fills on the next bar.)
            self._alert(f"entry_through_stop:{req.symbol}", "warning",
                        f"{req.symbol} entry filled at {fill.price} (average {avg:.4f}), at or below its "
                        f"stop {trade.stop}: selling at market")
            self.flatten(req.symbol, _STOP_ROLE)
            return
        self._ensure_exits(req.symbol, trade)

    def _on_exit_fill(self, req: OrderRequest, fill: Fill, closed: object) -> None:
        trade = self.trades.get(req.symbol)
        if trade is None:
            return
        trade.add_exit(fill.qty, dec(fill.price), fill.commission, req.role, fill.ts)
        if closed is not None:
            self._cancel_exits(req.symbol, trade)
            entry = self.pending_entries.get(req.symbol)
            if entry is None or not entry.is_open:
                self._record_trade(req.symbol, trade)
            return
        # A leg partly filled (a native pair shrinks by itself; an emulated one is re-placed) or a
        # trim: the pair must cover what is still held.
        self._ensure_exits(req.symbol, trade)

    def _record_trade(self, symbol: str, trade: OpenTrade) -> None:
        del self.trades[symbol]
        qty = trade.entry_qty
        entry_price = trade.entry_cost / qty
        exit_price = trade.exit_proceeds / qty
        pnl = trade.exit_proceeds - trade.entry_cost - trade.commission
        risk = (entry_price - dec(trade.stop)) * qty if dec(trade.stop) < entry_price else ZERO
        record = TradeRecord(symbol, trade.strategy, qty, trade.entry_ts, price_4(entry_price),
                             trade.exit_ts, price_4(exit_price), EXIT_REASON[trade.last_exit_role],
                             pnl, trade.commission, risk)
        self.performance.record_trade(record)
        self._journal("trade", trade.exit_ts, symbol, Deferred(trade_payload, record))

    def _excess_fill(self, fill: Fill, held: int) -> Fill:
        """A sell fill beyond the position (the broker oversold: the account is short there).
        Recorded whole as `excess_fill`, applied up to what was held, and the runner halts."""
        self._journal("excess_fill", fill.ts, fill.client_order_id, {
            "exec_id": fill.exec_id, "symbol": fill.symbol, "qty": fill.qty, "held": held,
            "price": fill.price, "commission": str(fill.commission)})
        self._fault(f"position_short:{fill.symbol}",
                    f"{fill.client_order_id} sold {fill.qty} {fill.symbol} with {held} held: the broker "
                    f"account is short {fill.qty - held}; halting to reconcile")
        return msgspec.structs.replace(fill, qty=held)

    # --- helpers -------------------------------------------------------------------------------
    def _journal(self, kind: str, ts: int, key: str, payload: "dict | Deferred") -> None:
        self.journal.append(self.session, ts, kind, key, payload)

    @property
    def trading_state(self) -> TradingState:
        return self.risk.state
