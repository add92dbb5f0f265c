"""RiskManager: every order passes it; it owns the trading state (ACTIVE/REDUCING/HALTED).

`rules` is the public, ordered list (adapters and the data failover add to it). Each check runs the
rules that apply to the order's side (a rule's `sides`, see `rules.py`), derived from `rules`
again whenever the list has changed, so an exit is not asked of the eight entry-only rules.
"""

from __future__ import annotations

from collections import Counter, deque
from typing import Callable, Mapping

from live_runner.core.models import NANOS_PER_MINUTE, OrderRequest, Side, TradingState
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
        self._snapshot: list[R.Rule] = []  # `rules` as the per-side lists were derived from
        self._by_side: dict[Side, tuple[R.Rule, ...]] = {}

    def set_state(self, state: TradingState, reason: str) -> None:
        if state is self.state:
            return
        old, self.state = self.state, state
        if self._on_state_change is not None:
            self._on_state_change(old, state, reason)

    def restore(self, state: TradingState, paused: bool, denials: Mapping[str, int]) -> None:
        """A live restart: the trading state and pause as the journal left them (no state-change
        event and no alert: nothing changed), and the session's denials counted on."""
        self.state = state
        self.paused = paused
        self.denials.update(denials)

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

    def rules_for(self, side: Side) -> tuple[R.Rule, ...]:
        """The rules, in order, that can deny an order of `side`."""
        if self.rules != self._snapshot:
            self._snapshot = list(self.rules)
            self._by_side = {s: tuple(r for r in self._snapshot if s in getattr(r, "sides", R.BOTH_SIDES))
                             for s in R.BOTH_SIDES}
        return self._by_side[side]

    def check(self, req: OrderRequest, view: R.RiskView) -> str | None:
        """None when approved (and counted against the rate limit), else the reason code."""
        limits = self.limits
        for rule in self.rules_for(req.side):
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
