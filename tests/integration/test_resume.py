"""Crash and restart: `kill -9` in the middle of a replay, then the same command again.

The restarted run regenerates the stored prefix (verified event by event, its orders recovered
rather than re-sent) and carries on; the journal it leaves is row for row the one of an
uninterrupted run. A restart with a different configuration is refused (exit 3) without writing.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from collections import Counter
from datetime import date
from pathlib import Path

import pytest

from live_runner.data import sample_data
from live_runner.persistence.journal import dump, make_engine

ROOT = Path(__file__).resolve().parents[2]
BATCH = "journal:\n  batch_size: 50\n"


def command(bars: Path, db: Path, config: Path) -> list[str]:
    return [sys.executable, "-m", "live_runner", "replay", "--bars", str(bars), "--config", str(config),
            "--journal", f"sqlite:///{db}", "--json"]


def replay(bars: Path, db: Path, config: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(command(bars, db, config), cwd=ROOT, capture_output=True, text=True, timeout=120)


def stored(db: Path) -> int:
    """Events committed so far (0 while the file or the table does not exist yet)."""
    if not db.exists():
        return 0
    try:
        conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=1.0)
        try:
            return conn.execute("SELECT count(*) FROM journal_events").fetchone()[0]
        finally:
            conn.close()
    except sqlite3.OperationalError:  # not created yet
        return 0


def rows(db: Path) -> list[tuple]:
    engine = make_engine(f"sqlite:///{db}")
    try:
        return dump(engine)
    finally:
        engine.dispose()


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """A file big enough that the replay takes a while (3 sessions x 150 symbols), replayed once."""
    out = tmp_path_factory.mktemp("resume")
    bars = sample_data.write(sample_data.generate(date(2024, 11, 26), sessions=3, symbols=150, seed=5), out)
    config = out / "config.yaml"
    config.write_text(BATCH)
    db = out / "A.db"
    proc = replay(bars, db, config)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return {"dir": out, "bars": bars, "config": config, "db": db, "summary": json.loads(proc.stdout),
            "rows": rows(db)}


@pytest.mark.parametrize("point", ["first_order", "middle", "late"])
def test_kill_9_mid_replay_then_resume(uninterrupted: dict, tmp_path: Path, point: str) -> None:
    a_rows, a_summary = uninterrupted["rows"], uninterrupted["summary"]
    total = len(a_rows)
    first_order = next(r[0] for r in a_rows if r[3] == "order")
    at_least = {"first_order": first_order, "middle": total // 2, "late": total * 17 // 20}[point]
    db = tmp_path / "B.db"
    cmd = command(uninterrupted["bars"], db, uninterrupted["config"])

    log = tmp_path / "killed.stderr"
    with log.open("w") as err_file:
        proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=err_file)
    deadline = time.monotonic() + 60
    try:
        while proc.poll() is None and stored(db) < at_least and time.monotonic() < deadline:
            time.sleep(0.002)
    finally:
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL, (
        f"the replay ended (rc {proc.returncode}) before {at_least} events were stored: "
        f"{log.read_text()[-2000:]}")
    before = stored(db)
    assert at_least <= before < total
    # Orders inside the stored prefix were sent before the crash: the restart must recover them.
    assert any(r[3] == "order" for r in a_rows[:before])

    resumed = replay(uninterrupted["bars"], db, uninterrupted["config"])
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    summary = json.loads(resumed.stdout)
    assert summary["journal_events_resumed"] == before > 0

    b_rows = rows(db)
    assert len(b_rows) == total
    assert b_rows == a_rows  # identical rows: seq, session, ts, kind, key, payload
    orders = Counter(r[4] for r in b_rows if r[3] == "order")
    assert orders and max(orders.values()) == 1, [cid for cid, n in orders.items() if n > 1]
    for key in ("trades", "realized_pnl", "commissions", "final_positions", "orders_submitted",
                "signals", "risk_denials", "sessions", "bars_processed"):
        assert summary[key] == a_summary[key], key


def test_resume_with_another_config_is_refused(uninterrupted: dict, tmp_path: Path) -> None:
    db = tmp_path / "C.db"
    for suffix in ("", "-wal", "-shm"):
        src = Path(f"{uninterrupted['db']}{suffix}")
        if src.exists():
            shutil.copy(src, f"{db}{suffix}")
    config = tmp_path / "config.yaml"
    config.write_text(BATCH + "max_positions: 1\n")
    before = rows(db)
    assert before == uninterrupted["rows"]

    proc = replay(uninterrupted["bars"], db, config)
    assert proc.returncode == 3, proc.stderr[-3000:]
    assert "refusing to resume" in proc.stderr and "journal event" in proc.stderr
    assert proc.stdout == ""
    assert rows(db) == before
