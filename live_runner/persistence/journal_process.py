"""The journal's writer in its own process (`journal.writer: process`), so that encoding and
writing never hold the runner's GIL.

A writer thread shares the GIL with the hot path: while it encodes a batch the hot path waits
up to a switch interval, and if the OS preempts the writer while it holds the GIL (a busy
machine) the hot path waits until the writer runs again: tens of milliseconds. Here the runner
only turns its buffered events into compact msgpack bytes (one C call per chunk of events:
`Deferred` payloads travel as their frozen values, built by the writer) and queues them for a
sender thread that writes them to a pipe with the GIL released. The writer process decodes,
builds and encodes the payloads exactly as the thread would (byte-identical rows), and writes
whatever it has received in one transaction (group commit), retrying with backoff while the
database fails. It reports back what is written, failures and durability points.

Durability is the thread writer's: `commit()` futures resolve once the rows are committed and
(SQLite) the WAL is checkpointed; a crash of the runner loses what was not yet written, and the
writer dies with the runner (PR_SET_PDEATHSIG, and end of input), so a restarted run never
races an orphan writer.
"""

from __future__ import annotations

import ctypes
import importlib
import json
import os
import select
import signal
import struct
import subprocess
import sys
import threading
import time
import typing
from concurrent.futures import Future
from typing import Any, Callable

import msgspec

_HEAD = struct.Struct("<cI")  # frame: kind byte, payload length
EVENTS, COMMIT, FLUSH, STOP = b"E", b"C", b"F", b"S"
ACK_EVERY_S = 0.2  # "written" reports, unless a flush or commit asks: the runner's GIL is woken rarely
READY_TIMEOUT_S = 60.0  # the writer process's start-up (imports, engine)
_F_SETPIPE_SZ = 1031


def _fn_key(fn: Callable[..., Any]) -> str:
    return f"{fn.__module__}:{fn.__qualname__}"


def _enc_hook(obj: Any) -> Any:
    if callable(obj):  # a Deferred's build function travels by name
        return _fn_key(obj)
    return str(obj)  # as the thread writer's orjson `default=str`


_encoder = msgspec.msgpack.Encoder(enc_hook=_enc_hook)


_ARGS_ENV = "TRADING_JOURNAL_WRITER_ARGS"  # the writer's settings, runner -> writer process


def frame(kind: bytes, payload: bytes = b"") -> bytes:
    return _HEAD.pack(kind, len(payload)) + payload


class ProcessWriter:
    """The runner's side: ships events, tracks what the writer process has written."""

    def __init__(self, url: str, *, connect_timeout_s: float, statement_timeout_s: float,
                 retry_backoff_s: float, retry_backoff_max_s: float) -> None:
        args = json.dumps({"url": url, "connect_timeout_s": connect_timeout_s,
                           "statement_timeout_s": statement_timeout_s, "backoff": retry_backoff_s,
                           "backoff_max": retry_backoff_max_s, "parent": os.getpid()})
        to_child_r, self._to_child = os.pipe()
        self._from_child, from_child_w = os.pipe()
        # The settings (the journal URL may hold a password) go through the environment, which
        # only the runner's user can read; never argv, which every local user sees in /proc.
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "live_runner.persistence.journal_process", str(to_child_r), str(from_child_w)],
            pass_fds=(to_child_r, from_child_w), stdin=subprocess.DEVNULL, close_fds=True,
            env={**os.environ, _ARGS_ENV: args})
        os.close(to_child_r)
        os.close(from_child_w)
        try:  # room for ~1 MB of events before the spill list is used
            import fcntl
            fcntl.fcntl(self._to_child, _F_SETPIPE_SZ, 1 << 20)
        except OSError:
            pass
        os.set_blocking(self._to_child, False)
        self._spill: list[memoryview] = []  # bytes the full pipe did not take yet, in order
        self.cond = threading.Condition()
        self.shipped = 0  # events sent to the writer
        self.written = 0  # events the writer committed
        self.failure: str | None = None
        self.write_failures = 0
        self.error: str | None = None  # the writer gave up or died: events were lost
        self._closing = False  # close() asked the writer to stop: its end is not a failure
        self._commits: dict[int, Future[int]] = {}
        self._next_commit = 0
        self._ready = threading.Event()
        self._receiver = threading.Thread(target=self._receive_loop, name="journal-acks", daemon=True)
        self._receiver.start()
        # Until the writer runs, shipped events would only be in a pipe: a crash in that window
        # (its start-up takes ~0.3 s, seconds on a busy machine) lost events a thread would have
        # written. The journal is not returned before the writer can write.
        if not self._ready.wait(READY_TIMEOUT_S):
            self.proc.kill()
            raise RuntimeError(f"the journal writer process did not start within {READY_TIMEOUT_S:.0f} s")
        if self.error is not None:
            raise RuntimeError(f"the journal writer process failed to start: {self.error}")

    # --- the runner's side (event loop thread) ----------------------------------------------
    def ship(self, flat: list[Any], events: int) -> None:
        """Queue `events` events (the journal's flat buffer) for the writer; never waits."""
        self._send(frame(EVENTS, _encoder.encode(flat)))
        self.shipped += events

    def _send(self, data: bytes) -> None:
        """Write to the pipe without waiting: what a full pipe refuses is kept, in order, and
        sent by the next call (`drain`: the watchdog's hand-off, a flush, a commit)."""
        self._spill.append(memoryview(data))
        self.drain()

    def drain(self) -> bool:
        """Send what the pipe will take now; True once nothing is left over."""
        spill = self._spill
        try:
            while spill:
                n = os.write(self._to_child, spill[0])
                if n < len(spill[0]):
                    spill[0] = spill[0][n:]
                    return False
                spill.pop(0)
        except BlockingIOError:
            return False
        except OSError:
            spill.clear()  # the writer is gone: the receiver reports it
        return True

    def _drain_wait(self, deadline: float | None) -> bool:
        while not self.drain():
            if self.error is not None or (deadline is not None and time.monotonic() >= deadline):
                return False
            select.select([], [self._to_child], [], 0.05)
        return True

    def commit(self, last_seq: int) -> "Future[int]":
        fut: Future[int] = Future()
        with self.cond:
            self._next_commit += 1
            cid = self._next_commit
            self._commits[cid] = fut
        fut.last_seq = last_seq  # type: ignore[attr-defined]
        self._send(frame(COMMIT, str(cid).encode()))
        return fut

    @property
    def in_flight(self) -> int:
        return self.shipped - self.written

    def wait_written(self, timeout_s: float | None) -> bool:
        """Until everything shipped is written; False at once while the writer fails, or on
        timeout."""
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        if self.in_flight:
            self._send(frame(FLUSH))
            if not self._drain_wait(deadline):
                return False
        with self.cond:
            while self.in_flight and self.error is None and self.failure is None:
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    return False
                self.cond.wait(remaining)
            return self.in_flight == 0

    def close(self, timeout_s: float) -> None:
        """Ask the writer to write what is left and stop (its next failure is its last)."""
        self._closing = True
        self._send(frame(STOP))
        self._drain_wait(time.monotonic() + timeout_s)
        os.close(self._to_child)
        try:
            self.proc.wait(timeout_s)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self._receiver.join(timeout=5)
        with self.cond:
            if self.error is None and self.in_flight:
                self.error = f"writer exited with code {self.proc.returncode}"
            for fut in self._commits.values():
                if not fut.done():
                    fut.set_exception(RuntimeError(f"journal writer failed: {self.error or 'closed'}"))
            self._commits.clear()

    # --- background threads (GIL released while they wait) ----------------------------------
    def _receive_loop(self) -> None:
        with os.fdopen(self._from_child, "rb", buffering=1 << 16) as pipe:
            while head := pipe.read(_HEAD.size):
                if len(head) < _HEAD.size:
                    break
                kind, size = _HEAD.unpack(head)
                self._on_message(msgspec.msgpack.decode(pipe.read(size)))
        with self.cond:
            if not self._ready.is_set() and self.error is None:
                self.error = f"writer process ended at start-up (exit code {self.proc.wait()})"
            self._ready.set()
            if self.in_flight and self.error is None:
                self.error = f"writer process ended (exit code {self._exit_code()}) with {self.in_flight} events unwritten"
            elif self.error is None and not self._closing:
                # Killed while idle (OOM killer, an operator): nothing is lost yet, but nothing
                # appended from now on would be written. Unhealthy at once, not when a backlog
                # of unwritable events has grown past max_queued_batches.
                self.error = f"writer process ended (exit code {self._exit_code()}): new events cannot be written"
            for fut in self._commits.values():
                if not fut.done():
                    fut.set_exception(RuntimeError(f"journal writer failed: {self.error or 'writer ended'}"))
            self._commits.clear()
            self.cond.notify_all()

    def _exit_code(self) -> int | None:
        try:
            return self.proc.wait(timeout=1.0)  # the pipe's end comes just before the exit
        except subprocess.TimeoutExpired:
            return None

    def _on_message(self, msg: list[Any]) -> None:
        what = msg[0]
        if what == "ready":
            self._ready.set()
            return
        with self.cond:
            if what == "written":
                self.written += msg[1]
                if self.failure is not None:
                    self.failure = None
            elif what == "failure":
                self.failure, self.write_failures = msg[1], msg[2]
            elif what == "gave_up":
                self.error = msg[1]
            elif what in ("committed", "commit_failed"):
                fut = self._commits.pop(msg[1], None)
                if fut is not None and not fut.done():
                    if what == "committed":
                        fut.set_result(getattr(fut, "last_seq", 0))
                    else:
                        fut.set_exception(RuntimeError(f"journal writer failed: {msg[2]}"))
            self.cond.notify_all()


# --- the writer process ------------------------------------------------------------------------

class _Builder:
    """Rebuilds a `Deferred` payload from its build function's name and its values' fields."""

    def __init__(self) -> None:
        self._fns: dict[str, tuple[Callable[..., Any], list[Any]]] = {}

    def __call__(self, key: str, a: Any, b: Any) -> Any:
        entry = self._fns.get(key)
        if entry is None:
            module, _, qualname = key.partition(":")
            fn: Any = importlib.import_module(module)
            for part in qualname.split("."):
                fn = getattr(fn, part)
            hints = typing.get_type_hints(fn)
            params = [hints.get(name, Any) for name in list(fn.__code__.co_varnames)[:2]]
            entry = self._fns[key] = (fn, params)
        fn, (ta, tb) = entry
        return fn(_typed(a, ta), _typed(b, tb))


def _typed(raw: Any, hint: Any) -> Any:
    if raw is None or hint is Any or hint is type(None):
        return raw
    return msgspec.convert(raw, hint)


class _Child:
    def __init__(self, cfg: dict[str, Any], fd_in: int, fd_out: int) -> None:
        from live_runner.persistence import store as jm  # heavy imports live in the writer only

        self.jm = jm
        self.url = cfg["url"]
        self.engine = jm.make_engine(self.url, cfg["connect_timeout_s"], cfg["statement_timeout_s"])
        self.sqlite = self.engine.dialect.name == "sqlite"
        self.backoff = (cfg["backoff"], cfg["backoff_max"])
        self.fd_in, self.out = fd_in, os.fdopen(fd_out, "wb", buffering=0)
        self.buf = bytearray()
        self.build = _Builder()
        self.pending: list[tuple[bytes, Any]] = []  # frames received, not yet handled
        self.stopping = False
        self.eof = False
        self.failures = 0
        self.unreported = 0
        self.reported_at = 0.0

    def send(self, *msg: Any) -> None:
        data = msgspec.msgpack.encode(list(msg))
        self.out.write(_HEAD.pack(b"M", len(data)) + data)

    def read_frames(self, timeout: float | None) -> None:
        """Wait up to `timeout` for input, then take every complete frame available."""
        while True:
            ready, _, _ = select.select([self.fd_in], [], [], timeout)
            if not ready:
                return
            chunk = os.read(self.fd_in, 1 << 20)
            if not chunk:
                self.eof = True
                return
            self.buf += chunk
            while len(self.buf) >= _HEAD.size:
                kind, size = _HEAD.unpack_from(self.buf)
                if len(self.buf) < _HEAD.size + size:
                    break
                self.pending.append((kind, bytes(self.buf[_HEAD.size:_HEAD.size + size])))
                del self.buf[:_HEAD.size + size]
            if self.pending:
                timeout = 0  # drain what else is already there, without waiting

    def rows(self, blobs: list[bytes]) -> list[tuple[Any, ...]]:
        out = []
        encode = self.jm._encode
        for blob in blobs:
            flat = msgspec.msgpack.decode(blob)
            it = iter(flat)
            for seq, session, ts, kind, key, payload in zip(it, it, it, it, it, it):
                if type(payload) is list:  # a Deferred: [build function, a, b]
                    payload = self.build(*payload)
                out.append((seq, session, ts, kind, key, encode(payload)))
        return out

    def write(self, rows: list[tuple[Any, ...]]) -> bool:
        """Write the rows in one transaction, retrying with backoff; False once it gave up."""
        delay, delay_max = self.backoff
        while True:
            try:
                self.jm._write_rows(self.engine, self.sqlite, rows)
                self.unreported += len(rows)
                if self.failures or time.monotonic() - self.reported_at >= ACK_EVERY_S:
                    self.report()
                return True
            except Exception as exc:  # noqa: BLE001 - timeouts, lost connections: retried
                self.failures += 1
                text = f"{type(exc).__name__}: {str(exc).strip()[:300]}"
                self.send("failure", text, self.failures)
                self.jm.log.error("journal write failed (retrying in %.1f s): %s", delay, text)
                if self.stopping:
                    self.send("gave_up", text)
                    return False
                # Back off, but a stop request cuts it short (one last try).
                deadline = time.monotonic() + delay
                while not self.stopping and not self.eof and (left := deadline - time.monotonic()) > 0:
                    self.read_frames(left)
                    self.stopping = self.stopping or any(k == STOP for k, _ in self.pending)
                if self.eof and not self.stopping:
                    return False
                delay = min(delay * 2, delay_max)

    def run(self) -> None:
        while True:
            if not self.pending:
                self.read_frames(None)
            if self.eof and not self.stopping and all(k != STOP for k, _ in self.pending):
                return  # the runner died: what it had not seen written is lost, as with a thread
            frames, self.pending = self.pending, []
            blobs = []
            for i, (kind, data) in enumerate(frames):
                if kind == EVENTS:
                    blobs.append(data)
                    continue
                if blobs and not self.write(self.rows(blobs)):
                    return
                blobs = []
                if kind == COMMIT:
                    self.commit(int(data))
                elif kind == FLUSH:
                    self.report()
                elif kind == STOP:
                    self.stopping = True
                    self.report()
            if blobs and not self.write(self.rows(blobs)):
                return
            if self.unreported and not self.pending:
                self.read_frames(ACK_EVERY_S)  # idle: report what is written once nothing comes
                if not self.pending:
                    self.report()
            if self.stopping and not self.pending:
                self.report()
                return

    def report(self) -> None:
        if self.unreported:
            self.send("written", self.unreported)
            self.unreported = 0
        self.reported_at = time.monotonic()

    def commit(self, cid: int) -> None:
        self.report()
        try:
            if self.sqlite:
                self.jm._sync_sqlite(self.engine, self.url)
            self.send("committed", cid)
        except Exception as exc:  # noqa: BLE001
            self.send("commit_failed", cid, f"{type(exc).__name__}: {exc}")


def _die_with_parent(parent: int) -> None:
    """SIGKILL when the runner dies (Linux), so no orphan writes behind a restarted run."""
    try:
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass
    if os.getppid() != parent:
        os._exit(0)


def _yield_to_runner() -> None:
    """SCHED_BATCH (Linux): a fair share of the CPU, but waking up (events arrived) never
    preempts the runner's hot thread when both want one core; the writer runs at the end of
    its time slice instead, which the events can wait for."""
    try:
        os.sched_setscheduler(0, os.SCHED_BATCH, os.sched_param(0))
    except (AttributeError, OSError):
        pass


def main(argv: list[str]) -> None:
    cfg = json.loads(os.environ.pop(_ARGS_ENV))
    _die_with_parent(cfg["parent"])
    _yield_to_runner()
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the runner decides when the writer stops
    child = _Child(cfg, int(argv[0]), int(argv[1]))
    child.send("ready")
    try:
        child.run()
    finally:
        child.engine.dispose()


if __name__ == "__main__":
    main(sys.argv[1:])
