"""IbkrExecutionClient: orders through TWS / IB Gateway with ib_async (or ib_insync).

Runs on the runner's asyncio loop: `submit`/`cancel` are synchronous (the hot path) and only queue
work; one sender task pushes it through the message throttle to the SDK, in order. Reports come
back as SDK events on the same loop and reach the runner through `reports.ReportsMixin`.

Connection: a supervisor task connects (host, port, client id from config), reconnects with
exponential backoff after a drop or the Gateway's daily restart, and reconciles after every
connect: reqAllOpenOrders, reqCompletedOrders, reqExecutions since the last execution seen, and
positions. Missing fills are reported, orders with our orderRef prefix adopted.

Never twice: our client order id travels in `orderRef`; an order whose outcome is ambiguous (sent,
then the link dropped before TWS acknowledged it) is looked up by orderRef after the reconnect and
is never re-sent. Found: it is adopted with its fills. Not found anywhere (open, completed,
executions): TWS never accepted it, and it is reported REJECTED ("not accepted ... never re-sent")
so the strategy layer decides again with a new client order id. An order submitted while the
broker is unreachable is rejected at once as "not sent" (provably not accepted: safe to fail over).

Exits are broker-native (`exits.ExitsMixin`): the stop and target share an OCA group with
`ocaType` from `ibkr.oca_type` (default 2, reduce the others: a partial target fill shrinks the
stop to the shares still held; 1 would cancel the stop on any partial fill and leave the rest
unprotected). A pair is never resized (no `replace_exits`): shares added later get an OCA group
of their own.

Fail closed: a report the runner cannot apply, a fill for an order of ours this runner never
knew, and a failed listing of the broker's orders at connect are handed to the fault handler
(`set_fault_handler(cb(key, message))`; the engine halts the node with a CRITICAL alert and
reconciles); without one they raise a CRITICAL alert.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from typing import Any, Callable

from live_runner.core.clients import AccountModeError, FillHandler, GatedSends, OrderEventHandler
from live_runner.adapters.ibkr import compat
from live_runner.adapters.ibkr.connection import ConnectionMixin, account_mode_problem
from live_runner.adapters.ibkr.exits import NOT_SENT, ExitsMixin
from live_runner.adapters.ibkr.order_ids import OrderIdStore
from live_runner.adapters.ibkr.reconcile import ReconcileMixin
from live_runner.adapters.ibkr.reports import ReportsMixin, TrackedOrder, log
from live_runner.adapters.ibkr.throttle import MessageThrottle
from live_runner.core.config import IbkrConfig
from live_runner.core.models import Bar, OrderRequest, OrderStatus, OrderType

__all__ = ["NOT_SENT", "IbkrExecutionClient"]


class _DecoderErrors(logging.Handler):
    """Counts what the SDK's decoder could not parse (it logs and drops such messages)."""

    def __init__(self, client: "IbkrExecutionClient") -> None:
        super().__init__(logging.ERROR)
        self.client = client

    def emit(self, record: logging.LogRecord) -> None:
        try:
            text = record.getMessage()
        except Exception:
            text = str(record.msg)
        self.client._on_malformed(text)


class IbkrExecutionClient(GatedSends, ExitsMixin, ConnectionMixin, ReconcileMixin, ReportsMixin):
    name = "ibkr"
    native_oco = True

    def __init__(self, config: IbkrConfig, *, account: str | None = None, prefix: str = "LR",
                 calendar: Any = None, now_ns: Callable[[], int] = time.time_ns,
                 on_alert: Callable[[str, str, str], None] | None = None,
                 environ: dict[str, str] | None = None) -> None:
        env = os.environ if environ is None else environ
        self.config = config
        self.account = account or config.account or env.get(config.account_env) or ""
        self._prefix = prefix
        self._client_id = config.client_id
        self._commission_wait = config.commission_wait_s
        self._calendar = calendar
        self._now = now_ns
        self._alert_cb = on_alert
        self._fault_cb: Callable[[str, str], None] | None = None
        self._adoption_closed = False  # set once the runner took the orders it lost (unclaimed())
        self._on_event: OrderEventHandler = lambda e: None
        self._on_fill: FillHandler = lambda f: None
        self._on_connection: Callable[[bool, str], None] | None = None
        self._ids = OrderIdStore(config.order_id_state, key=str(config.client_id))
        self._throttle = MessageThrottle(config.max_msgs_per_s)
        self._ib = compat.IB()
        # The SDK's own throttle stays on as a backstop (it also paces the requests it makes by
        # itself at connect), with the same widened window, so neither lets a burst through.
        self._ib.client.MaxRequests = config.max_msgs_per_s
        self._ib.client.RequestsInterval = self._throttle.window
        self._orders: dict[str, TrackedOrder] = {}
        self._by_oid: dict[int, TrackedOrder] = {}
        self._by_perm: dict[int, TrackedOrder] = {}
        self._reported: set[str] = set()
        self._pending: dict = {}
        self._last_exec_ts = 0.0
        self._session_ended = False
        self._ready = False
        self._link_up = True
        self._positions_synced = False
        self._closing = False
        self._refusal: str | None = None  # why the Gateway's account does not match the mode
        self._loop: asyncio.AbstractEventLoop | None = None
        self._outbox: asyncio.Queue | None = None
        self._tasks: list[asyncio.Task] = []
        self._lost: asyncio.Event | None = None
        self._synced_once: asyncio.Event | None = None
        self._reconcile_lock: asyncio.Lock | None = None
        self._reconcile_task: asyncio.Task | None = None
        self._reconcile_again = False
        self._decoder_handler = _DecoderErrors(self)
        self.stats: dict[str, Any] = {
            "library": compat.LIBRARY, "connects": 0, "disconnects": 0, "connect_failures": 0,
            "orders_sent": 0, "cancels_sent": 0, "rejected_not_sent": 0, "fills_reported": 0,
            "fills_from_reconcile": 0, "duplicate_execs": 0, "fills_without_commission": 0,
            "malformed_messages": 0, "advisories": 0, "errors": {}, "adopted": 0,
            "ambiguous_found": 0, "ambiguous_absent": 0, "reconciles": 0, "handler_errors": 0,
        }
        ib = self._ib
        ib.openOrderEvent += self._on_trade
        ib.orderStatusEvent += self._on_trade
        ib.execDetailsEvent += lambda trade, fill: self._on_exec(fill)
        ib.commissionReportEvent += lambda trade, fill, report: self._on_commission(fill)
        ib.errorEvent += self._on_error
        ib.disconnectedEvent += self._on_disconnected

    # --- wiring --------------------------------------------------------------------------------
    def set_handlers(self, on_event: OrderEventHandler, on_fill: FillHandler) -> None:
        self._on_event = on_event
        self._on_fill = on_fill

    def set_alert_handler(self, handler: Callable[[str, str, str], None] | None) -> None:
        """ExecutionEngine's alert callback (key, severity, message)."""
        self._alert_cb = handler

    def set_fault_handler(self, handler: Callable[[str, str], None] | None) -> None:
        """Told (key, message) when the runner's state can no longer be trusted: the engine halts
        the node with a CRITICAL alert and reconciles."""
        self._fault_cb = handler

    def set_connection_handler(self, handler: Callable[[bool, str], None] | None) -> None:
        """E.g. ExecutionEngine.on_connection_change: told on every connect and disconnect."""
        self._on_connection = handler

    @property
    def connected(self) -> bool:
        return self._ready and self._link_up

    @property
    def resuming(self) -> bool:
        """True until the first reconcile with the broker is done (positions are then known)."""
        return self._synced_once is None or not self._synced_once.is_set() or any(
            o.recovering for o in self._orders.values())

    async def start(self, wait: bool = True) -> bool:
        """Start the connection supervisor and the sender on the running loop; with `wait`,
        return once connected and reconciled (or False after connect_timeout_s). Raises
        AccountModeError when the configured account or the Gateway's login is paper in live
        mode or live in paper mode (`ibkr.paper`); no order is sent then."""
        if self.account and self._refusal is None:
            self._refusal = account_mode_problem([self.account], self.config.paper)
        if self._refusal is not None:
            self.close()
            raise AccountModeError(self._refusal)
        if self._loop is None:
            if self._calendar is None:
                from live_runner.core.calendar import MarketCalendar

                self._calendar = MarketCalendar()
            self._loop = asyncio.get_running_loop()
            self._outbox = asyncio.Queue()
            self._lost = asyncio.Event()
            self._synced_once = asyncio.Event()
            self._reconcile_lock = asyncio.Lock()
            logging.getLogger(compat.DECODER_LOGGER).addHandler(self._decoder_handler)
            self._tasks = [asyncio.create_task(self._supervise(), name="ibkr-supervisor"),
                           asyncio.create_task(self._sender(), name="ibkr-sender")]
        if wait:
            synced = asyncio.ensure_future(self._synced_once.wait())  # type: ignore[union-attr]
            try:  # the supervisor ends early only when it refuses the account
                await asyncio.wait({synced, self._tasks[0]}, timeout=self.config.connect_timeout_s,
                                   return_when=asyncio.FIRST_COMPLETED)
            finally:
                synced.cancel()
            if self._refusal is not None:
                self.close()
                raise AccountModeError(self._refusal)
        return self.connected

    def close(self) -> None:
        self._closing = True
        for task in self._tasks + ([self._reconcile_task] if self._reconcile_task else []):
            task.cancel()
        for p in self._pending.values():
            if p.timer is not None:
                p.timer.cancel()
        logging.getLogger(compat.DECODER_LOGGER).removeHandler(self._decoder_handler)
        self._ib.disconnect()

    async def stop(self) -> None:
        self.close()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    # --- ExecutionClient -------------------------------------------------------------------------
    def submit(self, request: OrderRequest) -> None:
        if not self.may_send("submit"):  # the live service's lease fence
            return
        cid = request.client_order_id
        if cid in self._orders:
            log.error("duplicate client order id %s: not sent again", cid, extra={"client_order_id": cid})
            return
        o = self._orders[cid] = TrackedOrder(cid, request)
        self._session_ended = False
        problem = self._order_rule(request)
        if problem:
            self._finish(o, OrderStatus.REJECTED, f"{NOT_SENT}: {problem}")
            self.stats["rejected_not_sent"] += 1
        elif self._refusal is not None:
            self._finish(o, OrderStatus.REJECTED, f"{NOT_SENT}: {self._refusal}")
            self.stats["rejected_not_sent"] += 1
        elif not self.connected or self._outbox is None:
            self._finish(o, OrderStatus.REJECTED, f"{NOT_SENT}: broker not connected")
            self.stats["rejected_not_sent"] += 1
        else:
            self._outbox.put_nowait(("place", o))

    def cancel(self, client_order_id: str) -> None:
        """A request; a no-op for an order already canceled, filled or being canceled."""
        if not self.may_send("cancel"):  # the live service's lease fence
            return
        o = self._orders.get(client_order_id)
        if o is None or o.terminal is not None or o.deferred is not None or o.cancel_requested:
            return
        if o.request is not None and o.reported_qty + o.pending_qty >= o.request.qty:
            return  # filled: nothing left to cancel
        o.cancel_requested = True
        if self._outbox is not None:
            self._outbox.put_nowait(("cancel", o))

    def recover(self, request: OrderRequest, *, filled: int = 0, notional: object = None) -> None:
        """An order the journal holds: find it at the broker by orderRef; never send it again.
        (Fills the journal holds are known by execId: `filled`/`notional` are not needed here.)"""
        cid = request.client_order_id
        o = self._orders.get(cid)
        if o is not None:
            if o.request is None:
                self._claim(o, request)
            return
        self._orders[cid] = TrackedOrder(cid, request, recovering=True)
        if self._ready:
            self._request_reconcile("recover")

    def on_bar(self, bar: Bar) -> None:
        """Real brokers see the market themselves."""

    def end_session(self, ts: int) -> None:
        """Day orders expire at the broker; its cancels from now on are reported as EXPIRED."""
        self._session_ended = True

    def positions(self) -> dict[str, int] | None:
        if not self._positions_synced:
            return None
        out: dict[str, int] = {}
        for p in self._ib.positions(self.account) if self.account else self._ib.positions():
            if p.contract.secType == "STK" and p.position:
                out[p.contract.symbol] = out.get(p.contract.symbol, 0) + int(round(p.position))
        return {s: q for s, q in sorted(out.items()) if q}

    def _order_rule(self, req: OrderRequest) -> str:
        if req.qty < 1:
            return "quantity below 1"
        if self._outside_rth(req) and req.order_type is not OrderType.LIMIT:
            return "outside regular hours only limit orders are accepted"
        return ""

    def _outside_rth(self, req: OrderRequest) -> bool:
        if self._calendar is None:
            return False
        try:
            session = self._calendar.session_for_ts(req.ts)
        except ValueError:
            return False  # outside the calendar's range: let IB apply its own hours
        return session is None or session.phase(req.ts) != "regular"

    # --- sending -------------------------------------------------------------------------------
    async def _sender(self) -> None:
        assert self._outbox is not None
        while True:
            kind, o = await self._outbox.get()
            if o.terminal is not None:
                continue
            await self._throttle.acquire()
            if o.terminal is not None or (kind == "cancel" and o.deferred is not None):
                continue  # ended while waiting for the throttle (e.g. IB's OCA canceled it)
            try:
                if kind == "place":
                    self._place(o)
                else:
                    self._send_cancel(o)
            except Exception:
                log.exception("ibkr %s of %s failed", kind, o.cid, extra={"client_order_id": o.cid})

    def _place(self, o: TrackedOrder) -> None:
        req = o.request
        assert req is not None
        if not self.connected:
            self.stats["rejected_not_sent"] += 1
            self._finish(o, OrderStatus.REJECTED, f"{NOT_SENT}: broker disconnected before sending")
            return
        ib = self._ib
        oid = self._ids.allocate(floor=ib.client.getReqId())
        ib.client.updateReqId(oid + 1)  # request ids share the SDK's sequence: keep them above
        order = self._ib_order(req, req.qty)  # with its OCA group, if it has one
        order.orderId = oid
        o.order_id = oid
        self._by_oid[oid] = o
        try:
            o.trade = ib.placeOrder(compat.Stock(req.symbol, "SMART", "USD"), order)
        except ConnectionError:
            self.stats["rejected_not_sent"] += 1
            self._finish(o, OrderStatus.REJECTED, f"{NOT_SENT}: broker disconnected before sending")
            return
        o.sent = True
        o.sent_at = time.time()
        self.stats["orders_sent"] += 1

    def _send_cancel(self, o: TrackedOrder) -> None:
        if not self.connected or o.trade is None or not o.order_id:
            o.cancel_pending = True  # sent after the next reconcile binds the order
            return
        self._ib.cancelOrder(o.trade.order)
        self.stats["cancels_sent"] += 1

    # --- hooks for the reports ------------------------------------------------------------------
    def _on_malformed(self, text: str) -> None:
        self.stats["malformed_messages"] += 1
        n = self.stats["malformed_messages"]
        log.error("ibkr: malformed message from the broker (#%d), dropped by the SDK: %s", n, text[:300])
        self._alert("ibkr_malformed_message", "warning", f"malformed broker message #{n}: reconciling")
        self._request_reconcile("malformed message", delay=0.05)

    def _fault(self, key: str, message: str) -> None:
        """Fail closed: the runner's view of the broker is in doubt (see the module docstring)."""
        log.error("ibkr fault %s: %s", key, message)
        if self._fault_cb is None:
            self._alert(key, "critical", message)
            return
        try:
            self._fault_cb(key, message)
        except Exception:
            log.exception("fault handler failed")
            self._alert(key, "critical", message)

    def _alert(self, key: str, severity: str, message: str) -> None:
        if self._alert_cb is not None:
            try:
                self._alert_cb(key, severity, message)
            except Exception:
                log.exception("alert callback failed")

    def _loop_call_later(self, delay: float, fn: Callable, *args: Any) -> asyncio.TimerHandle:
        assert self._loop is not None
        return self._loop.call_later(delay, fn, *args)

    def _lib_fill(self, exec_id: str) -> Any:
        return self._ib.wrapper.fills.get(exec_id)

    def _bump_order_id(self, oid: int) -> None:
        self._ids.bump(oid)
