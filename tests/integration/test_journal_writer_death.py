"""The live service's journal writer is a process (journal.writer: process). If it dies while idle
(the OOM killer, an operator's kill), nothing is lost yet, but nothing appended afterwards could
be written: the journal must say so at once (the service then alerts CRITICAL and reduces), and
the next hand-off must fail loudly instead of shipping events into a dead pipe. Before, a writer
killed while idle went unnoticed until 64 batches of unwritable events had piled up."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import pytest

from live_runner.persistence.journal import Journal, iter_events


def _until(predicate, what: str, timeout_s: float = 30.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.01)


def test_a_writer_killed_while_idle_makes_the_journal_unhealthy_and_the_next_hand_off_fail(tmp_path: Path) -> None:
    journal = Journal(f"sqlite:///{tmp_path / 'j.db'}", batch_size=10, writer="process")
    for i in range(25):
        journal.append("2024-03-15", i, "mark", str(i), {"i": i})
    assert journal.flush(30) and journal.health() is None

    os.kill(journal._proc.proc.pid, signal.SIGKILL)  # idle: everything appended is written
    _until(lambda: journal.health() is not None, "the journal to notice its writer died")
    assert "writer gave up: writer process ended (exit code -9)" in journal.health()

    with pytest.raises(RuntimeError, match="journal writer failed: writer process ended"):
        for i in range(25, 60):  # the first full batch is handed off, and refused
            journal.append("2024-03-15", i, "mark", str(i), {"i": i})
    with pytest.raises(RuntimeError, match="journal writer failed"):
        journal.close(5)
    assert [e["key"] for e in iter_events(journal.engine)] == [str(i) for i in range(25)]  # nothing lost


def test_a_closed_journal_is_not_a_dead_writer(tmp_path: Path) -> None:
    journal = Journal(f"sqlite:///{tmp_path / 'j.db'}", batch_size=10, writer="process")
    for i in range(5):
        journal.append("2024-03-15", i, "mark", str(i), {"i": i})
    journal.close(30)  # the writer stops because it was asked to: no error
    assert journal._proc.error is None
    assert len(list(iter_events(journal.engine))) == 5


def test_the_live_service_stops_in_error_with_a_critical_alert_when_its_writer_dies(tmp_path: Path) -> None:
    """Through the live service (whose default writer is the process): the next event it journals
    after the writer's death (the state change the watchdog makes, a mark, a bar's orders)
    cannot be handed off, so the run ends in error, alerted CRITICAL (RunnerError: the CLI exits
    non-zero and Dagster relaunches it; the restart rebuilds from what was written). Fail closed:
    it never goes on trading with a journal that cannot write."""
    from live_runner.live.errors import RunnerError
    from tests.kit.live import Market, ServiceThread, live_config

    m = Market()
    m.gapper("AAA", "09:31")
    svc = ServiceThread(tmp_path, live_config(journal={"batch_size": 1}))
    assert svc.service.journal.writer == "process"
    with svc:
        svc.feed.push(m.until("09:30"))
        _until(lambda: svc.status()["trading_state"] == "active", "ACTIVE")
        _until(lambda: svc.on_loop(lambda: svc.service.journal.pending) == 0, "the journal idle")
        os.kill(svc.service.journal._proc.proc.pid, signal.SIGKILL)
        svc.feed.push(m.until("09:35", after="09:30"))
        svc.wait_done()
    assert isinstance(svc.error, RunnerError)
    assert "journal writer failed: writer process ended (exit code -9)" in str(svc.error)
    critical = [a.key for a in svc.node.alerts.recent if a.severity.value == "critical"]
    assert "runner_error" in critical, critical
