"""Schedules and sensors evaluated with Dagster's build contexts: a normal day, a holiday
(Thanksgiving 2024-11-28), an early close (2024-11-29, 13:00) and the DST changes of 2024."""

import json
import tempfile
import threading
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler, HTTPServer
from zoneinfo import ZoneInfo

import dagster as dg
import pytest
from dagster._core.test_utils import create_run_for_test
from dagster._utils.schedules import cron_string_iterator

from tests.kit.dagster_env import isolated_resources
from trading_pipeline.definitions import make_definitions
from trading_pipeline.partitions import trading_days
from trading_pipeline.relaunch import RelaunchPolicyResource
from trading_pipeline.resources import AlertsResource, MarketClockResource, TradingStoreResource
from trading_pipeline.schedules import data_retention_schedule, end_of_day_schedule, premarket_prep_schedule
from trading_pipeline.sensors import market_open_sensor, run_failure_alerts

NY = ZoneInfo("America/New_York")
UTC = timezone.utc


def at(text: str, tz=NY) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=tz)


def evaluate(schedule, when: datetime):
    return schedule(dg.build_schedule_context(scheduled_execution_time=when))


def test_partitions_are_sessions_only():
    keys = trading_days().get_partition_keys_in_range(dg.PartitionKeyRange("2024-11-22", "2024-12-02"))
    assert keys == ["2024-11-22", "2024-11-25", "2024-11-26", "2024-11-27", "2024-11-29", "2024-12-02"]
    assert "2024-12-25" not in trading_days().get_partition_keys_in_range(
        dg.PartitionKeyRange("2024-12-20", "2024-12-31"))
    assert trading_days().timezone == "America/New_York"


@pytest.mark.parametrize("schedule", [premarket_prep_schedule, end_of_day_schedule, data_retention_schedule])
def test_every_schedule_skips_a_holiday(schedule):
    for hhmm in ("07:00", "13:30", "16:30", "21:30"):
        result = evaluate(schedule, at(f"2024-11-28T{hhmm}"))
        assert isinstance(result, dg.SkipReason) and "2024-11-28 is not an XNYS session" in result.skip_message


def test_premarket_prep_runs_the_days_partition():
    request = evaluate(premarket_prep_schedule, at("2024-11-26T07:00"))
    assert request.partition_key == "2024-11-26" and request.run_key == "premarket_prep:2024-11-26"


def test_end_of_day_follows_the_close_early_or_not():
    early = "2024-11-29"  # the day after Thanksgiving closes at 13:00
    assert evaluate(end_of_day_schedule, at(f"{early}T13:30")).partition_key == early
    assert isinstance(evaluate(end_of_day_schedule, at(f"{early}T16:30")), dg.SkipReason)
    normal = "2024-11-26"
    skip = evaluate(end_of_day_schedule, at(f"{normal}T13:30"))
    assert isinstance(skip, dg.SkipReason) and "closes at 16:00 ET" in skip.skip_message
    assert evaluate(end_of_day_schedule, at(f"{normal}T16:30")).partition_key == normal


@pytest.mark.parametrize("day, utc_tick", [
    ("2024-03-08", "2024-03-08T21:30"),  # EST: 16:30 ET is 21:30 UTC
    ("2024-03-11", "2024-03-11T20:30"),  # first session after the spring change: EDT, 20:30 UTC
    ("2024-11-01", "2024-11-01T20:30"),
    ("2024-11-04", "2024-11-04T21:30"),  # first session after the autumn change: EST again
])
def test_end_of_day_across_dst_changes(day, utc_tick):
    tick = at(utc_tick, UTC)
    assert evaluate(end_of_day_schedule, tick).partition_key == day
    an_hour_off = tick.replace(hour=tick.hour + 1)  # what a fixed UTC offset would have picked
    assert isinstance(evaluate(end_of_day_schedule, an_hour_off), dg.SkipReason)


def test_cron_ticks_stay_at_07_00_new_york_across_the_spring_change():
    start = at("2024-03-07T12:00").timestamp()
    ticks = cron_string_iterator(start, premarket_prep_schedule.cron_schedule,
                                 premarket_prep_schedule.execution_timezone)
    first = [next(ticks) for _ in range(3)]
    assert [t.astimezone(NY).strftime("%Y-%m-%d %H:%M") for t in first] == [
        "2024-03-08 07:00", "2024-03-11 07:00", "2024-03-12 07:00"]
    assert [t.astimezone(UTC).hour for t in first] == [12, 11, 11]


@pytest.fixture
def instance():
    with dg.instance_for_test() as inst:
        yield inst


def sensor_at(instance, when: str, tz=NY):
    context = dg.build_sensor_context(
        instance=instance, resources={"market_clock": MarketClockResource(now_iso=at(when, tz).isoformat()),
                                      "alerts": AlertsResource(), "relaunch_policy": RelaunchPolicyResource(),
                                      "store": TradingStoreResource(data_dir=tempfile.mkdtemp(prefix="sensor-"))})
    return market_open_sensor(context)


def universe_ready(instance, day: str) -> None:
    instance.report_runless_asset_event(dg.AssetMaterialization(asset_key="premarket_universe", partition=day))


def test_market_open_sensor_waits_for_the_universe_then_requests_one_run(instance):
    skip = sensor_at(instance, "2024-11-26T09:20")
    assert isinstance(skip, dg.SkipReason) and "waiting for premarket_universe 2024-11-26" in skip.skip_message
    universe_ready(instance, "2024-11-26")
    request = sensor_at(instance, "2024-11-26T09:20")
    assert isinstance(request, dg.RunRequest)
    assert request.run_key == "2024-11-26" and request.partition_key == "2024-11-26"
    too_early = sensor_at(instance, "2024-11-26T08:00")
    assert "too early: 2024-11-26 opens at 09:30 ET" in too_early.skip_message


def test_market_open_sensor_never_starts_a_second_live_session(instance):
    universe_ready(instance, "2024-11-26")
    run = create_run_for_test(instance, job_name="live_session", status=dg.DagsterRunStatus.STARTED)
    skip = sensor_at(instance, "2024-11-26T10:00")
    assert isinstance(skip, dg.SkipReason) and run.run_id in skip.skip_message


def test_market_open_sensor_holiday_early_close_and_dst(instance):
    assert "2024-11-28 is not an XNYS session" in sensor_at(instance, "2024-11-28T09:20").skip_message
    universe_ready(instance, "2024-11-29")
    assert isinstance(sensor_at(instance, "2024-11-29T12:30"), dg.RunRequest)
    closed = sensor_at(instance, "2024-11-29T13:05")  # early close at 13:00
    assert "2024-11-29 closed at 13:00 ET" in closed.skip_message
    for day in ("2024-03-08", "2024-03-11"):
        universe_ready(instance, day)
    # 13:20 UTC is 08:20 EST (too early) before the change and 09:20 EDT (go) after it.
    assert "too early" in sensor_at(instance, "2024-03-08T13:20", UTC).skip_message
    assert sensor_at(instance, "2024-03-11T13:20", UTC).run_key == "2024-03-11"


class _Hook(BaseHTTPRequestHandler):
    received: list = []

    def do_POST(self):  # noqa: N802
        body = self.rfile.read(int(self.headers["Content-Length"]))
        _Hook.received.append(json.loads(body))
        self.send_response(200)
        self.end_headers()

    def log_message(self, *args):
        pass


@pytest.fixture
def webhook():
    _Hook.received = []
    server = HTTPServer(("127.0.0.1", 0), _Hook)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/hook", _Hook.received
    server.shutdown()
    server.server_close()


def test_a_failed_live_session_raises_a_critical_alert(instance, tmp_path, webhook, capfd):
    url, received = webhook
    defs = make_definitions(isolated_resources(tmp_path))
    result = defs.resolve_job_def("live_session").execute_in_process(
        instance=instance, partition_key="2024-11-26", raise_on_error=False,
        run_config={"ops": {"run_live_session": {"config": {"mode": "replay"}}}})
    assert not result.success  # no universe for the day
    context = dg.build_run_status_sensor_context(
        sensor_name="run_failure_alerts", dagster_instance=instance,
        dagster_run=instance.get_run_by_id(result.run_id), dagster_event=result.get_run_failure_event(),
        resources={"alerts": AlertsResource(webhook_url=url)}).for_run_failure()
    run_failure_alerts(context)
    [alert] = received
    assert alert["alert"]["severity"] == "critical"
    assert alert["alert"]["key"] == "dagster_run_failed:live_session"
    assert result.run_id in alert["text"] and "(2024-11-26)" in alert["text"]
    # the cause, in the failing step's words, not only "Steps failed"
    assert "step run_live_session: live_session: no premarket_universe for 2024-11-26" in alert["text"]
    assert "materialize premarket_prep for that session first" in alert["text"]
    # the sensor's tick log says what it sent (the tick's logs in the UI)
    err = capfd.readouterr().err
    assert "alert dagster_run_failed:live_session (critical) sent: live_session run" in err, err[-2000:]


def test_a_days_runs_mark_an_early_close():
    early = evaluate(premarket_prep_schedule, at("2024-11-29T07:00"))
    assert early.tags["trading/early_close"] == "13:00 ET"
    assert "trading/early_close" not in evaluate(premarket_prep_schedule, at("2024-11-26T07:00")).tags
