"""Self-healing under a real `dagster-daemon`: the market_open_sensor launches the day's paced live
session, the runner subprocess is killed with SIGKILL at random moments (twice), the sensor
relaunches the session (`<date>-retry-<n>`) on the same journal (the second time the run worker and
its code server are killed too, so only the lease's stale heartbeat tells the run is lost), and the day ends with the same
trades and P&L as an uninterrupted replay of the same feed, no client order id journaled twice.

The sensor's market clock is fixed inside the trading day (TRADING_MARKET_CLOCK_NOW) and the
relaunch back-off is 0, so each relaunch follows at the sensor's next tick (the interval is 5 s
here, TRADING_SENSOR_INTERVAL_S; 30 s in production)."""

import json
import os
import random
import signal
import subprocess
import sys
from collections import Counter

import dagster as dg
import pytest
import sqlalchemy as sa

from tests.integration.test_dagster_daemon import FINISHED, Site
from tests.kit.dagster_env import (
    REPO_ROOT, DagsterProcess, dagster_cli, describe, processes_matching, wait_for,
)
from trading_pipeline.relaunch import RELAUNCH_OF_TAG, RELAUNCH_TAG

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]
DAY = "2024-11-26"


def runs_of_the_day(site: Site) -> list[dg.DagsterRun]:
    return list(site.instance.get_runs(dg.RunsFilter(job_name="live_session",
                                                     tags={"dagster/partition": DAY})))


def test_a_killed_live_session_is_relaunched_and_ends_the_day_as_an_uninterrupted_run(tmp_path):
    site = Site(tmp_path)
    site.env.update({"TRADING_MARKET_CLOCK_NOW": f"{DAY}T10:00:00-05:00", "TRADING_RUNNER_SPEED": "900",
                     "TRADING_LIVE_RELAUNCH_BACKOFF_S": "0", "TRADING_LIVE_MAX_RELAUNCHES": "3",
                     "TRADING_SENSOR_INTERVAL_S": "5"})
    site.prepare(DAY)
    rng = random.Random(int(os.environ.get("RELAUNCH_TEST_SEED", "13")))
    feed = str(tmp_path / "pipeline" / "sessions" / DAY / "feed.parquet")
    journal = tmp_path / "pipeline" / "journals" / "journal_20241126.db"
    with DagsterProcess(["run", "-w", "workspace.yaml"], site.env, tmp_path / "daemon.log",
                        program="dagster-daemon") as daemon:
        try:
            out = dagster_cli(["sensor", "start", "market_open_sensor", "-w", "workspace.yaml"], site.env)
            assert out.returncode == 0, out.stderr[-2000:]
            for kill in range(2):
                pids = wait_for(lambda: processes_matching("live_runner", feed), 120,
                                f"runner {kill + 1} to start")
                wait_for(lambda: journal.exists(), 60, "the journal")
                delay = rng.uniform(1.0, 12.0)
                _sleep(delay)
                if kill == 1:
                    # The second time the whole run worker goes with its runner, and the code server
                    # that spawned it (a host or pod lost): nothing reports the run failed, it stays
                    # STARTED; the sensor must tell from the lease that no runner is left.
                    pids = sorted(set(pids) | {a for p in pids for a in _ancestors(p, 2)})
                for pid in pids:
                    os.kill(pid, signal.SIGKILL)
                wait_for(lambda: len([r for r in runs_of_the_day(site) if r.status == dg.DagsterRunStatus.FAILURE]) > kill,
                         120, f"run {kill + 1} to fail")
            final = wait_for(lambda: _finished_relaunch(site, 2), 300, "the second relaunch to finish")
        finally:
            site.instance.dispose()
            daemon.stop()
    assert final.status == dg.DagsterRunStatus.SUCCESS, site.run_log(final.run_id)[-3000:]
    runs = sorted(runs_of_the_day(site), key=lambda r: int(r.tags.get(RELAUNCH_TAG, "0")))
    assert [r.tags.get("dagster/run_key") for r in runs] == [DAY, f"{DAY}-retry-1", f"{DAY}-retry-2"]
    assert [r.status for r in runs] == [dg.DagsterRunStatus.FAILURE] * 2 + [dg.DagsterRunStatus.SUCCESS]
    assert runs[1].tags[RELAUNCH_OF_TAG] == runs[0].run_id and runs[2].tags[RELAUNCH_OF_TAG] == runs[1].run_id
    assert "relaunching (1 of 3" in daemon.output() and "relaunching (2 of 3" in daemon.output()
    assert "live_session_lost" in daemon.output() and "its run worker is gone" in daemon.output()
    summary = json.loads((tmp_path / "pipeline" / "sessions" / DAY / "summary.json").read_text())
    uninterrupted = _replay(tmp_path)
    assert summary["trades"] == uninterrupted["trades"] and summary["trades"]
    assert summary["realized_pnl"] == uninterrupted["realized_pnl"]
    assert summary["final_equity"] == uninterrupted["final_equity"]
    engine = sa.create_engine(f"sqlite:///{journal}")
    with engine.connect() as c:
        orders = [k for (k,) in c.execute(sa.text("select key from journal_events where kind = 'order'"))]
        lease = c.execute(sa.text("select generation, released from runner_lease")).one()
    engine.dispose()
    assert orders and not [k for k, n in Counter(orders).items() if n > 1]  # no client id twice
    assert tuple(lease) == (3, True)  # three runners, one after the other
    assert not processes_matching(str(tmp_path)), describe(processes_matching(str(tmp_path)))


def _ancestors(pid: int, n: int) -> list[int]:
    """The runner's parent (the run worker) and grandparent (the code server that spawned it)."""
    out = []
    for _ in range(n):
        with open(f"/proc/{pid}/stat") as f:
            pid = int(f.read().rsplit(")", 1)[1].split()[1])
        out.append(pid)
    return out


def _sleep(seconds: float) -> None:
    import time

    time.sleep(seconds)  # a random moment in the runner's session, not a timing assertion


def _finished_relaunch(site: Site, n: int) -> dg.DagsterRun | None:
    for run in runs_of_the_day(site):
        if run.tags.get(RELAUNCH_TAG) == str(n) and run.status in FINISHED:
            return run
    return None


def _replay(tmp_path) -> dict:
    """The same feed and config, replayed unpaced on a fresh journal: the uninterrupted day."""
    from datetime import date

    from trading_pipeline.resources import TradingStoreResource

    folder = tmp_path / "pipeline" / "sessions" / DAY
    universe = TradingStoreResource(data_dir=str(tmp_path / "pipeline")).load_universe(date.fromisoformat(DAY))
    cmd = [sys.executable, "-m", "live_runner", "replay", "--bars", str(folder / "feed.parquet"),
           "--config", str(folder / "config.yaml"), "--journal", f"sqlite:///{tmp_path / 'replay.db'}",
           "--universe", ",".join(universe), "--json"]
    out = subprocess.run(cmd, cwd=REPO_ROOT, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    return json.loads(out.stdout)


def test_a_crash_loop_stops_at_the_bound_with_a_critical_alert(tmp_path):
    """A session that fails at every start (its journal holds an event the run does not
    regenerate: a refused resume, exit 3) is relaunched once (the bound, here 1), then given up
    with one CRITICAL alert, and not relaunched again."""
    from live_runner.persistence.journal import Journal

    day = "2024-11-27"
    site = Site(tmp_path)
    site.env.update({"TRADING_MARKET_CLOCK_NOW": f"{day}T10:00:00-05:00", "TRADING_RUNNER_SPEED": "900",
                     "TRADING_LIVE_RELAUNCH_BACKOFF_S": "0", "TRADING_LIVE_MAX_RELAUNCHES": "1",
                     "TRADING_SENSOR_INTERVAL_S": "5"})
    site.prepare(day)
    journal = Journal(f"sqlite:///{tmp_path / 'pipeline' / 'journals' / 'journal_20241127.db'}")
    journal.append(day, 0, "bogus", "", {"not": "this run's"})
    journal.close()

    def runs() -> list[dg.DagsterRun]:
        return list(site.instance.get_runs(dg.RunsFilter(job_name="live_session",
                                                         tags={"dagster/partition": day})))
    with DagsterProcess(["run", "-w", "workspace.yaml"], site.env, tmp_path / "daemon.log",
                        program="dagster-daemon") as daemon:
        try:
            out = dagster_cli(["sensor", "start", "market_open_sensor", "-w", "workspace.yaml"], site.env)
            assert out.returncode == 0, out.stderr[-2000:]
            wait_for(lambda: "live_session_gave_up" in daemon.output(), 300, "the CRITICAL give-up alert")
            _sleep(20)  # more sensor ticks (5 s interval here) after the bound: none may relaunch
            final = runs()
        finally:
            site.instance.dispose()
            daemon.stop()
    assert sorted(r.tags.get("dagster/run_key") for r in final) == [day, f"{day}-retry-1"]
    assert all(r.status == dg.DagsterRunStatus.FAILURE for r in final)
    log = daemon.output()
    # sent once (the alert system's log sink), and the sensor's tick log says what it sent
    assert log.count("ALERT [CRITICAL] live_session_gave_up") == 1, log[-3000:]
    assert "the bound of 1 relaunches is reached" in log
    assert log.count(f"alert live_session_gave_up:{day} (critical) sent") == 1, log[-3000:]
