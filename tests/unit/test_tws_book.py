"""The fake TWS's order book on its own (no socket, the clock injected): what IB does with OCA
groups, modifies, pending cancels and positions, so the wire tests can trust it."""

from __future__ import annotations

from datetime import datetime, timezone

from tests.kit.tws_book import FakeOrder, ManualClock, TwsBook

T0 = datetime(2024, 3, 15, 14, 0, tzinfo=timezone.utc)


def order(book: TwsBook, oid: int, ref: str, action: str, qty: float, kind: str, price: float = 0.0,
          group: str = "", oca_type: int = 0) -> FakeOrder:
    return FakeOrder(oid, 7, book.next_perm(), book.con_id("GAPX"), "GAPX", action, qty, kind,
                     price if kind == "LMT" else 0.0, price if kind == "STP" else 0.0, "DAY", "DU123", ref,
                     False, [], oca_group=group, oca_type=oca_type)


def held(qty: float, cancel_delay_s: float = 0.0) -> TwsBook:
    book = TwsBook(clock=ManualClock(T0), cancel_delay_s=cancel_delay_s)
    book.add(order(book, 1, "entry", "BUY", qty, "MKT"), fill_market=12.0)
    return book


def exits(book: TwsBook, qty: float, group: str = "", oca_type: int = 0) -> tuple[FakeOrder, FakeOrder]:
    stop, target = order(book, 2, "stop", "SELL", qty, "STP", 11.8, group, oca_type), \
        order(book, 3, "target", "SELL", qty, "LMT", 12.38, group, oca_type)
    book.add(stop)
    book.add(target)
    return stop, target


def test_independent_exits_both_fill_and_the_account_goes_short() -> None:
    book = held(1538)
    stop, target = exits(book, 1538)
    book.set_price("GAPX", 12.40)
    book.set_price("GAPX", 11.70)
    assert stop.status == target.status == "Filled" and book.position("GAPX") == -1538


def test_oca_type_2_reduces_the_other_leg_and_type_1_cancels_it() -> None:
    book = held(1538)
    stop, target = exits(book, 1538, "g", 2)
    book.set_price("GAPX", 12.38, volume=500)
    assert target.filled == 500 and stop.qty == 1038 and stop.status == "Submitted"
    book.set_price("GAPX", 11.70)
    assert stop.filled == 1038 and target.status == "Cancelled" and book.position("GAPX") == 0

    book = held(1538)
    stop, target = exits(book, 1538, "g", 1)
    notes = book.set_price("GAPX", 12.38, volume=500)
    assert stop.status == "Cancelled" and book.position("GAPX") == 1038
    kinds = [n[0] for n in notes]
    assert kinds.index("exec") < kinds.index("error") < kinds.index("commission")  # OCA before commission


def test_a_cancel_is_confirmed_only_after_its_delay_and_the_stop_can_fill_meanwhile() -> None:
    book = held(1538, cancel_delay_s=2.0)
    stop, target = exits(book, 1538)
    book.cancel(7, stop.order_id)
    book.cancel(7, target.order_id)
    assert stop.status == target.status == "PendingCancel"
    assert book.advance(1.0) == []
    book.set_price("GAPX", 11.70)
    assert stop.status == "Filled" and stop.filled == 1538
    notes = book.advance(1.0)
    assert target.status == "Cancelled" and [n[0] for n in notes] == ["error", "order_status"]
    assert notes[0][2] == 202 and book.position("GAPX") == 0
    [(_, _, code, _)] = book.cancel(7, stop.order_id)
    assert code == 10148  # a filled order cannot be cancelled


def test_modify_keeps_the_order_id_and_refuses_what_ib_refuses() -> None:
    book = held(1000)
    stop, _ = exits(book, 1000, "g", 2)
    bigger = order(book, 2, "stop-2", "SELL", 1538, "STP", 11.9, "g", 2)
    book.modify(stop, bigger)
    assert (stop.order_id, stop.qty, stop.aux_price, stop.order_ref, stop.modifications) == (2, 1538, 11.9, "stop-2", 1)
    assert len(book.orders) == 3
    wrong_side = order(book, 2, "stop-3", "BUY", 1538, "STP", 11.9)
    assert book.modify(stop, wrong_side)[0][2] == 105 and stop.order_ref == "stop-2"
    book.set_price("GAPX", 11.0)
    assert book.modify(stop, bigger)[0][2] == 104  # filled: nothing to modify
    assert book.executions[-1].order_ref == "stop-2"
