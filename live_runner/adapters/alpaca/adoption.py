"""Orders at Alpaca under the runner's client-id prefix, for adoption after a crash.

A live restart recovers the orders its journal holds; an order sent in the instant before a crash
may be at Alpaca with no journal event. At start the client lists the recent orders (today's and
the open ones) and keeps those carrying our prefix; the node adopts the ones nobody recovered.
Role by shape, as for IB: a buy is an entry, a sell stop the protective stop, a sell limit the
target, a sell at market a flatten. An OCO exit (listed nested: its stop under `legs`) is the
target under its own id and the stop named `<target id>-stop` with `oco_group` = the target id,
which is how `recover` finds the leg (through its parent).
"""

from __future__ import annotations

from typing import Any

from alpaca.trading.enums import QueryOrderStatus
from alpaca.trading.requests import GetOrdersRequest

from live_runner.adapters.alpaca.mapping import shares
from live_runner.core.models import OrderRequest, OrderRole, OrderType, Side

_TYPES = {"limit": OrderType.LIMIT, "stop": OrderType.STOP, "market": OrderType.MARKET}


def orders_query(after_ns: int) -> GetOrdersRequest:
    """Every order (open or not) submitted since `after_ns`, newest first, as many as allowed."""
    from datetime import datetime, timezone

    return GetOrdersRequest(status=QueryOrderStatus.ALL, limit=500, nested=True,
                            after=datetime.fromtimestamp(after_ns / 1e9, timezone.utc))


def ours(orders: list[Any], prefix: str, now_ns: int) -> list[OrderRequest]:
    """The listed orders with our prefix, as the requests that would have made them."""
    out = []
    for o in orders:
        cid = getattr(o, "client_order_id", "") or ""
        if not cid.startswith(prefix + "-"):
            continue
        side = Side.BUY if _value(o.side) == "buy" else Side.SELL
        kind = _TYPES.get(_value(getattr(o, "order_type", None) or getattr(o, "type", None)), OrderType.MARKET)
        role = OrderRole.ENTRY if side is Side.BUY else {
            OrderType.STOP: OrderRole.STOP, OrderType.LIMIT: OrderRole.TARGET}.get(kind, OrderRole.MANUAL)
        legs = list(getattr(o, "legs", None) or [])
        oco = cid if legs and role is OrderRole.TARGET else ""
        out.append(OrderRequest(
            client_order_id=cid, strategy="", symbol=o.symbol or "", side=side, qty=shares(o.qty),
            order_type=kind, role=role, ts=now_ns,
            limit_price=float(o.limit_price or 0.0) if kind is OrderType.LIMIT else 0.0,
            stop_price=float(o.stop_price or 0.0) if kind is OrderType.STOP else 0.0,
            oco_group=oco))
        if oco:
            leg = legs[0]
            out.append(OrderRequest(
                client_order_id=f"{cid}-stop", strategy="", symbol=o.symbol or "", side=Side.SELL,
                qty=shares(leg.qty), order_type=OrderType.STOP, role=OrderRole.STOP, ts=now_ns,
                stop_price=float(leg.stop_price or 0.0), oco_group=oco))
    return sorted(out, key=lambda r: r.client_order_id)


def _value(x: Any) -> str:
    return str(getattr(x, "value", x) or "")


__all__ = ["orders_query", "ours"]
