"""live_runner stays free of Dagster: the Pipes bridge is a no-op outside Dagster, and nothing
named dagster is imported by the runner's CLI."""

import os
import subprocess
import sys
from pathlib import Path

from live_runner.ops import pipes_bridge

REPO_ROOT = Path(__file__).resolve().parents[2]


def test_attach_outside_dagster_is_a_no_op(monkeypatch):
    monkeypatch.delenv("DAGSTER_PIPES_CONTEXT", raising=False)
    bridge = pipes_bridge.attach()
    assert isinstance(bridge, pipes_bridge.NoBridge) and not bridge.active
    bridge.report({"realized_pnl": "1.00"})
    bridge.close()


def test_runner_replay_imports_no_dagster_module(tmp_path):
    from live_runner.data import sample_data

    bars = sample_data.write(sample_data.generate(sample_data.date(2024, 11, 26), 1, 6, 3), tmp_path)
    code = ("import sys, runpy; sys.argv = ['live_runner', 'replay', '--bars', sys.argv[1], "
            "'--journal', 'sqlite://', '--json']\n"
            "try:\n    runpy.run_module('live_runner', run_name='__main__')\n"
            "except SystemExit as e:\n    assert e.code == 0, e.code\n"
            "bad = sorted(m for m in sys.modules if m.split('.')[0] in ('dagster', 'dagster_pipes'))\n"
            "assert not bad, bad\n")
    env = {k: v for k, v in os.environ.items() if k != "DAGSTER_PIPES_CONTEXT"}
    out = subprocess.run([sys.executable, "-c", code, str(bars)], cwd=REPO_ROOT, env=env,
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    assert '"realized_pnl"' in out.stdout

