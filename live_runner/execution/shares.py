"""Share accounting for exits: what working sells already hold, so that no sell is ever sent that
could take the account short (DESIGN.md: sells never exceed the shares held, at every broker).

A native pair (Alpaca OCO, IB OCA group) holds its shares once, and its legs share them; an
emulated pair (the paper broker) has two independent orders, each holding its own."""

from __future__ import annotations

from live_runner.core.models import Order, OrderRequest, Side

_SELL = Side.SELL


class SharesMixin:
    """Part of the OrderManager (state lives there: open_orders, portfolio, execution, _alert)."""

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
                total += self._lone_left(legs[0], native)
        return total

    def _lone_left(self, leg: Order, native: bool) -> int:
        """Shares a pair's leg still holds when its other leg is done: at a native broker the
        other leg's fills count too (a target filled in full leaves its stop nothing to sell, though
        the broker's cancel of it may not be reported yet)."""
        left = leg.request.qty - leg.filled_qty
        if native and left > 0:
            group = leg.request.oco_group
            other = self.orders.get(group) if group != leg.client_order_id else None
            if other is None or other.request.oco_group != group:
                other = next((o for o in self.orders.values() if o is not leg
                              and o.request.oco_group == group and o.request.symbol == leg.request.symbol), None)
            if other is not None:
                left -= other.filled_qty
        return max(left, 0)

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
