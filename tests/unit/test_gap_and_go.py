"""gap_and_go through the whole chain (DataManager -> strategy -> risk -> orders -> paper broker).

Every trade asserts the numbers a trader would check against DESIGN.md: the entry bar (the bar
after the signal, filled at its open), qty from the sizing formula, the stop (signal bar's low),
the target (fill + 2R), the exit reason and price, and the exact Decimal P&L and commission.
"""

from __future__ import annotations

from decimal import Decimal

from tests.kit.sessions import SessionBuilder, et_ns

GG = {"active_strategies": ["gap_and_go"]}


def gapper(day: str = "2024-03-15", prev_day: str = "2024-03-14", sym: str = "GAPR") -> SessionBuilder:
    """prev close 10.00; premarket high 11.00, volume 60k, last 10.90 (a 9% gap that holds).

    09:31 closes 11.20 above pm_high: signal, stop 10.90 (its low), sized with c = 11.20:
    min(floor(1000 / 0.30), floor(20000 / 11.20)) = min(3333, 1785) = 1785 shares.
    09:32 opens 11.25: the fill; target 11.25 + 2 * 0.35 = 11.95.
    """
    s = SessionBuilder(day=day, prev_day=prev_day)
    s.prev_close(sym, 10.00)
    s.bar(sym, "08:00", 10.5, 10.8, 10.4, 10.7, 30_000)
    s.bar(sym, "09:00", 10.7, 11.0, 10.6, 10.9, 30_000)
    s.bar(sym, "09:30", 10.9, 11.0, 10.8, 10.95, 50_000)
    s.bar(sym, "09:31", 10.95, 11.3, 10.9, 11.2, 60_000)
    s.bar(sym, "09:32", 11.25, 11.4, 11.1, 11.35, 40_000)
    return s


def cheap_gapper() -> SessionBuilder:
    """A $5 gapper where the risk budget, not the position-size cap, sets the qty.

    prev close 4.50; premarket high 5.00, last 4.95, volume 60k. 09:31 closes 5.20, low 4.70:
    qty = min(floor(1000 / 0.50), floor(20000 / 5.20)) = min(2000, 3846) = 2000.
    09:32 opens 5.25: fill; target 5.25 + 2 * 0.55 = 6.35. Commission 2000 * 0.0035 = 7.00 a side.
    """
    s = SessionBuilder()
    s.prev_close("CHEP", 4.50)
    s.bar("CHEP", "08:00", 4.8, 5.0, 4.75, 4.9, 40_000)
    s.bar("CHEP", "09:00", 4.9, 5.0, 4.85, 4.95, 20_000)
    s.bar("CHEP", "09:30", 4.95, 5.0, 4.8, 4.9, 50_000)
    s.bar("CHEP", "09:31", 4.9, 5.3, 4.7, 5.2, 60_000)
    s.bar("CHEP", "09:32", 5.25, 5.3, 5.1, 5.2, 40_000)
    return s


def one_trade(summary: dict) -> dict:
    assert len(summary["trades"]) == 1, summary["trades"]
    return summary["trades"][0]


def order_of(node, role: str):
    [order] = [o for o in node.orders.orders.values() if o.request.role.value == role]
    return order


# --- sessions that trade ---------------------------------------------------------------------

def test_target_hit_exits_at_the_target_price() -> None:
    s = gapper()
    s.bar("GAPR", "09:33", 11.4, 12.0, 11.35, 11.9, 40_000)
    node, summary = s.run(**GG)
    t = one_trade(summary)
    assert (t["qty"], t["entry_price"], t["entry_time"]) == (1785, 11.25, "2024-03-15T13:32:00Z")
    assert (t["exit_price"], t["exit_time"], t["exit_reason"]) == (11.95, "2024-03-15T13:33:00Z", "target")
    assert order_of(node, "stop").request.stop_price == 10.90
    assert order_of(node, "target").request.limit_price == 11.95
    assert t["commission"] == "12.50"  # 1785 * 0.0035 = 6.2475 -> 6.25 per order
    assert Decimal(t["pnl"]) == Decimal("1237.00")  # 0.70 * 1785 - 12.50
    assert Decimal(summary["final_equity"]) == Decimal("101237.00")
    assert summary["final_positions"] == {}


def test_exits_do_not_act_on_the_fill_bar() -> None:
    """The 09:32 fill bar trades through both the target and the stop: exits start at 09:33."""
    s = SessionBuilder()
    s.prev_close("GAPR", 10.00)
    s.bar("GAPR", "08:00", 10.5, 10.8, 10.4, 10.7, 30_000)
    s.bar("GAPR", "09:00", 10.7, 11.0, 10.6, 10.9, 30_000)
    s.bar("GAPR", "09:30", 10.9, 11.0, 10.8, 10.95, 50_000)
    s.bar("GAPR", "09:31", 10.95, 11.3, 10.9, 11.2, 60_000)
    s.bar("GAPR", "09:32", 11.25, 12.5, 10.5, 11.3, 40_000)
    s.bar("GAPR", "09:33", 11.3, 12.0, 11.2, 11.9, 40_000)
    _, summary = s.run(**GG)
    t = one_trade(summary)
    assert t["exit_reason"] == "target"
    assert t["exit_time"] == "2024-03-15T13:33:00Z"
    assert t["exit_price"] == 11.95


def test_stop_hit_fills_at_the_stop() -> None:
    s = cheap_gapper()
    s.bar("CHEP", "09:33", 5.0, 5.05, 4.6, 4.65, 40_000)  # opens above 4.70, trades through it
    node, summary = s.run(**GG)
    t = one_trade(summary)
    assert (t["qty"], t["entry_price"], t["entry_time"]) == (2000, 5.25, "2024-03-15T13:32:00Z")
    assert order_of(node, "stop").request.stop_price == 4.70
    assert order_of(node, "target").request.limit_price == 6.35
    assert (t["exit_price"], t["exit_reason"], t["exit_time"]) == (4.70, "stop", "2024-03-15T13:33:00Z")
    assert t["commission"] == "14.00"
    assert Decimal(t["pnl"]) == Decimal("-1114.00")  # -0.55 * 2000 - 14.00
    assert Decimal(summary["final_equity"]) == Decimal("98886.00")


def test_stop_gapped_through_fills_at_the_open() -> None:
    s = cheap_gapper()
    s.bar("CHEP", "09:33", 4.60, 4.68, 4.50, 4.55, 40_000)  # opens below the 4.70 stop
    _, summary = s.run(**GG)
    t = one_trade(summary)
    assert (t["exit_price"], t["exit_reason"]) == (4.60, "stop")
    assert Decimal(t["pnl"]) == Decimal("-1314.00")  # -0.65 * 2000 - 14.00


def test_bar_hitting_both_stop_and_target_is_a_stop() -> None:
    s = gapper()
    s.bar("GAPR", "09:33", 11.3, 12.0, 10.8, 11.5, 40_000)  # high >= 11.95 and low <= 10.90
    node, summary = s.run(**GG)
    t = one_trade(summary)
    assert (t["exit_price"], t["exit_reason"]) == (10.90, "stop")
    assert Decimal(t["pnl"]) == Decimal("-637.25")  # -0.35 * 1785 - 12.50
    assert order_of(node, "target").status.value == "canceled"
    assert order_of(node, "target").filled_qty == 0


def test_eod_flatten_sells_at_the_open_after_the_1555_bar() -> None:
    s = gapper()
    s.flat("GAPR", "09:33", "15:54", 11.50, 20_000)  # between stop 10.90 and target 11.95
    s.bar("GAPR", "15:55", 11.55, 11.55, 11.55, 11.55, 20_000)
    s.bar("GAPR", "15:56", 11.60, 11.65, 11.55, 11.60, 20_000)
    s.flat("GAPR", "15:57", "15:59", 11.70, 20_000)
    node, summary = s.run(**GG)
    t = one_trade(summary)
    assert t["exit_reason"] == "eod"
    assert t["exit_time"] == "2024-03-15T19:56:00Z"  # 15:56 EDT
    assert t["exit_price"] == 11.60
    assert Decimal(t["pnl"]) == Decimal("612.25")  # 0.35 * 1785 - 12.50
    [eod] = [o for o in node.orders.orders.values() if o.request.role.value == "eod"]
    assert eod.request.order_type.value == "market" and eod.request.qty == 1785
    assert eod.request.ts == et_ns("2024-03-15", "15:56")  # placed at the 15:55 bar's close
    assert summary["final_positions"] == {}


def test_eod_flatten_without_a_following_bar_fills_at_the_last_close() -> None:
    s = gapper()
    s.flat("GAPR", "09:33", "15:54", 11.50, 20_000)
    s.bar("GAPR", "15:55", 11.55, 11.60, 11.50, 11.58, 20_000)  # the feed ends here
    _, summary = s.run(**GG)
    t = one_trade(summary)
    assert (t["exit_reason"], t["exit_price"]) == ("eod", 11.58)
    assert Decimal(t["pnl"]) == Decimal("0.33") * 1785 - Decimal("12.50")


def test_early_close_day_flattens_at_1255() -> None:
    """2024-11-29 closes at 13:00 ET: flatten at the 12:55 bar's close, fill at 12:56 (17:56Z)."""
    s = gapper(day="2024-11-29", prev_day="2024-11-27")
    s.flat("GAPR", "09:33", "12:54", 11.50, 20_000)
    s.bar("GAPR", "12:55", 11.55, 11.55, 11.55, 11.55, 20_000)
    s.bar("GAPR", "12:56", 11.60, 11.65, 11.55, 11.60, 20_000)
    s.flat("GAPR", "12:57", "12:59", 11.70, 20_000)
    _, summary = s.run(**GG)
    t = one_trade(summary)
    assert t["entry_time"] == "2024-11-29T14:32:00Z"  # EST
    assert (t["exit_reason"], t["exit_time"], t["exit_price"]) == ("eod", "2024-11-29T17:56:00Z", 11.60)
    assert Decimal(t["pnl"]) == Decimal("612.25")
    assert summary["sessions"][-1]["date"] == "2024-11-29"


def test_dst_spring_forward_week() -> None:
    """Previous close on Fri 2024-03-08 (EST, 20:59Z), trading on Mon 2024-03-11 (EDT)."""
    s = gapper(day="2024-03-11", prev_day="2024-03-08")
    s.bar("GAPR", "09:33", 11.4, 12.0, 11.35, 11.9, 40_000)
    _, summary = s.run(**GG)
    t = one_trade(summary)
    assert (t["entry_time"], t["entry_price"]) == ("2024-03-11T13:32:00Z", 11.25)
    assert (t["exit_time"], t["exit_reason"]) == ("2024-03-11T13:33:00Z", "target")
    assert Decimal(t["pnl"]) == Decimal("1237.00")
    assert [x["date"] for x in summary["sessions"]] == ["2024-03-08", "2024-03-11"]


def test_dst_fall_back_week_eod() -> None:
    """Previous close on Fri 2024-11-01 (EDT), trading on Mon 2024-11-04 (EST): 15:56 ET = 20:56Z."""
    s = gapper(day="2024-11-04", prev_day="2024-11-01")
    s.flat("GAPR", "09:33", "15:55", 11.50, 20_000)
    s.bar("GAPR", "15:56", 11.60, 11.65, 11.55, 11.60, 20_000)
    _, summary = s.run(**GG)
    t = one_trade(summary)
    assert t["entry_time"] == "2024-11-04T14:32:00Z"
    assert (t["exit_reason"], t["exit_time"], t["exit_price"]) == ("eod", "2024-11-04T20:56:00Z", 11.60)


def test_exact_thresholds_qualify() -> None:
    """gap exactly 4%, premarket volume exactly 50k, pm_last exactly 0.9 * pm_high: all inclusive."""
    s = SessionBuilder()
    s.prev_close("EDGE", 9.50)
    s.bar("EDGE", "08:00", 10.2, 10.5, 10.1, 10.3, 25_000)   # pm_high 10.50
    s.bar("EDGE", "09:00", 10.0, 10.1, 9.8, 9.88, 25_000)    # pm_last 9.88 = 9.50 * 1.04
    s.bar("EDGE", "09:30", 9.9, 10.0, 9.8, 9.9, 50_000)
    s.bar("EDGE", "09:31", 9.9, 10.8, 9.9, 10.7, 60_000)     # close > 10.50: signal
    s.bar("EDGE", "09:32", 10.7, 10.8, 10.6, 10.7, 40_000)
    _, summary = s.run(**GG)
    assert summary["signals"] == 1
    # min(floor(1000 / 0.80), floor(20000 / 10.70)) = min(1250, 1869): the risk budget binds
    assert (summary["trades"][0]["qty"], summary["trades"][0]["entry_price"]) == (1250, 10.70)

    hold = SessionBuilder()
    hold.prev_close("HOLD", 9.00)
    hold.bar("HOLD", "08:00", 10.5, 11.0, 10.4, 10.5, 30_000)  # pm_high 11.00
    hold.bar("HOLD", "09:00", 10.0, 10.0, 9.8, 9.9, 30_000)    # pm_last 9.90 = 0.9 * 11.00
    hold.bar("HOLD", "09:30", 9.9, 10.0, 9.8, 9.9, 50_000)
    hold.bar("HOLD", "09:31", 9.9, 11.2, 9.9, 11.1, 60_000)
    hold.bar("HOLD", "09:32", 11.1, 11.2, 11.0, 11.1, 40_000)
    _, summary = hold.run(**GG)
    assert summary["signals"] == 1


def test_break_on_the_last_bar_before_entry_end_trades() -> None:
    s = gapper()
    s.bars = [b for b in s.bars if b.ts <= s.bars[3].ts]  # keep prev close, premarket, 09:30
    s.flat("GAPR", "09:31", "10:28", 10.95, 20_000)
    s.bar("GAPR", "10:29", 10.95, 11.3, 10.9, 11.2, 60_000)
    s.bar("GAPR", "10:30", 11.25, 11.4, 11.1, 11.35, 40_000)
    _, summary = s.run(**GG)
    t = one_trade(summary)
    assert (t["entry_time"], t["entry_price"], t["qty"]) == ("2024-03-15T14:30:00Z", 11.25, 1785)


# --- config: slippage and commissions ---------------------------------------------------------

def test_slippage_moves_market_fills_against_the_trader() -> None:
    """10 bps: the entry buys at 11.25 * 1.001 = 11.26125 and the EOD sell at 11.60 * 0.999 =
    11.5884, exact and not rounded (both inside their bars)."""
    s = gapper()
    s.flat("GAPR", "09:33", "15:55", 11.50, 20_000)
    s.bar("GAPR", "15:56", 11.60, 11.65, 11.55, 11.60, 20_000)
    node, summary = s.run(paper={"slippage_bps": 10}, **GG)
    t = one_trade(summary)
    assert (t["entry_price"], t["exit_price"], t["exit_reason"]) == (11.2613, 11.5884, "eod")
    # target 11.26125 + 2 * 0.36125 = 11.98375 -> the tick 11.98
    assert order_of(node, "target").request.limit_price == 11.98
    # 1785 * (11.5884 - 11.26125) - 12.50
    assert Decimal(t["pnl"]) == Decimal("571.46275")


def test_slippage_does_not_touch_limit_fills() -> None:
    s = gapper()
    s.bar("GAPR", "09:33", 11.4, 12.0, 11.35, 11.9, 40_000)
    _, summary = s.run(paper={"slippage_bps": 10}, **GG)
    t = one_trade(summary)
    assert (t["entry_price"], t["exit_price"], t["exit_reason"]) == (11.2613, 11.98, "target")
    assert Decimal(t["pnl"]) == Decimal("1270.46875")  # 1785 * (11.98 - 11.26125) - 12.50


def test_commission_minimum_and_per_share_from_config() -> None:
    s = gapper()
    s.bar("GAPR", "09:33", 11.4, 12.0, 11.35, 11.9, 40_000)
    _, summary = s.run(paper={"commission_min": 10.0}, **GG)
    t = one_trade(summary)
    assert t["commission"] == "20.00"  # 6.2475 < 10.00 minimum, per order
    assert Decimal(t["pnl"]) == Decimal("1229.50")

    _, summary = s.run(paper={"commission_per_share": 0.005, "commission_min": 1.0}, **GG)
    t = one_trade(summary)
    assert t["commission"] == "17.86"  # 1785 * 0.005 = 8.925 -> 8.93 per order
    assert Decimal(t["pnl"]) == Decimal("1249.50") - Decimal("17.86")


# --- sessions that must not trade -------------------------------------------------------------

def premarket_session(prev_close: float, pm: list[tuple[str, float, float, float, float, float]],
                      sym: str = "NOPE") -> SessionBuilder:
    """A gapper whose regular session breaks far above its premarket high at 09:31."""
    s = SessionBuilder()
    s.prev_close(sym, prev_close)
    for hhmm, o, h, l, c, v in pm:
        s.bar(sym, hhmm, o, h, l, c, v)
    top = max([h for _, _, h, _, _, _ in pm], default=prev_close)
    s.bar(sym, "09:30", top * 0.99, top, top * 0.98, top * 0.99, 50_000)
    s.bar(sym, "09:31", top, top * 1.05, top * 0.99, top * 1.04, 60_000)
    s.bar(sym, "09:32", top * 1.04, top * 1.06, top * 1.03, top * 1.05, 40_000)
    s.bar(sym, "09:33", top * 1.05, top * 1.30, top * 1.04, top * 1.25, 40_000)
    return s


def no_trade(s: SessionBuilder, **config) -> dict:
    node, summary = s.run(**{**GG, **config})
    assert summary["signals"] == 0
    assert summary["trades"] == []
    assert summary["orders_submitted"] == 0
    assert summary["final_positions"] == {}
    return summary


def test_control_the_no_trade_template_does_trade() -> None:
    s = premarket_session(10.00, [("08:00", 10.5, 11.0, 10.4, 10.9, 60_000)])
    _, summary = s.run(**GG)
    assert summary["signals"] == 1 and len(summary["trades"]) == 1


def test_gap_of_3_9_percent_does_not_qualify() -> None:
    no_trade(premarket_session(10.00, [("08:00", 10.3, 10.45, 10.3, 10.39, 60_000)]))


def test_premarket_volume_below_minimum_does_not_qualify() -> None:
    no_trade(premarket_session(10.00, [("08:00", 10.5, 11.0, 10.4, 10.9, 30_000),
                                       ("09:00", 10.9, 11.0, 10.8, 10.9, 19_999)]))


def test_price_above_price_max_does_not_qualify() -> None:
    no_trade(premarket_session(19.00, [("08:00", 20.4, 20.6, 20.3, 20.5, 60_000)]))
    # and price_max is a config key: raising it lets the same session trade
    _, summary = premarket_session(19.00, [("08:00", 20.4, 20.6, 20.3, 20.5, 60_000)]).run(
        strategies={"gap_and_go": {"price_max": 25.0}}, **GG)
    assert summary["signals"] == 1


def test_premarket_fade_below_hold_ratio_does_not_qualify() -> None:
    """pm_high 11.00, pm_last 9.89 < 0.9 * 11.00 (the gap of 9.9% itself is fine)."""
    no_trade(premarket_session(9.00, [("08:00", 10.5, 11.0, 10.4, 10.9, 30_000),
                                      ("09:00", 10.0, 10.0, 9.85, 9.89, 30_000)]))


def test_break_only_at_or_after_entry_end_does_not_trade() -> None:
    s = gapper()
    s.bars = [b for b in s.bars if b.ts <= s.bars[3].ts]
    s.flat("GAPR", "09:31", "10:29", 10.95, 20_000)
    s.bar("GAPR", "10:30", 10.95, 11.3, 10.9, 11.2, 60_000)  # first close above 11.00
    s.bar("GAPR", "10:31", 11.25, 11.4, 11.1, 11.35, 40_000)
    no_trade(s)


def test_no_premarket_bars_does_not_qualify() -> None:
    s = SessionBuilder()
    s.prev_close("NOPM", 10.00)
    s.bar("NOPM", "09:30", 11.0, 11.2, 10.9, 11.1, 200_000)
    s.bar("NOPM", "09:31", 11.1, 11.8, 11.0, 11.7, 200_000)
    s.bar("NOPM", "09:32", 11.7, 12.5, 11.6, 12.4, 200_000)
    no_trade(s)


def test_no_previous_close_does_not_qualify() -> None:
    s = premarket_session(10.00, [("08:00", 10.5, 11.0, 10.4, 10.9, 60_000)])
    s.bars = [b for b in s.bars if b.ts > s.bars[0].ts]  # drop yesterday's close
    no_trade(s)


def test_one_entry_per_symbol_per_session() -> None:
    s = gapper()
    s.bar("GAPR", "09:33", 11.4, 12.0, 11.35, 11.9, 40_000)  # target: flat again
    s.bar("GAPR", "09:34", 11.9, 12.5, 11.8, 12.4, 60_000)   # breaks pm_high again
    s.bar("GAPR", "09:35", 12.4, 12.6, 12.3, 12.5, 40_000)
    s.bar("GAPR", "09:36", 12.5, 13.0, 12.4, 12.9, 40_000)
    _, summary = s.run(**GG)
    assert summary["signals"] == 1
    assert len(summary["trades"]) == 1
    assert summary["orders_submitted"] == 3  # entry, stop, target


def test_two_symbols_are_traded_independently() -> None:
    s = gapper()
    s.bar("GAPR", "09:33", 11.4, 12.0, 11.35, 11.9, 40_000)
    c = cheap_gapper()
    c.bar("CHEP", "09:33", 5.0, 5.05, 4.6, 4.65, 40_000)
    s.bars += c.bars
    _, summary = s.run(**GG)
    by_symbol = {t["symbol"]: t for t in summary["trades"]}
    assert by_symbol["GAPR"]["exit_reason"] == "target"
    assert by_symbol["CHEP"]["exit_reason"] == "stop"
    # sized independently off the same 100k of equity at the 09:31 close
    assert (by_symbol["GAPR"]["qty"], by_symbol["CHEP"]["qty"]) == (1785, 2000)
    assert Decimal(summary["realized_pnl"]) == Decimal("1237.00") + Decimal("-1114.00")


def test_prev_close_is_the_last_regular_session_close_not_after_hours() -> None:
    """Yesterday closed 10.00 at 15:59 and traded 10.60 after hours: the gap (10.90 premarket) is
    9% from the regular close, which qualifies (2.8% from the after-hours print would not)."""
    s = gapper()
    s.bar("GAPR", "16:30", 10.6, 10.6, 10.6, 10.6, 5_000, day="2024-03-14")
    s.bar("GAPR", "09:33", 11.4, 12.0, 11.35, 11.9, 40_000)
    _, summary = s.run(**GG)
    assert summary["signals"] == 1
    assert one_trade(summary)["exit_reason"] == "target"


def test_sizing_uses_equity_with_open_positions_marked_at_their_last_close() -> None:
    """GAPR (1785 @ 11.25, 6.25 commission) is marked at 11.50 when LATE signals at 09:40:
    equity = 100000 - 20081.25 - 6.25 + 1785 * 11.50 = 100440.00, so LATE gets
    min(floor(1004.40 / 0.30), floor(20088.00 / 11.20)) = min(3348, 1793) = 1793 shares."""
    s = gapper()
    s.flat("GAPR", "09:33", "09:42", 11.50, 20_000)
    s.prev_close("LATE", 10.00)
    s.bar("LATE", "08:00", 10.5, 10.8, 10.4, 10.7, 30_000)
    s.bar("LATE", "09:00", 10.7, 11.0, 10.6, 10.9, 30_000)
    s.flat("LATE", "09:30", "09:39", 10.95, 20_000)
    s.bar("LATE", "09:40", 10.95, 11.3, 10.9, 11.2, 60_000)
    s.bar("LATE", "09:41", 11.25, 11.4, 11.1, 11.35, 40_000)
    node, summary = s.run(**GG)
    assert node.portfolio.positions == {} and summary["signals"] == 2
    late = [o for o in node.orders.orders.values() if o.request.symbol == "LATE" and o.request.role.value == "entry"]
    assert [o.request.qty for o in late] == [1793]
    by_symbol = {t["symbol"]: t for t in summary["trades"]}
    assert (by_symbol["GAPR"]["qty"], by_symbol["LATE"]["qty"]) == (1785, 1793)


def test_signal_bar_closing_at_its_low_gives_no_order() -> None:
    """Close 11.20 above pm_high but equal to the bar's low (the stop): c <= stop, no order."""
    s = gapper()
    s.bars = [b for b in s.bars if b.ts <= s.bars[3].ts]
    s.bar("GAPR", "09:31", 11.3, 11.4, 11.2, 11.2, 60_000)
    s.bar("GAPR", "09:32", 11.25, 11.4, 11.1, 11.35, 40_000)
    s.bar("GAPR", "09:33", 11.4, 12.0, 11.35, 11.9, 40_000)
    node, summary = s.run(**GG)
    assert summary["trades"] == [] and summary["orders_submitted"] == 0
    assert node.orders.orders == {}


# --- prev_close: the previous session only (DESIGN.md, "Edges, decided") -----------------------

def scanner_file(skip_all: bool = False) -> SessionBuilder:
    """A scanner-style file of gap days: GAPR closed 10.00 on Wed 2024-03-13, has no bars on Thu
    03-14 (OTHR trades that day, unless `skip_all`), and gaps on Fri 03-15 like `gapper()`."""
    s = gapper(day="2024-03-15", prev_day="2024-03-13")
    if not skip_all:
        s.bar("OTHR", "10:00", 5.0, 5.0, 5.0, 5.0, 1_000, day="2024-03-14")
    s.bar("GAPR", "09:33", 11.4, 12.0, 11.35, 11.9, 40_000)
    return s


def run_with_daily(s: SessionBuilder, daily: dict | None) -> dict:
    from live_runner.core.config import parse_config
    from live_runner.persistence.journal import Journal
    from live_runner.live.node import TradingNode
    from live_runner.live.runs import summarize

    node = TradingNode(parse_config(GG), Journal("sqlite://"))
    if daily is not None:
        node.strategies.set_daily_closes(daily)
    node.start()
    node.feed(s.sorted_bars())
    node.stop()
    return summarize(node, 0.0)


def test_a_symbol_that_skipped_the_previous_session_does_not_qualify() -> None:
    """Its 03-13 close is two sessions old: no gap is taken from it; the count is reported."""
    for skip_all in (False, True):
        summary = run_with_daily(scanner_file(skip_all), None)
        assert summary["signals"] == 0 and summary["trades"] == []
        assert summary["prev_close_missing"] == 1
        assert [d["prev_close_missing"] for d in summary["sessions"]][-1] == 1


def test_the_providers_daily_close_supplies_the_previous_session() -> None:
    from datetime import date

    summary = run_with_daily(scanner_file(), {date(2024, 3, 14): {"GAPR": 10.00}})
    t = one_trade(summary)  # the same trade as test_target_hit_exits_at_the_target_price
    assert (t["qty"], t["entry_price"], t["exit_price"], t["exit_reason"]) == (1785, 11.25, 11.95, "target")
    assert summary["prev_close_missing"] == 0
    # A daily close of 10.60 makes the gap 2.8%: supplied, and refused on its merits.
    summary = run_with_daily(scanner_file(), {date(2024, 3, 14): {"GAPR": 10.60}})
    assert summary["signals"] == 0 and summary["prev_close_missing"] == 0
    # Daily closes of another session are never used.
    summary = run_with_daily(scanner_file(), {date(2024, 3, 13): {"GAPR": 10.00}})
    assert summary["signals"] == 0 and summary["prev_close_missing"] == 1


def test_the_bars_own_previous_close_wins_over_the_daily_close() -> None:
    from datetime import date

    s = gapper()  # GAPR closed 10.00 on 03-14 in the bars
    s.bar("GAPR", "09:33", 11.4, 12.0, 11.35, 11.9, 40_000)
    summary = run_with_daily(s, {date(2024, 3, 14): {"GAPR": 10.60}})
    assert one_trade(summary)["exit_reason"] == "target"
