"""The trading day in the Dagster UI, as a new user meets it: `make demo`, then the webserver on
the demo's instance, then headless Chromium (Debian's `chromium`, driven by Playwright's Python
package through its executable, at 1440x900). The demo's runs are on the Overview timeline and on
the live_session job's Runs tab, and the daily report's equity chart renders on its asset page.

Skipped only outside CI when Chromium or Playwright is not installed (.ci/run installs them)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

import pytest

from tests.kit.browser import ARGS, CHROMIUM, need_browser
from tests.kit.dagster_env import REPO_ROOT, DagsterProcess, process_env, wait_for

pytestmark = [pytest.mark.slow, pytest.mark.timeout(420)]
DAY = "2024-11-26"


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _answers(url: str) -> bool:
    import urllib.request

    try:
        with urllib.request.urlopen(url, timeout=5) as resp:
            return resp.status == 200
    except OSError:
        return False


def _dismiss_welcome(page) -> None:
    """The UI's one-time "Join the Dagster community" dialog covers the page: skip it."""
    skip = page.get_by_role("button", name="Skip")
    try:
        skip.wait_for(timeout=5_000)
    except Exception:
        return
    skip.click()


@pytest.fixture(scope="module")
def demo_site(tmp_path_factory):
    """`python -m trading_pipeline.demo` in a temporary project, its instance's run ids."""
    tmp = tmp_path_factory.mktemp("ui")
    env = process_env({"TRADING_PROJECT_ROOT": str(tmp), "TRADING_SAMPLE_SYMBOLS": "24"})
    env.pop("DAGSTER_HOME", None)
    out = subprocess.run([sys.executable, "-m", "trading_pipeline.demo"], cwd=REPO_ROOT, env=env,
                         capture_output=True, text=True, timeout=240)
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-2000:]
    env["DAGSTER_HOME"] = str(tmp / "var" / "dagster")
    return tmp, env


def test_demo_runs_are_runs_of_the_workspace_jobs(demo_site):
    """Remote origin of the workspace's location, the job's current snapshot (no "different
    version" on re-execute), the partition tag: what the UI's job views select runs by."""
    tmp, env = demo_site
    code = (
        "import dagster as dg\n"
        "from trading_pipeline.definitions import defs\n"
        "for r in dg.DagsterInstance.get().get_runs():\n"
        "    o = r.remote_job_origin\n"
        "    same = r.job_snapshot_id == defs.resolve_job_def(r.job_name).get_job_snapshot_id()\n"
        "    print(r.job_name, r.status.value, o.location_name, o.repository_origin.repository_name,\n"
        "          same, r.tags.get('dagster/partition'))\n")
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO_ROOT, env=env, capture_output=True,
                         text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    rows = sorted(line.split() for line in out.stdout.splitlines())
    assert [r[0] for r in rows] == ["backtest", "backtest", "backtest_report", "end_of_day",
                                    "live_session", "premarket_prep"]
    for job, status, location, repo, same_snapshot, partition in rows:
        # The day's jobs carry the day's partition; the backtests a partition range (batched).
        day_job = job in ("end_of_day", "live_session", "premarket_prep")
        assert (status, location, repo, same_snapshot, partition) == (
            "SUCCESS", "trading_pipeline", "__repository__", "True", DAY if day_job else "None"), job


def test_the_day_in_the_dagster_ui(demo_site):
    sync_playwright = need_browser()
    tmp, env = demo_site
    port = _free_port()
    base = f"http://127.0.0.1:{port}"
    with DagsterProcess(["-w", "workspace.yaml", "-h", "127.0.0.1", "-p", str(port)], env,
                        tmp / "webserver.log", program="dagster-webserver") as web:
        wait_for(lambda: _answers(f"{base}/server_info"), 120, "the webserver to answer")
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=ARGS)
            try:
                page = browser.new_page(viewport={"width": 1440, "height": 900})
                try:
                    # Overview > Timeline: a row per job with the demo's runs on it
                    page.goto(f"{base}/overview/activity/timeline", wait_until="domcontentloaded")
                    for job in ("premarket_prep", "live_session", "end_of_day"):
                        page.get_by_text(job, exact=True).first.wait_for(timeout=90_000)
                    body = page.inner_text("body")
                    assert "No runs or scheduled ticks in this time period" not in body, body[:3000]

                    # Jobs > live_session > Runs lists the demo's run
                    page.goto(f"{base}/locations/trading_pipeline/jobs/live_session/runs",
                              wait_until="domcontentloaded")
                    page.get_by_text(DAY).first.wait_for(timeout=60_000)
                    body = page.inner_text("body")
                    assert "You have not launched any runs for this job" not in body, body[:3000]

                    # Assets > daily_report: the equity chart (an image) behind its metadata row
                    page.goto(f"{base}/assets/daily_report?partition={DAY}", wait_until="domcontentloaded")
                    row = page.locator("tr", has_text="equity_curve").first
                    row.wait_for(timeout=90_000)
                    _dismiss_welcome(page)
                    row.get_by_text("Show Markdown").click()
                    chart = page.locator("img[src^='data:image/png;base64']").first
                    chart.wait_for(timeout=90_000)
                    chart.scroll_into_view_if_needed()
                    width = chart.evaluate("img => img.complete ? img.naturalWidth : 0")
                    assert width >= 400, width  # decoded: the PNG renders
                    page.screenshot(path=str(tmp / "daily_report.png"))
                    if os.environ.get("DAGSTER_UI_SCREENSHOT"):
                        shutil.copy(tmp / "daily_report.png", os.environ["DAGSTER_UI_SCREENSHOT"])
                except Exception as exc:
                    page.screenshot(path=str(tmp / "failure.png"), full_page=True)
                    raise AssertionError(f"UI check failed: {exc} (screenshot {tmp / 'failure.png'}); "
                                         f"webserver log: {web.output()[-2000:]}") from exc
            finally:
                browser.close()
