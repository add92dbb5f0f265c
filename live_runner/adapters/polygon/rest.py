"""Polygon REST: minute bars (premarket, backfills), grouped daily bars (previous closes).

The SDK's HTTP behaviour, as read from its source (massive 2.9.1 and polygon-api-client 1.16.3):
- statuses 413, 429, 499, 500, 502, 503, 504 are retried by urllib3 and end in
  `urllib3.exceptions.MaxRetryError` (even with `retries=0`); any other non-200 raises the SDK's
  `BadResponse`. We build the client with `retries=0` and apply our own policy: 429, 5xx,
  timeouts and connection errors are retried with exponential backoff, each one counted.
- the `MaxRetryError` carries no response, so a 429's `Retry-After` would be lost: the pool's
  `Retry` is replaced by `_KeepStatus`, which attaches the status and `Retry-After` to the error.
  A 429 (or 503) that says how long to wait is retried after that long (at most
  `retry_after_max_s`), not after our shorter backoff.
- polygon-api-client builds a `urllib3.Timeout` but never hands it to its pool: the timeout is
  set on the pool here, so a hung server cannot block a worker thread forever with either SDK.
- a body that is not JSON is only logged by the SDK (and the page, or the whole paginated list,
  silently ends): a handler on the SDK's logger turns that into an error here.
- every model field is Optional and read with `dict.get`: each record is checked before it
  becomes a Bar; a bad record is counted and skipped (never a Bar made of Nones).

Every call is blocking (urllib3): the live runner calls them through `asyncio.to_thread`.
"""

from __future__ import annotations

import logging
import re
import threading
import time
from collections import Counter
from datetime import date, datetime
from typing import Any, Callable, Iterable, Sequence, TypeVar

import urllib3
from urllib3.exceptions import MaxRetryError, ResponseError
from urllib3.util.retry import Retry

from live_runner.core.clients import DailyBar
from live_runner.adapters.polygon import sdk
from live_runner.core.clock import NEW_YORK, to_et
from live_runner.core.models import Bar

log = logging.getLogger("live_runner.adapters.polygon")

_NS_PER_MS = 1_000_000
_MINUTE_NS = 60_000_000_000
_STATUS_RE = re.compile(r"too many (\d{3}) error responses")
T = TypeVar("T")


class PolygonError(RuntimeError):
    """A Polygon request that failed after our retries. `kind`: rate_limited, server_error,
    timeout, connection, bad_response (4xx: key, plan, path), malformed, config.
    `retry_after_s`: what the server's Retry-After asked for, if it sent one."""

    def __init__(self, kind: str, message: str, status: int | None = None,
                 retry_after_s: float | None = None) -> None:
        super().__init__(f"polygon {kind}: {message}")
        self.kind = kind
        self.status = status
        self.retry_after_s = retry_after_s


# The statuses both SDKs hand to urllib3's Retry (massive 2.9.1, polygon-api-client 1.16.3).
_SDK_STATUS_FORCELIST = (413, 429, 499, 500, 502, 503, 504)


class _KeepStatus(Retry):
    """urllib3's Retry with no retries of its own that keeps what the response said.

    With `total=0` urllib3 raises `MaxRetryError` for a status in the forcelist and drops the
    response; this attaches `status` and `retry_after_s` (seconds or an HTTP date, as urllib3
    parses it) to that error so that our policy can honour the server's Retry-After."""

    def increment(self, method: str | None = None, url: str | None = None, response: Any = None,
                  error: Exception | None = None, _pool: Any = None,
                  _stacktrace: Any = None) -> Retry:
        try:
            return super().increment(method, url, response, error, _pool, _stacktrace)
        except MaxRetryError as exc:
            if response is not None:
                exc.status = response.status  # type: ignore[attr-defined]
                exc.retry_after_s = self.get_retry_after(response)  # type: ignore[attr-defined]
            raise


def _keep_status_retry() -> Retry:
    return _KeepStatus(total=0, status_forcelist=_SDK_STATUS_FORCELIST, respect_retry_after_header=False)


RETRYABLE = frozenset({"rate_limited", "server_error", "timeout", "connection", "malformed"})


def classify(exc: BaseException) -> PolygonError:
    """Map the SDK's two HTTP error kinds (and urllib3's) to one PolygonError."""
    if isinstance(exc, PolygonError):
        return exc
    if isinstance(exc, MaxRetryError):
        reason = exc.reason
        if isinstance(reason, ResponseError):
            m = _STATUS_RE.search(str(reason))
            status = getattr(exc, "status", None) or (int(m.group(1)) if m else None)
            after = getattr(exc, "retry_after_s", None)
            said = f", Retry-After {after:g} s" if after is not None else ""
            if status == 429:
                return PolygonError("rate_limited", f"HTTP 429 (too many requests{said})", 429, after)
            return PolygonError("server_error", f"HTTP {status or '5xx'}{said}", status, after)
        if isinstance(reason, (urllib3.exceptions.TimeoutError, TimeoutError)):
            return PolygonError("timeout", f"{type(reason).__name__}: {reason}")
        return PolygonError("connection", f"{type(reason).__name__}: {reason}")
    if isinstance(exc, sdk.BadResponse):
        body = str(exc)
        return PolygonError("bad_response", body[:300])
    if isinstance(exc, (urllib3.exceptions.TimeoutError, TimeoutError)):
        return PolygonError("timeout", f"{type(exc).__name__}: {exc}")
    if isinstance(exc, (urllib3.exceptions.HTTPError, OSError)):
        return PolygonError("connection", f"{type(exc).__name__}: {exc}")
    raise exc


class _DecodeErrorTrap(logging.Handler):
    """Counts the SDK's 'Error decoding json response' log records per thread."""

    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.hits: Counter[int] = Counter()

    def emit(self, record: logging.LogRecord) -> None:
        if "decoding json" in record.getMessage():
            self.hits[record.thread or 0] += 1


_TRAP = _DecodeErrorTrap()
logging.getLogger("RESTClient").addHandler(_TRAP)


def _number(x: Any) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and x == x


class PolygonRest:
    """Blocking REST calls with our retry policy; `stats` counts requests and every fault."""

    def __init__(self, api_key: str, *, base_url: str | None = None, connect_timeout_s: float = 10.0,
                 read_timeout_s: float = 10.0, max_attempts: int = 6, backoff_s: float = 0.5,
                 backoff_max_s: float = 8.0, retry_after_max_s: float = 60.0,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        kwargs: dict[str, Any] = {"api_key": api_key, "connect_timeout": connect_timeout_s,
                                  "read_timeout": read_timeout_s, "retries": 0}
        if base_url:
            kwargs["base"] = base_url.rstrip("/")
        self.client = sdk.RESTClient(**kwargs)
        pool = getattr(self.client, "client", None)
        if isinstance(pool, urllib3.PoolManager):  # polygon-api-client never applies its timeout
            pool.connection_pool_kw["timeout"] = urllib3.Timeout(connect=connect_timeout_s,
                                                                 read=read_timeout_s)
            pool.connection_pool_kw["retries"] = _keep_status_retry()
            pool.clear()
        self.max_attempts = max_attempts
        self.backoff_s = backoff_s
        self.backoff_max_s = backoff_max_s
        self.retry_after_max_s = retry_after_max_s
        self._sleep = sleep
        self._lock = threading.Lock()
        self.stats: Counter[str] = Counter()
        self._logged: set[str] = set()

    def _count(self, key: str, n: int = 1) -> None:
        with self._lock:
            self.stats[key] += n

    # --- the retry policy ----------------------------------------------------------------------
    def call(self, what: str, fn: Callable[[], T]) -> T:
        """Run `fn` (one SDK call, pagination included) under the retry policy."""
        tid = threading.get_ident()
        delay = self.backoff_s
        for attempt in range(1, self.max_attempts + 1):
            before = _TRAP.hits[tid]
            self._count("attempts")
            try:
                result = fn()
                if _TRAP.hits[tid] != before:
                    raise PolygonError("malformed", f"{what}: the response body is not JSON")
                return result
            except Exception as exc:  # noqa: BLE001 - classified below; unknown ones re-raise
                err = classify(exc)
            self._count(f"error_{err.kind}")
            if err.kind not in RETRYABLE or attempt == self.max_attempts:
                self._count("failed_calls")
                log.error("polygon %s failed after %d attempt(s): %s", what, attempt, err)
                raise err
            wait = delay
            if err.retry_after_s is not None:  # the server said when: never sooner, never unbounded
                wait = min(max(err.retry_after_s, 0.0), self.retry_after_max_s)
                self._count("retry_after_honoured")
            log.warning("polygon %s: %s; retry %d/%d in %.2f s", what, err, attempt,
                        self.max_attempts - 1, wait)
            self._count("retries")
            self._sleep(wait)
            delay = min(delay * 2, self.backoff_max_s) if delay else 0.0
        raise AssertionError("unreachable")

    def _bad_record(self, what: str, record: Any) -> None:
        self._count("malformed_records")
        if what not in self._logged:
            self._logged.add(what)
            log.error("polygon %s: a record without usable o/h/l/c/v/t was skipped (further ones are "
                      "counted, not logged): %r", what, record)

    # --- endpoints -----------------------------------------------------------------------------
    def minute_bars(self, symbol: str, start_ns: int, end_ns: int) -> list[Bar]:
        """1-minute bars with start_ns <= ts < end_ns (pagination follows next_url)."""
        if end_ns <= start_ns:
            return []
        what = f"minute aggregates {symbol}"
        from_ms, to_ms = start_ns // _NS_PER_MS, (end_ns - 1) // _NS_PER_MS

        def fetch() -> list[Any]:
            return list(self.client.list_aggs(symbol, 1, "minute", from_ms, to_ms, adjusted=True,
                                              sort="asc", limit=50_000))

        by_ts: dict[int, Bar] = {}
        for agg in self.call(what, fetch):
            o, h, lo, c, v, t = agg.open, agg.high, agg.low, agg.close, agg.volume, agg.timestamp
            if not all(_number(x) for x in (o, h, lo, c, v, t)):
                self._bad_record(what, agg)
                continue
            ts = int(t) * _NS_PER_MS
            if start_ns <= ts < end_ns:
                by_ts[ts] = Bar(symbol, ts, float(o), float(h), float(lo), float(c), float(v))
        self._count("bars", len(by_ts))
        return [by_ts[ts] for ts in sorted(by_ts)]

    def minute_bars_many(self, symbols: Iterable[str], start_ns: int, end_ns: int) -> list[Bar]:
        out: list[Bar] = []
        for sym in symbols:
            out.extend(self.minute_bars(sym, start_ns, end_ns))
        out.sort(key=lambda b: (b.ts, b.symbol))
        return out

    def grouped_daily(self, day: date, symbols: Sequence[str] | None = None) -> list[DailyBar]:
        """The whole market's bars for `day` in one request (previous closes)."""
        what = f"grouped daily {day.isoformat()}"
        rows = self.call(what, lambda: self.client.get_grouped_daily_aggs(day.isoformat(), adjusted=True))
        if not isinstance(rows, list):
            raise PolygonError("malformed", f"{what}: expected a list of results, got {type(rows).__name__}")
        wanted = set(symbols) if symbols is not None else None
        out: list[DailyBar] = []
        for r in rows:
            sym = r.ticker
            if not isinstance(sym, str) or not sym:
                self._bad_record(what, r)
                continue
            if wanted is not None and sym not in wanted:
                continue
            o, h, lo, c, v = r.open, r.high, r.low, r.close, r.volume
            if not all(_number(x) for x in (o, h, lo, c, v)):
                self._bad_record(what, r)
                continue
            out.append(DailyBar(sym, day, float(o), float(h), float(lo), float(c), float(v)))
        out.sort(key=lambda b: b.symbol)
        self._count("daily_bars", len(out))
        return out

    def daily_bars(self, symbol: str, start: date, end: date) -> list[DailyBar]:
        """One symbol's daily bars, start..end inclusive (Dagster's daily assets)."""
        what = f"daily aggregates {symbol}"

        def fetch() -> list[Any]:
            return list(self.client.list_aggs(symbol, 1, "day", start.isoformat(), end.isoformat(),
                                              adjusted=True, sort="asc", limit=50_000))

        out: dict[date, DailyBar] = {}
        for agg in self.call(what, fetch):
            o, h, lo, c, v, t = agg.open, agg.high, agg.low, agg.close, agg.volume, agg.timestamp
            if not all(_number(x) for x in (o, h, lo, c, v, t)):
                self._bad_record(what, agg)
                continue
            day = to_et(int(t) * _NS_PER_MS).date()  # daily bars start at 00:00 New York time
            if start <= day <= end:
                out[day] = DailyBar(symbol, day, float(o), float(h), float(lo), float(c), float(v))
        return [out[d] for d in sorted(out)]


def day_start_ms(day: date) -> int:
    """00:00 New York on `day`, as Polygon stamps daily bars (ms)."""
    return int(datetime(day.year, day.month, day.day, tzinfo=NEW_YORK).timestamp() * 1000)
