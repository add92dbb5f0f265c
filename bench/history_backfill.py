"""A backtest backfill end to end through Dagster: bars per second over the whole thing.

Usage: .venv/bin/python bench/history_backfill.py --sessions N --symbols M [--workers 2] [--params 1]

Before the clock starts (not timed): a synthetic history of N sessions x M symbols is written once
to var/bench/history_* as one Parquet file per session (the `files` history source), and a
temporary Dagster home is made (SQLite, QueuedRunCoordinator with `--workers` concurrent runs,
1 s dequeue interval). Timed: creating the asset backfill of session_backtest over N sessions x
`--params` sets (base, then tight, ...), the daemon starting, batching it into runs by the
asset's BackfillPolicy (TRADING_BACKTEST_PARTITIONS_PER_RUN = N x sets / workers, so each worker
gets one run), each run building the session feeds from the files (cache empty) and replaying
them through the runner into one SQLite journal per partition, until the last run has ended.
`bars` is the sum of the bars the runner processed (a session's bars count once per set).

Prints exactly one JSON line on stdout; details (runs, their durations) go to stderr.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import tempfile
import time
from datetime import date
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import CACHE, ROOT  # noqa: E402


def history(sessions: int, symbols: int, start: date, seed: int = 11) -> tuple[Path, list[date]]:
    """One Parquet file per session (the previous session's too, for the first seeds)."""
    import pandas as pd

    from live_runner.data import sample_data

    out = CACHE / f"history_{symbols}x{sessions}_{start:%Y%m%d}_seed{seed}"
    done = out / "sessions.json"
    if done.exists():
        return out, [date.fromisoformat(d) for d in json.loads(done.read_text())]
    out.mkdir(parents=True, exist_ok=True)
    frame = sample_data.generate(start, sessions, symbols, seed)
    ts = frame["timestamp"].to_numpy()
    day_of = pd.Series(pd.to_datetime(ts, utc=True).tz_convert("America/New_York").date)
    days = sorted(set(day_of))
    for d in days:
        part = frame.loc[(day_of == d).to_numpy()].copy()
        part.attrs["first_session"] = d.isoformat()
        written = sample_data.write(part, out / "tmp")
        written.replace(out / f"{d.isoformat()}.parquet")
    (out / "tmp").rmdir()
    traded = [d for d in days if d >= start]
    done.write_text(json.dumps([d.isoformat() for d in traded]))
    return out, traded


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--sessions", type=int, required=True)
    p.add_argument("--symbols", type=int, required=True)
    p.add_argument("--workers", type=int, default=os.cpu_count() or 2, help="concurrent runs")
    p.add_argument("--params", type=int, default=1, help="parameter sets (base, tight)")
    p.add_argument("--start", type=date.fromisoformat, default=date(2024, 1, 2))
    p.add_argument("--timeout", type=float, default=3600)
    args = p.parse_args()
    data_dir, days = history(args.sessions, args.symbols, args.start)
    sets = ["base", "tight"][: max(1, min(args.params, 2))]
    tmp = Path(tempfile.mkdtemp(prefix="history_backfill_"))
    home = tmp / "dagster_home"
    home.mkdir()
    config = (ROOT / "dagster.local.yaml").read_text()
    config = config.replace("max_concurrent_runs: 4", f"max_concurrent_runs: {args.workers}\n"
                            "    dequeue_interval_seconds: 1")
    (home / "dagster.yaml").write_text(config)
    per_run = max(1, math.ceil(len(days) * len(sets) / args.workers))
    env = {"DAGSTER_HOME": str(home), "TRADING_PIPELINE_DIR": str(tmp / "pipeline"),
           "TRADING_MARKET_DATA_DIR": str(tmp / "market"), "TRADING_HISTORY_SOURCE": "files",
           "TRADING_HISTORY_PATH": str(data_dir), "TRADING_HISTORY_CACHE": str(tmp / "history"),
           "TRADING_BACKTEST_PARTITIONS_PER_RUN": str(min(per_run, len(days))),
           "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    os.environ.update(env)
    sys.path.insert(0, str(ROOT))
    import dagster as dg

    from tests.kit.dagster_env import DagsterProcess
    from trading_pipeline.backtest_assets import session_backtest
    from trading_pipeline.backtest_cli import create_backfill

    instance = dg.DagsterInstance.get()
    t0 = time.time()
    backfill_id = create_backfill(instance, days, sets)
    target = len(days) * len(sets)
    with DagsterProcess(["run", "-w", "workspace.yaml"], {**os.environ}, tmp / "daemon.log",
                        program="dagster-daemon"):
        deadline = time.monotonic() + args.timeout
        # Polled once a second (the end is the last run's end time, read from its record, so the
        # poll's period does not round the figure; polling faster only takes CPU from the runs).
        while len(instance.get_materialized_partitions(session_backtest.key)) < target:
            runs = instance.get_runs(dg.RunsFilter(tags={"dagster/backfill": backfill_id}))
            if any(r.status == dg.DagsterRunStatus.FAILURE for r in runs):
                raise SystemExit(f"a run failed; see {tmp}")
            if time.monotonic() > deadline:
                raise SystemExit(f"timed out; see {tmp}")
            time.sleep(1.0)
        records = instance.get_run_records(dg.RunsFilter(tags={"dagster/backfill": backfill_id}))
        while any(r.end_time is None for r in records):  # the last run's RUN_SUCCESS event
            time.sleep(0.2)
            records = instance.get_run_records(dg.RunsFilter(tags={"dagster/backfill": backfill_id}))
    t1 = max(r.end_time for r in records)
    bars = sum(json.loads(f.read_text())["bars_processed"]
               for f in (tmp / "pipeline" / "backtests").glob("*/*.json"))
    wall = t1 - t0
    for r in sorted(records, key=lambda r: r.start_time or 0):
        print(f"run {r.dagster_run.run_id[:8]} {r.dagster_run.tags.get('dagster/asset_partition_range_start')}"
              f"..{r.dagster_run.tags.get('dagster/asset_partition_range_end')}: starts +"
              f"{(r.start_time or t0) - t0:.1f} s, {(r.end_time or 0) - (r.start_time or 0):.1f} s",
              file=sys.stderr)
    print(f"runs {len(records)}, partitions/run <= {env['TRADING_BACKTEST_PARTITIONS_PER_RUN']}, "
          f"workdir {tmp}", file=sys.stderr)
    instance.dispose()
    print(json.dumps({"bench": "history_backfill", "sessions": args.sessions, "symbols": args.symbols,
                      "bars": bars, "wall_s": round(wall, 2), "bars_per_s": round(bars / wall)}),
          flush=True)


if __name__ == "__main__":
    main()
