"""Portfolio: cash, positions and P&L, applied from fills only, in exact Decimal money.

Long only. Equity for decisions (sizing, limits) is cash plus positions marked at their last price;
it is computed on demand from a handful of open positions, never accumulated as a float.
"""

from __future__ import annotations

from collections.abc import Mapping
from decimal import Decimal

from live_runner.core.exact import PRICE_SCALE, PRICE_SCALE_F
from live_runner.core.ledger import OversellError
from live_runner.core.ledger import buy as _buy
from live_runner.core.ledger import realized_after as _realized_after
from live_runner.core.ledger import sell as _sell
from live_runner.core.models import Fill, Position, Side
from live_runner.core.money import ZERO, dec


_BUY = Side.BUY
UNITS = PRICE_SCALE  # integer money units for the hot path: 1e-8 dollars (live_runner.core.exact)


class Portfolio:
    def __init__(self, starting_cash: Decimal) -> None:
        self.cash = starting_cash
        self.positions: dict[str, Position] = {}
        self.realized = ZERO  # net of commissions, since the start of the session
        self.commissions = ZERO
        self.sod_equity = starting_cash
        self.last_price: dict[str, float] = {}

    @property
    def cash(self) -> Decimal:
        return self._cash

    @cash.setter
    def cash(self, value: Decimal) -> None:
        """Cash is exact (Decimal); its float and integer-unit views are recomputed from it on
        every change (never accumulated), so the hot path reads them without Decimal arithmetic."""
        self._cash = value
        self.cash_f = float(value)
        # exact for amounts with up to eight decimals (prices of up to eight times whole shares,
        # commissions in cents); finer digits are truncated
        self.cash_units = int(value * UNITS)

    @property
    def sod_equity(self) -> Decimal:
        return self._sod

    @sod_equity.setter
    def sod_equity(self, value: Decimal) -> None:
        self._sod = value
        self.sod_f = float(value)

    def start_session(self) -> None:
        """A new day: the daily P&L is measured from here."""
        self.sod_equity = self.equity_decimal()
        self.realized = ZERO
        self.commissions = ZERO

    def position_qty(self, symbol: str) -> int:
        pos = self.positions.get(symbol)
        return pos.qty if pos is not None else 0

    def mark(self, symbol: str, price: float) -> None:
        self.last_price[symbol] = price
        pos = self.positions.get(symbol)
        if pos is not None:
            pos.last_price = price

    def apply_fill(self, fill: Fill, strategy: str) -> tuple[Position, Decimal] | None:
        """Apply a fill (`live_runner.core.ledger`, as the journal's projection does); returns
        (position before close, realized P&L) when it closes one. A sell beyond the position
        raises ValueError and changes nothing."""
        price = dec(fill.price)
        fee = fill.commission
        symbol = fill.symbol
        pos = self.positions.get(symbol)
        if fill.side is _BUY:
            eff = _buy(0, ZERO, fill.qty, price, fee) if pos is None else \
                _buy(pos.qty, pos.cost_basis, fill.qty, price, fee)
        elif pos is None:
            raise ValueError(f"sell of {fill.qty} {symbol} exceeds the position of 0")
        else:
            try:
                eff = _sell(pos.qty, pos.cost_basis, fill.qty, price, fee)
            except OversellError as exc:
                raise ValueError(f"sell of {fill.qty} {symbol} exceeds the position of {exc.held}") from None
        self.commissions += fee
        self.realized = _realized_after(self.realized, fee, eff.pnl)
        self.cash += eff.cash_delta
        if eff.pnl is None:
            if pos is None:
                pos = Position(symbol=symbol, strategy=strategy, opened_ts=fill.ts)
                self.positions[symbol] = pos
            pos.cost_basis, pos.qty = eff.cost_basis, eff.qty
            pos.avg_price = float(pos.cost_basis / pos.qty)
            pos.entry_commission += fee
            pos.last_price = self.last_price.get(symbol, fill.price)
            return None
        assert pos is not None
        pos.cost_basis, pos.qty = eff.cost_basis, eff.qty
        if pos.qty == 0:
            del self.positions[symbol]
            return pos, eff.pnl
        return None

    def restore(self, cash: Decimal, positions: Mapping[str, Position], *, realized: Decimal | None = None,
                commissions: Decimal | None = None, sod_equity: Decimal | None = None) -> None:
        """A live restart: cash and positions as the journal left them (each marked at its
        `last_price`); with a session still open, its realized P&L, commissions and start-of-day
        equity too (None keeps the current figure)."""
        self.cash = cash
        self.positions = dict(positions)
        for sym, p in self.positions.items():
            self.last_price[sym] = p.last_price
        if realized is not None:
            self.realized = realized
        if commissions is not None:
            self.commissions = commissions
        if sod_equity is not None:
            self.sod_equity = sod_equity

    def market_value(self) -> float:
        total = 0.0  # a loop, not a generator sum: the same float additions, cheaper per order
        for p in self.positions.values():
            total += p.qty * p.last_price
        return total

    def equity(self) -> float:
        total = self.cash_f
        value = 0.0
        for p in self.positions.values():
            value += p.qty * p.last_price
        return total + value

    def equity_units(self) -> int:
        """Equity in exact integer units of $1e-8 (for sizing without Decimal)."""
        total = self.cash_units
        for p in self.positions.values():
            total += p.qty * round(p.last_price * PRICE_SCALE_F)
        return total

    def equity_decimal(self) -> Decimal:
        total = self.cash
        for p in self.positions.values():
            total += dec(p.last_price) * p.qty
        return total

    def unrealized(self) -> float:
        return sum(p.unrealized for p in self.positions.values())

    def daily_pnl(self) -> float:
        """Realized (net of commissions) plus unrealized, since the start of the session."""
        return self.equity() - self.sod_f
