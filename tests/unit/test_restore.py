"""The live restart's state, read back from the journal alone, is the state the runner had.

A sample market is replayed through the real chain (paper broker, SQLite journal); at many points
of the day the journal is flushed and a RestorePlan is built from what it holds. Everything a
restarted runner needs must equal the live node's own state at that point, to the cent: cash,
positions (exact cost basis, stop, target), the day's realized P&L and commissions, start-of-day
equity, the working orders (request, fills by exec id), the open round trips with their exit
orders, the closed trades, the trading state and the pause. Then a node restored from the plan,
warmed up on the same bars, sends nothing and re-enters nothing.
"""

from __future__ import annotations

from datetime import date
from decimal import Decimal
from pathlib import Path

import msgspec
import pytest

from live_runner.data import sample_data
from live_runner.adapters.replay import BarFile
from live_runner.core.calendar import MarketCalendar
from live_runner.core.config import parse_config
from live_runner.persistence.journal import Journal, iter_events
from live_runner.core.models import Bar, OrderEvent, OrderRequest, OrderRole, OrderStatus, Side, TradingState
from live_runner.live.node import TradingNode
from live_runner.recovery.restore import RestorePlan
from tests.kit.manual_broker import ManualBroker

CFG = {"active_strategies": ["gap_and_go", "vwap_reclaim"], "max_positions": 3,
       "journal": {"batch_size": 1}}


@pytest.fixture(scope="module")
def bars(tmp_path_factory: pytest.TempPathFactory) -> list[Bar]:
    out = tmp_path_factory.mktemp("sample")
    path = sample_data.write(sample_data.generate(date(2024, 11, 26), sessions=2, symbols=60, seed=5), out)
    return list(BarFile(path).iter_bars())


def _plan(journal: Journal) -> RestorePlan:
    journal.flush()
    return RestorePlan.from_events(iter_events(journal.engine), Decimal("100000"))


def _open_trades(node: TradingNode) -> dict:
    """The OrderManager's open round trips, exit ids only where the order still works (a filled
    or canceled exit's id is history the restart does not need)."""
    om = node.orders
    out = {}
    for sym, t in om.trades.items():
        ids = {k: (getattr(t, k) if getattr(t, k) in om.open_orders else "")
               for k in ("stop_id", "target_id", "flatten_id", "trim_id")}
        out[sym] = (t.strategy, t.stop, t.target_r, t.entry_ts, t.entry_qty, t.entry_cost, t.exit_qty,
                    t.exit_proceeds, t.commission, t.target, t.exit_ts, ids)
    return out


def _plan_trades(plan: RestorePlan) -> dict:
    return {sym: (t.strategy, t.stop, t.target_r, t.entry_ts, t.entry_qty, t.entry_cost, t.exit_qty,
                  t.exit_proceeds, t.commission, t.target, t.exit_ts,
                  {k: getattr(t, k) for k in ("stop_id", "target_id", "flatten_id", "trim_id")})
            for sym, t in plan.trades.items()}


def test_the_plan_equals_the_live_state_at_every_checkpoint(bars: list[Bar], tmp_path: Path) -> None:
    journal = Journal(f"sqlite:///{tmp_path / 'j.db'}", batch_size=1)
    node = TradingNode(parse_config(CFG), journal, calendar=MarketCalendar())
    node.start()
    checked = with_positions = with_orders = 0
    paused_seen = False
    pause_at, resume_at = len(bars) // 2, len(bars) // 2 + 9000
    for i, bar in enumerate(bars):
        node.data.on_bar(bar)
        if i in (pause_at, resume_at):
            node.command("pause_trading" if i == pause_at else "resume_trading", source="test")
        if i % 997 or node.session is None:
            continue
        plan = _plan(journal)
        pf, om = node.portfolio, node.orders
        assert plan.session == node.session_name and plan.session_open
        assert plan.cash == pf.cash
        assert plan.realized == pf.realized and plan.commissions == pf.commissions
        assert plan.sod_equity == pf.sod_equity
        assert {s: (p.qty, p.cost_basis, p.opened_ts, p.strategy, p.stop, p.target, p.entry_commission)
                for s, p in plan.positions.items()} == {
            s: (p.qty, p.cost_basis, p.opened_ts, p.strategy, p.stop, p.target, p.entry_commission)
            for s, p in pf.positions.items()}
        assert sorted(plan.open_orders) == sorted(om.open_orders)
        for cid, o in plan.open_orders.items():
            live = om.open_orders[cid]
            assert o.request == msgspec.structs.replace(live.request, signal_key="")
            assert (o.status, o.filled_qty, o.exec_ids) == (live.status, live.filled_qty, live.exec_ids)
        assert _plan_trades(plan) == _open_trades(node)
        session_trades = [t for t in node.performance.trades if t.exit_ts >= node.session.premarket_open]
        assert plan.closed_trades == session_trades
        assert (plan.trading_state, plan.paused) == (node.risk.state, node.risk.paused)
        checked += 1
        paused_seen = paused_seen or plan.paused
        with_positions += bool(plan.positions)
        with_orders += bool(plan.open_orders)
    node.stop()
    journal.close()
    assert checked > 80 and with_positions >= 10 and with_orders >= 10  # the checks saw real positions
    assert paused_seen


def test_a_node_restored_mid_session_sends_nothing_on_the_warm_up(bars: list[Bar], tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'j.db'}"
    journal = Journal(url, batch_size=1)
    node = TradingNode(parse_config(CFG), journal, calendar=MarketCalendar())
    node.start()
    day2_start = next(i for i, b in enumerate(bars) if b.ts >= bars[-1].ts - 16 * 3600 * 10**9)
    cut = 0
    for cut, bar in enumerate(bars, 1):  # on day 2, up to a moment with positions and working exits
        node.data.on_bar(bar)
        if cut > day2_start and node.portfolio.positions and len(node.orders.open_orders) >= 2:
            break
    history, rest = bars[:cut], bars[cut:]
    live_positions = {s: p.qty for s, p in node.portfolio.positions.items()}
    live_open = sorted(node.orders.open_orders)
    journal.close()  # the "crash": nothing more is written
    assert live_positions and live_open

    journal = Journal(url, batch_size=1, continue_log=True)
    restarted = TradingNode(parse_config(CFG), journal, calendar=MarketCalendar())
    plan = restarted.restore_from_journal()
    assert plan is not None and plan.journal_positions == live_positions
    sent: list[str] = []
    paper = restarted.execution.primary
    paper.submit = lambda req: sent.append(req.client_order_id)  # type: ignore[method-assign]
    restarted.start()  # the working orders are recovered into the (new) paper book, not sent
    assert sorted(paper._by_id) == live_open
    restarted.begin_warmup(node.session.date)  # day 1 is context; day 2's morning is history
    for bar in history:
        restarted.data.on_bar(bar)
    info = restarted.end_warmup()
    assert sent == [] and info["bars"] > 0
    assert info["signals"].get("not_chased", 0) == 0  # every signal of the morning is in the journal
    assert {s: p.qty for s, p in restarted.portfolio.positions.items()} == live_positions
    assert restarted.orders._id_head.endswith("R1")
    # it trades on from here: new ids cannot collide with the ones sent before the crash
    for bar in rest[:2000]:
        restarted.data.on_bar(bar)
    assert not set(sent) & set(plan.orders)
    assert journal.flush(30), "the journal did not catch up"  # the writer is asynchronous
    kinds = [e["kind"] for e in iter_events(journal.engine)]
    assert kinds.count("restart") == 1
    restarted.stop()
    journal.close()


class _LateAcks(ManualBroker):
    """Holds back its reports of the protective pair (and of recovered orders) until the test
    hands them out: Alpaca's stream may deliver an OCO's `new` after the runner has crashed."""

    def __init__(self) -> None:
        super().__init__()
        self.recovered: list[str] = []

    def _accept(self, req: OrderRequest) -> None:
        if req.role in (OrderRole.STOP, OrderRole.TARGET):
            self.working[req.client_order_id] = req  # taken, not reported yet
            return
        super()._accept(req)

    def recover(self, req: OrderRequest, **_: object) -> None:
        self.working[req.client_order_id] = req
        self.recovered.append(req.client_order_id)

    def report(self, cid: str, status: OrderStatus) -> None:
        self._on_event(OrderEvent(cid, status, 0))


def test_an_emergency_stop_restart_finishes_the_flatten_though_the_pairs_ack_was_lost(tmp_path: Path) -> None:
    """The emergency stop asked the OCO's cancel before its acknowledgement was journaled; after
    the crash the broker reports both legs accepted and canceled. The late `accepted` is not the
    position's pair coming back (the stop took it away): the restart sells the position once,
    and places no new pair that the flatten would have to cancel again."""
    from tests.kit.sessions import SessionBuilder, et_ns
    from tests.unit.test_order_manager import DAY, gapper

    cfg = parse_config({"active_strategies": ["gap_and_go"], "journal": {"batch_size": 1}})
    url = f"sqlite:///{tmp_path / 'j.db'}"
    bars = [b for b in gapper(SessionBuilder(DAY)).sorted_bars() if b.ts <= et_ns(DAY, "09:32")]
    first = _LateAcks()
    node = TradingNode(cfg, Journal(url, batch_size=1), execution_client=first)
    node.start()
    node.feed(bars)
    stop, target = sorted(cid for cid, r in first.working.items() if r.side is Side.SELL)
    node.command("emergency_stop", source="test")
    assert {("cancel", stop), ("cancel", target)} <= set(first.calls) and not first.sells_sent()
    node.journal.close()  # kill -9 while the cancel is pending: the pair's `accepted` never journaled

    broker = _LateAcks()
    broker.position = {"GAPR": 1785}
    journal = Journal(url, batch_size=1, continue_log=True)
    restarted = TradingNode(cfg, journal, execution_client=broker)
    plan = restarted.restore_from_journal()
    assert plan is not None and plan.emergency_stop
    broker.resuming = True  # type: ignore[attr-defined]  # the lookups are on their way
    restarted.start()
    assert sorted(broker.recovered) == [stop, target]
    restarted.begin_warmup(date.fromisoformat(DAY))  # the day before is context
    restarted.feed(bars)
    restarted.end_warmup()
    for cid in (stop, target):  # an hour later the broker confirmed the cancel
        broker.working.pop(cid)
        broker.report(cid, OrderStatus.ACCEPTED)
        broker.report(cid, OrderStatus.CANCELED)
    broker.resuming = False  # type: ignore[attr-defined]
    restarted.reconcile_if_due()
    assert restarted.risk.state is TradingState.HALTED
    assert [c for c in broker.calls if c[0] == "oco"] == []  # no new pair while the stop flattens
    assert [c[3] for c in broker.sells_sent()] == [1785]
    assert not [a for a in restarted.alerts.recent if a.key == "unprotected:GAPR"]
    journal.close()
