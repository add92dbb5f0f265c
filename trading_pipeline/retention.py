"""The `data_retention` job: bars, journals and Dagster runs older than `data_retention_days`.

OSS Dagster keeps every run forever, so run records (and their event logs) are deleted here too.
The cutoff is in calendar days before `as_of` (today in New York unless configured); a session on
the cutoff date is kept.
"""


import re
from datetime import date, datetime, time, timedelta

import dagster as dg
from pydantic import Field

from trading_pipeline.partitions import NEW_YORK
from trading_pipeline.resources import MarketDataResource, RunnerResource, TradingStoreResource, resolve

_DAY_FILE = re.compile(r"^bars_(\d{4}-\d{2}-\d{2})\.(parquet|csv)$")


class RetentionConfig(dg.Config):
    as_of: str = Field(default="", description="the day to count back from, YYYY-MM-DD; empty: today in New York")
    days: int | None = Field(default=None, description=(
        "keep this many calendar days before as_of; empty: the runner config's data_retention_days"))


@dg.op
def apply_retention(context: dg.OpExecutionContext, config: RetentionConfig, runner: RunnerResource,
                    store: TradingStoreResource, market_data: MarketDataResource) -> dg.Output[dict]:
    as_of = date.fromisoformat(config.as_of) if config.as_of else datetime.now(NEW_YORK).date()
    days = config.days if config.days is not None else runner.load_config().data_retention_days
    if days < 1:
        raise dg.Failure(f"data_retention: days must be >= 1, got {days}")
    cutoff = as_of - timedelta(days=days)
    removed_files = 0
    root = store.root()
    stored_days = {date.fromisoformat(m.group(0)) for p in root.rglob("*")
                   if (m := re.match(r"\d{4}-\d{2}-\d{2}", p.name))} if root.is_dir() else set()
    for day in sorted(d for d in stored_days if d < cutoff):
        removed_files += len(store.remove_day_files(day))
    bars_dir = resolve(market_data.bars_dir)
    for p in sorted(bars_dir.glob("bars_*")) if bars_dir.is_dir() else []:
        m = _DAY_FILE.match(p.name)
        if m and date.fromisoformat(m.group(1)) < cutoff:
            p.unlink()
            removed_files += 1
    journals = rows = 0
    for day in store.journal_days():
        if day < cutoff:
            rows += store.drop_journal(day)
            journals += 1
    before = datetime.combine(cutoff, time(), tzinfo=NEW_YORK)
    records = context.instance.get_run_records(dg.RunsFilter(
        created_before=before,
        statuses=[dg.DagsterRunStatus.SUCCESS, dg.DagsterRunStatus.FAILURE, dg.DagsterRunStatus.CANCELED]))
    runs = 0
    for record in records:
        if record.dagster_run.run_id != context.run_id:
            context.instance.delete_run(record.dagster_run.run_id)
            runs += 1
    context.log.info(f"retention before {cutoff}: {removed_files} files, {journals} journals "
                     f"({rows} rows), {runs} runs deleted")
    summary = {"cutoff": cutoff.isoformat(), "files": removed_files, "journals": journals,
               "journal_rows": rows, "runs": runs}
    return dg.Output(summary, metadata=summary)


@dg.job(description="Delete bars, journals and Dagster runs older than data_retention_days.")
def data_retention() -> None:
    apply_retention()
