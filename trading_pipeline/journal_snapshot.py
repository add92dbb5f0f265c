"""What a session's journal says, as one JSON-friendly snapshot (the `session_journal` asset).

Positions and P&L come from `live_runner.persistence.journal_state` (the runner's own rebuild of its state);
trades and equity marks are read as journaled, so the report shows exactly what the runner wrote.
Money stays as exact decimal strings.
"""

from __future__ import annotations

from datetime import date
from typing import Any

from live_runner.persistence.journal import iter_events, make_engine
from live_runner.persistence.journal_state import load_state
from live_runner.core.money import money_str
from live_runner.core.trades import TradeRecord, trade_record


def snapshot(url: str | None, day: date) -> dict[str, Any]:
    """The session's orders, fills, trades, P&L and equity marks; `ran` False without a journal."""
    key = day.isoformat()
    empty = {"session": key, "ran": False, "ended": False, "counts": {}, "realized_pnl": "0.00",
             "commissions": "0.00", "trades": [], "positions": {}, "open_orders": 0,
             "trading_state": "", "equity_curve": [], "session_end": None, "starting_equity": None}
    if url is None:
        return empty
    state = load_state(url, session=key)
    ses = state.sessions.get(key)
    if ses is None:
        return empty
    engine = make_engine(url)
    try:
        trades, curve, start = [], [], None
        for ev in iter_events(engine, session=key, kinds=("trade", "equity", "session_start")):
            if ev["kind"] == "trade":
                trades.append(ev["payload"])
            elif ev["kind"] == "equity":
                curve.append([ev["ts"], ev["payload"]["equity"]])
            else:
                start = ev["payload"].get("equity")
    finally:
        engine.dispose()
    return {
        "session": key, "ran": True, "ended": ses.ended, "counts": dict(sorted(ses.counts.items())),
        "realized_pnl": money_str(ses.realized), "commissions": money_str(ses.commissions),
        "trades": trades, "positions": {s: p.qty for s, p in sorted(ses.positions.items())},
        "open_orders": len(ses.open_orders), "trading_state": ses.trading_state,
        "equity_curve": curve, "session_end": ses.end, "starting_equity": start,
    }


def trade_records(trades: list[dict[str, Any]]) -> list[TradeRecord]:
    """Journaled trade payloads (TradeRecord.to_dict) back as TradeRecords, money exact."""
    return [trade_record(t) for t in trades]
