"""The verdict behind the data manager's health: a quiet feed is not a dead one.

The client here is a plain record of what a live data client exposes (state, when it changed, when
the last bar came); times are simulated monotonic seconds."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from live_runner.core.clients import FeedState
from live_runner.core.calendar import AFTERHOURS, CLOSED, PREMARKET, REGULAR
from live_runner.live.health import feed_liveness

OVERDUE = 90.0  # one minute bar + the 30 s allowance


@dataclass
class Client:
    state: FeedState = FeedState.LIVE
    state_since: float = 0.0
    last_bar_at: float = 0.0
    name: str = "polygon"
    info: dict[str, Any] = field(default_factory=dict)

    def stats(self) -> dict[str, Any]:
        return self.info


def verdict(client: Client, now: float, phase: str, unlive_since: float | None = None,
            regular_since: float | None = 0.0) -> bool:
    return feed_liveness(client, now, phase, unlive_since=unlive_since, regular_since=regular_since,
                         grace_s=5.0, overdue_s=OVERDUE)[0]


def test_a_minute_feed_is_alive_through_every_second_between_its_bars() -> None:
    for minute in range(10):
        bar_at = 100.0 + 60 * minute
        c = Client(last_bar_at=bar_at)
        assert all(verdict(c, bar_at + s, REGULAR) for s in range(60))


def test_no_bar_for_longer_than_a_bar_interval_plus_the_allowance_is_stale_in_regular_hours() -> None:
    c = Client(last_bar_at=100.0)
    assert verdict(c, 100.0 + OVERDUE, REGULAR)
    alive, why = feed_liveness(c, 100.0 + OVERDUE + 1, REGULAR, unlive_since=None, regular_since=0.0,
                               grace_s=5.0, overdue_s=OVERDUE)
    assert not alive and "no bar for 91 s" in why


def test_outside_regular_hours_quiet_is_normal() -> None:
    c = Client(last_bar_at=100.0)
    for phase in (PREMARKET, AFTERHOURS, CLOSED):
        assert verdict(c, 100.0 + 3600, phase)
    down = Client(FeedState.DISCONNECTED, state_since=10.0)
    assert verdict(down, 5000.0, CLOSED, unlive_since=10.0)  # overnight disconnects do not page


def test_the_open_does_not_count_the_quiet_premarket_against_the_feed() -> None:
    c = Client(last_bar_at=100.0)  # last premarket bar long ago; regular hours began at 3000
    assert verdict(c, 3000.0 + 60, REGULAR, regular_since=3000.0)
    assert not verdict(c, 3000.0 + OVERDUE + 1, REGULAR, regular_since=3000.0)


def test_a_disconnect_is_dead_after_the_reconnect_grace_and_failed_is_dead_at_once() -> None:
    c = Client(FeedState.CONNECTING, state_since=200.0, last_bar_at=150.0)
    assert verdict(c, 204.0, REGULAR, unlive_since=199.0)
    assert not verdict(c, 205.0, REGULAR, unlive_since=199.0)  # down since 199, not since 200
    failed = Client(FeedState.FAILED, info={"state_reason": "authentication failed"})
    alive, why = feed_liveness(failed, 1.0, CLOSED, unlive_since=0.0, regular_since=None, grace_s=5.0,
                               overdue_s=OVERDUE)
    assert not alive and "authentication failed" in why
