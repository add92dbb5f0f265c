"""PaperExecutionClient on its own: DESIGN.md's fill model, bar by bar."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest

from live_runner.adapters.paper import PaperExecutionClient
from live_runner.core.config import PaperConfig
from live_runner.core.models import (
    NANOS_PER_MINUTE, Bar, Fill, OrderEvent, OrderRequest, OrderRole, OrderStatus, OrderType, Side,
)
from tests.kit.sessions import et_ns

DAY = "2024-03-15"


def t(hhmm: str) -> int:
    return et_ns(DAY, hhmm)


def bar(hhmm: str, o: float, h: float, l: float, c: float, v: float = 100_000, sym: str = "AAA") -> Bar:
    return Bar(sym, t(hhmm), o, h, l, c, v)


def req(cid: str, side: Side, qty: int, kind: OrderType = OrderType.MARKET, *, stop: float = 0.0,
        limit: float = 0.0, sym: str = "AAA", ts: int = 0) -> OrderRequest:
    role = OrderRole.ENTRY if side is Side.BUY else (
        OrderRole.STOP if kind is OrderType.STOP else OrderRole.TARGET if kind is OrderType.LIMIT
        else OrderRole.MANUAL)
    return OrderRequest(cid, "test", sym, side, qty, kind, role, ts, limit_price=limit, stop_price=stop)


class Broker:
    """A paper client with its reports collected."""

    def __init__(self, **cfg: Any) -> None:
        self.client = PaperExecutionClient(PaperConfig(**cfg))
        self.events: list[OrderEvent] = []
        self.fills: list[Fill] = []
        self.client.set_handlers(self.events.append, self.fills.append)

    def submit(self, r: OrderRequest) -> "Broker":
        self.client.submit(r)
        return self

    def bar(self, *args: Any, **kw: Any) -> "Broker":
        self.client.on_bar(bar(*args, **kw))
        return self

    def fills_of(self, cid: str) -> list[tuple[int, float, int]]:
        return [(f.qty, f.price, f.ts) for f in self.fills if f.client_order_id == cid]

    def statuses(self, cid: str) -> list[OrderStatus]:
        return [e.status for e in self.events if e.client_order_id == cid]


# --- market orders ---------------------------------------------------------------------------

def test_market_buy_fills_at_the_next_bar_open() -> None:
    b = Broker().bar("09:30", 10.0, 10.2, 9.9, 10.1)
    b.submit(req("B1", Side.BUY, 100))
    assert b.statuses("B1") == [OrderStatus.ACCEPTED] and b.fills == []
    b.bar("09:31", 10.15, 10.3, 10.0, 10.2)
    [f] = b.fills
    assert (f.client_order_id, f.side, f.qty, f.price, f.ts) == ("B1", Side.BUY, 100, 10.15, t("09:31"))
    assert f.commission == Decimal("0.35")
    b.bar("09:32", 10.5, 10.6, 10.4, 10.5)
    assert len(b.fills) == 1  # filled once, gone from the book


def test_slippage_is_against_the_trader() -> None:
    b = Broker(slippage_bps=10).bar("09:30", 50.0, 50.0, 50.0, 50.0)
    b.submit(req("BUY", Side.BUY, 100)).submit(req("SELL", Side.SELL, 100))
    b.bar("09:31", 50.0, 50.5, 49.5, 50.0)
    assert b.fills_of("BUY") == [(100, 50.05, t("09:31"))]   # up 10 bps
    assert b.fills_of("SELL") == [(100, 49.95, t("09:31"))]  # down 10 bps


def test_slippage_is_exact_and_not_rounded() -> None:
    b = Broker(slippage_bps=5).bar("09:30", 11.25, 11.25, 11.25, 11.25)
    b.submit(req("BUY", Side.BUY, 10))
    b.bar("09:31", 11.25, 11.3, 11.2, 11.25)
    assert b.fills_of("BUY")[0][1] == 11.255625  # 11.25 * 1.0005, a price inside the bar


def test_market_fill_is_the_traded_open_not_rounded() -> None:
    """The issue's SLRX bar: open 4.795, low 4.7913. Rounding the open to the cent (4.79, or 4.80)
    would sell outside the bar; the fill is the open itself."""
    b = Broker().bar("12:20", 4.8, 4.81, 4.79, 4.8)
    b.submit(req("SELL", Side.SELL, 100))
    b.bar("12:21", 4.795, 4.80, 4.7913, 4.7950)
    assert b.fills_of("SELL")[0][1] == 4.795
    b.submit(req("BUY", Side.BUY, 100))
    b.bar("12:22", 8.175, 8.18, 8.17, 8.175)
    assert b.fills_of("BUY")[0][1] == 8.175


@pytest.mark.parametrize("side, bar_args, expected", [
    # 100 bps on a buy at 10.00 would be 10.10, above the bar's high 10.02: the high.
    (Side.BUY, ("09:31", 10.0, 10.02, 9.95, 10.0), 10.02),
    # 100 bps on a sell at 10.00 would be 9.90, below the bar's low 9.97: the low.
    (Side.SELL, ("09:31", 10.0, 10.05, 9.97, 10.0), 9.97),
])
def test_slippage_never_leaves_the_bar(side: Side, bar_args: tuple, expected: float) -> None:
    b = Broker(slippage_bps=100).bar("09:30", 10.0, 10.0, 10.0, 10.0)
    b.submit(req("M", side, 10))
    b.bar(*bar_args)
    assert b.fills_of("M")[0][1] == expected


def test_session_end_fill_with_slippage_stays_in_the_last_bar() -> None:
    """A market order left at the session end fills at the last bar's close, slipped, clamped."""
    b = Broker(slippage_bps=100).bar("15:59", 10.0, 10.03, 9.99, 10.01)
    b.submit(req("EOD", Side.SELL, 10))
    b.client.end_session(t("16:00"))
    assert b.fills_of("EOD") == [(10, 9.99, t("16:00"))]  # 10.01 * 0.99 = 9.9099 < low 9.99
    b = Broker(slippage_bps=10).bar("15:59", 10.0, 10.03, 9.99, 10.01)
    b.submit(req("EOD", Side.SELL, 10))
    b.client.end_session(t("16:00"))
    assert b.fills_of("EOD") == [(10, 9.99999, t("16:00"))]  # 10.01 * 0.999, inside the bar


def test_orders_act_only_from_the_bar_after_placement() -> None:
    b = Broker().bar("09:30", 10.0, 10.0, 9.0, 9.5)
    # placed after the 09:30 bar, whose low (9.00) is under the stop and high over the limit
    b.submit(req("STP", Side.SELL, 10, OrderType.STOP, stop=9.5))
    b.submit(req("LMT", Side.SELL, 10, OrderType.LIMIT, limit=9.9))
    assert b.fills == []
    b.bar("09:31", 9.6, 9.7, 9.55, 9.65)  # touches neither
    assert b.fills == []
    b.bar("09:32", 9.6, 9.7, 9.4, 9.45)
    assert b.fills_of("STP") == [(10, 9.5, t("09:32"))] and b.fills_of("LMT") == []


def test_an_order_placed_before_any_bar_acts_on_the_first_bar() -> None:
    b = Broker().submit(req("B1", Side.BUY, 5))
    b.bar("09:30", 10.0, 10.1, 9.9, 10.0)
    assert b.fills_of("B1") == [(5, 10.0, t("09:30"))]


def test_bars_of_other_symbols_do_not_count() -> None:
    b = Broker().bar("09:30", 10.0, 10.0, 10.0, 10.0)
    b.submit(req("B1", Side.BUY, 5))
    b.bar("09:31", 20.0, 20.0, 20.0, 20.0, sym="ZZZ")
    assert b.fills == []
    b.bar("09:32", 10.3, 10.4, 10.2, 10.3)
    assert b.fills_of("B1") == [(5, 10.3, t("09:32"))]


def test_an_order_never_fills_on_a_bar_that_started_before_it_was_placed() -> None:
    """Bars of one minute arrive symbol by symbol. An order for CCC placed at the close of AAA's
    09:31 bar (09:32:00, e.g. a flatten-all on the daily loss limit) must not fill at the open
    of CCC's 09:31 bar, which arrives after it: that price was gone before the order existed."""
    b = Broker()
    b.bar("09:30", 10.0, 10.0, 10.0, 10.0, sym="AAA").bar("09:30", 30.0, 30.0, 30.0, 30.0, sym="CCC")
    b.submit(req("LONG", Side.BUY, 100, sym="CCC"))
    b.bar("09:31", 10.0, 10.0, 10.0, 10.0, sym="AAA").bar("09:31", 31.0, 31.0, 31.0, 31.0, sym="CCC")
    assert b.fills_of("LONG") == [(100, 31.0, t("09:31"))]
    b.bar("09:32", 9.0, 9.0, 9.0, 9.0, sym="AAA")
    b.submit(req("OUT", Side.SELL, 100, sym="CCC", ts=t("09:33")))  # at AAA's 09:32 close
    b.bar("09:32", 35.0, 35.0, 34.0, 34.0, sym="CCC")   # started at 09:32:00, before the order
    assert b.fills_of("OUT") == []
    b.bar("09:33", 33.0, 33.0, 32.0, 32.5, sym="CCC")
    assert b.fills_of("OUT") == [(100, 33.0, t("09:33"))]


# --- stops and limits ------------------------------------------------------------------------

@pytest.mark.parametrize("o,h,l,c,expected", [
    (10.0, 10.1, 9.4, 9.6, 9.5),     # trades through: fills at the stop
    (10.0, 10.1, 9.5, 9.6, 9.5),     # low == stop: triggers
    (9.3, 9.4, 9.1, 9.2, 9.3),       # opens below the stop: fills at the open
    (10.0, 10.1, 9.51, 9.9, None),   # stays above: nothing
])
def test_sell_stop(o: float, h: float, l: float, c: float, expected: float | None) -> None:
    b = Broker().submit(req("S", Side.SELL, 10, OrderType.STOP, stop=9.5))
    b.bar("09:31", o, h, l, c)
    assert b.fills_of("S") == ([] if expected is None else [(10, expected, t("09:31"))])


@pytest.mark.parametrize("o,h,l,c,expected", [
    (10.0, 10.6, 9.9, 10.2, 10.5),   # trades up through: fills at the limit
    (10.0, 10.5, 9.9, 10.2, 10.5),   # high == limit: fills
    (10.8, 10.9, 10.6, 10.7, 10.8),  # opens above: fills at the (better) open
    (10.0, 10.49, 9.9, 10.2, None),  # never reaches it
])
def test_sell_limit(o: float, h: float, l: float, c: float, expected: float | None) -> None:
    b = Broker().submit(req("L", Side.SELL, 10, OrderType.LIMIT, limit=10.5))
    b.bar("09:31", o, h, l, c)
    assert b.fills_of("L") == ([] if expected is None else [(10, expected, t("09:31"))])


@pytest.mark.parametrize("o,h,l,c,expected", [
    (10.0, 10.1, 9.7, 9.9, 9.8),     # trades down through: fills at the limit
    (9.6, 9.7, 9.5, 9.6, 9.6),       # opens below: fills at the (better) open
    (10.0, 10.1, 9.81, 9.9, None),
])
def test_buy_limit(o: float, h: float, l: float, c: float, expected: float | None) -> None:
    b = Broker().submit(req("BL", Side.BUY, 10, OrderType.LIMIT, limit=9.8))
    b.bar("09:31", o, h, l, c)
    assert b.fills_of("BL") == ([] if expected is None else [(10, expected, t("09:31"))])


def test_stop_and_limit_in_one_bar_stop_is_assumed_first() -> None:
    """An exit pair (stop 9.50 / target 10.50) and a bar that reaches both: the stop fills first;
    the one-cancels-other owner cancels the target in the stop's fill callback."""
    b = Broker()
    b.submit(req("TGT", Side.SELL, 10, OrderType.LIMIT, limit=10.5))  # submitted first on purpose
    b.submit(req("STP", Side.SELL, 10, OrderType.STOP, stop=9.5))
    cancel_other = {"STP": "TGT", "TGT": "STP"}

    def oco(fill: Fill) -> None:
        b.fills.append(fill)
        b.client.cancel(cancel_other[fill.client_order_id])

    b.client.set_handlers(b.events.append, oco)
    b.bar("09:31", 10.0, 10.8, 9.2, 10.0)
    assert [f.client_order_id for f in b.fills] == ["STP"]
    assert b.fills_of("STP") == [(10, 9.5, t("09:31"))]
    assert b.statuses("TGT") == [OrderStatus.ACCEPTED, OrderStatus.CANCELED]


# --- commissions and participation -----------------------------------------------------------

def test_commission_per_share_and_minimum() -> None:
    b = Broker().submit(req("BIG", Side.BUY, 1000)).submit(req("SMALL", Side.BUY, 10))
    b.submit(req("ODD", Side.BUY, 1785))
    b.bar("09:31", 10.0, 10.0, 10.0, 10.0)
    fee = {f.client_order_id: f.commission for f in b.fills}
    assert fee == {"BIG": Decimal("3.50"), "SMALL": Decimal("0.35"), "ODD": Decimal("6.25")}


def test_commission_config() -> None:
    b = Broker(commission_per_share=0.005, commission_min=1.0)
    b.submit(req("A", Side.BUY, 100)).submit(req("B", Side.BUY, 1785))
    b.bar("09:31", 10.0, 10.0, 10.0, 10.0)
    fee = {f.client_order_id: f.commission for f in b.fills}
    assert fee == {"A": Decimal("1.00"), "B": Decimal("8.93")}  # 8.925 rounds half up


def test_participation_cap_fills_over_several_bars_at_each_open() -> None:
    b = Broker(max_participation=0.1).submit(req("B", Side.BUY, 250))
    b.bar("09:31", 10.0, 10.1, 9.9, 10.0, v=1_000)   # cap 100
    b.bar("09:32", 10.2, 10.3, 10.1, 10.2, v=505)    # cap 50
    b.bar("09:33", 10.4, 10.5, 10.3, 10.4, v=5)      # cap 0: nothing this bar
    b.bar("09:34", 10.6, 10.7, 10.5, 10.6, v=10_000)  # the remaining 100
    b.bar("09:35", 10.8, 10.9, 10.7, 10.8, v=10_000)
    assert b.fills_of("B") == [(100, 10.0, t("09:31")), (50, 10.2, t("09:32")), (100, 10.6, t("09:34"))]
    assert len({f.exec_id for f in b.fills}) == 3


def test_commission_minimum_is_per_order_across_partial_fills() -> None:
    """150 shares in three fills of 50: 0.35 on the first (the minimum), 0.00, then 0.18; the
    order pays max(150 * 0.0035, 0.35) = 0.525 -> 0.53 in total, not 3 * 0.35."""
    b = Broker(max_participation=0.1).submit(req("B", Side.BUY, 150))
    for hhmm in ("09:31", "09:32", "09:33"):
        b.bar(hhmm, 10.0, 10.0, 10.0, 10.0, v=500)
    assert [f.commission for f in b.fills] == [Decimal("0.35"), Decimal("0.00"), Decimal("0.18")]
    assert sum(f.commission for f in b.fills) == Decimal("0.53")

    b = Broker(max_participation=0.1).submit(req("B", Side.BUY, 1785))
    for i in range(5):
        b.bar(f"09:3{i + 1}", 10.0, 10.0, 10.0, 10.0, v=4_000)  # 400 a bar
    assert [f.qty for f in b.fills] == [400, 400, 400, 400, 185]
    assert sum(f.commission for f in b.fills) == Decimal("6.25")  # 6.2475


def test_participation_applies_to_stops_too() -> None:
    b = Broker(max_participation=0.5).submit(req("S", Side.SELL, 300, OrderType.STOP, stop=9.5))
    b.bar("09:31", 9.6, 9.7, 9.4, 9.45, v=200)
    b.bar("09:32", 9.4, 9.45, 9.3, 9.35, v=1_000)
    assert b.fills_of("S") == [(100, 9.5, t("09:31")), (200, 9.4, t("09:32"))]


# --- cancel, duplicates, end of session ------------------------------------------------------

def test_cancel_removes_the_order() -> None:
    b = Broker().submit(req("S", Side.SELL, 10, OrderType.STOP, stop=9.5))
    b.client.cancel("S")
    b.bar("09:31", 9.0, 9.1, 8.0, 8.5)
    assert b.fills == []
    assert b.statuses("S") == [OrderStatus.ACCEPTED, OrderStatus.CANCELED]
    b.client.cancel("S")        # again: nothing to report
    b.client.cancel("UNKNOWN")  # never seen: nothing either
    assert len(b.events) == 2


def test_cancel_after_fill_reports_nothing() -> None:
    b = Broker().submit(req("B", Side.BUY, 10))
    b.bar("09:31", 10.0, 10.0, 10.0, 10.0)
    b.client.cancel("B")
    assert b.statuses("B") == [OrderStatus.ACCEPTED]


def test_duplicate_client_order_id_is_rejected() -> None:
    b = Broker().submit(req("DUP", Side.BUY, 10))
    b.submit(req("DUP", Side.BUY, 999))
    assert b.statuses("DUP") == [OrderStatus.ACCEPTED, OrderStatus.REJECTED]
    assert "duplicate" in b.events[-1].reason
    b.bar("09:31", 10.0, 10.0, 10.0, 10.0)
    assert b.fills_of("DUP") == [(10, 10.0, t("09:31"))]  # only the original, once


def test_end_session_fills_market_orders_at_the_last_close_and_expires_the_rest() -> None:
    b = Broker().bar("15:58", 10.0, 10.1, 9.9, 10.0).bar("15:59", 10.0, 10.2, 9.95, 10.1)
    b.submit(req("MKT", Side.BUY, 10))
    b.submit(req("STP", Side.SELL, 10, OrderType.STOP, stop=5.0))
    b.submit(req("LMT", Side.SELL, 10, OrderType.LIMIT, limit=50.0))
    b.submit(req("NOBAR", Side.BUY, 10, sym="NOPE"))  # no bar ever: nothing to fill it at
    b.client.end_session(t("16:00"))
    assert b.fills_of("MKT") == [(10, 10.1, t("15:59") + NANOS_PER_MINUTE)]
    for cid in ("STP", "LMT", "NOBAR"):
        assert b.statuses(cid) == [OrderStatus.ACCEPTED, OrderStatus.EXPIRED], cid
    assert [e.ts for e in b.events if e.status is OrderStatus.EXPIRED] == [t("16:00")] * 3
    # the book is empty: the next session's bars fill nothing
    b.bar("09:30", 1.0, 100.0, 1.0, 50.0)
    assert len(b.fills) == 1


def test_end_session_ignores_the_participation_cap() -> None:
    b = Broker(max_participation=0.01).bar("15:59", 10.0, 10.0, 10.0, 10.0, v=100)
    b.submit(req("MKT", Side.SELL, 500))
    b.client.end_session(t("16:00"))
    assert b.fills_of("MKT") == [(500, 10.0, t("16:00"))]


# --- ticks and commissions, exact ------------------------------------------------------------

@pytest.mark.parametrize("price, tick", [
    (4.795, 4.80), (8.175, 8.18), (4.7913, 4.79), (1.005, 1.01), (10.004999, 10.00),
    (0.99995, 1.00), (0.99994, 0.9999), (0.12345, 0.1235), (0.00005, 0.0001),
    (4.7949999999, 4.79),  # more than eight decimals: still the exact decimal
])
def test_prices_sent_round_half_up_to_a_valid_tick(price: float, tick: float) -> None:
    """Cents from $1, $0.0001 below, half up on the decimal the float stands for (binary
    round(4.795, 2) is 4.79 and round(8.175, 2) is 8.18: the issue's inconsistency)."""
    from live_runner.core.money import round_to_tick

    assert round_to_tick(price) == tick


def test_target_is_exact_and_on_a_tick() -> None:
    """Entry 10.005 (a sub-penny fill), stop 9.80, 2R: 10.005 + 2 * 0.205 = 10.415 -> 10.42
    (binary floats give 10.414999... -> 10.41)."""
    from live_runner.core.money import target_price

    assert target_price(Decimal("10.005"), 9.80, 2.0) == 10.42
    assert target_price(Decimal("0.5"), 0.45, 2.0) == 0.6


def test_commission_rounds_half_up_per_order() -> None:
    """1790 * 0.0035 = 6.265 -> 6.27 (half up, never half even); an order filled in parts pays
    the rounding of its running total, not of each part."""
    from live_runner.core.money import commission

    per_share, minimum = Decimal("0.0035"), Decimal("0.35")
    assert commission(1790, per_share, minimum) == Decimal("6.27")
    assert commission(50, per_share, minimum) == Decimal("0.35")
    b = Broker(max_participation=0.01).bar("09:30", 10.0, 10.0, 10.0, 10.0)
    b.submit(req("P", Side.BUY, 1790))
    for minute in range(31, 40):
        b.bar(f"09:{minute}", 10.0, 10.0, 10.0, 10.0, v=30_000)  # 300 shares a bar
    fills = [f for f in b.fills if f.client_order_id == "P"]
    assert sum(f.qty for f in fills) == 1790
    assert sum((f.commission for f in fills), Decimal(0)) == Decimal("6.27")
