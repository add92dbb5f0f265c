"""Clients of the ops HTTP API: `python -m live_runner status` and `python -m live_runner control`.

Thin on purpose: the runner's server decides everything (auth, validation, semantics); these only
send the request, print the answer for a human (or as JSON), and turn failures into clear messages
and exit codes:

    0  the runner answered OK (for `status`: 200)
    1  the runner refused (401 wrong/missing token, 404 unknown command, 400 bad input, ...)
    2  usage error (bad arguments)
    3  the runner could not be reached (connection refused, timeout, bad URL)
"""

from __future__ import annotations

import getpass
import json
import os
import socket
import urllib.error
import urllib.parse
import urllib.request
from typing import Any, TextIO

DEFAULT_URL = "http://127.0.0.1:8080"
DEFAULT_TOKEN_ENV = "TRADING_CONTROL_TOKEN"
COMMANDS = ("pause", "resume", "emergency_stop", "rebalance", "flatten")
EXIT_OK, EXIT_REFUSED, EXIT_USAGE, EXIT_UNREACHABLE = 0, 1, 2, 3


class Unreachable(Exception):
    """No HTTP answer at all (refused, timed out, name not resolved)."""


def call(url: str, method: str, path: str, *, token: str | None = None,
         body: dict[str, Any] | None = None, timeout_s: float = 10.0) -> tuple[int, Any]:
    """One request; returns (HTTP status, decoded JSON or text). Raises Unreachable."""
    target = url.rstrip("/") + path
    data = json.dumps(body).encode() if body is not None else None
    headers = {"Accept": "application/json", "User-Agent": "live_runner-cli"}
    if data is not None:
        headers["Content-Type"] = "application/json"
    if token:
        headers["Authorization"] = f"Bearer {token}"
    req = urllib.request.Request(target, data=data, headers=headers, method=method)
    try:
        with urllib.request.urlopen(req, timeout=timeout_s) as resp:
            return resp.status, _decode(resp.read())
    except urllib.error.HTTPError as exc:
        with exc:
            return exc.code, _decode(exc.read())
    except urllib.error.URLError as exc:
        reason = exc.reason
        if isinstance(reason, ConnectionRefusedError):
            raise Unreachable(f"connection refused at {url} (is the runner up? is the port right?)") from None
        if isinstance(reason, (socket.timeout, TimeoutError)):
            raise Unreachable(f"no answer from {url} within {timeout_s:g} s") from None
        raise Unreachable(f"cannot reach {url}: {reason}") from None
    except (socket.timeout, TimeoutError):
        raise Unreachable(f"no answer from {url} within {timeout_s:g} s") from None
    except (ConnectionError, OSError) as exc:
        raise Unreachable(f"cannot reach {url}: {exc}") from None
    except ValueError as exc:  # e.g. an URL without a scheme
        raise Unreachable(f"bad URL {url!r}: {exc}") from None


def _decode(raw: bytes) -> Any:
    try:
        return json.loads(raw)
    except ValueError:
        return raw.decode("utf-8", "replace")


def _error_text(data: Any) -> str:
    if isinstance(data, dict) and "error" in data:
        return str(data["error"])
    return str(data)[:500]


def default_url(ops: Any | None) -> str:
    """--url default: TRADING_OPS_URL, else the config's ops host/port, else 127.0.0.1:8080."""
    env = os.environ.get("TRADING_OPS_URL")
    if env:
        return env
    if ops is not None:
        host = "127.0.0.1" if ops.host in ("0.0.0.0", "::", "") else ops.host
        if ":" in host:
            host = f"[{host}]"
        return f"http://{host}:{ops.port}"
    return DEFAULT_URL


def status(url: str, as_json: bool, out: TextIO, err: TextIO, timeout_s: float = 10.0) -> int:
    try:
        code, data = call(url, "GET", "/status", timeout_s=timeout_s)
    except Unreachable as exc:
        print(f"error: {exc}", file=err)
        return EXIT_UNREACHABLE
    if code != 200 or not isinstance(data, dict):
        print(f"error: {url}/status answered HTTP {code}: {_error_text(data)}", file=err)
        return EXIT_REFUSED
    if as_json:
        print(json.dumps(data, sort_keys=True, indent=2), file=out)
    else:
        print(format_status(data), file=out)
    return EXIT_OK


def control(url: str, command: str, symbol: str | None, operator: str | None, token_env: str,
            out: TextIO, err: TextIO, as_json: bool = False, timeout_s: float = 10.0) -> int:
    token = os.environ.get(token_env) or None
    path = f"/control/{command}" + (f"/{urllib.parse.quote(symbol.upper(), safe='')}" if symbol else "")
    body = {"operator": operator or _whoami()}
    try:
        code, data = call(url, "POST", path, token=token, body=body, timeout_s=timeout_s)
    except Unreachable as exc:
        print(f"error: {exc}", file=err)
        return EXIT_UNREACHABLE
    if code == 200 and isinstance(data, dict):
        if as_json:
            print(json.dumps(data, sort_keys=True), file=out)
        else:
            what = command + (f" {symbol.upper()}" if symbol else "")
            print(f"{what}: accepted (system {data.get('state')}, trading {data.get('trading_state')})",
                  file=out)
        return EXIT_OK
    msg = _error_text(data)
    if code == 401:
        hint = (f"; the token is read from ${token_env}, which is not set" if token is None
                else f"; check ${token_env} against the runner's token")
        print(f"error: {command} refused by the runner (HTTP 401): {msg}{hint}", file=err)
    elif code == 404:
        print(f"error: {command} refused by the runner (HTTP 404): {msg}", file=err)
    else:
        print(f"error: {command} refused by the runner (HTTP {code}): {msg}", file=err)
    return EXIT_REFUSED


def _whoami() -> str:
    try:
        return getpass.getuser()[:64] or "cli"
    except Exception:
        return "cli"


def format_status(s: dict[str, Any]) -> str:
    """A screenful for an operator: states, P&L, health, positions, orders, recent alerts."""
    lines = [
        f"system {s.get('system_state')}, trading {s.get('trading_state')}"
        f"{' (paused: no new entries)' if s.get('paused') else ''}, session {s.get('session') or '-'}, "
        f"market time {s.get('market_time') or '-'}",
        f"equity {s.get('equity')}  cash {s.get('cash')}  realized {s.get('realized_pnl')}  "
        f"unrealized {s.get('unrealized_pnl')}  daily P&L {s.get('daily_pnl')}  "
        f"commissions {s.get('commissions')}",
    ]
    health = s.get("health") or {}
    if health:
        unhealthy = health.get("unhealthy") or []
        lines.append("health: ok" if not unhealthy else f"health: UNHEALTHY {', '.join(unhealthy)}")
    lines.append(f"bars processed {s.get('bars_processed')} (rejected {s.get('bars_rejected')})")
    positions = s.get("positions") or []
    lines.append(f"positions ({len(positions)}):")
    if positions:
        lines.append(f"  {'symbol':<8}{'qty':>7}{'avg':>10}{'last':>10}{'unreal.':>11}{'stop':>9}{'target':>9}"
                     "  opened")
        for p in positions:
            lines.append(f"  {p.get('symbol', ''):<8}{p.get('qty', 0):>7}{_num(p.get('avg_price')):>10}"
                         f"{_num(p.get('last')):>10}{_num(p.get('unrealized_pnl')):>11}"
                         f"{_num(p.get('stop')):>9}{_num(p.get('target')):>9}  {p.get('opened', '')}")
    orders = s.get("open_orders") or []
    lines.append(f"open orders ({len(orders)}):")
    for o in orders:
        price = o.get("limit") or o.get("stop") or ""
        lines.append(f"  {o.get('client_order_id')}  {o.get('side')} {o.get('qty')} {o.get('symbol')} "
                     f"{o.get('type')} {price} ({o.get('role')}, {o.get('status')}, filled {o.get('filled_qty')})")
    alerts = s.get("alerts") or []
    if alerts:
        lines.append("last alerts:")
        for a in alerts[:10]:
            lines.append(f"  {a.get('ts')} {str(a.get('severity')).upper():<8} {a.get('key')}: {a.get('message')}")
    return "\n".join(lines)


def _num(v: Any) -> str:
    if v is None or v == "":
        return "-"
    if isinstance(v, float):
        return f"{v:.2f}"
    return str(v)
