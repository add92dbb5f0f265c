"""`python -m live_runner run --mode paper`: a paced session that stops cleanly on SIGTERM."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import sqlalchemy as sa

from tests.kit.sessions import SessionBuilder

ROOT = Path(__file__).resolve().parents[2]


def write_bars(path: Path) -> None:
    s = SessionBuilder()
    s.prev_close("PACE", 10.0)
    s.flat("PACE", "09:30", "15:59", 10.0, 1_000)
    rows = ["symbol,timestamp,open,high,low,close,volume"]
    rows += [f"{b.symbol},{b.ts},{b.open},{b.high},{b.low},{b.close},{b.volume}" for b in s.sorted_bars()]
    path.write_text("\n".join(rows) + "\n")


def test_sigterm_stops_the_paced_session_and_flushes(tmp_path: Path) -> None:
    bars = tmp_path / "bars.csv"
    write_bars(bars)
    cfg = tmp_path / "cfg.yaml"
    cfg.write_text(f"feed: {{bars: {bars}, speed: 60}}\njournal: {{batch_size: 1}}\n")
    journal = tmp_path / "j.db"
    proc = subprocess.Popen(
        [sys.executable, "-m", "live_runner", "run", "--mode", "paper", "--config", str(cfg),
         "--journal", f"sqlite:///{journal}", "--json"],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    engine = sa.create_engine(f"sqlite:///{journal}")
    deadline = time.monotonic() + 60
    processed = 0
    while time.monotonic() < deadline:  # wait until the session is under way (equity marks)
        time.sleep(0.2)
        if journal.exists():
            try:
                with engine.connect() as c:
                    processed = c.execute(sa.text(
                        "select count(*) from journal_events where kind='equity'")).scalar() or 0
            except sa.exc.OperationalError:
                continue
            if processed >= 3:
                break
    assert processed >= 3, "the paced session did not start"
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    summary = json.loads(out)
    # Stopped long before the 391 bars of the day were released at 60x (6.5 minutes).
    assert 3 <= summary["bars_processed"] < 300
    with engine.connect() as c:
        kinds = [r[0] for r in c.execute(sa.text("select kind from journal_events order by seq"))]
    # Positions are kept for a restart (flatten_on_shutdown: false): the session stays open,
    # and everything the run did up to the signal is in the journal.
    assert kinds.count("session_start") == 2 and kinds.count("session_end") == 1  # only the 14th closed
    assert kinds[-1] != "session_end"
    assert kinds.count("equity") >= summary["bars_processed"] - 2


def test_run_without_a_feed_is_refused(tmp_path: Path) -> None:
    proc = subprocess.run([sys.executable, "-m", "live_runner", "run", "--mode", "paper"],
                          cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2
    assert "feed.bars" in proc.stderr
