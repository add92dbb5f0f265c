"""The fill reducer (live_runner.core.ledger) with hand-derived exact figures, and a property: the
live portfolio and the journal's projection, both applying it, agree to the digit on cash, realized
P&L, commissions and positions for any sequence of fills."""

from __future__ import annotations

import json
from decimal import Decimal as D

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from live_runner.core import ledger
from live_runner.core.models import Fill, Side
from live_runner.persistence.journal_state import JournalStateError, rebuild
from live_runner.portfolio.portfolio import Portfolio

DAY = "2024-03-15"


def test_buy_partial_sell_and_close_by_hand() -> None:
    # buy 100 at 10.07, $1 commission: cost 1007.00, cash -1008.00, nothing realized
    b = ledger.buy(0, D(0), 100, D("10.07"), D("1.00"))
    assert b == ledger.FillEffect(100, D("1007.00"), D("-1008.00"), None) and not b.closed
    # sell 40 at 10.50: average cost 1007.00 * 40 / 100 = 402.80 out of the basis, pnl 420.00 - 402.80
    s1 = ledger.sell(b.qty, b.cost_basis, 40, D("10.50"), D("1.00"))
    assert s1 == ledger.FillEffect(60, D("604.20"), D("419.00"), D("17.20")) and not s1.closed
    # the other 60 at 9.90: the rest of the basis, pnl 594.00 - 604.20
    s2 = ledger.sell(s1.qty, s1.cost_basis, 60, D("9.90"), D("1.00"))
    assert s2 == ledger.FillEffect(0, D("0.00"), D("593.00"), D("-10.20")) and s2.closed
    # realized is charged every commission when paid: -1, then -1 + 17.20, then -1 - 10.20
    realized = D(0)
    for eff in (b, s1, s2):
        realized = ledger.realized_after(realized, D("1.00"), eff.pnl)
    assert realized == D("4.00") == (D("420.00") + D("594.00") - D("1007.00")) - 3 * D("1.00")
    assert sum((e.cash_delta for e in (b, s1, s2)), D(0)) == realized


def test_buys_add_to_the_basis_and_a_third_is_cut_at_28_digits() -> None:
    b1 = ledger.buy(0, D(0), 1, D("10.00"), D(0))
    b2 = ledger.apply_fill(b1.qty, b1.cost_basis, True, 2, D("10.01"), D("0.35"))
    assert (b2.qty, b2.cost_basis, b2.cash_delta) == (3, D("30.02"), D("-20.37"))
    s = ledger.apply_fill(3, D("30.02"), False, 1, D("10.00"), D(0))
    assert s.pnl == D("10.00") - D("10.00666666666666666666666667")  # 30.02 / 3, Decimal's 28 digits
    assert s.cost_basis == D("30.02") - D("10.00666666666666666666666667")


def test_selling_more_than_held_is_refused() -> None:
    with pytest.raises(ledger.OversellError, match="sell of 5 exceeds the position of 3") as err:
        ledger.sell(3, D(30), 5, D(10), D(0))
    assert (err.value.qty, err.value.held) == (5, 3)
    with pytest.raises(ledger.OversellError):
        ledger.apply_fill(0, D(0), False, 1, D(10), D(0))
    pf = Portfolio(D(1000))
    with pytest.raises(ValueError, match="sell of 1 ABC exceeds the position of 0"):
        pf.apply_fill(Fill("c", "x", "ABC", Side.SELL, 1, 10.0, D(1), 1), "s")
    assert (pf.cash, pf.realized, pf.commissions) == (D(1000), D(0), D(0))  # nothing applied


def test_average_fill_price() -> None:
    assert ledger.average_price(0.0, 0, 10.5, 100) == 10.5
    assert ledger.average_price(10.5, 100, 11.0, 100) == 10.75


def test_portfolio_and_projection_by_hand() -> None:
    pf = Portfolio(D("10000.00"))
    fills = [("buy", 100, 10.07), ("sell", 40, 10.5), ("sell", 60, 9.9)]
    events = [_event(1, "session_start", "", {"equity": "10000.00"})]
    for i, (side, qty, price) in enumerate(fills, start=2):
        closed = pf.apply_fill(Fill(f"c{i}", f"x{i}", "ABC", Side(side), qty, price, D("1.00"), i), "s")
        events.append(_fill_event(i, f"c{i}", "ABC", side, qty, price, D("1.00")))
    assert closed is not None and closed[1] == D("-10.20")
    state = rebuild(events)
    assert pf.cash == state.cash == D("10004.00")
    assert pf.realized == state.realized == state.sessions[DAY].realized == D("4.00")
    assert pf.positions == {} and state.positions == {}
    with pytest.raises(JournalStateError, match="journal event 5: sell of 1 ABC exceeds the position of 0"):
        rebuild([*events, _fill_event(5, "c5", "ABC", "sell", 1, 9.9, D(0))])


# --- the live portfolio and the journal's projection agree ---------------------------------------
def _event(seq: int, kind: str, key: str, payload: dict) -> dict:
    # as the journal stores and reads it: JSON
    return {"seq": seq, "session": DAY, "ts": seq, "kind": kind, "key": key,
            "payload": json.loads(json.dumps(payload))}


def _fill_event(seq: int, cid: str, symbol: str, side: str, qty: int, price: float, fee: D) -> dict:
    return _event(seq, "fill", cid, {"exec_id": f"x{seq}", "symbol": symbol, "side": side, "qty": qty,
                                     "price": price, "commission": str(fee), "role": "entry",
                                     "strategy": "s"})


_price = st.one_of(st.integers(100, 50_000).map(lambda c: c / 100),      # cents, $1 to $500
                   st.integers(1, 9_999).map(lambda c: c / 10_000))       # sub-penny, below $1
_step = st.tuples(st.sampled_from(["AAA", "BBB"]), st.booleans(), st.integers(1, 500), _price,
                  st.integers(0, 500).map(lambda c: D(c) / 100))


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(steps=st.lists(_step, max_size=40), start=st.integers(0, 10**8).map(lambda c: D(c) / 100))
def test_portfolio_and_journal_projection_agree(steps: list, start: D) -> None:
    pf = Portfolio(start)
    events = [_event(1, "session_start", "", {"equity": str(start)})]
    for seq, (symbol, is_buy, qty, price, fee) in enumerate(steps, start=2):
        held = pf.position_qty(symbol)
        if not is_buy:
            if held == 0:
                continue
            qty = min(qty, held)
        side = Side.BUY if is_buy else Side.SELL
        pf.apply_fill(Fill(f"c{seq}", f"x{seq}", symbol, side, qty, price, fee, seq), "s")
        events.append(_fill_event(seq, f"c{seq}", symbol, side.value, qty, price, fee))
    state = rebuild(events)
    ses = state.sessions[DAY]
    # equal, and written the same (same operations in the same order: same exponent too)
    for live, projected in ((pf.cash, state.cash), (pf.realized, state.realized), (pf.realized, ses.realized),
                            (pf.commissions, state.commissions), (pf.commissions, ses.commissions)):
        assert projected is not None and str(live) == str(projected)
    assert sorted(pf.positions) == sorted(state.positions) == sorted(ses.positions)
    for sym, pos in pf.positions.items():
        proj = state.positions[sym]
        assert (pos.qty, str(pos.cost_basis), str(pos.entry_commission), pos.avg_price, pos.opened_ts) == (
            proj.qty, str(proj.cost_basis), str(proj.entry_commission), proj.avg_price, proj.opened_ts)
