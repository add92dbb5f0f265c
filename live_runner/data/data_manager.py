"""DataManager: feeds -> validated bars -> the chain, and the session boundaries they imply.

A bad bar (NaN, non-positive price, negative volume, high < low, open/close outside the range,
out of order, duplicated, outside any session) is rejected and counted by reason, logged once per
symbol and reason; the run goes on. The check is one chained comparison for a good bar.
"""

from __future__ import annotations

import logging
import math
from collections import Counter
from time import perf_counter_ns as _perf_ns
from typing import TYPE_CHECKING, Callable

from live_runner.core.models import Bar

if TYPE_CHECKING:
    from live_runner.core.calendar import MarketCalendar, SessionTimes

log = logging.getLogger("live_runner.data")
_INF = math.inf

NAN = "NAN"
NON_POSITIVE_PRICE = "NON_POSITIVE_PRICE"
NEGATIVE_VOLUME = "NEGATIVE_VOLUME"
HIGH_BELOW_LOW = "HIGH_BELOW_LOW"
OPEN_OUTSIDE_RANGE = "OPEN_OUTSIDE_RANGE"
CLOSE_OUTSIDE_RANGE = "CLOSE_OUTSIDE_RANGE"
OUT_OF_ORDER = "OUT_OF_ORDER"
DUPLICATE = "DUPLICATE"
OUTSIDE_SESSION = "OUTSIDE_SESSION"


def classify(bar: Bar) -> str:
    """The reason a bar failed the fast check (slow path, rejected bars only)."""
    values = (bar.open, bar.high, bar.low, bar.close, bar.volume)
    if any(not isinstance(v, (int, float)) or math.isnan(v) or math.isinf(v) for v in values):
        return NAN
    if min(bar.open, bar.high, bar.low, bar.close) <= 0:
        return NON_POSITIVE_PRICE
    if bar.volume < 0:
        return NEGATIVE_VOLUME
    if bar.high < bar.low:
        return HIGH_BELOW_LOW
    if not bar.low <= bar.open <= bar.high:
        return OPEN_OUTSIDE_RANGE
    return CLOSE_OUTSIDE_RANGE


class DataManager:
    """Validates bars, tracks sessions, and hands good bars to the node synchronously."""

    def __init__(
        self,
        calendar: "MarketCalendar",
        on_bar: Callable[[Bar], None],
        on_session: Callable[["SessionTimes | None", "SessionTimes"], None],
    ) -> None:
        self.calendar = calendar
        self._on_bar = on_bar
        self._on_session = on_session
        self._last_ts: dict[str, int] = {}
        self._max_ts = -1
        self._lo = 0  # current session window [premarket_open, afterhours_close)
        self._hi = -1
        self.session: SessionTimes | None = None
        self.bars_processed = 0
        self.bar_start_ns = 0  # perf_counter_ns at the latest on_bar entry (latency, staleness)
        self.rejected: Counter[str] = Counter()
        self._logged: set[tuple[str, str]] = set()

    def set_bar_sink(self, on_bar: Callable[[Bar], None]) -> Callable[[Bar], None]:
        """Send the good bars to `on_bar` from now on (the node's warm-up routes them to itself and
        back); returns the sink they went to until now."""
        previous, self._on_bar = self._on_bar, on_bar
        return previous

    def on_bar(self, bar: Bar) -> None:
        self.bar_start_ns = _perf_ns()
        ts = bar.ts
        low = bar.low
        high = bar.high
        # (infinite prices or volumes are refused too: the strategies decide in exact integers)
        if not (0.0 < low <= bar.open <= high < _INF and low <= bar.close <= high and 0.0 <= bar.volume < _INF):
            self._reject(bar, classify(bar))
            return
        if ts < self._max_ts:
            self._reject(bar, DUPLICATE if self._last_ts.get(bar.symbol) == ts else OUT_OF_ORDER)
            return
        last = self._last_ts.get(bar.symbol)
        if last is not None and ts <= last:
            self._reject(bar, DUPLICATE if ts == last else OUT_OF_ORDER)
            return
        if not self._lo <= ts < self._hi:
            session = self.calendar.session_for_ts(ts)
            if session is None:
                self._reject(bar, OUTSIDE_SESSION)
                return
            previous = self.session
            self.session = session
            self._lo, self._hi = session.premarket_open, session.afterhours_close
            self._on_session(previous, session)
        self._last_ts[bar.symbol] = ts
        self._max_ts = ts
        self.bars_processed += 1
        self._on_bar(bar)

    def _reject(self, bar: Bar, reason: str) -> None:
        self.rejected[reason] += 1
        key = (bar.symbol, reason)
        if key not in self._logged:
            self._logged.add(key)
            log.warning("rejected bar %s ts=%s: %s (further %s rejections for this symbol are counted, "
                        "not logged)", bar.symbol, bar.ts, reason, reason)

    @property
    def bars_rejected(self) -> int:
        return sum(self.rejected.values())
