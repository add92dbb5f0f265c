"""Exits at real broker semantics: flattening, trims and the cancels they wait for (the
protective pair itself is execution/pairs.py).

The rules (DESIGN.md, "How the real brokers behave"):
- A position's stop and target are ONE unit at the broker: a native one-cancels-other order where
  the execution client has one (Alpaca `order_class: oco`, an IB OCA group), otherwise two orders
  whose one-cancels-other the order manager emulates (the paper broker, synchronous).
- A working pair is never cancel-then-new to follow a further entry fill: between the two, Alpaca
  still reserves the shares (403) and IB could fill both. Alpaca resizes it in place; at IB the
  added shares get a pair of their own (pairs.py says why).
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

from live_runner.execution.pairs import PairsMixin, is_pair_leg
from live_runner.core.models import Order, OrderRequest, OrderRole, OrderStatus, OrderType, Side

if TYPE_CHECKING:
    from live_runner.execution.trades import OpenTrade

log = logging.getLogger("live_runner.orders")

_BUY, _SELL = Side.BUY, Side.SELL
_STOP_ROLE, _TARGET_ROLE, _MANUAL = OrderRole.STOP, OrderRole.TARGET, OrderRole.MANUAL
_MARKET, _STOP, _LIMIT = OrderType.MARKET, OrderType.STOP, OrderType.LIMIT
_SUBMITTED = OrderStatus.SUBMITTED
NANOS_PER_SECOND = 1_000_000_000
MAX_FLATTEN_RETRIES = 3


class ExitsMixin(PairsMixin):
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
            if not any(cid and cid in orders and orders[cid].is_open for cid in ids) \
                    and not self._exit_legs(symbol):
                # Bare: nothing works for it at the broker. Orders that do (recovered or adopted)
                # are left to their own reports, which may still be on their way.
                self._ensure_exits(symbol, trade)

    def cancel_all(self) -> None:
        # Stops last: at a broker that confirms cancels in the order asked, they protect longest.
        roles = {cid: o.request.role is _STOP_ROLE for cid, o in self.open_orders.items()}
        for cid in sorted(roles, key=lambda c: (roles[c], c)):
            self._cancel_asked.add(cid)
            self.execution.cancel(cid)

    def _cancel_and_wait(self, symbol: str, trade: "OpenTrade", entry_id: str) -> None:
        """Ask the broker to cancel every working order of the symbol that holds or adds shares,
        and run the pending exit once each is confirmed (at once when none is working)."""
        # The stops last: they protect for as long as possible (at IB the cancels are confirmed
        # in the order asked). Every pair (IB grows protection by pairs), the legs of a resize in
        # flight or refused (they hold shares until the broker's verdict) included.
        legs = self._exit_legs(symbol, cancelling=True)
        targets = [o.client_order_id for o in legs if o.request.role is not _STOP_ROLE]
        stops = [o.client_order_id for o in legs if o.request.role is _STOP_ROLE]
        ids = [entry_id, trade.trim_id, trade.target_id, *targets, *trade.replacing[::-1],
               *trade.refused[::-1], *stops, trade.stop_id]
        orders = self.orders
        live = [cid for cid in dict.fromkeys(ids) if cid and orders[cid].is_open]
        self._cancel_asked.update(live)
        # Added to what an earlier pending exit already waits for (a flatten during a trim's wait):
        # those cancels are still unconfirmed, and their shares are still held by the broker.
        trade.awaiting.update(live)
        trade.stop_id = trade.target_id = ""
        for cid in live:
            self.execution.cancel(cid)  # the paper broker confirms within this call
        if trade.awaiting:
            self._arm_cancel_timer(symbol)
            self._bare_while_waiting(symbol, trade)
        self._release(symbol, trade)

    def _bare_while_waiting(self, symbol: str, trade: "OpenTrade") -> None:
        """Shares held, no stop among the orders a pending exit waits for (the entry filled
        while its cancel was pending, or the stop filled first): nothing may be sold until the
        broker confirms (Alpaca refuses a sell against our own open buy; a sell beside a working
        target could oversell), so they are bare meanwhile. CRITICAL says so."""
        held = self.portfolio.position_qty(symbol)
        if held <= 0 or not trade.awaiting or any(
                self.orders[cid].request.role is _STOP_ROLE for cid in trade.awaiting):
            return
        self._alert(f"unprotected:{symbol}", "critical",
                    f"{symbol}: {held} shares held without a stop while the {trade.pending_exit} waits "
                    f"for the cancel of {', '.join(sorted(trade.awaiting))}")

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
            self._bare_while_waiting(symbol, trade)
            self._release(symbol, trade)
        if cid in trade.replacing:
            old = trade.replacing
            if all(not c or not self.orders[c].is_open for c in old):
                trade.replacing = ("", "")
                self._resize_overtaken(symbol, trade, old)
                self._ensure_exits(symbol, trade)  # fills that came during the replace: cover them
        elif (order.status is OrderStatus.CANCELED and cid not in self._cancel_asked
              and cid not in trade.refused and is_pair_leg(req)):
            # The broker cancelled a leg of a working pair unasked (an IB OCA group of type 1
            # cancels the other orders on any fill, a partial one included): the shares still held
            # need their pair again, at once when the other leg's partial fill explains the cancel.
            # Otherwise the fill that made the broker cancel this one (or, after a restart, the
            # other leg's adoption) may still be on its way: look again a moment later.
            other = next((o for o in self._exit_legs(symbol)
                          if o.request.oco_group == req.oco_group and o is not order), None) \
                if req.oco_group else None
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
