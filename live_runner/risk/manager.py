"""RiskManager: every order passes it; it owns the trading state (ACTIVE/REDUCING/HALTED).

`rules` is the ordered, read-only tuple of rules; the wiring adds to it through `add_rule` (the
broker's PDT rule, the data failover's gate). Each check runs the rules that apply to the order's
side (a rule's `sides`, see `rules.py`), derived once per change, so an exit is not asked of the
eight entry-only rules and the hot path never compares the rule list.
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
        self._rules: tuple[R.Rule, ...] = ()
        self._by_side: dict[Side, tuple[R.Rule, ...]] = {}
        self._set_rules([
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
        ])

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

    @property
    def rules(self) -> tuple[R.Rule, ...]:
        """Every rule, in the order they run (read-only: `add_rule` adds one)."""
        return self._rules

    def add_rule(self, rule: R.Rule, after: R.Rule | None = None) -> None:
        """Add `rule` at the end, or right after `after` (which must be a rule already); a rule
        already present stays where it is (adding it again is a no-op)."""
        if rule in self._rules:
            return
        rules = list(self._rules)
        rules.insert(len(rules) if after is None else rules.index(after) + 1, rule)
        self._set_rules(rules)

    def _set_rules(self, rules: list[R.Rule]) -> None:
        """The rules and, derived once here, the ones that can deny each side."""
        self._rules = tuple(rules)
        self._by_side = {s: tuple(r for r in rules if s in getattr(r, "sides", R.BOTH_SIDES))
                         for s in R.BOTH_SIDES}

    def rules_for(self, side: Side) -> tuple[R.Rule, ...]:
        """The rules, in order, that can deny an order of `side`."""
        return self._by_side[side]

    def check(self, req: OrderRequest, view: R.RiskView) -> str | None:
        """None when approved (and counted against the rate limit), else the reason code."""
        limits = self.limits
        for rule in self._by_side[req.side]:
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
