"""The one reducer from fills to position, cash and P&L (long only, average cost, exact Decimal).

The live portfolio (`live_runner.portfolio.portfolio.Portfolio.apply_fill`) and the journal's
projection (`live_runner.persistence.journal_state`, which a live restart reads too) both apply a
fill through these functions, so what a restart or a report derives from the journal is what the
node held, digit for digit. They are pure: values in, values out, nothing kept.

Rules: a buy adds its notional (price times quantity) to the cost basis and costs cash its notional
plus the commission; a sell takes the average cost of the shares sold out of the cost basis
(`cost_basis * qty / held`), brings in its notional less the commission, and realizes its notional
less that cost. Every commission is charged to realized P&L when paid (entry and exit alike).
Selling more than is held is refused (`OversellError`): the runner is never short.
"""

from __future__ import annotations

from decimal import Decimal

import msgspec


class OversellError(ValueError):
    """A sell of more shares than are held."""

    def __init__(self, qty: int, held: int) -> None:
        super().__init__(f"sell of {qty} exceeds the position of {held}")
        self.qty = qty
        self.held = held


class FillEffect(msgspec.Struct, frozen=True, gc=False):
    """What one fill does to a holding and to the account (a Struct: built in a fraction of a
    NamedTuple's time, on the fill path)."""

    qty: int                # shares held after the fill
    cost_basis: Decimal     # their cost after the fill (exact)
    cash_delta: Decimal     # signed: -(notional + commission) for a buy, notional - commission for a sell
    pnl: Decimal | None     # a sell's realized P&L before commission (None for a buy)

    @property
    def closed(self) -> bool:
        """The fill sold the whole holding."""
        return self.qty == 0 and self.pnl is not None


def buy(held: int, cost_basis: Decimal, qty: int, price: Decimal, fee: Decimal) -> FillEffect:
    """A buy of `qty` at `price` (the Decimal of the fill's price) with commission `fee`."""
    notional = price * qty
    return FillEffect(held + qty, cost_basis + notional, -(notional + fee), None)


def sell(held: int, cost_basis: Decimal, qty: int, price: Decimal, fee: Decimal) -> FillEffect:
    """A sell of `qty` out of `held` shares costing `cost_basis`; raises OversellError beyond it
    (or with nothing held)."""
    if held < qty or held <= 0:
        raise OversellError(qty, held)
    notional = price * qty
    cost = cost_basis * qty / held
    return FillEffect(held - qty, cost_basis - cost, notional - fee, notional - cost)


def apply_fill(held: int, cost_basis: Decimal, is_buy: bool, qty: int, price: Decimal,
               fee: Decimal) -> FillEffect:
    """`buy` or `sell`."""
    return buy(held, cost_basis, qty, price, fee) if is_buy else sell(held, cost_basis, qty, price, fee)


def realized_after(realized: Decimal, fee: Decimal, pnl: Decimal | None) -> Decimal:
    """Realized P&L (net of commissions) after a fill: its commission charged, then a sell's P&L."""
    realized -= fee
    return realized if pnl is None else realized + pnl


def average_price(avg: float, done: int, price: float, qty: int) -> float:
    """An order's average fill price after a fill of `qty` at `price` (`done` filled before):
    a float, as brokers report it (the money is accumulated exactly elsewhere)."""
    return (avg * done + price * qty) / (done + qty)


__all__ = ["FillEffect", "OversellError", "apply_fill", "average_price", "buy", "realized_after", "sell"]
