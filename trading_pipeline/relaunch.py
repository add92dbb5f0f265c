"""When a day's live session run failed: relaunch it, wait, or give up (the market_open_sensor).

A live session that dies during the trading day (the runner killed, its pod evicted, the run
worker lost) is relaunched by the sensor with a new run key, `<date>-retry-<n>`, on the same
partition, so the same journal: the runner resumes from it (paced files: deterministic
regeneration; live feeds: continue mode) and its account lease (live_runner/live/lease.py) guarantees
that the relaunch never trades beside a runner that is still alive. Why the sensor and not
Dagster's run retries: the sensor knows the trading hours (after the close nothing is relaunched),
tells a failure from an operator's termination (a canceled run stays down), and alerts each step.

The bound: after `max_relaunches` relaunches the day is given up with one CRITICAL alert. Back-off:
`backoff_s * 2**n` (capped at `backoff_max_s`) on the market clock, from the tick that first saw
the failure. Relaunched runs carry `trading/relaunch=<n>` and `trading/relaunch_of=<run id>`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import dagster as dg
from pydantic import Field

RELAUNCH_TAG = "trading/relaunch"
RELAUNCH_OF_TAG = "trading/relaunch_of"


class RelaunchPolicyResource(dg.ConfigurableResource):
    """How often and how fast a failed live session is relaunched during the trading day."""

    max_relaunches: int = Field(default=3, ge=0, description=(
        "relaunches of a failed live session per day before giving up (one CRITICAL alert)"))
    backoff_s: float = Field(default=30.0, ge=0, description=(
        "wait before the first relaunch, doubled for each further one (market clock)"))
    backoff_max_s: float = Field(default=600.0, ge=0, description="cap of the doubled wait")
    lost_after_s: float = Field(default=90.0, gt=0, description=(
        "a STARTED live session whose runner has not renewed its account lease for this long "
        "(the lease ttl is 10 s) has lost its run worker: it is marked failed and relaunched"))

    def delay(self, relaunches: int) -> timedelta:
        return timedelta(seconds=min(self.backoff_s * 2 ** relaunches, self.backoff_max_s))


@dataclass
class RelaunchCursor:
    """What the sensor remembers between ticks, for one day: when each failed run was first
    seen (the back-off's start) and which alerts were sent (each exactly once)."""

    day: str = ""
    failed_seen: dict[str, str] = field(default_factory=dict)
    alerted: list[str] = field(default_factory=list)

    @classmethod
    def load(cls, text: str | None, day: str) -> "RelaunchCursor":
        try:
            data = json.loads(text) if text else {}
        except ValueError:
            data = {}
        if data.get("day") != day:
            return cls(day=day)
        return cls(day=day, failed_seen=dict(data.get("failed_seen", {})),
                   alerted=list(data.get("alerted", [])))

    def dump(self) -> str:
        return json.dumps({"day": self.day, "failed_seen": self.failed_seen, "alerted": self.alerted},
                          sort_keys=True)


@dataclass(frozen=True)
class Alert:
    key: str
    severity: str
    message: str


@dataclass(frozen=True)
class Decision:
    """A run to request (or None) and why not; an alert to send, at most once (cursor)."""

    request: dg.RunRequest | None
    reason: str
    alert: Alert | None = None


def decide(day: str, runs: list[Any], now: datetime, policy: RelaunchPolicyResource,
           cursor: RelaunchCursor) -> Decision:
    """The day's runs (dagster runs of live_session for the partition, newest first) decide:
    none yet: the first launch; the newest failed: a relaunch once its back-off has passed, or
    give up after the bound; finished or canceled: nothing. `cursor` is updated in place."""
    if not runs:
        return Decision(dg.RunRequest(run_key=day, partition_key=day), f"first launch of {day}")
    last = runs[0]
    status = last.status
    if status == dg.DagsterRunStatus.SUCCESS:
        return Decision(None, f"{day}: the live session finished (run {last.run_id})")
    if status == dg.DagsterRunStatus.CANCELED:
        return Decision(None, f"{day}: run {last.run_id} was canceled (an operator's decision): "
                              f"not relaunched")
    if status != dg.DagsterRunStatus.FAILURE:
        return Decision(None, f"{day}: run {last.run_id} is {status.value}")
    relaunches = sum(1 for r in runs if r.tags.get(RELAUNCH_TAG))
    if relaunches >= policy.max_relaunches:
        key = f"live_session_gave_up:{day}"
        alert = None
        if key not in cursor.alerted:
            cursor.alerted.append(key)
            alert = Alert(key, "critical",
                          f"live session {day} failed {relaunches + 1} times (run {last.run_id}); "
                          f"the bound of {policy.max_relaunches} relaunches is reached: not "
                          f"relaunched again. Positions rest at the broker with their exits; "
                          f"relaunch by hand after checking the account.")
        return Decision(None, f"{day}: gave up after {relaunches} relaunches", alert)
    seen = datetime.fromisoformat(cursor.failed_seen.setdefault(last.run_id, now.isoformat()))
    due = seen + policy.delay(relaunches)
    attempt = relaunches + 1
    if now < due:
        return Decision(None, f"{day}: relaunch {attempt} of {policy.max_relaunches} after "
                              f"{due.isoformat()} (back-off)")
    run_key = f"{day}-retry-{attempt}"
    request = dg.RunRequest(run_key=run_key, partition_key=day,
                            tags={RELAUNCH_TAG: str(attempt), RELAUNCH_OF_TAG: last.run_id})
    alert = None
    if run_key not in cursor.alerted:
        cursor.alerted.append(run_key)
        alert = Alert(f"live_session_relaunched:{day}", "warning",
                      f"live session {day} failed (run {last.run_id}): relaunching ({attempt} of "
                      f"{policy.max_relaunches}, run key {run_key}); it resumes from its journal")
    return Decision(request, f"relaunch {attempt} of {day}", alert)
