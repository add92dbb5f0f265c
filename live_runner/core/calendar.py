"""US equities market calendar: sessions, holidays, early closes and trading phases.

Session dates and regular open/close come from `exchange_calendars` (XNYS by default), which knows
holidays, early closes (13:00 ET) and one-off closures. Extended hours (premarket from 04:00 ET,
after-hours to 20:00 ET by default) are wall-clock New York times computed with zoneinfo, so DST is
handled by the tz database and never by fixed UTC offsets. Loading `exchange_calendars` is slow
(import plus schedule build), so each (name, start, end) is loaded once per process and shared.

All timestamps are int ns since the epoch, UTC (see `live_runner.core.models`).
"""

from __future__ import annotations

import importlib.metadata
import json
import os
import threading
import warnings
from bisect import bisect_left, bisect_right
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any

from live_runner.core.clock import NEW_YORK, from_datetime, to_et

DEFAULT_START = date(2015, 1, 1)
DEFAULT_END = date(2030, 12, 31)


class CalendarRangeError(ValueError):
    """A date the calendar cannot place: outside the range it was loaded for, or a range
    exchange_calendars cannot build. Names the date."""

    def __init__(self, d: date, message: str) -> None:
        self.date = d
        super().__init__(message)
# Loaded beyond the requested range so previous/next_session work at its edges (the longest NYSE
# closure in the tz era, 2001-09-11..14, spans fewer days than this).
_PAD = timedelta(days=14)

CLOSED = "closed"
PREMARKET = "premarket"
REGULAR = "regular"
AFTERHOURS = "afterhours"


def _et_ns(d: date, hh: int, mm: int) -> int:
    """UTC ns of the New York wall time hh:mm on date d (zoneinfo picks the right offset)."""
    return from_datetime(datetime(d.year, d.month, d.day, hh, mm, tzinfo=NEW_YORK))


@dataclass(frozen=True, slots=True)
class SessionTimes:
    """One trading session's boundaries as UTC ns; `close` is 13:00 ET on early-close days.

    Phases: premarket [premarket_open, open), regular [open, close), afterhours
    [close, afterhours_close); on early-close days after-hours therefore starts at the early close.
    """

    date: date
    premarket_open: int
    open: int
    close: int
    afterhours_close: int
    early_close: bool
    prev_date: date

    def at_et(self, hh: int, mm: int) -> int:
        """UTC ns of New York wall time hh:mm on this session's date (e.g. the 15:55 flatten)."""
        return _et_ns(self.date, hh, mm)

    def phase(self, ts: int) -> str:
        """"closed", "premarket", "regular" or "afterhours" for a UTC ns timestamp."""
        if ts < self.premarket_open or ts >= self.afterhours_close:
            return CLOSED
        if ts < self.open:
            return PREMARKET
        if ts < self.close:
            return REGULAR
        return AFTERHOURS


@dataclass(frozen=True, slots=True)
class _Table:
    """What we keep from the exchange_calendars object: sorted sessions and their open/close ns."""

    sessions: list[date]
    open_close: dict[date, tuple[int, int]]


_LOCK = threading.Lock()
_XCALS: dict[tuple[str, date, date], Any] = {}
_TABLES: dict[tuple[str, date, date], _Table] = {}


def _exchange_calendar(name: str, start: date, end: date) -> Any:
    """The exchange_calendars object for (name, start, end), built once per process."""
    key = (name, start, end)
    with _LOCK:
        cal = _XCALS.get(key)
        if cal is None:
            import exchange_calendars  # deferred: importing it (pandas) takes ~0.5 s

            with warnings.catch_warnings():
                # exchange_calendars 4.x calls Series.values on tz-aware data (pandas 3 deprecation)
                warnings.filterwarnings("ignore", message=r"Series\.values returning an ndarray")
                cal = exchange_calendars.get_calendar(
                    name, start=start.isoformat(), end=end.isoformat()
                )
            _XCALS[key] = cal
        return cal


def _cache_path(name: str, start: date, end: date) -> Path | None:
    """Where the session table is cached: building it imports pandas (~80 MB, ~0.5 s) each run."""
    base = os.environ.get("LIVE_RUNNER_CACHE_DIR") or os.path.join(os.path.expanduser("~"), ".cache", "live_runner")
    try:
        version = importlib.metadata.version("exchange_calendars")
    except importlib.metadata.PackageNotFoundError:
        return None
    return Path(base) / f"{name}_{start.isoformat()}_{end.isoformat()}_xcals{version}.json"


def _build_table(name: str, start: date, end: date) -> tuple[list[date], list[int], list[int]]:
    cal = _exchange_calendar(name, start, end)
    sessions = [ts.date() for ts in cal.sessions]
    opens = cal.opens.dt.tz_convert(None).to_numpy(dtype="datetime64[ns]").astype("int64").tolist()
    closes = cal.closes.dt.tz_convert(None).to_numpy(dtype="datetime64[ns]").astype("int64").tolist()
    if not (len(sessions) == len(opens) == len(closes)):
        raise RuntimeError(f"{name}: sessions/opens/closes length mismatch")
    return sessions, opens, closes


def _load_table(name: str, start: date, end: date) -> tuple[list[date], list[int], list[int]]:
    """The session table from the on-disk cache, else from exchange_calendars (then cached)."""
    path = _cache_path(name, start, end)
    if path is not None:
        try:
            data = json.loads(path.read_text())
            return [date.fromisoformat(d) for d in data["sessions"]], data["opens"], data["closes"]
        except (OSError, ValueError, KeyError):
            pass
    sessions, opens, closes = _build_table(name, start, end)
    if path is not None:
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_suffix(f".{os.getpid()}.tmp")
            tmp.write_text(json.dumps({"sessions": [d.isoformat() for d in sessions],
                                       "opens": opens, "closes": closes}))
            os.replace(tmp, path)
        except OSError:
            pass  # a read-only home only costs the rebuild next time
    return sessions, opens, closes


def _table(name: str, start: date, end: date) -> _Table:
    key = (name, start, end)
    table = _TABLES.get(key)
    if table is None:
        sessions, opens, closes = _load_table(name, start, end)
        open_close = {d: (int(o), int(c)) for d, o, c in zip(sessions, opens, closes)}
        table = _Table(sessions=sessions, open_close=open_close)
        with _LOCK:
            _TABLES.setdefault(key, table)
    return table


def _parse_hhmm(text: str) -> tuple[int, int]:
    try:
        hh, mm = (int(part) for part in text.split(":"))
    except ValueError:
        raise ValueError(f"expected HH:MM, got {text!r}") from None
    if not (0 <= hh <= 23 and 0 <= mm <= 59):
        raise ValueError(f"expected HH:MM, got {text!r}")
    return hh, mm


def _as_date(d: date) -> date:
    # datetime is a date subclass; its calendar date depends on its zone, so make callers choose.
    if isinstance(d, datetime):
        raise TypeError(f"expected a date, got datetime {d!r}; use session_date_for_ts(ts_ns)")
    if not isinstance(d, date):
        raise TypeError(f"expected a date, got {type(d).__name__}")
    return d


class MarketCalendar:
    """Session lookups over [start, end] (inclusive), backed by exchange_calendars.

    Dates outside [start, end] raise ValueError rather than silently reading as "no session".
    `session_for_ts` is on the per-bar path: it caches the last New York day it resolved, so
    consecutive calls cost two comparisons.
    """

    def __init__(
        self,
        start: date | None = None,
        end: date | None = None,
        premarket_start: str = "04:00",
        afterhours_end: str = "20:00",
        name: str = "XNYS",
    ) -> None:
        self.start = _as_date(start) if start is not None else DEFAULT_START
        self.end = _as_date(end) if end is not None else DEFAULT_END
        if self.start > self.end:
            raise ValueError(f"calendar start {self.start} is after end {self.end}")
        self.name = name
        self._pre = _parse_hhmm(premarket_start)
        self._post = _parse_hhmm(afterhours_end)
        if self._pre > (9, 30) or self._post < (16, 0):
            raise ValueError(
                f"extended hours {premarket_start}-{afterhours_end} must contain 09:30-16:00"
            )
        self._table = _table(name, self.start - _PAD, self.end + _PAD)
        self._session_set = frozenset(self._table.sessions)
        self._times: dict[date, SessionTimes] = {}
        # session_for_ts cache: New York day [lo, hi) in UTC ns and its session (None if closed).
        self._day_lo = 0
        self._day_hi = 0
        self._day_session: SessionTimes | None = None

    @classmethod
    def covering(cls, first: date, last: date, premarket_start: str = "04:00",
                 afterhours_end: str = "20:00", name: str = "XNYS") -> "MarketCalendar":
        """A calendar over the default range widened to whole years around [first, last] (the
        dates of a bar file), so every session exchange_calendars knows is replayable. Whole
        years keep the on-disk cache key stable: a wider range is built (~0.5 s) once, then
        read from the cache. CalendarRangeError, naming the date, if exchange_calendars cannot
        build the range."""
        start = min(DEFAULT_START, date(first.year, 1, 1))
        end = max(DEFAULT_END, date(last.year, 12, 31))
        try:
            return cls(start, end, premarket_start, afterhours_end, name)
        except CalendarRangeError:
            raise
        except Exception as exc:  # exchange_calendars/pandas bounds (e.g. past 2262-04-11)
            bad = first if first < DEFAULT_START else last
            raise CalendarRangeError(
                bad, f"{bad} is outside what the {name} calendar can place "
                     f"(exchange_calendars: {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''})"
            ) from exc

    def __repr__(self) -> str:
        return f"MarketCalendar({self.name}, {self.start}..{self.end})"

    def _check(self, d: date) -> date:
        d = _as_date(d)
        if not (self.start <= d <= self.end):
            raise CalendarRangeError(
                d, f"{d} is outside the {self.name} calendar range {self.start}..{self.end}"
            )
        return d

    def is_session(self, d: date) -> bool:
        return self._check(d) in self._session_set

    def session(self, d: date) -> SessionTimes:
        """Boundaries of the session on date d; ValueError if d is not a session."""
        st = self._times.get(d)
        if st is not None:
            return st
        d = self._check(d)
        row = self._table.open_close.get(d)
        if row is None:
            raise ValueError(f"{d} is not a {self.name} session")
        open_ns, close_ns = row
        st = SessionTimes(
            date=d,
            premarket_open=_et_ns(d, *self._pre),
            open=open_ns,
            close=close_ns,
            afterhours_close=_et_ns(d, *self._post),
            early_close=close_ns < _et_ns(d, 16, 0),
            prev_date=self._prev(d),
        )
        self._times[d] = st
        return st

    def session_for_ts(self, ts_ns: int) -> SessionTimes | None:
        """The session whose [premarket_open, afterhours_close) contains ts_ns, else None."""
        if self._day_lo <= ts_ns < self._day_hi:
            st = self._day_session
        else:
            st = self._load_day(ts_ns)
        if st is not None and st.premarket_open <= ts_ns < st.afterhours_close:
            return st
        return None

    def _load_day(self, ts_ns: int) -> SessionTimes | None:
        d = self._check(self.session_date_for_ts(ts_ns))
        st = self.session(d) if d in self._session_set else None
        self._day_lo = _et_ns(d, 0, 0)
        self._day_hi = _et_ns(d + timedelta(days=1), 0, 0)
        self._day_session = st
        return st

    @staticmethod
    def session_date_for_ts(ts_ns: int) -> date:
        """The New York calendar date of an instant (not necessarily a session)."""
        return to_et(ts_ns).date()

    def _prev(self, d: date) -> date:
        i = bisect_left(self._table.sessions, d) - 1
        if i < 0:
            raise ValueError(f"no {self.name} session loaded before {d}")
        return self._table.sessions[i]

    def previous_session(self, d: date) -> date:
        """The last session strictly before d (d itself need not be a session)."""
        return self._prev(self._check(d))

    def next_session(self, d: date) -> date:
        """The first session strictly after d (d itself need not be a session)."""
        d = self._check(d)
        i = bisect_right(self._table.sessions, d)
        if i >= len(self._table.sessions):
            raise ValueError(f"no {self.name} session loaded after {d}")
        return self._table.sessions[i]

    def sessions_in_range(self, start: date, end: date) -> list[date]:
        """Sessions in [start, end], inclusive, in order."""
        start, end = self._check(start), self._check(end)
        sessions = self._table.sessions
        return sessions[bisect_left(sessions, start) : bisect_right(sessions, end)]

    def holidays(self, start: date, end: date) -> list[date]:
        """Weekdays in [start, end] that are not sessions (holidays and unscheduled closures)."""
        d, end = self._check(start), self._check(end)
        out: list[date] = []
        while d <= end:
            if d.weekday() < 5 and d not in self._session_set:
                out.append(d)
            d += timedelta(days=1)
        return out

    def early_closes(self, start: date, end: date) -> list[date]:
        """Sessions in [start, end] whose regular close is before 16:00 ET."""
        return [d for d in self.sessions_in_range(start, end) if self.session(d).early_close]
