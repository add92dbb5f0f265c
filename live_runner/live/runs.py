"""Running a replay end to end, as fast as the CPU allows (the live service is `service.py`).

Replay and live use the same node and components; only the feed's pacing and the clock differ. A run on a journal that already
holds events resumes: the deterministic chain regenerates the stored prefix (verified, not
rewritten; orders recovered, not re-sent) and carries on from where the journal stops.
"""

from __future__ import annotations

import signal
import sys
import threading
import time
from dataclasses import dataclass, field
from itertools import islice
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator

from live_runner.adapters.replay import BarFile, BarFileError, read_daily_closes
from live_runner.core.calendar import CalendarRangeError, MarketCalendar
from live_runner.core.clock import format_ns
from live_runner.core.config import SystemConfig
from live_runner.persistence.journal import Journal
from live_runner.core.models import Bar
from live_runner.core.money import money_str
from live_runner.live.node import TradingNode
from live_runner.ops.redact import redact_url


@dataclass
class RunOptions:
    bars: Path | None
    journal_url: str
    universe: list[str] | None = None
    daily_bars: Path | None = None  # the provider's daily closes (symbol, session, close)
    progress: bool = False
    speed: float | None = None  # None: as fast as possible; 60: one bar-minute per wall second
    linger: bool = False  # live service: keep serving after the data ends (until SIGTERM)
    stop_event: threading.Event = field(default_factory=threading.Event)
    # Told each new journal event (live_runner/ops/story.py through the Pipes bridge); None: nobody.
    journal_observer: Callable[[str, int, str, str, Any], None] | None = None


def _progress(bars: Iterable[Bar], total: int, out: Any) -> Iterator[Bar]:
    """A plain-text progress bar on stderr (only when asked for, e.g. on long files)."""
    step = max(total // 50, 1)
    for i, bar in enumerate(bars, 1):
        if i % step == 0:
            done = i * 50 // total
            out.write(f"\r[{'#' * done}{'.' * (50 - done)}] {i}/{total} bars")
            out.flush()
        yield bar
    out.write("\n")


def _until(bars: Iterable[Bar], stop: threading.Event, every: int = 1024) -> Iterator[list[Bar]]:
    """The bars in lists of `every`, until `stop` is set (checked between lists: a replay stops
    within ~1,000 bars, a few ms; per bar, the check and a generator hop cost ~4% of a replay)."""
    it = iter(bars)
    while not stop.is_set():
        chunk = list(islice(it, every))
        if not chunk:
            return
        yield chunk


def calendar_for(bar_file: BarFile, config: SystemConfig) -> MarketCalendar | None:
    """The market calendar over the validated file's dates (None: no bars, the default range).
    A date the calendar cannot place is the file's error (exit 2), raised before a journal
    exists, so a refused file leaves nothing behind."""
    if bar_file.first_ts is None or bar_file.last_ts is None:
        return None
    first = MarketCalendar.session_date_for_ts(bar_file.first_ts)
    last = MarketCalendar.session_date_for_ts(bar_file.last_ts)
    try:
        return MarketCalendar.covering(first, last, config.premarket_start, config.afterhours_end)
    except CalendarRangeError as exc:
        raise BarFileError(bar_file.path, f"a bar dated {exc.date}: {exc}") from exc


def run_session(config: SystemConfig, opts: RunOptions,
                node_hook: Callable[[TradingNode], None] | None = None) -> dict[str, Any]:
    """Validate the bars file, run the chain over it, and return the session summary."""
    bar_file = BarFile(opts.bars)
    total = bar_file.validate()  # a malformed file fails here, before the journal is touched
    calendar = calendar_for(bar_file, config)
    daily = read_daily_closes(opts.daily_bars) if opts.daily_bars is not None else None
    journal = Journal(opts.journal_url, batch_size=config.journal.batch_size,
                      observer=opts.journal_observer)
    node = TradingNode(config, journal, universe=opts.universe, calendar=calendar)
    if daily:
        node.strategies.set_daily_closes(daily)
    if node_hook is not None:
        node_hook(node)
    resumed_from = journal.recorded_events
    started = time.perf_counter()
    node.start()
    bars: Iterable[Bar] = bar_file.iter_bars()
    if opts.progress and total > 200_000:
        bars = _progress(bars, total, sys.stderr)
    try:
        for chunk in _until(bars, opts.stop_event):
            node.feed(chunk)
        node.stop(close_session=not opts.stop_event.is_set())
    finally:
        journal.close()
        node.execution.close()
        node.alerts.close(2.0)
    elapsed = time.perf_counter() - started
    return summarize(node, elapsed, resumed_from)


def summarize(node: TradingNode, elapsed: float, resumed_from: int = 0) -> dict[str, Any]:
    perf = node.performance
    trades = [
        {"symbol": t.symbol, "strategy": t.strategy, "qty": t.qty,
         "entry_time": format_ns(t.entry_ts), "entry_price": t.entry_price,
         "exit_time": format_ns(t.exit_ts), "exit_price": t.exit_price,
         "exit_reason": t.exit_reason, "pnl": money_str(t.pnl), "commission": money_str(t.commission)}
        for t in perf.trades
    ]
    positions = {s: p.qty for s, p in sorted(node.portfolio.positions.items())}
    return {
        "trades": trades,
        "realized_pnl": money_str(perf.realized_pnl),
        "commissions": money_str(perf.commissions),
        "final_positions": positions,
        "final_equity": money_str(node.portfolio.equity_decimal()),
        "signals": node.strategies.signals,
        "orders_submitted": node.orders.orders_submitted,
        "risk_denials": dict(sorted(node.risk.denials.items())),
        "bars_processed": node.data.bars_processed,
        "bars_rejected": node.data.bars_rejected,
        "bars_rejected_by_reason": dict(sorted(node.data.rejected.items())),
        "sessions": node.session_summaries,
        # symbol-sessions whose previous close was missing (never taken from an older session)
        "prev_close_missing": sum(s.get("prev_close_missing", 0) for s in node.session_summaries),
        "stats": {name: s.to_dict() for name, s in perf.stats_by_strategy().items()},
        "journal": redact_url(node.journal.url),
        "journal_events_resumed": resumed_from,
        "elapsed_s": round(elapsed, 3),
    }


def install_sigterm(stop: threading.Event) -> None:
    """SIGTERM/SIGINT stop taking bars; the node then closes the session and flushes."""
    def handler(signum: int, frame: Any) -> None:
        stop.set()
    signal.signal(signal.SIGTERM, handler)
    signal.signal(signal.SIGINT, handler)


def format_summary(s: dict[str, Any]) -> str:
    lines = [
        f"bars processed {s['bars_processed']:,} (rejected {s['bars_rejected']:,}) in {s['elapsed_s']} s",
        f"signals {s['signals']}, orders submitted {s['orders_submitted']}, "
        f"risk denials {sum(s['risk_denials'].values())} {s['risk_denials'] or ''}".rstrip(),
        f"trades {len(s['trades'])}, realized P&L {s['realized_pnl']} (net of commissions "
        f"{s['commissions']}), final equity {s['final_equity']}",
    ]
    if s.get("prev_close_missing"):
        lines.append(f"premarket symbols without the previous session's close (not qualified): "
                     f"{s['prev_close_missing']}")
    for name, st in s["stats"].items():
        lines.append(f"  {name}: {st.get('trades')} trades, win rate {st.get('win_rate')}, "
                     f"profit factor {st.get('profit_factor')}, avg R {st.get('avg_r')}")
    if s["trades"]:
        lines.append("")
        lines.append(f"{'symbol':<8}{'strategy':<14}{'qty':>6} {'entry (UTC)':<21}{'price':>9} "
                     f"{'exit (UTC)':<21}{'price':>9} {'reason':<10}{'pnl':>10}")
        for t in s["trades"][:40]:
            lines.append(f"{t['symbol']:<8}{t['strategy']:<14}{t['qty']:>6} {t['entry_time']:<21}"
                         f"{t['entry_price']:>9.2f} {t['exit_time']:<21}{t['exit_price']:>9.2f} "
                         f"{t['exit_reason']:<10}{t['pnl']:>10}")
        if len(s["trades"]) > 40:
            lines.append(f"... {len(s['trades']) - 40} more (use --json for all)")
    if s["final_positions"]:
        lines.append(f"open positions: {s['final_positions']}")
    lines.append(f"journal: {s['journal']}")
    return "\n".join(lines)


__all__ = ["RunOptions", "run_session", "summarize", "format_summary", "install_sigterm", "money_str"]
