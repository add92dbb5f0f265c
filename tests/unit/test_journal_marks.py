"""The journal's projection marks positions at their last price with no lag: cash follows the
fills from the last equity mark, each position is marked by the runner's `mark` events (or its
entry fill until the next one), so equity = cash + positions at their last price and realized +
unrealized = daily P&L, exactly (live_runner.persistence.journal_state.rebuild, pure)."""

from __future__ import annotations

from decimal import Decimal

from live_runner.persistence.journal_state import rebuild

DAY = "2024-11-26"


def ev(seq: int, kind: str, key: str, payload: dict, ts: int = 0) -> dict:
    return {"seq": seq, "session": DAY, "ts": ts or seq, "kind": kind, "key": key, "payload": payload}


def fill(seq: int, cid: str, side: str, qty: int, price: float, fee: str) -> dict:
    return ev(seq, "fill", cid, {"symbol": "ABC", "strategy": "s", "side": side, "qty": qty, "price": price,
                                 "commission": fee, "role": "entry" if side == "buy" else "target"})


def test_marks_and_fills_after_the_last_equity_mark_are_not_lagged() -> None:
    events = [
        ev(1, "session_start", "", {"equity": "1000.00", "state": "active"}),
        ev(2, "equity", "", {"equity": "1000.00", "cash": "1000.00", "positions": 0}),
        fill(3, "e1", "buy", 10, 10.1, "0.35"),  # entry: marked at its fill until its bar's mark
    ]
    ses = rebuild(events).sessions[DAY]
    assert ses.cash == Decimal("1000.00") - Decimal("101.0") - Decimal("0.35")
    assert ses.unrealized == 0 and ses.equity == Decimal("999.65")
    events += [ev(4, "mark", "ABC", {"close": 10.37}),
               fill(5, "e2", "buy", 5, 10.4, "0.35"),  # adds: the mark stays the bar's close
               ev(6, "mark", "ABC", {"close": 10.45})]
    ses = rebuild(events).sessions[DAY]
    basis = Decimal("101.0") + Decimal("52.0")
    assert ses.unrealized == Decimal("10.45") * 15 - basis == Decimal("3.75")
    assert ses.equity == ses.cash + Decimal("10.45") * 15
    assert ses.realized == Decimal("-0.70") and ses.realized + ses.unrealized == ses.daily_pnl
    events += [fill(7, "x1", "sell", 15, 10.5, "0.35")]  # closed: nothing left to mark
    ses = rebuild(events).sessions[DAY]
    assert not ses.positions and ses.unrealized == 0
    assert ses.daily_pnl == ses.realized == Decimal("10.5") * 15 - basis - Decimal("1.05")
