"""Where a runner's lease lives (see live_runner/live/lease.py): PostgreSQL or a SQLite file.

PostgreSQL: a session advisory lock held on a dedicated connection (the server frees it the
moment that connection ends: a killed runner, a terminated backend), the holder row written on
the same connection. SQLite: `fcntl.flock` on `<database>.<account>.lease` beside the journal
file (the kernel frees it when the process dies), the holder row in the journal's database. An in-memory
journal (`sqlite://`) has no lease: nothing outside the process can share it.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import logging
import os
import re
from typing import Any, Callable

import sqlalchemy as sa

from live_runner.live.lease import Holder, Lease, SqlRows, _Borrowed, lease_table

log = logging.getLogger("live_runner.live.lease")


def advisory_key(account: str) -> int:
    """A stable signed 64-bit advisory-lock key for the account."""
    return int.from_bytes(hashlib.sha256(f"live_runner:{account}".encode()).digest()[:8], "big",
                          signed=True)


class PostgresStore:
    """A session advisory lock on a connection of its own, plus the holder row."""

    fatal_errors = True  # any error on the lock connection: the lock may be gone

    def __init__(self, url: str, account: str, connect_timeout_s: float = 5.0,
                 statement_timeout_s: float = 5.0) -> None:
        self.key = advisory_key(account)
        ms = max(1, round(statement_timeout_s * 1000))
        self.engine = sa.create_engine(url, poolclass=sa.pool.NullPool, connect_args={
            "connect_timeout": max(1, round(connect_timeout_s)),
            "options": _merge_options(url, f"-c statement_timeout={ms}"),
            "keepalives": 1, "keepalives_idle": 5, "keepalives_interval": 2, "keepalives_count": 2,
            "application_name": "live_runner lease"})
        self.conn = self.engine.connect()
        self.rows = SqlRows(lambda: _Borrowed(self.conn))

    def try_lock(self) -> bool:
        got = bool(self.conn.execute(sa.text("SELECT pg_try_advisory_lock(:k)"), {"k": self.key}).scalar())
        self.conn.commit()
        if got:
            lease_table.create(self.conn, checkfirst=True)  # under the lock: no creation race
            self.conn.commit()
        return got

    def backend_pid(self) -> int:
        """The lock connection's server process (tests terminate it)."""
        pid = int(self.conn.execute(sa.text("SELECT pg_backend_pid()")).scalar())
        self.conn.commit()
        return pid

    def lock_held(self) -> bool:
        hi, lo = (self.key >> 32) & 0xFFFFFFFF, self.key & 0xFFFFFFFF
        held = bool(self.conn.execute(sa.text(
            "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND granted "
            "AND pid = pg_backend_pid() AND classid::bigint = :hi AND objid::bigint = :lo"),
            {"hi": hi, "lo": lo}).scalar())
        self.conn.commit()
        return held

    def read(self, account: str) -> Holder | None:
        if not sa.inspect(self.conn).has_table("runner_lease"):
            return None
        return self.rows.read(account)

    def write(self, holder: Holder) -> None:
        self.rows.write(holder)

    def renew(self, account: str, generation: int, at: str) -> Holder | None:
        return self.rows.renew(account, generation, at)

    def release(self, account: str, generation: int) -> None:
        self.rows.release(account, generation)
        self.conn.execute(sa.text("SELECT pg_advisory_unlock(:k)"), {"k": self.key})
        self.conn.commit()

    def close(self) -> None:
        try:
            self.conn.close()
        except Exception:
            log.debug("lease connection close failed", exc_info=True)
        self.engine.dispose()


class SqliteFileStore:
    """`flock` on `<database>.<account>.lease`; the holder row in the database, the holder also written
    into the lock file (readable with `cat`)."""

    fatal_errors = False  # a busy database is a missed beat, not a lost lock

    def __init__(self, url: str, path: str, account: str, statement_timeout_s: float = 5.0) -> None:
        self.lock_path = lock_path(path, account)
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        self.fd: int | None = os.open(self.lock_path, os.O_RDWR | os.O_CREAT, 0o644)
        self.engine = sa.create_engine(url, poolclass=sa.pool.NullPool,
                                       connect_args={"timeout": statement_timeout_s})
        self.rows = SqlRows(self.engine.connect)

    def try_lock(self) -> bool:
        assert self.fd is not None
        try:
            fcntl.flock(self.fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False
        lease_table.create(self.engine, checkfirst=True)
        return True

    def lock_held(self) -> bool:
        """Still the file at the lock path (deleting or replacing it defeats the lock)."""
        if self.fd is None:
            return False
        try:
            return os.fstat(self.fd).st_ino == os.stat(self.lock_path).st_ino
        except FileNotFoundError:
            return False

    def read(self, account: str) -> Holder | None:
        if not sa.inspect(self.engine).has_table("runner_lease"):
            return None
        return self.rows.read(account)

    def write(self, holder: Holder) -> None:
        self.rows.write(holder)
        assert self.fd is not None
        os.ftruncate(self.fd, 0)
        os.pwrite(self.fd, (json.dumps(holder.__dict__, sort_keys=True) + "\n").encode(), 0)

    def renew(self, account: str, generation: int, at: str) -> Holder | None:
        return self.rows.renew(account, generation, at)

    def release(self, account: str, generation: int) -> None:
        self.rows.release(account, generation)

    def close(self) -> None:
        if self.fd is not None:
            os.close(self.fd)  # frees the flock
            self.fd = None
        self.engine.dispose()


def lock_path(db_path: str, account: str) -> str:
    """`<database>.<account>.lease`, the account made file-name safe."""
    return f"{db_path}.{re.sub(r'[^A-Za-z0-9_.-]', '_', account)}.lease"


def _merge_options(url: str, extra: str) -> str:
    options: Any = sa.engine.make_url(url).query.get("options", "")
    if isinstance(options, tuple):
        options = " ".join(options)
    return f"{options} {extra}".strip()


def open_lease(url: str, account: str, *, ttl_s: float, heartbeat_s: float,
               connect_timeout_s: float = 5.0, **clocks: Callable[..., Any]) -> Lease | None:
    """The lease for a journal URL; None where none is needed (in-memory SQLite)."""
    if url in ("sqlite://", "sqlite:///:memory:"):
        return None
    statement_timeout = max(0.5, heartbeat_s)
    if url.startswith("postgresql"):
        store: Any = PostgresStore(url, account, connect_timeout_s, statement_timeout)
    elif url.startswith("sqlite:///"):
        store = SqliteFileStore(url, url[len("sqlite:///"):], account, statement_timeout)
    else:
        raise ValueError(f"no lease store for journal URL scheme {url.split(':', 1)[0]!r} "
                         f"(PostgreSQL or a SQLite file)")
    return Lease(store, account, ttl_s=ttl_s, heartbeat_s=heartbeat_s, **clocks)
