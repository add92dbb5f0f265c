"""A STARTED live session whose run worker vanished (a pod evicted, the host lost) is told apart
from one that is alive by its runner's account-lease heartbeat (trading_pipeline/run_liveness.py)."""

from __future__ import annotations

from datetime import date, datetime, timedelta, timezone

import sqlalchemy as sa

from live_runner.live.lease import lease_table
from trading_pipeline.resources import TradingStoreResource
from trading_pipeline.run_liveness import Heartbeat, last_heartbeat, lost_reason

T0 = datetime(2024, 11, 26, 15, 0, tzinfo=timezone.utc)
DAY = date(2024, 11, 26)


def beat(seconds_after_start: float, released: bool = False) -> Heartbeat:
    return Heartbeat(T0 + timedelta(seconds=seconds_after_start), released, "account paper:x, generation 1")


def test_a_runner_that_renews_its_lease_is_alive_however_long_the_run() -> None:
    assert lost_reason(T0, beat(3600), T0 + timedelta(seconds=3610), 90) is None


def test_a_run_is_never_declared_lost_before_it_had_time_to_start_its_runner() -> None:
    assert lost_reason(T0, None, T0 + timedelta(seconds=89), 90) is None
    assert "no runner took the account lease" in lost_reason(T0, None, T0 + timedelta(seconds=91), 90)


def test_a_stale_heartbeat_means_the_run_worker_is_gone() -> None:
    why = lost_reason(T0, beat(100), T0 + timedelta(seconds=100 + 91), 90)
    assert why is not None and "91 s old" in why and "generation 1" in why
    assert lost_reason(T0, beat(100), T0 + timedelta(seconds=100 + 89), 90) is None


def test_a_previous_runners_heartbeat_does_not_vouch_for_a_relaunch() -> None:
    """The day's journal holds the failed run's lease row: older than this run's start."""
    why = lost_reason(T0, beat(-30), T0 + timedelta(seconds=95), 90)
    assert why is not None and "no runner has renewed the lease since" in why


def test_the_heartbeat_is_read_from_the_days_journal(tmp_path) -> None:
    store = TradingStoreResource(data_dir=str(tmp_path))
    assert last_heartbeat(store, DAY) is None  # no journal yet
    url = store.journal_url_for(DAY)
    (tmp_path / "journals").mkdir(exist_ok=True)
    engine = sa.create_engine(url)
    lease_table.metadata.create_all(engine)
    with engine.begin() as c:
        c.execute(lease_table.insert(), [
            {"account": "paper:a", "generation": 1, "host": "h", "pid": 10, "started_at": T0.isoformat(),
             "heartbeat_at": (T0 + timedelta(seconds=5)).isoformat(), "released": True},
            {"account": "paper:b", "generation": 2, "host": "h", "pid": 11, "started_at": T0.isoformat(),
             "heartbeat_at": (T0 + timedelta(seconds=50)).isoformat(), "released": False}])
        c.execute(sa.text("CREATE TABLE journal_events (seq INTEGER)"))
    engine.dispose()
    hb = last_heartbeat(store, DAY)
    assert hb is not None and hb.at == T0 + timedelta(seconds=50) and not hb.released
    assert "generation 2, pid 11" in hb.describe
