"""Paper or live is proven by the account the Gateway is logged in to, not by its port (issue 12).

The real SDK (ib_async; ib_insync under `make test-legacy`) connects to the fake TWS, which
listens on a random port (a "remapped" one: neither 4001/4002 nor 7496/7497) and reports the
accounts it is given in managedAccounts (message 15). A live account in paper mode, or a paper
account in live mode, is refused at connect with an error naming the account and the mode, and
the fake never receives an order. The CLI refuses the same runs with exit 2.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from live_runner.core.clients import AccountModeError
from live_runner.adapters.ibkr.client import NOT_SENT, IbkrExecutionClient
from live_runner.adapters.ibkr.connection import account_mode_problem, is_paper_account
from live_runner.core.config import IbkrConfig, parse_config
from live_runner.core.models import OrderEvent, OrderRequest, OrderRole, OrderStatus, OrderType, Side
from tests.integration.test_run_paper import write_bars
from tests.kit.fake_tws import FakeTws
from tests.kit.sessions import et_ns

pytestmark = [pytest.mark.legacy_sdk, pytest.mark.timeout(120)]

ROOT = Path(__file__).resolve().parents[2]
RTH = et_ns("2024-03-15", "10:00")
PLACE_ORDER = 3


def client(fake: FakeTws, tmp_path: Path, *, paper: bool, account: str | None = None) -> IbkrExecutionClient:
    cfg = IbkrConfig(host="127.0.0.1", port=fake.port, paper=paper, account=account, client_id=5,
                     connect_timeout_s=5.0, reconnect_initial_s=0.05, reconnect_max_s=0.2,
                     order_id_state=str(tmp_path / "ids.json"))
    return IbkrExecutionClient(cfg, environ={})


def order(cid: str) -> OrderRequest:
    return OrderRequest(cid, "gap_and_go", "AAPL", Side.BUY, 10, OrderType.MARKET, OrderRole.ENTRY, RTH)


async def refused_at_connect(tmp_path: Path, accounts: tuple[str, ...], paper: bool) -> dict[str, Any]:
    """Connect a client in the given mode to a Gateway logged in to `accounts`; try to trade."""
    fake = await FakeTws(accounts=accounts).start()
    assert fake.port not in (4001, 4002, 7496, 7497)
    c = client(fake, tmp_path, paper=paper)
    faults: list[tuple[str, str]] = []
    events: list[OrderEvent] = []
    c.set_fault_handler(lambda key, msg: faults.append((key, msg)))
    c.set_handlers(events.append, lambda f: None)
    try:
        with pytest.raises(AccountModeError) as refused:
            await c.start()
        c.submit(order("LR-1-GG-AAPL-1"))  # rejected at once: the client knows why it is down
        for _ in range(250):  # the fake sees the client hang up
            if not fake.sessions:
                break
            await asyncio.sleep(0.02)
        return {"error": str(refused.value), "handshakes": fake.handshakes, "faults": faults,
                "events": events, "placed": fake.messages(PLACE_ORDER), "connected": c.connected,
                "sessions": len(fake.sessions)}
    finally:
        await c.stop()
        await fake.stop()


def test_a_live_account_on_a_remapped_port_is_refused_in_paper_mode(tmp_path: Path) -> None:
    out = asyncio.run(refused_at_connect(tmp_path, ("U1234567",), paper=True))
    assert "U1234567" in out["error"] and "live-trading account" in out["error"]
    assert "paper mode" in out["error"]
    assert out["handshakes"] == 1, "refused once, not retried in a reconnect loop"
    assert out["faults"] and out["faults"][0][0] == "ibkr_account_mode"  # the node halts and pages
    assert not out["connected"] and out["sessions"] == 0  # the client hung up
    assert out["placed"] == []
    assert [e.status for e in out["events"]] == [OrderStatus.REJECTED]
    assert NOT_SENT in out["events"][0].reason and "U1234567" in out["events"][0].reason


def test_a_paper_account_is_refused_in_live_mode(tmp_path: Path) -> None:
    out = asyncio.run(refused_at_connect(tmp_path, ("DU7654321",), paper=False))
    assert "DU7654321" in out["error"] and "paper-trading account" in out["error"]
    assert "live mode" in out["error"]
    assert out["placed"] == [] and not out["connected"]


def test_an_advisor_login_with_one_live_account_is_refused_in_paper_mode(tmp_path: Path) -> None:
    out = asyncio.run(refused_at_connect(tmp_path, ("DF111", "DU222", "U333"), paper=True))
    assert "U333" in out["error"] and "DU222" not in out["error"]
    assert out["placed"] == []


def test_matching_logins_connect_and_trade(tmp_path: Path) -> None:
    async def scenario(accounts: tuple[str, ...], paper: bool) -> int:
        fake = await FakeTws(accounts=accounts).start()
        c = client(fake, tmp_path, paper=paper)
        events: list[OrderEvent] = []
        c.set_handlers(events.append, lambda f: None)
        try:
            assert await c.start()
            c.submit(order(f"LR-{accounts[0]}-GG-AAPL-1"))
            for _ in range(200):
                if fake.messages(PLACE_ORDER) and events:
                    break
                await asyncio.sleep(0.02)
            assert [e.status for e in events][:1] == [OrderStatus.ACCEPTED]
            return len(fake.messages(PLACE_ORDER))
        finally:
            await c.stop()
            await fake.stop()

    assert asyncio.run(scenario(("DU123",), paper=True)) == 1
    assert asyncio.run(scenario(("U9876543",), paper=False)) == 1


def test_a_configured_account_of_the_wrong_kind_is_refused_before_connecting(tmp_path: Path) -> None:
    async def scenario() -> int:
        fake = await FakeTws(accounts=("DU123",)).start()
        try:
            c = client(fake, tmp_path, paper=True, account="U555")
            with pytest.raises(AccountModeError, match="U555.*paper mode"):
                await c.start()
            return fake.handshakes
        finally:
            await fake.stop()

    assert asyncio.run(scenario()) == 0


def test_the_account_rule() -> None:
    assert all(is_paper_account(a) for a in ("DU1234567", "DF123456", "du42"))
    assert not any(is_paper_account(a) for a in ("U1234567", "F123456", "I123"))
    assert account_mode_problem(["DU1"], paper=True) is None
    assert account_mode_problem(["U1"], paper=False) is None
    assert "no account" in (account_mode_problem([], paper=True) or "")


def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "live_runner", *args], cwd=ROOT, capture_output=True,
                          text=True, timeout=90)


def test_the_runner_exits_with_the_account_and_the_mode_named(tmp_path: Path) -> None:
    bars = tmp_path / "bars.csv"
    write_bars(bars)
    fake = asyncio.run(FakeTws(accounts=("U1234567",)).start())  # serves from its own thread
    try:
        cfg = tmp_path / "ib.yaml"
        cfg.write_text(
            f"primary_broker: ibkr\nfeed: {{bars: {bars}, speed: 60}}\nlog_dir: null\n"
            f"ibkr: {{port: {fake.port}, connect_timeout_s: 10, order_id_state: {tmp_path / 'ids.json'}}}\n")
        proc = _cli("run", "--mode", "paper", "--config", str(cfg), "--journal",
                    f"sqlite:///{tmp_path / 'j.db'}")
        assert proc.returncode == 2, proc.stderr
        assert "U1234567" in proc.stderr and "paper mode" in proc.stderr
        assert fake.messages(PLACE_ORDER) == []
    finally:
        asyncio.run(fake.stop())


def test_the_cli_refuses_a_mode_the_config_contradicts(tmp_path: Path) -> None:
    bars = tmp_path / "bars.csv"
    write_bars(bars)
    live_cfg = tmp_path / "live.yaml"
    live_cfg.write_text("primary_broker: ibkr\nibkr: {paper: false}\n")
    proc = _cli("run", "--mode", "paper", "--config", str(live_cfg), "--bars", str(bars))
    assert proc.returncode == 2 and "ibkr.paper is false" in proc.stderr
    paper_cfg = tmp_path / "paper.yaml"
    paper_cfg.write_text("primary_broker: ibkr\nibkr: {port: 4001}\n")  # a port is no proof either way
    proc = _cli("run", "--mode", "live", "--confirm-live", "--config", str(paper_cfg), "--bars", str(bars))
    assert proc.returncode == 2 and "ibkr.paper is true" in proc.stderr
    assert parse_config({}).ibkr.paper is True  # paper unless the config says otherwise


def test_check_connections_reports_a_login_of_the_wrong_kind(tmp_path: Path) -> None:
    from live_runner.live.brokers import check_connections

    async def scenario() -> dict[str, Any]:
        fake = await FakeTws(accounts=("U1234567",)).start()
        try:
            cfg = parse_config({"primary_broker": "ibkr", "ibkr": {
                "port": fake.port, "order_id_state": str(tmp_path / "ids.json")}})
            return {r["role"]: r for r in await check_connections(cfg, {})}["primary_broker"]
        finally:
            await fake.stop()

    out = asyncio.run(scenario())
    assert out["ok"] is False and out["accounts"] == ["U1234567"] and out["mode"] == "paper"
    assert "U1234567" in out["error"] and "paper mode" in out["error"]
