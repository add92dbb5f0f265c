"""Live data feeds for the live service: Polygon/Yahoo instead of the bars file, with failover.

`DataFeed.run` replaces the paced bars file of `LiveService._feed` when `primary_data_provider`
is polygon or yahoo. It
1. seeds the chain: the previous session's closes (one bar at its last regular minute, as the
   replay files carry them) and today's complete bars so far (premarket), over REST;
2. delivers every bar of the active client's queue to `DataManager.on_bar`, synchronously and
   in order (the DataManager rejects and counts duplicates and out-of-order bars);
3. watches the primary: silent for `polygon.stale_after_s` in regular hours, or not connected for
   `data_failover.disconnect_grace_s` during the session window, or failed (bad key): it fails
   over to the backup and alerts. While the active client is delayed (Yahoo) and
   `risk.halt_on_backup_data` is on, new entries are refused (BACKUP_DATA); exits, stops and
   flattening go on. Once the primary has delivered bars for `data_failover.failback_after_s`
   it fails back: the gap is backfilled over the primary's REST first, so no minute is missing;
4. backfills a reconnect's gap over REST when the primary comes back by itself;
5. ends after the session's after-hours close (the day is over), or when the service stops.

`liveness` is what health and /ready see: alive while the active client's connection is up (or
reconnecting within `data_failover.disconnect_grace_s`) and, in regular hours, no bar is overdue
(none for one bar interval plus `ops.heartbeat_allowance_s`). Quiet between minute bars, and
outside regular hours, is normal and never unhealthy.

Bars are never dropped here: the active client's bars all reach the DataManager; the standby
primary's bars (while on backup) are counted, and its REST backfill at failback re-delivers
their minutes. Waiting is event driven: a client's put wakes the loop; the health check is a
timer (`data_failover.check_interval_s`), not a poll of the queues.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter
from datetime import date
from typing import TYPE_CHECKING, Any, Callable, Mapping, Sequence

from live_runner.core.clients import DailyBar, FeedMarker, FeedState, LiveDataClient
from live_runner.core.calendar import CLOSED, REGULAR, MarketCalendar, SessionTimes
from live_runner.core.clock import LOOP_SLICE_S
from live_runner.live.health import feed_liveness
from live_runner.core.models import NANOS_PER_MINUTE, Bar, Severity
from live_runner.risk.rules import BackupDataGate, state_rule

if TYPE_CHECKING:
    from live_runner.core.config import SystemConfig
    from live_runner.live.node import TradingNode

log = logging.getLogger("live_runner.live.feeds")


class FeedConfigError(ValueError):
    """A live feed that cannot be built from the config and environment (named key or variable)."""


def make_client(provider: str, config: "SystemConfig", environ: Mapping[str, str] | None, *,
                market_now: Callable[[], int], yahoo_session: Any = None) -> LiveDataClient:
    if provider == "polygon":
        from live_runner.adapters.polygon import PolygonDataClient, api_key_from_env

        key = api_key_from_env(environ)
        if not key:
            raise FeedConfigError("primary/backup_data_provider polygon needs POLYGON_API_KEY "
                                  "(or MASSIVE_API_KEY) in the environment")
        return PolygonDataClient(config.polygon, key)  # type: ignore[return-value]
    if provider == "yahoo":
        from live_runner.adapters.yahoo import YahooDataClient

        return YahooDataClient(config.yahoo, session=yahoo_session,  # type: ignore[return-value]
                               market_now=market_now)
    raise FeedConfigError(f"data provider {provider!r} is not a live feed (replay reads feed.bars)")


def build_live_feed(config: "SystemConfig", environ: Mapping[str, str] | None,
                    symbols: Sequence[str] | None, *, market_now: Callable[[], int] = time.time_ns,
                    yahoo_session: Any = None) -> "DataFeed":
    """The feed for `primary_data_provider` (and the backup, if any) over `symbols`."""
    universe = sorted(set(symbols or config.universe or []))
    if not universe:
        raise FeedConfigError("a live data feed needs a universe: `universe:` in the config or the "
                              "session universe from Dagster")
    primary = make_client(config.primary_data_provider, config, environ, market_now=market_now,
                          yahoo_session=yahoo_session)
    backup = None
    name = config.backup_data_provider
    if name is not None and name != config.primary_data_provider and name != "replay":
        backup = make_client(name, config, environ, market_now=market_now, yahoo_session=yahoo_session)
    return DataFeed(config, primary, backup, universe, market_now=market_now)


def daily_bars_for(config: "SystemConfig", environ: Mapping[str, str] | None, day: date,
                   symbols: Sequence[str] | None, *, yahoo_session: Any = None) -> tuple[str, list[DailyBar]]:
    """Session `day`'s daily bars (previous closes) for Dagster's daily assets, blocking:
    Polygon's grouped daily (the whole market when `symbols` is None) when a key is set, else
    Yahoo symbol by symbol. Returns (provider, bars)."""
    from live_runner.adapters.polygon import PolygonDataClient, api_key_from_env

    key = api_key_from_env(environ)
    if key:
        return "polygon", PolygonDataClient(config.polygon, key).rest.grouped_daily(day, symbols)
    if symbols is None:
        raise FeedConfigError("no POLYGON_API_KEY: daily bars come from Yahoo, which needs a symbol list")
    from live_runner.adapters.yahoo import YahooDataClient

    return "yahoo", YahooDataClient(config.yahoo, session=yahoo_session).daily_for(day, list(symbols))


class DataFeed:
    def __init__(self, config: "SystemConfig", primary: LiveDataClient, backup: LiveDataClient | None,
                 symbols: Sequence[str], *, market_now: Callable[[], int] = time.time_ns,
                 monotonic: Callable[[], float] = time.monotonic) -> None:
        self.config = config
        self.primary = primary
        self.backup = backup
        self.symbols = sorted(set(symbols))
        self.active: LiveDataClient = primary
        self._market_now = market_now
        self._now = monotonic
        self.gate: BackupDataGate | None = BackupDataGate() if config.risk.halt_on_backup_data else None
        self.delivered: dict[str, int] = {}  # symbol -> latest bar ts handed to the DataManager
        self.max_ts = -1
        self.counts: Counter[str] = Counter()
        self.events: list[dict[str, Any]] = []  # failovers and failbacks, for /status and tests
        self.session: SessionTimes | None = None
        self._node: "TradingNode | None" = None
        self._on_bar: Callable[[Bar], None] = lambda bar: None
        self._wake = asyncio.Event()
        self._regular_since: float | None = None
        self._healthy_since: float | None = None
        self._last_forced = 0.0
        self._down_since: float | None = None
        self._unlive_since: float | None = None  # the active client left LIVE (for liveness)
        # Called when the feed is about to wait for bars (the service's QuietCollector.idle).
        self.on_idle: Callable[[], None] = lambda: None

    # --- views ---------------------------------------------------------------------------------
    @property
    def connected(self) -> bool:
        return self.active.state is FeedState.LIVE

    @property
    def on_backup(self) -> bool:
        return self.active is not self.primary

    def status(self) -> dict[str, Any]:
        return {"active": self.active.name, "on_backup": self.on_backup,
                "entries_halted": bool(self.gate and self.gate.active),
                "primary": self.primary.stats(),
                "backup": self.backup.stats() if self.backup is not None else None,
                **dict(self.counts), "events": self.events[-20:]}

    def liveness(self) -> tuple[bool, str]:
        """(alive, why) for health: a quiet feed is not a dead one (see the module docstring)."""
        now_m = self._now()
        phase = self._phase(self._market_now())
        self._track_regular(now_m, phase)
        client = self.active
        if client.state is FeedState.LIVE:
            self._unlive_since = None
        elif self._unlive_since is None:
            self._unlive_since = min(now_m, client.state_since)
        overdue = max(NANOS_PER_MINUTE / 1e9 + self.config.ops.heartbeat_allowance_s,
                      self._stale_after(client) if client.name == "yahoo" else 0.0)
        return feed_liveness(client, now_m, phase, unlive_since=self._unlive_since,
                             regular_since=self._regular_since,
                             grace_s=self.config.data_failover.disconnect_grace_s, overdue_s=overdue)

    def _track_regular(self, now_m: float, phase: str) -> None:
        if phase == REGULAR:
            if self._regular_since is None:
                self._regular_since = now_m
        else:
            self._regular_since = None

    # --- the loop ------------------------------------------------------------------------------
    async def run(self, node: "TradingNode", stop: asyncio.Event) -> None:
        self._node = node
        self._on_bar = node.data.on_bar
        if self.gate is not None:
            node.risk.add_rule(self.gate, after=state_rule)  # a no-op when it is there already
        wake = self._wake = asyncio.Event()
        stopper = asyncio.create_task(stop.wait())
        stopper.add_done_callback(lambda _: wake.set())
        interval = self.config.data_failover.check_interval_s
        try:
            await self.primary.start(self.symbols, wake.set)
            await self._seed()
            self._set_gate(self.primary.delayed)
            journal = node.journal
            while not stop.is_set():
                wake.clear()
                await self._drain()
                journal.hand_off()  # the burst's events to the writer now, not at a full batch
                await self._check()
                if self._session_over():
                    log.info("live feed: the session's after-hours close has passed; feed done")
                    return
                if self._queued():
                    continue
                self.on_idle()  # nothing to deliver: garbage collection now, not inside a bar
                try:
                    await asyncio.wait_for(wake.wait(), timeout=interval)
                except asyncio.TimeoutError:
                    pass
        finally:
            stopper.cancel()
            for client in (self.primary, self.backup):
                if client is not None:
                    try:
                        await client.stop()
                    except Exception:  # noqa: BLE001 - shutting down
                        log.exception("stopping data client %s failed", client.name)

    def _queued(self) -> bool:
        return any(c is not None and not c.queue.empty() for c in (self.primary, self.backup))

    def _deliver(self, bar: Bar) -> None:
        self.counts["delivered"] += 1
        if bar.ts > self.delivered.get(bar.symbol, -1):
            self.delivered[bar.symbol] = bar.ts
        if bar.ts > self.max_ts:
            self.max_ts = bar.ts
        self._on_bar(bar)

    async def _drain(self) -> None:
        """Everything queued: the active client's items are delivered (a reconnect marker from the
        active primary triggers its gap's backfill first), a standby client's bars are counted."""
        for client in (self.active, self.primary, self.backup):
            if client is None:
                continue
            q = client.queue
            budget_end = time.perf_counter() + LOOP_SLICE_S
            while not q.empty():
                if time.perf_counter() >= budget_end:
                    await asyncio.sleep(0)  # a burst must not starve the ops server and signals
                    budget_end = time.perf_counter() + LOOP_SLICE_S
                item = q.get_nowait()
                if client is not self.active:
                    if isinstance(item, Bar):
                        self.counts[f"standby_bars_{client.name}"] += 1
                    continue
                if isinstance(item, FeedMarker):
                    if item.kind == "reconnected":
                        await self._backfill("reconnect")
                    continue
                self._deliver(item)

    # --- seeding and backfills -----------------------------------------------------------------
    def _calendar(self) -> MarketCalendar:
        assert self._node is not None
        return self._node.calendar

    def _trading_session(self, now: int) -> SessionTimes:
        cal = self._calendar()
        session = cal.session_for_ts(now)
        if session is None:
            session = cal.session(cal.next_session(cal.session_date_for_ts(now)))
        return session

    async def _seed(self) -> None:
        now = self._market_now()
        session = self.session = self._trading_session(now)
        prev = self._calendar().session(session.prev_date)
        bars: list[Bar] = []
        for client in (self.primary, self.backup):
            if client is None:
                continue
            try:
                daily = await client.daily_bars(session.prev_date, self.symbols)
                bars = [Bar(d.symbol, prev.close - NANOS_PER_MINUTE, d.close, d.close, d.close, d.close, 0.0)
                        for d in daily]
                end = min(now - now % NANOS_PER_MINUTE, session.afterhours_close)
                if end > session.premarket_open:
                    bars += await client.minute_bars(self.symbols, session.premarket_open, end)
                break
            except Exception as exc:  # noqa: BLE001 - alert, then try the backup's REST
                self.counts["seed_errors"] += 1
                bars = []
                self._alert("data_seed_failed", Severity.WARNING,
                            f"{client.name}: previous closes / premarket bars not loaded: {exc}")
        bars.sort(key=lambda b: (b.ts, b.symbol))
        # History, not news: the seed warms the strategies up and trades nothing (live_runner.recovery.warmup).
        assert self._node is not None
        self._node.begin_warmup(session.date)
        try:
            for bar in bars:
                self._deliver(bar)
        finally:
            self._node.end_warmup()
        self.counts["seed_bars"] += len(bars)
        log.info("live feed: seeded %d bars for %d symbols (session %s)", len(bars), len(self.symbols),
                 session.date)

    async def _backfill(self, why: str) -> bool:
        """The active client's bars from the latest delivered minute to now, over REST."""
        now = self._market_now()
        end = now - now % NANOS_PER_MINUTE
        start = self.max_ts if self.max_ts >= 0 else end
        if end <= start:
            return True
        try:
            bars = await self.active.minute_bars(self.symbols, start, end)
        except Exception as exc:  # noqa: BLE001
            self.counts["backfill_errors"] += 1
            self._alert("data_backfill_failed", Severity.WARNING,
                        f"{self.active.name}: the gap after a {why} could not be backfilled: {exc}")
            return False
        for bar in bars:
            self._deliver(bar)
        self.counts["backfill_bars"] += len(bars)
        log.info("live feed: backfilled %d bars after a %s", len(bars), why)
        return True

    # --- health and failover -------------------------------------------------------------------
    def _phase(self, now: int) -> str:
        session = self._calendar().session_for_ts(now)
        return session.phase(now) if session is not None else CLOSED

    def _session_over(self) -> bool:
        return self.session is not None and self._market_now() >= self.session.afterhours_close

    def _down_reason(self, client: LiveDataClient, now_m: float, phase: str) -> str | None:
        state = client.state
        if state is FeedState.FAILED:
            return f"{client.name} failed: {getattr(client, 'stats')().get('state_reason', '')}"
        if phase == CLOSED:
            return None
        grace = self.config.data_failover.disconnect_grace_s
        if state is not FeedState.LIVE and now_m - client.state_since > grace:
            return f"{client.name} {state.value} for {now_m - client.state_since:.1f} s"
        if phase == REGULAR and state is FeedState.LIVE:
            stale = self._stale_after(client)
            ref = max(client.last_bar_at, client.state_since, self._regular_since or 0.0)
            if now_m - ref > stale:
                if now_m - self._last_forced > stale:
                    self._last_forced = now_m
                    client.reconnect()
                return f"{client.name} silent for {now_m - ref:.1f} s in regular hours"
        return None

    def _stale_after(self, client: LiveDataClient) -> float:
        if client.name == "yahoo":  # a poller: silent between polls by design
            return max(self.config.polygon.stale_after_s, 3 * self.config.yahoo.poll_interval_s)
        return self.config.polygon.stale_after_s

    def _delivering(self, client: LiveDataClient, now_m: float, phase: str) -> bool:
        if client.state is not FeedState.LIVE:
            return False
        if phase != REGULAR:
            return True
        return client.last_bar_at >= client.state_since and now_m - client.last_bar_at <= self._stale_after(client)

    async def _check(self) -> None:
        now_m = self._now()
        phase = self._phase(self._market_now())
        self._track_regular(now_m, phase)
        primary = self.primary
        if not self.on_backup:
            reason = self._down_reason(primary, now_m, phase)
            if reason is not None and self.backup is not None:
                await self._failover(reason)
            elif reason is not None and self._down_since is None:
                self._down_since = now_m  # one alert per episode: it ends when bars flow again
                self._alert("data_feed_down", Severity.CRITICAL, f"{reason}; no backup data provider")
            elif self._down_since is not None and primary.last_bar_at > self._down_since:
                self._down_since = None
                self._alert("data_feed_up", Severity.WARNING, f"{primary.name} delivers bars again")
            return
        backup_down = self._down_reason(self.active, now_m, phase)
        if backup_down is not None and self._down_since is None:
            self._down_since = now_m  # both feeds down: page once until the backup delivers again
            self._alert("data_feed_down", Severity.CRITICAL,
                        f"backup {backup_down} while the primary is down too")
        elif self._down_since is not None and self.active.last_bar_at > self._down_since:
            self._down_since = None
        if self._delivering(primary, now_m, phase):
            if self._healthy_since is None:
                self._healthy_since = now_m
            if now_m - self._healthy_since >= self.config.data_failover.failback_after_s:
                await self._failback()
        else:
            self._healthy_since = None

    async def _failover(self, reason: str) -> None:
        backup = self.backup
        assert backup is not None
        halted = bool(self.gate is not None and backup.delayed)
        self.counts["failovers"] += 1
        self.events.append({"event": "failover", "from": self.primary.name, "to": backup.name,
                            "reason": reason, "market_ts": self._market_now()})
        self._alert("data_failover", Severity.CRITICAL,
                    f"data feed {self.primary.name} down ({reason}): switched to {backup.name}"
                    + ("; new entries halted, exits managed" if halted else ""))
        self.active = backup
        self._healthy_since = None
        self._set_gate(backup.delayed)
        floor = self.max_ts - 1
        since = {s: max(self.delivered.get(s, -1), floor) for s in self.symbols}
        await backup.start(self.symbols, self._wake.set, since=since)

    async def _failback(self) -> None:
        backup = self.active
        await self._drain()  # the backup's last bars first
        self.active = self.primary
        if not await self._backfill("failback"):
            self.active = backup  # the primary's REST is not there yet: stay on the backup
            self._healthy_since = None
            return
        await backup.stop()
        self.counts["failbacks"] += 1
        self.events.append({"event": "failback", "from": backup.name, "to": self.primary.name,
                            "market_ts": self._market_now()})
        self._set_gate(self.primary.delayed)
        self._healthy_since = None
        self._alert("data_failback", Severity.WARNING,
                    f"data feed back on {self.primary.name} (healthy for "
                    f"{self.config.data_failover.failback_after_s:.0f} s); entries allowed again")

    def _set_gate(self, on: bool) -> None:
        if self.gate is not None:
            self.gate.active = on

    def _alert(self, key: str, severity: Severity, message: str) -> None:
        log.log(logging.CRITICAL if severity is Severity.CRITICAL else logging.WARNING, "%s", message)
        if self._node is not None:
            self._node.alerts.raise_alert(key, severity, message, component="data_manager")
