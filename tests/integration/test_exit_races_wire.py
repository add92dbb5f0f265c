"""Randomized exit races through the REAL broker SDKs and their wire fakes on 127.0.0.1 (issue 11,
"a few dozen through the real SDKs"): alpaca-py's AlpacaExecutionClient against fake_alpaca, and
ib_async's IbkrExecutionClient against fake_tws, each driven by a TradingNode.

Each seeded session (tests/kit/wire_races.py) randomizes cancel and replace confirmation delays,
entry fills in 1-3 parts, partial target fills, prices that jump through the stop or the target
while a cancel or a replace is pending, an operator flatten / emergency stop / EOD flatten, a wire
fault (a dropped connection between submit and ack, a lost or duplicated report, a dropped stream,
a Gateway restart) and the shutdown (node.stop, SIGTERM without flatten, a kill). After every step
the broker's truth is checked: never short, working sells never above the position, the position
covered by its stop (or a flatten's sell) unless a CRITICAL alert says why, and at the end every
journaled order reached the broker or is journaled as not sent, and broker and runner agree.

TRADING_WIRE_RACES=n runs n sessions per broker (default 24); TRADING_WIRE_SEED=s replays one.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from contextlib import asynccontextmanager, contextmanager
from dataclasses import replace
from datetime import datetime, timezone
from typing import Any, AsyncIterator, Iterator

import pytest

from live_runner.adapters.alpaca import AlpacaExecutionClient
from live_runner.adapters.alpaca.tracking import RESOLVING, SENDING
from live_runner.clock import SimClock
from live_runner.journal import Journal
from live_runner.node import TradingNode
from tests.integration.test_alpaca_adapter import config as alpaca_config
from tests.integration.test_ibkr_adapter import calendar, make_client
from tests.kit.alpaca_book import WORKING
from tests.kit.fake_alpaca import KEY, SECRET, FakeAlpaca
from tests.kit.fake_tws import FakeTws
from tests.kit.wire_races import NS, SYM, Book, Plan, Session, make_plan, node_config, seeds

TOTALS: dict[str, Counter[str]] = {"alpaca": Counter(), "ibkr": Counter()}
ALPACA_FAULTS = ("post_drop_accept", "post_504_lost", "patch_504", "stream_drop", "lost_update")
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


# --- the tests ---------------------------------------------------------------------------------------
def _run(coro: Any) -> Counter[str]:
    return asyncio.run(asyncio.wait_for(coro, 120))


def _count(broker: str, plan: Plan, stats: Counter[str]) -> None:
    totals = TOTALS[broker]
    totals["sessions"] += 1
    totals["partial_entries"] += plan.entry_parts > 1 and stats["entry_parts"] > 0
    totals.update(stats)


@pytest.mark.parametrize("seed", seeds())
def test_alpaca_exit_races_through_the_sdk(seed: int) -> None:
    plan = make_plan(seed, "alpaca", ALPACA_FAULTS)
    _count("alpaca", plan, _run(alpaca_session(plan)))


@pytest.mark.legacy_sdk
@pytest.mark.parametrize("seed", seeds())
def test_ibkr_exit_races_through_the_sdk(seed: int, tmp_path: Any) -> None:
    plan = make_plan(seed, "ibkr", IB_FAULTS)
    _count("ibkr", plan, _run(ib_session(plan, tmp_path)))


def test_the_races_were_hit(capsys: Any) -> None:
    """The counts: sessions, fills, and how often the races the suite exists for really happened."""
    with capsys.disabled():
        for broker, totals in TOTALS.items():
            print(f"\nwire races {broker}: " + ", ".join(f"{k} {v}" for k, v in sorted(totals.items())))
    for broker, totals in TOTALS.items():
        if totals["sessions"] >= 24:
            assert totals["fills_during_pending_cancel"] + totals["fills_during_pending_replace"] > 0, broker
            assert totals["partial_entries"] > 0 and totals["fills"] > totals["sessions"], broker


# --- what the races found, replayed one by one ---------------------------------------------------------
def scripted(broker: str, **kw: Any) -> Plan:
    """A plan with nothing random left that matters: the test drives every step itself."""
    base = dict(cancel_delay_s=0.0, replace_delay_s=0.0, entry_parts=1, duplicate=False, fault="none",
                operator="none", end="run")
    base.update(kw)
    return replace(make_plan(0, broker, ()), **base)


def test_alpaca_an_entry_lost_before_its_ack_is_rejected_with_one_broker() -> None:
    """Seed 5: the entry's POST answered 504 and never reached Alpaca. The client proves it was not
    accepted; with a single broker the engine dropped that verdict as "stale" and the runner kept a
    buy it believed working forever. Now it is REJECTED and journaled."""
    plan = scripted("alpaca")

    async def scenario() -> None:
        async with alpaca_rig(plan) as rig:
            rig.fake.post_faults.append("504_drop")
            s = Session(plan, rig)
            await s.breakout()   # settles only once the runner agrees with the broker
            [entry] = rig.node.orders.orders.values()
            assert entry.status.value == "rejected" and rig.fake.book.orders == {}
            s.check_journal()

    _run(scenario())


def test_alpaca_a_resize_overtaken_by_the_old_stop_alerts_at_once_and_sells_the_rest() -> None:
    """Seed 2: 892 of 1,785 fill, an OCO for 892; the other 893 fill and the OCO is PATCHed to 1,785
    (Alpaca confirms a second later). Meanwhile the price falls through the stop: the OLD stop sells
    892 and Alpaca will reject the replacement. The runner said nothing until then (and tried a
    second resize it refused itself, `oversell_refused`): now CRITICAL `unprotected` at once, then
    the 893 are sold once the doomed pair is gone. Never short."""
    plan = scripted("alpaca", replace_delay_s=1.0, entry_parts=2)

    async def scenario() -> None:
        async with alpaca_rig(plan) as rig:
            s = Session(plan, rig)
            await s.breakout()
            assert rig.fill_entry(2, 11.2)
            await s.settle("first part")
            assert rig.fill_entry(1, 11.2)
            await s.settle("second part")
            assert rig.book().resizing
            s.trade(10.85)
            await s.settle("the old stop fills during the replace")
            keys = s.critical_keys()
            assert "unprotected:GAPR" in keys and not [k for k in keys if k.startswith("oversell_refused")]
            assert rig.book().position == 893
            s.step_time(1.0)   # Alpaca rejects the replacement; the flatten sells what is held
            await s.settle("the replace rejected")
            s.trade(10.85)
            await s.settle("the flatten fills")
            assert rig.book().position == 0 == rig.node.portfolio.position_qty(SYM)
            assert rig.violations() == []
            s.check_journal()

    _run(scenario())


def test_alpaca_an_entry_filled_while_its_cancel_is_pending_is_alerted_while_bare() -> None:
    """Seed 0: flatten while only the entry works; Alpaca confirms the cancel 5 s later, and 595
    shares fill meanwhile. Nothing may be sold before the confirmation (Alpaca refuses a sell
    against our own open buy), so the shares are bare for those seconds: CRITICAL `unprotected`
    says so, then they are sold."""
    plan = scripted("alpaca", cancel_delay_s=5.0, entry_parts=3)

    async def scenario() -> None:
        async with alpaca_rig(plan) as rig:
            s = Session(plan, rig)
            await s.breakout()
            rig.node.command("flatten", source="test", symbol=SYM)
            await s.settle("flatten asked")
            assert rig.fill_entry(3, 11.2)
            await s.settle("an entry part during its pending cancel")
            assert "unprotected:GAPR" in s.critical_keys() and rig.book().position == 595
            s.step_time(5.0)
            await s.settle("the cancel confirmed")
            s.trade(11.2)
            await s.settle("the flatten fills")
            assert rig.book().position == 0 == rig.node.portfolio.position_qty(SYM)

    _run(scenario())


@pytest.mark.legacy_sdk
def test_ibkr_a_stop_shrunk_by_the_targets_fills_ends_filled(tmp_path: Any) -> None:
    """Seed 4: the target sells 300 of 1,785, IB's OCA group (type 2) shrinks the stop to 1,485,
    and the stop then fills those: IB says Filled, the runner kept its stop PARTIALLY_FILLED (1,485
    of 1,785) and open forever. A native leg whose shares are all gone is FILLED."""
    plan = scripted("ibkr")

    async def scenario() -> None:
        async with ib_rig(plan, tmp_path) as rig:
            s = Session(plan, rig)
            await s.breakout()
            assert rig.fill_target(300)
            await s.settle("part of the target")
            stop, _ = rig.exit_prices() or (0.0, 0.0)
            s.trade(stop - 0.02)
            await s.settle("the stop sells the rest")
            assert rig.book().position == 0 and rig.node.orders.open_orders == {}
            assert {o.request.role.value: o.status.value for o in rig.node.orders.orders.values()} == {
                "entry": "filled", "stop": "filled", "target": "canceled"}   # by the OCA group

    _run(scenario())


@pytest.mark.legacy_sdk
def test_ibkr_an_entry_filled_through_its_stop_is_sold_not_given_a_target_below_it(tmp_path: Any) -> None:
    """Seed 18: the market buy (stop 10.90) filled at 10.88. The runner computed a target of 10.84
    (2R below the entry) and sent both exits: the stop triggered at once and so did the target
    limit, placed after the stop had filled: IB short 1,785. Now: sold at market, no pair."""
    plan = scripted("ibkr", entry_parts=2)   # the market buy waits for the next trade

    async def scenario() -> None:
        async with ib_rig(plan, tmp_path) as rig:
            s = Session(plan, rig)
            await s.breakout()
            s.trade(10.88)
            await s.settle("the entry fills below its stop")
            s.trade(10.88)
            await s.settle("the sell fills")
            assert rig.book().position == 0 == rig.node.portfolio.position_qty(SYM)
            assert [o.request.role.value for o in rig.node.orders.orders.values()] == ["entry", "stop"]
            assert "entry_through_stop:GAPR" in [a.key for a in rig.node.alerts.recent]

    _run(scenario())


def test_alpaca_a_flatten_sell_lost_before_its_ack_is_critical_and_sold_again() -> None:
    """Seed 67: the flatten cancels the OCO, then its market sell's POST answers 504 and never
    reached Alpaca. The runner heard REJECTED (a warning) and left the position bare with no stop.
    Now: CRITICAL `unprotected`, and the shares are sold again under a new id."""
    plan = scripted("alpaca")

    async def scenario() -> None:
        async with alpaca_rig(plan) as rig:
            s = Session(plan, rig)
            await s.breakout()
            assert rig.book().stops == 1785
            rig.fake.post_faults.append("504_drop")
            rig.node.command("flatten", source="test", symbol=SYM)
            await s.settle("the flatten, its sell lost, sold again")
            assert rig.book().position == 0 == rig.node.portfolio.position_qty(SYM)
            assert "unprotected:GAPR" in s.critical_keys()
            sells = [b["client_order_id"] for b in rig.fake.bodies if b["side"] == "sell" and b["type"] == "market"]
            assert len(sells) == 2 and rig.fake.book.by_cid.keys() >= {sells[1]} and sells[0] not in rig.fake.book.by_cid
            s.check_journal()

    _run(scenario())
