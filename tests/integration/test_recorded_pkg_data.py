"""Replays of REAL recorded 1-minute bars that are committed (tests/data/recorded_pkg/): AAPL, IBM,
MSFT and NVDA, every regular-session minute of January 2023, from pyqstrat 1.0.2's sdist (BSD-3;
provenance, checksums and conversion in tests/data/README.md). Never skipped: CI replays them.

Every file replays to the end, alone and the four together, no fill lies outside the bar it
filled in, two replays give identical journals, and the trades below were derived by hand from
DESIGN.md's rules (vwap_reclaim; default config: account 100,000, risk 1% of equity, size cap 20%
of equity, target 2R, stop and target rounded to the cent half up; commission 0.0035/share, min
0.35, to the cent half up, per order). VWAP is the session's from 09:30, typical price
(h+l+c)/3 x volume, including the bar compared. Times are New York bar starts (the package stamps
bars at their end: its 09:31:00 row is the 09:30 bar here). The VWAPs, sums and lows quoted were
recomputed from the file with Decimal by a script written from DESIGN.md alone, not by the runner.
"""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import pytest

from tests.kit.recorded import (
    cli_replay,
    committed,
    d,
    et_ns,
    fills_outside_their_bar,
    load_bars,
    merged,
    replay,
    trades,
)

D = Decimal
FILES = ["aapl_2023-01.csv", "ibm_2023-01.csv", "msft_2023-01.csv", "nvda_2023-01.csv"]
SYMBOLS = ["AAPL", "IBM", "MSFT", "NVDA"]
# XNYS sessions of January 2023: 01-02 (New Year observed) and 01-16 (Martin Luther King Jr. Day) closed.
SESSIONS = ["2023-01-03", "2023-01-04", "2023-01-05", "2023-01-06", "2023-01-09", "2023-01-10",
            "2023-01-11", "2023-01-12", "2023-01-13", "2023-01-17", "2023-01-18", "2023-01-19",
            "2023-01-20", "2023-01-23", "2023-01-24", "2023-01-25", "2023-01-26", "2023-01-27",
            "2023-01-30"]


def all_four(tmp_path: Path) -> Path:
    return merged([committed(n) for n in FILES], tmp_path / "all_2023-01.csv")


@pytest.mark.parametrize("name", [*FILES, "all"])
def test_replays_to_the_end_with_every_fill_inside_its_bar(name: str, tmp_path: Path) -> None:
    path = all_four(tmp_path) if name == "all" else committed(name)
    universe = SYMBOLS if name == "all" else [name.split("_")[0].upper()]
    run = replay(path, tmp_path / "j.db", universe=universe)
    s = run.summary
    bars = load_bars(path)
    assert s["bars_processed"] == len(bars) and s["bars_rejected"] == 0
    assert [x["date"] for x in s["sessions"]] == SESSIONS
    assert s["final_positions"] == {} or set(s["final_positions"].values()) == {0}
    assert fills_outside_their_bar(run, bars) == []
    assert len(run.kind("fill")) == 2 * len(s["trades"]) > 0


def test_files_are_every_regular_minute_of_the_month() -> None:
    """390 bars a session (09:30..15:59), but for IBM's one missing minute, kept as recorded."""
    counts = {n: len(load_bars(committed(n))) for n in FILES}
    assert counts == {"aapl_2023-01.csv": 7410, "ibm_2023-01.csv": 7409,
                      "msft_2023-01.csv": 7410, "nvda_2023-01.csv": 7410}


def test_two_replays_of_the_four_symbols_give_identical_journals(tmp_path: Path) -> None:
    path = all_four(tmp_path)
    first = replay(path, tmp_path / "a.db", universe=SYMBOLS)
    second = replay(path, tmp_path / "b.db", universe=SYMBOLS)
    assert first.events == second.events and len(first.summary["trades"]) > 0
    drop = lambda s: {k: v for k, v in s.items() if k not in ("elapsed_s", "journal")}
    assert drop(first.summary) == drop(second.summary)


def test_regular_hours_only_no_symbol_qualifies_for_gap_and_go(tmp_path: Path) -> None:
    """The files have no premarket bars (premarket volume 0 < 50,000): a replay without a
    universe takes none of the four symbols on any session, so nothing trades."""
    run = replay(all_four(tmp_path), tmp_path / "j.db")
    assert [x["universe"] for x in run.summary["sessions"]] == [[]] * len(SESSIONS)
    assert run.summary["signals"] == 0 and run.summary["trades"] == []


def test_cli_replay_of_a_committed_file_exits_0_with_json(tmp_path: Path) -> None:
    summary = cli_replay(committed("msft_2023-01.csv"), tmp_path / "j.db", "MSFT")
    assert summary["bars_processed"] == 7410 and len(summary["trades"]) == 12


def test_msft_first_four_trades_derived_by_hand(tmp_path: Path) -> None:
    """MSFT, January 2023, universe [MSFT]. 01-03: every reclaim fails (15:12 v 36603 < 1.5 x
    642886 / 20 = 48216.45; 15:32, 15:39 likewise), so no trade.

    Trade 1 (01-04). 09:39 reclaim is before 09:45; 10:44 fails (138790 < 145183.65). Closes below
    VWAP 10:49..11:28 (40 bars); 11:29 o 228.17 h 228.8 l 228.17 c 228.67 v 158514, VWAP 228.187165
    < 228.67; 20 previous bars sum 1931665, x 1.5 / 20 = 144874.875 <= 158514 -> signal. Stop =
    lowest low 10:49..11:29 = 226.73 (11:06). Size at c 228.67, equity 100000: min(floor(1000 /
    1.94) = 515, floor(20000 / 228.67) = 87) = 87. Fill at the 11:30 open 228.66; target 228.66 +
    2 x 1.93 = 232.52. 11:30..12:55: highs <= 229.7999, lows >= 228.36, closes above VWAP (closest
    12:06, +0.081386). 12:56 c 228.29 < VWAP 228.425623 -> vwap_loss, sell at the 12:57 open
    228.2901. Commission 87 x 0.0035 = 0.3045 -> min 0.35, x 2 = 0.70; pnl 87 x -0.3699 - 0.70 =
    -32.1813 - 0.70 = -32.8813.

    Trade 2 (01-04). Equity 99967.1187. 13:16 fails (48772 < 85908.825). Below 14:00..14:59 (60
    bars); 15:00 o 228.25 h 228.84 l 228.24 c 228.5838 v 99349 > VWAP 228.262114, 1.5 x 1167302 /
    20 = 87547.65 <= 99349 -> signal. Stop = low 225.96 (14:29). Size min(floor(999.671187 /
    2.6238) = 381, floor(19993.42374 / 228.5838) = 87) = 87. Fill 15:01 open 228.57; target
    228.57 + 2 x 2.61 = 233.79. 15:01..15:04 highs <= 228.612, lows >= 228.24, closes above VWAP;
    15:05 c 228.2427 < VWAP 228.263138 -> sell at the 15:06 open 228.2686. Commission 0.70; pnl
    87 x -0.3014 - 0.70 = -26.2218 - 0.70 = -26.9218. (15:16 reclaim, v 84776 >= 82411.65: refused, 2 entries that
    day; 15:53 is after 15:30.)

    Trade 3 (01-05). Equity 99940.1969. 09:53 fails (96447 < 208235.475). Below 10:31..14:35 (245
    bars); 14:36 o 223.75 h 224.28 l 223.72 c 224.18 v 181717 > VWAP 223.838704, 1.5 x 928227 / 20
    = 69617.025 -> signal. Lowest low 221.7602 (13:16, a sub-penny print) -> stop 221.76 (the
    cent, half up). Size min(floor(999.401969 / 2.42) = 412, floor(19988.03938 / 224.18) = 89) =
    89. Fill 14:37 open 224.16; target 224.16 + 2 x 2.40 = 228.96. 14:37..15:03 highs <= 224.68,
    lows >= 223.83, closes above VWAP; 15:04 c 223.825 < VWAP 223.868472 -> sell at the 15:05
    open 223.81. Commission 89 x 0.0035 = 0.3115 -> 0.35, x 2 = 0.70; pnl 89 x -0.35 - 0.70 = -31.85.

    Trade 4 (01-06). Equity 99908.3469. Below 09:36..10:06 (31 bars); 10:07 o 220.6 h 221.26
    l 220.51 c 221.25 v 229207 > VWAP 220.894081, 1.5 x 2711732 / 20 = 203379.90 -> signal.
    Stop = low 219.35 (09:50). Size min(floor(999.083469 / 1.90) = 525, floor(19981.66938 /
    221.25) = 90) = 90. Fill 10:08 open 221.3; target 221.3 + 2 x 1.95 = 225.20. The fill bar
    closes 220.9, above VWAP 220.898693 by 0.001307: held. 10:08..14:18 highs <= 225.06, lows >=
    220.76, no close below VWAP; 14:19 o 224.93 h 225.34 -> the target fills at 225.20.
    Commission 90 x 0.0035 = 0.315 -> 0.35, x 2 = 0.70; pnl 90 x 3.90 - 0.70 = 350.30.

    The month's other 8 trades (all vwap_loss) were recomputed the same way: 12 trades, realized
    pnl 135.7901, commissions 12 x 0.70 = 8.40.
    """
    run = replay(committed("msft_2023-01.csv"), tmp_path / "j.db", universe=["MSFT"])
    a, b, c = "2023-01-04", "2023-01-05", "2023-01-06"
    assert trades(run)[:4] == [
        ("MSFT", et_ns(a, "11:29"), D("226.73"), 87, et_ns(a, "11:30"), D("228.66"), D("232.52"),
         et_ns(a, "12:57"), D("228.2901"), "vwap_loss", D("0.70"), D("-32.8813")),
        ("MSFT", et_ns(a, "15:00"), D("225.96"), 87, et_ns(a, "15:01"), D("228.57"), D("233.79"),
         et_ns(a, "15:06"), D("228.2686"), "vwap_loss", D("0.70"), D("-26.9218")),
        ("MSFT", et_ns(b, "14:36"), D("221.76"), 89, et_ns(b, "14:37"), D("224.16"), D("228.96"),
         et_ns(b, "15:05"), D("223.81"), "vwap_loss", D("0.70"), D("-31.85")),
        ("MSFT", et_ns(c, "10:07"), D("219.35"), 90, et_ns(c, "10:08"), D("221.3"), D("225.2"),
         et_ns(c, "14:19"), D("225.2"), "target", D("0.70"), D("350.30")),
    ]
    assert len(run.summary["trades"]) == 12
    assert d(run.summary["realized_pnl"]) == D("135.7901")
    assert d(run.summary["commissions"]) == D("8.40")


def test_nvda_one_session_vwap_loss_on_the_fill_bar_and_eod_exit_derived_by_hand(tmp_path: Path) -> None:
    """NVDA 2023-01-11 alone (its 390 bars cut from the month's file), universe [NVDA].

    09:35 reclaim is before 09:45; 10:08 fails (53815 < 1.5 x 2396184 / 20 = 179713.80).
    Trade 1. Below 10:09..10:13 (5 bars); 10:14 o 157.12 h 157.74 l 157.12 c 157.515 v 140390 >
    VWAP 157.328930, 1.5 x 1844635 / 20 = 138347.625 <= 140390 -> signal. Stop = low 156.78
    (10:11). Size min(floor(1000 / 0.735) = 1360, floor(20000 / 157.515) = 126) = 126. Fill at the
    10:15 open 157.48; target 157.48 + 2 x 0.70 = 158.88. The fill bar itself closes 157.27 <
    VWAP 157.328491 (stop and target are active from the next bar) -> vwap_loss, sell at the 10:16
    open 157.27. Commission 126 x 0.0035 = 0.441 -> 0.44, x 2 = 0.88; pnl 126 x -0.21 - 0.88 =
    -26.46 - 0.88 = -27.34.
    Trade 2. Equity 99972.66. The 10:15 close below VWAP came while held: not counted. Below
    10:34..11:42 (69 bars); 11:43 o 157.18 h 157.48 l 157.17 c 157.4525 v 78342 > VWAP 157.266250,
    1.5 x 765802 / 20 = 57435.15 -> signal. Lowest low 156.1301 (10:55) -> stop 156.13. Size
    min(floor(999.7266 / 1.3225) = 755, floor(19994.532 / 157.4525) = 126) = 126. Fill 11:44 open
    157.45; target 157.45 + 2 x 1.32 = 160.09. 11:44..15:55: highs <= 159.83 < 160.09, lows >=
    157.34 > 156.13, closes at least 0.150236 above VWAP. 15:55 is the first bar at or after the
    flatten time: market sell at the 15:56 open 159.778 (a sub-penny print, not rounded).
    Commission 0.88; pnl 126 x 2.328 - 0.88 = 293.328 - 0.88 = 292.448. Realized 265.108.
    """
    path = merged([committed("nvda_2023-01.csv")], tmp_path / "nvda_2023-01-11.csv", day="2023-01-11")
    run = replay(path, tmp_path / "j.db", universe=["NVDA"])
    day = "2023-01-11"
    assert run.summary["bars_processed"] == 390
    assert trades(run) == [
        ("NVDA", et_ns(day, "10:14"), D("156.78"), 126, et_ns(day, "10:15"), D("157.48"), D("158.88"),
         et_ns(day, "10:16"), D("157.27"), "vwap_loss", D("0.88"), D("-27.34")),
        ("NVDA", et_ns(day, "11:43"), D("156.13"), 126, et_ns(day, "11:44"), D("157.45"), D("160.09"),
         et_ns(day, "15:56"), D("159.778"), "eod", D("0.88"), D("292.448")),
    ]
    assert d(run.summary["realized_pnl"]) == D("265.108")
    assert fills_outside_their_bar(run, load_bars(path)) == []
