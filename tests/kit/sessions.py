"""Builders for hand-made sessions: bars at New York wall times, run through the real chain."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any
from zoneinfo import ZoneInfo

from live_runner.core.config import parse_config
from live_runner.persistence.journal import Journal
from live_runner.core.models import Bar
from live_runner.live.node import TradingNode
from live_runner.live.runs import summarize

NY = ZoneInfo("America/New_York")


def et_ns(day: str | date, hhmm: str) -> int:
    d = date.fromisoformat(day) if isinstance(day, str) else day
    h, m = (int(x) for x in hhmm.split(":"))
    return int(datetime(d.year, d.month, d.day, h, m, tzinfo=NY).timestamp()) * 1_000_000_000


@dataclass
class SessionBuilder:
    """Collects bars; `run` feeds them (sorted by time, then symbol) through a TradingNode."""

    day: str = "2024-03-15"
    prev_day: str = "2024-03-14"
    bars: list[Bar] = field(default_factory=list)

    def bar(self, symbol: str, hhmm: str, o: float, h: float, l: float, c: float, v: float,
            day: str | None = None) -> "SessionBuilder":
        self.bars.append(Bar(symbol, et_ns(day or self.day, hhmm), o, h, l, c, v))
        return self

    def prev_close(self, symbol: str, close: float) -> "SessionBuilder":
        return self.bar(symbol, "15:59", close, close, close, close, 10_000, day=self.prev_day)

    def flat(self, symbol: str, start: str, end: str, price: float, volume: float,
             day: str | None = None) -> "SessionBuilder":
        """One bar a minute from start to end inclusive, all at one price."""
        d = day or self.day
        t, stop = et_ns(d, start), et_ns(d, end)
        while t <= stop:
            self.bars.append(Bar(symbol, t, price, price, price, price, volume))
            t += 60_000_000_000
        return self

    def sorted_bars(self) -> list[Bar]:
        return sorted(self.bars, key=lambda b: (b.ts, b.symbol))

    def run(self, journal_url: str = "sqlite://", universe: list[str] | None = None,
            **config: Any) -> tuple[TradingNode, dict[str, Any]]:
        cfg = parse_config(config)
        journal = Journal(journal_url)
        node = TradingNode(cfg, journal, universe=universe)
        node.start()
        node.feed(self.sorted_bars())
        node.stop()
        summary = summarize(node, 0.0)
        journal.flush()
        return node, summary


def gapper_breakout(day: str = "2024-03-15", prev_day: str = "2024-03-14") -> SessionBuilder:
    """GAPR gaps 9% on 60,000 premarket shares (pm_high 11.00) and breaks out at 09:31 (close 11.20,
    low 10.90): the gap_and_go signal. The bars after it are the test's own."""
    s = SessionBuilder(day=day, prev_day=prev_day)
    s.prev_close("GAPR", 10.00)
    s.bar("GAPR", "08:00", 10.5, 10.8, 10.4, 10.7, 30_000)
    s.bar("GAPR", "09:00", 10.7, 11.0, 10.6, 10.9, 30_000)
    s.bar("GAPR", "09:30", 10.9, 11.0, 10.8, 10.95, 50_000)
    s.bar("GAPR", "09:31", 10.95, 11.3, 10.9, 11.2, 60_000)
    return s


def gapper(day: str = "2024-03-15", prev_day: str = "2024-03-14") -> SessionBuilder:
    """The breakout, then the entry fill at the 09:32 open (11.25) and the 2R target (11.95) at 09:33:
    one trade of 1785 shares."""
    s = gapper_breakout(day, prev_day)
    s.bar("GAPR", "09:32", 11.25, 11.4, 11.1, 11.35, 40_000)
    s.bar("GAPR", "09:33", 11.4, 12.0, 11.35, 11.9, 40_000)
    return s
