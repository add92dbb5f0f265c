"""Pre-trade rules. Each returns a stable reason code (counted in metrics) or None to pass.

Rules are plain functions over an order request and a read-only `RiskView`, so each one can be
tested alone and the manager is just their ordered composition. A rule that can only deny one side
says so in its `sides` attribute (`entry_only` marks buys), so the manager skips it for the other
side without calling it; a rule without the attribute is asked for every order.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import msgspec

from live_runner.core.clients import PdtState
from live_runner.core.models import OrderRequest, OrderRole, OrderType, Side, TradingState

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
_BUY, _SELL = Side.BUY, Side.SELL  # module constants: an Enum class attribute costs a lookup
_HALTED, _REDUCING = TradingState.HALTED, TradingState.REDUCING
_MARKET = OrderType.MARKET
BOTH_SIDES = (Side.BUY, Side.SELL)


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
    return req.side is _BUY


def entry_only(rule: Rule) -> Rule:
    """Mark a rule that never denies a sell (the manager does not ask it about exits)."""
    rule.sides = (_BUY,)  # type: ignore[attr-defined]
    return rule


def state_rule(req: OrderRequest, v: RiskView, lim: RiskLimits) -> str | None:
    state = v.trading_state
    # HALTED stops new exposure only: flattening and the protective stop/target of a position
    # still held pass (no_short_rule keeps every sell within the position).
    if state is _HALTED and req.side is _BUY:
        return HALTED
    if req.side is _BUY:
        if state is _REDUCING:
            return REDUCING_ONLY
        if v.paused:
            return PAUSED
    return None


class BackupDataGate:
    """Entries are refused (BACKUP_DATA) while the runner reads its backup data feed (Yahoo: delayed
    bars, `risk.halt_on_backup_data`); exits, stops and flattening pass. The data failover
    (live_runner.live.feeds) installs it after `state_rule` and flips `active`."""

    __slots__ = ("active",)
    sides = (_BUY,)

    def __init__(self) -> None:
        self.active = False

    def __call__(self, req: OrderRequest, v: RiskView, lim: RiskLimits) -> str | None:
        return BACKUP_DATA if self.active and req.side is _BUY else None


def no_short_rule(req: OrderRequest, v: RiskView, lim: RiskLimits) -> str | None:
    if req.side is _SELL and req.qty > v.position_qty:
        return NO_SHORT
    return None


no_short_rule.sides = (_SELL,)  # type: ignore[attr-defined]


def size_rule(req: OrderRequest, v: RiskView, lim: RiskLimits) -> str | None:
    return SIZE_ZERO if req.qty < 1 else None


def hours_rule(req: OrderRequest, v: RiskView, lim: RiskLimits) -> str | None:
    now, start = v.now, v.regular_open
    if req.order_type is _MARKET and not start <= now <= v.regular_close and req.role not in FLATTEN_ROLES:
        return ORDER_TYPE
    if req.side is _BUY and not start <= now < v.entry_cutoff:
        return TRADING_HOURS
    return None


@entry_only
def daily_loss_rule(req: OrderRequest, v: RiskView, lim: RiskLimits) -> str | None:
    if req.side is _BUY and v.daily_pnl <= -lim.max_daily_loss_pct * v.sod_equity:
        return DAILY_LOSS_LIMIT
    return None


def duplicate_rule_factory() -> tuple[Rule, Callable[[], None]]:
    seen: set[str] = set()

    @entry_only
    def rule(req: OrderRequest, v: RiskView, lim: RiskLimits) -> str | None:
        key = req.signal_key
        if req.side is not _BUY or not key:
            return None
        if key in seen:
            return DUPLICATE_SIGNAL
        seen.add(key)
        return None

    return rule, seen.clear


@entry_only
def position_open_rule(req: OrderRequest, v: RiskView, lim: RiskLimits) -> str | None:
    """One position per symbol: a second entry (any strategy) while one is open or pending."""
    if req.side is _BUY and (v.position_qty > 0 or v.symbol_busy):
        return POSITION_OPEN
    return None


@entry_only
def max_positions_rule(req: OrderRequest, v: RiskView, lim: RiskLimits) -> str | None:
    if req.side is _BUY and v.position_qty == 0:
        if v.open_symbols + v.pending_entry_symbols >= lim.max_positions:
            return MAX_POSITIONS
    return None


@entry_only
def price_rule(req: OrderRequest, v: RiskView, lim: RiskLimits) -> str | None:
    """Entries only: a protective exit is never refused for being far from the market."""
    if req.side is not _BUY:
        return None
    last = v.last_price
    if last <= 0:
        return NO_PRICE
    price = req.limit_price or req.stop_price or req.reference_price
    if price > 0 and abs(price - last) > lim.price_collar_pct * last:
        return PRICE_COLLAR
    return None


@entry_only
def position_size_rule(req: OrderRequest, v: RiskView, lim: RiskLimits) -> str | None:
    if req.side is not _BUY:
        return None
    price = req.limit_price or v.last_price
    if v.position_value + req.qty * price > lim.max_position_size_pct * v.equity + 1e-9:
        return POSITION_SIZE
    return None


@entry_only
def buying_power_rule(req: OrderRequest, v: RiskView, lim: RiskLimits) -> str | None:
    if req.side is not _BUY:
        return None
    price = req.limit_price or v.last_price
    if req.qty * price + v.pending_entry_notional > v.cash:
        return BUYING_POWER
    return None


@entry_only
def rate_rule(req: OrderRequest, v: RiskView, lim: RiskLimits) -> str | None:
    if req.side is _BUY and v.orders_last_minute >= lim.max_orders_per_minute:
        return RATE_LIMIT
    return None


def pdt_rule_factory(state: Callable[[], PdtState | None], max_day_trades: int = 3,
                     min_equity: float = 25_000.0) -> Rule:
    """Every entry of an intraday strategy becomes a day trade by the close. Below `min_equity`,
    refuse entries once the account has `max_day_trades` day trades (the next one would flag it as
    a pattern day trader) or is already flagged. Exits always pass; an unknown state (no account
    read yet) passes too, leaving the broker's own check."""

    @entry_only
    def pdt_rule(req: OrderRequest, v: RiskView, lim: RiskLimits) -> str | None:
        if req.side is not _BUY:
            return None
        s = state()
        if s is None or s.equity >= min_equity:
            return None
        if s.pattern_day_trader or s.daytrade_count >= max_day_trades:
            return PDT
        return None

    return pdt_rule
