"""The Kubernetes objects of the deployment as they will exist: the manifests of k8s/manifests,
and run pods as dagster-k8s renders them (the live session's from its `dagster-k8s/config` tag
merged over the run launcher's config in k8s/dagster-values.yaml)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[2]
K8S = ROOT / "k8s"
VALUES = K8S / "dagster-values.yaml"


def manifests() -> list[dict[str, Any]]:
    """Every object of k8s/manifests/*.yaml."""
    return [d for p in sorted((K8S / "manifests").glob("*.yaml"))
            for d in yaml.safe_load_all(p.read_text()) if d]


def run_job(job_name: str, tag: dict | str | None = None) -> dict[str, Any]:
    """The Kubernetes Job of a run of `job_name` (with its job's dagster-k8s/config tag)."""
    from dagster_k8s.job import DagsterK8sJobConfig, UserDefinedDagsterK8sConfig, construct_dagster_k8s_job
    from kubernetes.client import ApiClient

    values = yaml.safe_load(VALUES.read_text())
    run_cfg = values["runLauncher"]["config"]["k8sRunLauncher"]["runK8sConfig"]
    user = UserDefinedDagsterK8sConfig.from_dict((json.loads(tag) if isinstance(tag, str) else tag) or {})
    base = UserDefinedDagsterK8sConfig(container_config=run_cfg["containerConfig"],
                                       pod_spec_config=run_cfg["podSpecConfig"],
                                       job_spec_config=run_cfg["jobSpecConfig"])
    merged = UserDefinedDagsterK8sConfig.from_dict(
        {k: {**(getattr(base, k) or {}), **(getattr(user, k) or {})}
         for k in ("container_config", "pod_spec_config", "pod_template_spec_metadata", "job_spec_config")})
    cfg = DagsterK8sJobConfig(job_image="ghcr.io/example/intraday-trader:0.1.0", dagster_home="/opt/dagster/home",
                              image_pull_policy="IfNotPresent", instance_config_map="dagster-instance",
                              env_secrets=["trading-secrets"])
    job = construct_dagster_k8s_job(cfg, ["dagster", "api", "execute_run", "{}"], "dagster-run-0123456789",
                                    merged, pod_name="dagster-run-0123456789", component="run_worker",
                                    labels={"dagster/job": job_name})
    return ApiClient().sanitize_for_serialization(job)


def live_session_job() -> dict[str, Any]:
    from trading_pipeline.live_session import K8S_CONFIG_TAG, live_session_tags

    # the tag the code location sets when it runs in Kubernetes
    return run_job("live_session", live_session_tags({"KUBERNETES_SERVICE_HOST": "10.0.0.1"})[K8S_CONFIG_TAG])
