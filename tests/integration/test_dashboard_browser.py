"""The dashboard end to end in headless Chromium (Debian's `chromium`, driven by Playwright's Python
package through its executable: no browser download). `streamlit run dashboard/app.py` serves on
127.0.0.1 beside a real runner (`run --mode paper --linger` over the sample session cut at 09:40,
holding positions): the page loads, shows the positions and P&L, a Pause clicked on the page
reaches the runner (its /status and its journal), and a screenshot is saved and is not blank.

Skipped only outside CI when Chromium is not installed (.ci/run installs it)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from live_runner.journal import iter_events, make_engine
from tests.kit import dashboard as kit

pytestmark = pytest.mark.timeout(300)
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--no-first-run"]


def _need_browser():
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


class Streamlit:
    def __init__(self, env: dict[str, str], log: Path) -> None:
        self.port = kit.free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self._log = open(log, "w")
        self.log = log
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "streamlit", "run", str(kit.APP), "--server.port", str(self.port),
             "--server.address", "127.0.0.1", "--server.headless", "true",
             "--browser.gatherUsageStats", "false", "--server.fileWatcherType", "none"],
            cwd=kit.ROOT, env={**os.environ, **env}, stdout=self._log, stderr=subprocess.STDOUT)
        end = time.monotonic() + 60
        while time.monotonic() < end:
            try:
                with urllib.request.urlopen(self.url + "/_stcore/health", timeout=2) as r:
                    if r.status == 200:
                        return
            except OSError:
                pass
            if self.proc.poll() is not None:
                break
            time.sleep(0.2)
        self.stop()
        raise RuntimeError(f"streamlit did not come up: {log.read_text()[-2000:]}")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        self._log.close()


def test_dashboard_in_chromium(tmp_path: Path) -> None:
    sync_playwright = _need_browser()
    cut = kit.bars(tmp_path / "bars", cut_et=kit.CUT_ET)
    journal = f"sqlite:///{tmp_path / 'runner.db'}"
    with kit.Runner(cut, journal, kit.config(tmp_path / "cfg.yaml"), tmp_path / "runner.log") as runner:
        status = runner.wait_until(f"{kit.DAY}T14:40:00Z")
        held = [p["symbol"] for p in status["positions"]]
        assert held, "the cut session should hold positions"
        app = Streamlit({"TRADING_RUNNER_URL": runner.url, "TRADING_JOURNAL_URL": journal,
                         "TRADING_CONTROL_TOKEN": kit.TOKEN, "TRADING_OPERATOR": "browser",
                         "TRADING_DASHBOARD_REFRESH_S": "2"}, tmp_path / "streamlit.log")
        try:
            with sync_playwright() as pw:
                browser = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=ARGS)
                try:
                    page = browser.new_page(viewport={"width": 1400, "height": 1000})
                    t0 = time.perf_counter()
                    page.goto(app.url, wait_until="domcontentloaded")
                    page.get_by_text("Runner up at").wait_for(timeout=60_000)
                    page.get_by_text(f"{len(held)} open position").wait_for(timeout=30_000)
                    load_s = time.perf_counter() - t0
                    status = runner.status()
                    line = page.get_by_test_id("stMarkdown").filter(has_text=f"{len(held)} open position").first.inner_text()
                    assert all(sym in line for sym in held), line
                    page.get_by_text("Daily P&L", exact=True).first.wait_for(timeout=20_000)
                    for value in (f"{float(status['daily_pnl']):,.2f}", f"{float(status['equity']):,.2f}"):
                        try:  # the page may be mid-refresh: wait for each, do not sample once
                            page.get_by_test_id("stMetricValue").filter(has_text=value).first.wait_for(
                                timeout=20_000)
                        except Exception:
                            raise AssertionError(f"{value!r} not on the page: {page.inner_text('body')[:3000]}")

                    page.get_by_role("button", name="Pause", exact=True).click()
                    page.get_by_text("pause: accepted by the runner").wait_for(timeout=30_000)
                    deadline = time.monotonic() + 10
                    while not runner.status()["paused"] and time.monotonic() < deadline:
                        time.sleep(0.2)
                    assert runner.status()["paused"] is True
                    page.get_by_text("PAUSED: no new entries").wait_for(timeout=30_000)

                    shot = tmp_path / "dashboard.png"
                    page.screenshot(path=str(shot), full_page=True)
                    if os.environ.get("DASHBOARD_SCREENSHOT"):
                        shutil.copy(shot, os.environ["DASHBOARD_SCREENSHOT"])
                finally:
                    browser.close()
        finally:
            app.stop()
        engine = make_engine(journal)
        try:
            cmds = [(e["key"], e["payload"]["source"]) for e in iter_events(engine, kinds=("command",))]
        finally:
            engine.dispose()
        assert cmds and cmds[-1][0] == "pause_trading" and cmds[-1][1].endswith(":browser")

    from PIL import Image, ImageStat

    img = Image.open(shot).convert("RGB")
    assert img.width >= 1000 and img.height >= 800
    stddev = ImageStat.Stat(img.convert("L")).stddev[0]
    colors = img.getcolors(maxcolors=1 << 20)
    assert stddev > 10 and (colors is None or len(colors) > 50), (stddev, len(colors or []))
    print(f"page loaded in {load_s:.2f} s; screenshot {img.size}, luminance stddev {stddev:.1f}")
