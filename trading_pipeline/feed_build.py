"""A session's runner feed built column-wise (numpy over Arrow), written as the runner's Parquet.

The same rows, in the same order, as `history_sources.feed_frame` followed by `bars.write_bars`
(one seed bar per symbol: its last valid bar of the previous session's regular hours; then the
session, premarket to after-hours, in (ts, symbol) order, a stable sort), without pandas: a
backfill builds one feed per session, and on 500 symbols the frame version (two object-string
sorts, a concat, a copy to Arrow) cost about a quarter of a session's replay. The session's rows
come from files already in time order, so they are sorted only when they are not.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

PRICES = ("open", "high", "low", "close")
_TS = pa.timestamp("ns", tz="UTC")


class Columns:
    """Bars as arrays: `symbol` (Arrow strings), `ts` (int64 UTC ns), prices and volume
    (float64), the frame layout of `trading_pipeline.bars` without the DataFrame."""

    def __init__(self, symbol: pa.Array, ts: np.ndarray, values: dict[str, np.ndarray]) -> None:
        self.symbol, self.ts, self.values = symbol, ts, values

    @classmethod
    def of_frame(cls, frame: pd.DataFrame) -> "Columns":
        return cls(pa.array(frame["symbol"].to_numpy(object), pa.string()),
                   frame["ts"].to_numpy(np.int64),
                   {c: frame[c].to_numpy(np.float64) for c in (*PRICES, "volume")})

    @classmethod
    def of_parquet(cls, paths: list[Path], start_ns: int, end_ns: int) -> "Columns | None":
        """Rows with start_ns <= ts < end_ns of runner Parquet files, in file then row order;
        None when a file's stamps are not a timestamp column (the frame reader handles those)."""
        tables = []
        for path in paths:
            if not pa.types.is_timestamp(pq.read_schema(path).field("timestamp").type):
                return None
            tables.append(pq.read_table(path, columns=["symbol", "timestamp", *PRICES, "volume"],
                                        filters=[("timestamp", ">=", pa.scalar(start_ns, _TS)),
                                                 ("timestamp", "<", pa.scalar(end_ns, _TS))]))
        symbol = pa.chunked_array([c for t in tables for c in pc.cast(t.column("symbol"), pa.string()).chunks],
                                  pa.string()).combine_chunks()
        ts = np.concatenate([pc.cast(pc.cast(t.column("timestamp"), _TS), pa.int64()).to_numpy()
                             for t in tables]).astype(np.int64, copy=False)
        values = {c: np.concatenate([t.column(c).to_numpy().astype(np.float64) for t in tables])
                  for c in (*PRICES, "volume")}
        return cls(symbol, ts, values)

    def take(self, idx: np.ndarray) -> "Columns":
        return Columns(self.symbol.take(pa.array(idx, pa.int64())), self.ts[idx],
                       {c: v[idx] for c, v in self.values.items()})

    def __len__(self) -> int:
        return len(self.ts)


def _symbol_ranks(symbol: pa.Array) -> np.ndarray:
    """Per row, the rank of its symbol in string order (Python's, as pandas sorts objects)."""
    enc = pc.dictionary_encode(symbol)
    names = np.asarray(enc.dictionary.to_pylist(), dtype=object)
    rank = np.empty(len(names), np.int64)
    rank[np.argsort(names, kind="stable")] = np.arange(len(names))
    return rank[enc.indices.to_numpy(zero_copy_only=False)]


def _valid(c: Columns) -> np.ndarray:
    """`universe_scan.valid_bars`: sane prices, range and volume, first of a (symbol, ts)."""
    o, h, low, cl, v = (c.values[k] for k in (*PRICES, "volume"))
    with np.errstate(invalid="ignore"):
        ok = (o > 0) & (h > 0) & (low > 0) & (cl > 0) & (v >= 0) & (h >= low)
        ok &= (low <= o) & (o <= h) & (low <= cl) & (cl <= h)
    idx = np.flatnonzero(ok)
    if len(idx):
        codes = pc.dictionary_encode(c.symbol.take(pa.array(idx))).indices.to_numpy(
            zero_copy_only=False).astype(np.int64)
        order = np.lexsort((idx, c.ts[idx], codes))  # by symbol, ts, then file order
        s_codes, s_ts = codes[order], c.ts[idx][order]
        repeat = np.zeros(len(order), bool)
        repeat[1:] = (s_codes[1:] == s_codes[:-1]) & (s_ts[1:] == s_ts[:-1])
        ok[idx[order[repeat]]] = False
    return ok


def _in_order(c: Columns) -> np.ndarray:
    """Row indices in (ts, symbol) order, stable; arange when the rows already are."""
    ranks = _symbol_ranks(c.symbol)
    dt = np.diff(c.ts)
    if (dt >= 0).all() and (np.diff(ranks)[dt == 0] >= 0).all():
        return np.arange(len(c))
    return np.lexsort((ranks, c.ts))


def build_feed(c: Columns, prev: tuple[int, int], ses: tuple[int, int]) -> Columns:
    """The feed: each symbol's last valid bar in `prev` [p0, p1), then every bar in `ses`."""
    (p0, p1), (s0, s1) = prev, ses
    before = c.take(np.flatnonzero((c.ts >= p0) & (c.ts < p1)))
    today = c.take(np.flatnonzero((c.ts >= s0) & (c.ts < s1)))
    seed = np.zeros(0, np.int64)
    ok = np.flatnonzero(_valid(before))
    if len(ok):
        codes = pc.dictionary_encode(before.symbol.take(pa.array(ok))).indices.to_numpy(
            zero_copy_only=False).astype(np.int64)
        order = np.lexsort((before.ts[ok], codes))  # (symbol, ts) unique among valid bars
        last = np.ones(len(order), bool)
        last[:-1] = codes[order][1:] != codes[order][:-1]
        seed = ok[order[last]]
    seeds = before.take(seed)
    seeds = seeds.take(_in_order(seeds))
    today = today.take(_in_order(today))
    if p1 > s0:  # windows that overlap (never for real sessions): one global stable sort
        both = _concat(seeds, today)
        return both.take(_in_order(both))
    return _concat(seeds, today)


def _concat(a: Columns, b: Columns) -> Columns:
    return Columns(pa.concat_arrays([a.symbol, b.symbol]), np.concatenate([a.ts, b.ts]),
                   {k: np.concatenate([a.values[k], b.values[k]]) for k in a.values})


def write_feed(c: Columns, path: Path) -> Path:
    """The runner's Parquet (as `bars.write_bars` writes it; the rows are already in order)."""
    table = pa.table({
        "symbol": c.symbol,
        "timestamp": pa.array(c.ts).cast(_TS),
        **{k: pa.array(c.values[k]) for k in PRICES},
        "volume": pa.array(c.values["volume"].astype(np.int64)),
    })
    pq.write_table(table, path)
    return path
