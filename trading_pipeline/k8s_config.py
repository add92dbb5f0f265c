"""Pod settings of the live_session run on Kubernetes (K8sRunLauncher), as the job's
`dagster-k8s/config` tag. Other run launchers ignore the tag (compose uses the default launcher).

- resources: the runner is one process with a hot loop and a journal writer thread;
- terminationGracePeriodSeconds (120) longer than the runner's clean shutdown: on SIGTERM the Pipes
  client gives the runner TRADING_RUNNER_TERMINATION_TIMEOUT (30 s) to flush its journal and stop;
- on-demand nodes only (never spot/preemptible capacity in the middle of a session), via the
  `karpenter.sh/capacity-type` node label (change it to your provider's: docs/operations.md);
- volumes: the code location's (trading-data PVC, /tmp, Dagster storage), which runs inherit through
  the chart's includeConfigInLaunchedRuns (k8s/dagster-values.yaml);
- the `trading/role: live-session` label that the NetworkPolicy and Prometheus's pod discovery
  select (k8s/manifests), and the ops port.
tests/integration/test_deploy_k8s.py renders the run's Job with dagster-k8s and validates it.
"""

from __future__ import annotations

LIVE_SESSION_ROLE_LABEL = {"trading/role": "live-session"}
TERMINATION_GRACE_PERIOD_S = 120

LIVE_SESSION_K8S_CONFIG: dict = {
    "container_config": {
        "resources": {
            "requests": {"cpu": "1", "memory": "2Gi"},
            "limits": {"cpu": "2", "memory": "4Gi"},
        },
        "ports": [{"name": "ops", "container_port": 8080, "protocol": "TCP"}],
        # GET /ready is 503 until calendar, journal, broker and data are up (the Service
        # trading-runner routes only then); GET /health restarts nothing before the runner started.
        "readiness_probe": {"http_get": {"path": "/ready", "port": 8080}, "period_seconds": 10,
                            "failure_threshold": 3},
        "liveness_probe": {"http_get": {"path": "/health", "port": 8080},
                           "initial_delay_seconds": 180, "period_seconds": 30, "timeout_seconds": 5,
                           "failure_threshold": 4},
        "security_context": {
            "run_as_non_root": True,
            "run_as_user": 10001,
            "run_as_group": 10001,
            "read_only_root_filesystem": True,
            "allow_privilege_escalation": False,
            "capabilities": {"drop": ["ALL"]},
        },
    },
    "pod_spec_config": {
        "termination_grace_period_seconds": TERMINATION_GRACE_PERIOD_S,
        "node_selector": {"karpenter.sh/capacity-type": "on-demand"},
        "security_context": {"run_as_non_root": True, "fs_group": 10001,
                             "seccomp_profile": {"type": "RuntimeDefault"}},
    },
    "pod_template_spec_metadata": {
        "labels": dict(LIVE_SESSION_ROLE_LABEL),
        "annotations": {"prometheus.io/scrape": "true", "prometheus.io/port": "8080",
                        "prometheus.io/path": "/metrics"},
    },
    "job_spec_config": {"backoff_limit": 0},
}
