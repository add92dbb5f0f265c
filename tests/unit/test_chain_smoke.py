"""A hand-built gap_and_go session through the whole chain, every number asserted."""

from decimal import Decimal

from tests.kit.sessions import SessionBuilder


def gapper() -> SessionBuilder:
    s = SessionBuilder()
    s.prev_close("GAPR", 10.00)
    s.bar("GAPR", "08:00", 10.5, 10.8, 10.4, 10.7, 30_000)
    s.bar("GAPR", "09:00", 10.7, 11.0, 10.6, 10.9, 30_000)
    s.bar("GAPR", "09:30", 10.9, 11.0, 10.8, 10.95, 50_000)
    s.bar("GAPR", "09:31", 10.95, 11.3, 10.9, 11.2, 60_000)   # close > pm_high 11.0: signal
    s.bar("GAPR", "09:32", 11.25, 11.4, 11.1, 11.35, 40_000)  # entry fills at the open 11.25
    s.bar("GAPR", "09:33", 11.4, 12.0, 11.35, 11.9, 40_000)   # target 11.95 reached
    return s


def test_gap_and_go_target_round_trip() -> None:
    node, summary = gapper().run(active_strategies=["gap_and_go"])
    assert summary["signals"] == 1
    [trade] = summary["trades"]
    assert trade["symbol"] == "GAPR" and trade["strategy"] == "gap_and_go"
    assert trade["qty"] == 1785  # min(floor(1000 / 0.30), floor(20000 / 11.2))
    assert trade["entry_price"] == 11.25
    assert trade["entry_time"] == "2024-03-15T13:32:00Z"
    assert trade["exit_price"] == 11.95  # 11.25 + 2 * (11.25 - 10.90)
    assert trade["exit_reason"] == "target"
    assert trade["commission"] == "12.50"
    assert Decimal(trade["pnl"]) == Decimal("0.70") * 1785 - Decimal("12.50")
    assert summary["final_positions"] == {}
