"""The account lease (live_runner/live/lease.py) against its real stores: a SQLite file with flock and
the real PostgreSQL (advisory lock on a dedicated connection). Heartbeat and expiry run on an
injected clock; nothing here measures wall time."""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import datetime, timezone

import pytest
import sqlalchemy as sa

from live_runner.live.lease import Lease, LeaseHeld, LeaseLost
from live_runner.live.lease_stores import PostgresStore, SqliteFileStore, open_lease


class FakeTime:
    """Monotonic seconds and a sleep that only advances them."""

    def __init__(self) -> None:
        self.t = 1000.0
        self.slept: list[float] = []

    def clock(self) -> float:
        return self.t

    def sleep(self, s: float) -> None:
        self.slept.append(s)
        self.t += s

    def wall(self) -> datetime:
        return datetime(2024, 11, 26, 15, 0, tzinfo=timezone.utc)


def lease(url: str, t: FakeTime, account: str = "paper:LR", **kw) -> Lease:
    got = open_lease(url, account, ttl_s=10.0, heartbeat_s=2.0, clock=t.clock, wall=t.wall,
                     sleep=t.sleep, **kw)
    assert got is not None
    return got


@pytest.fixture(params=["sqlite", "postgres"])
def url(request, tmp_path):
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'journal.db'}"
    return request.getfixturevalue("pg_schema_url").url


def test_a_second_runner_is_refused_with_the_holder_named_and_the_first_keeps_its_lease(url):
    t = FakeTime()
    first = lease(url, t, host="pod-a", pid=os.getpid())
    holder = first.acquire()
    assert holder.generation == 1
    second = lease(url, t, host="pod-b", pid=4242)
    with pytest.raises(LeaseHeld) as refused:
        second.acquire()
    message = str(refused.value)
    assert "paper:LR" in message and "generation 1" in message and f"pid {os.getpid()} on pod-a" in message
    t.t += 3
    first.renew()  # unaffected
    assert first.valid()
    first.release()


def test_another_account_is_independent(url):
    t = FakeTime()
    a = lease(url, t, account="paper:LR")
    b = lease(url, t, account="alpaca:LR")
    a.acquire()
    b.acquire()
    a.release()
    b.release()


def test_a_released_lease_is_taken_at_once_with_the_next_generation(url):
    t = FakeTime()
    first = lease(url, t, host="pod-a", pid=os.getpid())
    first.acquire()
    first.release()
    second = lease(url, t, host="pod-b", pid=4242)
    assert second.acquire().generation == 2 and t.slept == []
    second.release()


def test_validity_runs_out_on_the_holders_clock_without_renewal(url):
    t = FakeTime()
    held = lease(url, t)
    held.acquire()
    t.t += 9.9
    assert held.valid()
    t.t += 0.2
    assert not held.valid() and "not renewed for 10 s" in held.why_invalid()
    held.release()


def test_a_predecessor_that_died_on_this_host_is_not_waited_for(url):
    t = FakeTime()
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True).stdout.strip()
    first = lease(url, t, host="pod-a", pid=int(dead))
    first.acquire()
    first.store.close()  # the process "died": lock freed, row not released
    second = lease(url, t, host="pod-a", pid=os.getpid())
    assert second.acquire().generation == 2
    assert t.slept == [] and second.previous is not None and not second.previous.released
    second.release()


def test_a_predecessor_elsewhere_that_did_not_release_is_waited_out_for_ttl(url):
    t = FakeTime()
    first = lease(url, t, host="pod-a", pid=1)
    first.acquire()
    last_renewal = t.t
    first.store.close()  # its lock is gone (pod partitioned, connection dropped); maybe still alive
    second = lease(url, t, host="pod-b", pid=os.getpid())
    second.acquire()
    assert t.slept == [10.0]
    assert not first.valid(), "the old holder must be fenced before the new one acts"
    assert t.t >= last_renewal + first.ttl_s
    second.release()


def test_the_heartbeat_finds_a_takeover_by_the_fencing_token(tmp_path):
    """The lock file replaced under a live holder (SQLite): its next beat sees that the lock is
    not its own any more and the lease is lost; the newcomer waited ttl before acting."""
    t = FakeTime()
    url = f"sqlite:///{tmp_path / 'journal.db'}"
    first = lease(url, t, host="pod-a", pid=1)
    first.acquire()
    os.unlink(tmp_path / "journal.db.paper_LR.lease")
    second = lease(url, t, host="pod-b", pid=os.getpid())
    assert second.acquire().generation == 2 and t.slept == [10.0]
    with pytest.raises(LeaseLost, match="no longer held"):
        first.renew()
    assert not first.valid()
    second.renew()
    assert second.valid()
    second.release()


def test_a_sqlite_holder_keeps_its_lease_through_a_busy_database_until_the_deadline(tmp_path):
    t = FakeTime()
    url = f"sqlite:///{tmp_path / 'journal.db'}"
    held = open_lease(url, "paper:LR", ttl_s=10.0, heartbeat_s=2.0, clock=t.clock, wall=t.wall,
                      sleep=t.sleep)
    held.acquire()
    blocker = sa.create_engine(url, connect_args={"timeout": 0.1}).connect()
    blocker.exec_driver_sql("BEGIN EXCLUSIVE")  # the database refuses writers
    try:
        t.t += 4
        held.renew()  # a missed beat: still valid on its clock
        assert held.valid()
        t.t += 7
        with pytest.raises(LeaseLost, match="not renewed"):
            held.renew()
    finally:
        blocker.rollback()
        blocker.close()
    held.release()


def test_postgres_terminated_lease_connection_loses_the_lease_at_the_next_beat(pg_schema_url):
    t = FakeTime()
    held = lease(pg_schema_url.url, t, host="pod-a", pid=1)
    held.acquire()
    assert isinstance(held.store, PostgresStore)
    backend = held.store.backend_pid()
    admin = sa.create_engine(pg_schema_url.base_url, poolclass=sa.pool.NullPool)
    with admin.connect() as conn:
        assert conn.execute(sa.text("SELECT pg_terminate_backend(:p)"), {"p": backend}).scalar()
    admin.dispose()
    t.t += 2
    with pytest.raises(LeaseLost, match="lease connection failed"):
        held.renew()
    assert not held.valid()
    # The lock went with the connection: a newcomer may lock, but waits ttl before it acts.
    newcomer = lease(pg_schema_url.url, t, host="pod-b", pid=os.getpid())
    assert newcomer.acquire().generation == 2 and t.slept == [10.0]
    newcomer.release()
    held.release()


def test_in_memory_journal_has_no_lease_and_other_schemes_are_refused():
    assert open_lease("sqlite://", "paper:LR", ttl_s=10, heartbeat_s=2) is None
    with pytest.raises(ValueError, match="no lease store"):
        open_lease("mysql://x/y", "paper:LR", ttl_s=10, heartbeat_s=2)


def test_sqlite_store_writes_the_holder_into_the_lock_file(tmp_path):
    t = FakeTime()
    held = lease(f"sqlite:///{tmp_path / 'journal.db'}", t, host="pod-a", pid=77)
    held.acquire()
    assert isinstance(held.store, SqliteFileStore)
    assert '"host": "pod-a"' in (tmp_path / "journal.db.paper_LR.lease").read_text()
    held.release()


def _service_holding_a_lease(tmp_path):
    """A live service on a fake clock holding the account's lease (ttl 1000 s), a gapper at 09:31."""
    from live_runner.live.runs import RunOptions
    from live_runner.live.service import LiveService
    from tests.kit.live import TOKEN, TOKEN_ENV, Market, ServiceThread, live_config

    t = FakeTime()
    url = f"sqlite:///{tmp_path / 'journal.db'}"
    held = open_lease(url, "paper:LR", ttl_s=1000.0, heartbeat_s=400.0, clock=t.clock, wall=t.wall,
                      sleep=t.sleep)
    held.acquire()
    cfg = live_config(lease={"enabled": False})
    m = Market()
    m.gapper("AAA", "09:31")
    svc = ServiceThread(tmp_path, cfg)
    svc.service.journal.close()
    svc.service = LiveService(cfg, RunOptions(bars=tmp_path / "unused.csv", journal_url=url, linger=True),
                              environ={TOKEN_ENV: TOKEN}, bar_source=svc.feed, lease=held)
    return t, held, m, svc


def test_a_runner_past_its_lease_deadline_sends_nothing_and_stops(tmp_path):
    """The fence: the holder's clock passes its lease deadline (its heartbeat is stuck, e.g. on a
    hung database); the breakout bar's entry never reaches the broker, `lease_lost` is alerted
    CRITICAL and the run ends with LeaseLostError (CLI exit 7)."""
    from live_runner.live.service import LeaseLostError

    t, held, m, svc = _service_holding_a_lease(tmp_path)
    with svc:
        svc.feed.push(m.until("09:30"))
        assert svc.status()["lease"] == {
            "account": "paper:LR", "generation": 1, "valid": True, "lost": None, "fenced_sends": 0,
            "started_at": "2024-11-26T15:00:00+00:00", "waited_for_predecessor_s": 0.0}
        paper = svc.node.execution.primary

        def stale_then_breakout() -> None:
            t.t += 1001  # no renewal for longer than ttl_s on the runner's own clock
            for bar in m.until("09:31", after="09:30"):
                svc.node.data.on_bar(bar)
        svc.on_loop(stale_then_breakout)
        svc.wait_done()
    assert isinstance(svc.error, LeaseLostError)
    assert svc.service.fenced_sends >= 1 and paper.submitted == 0  # the entry never left
    assert "not renewed for 1000 s" in str(svc.error)
    recent = [a for a in svc.node.alerts.stats()["recent"] if a["key"] == "lease_lost"]
    assert recent and recent[0]["severity"] == "critical"
    assert svc.error.summary["final_positions"] == {}


def test_a_setup_longer_than_ttl_does_not_cost_the_lease(tmp_path):
    """The lease is taken before the journal, the bars file's validation and the restore, and its
    heartbeat starts with the run: a setup that outlasts ttl_s (millions of bars on a loaded
    machine) is renewed over once before anything is sent, so the run trades as usual."""
    t, held, m, svc = _service_holding_a_lease(tmp_path)
    t.t += 1001  # the setup took longer than ttl_s on the runner's own clock
    assert not held.valid()
    with svc:
        svc.feed.push(m.until("09:31"))
        lease_status = svc.status()["lease"]
        paper = svc.node.execution.primary
        summary = svc.stop()
    assert lease_status["valid"] is True and lease_status["lost"] is None
    assert svc.service.fenced_sends == 0 and paper.submitted >= 1  # the breakout's entry was sent
    assert summary["orders_submitted"] >= 1
