"""Exits at real broker semantics: the protective pair, flattening and trims.

The rules (DESIGN.md, "How the real brokers behave"):
- A position's stop and target are ONE unit at the broker: a native one-cancels-other order where
  the execution client has one (Alpaca `order_class: oco`, an IB OCA group), otherwise two orders
  whose one-cancels-other the order manager emulates (the paper broker, synchronous).
- A working pair is resized in place (`replace_exits`) at a native broker, never cancel-then-new:
  between the two, Alpaca still reserves the shares (403) and IB could fill both.
- A flatten or trim first cancels the sells that hold the shares, WAITS for the broker to confirm
  each cancel (a fill meanwhile shrinks what is left to sell), then sells what is still held. The
  wait is bounded: after `risk.cancel_confirm_timeout_s` a CRITICAL `cancel_unconfirmed:SYMBOL`
  alert, the cancels are asked again and reconciliation runs; nothing is sold while a cancel is
  unconfirmed, so the account can never go short.
- No sell is sent that does not fit in the shares not already held by working sells.
- A protective order refused (by risk or by the broker) raises CRITICAL `unprotected:SYMBOL` and
  the position is flattened (the policy: a position is never left without its stop).
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Callable

import msgspec

from live_runner.models import Order, OrderRequest, OrderRole, OrderStatus, OrderType, Side

if TYPE_CHECKING:
    from live_runner.execution.trades import OpenTrade

log = logging.getLogger("live_runner.orders")

_BUY, _SELL = Side.BUY, Side.SELL
_STOP_ROLE, _TARGET_ROLE, _MANUAL = OrderRole.STOP, OrderRole.TARGET, OrderRole.MANUAL
_MARKET, _STOP, _LIMIT = OrderType.MARKET, OrderType.STOP, OrderType.LIMIT
NANOS_PER_SECOND = 1_000_000_000
MAX_FLATTEN_RETRIES = 3


class ExitsMixin:
    """The exit half of the OrderManager (see the module docstring); state lives on the manager."""

    # --- flatten and trim ------------------------------------------------------------------------
    def flatten(self, symbol: str, role: OrderRole = OrderRole.MANUAL) -> str | None:
        """Cancel the symbol's working orders, wait for the broker to confirm, then sell what is
        still held at market. Returns the flatten's client order id (sent now or once confirmed)."""
        entry = self.pending_entries.get(symbol)
        entry_open = entry is not None and entry.is_open
        trade = self.trades.get(symbol)
        qty = self.portfolio.position_qty(symbol)
        if trade is None or qty <= 0:
            if entry_open:
                self._flatten_wanted[symbol] = role  # should it fill before the cancel lands
                self.execution.cancel(entry.client_order_id)
            return None
        if trade.pending_exit == "flatten":
            return trade.pending_req.client_order_id if trade.pending_req is not None else None
        if trade.flatten_id and self.orders[trade.flatten_id].is_open:
            return None
        req = OrderRequest(
            self.next_id(trade.strategy, symbol), trade.strategy, symbol, _SELL, qty, _MARKET, role,
            self.clock.now_ns(), reference_price=self.portfolio.last_price.get(symbol, 0.0))
        if not self._approve(req):
            # The protective stop and target stay in place: a refused exit never unprotects.
            self._alert(f"flatten_refused:{symbol}", "critical",
                        f"could not flatten {symbol}: {self.risk.denials.most_common(1)}")
            return None
        trade.pending_exit, trade.pending_role, trade.pending_req = "flatten", role, req
        self._cancel_and_wait(symbol, trade, entry.client_order_id if entry_open else "")
        return req.client_order_id

    def trim(self, symbol: str, qty: int) -> str | None:
        """Sell part of a position at market once the pair's cancel is confirmed; a new pair
        protects what remains, placed with the trim."""
        trade = self.trades.get(symbol)
        held = self.portfolio.position_qty(symbol)
        if trade is None or qty <= 0 or held <= 0 or trade.flatten_id or trade.pending_exit:
            return None
        qty = min(qty, held)
        req = OrderRequest(
            client_order_id=self.next_id(trade.strategy, symbol), strategy=trade.strategy,
            symbol=symbol, side=_SELL, qty=qty, order_type=_MARKET, role=_MANUAL,
            ts=self.clock.now_ns(), reference_price=self.portfolio.last_price.get(symbol, 0.0))
        if not self._approve(req):
            return None
        trade.pending_exit, trade.pending_req, trade.pending_trim_qty = "trim", req, qty
        self._cancel_and_wait(symbol, trade, "")
        return req.client_order_id

    def flatten_all(self, role: OrderRole = OrderRole.MANUAL) -> list[str]:
        # Symbols with only a working entry too: flatten cancels it, so that it cannot fill after
        # the close (the paper broker fills a market order left at the session end at the last close).
        symbols = sorted(self.trades.keys() | self.pending_entries.keys())
        return [cid for sym in symbols if (cid := self.flatten(sym, role))]

    def protect_all(self) -> None:
        """After a restart: every position held gets its working pair (a flatten whose cancels
        were confirmed but whose sell was lost with the crash would otherwise leave it bare)."""
        orders = self.orders
        for symbol, trade in sorted(self.trades.items()):
            if self.portfolio.position_qty(symbol) <= 0 or trade.pending_exit:
                continue
            ids = (trade.stop_id, trade.target_id, trade.flatten_id, trade.trim_id)
            if not any(cid and cid in orders and orders[cid].is_open for cid in ids):
                # Bare: nothing works for it at the broker. Orders that do (recovered or adopted)
                # are left to their own reports, which may still be on their way.
                self._ensure_exits(symbol, trade)

    def cancel_all(self) -> None:
        for cid in sorted(self.open_orders):
            self._cancel_asked.add(cid)
            self.execution.cancel(cid)

    def _cancel_and_wait(self, symbol: str, trade: "OpenTrade", entry_id: str) -> None:
        """Ask the broker to cancel every working order of the symbol that holds or adds shares,
        and run the pending exit once each is confirmed (at once when none is working)."""
        ids = [entry_id, trade.trim_id, trade.stop_id, trade.target_id, *trade.replacing]
        orders = self.orders
        live = [cid for cid in dict.fromkeys(ids) if cid and orders[cid].is_open]
        # Added to what an earlier pending exit already waits for (a flatten during a trim's wait):
        # those cancels are still unconfirmed, and their shares are still held by the broker.
        trade.awaiting.update(live)
        trade.stop_id = trade.target_id = ""
        for cid in live:
            self.execution.cancel(cid)  # the paper broker confirms within this call
        if trade.awaiting:
            self._arm_cancel_timer(symbol)
        self._release(symbol, trade)

    def _release(self, symbol: str, trade: "OpenTrade") -> None:
        """The cancels a pending exit waited for are all confirmed: act on what is held now."""
        if not trade.pending_exit or trade.awaiting:
            return
        kind, req = trade.pending_exit, trade.pending_req
        trade.pending_exit, trade.pending_req = "", None
        self.clock.cancel_timer(f"cancel_wait:{symbol}")
        if kind == "protect" or req is None:
            self._ensure_exits(symbol, trade)
            return
        free = self.portfolio.position_qty(symbol) - self._reserved(symbol, ())
        if kind == "flatten":
            if free > 0:
                req = msgspec.structs.replace(req, qty=free)
                self._send(req)
                trade.flatten_id = req.client_order_id
            return
        qty = min(trade.pending_trim_qty, free)
        if qty > 0:
            req = msgspec.structs.replace(req, qty=qty)
            self._send(req)
            trade.trim_id = req.client_order_id
        self._ensure_exits(symbol, trade)

    def _awaited_done(self, order: Order) -> None:
        """An order left the book (filled, canceled, rejected, expired): a pending exit waiting
        for it may go on; a replaced pair is forgotten; a refused protective order is handled."""
        req = order.request
        symbol = req.symbol
        trade = self.trades.get(symbol)
        cid = req.client_order_id
        if trade is None:
            if req.role is OrderRole.ENTRY and order.status is not OrderStatus.FILLED:
                self._flatten_wanted.pop(symbol, None)  # canceled unfilled: nothing to flatten
            return
        if cid in trade.awaiting:
            trade.awaiting.discard(cid)
            self._release(symbol, trade)
        if cid in trade.replacing:
            old = trade.replacing
            if all(not c or not self.orders[c].is_open for c in old):
                trade.replacing = ("", "")
                self._ensure_exits(symbol, trade)  # fills that came during the replace: cover them
        elif (order.status is OrderStatus.CANCELED and cid in (trade.stop_id, trade.target_id)
              and cid not in self._cancel_asked):
            # The broker cancelled a leg of the working pair unasked (an IB OCA group of type 1
            # cancels the other orders on any fill, a partial one included): the shares still held
            # need their pair again, at once when the other leg's partial fill explains the cancel.
            # Otherwise the fill that made the broker cancel this one (or, after a restart, the
            # other leg's adoption) may still be on its way: look again a moment later.
            other = self.orders.get(trade.target_id if cid == trade.stop_id else trade.stop_id)
            if other is not None and other.is_open and other.filled_qty:
                self._ensure_exits(symbol, trade)
            else:
                timeout = int(self.cancel_timeout_s * NANOS_PER_SECOND)
                self.clock.set_timer(f"protect:{symbol}", self.clock.now_ns() + timeout,
                                     lambda ts, s=symbol: self._protect_later(s))

    def _protect_later(self, symbol: str) -> None:
        trade = self.trades.get(symbol)
        if trade is not None and self.portfolio.position_qty(symbol) > 0:
            self._ensure_exits(symbol, trade)

    def _arm_cancel_timer(self, symbol: str) -> None:
        timeout = int(self.cancel_timeout_s * NANOS_PER_SECOND)
        self.clock.set_timer(f"cancel_wait:{symbol}", self.clock.now_ns() + timeout,
                             lambda ts, s=symbol: self._cancel_timeout(s))

    def _cancel_timeout(self, symbol: str) -> None:
        trade = self.trades.get(symbol)
        if trade is None or not trade.awaiting:
            return
        waiting = sorted(trade.awaiting)
        self._alert(f"cancel_unconfirmed:{symbol}", "critical",
                    f"{symbol}: cancel of {', '.join(waiting)} not confirmed after "
                    f"{self.cancel_timeout_s:g} s; nothing is sold until it is (asking again, reconciling)")
        for cid in waiting:
            self.execution.cancel(cid)
        self._on_reconcile()
        self._arm_cancel_timer(symbol)

    # --- the protective pair -------------------------------------------------------------------
    def _ensure_exits(self, symbol: str, trade: "OpenTrade") -> None:
        """Make the working pair cover exactly the shares held and not being sold otherwise."""
        if trade.pending_exit or (trade.flatten_id and self.orders[trade.flatten_id].is_open):
            return
        if trade.replacing != ("", ""):
            return  # a resize is in flight: resized again once the broker has answered it
        orders = self.orders
        stop_o = orders.get(trade.stop_id) if trade.stop_id else None
        target_o = orders.get(trade.target_id) if trade.target_id else None
        pair = (trade.stop_id, trade.target_id)
        desired = self.portfolio.position_qty(symbol) - self._reserved(symbol, pair + trade.replacing)
        stop_open = stop_o is not None and stop_o.is_open
        target_open = target_o is not None and target_o.is_open
        if desired <= 0:
            if stop_open or target_open:
                self._cancel_exits(trade)
            return
        if trade.stop <= 0:  # an adopted entry: its protective stop was lost with the journal
            self._alert(f"unprotected:{symbol}", "critical",
                        f"{symbol}: {desired} shares from an adopted entry with no known stop: manage or flatten")
            return
        native = self.execution.native_oco(symbol)
        if stop_open and target_open:
            assert stop_o is not None and target_o is not None
            if self._pair_left(stop_o, target_o, native) == desired:
                return
            if native:
                self._replace_pair(symbol, trade, desired)
                return
            self._cancel_exits(trade)  # emulated pair (paper): the cancels are confirmed at once
        elif stop_open or target_open:
            # One leg alone (the other refused or done): replace both, once the lone leg is gone.
            trade.pending_exit = "protect"
            self._cancel_and_wait(symbol, trade, "")
            return
        self._place_pair(symbol, trade, desired)

    def _place_pair(self, symbol: str, trade: "OpenTrade", qty: int) -> None:
        stop, target = self._pair_requests(symbol, trade, qty)
        ok_stop, ok_target = self._approve(stop), self._approve(target)
        if not ok_stop:
            self._unprotected(symbol, f"stop for {symbol} refused by risk ({self.risk.denials.most_common(1)})")
            return
        if not ok_target:  # the stop alone still protects
            if self._send(stop):
                trade.stop_id = stop.client_order_id
            return
        if self._send_pair(stop, target):
            trade.stop_id, trade.target_id = stop.client_order_id, target.client_order_id

    def _replace_pair(self, symbol: str, trade: "OpenTrade", qty: int) -> None:
        stop, target = self._pair_requests(symbol, trade, qty)
        if not (self._approve(stop) and self._approve(target)):
            self._alert(f"exits_not_resized:{symbol}", "critical",
                        f"resize of {symbol}'s exits to {qty} refused by risk: the old pair keeps working")
            return
        old = (trade.stop_id, trade.target_id)
        if not self._fits(stop, old):
            return
        trade.replacing = old
        trade.stop_id, trade.target_id = stop.client_order_id, target.client_order_id
        self._dispatch_pair(stop, target, lambda: self.execution.replace_exits(old[0], old[1], stop, target))

    def _pair_requests(self, symbol: str, trade: "OpenTrade", qty: int) -> tuple[OrderRequest, OrderRequest]:
        now = self.clock.now_ns()
        stop_id = self.next_id(trade.strategy, symbol)
        target_id = self.next_id(trade.strategy, symbol)
        stop = OrderRequest(stop_id, trade.strategy, symbol, _SELL, qty, _STOP, _STOP_ROLE, now,
                            stop_price=trade.stop, oco_group=target_id)
        target = OrderRequest(target_id, trade.strategy, symbol, _SELL, qty, _LIMIT, _TARGET_ROLE, now,
                              limit_price=trade.target, oco_group=target_id)
        return stop, target

    def _send_pair(self, stop: OrderRequest, target: OrderRequest) -> bool:
        if not self._fits(stop, ()):
            return False
        self._dispatch_pair(stop, target, lambda: self.execution.submit_oco(stop, target))
        return True

    def _dispatch_pair(self, stop: OrderRequest, target: OrderRequest, send: Callable[[], None]) -> None:
        """Journal both legs, then send them (recovered, not re-sent, while resuming)."""
        self._register(stop)
        self._register(target)
        if self.journal.resuming:
            self.execution.recover(stop)
            self.execution.recover(target)
        else:
            send()

    def _cancel_exits(self, trade: "OpenTrade") -> None:
        ids = (trade.stop_id, trade.target_id)
        trade.stop_id = trade.target_id = ""  # first: the paper broker confirms inside cancel()
        for cid in ids:
            if cid and self.orders[cid].is_open:
                self.execution.cancel(cid)

    def _unprotected(self, symbol: str, why: str) -> None:
        """The policy for a refused protective order: CRITICAL alert, then flatten."""
        self._alert(f"unprotected:{symbol}", "critical", f"{why}: position unprotected, flattening")
        self.flatten(symbol, _MANUAL)

    def _pair_refused(self, order: Order) -> None:
        """A stop or target the broker refused (REJECTED)."""
        req = order.request
        trade = self.trades.get(req.symbol)
        if trade is None or self.portfolio.position_qty(req.symbol) <= 0:
            return
        cid = req.client_order_id
        if trade.replacing != ("", "") and cid in (trade.stop_id, trade.target_id):
            old = trade.replacing
            if all(c and self.orders[c].is_open for c in old):
                # A refused resize: the old pair keeps working (it may cover fewer shares).
                trade.stop_id, trade.target_id = old
                trade.replacing = ("", "")
                self._alert(f"exits_not_resized:{req.symbol}", "critical",
                            f"the broker refused resizing {req.symbol}'s exits ({cid}): the old pair keeps working")
                return
        if cid == trade.stop_id or cid == trade.target_id:
            self._unprotected(req.symbol, f"{req.role.value} {cid} for {req.symbol} refused by the broker")

    def _exit_refused(self, order: Order, reason: str) -> None:
        """A flatten or trim sell the broker refused, or never got (lost in a disconnect): the
        pair was cancelled for it, so the shares have no stop. A flatten is sent again (at most
        MAX_FLATTEN_RETRIES times, then the pair protects the shares); a trim's shares get the pair."""
        req = order.request
        symbol = req.symbol
        trade = self.trades.get(symbol)
        held = self.portfolio.position_qty(symbol)
        if trade is None or held <= 0:
            return
        if req.client_order_id != trade.flatten_id:
            self._ensure_exits(symbol, trade)
            return
        trade.flatten_refusals += 1
        again = trade.flatten_refusals <= MAX_FLATTEN_RETRIES
        self._alert(f"unprotected:{symbol}", "critical",
                    f"flatten {req.client_order_id} of {symbol} refused ({reason}): {held} shares without a "
                    f"stop; {'sending it again' if again else 'placing the protective pair instead'}")
        if again:
            self.flatten(symbol, req.role)
        else:
            self._ensure_exits(symbol, trade)

    # --- share accounting ------------------------------------------------------------------------
    def _reserved(self, symbol: str, exclude: tuple[str, ...]) -> int:
        """Shares held by working sells of `symbol` (an OCO pair counts once), except `exclude`."""
        pairs: dict[str, list[Order]] = {}
        total = 0
        for cid, o in self.open_orders.items():
            req = o.request
            if req.symbol != symbol or req.side is not _SELL or cid in exclude:
                continue
            if req.oco_group:
                pairs.setdefault(req.oco_group, []).append(o)
            else:
                total += req.qty - o.filled_qty
        native = self.execution.native_oco(symbol) if pairs else False
        for legs in pairs.values():
            if len(legs) == 2:
                total += self._pair_left(legs[0], legs[1], native)
            else:
                total += legs[0].request.qty - legs[0].filled_qty
        return total

    def _pair_exhausted(self, order: Order) -> bool:
        """A native pair's legs share their shares: a leg is done when both legs' fills together
        reach its quantity (the broker then cancels the other), though its own fills do not."""
        req = order.request
        if not req.oco_group or req.side is not _SELL:
            return False
        for other in self.open_orders.values():
            if other is not order and other.request.oco_group == req.oco_group:
                return (order.filled_qty + other.filled_qty >= req.qty
                        and self.execution.native_oco(req.symbol))
        return False

    @staticmethod
    def _pair_left(a: Order, b: Order, native: bool) -> int:
        """Shares a pair still covers: native legs share them; emulated legs each hold their own."""
        if native:
            return a.request.qty - a.filled_qty - b.filled_qty
        return max(a.request.qty - a.filled_qty, b.request.qty - b.filled_qty)

    def _fits(self, req: OrderRequest, exclude: tuple[str, ...]) -> bool:
        """Never short: a sell must fit in the shares not held by other working sells."""
        if req.side is not _SELL:
            return True
        free = self.portfolio.position_qty(req.symbol) - self._reserved(req.symbol, exclude)
        if req.qty <= free:
            return True
        self._alert(f"oversell_refused:{req.symbol}", "critical",
                    f"{req.client_order_id}: sell of {req.qty} {req.symbol} refused, only {free} "
                    "shares are not held by working sells")
        return False
