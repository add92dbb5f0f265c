"""Prometheus side of the deployment, checked with the real tools (Debian package `prometheus`):

- `promtool check config` on the compose and Kubernetes configs, `promtool check rules` and
  `promtool test rules` (market-hours clock, every alert) on the rule files;
- every metric the Grafana dashboards and the alert rules name is exported by a real runner's
  /metrics (`python -m live_runner run --mode paper` on a generated sample session);
- a real Prometheus on 127.0.0.1 scrapes that runner and answers a query for
  trading_account_equity_dollars through its HTTP API, and evaluates the rules (the market-hours
  clock agrees with Python's zoneinfo and the exchange calendar).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.parse
import urllib.request
from datetime import date, datetime, timezone
from pathlib import Path
from typing import Iterator

import pytest
import yaml

from live_runner.data import sample_data
from tests.kit.metrics import Scrape

pytestmark = pytest.mark.timeout(120)

ROOT = Path(__file__).resolve().parents[2]
PROM = ROOT / "deploy" / "prometheus"
RULES = sorted((PROM / "rules").glob("*.yml"))
DASHBOARDS = sorted((ROOT / "deploy" / "grafana" / "dashboards").glob("*.json"))


def _exe(name: str) -> str:
    exe = shutil.which(name)
    if exe is None:
        if os.environ.get("CI") == "true":
            pytest.fail(f"{name} is required in CI (Debian package 'prometheus'; .ci/run installs it)")
        pytest.skip(f"{name} not installed (apt-get install prometheus)")
    return exe


def _promtool(*args: str, timeout: float = 60) -> str:
    proc = subprocess.run([_exe("promtool"), *args], capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc.stdout


def test_promtool_checks_the_compose_config_and_rules() -> None:
    out = _promtool("check", "config", str(PROM / "prometheus.yml"))
    assert f"{len(RULES)} rule files found" in out
    _promtool("check", "rules", *map(str, RULES))


def test_promtool_checks_the_kubernetes_config(tmp_path: Path) -> None:
    """Debian's Prometheus is built without Kubernetes service discovery, so the pod discovery is
    swapped for a static target; everything else of the file is checked as is."""
    cfg = yaml.safe_load((PROM / "prometheus-k8s.yml").read_text())
    for job in cfg["scrape_configs"]:
        if job.pop("kubernetes_sd_configs", None) is not None:
            job["static_configs"] = [{"targets": ["live-session:8080"]}]
    path = tmp_path / "prometheus.yml"
    path.write_text(yaml.safe_dump(cfg))
    _promtool("check", "config", str(path))


def test_promtool_unit_tests_of_the_rules() -> None:
    out = _promtool("test", "rules", str(PROM / "tests" / "trading.rules.test.yml"), timeout=90)
    assert "SUCCESS" in out


def test_alert_rules_cover_the_issue() -> None:
    names = {r["alert"] for f in RULES for g in yaml.safe_load(f.read_text())["groups"]
             for r in g["rules"] if "alert" in r}
    assert {"TradingRunnerDown", "TradingRunnerNotReady", "TradingFeedStale", "TradingDailyLossLimitReached",
            "TradingErrorRateHigh", "TradingReconciliationMismatch", "TradingLiveSessionNotRunning",
            "TradingHalted"} <= names


def test_halted_is_an_alert_and_a_grafana_annotation() -> None:
    """HALTED (emergency stop or reconciliation halt) pages, and marks the dashboard's graphs."""
    [rule] = [r for f in RULES for g in yaml.safe_load(f.read_text())["groups"] for r in g["rules"]
              if r.get("alert") == "TradingHalted"]
    assert rule["labels"]["severity"] == "critical" and "market_open" not in rule["expr"]
    annotations = [a for p in DASHBOARDS for a in json.loads(p.read_text())["annotations"]["list"]]
    [halted] = [a for a in annotations if "halted" in a.get("expr", "")]
    assert halted["enable"] and halted["expr"] == rule["expr"].strip()
    assert halted["datasource"] == {"type": "prometheus", "uid": "prometheus"}


# ---- a real runner ----------------------------------------------------------------------------------

class RunnerProc:
    def __init__(self, proc: subprocess.Popen, host: str, port: int, lines: list[str]) -> None:
        self.proc, self.host, self.port, self.lines = proc, host, port, lines

    def metrics(self) -> str:
        with urllib.request.urlopen(f"http://{self.host}:{self.port}/metrics", timeout=10) as resp:
            return resp.read().decode()


@pytest.fixture(scope="module")
def runner(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunnerProc]:
    tmp = tmp_path_factory.mktemp("deploy_runner")
    bars = sample_data.write(sample_data.generate(date(2024, 11, 26), sessions=1, symbols=10, seed=3), tmp, "csv")
    cfg = tmp / "config.yaml"
    cfg.write_text("ops: {port: 0}\nlog_dir: null\n")
    proc = subprocess.Popen(
        [sys.executable, "-m", "live_runner", "run", "--mode", "paper", "--config", str(cfg),
         "--bars", str(bars), "--speed", "100000", "--linger", "--journal", f"sqlite:///{tmp / 'j.db'}"],
        cwd=tmp, env={**os.environ, "TRADING_CONTROL_TOKEN": "deploy-test", "PYTHONPATH": str(ROOT)},
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    lines: list[str] = []
    found: list[tuple[str, int]] = []
    bound = threading.Event()

    def read() -> None:
        assert proc.stderr is not None
        for line in proc.stderr:
            lines.append(line)
            if not found and (m := re.search(r"ops server on http://([\d.]+):(\d+)", line)):
                found.append((m.group(1), int(m.group(2))))
                bound.set()

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    try:
        if not bound.wait(60):
            raise AssertionError("the runner did not log its ops port:\n" + "".join(lines[-30:]))
        yield RunnerProc(proc, found[0][0], found[0][1], lines)
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        reader.join(5)


METRIC = re.compile(r"\b(trading_[a-z0-9_]+)\b")
SUFFIXES = ("_bucket", "_count", "_sum")


def _named_metrics() -> dict[str, set[str]]:
    named: dict[str, set[str]] = {}
    for path in DASHBOARDS:
        dash = json.loads(path.read_text())
        for panel in dash["panels"]:
            for t in panel["targets"]:
                named.setdefault(path.name, set()).update(METRIC.findall(t["expr"]))
        for a in dash.get("annotations", {}).get("list", []):
            named.setdefault(path.name, set()).update(METRIC.findall(a.get("expr", "")))
    for path in RULES:
        for g in yaml.safe_load(path.read_text())["groups"]:
            for r in g["rules"]:
                named.setdefault(path.name, set()).update(METRIC.findall(r["expr"]))
    return named


def test_every_metric_in_dashboards_and_rules_is_exported(runner: RunnerProc) -> None:
    scrape = Scrape(runner.metrics())
    # Declared families count even before their first sample (e.g. no trade yet): a counter
    # family `x` is queried as `x_total`, a histogram's as `x_bucket/_count/_sum`.
    exported = set(scrape.samples) | set(scrape.types)
    for name, kind in scrape.types.items():
        if kind == "counter":
            exported.add(name + "_total")
        if kind == "histogram":
            exported.update(name + s for s in SUFFIXES)
    named = _named_metrics()
    assert named["trading.rules.yml"] and all(named[p.name] for p in DASHBOARDS)
    for source, metrics in named.items():
        # Recording rules (trading:...) are not metrics; the regexp never matches their colon names.
        missing = {m for m in metrics if m not in exported}
        assert not missing, f"{source} names metrics the runner does not export: {sorted(missing)}"
    # Label values the rules select on exist too.
    assert "DAILY_LOSS_LIMIT" in scrape.by("trading_risk_denials_total", "reason")
    states = scrape.by("trading_trading_state", "state")
    assert {"reducing", "halted"} <= set(states)


# ---- a real Prometheus ---------------------------------------------------------------------------------

def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _query(base: str, expr: str) -> list[dict]:
    url = f"{base}/api/v1/query?" + urllib.parse.urlencode({"query": expr})
    with urllib.request.urlopen(url, timeout=5) as resp:
        body = json.loads(resp.read())
    assert body["status"] == "success", body
    return body["data"]["result"]


def test_real_prometheus_scrapes_the_runner(runner: RunnerProc, tmp_path: Path) -> None:
    exe = _exe("prometheus")
    port = _free_port()
    rules_dir = tmp_path / "rules"
    rules_dir.mkdir()
    for r in RULES:
        shutil.copy(r, rules_dir / r.name)
    cfg = {"global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
           "rule_files": [str(rules_dir / "*.yml")],
           "scrape_configs": [
               {"job_name": "trading-runner", "scrape_interval": "1s", "scrape_timeout": "1s",
                "static_configs": [{"targets": [f"{runner.host}:{runner.port}"]}]},
               {"job_name": "prometheus", "static_configs": [{"targets": [f"127.0.0.1:{port}"]}]}]}
    # The rule groups use their own intervals (30s/1m): evaluate every second here.
    for r in rules_dir.glob("*.yml"):
        doc = yaml.safe_load(r.read_text())
        for g in doc["groups"]:
            g["interval"] = "1s"
        r.write_text(yaml.safe_dump(doc))
    (tmp_path / "prometheus.yml").write_text(yaml.safe_dump(cfg))
    log = (tmp_path / "prometheus.log").open("w")
    proc = subprocess.Popen([exe, f"--config.file={tmp_path / 'prometheus.yml'}",
                             f"--storage.tsdb.path={tmp_path / 'data'}",
                             f"--web.listen-address=127.0.0.1:{port}"],
                            stdout=log, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 45
        result: list[dict] = []
        while time.monotonic() < deadline:
            assert proc.poll() is None, (tmp_path / "prometheus.log").read_text()[-2000:]
            try:
                result = _query(base, "trading_account_equity_dollars")
                clock = _query(base, "trading:et_minute_of_day")
                if result and clock:
                    break
            except OSError:
                pass
            time.sleep(0.5)
        assert result, "no trading_account_equity_dollars sample:\n" + (tmp_path / "prometheus.log").read_text()[-2000:]
        (sample,) = result
        assert sample["metric"]["job"] == "trading-runner"
        assert sample["metric"]["instance"] == f"{runner.host}:{runner.port}"
        scraped = Scrape(runner.metrics())("trading_account_equity_dollars")
        assert float(sample["value"][1]) == pytest.approx(scraped, abs=0.01)
        assert _query(base, 'up{job="trading-runner"} == 1')
        # The rules' New York clock agrees with zoneinfo (DST included) and the calendar.
        from zoneinfo import ZoneInfo

        minute = float(clock[0]["value"][1])
        at = datetime.fromtimestamp(float(clock[0]["value"][0]), timezone.utc).astimezone(ZoneInfo("America/New_York"))
        expected = at.hour * 60 + at.minute
        assert minute in {expected, (expected - 1) % 1440}, (minute, at)
        open_now = _query(base, "trading:market_open")
        if open_now:
            import exchange_calendars as xc

            cal = xc.get_calendar("XNYS")
            ts = float(open_now[0]["value"][0])
            import pandas as pd

            is_open = bool(cal.is_open_on_minute(pd.Timestamp(ts, unit="s", tz="UTC").floor("min")))
            assert float(open_now[0]["value"][1]) == float(is_open)
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()
