"""Clocks and timestamp conversions.

Every component asks an injected `Clock` for the time and schedules timers on it, so a replay
driven by `SimClock` is deterministic and runs as fast as the CPU allows, while `LiveClock` uses the
wall clock and the asyncio loop. `LiveClock` is the only place allowed to read the wall clock.

Timestamps are int nanoseconds since the epoch, UTC (see `live_runner.core.models`); the helpers below
convert to tz-aware datetimes and ISO text only at the edges.
"""

from __future__ import annotations

import asyncio
import heapq
import re
import time
from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from typing import Protocol
from zoneinfo import ZoneInfo

UTC = timezone.utc
NEW_YORK = ZoneInfo("America/New_York")
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_NS = 1_000_000_000
_NEVER = 2**63 - 1  # "no timer pending": larger than any int64 timestamp

TimerCallback = Callable[[int], None]
# The most CPU time a loop of synchronous work (a paced file behind schedule, a live burst) runs
# between two awaits, so the ops server, the watchdog and SIGTERM always get their turn.
LOOP_SLICE_S = 0.005


class Clock(Protocol):
    """What components depend on; never `datetime.now()`."""

    def now_ns(self) -> int: ...

    def set_timer(self, name: str, at_ns: int, callback: TimerCallback) -> None:
        """Call `callback(now_ns)` at `at_ns`; replaces a pending timer of the same name."""
        ...

    def cancel_timer(self, name: str) -> None:
        """Drop the pending timer `name`; a no-op if there is none."""
        ...


class SimClock:
    """Replay clock: time moves only when the driver calls `advance_to` (once per bar).

    Timers live in a heap of (at_ns, seq, name, callback); `seq` breaks ties in insertion order so
    firing order is deterministic. Cancel and replace are lazy: the live entry per name is kept in a
    dict and stale heap entries are skipped when popped (and compacted if they pile up).
    A timer set in the past fires on the next `advance_to` without moving time backwards.
    """

    __slots__ = ("_now", "_next_due", "_heap", "_live", "_seq", "_firing")

    def __init__(self, start_ns: int) -> None:
        self._now = int(start_ns)
        self._next_due = _NEVER  # earliest heap time (may be a stale entry: only ever too early)
        self._heap: list[tuple[int, int, str, TimerCallback]] = []
        self._live: dict[str, tuple[int, int, str, TimerCallback]] = {}
        self._seq = 0
        self._firing = False

    def now_ns(self) -> int:
        return self._now

    def set_timer(self, name: str, at_ns: int, callback: TimerCallback) -> None:
        self._seq += 1
        entry = (int(at_ns), self._seq, name, callback)
        self._live[name] = entry
        heapq.heappush(self._heap, entry)
        if entry[0] < self._next_due:
            self._next_due = entry[0]
        if len(self._heap) > 2 * len(self._live) + 64:
            self._compact()

    def cancel_timer(self, name: str) -> None:
        self._live.pop(name, None)

    def pending_timers(self) -> dict[str, int]:
        """Name -> due time of every pending timer (for status output and tests)."""
        return {name: entry[0] for name, entry in self._live.items()}

    def advance_to(self, ts_ns: int) -> None:
        """Move time to `ts_ns`, firing every timer due at or before it, in (time, insertion) order.

        The common case (no timer due) costs one chained comparison. If a callback raises, time
        stays at that timer's time and later timers remain pending.
        """
        if self._now <= ts_ns < self._next_due:
            self._now = ts_ns
            return
        if ts_ns < self._now:
            raise ValueError(f"SimClock cannot go backwards: {ts_ns} < now {self._now}")
        if self._firing:
            raise RuntimeError("SimClock.advance_to called from inside a timer callback")
        self._firing = True
        heap, live = self._heap, self._live
        try:
            while heap and heap[0][0] <= ts_ns:
                entry = heapq.heappop(heap)
                name = entry[2]
                if live.get(name) is not entry:
                    continue  # cancelled or replaced
                del live[name]
                if entry[0] > self._now:
                    self._now = entry[0]
                entry[3](self._now)
            self._now = ts_ns
        finally:
            self._firing = False
            while heap and live.get(heap[0][2]) is not heap[0]:
                heapq.heappop(heap)
            self._next_due = heap[0][0] if heap else _NEVER

    def _compact(self) -> None:
        """Rebuild the heap from live entries (a per-bar re-armed watchdog leaves stale ones)."""
        self._heap = list(self._live.values())
        heapq.heapify(self._heap)
        self._next_due = self._heap[0][0] if self._heap else _NEVER


class LiveClock:
    """Wall-clock time; timers run on the asyncio loop given at construction.

    `loop.call_at` takes the loop's monotonic time, so a wall-clock deadline is converted when the
    timer is set: `when = loop.time() + (at_ns - time.time_ns()) / 1e9`. Timers therefore follow
    elapsed monotonic time; if the wall clock is stepped (NTP) while a timer is pending and the
    timer fires more than 1 ms early by the wall clock, it is re-armed for the remainder. A deadline
    in the past fires on the next loop iteration. Call `set_timer`/`cancel_timer` from the loop's
    thread only.
    """

    _EARLY_TOLERANCE_NS = 1_000_000

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._handles: dict[str, asyncio.TimerHandle] = {}

    def now_ns(self) -> int:
        return time.time_ns()

    def set_timer(self, name: str, at_ns: int, callback: TimerCallback) -> None:
        self.cancel_timer(name)
        self._schedule(name, int(at_ns), callback)

    def cancel_timer(self, name: str) -> None:
        handle = self._handles.pop(name, None)
        if handle is not None:
            handle.cancel()

    def pending_timers(self) -> dict[str, int]:
        """Name -> approximate wall-clock due time (ns) of every pending timer."""
        offset_ns = time.time_ns() - int(self._loop.time() * _NS)
        return {name: int(h.when() * _NS) + offset_ns for name, h in self._handles.items()}

    def _schedule(self, name: str, at_ns: int, callback: TimerCallback) -> None:
        when = self._loop.time() + (at_ns - time.time_ns()) / _NS
        handle = self._loop.call_at(when, self._fire, name, at_ns, callback)
        self._handles[name] = handle

    def _fire(self, name: str, at_ns: int, callback: TimerCallback) -> None:
        now = time.time_ns()
        if at_ns - now > self._EARLY_TOLERANCE_NS:
            self._schedule(name, at_ns, callback)  # wall clock moved back; wait the remainder
            return
        self._handles.pop(name, None)
        callback(now)


# ---------------------------------------------------------------------------------------------
# Conversions (edges only)


def to_utc(ns: int) -> datetime:
    """tz-aware UTC datetime; nanoseconds below the microsecond are floored (datetime's limit)."""
    seconds, rem = divmod(int(ns), _NS)
    return _EPOCH + timedelta(seconds=seconds, microseconds=rem // 1000)


def to_et(ns: int) -> datetime:
    """tz-aware America/New_York datetime, for session logic and human-facing output."""
    return to_utc(ns).astimezone(NEW_YORK)


def from_datetime(dt: datetime) -> int:
    """Epoch ns of an aware datetime; naive ones are refused because their zone is a guess."""
    if dt.tzinfo is None or dt.utcoffset() is None:
        raise ValueError(f"naive datetime {dt!r}: attach a timezone")
    delta = dt - _EPOCH
    ns = ((delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds) * 1000
    return ns + int(getattr(dt, "nanosecond", 0))  # pandas.Timestamp carries ns


_INT_RE = re.compile(r"[+-]?\d+")
_FRACTION_RE = re.compile(r"(?<=\d)[.,](\d+)")


def parse_timestamp(text: str) -> int:
    """Epoch ns from ISO-8601 with an offset or Z (<= 9 fractional digits), or an integer ns string.

    Strings without an offset are refused: they are ambiguous between UTC and New York time.
    """
    s = text.strip()
    if _INT_RE.fullmatch(s):
        return int(s)
    if s[-1:] in ("Z", "z"):
        s = s[:-1] + "+00:00"
    frac_ns = 0
    m = _FRACTION_RE.search(s)
    if m:
        digits = m.group(1)
        if len(digits) > 9:
            raise ValueError(f"more than 9 fractional digits in timestamp {text!r}")
        frac_ns = int(digits.ljust(9, "0"))
        s = s[: m.start()] + s[m.end() :]
    try:
        dt = datetime.fromisoformat(s)
    except ValueError:
        raise ValueError(f"not an ISO-8601 timestamp: {text!r}") from None
    if dt.tzinfo is None:
        raise ValueError(f"timestamp {text!r} has no UTC offset; add Z or +HH:MM")
    return from_datetime(dt) + frac_ns


def format_ns(ns: int) -> str:
    """ISO-8601 UTC with Z, e.g. 2024-03-08T14:30:00Z; a fraction only when non-zero.

    The fraction has 6 digits, or 9 if there are sub-microsecond nanoseconds, so
    `parse_timestamp(format_ns(x)) == x` always holds (journals round-trip exactly).
    """
    seconds, rem = divmod(int(ns), _NS)
    text = (_EPOCH + timedelta(seconds=seconds)).replace(tzinfo=None).isoformat(timespec="seconds")
    if rem == 0:
        return text + "Z"
    if rem % 1000 == 0:
        return f"{text}.{rem // 1000:06d}Z"
    return f"{text}.{rem:09d}Z"
