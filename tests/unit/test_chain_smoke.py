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


def test_refused_exit_keeps_the_protective_pair() -> None:
    """An exit the risk manager refuses (here: HALTED refuses a vwap_loss sell) must not cancel
    the stop and target first: the position stays protected."""
    from live_runner.config import parse_config
    from live_runner.journal import Journal
    from live_runner.models import OrderRole, OrderType, TradingState
    from live_runner.node import TradingNode

    bars = gapper().sorted_bars()[:-1]  # up to the 09:32 fill bar: stop and target are working
    node = TradingNode(parse_config({"active_strategies": ["gap_and_go"]}), Journal("sqlite://"))
    node.start()
    node.feed(bars)
    working = {o.request.order_type for o in node.orders.open_orders.values()}
    assert working == {OrderType.STOP, OrderType.LIMIT}
    node.risk.set_state(TradingState.HALTED, "test")
    assert node.orders.flatten("GAPR", OrderRole.VWAP_LOSS) is None
    assert {o.request.order_type for o in node.orders.open_orders.values()} == working
    assert node.risk.denials["HALTED"] == 1
