"""The connection side of IbkrExecutionClient: a supervisor that connects, checks that the Gateway
is logged in to the kind of account the mode expects (paper or live), reconciles after every
connect (a failed listing is a fault, retried with backoff), reconnects with exponential backoff
after a drop or the Gateway's daily restart, and tells the runner about every change.

Paper or live is read from the account ids the Gateway reports at connect (managedAccounts,
message 15), never from the port, which any Gateway can be configured to listen on. IB paper
account ids start with "D" (DU... for an individual paper account, DF... for an advisor's paper
master account); live ids start with U (individual), F (advisor) or I (introducing broker).
"""

from __future__ import annotations

import asyncio
import logging
import random
from typing import Iterable

from live_runner.adapters.ibkr import compat
from live_runner.adapters.ibkr.mapping import ErrorKind
from live_runner.adapters.ibkr.reports import log


def is_paper_account(account: str) -> bool:
    """An IB paper-trading account id (DU1234567, DF123456); live ids start with U, F or I."""
    return account.strip().upper().startswith("D")


def account_mode_problem(accounts: Iterable[str], paper: bool) -> str | None:
    """Why these accounts may not be traded in this mode (None: they may). Every account must
    match: a Gateway login is either paper or live as a whole, so one mismatch means the wrong
    login, and an empty list proves nothing (refused too)."""
    mode = "paper" if paper else "live"
    found = [a.strip() for a in accounts if a and a.strip()]
    if not found:
        return (f"the IB Gateway reported no account, so it cannot be shown to be a {mode}-trading "
                f"login; the runner is in {mode} mode (ibkr.paper: {str(paper).lower()})")
    wrong = [a for a in found if is_paper_account(a) != paper]
    if not wrong:
        return None
    kind = "live" if paper else "paper"
    hint = ("log the Gateway in to the paper account, or run --mode live --confirm-live with "
            "ibkr.paper: false" if paper else
            "log the Gateway in to the live account, or run --mode paper with ibkr.paper: true")
    return (f"IB account {', '.join(wrong)} is a {kind}-trading account but the runner is in {mode} "
            f"mode (ibkr.paper: {str(paper).lower()}): no order will be sent; {hint}")


class ConnectionMixin:
    """State lives on the client."""

    async def _supervise(self) -> None:
        cfg = self.config
        delay = cfg.reconnect_initial_s
        while not self._closing:
            self._lost = asyncio.Event()
            try:
                await self._ib.connectAsync(cfg.host, cfg.port, clientId=cfg.client_id,
                                            timeout=cfg.connect_timeout_s, account=self.account)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                self.stats["connect_failures"] += 1
                log.warning("ibkr connect to %s:%s failed (%s); retry in %.1fs", cfg.host, cfg.port,
                            exc or type(exc).__name__, delay)
                await asyncio.sleep(delay * random.uniform(0.9, 1.1))
                delay = min(delay * 2, cfg.reconnect_max_s)
                continue
            delay = cfg.reconnect_initial_s
            accounts = self._ib.managedAccounts()
            problem = account_mode_problem(accounts, cfg.paper)
            if problem is not None:  # before _ready: nothing can be sent on this connection
                self._refuse(problem)
                return
            self.stats["connects"] += 1
            self._ready = True
            self._link_up = True
            if self.account and self.account not in accounts:
                self._alert("ibkr_account", "critical", f"account {self.account} not among {accounts}")
            log.info("ibkr connected to %s:%s (client %s, %s %s, accounts %s)", cfg.host, cfg.port,
                     cfg.client_id, compat.LIBRARY, compat.VERSION, ",".join(accounts))
            await self._reconcile_until_done()
            self._connection_changed(True, f"{cfg.host}:{cfg.port}")
            await self._lost.wait()

    def _refuse(self, problem: str) -> None:
        """The Gateway is logged in to the wrong kind of account: disconnect and stay down (a
        reconnect would find the same login); `start()` raises, `submit` rejects as not sent."""
        self._refusal = problem
        self._closing = True
        log.critical("ibkr refused: %s", problem)
        self._ib.disconnect()
        self._fault("ibkr_account_mode", problem)

    async def _reconcile_until_done(self) -> None:
        delay = self.config.reconnect_initial_s
        while self._ready and not self._closing:
            try:
                await self._reconcile("connect")
                return
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("ibkr reconcile failed (%r); retry in %.1fs", exc, delay)
                if delay == self.config.reconnect_initial_s:  # once per connect, not per retry
                    self._fault("ibkr_listing_failed", "could not list the broker's open and completed "
                                f"orders, executions and positions at connect ({exc!r}): orders and fills "
                                "may be missing; retrying")
                await asyncio.sleep(delay)
                delay = min(delay * 2, self.config.reconnect_max_s)

    def _on_disconnected(self) -> None:
        if not self._ready:
            return
        self._ready = False
        self._positions_synced = False
        self.stats["disconnects"] += 1
        for o in self._orders.values():
            o.trade = None  # the SDK forgot its trades; the reconcile rebinds them
            if o.terminal is None and o.sent:
                o.needs_check = True
                if not o.acked:
                    o.ambiguous = True
                if o.cancel_requested:
                    o.cancel_pending = True
        self._connection_changed(False, "socket closed")
        if self._lost is not None:
            self._lost.set()

    def _on_link(self, kind: ErrorKind, code: int, message: str) -> None:
        if kind is ErrorKind.LINK_LOST:
            self._link_up = False
            self._connection_changed(False, f"ibkr {code}: {message}")
            return
        self._link_up = True
        self._connection_changed(True, f"ibkr {code}: {message}")
        self._request_reconcile(f"link restored ({code})")

    def _connection_changed(self, up: bool, detail: str) -> None:
        if up and not self.connected:
            return
        log.log(logging.INFO if up else logging.WARNING, "ibkr %s: %s",
                "connected" if up else "disconnected", detail)
        if self._on_connection is not None:
            try:
                self._on_connection(up, detail)
            except Exception:
                log.exception("connection handler failed")

