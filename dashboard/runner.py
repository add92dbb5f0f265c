"""The runner's ops API, through live_runner.ops.client.call (same errors, same messages)."""

from __future__ import annotations

import threading
import urllib.parse
from dataclasses import dataclass, field
from typing import Any

import streamlit as st

from live_runner.ops.client import Unreachable, call

# The dashboard's button names -> the runner's /control paths.
COMMANDS = {"pause": "pause", "resume": "resume", "flatten": "flatten", "emergency_stop": "emergency_stop"}


@dataclass(slots=True)
class RunnerView:
    url: str
    status: dict[str, Any] | None = None  # /status, None when the runner did not answer 200
    ready: dict[str, Any] = field(default_factory=dict)  # /ready: {"ready": bool, "reasons": [...]}
    error: str = ""  # why there is no status

    @property
    def up(self) -> bool:
        return self.status is not None


def fetch(url: str, timeout_s: float = 3.0) -> RunnerView:
    """GET /status and /ready; never raises."""
    view = RunnerView(url)
    try:
        code, data = call(url, "GET", "/status", timeout_s=timeout_s)
    except Unreachable as exc:
        view.error = str(exc)
        return view
    if code != 200 or not isinstance(data, dict):
        view.error = f"{url}/status answered HTTP {code}: {str(data)[:300]}"
        return view
    view.status = data
    try:
        _, ready = call(url, "GET", "/ready", timeout_s=timeout_s)  # 503 while not ready
        if isinstance(ready, dict):
            view.ready = ready
    except Unreachable as exc:
        view.ready = {"ready": False, "reasons": [str(exc)]}
    return view


@st.cache_resource(show_spinner=False)
def _memory() -> tuple[threading.Lock, dict[str, dict[str, Any]]]:
    return threading.Lock(), {}


def remember(view: RunnerView) -> dict[str, Any] | None:
    """The runner's last /status seen by this dashboard process (any browser tab), updated with
    `view` when it answered: what the page shows once it stops answering (its session, journal,
    bars file)."""
    lock, seen = _memory()
    with lock:
        if view.status is not None:
            seen[view.url] = view.status
        return seen.get(view.url)


@dataclass(frozen=True, slots=True)
class ControlResult:
    ok: bool
    command: str
    message: str
    http_status: int | None = None
    answer: Any = None


def control(url: str, token: str, command: str, symbol: str = "", operator: str = "",
            timeout_s: float = 10.0) -> ControlResult:
    """POST /control/COMMAND[/SYMBOL] with the bearer token; the outcome as a sentence."""
    if command not in COMMANDS:
        return ControlResult(False, command, f"unknown command {command!r}")
    symbol = symbol.strip().upper()
    what = command + (f" {symbol}" if symbol else "")
    path = f"/control/{COMMANDS[command]}" + (f"/{urllib.parse.quote(symbol, safe='')}" if symbol else "")
    body = {"operator": operator} if operator else None
    try:
        code, data = call(url, "POST", path, token=token or None, body=body, timeout_s=timeout_s)
    except Unreachable as exc:
        return ControlResult(False, what, f"{what}: not sent, {exc}")
    if code == 200 and isinstance(data, dict):
        return ControlResult(True, what, f"{what}: accepted by the runner (system {data.get('state')}, "
                             f"trading {data.get('trading_state')})", code, data)
    err = data.get("error") if isinstance(data, dict) else str(data)[:300]
    hint = " (check TRADING_CONTROL_TOKEN against the runner's token)" if code == 401 else ""
    return ControlResult(False, what, f"{what}: refused by the runner (HTTP {code}): {err}{hint}", code, data)
