"""The Alpaca account as the runner sees it: positions (the snapshot read at start plus every
fill since), the PDT state (the node wires the risk rule to `pdt_state`), and our orders found at
start for adoption."""

from __future__ import annotations

import logging
from collections import Counter
from typing import Any, Callable

from live_runner.adapters.alpaca.mapping import Outcome, classify, error_text, shares
from live_runner.adapters.alpaca.tracking import Tracked
from live_runner.core.clients import PdtState
from live_runner.core.models import OrderRequest

log = logging.getLogger("live_runner.adapters.alpaca")


class AccountState:
    """Mixed into AlpacaExecutionClient (which provides the attributes annotated here)."""

    name: str
    _rest: Any
    _prefix: str
    _orders: dict[str, Tracked]
    _listed: list[OrderRequest]
    _base_positions: dict[str, int] | None
    _fill_positions: dict[str, int]
    pdt: PdtState | None
    account: dict[str, Any]
    counters: Counter[str]
    now_ns: Callable[[], int]
    wall_ns: Callable[[], int]
    _calendar: Any
    _call: Callable[..., Any]
    _set_available: Callable[..., None]
    _fault: Callable[[str, str], None]

    def pdt_state(self) -> PdtState | None:
        """The account's PDT state as last read (None before the first read)."""
        return self.pdt

    def positions(self) -> dict[str, int] | None:
        """Shares held at Alpaca: the snapshot read at start plus every fill since (None until the
        snapshot could be read)."""
        if self._base_positions is None:
            return None
        out = dict(self._base_positions)
        for sym, qty in self._fill_positions.items():
            out[sym] = out.get(sym, 0) + qty
        return {s: q for s, q in sorted(out.items()) if q}

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
        """Our orders at Alpaca, open ones and those submitted since the previous session (see
        adoption.py), every page of them. A failed or incomplete read is a fault: an order sent in
        the instant before a crash could be working unseen (the node halts, reconciles)."""
        from live_runner.adapters.alpaca import adoption

        since = adoption.since_ns(self.wall_ns(), self._calendar)

        def fetch(query: Any) -> Any:
            return self._call(self._rest.get_orders, query)

        try:
            working = await adoption.list_all(fetch, open_only=True)
            recent = await adoption.list_all(fetch, after_ns=since)
        except Exception as exc:  # noqa: BLE001
            self._fault("alpaca_adoption_listing",
                        f"{self.name}: listing our orders for adoption failed: {error_text(exc)}")
            return
        rows = adoption.merged(working, recent)
        self._listed = adoption.ours(rows, self._prefix, self.now_ns())
        log.info("%s: %d orders listed at start (%d open), %d under our prefix", self.name, len(rows),
                 len(working), len(self._listed))

    def unclaimed(self) -> list[OrderRequest]:
        """Ours at Alpaca at start, neither sent nor recovered by this run (an OCO's stop goes
        with its target: recovered with it, or adopted with it)."""
        return [r for r in self._listed if r.client_order_id not in self._orders
                and not (r.oco_group and r.oco_group != r.client_order_id and r.oco_group in self._orders)]

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
