"""The runner's lease: at most one runner trades an account, enforced in the journal's database.

Why: a manual launch beside the sensor's run, or a relaunch while a partitioned pod is still
alive, would otherwise put two runners on one account, both sending orders.

How: a lock that the database (or the kernel) releases when its holder dies (PostgreSQL: a
session advisory lock on a dedicated connection; SQLite: `fcntl.flock` on `<database>.<account>.lease`
beside the file), plus a row in `runner_lease` naming the holder (host, pid, started at) and its
generation, the fencing token: each acquisition increments it and every heartbeat renews the row
only `WHERE generation = mine`, so a holder whose lease was taken over finds out at its next beat.

Validity is measured on the holder's own monotonic clock: the lease is valid until `ttl_s` after
the start of its last successful renewal. Every order the runner sends passes `valid()` first
(service.py fences the broker clients), so a holder whose database hangs stops sending at that
deadline even while its heartbeat thread is stuck. A newcomer that finds the lock free but the
row not released (the holder crashed, or lost its lock connection and may still be alive) waits
`ttl_s` on its own clock before it acts, unless the holder ran on this host and its process is
gone. The wait starts after the lock was freed, which is after the holder's last renewal, so by
the time the newcomer acts the old holder's validity has run out: no two generations send at once
(assuming the two clocks run at about the same rate, not that they agree).
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, Callable, Protocol

import sqlalchemy as sa

log = logging.getLogger("live_runner.live.lease")

_meta = sa.MetaData()
lease_table = sa.Table(
    "runner_lease", _meta,
    sa.Column("account", sa.String(96), primary_key=True),
    sa.Column("generation", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
    sa.Column("host", sa.String(255), nullable=False),
    sa.Column("pid", sa.Integer, nullable=False),
    sa.Column("started_at", sa.String(40), nullable=False),
    sa.Column("heartbeat_at", sa.String(40), nullable=False),
    sa.Column("released", sa.Boolean, nullable=False),
)


@dataclass(frozen=True)
class Holder:
    """Who holds (or last held) an account's lease."""

    account: str
    generation: int
    host: str
    pid: int
    started_at: str
    heartbeat_at: str = ""
    released: bool = False

    def describe(self) -> str:
        return (f"generation {self.generation}, pid {self.pid} on {self.host}, started at "
                f"{self.started_at}, last heartbeat {self.heartbeat_at or '?'}")


class LeaseHeld(RuntimeError):
    """Another runner holds the account's lease: this one refuses to start (CLI exit 6)."""

    def __init__(self, account: str, holder: Holder | None) -> None:
        who = holder.describe() if holder is not None else "holder unknown"
        super().__init__(f"account {account} is already traded by another runner ({who})")
        self.account = account
        self.holder = holder


class LeaseLost(RuntimeError):
    """The runner lost its lease mid-session: it sends nothing more and exits (CLI exit 7)."""


class Store(Protocol):
    """Where a lease lives: an exclusive lock plus the holder row."""

    fatal_errors: bool  # an error means the lock is gone (a lock connection), not just a bad beat

    def try_lock(self) -> bool: ...
    def lock_held(self) -> bool: ...
    def read(self, account: str) -> Holder | None: ...
    def write(self, holder: Holder) -> None: ...
    def renew(self, account: str, generation: int, at: str) -> Holder | None: ...
    def release(self, account: str, generation: int) -> None: ...
    def close(self) -> None: ...


def _wall() -> datetime:
    return datetime.now(timezone.utc)


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class Lease:
    """One runner's lease on `account`. `clock` (monotonic seconds), `wall` (UTC datetime) and
    `sleep` are injectable: heartbeat and expiry logic are tested on fake time."""

    def __init__(self, store: Store, account: str, *, ttl_s: float = 10.0, heartbeat_s: float = 2.0,
                 clock: Callable[[], float] = time.monotonic, wall: Callable[[], datetime] = _wall,
                 sleep: Callable[[float], None] = time.sleep, host: str | None = None,
                 pid: int | None = None) -> None:
        if heartbeat_s * 2 > ttl_s:
            raise ValueError("lease: ttl_s must be at least twice heartbeat_s")
        self.store = store
        self.account = account
        self.ttl_s = ttl_s
        self.heartbeat_s = heartbeat_s
        self.clock = clock
        self.wall = wall
        self.sleep = sleep
        self.host = host or socket.gethostname()
        self.pid = os.getpid() if pid is None else pid
        self.holder: Holder | None = None
        self.lost_reason: str | None = None
        self.waited_s = 0.0  # how long acquire waited out an unreleased predecessor
        self.previous: Holder | None = None
        self._valid_until = float("-inf")
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def generation(self) -> int:
        return self.holder.generation if self.holder is not None else 0

    # --- acquire / release -----------------------------------------------------------------------
    def acquire(self) -> Holder:
        """Take the lease or raise LeaseHeld naming the holder. Waits out (ttl_s) a predecessor
        that did not release, unless it ran on this host and its process is gone."""
        if not self.store.try_lock():
            raise LeaseHeld(self.account, self._read_quietly())
        try:
            prev = self.store.read(self.account)
            self.previous = prev
            if prev is not None and not prev.released:
                if prev.host == self.host and not _pid_alive(prev.pid):
                    log.warning("lease %s: previous holder (%s) died without releasing; taking over",
                                self.account, prev.describe())
                else:
                    log.warning("lease %s: previous holder (%s) did not release; waiting %.1f s for its "
                                "lease to run out", self.account, prev.describe(), self.ttl_s)
                    self.sleep(self.ttl_s)
                    self.waited_s = self.ttl_s
            now = self.wall().isoformat()
            holder = Holder(self.account, (prev.generation if prev else 0) + 1, self.host, self.pid,
                            now, now, False)
            started = self.clock()
            self.store.write(holder)
        except BaseException:
            self.store.close()
            raise
        self.holder = holder
        self._valid_until = started + self.ttl_s
        log.info("lease %s taken: %s", self.account, holder.describe())
        return holder

    def _read_quietly(self) -> Holder | None:
        try:
            return self.store.read(self.account)
        except Exception:
            log.exception("lease %s: could not read the holder", self.account)
            return None
        finally:
            self.store.close()

    def release(self) -> None:
        """Stop the heartbeat; mark the row released (only while still ours) and unlock."""
        self._stop.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout=self.heartbeat_s + 5)
        try:
            if self.holder is not None and self.lost_reason is None and self.valid():
                self.store.release(self.account, self.holder.generation)
        except Exception:
            log.exception("lease %s: could not mark the lease released", self.account)
        finally:
            self.store.close()

    # --- validity ----------------------------------------------------------------------------------
    def valid(self) -> bool:
        """True while this runner may send: not lost, and renewed within ttl_s (own clock)."""
        return self.lost_reason is None and self.clock() < self._valid_until

    def why_invalid(self) -> str:
        if self.lost_reason is not None:
            return self.lost_reason
        return f"not renewed for {self.ttl_s:g} s (database unreachable?)"

    def renew(self) -> None:
        """One heartbeat. Raises LeaseLost when the lease is gone (taken over, lock connection
        lost) or its validity ran out; a transient error only lets the deadline come closer."""
        if self.holder is None:
            raise LeaseLost("lease never acquired")
        if self.lost_reason is not None:
            raise LeaseLost(self.lost_reason)
        started = self.clock()
        try:
            if not self.store.lock_held():
                self._lose("the lease lock is no longer held (lock file replaced or connection lost)")
            row = self.store.renew(self.account, self.holder.generation, self.wall().isoformat())
        except LeaseLost:
            raise
        except Exception as exc:
            if self.store.fatal_errors:
                self._lose(f"lease connection failed: {type(exc).__name__}: {exc}")
            log.warning("lease %s: heartbeat failed: %s", self.account, exc)
            if not self.valid():
                self._lose(f"not renewed for {self.ttl_s:g} s: {type(exc).__name__}: {exc}")
            return
        if row is not None:
            self._lose(f"taken over by {row.describe()}")
        self._valid_until = started + self.ttl_s

    def _lose(self, reason: str) -> None:
        if self.lost_reason is None:
            self.lost_reason = reason
            log.critical("lease %s lost: %s", self.account, reason)
        raise LeaseLost(reason)

    def start_heartbeat(self, on_lost: Callable[[str], None]) -> None:
        """Renew every heartbeat_s on a daemon thread; `on_lost(reason)` once when it is gone."""
        def tell(reason: str) -> None:
            try:
                on_lost(reason)
            except Exception:  # e.g. the service's loop already closed: valid() says it anyway
                log.exception("lease %s: could not report the loss", self.account)

        def beat() -> None:
            while not self._stop.wait(self.heartbeat_s):
                try:
                    self.renew()
                except LeaseLost as exc:
                    tell(str(exc))
                    return
                except Exception as exc:  # never let the heartbeat die silently
                    self.lost_reason = f"heartbeat crashed: {exc}"
                    tell(self.lost_reason)
                    return
        self._thread = threading.Thread(target=beat, name="lease-heartbeat", daemon=True)
        self._thread.start()


def _row(m: Any) -> Holder:
    return Holder(m.account, int(m.generation), m.host, int(m.pid), m.started_at, m.heartbeat_at,
                  bool(m.released))


class SqlRows:
    """The holder row, read and written through one SQLAlchemy connection source."""

    def __init__(self, connect: Callable[[], Any]) -> None:
        self._connect = connect

    def read(self, account: str) -> Holder | None:
        with self._connect() as conn:
            m = conn.execute(sa.select(lease_table).where(lease_table.c.account == account)).mappings().first()
        return _row(m) if m is not None else None

    def write(self, holder: Holder) -> None:
        values = {k: getattr(holder, k) for k in ("generation", "host", "pid", "started_at",
                                                  "heartbeat_at", "released")}
        with self._connect() as conn:
            done = conn.execute(lease_table.update().where(lease_table.c.account == holder.account),
                                values).rowcount
            if not done:
                conn.execute(lease_table.insert(), {"account": holder.account, **values})
            conn.commit()

    def renew(self, account: str, generation: int, at: str) -> Holder | None:
        """None when renewed; else the row that took its place (fencing token moved on)."""
        with self._connect() as conn:
            done = conn.execute(lease_table.update().where(
                (lease_table.c.account == account) & (lease_table.c.generation == generation)),
                {"heartbeat_at": at}).rowcount
            conn.commit()
            if done:
                return None
            m = conn.execute(sa.select(lease_table).where(lease_table.c.account == account)).mappings().first()
        return _row(m) if m is not None else Holder(account, -1, "?", 0, "?", "", True)

    def release(self, account: str, generation: int) -> None:
        with self._connect() as conn:
            conn.execute(lease_table.update().where(
                (lease_table.c.account == account) & (lease_table.c.generation == generation)),
                {"released": True})
            conn.commit()


class _Borrowed:
    """A context manager handing out the lease's own connection without closing it."""

    def __init__(self, conn: Any) -> None:
        self.conn = conn

    def __enter__(self) -> Any:
        return self.conn

    def __exit__(self, *exc: Any) -> None:
        if exc[0] is not None:
            self.conn.rollback()
