"""The journal: an append-only event table in SQL (SQLAlchemy Core), the runner's memory.

Every order, order event, fill, trade, denial, alert, command, equity mark and price mark (`mark`:
a held symbol's close, once per bar, after that bar's fills) is appended as one
row `(seq, session, ts, kind, key, payload)`. Positions, open orders and P&L are derived from it
(`live_runner.persistence.journal_state`). Writes are batched off the hot path: `append` only buffers; a full
batch is handed to a writer thread which writes it in one transaction; `flush` waits until
everything appended is written. With `writer="process"` (the live service's default,
journal_process.py) a writer process does the encoding and writing without the runner's GIL:
the node ships its chunks after each bar's orders are out (`ship_due`).

A database that hangs or fails never blocks the event loop: connections and statements time out
(`journal.connect_timeout_s`, `journal.statement_timeout_s`), a failed batch is kept and retried
with backoff (nothing is dropped while the process lives), hand-offs never wait for room, and
`flush` returns early once the writer is failing. `health()` says why the journal is unhealthy
(a failing writer, or more than `max_queued_batches` waiting); the service then moves the runner
to REDUCING with a CRITICAL alert.
Durability points: `commit()` returns a future the writer resolves once every event appended so
far is committed durably (on SQLite the WAL is then checkpointed, which fsyncs it; Postgres
commits durably by default). An accepted operator command awaits it before it is answered,
without blocking the event loop.
Payloads are encoded by the writer thread, off the hot path (a payload belongs to the journal once
appended and must not be mutated); a `Deferred` payload is even built there, from immutable values.
On SQLite the rows go to the driver's `executemany` directly.

Resume: the runner is deterministic, so a restarted run regenerates the same events in the same
order. On open, the journal loads what it already holds; while the regenerated stream is still
inside that prefix, each event is compared with the stored one and not written again (a
difference is a divergence: different input or config, and the runner refuses to go on). Orders
regenerated inside the prefix are known to have been sent already and are recovered, not re-sent.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections import deque
from concurrent.futures import Future
from typing import Any, Callable, Iterator

import orjson
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from live_runner.persistence.store import (
    FIELDS, SHIP_EVENTS, Deferred, _encode, _rows, _sync_sqlite, _write_rows, dump, events, iter_events,
    make_engine, metadata,
)

# The journal's public read API lives in store.py and is re-exported here.
__all__ = ["Deferred", "Journal", "JournalDivergence", "WRITERS", "dump", "events", "iter_events",
           "make_engine", "metadata"]

log = logging.getLogger("live_runner.persistence.journal")


class JournalDivergence(RuntimeError):
    """A restarted run produced an event different from the one the journal holds."""


WRITERS = ("thread", "process")
_SPARE_BATCHES = 4


class Journal:
    """`continue_log=True` is the live restart's mode: the stored events are the record of what
    happened (real fills are not reproducible), so new events are appended after them and nothing
    is regenerated or verified; the node rebuilds its state from `stored_events()` instead."""

    def __init__(self, url: str, batch_size: int = 1000, engine: Engine | None = None,
                 continue_log: bool = False, *, connect_timeout_s: float = 5.0,
                 statement_timeout_s: float = 10.0, max_queued_batches: int = 64,
                 retry_backoff_s: float = 0.5, retry_backoff_max_s: float = 5.0,
                 writer: str | None = None,
                 observer: "Callable[[str, int, str, str, Any], None] | None" = None) -> None:
        self.url = url
        # Told each new event after it is buffered (not the regenerated prefix of a resume): the
        # session's story for the operator (live_runner/ops/story.py). It must not raise.
        self.observer = observer
        self.engine = engine or make_engine(url, connect_timeout_s, statement_timeout_s)
        metadata.create_all(self.engine)
        self.batch_size = batch_size
        # Flat, so that buffering an event allocates nothing the garbage collector tracks.
        self._buffer: list[Any] = []
        # Written batches, emptied, become buffers again: a list of thousands of slots costs every
        # young-generation collection a visit of each slot (~1 ms at 2,000 events) until the
        # collector has moved it to an old generation, which a reused list soon is.
        self._spare: list[list[Any]] = []
        # Unbounded on purpose: a hand-off never waits for room (the event loop must not block);
        # more than `max_queued_batches` waiting makes the journal unhealthy instead.
        self._batches: deque[list[Any]] = deque()
        self._cond = threading.Condition()
        self._stopping = False
        self._in_writer = 0  # events handed to the writer and not yet written
        self.max_queued_batches = max_queued_batches
        self._backoff = (retry_backoff_s, retry_backoff_max_s)
        self._wake = threading.Event()  # cuts a retry backoff short on close
        self.failure: str | None = None  # the writer's latest error while it is retrying
        self.write_failures = 0
        self._error: BaseException | None = None  # given up (on close): events were lost
        self._writer: threading.Thread | None = None
        self._sqlite = self.engine.dialect.name == "sqlite"
        with self.engine.begin() as conn:
            if self.engine.dialect.name == "postgresql":  # reading a long journal may take longer
                conn.exec_driver_sql("SET LOCAL statement_timeout = 0")
            rows = conn.execute(
                sa.select(events.c.seq, events.c.session, events.c.ts, events.c.kind, events.c.key,
                          events.c.payload).order_by(events.c.seq)
            ).all()
        self._existing: list[tuple[str, int, str, str, str]] = [tuple(r[1:]) for r in rows]  # type: ignore[misc]
        self._recorded = len(self._existing)
        self.continued = continue_log and bool(self._existing)
        self.next_seq = self._recorded + 1 if self.continued else 1
        self._written = 0
        self.verified = 0
        self.closed = False
        self.divergence: JournalDivergence | None = None
        # `writer="process"`: encoded and written by a writer process (journal_process.py), not a
        # thread sharing the GIL; events are shipped in chunks of `SHIP_EVENTS` (`ship_due`). An explicit
        # engine or an in-memory database cannot be shared with another process: thread.
        writer = writer or os.environ.get("TRADING_JOURNAL_WRITER", "thread")
        if writer not in WRITERS:
            raise ValueError(f"journal writer must be one of {', '.join(WRITERS)}, not {writer!r}")
        self._proc: Any = None
        ship_every = batch_size
        if writer == "process" and engine is None and url not in ("sqlite://", "sqlite:///:memory:"):
            from live_runner.persistence.journal_process import ProcessWriter

            self._proc = ProcessWriter(url, connect_timeout_s=connect_timeout_s,
                                       statement_timeout_s=statement_timeout_s,
                                       retry_backoff_s=retry_backoff_s, retry_backoff_max_s=retry_backoff_max_s)
            ship_every = min(batch_size, SHIP_EVENTS)
        self._due = FIELDS * ship_every  # buffered slots `ship_due` hands off at
        self._full = FIELDS * batch_size  # and `append` itself

    @property
    def writer(self) -> str:
        return "thread" if self._proc is None else "process"

    @property
    def written(self) -> int:
        """Events written to the database by this journal."""
        return self._written if self._proc is None else self._proc.written

    # --- writing -----------------------------------------------------------------------------
    @property
    def resuming(self) -> bool:
        """True while regenerated events are still inside what the journal already holds."""
        return self.next_seq <= self._recorded

    @property
    def recorded_events(self) -> int:
        return self._recorded

    def stored_events(self) -> Iterator[dict[str, Any]]:
        """What the journal held when it was opened, decoded, in seq order (a live restart's
        input to `live_runner.recovery.restore`)."""
        for seq, (session, ts, kind, key, text) in enumerate(self._existing, 1):
            yield {"seq": seq, "session": session, "ts": ts, "kind": kind, "key": key,
                   "payload": orjson.loads(text)}

    def peek(self) -> tuple[str, int, str, str, dict[str, Any]] | None:
        """While resuming: the stored event the run is about to regenerate (session, ts, kind,
        key, payload), so that operator commands, which no bar causes, can be re-applied."""
        if self.next_seq > self._recorded:
            return None
        session, ts, kind, key, text = self._existing[self.next_seq - 1]
        return session, ts, kind, key, orjson.loads(text)

    def append(self, session: str, ts: int, kind: str, key: str, payload: "dict[str, Any] | Deferred") -> int:
        """Buffer one event; returns its seq. Inside the stored prefix it is verified instead (the
        only case where the payload is encoded here)."""
        if self.divergence is not None:
            # Sticky: a caller that swallows the first raise (the alert system does, to keep the
            # trading path up) must not go on to write after a stream that no longer matches.
            raise JournalDivergence(str(self.divergence))
        seq = self.next_seq
        self.next_seq = seq + 1
        if seq <= self._recorded:
            self._verify(seq, session, ts, kind, key, _encode(payload))
            return seq
        buffer = self._buffer
        buffer += (seq, session, ts, kind, key, payload)
        if len(buffer) >= self._full:
            self._hand_off()
        if self.observer is not None:
            self.observer(session, ts, kind, key, payload)
        return seq

    def ship_due(self) -> None:
        """Hand off once a shipping chunk is buffered: the node calls it after each bar, once the
        bar's orders are out, so that a writer process's chunk encoding is not part of any
        bar's tick-to-order time (`append` hands off only at a full batch)."""
        if len(self._buffer) >= self._due:
            self._hand_off()

    def hand_off(self) -> None:
        """Pass what is buffered to the writer now, without waiting (a live feed calls it after
        each burst of bars, so a crash loses at most the events of the burst in flight)."""
        if self._buffer:
            self._hand_off()
        if self._proc is not None:
            self._proc.drain()

    def _verify(self, seq: int, session: str, ts: int, kind: str, key: str, text: str) -> None:
        stored = self._existing[seq - 1]
        if stored != (session, ts, kind, key, text):
            self.divergence = JournalDivergence(
                f"journal event {seq} differs from the restarted run: stored "
                f"{stored[2]} {stored[3]!r} {stored[4][:120]}, regenerated {kind} {key!r} {text[:120]}"
            )
            raise self.divergence
        self.verified += 1

    def _hand_off(self) -> None:
        """Queue the buffer for the writer; never waits (see `health`)."""
        spare = self._spare
        batch, self._buffer = self._buffer, (spare.pop() if spare else [])
        if self._error is not None:
            raise RuntimeError(f"journal writer failed: {self._error}") from self._error
        if self._proc is not None:
            if self._proc.error is not None:
                raise RuntimeError(f"journal writer failed: {self._proc.error}")
            self._proc.ship(batch, len(batch) // FIELDS)
            self._recycle(batch)
            return
        with self._cond:
            self._batches.append(batch)
            self._in_writer += len(batch) // FIELDS
            self._cond.notify_all()
        self._start_writer()

    def _recycle(self, batch: list[Any]) -> None:
        """Keep an emptied batch as a future buffer (a few: more are garbage)."""
        if len(self._spare) < _SPARE_BATCHES:
            batch.clear()
            self._spare.append(batch)  # list.append/pop are atomic: no lock with the hot path

    def _start_writer(self) -> None:
        if self._writer is None:
            self._writer = threading.Thread(target=self._write_loop, name="journal-writer", daemon=True)
            self._writer.start()

    def commit(self) -> "Future[int]":
        """Hand off what is buffered and return a future the writer thread resolves (with the last
        seq appended) once every event appended so far is committed durably; it fails with the
        writer's error. Never waits itself: the caller bounds the wait (an operator command is
        answered only once its event is durable)."""
        fut: Future[int] = Future()
        last = self.next_seq - 1
        if self._error is not None:
            fut.set_exception(RuntimeError(f"journal writer failed: {self._error}"))
            return fut
        if self.closed:
            fut.set_exception(RuntimeError("journal closed"))
            return fut
        if self._proc is not None:
            if self._proc.error is not None:
                fut.set_exception(RuntimeError(f"journal writer failed: {self._proc.error}"))
                return fut
            if self._buffer:
                self._hand_off()
            return self._proc.commit(last)
        if self._buffer:
            self._hand_off()
        fut.last_seq = last  # type: ignore[attr-defined]
        with self._cond:
            self._batches.append(fut)
            self._cond.notify_all()
        self._start_writer()
        return fut

    def _resolve(self, fut: "Future[int]") -> None:
        if fut.done():
            return
        if self._error is not None:
            fut.set_exception(RuntimeError(f"journal writer failed: {self._error}"))
            return
        try:
            if self._sqlite:
                self._sync_sqlite()
            fut.set_result(getattr(fut, "last_seq", 0))
        except BaseException as exc:
            fut.set_exception(exc)

    def _sync_sqlite(self) -> None:
        _sync_sqlite(self.engine, self.url)

    def health(self) -> str | None:
        """None when the journal keeps up; else why not (the service alerts and reduces)."""
        if self._proc is not None:
            proc = self._proc
            if proc.error is not None:
                return f"writer gave up: {proc.error}"
            if proc.failure is not None:
                return f"writes failing ({proc.write_failures} failed attempts): {proc.failure}"
            if proc.in_flight > self.max_queued_batches * self.batch_size:
                return f"writer behind: {proc.in_flight} events waiting"
            return None
        if self._error is not None:
            return f"writer gave up: {self._error}"
        if self.failure is not None:
            return f"writes failing ({self.write_failures} failed attempts): {self.failure}"
        with self._cond:  # the writer pops batches meanwhile: counting unlocked can raise
            queued = sum(1 for b in self._batches if not isinstance(b, Future))
        if queued > self.max_queued_batches:
            return f"writer behind: {queued} batches waiting"
        return None

    def _write_loop(self) -> None:
        while True:
            with self._cond:
                while not self._batches and not self._stopping:
                    self._cond.wait()
                if not self._batches:
                    return
                batch = self._batches[0]
            if isinstance(batch, Future):  # a durability point: everything before it is written
                self._resolve(batch)
                with self._cond:
                    self._batches.popleft()
                    self._cond.notify_all()
                continue
            written = self._write_retrying(batch)
            with self._cond:
                self._batches.popleft()
                n = len(batch) // FIELDS
                self._in_writer -= n
                self._written += n if written else 0
                self._cond.notify_all()
            if written:
                self._recycle(batch)

    def _write_retrying(self, batch: list[Any]) -> bool:
        """Write one batch, retrying with backoff while the database fails; False only once the
        journal is closing and the retry after the close request failed too."""
        delay, delay_max = self._backoff
        while True:
            if self._error is not None:
                return False
            try:
                self._write(batch)
            except Exception as exc:  # noqa: BLE001 - timeouts, lost connections: retried
                with self._cond:
                    self.write_failures += 1
                    self.failure = f"{type(exc).__name__}: {str(exc).strip()[:300]}"
                    self._cond.notify_all()  # a waiting flush returns: the loop must not hang
                log.error("journal write failed (retrying in %.1f s): %s", delay, self.failure)
                if self._stopping:
                    self._error = exc
                    return False
                self._wake.wait(delay)
                delay = min(delay * 2, delay_max)
                continue
            if self.failure is not None:
                log.warning("journal writes succeed again after %d failed attempts", self.write_failures)
                self.failure = None
            return True

    def _write(self, batch: list[Any]) -> None:
        """One transaction per batch."""
        _write_rows(self.engine, self._sqlite, _rows(batch))

    def flush(self, timeout_s: float | None = None) -> bool:
        """Hand off what is buffered and wait until every appended event is written. Returns
        False without waiting further when the writer is failing (the events stay queued and are
        retried) or after `timeout_s`: a journal that cannot write must not block the loop."""
        if self._buffer:
            self._hand_off()
        if self._proc is not None:
            done = self._proc.wait_written(timeout_s)
            if self._proc.error is not None:
                raise RuntimeError(f"journal writer failed: {self._proc.error}")
            return done
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        with self._cond:
            while self._in_writer and self._error is None and self.failure is None:
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    return False
                self._cond.wait(remaining)
            done = self._in_writer == 0
        if self._error is not None:
            raise RuntimeError(f"journal writer failed: {self._error}") from self._error
        return done

    def close(self, timeout_s: float = 30.0) -> None:
        """Write what is left, then stop. A writer in backoff retries at once; if that attempt
        fails too, it gives up (the error is raised: those events were not written)."""
        if self.closed:
            return
        try:
            if self._buffer:
                self._hand_off()
            if self._proc is not None:
                proc = self._proc
                proc.close(timeout_s)
                if proc.error is not None or proc.in_flight:
                    raise RuntimeError(f"journal writer failed: {proc.error or proc.failure}; "
                                       f"{proc.in_flight} events not written")
            if self._writer is not None:
                with self._cond:
                    self._stopping = True  # the writer's next failure is its last
                    self._cond.notify_all()
                self._wake.set()
                self._writer.join(timeout=timeout_s)
            if self._error is not None or self._in_writer:
                raise RuntimeError(f"journal writer failed: {self._error or self.failure}; "
                                   f"{self._in_writer} events not written") from self._error
        finally:
            self.engine.dispose()
            self.closed = True

    @property
    def pending(self) -> int:
        """Events appended but not yet written (buffered or queued)."""
        in_writer = self._in_writer if self._proc is None else self._proc.in_flight
        return len(self._buffer) // FIELDS + in_writer

    # --- reading -----------------------------------------------------------------------------
    def read(self, session: str | None = None, kinds: tuple[str, ...] | None = None) -> list[dict[str, Any]]:
        return list(iter_events(self.engine, session=session, kinds=kinds))
