"""Backtest backfills under a real dagster-daemon, newest session first, on SQLite and on
PostgreSQL (instance and journals): the newest session is backtested first (its bar file, which
also holds the previous session's regular hours, then exists), then an asset backfill of six
sessions x two parameter sets through the README's CLI (`backtest_cli backfill --wait
--summary`), batched into runs by the BackfillPolicy. The summary equals the journals to the
cent; `dagster job backfill -j backtest` works as the README writes it."""

import json
import subprocess
import sys
import uuid
from datetime import date
from decimal import Decimal

import dagster as dg
import pytest
import sqlalchemy as sa
from sqlalchemy.engine import make_url

from live_runner.persistence.journal_state import load_state
from tests.kit.dagster_env import (
    REPO_ROOT, DagsterProcess, dagster_cli, dagster_home, isolated_resources, pipeline_env,
    process_env, processes_matching, wait_for,
)
from trading_pipeline.backtest_params import journal_url, register_param_sets
from trading_pipeline.definitions import make_definitions
from trading_pipeline.resources import TradingStoreResource

pytestmark = [pytest.mark.slow, pytest.mark.timeout(400)]
DAYS = ["2024-12-03", "2024-12-04", "2024-12-05", "2024-12-06", "2024-12-09", "2024-12-10"]
SETS = ["base", "tight"]


def backfill_newest_first(tmp, env, instance, resources, before_daemon=lambda: None):
    defs = make_definitions(resources)
    register_param_sets(instance, SETS)
    for params in SETS:  # the newest session first, in process on the same instance
        assert defs.resolve_job_def("backtest").execute_in_process(
            partition_key=f"{DAYS[-1]}|{params}", instance=instance).success
    cli = subprocess.Popen(
        [sys.executable, "-m", "trading_pipeline.backtest_cli", "backfill", "--from", DAYS[0],
         "--to", DAYS[-1], "--params", ",".join(SETS), "--wait", "--summary", "--timeout", "300"],
        cwd=REPO_ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    first = cli.stdout.readline()  # the backfill exists: now the daemon (its first tick takes it)
    assert first.startswith("backfill "), first + cli.stderr.read()[-3000:]
    before_daemon()
    with DagsterProcess(["run", "-w", "workspace.yaml"], env, tmp / "daemon.log", program="dagster-daemon"):
        out, err = cli.communicate(timeout=330)
    assert cli.returncode == 0, first + out + err[-3000:]
    assert "summary report: " in out
    backfill_id = first.split()[1].rstrip(":")
    runs = instance.get_runs(dg.RunsFilter(tags={"dagster/backfill": backfill_id}))
    assert len(runs) == len(SETS)  # batched: one run per parameter set (6 <= 25 per run)
    assert {r.tags["dagster/asset_partition_range_start"] for r in runs} == {f"{DAYS[0]}|{s}" for s in SETS}
    wait_for(lambda: not processes_matching(str(tmp)), 15, "the daemon's processes to exit")
    return out


def assert_summary_equals_journals(instance, store):
    keys = instance.get_materialized_partitions(dg.AssetKey("session_backtest"))
    assert keys == {f"{d}|{s}" for d in DAYS for s in SETS}
    journals: dict[str, Decimal] = {}
    for key in keys:
        day, params = key.split("|")
        ses = load_state(journal_url(store, params, date.fromisoformat(day), create=False), day).sessions[day]
        assert ses.ended
        journals[params] = journals.get(params, Decimal(0)) + ses.realized
    totals = json.loads((store.root() / "backtest_summary" / "totals.json").read_text())
    assert {k: Decimal(v["net_pnl"]) for k, v in totals["sets"].items()} == journals
    check = instance.event_log_storage.get_latest_asset_check_execution_by_key(
        [dg.AssetCheckKey(dg.AssetKey("backtest_summary"), "backtest_summary_matches_journals")])
    [record] = check.values()
    assert record.status.value == "SUCCEEDED"
    for day in DAYS:  # every feed holds the session's premarket and a seed per symbol
        feed = store.root().parent / "history"
        assert any(feed.glob(f"*/feed_{day}.parquet"))


def test_backfill_newest_first_under_the_daemon_on_sqlite(tmp_path):
    home = dagster_home(tmp_path)
    env = process_env({**pipeline_env(tmp_path, symbols=16), "DAGSTER_HOME": str(home),
                       "TRADING_HISTORY_CACHE": str(tmp_path / "history")})
    resources = isolated_resources(tmp_path, symbols=16)
    with dg.DagsterInstance.from_config(str(home)) as instance:
        def job_backfill():  # the README's job backfill: one run per partition, queued
            out = dagster_cli(["job", "backfill", "-w", "workspace.yaml", "-j", "backtest",
                               "--partitions", f"{DAYS[0]}|base", "--noprompt"], env)
            assert out.returncode == 0 and "Launched backfill job" in out.stdout, out.stderr[-3000:]
        backfill_newest_first(tmp_path, env, instance, resources, before_daemon=job_backfill)
        assert_summary_equals_journals(instance, resources["store"])
        [run] = [r for r in instance.get_runs(dg.RunsFilter(job_name="backtest"))
                 if r.tags.get("dagster/partition") == f"{DAYS[0]}|base"]
        assert run.status == dg.DagsterRunStatus.SUCCESS


@pytest.mark.postgres
def test_backfill_newest_first_under_the_daemon_on_postgres(tmp_path, pg_url):
    name = f"dagster_{uuid.uuid4().hex[:12]}"
    admin = sa.create_engine(pg_url, isolation_level="AUTOCOMMIT", poolclass=sa.pool.NullPool)
    with admin.connect() as conn:
        conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    url = make_url(pg_url).set(database=name)
    journal = url.render_as_string(hide_password=False)
    try:
        home = dagster_home(tmp_path, "dagster.yaml")
        pg_env = {"DAGSTER_PG_USERNAME": url.username or "postgres", "DAGSTER_PG_PASSWORD": url.password or "",
                  "DAGSTER_PG_HOST": url.host or "127.0.0.1", "DAGSTER_PG_PORT": str(url.port or 5432),
                  "DAGSTER_PG_DB": name}
        env = process_env({**pipeline_env(tmp_path, symbols=16, TRADING_JOURNAL_URL=journal),
                           "DAGSTER_HOME": str(home), "TRADING_HISTORY_CACHE": str(tmp_path / "history"),
                           **pg_env})
        store = TradingStoreResource(data_dir=str(tmp_path / "pipeline"), journal_url=journal)
        resources = isolated_resources(tmp_path, symbols=16, store=store)
        with pytest.MonkeyPatch.context() as mp:
            for k, v in pg_env.items():
                mp.setenv(k, v)
            instance = dg.DagsterInstance.from_config(str(home))
            assert type(instance.run_storage).__name__ == "PostgresRunStorage"
            backfill_newest_first(tmp_path, env, instance, resources)
            assert_summary_equals_journals(instance, store)
            instance.dispose()
        engine = sa.create_engine(url, poolclass=sa.pool.NullPool)
        with engine.connect() as conn:
            schemas = set(conn.execute(sa.text(
                "SELECT schema_name FROM information_schema.schemata WHERE schema_name LIKE 'bt_%'")).scalars())
        engine.dispose()
        assert schemas == {f"bt_{s}_{d.replace('-', '')}" for d in DAYS for s in SETS}
    finally:
        with admin.connect() as conn:
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()
