"""The brokers' side of the wire race suite (tests/integration/test_exit_races_wire.py): for each
broker a rig holding a fresh wire fake, the REAL SDK client against it and a TradingNode on it, that
reads the broker's truth (positions, working sells and stops), decides whether runner and broker
agree, moves the fake's market and arms its faults. `alpaca_session` / `ib_session` play one seeded
plan (tests/kit/wire_races.py) and return its counts.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from contextlib import asynccontextmanager, contextmanager
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any, AsyncIterator, Iterator

from live_runner.core.clock import SimClock
from live_runner.persistence.journal import Journal
from live_runner.live.node import TradingNode
from tests.integration.test_ibkr_adapter import calendar, make_client
from tests.kit.alpaca_book import WORKING
from tests.kit.fake_alpaca import KEY, SECRET, FakeAlpaca
from tests.kit.fake_tws import FakeTws
from tests.kit.wire_races import NS, SYM, Book, Plan, Session, node_config

if TYPE_CHECKING:  # alpaca-py is not in the legacy-SDK venv, which collects this module for IB
    from live_runner.adapters.alpaca import AlpacaExecutionClient

ALPACA_FAULTS = ("post_drop_accept", "post_504_lost", "patch_504", "stream_drop", "lost_update",
                 "out_of_order")
IB_FAULTS = ("place_drop_accept", "place_drop_lost", "place_drop_after_ack", "gateway_restart")

# --- Alpaca --------------------------------------------------------------------------------------
class AlpacaRig:
    def __init__(self, plan: Plan, fake: FakeAlpaca, client: AlpacaExecutionClient, node: TradingNode) -> None:
        self.fake, self.client, self.node = fake, client, node
        self.stats: Counter[str] = Counter()

    def _mine(self) -> list[dict[str, Any]]:
        return [o for o in self.fake.book.orders.values() if o["symbol"] == SYM and o["status"] in WORKING]

    def book(self) -> Book:
        with self.fake.lock:
            b = self.fake.book
            stops = mkts = ours = sells = 0
            resizing = False
            for o in self._mine():
                ours += 1
                resizing |= o["status"] == "pending_replace"
                if o["side"] != "sell" or b.replacing(o):
                    continue   # a replacement is not at the venue until Alpaca says `replaced`
                left = int(o["qty"]) - int(o["filled_qty"])
                parent = b.parent_of.get(o["id"])
                sells += 0 if parent and b.orders[parent]["status"] in WORKING else left  # an OCO once
                stops += left if o["type"] == "stop" else 0
                mkts += left if o["type"] == "market" else 0
            return Book(b.position(SYM), sells, stops, mkts, resizing, ours)

    def violations(self) -> list[str]:
        with self.fake.lock:
            return list(self.fake.book.violations)

    def refused(self) -> list[str]:
        with self.fake.lock:
            return [f"403 for {c}: {m}" for c, m in self.fake.book.refused]

    def _fake_order(self, cid: str, stop_of: str) -> dict[str, Any] | None:
        b = self.fake.book
        if stop_of and stop_of != cid:   # an OCO's stop: Alpaca's leg under the target's order
            parent = b.find(stop_of)
            leg = b.leg_of.get(parent["id"]) if parent else None
            return b.orders[leg] if leg else None
        return b.find(cid)

    def agreed(self) -> str:
        from live_runner.adapters.alpaca.tracking import RESOLVING, SENDING

        if any(t.phase in (SENDING, RESOLVING) for t in self.client._orders.values()):
            return "the client is still deciding an outcome"
        with self.fake.lock:
            for cid, o in self.node.orders.orders.items():
                stop_of = o.request.oco_group if o.request.order_type.value == "stop" else ""
                fo = self._fake_order(cid, stop_of)
                filled = int(fo["filled_qty"]) if fo else 0
                working = fo is not None and fo["status"] in WORKING
                if o.filled_qty != filled or o.is_open != working:
                    return (f"{cid}: runner {o.status.value} filled {o.filled_qty}, broker "
                            f"{fo['status'] if fo else 'none'} filled {filled}")
            ours, theirs = self.node.portfolio.position_qty(SYM), self.fake.book.position(SYM)
        return "" if ours == theirs else f"position runner {ours} broker {theirs}"

    def reached(self, cid: str, req: dict[str, Any]) -> bool:
        key = req["oco"] if req["type"] == "stop" and req["oco"] else cid
        with self.fake.lock:
            return key in self.fake.book.by_cid

    @contextmanager
    def _races(self) -> Iterator[None]:
        """Counts fills of orders whose cancel or replace was pending at the broker."""
        with self.fake.lock:
            before = {o["id"]: (o["status"], int(o["filled_qty"])) for o in self._mine()
                      if o["status"] in ("pending_cancel", "pending_replace")}
            yield
            for oid, (status, filled) in before.items():
                if int(self.fake.book.orders[oid]["filled_qty"]) > filled:
                    self.stats[f"fills_during_{status}"] += 1

    def price(self, px: float, volume: int | None = None) -> None:
        with self._races():
            self.fake.book.set_price(SYM, px)

    def fill_entry(self, parts: int, px: float) -> bool:
        with self._races():
            for o in self._mine():
                left = int(o["qty"]) - int(o["filled_qty"])
                if o["side"] == "buy" and left > 1:
                    self.fake.book.fill(o, max(left // parts, 1), px)
                    return True
        return False

    def fill_target(self, qty: int) -> bool:
        with self._races():
            for o in self._mine():
                left = int(o["qty"]) - int(o["filled_qty"])
                if o["side"] == "sell" and o["type"] == "limit" and left > 1 and not self.fake.book.replacing(o):
                    self.fake.book.fill(o, min(qty, left - 1), float(o["limit_price"]))
                    return True
        return False

    def exit_prices(self) -> tuple[float, float] | None:
        with self.fake.lock:
            mine = [o for o in self._mine() if o["side"] == "sell" and not self.fake.book.replacing(o)]
            stops = [float(o["stop_price"]) for o in mine if o["type"] == "stop"]
            limits = [float(o["limit_price"]) for o in mine if o["type"] == "limit"]
        return (stops[0], limits[0]) if stops and limits else None

    def confirm_due(self) -> None:
        with self._races():
            self.fake.book.tick()

    async def fault(self, kind: str) -> None:
        f = self.fake
        if kind == "post_drop_accept":
            f.post_faults.append("drop_accept")      # accepted, the answer lost: looked up
        elif kind == "post_504_lost":
            f.post_faults.append("504_drop")         # never accepted: not found, REJECTED
        elif kind == "patch_504":
            f.patch_faults.append("504_accept")      # the replace taken, its answer lost
        elif kind == "lost_update":
            f.ws_corrupt_next = 1                    # the next report arrives unreadable
        elif kind == "out_of_order":
            f.ws_swap_next = 2                       # two reports each overtaken by the next
        elif kind == "out_of_order":
            f.ws_swap_next = 2                       # two reports each overtaken by the next
        elif kind == "stream_drop":
            for ws in list(f._listeners):
                f._loop.call_soon_threadsafe(lambda w=ws: asyncio.ensure_future(w.close()))

    async def kill(self) -> None:
        await self.client.aclose()


@asynccontextmanager
async def alpaca_rig(plan: Plan) -> AsyncIterator[AlpacaRig]:
    """A TradingNode on the real alpaca-py client against a fresh fake, set up as the plan says."""
    fake = FakeAlpaca().start()
    fake.book.cancel_delay_ns = int(plan.cancel_delay_s * NS)
    fake.book.replace_delay_ns = int(plan.replace_delay_s * NS)
    fake.auto_fill = plan.entry_parts == 1
    fake.ws_duplicate = plan.duplicate
    from live_runner.adapters.alpaca import AlpacaExecutionClient
    from tests.integration.test_alpaca_adapter import config as alpaca_config

    client = AlpacaExecutionClient(alpaca_config(fake), KEY, SECRET)
    node = TradingNode(node_config(plan), Journal("sqlite://"), execution_client=client)
    client.now_ns = fake.clock = node.clock.now_ns
    rig = AlpacaRig(plan, fake, client, node)
    try:
        await client.start()
        node.start()
        yield rig
    finally:
        await client.aclose()
        fake.stop()


async def alpaca_session(plan: Plan) -> Counter[str]:
    async with alpaca_rig(plan) as rig:
        await Session(plan, rig).run()
    fake = rig.fake
    rig.stats["fills"] += sum(1 for e, _ in fake.events if e in ("fill", "partial_fill"))
    rig.stats["replaces"] += len(fake.book.replaces)
    rig.stats["cancels"] += len(fake.book.cancels)
    rig.stats["duplicate_reports_sent"] += fake.updates_sent // 2 if plan.duplicate else 0
    return rig.stats


# --- IB --------------------------------------------------------------------------------------------
class IbRig:
    def __init__(self, plan: Plan, fake: FakeTws, client: Any, node: TradingNode) -> None:
        self.fake, self.client, self.node = fake, client, node
        self.stats: Counter[str] = Counter()

    def _on_fake(self, fn: Any, *args: Any) -> Any:
        return self.fake._sync(fn, *args)

    def _mine(self) -> list[Any]:
        return [o for o in self.fake.orders if o.symbol == SYM and not o.done]

    def book(self) -> Book:
        def read() -> Book:
            groups: dict[str, float] = {}
            alone = stops = mkts = 0.0
            mine = self._mine()
            for o in mine:
                if o.action != "SELL":
                    continue
                if o.oca_group:   # one group holds the shares once (ocaType 2 reduces the others)
                    groups[o.oca_group] = max(groups.get(o.oca_group, 0.0), o.remaining)
                else:
                    alone += o.remaining
                stops += o.remaining if o.order_type == "STP" else 0
                mkts += o.remaining if o.order_type == "MKT" else 0
            return Book(int(self.fake.position(SYM)), int(alone + sum(groups.values())), int(stops),
                        int(mkts), False, len(mine))
        return self._on_fake(read)

    def violations(self) -> list[str]:
        return []   # IB lets the account go short: the position check is the violation

    def refused(self) -> list[str]:
        return []

    def _view(self) -> tuple[dict[str, Any], set[str], Counter[str]]:
        def read() -> tuple[dict[str, Any], set[str], Counter[str]]:
            refs = {o.order_ref: o for o in self.fake.orders}
            placed = {f[26] for f in self.fake.messages(3) if len(f) > 26}
            filled: Counter[str] = Counter()
            for ex in self.fake.executions:
                filled[ex.order_ref] += int(ex.shares)
            return refs, placed, filled
        return self._on_fake(read)

    def agreed(self) -> str:
        c = self.client
        if not c.connected:
            return "the client is not connected"
        if c._pending or (c._outbox is not None and not c._outbox.empty()):
            return "the client has reports or requests in flight"
        refs, _placed, filled = self._view()
        for cid, o in self.node.orders.orders.items():
            fo = refs.get(cid)
            working = fo is not None and not fo.done
            if o.filled_qty != filled[cid] or o.is_open != working:
                return (f"{cid}: runner {o.status.value} filled {o.filled_qty}, broker "
                        f"{fo.status if fo else 'none'} filled {filled[cid]}")
        ours, theirs = self.node.portfolio.position_qty(SYM), int(self.fake.position(SYM))
        return "" if ours == theirs else f"position runner {ours} broker {theirs}"

    def reached(self, cid: str, req: dict[str, Any]) -> bool:
        return cid in self._view()[1]

    def _act(self, fn: Any, *args: Any) -> Any:
        """Run a market action on the fake's loop; count fills of orders whose cancel was pending."""
        def act() -> Any:
            before = {id(o): (o, o.filled) for o in self._mine() if o.cancel_due is not None}
            out = self.fake._run(fn, *args) if fn != self.fake._fill else fn(*args)
            for o, filled in before.values():
                if o.filled > filled:
                    self.stats["fills_during_pending_cancel"] += 1
            return out
        return self._on_fake(act)

    def price(self, px: float, volume: int | None = None) -> None:
        self._act(self.fake.book.set_price, SYM, px, volume)

    def fill_entry(self, parts: int, px: float) -> bool:
        buys = [o for o in self._on_fake(self._mine) if o.action == "BUY" and o.remaining > 1]
        if not buys:
            return False
        self._act(self.fake._fill, buys[0].order_ref, max(int(buys[0].remaining) // parts, 1), px)
        return True

    def fill_target(self, qty: int) -> bool:
        lmts = [o for o in self._on_fake(self._mine) if o.action == "SELL" and o.order_type == "LMT"
                and o.remaining > 1]
        if not lmts:
            return False
        self._act(self.fake._fill, lmts[0].order_ref, min(qty, int(lmts[0].remaining) - 1), lmts[0].lmt_price)
        return True

    def exit_prices(self) -> tuple[float, float] | None:
        mine = [o for o in self._on_fake(self._mine) if o.action == "SELL"]
        stops = [o.aux_price for o in mine if o.order_type == "STP"]
        limits = [o.lmt_price for o in mine if o.order_type == "LMT"]
        return (stops[0], limits[0]) if stops and limits else None

    def confirm_due(self) -> None:
        self._act(self.fake.book.advance, 0)

    async def fault(self, kind: str) -> None:
        f = self.fake
        if kind == "gateway_restart":
            await f.restart(down_s=0.1)
            return
        f.drop_on_place = {"place_drop_accept": {"ack": False, "accept": True},
                           "place_drop_lost": {"ack": False, "accept": False},
                           "place_drop_after_ack": {"ack": True, "accept": True}}[kind]

    async def kill(self) -> None:
        await self.client.stop()


@asynccontextmanager
async def ib_rig(plan: Plan, tmp_path: Any) -> AsyncIterator[IbRig]:
    """A TradingNode on the real ib_async client against a fresh fake TWS on the node's clock."""
    clock = SimClock(0)
    fake = await FakeTws(market_fill=plan.entry_parts == 1, cancel_delay_s=plan.cancel_delay_s,
                         clock=lambda: datetime.fromtimestamp(clock.now_ns() / NS, timezone.utc)).start()
    fake.duplicate_exec = plan.duplicate
    client = make_client(fake, tmp_path)
    client._now = clock.now_ns
    node = TradingNode(node_config(plan), Journal("sqlite://"), clock=clock, calendar=calendar(),
                       execution_client=client)
    rig = IbRig(plan, fake, client, node)
    try:
        assert await client.start(), "the IB client did not connect to the fake"
        node.start()
        yield rig
    finally:
        await client.stop()
        await fake.stop()


async def ib_session(plan: Plan, tmp_path: Any) -> Counter[str]:
    async with ib_rig(plan, tmp_path) as rig:
        await Session(plan, rig).run()
    fake, client = rig.fake, rig.client
    rig.stats["fills"] += len(fake.executions)
    rig.stats["modifies"] += sum(o.modifications for o in fake.orders)
    rig.stats["cancels"] += len(fake.book.cancels_requested)
    rig.stats["duplicate_reports_sent"] += client.stats["duplicate_execs"]
    return rig.stats
