"""vwap_reclaim through the whole chain, every number asserted.

The base pattern (symbol VWP): 09:30-09:44 flat at 20.00 on 1,000 shares a bar (VWAP 20.00), then
three closes strictly below VWAP (09:45 19.80 / VWAP 19.9896, 09:46 19.70 / 19.9735, 09:47 19.75 /
19.9602; lows 19.70, 19.60, 19.65) and a trigger at 09:48 closing 20.20 above VWAP 19.9708 on 2,000
shares (>= 1.5 * the 1,000 mean of the 18 previous bars). Stop 19.60 (lowest low of the stretch and
the trigger bar); c = 20.20: qty = min(floor(1000 / 0.60), floor(20000 / 20.20)) = min(1666, 990).
Entry at the 09:49 open 20.25; target 20.25 + 2 * 0.65 = 21.55. Commission 990 * 0.0035 = 3.465
-> 3.47 per order.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from live_runner.core.config import parse_config
from live_runner.persistence.journal import Journal
from live_runner.live.node import TradingNode
from live_runner.live.runs import summarize
from tests.kit.sessions import SessionBuilder

VR = {"active_strategies": ["vwap_reclaim"]}

STRETCH = [
    ("09:45", 20.0, 20.0, 19.7, 19.8, 1000),
    ("09:46", 19.8, 19.85, 19.6, 19.7, 1000),
    ("09:47", 19.7, 19.8, 19.65, 19.75, 1000),
]
TRIGGER = ("09:48", 19.75, 20.3, 19.7, 20.2, 2000)
FILL_BAR = ("09:49", 20.25, 20.4, 20.1, 20.3, 1500)


def run(s: SessionBuilder, universe: list[str] | None = None,
        session_universe: list[str] | None = None, **config: Any) -> tuple[TradingNode, dict]:
    """Like SessionBuilder.run, but with a config `universe:` (the builder's `universe` argument
    is the session universe from Dagster)."""
    cfg = parse_config({**VR, **config, **({"universe": universe} if universe else {})})
    node = TradingNode(cfg, Journal("sqlite://"), universe=session_universe)
    node.start()
    node.feed(s.sorted_bars())
    node.stop()
    return node, summarize(node, 0.0)


def add(s: SessionBuilder, sym: str, rows: list[tuple]) -> SessionBuilder:
    for hhmm, o, h, l, c, v in rows:
        s.bar(sym, hhmm, o, h, l, c, v)
    return s


def setup(sym: str = "VWP", s: SessionBuilder | None = None) -> SessionBuilder:
    """Base, stretch, trigger and the fill bar (see the module docstring)."""
    s = s or SessionBuilder()
    s.flat(sym, "09:30", "09:44", 20.0, 1000)
    return add(s, sym, STRETCH + [TRIGGER, FILL_BAR])


def one_trade(summary: dict) -> dict:
    assert len(summary["trades"]) == 1, summary["trades"]
    return summary["trades"][0]


def exits(node: TradingNode, symbol: str = "VWP") -> dict[str, Any]:
    return {o.request.role.value: o for o in node.orders.orders.values()
            if o.request.symbol == symbol and o.request.role.value in ("stop", "target")}


# --- trades ----------------------------------------------------------------------------------

def test_reclaim_target() -> None:
    s = setup()
    s.bar("VWP", "09:50", 20.3, 21.6, 20.25, 21.5, 1500)
    node, summary = run(s, universe=["VWP"])
    assert summary["signals"] == 1
    t = one_trade(summary)
    assert (t["strategy"], t["qty"], t["entry_price"], t["entry_time"]) == (
        "vwap_reclaim", 990, 20.25, "2024-03-15T13:49:00Z")
    ex = exits(node)
    assert ex["stop"].request.stop_price == 19.60 and ex["stop"].request.qty == 990
    assert ex["target"].request.limit_price == 21.55 and ex["target"].request.qty == 990
    assert (t["exit_price"], t["exit_reason"], t["exit_time"]) == (21.55, "target", "2024-03-15T13:50:00Z")
    assert t["commission"] == "6.94"
    assert Decimal(t["pnl"]) == Decimal("1280.06")  # 1.30 * 990 - 6.94


def test_reclaim_stop_beats_vwap_loss() -> None:
    """09:50 trades through the stop and closes below VWAP: the stop fills, no vwap_loss order."""
    s = setup()
    s.bar("VWP", "09:50", 20.0, 20.1, 19.5, 19.55, 1500)
    s.bar("VWP", "09:51", 19.55, 19.7, 19.5, 19.6, 1000)
    node, summary = run(s, universe=["VWP"])
    t = one_trade(summary)
    assert (t["exit_price"], t["exit_reason"], t["exit_time"]) == (19.60, "stop", "2024-03-15T13:50:00Z")
    assert Decimal(t["pnl"]) == Decimal("-650.44")  # -0.65 * 990 - 6.94
    assert summary["orders_submitted"] == 3
    assert not [o for o in node.orders.orders.values() if o.request.role.value == "vwap_loss"]


def test_vwap_loss_sells_at_the_next_open() -> None:
    """09:50 closes 19.80 below VWAP 19.99 (low 19.75 above the stop): market sell, 09:51 open."""
    s = setup()
    s.bar("VWP", "09:50", 20.3, 20.35, 19.75, 19.8, 1500)
    s.bar("VWP", "09:51", 19.85, 19.9, 19.8, 19.85, 1000)
    node, summary = run(s, universe=["VWP"])
    t = one_trade(summary)
    assert (t["exit_price"], t["exit_reason"], t["exit_time"]) == (19.85, "vwap_loss", "2024-03-15T13:51:00Z")
    assert Decimal(t["pnl"]) == Decimal("-402.94")  # -0.40 * 990 - 6.94
    ex = exits(node)
    assert ex["stop"].status.value == "canceled" and ex["target"].status.value == "canceled"
    [sell] = [o for o in node.orders.orders.values() if o.request.role.value == "vwap_loss"]
    assert sell.request.order_type.value == "market" and sell.request.qty == 990


def test_vwap_loss_on_the_fill_bar_itself() -> None:
    s = SessionBuilder()
    s.flat("VWP", "09:30", "09:44", 20.0, 1000)
    add(s, "VWP", STRETCH + [TRIGGER])
    s.bar("VWP", "09:49", 20.25, 20.3, 19.7, 19.8, 1500)  # fill bar closes below VWAP 19.968
    s.bar("VWP", "09:50", 19.85, 19.9, 19.8, 19.85, 1000)
    _, summary = run(s, universe=["VWP"])
    t = one_trade(summary)
    assert (t["entry_time"], t["entry_price"]) == ("2024-03-15T13:49:00Z", 20.25)
    assert (t["exit_price"], t["exit_reason"], t["exit_time"]) == (19.85, "vwap_loss", "2024-03-15T13:50:00Z")


def test_vwap_includes_the_current_bar_trigger() -> None:
    """09:48 closes 19.90: below the VWAP of the bars before it (19.960) but above the VWAP with
    itself (19.813, its 5,000 shares at typical 19.283): a trigger. Stop = its low 18.00;
    qty = min(floor(1000 / 1.90), floor(20000 / 19.90)) = min(526, 1005) = 526."""
    s = SessionBuilder()
    s.flat("VWP", "09:30", "09:44", 20.0, 1000)
    add(s, "VWP", STRETCH + [("09:48", 19.75, 19.95, 18.0, 19.9, 5000),
                             ("09:49", 19.9, 20.0, 19.85, 19.95, 1000),
                             ("09:50", 19.95, 20.1, 19.9, 20.0, 1000)])
    node, summary = run(s, universe=["VWP"])
    assert summary["signals"] == 1
    t = one_trade(summary)
    assert (t["qty"], t["entry_price"], t["entry_time"]) == (526, 19.90, "2024-03-15T13:49:00Z")
    ex = exits(node)
    assert ex["stop"].request.stop_price == 18.00
    assert ex["target"].request.limit_price == 23.70  # 19.90 + 2 * 1.90
    # the feed ends after 09:50: the session end flattens at the last close
    assert (t["exit_reason"], t["exit_price"]) == ("eod", 20.0)
    assert Decimal(t["pnl"]) == Decimal("52.60") - Decimal("3.68")


def test_vwap_includes_the_current_bar_no_trigger() -> None:
    """09:48 closes 20.00: above the VWAP before it (19.960) but below the VWAP with itself
    (20.056): not a reclaim."""
    s = SessionBuilder()
    s.flat("VWP", "09:30", "09:44", 20.0, 1000)
    add(s, "VWP", STRETCH + [("09:48", 19.75, 21.5, 19.7, 20.0, 5000),
                             ("09:49", 20.0, 20.1, 19.9, 20.0, 1000)])
    _, summary = run(s, universe=["VWP"])
    assert summary["signals"] == 0 and summary["trades"] == []


def test_at_most_two_entries_per_symbol() -> None:
    """Trade 1 stops out at 09:50; 09:50-09:52 close below VWAP (lowest low 19.45) and 09:53
    reclaims on 4,000 shares: trade 2, sized off equity 99,349.56:
    min(floor(993.4956 / 0.65), floor(19869.912 / 20.10)) = min(1528, 988) = 988, filled at the
    09:54 open 20.15, stopped at 19.45 on 09:55. A third valid setup (09:55-09:57, 09:58 on 5,000
    shares) gives no signal."""
    s = setup()
    add(s, "VWP", [
        ("09:50", 20.0, 20.1, 19.5, 19.55, 1500),
        ("09:51", 19.55, 19.7, 19.5, 19.6, 1000),
        ("09:52", 19.6, 19.7, 19.45, 19.65, 1000),
        ("09:53", 19.65, 20.2, 19.6, 20.1, 4000),
        ("09:54", 20.15, 20.3, 20.1, 20.2, 1000),
        ("09:55", 20.2, 20.25, 19.4, 19.45, 1000),
        ("09:56", 19.45, 19.6, 19.4, 19.5, 1000),
        ("09:57", 19.5, 19.6, 19.45, 19.55, 1000),
        ("09:58", 19.55, 20.3, 19.5, 20.2, 5000),
        ("09:59", 20.2, 20.3, 20.1, 20.2, 1000),
        ("10:00", 20.2, 20.3, 20.1, 20.2, 1000),
    ])
    node, summary = run(s, universe=["VWP"])
    assert summary["signals"] == 2
    first, second = summary["trades"]
    assert (first["exit_reason"], Decimal(first["pnl"])) == ("stop", Decimal("-650.44"))
    assert (second["qty"], second["entry_price"], second["entry_time"]) == (988, 20.15, "2024-03-15T13:54:00Z")
    assert (second["exit_price"], second["exit_reason"]) == (19.45, "stop")
    assert second["commission"] == "6.92"  # 988 * 0.0035 = 3.458 -> 3.46 per order
    assert Decimal(second["pnl"]) == Decimal("-698.52")  # -0.70 * 988 - 6.92
    stops = sorted(o.request.stop_price for o in node.orders.orders.values() if o.request.role.value == "stop")
    assert stops == [19.45, 19.60]

    # the third setup is a real one: allowed a third entry, it signals at 09:58
    _, summary = run(s, universe=["VWP"], strategies={"vwap_reclaim": {"max_entries_per_symbol": 3}})
    assert summary["signals"] == 3
    assert summary["trades"][-1]["entry_time"] == "2024-03-15T13:59:00Z"


def test_no_trigger_while_a_position_in_the_symbol_is_open() -> None:
    """GAPV is bought by gap_and_go at 09:32 (stop 9.90, target 10.50) and still held when a
    valid vwap_reclaim setup completes at 09:48: vwap_reclaim stays silent."""
    s = SessionBuilder()
    s.prev_close("GAPV", 9.00)
    s.bar("GAPV", "08:00", 9.8, 10.0, 9.7, 9.9, 60_000)
    s.bar("GAPV", "09:30", 9.9, 10.0, 9.85, 9.95, 1000)
    s.bar("GAPV", "09:31", 9.95, 10.2, 9.9, 10.1, 1000)  # close > pm_high 10.00: gap_and_go
    s.flat("GAPV", "09:32", "09:44", 10.1, 1000)
    add(s, "GAPV", [
        ("09:45", 10.1, 10.1, 9.95, 10.0, 1000),
        ("09:46", 10.0, 10.05, 9.95, 10.0, 1000),
        ("09:47", 10.0, 10.05, 9.96, 10.02, 1000),
        ("09:48", 10.02, 10.35, 10.0, 10.3, 3000),  # closes above VWAP on 3x volume
        ("09:49", 10.3, 10.35, 10.25, 10.3, 1000),
    ])
    # control: without the gap_and_go position, the 09:48 bar is a vwap_reclaim trigger
    _, alone = run(s, universe=["GAPV"])
    assert alone["signals"] == 1
    assert alone["trades"][0]["entry_time"] == "2024-03-15T13:49:00Z"

    node, both = run(s, active_strategies=["gap_and_go", "vwap_reclaim"])
    assert both["signals"] == 1
    [t] = both["trades"]
    assert (t["strategy"], t["entry_time"], t["exit_reason"]) == ("gap_and_go", "2024-03-15T13:32:00Z", "eod")
    assert both["risk_denials"] == {}


# --- no trade --------------------------------------------------------------------------------

def test_trigger_volume_too_low_resets_the_setup() -> None:
    """09:48 reclaims on 1,400 < 1,500 shares: no trigger, and the stretch is spent: 09:49 closes
    above VWAP on 5,000 shares (enough) but needs a new stretch. 09:50-09:52 below (lows 19.70,
    19.75, 19.80), 09:53 reclaims on 5,000 >= 1.5 * 1,220: entry at 09:54, stop 19.70,
    qty = min(floor(1000 / 0.70), floor(20000 / 20.40)) = min(1428, 980)."""
    s = SessionBuilder()
    s.flat("VWP", "09:30", "09:44", 20.0, 1000)
    add(s, "VWP", STRETCH + [
        ("09:48", 19.75, 20.3, 19.7, 20.2, 1400),
        ("09:49", 20.2, 20.4, 20.1, 20.3, 5000),
        ("09:50", 20.3, 20.3, 19.7, 19.8, 1000),
        ("09:51", 19.8, 19.9, 19.75, 19.85, 1000),
        ("09:52", 19.85, 19.9, 19.8, 19.85, 1000),
        ("09:53", 19.85, 20.5, 19.8, 20.4, 5000),
        ("09:54", 20.4, 20.5, 20.3, 20.45, 1000),
    ])
    node, summary = run(s, universe=["VWP"])
    assert summary["signals"] == 1
    t = one_trade(summary)
    assert (t["entry_time"], t["entry_price"], t["qty"]) == ("2024-03-15T13:54:00Z", 20.4, 980)
    assert exits(node)["stop"].request.stop_price == 19.70

    # the same session cut before the second stretch: nothing at all
    s.bars = s.bars[:-5]
    _, summary = run(s, universe=["VWP"])
    assert summary["signals"] == 0 and summary["trades"] == []


def test_only_two_bars_below_is_no_setup() -> None:
    s = SessionBuilder()
    s.flat("VWP", "09:30", "09:44", 20.0, 1000)
    add(s, "VWP", STRETCH[:2] + [("09:47", 19.7, 20.3, 19.7, 20.2, 3000),
                                 ("09:48", 20.25, 20.4, 20.1, 20.3, 1500)])
    _, summary = run(s, universe=["VWP"])
    assert summary["signals"] == 0 and summary["trades"] == []

    # control: min_bars_below is the key that decides it
    _, summary = run(s, universe=["VWP"], strategies={"vwap_reclaim": {"min_bars_below": 2}})
    assert summary["signals"] == 1


def shifted_setup(base_end: str, times: list[str]) -> SessionBuilder:
    """Flat base 09:30..base_end, then the stretch and trigger at `times` (4 minutes)."""
    s = SessionBuilder()
    s.flat("VWP", "09:30", base_end, 20.0, 1000)
    rows = [(t, *r[1:]) for t, r in zip(times, STRETCH + [TRIGGER])]
    add(s, "VWP", rows)
    return s


def test_trigger_before_0945_is_ignored() -> None:
    s = shifted_setup("09:34", ["09:35", "09:36", "09:37", "09:38"])
    s.flat("VWP", "09:39", "09:50", 20.3, 1000)  # stays above VWAP: no later setup
    _, summary = run(s, universe=["VWP"])
    assert summary["signals"] == 0 and summary["trades"] == []


def test_trigger_at_0945_is_in_the_window() -> None:
    s = shifted_setup("09:41", ["09:42", "09:43", "09:44", "09:45"])
    s.bar("VWP", "09:46", 20.25, 20.4, 20.1, 20.3, 1000)
    _, summary = run(s, universe=["VWP"])
    assert summary["signals"] == 1
    assert one_trade(summary)["entry_time"] == "2024-03-15T13:46:00Z"


def test_trigger_window_ends_before_1530() -> None:
    s = SessionBuilder()
    s.flat("VWP", "09:30", "15:26", 20.0, 1000)
    add(s, "VWP", [("15:27", *STRETCH[0][1:]), ("15:28", *STRETCH[1][1:]), ("15:29", *STRETCH[2][1:]),
                   ("15:30", *TRIGGER[1:]), ("15:31", *FILL_BAR[1:])])
    _, summary = run(s, universe=["VWP"])
    assert summary["signals"] == 0

    s = SessionBuilder()
    s.flat("VWP", "09:30", "15:25", 20.0, 1000)
    add(s, "VWP", [("15:26", *STRETCH[0][1:]), ("15:27", *STRETCH[1][1:]), ("15:28", *STRETCH[2][1:]),
                   ("15:29", *TRIGGER[1:]), ("15:30", *FILL_BAR[1:])])
    _, summary = run(s, universe=["VWP"])
    assert summary["signals"] == 1
    assert one_trade(summary)["entry_time"] == "2024-03-15T19:30:00Z"


def test_fewer_than_five_previous_bars_is_no_trigger() -> None:
    """The symbol's first regular bar is at 09:45: at 09:49 only 4 bars precede the reclaim."""
    s = SessionBuilder()
    s.flat("VWP", "09:45", "09:45", 20.0, 1000)
    add(s, "VWP", [("09:46", *STRETCH[0][1:]), ("09:47", *STRETCH[1][1:]), ("09:48", *STRETCH[2][1:]),
                   ("09:49", *TRIGGER[1:]), ("09:50", *FILL_BAR[1:])])
    _, summary = run(s, universe=["VWP"])
    assert summary["signals"] == 0

    # control: one more bar before (09:44) makes five
    s.flat("VWP", "09:44", "09:44", 20.0, 1000)
    _, summary = run(s, universe=["VWP"])
    assert summary["signals"] == 1
    assert one_trade(summary)["entry_time"] == "2024-03-15T13:50:00Z"


def test_symbol_outside_the_config_universe_is_not_traded() -> None:
    _, summary = run(setup(), universe=["OTHER"])
    assert summary["signals"] == 0 and summary["orders_submitted"] == 0


def two_symbols() -> SessionBuilder:
    """VWP (no gap) and GAPV (a gapper: prev 19.00, premarket 19.95 on 60k shares, 5%), both with
    the same reclaim pattern."""
    s = SessionBuilder()
    s.prev_close("VWP", 20.00)
    s.prev_close("GAPV", 19.00)
    s.bar("GAPV", "08:00", 19.9, 20.0, 19.8, 19.95, 60_000)
    setup("VWP", s)
    setup("GAPV", s)
    return s


def test_without_a_universe_the_gap_and_go_qualifiers_are_the_universe() -> None:
    node, summary = run(two_symbols())
    assert [t["symbol"] for t in summary["trades"]] == ["GAPV"]
    assert node.strategies.universe_snapshot() == ["GAPV"]


def test_session_universe_and_config_override() -> None:
    _, summary = run(two_symbols(), session_universe=["VWP"])
    assert [t["symbol"] for t in summary["trades"]] == ["VWP"]
    # a config list overrides the session universe
    _, summary = run(two_symbols(), universe=["GAPV"], session_universe=["VWP"])
    assert [t["symbol"] for t in summary["trades"]] == ["GAPV"]


# --- edges, decided (DESIGN.md) -------------------------------------------------------------------

def late_setup(day: str, prev_day: str, trigger: str) -> SessionBuilder:
    """Flat at 20.00 from 09:30, the base stretch on the three minutes before `trigger`, and the
    trigger bar (as in the module docstring, moved late in the day)."""
    h, m = (int(x) for x in trigger.split(":"))
    t = h * 60 + m
    hhmm = [f"{(t + k) // 60:02d}:{(t + k) % 60:02d}" for k in (-4, -3, -2, -1, 0, 1)]
    s = SessionBuilder(day=day, prev_day=prev_day)
    s.flat("VWP", "09:30", hhmm[0], 20.0, 1000)
    rows = [(hhmm[1 + i], *r[1:]) for i, r in enumerate(STRETCH)] + [(hhmm[4], *TRIGGER[1:]),
                                                                     (hhmm[5], *FILL_BAR[1:])]
    return add(s, "VWP", rows)


def test_no_entry_from_the_flatten_time_on() -> None:
    """entry_end 16:00 in the config: a trigger bar starting 15:54 closes at 15:55 (the flatten
    time) and is refused (TRADING_HOURS); one starting 15:53 closes before it and is bought."""
    late = {"strategies": {"vwap_reclaim": {"entry_end": "16:00"}}}
    node, summary = run(late_setup("2024-03-15", "2024-03-14", "15:54"), universe=["VWP"], **late)
    assert summary["signals"] == 1 and summary["risk_denials"] == {"TRADING_HOURS": 1}
    assert summary["trades"] == [] and summary["orders_submitted"] == 0
    node, summary = run(late_setup("2024-03-15", "2024-03-14", "15:53"), universe=["VWP"], **late)
    t = one_trade(summary)
    assert (t["entry_time"], t["exit_reason"]) == ("2024-03-15T19:54:00Z", "eod")


def test_no_entry_from_the_early_close_flatten_on() -> None:
    """2024-11-29 closes at 13:00: flatten 12:55, so a trigger bar starting 12:54 is refused."""
    node, summary = run(late_setup("2024-11-29", "2024-11-27", "12:54"), universe=["VWP"])
    assert summary["risk_denials"] == {"TRADING_HOURS": 1} and summary["trades"] == []
    node, summary = run(late_setup("2024-11-29", "2024-11-27", "12:53"), universe=["VWP"])
    assert one_trade(summary)["entry_time"] == "2024-11-29T17:54:00Z"


def test_vwap_loss_and_eod_on_the_same_bar_is_a_vwap_loss() -> None:
    """Held from 09:49; the 15:55 bar (the flatten bar) closes 19.90 below VWAP (low 19.85 above
    the 19.60 stop): one market sell at the 15:56 open, reason vwap_loss."""
    s = setup()
    s.flat("VWP", "09:50", "15:54", 20.3, 1000)
    s.bar("VWP", "15:55", 20.3, 20.3, 19.85, 19.9, 1000)
    s.bar("VWP", "15:56", 19.95, 20.0, 19.9, 19.95, 1000)
    node, summary = run(s, universe=["VWP"])
    t = one_trade(summary)
    assert (t["exit_price"], t["exit_reason"], t["exit_time"]) == (19.95, "vwap_loss", "2024-03-15T19:56:00Z")
    sells = [o for o in node.orders.orders.values() if o.request.side.value == "sell"
             and o.request.order_type.value == "market"]
    assert [o.request.role.value for o in sells] == ["vwap_loss"]


def test_bars_below_vwap_while_held_do_not_start_the_next_stretch() -> None:
    """09:50 closes below VWAP while held (vwap_loss, sold at the 09:51 open); 09:51 and 09:52
    close below too: two bars of a new stretch, not three, so 09:53's reclaim is no trigger. With
    one more bar below (09:53), 09:54's reclaim is the second entry."""
    def session(extra_below: bool) -> SessionBuilder:
        s = setup()
        rows = [("09:50", 20.2, 20.25, 19.8, 19.85, 1000), ("09:51", 19.85, 19.9, 19.75, 19.8, 1000),
                ("09:52", 19.8, 19.85, 19.7, 19.75, 1000)]
        if extra_below:
            rows.append(("09:53", 19.75, 19.8, 19.7, 19.72, 1000))
        t = "09:54" if extra_below else "09:53"
        rows += [(t, 19.75, 20.5, 19.7, 20.4, 8000), ("09:55" if extra_below else "09:54", 20.4, 20.5, 20.3, 20.4, 1000)]
        return add(s, "VWP", rows)

    _, summary = run(session(False), universe=["VWP"])
    assert summary["signals"] == 2  # the entry and its vwap_loss; no new trigger
    assert [t["exit_reason"] for t in summary["trades"]] == ["vwap_loss"]
    _, summary = run(session(True), universe=["VWP"])
    assert summary["signals"] == 3
    assert [t["entry_time"] for t in summary["trades"]][:2] == ["2024-03-15T13:49:00Z", "2024-03-15T13:55:00Z"]
