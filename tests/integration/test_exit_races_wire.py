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
from dataclasses import replace
from typing import Any

import pytest

from tests.kit.wire_races import SYM, Plan, Session, make_plan, seeds
from tests.kit.wire_rigs import ALPACA_FAULTS, IB_FAULTS, alpaca_rig, alpaca_session, ib_rig, ib_session

TOTALS: dict[str, Counter[str]] = {"alpaca": Counter(), "ibkr": Counter()}

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


@pytest.mark.legacy_sdk
def test_ibkr_a_sell_through_the_stop_lost_in_a_disconnect_is_sold_again(tmp_path: Any) -> None:
    """The sell of an entry filled through its stop carries the stop's role; lost with the link
    before IB took it, it was read as a refused pair leg and ignored: the shares stayed bare.
    Now it is a refused flatten: CRITICAL `unprotected`, sold again."""
    plan = scripted("ibkr", entry_parts=2)

    async def scenario() -> None:
        async with ib_rig(plan, tmp_path) as rig:
            s = Session(plan, rig)
            await s.breakout()
            rig.fake.drop_on_place = {"ack": False, "accept": False}
            s.trade(10.88)
            await s.settle("the entry fills below its stop; its sell is lost")
            assert "unprotected:GAPR" in s.critical_keys()
            s.trade(10.88)
            await s.settle("the second sell fills")
            assert rig.book().position == 0 == rig.node.portfolio.position_qty(SYM)
            s.check_journal()

    _run(scenario())
