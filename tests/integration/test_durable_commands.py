"""Operator commands are durable (issue 11, item 6): a command answered 200 is in the journal on
disk, so a runner killed with SIGKILL one moment later restarts with it applied.

The runner is the real CLI (`python -m live_runner run --mode paper`) replaying a bars file at
wall-clock pace (the deployed default), with the default journal batch size; the command goes
over HTTP, the process is then killed with SIGKILL and restarted on the same journal (and the
same paper-broker state, when `paper.state_url` is set).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.kit.live import TOKEN, TOKEN_ENV, Market, free_port, http_call, journal_rows

pytestmark = pytest.mark.timeout(120)
ROOT = Path(__file__).resolve().parents[2]
SPEED = 300  # a bar-minute every 0.2 s


def market() -> Market:
    """AAA breaks out at 09:31 (long 1785 from 09:32 with its stop and target working); BBB breaks
    out at 09:50, an entry a run that lost the command would take."""
    return Market().gapper("AAA", "09:31", until="10:30").gapper("BBB", "09:50", until="10:30")


class Runner:
    """`python -m live_runner run` in its own process, with its ops server on a known port."""

    def __init__(self, tmp: Path, *, state: bool, linger: bool = False) -> None:
        self.tmp = tmp
        self.port = free_port()
        self.journal_url = f"sqlite:///{tmp / 'journal.db'}"
        cfg: dict[str, Any] = {
            "active_strategies": ["gap_and_go"], "log_dir": str(tmp / "logs"),
            "feed": {"bars": str(market().csv(tmp / "bars.csv")), "speed": SPEED},
            "ops": {"port": self.port, "token_env": TOKEN_ENV}}
        if state:
            cfg["paper"] = {"state_url": f"sqlite:///{tmp / 'broker.db'}"}
        self.cfg = tmp / "cfg.yaml"
        self.cfg.write_text(yaml.safe_dump(cfg))
        args = [sys.executable, "-m", "live_runner", "run", "--mode", "paper", "--config", str(self.cfg),
                "--journal", self.journal_url, "--json"] + (["--linger"] if linger else [])
        env = {**os.environ, TOKEN_ENV: TOKEN, "PYTHONPATH": str(ROOT)}
        self.proc = subprocess.Popen(args, cwd=ROOT, env=env, stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, text=True)

    def status(self) -> dict[str, Any] | None:
        try:
            code, data = http_call(self.port, "GET", "/status", timeout=2)
        except OSError:
            return None
        return data if code == 200 else None

    def wait_for(self, what: str, cond: Any, timeout: float = 60) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"runner exited {self.proc.returncode} waiting for {what}: "
                                     f"{self.proc.stderr.read()[-3000:]}")  # type: ignore[union-attr]
            st = self.status()
            if st is not None and cond(st):
                return st
            time.sleep(0.03)
        raise AssertionError(f"timed out waiting for {what}")

    def command(self, name: str) -> tuple[int, Any]:
        return http_call(self.port, "POST", f"/control/{name}", token=TOKEN, body={"operator": "ana"})

    def kill(self) -> None:
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)

    def finish(self, timeout: float = 90) -> tuple[int, str, str]:
        out, err = self.proc.communicate(timeout=timeout)
        return self.proc.returncode, out, err


def held(st: dict[str, Any]) -> dict[str, int]:
    return {p["symbol"]: p["qty"] for p in st["positions"]}


@pytest.mark.parametrize("state,presses", [(False, 1), (True, 1), (True, 2)],
                         ids=["no-state-url", "paper-state-url", "pressed-twice"])
def test_an_emergency_stop_answered_200_survives_kill_9(tmp_path: Path, state: bool, presses: int) -> None:
    first = Runner(tmp_path, state=state)
    try:
        first.wait_for("the AAA position", lambda st: held(st) == {"AAA": 1785})
        for _ in range(presses):  # the second press, already HALTED, still pages (and resumes)
            code, body = first.command("emergency_stop")
            assert code == 200 and body["durable"] is True, body
    finally:
        first.kill()  # at once: nothing else gets a chance to write the journal
    assert [r["key"] for r in journal_rows(first.journal_url, "command")] == ["emergency_stop"] * presses

    restart = Runner(tmp_path, state=state, linger=True)
    try:
        st = restart.wait_for("the end of the data",
                              lambda st: st["bars_processed"] >= len(market().sorted()))
        assert st["trading_state"] == "halted"
        assert held(st) == {} and st["open_orders"] == []
        entries = [r for r in journal_rows(restart.journal_url, "order")
                   if r["payload"].get("role") == "entry"]
        assert [e["payload"]["symbol"] for e in entries] == ["AAA"]  # BBB never entered
    finally:
        restart.proc.send_signal(signal.SIGTERM)
    code, out, err = restart.finish()
    assert code == 0, err[-3000:]
    summary = json.loads(out)
    assert summary["final_positions"] == {}
    assert [t["symbol"] for t in summary["trades"]] == ["AAA"]


@pytest.mark.parametrize("state", [False, True], ids=["no-state-url", "paper-state-url"])
def test_a_pause_answered_200_survives_kill_9(tmp_path: Path, state: bool) -> None:
    first = Runner(tmp_path, state=state)
    try:
        first.wait_for("the AAA position", lambda st: held(st) == {"AAA": 1785})
        code, body = first.command("pause")
        assert code == 200 and body["durable"] is True, body
    finally:
        first.kill()

    restart = Runner(tmp_path, state=state, linger=True)
    try:
        st = restart.wait_for("the end of the data",
                              lambda st: st["bars_processed"] >= len(market().sorted()))
        assert st["paused"] is True and st["system_state"] == "paused"
        entries = [r for r in journal_rows(restart.journal_url, "order")
                   if r["payload"].get("role") == "entry"]
        assert [e["payload"]["symbol"] for e in entries] == ["AAA"]  # paused: no BBB entry
    finally:
        restart.proc.send_signal(signal.SIGTERM)
    code, _out, err = restart.finish()
    assert code == 0, err[-3000:]


def test_a_command_the_journal_cannot_commit_is_applied_and_answered_503(tmp_path: Path) -> None:
    """Decided: a command is applied at once (an emergency stop is never held back by a slow
    database); if its journal event is not committed within ops.command_commit_timeout_s the
    answer is 503 `applied, not durable` and a CRITICAL alert pages, since a crash would lose it."""
    import sqlite3

    from tests.kit.live import ServiceThread, live_config

    cfg = live_config(ops={"command_commit_timeout_s": 0.3}, journal={"batch_size": 1000})
    m = market()
    with ServiceThread(tmp_path, cfg) as svc:
        svc.feed.push(m.until("09:32"))
        svc.on_loop(lambda: svc.service.journal.commit().result(10))  # everything so far on disk
        blocker = sqlite3.connect(tmp_path / "journal.db", timeout=1)
        blocker.execute("BEGIN EXCLUSIVE")  # another writer holds the database
        try:
            code, body = svc.post("/control/emergency_stop", body={"operator": "ana"})
            assert code == 503, body
            assert body["applied"] is True and body["durable"] is False
            assert body["trading_state"] == "halted"
            st = svc.status()
            assert st["trading_state"] == "halted" and st["positions"][0]["symbol"] == "AAA"
            assert any(a["key"] == "command_not_durable" and a["severity"] == "critical"
                       for a in st["alerts"])
        finally:
            blocker.rollback()
            blocker.close()
        code, body = svc.post("/control/pause", body={"operator": "ana"})
        assert code == 200 and body["durable"] is True  # the database is back: durable again
        assert [r["key"] for r in journal_rows(svc.journal_url, "command")] == [
            "emergency_stop", "pause_trading"]


# --- item 7: a paced run hands its journal to the writer every burst -----------------------------
def minute_of(ts_ns: int) -> str:
    from tests.kit.live import _hhmm

    return _hhmm(ts_ns)


def test_a_paced_run_killed_mid_session_loses_at_most_the_minute_in_flight(tmp_path: Path) -> None:
    run = Runner(tmp_path, state=False)
    try:
        st = run.wait_for("10:00 market time", lambda st: (st["market_time"] or "") >= "2024-03-15T14:00:00Z")
    finally:
        run.kill()
    from datetime import datetime

    shown = st["market_time"]  # the close of the last minute the runner had fully handled
    shown_ns = int(datetime.fromisoformat(shown.replace("Z", "+00:00")).timestamp()) * 1_000_000_000
    marks = [r["ts"] for r in journal_rows(run.journal_url, "equity")]
    # The equity mark of every minute the runner had handled, but for at most the one in flight
    # (a mark's ts is its bar's start: the bar shown closed at shown_ns).
    assert marks and marks[-1] >= shown_ns - 2 * 60_000_000_000, (shown, [minute_of(t) for t in marks[-3:]])
    assert [r["kind"] for r in journal_rows(run.journal_url, "order")], "the AAA entry is on disk"


def test_ready_stays_200_through_a_healthy_paced_session(tmp_path: Path) -> None:
    """The journal is beaten by its writes: with the health clock moved 40 s on (more than the
    30 s allowance) after each of several bar-minutes, /ready comes back 200 every time; before
    the fix the journal turned unhealthy (nothing handed to the writer) and stayed so."""
    from live_runner.live.health import HealthMonitor
    from tests.kit.live import ServiceThread, live_config

    class Monotonic:
        t = 1000.0

        def __call__(self) -> float:
            return self.t

    clock = Monotonic()
    health = HealthMonitor(default_allowance_s=30, monotonic=clock)
    cfg = live_config(ops={"heartbeat_allowance_s": 30}, journal={"batch_size": 1000})
    bars = market().csv(tmp_path / "bars.csv")
    with ServiceThread(tmp_path, cfg, bars=bars, speed=600, health=health) as svc:
        seen = 0
        for _ in range(4):
            deadline = time.monotonic() + 20
            while svc.status()["bars_processed"] <= seen:  # the next bar-minute went through
                assert time.monotonic() < deadline
                time.sleep(0.05)
            seen = svc.status()["bars_processed"]
            clock.t += 40
            deadline = time.monotonic() + 10
            while True:
                code, body = svc.get("/ready")
                if code == 200:
                    break
                assert time.monotonic() < deadline, body
                time.sleep(0.05)
        st = svc.status()
        assert st["journal"]["written"] > 0
        assert not any(a["key"].startswith("unhealthy:journal") for a in st["alerts"])
