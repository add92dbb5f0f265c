"""A journal URL with a password, end to end: the password shows up nowhere a user can read.

The real Postgres (trust auth accepts and ignores the password) holds the journal. One test runs
the whole Dagster day in process (premarket_prep, live_session, end_of_day) with the URL in
TRADING_JOURNAL_URL, as compose and Kubernetes give it, and searches stdout/stderr, every file the
instance and the runner wrote (compute logs, event log database, runner logs, summary.json), the
Dagster event log and run tags, the journal rows, and the runner's command line while it runs.
The other runs the CLI (`replay --journal` warns; `run` takes the URL from the environment), asks
the runner's /status, and renders the dashboard on that journal and on an empty one.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import threading
import time
from pathlib import Path

import dagster as dg
import pytest
import sqlalchemy as sa
from sqlalchemy.engine import URL

from live_runner.ops.client import Unreachable, call
from live_runner.ops.redact import scrub
from tests.kit import dashboard as kit
from tests.kit.dagster_env import SAMPLE_DAY, dagster_home, isolated_resources
from trading_pipeline.definitions import make_definitions
from trading_pipeline.resources import RunnerResource, TradingStoreResource

pytestmark = [pytest.mark.postgres, pytest.mark.slow, pytest.mark.timeout(600)]
PASSWORD = "S3cretPa55word"
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def pg_database(pg_fresh_database):
    """A fresh database, addressed with a password (ignored by trust auth), dropped afterwards."""
    return pg_fresh_database.set(password=PASSWORD)


def leaks_in_files(root: Path) -> list[str]:
    """Files under `root` whose bytes hold the password (text, SQLite, Parquet alike)."""
    return [str(p) for p in root.rglob("*") if p.is_file() and PASSWORD.encode() in p.read_bytes()]


def journal_dump(url: URL) -> str:
    """Every journal row of every schema of the database, as text."""
    engine = sa.create_engine(url, poolclass=sa.pool.NullPool)
    try:
        insp = sa.inspect(engine)
        out = []
        with engine.connect() as conn:
            for schema in insp.get_schema_names():
                if insp.has_table("journal_events", schema=schema):
                    rows = conn.execute(sa.text(f'SELECT * FROM "{schema}".journal_events')).all()
                    out.extend(repr(tuple(r)) for r in rows)
        return "\n".join(out)
    finally:
        engine.dispose()


class CmdlineWatch:
    """Samples /proc while a job runs: the runner's argv, and whether its environment holds the
    journal URL (the way it must get it)."""

    def __init__(self, needle: str) -> None:
        self.needle, self.seen, self.env_has_url = needle, [], []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def _loop(self) -> None:
        while not self._stop.is_set():
            for entry in Path("/proc").iterdir():
                if not entry.name.isdigit():
                    continue
                try:
                    cmd = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
                    if "live_runner" in cmd and self.needle in cmd and cmd not in self.seen:
                        self.seen.append(cmd)
                        self.env_has_url.append(PASSWORD.encode() in (entry / "environ").read_bytes())
                except OSError:
                    continue
            time.sleep(0.02)

    def __enter__(self) -> "CmdlineWatch":
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(5)


def test_a_dagster_day_never_shows_the_journal_password(tmp_path, pg_database, monkeypatch, capfd):
    journal_url = pg_database.render_as_string(hide_password=False)
    assert PASSWORD in journal_url
    monkeypatch.setenv("TRADING_JOURNAL_URL", journal_url)  # as compose and trading-secrets set it
    cfg = tmp_path / "runner.yaml"
    cfg.write_text(f"log_dir: {tmp_path / 'runner_logs'}\nlog_format: json\n")
    home = dagster_home(tmp_path)
    instance = dg.DagsterInstance.from_config(str(home))
    resources = isolated_resources(
        tmp_path, runner=RunnerResource(ops_port=0, config_path=str(cfg)),
        store=TradingStoreResource(data_dir=str(tmp_path / "pipeline"),
                                   journal_url=dg.EnvVar("TRADING_JOURNAL_URL")))
    defs = make_definitions(resources)
    results = [defs.resolve_job_def("premarket_prep").execute_in_process(
        partition_key=SAMPLE_DAY, instance=instance)]
    with CmdlineWatch(str(tmp_path)) as watch:
        results.append(defs.resolve_job_def("live_session").execute_in_process(
            partition_key=SAMPLE_DAY, instance=instance,
            run_config={"ops": {"run_live_session": {"config": {"mode": "replay"}}}}))
    results.append(defs.resolve_job_def("end_of_day").execute_in_process(
        partition_key=SAMPLE_DAY, instance=instance))
    assert [r.success for r in results] == [True, True, True]
    out, err = capfd.readouterr()
    instance_logs = []
    for r in results:
        run = instance.get_run_by_id(r.run_id)
        instance_logs.append(json.dumps({"tags": run.tags, "config": run.run_config}, default=str))
        instance_logs.extend(dg.serialize_value(e) for e in instance.all_logs(r.run_id))
    instance.dispose()

    # The runner ran, with the URL in its environment and not on its command line.
    assert watch.seen and all("--journal" not in c and PASSWORD not in c for c in watch.seen), \
        [scrub(c) for c in watch.seen]
    assert all(watch.env_has_url), "the runner gets its journal URL from the environment"
    # It did write the Postgres journal (the password was really used), and what is shown masks it.
    summary = json.loads((tmp_path / "pipeline" / "sessions" / SAMPLE_DAY / "summary.json").read_text())
    assert summary["trades"] and summary["journal"].startswith(
        f"postgresql+psycopg2://{pg_database.username}:***@")
    rows = journal_dump(pg_database)
    assert '"fill"' in rows or "'fill'" in rows
    assert "***@" in "\n".join(instance_logs)  # the op logs the journal it hands the runner, masked
    for where, text in [("stdout", out), ("stderr", err), ("journal rows", rows),
                        ("event log and run tags", "\n".join(instance_logs))]:
        assert PASSWORD not in text, f"the password leaks into {where}"
    assert list((tmp_path / "runner_logs").glob("*.log")), "the runner wrote its log file"
    assert leaks_in_files(tmp_path) == []


def _runner(bars: Path, cfg: Path, env: dict[str, str], log: Path) -> tuple[subprocess.Popen, str]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "live_runner", "run", "--mode", "paper", "--bars", str(bars),
         "--speed", "100000", "--linger", "--config", str(cfg)],
        cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=open(log, "w"))
    end = time.monotonic() + 90
    while time.monotonic() < end:
        if m := re.search(r"ops server on (http://[0-9.]+:\d+)", log.read_text()):
            return proc, m.group(1)
        assert proc.poll() is None, log.read_text()[-2000:]
        time.sleep(0.1)
    raise AssertionError(f"no ops server: {log.read_text()[-2000:]}")


def _process_tree(pid: int) -> list[int]:
    """`pid` and its descendants (Linux /proc)."""
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        for task in Path(f"/proc/{p}/task").iterdir():
            children = (task / "children").read_text().split()
            todo.extend(int(c) for c in children)
    return out


def _page_bytes(at) -> bytes:
    """Every element Streamlit would send to the browser, serialized."""
    out: list[bytes] = []

    def walk(node) -> None:
        proto = getattr(node, "proto", None)
        if proto is not None:
            out.append(proto.SerializeToString())
        for child in getattr(node, "children", {}).values():
            walk(child)

    walk(at._tree)
    return b"\n".join(out)


def test_cli_status_and_dashboard_never_show_the_journal_password(tmp_path, pg_database, monkeypatch):
    from streamlit.testing.v1 import AppTest

    url = pg_database.render_as_string(hide_password=False)
    cfg = kit.config(tmp_path / "cfg.yaml")
    bars = kit.bars(tmp_path / "bars", symbols=12, cut_et=kit.CUT_ET)
    admin = sa.create_engine(pg_database, poolclass=sa.pool.NullPool)
    with admin.begin() as conn:
        for schema in ("replayed", "live", "empty"):
            conn.execute(sa.text(f'CREATE SCHEMA "{schema}"'))
    admin.dispose()
    in_schema = {s: f"{url}?options=-csearch_path%3D{s}" for s in ("replayed", "live", "empty")}

    # A developer's --journal with a password still works, with a warning; the JSON masks it.
    env = {k: v for k, v in os.environ.items() if k != "TRADING_JOURNAL_URL"}
    replay = subprocess.run([sys.executable, "-m", "live_runner", "replay", "--bars", str(bars),
                             "--config", str(cfg), "--journal", in_schema["replayed"], "--json"],
                            cwd=ROOT, env=env, capture_output=True, text=True, timeout=240)
    assert replay.returncode == 0, replay.stderr[-2000:]
    assert "/proc" in replay.stderr and "TRADING_JOURNAL_URL" in replay.stderr
    assert json.loads(replay.stdout)["journal"].startswith(f"postgresql+psycopg2://{pg_database.username}:***@")
    assert PASSWORD not in replay.stdout and PASSWORD not in replay.stderr

    # `run` takes the URL from the environment: not on its command line, not in /status.
    env = {**env, "TRADING_JOURNAL_URL": in_schema["live"], "TRADING_CONTROL_TOKEN": kit.TOKEN}
    proc, ops = _runner(bars, cfg, env, tmp_path / "runner.log")
    try:
        # Nor on its journal writer process's (a child of the runner, which needs the URL too).
        tree = _process_tree(proc.pid)
        assert len(tree) >= 2, "the runner's journal writer process is missing"
        for pid in tree:
            assert PASSWORD not in Path(f"/proc/{pid}/cmdline").read_text(), \
                scrub(Path(f"/proc/{pid}/cmdline").read_text())
        end = time.monotonic() + 90
        status: dict = {}
        while time.monotonic() < end and not (status.get("market_time") or "") >= f"{kit.DAY}T14:39:00Z":
            try:
                status = call(ops, "GET", "/status", timeout_s=5)[1]
            except Unreachable:
                pass
            time.sleep(0.2)
        raw = json.dumps(status)
        assert status["journal"]["url"].startswith(f"postgresql+psycopg2://{pg_database.username}:***@")
        assert PASSWORD not in raw

        # The dashboard, on the runner and the password-holding journal, and on an empty journal.
        monkeypatch.setenv("TRADING_RUNNER_URL", ops)
        monkeypatch.setenv("TRADING_CONTROL_TOKEN", kit.TOKEN)
        pages = {}
        for name in ("live", "empty"):
            monkeypatch.setenv("TRADING_JOURNAL_URL", in_schema[name])
            at = AppTest.from_file(str(kit.APP), default_timeout=60)
            at.run()
            assert not at.exception, [e.value for e in at.exception]
            pages[name] = _page_bytes(at)
        assert b"Runner up" in pages["live"] and b"Trades" in pages["live"]
        # The page follows the runner's session: an empty journal holds nothing for it (URL masked).
        assert (b"is empty or missing" in pages["empty"] or b"holds nothing for session" in pages["empty"])
        assert b":***@" in pages["empty"]
        for name, page in pages.items():
            assert PASSWORD.encode() not in page, f"the dashboard shows the password ({name})"
    finally:
        proc.terminate()
        proc.wait(30)
    assert PASSWORD not in (tmp_path / "runner.log").read_text()
    assert leaks_in_files(tmp_path) == []
