"""Peak RSS of a 500-symbol session replay, how it grows with the number of bars, and over a long run.

Usage: .venv/bin/python bench/memory.py [--sessions 23] [--only-long | --no-long]
Each replay runs in a fresh subprocess; its peak RSS is VmHWM from /proc/self/status, the high
water mark of its own address space (ru_maxrss would not do: Linux carries it across fork and
exec, so a child would report the harness's peak while it generated the sample data).
The long case replays 500 symbols x `--sessions` sessions from one file (the data of
`python -m live_runner sample-data --symbols 500 --sessions K --seed 5`, cached under var/bench)
and samples VmRSS as each session closes: `growth_mb_per_session` is the least-squares slope of
those samples after the first session.
Targets: <= 200 MB for 500 symbols, flat in the number of bars (issue 2); over 23 sessions peak
RSS <= 250 MB and growth < 1 MB per session after the first (issue 18).
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile

from _common import ROOT, emit, sample_file

CHILD = r"""
import json, sys
sys.path.insert(0, sys.argv[3])
from live_runner.core.config import parse_config
from live_runner.live.runs import RunOptions, run_session

def status(key):
    return next(int(line.split()[1]) for line in open("/proc/self/status") if line.startswith(key)) / 1024

rss = []
def hook(node):
    node.on_session_closed = lambda summary: rss.append(round(status("VmRSS:"), 1))
s = run_session(parse_config({}), RunOptions(bars=sys.argv[1], journal_url=sys.argv[2]), node_hook=hook)
print(json.dumps({"bars": s["bars_processed"], "elapsed_s": s["elapsed_s"], "peak_rss_mb": status("VmHWM:"),
                  "session_rss_mb": rss, "trades": len(s["trades"])}))
"""


def measure(symbols: int, sessions: int) -> dict:
    bars = sample_file(symbols, sessions, seed=5)
    with tempfile.TemporaryDirectory() as tmp:
        out = subprocess.run([sys.executable, "-c", CHILD, str(bars), f"sqlite:///{tmp}/j.db", str(ROOT)],
                             check=True, capture_output=True, text=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def slope(ys: list[float]) -> float:
    """Least-squares growth per step (0 with fewer than two samples)."""
    n = len(ys)
    if n < 2:
        return 0.0
    mx, my = (n - 1) / 2, sum(ys) / n
    return sum((i - mx) * (y - my) for i, y in enumerate(ys)) / sum((i - mx) ** 2 for i in range(n))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sessions", type=int, default=23, help="sessions of the long case")
    group = ap.add_mutually_exclusive_group()
    group.add_argument("--only-long", action="store_true")
    group.add_argument("--no-long", action="store_true")
    args = ap.parse_args()
    if not args.only_long:
        for symbols, sessions in ((500, 1), (500, 2), (500, 4)):
            r = measure(symbols, sessions)
            emit(bench="memory", symbols=symbols, sessions=sessions, bars=r["bars"],
                 peak_rss_mb=round(r["peak_rss_mb"], 1), elapsed_s=r["elapsed_s"])
    if not args.no_long:
        r = measure(500, args.sessions)
        rss = r["session_rss_mb"]
        after_first = rss[1:]
        emit(bench="memory_long_run", symbols=500, sessions=args.sessions, bars=r["bars"],
             trades=r["trades"], peak_rss_mb=round(r["peak_rss_mb"], 1),
             growth_mb_per_session=round(slope(after_first), 3),
             first_to_last_mb=round(rss[-1] - rss[0], 1) if rss else None,
             session_rss_mb=rss, elapsed_s=r["elapsed_s"])
    baseline = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    emit(bench="memory", note="this harness process (generation + pandas)", peak_rss_mb=round(baseline, 1))


if __name__ == "__main__":
    main()
