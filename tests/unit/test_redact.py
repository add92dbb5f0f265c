"""Journal URLs as they may be shown, and where the runner takes its journal URL from."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from live_runner.ops.redact import has_password, redact_url, scrub

ROOT = Path(__file__).resolve().parents[2]


def test_passwords_are_masked_and_nothing_else_changes() -> None:
    url = "postgresql+psycopg2://trader:s3cr%40t@db.internal:5432/trading?options=-csearch_path%3Djournal_20241126"
    assert redact_url(url) == ("postgresql+psycopg2://trader:***@db.internal:5432/trading"
                               "?options=-csearch_path%3Djournal_20241126")
    assert has_password(url) and not has_password("postgresql://trader@db/trading")
    for plain in ("sqlite:///var/journal.db", "postgresql://trader@db/trading", ""):
        assert redact_url(plain) == plain
    # A raw '@' in a password (unencoded): everything up to the host's '@' is masked.
    assert redact_url("postgresql://u:p@ss@h/db") == "postgresql://u:***@h/db"


def test_scrub_masks_urls_inside_text() -> None:
    text = "could not read postgresql://u:hunter2@h:5432/db (and https://a:b@hook.example/x)"
    assert scrub(text) == "could not read postgresql://u:***@h:5432/db (and https://a:***@hook.example/x)"
    assert "hunter2" not in scrub(text)


def test_the_runner_refuses_the_pipelines_session_template(tmp_path: Path) -> None:
    """TRADING_JOURNAL_URL with {session} is the pipeline's template, not one session's journal."""
    env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT),
           "TRADING_JOURNAL_URL": f"sqlite:///{tmp_path}/journal_{{session}}.db"}
    out = subprocess.run([sys.executable, "-m", "live_runner", "replay", "--bars", str(tmp_path / "none.parquet")],
                         cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 2 and "{session}" in out.stderr and "TRADING_JOURNAL_URL" in out.stderr
    assert not list(tmp_path.iterdir())  # no journal was created
