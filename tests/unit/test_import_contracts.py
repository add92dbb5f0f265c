"""The architecture holds: import-linter's contracts (pyproject.toml, [tool.importlinter]) are kept.

Layers between live_runner's areas (TYPE_CHECKING imports included), no dagster in the runner
(dagster_pipes only in the bridge), broker and data SDKs only in live_runner.adapters, the
adapters on live_runner.core only, and the dashboard on the journal read API and the ops client
only.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _lint_imports() -> subprocess.CompletedProcess[str]:
    script = Path(sys.executable).parent / "lint-imports"
    env = dict(os.environ)
    # analyse this checkout's code, whichever copy of the project is installed
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH")) if p)
    return subprocess.run([str(script), "--no-cache"], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=120)


def test_import_contracts_are_kept() -> None:
    result = _lint_imports()
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 broken" in result.stdout
    # every contract was checked (a config that lost its contracts would pass vacuously)
    assert "Contracts: 6 kept" in result.stdout, result.stdout
