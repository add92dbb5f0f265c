"""MarketCalendar against known 2015-2024 XNYS facts, DST transitions and phase boundaries."""

from __future__ import annotations

import dataclasses
import time
from datetime import date, datetime

import pytest

from live_runner.core import calendar as calendar_module
from live_runner.core.calendar import MarketCalendar, SessionTimes
from live_runner.core.clock import parse_timestamp, to_et

MIN = 60 * 1_000_000_000


@pytest.fixture(scope="module")
def cal() -> MarketCalendar:
    started = time.perf_counter()
    calendar = MarketCalendar()
    print(f"\nfirst MarketCalendar() construction: {time.perf_counter() - started:.3f} s")
    return calendar


def ts(text: str) -> int:
    return parse_timestamp(text)


def test_second_construction_reuses_loaded_calendar(cal: MarketCalendar) -> None:
    loaded = len(calendar_module._XCALS)
    started = time.perf_counter()
    again = MarketCalendar(premarket_start="07:00", afterhours_end="18:00")
    print(f"\nsecond MarketCalendar() construction: {time.perf_counter() - started:.6f} s")
    assert len(calendar_module._XCALS) == loaded
    st = again.session(date(2024, 3, 8))
    assert st.premarket_open == ts("2024-03-08T12:00:00Z")
    assert st.afterhours_close == ts("2024-03-08T23:00:00Z")
    assert st.open == cal.session(date(2024, 3, 8)).open


def test_christmas_is_not_a_session(cal: MarketCalendar) -> None:
    assert not cal.is_session(date(2024, 12, 25))
    with pytest.raises(ValueError, match="2024-12-25 is not a XNYS session"):
        cal.session(date(2024, 12, 25))


@pytest.mark.parametrize(
    "closed",
    [date(2023, 6, 19), date(2022, 6, 20), date(2024, 3, 29), date(2024, 11, 28), date(2025, 1, 9)],
    ids=["juneteenth-2023", "juneteenth-2022-obs", "good-friday-2024", "thanksgiving", "carter"],
)
def test_closed_days(cal: MarketCalendar, closed: date) -> None:
    assert not cal.is_session(closed)


def test_weekend_and_regular_days(cal: MarketCalendar) -> None:
    assert not cal.is_session(date(2024, 3, 9))
    assert cal.is_session(date(2024, 3, 8))
    assert cal.is_session(date(2021, 6, 18))  # Juneteenth was not yet an NYSE holiday in 2021


def test_day_after_thanksgiving_closes_early(cal: MarketCalendar) -> None:
    st = cal.session(date(2024, 11, 29))
    assert st.early_close
    assert st.close == ts("2024-11-29T18:00:00Z") == st.at_et(13, 0)
    assert st.open == ts("2024-11-29T14:30:00Z")
    assert st.prev_date == date(2024, 11, 27)


def test_july_3rd_closes_early_in_edt(cal: MarketCalendar) -> None:
    st = cal.session(date(2024, 7, 3))
    assert st.early_close
    assert st.close == ts("2024-07-03T17:00:00Z") == st.at_et(13, 0)
    assert st.afterhours_close == ts("2024-07-04T00:00:00Z")


def test_regular_day_is_not_early(cal: MarketCalendar) -> None:
    st = cal.session(date(2024, 7, 2))
    assert not st.early_close
    assert st.close == st.at_et(16, 0)


@pytest.mark.parametrize(
    ("day", "open_utc", "close_utc", "pre_utc", "post_utc"),
    [
        (date(2024, 3, 8), "14:30", "21:00", "09:00", "01:00"),  # EST, Friday before spring-forward
        (date(2024, 3, 11), "13:30", "20:00", "08:00", "00:00"),  # EDT
        (date(2024, 11, 1), "13:30", "20:00", "08:00", "00:00"),  # EDT, Friday before fall-back
        (date(2024, 11, 4), "14:30", "21:00", "09:00", "01:00"),  # EST
    ],
)
def test_session_times_across_dst(
    cal: MarketCalendar, day: date, open_utc: str, close_utc: str, pre_utc: str, post_utc: str
) -> None:
    st = cal.session(day)
    iso = day.isoformat()
    next_iso = date.fromordinal(day.toordinal() + 1).isoformat()
    assert st.open == ts(f"{iso}T{open_utc}:00Z")
    assert st.close == ts(f"{iso}T{close_utc}:00Z")
    assert st.premarket_open == ts(f"{iso}T{pre_utc}:00Z")
    assert st.afterhours_close == ts(f"{next_iso}T{post_utc}:00Z")
    assert (to_et(st.open).hour, to_et(st.open).minute) == (9, 30)


def test_at_et_across_dst(cal: MarketCalendar) -> None:
    assert cal.session(date(2024, 3, 8)).at_et(15, 55) == ts("2024-03-08T20:55:00Z")
    assert cal.session(date(2024, 3, 11)).at_et(15, 55) == ts("2024-03-11T19:55:00Z")
    assert cal.session(date(2024, 11, 1)).at_et(15, 55) == ts("2024-11-01T19:55:00Z")
    assert cal.session(date(2024, 11, 4)).at_et(15, 55) == ts("2024-11-04T20:55:00Z")
    st = cal.session(date(2024, 3, 8))
    assert st.at_et(9, 30) == st.open
    wall = to_et(cal.session(date(2024, 11, 4)).at_et(11, 7))
    assert (wall.date(), wall.hour, wall.minute) == (date(2024, 11, 4), 11, 7)


def test_previous_and_next_session(cal: MarketCalendar) -> None:
    assert cal.previous_session(date(2024, 3, 11)) == date(2024, 3, 8)  # over a weekend
    assert cal.previous_session(date(2024, 12, 26)) == date(2024, 12, 24)  # over Christmas
    assert cal.previous_session(date(2024, 4, 1)) == date(2024, 3, 28)  # weekend + Good Friday
    assert cal.previous_session(date(2024, 3, 9)) == date(2024, 3, 8)  # from a Saturday
    assert cal.next_session(date(2024, 3, 28)) == date(2024, 4, 1)
    assert cal.next_session(date(2024, 12, 24)) == date(2024, 12, 26)
    assert cal.next_session(date(2024, 3, 9)) == date(2024, 3, 11)
    assert cal.session(date(2024, 4, 1)).prev_date == date(2024, 3, 28)
    # the first session of the range still knows its predecessor (2015-01-01 is a holiday)
    assert cal.previous_session(date(2015, 1, 2)) == date(2014, 12, 31)
    assert cal.session(date(2015, 1, 2)).prev_date == date(2014, 12, 31)


def test_ranges(cal: MarketCalendar) -> None:
    assert cal.sessions_in_range(date(2024, 3, 25), date(2024, 4, 1)) == [
        date(2024, 3, 25),
        date(2024, 3, 26),
        date(2024, 3, 27),
        date(2024, 3, 28),
        date(2024, 4, 1),
    ]
    assert cal.sessions_in_range(date(2024, 3, 29), date(2024, 3, 31)) == []
    assert cal.holidays(date(2024, 1, 1), date(2024, 12, 31)) == [
        date(2024, 1, 1),
        date(2024, 1, 15),
        date(2024, 2, 19),
        date(2024, 3, 29),
        date(2024, 5, 27),
        date(2024, 6, 19),
        date(2024, 7, 4),
        date(2024, 9, 2),
        date(2024, 11, 28),
        date(2024, 12, 25),
    ]
    assert cal.early_closes(date(2024, 1, 1), date(2024, 12, 31)) == [
        date(2024, 7, 3),
        date(2024, 11, 29),
        date(2024, 12, 24),
    ]
    assert len(cal.sessions_in_range(date(2024, 1, 1), date(2024, 12, 31))) == 252


def test_phase_at_boundaries(cal: MarketCalendar) -> None:
    st = cal.session(date(2024, 3, 11))
    assert st.phase(st.premarket_open - 1) == "closed"
    assert st.phase(st.premarket_open) == "premarket"
    assert st.phase(st.open - 1) == "premarket"
    assert st.phase(st.open) == "regular"
    assert st.phase(st.close - 1) == "regular"
    assert st.phase(st.close) == "afterhours"
    assert st.phase(st.afterhours_close - 1) == "afterhours"
    assert st.phase(st.afterhours_close) == "closed"
    early = cal.session(date(2024, 11, 29))
    assert early.phase(early.at_et(12, 59)) == "regular"
    assert early.phase(early.at_et(13, 0)) == "afterhours"


def test_session_for_ts(cal: MarketCalendar) -> None:
    premarket = ts("2024-03-11T08:00:00-04:00")
    st = cal.session_for_ts(premarket)
    assert st is not None and st.date == date(2024, 3, 11)
    assert st.phase(premarket) == "premarket"
    assert cal.session_for_ts(premarket + MIN) is st  # cached, same object
    assert cal.session_for_ts(ts("2024-03-11T03:59:00-04:00")) is None
    assert cal.session_for_ts(ts("2024-03-11T20:00:00-04:00")) is None
    assert cal.session_for_ts(ts("2024-03-11T19:59:00-04:00")) is st
    assert cal.session_for_ts(ts("2024-03-09T12:00:00Z")) is None  # Saturday
    assert cal.session_for_ts(ts("2024-12-25T15:00:00Z")) is None  # holiday
    # 22:00 ET on Friday is Saturday in UTC, but belongs to no session either way
    assert cal.session_for_ts(ts("2024-03-09T02:30:00Z")) is None
    assert cal.session_for_ts(ts("2024-03-09T00:30:00Z")).date == date(2024, 3, 8)


def test_session_for_ts_matches_reference_over_dst_weeks(cal: MarketCalendar) -> None:
    def reference(t: int) -> date | None:
        d = cal.session_date_for_ts(t)
        if not cal.is_session(d):
            return None
        st = cal.session(d)
        return d if st.premarket_open <= t < st.afterhours_close else None

    for start in ("2024-03-07T00:00:00Z", "2024-10-31T00:00:00Z", "2024-11-26T00:00:00Z"):
        t = ts(start)
        for _ in range(7 * 24 * 4):  # every 15 minutes for a week
            got = cal.session_for_ts(t)
            assert (got.date if got else None) == reference(t), t
            t += 15 * MIN


def test_session_date_for_ts_uses_new_york_date(cal: MarketCalendar) -> None:
    assert cal.session_date_for_ts(ts("2024-03-09T03:00:00Z")) == date(2024, 3, 8)
    assert cal.session_date_for_ts(ts("2024-03-09T05:00:00Z")) == date(2024, 3, 9)


def test_session_times_are_cached_and_frozen(cal: MarketCalendar) -> None:
    st = cal.session(date(2024, 3, 8))
    assert cal.session(date(2024, 3, 8)) is st
    assert isinstance(st, SessionTimes)
    with pytest.raises(dataclasses.FrozenInstanceError):
        st.open = 0  # type: ignore[misc]


def test_out_of_range_and_bad_input(cal: MarketCalendar) -> None:
    with pytest.raises(ValueError, match="outside"):
        cal.is_session(date(2031, 1, 2))
    with pytest.raises(ValueError, match="outside"):
        cal.session(date(2014, 12, 31))
    with pytest.raises(ValueError, match="outside"):
        cal.session_for_ts(ts("2040-01-02T15:00:00Z"))
    with pytest.raises(TypeError):
        cal.is_session(datetime(2024, 3, 8, 12, 0))  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        MarketCalendar(premarket_start="10:00")
    with pytest.raises(ValueError):
        MarketCalendar(afterhours_end="8pm")
    with pytest.raises(ValueError):
        MarketCalendar(start=date(2024, 2, 1), end=date(2024, 1, 1))


def test_covering_widens_to_the_data_in_whole_years() -> None:
    """A replay's calendar covers its file: the default range for 2015-2030 data (one cache key),
    whole years around older or later dates, so every session exchange_calendars knows replays."""
    from live_runner.core.calendar import DEFAULT_END, DEFAULT_START

    inside = MarketCalendar.covering(date(2024, 3, 1), date(2024, 3, 8))
    assert (inside.start, inside.end) == (DEFAULT_START, DEFAULT_END)
    old = MarketCalendar.covering(date(2013, 10, 4), date(2024, 3, 8))
    assert (old.start, old.end) == (date(2013, 1, 1), DEFAULT_END)
    st = old.session(date(2013, 10, 4))
    assert (st.open, st.close) == (ts("2013-10-04T13:30:00Z"), ts("2013-10-04T20:00:00Z"))
    assert st.prev_date == date(2013, 10, 3)
    late = MarketCalendar.covering(date(2024, 1, 2), date(2031, 1, 2))
    assert late.end == date(2031, 12, 31) and late.is_session(date(2031, 1, 2))


def test_out_of_range_is_a_calendar_range_error_naming_the_date(cal: MarketCalendar) -> None:
    from live_runner.core.calendar import CalendarRangeError

    with pytest.raises(CalendarRangeError, match="2014-12-31") as info:
        cal.session(date(2014, 12, 31))
    assert info.value.date == date(2014, 12, 31) and isinstance(info.value, ValueError)
    with pytest.raises(CalendarRangeError, match="2262-04-10") as info:
        MarketCalendar.covering(date(2024, 1, 2), date(2262, 4, 10))
    assert info.value.date == date(2262, 4, 10)
