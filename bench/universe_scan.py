"""Pre-market universe scan throughput: 10,000 symbols' premarket minutes to a ranked universe.

Usage: .venv/bin/python bench/universe_scan.py [--symbols 10000] [--repeat 3]
A synthetic premarket (04:00-09:29 ET, 330 one-minute bars per symbol, ~70% of the minutes
traded, about 1 symbol in 8 gapping) is written to Parquet once; then, timed: reading the
premarket window from the file, deriving each symbol's premarket stats (high, volume, last close;
invalid bars dropped), the gap_and_go qualification and the ranking (trading_pipeline.universe_scan,
exactly what the premarket_universe asset runs). Target (issue 4): the scan under 2 s for 10,000.
"""

from __future__ import annotations

import argparse
import time
from datetime import date

import numpy as np
import pandas as pd
from _common import CACHE, emit

from live_runner.core.config import GapAndGoConfig
from trading_pipeline.bars import read_bars, write_bars
from trading_pipeline.partitions import session_times
from trading_pipeline.universe_scan import markdown_table, premarket_stats, scan

DAY = date(2024, 11, 26)


def synthetic_premarket(symbols: int, seed: int = 5) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(premarket bars, previous closes) for `symbols` names."""
    rng = np.random.default_rng(seed)
    s = session_times(DAY)
    minutes = (s.open - s.premarket_open) // 60_000_000_000
    prev = np.round(rng.uniform(1.5, 60.0, symbols), 2)
    gap = np.where(rng.random(symbols) < 0.125, rng.uniform(0.04, 0.2, symbols), rng.normal(0, 0.01, symbols))
    names = np.array([f"S{i:05d}" for i in range(symbols)], dtype=object)
    t = np.arange(minutes)[:, None]
    drift = prev * (1 + gap * np.minimum(t / 60.0, 1.0))
    close = np.round(drift * np.exp(rng.normal(0, 0.002, (minutes, symbols))), 2)
    open_ = np.vstack([prev[None, :], close[:-1]])
    high = np.maximum(open_, close) + 0.01
    low = np.maximum(np.minimum(open_, close) - 0.01, 0.01)
    volume = rng.integers(100, 2_000, (minutes, symbols))
    traded = rng.random((minutes, symbols)) < 0.7
    rows, cols = np.nonzero(traded)
    ts = s.premarket_open + rows.astype(np.int64) * 60_000_000_000
    bars = pd.DataFrame({"symbol": names[cols], "ts": ts, "open": open_[traded], "high": high[traded],
                         "low": low[traded], "close": close[traded], "volume": volume[traded].astype(float)})
    return bars, pd.DataFrame({"symbol": names, "prev_close": prev})


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--symbols", type=int, default=10_000)
    p.add_argument("--repeat", type=int, default=3)
    args = p.parse_args()
    path = CACHE / f"premarket_{args.symbols}.parquet"
    bars, prev = synthetic_premarket(args.symbols)
    if not path.exists():
        write_bars(bars, path)
    s = session_times(DAY)
    cfg = GapAndGoConfig()
    best: dict[str, float] = {}
    for _ in range(args.repeat):
        t0 = time.perf_counter()
        frame = read_bars(path, s.premarket_open, s.open, categorical=True)
        t1 = time.perf_counter()
        stats = premarket_stats(frame, s.premarket_open, s.open)
        ranked = scan(prev, stats, cfg)
        markdown_table(ranked)
        t2 = time.perf_counter()
        for key, value in (("read_s", t1 - t0), ("scan_s", t2 - t1), ("total_s", t2 - t0)):
            best[key] = min(best.get(key, float("inf")), value)
    emit(bench="universe_scan", symbols=args.symbols, bars=len(frame), qualified=len(ranked),
         read_s=round(best["read_s"], 3), scan_s=round(best["scan_s"], 3),
         total_s=round(best["total_s"], 3), target_s=2.0, ok=best["total_s"] < 2.0)


if __name__ == "__main__":
    main()
