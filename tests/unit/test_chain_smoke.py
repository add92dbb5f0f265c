"""A hand-built gap_and_go session through the whole chain, every number asserted."""

from decimal import Decimal

from tests.kit.sessions import gapper




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
    """An exit the risk manager refuses (here: a price-collar rule added for the test) must not
    cancel the stop and target first: the position stays protected."""
    from live_runner.core.config import parse_config
    from live_runner.persistence.journal import Journal
    from live_runner.core.models import OrderRole, OrderType, TradingState
    from live_runner.live.node import TradingNode

    bars = gapper().sorted_bars()[:-1]  # up to the 09:32 fill bar: stop and target are working
    node = TradingNode(parse_config({"active_strategies": ["gap_and_go"]}), Journal("sqlite://"))
    node.start()
    node.feed(bars)
    working = {o.request.order_type for o in node.orders.open_orders.values()}
    assert working == {OrderType.STOP, OrderType.LIMIT}
    node.risk.add_rule(lambda req, v, lim: "PRICE_COLLAR" if req.order_type is OrderType.MARKET else None)
    assert node.orders.flatten("GAPR", OrderRole.VWAP_LOSS) is None
    assert {o.request.order_type for o in node.orders.open_orders.values()} == working
    assert node.risk.denials["PRICE_COLLAR"] == 1


def test_halted_still_flattens_and_protects() -> None:
    """HALTED stops new entries only: the protective pair stays, a vwap_loss exit goes out, and
    after it the position is flat with no working sell left."""
    from live_runner.core.config import parse_config
    from live_runner.persistence.journal import Journal
    from live_runner.core.models import OrderRole, OrderType, TradingState
    from live_runner.live.node import TradingNode

    bars = gapper().sorted_bars()
    node = TradingNode(parse_config({"active_strategies": ["gap_and_go"]}), Journal("sqlite://"))
    node.start()
    node.feed(bars[:-1])
    node.risk.set_state(TradingState.HALTED, "test")
    cid = node.orders.flatten("GAPR", OrderRole.VWAP_LOSS)
    assert cid is not None
    # The paper broker confirms the cancels at once, so the market sell is working now, alone.
    assert [o.request.order_type for o in node.orders.open_orders.values()] == [OrderType.MARKET]
    node.feed(bars[-1:])
    assert node.portfolio.position_qty("GAPR") == 0
    assert not node.orders.open_orders
