"""Alpaca's order book (tests/kit/alpaca_book.py) in-process on a manual clock: the broker rules
the fake enforces, checked without HTTP so that a race suite can drive the same logic fast."""

from __future__ import annotations

from typing import Any

from tests.kit.alpaca_book import AlpacaBook, ManualClock

SYM = "GAPX"


def book_holding(qty: int) -> tuple[AlpacaBook, ManualClock, list[tuple[str, str, str]]]:
    clock = ManualClock()
    pushed: list[tuple[str, str, str]] = []
    book = AlpacaBook(clock, lambda ev, o, **kw: pushed.append((ev, o["client_order_id"], o["status"])))
    book.prices[SYM] = 12.0
    status, o = book.new_order({"client_order_id": "E", "symbol": SYM, "qty": qty, "side": "buy",
                                "type": "market", "time_in_force": "day"})
    assert status == 200
    book.after_accept(o["id"])
    assert book.position(SYM) == qty
    return book, clock, pushed


def oco(book: AlpacaBook, cid: str, qty: int, stop: float = 11.0, target: float = 13.0) -> tuple[int, Any]:
    status, o = book.new_order({"client_order_id": cid, "symbol": SYM, "qty": qty, "side": "sell",
                                "type": "limit", "time_in_force": "day", "order_class": "oco",
                                "take_profit": {"limit_price": target},
                                "stop_loss": {"stop_price": stop}})
    if status == 200:
        book.after_accept(o["id"])
    return status, o


def test_a_second_sell_of_reserved_shares_is_refused_403() -> None:
    book, _, _ = book_holding(1538)
    assert book.new_order({"client_order_id": "S", "symbol": SYM, "qty": 1538, "side": "sell",
                           "type": "stop", "stop_price": 11, "time_in_force": "day"})[0] == 200
    status, body = book.new_order({"client_order_id": "T", "symbol": SYM, "qty": 1538, "side": "sell",
                                   "type": "limit", "limit_price": 13, "time_in_force": "day"})
    assert (status, body) == (403, {"code": 40310000, "message":
                                    "insufficient qty available for order (requested: 1538, available: 0)"})


def test_an_oco_reserves_once_and_a_partial_leg_fill_shrinks_the_other() -> None:
    book, _, _ = book_holding(100)
    status, o = oco(book, "T1", 100)
    assert status == 200 and book.reserved(SYM) == 100 and len(o["legs"]) == 1
    book.fill(book.find("T1"), 40, 13.0)
    leg = book.orders[o["legs"][0]["id"]]
    assert int(leg["qty"]) == 60 and book.reserved(SYM) == 60 == book.position(SYM)
    book.walk(SYM, [11.5, 10.9])
    assert leg["status"] == "filled" and book.find("T1")["status"] == "canceled"
    assert book.position(SYM) == 0 and book.violations == []


def test_replace_is_asynchronous_and_refused_if_the_old_order_filled_first() -> None:
    book, clock, pushed = book_holding(100)
    book.replace_delay_ns = 1_000_000_000
    _, o = oco(book, "T1", 100)
    status, new = book.replace(o["id"], {"qty": 100, "client_order_id": "T2", "stop_price": 10.5})
    assert status == 200 and new["status"] == "accepted" and new["replaces"] == o["id"]
    assert book.find("T1")["status"] == "pending_replace" and book.reserved(SYM) == 100
    book.walk(SYM, [13.2])                     # the old target fills before the venue replaces
    clock.advance(1)
    book.tick()
    assert book.find("T2")["status"] == "rejected" and book.find("T1")["status"] == "filled"
    assert ("rejected", "T2", "rejected") in pushed and book.position(SYM) == 0


def test_replace_confirmed_moves_the_reservation_to_the_new_order() -> None:
    book, clock, pushed = book_holding(150)
    _, o = oco(book, "T1", 100)
    assert book.replace(o["id"], {"qty": 200, "client_order_id": "T2"})[0] == 403
    status, _ = book.replace(o["id"], {"qty": 150, "client_order_id": "T3", "stop_price": 10.5})
    assert status == 200 and book.find("T1")["status"] == "replaced"
    assert [e for e in pushed if e[1] == "T1"][-1] == ("replaced", "T1", "replaced")
    assert book.reserved(SYM) == 150 and book.available(SYM) == 0
    leg = book.orders[book.leg_of[book.by_cid["T3"]]]
    assert leg["stop_price"] == "10.5" and leg["qty"] == "150"


def test_a_cancel_is_pending_until_the_delay_and_the_order_can_fill_meanwhile() -> None:
    book, clock, pushed = book_holding(100)
    book.cancel_delay_ns = 2_000_000_000
    _, o = oco(book, "T1", 100)
    assert book.cancel(o["id"]) == (204, None)
    assert book.find("T1")["status"] == "pending_cancel" and book.reserved(SYM) == 100
    book.walk(SYM, [10.8])                     # the stop leg triggers during the wait
    clock.advance(2)
    book.tick()
    leg = book.orders[o["legs"][0]["id"]]
    assert leg["status"] == "filled" and book.position(SYM) == 0 and book.violations == []
    assert book.cancel(o["id"])[0] == 422      # nothing left to cancel
