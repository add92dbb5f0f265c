"""How the page writes numbers, times and states: one vocabulary, one format each.

Money: two decimals with thousands separators (exact: Decimal in, rounded half up to the cent).
Prices: two decimals at or above $1, four below (the tick). Times: America/New_York with the zone
(EST/EDT) on every value. A missing value is "-", never "None" or "nan".
The trading state is the headline: ACTIVE, REDUCING (amber), HALTED (red); a pause is one word,
PAUSED, said once beside it.
"""

from __future__ import annotations

import math
from datetime import datetime, timezone
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation
from typing import Any
from zoneinfo import ZoneInfo

ET = ZoneInfo("America/New_York")
MISSING = "-"
CENT = Decimal("0.01")
TICK = Decimal("0.0001")

# What the two money figures mean, stated once on the page (Account) and in the docs.
REALIZED_DEFINITION = ("Realized: closed trades' profit and loss, net of every commission paid this "
                       "session (entry commissions of positions still open included). Commissions: "
                       "the part of it paid in commissions, already deducted, not to subtract again. "
                       "Realized + Unrealized = Daily P&L; Equity = Cash + open positions at their last price.")


def dec(v: Any) -> Decimal | None:
    """An exact Decimal of a journal or /status figure (strings stay exact; floats by their repr)."""
    if v is None or v == "" or isinstance(v, bool):
        return None
    if isinstance(v, Decimal):
        return v
    try:
        if isinstance(v, float):
            return None if not math.isfinite(v) else Decimal(repr(v))
        return Decimal(str(v))
    except (InvalidOperation, ValueError):
        return None


def money(v: Any, signed: bool = False) -> str:
    d = dec(v)
    if d is None or not d.is_finite():
        return MISSING
    q = d.quantize(CENT, rounding=ROUND_HALF_UP)
    if q == 0:
        q = abs(q)  # never "-0.00"
    return f"{q:+,.2f}" if signed else f"{q:,.2f}"


def price(v: Any) -> str:
    d = dec(v)
    if d is None or not d.is_finite() or d == 0:
        return MISSING
    return f"{d.quantize(CENT, ROUND_HALF_UP):,.2f}" if abs(d) >= 1 else f"{d.quantize(TICK, ROUND_HALF_UP):.4f}"


def number(v: Any, digits: int = 2) -> str:
    d = dec(v)
    if d is None or not d.is_finite():
        return MISSING
    return f"{d:,.{digits}f}"


def percent(v: Any) -> str:
    d = dec(v)
    return MISSING if d is None or not d.is_finite() else f"{d * 100:.1f}%"


def text(v: Any) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return MISSING
    return str(v)


def to_dt(v: Any) -> datetime | None:
    """A UTC instant from epoch ns (int) or ISO-8601 text (the runner's format_ns)."""
    if v is None or v == "":
        return None
    try:
        if isinstance(v, (int, float)) and not isinstance(v, bool):
            return datetime.fromtimestamp(int(v) / 1e9, tz=timezone.utc) if v else None
        if isinstance(v, datetime):
            return v if v.tzinfo else v.replace(tzinfo=timezone.utc)
        s = str(v).strip()
        return datetime.fromisoformat(s[:-1] + "+00:00" if s.endswith("Z") else s)
    except (ValueError, OverflowError, OSError):
        return None


def et(v: Any, date: bool = False) -> str:
    """New York time with its zone: `09:39:00 EST` (with `date`: `2024-11-26 09:39:00 EST`)."""
    dt = to_dt(v)
    if dt is None:
        return MISSING
    local = dt.astimezone(ET)
    return local.strftime("%Y-%m-%d %H:%M:%S %Z" if date else "%H:%M:%S %Z")


def zone(day: str | None = None) -> str:
    """EST or EDT for a session date (YYYY-MM-DD), at noon."""
    try:
        d = datetime.fromisoformat(f"{day}T12:00:00") if day else datetime.now(timezone.utc)
    except ValueError:
        d = datetime.now(timezone.utc)
    return (d if d.tzinfo else d.replace(tzinfo=ET)).astimezone(ET).strftime("%Z")


# --- states ------------------------------------------------------------------------------------------
TRADING = {"active": "ACTIVE", "reducing": "REDUCING", "halted": "HALTED"}


def headline(trading_state: str | None, paused: bool) -> tuple[str, str]:
    """(level, words) for the state banner: level is success / warning / error."""
    word = TRADING.get((trading_state or "").lower(), (trading_state or "UNKNOWN").upper())
    level = {"HALTED": "error", "REDUCING": "warning"}.get(word, "success")
    if paused and word != "HALTED":
        level = "warning" if level == "success" else level
    meaning = {"ACTIVE": "new entries allowed", "REDUCING": "only orders that reduce exposure",
               "HALTED": "no new entries; exits and flattening still pass"}.get(word, "")
    if paused:
        meaning = "PAUSED by an operator: no new entries; exits still managed"
        return level, f"Trading {word} · {meaning}"
    return level, f"Trading {word}" + (f" · {meaning}" if meaning else "")


def order_price(order_type: str | None, limit: Any, stop: Any) -> str:
    """The price that matters for the order's type: a market order has none."""
    t = (order_type or "").lower()
    if t == "stop":
        return f"stop {price(stop)}"
    if t == "limit":
        return f"limit {price(limit)}"
    if t == "stop_limit":
        return f"stop {price(stop)} limit {price(limit)}"
    return "market"
