"""`make demo`: the trading day through Dagster, on the embedded default (no server, no account).

On the local instance (SQLite under var/dagster, so `make ui` shows every run afterwards): the
premarket_prep job materializes the sample session's previous closes and universe, the
live_session job runs the runner as a Pipes subprocess in replay mode, and the end_of_day job
stores the bars, reads the journal and materializes the daily report and the replay audit. The
session summary is printed as `python -m live_runner demo` prints it.

The three runs are ordinary runs of the workspace's jobs (trading_pipeline/workspace_runs.py):
they carry the code location's origin, so the UI shows them on the Overview timeline, on each
job's Runs and Partitions tabs, and re-executes them as any launched run.
"""

import argparse
import contextlib
import json
import os
import shutil
import sys
from collections.abc import Iterator
from pathlib import Path

from trading_pipeline.resources import PROJECT_ROOT, SAMPLE_ANCHOR

DEMO_DATE = SAMPLE_ANCHOR.isoformat()  # the sample session of `python -m live_runner demo`
QUIET = {"loggers": {"console": {"config": {"log_level": "WARNING"}}}}


def prepare_home() -> Path:
    """var/dagster (under TRADING_PROJECT_ROOT when set) with the local instance config;
    DAGSTER_HOME points at it."""
    root = Path(os.environ.get("TRADING_PROJECT_ROOT") or PROJECT_ROOT)
    home = root / "var" / "dagster"
    home.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(PROJECT_ROOT / "dagster.local.yaml", home / "dagster.yaml")
    os.environ["DAGSTER_HOME"] = str(home)
    return home


@contextlib.contextmanager
def output_to(path: Path) -> Iterator[None]:
    """Send fds 1 and 2 (the runner subprocess's JSON summary and logs) to a file for a while."""
    sys.stdout.flush()
    sys.stderr.flush()
    saved = [os.dup(1), os.dup(2)]
    with open(path, "wb") as out:
        os.dup2(out.fileno(), 1)
        os.dup2(out.fileno(), 2)
        try:
            yield
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            for fd, copy in zip((1, 2), saved):
                os.dup2(copy, fd)
                os.close(copy)


def _check(instance, run, what: str) -> None:
    import dagster as dg

    from trading_pipeline.workspace_runs import failure_messages

    if run.status != dg.DagsterRunStatus.SUCCESS:
        for message in failure_messages(instance, run.run_id):
            print(f"{what} failed: {message}", file=sys.stderr)
        raise SystemExit(f"{what} failed")


BACKTEST_FIRST = "2024-11-21"  # a few sessions up to the demo day
BACKTEST_SETS = ["base", "tight"]


def backtest_history(instance, location, store, last: str) -> Path:
    """A short history backtested (one batched run per parameter set, as a backfill makes
    them), then the summary across it; returns the HTML report's path."""
    from trading_pipeline.backtest_params import register_param_sets
    from trading_pipeline.workspace_runs import run_job

    register_param_sets(instance, BACKTEST_SETS)
    for params in BACKTEST_SETS:
        run = run_job(instance, location, "backtest", None, QUIET, {
            "dagster/asset_partition_range_start": f"{BACKTEST_FIRST}|{params}",
            "dagster/asset_partition_range_end": f"{last}|{params}"})
        _check(instance, run, f"session_backtest ({params})")
    _check(instance, run_job(instance, location, "backtest_report", None, QUIET), "backtest_summary")
    return store.root() / "backtest_summary" / "report.html"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m trading_pipeline.demo", description=__doc__)
    parser.add_argument("--date", default=DEMO_DATE, help="session (default: the sample session)")
    args = parser.parse_args(argv)
    home = prepare_home()
    import dagster as dg

    from live_runner.live.runs import format_summary
    from trading_pipeline.definitions import defs
    from trading_pipeline.partitions import parse_session
    from trading_pipeline.workspace_runs import code_location, run_job

    day = parse_session(args.date)
    key = day.isoformat()
    instance = dg.DagsterInstance.get()
    store = defs.resources["store"]
    if store.journal_exists(day):  # a fresh session each time (a kept journal would be resumed)
        store.drop_journal(day)
    with code_location(instance, PROJECT_ROOT) as location:
        print(f"[1/3] premarket_prep {key}: previous closes and the gap scan", flush=True)
        prep = run_job(instance, location, "premarket_prep", key, QUIET)
        _check(instance, prep, "premarket_prep")
        universe = store.load_universe(day)
        runner_out = store.session_dir(day) / "runner.out"
        print(f"      universe: {len(universe)} symbols {', '.join(universe)}", flush=True)
        print(f"[2/3] live_session {key}: the runner as a Pipes subprocess, replay mode "
              f"(its output: {runner_out})", flush=True)
        with output_to(runner_out):
            live = run_job(instance, location, "live_session", key,
                           {**QUIET, "ops": {"run_live_session": {"config": {"mode": "replay"}}}})
        _check(instance, live, "live_session")
        print(f"[3/3] end_of_day {key}: intraday bars, journal, daily report, replay audit", flush=True)
        eod = run_job(instance, location, "end_of_day", key, QUIET)
        _check(instance, eod, "end_of_day")
        print(f"[backtest] {BACKTEST_FIRST}..{key} x {', '.join(BACKTEST_SETS)}: session_backtest, "
              "then backtest_summary", flush=True)
        summary_report = backtest_history(instance, location, store, key)
    summary = json.loads((store.session_dir(day) / "summary.json").read_text())
    audit = json.loads(store.path("replay_report", day, ".json").read_text())
    report = store.root() / "reports" / key / "report.html"
    print()
    print(format_summary(summary))
    print(f"\nreplay audit: {'identical to the live run' if audit['identical'] else 'DIFFERS'}"
          f" (P&L drift {audit['pnl_drift']})")
    print(f"daily report: {report}")
    print(f"dagster runs: {live.run_id} (live_session) and 5 more (premarket_prep, end_of_day, "
          f"backtest x2, backtest_report), instance {home}")
    print(f"backtest summary report: {summary_report}")
    print("see them in the Dagster UI: make ui, then http://127.0.0.1:3000 (Runs; Assets > daily_report)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
