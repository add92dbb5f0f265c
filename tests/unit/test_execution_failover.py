"""ExecutionEngine failover with two paper-like brokers: an order reaches the backup only when the
primary provably did not accept it, never on an ambiguous outcome, and exits stay with the shares."""

from __future__ import annotations

from decimal import Decimal

from live_runner.adapters.paper import PaperExecutionClient
from live_runner.core.config import PaperConfig, parse_config
from live_runner.execution.engine import ExecutionEngine
from live_runner.persistence.journal import Journal
from live_runner.core.models import (
    Bar, Fill, OrderEvent, OrderRequest, OrderRole, OrderStatus, OrderType, Side,
)
from live_runner.live.node import TradingNode
from live_runner.live.runs import summarize
from tests.kit.sessions import SessionBuilder, gapper, et_ns

TS = et_ns("2024-03-15", "10:00")


class FlakyBroker(PaperExecutionClient):
    """The paper broker behind a link that can refuse connections (`mode="refuse"`) or lose the
    answer to a submit (`mode="ambiguous"`: the outcome stays unknown until `resolve`)."""

    def __init__(self, name: str, mode: str = "ok") -> None:
        super().__init__(PaperConfig(commission_per_share=0.0, commission_min=0.0))
        self.name = name
        self.mode = mode
        self.available = True
        self.received: list[str] = []
        self.pending: dict[str, OrderRequest] = {}
        self._na = None

    def set_not_accepted_handler(self, handler) -> None:  # type: ignore[no-untyped-def]
        self._na = handler

    def submit(self, request: OrderRequest) -> None:
        self.received.append(request.client_order_id)
        if self.mode == "refuse":
            self.available = False
            self._na(request, f"{self.name}: connection refused", False)
        elif self.mode == "ambiguous":
            self.pending[request.client_order_id] = request
        else:
            super().submit(request)

    def resolve(self, cid: str, found: bool) -> None:
        """The lookup by client id answers, once the broker is reachable again."""
        req = self.pending.pop(cid)
        if found:
            self._accept(req)
        else:
            self._na(req, f"{self.name}: not found by client id", False)


class Recorder:
    def __init__(self) -> None:
        self.events: list[OrderEvent] = []
        self.fills: list[Fill] = []
        self.alerts: list[tuple[str, str, str]] = []

    def alert(self, key: str, severity: str, message: str) -> None:
        self.alerts.append((key, severity, message))


def engine(primary_mode: str = "ok", backup_mode: str = "ok") -> tuple[ExecutionEngine, FlakyBroker, FlakyBroker, Recorder]:
    rec = Recorder()
    p, b = FlakyBroker("ib", primary_mode), FlakyBroker("alpaca", backup_mode)
    eng = ExecutionEngine(p, b, on_alert=rec.alert)
    eng.connect(rec.events.append, rec.fills.append)
    return eng, p, b, rec


def buy(cid: str, qty: int = 100, sym: str = "AAA") -> OrderRequest:
    return OrderRequest(cid, "s", sym, Side.BUY, qty, OrderType.MARKET, OrderRole.ENTRY, TS)


def sell(cid: str, qty: int = 100, sym: str = "AAA") -> OrderRequest:
    return OrderRequest(cid, "s", sym, Side.SELL, qty, OrderType.MARKET, OrderRole.MANUAL, TS)


def bar(minute: int, px: float = 10.0, sym: str = "AAA") -> Bar:
    return Bar(sym, TS + minute * 60_000_000_000, px, px, px, px, 1e6)


def test_refused_connection_moves_the_order_to_the_backup_once() -> None:
    eng, p, b, rec = engine("refuse")
    eng.submit(buy("E1"))
    eng.on_bar(bar(1))
    assert p.received == ["E1"] and b.received == ["E1"]
    assert [(e.client_order_id, e.status) for e in rec.events] == [("E1", OrderStatus.ACCEPTED)]
    assert [f.qty for f in rec.fills] == [100]
    assert "E1" not in eng.routes and eng.failovers == 1  # filled at the backup: forgotten
    assert eng.positions_by_broker() == {"primary": {}, "backup": {"AAA": 100}}
    assert eng.positions() == {"AAA": 100}
    assert any(k.startswith("order_failover") for k, _, _ in rec.alerts)
    # The primary is known down: the next entry goes straight to the backup, never to the primary.
    assert eng.active is b
    eng.submit(buy("E2", sym="BBB"))
    assert p.received == ["E1"] and b.received == ["E1", "E2"]


def test_an_ambiguous_outcome_is_never_resent() -> None:
    eng, p, b, rec = engine("ambiguous")
    eng.submit(buy("E1"))
    for m in range(1, 30):          # time passes, bars come: the order stays where it is
        eng.on_bar(bar(m))
    assert b.received == [] and rec.events == [] and eng.failovers == 0
    p.mode = "ok"
    p.resolve("E1", found=True)     # the lookup finds it: it was accepted after all
    eng.on_bar(bar(31))
    assert b.received == [] and [f.qty for f in rec.fills] == [100]
    assert eng.positions_by_broker() == {"primary": {"AAA": 100}, "backup": {}}


def test_a_lookup_that_finds_nothing_moves_it_to_the_backup() -> None:
    eng, p, b, rec = engine("ambiguous")
    eng.submit(buy("E1"))
    assert b.received == []
    p.resolve("E1", found=False)
    eng.on_bar(bar(1))
    assert b.received == ["E1"] and [f.qty for f in rec.fills] == [100]
    assert eng.positions() == {"AAA": 100}


def test_not_accepted_at_both_is_rejected_not_retried() -> None:
    eng, p, b, rec = engine("refuse", "refuse")
    eng.submit(buy("E1"))
    assert p.received == ["E1"] and b.received == ["E1"]
    [ev] = rec.events
    assert ev.status is OrderStatus.REJECTED and "not accepted" in ev.reason


def test_exits_go_to_the_broker_holding_the_shares() -> None:
    eng, p, b, rec = engine("refuse")
    eng.submit(buy("E1"))
    eng.on_bar(bar(1))
    p.mode, p.available = "ok", True   # the primary is back: entries go there again
    assert eng.active is p
    eng.submit(sell("X1"))             # ... but the shares are at the backup
    eng.on_bar(bar(2))
    assert p.received == ["E1"] and b.received == ["E1", "X1"]
    assert eng.positions_by_broker() == {"primary": {}, "backup": {}}


def test_an_exit_is_never_moved_to_a_broker_without_the_shares() -> None:
    eng, p, b, rec = engine()
    eng.submit(buy("E1"))
    eng.on_bar(bar(1))                 # 100 at the primary
    p.mode = "refuse"
    eng.submit(sell("X1"))
    assert b.received == []            # selling at the backup would open a short there
    assert rec.events[-1].status is OrderStatus.REJECTED
    assert eng.refused_exits == 1 and any(k.startswith("exit_refused") for k, _, _ in rec.alerts)
    assert eng.positions() == {"AAA": 100}


def test_cancel_follows_the_route() -> None:
    eng, p, b, rec = engine("refuse")
    eng.submit(OrderRequest("L1", "s", "AAA", Side.BUY, 10, OrderType.LIMIT, OrderRole.ENTRY, TS,
                            limit_price=5.0))
    eng.cancel("L1")
    assert rec.events[-1].status is OrderStatus.CANCELED
    assert eng.status()["brokers"]["backup"]["active"] is True




def test_whole_chain_trades_at_the_backup_when_the_primary_refuses() -> None:
    primary, backup = FlakyBroker("ib", "refuse"), FlakyBroker("alpaca")
    node = TradingNode(parse_config({"active_strategies": ["gap_and_go"]}), Journal("sqlite://"),
                       execution_client=primary)
    node.execution.attach_backup(backup)
    node.start()
    node.feed(gapper().sorted_bars())
    node.stop()
    summary = summarize(node, 0.0)
    [trade] = summary["trades"]
    assert trade["exit_reason"] == "target" and trade["qty"] == 1785
    assert Decimal(trade["pnl"]) == Decimal("0.70") * 1785
    assert primary.received == [primary.received[0]]       # the entry, refused, tried once
    assert len(backup.received) == 3                        # entry, stop, target
    assert set(backup.received).isdisjoint(primary.received[1:])
    assert node.execution.positions() == {} and summary["final_positions"] == {}
    assert node.risk.state.value == "active"                # reconciliation found no mismatch
    assert node.execution.routes == {} and node.execution._tried == {}  # done orders forgotten
