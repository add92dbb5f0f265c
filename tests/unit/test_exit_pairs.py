"""Exits at real broker semantics, through a TradingNode and a broker whose confirmations the test
hands out (tests/kit/manual_broker.py): one native OCO per position, resized by replace; a flatten
that cancels, waits for the broker's confirmation and then sells only what is still held; HALTED
letting protection through; reports the runner cannot apply failing closed."""

from __future__ import annotations

from typing import Any

from live_runner.core.config import parse_config
from live_runner.persistence.journal import Journal
from live_runner.core.models import NANOS_PER_MINUTE, OrderRole, TradingState
from live_runner.live.node import TradingNode
from tests.kit.manual_broker import ManualBroker
from tests.kit.sessions import SessionBuilder, et_ns
from tests.unit.test_order_manager import DAY, gapper

QTY = 1785  # the gapper's entry size (see test_order_manager.gapper)


def started(broker: ManualBroker, **config: Any) -> TradingNode:
    """A node fed up to the 09:32 bar: the entry filled at its open, the exits placed."""
    cfg = parse_config({"active_strategies": ["gap_and_go"], **config})
    node = TradingNode(cfg, Journal("sqlite://"), execution_client=broker)
    node.start()
    bars = gapper(SessionBuilder(DAY)).sorted_bars()
    node.feed([b for b in bars if b.ts <= et_ns(DAY, "09:32")])
    return node


def pair(broker: ManualBroker) -> tuple[str, str]:
    oco = [c for c in broker.calls if c[0] == "oco"]
    return oco[-1][1], oco[-1][2]


def alerts(node: TradingNode) -> list[str]:
    return [a.key for a in node.alerts.recent]


def journal_kinds(node: TradingNode) -> list[str]:
    node.journal.flush()
    return [e["kind"] for e in node.journal.read()]


def test_the_exits_are_one_native_oco_for_the_whole_position() -> None:
    broker = ManualBroker()
    node = started(broker)
    oco = [c for c in broker.calls if c[0] == "oco"]
    assert len(oco) == 1
    _, stop, target, qty, group = oco[0]
    assert qty == QTY and group == target  # the pair is named by its target's client id
    assert not broker.sells_sent()  # no independent sell that a broker would refuse (403)
    assert node.portfolio.position_qty("GAPR") == QTY


def test_a_partial_entry_fill_resizes_the_pair_in_place() -> None:
    broker = ManualBroker(partial_entry=1000)
    node = started(broker)
    stop, target = pair(broker)
    assert [c[3] for c in broker.calls if c[0] == "oco"] == [1000]
    entry = next(cid for cid, r in broker.working.items() if r.role is OrderRole.ENTRY)
    broker.fill(entry, QTY - 1000, 11.26)
    replace = [c for c in broker.calls if c[0] == "replace"]
    assert replace and replace[0][1:3] == (stop, target) and replace[0][5] == QTY
    assert not [c for c in broker.calls if c[0] == "cancel"]  # never cancel-then-new
    broker.confirm_replace(replace[0][4])
    working = {cid: r.qty for cid, r in broker.working.items()}
    assert working == {replace[0][3]: QTY, replace[0][4]: QTY}
    assert node.risk.state is TradingState.ACTIVE


def test_flatten_waits_for_the_cancels_and_sells_what_is_still_held() -> None:
    broker = ManualBroker()
    node = started(broker)
    stop, target = pair(broker)
    node.command("flatten", symbol="GAPR")
    assert ("cancel", stop) in broker.calls and ("cancel", target) in broker.calls
    assert not broker.sells_sent()  # the shares are still held by the pair at the broker
    broker.fill(target, 500, 11.95)  # the target fills partly while its cancel is pending
    broker.confirm_cancel(stop)
    assert not broker.sells_sent()
    broker.confirm_cancel(target)
    assert [c[3] for c in broker.sells_sent()] == [QTY - 500]
    assert broker.position["GAPR"] == QTY - 500
    assert min(broker.position.values()) >= 0


def test_a_stop_filled_during_the_cancel_leaves_nothing_to_sell() -> None:
    broker = ManualBroker()
    node = started(broker)
    stop, target = pair(broker)
    node.orders.flatten("GAPR", OrderRole.EOD)
    broker.fill(stop, QTY, 10.90)  # the stop triggers before the cancel lands: target canceled
    assert not broker.sells_sent()
    assert node.portfolio.position_qty("GAPR") == 0 and broker.position["GAPR"] == 0
    assert [t.exit_reason for t in node.performance.trades] == ["stop"]


def test_an_unconfirmed_cancel_alerts_and_sells_nothing() -> None:
    broker = ManualBroker()
    node = started(broker, risk={"cancel_confirm_timeout_s": 10})
    node.command("emergency_stop")
    assert node.risk.state is TradingState.HALTED
    now = node.clock.now_ns()
    node.clock.advance_to(now + 11 * 1_000_000_000)
    assert "cancel_unconfirmed:GAPR" in alerts(node)
    assert not broker.sells_sent()
    stop, target = pair(broker)
    assert broker.calls.count(("cancel", stop)) >= 2  # asked again
    broker.confirm_cancel(stop)
    broker.confirm_cancel(target)
    assert [c[3] for c in broker.sells_sent()] == [QTY]


def test_halted_keeps_placing_the_protective_pair() -> None:
    broker = ManualBroker(partial_entry=1000)
    node = started(broker)
    node.risk.set_state(TradingState.HALTED, "test")
    entry = next(cid for cid, r in broker.working.items() if r.role is OrderRole.ENTRY)
    broker.fill(entry, QTY - 1000, 11.26)
    assert [c[5] for c in broker.calls if c[0] == "replace"] == [QTY]
    assert not [k for k in alerts(node) if k.startswith("unprotected")]


def test_an_oversell_fill_halts_and_never_books_a_short() -> None:
    broker = ManualBroker()
    node = started(broker)
    stop, target = pair(broker)
    broker.fill(target, QTY, 11.95, oversell=True)
    broker.fill(stop, QTY, 10.90, oversell=True)  # a broker without OCO: both legs filled
    assert broker.position["GAPR"] == -QTY
    assert node.portfolio.position_qty("GAPR") == 0
    assert node.risk.state is TradingState.HALTED
    assert "position_short:GAPR" in alerts(node)
    assert "excess_fill" in journal_kinds(node)
    # The next bar reconciles: the broker's short is reported, nothing is traded.
    bar = gapper(SessionBuilder(DAY)).sorted_bars()[-1]
    node.feed([type(bar)(bar.symbol, bar.ts + NANOS_PER_MINUTE, bar.open, bar.high, bar.low, bar.close, bar.volume)])
    assert "reconciliation_mismatch" in alerts(node)


def test_a_fill_for_an_unknown_order_halts() -> None:
    from decimal import Decimal

    from live_runner.core.models import Fill, Side

    broker = ManualBroker()
    node = started(broker)
    broker._on_fill(Fill("LR-20240315-GG-XYZ-99", "E1", "XYZ", Side.BUY, 10, 5.0, Decimal("1"), 0))
    assert node.risk.state is TradingState.HALTED
    assert "unknown_fill:XYZ" in alerts(node)


def test_a_refused_stop_raises_unprotected_and_flattens() -> None:
    broker = ManualBroker()
    node = started(broker)
    stop, target = pair(broker)
    broker.reject(stop, "insufficient qty available for order")
    broker.confirm_cancel(target)
    assert "unprotected:GAPR" in alerts(node)
    assert [c[3] for c in broker.sells_sent()] == [QTY]

