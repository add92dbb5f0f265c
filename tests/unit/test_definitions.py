"""The Dagster code location loads, in-process and through the dagster CLI."""

import os
import subprocess
import sys
from pathlib import Path

import dagster as dg

REPO_ROOT = Path(__file__).resolve().parents[2]


def test_defs_is_a_definitions_object():
    from trading_pipeline.definitions import defs

    assert isinstance(defs, dg.Definitions)


def test_dagster_cli_validates_the_code_location(tmp_path):
    dagster_home = tmp_path / "dagster_home"
    dagster_home.mkdir()
    (dagster_home / "dagster.yaml").write_text("")
    env = {**os.environ, "DAGSTER_HOME": str(dagster_home)}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO_ROOT), env.get("PYTHONPATH")]))
    dagster_cli = Path(sys.executable).parent / "dagster"  # the venv running the tests

    result = subprocess.run(
        [str(dagster_cli), "definitions", "validate", "-m", "trading_pipeline.definitions"],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
    )

    assert result.returncode == 0, f"stdout:\n{result.stdout}\nstderr:\n{result.stderr}"
