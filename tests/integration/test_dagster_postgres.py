"""The Dagster instance on the real PostgreSQL (the deployment dagster.yaml, credentials from the
environment) with the runner's journal there too: a daemon launches live_session in replay
mode, and the end of day reads the journal back from its per-session schema."""

import json
import uuid

import dagster as dg
import pytest
import sqlalchemy as sa

from tests.kit.dagster_env import (
    SAMPLE_DAY, DagsterProcess, dagster_cli, dagster_home, isolated_resources, pipeline_env,
    process_env, processes_matching, wait_for,
)
from trading_pipeline.definitions import make_definitions
from trading_pipeline.resources import TradingStoreResource

pytestmark = [pytest.mark.postgres, pytest.mark.slow]


@pytest.fixture
def pg_database(pg_fresh_database):
    """A fresh database (Dagster's tables and the journal schemas), dropped afterwards."""
    return pg_fresh_database


def test_live_session_on_a_postgres_instance(tmp_path, pg_database):
    url = pg_database
    journal_url = url.render_as_string(hide_password=False)
    home = dagster_home(tmp_path, "dagster.yaml")
    env = process_env({
        **pipeline_env(tmp_path, TRADING_JOURNAL_URL=journal_url), "DAGSTER_HOME": str(home),
        "DAGSTER_PG_USERNAME": url.username or "postgres", "DAGSTER_PG_PASSWORD": url.password or "",
        "DAGSTER_PG_HOST": url.host or "127.0.0.1", "DAGSTER_PG_PORT": str(url.port or 5432),
        "DAGSTER_PG_DB": url.database})
    resources = isolated_resources(tmp_path, store=TradingStoreResource(
        data_dir=str(tmp_path / "pipeline"), journal_url=journal_url))
    with pytest.MonkeyPatch.context() as mp:
        for key in ("DAGSTER_PG_USERNAME", "DAGSTER_PG_PASSWORD", "DAGSTER_PG_HOST", "DAGSTER_PG_PORT",
                    "DAGSTER_PG_DB"):
            mp.setenv(key, env[key])
        instance = dg.DagsterInstance.from_config(str(home))
        assert type(instance.run_storage).__name__ == "PostgresRunStorage"
        defs = make_definitions(resources)
        assert defs.resolve_job_def("premarket_prep").execute_in_process(
            partition_key=SAMPLE_DAY, instance=instance).success
        with DagsterProcess(["run", "-w", "workspace.yaml"], env, tmp_path / "daemon.log",
                            program="dagster-daemon"):
            run_id = str(uuid.uuid4())
            out = dagster_cli(["job", "launch", "-w", "workspace.yaml", "-j", "live_session",
                               "--run-id", run_id, "--tags", json.dumps({"dagster/partition": SAMPLE_DAY}),
                               "--config-json", json.dumps(
                                   {"ops": {"run_live_session": {"config": {"mode": "replay"}}}})], env)
            assert out.returncode == 0, out.stderr[-3000:]
            run = wait_for(lambda: (r := instance.get_run_by_id(run_id)) and r.is_finished and r, 120,
                           "the live_session run on Postgres")
            log = "\n".join(e.user_message for e in instance.all_logs(run_id))
            assert run.status == dg.DagsterRunStatus.SUCCESS, log[-3000:]
        wait_for(lambda: not processes_matching(str(tmp_path)), 15, "the daemon's processes to exit")
        eod = defs.resolve_job_def("end_of_day").execute_in_process(partition_key=SAMPLE_DAY, instance=instance)
        assert eod.success
        [journal] = [m for m in eod.asset_materializations_for_node("session_journal")]
        assert journal.metadata["ran"].value is True and journal.metadata["fills"].value > 0
        instance.dispose()
    engine = sa.create_engine(url, poolclass=sa.pool.NullPool)
    try:
        with engine.connect() as conn:
            stored = conn.execute(sa.text("SELECT count(*) FROM runs WHERE run_id = :r"), {"r": run_id}).scalar()
            events = conn.execute(sa.text("SELECT count(*) FROM journal_20241126.journal_events")).scalar()
    finally:
        engine.dispose()
    assert stored == 1 and events > 100


def test_postgres_journals_one_schema_per_session_and_retention_drops_them(pg_database):
    from datetime import date

    from live_runner.persistence.journal import Journal

    url = pg_database.render_as_string(hide_password=False)
    store = TradingStoreResource(data_dir="var/unused", journal_url=url)
    days = [date(2024, 11, 26), date(2024, 11, 27)]
    for day in days:
        assert not store.journal_exists(day)
        journal = Journal(store.journal_url_for(day))
        journal.append(day.isoformat(), 1, "session_start", "", {"equity": "100000.00"})
        journal.close()
        assert store.journal_exists(day)
    assert store.journal_days() == days
    assert store.drop_journal(days[0]) == 1
    assert store.journal_days() == days[1:] and not store.journal_exists(days[0])
