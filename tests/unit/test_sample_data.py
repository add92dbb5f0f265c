"""The synthetic market: deterministic, well-formed, on the right ET minutes, and it trades."""

from __future__ import annotations

import time
from datetime import date
from pathlib import Path
from zoneinfo import ZoneInfo

import numpy as np
import pandas as pd
import pytest

from live_runner.data import sample_data
from live_runner.adapters.replay import BarFile
from live_runner.core.models import Bar

ET = ZoneInfo("America/New_York")


@pytest.fixture(scope="module")
def five_days() -> pd.DataFrame:
    return sample_data.generate(date(2024, 3, 4), sessions=5, symbols=40, seed=3)


def with_et(df: pd.DataFrame) -> pd.DataFrame:
    et = pd.to_datetime(df["timestamp"], unit="ns", utc=True).dt.tz_convert(ET)
    return df.assign(day=et.dt.date, hhmm=et.dt.hour * 100 + et.dt.minute)


def test_deterministic_per_seed() -> None:
    a = sample_data.generate(date(2024, 3, 4), 2, 20, seed=1)
    b = sample_data.generate(date(2024, 3, 4), 2, 20, seed=1)
    c = sample_data.generate(date(2024, 3, 4), 2, 20, seed=2)
    pd.testing.assert_frame_equal(a, b)
    assert not a.equals(c) and not np.array_equal(a["close"][:100], c["close"][:100])


def test_frame_shape_and_bar_sanity(five_days: pd.DataFrame) -> None:
    df = five_days
    assert list(df.columns) == ["symbol", "timestamp", "open", "high", "low", "close", "volume"]
    assert df["timestamp"].dtype == np.int64 and df["volume"].dtype == np.int64
    assert sorted(df["symbol"].unique()) == [f"SYM{i:03d}" for i in range(40)]
    keys = list(zip(df["timestamp"], df["symbol"]))
    assert keys == sorted(keys) and len(set(keys)) == len(keys)  # sorted, no duplicate bars
    o, h, low, c, v = (df[k].to_numpy() for k in ("open", "high", "low", "close", "volume"))
    assert (low > 0).all() and (low <= np.minimum(o, c)).all() and (h >= np.maximum(o, c)).all()
    assert (v >= 0).all()
    for x in (o, h, low, c):
        assert np.allclose(np.round(x * 100), x * 100, atol=1e-6)  # cents
    assert ((c >= 2) & (c <= 50)).mean() > 0.95  # mostly $2-$50


def hhmm_range(first: int, last: int) -> list[int]:
    return [h * 100 + m for h in range(24) for m in range(60) if first <= h * 100 + m <= last]


@pytest.mark.parametrize("start,sessions,expected", [
    # early close: the Friday after Thanksgiving ends at 13:00 ET; the day before is a holiday
    (date(2024, 11, 29), 1, {date(2024, 11, 27): (None, 1559), date(2024, 11, 29): (929, 1259)}),
    # DST starts on Sunday 2024-03-10 and ends on Sunday 2024-11-03
    (date(2024, 3, 8), 2, {date(2024, 3, 7): (None, 1559), date(2024, 3, 8): (929, 1559),
                           date(2024, 3, 11): (929, 1559)}),
    (date(2024, 11, 1), 2, {date(2024, 10, 31): (None, 1559), date(2024, 11, 1): (929, 1559),
                            date(2024, 11, 4): (929, 1559)}),
])
def test_bars_on_the_right_et_minutes(start: date, sessions: int, expected: dict) -> None:
    df = with_et(sample_data.generate(start, sessions, 6, seed=5))
    assert set(df["day"]) == set(expected)
    for day, (pm_last, reg_last) in expected.items():
        d = df[df["day"] == day]
        reg = d[d["hhmm"] >= 930]
        for _, g in reg.groupby("symbol"):  # every regular minute, for every symbol
            assert list(g["hhmm"]) == hhmm_range(930, reg_last)
        pm = d[d["hhmm"] < 930]
        if pm_last is None:
            assert pm.empty  # the previous session contributes regular hours only
        else:
            assert pm["hhmm"].min() >= 400 and pm["hhmm"].max() == pm_last
    # UTC offsets really change across DST: 09:30 ET is 14:30 UTC in winter, 13:30 UTC in summer
    opens = df[df["hhmm"] == 930].groupby("day")["timestamp"].first()
    for day, ts in opens.items():
        utc_hour = pd.Timestamp(ts, unit="ns", tz="UTC").hour
        assert utc_hour == (13 if date(2024, 3, 10) < day < date(2024, 11, 3) else 14)


@pytest.mark.parametrize("day", [date(2024, 3, 9), date(2024, 12, 25)])
def test_non_session_start_refused(day: date) -> None:
    with pytest.raises(ValueError, match=day.isoformat()):
        sample_data.generate(day, 1, 5, seed=1)


def gap_and_go(df: pd.DataFrame) -> dict[date, dict[str, tuple[int, str]]]:
    """Per session, the symbols qualifying per DESIGN.md with (entry bar index, outcome)."""
    df = with_et(df)
    days = sorted(df["day"].unique())
    out: dict[date, dict[str, tuple[int, str]]] = {}
    for prev_day, day in zip(days, days[1:]):
        prev = df[(df["day"] == prev_day) & (df["hhmm"] >= 930)]
        prev_close = prev.groupby("symbol")["close"].last()
        d = df[df["day"] == day]
        pm = d[(d["hhmm"] >= 400) & (d["hhmm"] < 930)].groupby("symbol").agg(
            pm_high=("high", "max"), pm_volume=("volume", "sum"), pm_last=("close", "last"))
        pm["prev_close"] = prev_close
        q = pm[(pm.pm_last / pm.prev_close - 1 >= 0.04) & (pm.pm_volume >= 50_000)
               & (pm.pm_last >= 1.0) & (pm.pm_last <= 20.0) & (pm.pm_last >= 0.9 * pm.pm_high)]
        out[day] = {}
        for sym, row in q.iterrows():
            reg = d[(d["symbol"] == sym) & (d["hhmm"] >= 930)].reset_index(drop=True)
            hits = reg.index[(reg["hhmm"] < 1030) & (reg["close"] > row.pm_high)]
            if len(hits) == 0:
                continue
            k = hits[0]
            stop, fill = reg["low"][k], reg["open"][k + 1]
            target, outcome = fill + 2.0 * (fill - stop), "open"
            for j in range(k + 2, len(reg)):  # exits active from the bar after the fill
                if reg["low"][j] <= stop:
                    outcome = "stop"
                    break
                if reg["high"][j] >= target:
                    outcome = "target"
                    break
            out[day][sym] = (k, outcome)
    return out


def vwap_reclaims(df: pd.DataFrame) -> dict[date, set[str]]:
    """Per session, symbols with >= 3 closes below session VWAP then a close above it on >= 2x the
    mean volume of the previous 20 regular bars, starting in [09:45, 15:30)."""
    df = with_et(df)
    out: dict[date, set[str]] = {}
    for (day, sym), r in df[df["hhmm"] >= 930].groupby(["day", "symbol"]):
        tp = (r["high"] + r["low"] + r["close"]) / 3
        vwap = ((tp * r["volume"]).cumsum() / r["volume"].cumsum()).to_numpy()
        c, v, hhmm = r["close"].to_numpy(), r["volume"].to_numpy(), r["hhmm"].to_numpy()
        below = 0
        for j in range(len(c)):
            if c[j] < vwap[j]:
                below += 1
                continue
            prev = v[max(0, j - 20): j]
            if (c[j] > vwap[j] and below >= 3 and len(prev) >= 5 and v[j] >= 2 * prev.mean()
                    and 945 <= hhmm[j] < 1530):
                out.setdefault(day, set()).add(sym)
            below = 0
    return out


def test_gap_and_go_qualifies_and_enters_every_session(five_days: pd.DataFrame) -> None:
    trades = gap_and_go(five_days)
    assert len(trades) == 5
    for day, by_symbol in trades.items():
        assert by_symbol, f"no gap_and_go entry on {day}"
    outcomes = [o for by_symbol in trades.values() for _, o in by_symbol.values()]
    assert "target" in outcomes and "stop" in outcomes  # some run to 2R, some fail


def test_gap_and_go_on_early_close_and_single_symbol() -> None:
    assert gap_and_go(sample_data.generate(date(2024, 11, 29), 1, 10, seed=9))[date(2024, 11, 29)]
    one = gap_and_go(sample_data.generate(date(2024, 3, 8), 3, 1, seed=4))
    assert all(len(v) == 1 for v in one.values())


def test_vwap_reclaim_triggers_every_session(five_days: pd.DataFrame) -> None:
    reclaims = vwap_reclaims(five_days)
    gappers = gap_and_go(five_days)
    for day in gappers:
        assert reclaims.get(day), f"no vwap_reclaim trigger on {day}"
        # the replay's default universe is the gap_and_go qualifiers: some of them reclaim too
        assert reclaims[day] & set(gappers[day])


def test_speed_500_symbols() -> None:
    sample_data.generate(date(2024, 3, 1), 1, 2, seed=0)  # calendar load, not generation speed
    t = time.perf_counter()
    df = sample_data.generate(date(2024, 3, 1), 1, 500, seed=0)
    assert time.perf_counter() - t < 3.0
    assert len(df) > 450_000


@pytest.mark.parametrize("fmt", ["parquet", "csv"])
def test_write_round_trips_through_bar_file(tmp_path: Path, fmt: str) -> None:
    df = sample_data.generate(date(2024, 11, 29), 1, 4, seed=2)
    path = sample_data.write(df, tmp_path / "out", fmt)
    assert path == tmp_path / "out" / f"bars_2024-11-29.{fmt}"
    if fmt == "csv":
        assert path.read_text().splitlines()[1].split(",")[1] == "2024-11-27T14:30:00Z"
    bf = BarFile(path)
    assert bf.validate() == len(df)
    bars = list(bf.iter_bars())
    expected = [Bar(s, int(t), o, h, lo, c, float(v)) for s, t, o, h, lo, c, v in
                df.itertuples(index=False, name=None)]
    assert bars == expected


def test_cli(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["--out", str(tmp_path), "--date", "2024-03-04", "--symbols", "3", "--seed", "1",
            "--sessions", "2", "--format", "csv"]
    assert sample_data.main(argv) == 0
    printed = capsys.readouterr().out.strip()
    assert printed == str(tmp_path / "bars_2024-03-04.csv") and Path(printed).exists()
    assert sample_data.main(["--out", str(tmp_path), "--date", "2024-03-09", "--symbols", "3",
                             "--seed", "1"]) == 2
    assert "2024-03-09" in capsys.readouterr().err
