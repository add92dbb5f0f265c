"""Who may connect to whom in the `trading` namespace, from the NetworkPolicies of k8s/manifests
evaluated (tests/kit/netpol.py) over the pods that will run there: the manifests' Deployments,
run pods as dagster-k8s renders them (the live session's from its job tag), the Dagster chart's
pods with the labels its templates give them, an external Postgres, Grafana, a stray pod and a
pod of another namespace. Then the Services the dashboard and Grafana use, and Prometheus's RBAC.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlparse

import pytest
import yaml

from tests.kit import k8s
from tests.kit.netpol import Pod, allowed, selector_matches, who_may_reach

NS = "trading"
# Pod labels of the Dagster chart (helm/dagster templates: dagster.selectorLabels + component).
CHART_PODS = {
    "webserver": ({"app.kubernetes.io/name": "dagster", "app.kubernetes.io/instance": "dagster",
                   "component": "dagster-webserver"}, {"http": 80}),
    "daemon": ({"app.kubernetes.io/name": "dagster", "app.kubernetes.io/instance": "dagster",
                "component": "dagster-daemon"}, {}),
    "code-location": ({"app.kubernetes.io/name": "dagster-user-deployments",
                       "app.kubernetes.io/instance": "dagster", "component": "user-deployments",
                       "deployment": "trading-pipeline"}, {"grpc": 3030}),
}


def _ports(pod_spec: dict[str, Any]) -> dict[str, int]:
    return {p.get("name", str(p["containerPort"])): p["containerPort"]
            for c in pod_spec["containers"] for p in c.get("ports", [])}


def _from_template(obj: dict[str, Any], name: str, namespace: str = NS) -> Pod:
    tpl = obj["spec"]["template"]
    return Pod(name, namespace, tpl["metadata"]["labels"], _ports(tpl["spec"]))


def _deployment(objects: list[dict], name: str) -> dict:
    [d] = [o for o in objects if o["kind"] == "Deployment" and o["metadata"]["name"] == name]
    return d


@pytest.fixture(scope="module")
def world() -> dict[str, Any]:
    objects = k8s.manifests()
    pods = [
        _from_template(k8s.live_session_job(), "live-session"),
        _from_template(k8s.run_job("premarket_prep"), "run-premarket"),
        _from_template(_deployment(objects, "trading-dashboard"), "dashboard"),
        _from_template(_deployment(objects, "trading-prometheus"), "prometheus"),
        *(Pod(n, NS, labels, ports) for n, (labels, ports) in CHART_PODS.items()),
        Pod("postgres", NS, {"app.kubernetes.io/name": "postgres"}, {"postgres": 5432}),
        Pod("grafana", NS, {"app.kubernetes.io/name": "grafana", "app.kubernetes.io/instance": "grafana"}),
        Pod("stray", NS, {"run": "debug"}, {"http": 8080}),
        # Same labels as the dashboard, other namespace: labels alone open nothing across namespaces.
        Pod("outsider", "default", {"app.kubernetes.io/name": "trading-dashboard"}),
    ]
    policies = [o for o in objects if o["kind"] == "NetworkPolicy"]
    return {"objects": objects, "policies": policies, "pods": {p.name: p for p in pods}}


def reach(world: dict, dst: str, port: int) -> set[str]:
    return who_may_reach(world["policies"], world["pods"].values(), world["pods"][dst], port)


def test_the_runners_ops_port_only_from_prometheus_and_the_dashboard(world) -> None:
    assert world["pods"]["live-session"].labels["trading/role"] == "live-session"
    assert reach(world, "live-session", 8080) == {"prometheus", "dashboard"}
    assert reach(world, "live-session", 9999) == set()


def test_postgres_only_from_dagster_pods_and_the_dashboard(world) -> None:
    assert reach(world, "postgres", 5432) == {"webserver", "daemon", "code-location", "run-premarket",
                                              "live-session", "dashboard"}
    assert reach(world, "postgres", 8080) == set()


def test_the_other_workloads(world) -> None:
    dagster = {"webserver", "daemon", "code-location", "run-premarket", "live-session"}
    assert reach(world, "code-location", 3030) == dagster - {"code-location"}
    in_namespace = set(world["pods"]) - {"outsider"}
    assert reach(world, "webserver", 80) == in_namespace - {"webserver"}
    assert reach(world, "dashboard", 8501) == in_namespace - {"dashboard"}
    assert reach(world, "prometheus", 9090) == {"grafana"}
    for dst in ("stray", "grafana", "daemon"):  # isolated by default-deny, opened by nothing
        assert reach(world, dst, 8080) - (dagster if dst == "daemon" else set()) == set(), dst


def test_no_opening_policy_selects_the_runner_or_postgres_by_accident(world) -> None:
    opening = [p for p in world["policies"] if p["spec"].get("ingress")]
    for dst, own in (("live-session", "live-session-ingress"), ("postgres", "postgres-ingress")):
        pod = world["pods"][dst]
        names = [p["metadata"]["name"] for p in opening
                 if selector_matches(p["spec"].get("podSelector"), pod.labels)]
        assert names == [own], (dst, names)


def test_the_evaluator_adds_policies_up(world) -> None:
    """The namespace-wide allow this file used to hold opens 8080 to every pod of the namespace."""
    old = {"metadata": {"name": "namespace-only", "namespace": NS},
           "spec": {"podSelector": {}, "policyTypes": ["Ingress"], "ingress": [{"from": [{"podSelector": {}}]}]}}
    pods = world["pods"]
    assert not allowed(world["policies"], pods["stray"], pods["live-session"], 8080)
    assert allowed([*world["policies"], old], pods["stray"], pods["live-session"], 8080)
    assert not allowed([*world["policies"], old], pods["outsider"], pods["live-session"], 8080)
    assert allowed([], pods["outsider"], pods["postgres"], 5432)  # no policy: nothing isolated


def _service(objects: list[dict], host: str) -> dict:
    name, namespace = host.split(".")[:2]
    [svc] = [o for o in objects if o["kind"] == "Service" and o["metadata"]["name"] == name
             and o["metadata"]["namespace"] == namespace]
    return svc


def test_the_dashboard_reaches_a_runner_that_is_not_ready(world) -> None:
    """/status and the emergency stop go through a Service that publishes not-ready addresses."""
    dash = _deployment(world["objects"], "trading-dashboard")["spec"]["template"]["spec"]["containers"][0]
    env = {e["name"]: e.get("value") for e in dash["env"]}
    url = urlparse(env["TRADING_RUNNER_URL"])
    svc = _service(world["objects"], url.hostname)
    assert svc["spec"]["publishNotReadyAddresses"] is True
    assert selector_matches({"matchLabels": svc["spec"]["selector"]}, world["pods"]["live-session"].labels)
    [port] = [p for p in svc["spec"]["ports"] if p["port"] == url.port]
    assert port["targetPort"] == 8080
    # Streamlit's usage statistics are off, by flag and by environment.
    assert "--browser.gatherUsageStats=false" in dash["command"]
    assert env["STREAMLIT_BROWSER_GATHER_USAGE_STATS"] == "false"


def test_prometheus_can_discover_the_runner_and_grafana_can_query_it(world) -> None:
    objects = world["objects"]
    spec = _deployment(objects, "trading-prometheus")["spec"]["template"]["spec"]
    sa = spec["serviceAccountName"]
    assert spec["automountServiceAccountToken"] is True
    [binding] = [o for o in objects if o["kind"] == "RoleBinding"
                 and any(s["kind"] == "ServiceAccount" and s["name"] == sa for s in o["subjects"])]
    [role] = [o for o in objects if o["kind"] == binding["roleRef"]["kind"]
              and o["metadata"]["name"] == binding["roleRef"]["name"]]
    assert any("pods" in r["resources"] and {"list", "watch"} <= set(r["verbs"]) for r in role["rules"])
    [config] = [o for o in objects if o["kind"] == "ConfigMap" and o["metadata"]["name"] == "trading-prometheus-config"]
    scrape = yaml.safe_load(config["data"]["prometheus.yml"])
    [runner] = [j for j in scrape["scrape_configs"] if j["job_name"] == "trading-runner"]
    for sd in runner["kubernetes_sd_configs"]:
        assert sd["namespaces"]["names"] == [role["metadata"]["namespace"]]  # a Role covers it
    mounted = {v["configMap"]["name"] for v in spec["volumes"] if "configMap" in v}
    assert mounted == {"trading-prometheus-config", "trading-prometheus-rules"}
    [claim] = [v["persistentVolumeClaim"]["claimName"] for v in spec["volumes"] if "persistentVolumeClaim" in v]
    assert any(o["kind"] == "PersistentVolumeClaim" and o["metadata"]["name"] == claim for o in objects)
    [ds] = [o for o in objects if o["kind"] == "ConfigMap" and o["metadata"]["name"] == "trading-grafana-datasources"]
    url = urlparse(yaml.safe_load(ds["data"]["prometheus.yml"])["datasources"][0]["url"])
    svc = _service(objects, url.hostname)
    assert selector_matches({"matchLabels": svc["spec"]["selector"]}, world["pods"]["prometheus"].labels)
