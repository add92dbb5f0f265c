"""Reading and writing 1-minute bar frames in the runner's file format.

Frames are pandas DataFrames with `symbol, ts (int64 UTC ns, the bar's start), open, high, low,
close, volume`; files are the runner's (`live_runner.adapters.replay`): Parquet with a tz-aware
`timestamp` column, or CSV. Reads filter on time with pyarrow so a multi-session file costs only
the rows asked for.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

COLUMNS = ["symbol", "ts", "open", "high", "low", "close", "volume"]
_TS = pa.timestamp("ns", tz="UTC")


def empty_frame() -> pd.DataFrame:
    return pd.DataFrame({"symbol": pd.Series([], dtype=object), "ts": pd.Series([], dtype=np.int64),
                         **{c: pd.Series([], dtype=np.float64) for c in COLUMNS[2:]}})


def frame_of(bars: "list[Any]") -> pd.DataFrame:
    """A bars frame from the runner's Bar objects (a provider's REST answer); empty when none."""
    if not bars:
        return empty_frame()
    return pd.DataFrame({
        "symbol": pd.Series([b.symbol for b in bars], dtype=object),
        "ts": np.fromiter((b.ts for b in bars), np.int64, len(bars)),
        **{c: np.fromiter((getattr(b, c) for b in bars), np.float64, len(bars))
           for c in ("open", "high", "low", "close", "volume")}})


def _timestamps_ns(column: pa.ChunkedArray | pa.Array) -> np.ndarray:
    """Epoch ns of a timestamp column given as tz-aware timestamps, ISO text or integers."""
    if pa.types.is_timestamp(column.type):
        return pc.cast(pc.cast(column, _TS), pa.int64()).to_numpy()
    if pa.types.is_integer(column.type):
        return column.to_numpy().astype(np.int64)
    parsed = pd.to_datetime(pd.Series(column.to_pylist()), utc=True, format="ISO8601")
    return parsed.to_numpy(dtype="datetime64[ns]").astype(np.int64)


def read_bars(path: Path, start_ns: int | None = None, end_ns: int | None = None,
              symbols: list[str] | None = None, categorical: bool = False) -> pd.DataFrame:
    """Bars of `path` with start_ns <= ts < end_ns (and in `symbols` when given). With
    `categorical`, `symbol` stays a pandas Categorical (much faster on millions of rows)."""
    if path.suffix == ".parquet":
        filters = []
        if start_ns is not None:
            filters.append(("timestamp", ">=", pa.scalar(start_ns, _TS)))
        if end_ns is not None:
            filters.append(("timestamp", "<", pa.scalar(end_ns, _TS)))
        table = pq.read_table(path, read_dictionary=["symbol"], filters=filters or None)
        if not pa.types.is_timestamp(table.schema.field("timestamp").type):
            table = pq.read_table(path, read_dictionary=["symbol"])  # int/ISO stamps: filter below
    else:
        import pyarrow.csv as pcsv

        table = pcsv.read_csv(path, convert_options=pcsv.ConvertOptions(
            column_types={"timestamp": pa.string(), "symbol": pa.string()}))
    symbol = table.column("symbol").to_pandas()
    if not categorical:
        symbol = symbol.astype(object)
    frame = pd.DataFrame({"symbol": symbol, "ts": _timestamps_ns(table.column("timestamp"))})
    for col in COLUMNS[2:]:
        frame[col] = table.column(col).to_numpy().astype(np.float64)
    mask = np.ones(len(frame), dtype=bool)
    if start_ns is not None:
        mask &= frame["ts"].to_numpy() >= start_ns
    if end_ns is not None:
        mask &= frame["ts"].to_numpy() < end_ns
    if symbols is not None:
        mask &= frame["symbol"].isin(symbols).to_numpy()
    if mask.all():
        return frame
    return frame.loc[mask].reset_index(drop=True)


def time_span(path: Path) -> tuple[int, int]:
    """(first, last) bar start in ns, from the timestamp column only."""
    if path.suffix == ".parquet":
        ns = _timestamps_ns(pq.read_table(path, columns=["timestamp"]).column("timestamp"))
    else:
        ns = read_bars(path)["ts"].to_numpy()
    if len(ns) == 0:
        return (0, -1)
    return int(ns.min()), int(ns.max())


def write_bars(frame: pd.DataFrame, path: Path) -> Path:
    """Write a frame as a runner-readable Parquet file (rows in (ts, symbol) order)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    ordered = frame.sort_values(["ts", "symbol"], kind="stable")
    table = pa.table({
        "symbol": pa.array(ordered["symbol"].to_numpy(object), pa.string()),
        "timestamp": pa.array(ordered["ts"].to_numpy(np.int64)).cast(_TS),
        **{c: pa.array(ordered[c].to_numpy(np.float64)) for c in COLUMNS[2:6]},
        "volume": pa.array(ordered["volume"].to_numpy(np.float64).astype(np.int64)),
    })
    tmp = path.with_suffix(".tmp")
    pq.write_table(table, tmp)
    tmp.replace(path)
    return path


def daily_from_minutes(frame: pd.DataFrame) -> pd.DataFrame:
    """One daily bar per symbol (open first, high max, low min, close last, volume sum)."""
    if frame.empty:
        return pd.DataFrame(columns=["symbol", "open", "high", "low", "close", "volume", "bars"])
    ordered = frame.sort_values(["symbol", "ts"], kind="stable")
    g = ordered.groupby("symbol", sort=True)
    out = pd.DataFrame({"open": g["open"].first(), "high": g["high"].max(), "low": g["low"].min(),
                        "close": g["close"].last(), "volume": g["volume"].sum(),
                        "bars": g["ts"].size()})
    return out.reset_index()
