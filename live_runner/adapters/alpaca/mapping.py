"""Translation between the runner's types and alpaca-py's: order requests, order snapshots,
statuses, and what an SDK exception says about an order's fate.

Nothing outside `live_runner/adapters/` sees an alpaca-py type; this module is where they are
turned into plain values.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime, timezone
from decimal import Decimal, InvalidOperation
from enum import Enum
from typing import Any

import requests
import urllib3
from alpaca.common.exceptions import APIError
from alpaca.trading.enums import OrderClass, OrderSide, TimeInForce
from alpaca.trading.requests import (
    LimitOrderRequest, MarketOrderRequest, ReplaceOrderRequest, StopLossRequest, StopOrderRequest,
    TakeProfitRequest,
)

from live_runner.core.models import OrderRequest, OrderStatus, OrderType, Side

# Session phases as live_runner.core.calendar.SessionTimes.phase names them.
REGULAR = "regular"
EXTENDED = frozenset({"premarket", "afterhours"})

# Alpaca's order statuses -> ours. None: no change worth reporting (the order is still working or
# a request on it is pending); fills are reported from quantities, never from a status.
_STATUS: dict[str, OrderStatus | None] = {
    "new": OrderStatus.ACCEPTED,
    "accepted": OrderStatus.ACCEPTED,
    "pending_new": OrderStatus.ACCEPTED,
    "accepted_for_bidding": OrderStatus.ACCEPTED,
    "held": OrderStatus.ACCEPTED,
    "calculated": OrderStatus.ACCEPTED,
    "stopped": OrderStatus.ACCEPTED,
    "suspended": OrderStatus.ACCEPTED,
    "pending_review": OrderStatus.ACCEPTED,
    "partially_filled": OrderStatus.PARTIALLY_FILLED,
    "filled": OrderStatus.FILLED,
    "done_for_day": None,
    "pending_cancel": None,
    "pending_replace": None,
    "replaced": None,
    "canceled": OrderStatus.CANCELED,
    "expired": OrderStatus.EXPIRED,
    "rejected": OrderStatus.REJECTED,
}


class NotAllowed(ValueError):
    """An order Alpaca must not receive as asked (refused locally, never sent)."""


def to_alpaca(req: OrderRequest, phase: str) -> MarketOrderRequest | LimitOrderRequest | StopOrderRequest:
    """The SDK request for `req` placed during session `phase`.

    Outside regular hours only DAY LIMIT orders with `extended_hours=true` (what Alpaca executes
    there); a market order would be queued for the open, a stop would not trigger: both refused.
    """
    if req.qty < 1:
        raise NotAllowed(f"quantity {req.qty} is not a positive whole number of shares")
    extended = phase in EXTENDED
    if phase != REGULAR and not extended:
        raise NotAllowed("market closed: no session at this time")
    if extended and req.order_type is not OrderType.LIMIT:
        raise NotAllowed(f"extended hours ({phase}): only DAY LIMIT orders, not {req.order_type.value}")
    common: dict[str, Any] = {
        "symbol": req.symbol, "qty": req.qty, "client_order_id": req.client_order_id,
        "side": OrderSide.BUY if req.side is Side.BUY else OrderSide.SELL,
        "time_in_force": TimeInForce.DAY,
    }
    if req.order_type is OrderType.MARKET:
        return MarketOrderRequest(**common)
    if req.order_type is OrderType.LIMIT:
        if req.limit_price <= 0:
            raise NotAllowed("limit order without a limit price")
        if extended:
            common["extended_hours"] = True
        return LimitOrderRequest(limit_price=req.limit_price, **common)
    if req.stop_price <= 0:
        raise NotAllowed("stop order without a stop price")
    return StopOrderRequest(stop_price=req.stop_price, **common)


def to_alpaca_oco(stop: OrderRequest, target: OrderRequest, phase: str) -> LimitOrderRequest:
    """One OCO exit for a position (`order_class: oco`: the parent is the target's sell limit, the
    stop its leg), under the target's client id. Stops do not trigger outside regular hours."""
    if phase != REGULAR:
        raise NotAllowed(f"an OCO exit needs regular hours (now {phase}): the stop would not trigger")
    if target.qty < 1 or stop.qty != target.qty:
        raise NotAllowed(f"OCO legs must share one positive quantity ({stop.qty} vs {target.qty})")
    if target.limit_price <= 0 or stop.stop_price <= 0:
        raise NotAllowed("OCO exit without a target limit or a stop price")
    return LimitOrderRequest(
        symbol=target.symbol, qty=target.qty, side=OrderSide.SELL, time_in_force=TimeInForce.DAY,
        client_order_id=target.client_order_id, order_class=OrderClass.OCO,
        limit_price=target.limit_price, take_profit=TakeProfitRequest(limit_price=target.limit_price),
        stop_loss=StopLossRequest(stop_price=stop.stop_price))


def to_alpaca_replace(stop: OrderRequest, target: OrderRequest) -> ReplaceOrderRequest:
    """The PATCH that resizes (and re-prices) an OCO exit in place, under the new target's id."""
    if target.qty < 1 or stop.qty != target.qty:
        raise NotAllowed(f"OCO legs must share one positive quantity ({stop.qty} vs {target.qty})")
    return ReplaceOrderRequest(qty=target.qty, limit_price=target.limit_price or None,
                               stop_price=stop.stop_price or None,
                               client_order_id=target.client_order_id)


@dataclass(frozen=True, slots=True)
class Snapshot:
    """What one view of an order at Alpaca (REST or a trade update) says, in plain values."""

    broker_id: str
    client_order_id: str
    symbol: str
    side: Side | None
    status: str                 # Alpaca's status string
    qty: int
    filled_qty: int
    filled_avg_price: Decimal   # 0 when nothing filled
    ts: int                     # UTC ns of the latest change the broker reports
    reason: str = ""
    legs: tuple["Snapshot", ...] = ()   # an OCO parent's stop leg
    replaced_by: str = ""               # the new order's id once a replace is done

    @property
    def mapped(self) -> OrderStatus | None:
        return map_status(self.status)


def map_status(status: str) -> OrderStatus | None:
    return _STATUS.get(status)


def _enum_value(v: Any) -> str:
    return str(getattr(v, "value", v) or "")


def _dec(v: Any) -> Decimal:
    if v in (None, ""):
        return Decimal(0)
    try:
        return Decimal(str(v))
    except InvalidOperation:
        raise ValueError(f"not a number: {v!r}") from None


def shares(v: Any) -> int:
    """A share quantity from Alpaca's decimal strings; fractional shares are not traded here."""
    d = _dec(v)
    if d != d.to_integral_value():
        raise ValueError(f"fractional quantity {v!r}")
    return int(d)


def ts_ns(dt: datetime | None) -> int:
    if dt is None:
        return 0
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=timezone.utc)
    return int(dt.timestamp()) * 1_000_000_000 + dt.microsecond * 1_000


def snapshot(order: Any) -> Snapshot:
    """A Snapshot from an alpaca-py `Order` model."""
    side = _enum_value(order.side)
    latest = max(ts_ns(order.updated_at), ts_ns(order.filled_at), ts_ns(order.canceled_at),
                 ts_ns(order.expired_at), ts_ns(order.failed_at), ts_ns(order.submitted_at))
    return Snapshot(
        broker_id=str(order.id), client_order_id=order.client_order_id, symbol=order.symbol or "",
        side=Side(side) if side in ("buy", "sell") else None, status=_enum_value(order.status),
        qty=shares(order.qty), filled_qty=shares(order.filled_qty),
        filled_avg_price=_dec(order.filled_avg_price), ts=latest,
        legs=tuple(snapshot(leg) for leg in (getattr(order, "legs", None) or ())),
        replaced_by=str(order.replaced_by or ""))


# --- what an exception says about an order ------------------------------------------------------
class Outcome(Enum):
    NOT_SENT = "not_sent"          # the request never left (connection refused / connect timeout)
    REFUSED = "refused"            # the broker answered and provably did not take it (401)
    REJECTED = "rejected"          # a definite business rejection (403, 422, 400 ...)
    DUPLICATE = "duplicate"        # 422 "client_order_id must be unique": the order exists
    RATE_LIMITED = "rate_limited"  # 429: not processed; look up, then send again later
    NOT_FOUND = "not_found"        # 404 (lookups)
    AMBIGUOUS = "ambiguous"        # timeout, 5xx, a dropped connection, an unreadable answer


def error_text(exc: BaseException) -> str:
    """A short human reason: Alpaca's JSON `message` when there is one."""
    if isinstance(exc, APIError):
        status = exc.status_code
        raw = str(exc)
        try:
            body = json.loads(raw)
            msg = body.get("message") if isinstance(body, dict) else None
            code = body.get("code") if isinstance(body, dict) else None
        except ValueError:
            msg, code = None, None
        text = msg or " ".join(raw.split())[:160] or "no body"
        return f"HTTP {status}" + (f" ({code})" if code else "") + f": {text}"
    return f"{type(exc).__name__}: {' '.join(str(exc).split())[:200]}"


def _never_sent(exc: BaseException) -> bool:
    """True only when no byte of the request can have reached the server."""
    if isinstance(exc, requests.exceptions.ConnectTimeout):
        return True
    if isinstance(exc, requests.exceptions.ConnectionError) and not isinstance(
            exc, requests.exceptions.ReadTimeout):
        reason = exc.args[0] if exc.args else None
        reason = getattr(reason, "reason", reason)
        return isinstance(reason, (urllib3.exceptions.NewConnectionError,
                                   urllib3.exceptions.ConnectTimeoutError))
    return False


def classify(exc: BaseException) -> Outcome:
    if _never_sent(exc):
        return Outcome.NOT_SENT
    if isinstance(exc, APIError):
        status = exc.status_code or 0
        text = str(exc).lower()
        if status == 422 and "client_order_id must be unique" in text:
            return Outcome.DUPLICATE
        if status == 429:
            return Outcome.RATE_LIMITED
        if status == 404:
            return Outcome.NOT_FOUND
        if status == 401:
            return Outcome.REFUSED
        if status == 408 or status >= 500:
            return Outcome.AMBIGUOUS
        if 400 <= status < 500:
            return Outcome.REJECTED
    return Outcome.AMBIGUOUS


def parse_trade_update(msg: Any) -> tuple[str, Snapshot, dict[str, Any]]:
    """(event, snapshot, extras) from a raw `trade_updates` message; ValueError when malformed.

    Parsed with the SDK's own strict model (`TradeUpdate`), so what the SDK would refuse is refused
    here too, but as a counted error instead of a log line."""
    from alpaca.trading.models import TradeUpdate

    if not isinstance(msg, dict) or not isinstance(msg.get("data"), dict):
        raise ValueError("trade update without a data object")
    try:
        update = TradeUpdate(**msg["data"])
    except Exception as exc:  # pydantic.ValidationError and friends
        raise ValueError(" ".join(str(exc).split())[:300]) from None
    snap = snapshot(update.order)
    extras = {
        "execution_id": str(update.execution_id) if update.execution_id else "",
        "qty": update.qty, "price": update.price, "ts": ts_ns(update.timestamp),
    }
    return _enum_value(update.event), snap, extras
