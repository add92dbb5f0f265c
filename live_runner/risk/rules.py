"""Pre-trade rules. Each returns a stable reason code (counted in metrics) or None to pass.

Rules are plain functions over an order request and a read-only `RiskView`, so each one can be
tested alone and the manager is just their ordered composition.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import msgspec

from live_runner.models import OrderRequest, OrderRole, OrderType, Side, TradingState

HALTED = "HALTED"
REDUCING_ONLY = "REDUCING_ONLY"
PAUSED = "PAUSED"
NO_SHORT = "NO_SHORT"
SIZE_ZERO = "SIZE_ZERO"
DAILY_LOSS_LIMIT = "DAILY_LOSS_LIMIT"
MAX_POSITIONS = "MAX_POSITIONS"
POSITION_SIZE = "POSITION_SIZE"
BUYING_POWER = "BUYING_POWER"
RATE_LIMIT = "RATE_LIMIT"
PRICE_COLLAR = "PRICE_COLLAR"
TRADING_HOURS = "TRADING_HOURS"
ORDER_TYPE = "ORDER_TYPE"
DUPLICATE_SIGNAL = "DUPLICATE_SIGNAL"
NO_PRICE = "NO_PRICE"
POSITION_OPEN = "POSITION_OPEN"
PDT = "PDT"
BACKUP_DATA = "BACKUP_DATA"

REASON_CODES = (
    HALTED, REDUCING_ONLY, PAUSED, NO_SHORT, SIZE_ZERO, DAILY_LOSS_LIMIT, MAX_POSITIONS,
    POSITION_SIZE, BUYING_POWER, RATE_LIMIT, PRICE_COLLAR, TRADING_HOURS, ORDER_TYPE,
    DUPLICATE_SIGNAL, NO_PRICE, POSITION_OPEN, BACKUP_DATA, PDT,
)

FLATTEN_ROLES = frozenset({OrderRole.EOD, OrderRole.MANUAL})


class RiskView(msgspec.Struct, gc=False):
    """What the rules may read; the manager refreshes it before each check."""

    trading_state: TradingState
    paused: bool
    equity: float
    cash: float
    sod_equity: float
    daily_pnl: float
    position_qty: int
    position_value: float
    open_symbols: int
    pending_entry_symbols: int
    pending_entry_notional: float
    symbol_busy: bool
    last_price: float
    now: int
    regular_open: int
    entry_cutoff: int
    regular_close: int
    orders_last_minute: int


Rule = Callable[[OrderRequest, RiskView, "RiskLimits"], str | None]


@dataclass(frozen=True, slots=True)
class RiskLimits:
    max_positions: int
    max_position_size_pct: float
    max_daily_loss_pct: float
    max_orders_per_minute: int
    price_collar_pct: float


def is_entry(req: OrderRequest) -> bool:
    return req.side is Side.BUY


def state_rule(req: OrderRequest, v: RiskView, lim: RiskLimits) -> str | None:
    if v.trading_state is TradingState.HALTED and req.role not in FLATTEN_ROLES:
        return HALTED
    if is_entry(req):
        if v.trading_state is TradingState.REDUCING:
            return REDUCING_ONLY
        if v.paused:
            return PAUSED
    return None


class BackupDataGate:
    """Entries are refused (BACKUP_DATA) while the runner reads its backup data feed (Yahoo: delayed
    bars, `risk.halt_on_backup_data`); exits, stops and flattening pass. The data failover
    (live_runner.feeds) installs it after `state_rule` and flips `active`."""

    __slots__ = ("active",)

    def __init__(self) -> None:
        self.active = False

    def __call__(self, req: OrderRequest, v: RiskView, lim: RiskLimits) -> str | None:
        return BACKUP_DATA if self.active and is_entry(req) else None


def no_short_rule(req: OrderRequest, v: RiskView, lim: RiskLimits) -> str | None:
    if req.side is Side.SELL and req.qty > v.position_qty:
        return NO_SHORT
    return None


def size_rule(req: OrderRequest, v: RiskView, lim: RiskLimits) -> str | None:
    return SIZE_ZERO if req.qty < 1 else None


def hours_rule(req: OrderRequest, v: RiskView, lim: RiskLimits) -> str | None:
    regular = v.regular_open <= v.now <= v.regular_close
    if req.order_type is OrderType.MARKET and not regular and req.role not in FLATTEN_ROLES:
        return ORDER_TYPE
    if is_entry(req) and not (v.regular_open <= v.now < v.entry_cutoff):
        return TRADING_HOURS
    return None


def daily_loss_rule(req: OrderRequest, v: RiskView, lim: RiskLimits) -> str | None:
    if is_entry(req) and v.daily_pnl <= -lim.max_daily_loss_pct * v.sod_equity:
        return DAILY_LOSS_LIMIT
    return None


def duplicate_rule_factory() -> tuple[Rule, Callable[[], None]]:
    seen: set[str] = set()

    def rule(req: OrderRequest, v: RiskView, lim: RiskLimits) -> str | None:
        if not is_entry(req) or not req.signal_key:
            return None
        if req.signal_key in seen:
            return DUPLICATE_SIGNAL
        seen.add(req.signal_key)
        return None

    return rule, seen.clear


def position_open_rule(req: OrderRequest, v: RiskView, lim: RiskLimits) -> str | None:
    """One position per symbol: a second entry (any strategy) while one is open or pending."""
    if is_entry(req) and (v.position_qty > 0 or v.symbol_busy):
        return POSITION_OPEN
    return None


def max_positions_rule(req: OrderRequest, v: RiskView, lim: RiskLimits) -> str | None:
    if is_entry(req) and v.position_qty == 0:
        if v.open_symbols + v.pending_entry_symbols >= lim.max_positions:
            return MAX_POSITIONS
    return None


def price_rule(req: OrderRequest, v: RiskView, lim: RiskLimits) -> str | None:
    """Entries only: a protective exit is never refused for being far from the market."""
    if not is_entry(req):
        return None
    if v.last_price <= 0:
        return NO_PRICE
    price = req.limit_price or req.stop_price or req.reference_price
    if price > 0 and abs(price - v.last_price) > lim.price_collar_pct * v.last_price:
        return PRICE_COLLAR
    return None


def position_size_rule(req: OrderRequest, v: RiskView, lim: RiskLimits) -> str | None:
    if not is_entry(req):
        return None
    price = req.limit_price or v.last_price
    if v.position_value + req.qty * price > lim.max_position_size_pct * v.equity + 1e-9:
        return POSITION_SIZE
    return None


def buying_power_rule(req: OrderRequest, v: RiskView, lim: RiskLimits) -> str | None:
    if not is_entry(req):
        return None
    price = req.limit_price or v.last_price
    if req.qty * price + v.pending_entry_notional > v.cash:
        return BUYING_POWER
    return None


def rate_rule(req: OrderRequest, v: RiskView, lim: RiskLimits) -> str | None:
    if is_entry(req) and v.orders_last_minute >= lim.max_orders_per_minute:
        return RATE_LIMIT
    return None


class PdtState(msgspec.Struct, frozen=True, gc=False):
    """The broker account's pattern-day-trader state (Alpaca: `daytrade_count`,
    `pattern_day_trader`, `equity`), as last read by the execution client."""

    daytrade_count: int
    pattern_day_trader: bool
    equity: float


def pdt_rule_factory(state: Callable[[], "PdtState | None"], max_day_trades: int = 3,
                     min_equity: float = 25_000.0) -> Rule:
    """Every entry of an intraday strategy becomes a day trade by the close. Below `min_equity`,
    refuse entries once the account has `max_day_trades` day trades (the next one would flag it as
    a pattern day trader) or is already flagged. Exits always pass; an unknown state (no account
    read yet) passes too, leaving the broker's own check."""

    def pdt_rule(req: OrderRequest, v: RiskView, lim: RiskLimits) -> str | None:
        if not is_entry(req):
            return None
        s = state()
        if s is None or s.equity >= min_equity:
            return None
        if s.pattern_day_trader or s.daytrade_count >= max_day_trades:
            return PDT
        return None

    return pdt_rule
