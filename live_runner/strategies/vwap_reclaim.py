"""vwap_reclaim: buy a high-volume reclaim of the session VWAP after a stretch below it."""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from live_runner.core.config import VwapReclaimConfig
from live_runner.core.exact import PRICE_SCALE_F, VOLUME_SCALE_F, ratio
from live_runner.core.models import Bar, Fill, OrderRole, Side, Signal
from live_runner.strategies.base import Strategy, StrategyContext

if TYPE_CHECKING:
    from live_runner.core.calendar import SessionTimes


@dataclass(slots=True)
class _SymbolState:
    """Exact integers (live_runner.core.exact): `pv` is the sum of (high + low + close) * volume in
    1e-8 dollars x 1e-4 shares (three times the typical price), `vol` the volume in 1e-4 shares,
    so VWAP = pv / (3 * vol) and a close is compared with it without rounding."""

    pv: int = 0
    vol: int = 0
    below: int = 0
    stretch_low: float = 0.0
    volumes: deque = field(default_factory=deque)  # the lookback's volumes, 1e-4 shares
    volume_sum: int = 0
    entries: int = 0
    holding: bool = False
    pending: bool = False
    exiting: bool = False  # vwap_loss sent, its fill not reported yet: still held


class VwapReclaim(Strategy):
    name = "vwap_reclaim"

    def __init__(self, params: VwapReclaimConfig, ctx: StrategyContext) -> None:
        super().__init__(params, ctx)
        self._open = 0
        self._close = 0
        self._start = 0
        self._end = 0
        self._states: dict[str, _SymbolState] = {}
        self._mult_n, self._mult_d = ratio(params.volume_mult)

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
        return st.pv / (3 * st.vol) / PRICE_SCALE_F

    def on_bar(self, bar: Bar) -> Signal | None:
        ts = bar.ts
        if ts < self._open or ts >= self._close:
            return None
        sym = bar.symbol
        st = self._states.get(sym)
        if st is None:
            st = self._states[sym] = _SymbolState()
        p = self.params
        volume = round(bar.volume * VOLUME_SCALE_F)
        close = bar.close
        c = round(close * PRICE_SCALE_F)
        st.pv += (round(bar.high * PRICE_SCALE_F) + round(bar.low * PRICE_SCALE_F) + c) * volume
        st.vol += volume
        if st.vol <= 0:
            return None
        # close vs VWAP, exactly: sign of 3 * close * vol - pv (0: on VWAP, neither below nor above)
        side = 3 * c * st.vol - st.pv
        signal: Signal | None = None
        if st.holding or st.pending or st.exiting:
            # Exit on a close below VWAP from the fill bar on (the order manager cancels the OCO).
            # Bars below VWAP while held (an exit not yet filled included) or while the entry is
            # pending start no stretch (DESIGN.md, "Edges, decided").
            if st.holding and side < 0:
                st.holding = False
                st.exiting = True
                signal = Signal(self.name, sym, ts, Side.SELL, reason="vwap_loss",
                                reference_price=close)
            st.below = 0
        elif side < 0:
            if st.below == 0:
                st.stretch_low = bar.low
            elif bar.low < st.stretch_low:
                st.stretch_low = bar.low
            st.below += 1
        else:
            n = len(st.volumes)
            if (
                side > 0
                and st.below >= p.min_bars_below
                and self._start <= ts < self._end
                and st.entries < p.max_entries_per_symbol
                and n >= p.min_lookback_bars
                # volume >= volume_mult * mean, exactly: volume * n * den >= num * sum
                and volume * n * self._mult_d >= self._mult_n * st.volume_sum
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
        st.volume_sum += volume
        if len(vols) > p.volume_lookback:
            st.volume_sum -= vols.popleft()
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
                st.exiting = False

    def on_signal_rejected(self, signal: Signal, reason: str) -> None:
        """A refused entry does not count against max_entries_per_symbol; the setup is spent."""
        st = self._states.get(signal.symbol)
        if st is not None and signal.side is Side.BUY:
            st.pending = False
            st.entries -= 1
