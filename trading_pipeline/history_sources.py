"""Where a backtest's bars come from, fetched once per session and kept as a runner feed file.

A backtest of session D feeds the runner what a live session gets (`MarketDataResource.
session_bars`): each symbol's last regular-session bar of the previous session (the runner takes
previous closes from the bars it is fed) and the whole of D, premarket to after-hours. Sources:

- `market_data`  the market-data resource (replay files; the synthetic market for demos)
- `files`        local Parquet/CSV: a file per session (`<path>/YYYY-MM-DD.parquet|csv[.gz]` or
                 `bars_YYYY-MM-DD.*`) or a partitioned dataset (`<path>/date=YYYY-MM-DD/*.parquet`)
- `polygon_rest` Polygon REST minute aggregates of `symbols` (live_runner's Polygon adapter)
- `polygon_flat` Polygon flat files, `us_stocks_sip/minute_aggs_v1/YYYY/MM/YYYY-MM-DD.csv.gz`
                 under a local folder, an HTTP(S) base URL, or `s3://<bucket>` on an S3 endpoint
                 (Polygon's: `https://files.polygon.io`, bucket `flatfiles`; keys from the
                 environment only); downloads are kept on disk

The feed of a session is written once under `cache_dir/<source id>/` (Parquet in the runner's
format, so the replay reads it on its fast path) and reused by every parameter set and re-run.
A session the source has no bars for fails with `NoHistory`, naming the day and the source.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
import urllib.error
import urllib.request
from datetime import date
from pathlib import Path
from typing import Any

import dagster as dg
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pcsv
from pydantic import Field

from trading_pipeline.bars import frame_of, read_bars
from trading_pipeline.feed_build import Columns, build_feed, write_feed
from trading_pipeline.partitions import market_calendar
from trading_pipeline.resources import resolve

SOURCES = ("market_data", "files", "polygon_rest", "polygon_flat")
FLAT_PREFIX = "us_stocks_sip/minute_aggs_v1"
FLAT_COLUMNS = ["ticker", "volume", "open", "close", "high", "low", "window_start", "transactions"]
S3_ENDPOINT = "https://files.polygon.io"


class NoHistory(FileNotFoundError):
    """No bars for a session in a source; the message names both."""

    def __init__(self, day: date, source: str, detail: str = "") -> None:
        self.day, self.source = day, source
        super().__init__(f"no bars for the {day.isoformat()} session in {source}"
                         + (f": {detail}" if detail else ""))


def _windows(day: date) -> tuple[tuple[int, int], tuple[int, int]]:
    """(previous session's regular hours, the session premarket to after-hours) in UTC ns."""
    cal = market_calendar()
    ses = cal.session(day)
    prev = cal.session(ses.prev_date)
    return (prev.open, prev.close), (ses.premarket_open, ses.afterhours_close)


def feed_frame(frame: pd.DataFrame, day: date) -> pd.DataFrame:
    """The runner's feed for `day` out of bars covering (at least) the previous session's regular
    hours and `day`: one seed bar per symbol (its last valid previous-session bar) plus `day`.
    The readable definition; `feed_build.build_feed` builds the same file faster, and is what
    `session_feed` runs (a test holds the two to the same bytes)."""
    from trading_pipeline.universe_scan import valid_bars

    (p0, p1), (s0, s1) = _windows(day)
    ts = frame["ts"].to_numpy(np.int64)
    before = frame.loc[(ts >= p0) & (ts < p1)]
    today = frame.loc[(ts >= s0) & (ts < s1)]
    before = before.loc[valid_bars(before)].sort_values(["symbol", "ts"], kind="stable")
    seed = before.groupby("symbol", sort=True, observed=True).tail(1)
    out = pd.concat([seed, today], ignore_index=True)
    return out.sort_values(["ts", "symbol"], kind="stable").reset_index(drop=True)


class HistoryResource(dg.ConfigurableResource):
    """Bars of past sessions for backtests (see the module doc for the sources)."""

    source: str = Field(default="market_data", description=" | ".join(SOURCES))
    path: str = Field(default="", description="files: folder; polygon_flat: folder, http(s) URL "
                                               "or s3://<bucket>")
    cache_dir: str = Field(default="var/history", description="feeds (and flat-file downloads)")
    symbols: list[str] | None = Field(default=None, description="only these (polygon_rest: required)")
    api_key: str | None = Field(default=None, description="polygon_rest key (EnvVar only)")
    rest_base_url: str | None = Field(default=None, description="Polygon REST endpoint")
    s3_endpoint_url: str | None = Field(
        default=None, description=f"polygon_flat s3:// endpoint (default {S3_ENDPOINT}); keys from "
                                  "TRADING_POLYGON_S3_ACCESS_KEY_ID/_SECRET_ACCESS_KEY or AWS_*")

    def describe(self) -> str:
        where = f" {self.path}" if self.path else ""
        return f"history source {self.source}{where}"

    def source_id(self) -> str:
        """Folder name of this source's feeds: changing where bars come from never reuses them."""
        parts: list[Any] = [self.source, self.path, sorted(self.symbols or []), self.rest_base_url]
        if self.path.startswith("s3://"):  # (only then: the ids of the other sources stay as they were)
            parts.append(self.s3_endpoint_url or S3_ENDPOINT)
        key = json.dumps(parts)
        return f"{self.source}-{hashlib.sha1(key.encode()).hexdigest()[:10]}"

    def feed_path(self, day: date) -> Path:
        return resolve(self.cache_dir) / self.source_id() / f"feed_{day.isoformat()}.parquet"

    def session_feed(self, day: date, market_data: Any = None) -> tuple[Path, bool]:
        """(the session's feed file, fetched now?): from the cache when it is there."""
        path = self.feed_path(day)
        if path.exists():
            return path, False
        prev, ses = _windows(day)
        bars = self._files_columns(day) if self.source == "files" else None
        if bars is None:
            bars = Columns.of_frame(self.fetch(day, market_data))
        if self.symbols:
            bars = bars.take(np.flatnonzero(pc.is_in(bars.symbol, pa.array(self.symbols, pa.string()))
                                            .to_numpy(zero_copy_only=False)))
        if not ((bars.ts >= ses[0]) & (bars.ts < ses[1])).any():
            raise NoHistory(day, self.describe())
        path.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=path.parent) as tmp:  # atomic: runs may race
            written = write_feed(build_feed(bars, prev, ses), Path(tmp) / path.name)
            os.replace(written, path)
        return path, True

    def fetch(self, day: date, market_data: Any = None) -> pd.DataFrame:
        """Bars covering the previous session's regular hours and `day` (a feed is cut from it)."""
        if self.source == "market_data":
            if market_data is None:
                raise ValueError("history source market_data needs the market_data resource")
            try:
                return market_data.session_bars(day, self.symbols)
            except (FileNotFoundError, ValueError) as exc:
                raise NoHistory(day, f"market data provider {market_data.provider}", str(exc)) from None
        if self.source == "files":
            return self._files(day)
        if self.source == "polygon_rest":
            return self._polygon_rest(day)
        if self.source == "polygon_flat":
            return self._polygon_flat(day)
        raise ValueError(f"history source {self.source!r} is unknown ({', '.join(SOURCES)})")

    # --- local files -------------------------------------------------------------------------
    def _root(self) -> Path:
        if not self.path:
            raise ValueError(f"history source {self.source} needs `path`")
        return resolve(self.path)

    def _day_files(self, day: date) -> list[Path]:
        root, key = self._root(), day.isoformat()
        named = [root / f"{stem}{ext}" for stem in (key, f"bars_{key}")
                 for ext in (".parquet", ".csv", ".csv.gz")]
        found = [p for p in named if p.exists()]
        part = root / f"date={key}"
        if part.is_dir():
            found += sorted(p for p in part.iterdir() if p.suffix in (".parquet", ".csv"))
        return found

    def _files_paths(self, day: date) -> list[Path]:
        prev = market_calendar().session(day).prev_date
        mine = self._day_files(day)
        if not mine:
            raise NoHistory(day, self.describe(), f"no file for {day.isoformat()} in {self._root()}")
        return list(dict.fromkeys(self._day_files(prev) + mine))

    def _files(self, day: date) -> pd.DataFrame:
        (p0, _), (_, s1) = _windows(day)
        return pd.concat([read_bars(p, p0, s1) for p in self._files_paths(day)], ignore_index=True)

    def _files_columns(self, day: date) -> Columns | None:
        """Parquet files straight into columns (None: CSV or untyped stamps, read as frames)."""
        paths = self._files_paths(day)
        if any(p.suffix != ".parquet" for p in paths):
            return None
        (p0, _), (_, s1) = _windows(day)
        return Columns.of_parquet(paths, p0, s1)

    # --- Polygon REST ------------------------------------------------------------------------
    def _polygon_rest(self, day: date) -> pd.DataFrame:
        from live_runner.adapters.polygon import PolygonDataClient, api_key_from_env
        from live_runner.core.config import parse_config

        if not self.symbols:
            raise ValueError("history source polygon_rest needs `symbols` (REST is per ticker)")
        env = dict(os.environ, **({"POLYGON_API_KEY": self.api_key} if self.api_key else {}))
        key = api_key_from_env(env)
        if not key:
            raise ValueError("history source polygon_rest needs POLYGON_API_KEY (or api_key)")
        cfg = parse_config({"polygon": {"rest_base_url": self.rest_base_url}}).polygon
        (p0, _), (_, s1) = _windows(day)
        bars = PolygonDataClient(cfg, key).rest.minute_bars_many(sorted(set(self.symbols)), p0, s1)
        return frame_of(bars)

    # --- Polygon flat files ------------------------------------------------------------------
    def flat_file(self, day: date) -> Path | None:
        """The day's minute-aggregate file: local, or downloaded once into the cache."""
        rel = f"{FLAT_PREFIX}/{day:%Y}/{day:%m}/{day.isoformat()}.csv.gz"
        if not self.path.startswith(("http://", "https://", "s3://")):
            p = self._root() / rel
            return p if p.exists() else None
        local = resolve(self.cache_dir) / "flatfiles" / rel
        if local.exists():
            return local
        if self.path.startswith("s3://"):
            return self._s3_download(day, rel, local)
        url = f"{self.path.rstrip('/')}/{rel}"
        try:
            with urllib.request.urlopen(url, timeout=60) as resp:
                data = resp.read()
        except urllib.error.HTTPError as exc:
            if exc.code in (403, 404):  # S3 answers 403 for a missing key without list rights
                return None
            raise
        local.parent.mkdir(parents=True, exist_ok=True)
        tmp = local.with_suffix(".part")
        tmp.write_bytes(data)
        tmp.replace(local)
        return local

    def _s3_download(self, day: date, key: str, local: Path) -> Path | None:
        """`key` of the s3:// bucket into `local` (None: no such key, i.e. no data that day)."""
        from trading_pipeline.s3_flat_files import download

        bucket = self.path[len("s3://"):].strip("/")
        if not bucket or "/" in bucket:
            raise ValueError(f"history source polygon_flat: path {self.path!r} is not s3://<bucket>")
        return download(bucket, key, local, endpoint_url=self.s3_endpoint_url or S3_ENDPOINT,
                        what=f"the {day.isoformat()} session in {self.describe()}")

    def _polygon_flat(self, day: date) -> pd.DataFrame:
        prev = market_calendar().session(day).prev_date
        mine = self.flat_file(day)
        if mine is None:
            raise NoHistory(day, self.describe(), f"no {FLAT_PREFIX} file for {day.isoformat()}")
        before = self.flat_file(prev)
        return pd.concat([read_flat_file(p, self.symbols) for p in (before, mine) if p is not None],
                         ignore_index=True)


def read_flat_file(path: Path, symbols: list[str] | None = None) -> pd.DataFrame:
    """A Polygon minute-aggregate CSV(.gz) as a bar frame; a missing column is named."""
    table = pcsv.read_csv(path, convert_options=pcsv.ConvertOptions(column_types={
        "ticker": pa.string(), "window_start": pa.int64(), **{c: pa.float64() for c in
                                                              ("volume", "open", "close", "high", "low")}}))
    missing = [c for c in FLAT_COLUMNS[:7] if c not in table.column_names]
    if missing:
        raise ValueError(f"{path}: not a Polygon minute-aggregate file (missing column {missing[0]!r})")
    frame = pd.DataFrame({"symbol": table.column("ticker").to_pandas().astype(object),
                          "ts": table.column("window_start").to_numpy(),
                          **{c: table.column(c).to_numpy() for c in ("open", "high", "low", "close",
                                                                      "volume")}})
    if symbols:
        frame = frame.loc[frame["symbol"].isin(symbols)].reset_index(drop=True)
    return frame
