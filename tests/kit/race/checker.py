"""DESIGN.md's invariants, checked after every event of a race session.

After each broker-side event, each report delivered to the runner and each driver action:
- never short at the broker;
- sells never exceed holdings: the shares the working sell orders can still sell (an OCO unit or
  OCA group counted once, pending cancels included) never exceed the broker's position (at IB,
  which holds no shares for open orders, this is the "no oversell possible" condition);
- every position held at the broker is covered by a working protective stop (or a working market
  sell, a flatten) for all its shares, or the runner raised a CRITICAL `unprotected:SYMBOL` alert
  since it opened; a gap shorter than `grace_ns` is allowed (the runner learns of a fill or a
  cancel only when the report arrives, and a flatten waits for its cancels);
- every order journaled reached the broker or is journaled as ended without it, within the grace;
- no exception escapes the runner's report handlers.
At the end: the broker's positions and fills are the runner's (portfolio and journal), every
journaled order was sent, and a session that ran to the close is flat.
A violation raises `RaceViolation` with the seed, the event index and the recent trace.
"""

from __future__ import annotations

from collections import deque
from typing import Any

from live_runner.core.clock import format_ns
from live_runner.persistence.journal import Deferred, Journal

from tests.kit.broker_sim.core import SimBroker

GRACE_NS = 30_000_000_000


class RaceViolation(AssertionError):
    def __init__(self, seed: int, broker: str, index: int, invariant: str, detail: str, trace: str) -> None:
        self.seed, self.broker, self.index, self.invariant = seed, broker, index, invariant
        again = (f"reproduce with RACE_SEED={seed} RACE_BROKER={broker}" if seed >= 0
                 else "a scripted scenario: rerun its test")
        super().__init__(f"race invariant '{invariant}' broken: {detail}\n  broker={broker} seed={seed} "
                         f"event #{index}; {again}\n--- trace (latest last) ---\n{trace}")


class RecordingJournal(Journal):
    """A real (SQLite) journal that also remembers, synchronously, what the checker asks about."""

    def __init__(self, url: str, clock: Any) -> None:
        super().__init__(url)
        self.clock = clock
        self.journaled_orders: dict[str, int] = {}  # cid -> sim time it was journaled
        self.ended_orders: set[str] = set()  # cids with a terminal order_event
        self.alerts: list[tuple[int, str, str]] = []  # (time, key, severity)

    def append(self, session: str, ts: int, kind: str, key: str, payload: Any) -> int:
        seq = super().append(session, ts, kind, key, payload)
        if kind == "order":
            self.journaled_orders.setdefault(key, self.clock.now_ns())
        elif kind == "order_event":
            status = payload.a.status.value if type(payload) is Deferred else payload.get("status", "")
            if status in ("canceled", "rejected", "expired", "filled"):
                self.ended_orders.add(key)
        elif kind == "alert":
            self.alerts.append((self.clock.now_ns(), key, str(payload.get("severity", ""))))
        return seq


class Checker:
    def __init__(self, seed: int, broker: str, sim: SimBroker, node: Any, journal: RecordingJournal,
                 symbols: list[str], grace_ns: int = GRACE_NS) -> None:
        self.seed, self.broker, self.sim, self.node, self.journal = seed, broker, sim, node, journal
        self.symbols = symbols
        self.grace = grace_ns
        self.index = 0
        self.checks = 0
        self.trace: deque[tuple[int, str]] = deque(maxlen=80)
        self.market = ""
        self.opened_at: dict[str, int] = {}
        self.uncovered_since: dict[str, int] = {}
        self._errors_seen = 0
        self._log_seen = 0
        self._version: tuple[int, ...] = ()
        self._orders_seen = 0
        self._unsent: set[str] = set()

    @property
    def now(self) -> int:
        return self.sim.now

    def event(self, label: str) -> None:
        """Called after every event; checks every invariant (skipped, as proven already, when
        nothing changed since the last check and no grace period is running)."""
        self.index += 1
        sim, journal = self.sim, self.journal
        log = sim.log
        changed = len(log) > self._log_seen
        if changed:
            self.trace.extend(log[self._log_seen:])
            self._log_seen = len(log)
        if label.startswith(("tick", "bars")):
            self.market = f"[{self.index}] {label}"  # the latest prices go into a failure's text
        else:
            self.trace.append((self.now, f"[{self.index}] {label}"))
        version = (len(log), len(journal.journaled_orders), len(journal.alerts), len(sim.errors))
        if version == self._version and not self.uncovered_since and not self._unsent:
            return
        self._version = version
        self.checks += 1
        if len(sim.errors) > self._errors_seen:
            self.fail("no exception out of a report handler", sim.errors[self._errors_seen])
        now = self.now
        for sym in self.symbols:
            pos = sim.position.get(sym, 0)
            if pos < 0:
                self.fail("never short", f"{sym}: the broker holds {pos}")
            sells = sim.working_sells(sym)
            if sells > pos:
                self.fail("sells never exceed holdings",
                          f"{sym}: working sells for {sells} shares against {pos} held: "
                          + self._orders(sym))
            if pos <= 0:
                self.opened_at.pop(sym, None)
                self.uncovered_since.pop(sym, None)
                continue
            self.opened_at.setdefault(sym, now)
            if sim.protected(sym) >= pos:
                self.uncovered_since.pop(sym, None)
                continue
            since = self.uncovered_since.setdefault(sym, now)
            if now - since > self.grace and not self.excused(sym):
                self.fail("every position protected at the broker",
                          f"{sym}: {pos} held, stops/flatten cover {sim.protected(sym)} since "
                          f"{format_ns(since)} and no CRITICAL unprotected:{sym} alert: " + self._orders(sym))
        orders = journal.journaled_orders
        if len(orders) > self._orders_seen:
            self._unsent.update(list(orders)[self._orders_seen:])
            self._orders_seen = len(orders)
        for cid in list(self._unsent):
            if cid in sim.received or cid in journal.ended_orders:
                self._unsent.discard(cid)
            elif now - orders[cid] > self.grace:
                self.fail("every journaled order was sent or journaled as not sent",
                          f"{cid} journaled at {format_ns(orders[cid])}, never sent")

    def excused(self, sym: str) -> bool:
        opened = self.opened_at.get(sym, 0)
        key = f"unprotected:{sym}"
        return any(ts >= opened and k == key and sev == "critical" for ts, k, sev in self.journal.alerts)

    def finish(self, reached_close: bool) -> None:
        """The end of the session: broker and runner agree."""
        self.event("session over")
        sim, node = self.sim, self.node
        broker = sim.positions()
        runner = {s: p.qty for s, p in sorted(node.portfolio.positions.items()) if p.qty}
        if broker != runner:
            self.fail("broker and runner agree at the end", f"positions: broker {broker}, runner {runner}")
        self.journal.flush()
        journaled = {e["payload"]["exec_id"]: e["payload"]["qty"] for e in self.journal.read(kinds=("fill",))}
        executed = {f.exec_id: f.qty for f in sim.fills}
        if journaled != executed:
            missing = sorted(set(executed) - set(journaled))
            extra = sorted(set(journaled) - set(executed))
            self.fail("broker and runner agree at the end",
                      f"fills: not journaled {missing}, journaled but not executed {extra}")
        unsent = [c for c in self.journal.journaled_orders
                  if c not in sim.received and c not in self.journal.ended_orders]
        if unsent:
            self.fail("every journaled order was sent or journaled as not sent", f"never sent: {unsent}")
        if reached_close:
            held = {s: q for s, q in broker.items() if not self.excused(s)}
            if held:
                self.fail("flat after the EOD flatten", f"the broker still holds {held} at the close")

    def _orders(self, sym: str) -> str:
        rows = [f"{o.cid} {o.req.side.value} {o.req.order_type.value} left={o.remaining} {o.status}"
                f"{' cancel-pending' if o.cancel_pending else ''}{' grp=' + o.group.name if o.group else ''}"
                for o in self.sim.working(sym)]
        return "working: [" + "; ".join(rows) + "]"

    def fail(self, invariant: str, detail: str) -> None:
        lines = [f"{format_ns(t)} {text}" for t, text in self.trace]
        lines.append(f"{format_ns(self.now)} latest market: {self.market}")
        raise RaceViolation(self.seed, self.broker, self.index, invariant, detail, "\n".join(lines))
