"""Sensors: launch the live session at the open, and alert on any failed run.

`market_open_sensor` requests one `live_session` run per session: the run key is the session
date (Dagster never launches a key twice), it waits for the day's premarket_universe
materialization, starts from `LEAD` before the open until the close, and skips while another
live session is queued or running. A day's run that failed is relaunched (key
`<date>-retry-<n>`, bounded, with back-off, each step alerted) until the close: see
trading_pipeline/relaunch.py.
"""


import os
import warnings
from datetime import datetime, timedelta, timezone
from typing import Any

import dagster as dg
from dagster._core.storage.tags import SENSOR_NAME_TAG

from trading_pipeline.live_session import live_session
from trading_pipeline.market_assets import premarket_universe
from trading_pipeline.partitions import day_tags, is_session, ns_to_ny, session_times
from trading_pipeline.relaunch import RelaunchCursor, RelaunchPolicyResource, decide
from trading_pipeline.resources import AlertsResource, MarketClockResource, TradingStoreResource
from trading_pipeline.run_liveness import last_heartbeat, lost_reason

# run_failure_sensor passes its (beta) `owners` parameter itself, even when unused.
warnings.filterwarnings("ignore", message=r"Parameter `owners` of initializer `SensorDefinition")
LEAD = timedelta(minutes=15)
# How often the daemon evaluates market_open_sensor: a relaunch follows a failure within one
# interval. Drills and tests shorten it (TRADING_SENSOR_INTERVAL_S).
INTERVAL_S = int(os.environ.get("TRADING_SENSOR_INTERVAL_S") or 30)
IN_PROGRESS = [dg.DagsterRunStatus.NOT_STARTED, dg.DagsterRunStatus.QUEUED,
               dg.DagsterRunStatus.STARTING, dg.DagsterRunStatus.STARTED,
               dg.DagsterRunStatus.CANCELING]


@dg.sensor(job=live_session, minimum_interval_seconds=INTERVAL_S,
           description="Launches one live_session per XNYS session, from 15 minutes before the open "
                       "until the close, once that day's premarket_universe is materialized; one "
                       "run at a time (skips while another live session is queued or running, "
                       "unless its runner's lease heartbeat is gone: then it is marked failed); a "
                       "failed run is relaunched, bounded and with back-off, until the close "
                       "(TRADING_LIVE_MAX_RELAUNCHES, TRADING_LIVE_RELAUNCH_BACKOFF_S, "
                       "TRADING_LIVE_LOST_AFTER_S).")
def market_open_sensor(context: dg.SensorEvaluationContext, market_clock: MarketClockResource,
                       alerts: AlertsResource, relaunch_policy: RelaunchPolicyResource,
                       store: TradingStoreResource):
    now = market_clock.now()
    day = now.date()
    key = day.isoformat()
    if not is_session(day):
        return dg.SkipReason(f"{key} is not an XNYS session")
    session = session_times(day)
    opens, closes = ns_to_ny(session.open), ns_to_ny(session.close)
    if now < opens - LEAD:
        return dg.SkipReason(f"too early: {key} opens at {opens:%H:%M} ET")
    if now >= closes:
        return dg.SkipReason(f"{key} closed at {closes:%H:%M} ET")
    records = context.instance.fetch_materializations(
        dg.AssetRecordsFilter(asset_key=premarket_universe.key, asset_partitions=[key]), limit=1)
    if not records.records:
        return dg.SkipReason(f"waiting for premarket_universe {key}")
    running = context.instance.get_run_records(
        dg.RunsFilter(job_name=live_session.name, statuses=IN_PROGRESS), limit=1)
    if running:
        record = running[0]
        lost = _lost(record, store, relaunch_policy, day)
        if lost is None:
            return dg.SkipReason(f"live session run {record.dagster_run.run_id} is still in progress")
        # Its run worker is gone (see run_liveness.py): fail it; the relaunch logic below takes over.
        run = record.dagster_run
        context.instance.report_run_failed(run, f"the live session's runner is gone: {lost}")
        alerts.send(f"live_session_lost:{key}", "critical",
                    f"live session {key} run {run.run_id} marked failed: {lost}", session=key)
        context.log.warning("marked run %s failed: %s", run.run_id, lost)
    # Only this sensor's runs of the day: a manual run (a replay, a drill) decides nothing here.
    runs = context.instance.get_runs(dg.RunsFilter(
        job_name=live_session.name, tags={"dagster/partition": key, SENSOR_NAME_TAG: "market_open_sensor"}))
    cursor = RelaunchCursor.load(context.cursor, key)
    decision = decide(key, list(runs), now, relaunch_policy, cursor)
    if decision.alert is not None:
        a = decision.alert
        delivered = alerts.send(a.key, a.severity, a.message, session=key)
        context.log.info(f"alert {a.key} ({a.severity}) {'sent' if delivered else 'NOT delivered'}: "
                         f"{a.message}")
    context.update_cursor(cursor.dump())
    if decision.request is None:
        return dg.SkipReason(decision.reason)
    extra = day_tags(day)  # an early close is marked on the run
    return decision.request.with_replaced_attrs(tags={**decision.request.tags, **extra}) if extra \
        else decision.request


def failure_cause(context: dg.RunFailureSensorContext) -> str:
    """What went wrong, in the words of the failing step(s): a dg.Failure's description, else the
    error's message; the run's own failure message when no step failed (a run worker lost)."""
    causes = []
    for event in context.get_step_failure_events():
        data = event.step_failure_data
        user = data.user_failure_data.description if data.user_failure_data else None
        text = user or (data.error.message.strip() if data.error else "") or event.message or ""
        causes.append(f"step {event.step_key}: {text}")
    return "; ".join(causes) or (context.failure_event.message or "no error reported")


def _lost(record: Any, store: TradingStoreResource, policy: RelaunchPolicyResource,
          day: Any) -> str | None:
    """Why a started live session has no runner any more (None: it may well have one)."""
    if record.dagster_run.status != dg.DagsterRunStatus.STARTED or record.start_time is None:
        return None
    started = datetime.fromtimestamp(record.start_time, timezone.utc)
    return lost_reason(started, last_heartbeat(store, day), datetime.now(timezone.utc),
                       policy.lost_after_s)


@dg.run_failure_sensor(name="run_failure_alerts", default_status=dg.DefaultSensorStatus.RUNNING,
                       description="Every failed run becomes an alert carrying the failing step's "
                                   "error (critical for live sessions, else a warning).")
def run_failure_alerts(context: dg.RunFailureSensorContext, alerts: AlertsResource) -> None:
    run = context.dagster_run
    severity = "critical" if run.job_name == live_session.name else "warning"
    partition = run.tags.get("dagster/partition", "")
    message = f"{run.job_name} run {run.run_id} failed" + (f" ({partition})" if partition else "")
    text = f"{message}: {failure_cause(context)}"[:2000]
    key = f"dagster_run_failed:{run.job_name}"
    delivered = alerts.send(key, severity, text, run_id=run.run_id, job=run.job_name, partition=partition)
    context.log.info(f"alert {key} ({severity}) {'sent' if delivered else 'NOT delivered to every sink'}: "
                     f"{text}")


ALL_SENSORS = [market_open_sensor, run_failure_alerts]
