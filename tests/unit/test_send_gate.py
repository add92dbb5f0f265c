"""The account-lease fence is each broker client's own gate (GatedSends), not a wrapper patched
over its methods: with the gate shut, no order, exit pair, resize or cancel is sent or even
tracked, by the paper broker, the Alpaca client or the IB client; every send asks the gate by
name. (The lease itself and the service that shuts the gate: tests/integration/test_lease.py.)"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from live_runner.adapters.alpaca import AlpacaExecutionClient
from live_runner.adapters.ibkr.client import IbkrExecutionClient
from live_runner.adapters.paper import PaperExecutionClient
from live_runner.core.clients import GatedSends
from live_runner.core.config import AlpacaConfig, IbkrConfig, PaperConfig
from live_runner.core.models import OrderRequest, OrderRole, OrderType, Side
from live_runner.live.service_lease import LeaseFencing

TS = 1_710_509_400_000_000_000  # 2024-03-15 09:30 ET


def req(cid: str, side: Side = Side.BUY, kind: OrderType = OrderType.MARKET, role: OrderRole = OrderRole.ENTRY,
        **kw: Any) -> OrderRequest:
    return OrderRequest(cid, "test", "ABC", side, 100, kind, role, TS, **kw)


STOP = req("LR-1-stop", Side.SELL, OrderType.STOP, OrderRole.STOP, stop_price=9.5, oco_group="LR-1-target")
TARGET = req("LR-1-target", Side.SELL, OrderType.LIMIT, OrderRole.TARGET, limit_price=11.0,
             oco_group="LR-1-target")


def clients(tmp_path: Path) -> dict[str, Any]:
    # Built, never started: nothing here opens a connection (the ports are unused).
    return {
        "paper": PaperExecutionClient(PaperConfig()),
        "alpaca": AlpacaExecutionClient(AlpacaConfig(base_url="http://127.0.0.1:9"), "key", "secret"),
        "ibkr": IbkrExecutionClient(IbkrConfig(host="127.0.0.1", port=9, account="DU123",
                                               order_id_state=str(tmp_path / "ids.json"))),
    }


@pytest.mark.parametrize("name", ["paper", "alpaca", "ibkr"])
def test_a_shut_gate_sends_and_tracks_nothing(name: str, tmp_path: Path) -> None:
    client = clients(tmp_path)[name]
    assert isinstance(client, GatedSends)
    asked: list[str] = []

    def shut(call: str) -> bool:
        asked.append(call)
        return False

    client.set_send_gate(shut)
    events: list[Any] = []
    client.set_handlers(events.append, events.append)
    client.submit(req("LR-1"))
    client.cancel("LR-1")
    expected = ["submit", "cancel"]
    if hasattr(client, "submit_oco"):
        client.submit_oco(STOP, TARGET)
        expected.append("submit_oco")
    if hasattr(client, "replace_exits"):
        client.replace_exits(STOP.client_order_id, TARGET.client_order_id, STOP, TARGET)
        expected.append("replace_exits")
    assert asked == expected
    assert events == [], "a fenced send was reported as if it had happened"
    tracked = getattr(client, "_orders", None)
    if tracked is not None:
        assert tracked == {}, "a fenced order is tracked as if it had been sent"
    if name == "paper":
        assert client.submitted == 0


def test_an_open_gate_lets_the_paper_broker_accept() -> None:
    client = PaperExecutionClient(PaperConfig())
    client.set_send_gate(lambda call: True)
    events: list[Any] = []
    client.set_handlers(events.append, events.append)
    client.submit(req("LR-1"))
    assert client.submitted == 1 and [e.client_order_id for e in events] == ["LR-1"]


def test_a_client_without_a_gate_is_refused_by_the_lease_not_traded() -> None:
    class Unfenceable:
        name = "homemade"

        def submit(self, request: OrderRequest) -> None: ...

    fencing = LeaseFencing()
    fencing.lease = object()  # type: ignore[assignment]  # any lease: the refusal comes first
    fencing._clients = lambda: [Unfenceable()]  # type: ignore[method-assign]
    with pytest.raises(TypeError, match="homemade.*cannot be fenced"):
        fencing._fence_clients()
