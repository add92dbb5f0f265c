"""The protective pair at the broker: placed after an entry fill, kept the size of the shares held,
and what a refusal of it means (DESIGN.md, "How the real brokers behave").

How a pair follows the position, per broker (the execution client says which: it offers
`replace_exits` or not, ExecutionEngine.resizes_in_place):
- Resized in place (`replace_exits`) where the broker checks the new size against the position as
  it applies it: Alpaca's replace is refused (403) when the shares are not there, so it can never
  oversell. One resize at a time, once the broker has taken the pair.
- Never grown at IB (its client has no `replace_exits`). A modify there sets a leg's total
  quantity; a fill of the other leg while the modify travels (IB had shrunk this leg for it,
  ocaType 2) is undone by it, and the pair could sell more than is held. So a pair keeps its size
  and the added shares get a pair (an OCA group) of their own: each group sells at most its own
  shares, all of them together never more than held. A pair left with one leg, or protection
  above the shares held, is cancelled (confirmed) and one pair is placed for what is held.
- Emulated (the paper broker): two orders, re-placed; its cancels are confirmed at once.
A refused resize keeps the old pair working and is tried again at the size now held (the usual
cause: a fill overtook it); refused again, the uncovered shares are CRITICAL `unprotected` and
the position is flattened, as for any refused stop.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Callable

from live_runner.execution.shares import SharesMixin
from live_runner.core.models import Order, OrderRequest, OrderRole, OrderStatus, OrderType, Side

if TYPE_CHECKING:
    from live_runner.execution.trades import OpenTrade

_SELL = Side.SELL
_STOP_ROLE, _TARGET_ROLE, _MANUAL = OrderRole.STOP, OrderRole.TARGET, OrderRole.MANUAL
_MARKET, _STOP, _LIMIT = OrderType.MARKET, OrderType.STOP, OrderType.LIMIT
_SUBMITTED = OrderStatus.SUBMITTED
_NO_PAIR = ("", "")
MAX_RESIZE_RETRIES = 2  # refused resizes tried again at the size held; then unprotected, flattened


class PairsMixin(SharesMixin):
    """The pair half of the OrderManager's exits (ExitsMixin); state lives on the manager."""

    def _exit_legs(self, symbol: str, cancelling: bool = False) -> list[Order]:
        """Every working protective leg of `symbol` (all its pairs), except those whose cancel we
        asked for (on their way out, though they can still fill) unless `cancelling`."""
        asked = () if cancelling else self._cancel_asked  # type: ignore[attr-defined]
        return [o for cid, o in self.open_orders.items()  # type: ignore[attr-defined]
                if o.request.symbol == symbol and cid not in asked and is_pair_leg(o.request)]

    def _ensure_exits(self, symbol: str, trade: "OpenTrade") -> None:
        """Make the working pair(s) cover exactly the shares held and not being sold otherwise."""
        if trade.pending_exit or (trade.flatten_id and self.orders[trade.flatten_id].is_open):  # type: ignore[attr-defined]
            return
        if trade.replacing != _NO_PAIR or self._refusal_pending(trade):
            return  # a resize is in flight: looked at again once the broker has answered it
        native = self.execution.native_oco(symbol)  # type: ignore[attr-defined]
        if native and not self.execution.resizes_in_place(symbol):  # type: ignore[attr-defined]
            self._ensure_pairs(symbol, trade)
            return
        orders = self.orders  # type: ignore[attr-defined]
        stop_o = orders.get(trade.stop_id) if trade.stop_id else None
        target_o = orders.get(trade.target_id) if trade.target_id else None
        pair = (trade.stop_id, trade.target_id)
        desired = self.portfolio.position_qty(symbol) - self._reserved(symbol, pair)  # type: ignore[attr-defined]
        stop_open = stop_o is not None and stop_o.is_open
        target_open = target_o is not None and target_o.is_open
        if desired <= 0:
            if stop_open or target_open:
                self._cancel_exits(symbol, trade)
            return
        if not self._stop_known(symbol, trade, desired):
            return
        if stop_open and target_open:
            assert stop_o is not None and target_o is not None
            if self._pair_left(stop_o, target_o, native) == desired:
                return
            if native:
                if _SUBMITTED in (stop_o.status, target_o.status):
                    return  # one resize at a time: re-checked once the broker takes the pair
                self._replace_pair(symbol, trade, desired)
                return
            self._cancel_exits(symbol, trade)  # emulated pair (paper): the cancels are confirmed at once
        elif stop_open or target_open:
            # One leg alone (the other refused or done): replace both, once the lone leg is gone.
            trade.pending_exit = "protect"
            self._cancel_and_wait(symbol, trade, "")  # type: ignore[attr-defined]
            return
        self._place_pair(symbol, trade, desired)

    def _ensure_pairs(self, symbol: str, trade: "OpenTrade") -> None:
        """At a broker whose pairs never grow (IB): shares not covered get a pair of their own."""
        legs = self._exit_legs(symbol)
        groups: dict[str, list[Order]] = {}
        for o in legs:
            groups.setdefault(o.request.oco_group or o.client_order_id, []).append(o)
        ids = tuple(o.client_order_id for o in legs)
        desired = self.portfolio.position_qty(symbol) - self._reserved(symbol, ids)  # type: ignore[attr-defined]
        if desired <= 0:
            if legs:
                self._cancel_exits(symbol, trade)
            return
        if not self._stop_known(symbol, trade, desired):
            return
        covered, lone = 0, False
        for name, group in groups.items():
            if len(group) == 2:
                covered += self._pair_left(group[0], group[1], True)
            elif group[0].request.role is _STOP_ROLE and name not in self.orders:  # type: ignore[attr-defined]
                covered += group[0].remaining  # a stop placed alone (risk refused its target)
            elif self._lone_left(group[0], True) > 0:
                lone = True  # its other leg is gone (an ocaType 1 group cancelled it) or refused
            # else: the other leg sold the group's shares; IB's cancel of this one is on its way
        if lone or covered > desired:
            # Cancel every pair (confirmed, the stops last) and place one for what is held.
            trade.pending_exit = "protect"
            self._cancel_and_wait(symbol, trade, "")  # type: ignore[attr-defined]
        elif covered < desired:
            self._place_pair(symbol, trade, desired - covered)

    def _stop_known(self, symbol: str, trade: "OpenTrade", qty: int) -> bool:
        if trade.stop > 0:
            return True
        # An adopted entry: its protective stop was lost with the journal.
        self._alert(f"unprotected:{symbol}", "critical",  # type: ignore[attr-defined]
                    f"{symbol}: {qty} shares from an adopted entry with no known stop: manage or flatten")
        return False

    def _place_pair(self, symbol: str, trade: "OpenTrade", qty: int) -> None:
        stop, target = self._pair_requests(symbol, trade, qty)
        ok_stop, ok_target = self._approve(stop), self._approve(target)  # type: ignore[attr-defined]
        if not ok_stop:
            self._unprotected(symbol, f"stop for {symbol} refused by risk ({self.risk.denials.most_common(1)})")  # type: ignore[attr-defined]
            return
        if not ok_target:  # the stop alone still protects
            if self._send(stop):  # type: ignore[attr-defined]
                trade.stop_id = stop.client_order_id
            return
        if self._send_pair(stop, target):
            trade.stop_id, trade.target_id = stop.client_order_id, target.client_order_id

    def _replace_pair(self, symbol: str, trade: "OpenTrade", qty: int) -> None:
        stop, target = self._pair_requests(symbol, trade, qty)
        if not (self._approve(stop) and self._approve(target)):  # type: ignore[attr-defined]
            self._alert(f"exits_not_resized:{symbol}", "critical",  # type: ignore[attr-defined]
                        f"resize of {symbol}'s exits to {qty} refused by risk: the old pair keeps working")
            return
        old = (trade.stop_id, trade.target_id)
        if not self._fits(stop, old):
            return
        trade.replacing = old
        trade.stop_id, trade.target_id = stop.client_order_id, target.client_order_id
        self._dispatch_pair(stop, target, lambda: self.execution.replace_exits(old[0], old[1], stop, target))  # type: ignore[attr-defined]

    def _pair_requests(self, symbol: str, trade: "OpenTrade", qty: int) -> tuple[OrderRequest, OrderRequest]:
        now = self.clock.now_ns()  # type: ignore[attr-defined]
        stop_id = self.next_id(trade.strategy, symbol)  # type: ignore[attr-defined]
        target_id = self.next_id(trade.strategy, symbol)  # type: ignore[attr-defined]
        stop = OrderRequest(stop_id, trade.strategy, symbol, _SELL, qty, _STOP, _STOP_ROLE, now,
                            stop_price=trade.stop, oco_group=target_id)
        target = OrderRequest(target_id, trade.strategy, symbol, _SELL, qty, _LIMIT, _TARGET_ROLE, now,
                              limit_price=trade.target, oco_group=target_id)
        return stop, target

    def _send_pair(self, stop: OrderRequest, target: OrderRequest) -> bool:
        if not self._fits(stop, ()):
            return False
        self._dispatch_pair(stop, target, lambda: self.execution.submit_oco(stop, target))  # type: ignore[attr-defined]
        return True

    def _dispatch_pair(self, stop: OrderRequest, target: OrderRequest, send: Callable[[], None]) -> None:
        """Journal both legs, then send them (recovered, not re-sent, while resuming)."""
        self._register(stop)  # type: ignore[attr-defined]
        self._register(target)  # type: ignore[attr-defined]
        if self.journal.resuming:  # type: ignore[attr-defined]
            self.execution.recover(stop)  # type: ignore[attr-defined]
            self.execution.recover(target)  # type: ignore[attr-defined]
        else:
            send()

    def _cancel_exits(self, symbol: str, trade: "OpenTrade") -> None:
        """Cancel every pair of `symbol` (nothing left for them to protect, or an emulated pair
        about to be re-placed)."""
        ids = [trade.target_id, trade.stop_id] + [o.client_order_id for o in self._exit_legs(symbol)]
        trade.stop_id = trade.target_id = ""  # first: the paper broker confirms inside cancel()
        orders = self.orders  # type: ignore[attr-defined]
        for cid in dict.fromkeys(ids):
            if cid and orders[cid].is_open:
                self._cancel_asked.add(cid)  # type: ignore[attr-defined]
                self.execution.cancel(cid)  # type: ignore[attr-defined]

    def _unprotected(self, symbol: str, why: str) -> None:
        """The policy for a refused protective order: CRITICAL alert, then flatten."""
        self._alert(f"unprotected:{symbol}", "critical", f"{why}: position unprotected, flattening")  # type: ignore[attr-defined]
        self.flatten(symbol, _MANUAL)  # type: ignore[attr-defined]

    def _pair_acknowledged(self, order: Order) -> None:
        """The broker took a native pair's leg (placed, or resized in place): a fill that arrived
        meanwhile may want it resized (a native pair is resized only once acknowledged)."""
        symbol = order.request.symbol
        trade = self.trades.get(symbol)  # type: ignore[attr-defined]
        if trade is not None and order.client_order_id in (trade.stop_id, trade.target_id):
            if order.request.role is _STOP_ROLE:
                trade.resize_refusals = 0
            if self.portfolio.position_qty(symbol) > 0:  # type: ignore[attr-defined]
                self._ensure_exits(symbol, trade)

    def _pair_refused(self, order: Order) -> None:
        """A stop or target the broker refused (REJECTED)."""
        req = order.request
        symbol = req.symbol
        trade = self.trades.get(symbol)  # type: ignore[attr-defined]
        if trade is None or self.portfolio.position_qty(symbol) <= 0:  # type: ignore[attr-defined]
            return
        cid = req.client_order_id
        if cid in trade.refused:  # the other leg of a refused resize: its verdict is in too
            self._after_refused_resize(symbol, trade)
            return
        if trade.replacing != _NO_PAIR and cid in (trade.stop_id, trade.target_id):
            old = trade.replacing
            if all(c and self.orders[c].is_open for c in old):  # type: ignore[attr-defined]
                # A refused resize: the old pair keeps working (it may cover fewer shares).
                trade.refused = (trade.stop_id, trade.target_id)
                trade.stop_id, trade.target_id = old
                trade.replacing = _NO_PAIR
                trade.resize_refusals += 1
                again = trade.resize_refusals <= MAX_RESIZE_RETRIES
                self._alert(f"exits_not_resized:{symbol}", "critical",  # type: ignore[attr-defined]
                            f"the broker refused resizing {symbol}'s exits ({cid}): the old pair keeps "
                            f"working{'; resizing it again to the shares held' if again else ''}")
                self._after_refused_resize(symbol, trade)
                return
        if cid == trade.stop_id or cid == trade.target_id or cid not in self._cancel_asked:  # type: ignore[attr-defined]
            # The current pair, or an earlier one still meant to protect (IB: one pair per entry
            # fill; a pair lost in a disconnect is refused at the reconnect, after later ones).
            self._unprotected(symbol, f"{req.role.value} {cid} for {symbol} refused by the broker")

    def _refusal_pending(self, trade: "OpenTrade") -> bool:
        """A refused resize whose other leg's verdict has not come yet (it still counts as
        holding shares until it does)."""
        return trade.refused != _NO_PAIR and any(
            c and self.orders[c].is_open for c in trade.refused)  # type: ignore[attr-defined]

    def _after_refused_resize(self, symbol: str, trade: "OpenTrade") -> None:
        """Both legs of a refused resize are in: cover what is held now (resize again) unless the
        broker refused too often; then the shares the old pair leaves bare are flattened."""
        if self._refusal_pending(trade):
            return
        trade.refused = _NO_PAIR
        if trade.resize_refusals <= MAX_RESIZE_RETRIES:
            self._ensure_exits(symbol, trade)
            return
        orders = self.orders  # type: ignore[attr-defined]
        stop_o, target_o = orders.get(trade.stop_id), orders.get(trade.target_id)
        pair = (trade.stop_id, trade.target_id)
        desired = self.portfolio.position_qty(symbol) - self._reserved(symbol, pair)  # type: ignore[attr-defined]
        native = self.execution.native_oco(symbol)  # type: ignore[attr-defined]
        covered = self._pair_left(stop_o, target_o, native) if (
            stop_o is not None and target_o is not None and stop_o.is_open and target_o.is_open) else 0
        if covered >= desired:
            self._ensure_exits(symbol, trade)
            return
        self._unprotected(symbol, f"the broker refused resizing {symbol}'s exits {trade.resize_refusals} "
                                  f"times: {desired - covered} of the shares held have no stop")

    def _resize_overtaken(self, symbol: str, trade: "OpenTrade", old: tuple[str, str]) -> None:
        """The old pair of a pending resize filled before the broker took the resize: the broker
        will refuse the new pair (Alpaca rejects a replace of a filled order), so the shares still
        held have no working stop from now on. Say so now and flatten them (the policy for a
        refused stop); the flatten waits for the doomed pair's verdict."""
        new = self.orders.get(trade.stop_id) if trade.stop_id else None  # type: ignore[attr-defined]
        filled = any(c and self.orders[c].filled_qty > 0 for c in old)  # type: ignore[attr-defined]
        if new is None or new.status is not OrderStatus.SUBMITTED or not filled:
            return
        if self.portfolio.position_qty(symbol) > 0:  # type: ignore[attr-defined]
            self._unprotected(symbol, f"{symbol}'s exits ({', '.join(c for c in old if c)}) filled while "
                                      "their resize was pending: the broker will refuse the resize")


def is_pair_leg(req: OrderRequest) -> bool:
    """A protective pair's leg (a stop-role MARKET sell is a flatten: an entry sold through its stop)."""
    return req.side is _SELL and (req.role is _STOP_ROLE or req.role is _TARGET_ROLE) \
        and req.order_type is not _MARKET
