"""Risk manager: each pre-trade rule alone, the manager's composition and states, and the node's
risk wiring (daily loss check, pause/resume, emergency stop, flatten, rebalance) on hand-built
sessions.

DESIGN.md "Risk manager": every order passes it; ACTIVE / REDUCING (only exposure-reducing
orders) / HALTED (no new orders; flattening passes); each denial has a stable reason code.
"""

from __future__ import annotations

import itertools
from collections import Counter
from dataclasses import is_dataclass, replace as dc_replace
from typing import Any

import msgspec
import pytest

from live_runner.core.config import parse_config
from live_runner.persistence.journal import Journal
from live_runner.core.models import (
    NANOS_PER_SECOND, OrderRequest, OrderRole, OrderType, Side, SystemState,
    TradingState,
)
from live_runner.live.node import TradingNode
from live_runner.risk import rules as R
from live_runner.risk.manager import RiskManager
from tests.kit.sessions import SessionBuilder, et_ns

DAY = "2024-03-15"
NEXT_DAY = "2024-03-18"  # the Monday after
SEC = NANOS_PER_SECOND

LIMITS = R.RiskLimits(max_positions=3, max_position_size_pct=0.20, max_daily_loss_pct=0.02,
                      max_orders_per_minute=5, price_collar_pct=0.10)

_ids = itertools.count(1)


def replace(obj: Any, **changes: Any) -> Any:
    """A copy with some fields changed (RiskView is a msgspec Struct, RiskLimits a dataclass)."""
    if is_dataclass(obj):
        return dc_replace(obj, **changes)
    return msgspec.structs.replace(obj, **changes)


def t(hhmm: str, day: str = DAY) -> int:
    return et_ns(day, hhmm)


def view(**kw: Any) -> R.RiskView:
    """A calm mid-morning view that every rule passes; override what a test is about."""
    base = R.RiskView(
        trading_state=TradingState.ACTIVE, paused=False, equity=100_000.0, cash=100_000.0,
        sod_equity=100_000.0, daily_pnl=0.0, position_qty=0, position_value=0.0, open_symbols=0,
        pending_entry_symbols=0, pending_entry_notional=0.0, symbol_busy=False, last_price=10.0,
        now=t("10:00"), regular_open=t("09:30"), entry_cutoff=t("15:55"),
        regular_close=t("16:00"), orders_last_minute=0)
    return replace(base, **kw)


def entry(qty: int = 100, **kw: Any) -> OrderRequest:
    n = next(_ids)
    fields: dict[str, Any] = dict(
        client_order_id=f"T-{n}", strategy="gap_and_go", symbol="ABC", side=Side.BUY, qty=qty,
        order_type=OrderType.MARKET, role=OrderRole.ENTRY, ts=t("10:00"), reference_price=10.0,
        protective_stop=9.5, target_r=2.0, signal_key=f"gap_and_go|ABC|{n}")
    fields.update(kw)
    return OrderRequest(**fields)


def sell(role: OrderRole, qty: int = 100, order_type: OrderType | None = None, **kw: Any) -> OrderRequest:
    if order_type is None:
        order_type = {OrderRole.STOP: OrderType.STOP, OrderRole.TARGET: OrderType.LIMIT}.get(
            role, OrderType.MARKET)
    fields: dict[str, Any] = dict(
        client_order_id=f"T-{next(_ids)}", strategy="gap_and_go", symbol="ABC", side=Side.SELL,
        qty=qty, order_type=order_type, role=role, ts=t("10:00"), reference_price=10.0)
    if order_type is OrderType.STOP:
        fields["stop_price"] = 9.5
    if order_type is OrderType.LIMIT:
        fields["limit_price"] = 11.0
    fields.update(kw)
    return OrderRequest(**fields)


HOLDING = dict(position_qty=100, position_value=1_000.0, open_symbols=1)
EXIT_ROLES = [OrderRole.STOP, OrderRole.TARGET, OrderRole.VWAP_LOSS, OrderRole.EOD, OrderRole.MANUAL]


# --- trading state --------------------------------------------------------------------------


@pytest.mark.parametrize("role", [OrderRole.STOP, OrderRole.TARGET, OrderRole.VWAP_LOSS])
def test_halted_blocks_entries_but_lets_protective_exits_through(role: OrderRole) -> None:
    """A fill while halted must not leave the position without its stop and target."""
    v = view(trading_state=TradingState.HALTED, **HOLDING)
    assert R.state_rule(entry(), v, LIMITS) == R.HALTED
    assert R.state_rule(sell(role), v, LIMITS) is None
    assert RiskManager(LIMITS).check(sell(role), v) is None


@pytest.mark.parametrize("role", [OrderRole.EOD, OrderRole.MANUAL])
def test_halted_lets_flattening_through(role: OrderRole) -> None:
    v = view(trading_state=TradingState.HALTED, now=t("17:00"), **HOLDING)
    assert R.state_rule(sell(role), v, LIMITS) is None
    # ...and the whole manager agrees, even after hours with a market order.
    assert RiskManager(LIMITS).check(sell(role), v) is None


@pytest.mark.parametrize("role", EXIT_ROLES)
def test_reducing_allows_sells_only(role: OrderRole) -> None:
    v = view(trading_state=TradingState.REDUCING, **HOLDING)
    assert R.state_rule(entry(), v, LIMITS) == R.REDUCING_ONLY
    assert R.state_rule(sell(role), v, LIMITS) is None


@pytest.mark.parametrize("role", EXIT_ROLES)
def test_paused_blocks_entries_only(role: OrderRole) -> None:
    v = view(paused=True, **HOLDING)
    assert R.state_rule(entry(), v, LIMITS) == R.PAUSED
    assert R.state_rule(sell(role), v, LIMITS) is None


def test_state_outranks_pause() -> None:
    assert R.state_rule(entry(), view(paused=True, trading_state=TradingState.REDUCING), LIMITS) == R.REDUCING_ONLY
    assert R.state_rule(entry(), view(paused=True, trading_state=TradingState.HALTED), LIMITS) == R.HALTED
    assert R.state_rule(entry(), view(), LIMITS) is None


# --- shape of the order ---------------------------------------------------------------------


def test_no_short() -> None:
    v = view(position_qty=100)
    assert R.no_short_rule(sell(OrderRole.MANUAL, qty=101), v, LIMITS) == R.NO_SHORT
    assert R.no_short_rule(sell(OrderRole.MANUAL, qty=100), v, LIMITS) is None
    assert R.no_short_rule(sell(OrderRole.STOP, qty=1), view(), LIMITS) == R.NO_SHORT  # flat: nothing to sell
    assert R.no_short_rule(entry(qty=500), view(), LIMITS) is None


@pytest.mark.parametrize("qty", [0, -1, -100])
def test_size_zero(qty: int) -> None:
    assert R.size_rule(entry(qty=qty), view(), LIMITS) == R.SIZE_ZERO
    assert R.size_rule(sell(OrderRole.MANUAL, qty=qty), view(), LIMITS) == R.SIZE_ZERO


def test_size_one_share_passes() -> None:
    assert R.size_rule(entry(qty=1), view(), LIMITS) is None


# --- trading hours and order types ----------------------------------------------------------


@pytest.mark.parametrize("now, expected", [
    ("04:00", R.TRADING_HOURS), ("09:29", R.TRADING_HOURS), ("09:30", None), ("12:00", None),
    ("15:54", None), ("15:55", R.TRADING_HOURS), ("15:59", R.TRADING_HOURS),
])
def test_entry_window_for_limit_entries(now: str, expected: str | None) -> None:
    """Entries only in [09:30, entry cutoff); a limit order keeps the order-type rule out of it."""
    req = entry(order_type=OrderType.LIMIT, limit_price=10.0)
    assert R.hours_rule(req, view(now=t(now)), LIMITS) == expected


def test_entry_window_edges_to_the_nanosecond() -> None:
    req = entry(order_type=OrderType.LIMIT, limit_price=10.0)
    assert R.hours_rule(req, view(now=t("09:30") - 1), LIMITS) == R.TRADING_HOURS
    assert R.hours_rule(req, view(now=t("15:55") - 1), LIMITS) is None
    assert R.hours_rule(req, view(now=t("15:55")), LIMITS) == R.TRADING_HOURS


@pytest.mark.parametrize("now", ["04:00", "09:29", "16:01", "19:59"])
def test_market_orders_refused_outside_regular_hours(now: str) -> None:
    v = view(now=t(now), **HOLDING)
    assert R.hours_rule(entry(), v, LIMITS) == R.ORDER_TYPE
    assert R.hours_rule(sell(OrderRole.VWAP_LOSS), v, LIMITS) == R.ORDER_TYPE
    # Resting exits that are not market orders, and flattening, pass.
    assert R.hours_rule(sell(OrderRole.TARGET), v, LIMITS) is None
    assert R.hours_rule(sell(OrderRole.STOP), v, LIMITS) is None
    assert R.hours_rule(sell(OrderRole.EOD), v, LIMITS) is None
    assert R.hours_rule(sell(OrderRole.MANUAL), v, LIMITS) is None


def test_market_exit_inside_regular_hours_passes() -> None:
    for now in ("09:30", "12:00", "15:58"):
        assert R.hours_rule(sell(OrderRole.VWAP_LOSS), view(now=t(now), **HOLDING), LIMITS) is None


# --- daily loss -----------------------------------------------------------------------------


@pytest.mark.parametrize("pnl, expected", [
    (0.0, None), (1_500.0, None), (-1_999.99, None),
    (-2_000.0, R.DAILY_LOSS_LIMIT),   # exactly the limit: 2% of 100k start-of-day equity
    (-2_000.01, R.DAILY_LOSS_LIMIT),  # just beyond it
    (-10_000.0, R.DAILY_LOSS_LIMIT),
])
def test_daily_loss_limit_blocks_entries(pnl: float, expected: str | None) -> None:
    assert R.daily_loss_rule(entry(), view(daily_pnl=pnl), LIMITS) == expected


def test_daily_loss_limit_is_relative_to_start_of_day_equity() -> None:
    v = view(sod_equity=50_000.0, equity=49_000.0, daily_pnl=-1_000.0)  # 2% of 50k
    assert R.daily_loss_rule(entry(), v, LIMITS) == R.DAILY_LOSS_LIMIT
    assert R.daily_loss_rule(entry(), replace(v, daily_pnl=-999.0), LIMITS) is None


@pytest.mark.parametrize("role", EXIT_ROLES)
def test_daily_loss_never_blocks_exits(role: OrderRole) -> None:
    assert R.daily_loss_rule(sell(role), view(daily_pnl=-50_000.0, **HOLDING), LIMITS) is None


# --- exposure -------------------------------------------------------------------------------


@pytest.mark.parametrize("open_symbols, pending, expected", [
    (0, 0, None), (2, 0, None), (1, 1, None),
    (3, 0, R.MAX_POSITIONS), (2, 1, R.MAX_POSITIONS), (0, 3, R.MAX_POSITIONS), (4, 2, R.MAX_POSITIONS),
])
def test_max_positions_counts_pending_entries(open_symbols: int, pending: int, expected: str | None) -> None:
    v = view(open_symbols=open_symbols, pending_entry_symbols=pending)
    assert R.max_positions_rule(entry(), v, LIMITS) == expected


def test_max_positions_never_blocks_exits() -> None:
    v = view(open_symbols=9, pending_entry_symbols=9, position_qty=100)
    for role in EXIT_ROLES:
        assert R.max_positions_rule(sell(role), v, LIMITS) is None


def test_position_size_cap() -> None:
    # 20% of 100k = 20_000 at the last price 10.00.
    assert R.position_size_rule(entry(qty=2_000), view(), LIMITS) is None
    assert R.position_size_rule(entry(qty=2_001), view(), LIMITS) == R.POSITION_SIZE
    # Marked against current equity, not the starting balance.
    assert R.position_size_rule(entry(qty=2_000), view(equity=99_990.0), LIMITS) == R.POSITION_SIZE
    # A limit entry is valued at its limit.
    limit_entry = entry(qty=2_000, order_type=OrderType.LIMIT, limit_price=10.01)
    assert R.position_size_rule(limit_entry, view(), LIMITS) == R.POSITION_SIZE
    # Exits are never refused for size.
    assert R.position_size_rule(sell(OrderRole.MANUAL, qty=50_000), view(position_qty=50_000), LIMITS) is None


def test_position_size_includes_what_is_already_held() -> None:
    v = view(position_value=15_000.0)
    assert R.position_size_rule(entry(qty=500), v, LIMITS) is None
    assert R.position_size_rule(entry(qty=501), v, LIMITS) == R.POSITION_SIZE


def test_buying_power_includes_pending_entry_notional() -> None:
    lim = replace(LIMITS, max_position_size_pct=1.0)
    v = view(cash=30_000.0)
    assert R.buying_power_rule(entry(qty=3_000), v, lim) is None
    assert R.buying_power_rule(entry(qty=3_001), v, lim) == R.BUYING_POWER
    # 20_000 of this order + 10_000 already committed to pending entries = all the cash.
    assert R.buying_power_rule(entry(qty=2_000), replace(v, pending_entry_notional=10_000.0), lim) is None
    assert R.buying_power_rule(entry(qty=2_000), replace(v, pending_entry_notional=10_000.01), lim) == R.BUYING_POWER
    assert R.buying_power_rule(sell(OrderRole.MANUAL, qty=9_999), replace(v, cash=0.0), lim) is None


# --- market sanity --------------------------------------------------------------------------


def test_price_collar_applies_to_entries_only() -> None:
    v = view(last_price=10.0)  # collar 10% -> [9.00, 11.00]
    limit = dict(order_type=OrderType.LIMIT)
    assert R.price_rule(entry(limit_price=11.0, **limit), v, LIMITS) is None
    assert R.price_rule(entry(limit_price=9.0, **limit), v, LIMITS) is None
    assert R.price_rule(entry(limit_price=11.01, **limit), v, LIMITS) == R.PRICE_COLLAR
    assert R.price_rule(entry(limit_price=8.99, **limit), v, LIMITS) == R.PRICE_COLLAR
    # A market entry is compared through its reference price.
    assert R.price_rule(entry(reference_price=12.0), v, LIMITS) == R.PRICE_COLLAR
    assert R.price_rule(entry(reference_price=10.5), v, LIMITS) is None
    # A protective stop far below the market, or a target far above it, is never refused.
    assert R.price_rule(sell(OrderRole.STOP, stop_price=5.0), v, LIMITS) is None
    assert R.price_rule(sell(OrderRole.TARGET, limit_price=20.0), v, LIMITS) is None


def test_entry_without_a_last_price_is_refused() -> None:
    assert R.price_rule(entry(), view(last_price=0.0), LIMITS) == R.NO_PRICE
    assert R.price_rule(sell(OrderRole.MANUAL), view(last_price=0.0), LIMITS) is None


def test_duplicate_signal_suppression() -> None:
    rule, reset = R.duplicate_rule_factory()
    first = entry(signal_key="gap_and_go|ABC|1")
    assert rule(first, view(), LIMITS) is None
    assert rule(entry(signal_key="gap_and_go|ABC|1"), view(), LIMITS) == R.DUPLICATE_SIGNAL
    assert rule(entry(signal_key="gap_and_go|ABC|2"), view(), LIMITS) is None
    assert rule(entry(signal_key="vwap_reclaim|ABC|1"), view(), LIMITS) is None
    # Orders without a signal key (and exits) are never duplicates.
    assert rule(entry(signal_key=""), view(), LIMITS) is None
    assert rule(entry(signal_key=""), view(), LIMITS) is None
    assert rule(sell(OrderRole.MANUAL, signal_key="gap_and_go|ABC|1"), view(**HOLDING), LIMITS) is None
    reset()
    assert rule(entry(signal_key="gap_and_go|ABC|1"), view(), LIMITS) is None


def test_position_open_one_position_per_symbol() -> None:
    assert R.position_open_rule(entry(), view(position_qty=10), LIMITS) == R.POSITION_OPEN
    assert R.position_open_rule(entry(), view(symbol_busy=True), LIMITS) == R.POSITION_OPEN
    assert R.position_open_rule(entry(), view(), LIMITS) is None
    assert R.position_open_rule(sell(OrderRole.STOP), view(position_qty=10, symbol_busy=True), LIMITS) is None


# --- the manager ----------------------------------------------------------------------------


def _approve(mgr: RiskManager, req: OrderRequest, now: int, **kw: Any) -> str | None:
    return mgr.check(req, view(now=now, orders_last_minute=mgr.orders_last_minute(now), **kw))


def test_rate_limit_over_a_sliding_minute() -> None:
    mgr = RiskManager(replace(LIMITS, max_orders_per_minute=3))
    t0 = t("10:00")
    for dt in (0, 10, 20):
        assert _approve(mgr, entry(), t0 + dt * SEC) is None
    assert _approve(mgr, entry(), t0 + 59 * SEC) == R.RATE_LIMIT
    # An exit is never rate limited (and it is an order sent, so it counts).
    assert _approve(mgr, sell(OrderRole.STOP), t0 + 59 * SEC, **HOLDING) is None
    assert mgr.orders_last_minute(t0 + 59 * SEC) == 4
    # At t0 + 60s the t0 order has left the window: 10s, 20s and 59s remain.
    assert _approve(mgr, entry(), t0 + 60 * SEC) == R.RATE_LIMIT
    assert mgr.orders_last_minute(t0 + 70 * SEC) == 2  # 10s has left too
    assert _approve(mgr, entry(), t0 + 70 * SEC) is None
    assert _approve(mgr, entry(), t0 + 71 * SEC) == R.RATE_LIMIT
    assert mgr.orders_last_minute(t0 + 3 * 60 * SEC) == 0
    assert _approve(mgr, entry(), t0 + 3 * 60 * SEC) is None
    assert mgr.denials == Counter({R.RATE_LIMIT: 3})


def test_denied_orders_do_not_count_against_the_rate_limit() -> None:
    mgr = RiskManager(replace(LIMITS, max_orders_per_minute=2))
    t0 = t("10:00")
    for _ in range(5):
        assert mgr.check(entry(qty=0), view(now=t0)) == R.SIZE_ZERO
    assert mgr.orders_last_minute(t0) == 0
    assert _approve(mgr, entry(), t0) is None


def test_manager_counts_denials_by_reason() -> None:
    mgr = RiskManager(LIMITS)
    assert mgr.check(entry(), view()) is None
    assert mgr.check(entry(), view(paused=True)) == R.PAUSED
    assert mgr.check(entry(), view(paused=True)) == R.PAUSED
    assert mgr.check(entry(), view(open_symbols=3)) == R.MAX_POSITIONS
    assert mgr.check(entry(qty=0), view()) == R.SIZE_ZERO
    assert mgr.check(entry(), view(trading_state=TradingState.HALTED)) == R.HALTED
    assert mgr.check(sell(OrderRole.STOP), view(trading_state=TradingState.HALTED, **HOLDING)) is None
    assert mgr.check(entry(), view(daily_pnl=-2_000.0)) == R.DAILY_LOSS_LIMIT
    assert mgr.denials == Counter({R.PAUSED: 2, R.MAX_POSITIONS: 1, R.SIZE_ZERO: 1, R.HALTED: 1,
                                   R.DAILY_LOSS_LIMIT: 1})
    assert set(mgr.denials) <= set(R.REASON_CODES)


def test_first_failing_rule_wins_in_order() -> None:
    """An entry that breaks every rule; fixing the reported problem reveals the next one."""
    mgr = RiskManager(LIMITS)
    seen_key = "gap_and_go|ABC|seen"
    assert mgr.check(entry(signal_key=seen_key), view()) is None  # registers the signal key

    req_kw: dict[str, Any] = dict(qty=0, reference_price=20.0, signal_key=seen_key)
    v = view(trading_state=TradingState.HALTED, paused=True, now=t("09:00"), symbol_busy=True,
             daily_pnl=-5_000.0, open_symbols=0, pending_entry_symbols=3, equity=4_000.0,
             cash=500.0, orders_last_minute=99)
    steps: list[tuple[str, dict[str, Any], dict[str, Any]]] = [
        (R.HALTED, {}, dict(trading_state=TradingState.REDUCING)),
        (R.REDUCING_ONLY, {}, dict(trading_state=TradingState.ACTIVE)),
        (R.PAUSED, {}, dict(paused=False)),
        (R.SIZE_ZERO, dict(qty=100), {}),
        (R.ORDER_TYPE, {}, dict(now=t("15:57"))),
        (R.TRADING_HOURS, {}, dict(now=t("10:00"))),
        (R.DUPLICATE_SIGNAL, dict(signal_key=None), {}),
        (R.POSITION_OPEN, {}, dict(symbol_busy=False)),
        (R.DAILY_LOSS_LIMIT, {}, dict(daily_pnl=0.0)),
        (R.MAX_POSITIONS, {}, dict(pending_entry_symbols=0)),
        (R.PRICE_COLLAR, dict(reference_price=10.0), {}),
        (R.POSITION_SIZE, {}, dict(equity=100_000.0)),
        (R.BUYING_POWER, {}, dict(cash=100_000.0)),
        (R.RATE_LIMIT, {}, dict(orders_last_minute=0)),
    ]
    reported = []
    for expected, fix_req, fix_view in steps:
        key = req_kw["signal_key"]
        reported.append(mgr.check(entry(**{**req_kw, "signal_key": key or f"fresh|{next(_ids)}"}), v))
        req_kw.update(fix_req)
        v = replace(v, **fix_view)
    assert reported == [s[0] for s in steps]
    assert mgr.check(entry(**{**req_kw, "signal_key": f"fresh|{next(_ids)}"}), v) is None
    assert mgr.denials == Counter({s[0]: 1 for s in steps})
    assert [s[0] for s in steps] == [r for r in R.REASON_CODES if r not in (R.NO_SHORT, R.NO_PRICE)][:3] + [
        R.SIZE_ZERO, R.ORDER_TYPE, R.TRADING_HOURS, R.DUPLICATE_SIGNAL, R.POSITION_OPEN,
        R.DAILY_LOSS_LIMIT, R.MAX_POSITIONS, R.PRICE_COLLAR, R.POSITION_SIZE, R.BUYING_POWER,
        R.RATE_LIMIT]


def test_rules_are_added_through_the_manager_in_place_and_once() -> None:
    """The wiring adds rules with `add_rule` (the data failover's gate right after state_rule, a
    broker's rule at the end); `rules` is a read-only tuple and each side runs only its rules."""
    mgr = RiskManager(LIMITS)
    assert isinstance(mgr.rules, tuple) and mgr.rules[0] is R.state_rule
    gate = R.BackupDataGate()
    gate.active = True
    mgr.add_rule(gate, after=R.state_rule)
    mgr.add_rule(gate, after=R.state_rule)  # again: a no-op

    def last(req: OrderRequest, v: R.RiskView, lim: R.RiskLimits) -> str | None:
        return R.PRICE_COLLAR

    mgr.add_rule(last)
    assert mgr.rules[:2] == (R.state_rule, gate) and mgr.rules[-1] is last and len(mgr.rules) == 14
    assert mgr.rules_for(Side.BUY)[1] is gate and gate not in mgr.rules_for(Side.SELL)
    assert mgr.check(entry(), view()) == R.BACKUP_DATA
    assert mgr.check(sell(OrderRole.STOP), view(**HOLDING)) == R.PRICE_COLLAR
    gate.active = False
    assert mgr.check(entry(), view()) == R.PRICE_COLLAR
    with pytest.raises(AttributeError):
        mgr.rules = ()  # type: ignore[misc]


def test_a_sell_beyond_the_position_is_refused_in_every_state() -> None:
    mgr = RiskManager(LIMITS)
    too_many = sell(OrderRole.STOP, qty=200)
    assert mgr.check(too_many, view(trading_state=TradingState.HALTED, **HOLDING)) == R.NO_SHORT
    assert mgr.check(too_many, view(**HOLDING)) == R.NO_SHORT
    assert mgr.check(sell(OrderRole.STOP, qty=100), view(**HOLDING)) is None


# --- state transitions ----------------------------------------------------------------------


class Recorder:
    def __init__(self) -> None:
        self.calls: list[tuple[TradingState, TradingState, str]] = []

    def __call__(self, old: TradingState, new: TradingState, reason: str) -> None:
        self.calls.append((old, new, reason))


def test_daily_loss_breach_moves_active_to_reducing_once() -> None:
    rec = Recorder()
    mgr = RiskManager(LIMITS, on_state_change=rec)
    assert mgr.check_daily_loss(-1_999.99, 100_000.0) is False
    assert mgr.state is TradingState.ACTIVE and rec.calls == []
    assert mgr.check_daily_loss(-2_000.0, 100_000.0) is True  # exactly the limit is a breach
    assert mgr.state is TradingState.REDUCING
    assert mgr.check_daily_loss(-3_000.0, 100_000.0) is False
    assert mgr.check_daily_loss(-2_500.0, 100_000.0) is False
    assert mgr.check_daily_loss(500.0, 100_000.0) is False  # recovering does not lift it
    assert mgr.state is TradingState.REDUCING
    assert len(rec.calls) == 1
    old, new, reason = rec.calls[0]
    assert (old, new) == (TradingState.ACTIVE, TradingState.REDUCING)
    assert "daily loss" in reason and "-2000.00" in reason
    # And the manager now refuses entries while letting exits through.
    assert mgr.check(entry(), view(trading_state=mgr.state)) == R.REDUCING_ONLY
    assert mgr.check(sell(OrderRole.MANUAL), view(trading_state=mgr.state, **HOLDING)) is None


def test_daily_loss_breach_leaves_halted_alone() -> None:
    rec = Recorder()
    mgr = RiskManager(LIMITS, on_state_change=rec)
    mgr.set_state(TradingState.HALTED, "operator")
    assert mgr.check_daily_loss(-50_000.0, 100_000.0) is False
    assert mgr.state is TradingState.HALTED
    assert [c[1] for c in rec.calls] == [TradingState.HALTED]


def test_start_session_lifts_reducing_but_not_halted() -> None:
    rec = Recorder()
    mgr = RiskManager(LIMITS, on_state_change=rec)
    mgr.check_daily_loss(-2_000.0, 100_000.0)
    mgr.start_session()
    assert mgr.state is TradingState.ACTIVE
    assert [(c[0], c[1]) for c in rec.calls] == [
        (TradingState.ACTIVE, TradingState.REDUCING), (TradingState.REDUCING, TradingState.ACTIVE)]
    mgr.set_state(TradingState.HALTED, "emergency stop")
    mgr.start_session()
    mgr.start_session()
    assert mgr.state is TradingState.HALTED
    assert len(rec.calls) == 3
    mgr.start_session()  # ACTIVE stays ACTIVE without a callback
    assert len(rec.calls) == 3


def test_set_state_to_the_same_state_is_silent() -> None:
    rec = Recorder()
    mgr = RiskManager(LIMITS, on_state_change=rec)
    mgr.set_state(TradingState.ACTIVE, "noop")
    assert rec.calls == []


def test_start_session_resets_signal_keys_and_rate_window_but_not_pause() -> None:
    mgr = RiskManager(replace(LIMITS, max_orders_per_minute=1))
    mgr.paused = True
    now = t("10:00")
    assert mgr.check(entry(signal_key="k"), view(now=now)) is None
    assert mgr.check(entry(signal_key="k"), view(now=now)) == R.DUPLICATE_SIGNAL
    assert mgr.orders_last_minute(now) == 1
    mgr.start_session()
    assert mgr.paused is True  # an operator's pause outlives the session boundary
    assert mgr.orders_last_minute(now) == 0
    assert mgr.check(entry(signal_key="k"), view(now=now)) is None


# --- the node's risk wiring, on hand-built sessions -----------------------------------------


def gapper(s: SessionBuilder, sym: str, k: float = 1.0, break_at: str = "09:31",
           day: str = DAY, prev_close: bool = True) -> None:
    """A gapper (prev close 10*k, premarket high 11*k) that breaks the premarket high at `break_at`
    (close 11.2*k, low 10.9*k = the stop); flat at 10.95*k from 09:30 until then."""
    p = lambda x: round(x * k, 2)  # noqa: E731
    if prev_close:
        s.prev_close(sym, p(10.0))
    s.bar(sym, "08:00", p(10.5), p(10.8), p(10.4), p(10.7), 30_000, day=day)
    s.bar(sym, "09:00", p(10.7), p(11.0), p(10.6), p(10.9), 30_000, day=day)
    h, m = (int(x) for x in break_at.split(":"))
    last = f"{h:02d}:{m - 1:02d}" if m else f"{h - 1:02d}:59"
    s.flat(sym, "09:30", last, p(10.95), 20_000, day=day)
    s.bar(sym, break_at, p(10.95), p(11.3), p(10.9), p(11.2), 60_000, day=day)


def hhmm_plus(hhmm: str, minutes: int) -> str:
    h, m = (int(x) for x in hhmm.split(":"))
    total = h * 60 + m + minutes
    return f"{total // 60:02d}:{total % 60:02d}"


def make_node(**config: Any) -> TradingNode:
    config.setdefault("active_strategies", ["gap_and_go"])
    node = TradingNode(parse_config(config), Journal("sqlite://"))
    node.start()
    return node


def until(bars: list, hhmm: str, day: str = DAY) -> tuple[list, list]:
    """Split sorted bars at the start of hhmm (bars before it, bars from it on)."""
    cut = et_ns(day, hhmm)
    return [b for b in bars if b.ts < cut], [b for b in bars if b.ts >= cut]


def events(node: TradingNode, *kinds: str) -> list[dict[str, Any]]:
    node.journal.flush()
    return node.journal.read(kinds=kinds or None)


def denials(node: TradingNode) -> list[tuple[str, str]]:
    return [(e["payload"]["symbol"], e["payload"]["reason"]) for e in events(node, "denial")]


def entry_orders(node: TradingNode) -> list[str]:
    return [e["payload"]["symbol"] for e in events(node, "order") if e["payload"]["role"] == "entry"]


def stop_out_session() -> SessionBuilder:
    """GAPR: entry 1785 @ 11.25 at 09:32, stopped at 10.90 at 09:33 (-637.25 with commissions).
    GAPB (half the price) breaks its premarket high at 09:40, after the loss."""
    s = SessionBuilder()
    gapper(s, "GAPR")
    s.bar("GAPR", "09:32", 11.25, 11.4, 11.1, 11.35, 40_000)
    s.bar("GAPR", "09:33", 11.3, 11.3, 10.5, 10.6, 40_000)
    s.flat("GAPR", "09:34", "09:45", 10.6, 10_000)
    gapper(s, "GAPB", k=0.5, break_at="09:40")
    s.flat("GAPB", "09:41", "09:45", 5.6, 10_000)
    return s


def test_stop_out_beyond_daily_loss_moves_node_to_reducing_once() -> None:
    """The loss is realized by the stop fill that closes the only position: the breach must still
    be noticed (state, journal, alert), and the next gapper's entry refused."""
    node = make_node(max_daily_loss_pct=0.005)  # 500 on 100k
    node.feed(stop_out_session().sorted_bars())
    node.stop()
    assert node.risk.state is TradingState.REDUCING
    states = events(node, "trading_state")
    assert [(e["key"], e["payload"]["from"], e["session"]) for e in states] == [("reducing", "active", DAY)]
    assert states[0]["ts"] == et_ns(DAY, "09:34")  # at the close of the bar the stop filled in
    assert "-637.25" in states[0]["payload"]["reason"]
    alerts = [e for e in events(node, "alert") if e["key"] == "trading_state:reducing"]
    assert len(alerts) == 1 and alerts[0]["payload"]["severity"] == "critical"
    assert entry_orders(node) == ["GAPR"]
    assert denials(node) == [("GAPB", R.REDUCING_ONLY)]
    assert node.risk.denials == Counter({R.REDUCING_ONLY: 1})
    assert [tr.exit_reason for tr in node.performance.trades] == ["stop"]


def test_loss_within_the_limit_keeps_trading() -> None:
    node = make_node(max_daily_loss_pct=0.01)  # 1000 > 637.25
    node.feed(stop_out_session().sorted_bars())
    node.stop()
    assert node.risk.state is TradingState.ACTIVE
    assert events(node, "trading_state") == []
    assert entry_orders(node) == ["GAPR", "GAPB"]
    assert denials(node) == []


@pytest.mark.parametrize("flatten_on_breach", [False, True])
def test_unrealized_breach_reduces_and_optionally_flattens(flatten_on_breach: bool) -> None:
    """Two positions; GAPR marks down to 10.95 (above its 10.90 stop): -541.75 unrealized."""
    s = SessionBuilder()
    gapper(s, "GAPR")
    gapper(s, "GAPS", k=0.5)
    s.bar("GAPR", "09:32", 11.25, 11.4, 11.1, 11.35, 40_000)
    s.bar("GAPS", "09:32", 5.6, 5.65, 5.55, 5.6, 40_000)
    s.bar("GAPR", "09:33", 11.0, 11.0, 10.95, 10.95, 40_000)
    s.bar("GAPS", "09:33", 5.6, 5.65, 5.55, 5.6, 40_000)
    s.flat("GAPR", "09:34", "09:40", 10.95, 10_000)
    s.flat("GAPS", "09:34", "09:40", 5.6, 10_000)
    node = make_node(max_daily_loss_pct=0.005, risk={"flatten_on_daily_loss": flatten_on_breach})
    bars_before, rest = until(s.sorted_bars(), "09:34")
    node.feed(bars_before)
    assert node.risk.state is TradingState.REDUCING
    assert node.portfolio.daily_pnl() <= -500
    orders = [e["payload"] for e in events(node, "order")]
    manual = [(o["symbol"], o["qty"]) for o in orders if o["role"] == "manual"]
    if flatten_on_breach:
        assert sorted(manual) == [("GAPR", 1785), ("GAPS", 3571)]
    else:
        assert manual == []
    node.feed(rest)
    if flatten_on_breach:
        assert node.portfolio.positions == {}
        assert sorted((tr.symbol, tr.exit_reason) for tr in node.performance.trades) == [
            ("GAPR", "manual"), ("GAPS", "manual")]
    else:
        assert sorted(node.portfolio.positions) == ["GAPR", "GAPS"]  # stops and targets still work
    node.stop()
    assert len(events(node, "trading_state")) == 1


def test_max_positions_counts_pending_entries_in_the_chain() -> None:
    """Two gappers break on the same bar: the first entry is pending (fills at the next open)
    when the second is checked, and with max_positions=1 the second is refused."""
    s = SessionBuilder()
    gapper(s, "GAPA")
    gapper(s, "GAPB", k=0.5)
    s.flat("GAPA", "09:32", "09:35", 11.25, 10_000)
    s.flat("GAPB", "09:32", "09:35", 5.6, 10_000)
    node = make_node(max_positions=1)
    node.feed(s.sorted_bars())
    assert entry_orders(node) == ["GAPA"]
    assert denials(node) == [("GAPB", R.MAX_POSITIONS)]
    assert list(node.portfolio.positions) == ["GAPA"]
    node.stop()


def test_two_positions_allowed_with_max_positions_two() -> None:
    s = SessionBuilder()
    gapper(s, "GAPA")
    gapper(s, "GAPB", k=0.5)
    s.flat("GAPA", "09:32", "09:35", 11.25, 10_000)
    s.flat("GAPB", "09:32", "09:35", 5.6, 10_000)
    node = make_node(max_positions=2)
    node.feed(s.sorted_bars())
    assert entry_orders(node) == ["GAPA", "GAPB"]
    assert sorted(node.portfolio.positions) == ["GAPA", "GAPB"]
    node.stop()


def test_buying_power_counts_the_pending_entry_in_the_chain() -> None:
    """Each entry alone fits the 60% size cap; together they exceed the cash."""
    s = SessionBuilder()
    gapper(s, "GAPA")
    gapper(s, "GAPB", k=0.5)
    s.flat("GAPA", "09:32", "09:35", 11.25, 10_000)
    s.flat("GAPB", "09:32", "09:35", 5.6, 10_000)
    node = make_node(max_position_size_pct=0.6, risk_per_trade_pct=0.5)
    node.feed(s.sorted_bars())
    assert entry_orders(node) == ["GAPA"]
    assert denials(node) == [("GAPB", R.BUYING_POWER)]
    node.stop()


def test_emergency_stop_cancels_flattens_and_halts_across_sessions() -> None:
    s = SessionBuilder()
    gapper(s, "GAPR")
    s.bar("GAPR", "09:32", 11.25, 11.4, 11.1, 11.35, 40_000)   # entry fills at 11.25
    s.bar("GAPR", "09:33", 11.3, 11.4, 11.0, 11.3, 40_000)     # neither stop nor target
    s.bar("GAPR", "09:34", 11.1, 11.2, 11.0, 11.1, 40_000)     # the manual sell fills at 11.10
    s.bar("GAPR", "09:35", 10.0, 10.0, 9.0, 9.5, 40_000)       # the old stop would have hit here
    gapper(s, "GAPB", k=0.5, break_at="09:40")
    s.flat("GAPB", "09:41", "09:45", 5.6, 10_000)
    # The next session: a fresh gapper off GAPC's close of the first day.
    s.bar("GAPC", "15:59", 10.0, 10.0, 10.0, 10.0, 10_000)
    gapper(s, "GAPC", day=NEXT_DAY, prev_close=False)
    s.flat("GAPC", "09:32", "09:35", 11.25, 10_000, day=NEXT_DAY)
    node = make_node()
    before, after = until(s.sorted_bars(), "09:34")
    node.feed(before)
    assert sorted(o["role"] for o in (e["payload"] for e in events(node, "order"))) == ["entry", "stop", "target"]
    result = node.command("emergency_stop", source="test")
    assert result["trading_state"] == "halted"
    canceled = {e["key"] for e in events(node, "order_event") if e["payload"]["status"] == "canceled"}
    exits = {e["key"] for e in events(node, "order") if e["payload"]["role"] in ("stop", "target")}
    assert canceled == exits and len(exits) == 2
    [manual] = [e["payload"] for e in events(node, "order") if e["payload"]["role"] == "manual"]
    assert (manual["symbol"], manual["side"], manual["qty"], manual["type"]) == ("GAPR", "sell", 1785, "market")
    node.feed(after)
    node.stop()
    assert node.portfolio.positions == {}
    [trade] = node.performance.trades
    assert (trade.exit_reason, trade.exit_price) == ("manual", 11.10)
    assert node.risk.state is TradingState.HALTED  # the new session does not lift it
    assert denials(node) == [("GAPB", R.HALTED), ("GAPC", R.HALTED)]
    assert entry_orders(node) == ["GAPR"]
    assert [(e["key"], e["session"]) for e in events(node, "trading_state")] == [("halted", DAY)]
    [cmd] = events(node, "command")
    assert (cmd["key"], cmd["payload"]["source"]) == ("emergency_stop", "test")


def test_emergency_stop_cancels_a_pending_entry() -> None:
    s = SessionBuilder()
    gapper(s, "GAPR")
    s.flat("GAPR", "09:32", "09:40", 11.25, 10_000)
    node = make_node()
    before, after = until(s.sorted_bars(), "09:32")
    node.feed(before)
    assert entry_orders(node) == ["GAPR"]
    node.command("emergency_stop")
    node.feed(after)
    node.stop()
    assert node.portfolio.positions == {} and node.performance.trades == []
    assert events(node, "fill") == []
    statuses = [e["payload"]["status"] for e in events(node, "order_event")]
    assert statuses == ["accepted", "canceled"]


def test_pause_blocks_entries_but_not_exits_and_resume_lifts_it() -> None:
    s = SessionBuilder()
    gapper(s, "GAPR")
    s.bar("GAPR", "09:32", 11.25, 11.4, 11.1, 11.35, 40_000)
    s.bar("GAPR", "09:35", 11.3, 11.3, 10.5, 10.6, 40_000)     # stop at 10.90 fills while paused
    gapper(s, "GAPB", k=0.5, break_at="09:40")                  # refused: paused
    gapper(s, "GAPC", k=0.8, break_at="09:50")                  # after resume: entered
    s.flat("GAPC", "09:51", "09:55", 9.0, 10_000)
    node = make_node()
    first, rest = until(s.sorted_bars(), "09:33")
    node.feed(first)
    assert node.command("pause_trading")["state"] == SystemState.PAUSED.value
    middle, last = until(rest, "09:45")
    node.feed(middle)
    assert [tr.exit_reason for tr in node.performance.trades] == ["stop"]
    assert node.command("resume_trading")["state"] == SystemState.RUNNING.value
    node.feed(last)
    node.stop()
    assert denials(node) == [("GAPB", R.PAUSED)]
    assert entry_orders(node) == ["GAPR", "GAPC"]
    assert node.risk.state is TradingState.ACTIVE


def test_flatten_command_for_one_symbol_and_rebalance_to_fewer_positions() -> None:
    s = SessionBuilder()
    for sym, k, at in (("GAPA", 1.0, "09:31"), ("GAPB", 0.5, "09:33"), ("GAPC", 0.8, "09:35")):
        gapper(s, sym, k=k, break_at=at)
        s.flat(sym, hhmm_plus(at, 1), "09:50", round(11.2 * k, 2), 10_000)
    node = make_node()
    before, after = until(s.sorted_bars(), "09:40")
    node.feed(before)
    assert sorted(node.portfolio.positions) == ["GAPA", "GAPB", "GAPC"]
    node.command("flatten", symbol="GAPA")
    # The operator lowers max_positions to 1: rebalance closes the newest beyond it (GAPC, GAPB).
    node.config = node.config.model_copy(update={"max_positions": 1})
    node.command("rebalance_portfolio")
    sells = [(e["payload"]["symbol"], e["payload"]["role"]) for e in events(node, "order")
             if e["payload"]["type"] == "market" and e["payload"]["side"] == "sell"]
    assert sorted(sells) == [("GAPA", "manual"), ("GAPB", "manual"), ("GAPC", "manual")]
    node.feed(after)
    assert node.portfolio.positions == {}
    assert node.risk.state is TradingState.ACTIVE  # flatten/rebalance do not halt anything
    node.stop()


def test_rebalance_within_the_limit_changes_nothing() -> None:
    s = SessionBuilder()
    gapper(s, "GAPA")
    s.flat("GAPA", "09:32", "09:40", 11.25, 10_000)
    node = make_node(max_positions=2)
    before, after = until(s.sorted_bars(), "09:35")
    node.feed(before)
    node.command("rebalance_portfolio")
    node.feed(after)
    assert list(node.portfolio.positions) == ["GAPA"]
    node.stop()


def test_unknown_command_is_refused() -> None:
    node = make_node()
    with pytest.raises(ValueError, match="unknown command"):
        node.command("yolo")


def test_risk_view_reflects_portfolio_pending_entries_and_clock() -> None:
    """GAPA held (1785 @ 11.25), GAPB's entry pending (fills at the next open), GAPC flat."""
    s = SessionBuilder()
    gapper(s, "GAPA")
    s.flat("GAPA", "09:32", "09:40", 11.25, 10_000)
    gapper(s, "GAPB", k=0.5, break_at="09:33")
    s.flat("GAPB", "09:34", "09:40", 5.6, 10_000)
    s.flat("GAPC", "09:30", "09:40", 7.0, 10_000)
    node = make_node()
    before, _ = until(s.sorted_bars(), "09:34")
    node.feed(before)
    assert list(node.orders.pending_entries) == ["GAPB"]

    def probe(symbol: str) -> R.RiskView:
        return node.orders.risk_view(entry(symbol=symbol, ts=node.clock.now_ns()))

    v = probe("GAPC")
    assert v.trading_state is TradingState.ACTIVE and v.paused is False
    assert v.cash == 79_912.50                      # 100_000 - 1785 * 11.25 - 6.25 commission
    assert v.equity == pytest.approx(99_993.75)     # GAPA marked at 11.25
    assert v.sod_equity == 100_000.0
    assert v.daily_pnl == pytest.approx(-6.25)
    assert (v.position_qty, v.position_value, v.symbol_busy) == (0, 0.0, False)
    assert v.open_symbols == 1 and v.pending_entry_symbols == 1
    assert v.pending_entry_notional == pytest.approx(3571 * 5.6)  # floor(0.2 * 99_993.75 / 5.6)
    assert v.last_price == 7.0
    assert v.now == et_ns(DAY, "09:34")  # the close of the 09:33 bar
    assert (v.regular_open, v.entry_cutoff, v.regular_close) == (
        et_ns(DAY, "09:30"), et_ns(DAY, "15:55"), et_ns(DAY, "16:00"))
    assert v.orders_last_minute == 1  # GAPB's entry; GAPA's entry and exits are older than 60 s
    a = probe("GAPA")
    assert (a.position_qty, a.position_value, a.last_price) == (1785, pytest.approx(20_081.25), 11.25)
    assert probe("GAPB").symbol_busy is True
    node.stop()


def test_entry_cutoff_follows_an_early_close() -> None:
    """On an early-close day (2024-11-29, close 13:00) entries stop at 12:55, not 15:55."""
    node = make_node()
    day = "2024-11-29"
    s = SessionBuilder(day=day, prev_day="2024-11-27")
    s.prev_close("ABC", 10.0)
    s.flat("ABC", "12:50", "12:56", 10.0, 1_000)
    node.feed(s.sorted_bars())
    v = node.orders.risk_view(entry(symbol="ABC"))
    assert v.entry_cutoff == et_ns(day, "12:55")
    assert v.regular_close == et_ns(day, "13:00")
    assert R.hours_rule(entry(order_type=OrderType.LIMIT, limit_price=10.0), v, LIMITS) == R.TRADING_HOURS
    node.stop()


def test_an_entry_still_working_at_the_session_end_is_canceled_not_carried_overnight() -> None:
    """GAPR's data stops with the bar that signals: its market entry must not fill at the
    session end (there is no flatten after that) and leave an unprotected overnight position."""
    s = SessionBuilder()
    gapper(s, "GAPR")                          # signal at the close of 09:31, GAPR's last bar
    s.flat("OTHR", "09:30", "09:40", 5.0, 1_000)
    node = make_node()
    node.feed(s.sorted_bars())
    node.stop()
    assert node.portfolio.positions == {}
    assert node.session_summaries[-1]["positions"] == []
    assert events(node, "fill") == []
    statuses = [e["payload"]["status"] for e in events(node, "order_event")]
    assert statuses == ["accepted", "canceled"]
