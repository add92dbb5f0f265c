"""Orders at Alpaca under the runner's client-id prefix, for adoption after a crash.

A live restart recovers the orders its journal holds; an order sent in the instant before a crash
may be at Alpaca with no journal event. At start the client lists the recent orders and keeps those
carrying our prefix; the node adopts the ones nobody recovered. Two listings, both paged:
- every OPEN order, however old (a GTC order, or a day order of ours still working);
- every order submitted since `since_ns`: the earlier of 24 h before now and the start of the
  previous session, on the WALL clock (the market clock may read 0 or a replayed time before the
  first bar). Closed orders count too: a fill the journal lost explains a position.
GET /v2/orders answers at most 500 orders (newest first), so one request on a busy day can miss an
open order of ours. A full page is followed by the next one, `until` = the oldest `submitted_at`
of the page plus 1 us (`until` is exclusive and several orders can share a submission instant, so
the page's oldest instant is asked again; ids deduplicate). No progress, or more than `MAX_PAGES`
pages, is a `ListingError`: the caller faults rather than adopt from a partial listing.
Role by shape, as for IB: a buy is an entry, a sell stop the protective stop, a sell limit the
target, a sell at market a flatten. An OCO exit (listed nested: its stop under `legs`) is the
target under its own id and the stop named `<target id>-stop` with `oco_group` = the target id,
which is how `recover` finds the leg (through its parent).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta
from typing import Any

from alpaca.common.enums import Sort
from alpaca.trading.enums import QueryOrderStatus
from alpaca.trading.requests import GetOrdersRequest

from live_runner.adapters.alpaca.mapping import shares
from live_runner.core.clock import from_datetime, to_utc
from live_runner.core.models import OrderRequest, OrderRole, OrderType, Side

_TYPES = {"limit": OrderType.LIMIT, "stop": OrderType.STOP, "market": OrderType.MARKET}

LIMIT = 500            # Alpaca's most per request
MAX_PAGES = 40         # 20,000 orders: beyond that something is wrong; fault, never guess
DAY_NS = 86_400 * 1_000_000_000
FALLBACK_NS = 5 * DAY_NS   # no calendar to place the previous session: a long weekend back
_US = timedelta(microseconds=1)

Fetch = Callable[[GetOrdersRequest], Awaitable[Any]]


class ListingError(Exception):
    """The listing could not be completed (too many pages, or paging made no progress)."""


def since_ns(wall_ns: int, calendar: Any = None) -> int:
    """Lower bound of the recent listing: the earlier of 24 h before `wall_ns` and the start
    (premarket) of the session before today's; without a usable calendar, five days back."""
    floor = wall_ns - DAY_NS
    if calendar is None:
        return wall_ns - FALLBACK_NS
    try:
        day = calendar.session_date_for_ts(wall_ns)
        prev = calendar.session(calendar.previous_session(day))
        return min(floor, int(prev.premarket_open))
    except Exception:  # noqa: BLE001 - outside the calendar's range: the wide fallback
        return wall_ns - FALLBACK_NS


def orders_query(*, open_only: bool = False, after_ns: int | None = None,
                 until: datetime | None = None, limit: int = LIMIT) -> GetOrdersRequest:
    """One page: open orders, or all orders submitted after `after_ns`; newest first, nested."""
    return GetOrdersRequest(
        status=QueryOrderStatus.OPEN if open_only else QueryOrderStatus.ALL, limit=limit,
        nested=True, direction=Sort.DESC, until=until,
        after=None if after_ns is None else to_utc(after_ns))


async def list_all(fetch: Fetch, *, open_only: bool = False, after_ns: int | None = None,
                   limit: int = LIMIT, max_pages: int = MAX_PAGES) -> list[Any]:
    """Every order the query matches, page after page (see the module docstring)."""
    seen: dict[str, Any] = {}
    until: datetime | None = None
    for _ in range(max_pages):
        rows = list(await fetch(orders_query(open_only=open_only, after_ns=after_ns, until=until,
                                             limit=limit)))
        fresh = 0
        for o in rows:
            key = str(o.id)
            if key not in seen:
                seen[key] = o
                fresh += 1
        if len(rows) < limit:
            return list(seen.values())
        stamps = [t for t in (getattr(o, "submitted_at", None) or getattr(o, "created_at", None)
                              for o in rows) if t is not None]
        if not stamps or fresh == 0:
            raise ListingError(f"paging made no progress: {len(rows)} orders submitted at one instant "
                               f"({min(stamps) if stamps else 'no times'})")
        until = min(stamps) + _US
    raise ListingError(f"more than {max_pages} pages of {limit} orders")


def merged(*listings: list[Any]) -> list[Any]:
    """The listings' orders, each once (by id)."""
    out: dict[str, Any] = {}
    for rows in listings:
        for o in rows:
            out.setdefault(str(o.id), o)
    return list(out.values())


def ours(orders: list[Any], prefix: str, now_ns: int) -> list[OrderRequest]:
    """The listed orders with our prefix, as the requests that would have made them, stamped with
    their submission time at Alpaca (`now_ns` only for a row without one), as a journaled order
    carries the time it was sent."""
    out = []
    for o in orders:
        cid = getattr(o, "client_order_id", "") or ""
        if not cid.startswith(prefix + "-"):
            continue
        sent = getattr(o, "submitted_at", None) or getattr(o, "created_at", None)
        ts = from_datetime(sent) if isinstance(sent, datetime) and sent.tzinfo is not None else now_ns
        side = Side.BUY if _value(o.side) == "buy" else Side.SELL
        kind = _TYPES.get(_value(getattr(o, "order_type", None) or getattr(o, "type", None)), OrderType.MARKET)
        role = OrderRole.ENTRY if side is Side.BUY else {
            OrderType.STOP: OrderRole.STOP, OrderType.LIMIT: OrderRole.TARGET}.get(kind, OrderRole.MANUAL)
        legs = list(getattr(o, "legs", None) or [])
        oco = cid if legs and role is OrderRole.TARGET else ""
        out.append(OrderRequest(
            client_order_id=cid, strategy="", symbol=o.symbol or "", side=side, qty=shares(o.qty),
            order_type=kind, role=role, ts=ts,
            limit_price=float(o.limit_price or 0.0) if kind is OrderType.LIMIT else 0.0,
            stop_price=float(o.stop_price or 0.0) if kind is OrderType.STOP else 0.0,
            oco_group=oco))
        if oco:
            leg = legs[0]
            out.append(OrderRequest(
                client_order_id=f"{cid}-stop", strategy="", symbol=o.symbol or "", side=Side.SELL,
                qty=shares(leg.qty), order_type=OrderType.STOP, role=OrderRole.STOP, ts=ts,
                stop_price=float(leg.stop_price or 0.0), oco_group=oco))
    return sorted(out, key=lambda r: r.client_order_id)


def _value(x: Any) -> str:
    return str(getattr(x, "value", x) or "")


__all__ = ["ListingError", "list_all", "merged", "orders_query", "ours", "since_ns"]
