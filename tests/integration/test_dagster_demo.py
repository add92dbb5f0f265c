"""`make demo` (python -m trading_pipeline.demo): the sample day through Dagster, end to end,
in a temporary project folder."""

import os
import subprocess
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]


def test_demo_runs_the_sample_day_through_dagster(tmp_path):
    env = {**os.environ, "TRADING_PROJECT_ROOT": str(tmp_path), "TRADING_SAMPLE_SYMBOLS": "24"}
    env.pop("DAGSTER_HOME", None)
    out = subprocess.run([sys.executable, "-m", "trading_pipeline.demo"], cwd=REPO_ROOT, env=env,
                         capture_output=True, text=True, timeout=180)
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-2000:]
    text = out.stdout
    for line in ("[1/3] premarket_prep 2024-11-26", "[2/3] live_session 2024-11-26",
                 "[3/3] end_of_day 2024-11-26", "bars processed", "realized P&L",
                 "replay audit: identical to the live run (P&L drift 0.00)", "make ui"):
        assert line in text, text
    report = tmp_path / "var" / "pipeline" / "reports" / "2024-11-26" / "report.html"
    assert f"daily report: {report}" in text and report.exists()
    assert (tmp_path / "var" / "dagster" / "dagster.yaml").exists()
    summary = tmp_path / "var" / "pipeline" / "backtest_summary" / "report.html"
    assert "[backtest] 2024-11-21..2024-11-26 x base, tight" in text
    assert f"summary report: {summary}" in text and summary.exists()
