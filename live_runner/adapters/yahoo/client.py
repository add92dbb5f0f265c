"""YahooDataClient: daily bars and delayed 1-minute bars from Yahoo through yfinance.

A degraded source: unofficial, rate limited, intraday bars delayed and kept only for recent days.
The runner uses it as the backup feed (new entries halt while it is active, `risk.halt_on_backup_data`)
and Dagster's daily assets use it when no Polygon key is set.

yfinance facts this module relies on (1.7.0, read from its source):
- HTTP goes through one process-wide `YfData` singleton and its session; we always pass our own
  curl_cffi session (`session=`), so timeouts and, in tests, the target host are ours.
- `history()` swallows errors unless `raise_errors=True` (deprecated in 1.x in favour of a global
  switch; the per-call flag still works and keeps the switch untouched for other users).
- `YfData.cache_get` is an lru_cache across calls and the ticker->timezone cache is a SQLite file:
  the cache folder is a temporary one unless configured, and `clear_caches()` resets both.
- with curl_cffi installed, only curl_cffi's errors are caught inside yfinance.
"""

from __future__ import annotations

import asyncio
import logging
import math
import tempfile
import time
import warnings
from collections import Counter
from datetime import date, timedelta
from typing import TYPE_CHECKING, Any, Callable, Mapping, Sequence

import pandas as pd

from live_runner.core.clients import DailyBar, FeedMarker, FeedState
from live_runner.adapters.yahoo import sdk
from live_runner.core.clock import to_utc
from live_runner.core.models import Bar

if TYPE_CHECKING:
    from live_runner.core.config import YahooConfig

log = logging.getLogger("live_runner.adapters.yahoo")

_MINUTE_NS = 60_000_000_000


class YahooError(RuntimeError):
    """A Yahoo request that failed. `kind`: rate_limited, no_data (unknown symbol, no bars),
    unavailable (HTTP errors, Yahoo's "down" page, network), malformed, config."""

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(f"yahoo {kind}: {message}")
        self.kind = kind


def _classify(symbol: str, exc: BaseException) -> YahooError:
    if isinstance(exc, YahooError):
        return exc
    if isinstance(exc, sdk.YFRateLimitError):
        return YahooError("rate_limited", f"{symbol}: too many requests")
    if isinstance(exc, (sdk.YFPricesMissingError, sdk.YFTzMissingError, sdk.YFTickerMissingError)):
        return YahooError("no_data", f"{symbol}: {exc}")
    if isinstance(exc, sdk.HTTP_ERRORS + (sdk.YFDataException,)):
        return YahooError("unavailable", f"{symbol}: {type(exc).__name__}: {exc}")
    if isinstance(exc, (ValueError, KeyError, TypeError, IndexError)):
        return YahooError("malformed", f"{symbol}: {type(exc).__name__}: {exc}")
    if isinstance(exc, (OSError, TimeoutError)):
        return YahooError("unavailable", f"{symbol}: {type(exc).__name__}: {exc}")
    return YahooError("error", f"{symbol}: {type(exc).__name__}: {exc}")


class YahooDataClient:
    name = "yahoo"
    delayed = True

    def __init__(self, cfg: "YahooConfig", *, session: Any = None,
                 market_now: Callable[[], int] = time.time_ns,
                 monotonic: Callable[[], float] = time.monotonic) -> None:
        self.cfg = cfg
        self.session = session if session is not None else sdk.new_session()
        self.cache_dir = cfg.cache_dir or tempfile.mkdtemp(prefix="yfinance-cache-")
        sdk.set_cache_location(self.cache_dir)
        self.clear_caches()
        self._market_now = market_now
        self._now = monotonic
        self.queue: asyncio.Queue[Bar | FeedMarker] = asyncio.Queue(maxsize=cfg.queue_size)
        self.state = FeedState.IDLE
        self.state_since = monotonic()
        self.state_reason = ""
        self.last_bar_at = 0.0
        self.counts: Counter[str] = Counter()
        self._task: asyncio.Task[None] | None = None
        self._watermark: dict[str, int] = {}
        self._symbols: list[str] = []
        self._on_data: Callable[[], None] = lambda: None

    @staticmethod
    def clear_caches() -> None:
        """Forget yfinance's request cache and its cookie/crumb (tests; after a session change)."""
        sdk.clear_caches()

    # --- blocking calls (Dagster, threads) -----------------------------------------------------
    def _history(self, symbol: str, **kwargs: Any) -> pd.DataFrame:
        self.counts["requests"] += 1
        try:
            ticker = sdk.Ticker(symbol, session=self.session)
            with warnings.catch_warnings():  # the per-call flag is deprecated but still honoured
                warnings.filterwarnings("ignore", message="'raise_errors' deprecated")
                warnings.filterwarnings("ignore", message="The inplace keyword")
                return ticker.history(raise_errors=True, timeout=self.cfg.timeout_s, actions=False,
                                      auto_adjust=False, **kwargs)
        except Exception as exc:  # noqa: BLE001 - classified, counted and re-raised
            err = _classify(symbol, exc)
            self.counts[f"error_{err.kind}"] += 1
            log.warning("%s", err)
            raise err from exc

    def _bad_row(self, symbol: str, row: Any) -> None:
        self.counts["malformed_rows"] += 1
        if self.counts["malformed_rows"] == 1:
            log.warning("yahoo %s: a row without usable OHLCV was skipped (further ones are counted): %r",
                        symbol, row)

    def intraday_bars(self, symbol: str, start_ns: int | None = None, end_ns: int | None = None,
                      now_ns: int | None = None) -> list[Bar]:
        """1-minute bars, premarket and after-hours included; the whole current day when no range.
        Only complete bars (ended by the market clock, or by `now_ns`) are returned."""
        if start_ns is None:
            df = self._history(symbol, period="1d", interval="1m", prepost=True)
        else:
            end = end_ns if end_ns is not None else self._market_now()
            df = self._history(symbol, start=to_utc(start_ns), end=to_utc(end), interval="1m", prepost=True)
        now = self._market_now() if now_ns is None else now_ns
        out: list[Bar] = []
        if df.empty:
            return out
        stamps = df.index.tz_convert("UTC").as_unit("ns").asi8
        cols = zip(stamps, df["Open"], df["High"], df["Low"], df["Close"], df["Volume"])
        for ts, o, h, lo, c, v in cols:
            ts = int(ts)
            if ts + _MINUTE_NS > now or (start_ns is not None and ts < start_ns) or (
                    end_ns is not None and ts >= end_ns):
                continue
            values = (o, h, lo, c, v)
            if any(x is None or not math.isfinite(float(x)) for x in values):
                self._bad_row(symbol, values)
                continue
            out.append(Bar(symbol, ts, float(o), float(h), float(lo), float(c), float(v)))
        return out

    def daily_history(self, symbol: str, start: date, end: date) -> list[DailyBar]:
        """Daily bars start..end inclusive, split-adjusted only (like Polygon's adjusted=true)."""
        df = self._history(symbol, start=start.isoformat(), end=(end + timedelta(days=1)).isoformat(),
                           interval="1d")
        out: list[DailyBar] = []
        for stamp, o, h, lo, c, v in zip(df.index, df["Open"], df["High"], df["Low"], df["Close"],
                                         df["Volume"]):
            day = stamp.date()
            values = (o, h, lo, c, v)
            if any(x is None or not math.isfinite(float(x)) for x in values):
                self._bad_row(symbol, values)
                continue
            if start <= day <= end:
                out.append(DailyBar(symbol, day, float(o), float(h), float(lo), float(c), float(v)))
        return out

    def daily_for(self, day: date, symbols: Sequence[str]) -> list[DailyBar]:
        out = []
        for sym in symbols:
            try:
                out.extend(b for b in self.daily_history(sym, day, day) if b.day == day)
            except YahooError as err:
                if err.kind != "no_data":
                    raise
        return sorted(out, key=lambda b: b.symbol)

    # --- LiveDataClient ------------------------------------------------------------------------
    async def minute_bars(self, symbols: Sequence[str], start_ns: int, end_ns: int) -> list[Bar]:
        out: list[Bar] = []
        for sym in symbols:
            out.extend(await asyncio.to_thread(self.intraday_bars, sym, start_ns, end_ns))
        out.sort(key=lambda b: (b.ts, b.symbol))
        return out

    async def daily_bars(self, day: date, symbols: Sequence[str] | None) -> list[DailyBar]:
        if symbols is None:
            raise YahooError("config", "Yahoo has no whole-market daily bars: a universe is needed")
        return await asyncio.to_thread(self.daily_for, day, list(symbols))

    async def start(self, symbols: Sequence[str], on_data: Callable[[], None],
                    since: Mapping[str, int] | None = None) -> None:
        if self._task is not None and not self._task.done():
            return
        self._symbols = sorted(set(symbols))
        self._watermark = dict(since or {})
        self._on_data = on_data
        self._set_state(FeedState.CONNECTING)
        self._task = asyncio.create_task(self._poll(), name="yahoo-poll")

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            try:
                await task
            except (asyncio.CancelledError, Exception):  # noqa: BLE001
                pass
        self._set_state(FeedState.STOPPED, "stopped")

    def reconnect(self) -> None:
        return None

    def _set_state(self, state: FeedState, reason: str = "") -> None:
        if state is not self.state:
            log.info("yahoo feed: %s -> %s%s", self.state.value, state.value, f" ({reason})" if reason else "")
            self.state = state
            self.state_since = self._now()
        self.state_reason = reason

    async def _poll(self) -> None:
        interval = self.cfg.poll_interval_s
        while True:
            fresh: list[Bar] = []
            failures: list[str] = []
            rate_limited = False
            cutoff = self._market_now()  # one cut for the whole round: symbols stay in step
            for sym in self._symbols:
                try:
                    bars = await asyncio.to_thread(self.intraday_bars, sym, None, None, cutoff)
                except YahooError as err:
                    failures.append(str(err))
                    rate_limited |= err.kind == "rate_limited"
                    continue
                mark = self._watermark.get(sym, -1)
                fresh.extend(b for b in bars if b.ts > mark)
            fresh.sort(key=lambda b: (b.ts, b.symbol))
            for bar in fresh:
                await self._put(bar)
                self._watermark[bar.symbol] = bar.ts
            self.counts["polls"] += 1
            if self._symbols and len(failures) == len(self._symbols):
                self._set_state(FeedState.DISCONNECTED, failures[0])
            else:
                self._set_state(FeedState.LIVE)
            # Back off on 429s (up to 10 poll intervals); normal pace otherwise.
            interval = min(interval * 2, self.cfg.poll_interval_s * 10) if rate_limited else self.cfg.poll_interval_s
            await asyncio.sleep(interval)

    async def _put(self, item: Bar | FeedMarker) -> None:
        q = self.queue
        if q.full():
            self.counts["reader_waits"] += 1
            await q.put(item)
        else:
            q.put_nowait(item)
        if isinstance(item, Bar):
            self.counts["bars"] += 1
            self.last_bar_at = self._now()
        self._on_data()

    def stats(self) -> dict[str, Any]:
        return {"provider": self.name, "sdk": f"yfinance {sdk.VERSION}", "state": self.state.value,
                "state_reason": self.state_reason, "queue_depth": self.queue.qsize(),
                "queue_size": self.queue.maxsize, **dict(self.counts)}
