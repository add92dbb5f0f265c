"""Issue 18 (the latency tail): garbage collection kept for quiet points, the session before's
orders folded in a few per bar, the journal's reused batch lists and its end-of-bar shipping."""

from __future__ import annotations

import gc
from collections import Counter

from live_runner.core.config import parse_config
from live_runner.core.models import (
    Order,
    OrderRequest,
    OrderRole,
    OrderStatus,
    OrderType,
    Side,
)
from live_runner.live import gc_quiet
from live_runner.live.node import TradingNode
from live_runner.persistence.journal import Journal, dump


def test_settle_freezes_start_up_and_leaves_full_collections_to_quiet_points() -> None:
    before = gc.get_threshold()
    try:
        gc_quiet.settle()
        assert gc.get_freeze_count() > 0
        assert gc.get_threshold()[:2] == before[:2] and gc.get_threshold()[2] >= 1 << 30
        now = [100.0]
        quiet = gc_quiet.QuietCollector(min_interval_s=1.0, monotonic=lambda: now[0])
        quiet.idle()
        quiet.idle()  # within the interval: nothing
        assert quiet.young + quiet.full == 1
        while gc.get_count()[2] < gc_quiet.FULL_EVERY:  # middle collections, as allocations cause them
            gc.collect(1)
        now[0] += 1.0
        quiet.idle()
        assert quiet.full == 1 and gc.get_count()[2] == 0
    finally:
        gc_quiet.restore_default()
        gc.set_threshold(*before)
    assert gc.get_freeze_count() == 0


def _order(cid: str, status: OrderStatus, side: Side = Side.BUY) -> Order:
    req = OrderRequest(cid, "gap_and_go", "GAPR", side, 10, OrderType.MARKET, OrderRole.ENTRY, 0)
    return Order(req, status)


def test_the_session_before_s_orders_are_counted_once_however_slowly_they_are_folded_in() -> None:
    node = TradingNode(parse_config({"active_strategies": ["gap_and_go"]}), Journal("sqlite://"))
    om = node.orders
    done = {f"A{i}": _order(f"A{i}", OrderStatus.FILLED) for i in range(70)}
    done |= {f"C{i}": _order(f"C{i}", OrderStatus.CANCELED, Side.SELL) for i in range(5)}
    working = _order("W1", OrderStatus.ACCEPTED)
    om.orders = {**done, "W1": working}
    om.open_orders = {"W1": working}
    om.start_session("2024-03-15", 0, 0, 0)
    assert om.orders == {"W1": working} and len(om.retiring) == 76
    om.retire_orders(32)
    working.status = OrderStatus.FILLED  # carried into this session: counted at the next start, not now
    om.retire_orders(32)
    om.retire_orders(32)
    assert not om.retiring
    expected = Counter({("gap_and_go", Side.BUY, OrderStatus.FILLED): 70,
                        ("gap_and_go", Side.SELL, OrderStatus.CANCELED): 5})
    assert om.closed_before == expected
    om.open_orders = {}
    om.start_session("2024-03-18", 0, 0, 0)
    om.start_session("2024-03-19", 0, 0, 0)  # the next start folds what is left at once
    assert not om.retiring
    assert om.closed_before == expected + Counter({("gap_and_go", Side.BUY, OrderStatus.FILLED): 1})


def test_batches_are_reused_and_shipping_waits_for_the_end_of_the_bar(tmp_path) -> None:  # type: ignore[no-untyped-def]
    j = Journal(f"sqlite:///{tmp_path / 'j.db'}", batch_size=4)
    try:
        for i in range(4):
            j.append("2024-03-15", i, "alert", f"k{i}", {"i": i})  # the 4th hands the batch off
        j.flush()
        [first] = j._spare  # written, emptied, kept
        for i in range(4, 8):
            j.append("2024-03-15", i, "alert", f"k{i}", {"i": i})
        assert j._buffer is first  # the next buffer
        for i in range(8, 11):
            j.append("2024-03-15", i, "alert", f"k{i}", {"i": i})
        j.ship_due()  # below a chunk (a thread writer's chunk is its batch): stays buffered
        assert len(j._buffer) // 6 == 3
        j.flush()
        assert [r[0] for r in dump(j.engine)] == list(range(1, 12)) and j.pending == 0
    finally:
        j.close()
