"""A paced bars file (what the deployed `live_session` runs by default) releases one bar a minute:
the minute between two bars is not silence. The health monitor's clock is injected; the test moves
it past the heartbeat allowance while the feed waits for the next bar's time."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Callable

import pytest

from live_runner.live.health import HealthMonitor
from tests.kit.live import ServiceThread, live_config
from tests.kit.sessions import et_ns

pytestmark = pytest.mark.timeout(60)

DAY, MINUTE = "2024-03-15", 60_000_000_000


class FakeMonotonic:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


def wait_until(cond: Callable[[], Any], what: str, timeout: float = 20.0) -> Any:
    deadline = time.monotonic() + timeout
    while not (got := cond()):
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)
    return got


def test_a_paced_minute_feed_is_healthy_between_bars_and_flagged_when_a_bar_is_overdue(tmp_path: Path) -> None:
    clock = FakeMonotonic()
    bars = tmp_path / "bars.csv"  # one bar a minute, 09:30 to 09:39
    bars.write_text("symbol,timestamp,open,high,low,close,volume\n" + "".join(
        f"AAA,{et_ns(DAY, '09:30') + i * MINUTE},10.0,10.1,9.9,10.0,1000\n" for i in range(10)))
    health = HealthMonitor(default_allowance_s=30, monotonic=clock)
    with ServiceThread(tmp_path, live_config(ops={"heartbeat_allowance_s": 30}), bars=bars, speed=1.0,
                       health=health) as svc:
        def data_manager() -> dict[str, Any]:
            return svc.status()["health"]["components"]["data_manager"]

        wait_until(lambda: svc.node.data.bars_processed > 0, "the first bar")
        clock.t += 50  # 50 s into the minute before the next bar: more than the 30 s allowance
        dm = wait_until(lambda: (d := data_manager())["heartbeat_age_s"] == 0 and d, "a watchdog round")
        assert dm["is_healthy"] and svc.get("/ready")[0] == 200
        assert not [a for a in svc.status()["alerts"] if a["key"].startswith("unhealthy:")]
        clock.t += 100  # the next bar is now 90 s overdue (a stuck feed): flagged
        # (the watchdog's next round beats the other components again; the feed stays flagged)
        wait_until(lambda: svc.get("/ready")[1]["reasons"] == ["data_manager unhealthy"], "flagged")
        assert svc.get("/ready")[0] == 503
