"""BarFile: the formats it accepts, the errors it names, and streaming in file order."""

from __future__ import annotations

import math
import pickle
import threading
import time
from datetime import date
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from live_runner.adapters.replay import BarFile, BarFileError
from live_runner.core.models import Bar

HEADER = "symbol,timestamp,open,high,low,close,volume\n"
T0 = 1_709_303_400_000_000_000  # 2024-03-01 14:30:00 UTC = 09:30 ET (EST)
MIN = 60_000_000_000


def write(tmp_path: Path, text: str, name: str = "bars.csv") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def rows_csv(n: int, ts=lambda i: f"{T0 + i * MIN}") -> str:
    return HEADER + "".join(
        f"S{i % 3},{ts(i)},{10 + i / 100:.2f},{10.5 + i / 100:.2f},{9.5 + i / 100:.2f},"
        f"{10.1 + i / 100:.2f},{100 + i}\n" for i in range(n))


def test_csv_iso_z(tmp_path: Path) -> None:
    path = write(tmp_path, HEADER + "AAPL,2024-03-01T14:30:00Z,10.0,10.5,9.9,10.2,1200\n"
                                    "MSFT,2024-03-01T14:31:00.000Z,20,21,19,20.5,300\n")
    bf = BarFile(path)
    assert bf.validate() == 2
    bars = list(bf.iter_bars())
    assert bars == [Bar("AAPL", T0, 10.0, 10.5, 9.9, 10.2, 1200.0),
                    Bar("MSFT", T0 + MIN, 20.0, 21.0, 19.0, 20.5, 300.0)]
    b = bars[0]
    assert type(b) is Bar and type(b.ts) is int and type(b.open) is float
    assert type(b.volume) is float and hash(b) == hash(Bar("AAPL", T0, 10.0, 10.5, 9.9, 10.2, 1200.0))
    with pytest.raises(AttributeError):  # frozen
        b.close = 1.0  # type: ignore[misc]


def test_csv_iso_offsets_across_dst(tmp_path: Path) -> None:
    # 09:30 ET before (EST, -05:00) and after (EDT, -04:00) the March 2024 change, and +00:00.
    path = write(tmp_path, HEADER + "A,2024-03-08T09:30:00-05:00,1,1,1,1,1\n"
                                    "A,2024-03-11T09:30:00-04:00,1,1,1,1,1\n"
                                    "A,2024-03-11T13:31:00+00:00,1,1,1,1,1\n"
                                    "A,2024-03-11T19:01:00+0530,1,1,1,1,1\n")
    ts = [b.ts for b in BarFile(path).iter_bars()]
    expected = ["2024-03-08T14:30Z", "2024-03-11T13:30Z", "2024-03-11T13:31Z", "2024-03-11T13:31Z"]
    assert ts == [pd.Timestamp(t).value for t in expected]


def test_csv_epoch_ns(tmp_path: Path) -> None:
    path = write(tmp_path, rows_csv(5))
    bars = list(BarFile(path).iter_bars())
    assert [b.ts for b in bars] == [T0 + i * MIN for i in range(5)]
    assert bars[4] == Bar("S1", T0 + 4 * MIN, 10.04, 10.54, 9.54, 10.14, 104.0)


def test_extra_columns_ignored_and_header_case(tmp_path: Path) -> None:
    path = write(tmp_path, "vwap, Symbol ,TIMESTAMP,open,high,low,close,volume,trades\n"
                           "1.0,X,2024-03-01T14:30:00Z,1,2,0.5,1.5,10,3\n")
    assert list(BarFile(path).iter_bars()) == [Bar("X", T0, 1.0, 2.0, 0.5, 1.5, 10.0)]


def _table(ts: pa.Array) -> pa.Table:
    return pa.table({"symbol": ["A", "B"], "timestamp": ts, "open": [1.0, 2.0], "high": [1.5, 2.5],
                     "low": [0.5, 1.5], "close": [1.2, 2.2], "volume": pa.array([10, 20], pa.int64()),
                     "extra": ["x", "y"]})


@pytest.mark.parametrize("ts", [
    pa.array([T0, T0 + MIN], pa.timestamp("ns", tz="UTC")),
    pa.array([T0 // 1000, (T0 + MIN) // 1000], pa.timestamp("us", tz="America/New_York")),
    pa.array([T0, T0 + MIN], pa.int64()),
    pa.array(["2024-03-01T09:30:00-05:00", "2024-03-01T14:31:00Z"]),
], ids=["tz-ns", "tz-us-ny", "int-ns", "iso-text"])
def test_parquet(tmp_path: Path, ts: pa.Array) -> None:
    path = tmp_path / "bars.parquet"
    pq.write_table(_table(ts), path)
    bf = BarFile(path)
    assert bf.validate() == 2
    assert list(bf.iter_bars()) == [Bar("A", T0, 1.0, 1.5, 0.5, 1.2, 10.0),
                                    Bar("B", T0 + MIN, 2.0, 2.5, 1.5, 2.2, 20.0)]
    assert bf.symbols() == ["A", "B"]


def test_parquet_naive_timestamp_refused(tmp_path: Path) -> None:
    path = tmp_path / "naive.parquet"
    pq.write_table(_table(pa.array([T0, T0 + MIN], pa.timestamp("ns"))), path)
    with pytest.raises(BarFileError, match=r"naive\.parquet: row 1, column 'timestamp': .*ambiguous"):
        BarFile(path).validate()


def test_csv_naive_timestamp_refused(tmp_path: Path) -> None:
    path = write(tmp_path, HEADER + "A,2024-03-01T14:30:00Z,1,1,1,1,1\n"
                                    "A,2024-03-01T09:31:00,1,1,1,1,1\n")
    with pytest.raises(BarFileError) as exc:
        BarFile(path).validate()
    assert (exc.value.row, exc.value.column) == (2, "timestamp")
    assert "naive timestamp '2024-03-01T09:31:00' is ambiguous" in str(exc.value)


def test_missing_column_names_column_and_file(tmp_path: Path) -> None:
    path = write(tmp_path, "symbol,timestamp,open,high,low,volume\nA,2024-03-01T14:30:00Z,1,1,1,1\n")
    with pytest.raises(BarFileError, match=r"bars\.csv: column 'close': missing") as exc:
        BarFile(path).validate()
    assert exc.value.column == "close" and str(path) in str(exc.value)
    pq.write_table(_table(pa.array([T0, T0 + MIN])).drop(["high"]), tmp_path / "b.parquet")
    with pytest.raises(BarFileError, match=r"b\.parquet: column 'high': missing"):
        list(BarFile(tmp_path / "b.parquet").iter_bars())


def test_unparseable_timestamp_names_row(tmp_path: Path) -> None:
    iso = lambda i: "2024-13-01T09:30" if i == 16 else f"2024-03-01T14:{i:02d}:00Z"  # noqa: E731
    path = write(tmp_path, rows_csv(40, iso))
    with pytest.raises(BarFileError) as exc:
        BarFile(path).validate()
    assert str(exc.value) == f"{path}: row 17, column 'timestamp': cannot parse '2024-13-01T09:30'"
    assert pickle.loads(pickle.dumps(exc.value)).args == exc.value.args


def test_error_row_counts_across_chunks(tmp_path: Path) -> None:
    n, bad = 150_000, 140_001  # beyond the first two 65536-row chunks
    text = rows_csv(n).splitlines(keepends=True)
    text[bad] = text[bad].replace(",100", ",1x0", 1) if ",100" in text[bad] else \
        "S0,x1709303400000000000,1,1,1,1,1\n"
    path = write(tmp_path, "".join(text))
    with pytest.raises(BarFileError, match=rf"row {bad}, column 'timestamp': cannot parse"):
        BarFile(path).validate()


def test_non_numeric_price_names_row_and_column(tmp_path: Path) -> None:
    lines = rows_csv(30).splitlines(keepends=True)
    lines[23] = "S1,%d,10,abc,9,10,5\n" % (T0 + 22 * MIN)  # data row 23
    path = write(tmp_path, "".join(lines))
    with pytest.raises(BarFileError, match=r"row 23, column 'high': not a number: 'abc'"):
        BarFile(path).validate()
    with pytest.raises(BarFileError, match="row 23"):
        list(BarFile(path).iter_bars(chunk_rows=4))


def test_first_bad_row_wins_over_column_order(tmp_path: Path) -> None:
    lines = rows_csv(12).splitlines(keepends=True)
    lines[9] = "S0,nope,1,1,1,1,1\n"
    lines[5] = "S0,%d,1,1,1,1,lots\n" % (T0 + 4 * MIN)
    with pytest.raises(BarFileError, match=r"row 5, column 'volume'"):
        BarFile(write(tmp_path, "".join(lines))).validate()


def test_empty_and_nan_numeric_cells_allowed(tmp_path: Path) -> None:
    path = write(tmp_path, HEADER + "A,2024-03-01T14:30:00Z,,NaN,1,1,\n")
    assert BarFile(path).validate() == 1
    (bar,) = BarFile(path).iter_bars()
    assert math.isnan(bar.open) and math.isnan(bar.high) and math.isnan(bar.volume)
    assert bar.low == 1.0


@pytest.mark.parametrize("cell,reason", [("", "cannot parse ''"), ("1709303400", ".* not epoch nano")])
def test_bad_timestamp_cells(tmp_path: Path, cell: str, reason: str) -> None:
    path = write(tmp_path, HEADER + f"A,{cell},1,1,1,1,1\n")
    with pytest.raises(BarFileError, match=f"row 1, column 'timestamp': {reason}"):
        BarFile(path).validate()


def test_empty_symbol_refused(tmp_path: Path) -> None:
    path = write(tmp_path, HEADER + "A,2024-03-01T14:30:00Z,1,1,1,1,1\n ,2024-03-01T14:30:00Z,1,1,1,1,1\n")
    with pytest.raises(BarFileError, match=r"row 2, column 'symbol': empty symbol"):
        BarFile(path).validate()


def test_empty_files(tmp_path: Path) -> None:
    assert BarFile(write(tmp_path, HEADER)).validate() == 0
    with pytest.raises(BarFileError, match="no header"):
        BarFile(write(tmp_path, "", "empty.csv")).validate()


def test_chunked_streaming_keeps_file_order(tmp_path: Path) -> None:
    # Out-of-order and duplicate timestamps are kept as they are: the DataManager judges them.
    order = [5, 3, 3, 9, 0, 1, 8, 2, 7, 6, 4] * 7
    body = "".join(f"S{i % 4},{T0 + k * MIN},{k + 1},{k + 2},{k + 0.5},{k + 1.5},{i}\n"
                   for i, k in enumerate(order))
    path = write(tmp_path, HEADER + body)
    expected = [Bar(f"S{i % 4}", T0 + k * MIN, k + 1.0, k + 2.0, k + 0.5, k + 1.5, float(i))
                for i, k in enumerate(order)]
    for chunk_rows in (1, 3, 10, 65536):
        assert list(BarFile(path).iter_bars(chunk_rows=chunk_rows)) == expected
    assert BarFile(path).symbols() == ["S0", "S1", "S2", "S3"]
    with pytest.raises(ValueError):
        list(BarFile(path).iter_bars(chunk_rows=0))


def test_abandoned_iteration_leaves_no_thread(tmp_path: Path) -> None:
    path = write(tmp_path, rows_csv(20_000))
    before = threading.active_count()
    it = BarFile(path).iter_bars(chunk_rows=100)
    next(it)
    it.close()
    assert threading.active_count() == before


def test_report_throughput(tmp_path: Path) -> None:
    """Prints rows/s of validate() and iter_bars() on a 500-symbol generated session (no asserts:
    timing depends on the machine; run with -s to see the figures)."""
    from live_runner.data import sample_data

    df = sample_data.generate(date(2024, 3, 1), 1, 500, 7)
    for fmt in ("parquet", "csv"):
        bf = BarFile(sample_data.write(df, tmp_path, fmt))
        rates: dict[str, list[float]] = {"validate": [], "iter_bars": []}
        for _ in range(3):  # the first run also pays one-off costs (pyarrow kernels, tz database)
            t = time.perf_counter()
            rows = bf.validate()
            rates["validate"].append(rows / (time.perf_counter() - t) / 1e6)
            t = time.perf_counter()
            n = sum(1 for _ in bf.iter_bars())
            rates["iter_bars"].append(n / (time.perf_counter() - t) / 1e6)
        print(f"\n{fmt}, {rows} rows (M rows/s, 3 runs): " + "; ".join(
            f"{k} " + " / ".join(f"{r:.2f}" for r in v) for k, v in rates.items()))
