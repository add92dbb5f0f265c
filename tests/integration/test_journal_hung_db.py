"""A journal database that hangs (a real PostgreSQL table locked by another connection) while a
LiveService runs: the event loop keeps serving, the runner moves to REDUCING with a CRITICAL
`unhealthy:journal` alert, and once the lock is gone every event is written (nothing dropped).

Before the fix the writer waited on the lock for ever (no statement timeout) and the 65th batch
handed off blocked the event loop on the writer's full queue, the ops API with it."""

from __future__ import annotations

import socket
import time
from pathlib import Path
from typing import Any, Callable

import pytest
import sqlalchemy as sa

from live_runner.persistence.journal import Journal
from live_runner.live.runs import RunOptions
from live_runner.live.service import LiveService
from tests.kit.live import TOKEN, TOKEN_ENV, Market, ServiceThread, live_config

pytestmark = pytest.mark.timeout(90)


def wait_until(cond: Callable[[], Any], what: str, timeout: float = 30.0) -> Any:
    deadline = time.monotonic() + timeout
    while not (got := cond()):
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)
    return got


def count_rows(url: str) -> int:
    engine = sa.create_engine(url, poolclass=sa.pool.NullPool)
    try:
        with engine.connect() as conn:
            return int(conn.execute(sa.text("SELECT count(*) FROM journal_events")).scalar_one())
    finally:
        engine.dispose()


class TableLock:
    """ACCESS EXCLUSIVE on journal_events, held by a second connection until released."""

    def __init__(self, url: str) -> None:
        self.engine = sa.create_engine(url, poolclass=sa.pool.NullPool)
        self.conn = self.engine.connect()
        self.tx = self.conn.begin()
        self.conn.execute(sa.text("LOCK TABLE journal_events IN ACCESS EXCLUSIVE MODE"))

    def release(self) -> None:
        self.tx.rollback()
        self.conn.close()
        self.engine.dispose()


def test_statement_timeout_turns_a_hang_into_a_retried_failure_and_nothing_is_lost(pg_schema_url: Any) -> None:
    url = pg_schema_url.url
    j = Journal(url, batch_size=5, statement_timeout_s=0.3, retry_backoff_s=0.05, retry_backoff_max_s=0.1)
    lock = None
    try:
        for i in range(5):
            j.append("2024-03-15", i, "signal", f"K{i}", {"i": i})
        assert j.flush() and j.health() is None
        lock = TableLock(url)
        for i in range(5, 10):
            j.append("2024-03-15", i, "signal", f"K{i}", {"i": i})  # a full batch: handed off
        assert j.flush() is False  # returns once the writer fails, instead of hanging with it
        assert "statement timeout" in (j.health() or "") and j.pending == 5
        lock.release()
        lock = None
        wait_until(lambda: j.health() is None and j.pending == 0, "the retried batch")
        assert j.flush() and j.written == 10 and count_rows(url) == 10
    finally:
        if lock is not None:
            lock.release()
        j.close()


def test_a_server_that_accepts_but_never_answers_fails_the_connect_instead_of_hanging() -> None:
    """A half-dead host (the TCP handshake succeeds, PostgreSQL never speaks): the connect
    timeout turns it into an error the runner reports at start."""
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        port = silent.getsockname()[1]
        with pytest.raises(sa.exc.OperationalError, match="timeout"):
            Journal(f"postgresql+psycopg2://trader@127.0.0.1:{port}/test", connect_timeout_s=1.0)


def test_the_search_path_of_the_url_is_kept_with_the_timeouts(pg_schema_url: Any) -> None:
    j = Journal(pg_schema_url.url, statement_timeout_s=2.5)
    try:
        with j.engine.connect() as conn:
            assert conn.execute(sa.text("SHOW statement_timeout")).scalar_one() == "2500ms"
            assert conn.execute(sa.text("SELECT current_schema()")).scalar_one() == pg_schema_url.schema
    finally:
        j.close()


def test_a_hung_journal_database_never_blocks_the_loop_and_moves_the_runner_to_reducing(
        tmp_path: Path, pg_schema_url: Any) -> None:
    url = pg_schema_url.url
    cfg = live_config(journal={"batch_size": 1, "statement_timeout_s": 0.5})
    m = Market()
    m.gapper("AAA", "09:31")
    svc = ServiceThread(tmp_path, cfg)
    svc.service.journal.close()  # the kit's SQLite journal: this run journals to PostgreSQL
    svc.journal_url = url
    svc.service = LiveService(cfg, RunOptions(bars=tmp_path / "unused.csv", journal_url=url, linger=True),
                              environ={TOKEN_ENV: TOKEN}, bar_source=svc.feed)
    lock = None
    with svc:
        svc.feed.push(m.until("09:32"))
        assert svc.status()["trading_state"] == "active"
        wait_until(lambda: svc.get("/ready")[0] == 200, "ready")
        wait_until(lambda: svc.on_loop(lambda: svc.service.journal.pending) == 0, "the journal idle")
        written_before = svc.on_loop(lambda: svc.service.journal.written)
        lock = TableLock(url)
        try:
            # The chain keeps appending while the database hangs: 200 batches of one event, far
            # more than the writer's old bounded queue of 64 held.
            def append_many() -> int:
                j = svc.service.journal
                for i in range(200):
                    j.append("2024-03-15", 0, "probe", f"M{i}", {"i": i})
                return j.pending
            assert svc.on_loop(append_many) >= 200  # returned: the loop did not wait for the writer
            svc.feed.push(m.until("09:35", after="09:32"))  # bars still flow through the chain
            st = wait_until(lambda: (s := svc.status())["trading_state"] == "reducing" and s, "REDUCING")
            code, ready = svc.get("/ready")
            assert code == 503 and "journal unhealthy" in ready["reasons"]
            assert svc.get("/health")[0] == 200  # the loop keeps turning and serving
            alerts = {a["key"]: a for a in st["alerts"]}
            assert alerts["unhealthy:journal"]["severity"] == "critical"
            assert "statement timeout" in alerts["unhealthy:journal"]["message"]
            pending, written = svc.on_loop(lambda: (svc.service.journal.pending, svc.service.journal.written))
            assert pending >= 200 and written == written_before  # (counting rows would wait on the lock)
        finally:
            lock.release()
        wait_until(lambda: svc.on_loop(lambda: svc.service.journal.pending) == 0, "the backlog written")
        wait_until(lambda: svc.get("/ready")[0] == 200, "ready again")
        assert svc.status()["trading_state"] == "reducing"  # until the operator or the next session
        written = svc.on_loop(lambda: svc.service.journal.next_seq - 1)
        svc.stop()
    assert count_rows(url) >= written  # every event, the 200 marks included
    engine = sa.create_engine(url, poolclass=sa.pool.NullPool)
    with engine.connect() as conn:
        keys = {r[0] for r in conn.execute(sa.text("SELECT key FROM journal_events WHERE kind = 'probe'"))}
        states = [r[0] for r in conn.execute(sa.text(
            "SELECT key FROM journal_events WHERE kind = 'trading_state' ORDER BY seq"))]
    engine.dispose()
    assert keys == {f"M{i}" for i in range(200)} and states == ["reducing"]
