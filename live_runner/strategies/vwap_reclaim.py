"""vwap_reclaim: buy a high-volume reclaim of the session VWAP after a stretch below it."""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from live_runner.config import VwapReclaimConfig
from live_runner.models import Bar, Fill, OrderRole, Side, Signal
from live_runner.strategies.base import Strategy, StrategyContext

if TYPE_CHECKING:
    from live_runner.calendar import SessionTimes


@dataclass(slots=True)
class _SymbolState:
    pv: float = 0.0
    vol: float = 0.0
    below: int = 0
    stretch_low: float = 0.0
    volumes: deque = field(default_factory=deque)
    entries: int = 0
    holding: bool = False
    pending: bool = False


class VwapReclaim(Strategy):
    name = "vwap_reclaim"

    def __init__(self, params: VwapReclaimConfig, ctx: StrategyContext) -> None:
        super().__init__(params, ctx)
        self._open = 0
        self._close = 0
        self._start = 0
        self._end = 0
        self._states: dict[str, _SymbolState] = {}

    def on_session_start(self, session: "SessionTimes") -> None:
        self._open = session.open
        self._close = session.close
        self._start = self.ctx.et_ns(self.params.entry_start)
        self._end = self.ctx.et_ns(self.params.entry_end)
        self._states = {}

    def vwap(self, symbol: str) -> float | None:
        st = self._states.get(symbol)
        if st is None or st.vol <= 0:
            return None
        return st.pv / st.vol

    def on_bar(self, bar: Bar) -> Signal | None:
        ts = bar.ts
        if ts < self._open or ts >= self._close:
            return None
        sym = bar.symbol
        st = self._states.get(sym)
        if st is None:
            st = self._states[sym] = _SymbolState()
        p = self.params
        volume = bar.volume
        st.pv += (bar.high + bar.low + bar.close) / 3.0 * volume
        st.vol += volume
        if st.vol <= 0:
            return None
        vwap = st.pv / st.vol
        close = bar.close
        signal: Signal | None = None
        if st.holding or st.pending:
            # Exit on a close below VWAP from the fill bar on (the order manager cancels the OCO).
            if st.holding and close < vwap:
                st.holding = False
                signal = Signal(self.name, sym, ts, Side.SELL, reason="vwap_loss",
                                reference_price=close)
            st.below = 0
        elif close < vwap:
            if st.below == 0:
                st.stretch_low = bar.low
            elif bar.low < st.stretch_low:
                st.stretch_low = bar.low
            st.below += 1
        else:
            if (
                close > vwap
                and st.below >= p.min_bars_below
                and self._start <= ts < self._end
                and st.entries < p.max_entries_per_symbol
                and len(st.volumes) >= p.min_lookback_bars
                and volume >= p.volume_mult * (sum(st.volumes) / len(st.volumes))
                and self.ctx.in_universe(sym)
                and self.ctx.position_qty(sym) == 0
            ):
                stop = bar.low if bar.low < st.stretch_low else st.stretch_low
                st.entries += 1
                st.pending = True
                signal = Signal(self.name, sym, ts, Side.BUY, stop=stop, reason="vwap_reclaim",
                                reference_price=close, target_r=p.target_r)
            st.below = 0
        vols = st.volumes
        vols.append(volume)
        if len(vols) > p.volume_lookback:
            vols.popleft()
        return signal

    def on_fill(self, fill: Fill, role: OrderRole) -> None:
        st = self._states.get(fill.symbol)
        if st is None:
            return
        if role is OrderRole.ENTRY:
            st.pending = False
            st.holding = True
        else:
            if self.ctx.position_qty(fill.symbol) == 0:
                st.holding = False
                st.pending = False

    def on_signal_rejected(self, signal: Signal, reason: str) -> None:
        """A refused entry does not count against max_entries_per_symbol; the setup is spent."""
        st = self._states.get(signal.symbol)
        if st is not None and signal.side is Side.BUY:
            st.pending = False
            st.entries -= 1
