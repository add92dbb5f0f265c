"""Backtests as Dagster assets: `session_backtest` per (trading day, parameter set), and
`backtest_summary` across every materialized one, with a check that it adds up to the journals.

`session_backtest` replays the session's bars through `live_runner.live.runs.run_session` (the chain
the live runner runs, paper fill model) into its own journal. A backfill batches partitions per
run (`BackfillPolicy.multi_run`), so a run pays Dagster's start-up once for many sessions; runs
are the unit of parallelism (one process each locally, one Kubernetes pod each under the
K8sRunLauncher). Each partition gets its own materialization and metadata, and a log line as it
finishes, so progress per partition shows in the UI while a batch runs.
"""


import json
import os
import time
import warnings
from decimal import Decimal
from typing import Any

import dagster as dg

from live_runner.persistence.journal_state import load_state
from trading_pipeline.backtest_params import (
    BACKTEST_PARTITIONS, BacktestResource, drop_journal, journal_url, split_key,
)
from trading_pipeline.backtest_report import render
from trading_pipeline.backtest_summary import SessionResult, SetSummary, summarize_set
from trading_pipeline.history_sources import HistoryResource, NoHistory
from trading_pipeline.journal_snapshot import snapshot, trade_records
from trading_pipeline.resources import MarketDataResource, RunnerResource, TradingStoreResource

warnings.filterwarnings("ignore", message=r"Parameter `backfill_policy` of function `asset`")
# Partitions per run of a backfill: enough sessions that a run's start-up (~3 s) is small next
# to its replays, few enough that a year still spreads over every worker (env to tune).
MAX_PARTITIONS_PER_RUN = int(os.environ.get("TRADING_BACKTEST_PARTITIONS_PER_RUN", "25"))


def _write_json(path, data) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(data, indent=1, default=str))
    tmp.replace(path)


def result_path(store: TradingStoreResource, params: str, day):
    p = store.root() / "backtests" / params / f"{day.isoformat()}.json"
    p.parent.mkdir(parents=True, exist_ok=True)
    return p


def backtest_one(key: str, market_data: MarketDataResource, history: HistoryResource,
                 runner: RunnerResource, store: TradingStoreResource,
                 backtest: BacktestResource) -> dict[str, Any]:
    """Replay one (session, parameter set) into a fresh journal; the runner's summary."""
    from live_runner.core.config import ConfigError
    from live_runner.live.runs import RunOptions, run_session

    day, params = split_key(key)
    try:
        config = backtest.config_for(runner, params)
    except (ValueError, ConfigError) as exc:
        raise dg.Failure(f"session_backtest {key}: {exc}") from None
    try:
        feed, fetched = history.session_feed(day, market_data)
    except NoHistory as exc:
        raise dg.Failure(f"session_backtest {key}: {exc}") from None
    drop_journal(store, params, day)
    summary = run_session(config, RunOptions(bars=feed, journal_url=journal_url(store, params, day)))
    summary.update(session=day.isoformat(), params=params, feed=str(feed), fetched=fetched)
    _write_json(result_path(store, params, day), summary)
    return summary


def partition_metadata(s: dict[str, Any]) -> dict[str, Any]:
    stats = s["stats"]
    rows = [dg.TableRecord({"strategy": name, "trades": int(st.get("trades", 0)),
                            "win_rate": float(st.get("win_rate") or 0.0),
                            "net_pnl_usd": float(Decimal(str(st.get("net_pnl", "0"))))})
            for name, st in sorted(stats.items())]
    return {
        "trades": dg.MetadataValue.int(len(s["trades"])),
        "realized_pnl_usd": dg.MetadataValue.float(float(s["realized_pnl"])),
        "commissions_usd": dg.MetadataValue.float(float(s["commissions"])),
        "bars": dg.MetadataValue.int(s["bars_processed"]),
        "signals": dg.MetadataValue.int(s["signals"]),
        "per_strategy": dg.MetadataValue.table(rows, schema=dg.TableSchema(columns=[
            dg.TableColumn("strategy", "string"), dg.TableColumn("trades", "int"),
            dg.TableColumn("win_rate", "float"), dg.TableColumn("net_pnl_usd", "float")])),
        "risk_denials": dg.MetadataValue.json(s["risk_denials"]),
        "feed": dg.MetadataValue.path(s["feed"]),
        "elapsed_s": dg.MetadataValue.float(float(s["elapsed_s"])),
    }


@dg.asset(partitions_def=BACKTEST_PARTITIONS, group_name="backtest", kinds={"sqlite", "json"},
          backfill_policy=dg.BackfillPolicy.multi_run(max_partitions_per_run=MAX_PARTITIONS_PER_RUN))
def session_backtest(context: dg.AssetExecutionContext, market_data: MarketDataResource,
                     history: HistoryResource, runner: RunnerResource, store: TradingStoreResource,
                     backtest: BacktestResource) -> dg.MaterializeResult:
    """A past session replayed with a parameter set: same chain and config as live, paper fills,
    one journal per partition. A session without bars fails the run, naming day and source."""
    keys = sorted(context.partition_keys, key=str)
    started, cpu, bars = time.perf_counter(), time.process_time(), 0
    for i, key in enumerate(keys, 1):
        s = backtest_one(key, market_data, history, runner, store, backtest)
        bars += s["bars_processed"]
        context.add_asset_metadata(partition_metadata(s), partition_key=key)
        context.log.info(f"{key}: {len(s['trades'])} trades, P&L ${s['realized_pnl']} "
                         f"({s['bars_processed']:,} bars; {i}/{len(keys)} of this run)")
    wall, cpu = time.perf_counter() - started, time.process_time() - cpu
    context.log.info(f"{len(keys)} partitions, {bars:,} bars in {wall:.1f} s "
                     f"({bars / wall if wall else 0:,.0f} bars/s; {cpu:.1f} s CPU, "
                     f"{bars / cpu if cpu else 0:,.0f} bars per CPU-second)")
    return dg.MaterializeResult()


def materialized_keys(instance: dg.DagsterInstance) -> list[str]:
    return sorted(str(k) for k in instance.get_materialized_partitions(session_backtest.key))


def load_sets(keys: list[str], runner: RunnerResource, store: TradingStoreResource,
              backtest: BacktestResource) -> list[SetSummary]:
    """Every backtested session, read from its journal, grouped by parameter set."""
    sets: dict[str, SetSummary] = {}
    for key in keys:
        day, params = split_key(key)
        if params not in sets:
            try:
                size = backtest.config_for(runner, params).account_size
            except ValueError:  # a set since removed from the file: the live account size
                size = runner.load_config().account_size
            sets[params] = SetSummary(params, Decimal(repr(size)))
        snap = snapshot(journal_url(store, params, day, create=False), day)
        if not snap["ran"]:
            raise dg.Failure(f"backtest_summary: the journal of {key} is missing "
                             f"({journal_url(store, params, day, create=False)}); re-run that partition")
        path = result_path(store, params, day)
        bars = json.loads(path.read_text()).get("bars_processed", 0) if path.exists() else 0
        sets[params].sessions.append(SessionResult(
            day, Decimal(snap["realized_pnl"]), Decimal(snap["commissions"]),
            trade_records(snap["trades"]), bars))
    return [sets[k] for k in sorted(sets)]


@dg.asset(deps=[session_backtest], group_name="backtest", kinds={"html"})
def backtest_summary(context: dg.AssetExecutionContext, runner: RunnerResource,
                     store: TradingStoreResource, backtest: BacktestResource) -> dg.MaterializeResult:
    """Across every materialized session_backtest: equity, daily/monthly P&L, drawdown, Sharpe,
    Sortino, win rate, profit factor, avg R, exposure, per strategy/symbol, P&L distribution;
    parameter sets side by side (Markdown and PNG here, and an HTML report)."""
    keys = materialized_keys(context.instance)
    if not keys:
        raise dg.Failure("backtest_summary: no session_backtest partition is materialized yet")
    sets = load_sets(keys, runner, store, backtest)
    figures = [summarize_set(s) for s in sets]
    out_dir = store.root() / "backtest_summary"
    out = render(sets, figures, out_dir)
    totals = {"keys": keys, "sets": {f["name"]: {
        "net_pnl": str(f["net_pnl"]), "trades_pnl": str(f["trades_pnl"]), "trades": f["trades"],
        "sessions": {d["day"]: str(d["pnl"]) for d in f["daily"]}} for f in figures}}
    _write_json(out_dir / "totals.json", totals)
    md = out["markdown"]
    return dg.MaterializeResult(metadata={
        "sessions": dg.MetadataValue.int(len(keys)),
        "parameter_sets": dg.MetadataValue.json([f["name"] for f in figures]),
        **{f"net_pnl_usd/{f['name']}": dg.MetadataValue.float(float(f["net_pnl"])) for f in figures},
        **{f"sharpe/{f['name']}": dg.MetadataValue.float(f["sharpe"] or 0.0) for f in figures},
        "summary": dg.MetadataValue.md(md),
        "equity_curve": dg.MetadataValue.md(f"![equity](data:image/png;base64,{out['equity_b64']})"),
        "pnl_distribution": dg.MetadataValue.md(f"![P&L](data:image/png;base64,{out['hist_b64']})"),
        "html": dg.MetadataValue.path(out["html_path"]),
        "equity_png": dg.MetadataValue.path(out["equity_png"]),
    })


@dg.asset_check(asset=backtest_summary, blocking=True)
def backtest_summary_matches_journals(context: dg.AssetCheckExecutionContext,
                                      store: TradingStoreResource) -> dg.AssetCheckResult:
    """The summary's totals, per parameter set and per session, equal the journals' realized
    P&L (rebuilt from fills by live_runner.persistence.journal_state) to the cent, and it covers every
    materialized partition."""
    totals = json.loads((store.root() / "backtest_summary" / "totals.json").read_text())
    keys = materialized_keys(context.instance)
    problems: list[str] = []
    if sorted(totals["keys"]) != keys:
        problems.append(f"summary covers {len(totals['keys'])} partitions, {len(keys)} are materialized")
    journal_sum: dict[str, Decimal] = {}
    for key in totals["keys"]:
        day, params = split_key(key)
        ses = load_state(journal_url(store, params, day, create=False), day.isoformat()
                         ).sessions.get(day.isoformat())
        realized = ses.realized if ses is not None else Decimal(0)
        journal_sum[params] = journal_sum.get(params, Decimal(0)) + realized
        reported = Decimal(totals["sets"][params]["sessions"].get(day.isoformat(), "NaN"))
        if reported != realized:
            problems.append(f"{key}: summary {reported} != journal {realized}")
    for name, t in totals["sets"].items():
        net, journal = Decimal(t["net_pnl"]), journal_sum.get(name, Decimal(0))
        if not (net.quantize(Decimal("0.01")) == journal.quantize(Decimal("0.01")) == net == journal):
            problems.append(f"{name}: summary total {net} != journals' sum {journal}")
    return dg.AssetCheckResult(passed=not problems, metadata={
        "journals_total_usd": dg.MetadataValue.float(float(sum(journal_sum.values(), Decimal(0)))),
        "per_set": dg.MetadataValue.json({k: str(v) for k, v in sorted(journal_sum.items())}),
        "problems": dg.MetadataValue.json(problems[:20])})


backtest = dg.define_asset_job(
    "backtest", selection=dg.AssetSelection.assets(session_backtest),
    executor_def=dg.multiprocess_executor,
    description="Replay past sessions per parameter set (batched runs; see README Backtests).")

backtest_report = dg.define_asset_job(
    "backtest_report", selection=dg.AssetSelection.assets(backtest_summary),
    description="The summary across every backtested session, and its reconciliation check.")

BACKTEST_ASSETS = [session_backtest, backtest_summary]
BACKTEST_CHECKS = [backtest_summary_matches_journals]
BACKTEST_JOBS = [backtest, backtest_report]
