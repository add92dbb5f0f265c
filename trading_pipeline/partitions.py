"""Trading-day partitions and session look-ups shared by assets, jobs, schedules and sensors.

Partitions are XNYS sessions only: a weekday cron in America/New_York minus the exchange holidays
(from `live_runner.core.calendar.MarketCalendar`, i.e. exchange_calendars), so a backfill or the UI never
offers a day on which nothing traded. Early closes are sessions like any other; what differs (the
close time) is read from `session_times` by whoever needs it.
"""

from __future__ import annotations

from datetime import date, datetime, time
from functools import lru_cache
from zoneinfo import ZoneInfo

import dagster as dg

from live_runner.core.calendar import MarketCalendar, SessionTimes

NEW_YORK = ZoneInfo("America/New_York")
TZ_NAME = "America/New_York"
PARTITIONS_START = date(2024, 1, 2)
# MarketCalendar's default range ends here: holidays after it cannot be excluded.
CALENDAR_END = date(2030, 12, 31)


@lru_cache(maxsize=1)
def market_calendar() -> MarketCalendar:
    """One XNYS calendar per process (building it costs ~0.5 s the first time)."""
    return MarketCalendar()


@lru_cache(maxsize=1)
def trading_days() -> dg.TimeWindowPartitionsDefinition:
    """Weekday partitions in New York, exchange holidays excluded; today's exists from midnight
    (end_offset=1) so the pre-market prep can materialize the session that is about to open."""
    holidays = market_calendar().holidays(PARTITIONS_START, CALENDAR_END)
    return dg.TimeWindowPartitionsDefinition(
        cron_schedule="0 0 * * 1-5",
        start=PARTITIONS_START.isoformat(),
        fmt="%Y-%m-%d",
        timezone=TZ_NAME,
        end_offset=1,
        exclusions=[datetime.combine(d, time()) for d in holidays],
    )


@lru_cache(maxsize=1)
def early_closes() -> tuple[date, ...]:
    """The early-close sessions (13:00 ET) of the partition range."""
    return tuple(market_calendar().early_closes(PARTITIONS_START, CALENDAR_END))


EARLY_CLOSE_TAG = "trading/early_close"


def day_tags(day: date) -> dict[str, str]:
    """Run tags of a day's runs: an early close is marked (`trading/early_close: 13:00 ET`), so
    the Runs list and a partition's runs say why the session is short."""
    close = session_times(day)
    return {EARLY_CLOSE_TAG: f"{ns_to_ny(close.close):%H:%M} ET"} if close.early_close else {}


def early_close_note() -> str:
    """One sentence listing the early closes, for descriptions of the partitioned assets."""
    days = ", ".join(d.isoformat() for d in early_closes())
    return f"Early closes (13:00 ET; the session ends and is flattened earlier): {days}."


class NotASession(ValueError):
    """A date on which the exchange does not trade (weekend, holiday, closure)."""


def parse_session(text: str) -> date:
    """A partition key / config value as a session date; errors say why it is not one."""
    try:
        day = date.fromisoformat(text)
    except (TypeError, ValueError):
        raise NotASession(f"{text!r} is not a date (expected YYYY-MM-DD)") from None
    cal = market_calendar()
    try:
        ok = cal.is_session(day)
    except ValueError as exc:  # outside the calendar's range
        raise NotASession(str(exc)) from None
    if not ok:
        kind = "a weekend day" if day.weekday() >= 5 else "an exchange holiday"
        raise NotASession(f"{day.isoformat()} is not an XNYS session ({kind})")
    return day


def session_times(day: date) -> SessionTimes:
    return market_calendar().session(day)


def is_session(day: date) -> bool:
    try:
        return market_calendar().is_session(day)
    except ValueError:
        return False


def ns_to_ny(ts_ns: int) -> datetime:
    return datetime.fromtimestamp(ts_ns / 1e9, tz=NEW_YORK)
