"""Shutdown sends what it journals (issue 11, item 2): the real CLI on a paced bars file, trading
at the fake Alpaca through the real alpaca-py client (and on the paper broker).

At data end, on SIGTERM with `flatten_on_shutdown`, and after an emergency stop, the exits must be
canceled AT the broker and the market sell POSTed and filled, with the fill in the journal, before
the process exits 0. Without `flatten_on_shutdown` the stop and target stay at the broker on
purpose. A flatten that does not fill within `shutdown_flatten_timeout_s` ends in exit 5 with a
CRITICAL alert.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Iterator

import pytest
import yaml

from tests.kit.fake_alpaca import KEY, SECRET, FakeAlpaca
from tests.kit.live import TOKEN, TOKEN_ENV, Market, free_port, http_call, journal_rows

pytestmark = pytest.mark.timeout(120)
ROOT = Path(__file__).resolve().parents[2]


def market(until: str) -> Market:
    """AAA breaks out at 09:31: a market entry, then its stop (10.90) and target (11.95)."""
    return Market().gapper("AAA", "09:31", until=until)


class Cli:
    def __init__(self, tmp: Path, extra: dict[str, Any], until: str, speed: float, env: dict[str, str]) -> None:
        self.port = free_port()
        self.journal_url = f"sqlite:///{tmp / 'journal.db'}"
        cfg: dict[str, Any] = {
            "active_strategies": ["gap_and_go"], "log_dir": str(tmp / "logs"),
            "feed": {"bars": str(market(until).csv(tmp / "bars.csv")), "speed": speed},
            "ops": {"port": self.port, "token_env": TOKEN_ENV}, **extra}
        path = tmp / "cfg.yaml"
        path.write_text(yaml.safe_dump(cfg))
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "live_runner", "run", "--mode", "paper", "--config", str(path),
             "--journal", self.journal_url, "--json"], cwd=ROOT,
            env={**os.environ, TOKEN_ENV: TOKEN, "PYTHONPATH": str(ROOT), **env},
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)

    def wait_for(self, what: str, cond: Any, timeout: float = 60) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, f"exited {self.proc.returncode} waiting for {what}"
            try:
                code, st = http_call(self.port, "GET", "/status", timeout=2)
            except OSError:
                code, st = 0, None
            if code == 200 and cond(st):
                return st
            time.sleep(0.03)
        raise AssertionError(f"timed out waiting for {what}")

    def finish(self) -> tuple[int, dict[str, Any], str]:
        out, err = self.proc.communicate(timeout=90)
        lines = out.strip().splitlines()
        return self.proc.returncode, (json.loads(lines[-1]) if lines else {}), err


def holding(st: dict[str, Any]) -> bool:
    return [(p["symbol"], p["qty"]) for p in st["positions"]] == [("AAA", 1785)] and len(st["open_orders"]) >= 1


@pytest.fixture()
def alpaca() -> Iterator[FakeAlpaca]:
    fake = FakeAlpaca().start()
    fake.set_price("AAA", 11.25)  # market orders fill at once at 11.25; neither exit is touched
    try:
        yield fake
    finally:
        fake.stop()


def alpaca_cfg(fake: FakeAlpaca, **extra: Any) -> dict[str, Any]:
    return {"primary_broker": "alpaca", **extra,
            "alpaca": {"base_url": fake.base_url, "stream_url": fake.stream_url, "request_timeout_s": 2.0}}


ALPACA_ENV = {"APCA_API_KEY_ID": KEY, "APCA_API_SECRET_KEY": SECRET}


def exits_at(fake: FakeAlpaca) -> list[dict[str, Any]]:
    return [fake.order(b["client_order_id"]) for b in fake.bodies if b["side"] == "sell" and b["type"] != "market"]


def assert_flattened_at_alpaca(fake: FakeAlpaca, cli: Cli, role: str) -> None:
    sells = [b for b in fake.bodies if b["side"] == "sell" and b["type"] == "market"]
    assert len(sells) == 1 and int(sells[0]["qty"]) == 1785  # the flatten reached Alpaca
    assert exits_at(fake) and all(o["status"] == "canceled" for o in exits_at(fake))  # canceled there
    assert fake.position_qty() == {}
    fills = [f["payload"] for f in journal_rows(cli.journal_url, "fill")]
    assert [(f["side"], f["qty"], f["role"]) for f in fills] == [("buy", 1785, "entry"), ("sell", 1785, role)]


def test_alpaca_data_end_flattens_at_the_broker_before_exit(tmp_path: Path, alpaca: FakeAlpaca) -> None:
    cli = Cli(tmp_path, alpaca_cfg(alpaca), until="09:45", speed=300, env=ALPACA_ENV)
    code, summary, err = cli.finish()
    assert code == 0, err[-3000:]
    assert summary["final_positions"] == {}
    assert_flattened_at_alpaca(alpaca, cli, "eod")


def test_alpaca_sigterm_with_flatten_on_shutdown_flattens_at_the_broker(tmp_path: Path,
                                                                        alpaca: FakeAlpaca) -> None:
    cli = Cli(tmp_path, alpaca_cfg(alpaca, flatten_on_shutdown=True), until="10:30", speed=60, env=ALPACA_ENV)
    cli.wait_for("the position and its exits", holding)
    cli.proc.send_signal(signal.SIGTERM)
    code, summary, err = cli.finish()
    assert code == 0, err[-3000:]
    assert summary["final_positions"] == {}
    assert_flattened_at_alpaca(alpaca, cli, "eod")


def test_alpaca_sigterm_without_flatten_leaves_the_exits_working(tmp_path: Path, alpaca: FakeAlpaca) -> None:
    cli = Cli(tmp_path, alpaca_cfg(alpaca), until="10:30", speed=60, env=ALPACA_ENV)
    st = cli.wait_for("the position and its exits", lambda st: holding(st) and len(st["open_orders"]) == 2)
    cli.proc.send_signal(signal.SIGTERM)
    code, summary, err = cli.finish()
    assert code == 0, err[-3000:]
    assert summary["final_positions"] == {"AAA": 1785} and alpaca.position_qty() == {"AAA": 1785}
    # Every journaled order reached Alpaca: the entry and the OCO under its target's id, whose
    # stop leg Alpaca names itself (the journaled stop carries the OCO's id as its group).
    posted = {b["client_order_id"] for b in alpaca.bodies}
    rows = journal_rows(cli.journal_url, "order")
    assert {r["key"] if r["key"] in posted else r["payload"]["oco"] for r in rows} == posted
    assert len(rows) == 3 and len(posted) == 2
    # The runner's two exits are one working OCO at Alpaca (the target, its stop as the leg).
    working = [o for o in exits_at(alpaca) if o["status"] in ("new", "accepted")]
    assert [o["order_class"] for o in working] == ["oco"] and len(working[0]["legs"]) == 1
    assert {o["client_order_id"] for o in st["open_orders"]} == {
        working[0]["client_order_id"], *(r["key"] for r in rows if r["payload"]["oco"] == working[0]["client_order_id"])}
    assert alpaca.book.reserved("AAA") == 1785  # reserved once, for the whole position


def test_alpaca_emergency_stop_then_sigterm_flattens_at_the_broker(tmp_path: Path, alpaca: FakeAlpaca) -> None:
    cli = Cli(tmp_path, alpaca_cfg(alpaca), until="10:30", speed=60, env=ALPACA_ENV)
    cli.wait_for("the position and its exits", lambda st: holding(st) and len(st["open_orders"]) == 2)
    code, body = http_call(cli.port, "POST", "/control/emergency_stop", token=TOKEN, body={"operator": "ana"})
    assert code == 200, body
    cli.proc.send_signal(signal.SIGTERM)  # at once: the flatten is still on its way
    code, summary, err = cli.finish()
    assert code == 0, err[-3000:]
    assert summary["final_positions"] == {}
    assert_flattened_at_alpaca(alpaca, cli, "manual")


def test_a_flatten_the_broker_never_fills_ends_in_exit_5_and_a_critical_alert(tmp_path: Path,
                                                                             alpaca: FakeAlpaca) -> None:
    cli = Cli(tmp_path, alpaca_cfg(alpaca, flatten_on_shutdown=True, shutdown_flatten_timeout_s=1.0),
              until="10:30", speed=60, env=ALPACA_ENV)
    cli.wait_for("the position and its exits", lambda st: holding(st) and len(st["open_orders"]) == 2)
    alpaca.auto_fill = False  # the market sell will rest unfilled
    cli.proc.send_signal(signal.SIGTERM)
    code, summary, err = cli.finish()
    assert code == 5, err[-3000:]
    assert summary["shutdown_incomplete"]["positions"] == {"AAA": 1785}
    assert [b for b in alpaca.bodies if b["type"] == "market" and b["side"] == "sell"]  # it was sent
    alerts = {r["key"]: r["payload"]["severity"] for r in journal_rows(cli.journal_url, "alert")}
    assert alerts.get("shutdown_incomplete") == "critical"


def test_paper_sigterm_with_flatten_on_shutdown_exits_flat(tmp_path: Path) -> None:
    cli = Cli(tmp_path, {"flatten_on_shutdown": True}, until="10:30", speed=60, env={})
    cli.wait_for("the position and its exits", lambda st: holding(st) and len(st["open_orders"]) == 2)
    cli.proc.send_signal(signal.SIGTERM)
    code, summary, err = cli.finish()
    assert code == 0, err[-3000:]
    assert summary["final_positions"] == {}
    fills = [f["payload"] for f in journal_rows(cli.journal_url, "fill")]
    assert [(f["side"], f["qty"], f["role"]) for f in fills] == [("buy", 1785, "entry"), ("sell", 1785, "eod")]
