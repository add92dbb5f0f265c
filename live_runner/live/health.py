"""Heartbeats and component health, as in the sketch (`get_health` per component, system health).

Beats cost nothing on the hot path: a watchdog on the event loop samples progress counters (bars
processed, journal writes, the loop turning) once a second and beats on the components' behalf.
A component silent for longer than its allowance is unhealthy; the runner is then not ready.
A component that can judge itself (the live feed: connection state and overdue bars; the journal:
a failing writer) `report`s its verdict instead, so a quiet but healthy feed is never called dead.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable

if TYPE_CHECKING:
    from live_runner.core.clients import LiveDataClient

COMPONENTS = ("data_manager", "strategy_engine", "risk_manager", "order_manager",
              "execution_engine", "performance_tracker", "alert_system", "journal", "event_loop")


@dataclass(slots=True)
class _Beat:
    last: float
    detail: str = ""
    running: bool = True
    failing: bool = False  # reported unhealthy (see `report`), whatever the heartbeat age


class HealthMonitor:
    """Last heartbeat per component on a monotonic wall clock (injected for tests)."""

    def __init__(self, allowance_s: dict[str, float] | None = None, default_allowance_s: float = 30.0,
                 monotonic: Callable[[], float] = time.monotonic) -> None:
        self._now = monotonic
        self._default = default_allowance_s
        self._allowance = dict(allowance_s or {})
        start = self._now()
        self._beats: dict[str, _Beat] = {name: _Beat(start) for name in COMPONENTS}

    def beat(self, name: str, detail: str = "") -> None:
        b = self._beats.get(name)
        if b is None:
            self._beats[name] = _Beat(self._now(), detail)
            return
        b.last = self._now()
        b.running = True
        b.failing = False
        if detail:
            b.detail = detail

    def now(self) -> float:
        """The monitor's monotonic clock (seconds), for components that time themselves on it."""
        return self._now()

    def report(self, name: str, healthy: bool, detail: str = "") -> None:
        """A component's own verdict: healthy beats; unhealthy is unhealthy now, not after the
        allowance (the verdict already allows for the component's normal quiet)."""
        if healthy:
            self.beat(name, detail)
            return
        b = self._beats.setdefault(name, _Beat(self._now()))
        b.failing = True
        b.detail = detail

    def set_allowance(self, name: str, seconds: float) -> None:
        self._allowance[name] = seconds

    def mark_stopped(self, name: str, detail: str = "") -> None:
        b = self._beats.setdefault(name, _Beat(self._now()))
        b.running = False
        b.detail = detail

    def age(self, name: str) -> float:
        return self._now() - self._beats[name].last

    def get_health(self, name: str) -> dict[str, object]:
        b = self._beats[name]
        age = self._now() - b.last
        allowance = self._allowance.get(name, self._default)
        return {"component": name, "is_running": b.running, "heartbeat_age_s": round(age, 3),
                "is_healthy": b.running and not b.failing and age <= allowance, "detail": b.detail}

    def system_health(self) -> dict[str, object]:
        components = {name: self.get_health(name) for name in self._beats}
        unhealthy = sorted(n for n, h in components.items() if not h["is_healthy"])
        return {"healthy": not unhealthy, "unhealthy": unhealthy, "components": components}


def feed_liveness(client: "LiveDataClient", now_m: float, phase: str, *, unlive_since: float | None,
                  regular_since: float | None, grace_s: float, overdue_s: float) -> tuple[bool, str]:
    """Is a live data client alive, and why (monotonic seconds throughout)? Quiet is not death:
    alive while connected, or reconnecting for at most `grace_s` while the market is open; in
    regular hours a connected feed is dead only when no bar came for `overdue_s` (one bar interval
    plus an allowance). Outside the session quiet and disconnects are normal; FAILED never is."""
    from live_runner.core.clients import FeedState
    from live_runner.core.calendar import CLOSED, REGULAR

    state = client.state
    if state is FeedState.FAILED:
        return False, f"{client.name} failed: {client.stats().get('state_reason', '')}"
    if phase == CLOSED:
        return True, f"{client.name} {state.value}, market closed"
    if state is not FeedState.LIVE:
        down = now_m - (unlive_since if unlive_since is not None else now_m)
        return down <= grace_s, f"{client.name} {state.value} for {down:.0f} s"
    if phase != REGULAR:
        return True, f"{client.name} live ({phase}: quiet is normal)"
    silent = now_m - max(client.last_bar_at, client.state_since,
                         regular_since if regular_since is not None else now_m)
    if silent > overdue_s:
        return False, f"{client.name} live but no bar for {silent:.0f} s in regular hours"
    return True, f"{client.name} live, last bar {silent:.0f} s ago"
