"""The closed round trip: one record type for the order manager, the performance statistics,
the journal's projection (`live_runner.persistence.journal_state`), a restart and the reports.

Money (P&L, commission, initial risk) is `Decimal`; the ratios derived from it (R multiple, return)
are the correctly rounded floats of the exact quotients (through `Fraction`).
"""

from __future__ import annotations

from decimal import ROUND_HALF_EVEN, Decimal
from fractions import Fraction
from typing import Any

import msgspec

from live_runner.core.money import dec

EXIT_REASONS = frozenset({"stop", "target", "vwap_loss", "eod", "manual"})
_QUANTUM = Decimal("0.0001")
_ZERO = Decimal(0)


_dec = dec  # a float price as the trader sees it, not its binary expansion


def money_str_4(value: Decimal) -> str:
    """Exact-to-0.0001 string for JSON (banker's rounding, as `Decimal` does by default)."""
    return str(value.quantize(_QUANTUM, rounding=ROUND_HALF_EVEN))


def ratio(num: Decimal, den: Decimal) -> float:
    """Correctly rounded float of num/den, with no intermediate float or 28-digit rounding."""
    return float(Fraction(num) / Fraction(den))


class TradeRecord(msgspec.Struct, frozen=True, gc=False):
    """One round trip (entry fill to exit fill), long only.

    `pnl` is net of `commission` (entry plus exit). `initial_risk` is `qty * (entry - stop)`, or 0
    when the stop is unknown; `from_prices` computes all three exactly from the float prices.
    A day's records are kept, so they are left untracked by the garbage collector (no cycles).
    """

    symbol: str
    strategy: str
    qty: int
    entry_ts: int
    entry_price: float
    exit_ts: int
    exit_price: float
    exit_reason: str
    pnl: Decimal
    commission: Decimal
    initial_risk: Decimal = _ZERO
    session: str = ""  # the session it closed in, where known (the journal's projection sets it)

    def __post_init__(self) -> None:
        if self.qty < 1:
            raise ValueError(f"qty must be >= 1, got {self.qty}")
        if self.exit_reason not in EXIT_REASONS:
            raise ValueError(f"unknown exit_reason {self.exit_reason!r}")
        if self.initial_risk < 0:
            raise ValueError("initial_risk must be >= 0")

    @classmethod
    def from_prices(
        cls,
        *,
        symbol: str,
        strategy: str,
        qty: int,
        entry_ts: int,
        entry_price: float,
        exit_ts: int,
        exit_price: float,
        exit_reason: str,
        entry_commission: Decimal = _ZERO,
        exit_commission: Decimal = _ZERO,
        stop: float | None = None,
    ) -> TradeRecord:
        """Build a record with pnl/commission/risk computed in Decimal from the tick prices."""
        entry = _dec(entry_price)
        commission = entry_commission + exit_commission
        pnl = (_dec(exit_price) - entry) * qty - commission
        risk = _ZERO
        if stop is not None and _dec(stop) < entry:
            risk = (entry - _dec(stop)) * qty
        return cls(symbol, strategy, qty, entry_ts, entry_price, exit_ts, exit_price,
                   exit_reason, pnl, commission, risk)

    @property
    def r_multiple(self) -> float | None:
        """pnl in units of initial risk; None when the risk is unknown (0)."""
        if self.initial_risk <= 0:
            return None
        return ratio(self.pnl, self.initial_risk)

    @property
    def trade_return(self) -> float | None:
        """pnl over entry notional (`entry_price * qty`); None for a zero notional."""
        notional = _dec(self.entry_price) * self.qty
        if notional == 0:
            return None
        return ratio(self.pnl, notional)

    def to_dict(self) -> dict[str, Any]:
        return {
            "symbol": self.symbol,
            "strategy": self.strategy,
            "qty": self.qty,
            "entry_ts": self.entry_ts,
            "entry_price": self.entry_price,
            "exit_ts": self.exit_ts,
            "exit_price": self.exit_price,
            "exit_reason": self.exit_reason,
            "pnl": money_str_4(self.pnl),
            "commission": money_str_4(self.commission),
            "initial_risk": money_str_4(self.initial_risk),
            "r_multiple": self.r_multiple,
        }


def trade_record(p: dict[str, Any], session: str = "") -> TradeRecord:
    """A journaled `trade` payload (`TradeRecord.to_dict`) back as the record, money exact."""
    return TradeRecord(p["symbol"], p["strategy"], int(p["qty"]), int(p["entry_ts"]), float(p["entry_price"]),
                       int(p["exit_ts"]), float(p["exit_price"]), p["exit_reason"], Decimal(p["pnl"]),
                       Decimal(p["commission"]), Decimal(p.get("initial_risk", "0")), session)


ClosedTrade = TradeRecord  # the journal projection's name for it

__all__ = ["EXIT_REASONS", "ClosedTrade", "TradeRecord", "money_str_4", "ratio", "trade_record"]
