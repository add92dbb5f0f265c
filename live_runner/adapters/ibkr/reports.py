"""Broker reports -> the runner's OrderEvents and Fills, each exactly once and in causal order.

- Fills come from execDetails (live, or from reqExecutions on reconcile), never from orderStatus,
  and wait for their commissionReport (up to `commission_wait_s`); each execId is reported once.
- A terminal status (canceled, rejected) is held back while the order still has fills in flight
  (waiting for a commission, or announced by orderStatus but not yet seen as executions), so the
  runner never sees "canceled" before the partial fill that preceded it.
- Orders found at the broker with our orderRef prefix but unknown to this process are adopted:
  their reports are held until `recover()` claims them.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from decimal import Decimal
from typing import TYPE_CHECKING, Any, Callable

from live_runner.adapters.ibkr import compat, mapping
from live_runner.adapters.ibkr.mapping import ErrorKind
from live_runner.core.models import Fill, OrderEvent, OrderRequest, OrderStatus, Side

if TYPE_CHECKING:
    import asyncio

log = logging.getLogger("live_runner.adapters.ibkr")


@dataclass(slots=True, eq=False)
class TrackedOrder:
    cid: str
    request: OrderRequest | None  # None: adopted from the broker, not yet claimed by recover()
    order_id: int = 0
    perm_id: int = 0
    trade: Any = None             # the SDK's Trade (rebound after every reconnect)
    sent: bool = False            # handed to the SDK's placeOrder
    sent_at: float = 0.0          # wall clock (epoch s) of the send
    acked: bool = False           # TWS acknowledged it (openOrder/orderStatus/error)
    ambiguous: bool = False       # sent, then the link dropped before any ack
    recovering: bool = False      # from the journal: to be found at the broker, never re-sent
    needs_check: bool = False     # open when the link dropped: verify it after reconnect
    accepted: bool = False
    terminal: OrderStatus | None = None
    deferred: OrderEvent | None = None
    cancel_requested: bool = False
    cancel_pending: bool = False  # cancel to (re)send once bound and connected
    reported_qty: int = 0
    pending_qty: int = 0          # fills waiting for their commission
    broker_filled: float = 0.0    # cumulative filled qty per orderStatus (a hint), own share
    held: list = field(default_factory=list)  # reports of an adopted order, until claimed

    @property
    def has_fills(self) -> bool:
        return self.reported_qty > 0 or self.pending_qty > 0 or self.broker_filled > 0


@dataclass(slots=True)
class _PendingFill:
    order: TrackedOrder
    fill: Any
    timer: "asyncio.TimerHandle | None" = None


def _ns(dt: Any) -> int:
    ts = dt.timestamp()
    return int(ts) * 1_000_000_000 + dt.microsecond * 1000 if dt.tzinfo else int(ts * 1e9)


def _last_error(trade: Any) -> tuple[int, str]:
    for entry in reversed(getattr(trade, "log", None) or []):
        code = getattr(entry, "errorCode", 0)
        if code:
            return int(code), str(entry.message)
    return 0, ""


def _valid(x: float) -> bool:
    return x == x and abs(x) < compat.UNSET_DOUBLE / 2


class ReportsMixin:
    """The report side of IbkrExecutionClient (state lives on the client)."""

    _orders: dict[str, TrackedOrder]
    _by_oid: dict[int, TrackedOrder]
    _by_perm: dict[int, TrackedOrder]
    _reported: set[str]
    _pending: dict[str, _PendingFill]
    _on_event: Callable[[OrderEvent], None]
    _on_fill: Callable[[Fill], None]
    _now: Callable[[], int]
    _prefix: str
    _client_id: int
    _commission_wait: float
    _session_ended: bool
    _adoption_closed: bool
    _last_exec_ts: float
    stats: dict[str, Any]

    # hooks provided by the client
    def _alert(self, key: str, severity: str, message: str) -> None: ...
    def _fault(self, key: str, message: str) -> None: ...
    # OCA groups (exits.ExitsMixin)
    def _oca_group(self, o: TrackedOrder) -> str: ...
    def _group_fill_pending(self, o: TrackedOrder) -> bool: ...
    def _flush_group(self, o: TrackedOrder) -> None: ...
    def _request_reconcile(self, reason: str, delay: float = 0.0) -> None: ...
    def _loop_call_later(self, delay: float, fn: Callable, *args: Any) -> "asyncio.TimerHandle": ...
    def _lib_fill(self, exec_id: str) -> Any: ...
    def _bump_order_id(self, oid: int) -> None: ...

    # --- lookup --------------------------------------------------------------------------------
    def _ours(self, ref: str) -> bool:
        return bool(ref) and ref.startswith(self._prefix + "-")

    def _adopt(self, ref: str, what: str = "order") -> TrackedOrder:
        """An order with our prefix this process does not know: its reports are held until the
        runner recovers (claims) it. Before the runner's adoption pass (`unclaimed()`) that is a
        restart finding its orders; after it, an order the runner never knew: a fault."""
        o = TrackedOrder(ref, None, acked=True)
        self._orders[ref] = o
        self.stats["adopted"] += 1
        log.warning("order %s is at the broker with our prefix but unknown here: held until recovered", ref,
                    extra={"client_order_id": ref})
        if self._adoption_closed:
            self._fault(f"ibkr_unknown_order:{ref}", f"{what} for {ref}, an order of ours this runner "
                        "does not know")
        return o

    def _find(self, order: Any, adopt: bool = True) -> TrackedOrder | None:
        ref = order.orderRef or ""
        o = self._orders.get(ref) if ref else None
        if o is None and order.permId:
            o = self._by_perm.get(order.permId)
        if o is None and order.orderId and order.clientId == self._client_id:
            o = self._by_oid.get(order.orderId)
        if o is None and adopt and self._ours(ref):
            o = self._adopt(ref, f"{order.action} {order.totalQuantity:g} {order.orderType} order")
        return o

    def _bind(self, o: TrackedOrder, trade: Any) -> None:
        order = trade.order
        if order.orderId and order.clientId == self._client_id:
            o.order_id = order.orderId
            self._by_oid[order.orderId] = o
            self._bump_order_id(order.orderId)
        if order.permId:
            o.perm_id = order.permId
            self._by_perm[order.permId] = o
        o.trade = trade
        if trade.orderStatus.status != compat.PENDING_SUBMIT:
            o.acked = True
            o.ambiguous = o.recovering = False
        filled = trade.orderStatus.filled or 0.0
        fq = getattr(order, "filledQuantity", 0.0)
        if _valid(fq):
            filled = max(filled, fq)
        if filled > o.broker_filled:
            o.broker_filled = filled

    # --- emission ------------------------------------------------------------------------------
    def _emit(self, o: TrackedOrder, item: OrderEvent | Fill) -> None:
        if o.request is None:
            o.held.append(item)
            return
        handler = self._on_fill if isinstance(item, Fill) else self._on_event
        try:
            handler(item)  # type: ignore[arg-type]  (the whole report in one call)
        except Exception as exc:
            # Not swallowed: the runner could not apply what the broker did, so its state is in
            # doubt. The fault path halts it with a CRITICAL alert and reconciles.
            self.stats["handler_errors"] += 1
            log.exception("applying a broker report failed: %s", item)
            self._fault(f"ibkr_report_failed:{o.cid}", f"applying the broker's report for {o.cid} failed "
                        f"({type(item).__name__}): {exc!r}")

    def _claim(self, o: TrackedOrder, req: OrderRequest) -> None:
        o.request = req
        held, o.held = o.held, []
        for item in held:
            self._emit(o, item)

    def _event(self, o: TrackedOrder, status: OrderStatus, reason: str = "") -> OrderEvent:
        return OrderEvent(o.cid, status, self._now(), reason, str(o.perm_id or o.order_id or ""))

    def _accept(self, o: TrackedOrder) -> None:
        if o.accepted or o.terminal or o.deferred:
            return
        o.accepted = True
        self._emit(o, self._event(o, OrderStatus.ACCEPTED))

    def _finish(self, o: TrackedOrder, status: OrderStatus, reason: str) -> None:
        """Report a terminal status once; held back while fills are still on their way."""
        if o.terminal is not None or o.deferred is not None:
            return
        ev = self._event(o, status, reason)
        if o.pending_qty or o.broker_filled > o.reported_qty or self._group_fill_pending(o):
            o.deferred = ev
            if o.broker_filled > o.reported_qty + o.pending_qty:
                self._request_reconcile("fills missing before a terminal status", delay=self._commission_wait)
            return
        o.terminal = status
        o.cancel_pending = False
        self._emit(o, ev)

    def _flush_deferred(self, o: TrackedOrder, force: bool = False) -> None:
        ev = o.deferred
        if ev is None or o.pending_qty or (not force and self._group_fill_pending(o)):
            return
        if not force and o.broker_filled > o.reported_qty:
            return
        if o.broker_filled > o.reported_qty:
            log.warning("%s: broker reports %s filled, executions show %s", o.cid, o.broker_filled,
                        o.reported_qty, extra={"client_order_id": o.cid})
        o.deferred = None
        o.terminal = ev.status
        self._emit(o, ev)

    # --- order status ---------------------------------------------------------------------------
    def _on_trade(self, trade: Any) -> None:
        o = self._find(trade.order)
        if o is not None:
            self._apply_trade(o, trade)

    def _apply_trade(self, o: TrackedOrder, trade: Any) -> None:
        self._bind(o, trade)
        if o.terminal is not None or o.deferred is not None:
            return
        st = trade.orderStatus.status
        if st in mapping.WORKING:
            self._accept(o)
        elif st in mapping.CANCELED or st == compat.INACTIVE:
            code, msg = _last_error(trade)
            if self._expired(o, code):
                status, reason = OrderStatus.EXPIRED, "day order expired"
            elif code:
                status = mapping.outcome_for_error(code, o.has_fills) or OrderStatus.CANCELED
                reason = f"ibkr {code}: {msg}"
            elif st == compat.INACTIVE:
                status = OrderStatus.CANCELED if o.has_fills else OrderStatus.REJECTED
                reason = "ibkr: order inactive"
            else:
                status = OrderStatus.CANCELED
                reason = "" if o.cancel_requested else "canceled by the broker"
            self._finish(o, status, reason)
        elif st == compat.FILLED and o.broker_filled > o.reported_qty + o.pending_qty:
            self._request_reconcile("orderStatus shows fills not seen as executions", delay=self._commission_wait)

    def _expired(self, o: TrackedOrder, code: int) -> bool:
        """A broker cancel we did not ask for, after the session ended: a day order expiring."""
        return self._session_ended and not o.cancel_requested and code in (0, 202)

    # --- executions -------------------------------------------------------------------------------
    def _on_exec(self, fill: Any, source: str = "live") -> None:
        ex = fill.execution
        exec_id = ex.execId
        if exec_id in self._reported:
            self.stats["duplicate_execs"] += 1
            return
        pending = self._pending.get(exec_id)
        if pending is not None:  # seen again (reconcile): it may carry the commission now
            self.stats["duplicate_execs"] += 1
            pending.fill = fill
            if self._commission(exec_id, fill) is not None:
                self._finalize(exec_id)
            return
        o = self._orders.get(ex.orderRef or "") or self._by_perm.get(ex.permId)
        if o is None and ex.clientId == self._client_id:
            o = self._by_oid.get(ex.orderId)
        if o is None:
            if not self._ours(ex.orderRef or ""):
                return  # not ours (a manual trade): positions show it
            o = self._adopt(ex.orderRef, f"fill {exec_id} ({ex.side} {ex.shares:g} {fill.contract.symbol})")
        ts = ex.time.timestamp() if ex.time else 0.0
        if ts > self._last_exec_ts:
            self._last_exec_ts = ts
        if source != "live":
            self.stats["fills_from_reconcile"] += 1
        o.pending_qty += int(round(ex.shares))
        self._pending[exec_id] = p = _PendingFill(o, fill)
        if self._commission(exec_id, fill) is not None or self._commission_wait <= 0:
            self._finalize(exec_id)
        else:
            p.timer = self._loop_call_later(self._commission_wait, self._finalize, exec_id, True)

    def _on_commission(self, fill: Any) -> None:
        exec_id = fill.execution.execId
        if exec_id in self._pending:
            self._finalize(exec_id)

    def _commission(self, exec_id: str, fill: Any) -> Decimal | None:
        for f in (fill, self._lib_fill(exec_id)):
            report = getattr(f, "commissionReport", None)
            if report is not None and report.execId == exec_id and _valid(report.commission):
                return Decimal(repr(float(report.commission)))
        return None

    def _finalize(self, exec_id: str, timed_out: bool = False) -> None:
        p = self._pending.pop(exec_id, None)
        if p is None:
            return
        if p.timer is not None and not timed_out:
            p.timer.cancel()
        o, fill = p.order, p.fill
        ex = fill.execution
        commission = self._commission(exec_id, fill)
        if commission is None:
            commission = Decimal(0)
            self.stats["fills_without_commission"] += 1
            log.warning("fill %s of %s reported without its commission report", exec_id, o.cid,
                        extra={"client_order_id": o.cid})
        qty = int(round(ex.shares))
        o.pending_qty -= qty
        o.reported_qty += qty
        self._reported.add(exec_id)
        side = Side.BUY if ex.side.upper() in ("BOT", "BUY") else Side.SELL
        self.stats["fills_reported"] += 1
        self._emit(o, Fill(o.cid, exec_id, fill.contract.symbol, side, qty, float(ex.price), commission,
                           _ns(ex.time) if ex.time else self._now()))
        self._flush_deferred(o)
        self._flush_group(o)

    # --- errors ---------------------------------------------------------------------------------------
    def _on_error(self, req_id: int, code: int, message: str, _contract: Any = None) -> None:
        kind = mapping.classify(code)
        self.stats["errors"][code] = self.stats["errors"].get(code, 0) + 1
        if kind is ErrorKind.ADVISORY:
            self.stats["advisories"] += 1
            log.info("ibkr notice %s: %s", code, message)
            return
        if kind in (ErrorKind.LINK_LOST, ErrorKind.LINK_RESTORED, ErrorKind.LINK_RESTORED_LOST_DATA):
            self._on_link(kind, code, message)
            return
        o = self._by_oid.get(req_id) if req_id > 0 else None
        if o is None:
            level = logging.WARNING if kind is ErrorKind.ORDER_WARNING else logging.ERROR
            log.log(level, "ibkr error %s (%s) for request %s: %s", code, kind.value, req_id, message)
            return
        o.acked = True
        o.ambiguous = False
        if kind is ErrorKind.DUPLICATE_ORDER_ID:
            self._bump_order_id(req_id)
        if kind is ErrorKind.ORDER_WARNING:
            log.warning("%s: ibkr warning %s: %s", o.cid, code, message, extra={"client_order_id": o.cid})
            return
        if kind is ErrorKind.CANCEL_REJECTED:
            o.cancel_pending = False
            log.info("%s: cancel not applied (%s: %s)", o.cid, code, message, extra={"client_order_id": o.cid})
            self._request_reconcile("cancel rejected")
            return
        if self._expired(o, code):
            self._finish(o, OrderStatus.EXPIRED, "day order expired")
            return
        status = mapping.outcome_for_error(code, o.has_fills)
        if status is not None:
            self._finish(o, status, f"ibkr {code}: {message}")

    def _on_link(self, kind: ErrorKind, code: int, message: str) -> None: ...
