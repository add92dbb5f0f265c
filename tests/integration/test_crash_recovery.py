"""Crash recovery: kill -9 the runner at many random points of a paper session, restart it each
time on the same journal and the same paper-broker state, and end exactly where an uninterrupted
run ends, without any client order id reaching the broker twice.

TRADING_FAULT_POINTS sets the number of kills (20 by default, as in CI); e.g.
`TRADING_FAULT_POINTS=200 make test PYTEST_ARGS="-k crash_recovery"` for the bigger run.
"""

from __future__ import annotations

import json
import os
import random
import signal
import sqlite3
import subprocess
import sys
import time
from collections import Counter
from datetime import date
from pathlib import Path

import pytest
import sqlalchemy as sa

from live_runner.data import sample_data
from live_runner.live.brokers import add_external_position
from live_runner.persistence.journal import dump

ROOT = Path(__file__).resolve().parents[2]
FAULT_POINTS = int(os.environ.get("TRADING_FAULT_POINTS", "20"))


@pytest.fixture(scope="module")
def bars(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("bars")
    # More kill points need a longer session, so that kills still land between broker reports.
    df = sample_data.generate(date(2024, 11, 26), sessions=1, symbols=max(30, 2 * FAULT_POINTS), seed=3)
    return sample_data.write(df, out)


def config(tmp: Path, name: str) -> Path:
    path = tmp / f"{name}.yaml"
    path.write_text(f"journal: {{batch_size: 25}}\npaper: {{state_url: 'sqlite:///{tmp / name}-broker.db'}}\n")
    return path


def replay(bars: Path, cfg: Path, journal: Path) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "live_runner", "replay", "--bars", str(bars), "--config", str(cfg),
         "--journal", f"sqlite:///{journal}", "--json"],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def count(db: Path, where: str = "") -> int:
    if not db.exists():
        return 0
    try:
        con = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=1)
        try:
            return con.execute(f"select count(*) from journal_events {where}").fetchone()[0]
        finally:
            con.close()
    except sqlite3.Error:
        return 0


def keys(db: Path, kind: str) -> set[str]:
    con = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        return {r[0] for r in con.execute("select key from journal_events where kind = ?", (kind,))}
    except sqlite3.OperationalError:
        return set()
    finally:
        con.close()


def rows(db: Path) -> list[tuple]:
    engine = sa.create_engine(f"sqlite:///{db}")
    try:
        return dump(engine)
    finally:
        engine.dispose()


def test_kill_minus_nine_at_random_points_changes_nothing(bars: Path, tmp_path: Path) -> None:
    # The uninterrupted reference run.
    ref = replay(bars, config(tmp_path, "ref"), tmp_path / "ref.db")
    out, err = ref.communicate(timeout=300)
    assert ref.returncode == 0, err
    expected = json.loads(out)
    ref_broker = tmp_path / "ref-broker.db"
    total_reports = count(ref_broker)
    assert expected["trades"] and total_reports > 50

    rng = random.Random(20241126)
    cfg, journal, broker = config(tmp_path, "crash"), tmp_path / "crash.db", tmp_path / "crash-broker.db"
    kills = ahead = 0
    for _ in range(FAULT_POINTS):
        # Steps of total/(2N) on average: the N kills spread over the first half or so of the
        # session's reports, so nearly all of them land mid-run whatever the replay's speed.
        target = count(broker) + rng.randint(1, max(2, total_reports // FAULT_POINTS))
        proc = replay(bars, cfg, journal)
        deadline = time.monotonic() + 120
        while proc.poll() is None and count(broker) < target and time.monotonic() < deadline:
            time.sleep(0.002)
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGKILL)
            kills += 1
        _, err = proc.communicate(timeout=60)
        assert proc.returncode in (0, -signal.SIGKILL), err
        # Orders the broker accepted that the runner had not journaled yet (its writes are batched):
        # the restart must adopt them, not send them again.
        if keys(broker, "accepted") - keys(journal, "order"):
            ahead += 1
    final = replay(bars, cfg, journal)
    out, err = final.communicate(timeout=300)
    assert final.returncode == 0, err
    resumed = json.loads(out)

    assert kills >= FAULT_POINTS // 2, f"only {kills} of {FAULT_POINTS} kills landed mid-run"
    print(f"{kills} of {FAULT_POINTS} kills landed mid-run; {ahead} left the broker ahead of the journal")
    assert ahead >= 1, "no kill left the broker ahead of the journal: adoption was not exercised"
    assert resumed["journal_events_resumed"] > 0
    assert rows(journal) == rows(tmp_path / "ref.db")  # same orders, fills, trades, marks: same order
    assert rows(broker) == rows(ref_broker)            # the broker saw exactly the same business
    accepted = Counter(k for (_, _, _, kind, k, _) in rows(broker) if kind == "accepted")
    assert accepted and max(accepted.values()) == 1, "a client order id reached the broker twice"
    for key in ("trades", "realized_pnl", "commissions", "final_positions", "orders_submitted"):
        assert resumed[key] == expected[key], key


def test_unexplained_broker_position_halts_trading(bars: Path, tmp_path: Path) -> None:
    """A position at the broker the runner knows nothing of (a manual trade): HALTED, alert, no entries."""
    cfg = config(tmp_path, "manual")
    add_external_position(f"sqlite:///{tmp_path / 'manual-broker.db'}", "ZZZ", 100)
    journal = tmp_path / "manual.db"
    proc = replay(bars, cfg, journal)
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err
    summary = json.loads(out)
    assert summary["trades"] == [] and summary["risk_denials"].get("HALTED", 0) > 0
    con = sqlite3.connect(journal)
    try:
        recon = con.execute("select payload from journal_events where kind='reconciliation'").fetchone()
        states = [r[0] for r in con.execute("select key from journal_events where kind='trading_state'")]
        alerts = [r[0] for r in con.execute("select key from journal_events where kind='alert'")]
    finally:
        con.close()
    assert json.loads(recon[0])["diff"] == {"ZZZ": {"runner": 0, "broker": 100}}
    assert states == ["halted"]
    assert "reconciliation_mismatch" in alerts
