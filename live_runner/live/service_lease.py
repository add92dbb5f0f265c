"""The live service's account lease: taking it, fencing every send behind it, and stopping when
it is lost.

Mixed into LiveService (live/service.py). Once the lease is not valid (lost, or not renewed for
ttl_s on this runner's clock) nothing more reaches a broker or the journal, so the resting exits
stay as they are for the successor.
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING, Any, Callable

from live_runner.core.models import Severity
from live_runner.live.lease import Lease, LeaseLost

if TYPE_CHECKING:
    from live_runner.core.config import SystemConfig
    from live_runner.live.node import TradingNode

log = logging.getLogger("live_runner.live.service")

class LeaseFencing:
    """LiveService's lease handling (the attributes below are the service's)."""

    node: TradingNode
    lease: Lease | None
    lease_lost: str | None
    fenced_sends: int
    error: str | None
    _failure: BaseException | None
    stop_event: asyncio.Event
    _clients: Callable[[], list[Any]]  # LiveService's

    def lease_status(self) -> dict[str, Any]:
        lease = self.lease
        assert lease is not None
        holder = lease.holder
        return {"account": lease.account, "generation": lease.generation, "valid": lease.valid(),
                "lost": self.lease_lost, "fenced_sends": self.fenced_sends,
                "started_at": holder.started_at if holder else None,
                "waited_for_predecessor_s": lease.waited_s}

    def _fence_clients(self) -> None:
        """Every order, exit pair, replacement and cancel passes the lease first: once it is not
        valid (lost, or not renewed for ttl_s on this runner's clock) nothing more reaches a
        broker, so the resting exits stay as they are for the successor. Each client asks the
        gate itself (GatedSends); a client that cannot be fenced is refused, not traded."""
        if self.lease is None:
            return
        for client in self._clients():
            set_gate = getattr(client, "set_send_gate", None)
            if set_gate is None:
                raise TypeError(f"broker client {getattr(client, 'name', client)!r} offers no "
                                "set_send_gate: it cannot be fenced by the account lease")
            set_gate(self._may_send)

    def _may_send(self, call: str) -> bool:
        lease = self.lease
        if lease is None or lease.valid():
            return True
        self.fenced_sends += 1
        reason = lease.why_invalid()
        log.critical("lease lost (%s): %s not sent", reason, call, extra={"component": "lease"})
        self._on_lease_lost(reason)
        return False

    def _renew_after_setup(self) -> None:
        """The lease is taken before the journal is opened, the bars file validated and the state
        restored, which together may outlast ttl_s (millions of bars on a loaded machine) while no
        heartbeat runs yet: renew once before the run sends anything, so that setup time is not
        taken for a hung database. A takeover or a lost lock is still found (LeaseLost: stop)."""
        if self.lease is None:
            return
        try:
            self.lease.renew()
        except LeaseLost as exc:
            self._on_lease_lost(str(exc))

    def _check_lease(self) -> None:
        if self.lease is not None and self.lease_lost is None and not self.lease.valid():
            self._on_lease_lost(self.lease.why_invalid())

    def _on_lease_lost(self, reason: str) -> None:
        """On the loop: alert CRITICAL once and stop the run (no flatten, no drain: nothing is sent)."""
        if self.lease_lost is not None:
            return
        self.lease_lost = reason
        self.error = f"lease lost: {reason}"
        if self._failure is None:
            self._failure = LeaseLost(reason)
        lease = self.lease
        account = lease.account if lease is not None else "?"
        # Nothing more goes to the journal either (a successor may be about to append to it).
        self.node.alerts.set_journal(None)
        self.node.alerts.raise_alert(
            "lease_lost", Severity.CRITICAL,
            f"runner lost the lease on {account} (generation {lease.generation if lease else 0}): "
            f"{reason}; it sends nothing more and exits, resting exits stay at the broker",
            component="lease")
        stop = getattr(self, "stop_event", None)
        if stop is not None:
            stop.set()


def open_account_lease(config: SystemConfig, journal_url: str) -> Lease | None:
    """The account's lease from `config.lease` (LeaseHeld when another runner holds it)."""
    lc = config.lease
    if not lc.enabled:
        return None
    from live_runner.live.lease_stores import open_lease

    account = lc.account or f"{config.primary_broker}:{config.session_id_prefix}"
    lease = open_lease(journal_url, account, ttl_s=lc.ttl_s, heartbeat_s=lc.heartbeat_s,
                       connect_timeout_s=config.journal.connect_timeout_s)
    if lease is not None:
        lease.acquire()
    return lease
