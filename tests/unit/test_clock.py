"""SimClock / LiveClock timers and the timestamp conversion helpers."""

from __future__ import annotations

import asyncio
import time
from datetime import datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given
from hypothesis import strategies as st

from live_runner.core.clock import (
    Clock,
    LiveClock,
    SimClock,
    format_ns,
    from_datetime,
    parse_timestamp,
    to_et,
    to_utc,
)

S = 1_000_000_000
T0 = 1_709_908_200 * S  # 2024-03-08T14:30:00Z
NY = ZoneInfo("America/New_York")


def recorder(log: list, clock: SimClock, label: str):
    return lambda now: log.append((label, now, clock.now_ns()))


# --- SimClock -------------------------------------------------------------------------------------


def test_simclock_satisfies_protocol_and_starts_at_given_time() -> None:
    clock: Clock = SimClock(T0)
    assert clock.now_ns() == T0


def test_timers_fire_in_time_then_insertion_order_with_now_at_timer_time() -> None:
    clock = SimClock(T0)
    log: list = []
    clock.set_timer("c", T0 + 30, recorder(log, clock, "c"))
    clock.set_timer("a", T0 + 10, recorder(log, clock, "a"))
    clock.set_timer("b1", T0 + 20, recorder(log, clock, "b1"))
    clock.set_timer("b2", T0 + 20, recorder(log, clock, "b2"))
    clock.set_timer("late", T0 + 100, recorder(log, clock, "late"))
    clock.advance_to(T0 + 50)
    assert log == [
        ("a", T0 + 10, T0 + 10),
        ("b1", T0 + 20, T0 + 20),
        ("b2", T0 + 20, T0 + 20),
        ("c", T0 + 30, T0 + 30),
    ]
    assert clock.now_ns() == T0 + 50
    assert clock.pending_timers() == {"late": T0 + 100}


def test_timer_due_exactly_at_target_fires() -> None:
    clock = SimClock(T0)
    log: list = []
    clock.set_timer("x", T0 + 5, recorder(log, clock, "x"))
    clock.advance_to(T0 + 4)
    assert log == []
    clock.advance_to(T0 + 5)
    assert log == [("x", T0 + 5, T0 + 5)]


def test_set_timer_replaces_same_name() -> None:
    clock = SimClock(T0)
    log: list = []
    clock.set_timer("flatten", T0 + 10, recorder(log, clock, "old"))
    clock.set_timer("flatten", T0 + 50, recorder(log, clock, "new"))
    clock.advance_to(T0 + 20)
    assert log == []
    clock.advance_to(T0 + 60)
    assert log == [("new", T0 + 50, T0 + 50)]
    clock.advance_to(T0 + 1000)
    assert len(log) == 1  # fired once, not re-fired


def test_replacement_takes_new_insertion_order() -> None:
    clock = SimClock(T0)
    log: list = []
    clock.set_timer("a", T0 + 10, recorder(log, clock, "a"))
    clock.set_timer("b", T0 + 10, recorder(log, clock, "b"))
    clock.set_timer("a", T0 + 10, recorder(log, clock, "a2"))
    clock.advance_to(T0 + 10)
    assert [entry[0] for entry in log] == ["b", "a2"]


def test_cancel_timer_and_cancel_unknown_is_noop() -> None:
    clock = SimClock(T0)
    log: list = []
    clock.set_timer("a", T0 + 10, recorder(log, clock, "a"))
    clock.set_timer("b", T0 + 20, recorder(log, clock, "b"))
    clock.cancel_timer("a")
    clock.cancel_timer("does-not-exist")
    clock.advance_to(T0 + 30)
    assert [entry[0] for entry in log] == ["b"]
    assert clock.pending_timers() == {}


def test_never_goes_backwards() -> None:
    clock = SimClock(T0)
    clock.advance_to(T0 + 10)
    clock.advance_to(T0 + 10)  # same time is fine
    with pytest.raises(ValueError, match="backwards"):
        clock.advance_to(T0 + 9)
    assert clock.now_ns() == T0 + 10
    clock.set_timer("x", T0 + 20, lambda now: None)
    with pytest.raises(ValueError):
        clock.advance_to(T0)


def test_timer_in_the_past_fires_without_moving_time_back() -> None:
    clock = SimClock(T0)
    clock.advance_to(T0 + 100)
    log: list = []
    clock.set_timer("past", T0 + 10, recorder(log, clock, "past"))
    clock.advance_to(T0 + 101)
    assert log == [("past", T0 + 100, T0 + 100)]
    assert clock.now_ns() == T0 + 101


def test_callback_can_schedule_timers_within_the_same_advance() -> None:
    clock = SimClock(T0)
    fired: list[int] = []

    def periodic(now: int) -> None:
        fired.append(now)
        clock.set_timer("tick", now + 10, periodic)

    clock.set_timer("tick", T0 + 10, periodic)
    clock.advance_to(T0 + 45)
    assert fired == [T0 + 10, T0 + 20, T0 + 30, T0 + 40]
    assert clock.pending_timers() == {"tick": T0 + 50}


def test_callback_can_cancel_a_later_due_timer() -> None:
    clock = SimClock(T0)
    log: list = []
    clock.set_timer("first", T0 + 1, lambda now: clock.cancel_timer("second"))
    clock.set_timer("second", T0 + 2, recorder(log, clock, "second"))
    clock.advance_to(T0 + 5)
    assert log == []


def test_nested_advance_is_refused() -> None:
    clock = SimClock(T0)
    clock.set_timer("bad", T0 + 1, lambda now: clock.advance_to(now + 100))
    with pytest.raises(RuntimeError):
        clock.advance_to(T0 + 10)


def test_raising_callback_leaves_later_timers_pending() -> None:
    clock = SimClock(T0)
    log: list = []

    def boom(now: int) -> None:
        raise KeyError("boom")

    clock.set_timer("boom", T0 + 1, boom)
    clock.set_timer("later", T0 + 2, recorder(log, clock, "later"))
    with pytest.raises(KeyError):
        clock.advance_to(T0 + 10)
    assert clock.now_ns() == T0 + 1
    clock.advance_to(T0 + 10)
    assert log == [("later", T0 + 2, T0 + 2)]


def test_rearmed_watchdog_does_not_grow_the_heap() -> None:
    clock = SimClock(T0)
    fired: list[int] = []
    for i in range(10_000):
        clock.advance_to(T0 + i)
        clock.set_timer("stale:AAPL", T0 + i + 60, fired.append)
    assert len(clock._heap) < 200  # stale entries compacted
    assert fired == []
    clock.advance_to(T0 + 20_000)
    assert fired == [T0 + 9_999 + 60]


# --- LiveClock ------------------------------------------------------------------------------------


def test_liveclock_now_is_wall_time() -> None:
    clock: Clock = LiveClock(asyncio.new_event_loop())
    before = time.time_ns()
    now = clock.now_ns()
    assert before <= now <= time.time_ns()


def test_liveclock_timers_fire_replace_and_cancel() -> None:
    async def scenario() -> list[tuple[str, int, int]]:
        clock = LiveClock(asyncio.get_running_loop())
        log: list[tuple[str, int, int]] = []
        start = clock.now_ns()
        due = start + 30_000_000
        clock.set_timer("a", start + 5_000_000, lambda now: log.append(("a-old", now, 0)))
        clock.set_timer("a", due, lambda now: log.append(("a", now, due)))
        clock.set_timer("b", start + 10_000_000, lambda now: log.append(("b", now, 0)))
        clock.cancel_timer("b")
        clock.set_timer("past", start - S, lambda now: log.append(("past", now, 0)))
        await asyncio.sleep(0.1)
        assert clock.pending_timers() == {}
        return log

    log = asyncio.run(scenario())
    assert [entry[0] for entry in log] == ["past", "a"]
    _, fired_at, due = log[1]
    assert fired_at >= due - 1_000_000  # within the 1 ms early tolerance


# --- conversions ----------------------------------------------------------------------------------


def test_to_utc_and_to_et_across_dst() -> None:
    assert to_utc(T0) == datetime(2024, 3, 8, 14, 30, tzinfo=timezone.utc)
    assert to_utc(T0).tzinfo is not None
    before = to_et(T0)  # EST
    after = to_et(T0 + 3 * 86_400 * S - 3600 * S)  # 2024-03-11T13:30Z, EDT
    assert (before.hour, before.minute, before.utcoffset()) == (9, 30, timedelta(hours=-5))
    assert (after.hour, after.minute, after.utcoffset()) == (9, 30, timedelta(hours=-4))
    assert to_utc(T0 + 1_999) == to_utc(T0 + 1_000)  # sub-microsecond floored


def test_from_datetime_requires_aware_and_round_trips() -> None:
    with pytest.raises(ValueError, match="naive"):
        from_datetime(datetime(2024, 3, 8, 9, 30))
    assert from_datetime(datetime(2024, 3, 8, 9, 30, tzinfo=NY)) == T0
    assert from_datetime(to_et(T0 + 123_000)) == T0 + 123_000
    assert from_datetime(datetime(1969, 12, 31, 23, 59, 59, tzinfo=timezone.utc)) == -S


def test_from_datetime_keeps_pandas_nanoseconds() -> None:
    import pandas as pd  # a dependency of the project: a missing pandas is an error, not a skip

    ts = pd.Timestamp(T0 + 123_456_789, unit="ns", tz="UTC")
    assert from_datetime(ts) == T0 + 123_456_789


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2024-03-08T14:30:00Z", T0),
        ("2024-03-08T14:30:00z", T0),
        ("2024-03-08T14:30:00+00:00", T0),
        ("2024-03-08T14:30:00+0000", T0),
        ("2024-03-08 14:30:00Z", T0),
        ("2024-03-08T09:30:00-05:00", T0),
        ("2024-03-08T14:30Z", T0),
        ("  2024-03-08T14:30:00Z\n", T0),
        ("2024-03-08T14:30:00.5Z", T0 + 500_000_000),
        ("2024-03-08T14:30:00.123Z", T0 + 123_000_000),
        ("2024-03-08T14:30:00.123456+00:00", T0 + 123_456_000),
        ("2024-03-08T14:30:00.123456789Z", T0 + 123_456_789),
        ("2024-03-11T09:30:00-04:00", T0 + 3 * 86_400 * S - 3600 * S),
        (str(T0), T0),
        ("0", 0),
        ("-1000", -1000),
    ],
)
def test_parse_timestamp_formats(text: str, expected: int) -> None:
    assert parse_timestamp(text) == expected


@pytest.mark.parametrize(
    "text",
    [
        "2024-03-08T14:30:00",  # naive
        "2024-03-08 09:30",  # naive
        "2024-03-08",  # date only = naive midnight
        "2024-03-08T14:30:00.1234567891Z",  # sub-nanosecond
        "yesterday",
        "",
        "1.5",
    ],
)
def test_parse_timestamp_rejects(text: str) -> None:
    with pytest.raises(ValueError):
        parse_timestamp(text)


def test_format_ns() -> None:
    assert format_ns(T0) == "2024-03-08T14:30:00Z"
    assert format_ns(T0 + 123_000) == "2024-03-08T14:30:00.000123Z"
    assert format_ns(T0 + 500_000_000) == "2024-03-08T14:30:00.500000Z"
    assert format_ns(T0 + 7) == "2024-03-08T14:30:00.000000007Z"
    assert format_ns(0) == "1970-01-01T00:00:00Z"
    assert format_ns(-1) == "1969-12-31T23:59:59.999999999Z"


@given(st.integers(min_value=-(2**62), max_value=2**63 - 1))
def test_format_parse_round_trip(ns: int) -> None:
    assert parse_timestamp(format_ns(ns)) == ns
