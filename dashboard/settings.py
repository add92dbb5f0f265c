"""The dashboard's configuration, from the environment only (read on every rerun).

    TRADING_RUNNER_URL        the runner's ops server (default http://127.0.0.1:8080)
    TRADING_JOURNAL_URL       SQLAlchemy URL of the journal; `{session}` in it (the pipeline's one
                              SQLite file per session, YYYYMMDD) lists the files present; a
                              PostgreSQL URL lists the pipeline's `journal_YYYYMMDD` schemas.
                              Unset: the journal the runner reports (or last reported) in /status.
    TRADING_CONTROL_TOKEN     bearer token for /control/*; unset: the controls are disabled
    TRADING_OPERATOR          name sent with each command (default: the OS user)
    TRADING_DASHBOARD_REFRESH_S   auto-refresh period of the page (default 2; 0: off)
    TRADING_PIPELINE_DIR      the pipeline's files: daily reports and stored bars (default var/pipeline)
"""

from __future__ import annotations

import getpass
import os
from dataclasses import dataclass
from pathlib import Path

from live_runner.ops.client import DEFAULT_TOKEN_ENV, DEFAULT_URL


@dataclass(frozen=True, slots=True)
class Settings:
    runner_url: str
    journal_url: str
    token: str
    operator: str
    refresh_s: float
    pipeline_dir: Path
    timeout_s: float = 3.0


def _whoami() -> str:
    try:
        return getpass.getuser()[:64] or "dashboard"
    except Exception:
        return "dashboard"


def load() -> Settings:
    env = os.environ
    try:
        refresh = max(0.0, float(env.get("TRADING_DASHBOARD_REFRESH_S", "2") or 0))
    except ValueError:
        refresh = 2.0
    return Settings(
        runner_url=(env.get("TRADING_RUNNER_URL") or DEFAULT_URL).rstrip("/"),
        journal_url=env.get("TRADING_JOURNAL_URL", "").strip(),
        token=env.get(DEFAULT_TOKEN_ENV, "").strip(),
        operator=(env.get("TRADING_OPERATOR") or _whoami())[:64],
        refresh_s=refresh,
        pipeline_dir=Path(env.get("TRADING_PIPELINE_DIR") or "var/pipeline"),
    )
