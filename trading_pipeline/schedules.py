"""Schedules of the session lifecycle, in New York time, skipping days the exchange is closed.

Cron handles the clock (and DST, through execution_timezone); the exchange calendar decides
whether a tick is a session. End of day runs 30 minutes after the close: the cron fires at 13:30
and 16:30 and each tick checks whether it is the one following today's close (early closes end
at 13:00).
"""


from datetime import datetime, timedelta

import dagster as dg

from trading_pipeline.jobs import end_of_day, premarket_prep
from trading_pipeline.partitions import (
    NEW_YORK, TZ_NAME, day_tags, is_session, ns_to_ny, session_times,
)
from trading_pipeline.retention import data_retention

AFTER_CLOSE = timedelta(minutes=30)


def _et(context: dg.ScheduleEvaluationContext) -> datetime:
    return context.scheduled_execution_time.astimezone(NEW_YORK)


@dg.schedule(job=premarket_prep, cron_schedule="0 7 * * 1-5", execution_timezone=TZ_NAME,
             description="07:00 ET on sessions: previous closes and the gap scan.")
def premarket_prep_schedule(context: dg.ScheduleEvaluationContext):
    day = _et(context).date()
    if not is_session(day):
        return dg.SkipReason(f"{day.isoformat()} is not an XNYS session")
    return dg.RunRequest(run_key=f"premarket_prep:{day}", partition_key=day.isoformat(),
                         tags=day_tags(day))


@dg.schedule(job=end_of_day, cron_schedule=["30 13 * * 1-5", "30 16 * * 1-5"],
             execution_timezone=TZ_NAME,
             description="30 minutes after the close (13:30 ET on early-close days, else 16:30).")
def end_of_day_schedule(context: dg.ScheduleEvaluationContext):
    now = _et(context)
    day = now.date()
    if not is_session(day):
        return dg.SkipReason(f"{day.isoformat()} is not an XNYS session")
    close = ns_to_ny(session_times(day).close)
    if not close + AFTER_CLOSE <= now < close + AFTER_CLOSE + timedelta(hours=1):
        return dg.SkipReason(f"{day.isoformat()} closes at {close:%H:%M} ET; not this tick")
    return dg.RunRequest(run_key=f"end_of_day:{day}", partition_key=day.isoformat(),
                         tags=day_tags(day))


@dg.schedule(job=data_retention, cron_schedule="30 21 * * 1-5", execution_timezone=TZ_NAME,
             description="Nightly (21:30 ET on sessions): delete what is older than the retention.")
def data_retention_schedule(context: dg.ScheduleEvaluationContext):
    day = _et(context).date()
    if not is_session(day):
        return dg.SkipReason(f"{day.isoformat()} is not an XNYS session")
    return dg.RunRequest(run_key=f"data_retention:{day}",
                         run_config={"ops": {"apply_retention": {"config": {"as_of": day.isoformat()}}}})


ALL_SCHEDULES = [premarket_prep_schedule, end_of_day_schedule, data_retention_schedule]
