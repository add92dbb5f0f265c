"""The code location under a real `dagster-daemon` on a temporary SQLite instance (the local
dagster.yaml: queued runs, one live session at a time): `dagster job launch` of live_session in
replay mode, a backfill over three trading days, and terminating a running live session.

The daemon runs in its own process group, killed with everything it spawned at teardown; each
wait is bounded."""

import json
import time
import uuid
from pathlib import Path

import dagster as dg
import pytest

from live_runner.persistence.journal_state import load_state
from tests.kit.dagster_env import (
    DagsterProcess, dagster_cli, describe, dagster_home, isolated_resources, pipeline_env, process_env,
    processes_matching, wait_for,
)
from trading_pipeline.market_assets import daily_bars, premarket_universe

pytestmark = pytest.mark.slow
FINISHED = (dg.DagsterRunStatus.SUCCESS, dg.DagsterRunStatus.FAILURE, dg.DagsterRunStatus.CANCELED)


class Site:
    """A temporary DAGSTER_HOME and pipeline folders, with a daemon serving them."""

    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.home = dagster_home(tmp)
        self.env = process_env({**pipeline_env(tmp), "DAGSTER_HOME": str(self.home)})
        self.instance = dg.DagsterInstance.from_config(str(self.home))
        self.resources = isolated_resources(tmp)
        self.prepared: set[str] = set()

    def prepare(self, *days: str) -> None:
        """The premarket universe of each day, materialized in process on the same instance."""
        for day in days:
            if day not in self.prepared:
                result = dg.materialize([daily_bars, premarket_universe], partition_key=day,
                                        instance=self.instance, resources=self.resources)
                assert result.success
                self.prepared.add(day)

    def launch(self, job: str, day: str, config: dict) -> str:
        run_id = str(uuid.uuid4())
        out = dagster_cli(["job", "launch", "-w", "workspace.yaml", "-j", job, "--run-id", run_id,
                           "--tags", json.dumps({"dagster/partition": day}),
                           "--config-json", json.dumps(config)], self.env)
        assert out.returncode == 0, out.stderr[-3000:]
        return run_id

    def wait_finished(self, run_id: str, timeout: float) -> dg.DagsterRun:
        def finished():
            run = self.instance.get_run_by_id(run_id)
            return run if run is not None and run.status in FINISHED else None
        return wait_for(finished, timeout, f"run {run_id} to finish")

    def run_log(self, run_id: str) -> str:
        return "\n".join(e.user_message for e in self.instance.all_logs(run_id))


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    s = Site(tmp_path_factory.mktemp("daemon_site"))
    with DagsterProcess(["run", "-w", "workspace.yaml"], s.env, s.tmp / "daemon.log",
                        program="dagster-daemon") as daemon:
        s.daemon = daemon
        yield s
        s.instance.dispose()
    def leftovers():  # killed processes may take a moment to be reaped
        return processes_matching(str(s.tmp)) or None
    try:
        wait_for(lambda: not leftovers(), 15, "the site's processes to exit")
    except AssertionError:
        raise AssertionError(f"processes left behind: {describe(leftovers() or [])}") from None


def test_job_launch_runs_live_session_in_replay_mode_under_the_daemon(site):
    day = "2024-11-26"
    site.prepare(day)
    run_id = site.launch("live_session", day, {"ops": {"run_live_session": {"config": {"mode": "replay"}}}})
    run = site.wait_finished(run_id, 120)
    assert run.status == dg.DagsterRunStatus.SUCCESS, site.run_log(run_id)[-3000:]
    assert run.tags["trading/live_session"] == "true" and run.tags["dagster/max_retries"] == "0"
    summary = json.loads((site.tmp / "pipeline" / "sessions" / day / "summary.json").read_text())
    state = load_state(f"sqlite:///{site.tmp / 'pipeline' / 'journals' / 'journal_20241126.db'}", day)
    assert str(state.sessions[day].realized) == summary["realized_pnl"] and state.sessions[day].ended
    assert "[pipes] external process successfully opened dagster pipes" in site.run_log(run_id)


def test_backfill_over_three_trading_days(site):
    days = ["2024-11-26", "2024-11-27", "2024-11-29"]  # Thanksgiving excluded; the 29th closes early
    site.prepare(*days)
    out = dagster_cli(["job", "backfill", "-w", "workspace.yaml", "-j", "end_of_day",
                       "--partitions", ",".join(days), "--noprompt"], site.env)
    assert out.returncode == 0, out.stderr[-3000:]
    def runs():
        found = site.instance.get_runs(dg.RunsFilter(job_name="end_of_day"))
        return found if len(found) == 3 and all(r.status in FINISHED for r in found) else None
    finished = wait_for(runs, 180, "three end_of_day runs")
    assert {r.tags["dagster/partition"] for r in finished} == set(days)
    assert all(r.status == dg.DagsterRunStatus.SUCCESS for r in finished), \
        [site.run_log(r.run_id)[-2000:] for r in finished if r.status != dg.DagsterRunStatus.SUCCESS]
    for day in days:
        audit = json.loads((site.tmp / "pipeline" / "replay_report" / f"{day}.json").read_text())
        assert audit["replay_realized_pnl"] is not None
        assert (site.tmp / "pipeline" / "reports" / day / "report.html").exists()
    bars = dg.AssetKey("intraday_bars")
    assert site.instance.get_materialized_partitions(bars) >= set(days)


def test_terminating_a_live_session_stops_the_runner_cleanly(site):
    day = "2024-11-27"
    site.prepare(day)
    run_id = site.launch("live_session", day,
                         {"ops": {"run_live_session": {"config": {"mode": "paced", "speed": 20.0}}}})
    feed = str(site.tmp / "pipeline" / "sessions" / day / "feed.parquet")
    wait_for(lambda: processes_matching("live_runner", feed), 90, "the runner process")
    # The runner opens Pipes (live_runner.ops.pipes_bridge) once its signal handlers are installed.
    wait_for(lambda: "successfully opened dagster pipes" in site.run_log(run_id), 90,
             "the runner to open Dagster Pipes")
    time.sleep(2)  # let it take bars for a while
    assert site.instance.get_run_by_id(run_id).status == dg.DagsterRunStatus.STARTED
    assert site.instance.run_launcher.terminate(run_id)
    run = site.wait_finished(run_id, 90)
    assert run.status == dg.DagsterRunStatus.CANCELED
    assert not processes_matching("live_runner", feed), "the runner outlived its run"
    log = site.run_log(run_id)
    assert "[pipes] execution interrupted, sending SIGINT to subprocess." in log
    state = load_state(f"sqlite:///{site.tmp / 'pipeline' / 'journals' / 'journal_20241127.db'}", day)
    session = state.sessions[day]
    assert session.started and not session.ended  # stopped mid-session, flushed, resumable
    assert session.counts["session_start"] == 1
