"""Replaying a stored session through the runner's CLI and diffing it against the live journal.

The runner is deterministic: the same bars and config give the same journal. So any difference
between the live run and a replay of the bars stored after the close is a finding: a live run
stopped early, bars that reached the live feed differently, a code or config change. Orders,
fills and trades are compared event by event (client order id, symbol, side, quantity, prices,
times); P&L drift is replay minus live.
"""

from __future__ import annotations

import json
import subprocess
import tempfile
from collections import Counter
from datetime import date
from decimal import Decimal
from pathlib import Path
from typing import Any

from live_runner.persistence.journal import iter_events, make_engine
from live_runner.persistence.journal_state import load_state
from live_runner.core.money import money_str

KINDS = ("order", "fill", "trade")


class ReplayFailed(RuntimeError):
    """The replay subprocess exited non-zero."""


def run_replay(python: str, bars: Path, config: Path | None, universe: list[str], day: date,
               timeout_s: float = 600) -> dict[str, Any]:
    """`python -m live_runner replay` into a scratch journal; returns summary and events."""
    with tempfile.TemporaryDirectory(prefix="replay_") as tmp:
        url = f"sqlite:///{Path(tmp) / 'replay.db'}"
        cmd = [python, "-m", "live_runner", "replay", "--bars", str(bars), "--journal", url,
               "--universe", ",".join(universe), "--json"]
        if config is not None:
            cmd += ["--config", str(config)]
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout_s)
        if proc.returncode != 0:
            raise ReplayFailed(f"replay exited {proc.returncode}: {proc.stderr.strip()[-2000:]}")
        summary = json.loads(proc.stdout.strip().splitlines()[-1])
        return {"summary": summary, "events": _events(url, day),
                "realized": load_state(url, session=day.isoformat()).sessions.get(day.isoformat())}


def _events(url: str, day: date) -> list[tuple[str, str, int, str]]:
    engine = make_engine(url)
    try:
        return [(e["kind"], e["key"], e["ts"], json.dumps(e["payload"], sort_keys=True))
                for e in iter_events(engine, session=day.isoformat(), kinds=KINDS)]
    finally:
        engine.dispose()


def live_events(url: str, day: date) -> list[tuple[str, str, int, str]]:
    return _events(url, day)


def compare(live: list[tuple], replay: list[tuple]) -> dict[str, Any]:
    """Per kind: matched, only in the live journal, only in the replay (multiset semantics)."""
    out: dict[str, Any] = {}
    examples: list[dict[str, str]] = []
    for kind in KINDS:
        a = Counter(e for e in live if e[0] == kind)
        b = Counter(e for e in replay if e[0] == kind)
        only_live, only_replay = a - b, b - a
        out[kind] = {"live": sum(a.values()), "replay": sum(b.values()),
                     "matched": sum((a & b).values()), "only_live": sum(only_live.values()),
                     "only_replay": sum(only_replay.values())}
        for side, diff in (("live only", only_live), ("replay only", only_replay)):
            for e in sorted(diff)[:5]:
                examples.append({"side": side, "kind": e[0], "key": e[1], "payload": e[3][:160]})
    out["examples"] = examples
    out["identical"] = all(out[k]["only_live"] == 0 and out[k]["only_replay"] == 0 for k in KINDS)
    return out


def pnl_drift(live_realized: Decimal | None, replay_realized: Decimal | None) -> str | None:
    if live_realized is None or replay_realized is None:
        return None
    return money_str(replay_realized - live_realized)
