"""Is a `live_session` run that Dagster still calls STARTED really alive? Its runner's lease says.

When the whole run worker dies at once (a pod evicted or deleted, the host lost, `kill -9` of the
process tree), nothing may ever mark the run failed: Dagster's run monitoring detects a dead run
worker only with launchers that support it (the Kubernetes launcher does, the local default one
does not), and then only after its poll interval. The run stays STARTED, the sensor waits for it,
and the day is over. The runner's account lease (live_runner/live/lease.py) is the authority on
whether a runner trades: a live runner renews its heartbeat every `lease.heartbeat_s` (2 s) and
stops sending orders when it cannot renew for `lease.ttl_s` (10 s). So a STARTED run whose journal
shows no heartbeat for `lost_after_s`, well past the ttl, has no runner: the sensor reports the
run failed (with the evidence) and relaunches it as any failed session, within the same bound.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timezone

import sqlalchemy as sa

from trading_pipeline.resources import TradingStoreResource


@dataclass(frozen=True)
class Heartbeat:
    """The newest lease row of a session's journal."""

    at: datetime
    released: bool
    describe: str


def last_heartbeat(store: TradingStoreResource, day: date) -> Heartbeat | None:
    """The newest runner lease heartbeat in the day's journal; None when no runner ever held one
    (or the journal does not exist yet)."""
    if not store.journal_exists(day):
        return None
    engine = sa.create_engine(store.journal_url_for(day, create=False), poolclass=sa.pool.NullPool)
    try:
        with engine.connect() as conn:
            if not sa.inspect(conn).has_table("runner_lease"):
                return None
            rows = conn.execute(sa.text(
                "SELECT account, generation, pid, host, heartbeat_at, released FROM runner_lease")).all()
    finally:
        engine.dispose()
    best: Heartbeat | None = None
    for account, generation, pid, host, at, released in rows:
        try:
            when = datetime.fromisoformat(at)
        except (TypeError, ValueError):
            continue
        if when.tzinfo is None:
            when = when.replace(tzinfo=timezone.utc)
        if best is None or when > best.at:
            best = Heartbeat(when, bool(released),
                             f"account {account}, generation {generation}, pid {pid} on {host}")
    return best


def lost_reason(run_started: datetime | None, beat: Heartbeat | None, wall_now: datetime,
                lost_after_s: float) -> str | None:
    """Why a STARTED run has no runner (None while it may still have one). The run must have been
    started for `lost_after_s` too, so a runner still starting up is never declared lost."""
    if run_started is None or (wall_now - run_started).total_seconds() < lost_after_s:
        return None
    if beat is None:
        return (f"no runner took the account lease in the {lost_after_s:.0f} s since the run "
                f"started")
    if beat.at < run_started:
        return (f"the run started {(wall_now - run_started).total_seconds():.0f} s ago and no "
                f"runner has renewed the lease since (last: {beat.describe}, {beat.at.isoformat()})")
    age = (wall_now - beat.at).total_seconds()
    if age < lost_after_s:
        return None
    return (f"the runner's lease heartbeat is {age:.0f} s old (over {lost_after_s:.0f} s; "
            f"{beat.describe}{', released' if beat.released else ''}): its run worker is gone")
