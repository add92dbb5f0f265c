"""Helpers for the Dagster tests: an isolated pipeline environment and real Dagster processes.

`pipeline_env` points every resource at a temporary folder (market files, stored outputs,
journals) and keeps the synthetic market small. `DagsterProcess` starts a Dagster CLI program
(daemon, webserver) in its own process group and kills the whole group on exit, so nothing it
spawned (code servers, run workers, runners) outlives the test.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
SAMPLE_DAY = "2024-11-26"


def pipeline_env(tmp: Path, symbols: int = 24, **extra: str) -> dict[str, str]:
    """Environment variables that isolate the code location under `tmp`."""
    env = {
        "TRADING_MARKET_DATA_DIR": str(tmp / "market"),
        "TRADING_PIPELINE_DIR": str(tmp / "pipeline"),
        "TRADING_SAMPLE_SYMBOLS": str(symbols),
        "TRADING_RUNNER_OPS_PORT": "0",
        "TRADING_RUNNER_TERMINATION_TIMEOUT": "30",
    }
    env.update(extra)
    return env


def dagster_home(tmp: Path, config: str = "dagster.local.yaml") -> Path:
    home = tmp / "dagster_home"
    home.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(REPO_ROOT / config, home / "dagster.yaml")
    return home


def process_env(extra: dict[str, str]) -> dict[str, str]:
    env = {**os.environ, **extra}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO_ROOT), env.get("PYTHONPATH")]))
    env.pop("DAGSTER_PIPES_CONTEXT", None)
    return env


def dagster_cli(args: list[str], env: dict[str, str], timeout: float = 120,
                program: str = "dagster") -> subprocess.CompletedProcess:
    return subprocess.run([str(BIN / program), *args], cwd=REPO_ROOT, env=env, text=True,
                          capture_output=True, timeout=timeout)


class DagsterProcess:
    """A long-running Dagster program, killed with its whole process group on exit."""

    def __init__(self, args: list[str], env: dict[str, str], log: Path, program: str) -> None:
        self.log = log
        self._out = open(log, "wb")
        self.proc = subprocess.Popen([str(BIN / program), *args], cwd=REPO_ROOT, env=env,
                                     stdout=self._out, stderr=subprocess.STDOUT,
                                     start_new_session=True)

    def __enter__(self) -> "DagsterProcess":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    def stop(self) -> None:
        if self.proc.poll() is None:
            for sig, wait in ((signal.SIGTERM, 10), (signal.SIGKILL, 10)):
                try:
                    os.killpg(self.proc.pid, sig)
                except ProcessLookupError:
                    break
                try:
                    self.proc.wait(wait)
                    break
                except subprocess.TimeoutExpired:
                    continue
        try:  # stragglers that left the group's leader behind
            os.killpg(self.proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self._out.close()

    def output(self) -> str:
        return self.log.read_text(errors="replace")


def wait_for(predicate: Callable[[], Any], timeout: float, what: str, interval: float = 0.5) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")


def processes_matching(*needles: str) -> list[int]:
    """PIDs whose command line contains every needle (read from /proc)."""
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmd = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if all(n in cmd for n in needles):
            pids.append(int(entry.name))
    return pids


def describe(pids: list[int]) -> list[str]:
    """pid: command line, for messages."""
    out = []
    for pid in pids:
        try:
            cmd = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            cmd = "(gone)"
        out.append(f"{pid}: {cmd[:300]}")
    return out


def isolated_resources(tmp: Path, symbols: int = 24, **overrides: object) -> dict[str, object]:
    """The code location's resources, isolated under `tmp` (in-process tests)."""
    import dagster as dg

    from trading_pipeline.backtest_params import BacktestResource
    from trading_pipeline.history_sources import HistoryResource
    from trading_pipeline.relaunch import RelaunchPolicyResource
    from trading_pipeline.resources import (
        AlertsResource, MarketClockResource, MarketDataResource, RunnerResource, TradingStoreResource,
    )

    resources: dict[str, object] = {
        "market_data": MarketDataResource(bars_dir=str(tmp / "market"), sample_symbols=symbols),
        "runner": RunnerResource(ops_port=0),
        "store": TradingStoreResource(data_dir=str(tmp / "pipeline")),
        "alerts": AlertsResource(),
        "market_clock": MarketClockResource(),
        "relaunch_policy": RelaunchPolicyResource(),
        "pipes_subprocess_client": dg.PipesSubprocessClient(termination_timeout_seconds=30),
        "history": HistoryResource(cache_dir=str(tmp / "history")),
        "backtest": BacktestResource(),
    }
    resources.update(overrides)
    return resources
