"""The account lease through the real CLI (`python -m live_runner run`): a second runner for the
same account is refused while the first trades on, untouched; a runner whose lease connection
PostgreSQL terminates stops sending, alerts CRITICAL and exits 7, and the next runner takes the
lease (generation 2) and finishes the day from the journal."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import sqlalchemy as sa

from tests.kit.sessions import gapper

pytestmark = pytest.mark.timeout(240)
ROOT = Path(__file__).resolve().parents[2]


def write_bars(path: Path) -> None:
    s = gapper()
    s.flat("GAPR", "09:34", "15:59", 11.9, 5_000)
    rows = ["symbol,timestamp,open,high,low,close,volume"]
    rows += [f"{b.symbol},{b.ts},{b.open},{b.high},{b.low},{b.close},{b.volume}" for b in s.sorted_bars()]
    path.write_text("\n".join(rows) + "\n")


def runner(tmp: Path, journal_url: str, speed: float = 60) -> subprocess.Popen:
    bars = tmp / "bars.csv"
    if not bars.exists():
        write_bars(bars)
    cfg = tmp / "cfg.yaml"
    cfg.write_text(f"feed: {{bars: {bars}, speed: {speed}}}\njournal: {{batch_size: 1}}\n"
                   "universe: [GAPR]\nlog_dir: null\nops: {port: 0}\n"
                   "lease: {heartbeat_s: 0.2, ttl_s: 1.0}\n")
    return subprocess.Popen(
        [sys.executable, "-m", "live_runner", "run", "--mode", "paper", "--config", str(cfg), "--json"],
        cwd=ROOT, env={**_env(), "TRADING_JOURNAL_URL": journal_url},
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _env() -> dict[str, str]:
    import os

    return {k: v for k, v in os.environ.items() if k != "TRADING_JOURNAL_URL"}


def count(engine: sa.Engine, kind: str) -> int:
    try:
        with engine.connect() as c:
            return c.execute(sa.text("select count(*) from journal_events where kind = :k"),
                             {"k": kind}).scalar() or 0
    except sa.exc.SQLAlchemyError:
        return 0


def wait_until(predicate, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


def test_a_second_runner_for_the_account_is_refused_and_the_first_trades_on(tmp_path):
    url = f"sqlite:///{tmp_path / 'journal.db'}"
    engine = sa.create_engine(url)
    first = runner(tmp_path, url)
    try:
        wait_until(lambda: count(engine, "fill") >= 1, 90, "the first runner's entry fill")
        marks = count(engine, "equity")
        second = runner(tmp_path, url)
        out, err = second.communicate(timeout=60)
        assert second.returncode == 6, err
        assert "refusing to start" in err and "paper:LR" in err
        assert f"pid {first.pid} on" in err and "generation 1" in err
        assert first.poll() is None, "the first runner must be unaffected"
        wait_until(lambda: count(engine, "equity") > marks + 3, 60, "the first runner to go on")
    finally:
        first.send_signal(signal.SIGTERM)
        out, err = first.communicate(timeout=60)
    assert first.returncode == 0, err
    summary = json.loads(out)
    assert summary["trades"] and summary["trades"][0]["exit_reason"] == "target"
    with engine.connect() as c:
        row = c.execute(sa.text("select generation, released from runner_lease")).one()
    assert tuple(row) == (1, True)


def test_postgres_lease_connection_terminated_the_runner_stops_and_the_next_one_finishes(pg_schema_url, tmp_path):
    url = pg_schema_url.url
    engine = sa.create_engine(url, poolclass=sa.pool.NullPool)
    admin = sa.create_engine(pg_schema_url.base_url, poolclass=sa.pool.NullPool)
    first = runner(tmp_path, url, speed=30)
    try:
        wait_until(lambda: count(engine, "fill") >= 1, 90, "the first runner's entry fill")
        with admin.connect() as c:
            backends = c.execute(sa.text(
                "select pid from pg_stat_activity where application_name = 'live_runner lease' "
                "and query not ilike '%pg_stat_activity%'")).scalars().all()
            assert len(backends) == 1
            c.execute(sa.text("select pg_terminate_backend(:p)"), {"p": backends[0]})
        out, err = first.communicate(timeout=60)
    finally:
        if first.poll() is None:
            first.kill()
            first.communicate()
    assert first.returncode == 7, err
    assert "lease_lost" in err and "CRITICAL" in err
    summary = json.loads(out)
    assert summary["lease"]["generation"] == 1 and summary["lease"]["lost"]
    # The lost runner did not release the row: the successor takes generation 2 and finishes the day.
    second = runner(tmp_path, url, speed=2000)
    out, err = second.communicate(timeout=120)
    assert second.returncode == 0, err
    done = json.loads(out)
    assert [t["exit_reason"] for t in done["trades"]] == ["target"]
    with engine.connect() as c:
        row = c.execute(sa.text("select generation, released from runner_lease")).one()
    assert tuple(row) == (2, True)
    engine.dispose()
    admin.dispose()
