"""The live service: one asyncio loop running the feed, the chain, the ops server and the watchdog.

The chain itself stays synchronous (a bar is handled to the order it causes without an await); the
loop only paces the feed, serves HTTP between bars, and samples heartbeats. Operator commands run
on the same loop, so they never race the hot path.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import threading
import time
import traceback
from pathlib import Path
from typing import TYPE_CHECKING, Any, AsyncIterator, Iterator

from live_runner.adapters.replay import BarFile, read_daily_closes
from live_runner.ops import logs
from live_runner.ops.alerts import sinks_from_env
from live_runner.core.clock import LOOP_SLICE_S
from live_runner.core.config import SystemConfig
from live_runner.live import gc_quiet
from live_runner.live.errors import LeaseLostError, RunnerError, ShutdownIncomplete
from live_runner.live.health import HealthMonitor
from live_runner.live.service_health import HealthChecks
from live_runner.live.service_lease import LeaseFencing, open_account_lease
from live_runner.persistence.journal import Journal, JournalDivergence
from live_runner.live.lease import Lease
from live_runner.core.models import Bar, OrderRole, OrderType, Severity, SystemState
from live_runner.live.node import TradingNode
from live_runner.live.runs import RunOptions, calendar_for, summarize

if TYPE_CHECKING:
    from live_runner.live.feeds import DataFeed

log = logging.getLogger("live_runner.live.service")

CONTROL_COMMANDS = {"pause": "pause_trading", "resume": "resume_trading",
                    "emergency_stop": "emergency_stop", "rebalance": "rebalance_portfolio",
                    "flatten": "flatten"}
_GAP_SKIP_NS = 30 * 60_000_000_000
_FLATTEN_ROLES = frozenset({OrderRole.MANUAL, OrderRole.EOD})


_NO_LEASE: Any = object()


class LiveService(HealthChecks, LeaseFencing):
    """Owns the node for a live run and answers the ops server (see ops.server.OpsApp).

    Its health checks (live/service_health.py) and lease fencing (live/service_lease.py) are
    mixed in from their own modules.

    `bar_source` replaces the paced bars file with any async iterator of bars (a live data client;
    tests release bars one by one with it); `health` injects a HealthMonitor (e.g. with a fake
    monotonic clock)."""

    def __init__(self, config: SystemConfig, opts: RunOptions, environ: dict[str, str] | None = None,
                 *, bar_source: AsyncIterator[Bar] | None = None,
                 health: HealthMonitor | None = None, data_feed: "DataFeed | None" = None,
                 lease: Lease | None = _NO_LEASE) -> None:
        """Takes the account's lease first (LeaseHeld: another runner trades it), before the
        journal is opened; `lease` injects one (None: none), default from `config.lease`."""
        self.lease: Lease | None = open_account_lease(config, opts.journal_url) if lease is _NO_LEASE else lease
        self.lease_lost: str | None = None
        self.fenced_sends = 0  # sends refused because the lease was no longer valid
        try:
            self._setup(config, opts, environ, bar_source=bar_source, health=health, data_feed=data_feed)
        except BaseException:
            if self.lease is not None:
                self.lease.release()
            raise

    def _setup(self, config: SystemConfig, opts: RunOptions, environ: dict[str, str] | None = None,
               *, bar_source: AsyncIterator[Bar] | None = None,
               health: HealthMonitor | None = None, data_feed: "DataFeed | None" = None) -> None:
        self.config = config
        self.opts = opts
        env = dict(os.environ if environ is None else environ)
        self.token = env.get(config.ops.token_env) or None
        self.bar_source = bar_source
        # Live data (config primary_data_provider polygon|yahoo): live_runner.live.feeds, with failover.
        if data_feed is None and bar_source is None and config.primary_data_provider != "replay":
            from live_runner.live.feeds import build_live_feed

            data_feed = build_live_feed(config, env, opts.universe)
        self.data_feed = data_feed
        self.bar_file = BarFile(opts.bars) if bar_source is None and data_feed is None else None
        self.total_bars = self.bar_file.validate() if self.bar_file is not None else None
        # The bars file's dates set the calendar's range, checked before any journal exists.
        calendar = calendar_for(self.bar_file, config) if self.bar_file is not None else None
        # A live feed's session cannot be regenerated after a crash (its bars and fills do not
        # repeat), so its journal is continued and the state read back from it (live_runner.recovery.restore);
        # a bars file is replayed deterministically, its journal verified event by event.
        jc = config.journal
        self.journal = Journal(opts.journal_url, batch_size=jc.batch_size, continue_log=data_feed is not None,
                               connect_timeout_s=jc.connect_timeout_s,
                               statement_timeout_s=jc.statement_timeout_s,
                               max_queued_batches=jc.max_queued_batches, writer=jc.writer,
                               observer=opts.journal_observer)
        self.node = TradingNode(config, self.journal, universe=opts.universe, calendar=calendar,
                                alert_sinks=sinks_from_env(env))
        if opts.daily_bars is not None:
            self.node.strategies.set_daily_closes(read_daily_closes(opts.daily_bars))
        self.node.restore_from_journal()
        logs.set_session_source(lambda: self.node.session_name)
        self.health = health or HealthMonitor(default_allowance_s=config.ops.heartbeat_allowance_s)
        # Repeats of one alert key are limited on the health monitor's monotonic clock: the market
        # clock stands still between bars and stops with a dead feed (see AlertSystem.rate_clock).
        self.node.alerts.set_rate_clock(self.health.now)
        self.serving = threading.Event()  # set once the ops server listens (bound_port is known)
        self.error: str | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._failure: BaseException | None = None
        self.resumed_from = self.journal.recorded_events
        self.started = time.perf_counter()
        self.feed_done = False
        self.server: Any = None
        self.metrics: Any = None
        self.bound_port = 0
        self._last_bars = -1
        self._feed_alerted = False
        self._bar_due: float | None = None  # paced file: monotonic time the next bar is released

    # --- OpsApp --------------------------------------------------------------------------------
    def status(self) -> dict[str, Any]:
        out = self.node.status()
        out["health"] = self.health.system_health()
        out["journal"] = {"url": _redact(self.journal.url), "pending": self.journal.pending,
                          "written": self.journal.written}
        stats = self.node.alerts.stats()
        stats.pop("recent", None)
        out["alert_delivery"] = stats
        out["broker_connected"] = self.node.execution.connected
        if self.data_feed is not None:
            out["data_feed"] = self.data_feed.status()
        if self.opts.bars is not None and self.bar_file is not None:
            out["bars_file"] = str(Path(self.opts.bars).resolve())  # the dashboard draws its candles from it
        if self.error:
            out["error"] = self.error
        if self.node.restart_info:
            out["restart"] = self.node.restart_info
        if self.lease is not None:
            out["lease"] = self.lease_status()
        return out

    def metrics_text(self) -> bytes:
        if self.metrics is None:
            from live_runner.ops.metrics import RunnerMetrics

            self.metrics = RunnerMetrics(self)
        return self.metrics.render()

    def control(self, command: str, symbol: str = "", source: str = "http") -> dict[str, Any]:
        """Run an operator command on the loop; unknown names raise KeyError."""
        name = CONTROL_COMMANDS[command]
        if symbol and name != "flatten":
            raise KeyError(command)
        node = self.node
        log.info("command %s%s from %s", command, f" {symbol}" if symbol else "", source,
                 extra={"component": "ops_server"})
        try:
            result = node.command(name, source=source, symbol=symbol)
        except Exception as exc:
            node.alerts.raise_alert("command_error", Severity.CRITICAL,
                                    f"{command} from {source} failed: {type(exc).__name__}: {exc}",
                                    component="ops_server")
            raise
        return result

    async def commit_command(self, result: dict[str, Any]) -> str | None:
        """Wait (bounded by ops.command_commit_timeout_s, the loop keeps turning) until the
        command's journal event is committed durably: None when it is, else why not. The command
        is already applied: it is never undone, but the operator is told, and paged, that a crash
        now would lose it."""
        timeout = self.config.ops.command_commit_timeout_s
        try:
            await asyncio.wait_for(asyncio.wrap_future(self.journal.commit()), timeout)
            return None
        except asyncio.TimeoutError:
            problem = f"journal did not commit the command within {timeout:g} s"
        except Exception as exc:
            problem = f"journal could not commit the command: {exc}"
        self.node.alerts.raise_alert("command_not_durable", Severity.CRITICAL,
                                     f"{result.get('command')} applied but not durable: {problem}",
                                     component="ops_server")
        return problem

    def request_stop(self) -> None:
        """Thread-safe: end the run as SIGTERM would (tests, embedding)."""
        loop, stop = self._loop, getattr(self, "stop_event", None)
        if loop is not None and stop is not None and not loop.is_closed():
            loop.call_soon_threadsafe(stop.set)

    # --- loop ------------------------------------------------------------------------------------
    async def run(self) -> dict[str, Any]:
        loop = asyncio.get_running_loop()
        stop = asyncio.Event()
        for sig in (signal.SIGTERM, signal.SIGINT):
            try:
                loop.add_signal_handler(sig, stop.set)
            except (NotImplementedError, RuntimeError):  # not the main thread (tests)
                pass
        self.stop_event = stop
        self._loop = loop
        from live_runner.live.brokers import start_clients, stop_clients

        brokers = [c for c in (self.node.execution.primary, self.node.execution.backup) if c is not None]
        self._fence_clients()
        self._renew_after_setup()
        if self.lease is not None:
            self.lease.start_heartbeat(lambda reason: loop.call_soon_threadsafe(self._on_lease_lost, reason))
        await start_clients(*brokers)  # connect real brokers on this loop (paper: nothing to do)
        await self._start_server()
        watchdog = asyncio.create_task(self._watchdog(stop))
        watchdog.add_done_callback(self._watchdog_done)
        self.node.start()
        gc_quiet.settle()  # start-up's objects frozen; full collections only where the feed waits
        try:
            try:
                await self._feed(stop)
            except JournalDivergence:
                raise  # a refused resume, not a crash: the CLI reports it (exit 3)
            except Exception as exc:
                self._failure = exc
            if self._failure is not None:
                if self.lease_lost is None:
                    self._on_runner_error(self._failure)
                self.node.state = SystemState.ERROR
        finally:
            gc_quiet.restore_default()
            watchdog.cancel()
            left: dict[str, Any] = {}
            if self._failure is None:
                closing = self.node.begin_stop(close_session=not stop.is_set())
                left = await self._drain(closing)
                self.node.finish_stop()
            elif self.lease_lost is None:
                self._flush_after_error()
            self.health.mark_stopped("data_manager", "stopped")
            if self.server is not None:
                await self.server.stop()
            try:
                # After a lost lease, what was appended before the fence is written best effort,
                # briefly: a successor may be about to append (the journal's seq key refuses overlaps).
                self.journal.close(**({"timeout_s": 2.0} if self.lease_lost else {}))
            except RuntimeError:
                if self._failure is None:
                    raise
                # The run already failed (often because of the journal): report that failure
                log.exception("journal close after the runner error failed")
            finally:
                await stop_clients(*brokers)
                self.node.execution.close()
                self.node.alerts.close(2.0)
                if self.lease is not None:
                    self.lease.release()
        summary = summarize(self.node, time.perf_counter() - self.started, self.resumed_from)
        if self._failure is not None:
            summary["error"] = self.error
            summary["system_state"] = self.node.state.value
            if self.lease_lost is not None:
                summary["lease"] = self.lease_status()
                raise LeaseLostError(self.error or "lease lost", summary) from self._failure
            raise RunnerError(self.error or "runner error", summary) from self._failure
        if left:
            summary["shutdown_incomplete"] = left
            raise ShutdownIncomplete(f"gave up waiting for the flatten: positions {left['positions']}, "
                                     f"orders {left['open_orders']}", summary)
        return summary

    async def _drain(self, flatten: bool) -> dict[str, Any]:
        """Shutdown: give the loop turns (bounded by shutdown_flatten_timeout_s) until every order
        the journal holds has reached its broker and every cancel is confirmed, a flatten under
        way at a real broker has filled and, when the session is being flattened (data end,
        flatten_on_shutdown), the portfolio is flat with no order left. Without a flatten
        the resting stop/target (and working entries) stay at the broker on purpose. Returns the
        positions and orders given up on (empty when done); journaled and alerted CRITICAL."""
        node = self.node
        timeout = self.config.shutdown_flatten_timeout_s
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while not self._drained(flatten):
            if loop.time() >= deadline:
                break
            await asyncio.sleep(0.02)
        if self._drained(flatten):
            return {}
        left = {s: p.qty for s, p in sorted(node.portfolio.positions.items())}
        working = sorted(node.orders.open_orders)
        detail = {"positions": left, "open_orders": working, "timeout_s": timeout,
                  "brokers_busy": [getattr(c, "name", "broker") for c in self._clients() if getattr(c, "busy", False)]}
        node.journal.append(node.session_name, node.clock.now_ns(), "shutdown", "incomplete", detail)
        node.alerts.raise_alert("shutdown_incomplete", Severity.CRITICAL,
                                f"shutdown gave up after {timeout:g} s: positions {left or 'none'}, "
                                f"{len(working)} orders still working", component="service")
        return detail

    def _clients(self) -> list[Any]:
        ex = self.node.execution
        return [c for c in (ex.primary, ex.backup) if c is not None]

    def _busy(self) -> bool:
        return any(bool(getattr(c, "busy", False)) for c in self._clients())

    def _drained(self, flatten: bool) -> bool:
        node = self.node
        if self._busy():
            return False
        if flatten:
            return not node.orders.open_orders and not node.portfolio.positions
        # A flatten already under way (emergency stop, flatten command) is waited for at a broker
        # that fills by itself; the paper broker fills only on bars, so its resting sell is left
        # to the restart, as are resting stops, targets and entries.
        real = any(hasattr(c, "busy") for c in self._clients())
        return not (real and any(o.request.role in _FLATTEN_ROLES and o.request.order_type is OrderType.MARKET
                                 for o in node.orders.open_orders.values()))

    def _watchdog_done(self, task: "asyncio.Task[None]") -> None:
        """A crashed watchdog means no more health checks: a runner error like any other."""
        if task.cancelled() or task.exception() is None:
            return
        if self._failure is None:
            self._failure = task.exception()
        getattr(self, "stop_event", asyncio.Event()).set()

    def _on_runner_error(self, exc: BaseException) -> None:
        """Alert CRITICAL and journal what escaped; the run then stops in ERROR (no EOD flatten:
        the state may be inconsistent, so positions and their resting stops are left for the
        restart's reconciliation)."""
        self.error = f"{type(exc).__name__}: {exc}"
        log.critical("runner error, stopping: %s", self.error, exc_info=exc, extra={"component": "service"})
        node = self.node
        frames = traceback.format_exception(type(exc), exc, exc.__traceback__)
        try:
            node.journal.append(node.session_name, node.clock.now_ns(), "runner_error", type(exc).__name__,
                                {"error": self.error, "traceback": "".join(frames)[-4000:],
                                 "bars_processed": node.data.bars_processed})
        except Exception:
            log.exception("could not journal the runner error")
        node.alerts.raise_alert("runner_error", Severity.CRITICAL,
                                f"runner stopped on an error: {self.error}", component="service")

    def _flush_after_error(self) -> None:
        try:
            self.journal.flush()
        except Exception:
            log.exception("journal flush after the runner error failed")

    async def _start_server(self) -> None:
        from live_runner.ops.server import OpsServer

        ops = self.config.ops
        self.server = OpsServer(self, ops.host, ops.port, self.token, max_body=ops.max_body_bytes,
                                timeout_s=ops.request_timeout_s, max_connections=ops.max_connections)
        self.bound_port = await self.server.start()
        self.serving.set()
        log.info("ops server on http://%s:%d", ops.host, self.bound_port)

    async def _feed(self, stop: asyncio.Event) -> None:
        """Release each bar at its close time, `speed` x faster than real time; long gaps skipped.

        Paced and sourced runs hand the journal to its writer after every burst of same-minute
        bars (before waiting for the next), so the journal stays current (health, dashboard) and a
        crash loses at most the burst in flight. An unpaced replay keeps batching by size."""
        on_bar = self.node.data.on_bar
        hand_off = self.journal.hand_off
        idle = gc_quiet.QuietCollector().idle
        if self.data_feed is not None:
            self.data_feed.on_idle = idle
            await self.data_feed.run(self.node, stop)
            await self._finished(stop)
            return
        if self.bar_source is not None:
            # A source may wait long for its next bar: race it against the stop signal.
            bars = self.bar_source.__aiter__()
            stopped = asyncio.ensure_future(stop.wait())
            try:
                while True:
                    nxt = asyncio.ensure_future(bars.__anext__())
                    await asyncio.wait((nxt, stopped), return_when=asyncio.FIRST_COMPLETED)
                    if not nxt.done():
                        nxt.cancel()
                        return
                    try:
                        bar = nxt.result()
                    except StopAsyncIteration:
                        break
                    on_bar(bar)
                    hand_off()  # a bar at a time: a crash loses at most the bar in flight
            finally:
                stopped.cancel()
            await self._finished(stop)
            return
        assert self.bar_file is not None
        speed = self.opts.speed or 0.0
        t0_wall = time.monotonic()
        t0_market: int | None = None
        last = 0
        bars: Iterator[Bar] = self.bar_file.iter_bars()
        budget_end = time.perf_counter() + LOOP_SLICE_S
        for n, bar in enumerate(bars):
            if stop.is_set():
                return
            if not n & 63 and time.perf_counter() >= budget_end:
                # Behind schedule (or unpaced) the loop would run bar after bar without awaiting:
                # give the ops server, the watchdog and SIGTERM their turn every few milliseconds.
                await asyncio.sleep(0)
                budget_end = time.perf_counter() + LOOP_SLICE_S
            if speed:
                close = bar.ts + 60_000_000_000
                if close != last:
                    hand_off()  # the previous minute's burst is complete
                if t0_market is None or close - last > _GAP_SKIP_NS:
                    t0_market, t0_wall = close, time.monotonic()
                last = close
                delay = t0_wall + (close - t0_market) / 1e9 / speed - time.monotonic()
                self._bar_due = self.health.now() + max(delay, 0.0)  # on the health clock
                if delay > 0:
                    idle()
                    try:
                        await asyncio.wait_for(stop.wait(), timeout=delay)
                        return
                    except asyncio.TimeoutError:
                        pass
            on_bar(bar)
        await self._finished(stop)

    async def _finished(self, stop: asyncio.Event) -> None:
        self.feed_done = True
        # Stay up for the operator after the data ends only when asked to (tests, demos).
        while self.opts.linger and not stop.is_set():
            await asyncio.sleep(0.05)

def _redact(url: str) -> str:
    """Never show a password from a journal URL."""
    from live_runner.ops.redact import redact_url

    return redact_url(url)


def run_live(config: SystemConfig, opts: RunOptions) -> dict[str, Any]:
    service = LiveService(config, opts)
    return asyncio.run(service.run())
