"""Replay throughput: bars/s of the whole chain (both strategies, journal on), and its scaling.

Usage: .venv/bin/python bench/replay_throughput.py [--repeat 3]
Base load: 20 symbols x 20 sessions (premarket + regular bars); then 2x and 4x the symbols.
Target (issue 2): >= 130,000 bars/s on the 2-core reference machine.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

from _common import emit, sample_file

from live_runner.core.config import parse_config
from live_runner.live.runs import RunOptions, run_session


def one_run(bars: Path) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        opts = RunOptions(bars=bars, journal_url=f"sqlite:///{tmp}/journal.db")
        t0 = time.perf_counter()
        summary = run_session(parse_config({}), opts)
        wall = time.perf_counter() - t0
    summary["wall_s"] = wall
    return summary


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--sessions", type=int, default=20)
    args = parser.parse_args()
    for factor in (1, 2, 4):
        symbols = 20 * factor
        bars = sample_file(symbols, args.sessions)
        rates, walls = [], []
        summary: dict = {}
        for _ in range(args.repeat):
            summary = one_run(bars)
            rates.append(summary["bars_processed"] / summary["wall_s"])
            walls.append(summary["wall_s"])
        emit(bench="replay_throughput", symbols=symbols, sessions=args.sessions,
             bars=summary["bars_processed"], trades=len(summary["trades"]),
             bars_per_s_median=round(statistics.median(rates)), bars_per_s_min=round(min(rates)),
             bars_per_s_max=round(max(rates)), wall_s_median=round(statistics.median(walls), 3),
             repeat=args.repeat, includes="file read + validation + chain + journal")


if __name__ == "__main__":
    main()
