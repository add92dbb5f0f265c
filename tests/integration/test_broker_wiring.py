"""The config picks the brokers: the node builds them (primary, backup, their risk rules), the CLI
refuses real money without confirmation, and `check-connections` reports what each one reaches."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from pathlib import Path
from typing import Any

from live_runner.adapters.alpaca import AlpacaExecutionClient
from live_runner.adapters.ibkr.client import IbkrExecutionClient
from live_runner.live.brokers import check_connections
from live_runner.core.config import parse_config
from live_runner.persistence.journal import Journal
from live_runner.live.node import TradingNode
from tests.kit.fake_alpaca import KEY, SECRET, FakeAlpaca
from tests.kit.fake_tws import FakeTws

ROOT = Path(__file__).resolve().parents[2]
ENV = {"APCA_API_KEY_ID": KEY, "APCA_API_SECRET_KEY": SECRET}


def test_node_builds_the_configured_brokers(tmp_path: Path, monkeypatch: Any) -> None:
    for k, v in ENV.items():
        monkeypatch.setenv(k, v)
    cfg = parse_config({
        "primary_broker": "ibkr", "backup_broker": "alpaca",
        "ibkr": {"order_id_state": str(tmp_path / "ids.json")},
        "alpaca": {"base_url": "http://127.0.0.1:9", "stream_url": "ws://127.0.0.1:9/stream"},
        "risk": {"pdt_check": True},
    })
    node = TradingNode(cfg, Journal("sqlite://"))
    assert isinstance(node.execution.primary, IbkrExecutionClient)
    assert isinstance(node.execution.backup, AlpacaExecutionClient)
    names = [getattr(r, "__name__", "") for r in node.risk.rules]
    assert len(node.risk.rules) == 13 and names[:2] == ["state_rule", "no_short_rule"]  # + PDT
    brokers = node.status()["brokers"]["brokers"]
    assert set(brokers) == {"primary", "backup"} and brokers["primary"]["active"] is True


def test_check_connections_reports_each_adapter(tmp_path: Path) -> None:
    async def scenario() -> list[dict]:
        tws = await FakeTws(accounts=("DU123",)).start()
        alpaca = FakeAlpaca().start()
        try:
            cfg = parse_config({
                "primary_broker": "ibkr", "backup_broker": "alpaca",
                "ibkr": {"port": tws.port, "client_id": 9, "order_id_state": str(tmp_path / "ids.json")},
                "alpaca": {"base_url": alpaca.base_url, "stream_url": alpaca.stream_url},
            })
            return await check_connections(cfg, ENV)
        finally:
            alpaca.stop()
            await tws.stop()

    results = {r["role"]: r for r in asyncio.run(scenario())}
    assert results["primary_broker"]["ok"] is True and results["primary_broker"]["accounts"] == ["DU123"]
    assert results["backup_broker"]["ok"] is True and results["backup_broker"]["account"]
    assert results["primary_data_provider"]["ok"] is True


def cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "live_runner", *args], cwd=ROOT, capture_output=True,
                          text=True, timeout=120, env=env)


def test_real_money_needs_confirmation(tmp_path: Path) -> None:
    bars = tmp_path / "bars.csv"
    bars.write_text("symbol,timestamp,open,high,low,close,volume\n")
    proc = cli("run", "--mode", "live", "--bars", str(bars))
    assert proc.returncode == 2 and "--confirm-live" in proc.stderr
    cfg = tmp_path / "live.yaml"
    cfg.write_text("primary_broker: alpaca\nalpaca: {paper: false}\n")
    proc = cli("run", "--mode", "paper", "--config", str(cfg), "--bars", str(bars))
    assert proc.returncode == 2 and "alpaca.paper is false" in proc.stderr


def test_check_connections_cli_fails_on_an_unreachable_broker(tmp_path: Path) -> None:
    cfg = tmp_path / "cc.yaml"
    cfg.write_text("primary_broker: ibkr\nibkr: {port: 9, connect_timeout_s: 2}\n")
    proc = cli("check-connections", "--config", str(cfg))
    assert proc.returncode == 1
    assert "FAIL primary_broker" in proc.stdout and "ConnectionRefused" in proc.stdout
