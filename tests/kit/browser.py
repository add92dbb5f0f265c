"""Headless Debian Chromium driven by playwright-core, for the end-to-end page tests.

Outside CI a missing browser skips the test (with the command that installs it); in CI
(`CI=true`, where .ci/run installs it) it fails, so a missing browser is never a green run."""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

import pytest

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
# Without the background-networking flags Chromium keeps calling out of this closed network.
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--no-first-run"]


def need_browser() -> Any:
    """playwright's `sync_playwright`, once Chromium and playwright are known to be there."""
    if not Path(CHROMIUM).exists():
        if os.environ.get("CI") == "true":
            pytest.fail("chromium is required in CI (apt-get install chromium chromium-driver)", pytrace=False)
        pytest.skip("chromium not installed (apt-get install -y chromium chromium-driver); runs in CI")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        if os.environ.get("CI") == "true":
            raise
        pytest.skip("playwright (pip) not installed")
    return sync_playwright
