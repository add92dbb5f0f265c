"""The Dagster UI (dagster-webserver) starts on the code location and answers on 127.0.0.1."""

import json
import socket
import urllib.request

import pytest

from tests.kit.dagster_env import (
    DagsterProcess, dagster_home, pipeline_env, process_env, processes_matching, wait_for,
)

pytestmark = pytest.mark.slow
QUERY = """{ repositoriesOrError { ... on RepositoryConnection { nodes { name
  jobs { name } sensors { name } schedules { name } } } } }"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def get(url: str, data: bytes | None = None) -> tuple[int, bytes]:
    req = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=5) as resp:
            return resp.status, resp.read()
    except OSError:
        return 0, b""


def test_webserver_serves_the_ui_and_the_code_location(tmp_path):
    port = free_port()
    env = process_env({**pipeline_env(tmp_path), "DAGSTER_HOME": str(dagster_home(tmp_path))})
    base = f"http://127.0.0.1:{port}"
    with DagsterProcess(["-w", "workspace.yaml", "-h", "127.0.0.1", "-p", str(port)], env,
                        tmp_path / "webserver.log", program="dagster-webserver") as web:
        status, body = wait_for(lambda: (r := get(f"{base}/server_info"))[0] == 200 and r, 90,
                                "the webserver to answer")
        assert "dagster_webserver_version" in json.loads(body)
        status, page = get(f"{base}/")
        assert status == 200 and b"<html" in page.lower()
        status, body = get(f"{base}/graphql", json.dumps({"query": QUERY}).encode())
        assert status == 200, web.output()[-2000:]
        [repo] = json.loads(body)["data"]["repositoriesOrError"]["nodes"]
        assert {"live_session", "premarket_prep", "end_of_day", "data_retention"} <= {j["name"] for j in repo["jobs"]}
        assert {s["name"] for s in repo["sensors"]} == {"market_open_sensor", "run_failure_alerts"}
    wait_for(lambda: not processes_matching(str(tmp_path)), 15, "the webserver's processes to exit")
