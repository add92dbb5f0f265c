"""The Alpaca client's order flows: tasks on the runner's loop that send, look up, cancel and
re-read orders, and decide what an answer (or its absence) means. See client.py for the rules."""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter
from typing import Any, Callable

from live_runner.adapters.alpaca.mapping import Outcome, Snapshot, classify, error_text, snapshot
from live_runner.adapters.alpaca.tracking import DONE, LIVE, RESOLVING, SENDING, Tracked
from live_runner.core.config import AlpacaConfig
from live_runner.core.models import OrderRole, OrderStatus

log = logging.getLogger("live_runner.adapters.alpaca")


class OrderFlows:
    """Mixed into AlpacaExecutionClient (which provides the attributes annotated here)."""

    name: str
    config: AlpacaConfig
    _rest: Any
    _closed: bool
    _orders: dict[str, Tracked]
    posts: Counter[str]
    lookups: Counter[str]
    counters: Counter[str]
    _last_poll: float
    _boot: Callable[[], Any]
    _call: Callable[..., Any]
    _set_available: Callable[..., None]
    _apply: Callable[..., bool]
    _final: Callable[..., bool]
    _hand_off: Callable[[Tracked, str], None]
    _raise: Callable[[str, str, str], None]
    _backoff: Callable[[int], float]

    async def _submit_flow(self, t: Tracked, areq: Any) -> None:
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

    async def _recover_flow(self, t: Tracked) -> None:
        await self._boot()
        req = t.request
        found: bool | None = False
        if req.role is OrderRole.STOP and req.oco_group and req.oco_group != req.client_order_id:
            # an OCO leg: Alpaca knows it under a client id of its own; find it through its parent
            found = await self._resolve(t, "recovered from the journal (OCO leg)", via=req.oco_group)
        if found is False:
            found = await self._resolve(t, "recovered from the journal")
        t.recovering = False
        if found is False:
            self._hand_off(t, "not found at the broker by client id")

    async def _resolve(self, t: Tracked, reason: str, *, confirmations: int = 2,
                       settle: float | None = None, via: str = "") -> bool | None:
        """Look the order up by client id until the broker answers. True: found (and applied);
        False: not there (`confirmations` answers, `settle` apart); None: closed meanwhile.
        `via`: look up this parent instead and take its stop leg (an OCO exit's stop)."""
        cid = via or t.request.client_order_id
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
                snap: Snapshot | None = snapshot(await self._call(self._rest.get_order_by_client_id, cid))
                if via:
                    snap = next((leg for leg in snap.legs), None) if snap else None
                    if snap is None:
                        t.phase = SENDING
                        return False
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
            assert snap is not None
            self._apply(t, snap)
            return True
        return None

    async def _cancel_flow(self, t: Tracked) -> None:
        t.cancel_inflight = True
        try:
            for attempt in range(5):
                if t.phase == DONE or self._closed:
                    return
                try:
                    await self._call(self._rest.cancel_order_by_id, t.broker_id)
                except Exception as exc:
                    if getattr(exc, "status_code", None) == 422:
                        # not cancelable: already canceled, filled or being replaced; the read
                        # below tells which. A cancel of a finished order is a no-op.
                        log.debug("cancel of %s: %s", t.request.client_order_id, error_text(exc))
                    else:  # timeouts, 5xx: read the state
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

    async def _poll_one(self, t: Tracked) -> bool:
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
