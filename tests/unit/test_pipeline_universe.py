"""The vectorized gap scan agrees with the runner's own qualification, symbol for symbol."""

from datetime import date

import numpy as np
import pandas as pd
import pytest

from live_runner.core.config import GapAndGoConfig, parse_config
from live_runner.strategies.base import PremarketStats
from live_runner.strategies.gap_and_go import qualifies
from trading_pipeline.universe_scan import STATS, markdown_table, premarket_stats, qualify, scan


def random_stats(n: int, seed: int) -> pd.DataFrame:
    """Values on and around every threshold, plus zeros, negatives, NaN and infinities."""
    rng = np.random.default_rng(seed)

    def spoil(values: np.ndarray, share: float, bad: list[float]) -> np.ndarray:
        hit = rng.random(n) < share
        values[hit] = rng.choice(bad, int(hit.sum()))
        return values

    prev = spoil(rng.uniform(0.5, 30.0, n), 0.1, [0.0, -1.0, np.nan])
    gap = rng.choice([0.04, 0.0399999, 0.0400001, 0.1, -0.05], n) + rng.normal(0, 0.01, n) * (rng.random(n) < 0.5)
    last = spoil(prev * (1 + gap), 0.1, [1.0, 20.0, 0.99, 20.01, np.inf, np.nan])
    high = spoil(last / rng.choice([0.9, 0.95, 1.0, 0.89999, 0.5], n), 0.05, [0.0, np.nan, -2.0])
    volume = rng.choice([50_000.0, 49_999.0, 50_001.0, 1e6, 0.0, np.nan], n)
    return pd.DataFrame({"prev_close": prev, "pm_high": high, "pm_volume": volume, "pm_last": last})


def by_qualifies(frame: pd.DataFrame, cfg: GapAndGoConfig) -> np.ndarray:
    return np.array([qualifies(PremarketStats(*(float(v) for v in row)), cfg)
                     for row in frame[STATS].itertuples(index=False)])


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_vectorized_qualification_equals_qualifies(seed):
    frame = random_stats(20_000, seed)
    cfg = GapAndGoConfig()
    expected = by_qualifies(frame, cfg)
    assert 0 < expected.sum() < len(frame)  # the frame exercises both outcomes
    np.testing.assert_array_equal(qualify(frame, cfg), expected)


def test_vectorized_qualification_follows_the_config():
    cfg = parse_config({"strategies": {"gap_and_go": {"gap_pct_min": 0.08, "price_max": 12.0,
                                                      "premarket_volume_min": 10_000,
                                                      "hold_ratio_min": 0.95}}}).strategies.gap_and_go
    frame = random_stats(10_000, 9)
    np.testing.assert_array_equal(qualify(frame, cfg), by_qualifies(frame, cfg))


def test_premarket_stats_drop_bad_bars_and_take_the_last_close():
    pm_open, open_ns = 0, 330 * 60_000_000_000
    m = 60_000_000_000
    bars = pd.DataFrame({
        "symbol": ["A", "B", "A", "A", "A", "B", "A"],
        "ts": [0, 0, m, m, 2 * m, 2 * m, open_ns],  # a duplicate minute; a bar at the open
        "open": [5.0, 9.0, 5.2, 9.9, 5.3, 9.1, 6.0],
        "high": [5.5, 9.5, 5.6, 9.9, 5.4, 8.0, 7.0],  # B's second bar: high < low (bad)
        "low": [4.9, 8.9, 5.1, 9.8, 5.2, 8.5, 5.9],
        "close": [5.1, 9.2, 5.3, 9.9, 5.35, 9.0, 6.5],
        "volume": [100, 200, 300, 999, 400, 500, 600],
    })
    stats = premarket_stats(bars, pm_open, open_ns).set_index("symbol")
    assert stats.loc["A"].tolist() == [5.6, 800.0, 5.35]
    assert stats.loc["B"].tolist() == [9.5, 200.0, 9.2]


def test_scan_ranks_by_gap_and_renders_a_table():
    prev = pd.DataFrame({"symbol": ["A", "B", "C", "D"], "prev_close": [10.0, 10.0, 10.0, 10.0]})
    pm = pd.DataFrame({"symbol": ["A", "B", "C", "E"], "pm_high": [10.6, 11.2, 10.2, 5.0],
                       "pm_volume": [60_000.0, 80_000.0, 90_000.0, 1e6], "pm_last": [10.5, 11.0, 10.1, 5.0]})
    ranked = scan(prev, pm, GapAndGoConfig())
    assert ranked["symbol"].tolist() == ["B", "A"]  # C gaps 1%; D has no premarket; E no prev close
    assert ranked["rank"].tolist() == [1, 2]
    table = markdown_table(ranked)
    assert "| 1 | B | 10.00 |" in table and table.count("\n") == 3
    assert markdown_table(ranked.iloc[0:0]) == "_no symbol qualified_"


def test_scan_of_a_sample_session_is_the_runners_own_universe(tmp_path):
    """Replaying the sample session without a universe makes the runner pick its own (the gap
    scan at 09:30); the pipeline's scan over the same bars must find the same symbols."""
    from live_runner.core.config import load_config
    from live_runner.live.runs import RunOptions, run_session
    from trading_pipeline.bars import read_bars, write_bars
    from trading_pipeline.partitions import session_times
    from trading_pipeline.resources import MarketDataResource
    from trading_pipeline.universe_scan import valid_bars

    day = date(2024, 11, 26)
    market = MarketDataResource(bars_dir=str(tmp_path / "market"), sample_symbols=60)
    frame = market.session_bars(day)
    feed = write_bars(frame, tmp_path / "feed.parquet")
    summary = run_session(load_config(None), RunOptions(bars=feed, journal_url="sqlite://"))
    runner_universe = summary["sessions"][-1]["universe"]

    s = session_times(day)
    prev = session_times(s.prev_date)
    before = read_bars(feed, prev.open, prev.close)
    before = before.loc[valid_bars(before)].sort_values("ts").groupby("symbol").tail(1)
    closes = before.rename(columns={"close": "prev_close"})[["symbol", "prev_close"]]
    ranked = scan(closes, premarket_stats(read_bars(feed), s.premarket_open, s.open), GapAndGoConfig())
    assert len(runner_universe) > 3
    assert sorted(ranked["symbol"]) == runner_universe


def test_scan_and_runner_agree_on_the_boundary_symbols(tmp_path):
    """Symbols exactly on each threshold (and one tick or share short), as bars: the Dagster scan
    (premarket_stats + scan) and a replay's own universe pick the same ones, the exact ones."""
    from live_runner.core.clock import format_ns
    from live_runner.core.config import load_config
    from live_runner.live.runs import RunOptions, run_session
    from tests.kit.sessions import SessionBuilder
    from trading_pipeline.bars import read_bars
    from trading_pipeline.partitions import session_times

    # symbol: (prev close, premarket high, premarket last, premarket volume)
    cases = {
        "GAP4": (16.25, 16.90, 16.90, 60_000), "GAPLOW": (16.25, 16.89, 16.89, 60_000),
        "HOLD": (11.00, 12.90, 11.61, 60_000), "HOLDLOW": (11.00, 12.90, 11.60, 60_000),
        "VOL": (10.00, 11.00, 11.00, 50_000), "VOLLOW": (10.00, 11.00, 11.00, 49_999),
        "PMIN": (0.95, 1.00, 1.00, 60_000), "PMINLOW": (0.9500, 0.9999, 0.9999, 60_000),
        "PMAX": (19.00, 20.00, 20.00, 60_000), "PMAXHIGH": (19.00, 20.01, 20.01, 60_000),
    }
    day = "2024-03-15"
    s = SessionBuilder(day=day, prev_day="2024-03-14")
    for sym, (prev, high, last, vol) in cases.items():
        s.prev_close(sym, prev)
        s.bar(sym, "08:00", last, high, last, last, vol - 1_000)
        s.bar(sym, "09:00", last, last, last, last, 1_000)
        s.bar(sym, "09:30", last, last, last, last, 1_000)
    path = tmp_path / "bars.csv"
    path.write_text("symbol,timestamp,open,high,low,close,volume\n" + "".join(
        f"{b.symbol},{format_ns(b.ts)},{b.open},{b.high},{b.low},{b.close},{int(b.volume)}\n"
        for b in s.sorted_bars()))
    summary = run_session(load_config(None), RunOptions(bars=path, journal_url="sqlite://"))
    runner_universe = summary["sessions"][-1]["universe"]

    sess = session_times(date.fromisoformat(day))
    closes = pd.DataFrame({"symbol": list(cases), "prev_close": [c[0] for c in cases.values()]})
    ranked = scan(closes, premarket_stats(read_bars(path), sess.premarket_open, sess.open), GapAndGoConfig())
    assert sorted(ranked["symbol"]) == runner_universe == ["GAP4", "HOLD", "PMAX", "PMIN", "VOL"]
