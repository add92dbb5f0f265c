"""The journal's storage: the event table, engines, payload encoding, row writing and reading.

Shared by the Journal (live_runner/persistence/journal.py, which re-exports the public names) and
its writer process (journal_process.py), which imports this module and not the Journal.
"""

from __future__ import annotations

import functools
import itertools
import json
import logging
from pathlib import Path
from typing import Any, Callable, Iterator

import msgspec
import orjson
import sqlalchemy as sa
from sqlalchemy.engine import Engine

log = logging.getLogger("live_runner.persistence.journal")

metadata = sa.MetaData()

events = sa.Table(
    "journal_events",
    metadata,
    sa.Column("seq", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), primary_key=True, autoincrement=False),
    sa.Column("session", sa.String(10), nullable=False),
    sa.Column("ts", sa.BigInteger, nullable=False),
    sa.Column("kind", sa.String(24), nullable=False),
    sa.Column("key", sa.String(96), nullable=False),
    sa.Column("payload", sa.Text, nullable=False),
    sa.Index("ix_journal_events_session_kind", "session", "kind"),
)


_SORT = orjson.OPT_SORT_KEYS


class Deferred(msgspec.Struct, frozen=True, gc=False, array_like=True):
    """A payload the writer thread builds as `build(a, b)`: the hot path hands over the frozen
    values it already has (a request, a signal, a fill) instead of a dict only the journal reads.
    The stored bytes are those of the dict `build` returns. (Array-like: a writer process
    receives it as `[build, a, b]`, which no dict payload can be mistaken for.)"""

    build: Callable[[Any, Any], dict[str, Any]]
    a: Any
    b: Any = None


def _encode(payload: "dict[str, Any] | Deferred") -> str:
    """Canonical JSON (sorted keys, no spaces, shortest float repr): byte-stable across runs."""
    if type(payload) is Deferred:
        payload = payload.build(payload.a, payload.b)
    return orjson.dumps(payload, option=_SORT, default=str).decode()


def make_engine(url: str, connect_timeout_s: float = 5.0, statement_timeout_s: float | None = None) -> Engine:
    """SQLite in WAL mode by default (durable and fast), any SQLAlchemy URL otherwise. A hung
    database must not hang the journal's writer for ever: PostgreSQL gets a connect timeout and
    (the Journal asks for one) a server-side statement timeout, SQLite a busy timeout (how long a
    lock is waited for). Readers (the pipeline's snapshots) get no statement timeout."""
    if url.startswith("postgresql"):
        connect_args: dict[str, Any] = {"connect_timeout": max(1, round(connect_timeout_s))}
        if statement_timeout_s is not None:
            options = sa.engine.make_url(url).query.get("options", "")
            if isinstance(options, tuple):
                options = " ".join(options)
            ms = max(1, round(statement_timeout_s * 1000))
            connect_args["options"] = f"{options} -c statement_timeout={ms}".strip()
        return sa.create_engine(url, pool_pre_ping=True, pool_timeout=connect_timeout_s,
                                connect_args=connect_args)
    if url in ("sqlite://", "sqlite:///:memory:"):
        # One shared connection, so the writer thread sees the same in-memory database.
        return sa.create_engine(url, poolclass=sa.pool.StaticPool,
                                connect_args={"check_same_thread": False})
    if url.startswith("sqlite:///"):
        path = url[len("sqlite:///"):]
        if path and path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        engine = sa.create_engine(url, connect_args={"timeout": statement_timeout_s or 5.0})

        @sa.event.listens_for(engine, "connect")
        def _pragmas(dbapi_conn: Any, _record: Any) -> None:
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA synchronous=NORMAL")
            cur.close()

        return engine
    return sa.create_engine(url, pool_pre_ping=True)


SHIP_EVENTS = 64  # process writer: events per shipped chunk (one C-level encode, ~25 us)
FIELDS = 6  # seq, session, ts, kind, key, payload: one event's slots in the flat buffer
_SQLITE_INSERT = "INSERT INTO journal_events (seq, session, ts, kind, key, payload) VALUES (?, ?, ?, ?, ?, ?)"


def _rows(flat: list[Any]) -> Iterator[tuple[Any, ...]]:
    """The buffered events as row tuples with their payloads encoded (writer thread), one at a
    time: a batch never holds thousands of live tuples, which would trigger garbage collections
    that stall the hot path."""
    it = iter(flat)
    return ((seq, session, ts, kind, key, _encode(payload))
            for seq, session, ts, kind, key, payload in zip(it, it, it, it, it, it))


SQLITE_ROWS_PER_INSERT = 100  # rows per multi-row INSERT (600 parameters; SQLite allows 32,766)


@functools.lru_cache(maxsize=8)
def _sqlite_insert(n: int) -> str:
    return _SQLITE_INSERT + ", (?, ?, ?, ?, ?, ?)" * (n - 1)


def _write_rows(engine: Engine, sqlite: bool, rows: Iterator[tuple[Any, ...]] | list[tuple[Any, ...]]) -> None:
    """One transaction. SQLite gets multi-row INSERTs straight through its driver: the driver
    releases the GIL while SQLite works and takes it back for each statement, so a statement per
    row (executemany) left a writer thread waiting for the GIL once per row (a switch interval
    each while the hot path is busy: it fell behind), and SQLAlchemy's per-row parameter
    processing is skipped. The rows of a statement are encoded just before it, so the writer
    holds the GIL for ~100 rows at a time."""
    with engine.begin() as conn:
        if sqlite:
            cursor = conn.connection.dbapi_connection.cursor()  # type: ignore[union-attr]
            try:
                it = iter(rows)
                while chunk := list(itertools.islice(it, SQLITE_ROWS_PER_INSERT)):
                    cursor.execute(_sqlite_insert(len(chunk)), [v for row in chunk for v in row])
            finally:
                cursor.close()
        else:
            names = ("seq", "session", "ts", "kind", "key", "payload")
            conn.execute(events.insert(), [dict(zip(names, row)) for row in rows])


def _sync_sqlite(engine: Engine, url: str) -> None:
    """Make what the batches committed under synchronous=NORMAL (which survives a killed
    process, not a power cut) durable on disk: a checkpoint fsyncs the WAL before it copies
    it into the database file. Cheap at operator-command frequency."""
    if url in ("sqlite://", "sqlite:///:memory:"):
        return
    with engine.connect() as conn:
        conn.exec_driver_sql("PRAGMA wal_checkpoint(PASSIVE)")


def iter_events(engine: Engine, session: str | None = None,
                kinds: tuple[str, ...] | None = None) -> Iterator[dict[str, Any]]:
    """Stored events in seq order, payloads decoded."""
    query = sa.select(events).order_by(events.c.seq)
    if session is not None:
        query = query.where(events.c.session == session)
    if kinds:
        query = query.where(events.c.kind.in_(kinds))
    with engine.connect() as conn:
        for row in conn.execute(query):
            yield {"seq": row.seq, "session": row.session, "ts": row.ts, "kind": row.kind,
                   "key": row.key, "payload": json.loads(row.payload)}


def dump(engine: Engine) -> list[tuple[Any, ...]]:
    """Every row as stored, for byte-for-byte comparisons of two journals."""
    with engine.connect() as conn:
        return [tuple(r) for r in conn.execute(sa.select(events).order_by(events.c.seq))]
