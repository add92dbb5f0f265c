"""The 1-minute bars the price charts are drawn from, and where they are found.

The journal records what the runner did (orders, fills, and a `mark` per bar of a held symbol),
not every bar it saw; the bars themselves are files the pipeline and the runner already keep:

1. `<TRADING_PIPELINE_DIR>/intraday_bars/<day>.parquet`: the session's bars, stored by Dagster's
   `intraday_bars` asset after the close (past sessions);
2. `<TRADING_PIPELINE_DIR>/sessions/<day>/feed.parquet`: the bars file the `live_session` job fed
   the runner (trading_pipeline/live_session.py), present from the session's start;
3. the bars file the runner reports in /status (`bars_file`: `run --bars …`), remembered by the
   dashboard once seen, so the charts stay after the runner went down.
The first that holds bars of the day is used, and for the session being traded only the bars up
to the runner's market time (or the journal's last event) are drawn: a paced file holds bars the
runner has not reached yet. A live data feed (Polygon) keeps no file before the close: the charts
then say so and show the journal's marks only.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import streamlit as st

from live_runner.core.clock import NEW_YORK
from trading_pipeline.bars import read_bars

MINUTE_NS = 60_000_000_000


def candidates(day: str, pipeline_dir: Path, runner_file: str | None) -> list[Path]:
    out = [pipeline_dir / "intraday_bars" / f"{day}.parquet", pipeline_dir / "sessions" / day / "feed.parquet"]
    if runner_file:
        out.append(Path(runner_file))
    return out


def regular_session_ns(day: str) -> tuple[int, int]:
    """09:30-16:00 New York time of `day`, in UTC ns (the candles span the regular session)."""
    start = pd.Timestamp(f"{day} 09:30", tz=NEW_YORK)
    end = pd.Timestamp(f"{day} 16:00", tz=NEW_YORK)
    return start.value, end.value


def session_bars(day: str, symbols: tuple[str, ...], until_ns: int | None, pipeline_dir: Path,
                 runner_file: str | None) -> tuple[pd.DataFrame, str]:
    """The day's regular-session bars of `symbols` up to `until_ns` (exclusive), and the file they
    came from ("" when none holds them)."""
    start, end = regular_session_ns(day)
    if until_ns is not None:
        end = min(end, until_ns)
    for path in candidates(day, pipeline_dir, runner_file):
        if not path.is_file() or not symbols:
            continue
        try:
            frame = _read(str(path), path.stat().st_mtime_ns, start, end, symbols)
        except Exception:  # an unreadable file is skipped: the next source may hold the bars
            continue
        if len(frame):
            return frame, str(path)
    return pd.DataFrame(columns=["symbol", "ts", "open", "high", "low", "close", "volume"]), ""


@st.cache_data(show_spinner=False, max_entries=32)
def _read(path: str, _mtime_ns: int, start: int, end: int, symbols: tuple[str, ...]) -> pd.DataFrame:
    return read_bars(Path(path), start, end, list(symbols)).reset_index(drop=True)
