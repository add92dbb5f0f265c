"""Exact decisions on prices that travel as floats.

A price in a bar is a decimal number (16.90, 4.7913) carried in a binary float, whose arithmetic is
not exact: `16.90 / 16.25 - 1.0` is 0.0399999999999998 and `0.9 * 12.90` is 11.610000000000001.
Every decision of the strategies and of the premarket scan is therefore taken on integers:

- a price is a whole number of 1e-8 dollars (`units`): `round(x * 1e8)` recovers the decimal the
  float stands for exactly for any price below $1,000,000 with at most eight decimals (the float
  product is off by far less than half a unit there); finer digits (split-adjusted history) are
  rounded to 1e-8, which is then the decimal the decisions see;
- a volume is a whole number of 1e-4 shares (`volume_units`): exact for whole shares below 9e11
  and for fractional volumes with up to four decimals;
- a config ratio (0.04, 0.9, 1.5) is the exact fraction of its decimal text (`ratio`).

Comparisons then never round: `L * den >= num * P` instead of `L / P - 1 >= g`.
"""

from __future__ import annotations

from fractions import Fraction

PRICE_SCALE = 100_000_000
PRICE_SCALE_F = 1e8
VOLUME_SCALE = 10_000
VOLUME_SCALE_F = 1e4
# Beyond these a decision is "no" (their units would not fit the scan's int64 step).
MAX_PRICE = 9e10
MAX_VOLUME = 9e14


def units(price: float) -> int:
    """A price in whole 1e-8 dollars (16.9 -> 1_690_000_000)."""
    return round(price * PRICE_SCALE_F)


def volume_units(volume: float) -> int:
    """A volume in whole 1e-4 shares."""
    return round(volume * VOLUME_SCALE_F)


def ratio(value: float) -> tuple[int, int]:
    """The exact fraction (numerator, denominator > 0) of a config number's decimal text."""
    return Fraction(repr(value)).as_integer_ratio()


def gap_at_least(pm_last_u: int, prev_close_u: int, gap: tuple[int, int]) -> bool:
    """`pm_last / prev_close - 1 >= gap`, exactly (prev_close_u > 0)."""
    n, d = gap
    return pm_last_u * d >= (d + n) * prev_close_u


def at_least_ratio(value_u: int, reference_u: int, r: tuple[int, int]) -> bool:
    """`value >= r * reference`, exactly."""
    n, d = r
    return value_u * d >= n * reference_u


__all__ = ["PRICE_SCALE", "VOLUME_SCALE", "units", "volume_units", "ratio", "gap_at_least",
           "at_least_ratio"]
