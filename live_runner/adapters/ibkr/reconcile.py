"""Reconciliation with the broker: after every connect, on a malformed message, on a rejected
cancel, and whenever orderStatus shows fills not yet seen as executions.

One pass asks for every open order (reqAllOpenOrders, all client ids), the completed orders, the
executions since the last one seen (minus a margin, and never later than the oldest order in
doubt), and the positions. Executions not yet reported are reported (deduplicated by execId);
orders carrying our orderRef prefix are bound or adopted; an order in doubt (sent without an ack
before a drop, or recovered from the journal) that appears nowhere was never accepted: it is
reported REJECTED and never re-sent. Cancels asked for while the order was unreachable are sent.
"""

from __future__ import annotations

import asyncio
from datetime import datetime, timezone
from typing import Any

from live_runner.adapters.ibkr import compat
from live_runner.adapters.ibkr.reports import TrackedOrder, log
from live_runner.core.models import OrderRequest, OrderRole, OrderStatus, OrderType, Side

_EXEC_MARGIN_S = 600.0


class ReconcileMixin:
    """The reconcile side of IbkrExecutionClient (state lives on the client)."""

    # --- reconcile -------------------------------------------------------------------------------
    def _request_reconcile(self, reason: str, delay: float = 0.0) -> None:
        if self._loop is None or self._closing:
            return
        if self._reconcile_task is not None and not self._reconcile_task.done():
            self._reconcile_again = True
            return
        self._reconcile_task = self._loop.create_task(self._reconcile_later(reason, delay))

    async def _reconcile_later(self, reason: str, delay: float) -> None:
        while True:
            self._reconcile_again = False
            await asyncio.sleep(delay)
            if self._ready:
                try:
                    await self._reconcile(reason)
                except Exception as exc:
                    log.warning("ibkr reconcile (%s) failed: %r", reason, exc)
            if not self._reconcile_again:
                return

    async def _reconcile(self, reason: str) -> None:
        assert self._reconcile_lock is not None
        async with self._reconcile_lock:
            ib, timeout = self._ib, self.config.connect_timeout_s
            candidates = [o for o in self._orders.values() if o.terminal is None and o.deferred is None
                          and (o.ambiguous or o.recovering or o.needs_check)]
            in_doubt = {o.cid for o in candidates if o.ambiguous or o.recovering}
            since = self._exec_since(candidates)
            await self._throttle.acquire()
            open_trades = await asyncio.wait_for(ib.reqAllOpenOrdersAsync(), timeout)
            await self._throttle.acquire()
            done_trades = await asyncio.wait_for(ib.reqCompletedOrdersAsync(False), timeout)
            await self._throttle.acquire()
            fills = await asyncio.wait_for(ib.reqExecutionsAsync(compat.ExecutionFilter(time=since)), timeout)
            await self._throttle.acquire()
            await asyncio.wait_for(ib.reqPositionsAsync(), timeout)
            self._positions_synced = True
            found: dict[str, Any] = {}
            for trade in list(done_trades) + list(open_trades):  # open ones win
                ref = trade.order.orderRef or ""
                if ref in self._orders or self._ours(ref):
                    found[ref] = trade
            executed = set()
            for fill in fills:
                executed.add(fill.execution.orderRef or "")
                self._on_exec(fill, source="reconcile")
            for ref, trade in found.items():
                o = self._orders.get(ref) or self._adopt(ref, "order listed at the broker")
                self._apply_trade(o, trade)
            for o in candidates:
                if o.terminal is None and o.deferred is None and o.cid not in found and o.cid not in executed:
                    if o.ambiguous or o.recovering or not o.acked:
                        self.stats["ambiguous_absent"] += 1
                        self._alert(f"ibkr_not_accepted:{o.cid}", "warning",
                                    f"order {o.cid}: outcome was unknown; not at the broker, so not accepted")
                        self._finish(o, OrderStatus.REJECTED, "not accepted: not found at the broker after "
                                     "reconnect (open, completed orders, executions); never re-sent")
                    else:
                        self._finish(o, OrderStatus.CANCELED, "no longer at the broker")
                elif o.cid in in_doubt:
                    self.stats["ambiguous_found"] += 1
                o.ambiguous = o.recovering = o.needs_check = False
            for o in self._orders.values():
                if o.cancel_pending and o.terminal is None and o.deferred is None and o.trade is not None:
                    o.cancel_pending = False
                    o.cancel_requested = False
                    self.cancel(o.cid)
                if o.deferred is not None:
                    self._flush_deferred(o, force=True)
                if o.request is None and o.terminal is None and o.held:
                    log.warning("order %s at the broker is not claimed by the runner", o.cid)
            self.stats["reconciles"] += 1
            log.info("ibkr reconciled (%s): %d open, %d completed, %d executions since %r",
                     reason, len(open_trades), len(done_trades), len(fills), since)
            assert self._synced_once is not None
            self._synced_once.set()

    def unclaimed(self) -> list[OrderRequest]:
        """Orders at IB with our orderRef prefix that nobody recovered (their journal events were
        lost with a crash): what the runner needs to adopt them. Role by shape: a buy is an entry,
        a sell stop the protective stop, a sell limit the target, a sell at market a flatten.
        Calling it closes the adoption window: a fill for an unknown order of ours after this is a
        fault (the runner took what it lost; anything new it never knew)."""
        self._adoption_closed = True
        out = []
        for o in self._orders.values():
            if o.request is not None or o.trade is None:
                continue
            order, contract = o.trade.order, o.trade.contract
            side = Side.BUY if order.action == "BUY" else Side.SELL
            kind = {"LMT": OrderType.LIMIT, "STP": OrderType.STOP}.get(order.orderType, OrderType.MARKET)
            role = OrderRole.ENTRY if side is Side.BUY else {
                OrderType.STOP: OrderRole.STOP, OrderType.LIMIT: OrderRole.TARGET}.get(kind, OrderRole.MANUAL)
            out.append(OrderRequest(
                client_order_id=o.cid, strategy="", symbol=contract.symbol, side=side,
                qty=int(order.totalQuantity), order_type=kind, role=role, ts=self._now(),
                limit_price=float(order.lmtPrice) if kind is OrderType.LIMIT else 0.0,
                stop_price=float(order.auxPrice) if kind is OrderType.STOP else 0.0))
        return sorted(out, key=lambda r: r.client_order_id)

    def _exec_since(self, candidates: list[TrackedOrder]) -> str:
        """Executions since the last one seen (and since the oldest order in doubt), with margin."""
        if not self._last_exec_ts or any(o.recovering or not o.sent_at for o in candidates):
            return ""
        start = min([self._last_exec_ts] + [o.sent_at for o in candidates]) - _EXEC_MARGIN_S
        return datetime.fromtimestamp(start, timezone.utc).strftime("%Y%m%d-%H:%M:%S")
