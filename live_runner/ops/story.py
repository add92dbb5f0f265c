"""The session's story for the operator: one INFO line per event that matters.

Session start and end, every entry and exit (with its reason), each closed trade, risk denials,
trading-state changes, operator commands and restarts, told from the journal's own events (the
Journal's observer), so the story is exactly what was recorded. Lines go to the
`live_runner.ops.story` logger with the event's session and its New York market time; the Dagster
Pipes bridge forwards them to the run's logs (alerts already reach the log through the LogSink).

Attached only when someone reads it (the Pipes bridge): a CLI replay stays quiet. The journal's
hot path pays one attribute test per event; building the line costs a few microseconds for the
few events per symbol and day that are told.
"""

from __future__ import annotations

import logging
from decimal import Decimal, InvalidOperation
from typing import Any, Callable

from live_runner.core.clock import to_et

log = logging.getLogger("live_runner.ops.story")
EXIT_REASONS = {"stop": "stop hit", "target": "target reached", "vwap_loss": "lost VWAP",
                "eod": "end-of-day flatten", "manual": "manual/risk flatten"}


def _et(ts: int) -> str:
    return to_et(ts).strftime("%H:%M ET")


def _usd(amount: Any) -> str:
    """`$1,421.64` / `-$253.72` (journal amounts are exact decimal strings)."""
    try:
        value = Decimal(str(amount)).quantize(Decimal("0.01"))
    except (InvalidOperation, ValueError):
        return str(amount)
    return f"{'-' if value < 0 else ''}${abs(value):,.2f}"


def _payload(payload: Any) -> dict[str, Any]:
    build = getattr(payload, "build", None)  # journal.Deferred: built only for told events
    return build(payload.a, payload.b) if build is not None else payload


def _session_start(key: str, p: dict[str, Any]) -> str:
    early = ", early close (13:00 ET)" if p.get("early_close") else ""
    return f"session starts: equity {_usd(p.get('equity'))}, trading state {p.get('state')}{early}"


def _session_end(key: str, p: dict[str, Any]) -> str:
    held = p.get("positions") or []
    return (f"session ends: realized P&L {_usd(p.get('realized_pnl'))}, commissions "
            f"{_usd(p.get('commissions'))}, equity {_usd(p.get('equity'))}, "
            + (f"still holding {', '.join(held)}" if held else "flat")
            + (f" (closed by {p['closed_by']})" if p.get("closed_by") else ""))


def _fill(key: str, p: dict[str, Any]) -> str:
    role = p.get("role", "")
    if role == "entry":
        return (f"ENTRY {p.get('symbol')}: bought {p.get('qty')} @ {p.get('price')} "
                f"({p.get('strategy')}, order {key})")
    reason = EXIT_REASONS.get(role, role)
    return (f"EXIT {p.get('symbol')}: {p.get('side')} {p.get('qty')} @ {p.get('price')}, "
            f"reason {reason} ({p.get('strategy')}, order {key})")


def _trade(key: str, p: dict[str, Any]) -> str:
    return (f"TRADE closed {p.get('symbol')} ({p.get('strategy')}): {p.get('qty')} shares, "
            f"{p.get('entry_price')} -> {p.get('exit_price')}, "
            f"{EXIT_REASONS.get(p.get('exit_reason', ''), p.get('exit_reason'))}, P&L {_usd(p.get('pnl'))}")


def _denial(key: str, p: dict[str, Any]) -> str:
    return (f"RISK DENIED {p.get('side')} {p.get('qty')} {p.get('symbol')} ({p.get('strategy')}, "
            f"{p.get('role')}): {p.get('reason')}")


def _trading_state(key: str, p: dict[str, Any]) -> str:
    return f"TRADING STATE {p.get('from')} -> {key}: {p.get('reason')}"


def _command(key: str, p: dict[str, Any]) -> str:
    symbol = f" {p['symbol']}" if p.get("symbol") else ""
    return f"COMMAND {key}{symbol} from {p.get('source')}"


def _restart(key: str, p: dict[str, Any]) -> str:
    return (f"RESTART {key} from the journal: positions {p.get('positions') or 'none'}, "
            f"trading state {p.get('trading_state')}")


TOLD: dict[str, Callable[[str, dict[str, Any]], str]] = {
    "session_start": _session_start, "session_end": _session_end, "fill": _fill, "trade": _trade,
    "denial": _denial, "trading_state": _trading_state, "command": _command, "restart": _restart,
}


class Story:
    """The Journal observer: log each event that is part of the story. With `session`, only that
    session's events (a replay feed's seed bar from the previous session is no story)."""

    def __init__(self, session: str = "") -> None:
        self.session = session

    def __call__(self, session: str, ts: int, kind: str, key: str, payload: Any) -> None:
        told = TOLD.get(kind)
        if told is None or (self.session and session != self.session):
            return
        try:
            line = told(key, _payload(payload))
            log.info("%s %s", _et(ts), line, extra={"session": session, "component": "story"})
        except Exception:  # the story must never take the trading process down
            log.debug("story line for %s %s failed", kind, key, exc_info=True)
