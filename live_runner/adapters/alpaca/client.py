"""AlpacaExecutionClient: orders through alpaca-py, never twice.

- The SDK retries every request on 429/504 three times, order POSTs included, so an accepted order
  whose answer was lost comes back as 422 "client_order_id must be unique". Its retry is switched
  off (`disable_sdk_retry`); the SDK has no HTTP timeout, so its session gets one.
- Blocking SDK calls run in a small thread pool; the runner's loop never waits on the network.
  `submit`/`cancel`/`recover` return at once and report through the handlers, from the loop.
- A submit's outcome decides what happens next:
  * answered: the order is tracked, reports follow from the trade-updates stream;
  * never sent (connection refused, connect timeout) or refused (401): provably not accepted;
  * ambiguous (timeout, 5xx, a dropped connection, an unreadable answer) or 422 duplicate: the
    order is looked up by client id until the broker answers; twice "not found", `lookup_settle_s`
    apart, proves it was not accepted; the stream reporting it ends the search too;
  * 429: looked up, then sent again with the same client id (bounded);
  * a business rejection (403, other 4xx): REJECTED with Alpaca's message.
  "Not accepted" goes to the ExecutionEngine's failover handler (which may route the order to the
  backup broker) or, without one, becomes REJECTED. It is never sent again blindly.
- Fills are reported from cumulative quantities (`exec_id = <broker order id>:<cumulative qty>`),
  so the stream, its duplicates and REST reads of the same order can never count a share twice.
- A staleness watchdog reads open orders over REST when the stream has been quiet for
  `stale_after_s`; if that finds something the stream did not deliver, the stream is reconnected.
- Exits are broker-native (exits.py): a position's stop and target are ONE `order_class: oco`
  order, resized with a replace (PATCH), because Alpaca reserves shares for every open sell and
  refuses a second sell of the same shares (403). A stop or target refused raises CRITICAL
  `unprotected:SYMBOL`. A cancel of an order already done is a quiet no-op.
- Fail closed: an exception while applying a valid report, a fill of an unknown order under our
  prefix, or a failed adoption listing goes to the fault handler (`set_fault_handler`): the node
  halts and reconciles. A message that does not parse is only malformed (re-read over REST).
- Outside regular hours only DAY LIMIT orders with `extended_hours=true` are sent (mapping.py).
- The account's PDT state (`daytrade_count`, `pattern_day_trader`, `equity`) is read at start and
  every `account_refresh_s` (and after sells); `pdt_state()` feeds the risk rule the node wires to
  it (risk.rules.pdt_rule_factory, live.brokers.broker_risk_rules).
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from decimal import Decimal
from typing import Any, Callable

from alpaca.trading.client import TradingClient

from live_runner.adapters.alpaca.account import AccountState
from live_runner.adapters.alpaca.exits import ExitPairs
from live_runner.adapters.alpaca.flows import OrderFlows
from live_runner.adapters.alpaca.mapping import NotAllowed, parse_trade_update, to_alpaca
from live_runner.adapters.alpaca.reports import Reports
from live_runner.adapters.alpaca.stream import TradeUpdateStream
from live_runner.adapters.alpaca.tracking import (
    DONE, LIVE, RESOLVING, SENDING, ZERO, AlertHandler, ConnectionHandler, FaultHandler,
    NotAcceptedHandler, TimeoutSession, Tracked, disable_sdk_retry,
)
from live_runner.core.clients import FillHandler, GatedSends, OrderEventHandler, PdtState
from live_runner.core.config import AlpacaConfig, ConfigError, SystemConfig
from live_runner.core.models import Bar, OrderRequest, OrderStatus

log = logging.getLogger("live_runner.adapters.alpaca")

KEY_ENV = "APCA_API_KEY_ID"
SECRET_ENV = "APCA_API_SECRET_KEY"


class AlpacaExecutionClient(GatedSends, OrderFlows, ExitPairs, Reports, AccountState):
    name = "alpaca"
    native_oco = True   # submit_oco / replace_exits (exits.py)

    def __init__(self, config: AlpacaConfig, api_key: str, secret_key: str, *,
                 calendar: Any = None, clock: Callable[[], int] | None = None,
                 wall_clock: Callable[[], int] = time.time_ns,
                 name: str = "alpaca", max_workers: int = 4, id_prefix: str = "LR") -> None:
        if not api_key or not secret_key:
            raise ConfigError(f"alpaca: set {KEY_ENV} and {SECRET_ENV} in the environment")
        self.config = config
        self.name = name
        self.now_ns: Callable[[], int] = clock or time.time_ns   # the market's (may read 0 early)
        self.wall_ns: Callable[[], int] = wall_clock   # real time: the adoption listing's bound
        self._rest = TradingClient(api_key, secret_key, paper=config.paper, url_override=config.base_url)
        disable_sdk_retry(self._rest)
        self._rest._session = TimeoutSession(config.request_timeout_s)
        self._stream = TradeUpdateStream(
            self, api_key, secret_key, paper=config.paper, url=config.stream_url,
            min_backoff=config.reconnect_min_s, max_backoff=config.reconnect_max_s,
            open_timeout=config.request_timeout_s)
        self._calendar = calendar
        self._pool = ThreadPoolExecutor(max_workers, thread_name_prefix=f"{name}-rest")
        self._on_event: OrderEventHandler = lambda e: None
        self._on_fill: FillHandler = lambda f: None
        self._not_accepted: NotAcceptedHandler | None = None
        self._alert: AlertHandler | None = None
        self._connection: ConnectionHandler | None = None
        self._fault_handler: FaultHandler | None = None
        self._orders: dict[str, Tracked] = {}
        self._by_broker: dict[str, Tracked] = {}
        self._tasks: set[asyncio.Task[Any]] = set()
        self._boot_task: asyncio.Task[None] | None = None
        self._closed = False
        self.available = True          # REST answered lately (False after a refused connection)
        self._connected: bool | None = None
        self._reporting = False  # connection changes are reported once start-up is over
        self.posts: Counter[str] = Counter()     # POSTs sent per client order id
        self.lookups: Counter[str] = Counter()   # lookups by client order id
        self.counters: Counter[str] = Counter()  # malformed, stream_stale, ambiguous, ...
        self._base_positions: dict[str, int] | None = None
        self._prefix = id_prefix
        self._listed: list[OrderRequest] = []  # ours at Alpaca at start (adoption after a crash)
        self._fill_positions: dict[str, int] = {}
        self.pdt: PdtState | None = None
        self.account: dict[str, Any] = {}
        self._last_poll = 0.0

    @classmethod
    def from_config(cls, config: SystemConfig | AlpacaConfig, environ: dict[str, str] | None = None,
                    **kwargs: Any) -> "AlpacaExecutionClient":
        """Keys only from the environment (APCA_API_KEY_ID, APCA_API_SECRET_KEY)."""
        cfg = config.alpaca if isinstance(config, SystemConfig) else config
        if isinstance(config, SystemConfig):
            kwargs.setdefault("id_prefix", config.session_id_prefix)
        env = os.environ if environ is None else environ
        return cls(cfg, env.get(KEY_ENV, ""), env.get(SECRET_ENV, ""), **kwargs)

    # --- wiring ------------------------------------------------------------------------------
    def set_handlers(self, on_event: OrderEventHandler, on_fill: FillHandler) -> None:
        self._on_event = on_event
        self._on_fill = on_fill

    def set_not_accepted_handler(self, handler: NotAcceptedHandler | None) -> None:
        self._not_accepted = handler

    def set_alert_handler(self, handler: AlertHandler | None) -> None:
        self._alert = handler

    def set_connection_handler(self, handler: ConnectionHandler | None) -> None:
        self._connection = handler

    def set_fault_handler(self, handler: FaultHandler | None) -> None:
        """(key, message): a report the runner could not apply, a fill of an order under our
        prefix that nobody tracks, a failed adoption listing. The node halts and reconciles."""
        self._fault_handler = handler

    # --- lifecycle -----------------------------------------------------------------------------
    async def start(self, wait_stream: bool = True) -> None:
        """Read the account and positions, start the stream and the watchdog; with `wait_stream`,
        wait (at most `request_timeout_s`) until the stream listens."""
        await self._boot()
        if wait_stream:
            deadline = time.monotonic() + self.config.request_timeout_s
            while not self._stream.listening and time.monotonic() < deadline and not self._closed:
                await asyncio.sleep(0.02)
        self._reporting = True
        self._update_connection()

    def _boot(self) -> "asyncio.Future[None]":
        if self._boot_task is None:
            self._boot_task = asyncio.get_running_loop().create_task(self._boot_once())
        return asyncio.shield(self._boot_task)

    async def _boot_once(self) -> None:
        await self._refresh_account()
        await self._snapshot_positions()
        await self._list_ours()
        self._stream.start()
        self._spawn(self._watchdog(), "watchdog")

    async def aclose(self) -> None:
        if self._closed:
            return
        self._closed = True
        await self._stream.stop()
        tasks = [t for t in self._tasks if not t.done()]
        for t in tasks:
            t.cancel()
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)
        self._pool.shutdown(wait=False, cancel_futures=True)

    def close(self) -> None:
        """Synchronous close (ExecutionEngine.close): tasks are cancelled on the loop."""
        if self._closed:
            return
        self._closed = True
        try:
            self._stream.cancel()
            for t in list(self._tasks):
                t.cancel()
        except RuntimeError:  # the loop is already closed
            pass
        self._pool.shutdown(wait=False, cancel_futures=True)

    @property
    def connected(self) -> bool:
        return self.available and self._stream.connected

    # --- orders --------------------------------------------------------------------------------
    def submit(self, request: OrderRequest) -> None:
        if not self.may_send("submit"):  # the live service's lease fence
            return
        cid = request.client_order_id
        if cid in self._orders:
            log.error("submit of %s again refused: never sent twice", cid, extra={"client_order_id": cid})
            return
        try:
            areq = to_alpaca(request, self._phase(request.ts))
        except NotAllowed as exc:
            t = self._orders[cid] = Tracked(request)
            self.counters["refused_locally"] += 1
            self._final(t, OrderStatus.REJECTED, f"{self.name}: {exc}")
            return
        t = self._orders[cid] = Tracked(request)
        self._spawn(self._submit_flow(t, areq), f"submit {cid}")

    def recover(self, request: OrderRequest, *, filled: int = 0, notional: Decimal = ZERO) -> None:
        """An order the journal holds: look it up by client id, never send it again. `filled` and
        `notional`: what the journal already has of its fills, so only newer ones are reported
        (exec ids are cumulative quantities: the same ids as before the crash)."""
        cid = request.client_order_id
        if cid in self._orders:
            return
        t = self._orders[cid] = Tracked(request, phase=RESOLVING, recovering=True, filled=filled,
                                         notional=notional)
        self._link_recovered_pair(t)
        self._spawn(self._recover_flow(t), f"recover {cid}")

    def _link_recovered_pair(self, t: Tracked) -> None:
        """An OCO's legs recovered from the journal know each other again (a resize after the
        restart PATCHes the parent and maps the new leg), whichever is recovered first."""
        req = t.request
        group, cid = req.oco_group, req.client_order_id
        if not group:
            return
        if group != cid:  # the stop leg: its parent is the target named by the group
            t.parent = group
            parent = self._orders.get(group)
            if parent is not None:
                parent.leg = cid
            return
        for other in self._orders.values():
            o = other.request
            if o.oco_group == cid and o.client_order_id != cid and other.phase != DONE:
                t.leg, other.parent = o.client_order_id, cid

    def cancel(self, client_order_id: str) -> None:
        if not self.may_send("cancel"):  # the live service's lease fence
            return
        t = self._orders.get(client_order_id)
        if t is None or t.phase == DONE:
            return
        t.cancel_requested = True
        if t.phase == LIVE and t.broker_id and not t.cancel_inflight:
            t.cancel_inflight = True  # now, not when the task first runs: one DELETE per cancel
            self._spawn(self._cancel_flow(t), f"cancel {client_order_id}")
        # SENDING/RESOLVING: canceled once the outcome is known (or never sent at all)

    def on_bar(self, bar: Bar) -> None:
        """A real broker sees the market itself."""

    def end_session(self, ts: int) -> None:
        """Day orders expire at Alpaca; the stream reports them ('expired')."""

    @property
    def resuming(self) -> bool:
        """True while orders recovered from the journal are still being looked up: the runner
        reconciles positions only once their fills are in."""
        return any(t.recovering for t in self._orders.values())

    @property
    def busy(self) -> bool:
        """An order whose outcome is still being decided (sent, looked up, or being canceled)."""
        return any(t.phase in (SENDING, RESOLVING) or t.cancel_inflight for t in self._orders.values())

    def open_orders(self) -> list[str]:
        return sorted(cid for cid, t in self._orders.items() if t.phase != DONE)

    def status(self) -> dict[str, Any]:
        return {"name": self.name, "connected": self.connected, "available": self.available,
                "stream_connected": self._stream.connected, "stream_connects": self._stream.connects,
                "open_orders": len(self.open_orders()), "positions": self.positions(),
                "pdt": None if self.pdt is None else {"daytrade_count": self.pdt.daytrade_count,
                                                      "pattern_day_trader": self.pdt.pattern_day_trader,
                                                      "equity": self.pdt.equity},
                "counters": dict(sorted(self.counters.items()))}

    async def check(self) -> dict[str, Any]:
        """What `check-connections` reports: can we reach it, with which account."""
        ok = await self._refresh_account()
        return {"broker": self.name, "endpoint": str(self._rest._base_url),
                "stream": self._stream.endpoint, "paper": self.config.paper, "reachable": ok,
                "account": self.account.get("account_number"), "status": self.account.get("status")}

    async def _watchdog(self) -> None:
        cfg = self.config
        tick = min(1.0, cfg.stale_after_s / 4)
        next_account = time.monotonic() + cfg.account_refresh_s
        while not self._closed:
            await asyncio.sleep(tick)
            try:
                self._reporting = True
                self._update_connection()
                now = time.monotonic()
                if self._base_positions is None:
                    await self._snapshot_positions()
                if any(t.phase == LIVE for t in self._orders.values()):
                    quiet = now - self._stream.last_frame_mono
                    stream_up = self._stream.connected
                    if (quiet >= cfg.stale_after_s or not stream_up) and now - self._last_poll >= cfg.stale_after_s:
                        if await self._poll_open("stream quiet" if stream_up else "stream down") and stream_up:
                            self.counters["stream_stale"] += 1
                            self._raise("alpaca_stream_stale", "warning",
                                        f"{self.name} trade stream missed updates ({quiet:.1f} s quiet): reconnecting")
                            self._stream.force_reconnect()
                if now >= next_account:
                    next_account = now + cfg.account_refresh_s
                    await self._refresh_account()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("alpaca watchdog")

    # --- the stream (StreamOwner) ----------------------------------------------------------------
    def on_stream_message(self, msg: dict[str, Any]) -> None:
        """A message that does not parse is malformed (re-read over REST); an exception while the
        runner applies a valid report is a fault (the node halts and reconciles)."""
        if msg.get("stream") != "trade_updates":
            return
        try:
            event, snap, extras = parse_trade_update(msg)
        except ValueError as exc:
            self.on_stream_malformed(f"trade update refused: {exc}")
            return
        self.counters["updates"] += 1
        try:
            t = self._orders.get(snap.client_order_id) or self._by_broker.get(snap.broker_id)
            if t is None:
                self._foreign(event, snap, extras)
                return
            if t.handed_off:
                self._raise(f"alpaca_late:{snap.client_order_id}", "critical",
                            f"{snap.client_order_id} was judged not accepted by {self.name} but it "
                            f"reports it ({event}): check both brokers")
            self._apply(t, snap, extras)
        except Exception as exc:  # noqa: BLE001 - fail closed, never swallowed
            log.exception("%s: applying %s of %s failed", self.name, event, snap.client_order_id)
            self.on_stream_fault(f"applying {event} of {snap.client_order_id} failed: "
                                 f"{type(exc).__name__}: {exc}")

    def on_stream_fault(self, detail: str) -> None:
        self._fault("alpaca_apply_failed", f"{self.name} trade update: {detail}")

    def on_stream_malformed(self, detail: str) -> None:
        self.counters["malformed"] += 1
        log.error("%s trade stream: malformed message (%s); re-reading open orders", self.name, detail)
        self._raise("alpaca_malformed", "warning", f"{self.name} trade stream: malformed message: {detail}")
        self._spawn(self._poll_open("malformed message"), "poll")

    def on_stream_up(self) -> None:
        self.counters["stream_connects"] += 1
        self._reporting = True
        self._update_connection()
        if any(t.phase == LIVE for t in self._orders.values()):
            self._spawn(self._poll_open("stream (re)connected"), "poll")

    def on_stream_down(self, detail: str) -> None:
        self._update_connection(detail)

    def on_stream_auth_failed(self) -> None:
        self.counters["stream_auth_failures"] += 1
        self._raise("alpaca_stream_auth", "critical", f"{self.name} trade stream login rejected")

    # --- helpers ---------------------------------------------------------------------------------
    def _phase(self, ts: int) -> str:
        if self._calendar is None:
            from live_runner.core.calendar import MarketCalendar

            self._calendar = MarketCalendar()
        try:
            st = self._calendar.session_for_ts(ts)
        except ValueError:
            return "closed"
        return st.phase(ts) if st is not None else "closed"

    async def _call(self, fn: Callable[..., Any], *args: Any) -> Any:
        loop = asyncio.get_running_loop()
        fut = loop.run_in_executor(self._pool, fn, *args)
        try:
            return await asyncio.wait_for(fut, self.config.request_timeout_s * 2 + 1.0)
        except asyncio.TimeoutError:
            self.counters["timeouts"] += 1
            raise

    def _backoff(self, n: int) -> float:
        return min(self.config.lookup_retry_max_s, max(self.config.lookup_settle_s, 0.05) * 2 ** (n - 1))

    def _spawn(self, coro: Any, what: str) -> None:
        if self._closed:
            coro.close()
            return
        try:
            task = asyncio.get_running_loop().create_task(coro, name=f"{self.name} {what}")
        except RuntimeError:
            coro.close()
            raise RuntimeError(f"{self.name}: needs a running asyncio loop (the live service's)") from None
        self._tasks.add(task)
        task.add_done_callback(self._task_done)

    def _task_done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if task.cancelled():
            return
        exc = task.exception()
        if exc is not None:
            self.counters["task_errors"] += 1
            log.error("%s: %s failed", self.name, task.get_name(), exc_info=exc)
            self._fault("alpaca_internal", f"{task.get_name()} failed: {type(exc).__name__}: {exc}")

    def _set_available(self, ok: bool, detail: str = "") -> None:
        if ok != self.available:
            self.available = ok
            log.warning("%s REST %s%s", self.name, "reachable" if ok else "unreachable",
                        f": {detail}" if detail else "")
        self._update_connection(detail)

    def _update_connection(self, detail: str = "") -> None:
        if not self._reporting:
            return
        now = self.connected
        if now == self._connected:
            return
        first = self._connected is None
        self._connected = now
        if first and now:
            return
        if self._connection is not None:
            self._connection(now, detail or ("stream and REST up" if now else "stream or REST down"))

    def _raise(self, key: str, severity: str, message: str) -> None:
        (log.critical if severity == "critical" else log.warning)(message)
        if self._alert is not None:
            self._alert(key, severity, message)
