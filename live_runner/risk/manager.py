"""RiskManager: every order passes it; it owns the trading state (ACTIVE/REDUCING/HALTED)."""

from __future__ import annotations

from collections import Counter, deque
from typing import Callable

from live_runner.models import NANOS_PER_MINUTE, OrderRequest, TradingState
from live_runner.risk import rules as R


class RiskManager:
    """Runs the rules in order; the first denial wins and is counted by reason code."""

    def __init__(self, limits: R.RiskLimits, on_state_change: Callable[[TradingState, TradingState, str], None] | None = None) -> None:
        self.limits = limits
        self.state = TradingState.ACTIVE
        self.paused = False
        self.denials: Counter[str] = Counter()
        self.daily_loss_breaches = 0
        self._on_state_change = on_state_change
        self._order_times: deque[int] = deque()
        dup_rule, self._reset_dups = R.duplicate_rule_factory()
        self.rules: list[R.Rule] = [
            R.state_rule,
            R.no_short_rule,
            R.size_rule,
            R.hours_rule,
            dup_rule,
            R.position_open_rule,
            R.daily_loss_rule,
            R.max_positions_rule,
            R.price_rule,
            R.position_size_rule,
            R.buying_power_rule,
            R.rate_rule,
        ]

    def set_state(self, state: TradingState, reason: str) -> None:
        if state is self.state:
            return
        old, self.state = self.state, state
        if self._on_state_change is not None:
            self._on_state_change(old, state, reason)

    def start_session(self) -> None:
        """A new day: REDUCING from yesterday's loss limit is lifted; HALTED stays (operator)."""
        if self.state is TradingState.REDUCING:
            self.set_state(TradingState.ACTIVE, "new session")
        self._reset_dups()
        self._order_times.clear()

    def orders_last_minute(self, now: int) -> int:
        times = self._order_times
        horizon = now - NANOS_PER_MINUTE
        while times and times[0] <= horizon:
            times.popleft()
        return len(times)

    def check(self, req: OrderRequest, view: R.RiskView) -> str | None:
        """None when approved (and counted against the rate limit), else the reason code."""
        limits = self.limits
        for rule in self.rules:
            reason = rule(req, view, limits)
            if reason is not None:
                self.denials[reason] += 1
                return reason
        self._order_times.append(view.now)
        return None

    def check_daily_loss(self, daily_pnl: float, sod_equity: float) -> bool:
        """Moves to REDUCING on a breach of the daily loss limit; True when it just did."""
        if self.state is TradingState.ACTIVE and daily_pnl <= -self.limits.max_daily_loss_pct * sod_equity:
            self.daily_loss_breaches += 1
            self.set_state(TradingState.REDUCING, f"daily loss limit: {daily_pnl:.2f}")
            return True
        return False
