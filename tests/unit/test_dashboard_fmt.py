"""How the dashboard writes money, prices, times, states and order prices (dashboard/fmt.py)."""

from __future__ import annotations

from decimal import Decimal

from dashboard import fmt


def test_money_is_exact_with_two_decimals_and_separators() -> None:
    assert fmt.money("99991.235") == "99,991.24"  # half up, from the exact text
    assert fmt.money(Decimal("-19682.394")) == "-19,682.39"
    assert fmt.money(353.83, signed=True) == "+353.83" and fmt.money("-0.001", signed=True) == "+0.00"
    assert fmt.money(None) == fmt.money("") == fmt.money(float("nan")) == "-"


def test_prices_times_and_missing_values() -> None:
    assert fmt.price(329.21) == "329.21" and fmt.price(0.12345) == "0.1235" and fmt.price(0) == "-"
    assert fmt.et("2024-11-26T14:40:00Z") == "09:40:00 EST"
    assert fmt.et(1_720_000_000_000_000_000, date=True) == "2024-07-03 05:46:40 EDT"
    assert fmt.et(None) == fmt.text(None) == "-"


def test_one_vocabulary_of_states() -> None:
    assert fmt.headline("active", False) == ("success", "Trading ACTIVE · new entries allowed")
    assert fmt.headline("reducing", False)[0] == "warning"
    level, words = fmt.headline("halted", True)
    assert level == "error" and words.count("PAUSED") == 1 and words.startswith("Trading HALTED")
    level, words = fmt.headline("active", True)
    assert level == "warning" and words.startswith("Trading ACTIVE · PAUSED")


def test_each_order_shows_the_price_of_its_type() -> None:
    assert fmt.order_price("stop", 0.0, 7.81) == "stop 7.81"
    assert fmt.order_price("limit", 8.17, 0.0) == "limit 8.17"
    assert fmt.order_price("market", None, None) == "market"
