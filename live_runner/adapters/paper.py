"""PaperExecutionClient: the embedded simulated broker, with DESIGN.md's fill model.

- Market orders fill at the next bar's open, a price that traded: never rounded (sub-penny prints
  exist). Slippage moves it against the trader by exact decimal arithmetic, and a fill never
  leaves its bar's [low, high]. When the session ends first: the last bar's close.
- Sell stops trigger when a bar's low <= stop (fill at the stop, or the open if it opened below);
  sell limits when high >= limit (fill at the limit, or the open if it opened above). Stops are
  matched before limits, so a bar that could hit both is a stop.
- Orders act from the bar after the one during which they were placed.
- Commission per share with a per-order minimum; optional volume participation cap.

Like a real broker, it can keep its own state across a crash of the runner (`paper.state_url`):
every report it sends is first appended to its own event log (a `Journal`, durable per event).
The broker is deterministic, so after a restart it re-simulates from the same bars and orders,
verifying each report against its log instead of writing it again; reports beyond what the
runner's journal holds (fills while the runner was down, orders it had not recorded) reach the
runner as new. Positions entered at the broker by hand (`external_positions`) are its own and show
up in reconciliation. The log and those positions are handed in by the wiring (live_runner.live.
brokers), so this adapter never imports persistence.
"""

from __future__ import annotations

import math
from decimal import Decimal
from typing import Mapping

import msgspec
import sqlalchemy as sa

from live_runner.core.clients import EventLog, FillHandler, GatedSends, OrderEventHandler
from live_runner.core.config import PaperConfig
from live_runner.core.models import (
    NANOS_PER_MINUTE, Bar, Fill, OrderEvent, OrderRequest, OrderStatus, OrderType, Side,
)
from live_runner.core.money import ZERO, commission, dec

_BUY, _SELL = Side.BUY, Side.SELL  # module constants: an Enum class attribute costs a lookup
_MARKET, _STOP, _LIMIT = OrderType.MARKET, OrderType.STOP, OrderType.LIMIT
_ACCEPTED = OrderStatus.ACCEPTED


class _Resting(msgspec.Struct, gc=False):
    """An order in the book; untracked by the garbage collector (no cycles possible)."""

    request: OrderRequest
    placed_bar: int
    placed_ts: int = -1  # start of the latest bar (any symbol) seen when the order arrived
    filled: int = 0
    commission: Decimal = ZERO
    fills: int = 0
    active: bool = True
    triggered: bool = False  # a stop that has triggered is a market order from then on


class PaperExecutionClient(GatedSends):
    name = "paper"

    def __init__(self, config: PaperConfig, state: EventLog | None = None,
                 external_positions: Mapping[str, int] | None = None) -> None:
        """`state`: the broker's own event log (None: in memory only); `external_positions`: the
        shares entered at the broker by hand (`load_external_positions`)."""
        self._slip = Decimal(repr(config.slippage_bps)) / 10_000
        self._per_share = Decimal(repr(config.commission_per_share))
        self._min = Decimal(repr(config.commission_min))
        self._participation = config.max_participation
        self._books: dict[str, list[_Resting]] = {}
        self._by_id: dict[str, _Resting] = {}
        self._bar_count: dict[str, int] = {}
        self._last_bar: dict[str, Bar] = {}
        self._latest_ts = -1
        self._on_event: OrderEventHandler = lambda e: None
        self._on_fill: FillHandler = lambda f: None
        self.submitted = 0
        self._state = state
        self._positions: dict[str, int] = {}
        self.external_positions: dict[str, int] = dict(external_positions or {})
        # A live restart continues the log: what it holds is the broker's record (see `recover`).
        self._logged: dict[str, list[tuple[str, int, dict]]] = {}
        if state is not None and state.continued:
            self._load_log(state)

    def set_handlers(self, on_event: OrderEventHandler, on_fill: FillHandler) -> None:
        self._on_event = on_event
        self._on_fill = on_fill

    # --- orders ------------------------------------------------------------------------------
    def submit(self, request: OrderRequest) -> None:
        if not self.may_send("submit"):  # the live service's lease fence
            return
        self.submitted += 1
        self._accept(request)

    def recover(self, request: OrderRequest, *, filled: int = 0, notional: Decimal = ZERO) -> None:
        """The simulated book is rebuilt by re-delivering journaled orders; nothing is 'sent'.
        On a live restart the order's logged reports are sent again first (the runner keeps the
        ones it lacks, by exec id) and only what is still working rests in the book."""
        logged = self._logged.pop(request.client_order_id, None)
        if logged is None:
            self._accept(request)
            return
        cid = request.client_order_id
        resting = _Resting(request, self._bar_count.get(request.symbol, 0), self._latest_ts)
        self._by_id[cid] = resting
        for kind, ts, p in logged:
            if kind == "fill":
                qty = int(p["qty"])
                resting.filled += qty
                resting.fills += 1
                resting.commission += Decimal(p["commission"])
                self._on_fill(Fill(cid, p["exec_id"], request.symbol, request.side, qty,
                                   float(p["price"]), Decimal(p["commission"]), ts))
            elif kind in ("canceled", "expired", "rejected"):
                resting.active = False
                self._on_event(OrderEvent(cid, OrderStatus(kind), ts, p.get("reason", "")))
        if resting.active and resting.filled < request.qty:
            self._books.setdefault(request.symbol, []).append(resting)
            self._on_event(OrderEvent(cid, OrderStatus.ACCEPTED, request.ts, broker_order_id=cid))

    def _load_log(self, state: EventLog) -> None:
        """Positions and each order's reports from the broker's own log."""
        for ev in state.stored_events():
            kind, p = ev["kind"], ev["payload"]
            self._logged.setdefault(ev["key"], []).append((kind, ev["ts"], p))
            if kind == "fill":
                qty = int(p["qty"])
                sym = p["symbol"]
                self._positions[sym] = self._positions.get(sym, 0) + (qty if p["side"] == "buy" else -qty)

    def _accept(self, request: OrderRequest) -> None:
        cid = request.client_order_id
        by_id = self._by_id
        if cid in by_id:
            self._event(OrderEvent(cid, OrderStatus.REJECTED, request.ts, "duplicate client order id"))
            return
        symbol = request.symbol
        resting = _Resting(request, self._bar_count.get(symbol, 0), self._latest_ts)
        by_id[cid] = resting
        book = self._books.get(symbol)
        if book is None:
            self._books[symbol] = [resting]
        else:
            book.append(resting)
        self._event(OrderEvent(cid, _ACCEPTED, request.ts, "", cid))

    def cancel(self, client_order_id: str) -> None:
        if not self.may_send("cancel"):  # the live service's lease fence
            return
        resting = self._by_id.get(client_order_id)
        if resting is None or not resting.active:
            return
        self._deactivate(resting)
        now = self._latest_ts + NANOS_PER_MINUTE if self._latest_ts >= 0 else resting.request.ts
        self._event(OrderEvent(client_order_id, OrderStatus.CANCELED, max(now, resting.request.ts)))

    def _deactivate(self, resting: _Resting) -> None:
        resting.active = False
        book = self._books.get(resting.request.symbol)
        if book is not None:
            try:
                book.remove(resting)
            except ValueError:
                pass

    # --- market ------------------------------------------------------------------------------
    def on_bar(self, bar: Bar) -> None:
        sym = bar.symbol
        counts = self._bar_count
        n = counts.get(sym, 0) + 1
        counts[sym] = n
        self._last_bar[sym] = bar
        ts = bar.ts
        if ts > self._latest_ts:
            self._latest_ts = ts
        book = self._books.get(sym)
        if not book:
            return
        # A bar that started no later than the newest bar already seen when the order arrived
        # (another symbol's bar of the same minute) opened before the order existed.
        ready = [r for r in book if r.placed_bar < n and r.placed_ts < ts]
        if not ready:
            return
        op, volume = bar.open, bar.volume
        # Market orders first (they fill at the open), then stops, then limits.
        for r in ready:
            if r.active and r.request.order_type is _MARKET:
                self._fill(r, self._market_price(op, bar, r.request.side), ts, volume)
        for r in ready:
            req = r.request
            if not r.active or req.order_type is not _STOP:
                continue
            stop = req.stop_price
            if r.triggered:  # the rest of a partially filled stop sells at market
                self._fill(r, op, ts, volume)
            elif req.side is _SELL and bar.low <= stop:
                r.triggered = True
                self._fill(r, op if op < stop else stop, ts, volume)
            elif req.side is _BUY and bar.high >= stop:
                r.triggered = True
                self._fill(r, op if op > stop else stop, ts, volume)
        for r in ready:
            req = r.request
            if not r.active or req.order_type is not _LIMIT:
                continue
            limit = req.limit_price
            if req.side is _SELL and bar.high >= limit:
                self._fill(r, op if op > limit else limit, ts, volume)
            elif req.side is _BUY and bar.low <= limit:
                self._fill(r, op if op < limit else limit, ts, volume)

    def _market_price(self, price: float, bar: Bar, side: Side) -> float:
        """A traded price of `bar` (its open, or its close at the session end) moved by the
        slippage against the trader (exact decimals), kept inside the bar's [low, high]."""
        slip = self._slip
        if not slip:
            return price
        if side is _BUY:
            moved = float(dec(price) * (1 + slip))
            return moved if moved < bar.high else bar.high
        moved = float(dec(price) * (1 - slip))
        return moved if moved > bar.low else bar.low

    def end_session(self, ts: int) -> None:
        """Fill what the last bar can still fill (market orders at its close), expire the rest."""
        for sym, book in list(self._books.items()):
            last = self._last_bar.get(sym)
            for r in list(book):
                if r.active and r.request.order_type is OrderType.MARKET and last is not None:
                    self._fill(r, self._market_price(last.close, last, r.request.side),
                               last.ts + NANOS_PER_MINUTE, math.inf)
            for r in list(book):
                if r.active:
                    self._deactivate(r)
                    self._event(OrderEvent(r.request.client_order_id, OrderStatus.EXPIRED, ts, "day order expired"))
        self._books.clear()
        self._bar_count.clear()
        # Every order is finished now (filled or expired; the journal keeps them). Ids carry the
        # session's date, so duplicates are a same-session matter: the index starts afresh.
        self._by_id.clear()

    def _fill(self, r: _Resting, price: float, ts: int, bar_volume: float) -> None:
        req = r.request
        qty = req.qty - r.filled
        if self._participation is not None and bar_volume != math.inf:
            cap = int(self._participation * bar_volume)
            if cap < 1:
                return
            qty = min(qty, cap)
        before = r.commission
        r.filled += qty
        r.fills += 1
        total = commission(r.filled, self._per_share, self._min)
        r.commission = total
        if r.filled >= req.qty:
            self._deactivate(r)
        fill = Fill(req.client_order_id, f"{req.client_order_id}-F{r.fills}", req.symbol,
                    req.side, qty, price, total - before, ts)
        self._positions[req.symbol] = self._positions.get(req.symbol, 0) + (qty if req.side is _BUY else -qty)
        if self._state is not None:
            self._record(ts, "fill", fill.client_order_id, {
                "exec_id": fill.exec_id, "symbol": fill.symbol, "side": fill.side.value, "qty": qty,
                "price": price, "commission": str(fill.commission)})
        self._on_fill(fill)

    # --- state -------------------------------------------------------------------------------
    def _event(self, ev: OrderEvent) -> None:
        if self._state is not None:
            self._record(ev.ts, ev.status.value, ev.client_order_id, {"reason": ev.reason})
        self._on_event(ev)

    def _record(self, ts: int, kind: str, key: str, payload: dict) -> None:
        """Append a report to the broker's own log before it is sent (durable beyond the prefix)."""
        state = self._state
        assert state is not None
        recorded = state.resuming
        state.append("", ts, kind, key, payload)
        if not recorded:
            state.flush()

    @property
    def resuming(self) -> bool:
        """True while the broker is still re-simulating what its log already holds."""
        return self._state is not None and self._state.resuming

    def positions(self) -> dict[str, int]:
        """Shares held at the broker per symbol: what it filled, plus what was entered by hand."""
        out = {s: q for s, q in self._positions.items() if q}
        for sym, qty in self.external_positions.items():
            out[sym] = out.get(sym, 0) + qty
        return {s: q for s, q in sorted(out.items()) if q}

    def close(self) -> None:
        if self._state is not None:
            self._state.close()


_external = sa.Table(
    "paper_external_positions", sa.MetaData(),
    sa.Column("symbol", sa.String(16), primary_key=True),
    sa.Column("qty", sa.Integer, nullable=False),
)


def load_external_positions(engine: sa.Engine) -> dict[str, int]:
    """The positions entered at the broker by hand, from the database of its event log."""
    _external.metadata.create_all(engine)
    with engine.connect() as conn:
        return {r.symbol: r.qty for r in conn.execute(sa.select(_external))}


def record_external_position(engine: sa.Engine, symbol: str, qty: int) -> None:
    """Record a position entered at the broker outside the runner (a manual trade)."""
    _external.metadata.create_all(engine)
    with engine.begin() as conn:
        conn.execute(sa.delete(_external).where(_external.c.symbol == symbol))
        conn.execute(sa.insert(_external).values(symbol=symbol, qty=qty))
