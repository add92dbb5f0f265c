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
- Outside regular hours only DAY LIMIT orders with `extended_hours=true` are sent (mapping.py).
- The account's PDT state (`daytrade_count`, `pattern_day_trader`, `equity`) is read at start and
  every `account_refresh_s` (and after sells) and feeds `risk.rules.pdt_rule_factory`.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, Callable

import requests
from alpaca.trading.client import TradingClient

from live_runner.adapters.alpaca.mapping import (
    NotAllowed, Outcome, Snapshot, classify, error_text, parse_trade_update, shares, snapshot,
    to_alpaca,
)
from live_runner.adapters.alpaca.stream import TradeUpdateStream
from live_runner.adapters.base import FillHandler, OrderEventHandler
from live_runner.config import AlpacaConfig, ConfigError, RiskConfig, SystemConfig
from live_runner.models import (
    TERMINAL_STATUSES, Bar, Fill, OrderEvent, OrderRequest, OrderStatus, Side,
)
from live_runner.risk.rules import PdtState, Rule, pdt_rule_factory

log = logging.getLogger("live_runner.adapters.alpaca")

KEY_ENV = "APCA_API_KEY_ID"
SECRET_ENV = "APCA_API_SECRET_KEY"
ZERO = Decimal(0)

NotAcceptedHandler = Callable[[OrderRequest, str, bool], None]
AlertHandler = Callable[[str, str, str], None]
ConnectionHandler = Callable[[bool, str], None]

SENDING, RESOLVING, LIVE, DONE = "sending", "resolving", "live", "done"


@dataclass(slots=True)
class _Tracked:
    request: OrderRequest
    phase: str = SENDING
    broker_id: str = ""
    status: OrderStatus = OrderStatus.SUBMITTED
    filled: int = 0
    notional: Decimal = ZERO
    cancel_requested: bool = False
    cancel_inflight: bool = False
    recovering: bool = False      # fills found by the first lookup are already in the snapshot
    handed_off: bool = False      # judged not accepted and handed to the failover handler


class _TimeoutSession(requests.Session):
    """The SDK's session with a default (connect, read) timeout on every request."""

    def __init__(self, timeout: float) -> None:
        super().__init__()
        self.timeout = (timeout, timeout)

    def request(self, method: str, url: str, *args: Any, **kwargs: Any) -> requests.Response:  # type: ignore[override]
        kwargs.setdefault("timeout", self.timeout)
        return super().request(method, url, *args, **kwargs)


def disable_sdk_retry(rest: Any) -> None:
    """alpaca-py retries 429/504 (order POSTs included) with no public switch: turn it off, and
    fail loudly if a new SDK version moved the attributes instead of silently retrying again."""
    for attr in ("_retry", "_retry_codes"):
        if not hasattr(rest, attr):
            raise RuntimeError(f"alpaca-py has no {attr}: cannot disable its automatic order retry")
    rest._retry = 0
    rest._retry_codes = []


class AlpacaExecutionClient:
    name = "alpaca"

    def __init__(self, config: AlpacaConfig, api_key: str, secret_key: str, *,
                 calendar: Any = None, clock: Callable[[], int] | None = None,
                 name: str = "alpaca", max_workers: int = 4, id_prefix: str = "LR") -> None:
        if not api_key or not secret_key:
            raise ConfigError(f"alpaca: set {KEY_ENV} and {SECRET_ENV} in the environment")
        self.config = config
        self.name = name
        self.now_ns: Callable[[], int] = clock or time.time_ns
        self._rest = TradingClient(api_key, secret_key, paper=config.paper, url_override=config.base_url)
        disable_sdk_retry(self._rest)
        self._rest._session = _TimeoutSession(config.request_timeout_s)
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
        self._orders: dict[str, _Tracked] = {}
        self._by_broker: dict[str, _Tracked] = {}
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

    def risk_rules(self, risk: RiskConfig) -> list[Rule]:
        if not risk.pdt_check:
            return []
        return [pdt_rule_factory(self.pdt_state, risk.pdt_max_day_trades, risk.pdt_min_equity)]

    def pdt_state(self) -> PdtState | None:
        return self.pdt

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
        cid = request.client_order_id
        if cid in self._orders:
            log.error("submit of %s again refused: never sent twice", cid, extra={"client_order_id": cid})
            return
        try:
            areq = to_alpaca(request, self._phase(request.ts))
        except NotAllowed as exc:
            t = self._orders[cid] = _Tracked(request)
            self.counters["refused_locally"] += 1
            self._final(t, OrderStatus.REJECTED, f"{self.name}: {exc}")
            return
        t = self._orders[cid] = _Tracked(request)
        self._spawn(self._submit_flow(t, areq), f"submit {cid}")

    def recover(self, request: OrderRequest, *, filled: int = 0, notional: Decimal = ZERO) -> None:
        """An order the journal holds: look it up by client id, never send it again. `filled` and
        `notional`: what the journal already has of its fills, so only newer ones are reported
        (exec ids are cumulative quantities: the same ids as before the crash)."""
        cid = request.client_order_id
        if cid in self._orders:
            return
        t = self._orders[cid] = _Tracked(request, phase=RESOLVING, recovering=True, filled=filled,
                                         notional=notional)
        self._spawn(self._recover_flow(t), f"recover {cid}")

    def cancel(self, client_order_id: str) -> None:
        t = self._orders.get(client_order_id)
        if t is None or t.phase == DONE:
            return
        t.cancel_requested = True
        if t.phase == LIVE and t.broker_id and not t.cancel_inflight:
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

    def positions(self) -> dict[str, int] | None:
        """Shares held at Alpaca: the snapshot read at start plus every fill since (None until the
        snapshot could be read)."""
        if self._base_positions is None:
            return None
        out = dict(self._base_positions)
        for sym, qty in self._fill_positions.items():
            out[sym] = out.get(sym, 0) + qty
        return {s: q for s, q in sorted(out.items()) if q}

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

    # --- flows (tasks on the runner's loop) -----------------------------------------------------
    async def _submit_flow(self, t: _Tracked, areq: Any) -> None:
        await self._boot()
        cid = t.request.client_order_id
        resends = 0
        while not self._closed:
            if t.cancel_requested:  # never sent, or a 429 and the lookup proved it absent
                self._final(t, OrderStatus.CANCELED, "canceled before the broker accepted it")
                return
            self.posts[cid] += 1
            try:
                order = await self._call(self._rest.submit_order, areq)
                snap = snapshot(order)
            except Exception as exc:
                outcome, reason = classify(exc), error_text(exc)
                if outcome is Outcome.NOT_SENT:
                    self._set_available(False, reason)
                    self._hand_off(t, f"not sent: {reason}")
                    return
                self._set_available(True)
                if outcome is Outcome.REFUSED:
                    self._raise("alpaca_unauthorized", "critical", f"{self.name} refused the keys: {reason}")
                    self._hand_off(t, reason)
                    return
                if outcome is Outcome.REJECTED:
                    self._final(t, OrderStatus.REJECTED, reason)
                    return
                if outcome is Outcome.RATE_LIMITED:
                    self.counters["rate_limited"] += 1
                    resends += 1
                    await asyncio.sleep(self._backoff(resends))
                    found = await self._resolve(t, reason, confirmations=1, settle=0.0)
                    if found is not False:
                        return
                    if resends > self.config.rate_limit_resends:
                        self._hand_off(t, f"rate limited: {resends} x HTTP 429")
                        return
                    continue
                self.counters["ambiguous"] += 1
                log.warning("submit of %s ambiguous (%s): looking it up by client id", cid, reason,
                            extra={"client_order_id": cid})
                found = await self._resolve(t, reason)
                if found is False:
                    if outcome is Outcome.DUPLICATE:
                        self._raise(f"alpaca_duplicate:{cid}", "critical",
                                    f"{cid}: broker says the id exists but cannot find it")
                        self._final(t, OrderStatus.REJECTED, f"{reason}; yet not found by client id")
                    else:
                        self._hand_off(t, f"{reason}; not found by client id")
                return
            self._set_available(True)
            self._apply(t, snap)
            return

    async def _recover_flow(self, t: _Tracked) -> None:
        await self._boot()
        found = await self._resolve(t, "recovered from the journal")
        t.recovering = False
        if found is False:
            self._hand_off(t, "not found at the broker by client id")

    async def _resolve(self, t: _Tracked, reason: str, *, confirmations: int = 2,
                       settle: float | None = None) -> bool | None:
        """Look the order up by client id until the broker answers. True: found (and applied);
        False: not there (`confirmations` answers, `settle` apart); None: closed meanwhile."""
        cid = t.request.client_order_id
        if t.phase == SENDING:
            t.phase = RESOLVING
        settle = self.config.lookup_settle_s if settle is None else settle
        delay, misses, failures = settle, 0, 0
        while not self._closed:
            if t.phase in (LIVE, DONE):
                return True  # the stream reported it meanwhile
            if delay > 0:
                await asyncio.sleep(delay)
                if t.phase in (LIVE, DONE):
                    return True
            self.lookups[cid] += 1
            try:
                snap = snapshot(await self._call(self._rest.get_order_by_client_id, cid))
            except Exception as exc:
                if classify(exc) is Outcome.NOT_FOUND:
                    self._set_available(True)
                    misses += 1
                    if misses >= confirmations:
                        t.phase = SENDING
                        return False
                    delay = max(settle, 0.05)
                    continue
                failures += 1
                self.counters["lookup_failures"] += 1
                self._set_available(classify(exc) is not Outcome.NOT_SENT, error_text(exc))
                if failures == 1:
                    self._raise(f"alpaca_unknown:{cid}", "warning",
                                f"order {cid} outcome unknown ({reason}); {self.name} unreachable "
                                f"({error_text(exc)}): looking it up until it answers")
                delay = min(self.config.lookup_retry_max_s, max(settle, 0.1) * 2 ** min(failures, 10))
                continue
            self._set_available(True)
            self._apply(t, snap)
            return True
        return None

    async def _cancel_flow(self, t: _Tracked) -> None:
        t.cancel_inflight = True
        try:
            for attempt in range(5):
                if t.phase == DONE or self._closed:
                    return
                try:
                    await self._call(self._rest.cancel_order_by_id, t.broker_id)
                except Exception as exc:  # 422 not cancelable (filled), timeouts: read the state
                    log.warning("cancel of %s: %s", t.request.client_order_id, error_text(exc),
                                extra={"client_order_id": t.request.client_order_id})
                # The stream reports 'canceled'; read the order when it has not within a moment.
                deadline = time.monotonic() + min(self.config.stale_after_s, 0.5 * (attempt + 1))
                while t.phase != DONE and time.monotonic() < deadline and not self._closed:
                    await asyncio.sleep(0.02)
                if t.phase != DONE:
                    await self._poll_one(t)
        finally:
            t.cancel_inflight = False

    async def _poll_one(self, t: _Tracked) -> bool:
        try:
            snap = snapshot(await self._call(self._rest.get_order_by_id, t.broker_id))
        except Exception as exc:
            self._set_available(classify(exc) is not Outcome.NOT_SENT, error_text(exc))
            return False
        self._set_available(True)
        return self._apply(t, snap)

    async def _poll_open(self, why: str) -> bool:
        """Read every open order over REST; True when that found news the stream had not given."""
        self._last_poll = time.monotonic()
        self.counters["polls"] += 1
        changed = False
        for t in [t for t in self._orders.values() if t.phase == LIVE and t.broker_id]:
            changed |= await self._poll_one(t)
        if changed:
            log.warning("REST read of open orders (%s) found updates the stream had not delivered", why)
        return changed

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

    async def _refresh_account(self) -> bool:
        try:
            acct = await self._call(self._rest.get_account)
        except Exception as exc:
            self._set_available(classify(exc) is not Outcome.NOT_SENT, error_text(exc))
            log.warning("%s account read failed: %s", self.name, error_text(exc))
            return False
        self._set_available(True)
        self.account = {"account_number": acct.account_number,
                        "status": getattr(acct.status, "value", str(acct.status))}
        self.pdt = PdtState(int(acct.daytrade_count or 0), bool(acct.pattern_day_trader),
                            float(acct.equity or 0))
        return True

    async def _list_ours(self) -> None:
        """Today's orders under our prefix (see adoption.py); a failed read only disables adoption."""
        from live_runner.adapters.alpaca import adoption

        now = self.now_ns()
        try:
            rows = await self._call(self._rest.get_orders, adoption.orders_query(now - 86_400_000_000_000))
        except Exception as exc:  # noqa: BLE001 - reconciliation still compares positions
            log.warning("%s: listing orders for adoption failed: %s", self.name, error_text(exc))
            return
        self._listed = adoption.ours(list(rows), self._prefix, now)

    def unclaimed(self) -> list[OrderRequest]:
        """Ours at Alpaca at start, neither sent nor recovered by this run."""
        return [r for r in self._listed if r.client_order_id not in self._orders]

    async def _snapshot_positions(self) -> bool:
        try:
            rows = await self._call(self._rest.get_all_positions)
        except Exception as exc:
            self._set_available(classify(exc) is not Outcome.NOT_SENT, error_text(exc))
            return False
        base: dict[str, int] = {}
        for p in rows:
            qty = shares(p.qty)
            if getattr(p.side, "value", p.side) == "short" and qty > 0:
                qty = -qty
            base[p.symbol] = base.get(p.symbol, 0) + qty
        self._base_positions = base
        self._fill_positions = {}
        return True

    # --- the stream (StreamOwner) ----------------------------------------------------------------
    def on_stream_message(self, msg: dict[str, Any]) -> None:
        if msg.get("stream") != "trade_updates":
            return
        try:
            event, snap, extras = parse_trade_update(msg)
        except ValueError as exc:
            self.on_stream_malformed(f"trade update refused: {exc}")
            return
        self.counters["updates"] += 1
        t = self._orders.get(snap.client_order_id) or self._by_broker.get(snap.broker_id)
        if t is None:
            self._foreign(event, snap, extras)
            return
        if t.handed_off:
            self._raise(f"alpaca_late:{snap.client_order_id}", "critical",
                        f"{snap.client_order_id} was judged not accepted by {self.name} but it "
                        f"reports it ({event}): check both brokers")
        self._apply(t, snap, extras)

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

    # --- reports ---------------------------------------------------------------------------------
    def _apply(self, t: _Tracked, snap: Snapshot, extras: dict[str, Any] | None = None) -> bool:
        """Bring our view of one order up to `snap`; emits only what is new. True if anything was."""
        changed = False
        if snap.broker_id and not t.broker_id:
            t.broker_id = snap.broker_id
            self._by_broker[snap.broker_id] = t
        if t.phase in (SENDING, RESOLVING):
            t.phase = LIVE
        mapped = snap.mapped
        ts = snap.ts or self.now_ns()
        if t.status is OrderStatus.SUBMITTED and mapped is not None and mapped is not OrderStatus.REJECTED:
            t.status = OrderStatus.ACCEPTED
            self._on_event(OrderEvent(t.request.client_order_id, OrderStatus.ACCEPTED, ts,
                                      broker_order_id=t.broker_id))
            changed = True
        if snap.filled_qty > t.filled:
            self._fill(t, snap, extras or {})
            changed = True
        if mapped in (OrderStatus.CANCELED, OrderStatus.EXPIRED, OrderStatus.REJECTED):
            changed |= self._final(t, mapped, snap.reason or f"{self.name}: {snap.status}", ts)
        elif t.filled >= t.request.qty:
            t.status = OrderStatus.FILLED
            t.phase = DONE
        if t.cancel_requested and t.phase == LIVE and not t.cancel_inflight:
            self._spawn(self._cancel_flow(t), "cancel")
        return changed

    def _fill(self, t: _Tracked, snap: Snapshot, extras: dict[str, Any]) -> None:
        req = t.request
        cum = min(snap.filled_qty, req.qty)
        delta = cum - t.filled
        if delta <= 0:
            return
        qty_hint, price_hint = extras.get("qty"), extras.get("price")
        if qty_hint and price_hint and int(qty_hint) == delta:
            price = Decimal(str(price_hint))
        elif snap.filled_avg_price > 0:
            price = (snap.filled_avg_price * cum - t.notional) / delta
        else:
            price = Decimal(str(price_hint or 0))
        t.filled = cum
        t.notional += price * delta
        signed = delta if req.side is Side.BUY else -delta
        if not t.recovering:
            self._fill_positions[req.symbol] = self._fill_positions.get(req.symbol, 0) + signed
        ts = extras.get("ts") or snap.ts or self.now_ns()
        self.counters["fills"] += 1
        self._on_fill(Fill(req.client_order_id, f"{t.broker_id}:{cum}", req.symbol, req.side, delta,
                           round(float(price), 4), ZERO, ts))
        if req.side is Side.SELL:  # may have been a day trade: re-read the PDT count soon
            self._spawn(self._refresh_account(), "account")

    def _final(self, t: _Tracked, status: OrderStatus, reason: str, ts: int | None = None) -> bool:
        t.phase = DONE
        if t.status in TERMINAL_STATUSES:
            return False
        t.status = status
        self._on_event(OrderEvent(t.request.client_order_id, status, ts or self.now_ns(), reason,
                                  broker_order_id=t.broker_id))
        return True

    def _hand_off(self, t: _Tracked, reason: str) -> None:
        """Provably not accepted: to the failover handler, or REJECTED without one."""
        self.counters["not_accepted"] += 1
        if t.cancel_requested:
            self._final(t, OrderStatus.CANCELED, f"canceled; {reason}")
            return
        handler = self._not_accepted
        if handler is None:
            self._final(t, OrderStatus.REJECTED, f"not accepted by {self.name}: {reason}")
            return
        t.phase = DONE
        t.handed_off = True
        handler(t.request, f"{self.name}: {reason}", t.recovering)

    def _foreign(self, event: str, snap: Snapshot, extras: dict[str, Any]) -> None:
        """An order the runner did not place (manual, another process): its fills still move the
        positions at the broker, so reconciliation sees them."""
        self.counters["foreign_updates"] += 1
        if event in ("fill", "partial_fill") and extras.get("qty") and snap.side is not None:
            qty = int(extras["qty"])
            signed = qty if snap.side is Side.BUY else -qty
            self._fill_positions[snap.symbol] = self._fill_positions.get(snap.symbol, 0) + signed
            self._raise(f"alpaca_foreign:{snap.symbol}", "warning",
                        f"{self.name}: fill of an order the runner did not place ({snap.client_order_id})")

    # --- helpers ---------------------------------------------------------------------------------
    def _phase(self, ts: int) -> str:
        if self._calendar is None:
            from live_runner.calendar import MarketCalendar

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
            self._raise("alpaca_internal", "critical", f"{task.get_name()} failed: {type(exc).__name__}: {exc}")

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
