"""`python -m live_runner status` and `python -m live_runner control` against a real runner.

The runner is `python -m live_runner run --mode paper --speed ... --linger` in a subprocess (its ops
server on a free port, found in its "ops server on http://HOST:PORT" log line); the clients are
run as an operator would (a few as subprocesses, most through `main()` for speed: same code, same
HTTP). Exit codes: 0 accepted, 1 refused (401/404/400), 2 usage, 3 runner unreachable.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Iterator

import pytest

from live_runner.__main__ import main
from tests.kit.live import Market, WebhookReceiver, free_port, http_call, journal_rows

pytestmark = pytest.mark.timeout(60)
ROOT = Path(__file__).resolve().parents[2]
TOKEN = "cli-token-123"


class Runner:
    def __init__(self, tmp_path: Path, webhook_url: str) -> None:
        m = Market()
        m.gapper("AAA", "09:31").gapper("BBB", "09:33").gapper("CCC", "09:35")
        bars = m.csv(tmp_path / "bars.csv")
        self.log_dir = tmp_path / "logs"
        cfg = tmp_path / "cfg.yaml"
        cfg.write_text(f"active_strategies: [gap_and_go]\nlog_format: json\nlog_dir: {self.log_dir}\n"
                       "journal: {batch_size: 1}\nops: {port: 0}\n")
        self.journal = f"sqlite:///{tmp_path / 'journal.db'}"
        env = {k: v for k, v in os.environ.items() if not k.startswith("TRADING_")}
        env.update({"TRADING_CONTROL_TOKEN": TOKEN, "TRADING_ALERT_WEBHOOK_URL": webhook_url})
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "live_runner", "run", "--mode", "paper", "--config", str(cfg),
             "--bars", str(bars), "--speed", "100000", "--linger", "--journal", self.journal, "--json"],
            cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        self.stderr: list[str] = []
        self.url = ""
        found = threading.Event()

        def drain() -> None:
            assert self.proc.stderr is not None
            for line in self.proc.stderr:
                self.stderr.append(line)
                hit = re.search(r"ops server on (http://[\d.]+:\d+)", line)
                if hit:
                    self.url = hit.group(1)
                    found.set()
        threading.Thread(target=drain, daemon=True).start()
        assert found.wait(30), "".join(self.stderr)[-3000:]
        self.port = int(self.url.rsplit(":", 1)[1])
        deadline = time.monotonic() + 30
        while "data feed finished" not in http_call(self.port, "GET", "/ready")[1]["reasons"]:
            assert time.monotonic() < deadline, "the feed did not finish"
            time.sleep(0.05)

    def stop(self) -> tuple[int, str]:
        self.proc.send_signal(signal.SIGTERM)
        out, _ = self.proc.communicate(timeout=30)
        return self.proc.returncode, out


@pytest.fixture(scope="module")
def hook() -> Iterator[WebhookReceiver]:
    r = WebhookReceiver()
    yield r
    r.close()


@pytest.fixture(scope="module")
def runner(tmp_path_factory: pytest.TempPathFactory, hook: WebhookReceiver) -> Iterator[Runner]:
    r = Runner(tmp_path_factory.mktemp("runner"), hook.url)
    yield r
    if r.proc.poll() is None:
        r.proc.kill()
        r.proc.wait(10)


def cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def cli_process(*argv: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith("TRADING_")}
    return subprocess.run([sys.executable, "-m", "live_runner", *argv], cwd=ROOT, capture_output=True,
                          text=True, timeout=30, env={**base, **(env or {})})


@pytest.fixture
def token(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TRADING_CONTROL_TOKEN", TOKEN)
    monkeypatch.delenv("TRADING_OPS_URL", raising=False)


# The tests below share one runner and run in file order (each builds on the state before it).
def test_status_as_text_and_json(runner: Runner) -> None:
    proc = cli_process("status", "--url", runner.url)
    assert proc.returncode == 0, proc.stderr
    text = proc.stdout
    assert text.startswith("system running, trading active, session 2024-03-15")
    assert "positions (3):" in text and "open orders (6):" in text
    assert re.search(r"^  AAA\s+1785\s+11\.25\s+11\.30", text, re.M)
    proc = cli_process("status", "--url", runner.url, "--json")
    data = json.loads(proc.stdout)
    assert [p["symbol"] for p in data["positions"]] == ["AAA", "BBB", "CCC"]
    assert data["system_state"] == "running"


def test_control_pause_and_resume_as_a_process(runner: Runner) -> None:
    proc = cli_process("control", "pause", "--url", runner.url, "--operator", "alice",
                       env={"TRADING_CONTROL_TOKEN": TOKEN})
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "pause: accepted (system paused, trading active)"
    proc = cli_process("control", "resume", "--url", runner.url, "--operator", "alice",
                       env={"TRADING_CONTROL_TOKEN": TOKEN})
    assert proc.returncode == 0 and proc.stdout.strip() == "resume: accepted (system running, trading active)"


def test_control_refusals_are_explained(runner: Runner, capsys: pytest.CaptureFixture[str],
                                        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("TRADING_CONTROL_TOKEN", raising=False)
    code, out, err = cli(capsys, "control", "pause", "--url", runner.url)
    assert code == 1 and out == ""
    assert "pause refused by the runner (HTTP 401): missing or wrong bearer token" in err
    assert "$TRADING_CONTROL_TOKEN, which is not set" in err

    monkeypatch.setenv("TRADING_CONTROL_TOKEN", "not-the-token")
    code, _, err = cli(capsys, "control", "pause", "--url", runner.url)
    assert code == 1 and "(HTTP 401)" in err and "check $TRADING_CONTROL_TOKEN" in err

    monkeypatch.setenv("TRADING_CONTROL_TOKEN", TOKEN)
    code, _, err = cli(capsys, "control", "pause", "--url", runner.url + "/v2")  # wrong endpoint
    assert code == 1 and "(HTTP 404): no such endpoint '/v2/control/pause'" in err
    code, _, err = cli(capsys, "control", "flatten", "--symbol", "A B", "--url", runner.url)
    assert code == 1 and "(HTTP 400): bad symbol" in err
    code, _, err = cli(capsys, "control", "pause", "--symbol", "AAA", "--url", runner.url)
    assert code == 2 and "--symbol only goes with flatten" in err
    with pytest.raises(SystemExit) as exit_:
        main(["control", "liquidate", "--url", runner.url])  # not a command: argparse refuses
    assert exit_.value.code == 2
    capsys.readouterr()

    st = json.loads(cli_process("status", "--url", runner.url, "--json").stdout)
    assert st["system_state"] == "running" and st["paused"] is False  # nothing changed


def test_runner_unreachable(capsys: pytest.CaptureFixture[str], token: None) -> None:
    url = f"http://127.0.0.1:{free_port()}"
    code, _, err = cli(capsys, "status", "--url", url)
    assert code == 3 and f"error: connection refused at {url}" in err
    code, _, err = cli(capsys, "control", "emergency_stop", "--url", url)
    assert code == 3 and "connection refused" in err


def test_flatten_rebalance_and_emergency_stop(runner: Runner, capsys: pytest.CaptureFixture[str],
                                              token: None, hook: WebhookReceiver) -> None:
    code, out, _ = cli(capsys, "control", "flatten", "--symbol", "bbb", "--url", runner.url,
                       "--operator", "carol")
    assert code == 0 and out.strip() == "flatten BBB: accepted (system running, trading active)"
    code, out, _ = cli(capsys, "control", "rebalance", "--url", runner.url, "--operator", "dave", "--json")
    assert code == 0 and json.loads(out)["command"] == "rebalance_portfolio"
    code, out, _ = cli(capsys, "status", "--url", runner.url, "--json")
    st = json.loads(out)
    # BBB is closed (beyond max_positions); AAA and CCC, filled only a little above their sizing
    # estimate (within risk.rebalance_tolerance_pct), keep their stop and target.
    assert sorted((o["symbol"], o["role"]) for o in st["open_orders"]) == [
        ("AAA", "stop"), ("AAA", "target"), ("BBB", "manual"), ("CCC", "stop"), ("CCC", "target")]

    code, out, _ = cli(capsys, "control", "emergency_stop", "--url", runner.url, "--operator", "erin")
    assert code == 0 and out.strip() == "emergency_stop: accepted (system running, trading halted)"
    code, out, _ = cli(capsys, "status", "--url", runner.url)
    assert "trading halted" in out and "open orders (3):" in out
    assert re.search(r"CRITICAL trading_state:halted: .*emergency stop by http:127\.0\.0\.1:erin", out)
    assert "emergency stop by http:127.0.0.1:erin" in hook.wait_for("trading_state:halted")["text"]

    code, out, _ = cli(capsys, "control", "flatten", "--url", runner.url, "--operator", "erin")
    assert code == 0


def test_commands_journaled_and_json_logs_with_context(runner: Runner) -> None:
    code, out = runner.stop()
    assert code == 0, "".join(runner.stderr)[-3000:]
    summary = json.loads(out)
    assert summary["bars_processed"] > 0
    got = [(r["key"], r["payload"]["source"], r["payload"]["symbol"])
           for r in journal_rows(runner.journal, "command")]
    assert got == [
        ("pause_trading", "http:127.0.0.1:alice", ""),
        ("resume_trading", "http:127.0.0.1:alice", ""),
        ("flatten", "http:127.0.0.1:carol", "BBB"),
        ("rebalance_portfolio", "http:127.0.0.1:dave", ""),
        ("emergency_stop", "http:127.0.0.1:erin", ""),
        ("flatten", "http:127.0.0.1:erin", ""),
    ]
    # One JSON object per line, on stderr and in the session's log file, with the context fields.
    [log_file] = list(runner.log_dir.glob("trading_system_*.log"))
    lines = [json.loads(line) for line in log_file.read_text().splitlines()]
    assert lines and all({"ts", "level", "session", "component", "client_order_id", "run", "msg"} <= set(x)
                         for x in lines)
    assert len({x["run"] for x in lines}) == 1
    served = [x for x in lines if x["msg"].startswith("ops server on http://127.0.0.1:")]
    assert served and served[0]["component"] == "service"
    commands = [x for x in lines if x["msg"].startswith("command ")]
    assert [x["component"] for x in commands] == ["ops_server"] * 6
    assert {x["session"] for x in commands} == {"2024-03-15"}
    assert "command pause from http:127.0.0.1:alice" in commands[0]["msg"]
    halted = [x for x in lines if "trading_state:halted" in x["msg"]]
    assert halted and halted[0]["level"] == "CRITICAL" and halted[0]["component"] == "node"
    stderr_json = [json.loads(line) for line in runner.stderr if line.startswith("{")]
    assert len(stderr_json) >= len(lines) - 1
