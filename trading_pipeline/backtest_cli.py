"""Backtests from the command line, on the instance in $DAGSTER_HOME (the daemon runs them).

    python -m trading_pipeline.backtest_cli params
        register every parameter set of the params file as a `params` partition
    python -m trading_pipeline.backtest_cli backfill --from 2024-11-04 --to 2024-11-29 \\
            [--params base,tight] [--wait] [--summary]
        an asset backfill of session_backtest over those sessions x sets: the daemon batches it
        into runs by the asset's BackfillPolicy, exactly as a backfill launched from the UI;
        --wait follows it to the end, --summary then materializes backtest_summary (and its check)

It only creates the backfill (what the UI's "Materialize" > partitions does); the daemon's
backfill loop and the run queue do the rest, so the runs show in the UI with their progress.
"""

import argparse
import sys
import time
from datetime import date, timedelta

import dagster as dg
from dagster._core.execution.backfill import BulkActionStatus, PartitionBackfill
from dagster._core.utils import make_new_backfill_id
from dagster._time import get_current_timestamp

from trading_pipeline.backtest_params import BacktestResource, register_param_sets
from trading_pipeline.partitions import is_session, parse_session

BACKTEST_TAG = "trading/backtest"  # dagster.yaml may bound these runs with tag_concurrency_limits
FINISHED = (dg.DagsterRunStatus.SUCCESS, dg.DagsterRunStatus.FAILURE, dg.DagsterRunStatus.CANCELED)


def sessions_between(first: date, last: date) -> list[date]:
    """XNYS sessions first..last, both included."""
    out, d = [], first
    while d <= last:
        if is_session(d):
            out.append(d)
        d += timedelta(days=1)
    return out


def partition_keys(days: list[date], sets: list[str]) -> list[str]:
    return [f"{d.isoformat()}|{s}" for d in days for s in sets]


def create_backfill(instance: dg.DagsterInstance, days: list[date], sets: list[str],
                    tags: dict[str, str] | None = None) -> str:
    """An asset backfill of session_backtest over days x sets; returns its id."""
    from trading_pipeline.backtest_assets import session_backtest
    from trading_pipeline.definitions import defs

    register_param_sets(instance, sets)
    backfill_id = make_new_backfill_id()
    backfill = PartitionBackfill.from_asset_partitions(
        backfill_id=backfill_id, asset_graph=defs.resolve_asset_graph(),
        partition_names=partition_keys(days, sets), asset_selection=[session_backtest.key],
        backfill_timestamp=get_current_timestamp(), tags={BACKTEST_TAG: "true", **(tags or {})},
        dynamic_partitions_store=instance, all_partitions=False,
        title=f"backtest {days[0]}..{days[-1]} x {','.join(sets)}", description=None, run_config=None)
    instance.add_backfill(backfill)
    return backfill_id


def wait_backfill(instance: dg.DagsterInstance, backfill_id: str, keys: list[str],
                  timeout_s: float) -> list[dg.DagsterRun]:
    """Until every targeted partition is materialized (or the backfill ends) and its runs are
    finished; returns the runs. (The backfill's own status is only updated on the daemon's next
    backfill tick, up to 30 s after the last run: not worth waiting for.)"""
    from trading_pipeline.backtest_assets import session_backtest

    deadline = time.monotonic() + timeout_s
    while True:
        backfill = instance.get_backfill(backfill_id)
        runs = instance.get_runs(dg.RunsFilter(tags={"dagster/backfill": backfill_id}))
        ended = backfill.status not in (BulkActionStatus.REQUESTED, BulkActionStatus.CANCELING)
        have = instance.get_materialized_partitions(session_backtest.key) if runs else set()
        finished = bool(runs) and all(r.status in FINISHED for r in runs)
        if finished and (ended or set(keys) <= set(have) or any(
                r.status != dg.DagsterRunStatus.SUCCESS for r in runs)):
            return list(runs)
        if time.monotonic() > deadline:
            raise TimeoutError(f"backfill {backfill_id} not finished after {timeout_s:.0f} s "
                               f"(status {backfill.status.value}; is the daemon running?)")
        time.sleep(0.5)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m trading_pipeline.backtest_cli", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    sub.add_parser("params", help="register the parameter sets of the params file")
    b = sub.add_parser("backfill", help="backfill session_backtest over sessions x parameter sets")
    b.add_argument("--from", dest="first", required=True, help="first session YYYY-MM-DD")
    b.add_argument("--to", dest="last", required=True, help="last session YYYY-MM-DD")
    b.add_argument("--params", default="", help="comma-separated sets (default: all in the file)")
    b.add_argument("--wait", action="store_true", help="wait until its runs are finished")
    b.add_argument("--summary", action="store_true", help="then materialize backtest_summary")
    b.add_argument("--timeout", type=float, default=3600.0)
    args = p.parse_args(argv)
    defined = sorted(BacktestResource().param_sets()) if args.cmd == "params" or not args.params else []
    with dg.DagsterInstance.get() as instance:
        if args.cmd == "params":
            print(f"registered: {', '.join(register_param_sets(instance, defined)) or 'nothing new'}"
                  f" (defined: {', '.join(defined)})")
            return 0
        sets = [s for s in args.params.split(",") if s] or defined
        days = sessions_between(parse_session(args.first), parse_session(args.last))
        backfill_id = create_backfill(instance, days, sets)
        print(f"backfill {backfill_id}: session_backtest, {len(days)} sessions x {len(sets)} sets "
              f"({', '.join(sets)})", flush=True)
        if not (args.wait or args.summary):
            return 0
        runs = wait_backfill(instance, backfill_id, partition_keys(days, sets), args.timeout)
        failed = [r.run_id for r in runs if r.status != dg.DagsterRunStatus.SUCCESS]
        print(f"{len(runs)} runs, {len(failed)} not successful {failed or ''}".rstrip(), flush=True)
        if failed:
            return 1
        if args.summary:
            from trading_pipeline.definitions import defs

            result = defs.resolve_job_def("backtest_report").execute_in_process(instance=instance)
            if not result.success:
                return 1
            store = defs.resources["store"]
            print(f"summary report: {store.root() / 'backtest_summary' / 'report.html'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
