"""Bar files for replays: validate a whole file up front, then stream it as `Bar`s.

Replays must be deterministic and must not die half-way through a session, so a file is checked
completely (vectorized, with pyarrow) before it is replayed, and every problem is reported with the
file, the 1-based data row and the column. Streaming reads the file in chunks so memory stays flat
however large the file is. Bar-level sanity (high >= low, NaN prices, ...) is not judged here: the
DataManager rejects such bars one by one, exactly as it does for live feeds.
"""

from __future__ import annotations

import contextlib
import csv
import io
import queue
import threading
from collections.abc import Iterator
from datetime import date
from functools import partial
from pathlib import Path
from typing import Callable, TypeVar

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pcsv
import pyarrow.parquet as pq

from live_runner.core.models import Bar

COLUMNS = ("symbol", "timestamp", "open", "high", "low", "close", "volume")
NUMERIC = COLUMNS[2:]
# Cells read as "no value" in numeric columns (pyarrow's CSV defaults, also applied to Parquet strings).
NULL_STRINGS = pcsv.ConvertOptions().null_values
# Integer timestamps below 1973-03-03 in ns are surely s/ms/us: refuse, don't replay January 1970.
MIN_EPOCH_NS = 10**17
_T = TypeVar("_T")
_END = object()
_SCAN_ROWS = 8192  # validate()/symbols(): ~6 MB CSV blocks; much larger blocks are slower to parse


class BarFileError(ValueError):
    """A bar file that cannot be replayed; names the file, 1-based data row and column."""

    def __init__(self, path: str | Path, message: str, row: int | None = None,
                 column: str | None = None) -> None:
        self.path, self.row, self.column, self.reason = str(path), row, column, message
        where = "".join(
            (f" row {row}," if row is not None else "", f" column {column!r}:" if column else ""))
        super().__init__(f"{path}:{where} {message}")

    def __reduce__(self):  # type: ignore[override]  # picklable despite the custom __init__
        return type(self), (self.path, self.reason, self.row, self.column)


def _read_ahead(source: Iterator[_T], depth: int = 2) -> Iterator[_T]:
    """Run `source` in a worker thread, at most `depth` items ahead (memory stays bounded).
    Used for the raw file batches only: pyarrow parses the next one with the GIL released while the
    caller's thread builds Bars (anything more in the worker would fight for the GIL)."""
    q: queue.Queue = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def work() -> None:
        try:
            for item in source:
                q.put(item)
                if stop.is_set():
                    return
            q.put(_END)
        except BaseException as exc:  # handed to the consumer, re-raised there
            q.put(exc)

    worker = threading.Thread(target=work, name="bar-file-read-ahead", daemon=True)
    worker.start()
    try:
        while (item := q.get()) is not _END:
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:  # consumer done or gone: unblock a worker waiting on the full queue, then join it
        stop.set()
        while worker.is_alive():
            with contextlib.suppress(queue.Empty):
                q.get_nowait()
            worker.join(0.01)


def _first_failure(arr: pa.Array, convert: Callable[[pa.Array], object]) -> int:
    """Index of the first element `convert` rejects (bisection: O(log n) vectorized casts, and the
    very same parser as the fast path, so the error path can never disagree with it)."""
    lo, hi = 0, len(arr)
    while hi - lo > 1:
        mid = (lo + hi) // 2
        try:
            convert(arr.slice(lo, mid - lo))
            lo = mid
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
            hi = mid
    return lo


def _plain(arr: pa.Array) -> pa.Array:
    """Dictionary-encoded (Parquet) columns decoded, large strings as plain strings."""
    if pa.types.is_dictionary(arr.type):
        arr = arr.dictionary_decode()
    return pc.cast(arr, pa.string()) if pa.types.is_large_string(arr.type) else arr


def _first_true(mask: pa.Array | np.ndarray) -> int | None:
    """Index of the first true element, None if there is none."""
    m = mask.to_numpy(zero_copy_only=False) if isinstance(mask, pa.Array) else mask
    return int(np.argmax(m)) if m.any() else None


_cast_ts = partial(pc.cast, target_type=pa.timestamp("ns", tz="UTC"))
_cast_int = partial(pc.cast, target_type=pa.int64())
_cast_float = partial(pc.cast, target_type=pa.float64())


class BarFile:
    """A CSV or Parquet file of 1-minute bars (`symbol,timestamp,open,high,low,close,volume`).

    Timestamps are bar starts: ISO-8601 with an offset or `Z`, integer epoch nanoseconds, or (Parquet)
    a tz-aware timestamp column. Naive timestamps are refused: the zone would be a guess.
    Row order is kept exactly as in the file."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.is_parquet = self.path.suffix.lower() in (".parquet", ".pq", ".parq")  # else CSV
        self._names: dict[str, str] | None = None  # canonical column -> name in the file
        self._ts_digits: bool | None = None  # text timestamps: epoch-ns digits (or ISO-8601)?
        # Earliest and latest bar start (UTC ns) once `validate` has run; None for no rows.
        self.first_ts: int | None = None
        self.last_ts: int | None = None

    def validate(self) -> int:
        """Check the whole file (columns, timestamps, numeric cells) and return its row count;
        raises BarFileError at the first bad row. Also notes the first and last bar start (the
        replay's calendar covers them)."""
        total = 0
        lo: int | None = None
        hi: int | None = None
        for _, sym, ts, _ in self._chunks(_SCAN_ROWS):
            total += len(sym)
            if len(ts):
                a, b = int(ts.min()), int(ts.max())
                lo = a if lo is None or a < lo else lo
                hi = b if hi is None or b > hi else hi
        self.first_ts, self.last_ts = lo, hi
        return total

    def iter_bars(self, chunk_rows: int = 8192) -> Iterator[Bar]:
        """Stream the bars in file order, `chunk_rows` rows converted at a time."""
        interned: dict[str, str] = {}
        for _, sym, ts, nums in self._chunks(chunk_rows, ahead=True):
            enc = sym.dictionary_encode()
            names = np.array([interned.setdefault(s, s) for s in enc.dictionary.to_pylist()], object)
            symbols = names[enc.indices.to_numpy(zero_copy_only=False)].tolist()
            yield from map(Bar, symbols, ts.tolist(), *(c.tolist() for c in nums))

    def symbols(self) -> list[str]:
        """Sorted distinct symbols in the file."""
        return sorted(set().union(*(sym.unique().to_pylist()
                                    for _, sym, _, _ in self._chunks(_SCAN_ROWS))))

    def _resolve(self, present: list[str]) -> dict[str, str]:
        """Map each required column to its name in the file (case and blanks ignored)."""
        by_key = {name.strip().lstrip("\ufeff").lower(): name for name in reversed(present)}
        if missing := [col for col in COLUMNS if col not in by_key]:
            raise BarFileError(self.path, f"missing (columns found: {', '.join(present) or 'none'})",
                               column=missing[0])
        return {col: by_key[col] for col in COLUMNS}

    def _csv_header(self) -> list[str]:
        try:
            with pa.input_stream(str(self.path), compression="detect") as stream:
                head = stream.read(1 << 20).decode("utf-8-sig", errors="replace")
        except (OSError, pa.ArrowException) as exc:
            raise BarFileError(self.path, f"cannot open: {exc}") from exc
        if not (line := next(iter(head.splitlines()), "")).strip():
            raise BarFileError(self.path, "empty file: no header row")
        return next(csv.reader(io.StringIO(line)))

    def _chunks(self, chunk_rows: int, ahead: bool = False
                ) -> Iterator[tuple[int, pa.Array, np.ndarray, list[np.ndarray]]]:
        """Yield (first row, symbols, ts ns, [open, high, low, close, volume]) chunks; `ahead`:
        parse the file in a read-ahead thread."""
        if chunk_rows < 1:
            raise ValueError("chunk_rows must be >= 1")
        self._ts_digits = None
        batches = self._parquet_batches(chunk_rows) if self.is_parquet else self._csv_batches(chunk_rows)
        if ahead:
            batches = _read_ahead(batches)
        start = 0
        for batch in batches:
            for off in range(0, batch.num_rows, chunk_rows):
                part = batch.slice(off, chunk_rows)
                yield start, *self._convert(part, start)
                start += part.num_rows

    def _parquet_batches(self, chunk_rows: int) -> Iterator[pa.RecordBatch]:
        try:
            pf = pq.ParquetFile(self.path)
        except (OSError, pa.ArrowException) as exc:
            raise BarFileError(self.path, f"not a readable Parquet file: {exc}") from exc
        self._names = self._resolve(pf.schema_arrow.names)
        cols = [self._names[c] for c in COLUMNS]
        # One reader per row group: a single `iter_batches` over the whole file keeps Arrow
        # buffers alive across row groups (34 -> 78 MB over a 7.5 M-row file), released only at
        # its end; per row group they are freed as soon as the group is consumed (~2 MB).
        for group in range(pf.metadata.num_row_groups):
            yield from pf.iter_batches(batch_size=chunk_rows, row_groups=[group], columns=cols,
                                       use_threads=True)

    def _open_csv(self, typed: bool, block_size: int) -> pcsv.CSVStreamingReader:
        assert self._names is not None
        types = {self._names[c]: pa.float64() if typed and c in NUMERIC else pa.string()
                 for c in COLUMNS}
        return pcsv.open_csv(
            self.path, read_options=pcsv.ReadOptions(block_size=block_size, use_threads=False),
            convert_options=pcsv.ConvertOptions(
                column_types=types, include_columns=list(types), strings_can_be_null=False))

    def _csv_batches(self, chunk_rows: int) -> Iterator[pa.RecordBatch]:
        """Fast path: numeric columns parsed by the CSV reader itself. A cell it rejects makes us
        re-read the file as text to find and name that cell (rare, so it may be slower)."""
        self._names = self._resolve(self._csv_header())
        block = min(max(chunk_rows * 96, 1 << 20), 8 << 20)
        done = 0
        try:
            for batch in self._open_csv(typed=True, block_size=block):
                yield batch
                done += batch.num_rows
        except pa.ArrowInvalid as exc:
            raise self._locate_csv_error(done, block, exc) from exc

    def _locate_csv_error(self, skip: int, block: int, cause: Exception) -> BarFileError:
        start = 0
        try:
            for batch in self._open_csv(typed=False, block_size=block):
                if start + batch.num_rows > skip:
                    self._convert(batch, start)
                start += batch.num_rows
        except BarFileError as exc:
            return exc
        except pa.ArrowInvalid as exc:  # malformed CSV (e.g. a row with too few fields)
            return BarFileError(self.path, f"malformed CSV near row {start + 1}: {exc}")
        return BarFileError(self.path, f"unreadable CSV: {cause}")

    # -- conversion ---------------------------------------------------------------------------

    def _convert(self, batch: pa.RecordBatch, start: int) -> tuple[pa.Array, np.ndarray, list[np.ndarray]]:
        """Validate and convert one chunk; raises for the first bad row of the chunk."""
        assert self._names is not None
        raw = {c: _plain(batch.column(self._names[c])) for c in COLUMNS}
        problems: list[tuple[int, int, str]] = []  # (row index in chunk, column order, message)
        sym = self._symbols(raw["symbol"], problems)
        ts = self._timestamps(raw["timestamp"], problems)
        nums = [self._numeric(raw[c], COLUMNS.index(c), problems) for c in NUMERIC]
        if problems:
            idx, col, msg = min(problems)
            raise BarFileError(self.path, msg, row=start + idx + 1, column=COLUMNS[col])
        return sym, ts, nums  # type: ignore[return-value]

    def _symbols(self, arr: pa.Array, problems: list) -> pa.Array | None:
        if not pa.types.is_string(arr.type):
            problems.append((0, 0, f"expected text, found {arr.type}"))
            return None
        empty = pc.or_kleene(arr.is_null(), pc.equal(pc.utf8_length(pc.utf8_trim_whitespace(arr)), 0))
        if (i := _first_true(empty)) is not None:
            problems.append((i, 0, "empty symbol"))
        return arr

    def _timestamps(self, arr: pa.Array, problems: list) -> np.ndarray | None:
        t = arr.type
        ints: pa.Array | None = None
        if pa.types.is_timestamp(t) and t.tz is not None:
            ints = pc.cast(pc.cast(arr, pa.timestamp("ns", tz=t.tz)), pa.int64())
        elif pa.types.is_integer(t):
            ints = pc.cast(arr, pa.int64())
        elif pa.types.is_string(t):
            ints = self._parse_text_ts(arr, problems)
        else:
            naive = pa.types.is_timestamp(t)
            problems.append((0, 1, f"column type {t} " + (
                "is ambiguous (no time zone): store tz-aware UTC timestamps or epoch ns"
                if naive else "is not supported")))
        if ints is None:
            return None
        if (i := _first_true(ints.is_null())) is not None:
            problems.append((i, 1, "missing timestamp"))
            return None
        values = ints.to_numpy(zero_copy_only=False)
        if (i := _first_true(values < MIN_EPOCH_NS)) is not None:
            problems.append((i, 1, f"{values[i]} is not epoch nanoseconds (seconds or ms?)"))
        return values

    def _parse_text_ts(self, arr: pa.Array, problems: list) -> pa.Array | None:
        """ISO-8601 with offset/Z or epoch-ns digits; the file's first value decides which."""
        if self._ts_digits is None and len(arr):
            self._ts_digits = (arr[0].as_py() or "").lstrip("-").isdigit()
        digits = bool(self._ts_digits)
        cast = _cast_int if digits else _cast_ts
        try:
            return cast(arr) if digits else pc.cast(cast(arr), pa.int64())
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
            i = _first_failure(arr, cast)
        text = arr[i].as_py()
        reason = f"cannot parse {text!r}"
        if not digits:
            try:
                pc.cast(arr.slice(i, 1), pa.timestamp("ns"))
                reason = f"naive timestamp {text!r} is ambiguous: add a UTC offset or 'Z'"
            except pa.ArrowInvalid:
                pass
        problems.append((i, 1, reason))
        return None

    def _numeric(self, arr: pa.Array, col: int, problems: list) -> np.ndarray:
        t = arr.type
        if pa.types.is_string(t):
            blank = pc.is_in(pc.utf8_trim_whitespace(arr), value_set=pa.array(NULL_STRINGS))
            arr = pc.if_else(blank, pa.scalar(None, pa.string()), arr)
            try:
                arr = _cast_float(arr)
            except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
                i = _first_failure(arr, _cast_float)
                problems.append((i, col, f"not a number: {arr[i].as_py()!r}"))
                return np.empty(0)
        elif not (pa.types.is_integer(t) or pa.types.is_floating(t) or pa.types.is_decimal(t)
                  or pa.types.is_null(t)):
            problems.append((0, col, f"unsupported column type {t}"))
            return np.empty(0)
        elif t != pa.float64():
            arr = pc.cast(arr, pa.float64(), safe=False)
        return arr.to_numpy(zero_copy_only=False)


def read_daily_closes(path: str | Path) -> dict[date, dict[str, float]]:
    """Daily closes by session and symbol from a daily-bars file (Parquet or CSV with columns
    symbol, session (YYYY-MM-DD), close; others ignored), e.g. Dagster's `daily_bars` asset.
    BarFileError naming the row and column for anything unusable."""
    path = Path(path)
    try:
        if path.suffix.lower() in (".parquet", ".pq", ".parq"):
            table = pq.read_table(path)
        else:
            table = pcsv.read_csv(path, convert_options=pcsv.ConvertOptions(
                column_types={"symbol": pa.string(), "session": pa.string()}))
    except (OSError, pa.ArrowException) as exc:
        raise BarFileError(path, f"cannot read daily bars: {exc}") from exc
    names = {n.strip().lower(): n for n in table.column_names}
    for col in ("symbol", "session", "close"):
        if col not in names:
            raise BarFileError(path, f"missing (columns found: {', '.join(table.column_names)})", column=col)
    out: dict[date, dict[str, float]] = {}
    rows = zip(table.column(names["symbol"]).to_pylist(), table.column(names["session"]).to_pylist(),
               table.column(names["close"]).to_pylist())
    for i, (sym, session, close) in enumerate(rows, 1):
        if not sym:
            raise BarFileError(path, "empty symbol", row=i, column="symbol")
        try:
            day = session if isinstance(session, date) else date.fromisoformat(str(session))
        except ValueError:
            raise BarFileError(path, f"not a date: {session!r}", row=i, column="session") from None
        if not isinstance(close, (int, float)) or not close > 0 or close == float("inf"):
            raise BarFileError(path, f"not a positive price: {close!r}", row=i, column="close")
        out.setdefault(day, {})[str(sym)] = float(close)
    return out
