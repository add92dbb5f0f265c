"""Where the project's files are: relative paths resolve against the project, wherever the
daemon, webserver or run worker was started."""

from __future__ import annotations

import os
from datetime import date
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parents[1]
# The synthetic market of day D uses seed + (D - this date): the demo session (this date, seed 7)
# is then the very file `python -m live_runner demo` replays.
SAMPLE_ANCHOR = date(2024, 11, 26)


def resolve(path: str) -> Path:
    """Relative paths are relative to the project (daemon, webserver and run workers may each
    start in another directory)."""
    p = Path(path).expanduser()
    if p.is_absolute():
        return p
    return Path(os.environ.get("TRADING_PROJECT_ROOT") or PROJECT_ROOT) / p
