"""StrategyEngine: premarket tracking, the session universe, and dispatch of bars to strategies.

Strategies are loaded by built-in name or by import path `package.module:ClassName`. The engine
keeps the per-symbol premarket statistics every strategy may ask for (and which also define the
replay's default universe), so no strategy has to re-derive them.
"""

from __future__ import annotations

import importlib
from datetime import date
from typing import TYPE_CHECKING, Any, Callable, Iterable

from live_runner.core.config import ConfigError, SystemConfig, hhmm
from live_runner.core.models import Bar, Fill, OrderRole, Signal
from live_runner.strategies.base import PremarketStats, Strategy
from live_runner.strategies.gap_and_go import GapAndGo, qualifies
from live_runner.strategies.vwap_reclaim import VwapReclaim

if TYPE_CHECKING:
    from live_runner.core.calendar import SessionTimes

BUILTINS: dict[str, type[Strategy]] = {"gap_and_go": GapAndGo, "vwap_reclaim": VwapReclaim}


def load_strategy_class(name: str) -> type[Strategy]:
    """Resolve a built-in name or `package.module:ClassName`; errors name the strategy."""
    if name in BUILTINS:
        return BUILTINS[name]
    module_name, _, class_name = name.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ConfigError(f"active_strategies: cannot import {module_name!r} for {name!r}: {exc}") from None
    cls = getattr(module, class_name, None)
    if not isinstance(cls, type) or not issubclass(cls, Strategy):
        raise ConfigError(
            f"active_strategies: {name!r} is not a subclass of live_runner.strategies.base.Strategy"
        )
    return cls


class StrategyEngine:
    """Owns the strategies and the per-session market context they read."""

    def __init__(
        self,
        config: SystemConfig,
        position_qty: Callable[[str], int],
        universe: Iterable[str] | None = None,
    ) -> None:
        self.config = config
        self._position_qty = position_qty
        self.position_qty = position_qty  # type: ignore[method-assign]  # one call less per ask
        self._fixed_universe = frozenset(config.universe) if config.universe else None
        self._session_universe: frozenset[str] | None = frozenset(universe) if universe else None
        self._session: SessionTimes | None = None
        self._open = 0
        self._close = 0
        # Regular-session closes of the session being played (`_closes_date`), and the previous
        # closes of the current session: the previous session's only (DESIGN.md "Edges, decided").
        self._closes: dict[str, float] = {}
        self._closes_date: date | None = None
        self._prev_closes: dict[str, float] = {}
        # The provider's daily closes by session (Dagster's daily_bars), for symbols whose bars
        # lack the previous session.
        self._daily_closes: dict[date, dict[str, float]] = {}
        self._pm: dict[str, PremarketStats] = {}
        self._qualified: dict[str, bool] = {}
        self.strategies: list[Strategy] = []
        self.by_name: dict[str, Strategy] = {}
        for name in config.active_strategies:
            cls = load_strategy_class(name)
            params: Any
            if name == "gap_and_go":
                params = config.strategies.gap_and_go
            elif name == "vwap_reclaim":
                params = config.strategies.vwap_reclaim
            else:
                params = dict(config.strategies.custom.get(name, {}))
            strategy = cls(params, self)
            if name not in BUILTINS:
                strategy.name = getattr(cls, "name", None) if cls.name != Strategy.name else name
                strategy.name = strategy.name or name
            self.strategies.append(strategy)
            self.by_name[strategy.name] = strategy
        self.signals = 0

    def restore(self, signals: int) -> None:
        """The signal count as the journal has it (a live restart, and the end of a warm-up whose
        signals were already counted or not taken)."""
        self.signals = signals

    # --- StrategyContext -------------------------------------------------------------------
    @property
    def session(self) -> "SessionTimes":
        assert self._session is not None, "no session started"
        return self._session

    def premarket(self, symbol: str) -> PremarketStats | None:
        return self._pm.get(symbol)

    def in_universe(self, symbol: str) -> bool:
        if self._fixed_universe is not None:
            return symbol in self._fixed_universe
        if self._session_universe is not None:
            return symbol in self._session_universe
        q = self._qualified.get(symbol)
        if q is None:
            q = qualifies(self._pm.get(symbol), self.config.strategies.gap_and_go)
            self._qualified[symbol] = q
        return q

    def position_qty(self, symbol: str) -> int:
        return self._position_qty(symbol)

    def et_ns(self, text: str) -> int:
        h, m = hhmm(text)
        return self.session.at_et(h, m)

    # --- lifecycle ---------------------------------------------------------------------------
    def set_session_universe(self, symbols: Iterable[str] | None) -> None:
        """The day's universe from Dagster's premarket scan (None: derive it from the gap scan)."""
        self._session_universe = frozenset(symbols) if symbols is not None else None

    def set_daily_closes(self, closes: dict[date, dict[str, float]]) -> None:
        """The provider's daily closes, by session date and symbol (used only for the previous
        session of a session, and only where the bars lack it)."""
        self._daily_closes = closes

    def on_session_start(self, session: "SessionTimes") -> None:
        self._session = session
        self._open = session.open
        self._close = session.close
        if self._closes_date != session.date:  # (a restart inside the session keeps its closes)
            prev = self._closes if self._closes_date == session.prev_date else {}
            daily = self._daily_closes.get(session.prev_date)
            if daily:
                prev = {**daily, **prev}  # the bars' own close wins where both exist
            self._prev_closes = prev
            self._closes = {}
            self._closes_date = session.date
        self._pm = {sym: PremarketStats(prev_close=close) for sym, close in self._prev_closes.items()}
        self._qualified = {}
        for strategy in self.strategies:
            strategy.on_session_start(session)

    def on_session_end(self, session: "SessionTimes") -> None:
        for strategy in self.strategies:
            strategy.on_session_end(session)

    def prev_close_missing(self) -> int:
        """Symbols that traded in this session's premarket without a close of the previous
        session (in the bars or the daily closes): they cannot qualify today."""
        return sum(1 for st in self._pm.values() if st.pm_high > 0 and not st.prev_close > 0)

    def universe_snapshot(self) -> list[str]:
        """The symbols in the session universe (for reports and /status)."""
        if self._fixed_universe is not None:
            return sorted(self._fixed_universe)
        if self._session_universe is not None:
            return sorted(self._session_universe)
        return sorted(s for s in self._pm if self.in_universe(s))

    # --- hot path ----------------------------------------------------------------------------
    def on_bar(self, bar: Bar) -> list[Signal]:
        """Update premarket/previous-close state, then ask each strategy; returns its signals."""
        ts = bar.ts
        sym = bar.symbol
        if ts < self._open:
            st = self._pm.get(sym)
            if st is None:
                st = self._pm[sym] = PremarketStats()
            if bar.high > st.pm_high:
                st.pm_high = bar.high
            st.pm_volume += bar.volume
            st.pm_last = bar.close
        elif ts < self._close:
            self._closes[sym] = bar.close
        out: list[Signal] = []
        for strategy in self.strategies:
            result = strategy.on_bar(bar)
            if result is None:
                continue
            if isinstance(result, Signal):
                out.append(result)
            else:
                out.extend(result)
        if out:
            self.signals += len(out)
        return out

    def on_fill(self, strategy_name: str, fill: Fill, role: OrderRole) -> None:
        strategy = self.by_name.get(strategy_name)
        if strategy is not None:
            strategy.on_fill(fill, role)

    def on_signal_rejected(self, signal: Signal, reason: str) -> None:
        strategy = self.by_name.get(signal.strategy)
        if strategy is not None:
            strategy.on_signal_rejected(signal, reason)
