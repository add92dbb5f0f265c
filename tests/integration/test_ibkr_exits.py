"""A position's exits at IB, through the real SDK (ib_async, or ib_insync in `make test-legacy`)
against the fake TWS, whose book behaves as IB does: orders without a shared OCA group are
independent (both exits can fill: the account goes short) and a cancel is confirmed only later.
First the issue's short-account scenario against the fake, then the client's OCA group and
fail-closed paths. The client never modifies a pair (it offers no `replace_exits`; see exits.py)."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from live_runner.core.models import OrderRequest, OrderRole, OrderStatus, OrderType, Side
from tests.integration.test_ibkr_adapter import RTH, Rig, req, rig, run, until
from tests.kit.fake_tws import FakeTws

pytestmark = pytest.mark.legacy_sdk

SYM = "GAPX"
ENTRY, STOP, TARGET = "LR-1-GG-GAPX-1", "LR-1-GG-GAPX-2", "LR-1-GG-GAPX-3"


def exits(qty: int, stop_id: str = STOP, target_id: str = TARGET, group: str | None = TARGET,
          ) -> tuple[OrderRequest, OrderRequest]:
    """The protective stop at 11.80 and the target at 12.38, named as the OrderManager names them."""
    g = target_id if group == TARGET else (group or "")
    stop = OrderRequest(stop_id, "gap_and_go", SYM, Side.SELL, qty, OrderType.STOP, OrderRole.STOP, RTH,
                        stop_price=11.80, oco_group=g)
    target = OrderRequest(target_id, "gap_and_go", SYM, Side.SELL, qty, OrderType.LIMIT, OrderRole.TARGET, RTH,
                          limit_price=12.38, oco_group=g)
    return stop, target


async def hold(r: Rig, qty: int) -> None:
    """An entry of `qty` shares, filled."""
    r.client.submit(req(ENTRY, qty=qty, symbol=SYM))
    await until(lambda: sum(f.qty for f in r.fills_of(ENTRY)) == qty, what="entry fill")


async def settle(r: Rig) -> None:
    """Every execution the fake made has reached the runner (with its commission)."""
    await until(lambda: r.client.stats["fills_reported"] == len(r.fake.executions) and not r.client._pending,
                what="fills reported")


def filled(r: Rig, cid: str) -> int:
    return sum(f.qty for f in r.fills_of(cid))


# --- the fake behaves as IB: independent exits both fill ---------------------------------------------

def test_without_an_oca_group_both_exits_fill_and_the_account_goes_short(tmp_path: Any) -> None:
    """The issue's scenario: a stop and a target for the same 1,538 shares, sent as two plain
    orders. The target fills at 12.38; the stop, whose cancel is still pending at IB (confirmed 2 s
    later), triggers a second later: IB fills both and the account is short 1,538."""
    async def scenario() -> None:
        async with rig(tmp_path, FakeTws(cancel_delay_s=2.0)) as r:
            await hold(r, 1538)
            stop, target = exits(1538, group="")
            r.client.submit(stop)
            r.client.submit(target)
            await until(lambda: r.statuses(STOP) == r.statuses(TARGET) == [OrderStatus.ACCEPTED])
            assert r.fake.set_price(SYM, 12.38) == 1  # the target fills
            await until(lambda: filled(r, TARGET) == 1538)
            r.client.cancel(STOP)  # what the runner did: cancel, and believe it
            await until(lambda: r.fake.order(STOP).status == "PendingCancel")
            assert r.fake.set_price(SYM, 11.70) == 1  # pending cancel: the stop still triggers
            r.fake.advance(2.0)
            await until(lambda: filled(r, STOP) == 1538)
            assert r.fake.position(SYM) == -1538
            await until(lambda: r.client.positions() == {SYM: -1538})
            assert OrderStatus.CANCELED not in r.statuses(STOP)

    run(scenario())


# --- one OCA group ---------------------------------------------------------------------------------------

def test_stop_and_target_share_an_oca_group_and_only_one_fills(tmp_path: Any) -> None:
    async def scenario() -> None:
        async with rig(tmp_path, FakeTws(cancel_delay_s=2.0)) as r:
            await hold(r, 1538)
            r.client.submit_oco(*exits(1538))
            await until(lambda: r.statuses(STOP) == r.statuses(TARGET) == [OrderStatus.ACCEPTED])
            for cid in (STOP, TARGET):  # as IB received them: ocaGroup and ocaType 2
                [msg] = r.fake.placed(cid)
                assert msg[22] == TARGET and msg[47] == "2"
            assert r.fake.set_price(SYM, 12.38) == 1
            await until(lambda: r.statuses(STOP) == [OrderStatus.ACCEPTED, OrderStatus.CANCELED])
            assert r.fake.set_price(SYM, 11.70) == 0  # the stop is gone: nothing to trigger
            await settle(r)
            assert filled(r, TARGET) == 1538 and filled(r, STOP) == 0
            assert r.fake.position(SYM) == 0 and r.fake.order(STOP).status == "Cancelled"
            r.client.cancel(STOP)  # the runner's cancel after the full fill: a no-op
            r.client.cancel(TARGET)
            await asyncio.sleep(0.05)
            assert r.fake.messages(4) == []

    run(scenario())


def test_a_partial_target_fill_reduces_the_stop_and_the_position_is_never_short(tmp_path: Any) -> None:
    async def scenario() -> None:
        async with rig(tmp_path) as r:
            await hold(r, 1538)
            r.client.submit_oco(*exits(1538))
            await until(lambda: r.statuses(STOP) == [OrderStatus.ACCEPTED])
            assert r.fake.set_price(SYM, 12.38, volume=500) == 1  # only 500 trade at the target
            await until(lambda: filled(r, TARGET) == 500)
            assert r.fake.order(STOP).qty == 1038  # IB reduced the stop by the filled shares
            assert r.statuses(STOP) == [OrderStatus.ACCEPTED]  # still protecting the rest
            assert r.fake.set_price(SYM, 11.70) == 1
            await until(lambda: filled(r, STOP) == 1038)
            await settle(r)
            assert r.fake.position(SYM) == 0 and r.fake.order(TARGET).status == "Cancelled"
            await until(lambda: r.client.positions() == {})

    run(scenario())


def test_with_oca_type_1_a_partial_fill_cancels_the_stop(tmp_path: Any) -> None:
    """Why `ibkr.oca_type` defaults to 2: with 1, IB cancels the stop on the target's first partial
    fill and the rest of the position has no stop."""
    async def scenario() -> None:
        async with rig(tmp_path, oca_type=1) as r:
            await hold(r, 1538)
            r.client.submit_oco(*exits(1538))
            await until(lambda: r.statuses(STOP) == [OrderStatus.ACCEPTED])
            assert r.fake.placed(STOP)[0][47] == "1"
            r.fake.set_price(SYM, 12.38, volume=500)
            await until(lambda: OrderStatus.CANCELED in r.statuses(STOP))
            assert r.fake.position(SYM) == 1038 and r.fake.set_price(SYM, 11.70) == 0

    run(scenario())


def test_the_ib_client_never_resizes_a_pair_in_place() -> None:
    """A modify racing a fill of the other leg could sell more than is held (exits.py), so the
    client offers no `replace_exits` and the engine grows protection at IB by more OCA groups."""
    from live_runner.adapters.ibkr.client import IbkrExecutionClient
    from live_runner.execution.engine import ExecutionEngine

    assert not hasattr(IbkrExecutionClient, "replace_exits")
    client = IbkrExecutionClient.__new__(IbkrExecutionClient)  # no connection needed for the question
    assert ExecutionEngine(client).resizes_in_place(SYM) is False


# --- cancel is a request ------------------------------------------------------------------------------------

def test_a_stop_that_triggers_while_its_cancel_is_pending_is_reported_filled(tmp_path: Any) -> None:
    async def scenario() -> None:
        async with rig(tmp_path, FakeTws(cancel_delay_s=2.0)) as r:
            await hold(r, 1538)
            r.client.submit_oco(*exits(1538))
            await until(lambda: r.statuses(STOP) == [OrderStatus.ACCEPTED])
            r.client.cancel(STOP)
            r.client.cancel(TARGET)
            await until(lambda: r.fake.order(STOP).status == r.fake.order(TARGET).status == "PendingCancel")
            assert r.fake.set_price(SYM, 11.70) == 1
            await until(lambda: filled(r, STOP) == 1538)
            r.fake.advance(2.0)  # the target's cancel is confirmed; the stop had nothing left
            await until(lambda: OrderStatus.CANCELED in r.statuses(TARGET))
            await settle(r)
            assert r.statuses(STOP) == [OrderStatus.ACCEPTED] and filled(r, TARGET) == 0
            assert r.fake.position(SYM) == 0
            sent = len(r.fake.messages(4))
            r.client.cancel(STOP)  # filled: a no-op
            await asyncio.sleep(0.05)
            assert len(r.fake.messages(4)) == sent == 2

    run(scenario())


# --- fail closed ------------------------------------------------------------------------------------------

def _faults(r: Rig) -> list[tuple[str, str]]:
    out: list[tuple[str, str]] = []
    r.client.set_fault_handler(lambda key, message: out.append((key, message)))
    return out


def test_a_report_the_runner_cannot_apply_goes_to_the_fault_handler(tmp_path: Any) -> None:
    async def scenario() -> None:
        async with rig(tmp_path) as r:
            faults = _faults(r)

            def refuse(fill: Any) -> None:
                raise ValueError(f"sell of {fill.qty} {fill.symbol} exceeds the position of 0")

            r.client.set_handlers(r._event, refuse)
            r.client.submit(req(STOP, OrderType.MARKET, Side.SELL, 1538, symbol=SYM))
            await until(lambda: bool(faults), what="the fault")
            [(key, message)] = faults
            assert key == f"ibkr_report_failed:{STOP}" and "exceeds the position" in message

    run(scenario())


def test_a_fill_for_an_order_of_ours_nobody_knows_is_a_fault(tmp_path: Any) -> None:
    async def scenario() -> None:
        async with rig(tmp_path) as r:
            faults = _faults(r)
            assert r.client.unclaimed() == []  # the runner's adoption pass at start: nothing lost
            r.fake.place_external("LR-1-GG-GAPX-99", SYM, "SELL", 1538)
            await until(lambda: bool(faults), what="the fault")
            [(key, message)] = faults
            assert key == "ibkr_unknown_order:LR-1-GG-GAPX-99" and "does not know" in message
            assert r.client.unclaimed()[0].client_order_id == "LR-1-GG-GAPX-99"  # the node can adopt it
            r.fake.place_external("MANUAL-1", SYM, "BUY", 1538, order_id=90_001)  # not ours: positions show it
            await until(lambda: r.client.positions() == {})
            assert len(faults) == 1

    run(scenario())


def test_a_failed_order_listing_at_connect_is_a_fault(tmp_path: Any) -> None:
    async def own() -> None:
        from tests.integration.test_ibkr_adapter import make_client

        fake = FakeTws()
        fake.silent = {99}
        await fake.start()
        client = make_client(fake, tmp_path, connect_timeout_s=0.5)
        faults: list[tuple[str, str]] = []
        client.set_fault_handler(lambda key, message: faults.append((key, message)))
        try:
            assert not await client.start()  # not synced: the listing hangs
            await until(lambda: bool(faults), what="the fault")
            assert faults[0][0] == "ibkr_listing_failed"
            fake.silent = set()
            await until(lambda: not client.resuming and client.connected, timeout=10, what="synced")
        finally:
            await client.stop()
            await fake.stop()

    run(own())


def test_the_ib_clients_alerts_reach_the_runners_alert_sinks(tmp_path: Any) -> None:
    """The node wires the IB client's alert handler: a malformed broker message pages."""
    from live_runner.core.clock import SimClock
    from live_runner.core.config import parse_config
    from live_runner.persistence.journal import Journal
    from live_runner.live.node import TradingNode
    from tests.integration.test_ibkr_adapter import calendar, make_client

    async def scenario() -> None:
        fake = await FakeTws().start()
        client = make_client(fake, tmp_path)
        node = TradingNode(parse_config({}), Journal("sqlite://"), clock=SimClock(0), calendar=calendar(),
                           execution_client=client)
        try:
            assert await client.start()
            fake.send_raw([9999, 1, "junk"])
            await until(lambda: any(a.key == "ibkr_malformed_message" for a in node.alerts.recent), what="the alert")
        finally:
            await client.stop()
            await fake.stop()

    run(scenario())
