"""Recorded market data for tests: where the files are, replaying them, and reading the result.

The files are real 1-minute bars, converted by tests/data/convert_recorded.py (provenance and
licences: tests/data/README.md). Those taken from a package registry's artifact are committed in
`tests/data/recorded_pkg/` and always there (`committed`); the others are looked for in
`$TRADING_RECORDED_BARS_DIR`, then `tests/data/recorded/`, then `shared/recorded_bars/` beside
the repository (where CI lays the steering repository's shared folder), and skip when absent.
"""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from live_runner.core.config import parse_config
from live_runner.core.money import round_to_tick_dec
from live_runner.live.runs import RunOptions, run_session
from live_runner.persistence.journal import dump, make_engine

ROOT = Path(__file__).resolve().parents[2]
NY = ZoneInfo("America/New_York")
COMMITTED = ROOT / "tests" / "data" / "recorded_pkg"


def data_dirs() -> list[Path]:
    dirs = [ROOT / "tests" / "data" / "recorded", ROOT.parent / "shared" / "recorded_bars", COMMITTED]
    env = os.environ.get("TRADING_RECORDED_BARS_DIR")
    return ([Path(env)] if env else []) + dirs


def committed(name: str) -> Path:
    """A committed recorded file: never skipped, so CI always replays it."""
    path = COMMITTED / name
    assert path.is_file(), f"{path} is committed with the repository (tests/data/README.md)"
    return path


def recorded(name: str) -> Path:
    """The recorded file `name`; skips (naming where it was looked for) when it is not installed."""
    for d in data_dirs():
        if (d / name).is_file():
            return d / name
    pytest.skip(f"recorded bars {name} not installed (looked in {', '.join(map(str, data_dirs()))}; "
                "see tests/data/README.md)")


@dataclass(frozen=True)
class RecordedBar:
    open: Decimal
    high: Decimal
    low: Decimal
    close: Decimal


def ns(text: str) -> int:
    return int(datetime.fromisoformat(text).timestamp()) * 1_000_000_000


def et_ns(day: str, hhmm: str) -> int:
    """UTC ns of a New York wall-clock minute, e.g. et_ns("2024-07-23", "10:10")."""
    return int(datetime.fromisoformat(f"{day}T{hhmm}").replace(tzinfo=NY).timestamp()) * 1_000_000_000


def load_bars(path: Path) -> dict[tuple[str, int], RecordedBar]:
    """(symbol, bar start ns) -> the bar's prices exactly as recorded (decimal text)."""
    with path.open(newline="") as fh:
        return {(r["symbol"], ns(r["timestamp"])): RecordedBar(
            Decimal(r["open"]), Decimal(r["high"]), Decimal(r["low"]), Decimal(r["close"]))
            for r in csv.DictReader(fh)}


@dataclass
class Replay:
    summary: dict[str, Any]
    events: list[tuple[Any, ...]]  # journal rows (seq, session, ts, kind, key, payload) as stored

    def kind(self, kind: str) -> list[tuple[int, str, dict[str, Any]]]:
        """(ts, key, payload) of every journal event of one kind, in journal order."""
        return [(e[2], e[4], json.loads(e[5])) for e in self.events if e[3] == kind]


def replay(bars: Path, journal: Path, config: dict[str, Any] | None = None,
           universe: list[str] | None = None) -> Replay:
    """The whole chain over `bars` in-process (the paper broker, a fresh SQLite journal)."""
    url = f"sqlite:///{journal}"
    summary = run_session(parse_config(config or {}), RunOptions(bars=bars, journal_url=url,
                                                                 universe=universe))
    engine = make_engine(url)
    try:
        events = dump(engine)
    finally:
        engine.dispose()
    return Replay(summary, events)


def cli_replay(bars: Path, journal: Path, universe: str) -> dict[str, Any]:
    """`python -m live_runner replay --json` as an operator runs it: exit 0 asserted, the summary."""
    proc = subprocess.run(
        [sys.executable, "-m", "live_runner", "replay", "--bars", str(bars), "--journal",
         f"sqlite:///{journal}", "--universe", universe, "--json"],
        check=False, cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout)


def fills_outside_their_bar(run: Replay, bars: dict[tuple[str, int], RecordedBar]) -> list[str]:
    """Every fill whose price lies outside the range of the bar it filled in.

    A fill is stamped with the start of its bar; an end-of-session market fill with no bar after
    it fills at the close of the symbol's last bar (stamped one minute later)."""
    bad = []
    for ts, key, p in run.kind("fill"):
        bar = bars.get((p["symbol"], ts))
        if bar is None:  # end of session: the last bar before ts
            earlier = [t for (s, t) in bars if s == p["symbol"] and t < ts]
            bar = bars[(p["symbol"], max(earlier))]
        price = Decimal(repr(p["price"]))
        if not bar.low <= price <= bar.high:
            bad.append(f"{key} {p['side']} {p['qty']} @ {price} outside [{bar.low}, {bar.high}] (ts {ts})")
    return bad


def d(value: Any) -> Decimal:
    """Exact Decimal of a summary number: a money string, or a price float's shortest repr."""
    return Decimal(value) if isinstance(value, str) else Decimal(repr(value))


def trades(run: Replay) -> list[tuple]:
    """Each trade as (symbol, signal bar ET start ns, stop, qty, entry fill ts, entry price, target,
    exit ts, exit price, exit reason, commission, pnl), numbers exact. The stop is the protective
    order's: the signal's (a bar's low, maybe sub-penny) rounded to the tick, half up."""
    signals = [(ts, p["stop"]) for ts, _, p in run.kind("signal") if p["side"] == "buy"]
    stops = [p["stop"] for _, _, p in run.kind("order") if p["role"] == "stop"]
    targets = [p["limit"] for _, _, p in run.kind("order") if p["role"] == "target"]
    out = []
    for i, t in enumerate(run.summary["trades"]):
        sig_ts, sig_stop = signals[i]
        stop = d(stops[i])
        assert stop == round_to_tick_dec(d(sig_stop)), "the protective stop is the signal's, on a tick"
        out.append((t["symbol"], sig_ts, stop, t["qty"], ns(t["entry_time"].replace("Z", "+00:00")),
                    d(t["entry_price"]), d(targets[i]), ns(t["exit_time"].replace("Z", "+00:00")),
                    d(t["exit_price"]), t["exit_reason"], d(t["commission"]), d(t["pnl"])))
    return out


def write_bars(rows: list[dict[str, str]], out: Path) -> Path:
    """Bar rows (as csv.DictReader gives them) to a bar file, in (timestamp, symbol) order."""
    rows = sorted(rows, key=lambda r: (datetime.fromisoformat(r["timestamp"]), r["symbol"]))
    with out.open("w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=list(rows[0]), lineterminator="\n")
        w.writeheader()
        w.writerows(rows)
    return out


def merged(paths: list[Path], out: Path, day: str | None = None) -> Path:
    """One bar file of several symbols' files (or of one session of them, `day` "YYYY-MM-DD")."""
    rows = []
    for path in paths:
        with path.open(newline="") as fh:
            rows += [r for r in csv.DictReader(fh) if day is None or r["timestamp"].startswith(day)]
    return write_bars(rows, out)
