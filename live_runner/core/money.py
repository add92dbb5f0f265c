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


_TICK_CENT = Decimal("0.01")
_TICK_SUB = Decimal("0.0001")


def round_to_tick_dec(price: Decimal) -> Decimal:
    """The nearest valid tick, half up, on the exact decimal (4.795 -> 4.80, 8.175 -> 8.18)."""
    return price.quantize(_TICK_CENT if price >= 1 else _TICK_SUB, rounding=ROUND_HALF_UP)


def round_to_tick(price: float) -> float:
    """`round_to_tick_dec` of the decimal a float price stands for (its shortest repr): binary
    `round(4.795, 2)` would give 4.79, since 4.795 is stored as 4.79499999... Integers in 1e-8
    dollars when the price has at most eight decimals (the signal path), else Decimal."""
    n = round(price * 1e8)
    if n / 1e8 != price or n >= 1 << 53:  # more than eight decimals (or huge): the slow way
        return float(round_to_tick_dec(Decimal(repr(price))))
    tick = 1_000_000 if n >= 100_000_000 else 10_000
    return (n + tick // 2) // tick * tick / 1e8


def target_price(avg_entry: Decimal, stop: float, target_r: float) -> float:
    """`fill + target_r * (fill - stop)` in exact decimals, rounded to a valid tick (half up)."""
    return float(round_to_tick_dec(avg_entry + Decimal(repr(target_r)) * (avg_entry - Decimal(repr(stop)))))


_FOUR = Decimal("0.0001")


def price_4(value: Decimal) -> float:
    """An average price for reports: four decimals, half up on the exact decimal."""
    return float(value.quantize(_FOUR, rounding=ROUND_HALF_UP))


def commission(qty: int, per_share: Decimal, minimum: Decimal) -> Decimal:
    """Per-share commission with a per-order minimum, rounded to the cent."""
    if qty <= 0:
        return ZERO
    return max(per_share * qty, minimum).quantize(CENT, rounding=ROUND_HALF_UP)


def money_str(value: Decimal) -> str:
    """Stable text form for journals and JSON (always two or more decimals)."""
    q = value.quantize(CENT, rounding=ROUND_HALF_UP) if value == value.quantize(CENT) else value
    return format(q, "f")
