"""Replays of REAL recorded 1-minute bars (tests/data/README.md says where each file comes from).

Every file replays to the end, no fill lies outside the bar it filled in, two replays give
identical journals, and the trades below were derived by hand from DESIGN.md's rules (derivations
in the docstrings, from the bars quoted there; default config, account 100,000, so risk 1% and the
size cap 20% of equity). Commission: 0.0035/share, min 0.35, rounded to the cent half up, per order.
VWAP is the session's from 09:30, typical price (h+l+c)/3, including the bar compared.
"""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import pytest

from tests.kit.recorded import (
    cli_replay,
    d,
    et_ns,
    fills_outside_their_bar,
    load_bars,
    recorded,
    replay,
    trades,
)

D = Decimal
# file, universe (None: the gap_and_go qualifiers, as a replay without a universe)
FILES = [
    ("slrx_2024-07-23.csv", ["SLRX"]),
    ("cmax_2024-07-22_25.csv", ["CMAX"]),
    ("goog_2015-12-23_24_early_close.csv", ["GOOG"]),
    ("aapl_2014-06-05_09_split.csv", ["AAPL"]),
    ("aapl_2014-06-05_09_split.csv", None),
    ("spy_ibm_2013-10-04_08.csv", ["SPY", "IBM"]),
    ("spy_2011-01-03_05.csv", ["SPY"]),
]


@pytest.mark.parametrize("name,universe", FILES, ids=[f"{n}-{u}" for n, u in FILES])
def test_replays_to_the_end_with_every_fill_inside_its_bar(name: str, universe: list[str] | None,
                                                          tmp_path: Path) -> None:
    path = recorded(name)
    run = replay(path, tmp_path / "j.db", universe=universe)
    s = run.summary
    assert s["bars_processed"] + s["bars_rejected"] == len(load_bars(path))
    assert s["final_positions"] == {} or set(s["final_positions"].values()) == {0}
    assert fills_outside_their_bar(run, load_bars(path)) == []
    assert len(run.kind("fill")) == 2 * len(s["trades"])


@pytest.mark.parametrize("name,universe", [FILES[1], FILES[3]], ids=["cmax", "aapl-split"])
def test_two_replays_give_identical_journals(name: str, universe: list[str], tmp_path: Path) -> None:
    path = recorded(name)
    first = replay(path, tmp_path / "a.db", universe=universe)
    second = replay(path, tmp_path / "b.db", universe=universe)
    assert first.events == second.events
    drop = lambda s: {k: v for k, v in s.items() if k not in ("elapsed_s", "journal")}
    assert drop(first.summary) == drop(second.summary)


def test_cli_replay_of_a_recorded_file_exits_0_with_json(tmp_path: Path) -> None:
    """The operator's command on real data: exit 0 and the --json summary."""
    summary = cli_replay(recorded("slrx_2024-07-23.csv"), tmp_path / "j.db", "SLRX")
    assert summary["bars_processed"] == 543 and len(summary["trades"]) == 2


def test_slrx_small_cap_gapper_trades_derived_by_hand(tmp_path: Path) -> None:
    """SLRX 2024-07-23 (sub-penny prints; no 07-22 bars, so gap_and_go has no prev_close and
    does not qualify): vwap_reclaim, universe [SLRX].

    Trade 1. Closes below VWAP 09:55..10:09 (15 bars). 10:10 bar o 1.92 h 2.18 l 1.88 c 2.18
    v 126784: VWAP 1.990471 < 2.18 (above); mean volume of the 20 previous bars (09:50..10:09, sum
    310608) x 1.5 = 23295.6 <= 126784; 10:10 is in [09:45, 15:30) -> signal. Stop = lowest low of
    09:55..10:10 = 1.78 (09:58). Size at c 2.18, equity 100000: min(floor(1000 / 0.40) = 2500,
    floor(20000 / 2.18) = 9174) = 2500. Market fill at the 10:11 open, 2.179 (a traded price, not
    rounded). Target 2.179 + 2 x 0.399 = 2.977 -> tick 2.98. 10:12/10:17 highs 2.72/2.87;
    10:18 o 2.84 h 3.39 -> target fills at 2.98 (no earlier close below VWAP, no low <= 1.78).
    Commission 8.75 + 8.75 = 17.50; pnl 2500 x (2.98 - 2.179) - 17.50 = 2002.50 - 17.50 = 1985.00.

    Trade 2. Equity 101985.00. Closes below VWAP 11:47..12:14 (28 bars). 12:15 o 4.70 h 4.94
    l 4.6801 c 4.94 v 288625: VWAP 4.824309 < 4.94; 20 previous (11:55..12:14) mean x 1.5 =
    174598.05 <= 288625 -> signal. Stop = lowest low 11:47..12:15 = 4.21 (11:52). Size at c 4.94:
    min(floor(1019.85 / 0.73) = 1397, floor(20397 / 4.94) = 4128) = 1397. Fill 12:16 open 4.92.
    Target 4.92 + 2 x 0.71 = 6.34. 12:20 c 4.81 < VWAP 4.829559 (12:17..12:20 highs <= 5.28,
    lows >= 4.70: neither exit touched) -> vwap_loss, market sell at the 12:21 open 4.795
    (bar 12:21: o 4.795 h 4.89 l 4.7913). Commission 1397 x 0.0035 = 4.8895 -> 4.89, x 2 = 9.78;
    pnl 1397 x (4.795 - 4.92) - 9.78 = -174.625 - 9.78 = -184.405. Max 2 entries: no more.
    """
    run = replay(recorded("slrx_2024-07-23.csv"), tmp_path / "j.db", universe=["SLRX"])
    day = "2024-07-23"
    assert trades(run) == [
        ("SLRX", et_ns(day, "10:10"), D("1.78"), 2500, et_ns(day, "10:11"), D("2.179"), D("2.98"),
         et_ns(day, "10:18"), D("2.98"), "target", D("17.50"), D("1985.00")),
        ("SLRX", et_ns(day, "12:15"), D("4.21"), 1397, et_ns(day, "12:16"), D("4.92"), D("6.34"),
         et_ns(day, "12:21"), D("4.795"), "vwap_loss", D("9.78"), D("-184.405")),
    ]
    assert d(run.summary["realized_pnl"]) == D("1800.595")
    assert d(run.summary["commissions"]) == D("27.28")


def test_cmax_two_gap_days_trades_derived_by_hand(tmp_path: Path) -> None:
    """CMAX 2024-07-22 and 2024-07-25 (a scanner's file of gap days: 07-23/24 are missing, so on
    07-25 gap_and_go has no previous-session close and does not qualify). vwap_reclaim, [CMAX].

    07-22 trade 1: below VWAP 11:02..11:11; 11:12 c 4.00 > VWAP 3.969422, v 400354 >= 1.5 x mean of
    the 20 previous = 359837.4 -> signal, stop = low 3.62 (11:04). Size min(floor(1000 / 0.38) = 2631,
    floor(20000 / 4) = 5000) = 2631; fill 11:13 open 4.00; target 4.76. 11:23 c 3.6977 < VWAP
    3.983115 (lows 11:14..11:23 >= 3.65 > 3.62, highs <= 4.35) -> sell 11:24 open 3.6917.
    Commission 2631 x 0.0035 = 9.2085 -> 9.21, x 2 = 18.42; pnl 2631 x -0.3083 - 18.42 = -829.5573.
    07-22 trade 2: equity 99170.4427. The 11:23 close below VWAP came while held: not counted, so
    the stretch is 11:24..11:43; 11:44 c 3.99 > VWAP 3.973569, v 194599 >= 186518.85 (1.5 x mean) -> stop =
    low 3.68 (11:24). Size min(floor(991.704427 / 0.31) = 3199, floor(19834.08854 / 3.99) =
    4970) = 3199; fill 11:45 open 4.00; target 4.64. 11:58 c 3.96 < VWAP 3.992255 (11:46..11:58
    highs <= 4.46, lows >= 3.90) -> sell 11:59 open 3.96. Commission 3199 x 0.0035 = 11.1965 ->
    11.20, x 2 = 22.40; pnl 3199 x -0.04 - 22.40 = -150.36. Equity 99020.0827.
    07-25 trade 3: below VWAP 09:51..11:23; 11:24 c 4.626 > VWAP 4.545435, v 55377 >= 1.5 x
    395972 / 20 = 29697.9 -> stop = low 3.90 (10:10). Size min(floor(990.200827 / 0.726) = 1363,
    floor(19804.01654 / 4.626) = 4281) = 1363; fill 11:25 open 4.6296; target 4.6296 + 2 x 0.7296
    = 6.0888 -> 6.09. 11:28 c 4.4501 < VWAP 4.548436 -> sell 11:29 open 4.4935 (bar 11:29: o 4.4935
    h 4.648 l 4.4935). Commission 1363 x 0.0035 = 4.7705 -> 4.77, x 2 = 9.54; pnl 1363 x -0.1361
    - 9.54 = -195.0443. Equity 98825.0384.
    07-25 trade 4: 11:29..11:31 below (11:28 was while held), 11:32 above on 33548 < 45692.4: no
    trigger, reset. Below 11:40..12:00; 12:01 c 4.565 > VWAP 4.547544, v 21099 >= 1.5 x 103352 / 20
    = 7751.4 -> stop = low 4.27 (11:48). Size min(floor(988.250384 / 0.295) = 3350,
    floor(19765.00768 / 4.565) = 4329) = 3350; fill 12:02 open 4.5974; target 4.5974 + 2 x 0.3274
    = 5.2522 -> 5.25. The fill bar closes 4.53 < VWAP 4.547535 -> sell 12:03 open 4.52.
    Commission 3350 x 0.0035 = 11.725 -> 11.73 (half up), x 2 = 23.46; pnl 3350 x -0.0774 - 23.46
    = -282.75. Two entries that day: the 12:26 reclaim does not trade.
    """
    run = replay(recorded("cmax_2024-07-22_25.csv"), tmp_path / "j.db", universe=["CMAX"])
    a, b = "2024-07-22", "2024-07-25"
    assert trades(run) == [
        ("CMAX", et_ns(a, "11:12"), D("3.62"), 2631, et_ns(a, "11:13"), D("4"), D("4.76"),
         et_ns(a, "11:24"), D("3.6917"), "vwap_loss", D("18.42"), D("-829.5573")),
        ("CMAX", et_ns(a, "11:44"), D("3.68"), 3199, et_ns(a, "11:45"), D("4"), D("4.64"),
         et_ns(a, "11:59"), D("3.96"), "vwap_loss", D("22.40"), D("-150.36")),
        ("CMAX", et_ns(b, "11:24"), D("3.9"), 1363, et_ns(b, "11:25"), D("4.6296"), D("6.09"),
         et_ns(b, "11:29"), D("4.4935"), "vwap_loss", D("9.54"), D("-195.0443")),
        ("CMAX", et_ns(b, "12:01"), D("4.27"), 3350, et_ns(b, "12:02"), D("4.5974"), D("5.25"),
         et_ns(b, "12:03"), D("4.52"), "vwap_loss", D("23.46"), D("-282.75")),
    ]
    assert d(run.summary["realized_pnl"]) == D("-1457.7116")
    assert d(run.summary["commissions"]) == D("73.82")


def test_spy_2011_premarket_and_a_trade_derived_by_hand(tmp_path: Path) -> None:
    """SPY 2011-01-03..05 (NinjaTrader export, 04:00-20:00 ET): sessions before 2015 replay.

    2011-01-04: closes below VWAP 15:07..15:12 (15:10 c 126.72 < VWAP 126.720123, by 0.000123);
    15:13 o 126.68 h 126.74 l 126.67 c 126.73 v 440492 > VWAP 126.719986, volume >= 1.5 x mean of
    the 20 previous = 231779.55, 15:13 < 15:30 -> signal. Stop = lowest low 15:07..15:13 = 126.66
    (15:09). Size at c 126.73: min(floor(1000 / 0.07) = 14285, floor(20000 / 126.73) = 157) = 157.
    Fill 15:14 open 126.74; target 126.74 + 2 x 0.08 = 126.90. 15:16 c 126.71 < VWAP 126.720017
    (15:15..15:16 highs 126.75, lows >= 126.70) -> sell 15:17 open 126.71. Commission 157 x 0.0035
    = 0.5495 -> 0.55, x 2 = 1.10; pnl 157 x -0.03 - 1.10 = -5.81. No other reclaim qualifies:
    01-03 15:50 and 01-04 14:09 fail the volume test, 01-05 09:33 is before 09:45.
    """
    run = replay(recorded("spy_2011-01-03_05.csv"), tmp_path / "j.db", universe=["SPY"])
    day = "2011-01-04"
    assert trades(run) == [
        ("SPY", et_ns(day, "15:13"), D("126.66"), 157, et_ns(day, "15:14"), D("126.74"), D("126.9"),
         et_ns(day, "15:17"), D("126.71"), "vwap_loss", D("1.10"), D("-5.81")),
    ]
    assert [s["date"] for s in run.summary["sessions"]] == ["2011-01-03", "2011-01-04", "2011-01-05"]


def test_split_day_gap_down_does_not_qualify(tmp_path: Path) -> None:
    """AAPL 7:1 split effective 2014-06-09 (raw, unadjusted prints). The previous session's last
    regular close is 645.57 (2014-06-06 15:59); on 06-09 the first premarket bar opens at the old
    price (o 645.57 h 645.57 l 92.23 c 92.42) and trading goes on near 92: a gap of about -86%.
    gap_and_go does not qualify (it needs +4%), so a replay without a universe trades nothing,
    and the bar with both prices is a valid bar, not a rejection."""
    run = replay(recorded("aapl_2014-06-05_09_split.csv"), tmp_path / "j.db")
    assert run.summary["trades"] == [] and run.summary["signals"] == 0
    assert run.summary["bars_rejected"] == 0
    assert [s["date"] for s in run.summary["sessions"]] == ["2014-06-05", "2014-06-06", "2014-06-09"]


def test_early_close_day_stops_entries_at_its_flatten_time(tmp_path: Path) -> None:
    """GOOG 2015-12-24 (Christmas Eve, close 13:00; prints until 16:11 after the close): the
    session is an early close, flatten time 12:55, and no entry signal is taken at or after it."""
    run = replay(recorded("goog_2015-12-23_24_early_close.csv"), tmp_path / "j.db", universe=["GOOG"])
    starts = {p["early_close"] for ts, _, p in run.kind("session_start") if ts >= et_ns("2015-12-24", "00:00")}
    assert starts == {True}
    late = [ts for ts, _, p in run.kind("signal") if p["side"] == "buy" and ts >= et_ns("2015-12-24", "12:55")]
    assert late == []
    assert run.summary["final_positions"] == {} or set(run.summary["final_positions"].values()) == {0}


def test_gap_day_without_its_previous_session_has_no_prev_close(tmp_path: Path) -> None:
    """CMAX's file holds 07-22 and 07-25 only: on 07-25 the previous session (07-24) has no bars,
    so the 07-22 close (5.19) is not used as prev_close; the symbol does not qualify and each
    session reports the missing previous close (07-22 has none before it either)."""
    run = replay(recorded("cmax_2024-07-22_25.csv"), tmp_path / "j.db")
    assert [(s["date"], s["prev_close_missing"]) for s in run.summary["sessions"]] == [
        ("2024-07-22", 1), ("2024-07-25", 1)]
    assert run.summary["prev_close_missing"] == 2
    assert run.summary["trades"] == [] and run.summary["signals"] == 0
