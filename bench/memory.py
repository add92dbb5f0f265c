"""Peak RSS of a 500-symbol session replay, and how it grows with the number of bars.

Usage: .venv/bin/python bench/memory.py
Each replay runs in a fresh subprocess; its peak RSS is VmHWM from /proc/self/status, the high
water mark of its own address space (ru_maxrss would not do: Linux carries it across fork and
exec, so a child would report the harness's peak while it generated the sample data).
Target (issue 2): <= 200 MB for 500 symbols, flat in the number of bars.
"""

from __future__ import annotations

import json
import resource
import subprocess
import sys
import tempfile

from _common import ROOT, emit, sample_file

CHILD = r"""
import json, sys
sys.path.insert(0, sys.argv[3])
from live_runner.config import parse_config
from live_runner.runs import RunOptions, run_session
s = run_session(parse_config({}), RunOptions(bars=sys.argv[1], journal_url=sys.argv[2]))
hwm = next(int(line.split()[1]) for line in open("/proc/self/status") if line.startswith("VmHWM:"))
print(json.dumps({"bars": s["bars_processed"], "elapsed_s": s["elapsed_s"], "peak_rss_mb": hwm / 1024}))
"""


def measure(symbols: int, sessions: int) -> dict:
    bars = sample_file(symbols, sessions, seed=5)
    with tempfile.TemporaryDirectory() as tmp:
        out = subprocess.run([sys.executable, "-c", CHILD, str(bars), f"sqlite:///{tmp}/j.db", str(ROOT)],
                             check=True, capture_output=True, text=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    for symbols, sessions in ((500, 1), (500, 2), (500, 4)):
        r = measure(symbols, sessions)
        emit(bench="memory", symbols=symbols, sessions=sessions, bars=r["bars"],
             peak_rss_mb=round(r["peak_rss_mb"], 1), elapsed_s=r["elapsed_s"])
    baseline = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    emit(bench="memory", note="this harness process (generation + pandas)", peak_rss_mb=round(baseline, 1))


if __name__ == "__main__":
    main()
