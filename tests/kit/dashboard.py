"""Real inputs for the dashboard's tests: a sample session's bars, a journal written by a real
`python -m live_runner replay`, and a real runner (`run --mode paper --linger`) as a subprocess
serving /status and /control on a free port of 127.0.0.1."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from datetime import date
from pathlib import Path
from typing import Any

import pandas as pd

from live_runner.data import sample_data
from live_runner.ops.client import Unreachable, call

ROOT = Path(__file__).resolve().parents[2]
APP = ROOT / "dashboard" / "app.py"
DAY = "2024-11-26"
TOKEN = "dash-s3cret"
# At 09:40 ET the sample session (40 symbols, seed 7) holds three positions with stops and targets.
CUT_ET = "09:40"


def bars(out_dir: Path, symbols: int = 40, seed: int = 7, cut_et: str | None = None) -> Path:
    """The sample session of DAY (and its previous day); with `cut_et`, only the bars before it."""
    df = sample_data.generate(date.fromisoformat(DAY), 1, symbols, seed)
    if cut_et:
        et = pd.to_datetime(df["timestamp"], utc=True).dt.tz_convert("America/New_York")
        attrs = dict(df.attrs)
        df = df[et < pd.Timestamp(f"{DAY} {cut_et}", tz="America/New_York")].reset_index(drop=True)
        df.attrs.update(attrs)
    return sample_data.write(df, out_dir)


def config(path: Path, batch_size: int = 1, port: int = 0) -> Path:
    """A runner config; `port` fixes the ops server's (a runner restarted on it is found again)."""
    path.write_text(f"log_dir: null\nops: {{port: {port}}}\njournal: {{batch_size: {batch_size}}}\n")
    return path


def replay(bars_file: Path, journal_url: str, cfg: Path) -> dict[str, Any]:
    """`python -m live_runner replay --json`: the summary it prints."""
    out = subprocess.run([sys.executable, "-m", "live_runner", "replay", "--bars", str(bars_file),
                          "--journal", journal_url, "--config", str(cfg), "--json"],
                         cwd=ROOT, capture_output=True, text=True, timeout=240, check=True)
    return json.loads(out.stdout)


class Runner:
    """`python -m live_runner run --mode paper --linger` on a bars file; stopped with SIGTERM."""

    def __init__(self, bars_file: Path, journal_url: str, cfg: Path, log: Path, speed: float = 100000,
                 token: str = TOKEN) -> None:
        env = {**os.environ, "TRADING_CONTROL_TOKEN": token}
        self.log = log
        self._err = open(log, "w")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "live_runner", "run", "--mode", "paper", "--bars", str(bars_file),
             "--speed", str(speed), "--linger", "--journal", journal_url, "--config", str(cfg)],
            cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=self._err)
        self.journal_url = journal_url
        self.url = self._wait_url()

    def _wait_url(self, timeout_s: float = 60) -> str:
        end = time.monotonic() + timeout_s
        while time.monotonic() < end:
            m = re.search(r"ops server on (http://[0-9.]+:\d+)", self.log.read_text())
            if m:
                return m.group(1)
            if self.proc.poll() is not None:
                raise RuntimeError(f"runner exited {self.proc.returncode}: {self.log.read_text()[-2000:]}")
            time.sleep(0.1)
        raise RuntimeError(f"no ops server line within {timeout_s} s: {self.log.read_text()[-2000:]}")

    def status(self) -> dict[str, Any]:
        code, data = call(self.url, "GET", "/status", timeout_s=5)
        assert code == 200, data
        return data

    def wait_until(self, market_time: str, timeout_s: float = 90) -> dict[str, Any]:
        """Until the runner's market time reaches `market_time` (ISO UTC) and the journal is quiet."""
        end = time.monotonic() + timeout_s
        while time.monotonic() < end:
            try:
                st = self.status()
            except Unreachable:
                st = {}
            if (st.get("market_time") or "") >= market_time and not (st.get("journal") or {}).get("pending"):
                return st
            time.sleep(0.2)
        raise TimeoutError(f"runner did not reach {market_time}: {self.log.read_text()[-2000:]}")

    def stop(self) -> None:
        """SIGTERM: the runner flushes its journal and exits, leaving the session open."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        self._err.close()

    def __enter__(self) -> "Runner":
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


FIGURES = ("equity", "cash", "daily_pnl", "realized_pnl", "unrealized_pnl", "commissions")


def money(x: object, signed: bool = False) -> str:
    """As the page writes money: two decimals, thousands separators, sign on P&L."""
    from decimal import ROUND_HALF_UP, Decimal

    d = Decimal(repr(x) if isinstance(x, float) else str(x)).quantize(Decimal("0.01"), ROUND_HALF_UP)
    return f"{abs(d) if d == 0 else d:{'+' if signed else ''},.2f}"


def page_figures(status: dict[str, Any]) -> dict[str, str]:
    """The Account figures the page must show for this /status (label -> text)."""
    labels = {"equity": "Equity", "cash": "Cash", "daily_pnl": "Daily P&L", "realized_pnl": "Realized",
              "unrealized_pnl": "Unrealized", "commissions": "Commissions (in Realized)"}
    signed = {"daily_pnl", "realized_pnl", "unrealized_pnl"}
    return {labels[k]: money(status[k], k in signed) for k in FIGURES}


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
