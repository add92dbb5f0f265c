"""Exact money and tick rounding.

Prices travel as floats (rounded to the tick when an order is created); every amount of money that
is accumulated (cash, P&L, commissions) is a `Decimal` built from the price's shortest repr, so a
day of fills sums exactly.
"""

from __future__ import annotations

from decimal import ROUND_HALF_UP, Decimal

CENT = Decimal("0.01")
ZERO = Decimal(0)


_last: tuple[float, Decimal] = (0.0, ZERO)


def dec(price: float) -> Decimal:
    """Decimal of a float's shortest repr (10.07 -> Decimal('10.07'), not its binary expansion).

    A fill's price is converted by the portfolio and again by the order manager: the latest
    conversion is remembered for that same float object (one atomic tuple, thread-safe)."""
    global _last
    last = _last
    if last[0] is price:
        return last[1]
    d = Decimal(repr(price))
    _last = (price, d)
    return d


def tick_size(price: float) -> float:
    """US equities (Reg NMS): $0.01 at or above $1, $0.0001 below."""
    return 0.01 if price >= 1.0 else 0.0001


def round_to_tick(price: float) -> float:
    if price >= 1.0:
        return round(price, 2)
    return round(price, 4)


def commission(qty: int, per_share: Decimal, minimum: Decimal) -> Decimal:
    """Per-share commission with a per-order minimum, rounded to the cent."""
    if qty <= 0:
        return ZERO
    return max(per_share * qty, minimum).quantize(CENT, rounding=ROUND_HALF_UP)


def money_str(value: Decimal) -> str:
    """Stable text form for journals and JSON (always two or more decimals)."""
    q = value.quantize(CENT, rounding=ROUND_HALF_UP) if value == value.quantize(CENT) else value
    return format(q, "f")
