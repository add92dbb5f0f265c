"""What the asset catalog says about each asset beyond its code: owner, tags, code version,
freshness expectation, and how its money and tables are typed in metadata.

Code versions are bumped by hand when an asset's logic (not its formatting) changes: Dagster then
marks what was built by the older version as stale. Freshness policies are crons in New York on
weekdays; a cron cannot skip exchange holidays, so on a holiday an asset shows as late until the
next session builds it (the schedules themselves skip holidays: trading_pipeline/schedules.py).
"""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal
from typing import Any

import dagster as dg
import pandas as pd

from trading_pipeline.partitions import TZ_NAME

OWNERS = ["team:trading-desk"]
DOMAIN = {"domain": "intraday-trading"}

# Stage tags: premarket -> session -> end of day, the order of the trading day.
PREMARKET = {**DOMAIN, "stage": "premarket"}
SESSION = {**DOMAIN, "stage": "session"}
END_OF_DAY = {**DOMAIN, "stage": "end-of-day"}

CODE_VERSIONS = {
    "daily_bars": "1", "premarket_universe": "1", "live_session": "2", "intraday_bars": "1",
    "session_journal": "2", "daily_report": "2", "replay_report": "1",
}

# The universe is due before the open (the scan runs at 07:00 ET; 09:15 leaves the open sensor its
# 15-minute lead); the session and the end-of-day assets after the close (16:30 ET run, 13:30 on an
# early close, hence the wide lower bound).
UNIVERSE_FRESHNESS = dg.FreshnessPolicy.cron(
    deadline_cron="15 9 * * 1-5", lower_bound_delta=timedelta(hours=2, minutes=15), timezone=TZ_NAME)
AFTER_CLOSE_FRESHNESS = dg.FreshnessPolicy.cron(
    deadline_cron="30 17 * * 1-5", lower_bound_delta=timedelta(hours=4, minutes=30), timezone=TZ_NAME)


def usd(amount: str | Decimal | float | None) -> dg.MetadataValue:
    """Money as a plottable float (the exact value stays in the stored files); the key says `_usd`."""
    return dg.MetadataValue.float(float(amount)) if amount is not None else dg.MetadataValue.null()


_DTYPES = {"int64": "int", "Int64": "int", "float64": "float", "object": "string", "bool": "bool",
           "category": "string", "string": "string"}


def table_schema(frame: pd.DataFrame, descriptions: dict[str, str] | None = None) -> dg.TableSchema:
    """The frame's columns as a TableSchema (types from the dtypes)."""
    descriptions = descriptions or {}
    return dg.TableSchema(columns=[
        dg.TableColumn(str(c), _DTYPES.get(str(t), str(t)), description=descriptions.get(str(c)))
        for c, t in frame.dtypes.items()])


def table(rows: list[dict[str, Any]], columns: dict[str, str], limit: int = 50) -> dg.MetadataValue:
    """A MetadataValue.table of `rows` (at most `limit`), typed by `columns` (name -> type)."""
    schema = dg.TableSchema(columns=[dg.TableColumn(name, kind) for name, kind in columns.items()])
    records = [dg.TableRecord({k: _cell(r.get(k), columns[k]) for k in columns}) for r in rows[:limit]]
    return dg.MetadataValue.table(records, schema=schema)


def _cell(value: Any, kind: str) -> Any:
    if value is None:
        return None
    if kind == "int":
        return int(value)
    if kind == "float":
        return float(value)
    if kind == "bool":
        return bool(value)
    return str(value)


def tabular(frame: pd.DataFrame, descriptions: dict[str, str] | None = None) -> dict[str, Any]:
    """The standard metadata of a tabular asset: row count and column schema."""
    return {"dagster/row_count": dg.MetadataValue.int(int(len(frame))),
            "dagster/column_schema": table_schema(frame, descriptions)}
