"""The market_open_sensor relaunching a day's failed live session (trading_pipeline/relaunch.py),
evaluated with Dagster's build_sensor_context on a real test instance holding the day's runs, on a
fixed market clock, with the alerts delivered to a real webhook receiver."""

import tempfile

import dagster as dg
import pytest
from dagster._core.test_utils import create_run_for_test

from tests.unit.test_pipeline_schedules import at, universe_ready, webhook  # noqa: F401 (fixture)
from trading_pipeline.relaunch import RELAUNCH_OF_TAG, RELAUNCH_TAG, RelaunchPolicyResource
from trading_pipeline.resources import AlertsResource, MarketClockResource, TradingStoreResource
from trading_pipeline.sensors import market_open_sensor

DAY = "2024-11-26"
FAILURE, SUCCESS, CANCELED = (dg.DagsterRunStatus.FAILURE, dg.DagsterRunStatus.SUCCESS,
                              dg.DagsterRunStatus.CANCELED)


class Sensor:
    """market_open_sensor ticks on one instance, its cursor carried from tick to tick."""

    def __init__(self, instance, hook_url: str, max_relaunches: int = 3) -> None:
        self.instance = instance
        self.url = hook_url
        self.cursor: str | None = None
        self.policy = RelaunchPolicyResource(max_relaunches=max_relaunches, backoff_s=30, backoff_max_s=120)
        self.data_dir = tempfile.mkdtemp(prefix="relaunch-")  # no journal: no runner's heartbeat

    def tick(self, hhmm: str):
        context = dg.build_sensor_context(
            instance=self.instance, cursor=self.cursor,
            resources={"market_clock": MarketClockResource(now_iso=at(f"{DAY}T{hhmm}").isoformat()),
                       "alerts": AlertsResource(webhook_url=self.url), "relaunch_policy": self.policy,
                       "store": TradingStoreResource(data_dir=self.data_dir)})
        result = market_open_sensor(context)
        self.cursor = context.cursor
        return result

    def launched(self, request: dg.RunRequest, status) -> dg.DagsterRun:
        """The daemon's part: the requested run, then its end."""
        tags = {**request.tags, "dagster/partition": DAY, "dagster/run_key": request.run_key,
                "dagster/sensor_name": "market_open_sensor"}
        return create_run_for_test(self.instance, job_name="live_session", status=status, tags=tags)


@pytest.fixture
def instance():
    with dg.instance_for_test() as inst:
        universe_ready(inst, DAY)
        yield inst


def test_a_session_that_dies_mid_day_is_relaunched_after_its_back_off_and_alerted(instance, webhook):
    url, received = webhook
    sensor = Sensor(instance, url)
    first = sensor.launched(sensor.tick("09:20"), FAILURE)  # the runner died at 10:05
    wait = sensor.tick("10:05:00")
    assert isinstance(wait, dg.SkipReason) and "relaunch 1 of 3 after" in wait.skip_message
    assert received == []
    request = sensor.tick("10:05:31")
    assert isinstance(request, dg.RunRequest)
    assert request.run_key == f"{DAY}-retry-1" and request.partition_key == DAY
    assert request.tags == {RELAUNCH_TAG: "1", RELAUNCH_OF_TAG: first.run_id}
    [alert] = received
    assert alert["alert"]["key"] == f"live_session_relaunched:{DAY}" and alert["alert"]["severity"] == "warning"
    assert first.run_id in alert["text"] and f"{DAY}-retry-1" in alert["text"]
    # The relaunch finishes the day: nothing more.
    sensor.launched(request, SUCCESS)
    done = sensor.tick("10:30")
    assert isinstance(done, dg.SkipReason) and "finished" in done.skip_message and len(received) == 1


def test_a_crash_loop_stops_at_the_bound_with_one_critical_alert(instance, webhook):
    url, received = webhook
    sensor = Sensor(instance, url, max_relaunches=2)
    sensor.launched(sensor.tick("09:20"), FAILURE)
    sensor.tick("09:31:00")
    retry1 = sensor.tick("09:31:30")  # 30 s back-off
    assert retry1.run_key == f"{DAY}-retry-1"
    sensor.launched(retry1, FAILURE)
    assert isinstance(sensor.tick("09:32:00"), dg.SkipReason)
    assert isinstance(sensor.tick("09:32:59"), dg.SkipReason)  # the back-off doubled: 60 s
    retry2 = sensor.tick("09:33:00")
    assert retry2.run_key == f"{DAY}-retry-2"
    last = sensor.launched(retry2, FAILURE)
    gave_up = sensor.tick("09:34")
    assert isinstance(gave_up, dg.SkipReason) and "gave up after 2 relaunches" in gave_up.skip_message
    again = sensor.tick("09:40")
    assert isinstance(again, dg.SkipReason)
    critical = [a for a in received if a["alert"]["severity"] == "critical"]
    assert len(critical) == 1 and critical[0]["alert"]["key"] == f"live_session_gave_up:{DAY}"
    assert last.run_id in critical[0]["text"] and "failed 3 times" in critical[0]["text"]
    assert [a["alert"]["key"] for a in received].count(f"live_session_relaunched:{DAY}") == 2


def test_nothing_is_relaunched_after_the_close(instance, webhook):
    url, received = webhook
    sensor = Sensor(instance, url)
    sensor.launched(sensor.tick("09:20"), FAILURE)
    closed = sensor.tick("16:01")
    assert isinstance(closed, dg.SkipReason) and "closed at 16:00 ET" in closed.skip_message
    assert received == []


def test_a_canceled_session_is_an_operators_decision_and_stays_down(instance, webhook):
    url, received = webhook
    sensor = Sensor(instance, url)
    sensor.launched(sensor.tick("09:20"), CANCELED)
    for hhmm in ("10:00", "11:00"):
        skip = sensor.tick(hhmm)
        assert isinstance(skip, dg.SkipReason) and "canceled" in skip.skip_message
    assert received == []


def test_no_relaunch_while_a_run_of_the_day_is_still_in_progress(instance, webhook):
    url, _ = webhook
    sensor = Sensor(instance, url)
    sensor.launched(sensor.tick("09:20"), FAILURE)
    manual = create_run_for_test(instance, job_name="live_session", status=dg.DagsterRunStatus.STARTED,
                                 tags={"dagster/partition": DAY})
    skip = sensor.tick("10:30")
    assert isinstance(skip, dg.SkipReason) and manual.run_id in skip.skip_message


def test_a_manual_run_of_the_day_decides_nothing(instance, webhook):
    """A replay launched by hand for today (finished or failed) neither stands for the day's
    session nor triggers a relaunch: the sensor launches the session as usual."""
    url, received = webhook
    sensor = Sensor(instance, url)
    create_run_for_test(instance, job_name="live_session", status=FAILURE, tags={"dagster/partition": DAY})
    request = sensor.tick("09:20")
    assert isinstance(request, dg.RunRequest) and request.run_key == DAY and received == []
