"""The journal on real databases (SQLite file in WAL mode, PostgreSQL), and the state derived from it.

Covers append/flush/read, batching (nothing is written before a full batch or a flush; a flush is
one transaction), reopening (the restarted stream is verified against the stored prefix, then seq
carries on), divergence, and `live_runner.persistence.journal_state`: rebuilt from the journal of a real
replay, positions, open orders, realized P&L and commissions equal what the node itself held.
"""

from __future__ import annotations

import contextlib
import itertools
import time
from datetime import date
from decimal import Decimal
from pathlib import Path

import pytest
import sqlalchemy as sa

from live_runner.data import sample_data
from live_runner.adapters.replay import BarFile
from live_runner.ops.alerts import AlertSystem, LogSink
from live_runner.core.clock import SimClock
from live_runner.core.config import parse_config
from live_runner.persistence.journal import Journal, JournalDivergence, dump, iter_events, make_engine
from live_runner.persistence.journal_state import JournalStateError, load_state, rebuild
from live_runner.core.models import Fill, Side
from live_runner.live.node import TradingNode
from live_runner.portfolio.portfolio import Portfolio
from live_runner.live.runs import RunOptions, run_session

POSTGRES = pytest.param("postgres", marks=pytest.mark.postgres)


@pytest.fixture(params=["sqlite", POSTGRES])
def url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'journal.db'}"
    return request.getfixturevalue("pg_schema_url").url


@pytest.fixture(scope="module")
def bars(tmp_path_factory: pytest.TempPathFactory) -> Path:
    df = sample_data.generate(date(2024, 11, 26), sessions=2, symbols=30, seed=3)
    return sample_data.write(df, tmp_path_factory.mktemp("bars"))


def count_rows(url: str) -> int:
    """Rows visible to another connection (committed ones only)."""
    engine = sa.create_engine(url)
    try:
        with engine.connect() as conn:
            if not sa.inspect(conn).has_table("journal_events"):
                return 0
            return conn.execute(sa.text("SELECT count(*) FROM journal_events")).scalar_one()
    finally:
        engine.dispose()


def wait_rows(url: str, n: int, timeout: float = 5.0) -> int:
    deadline = time.monotonic() + timeout
    while (got := count_rows(url)) < n and time.monotonic() < deadline:
        time.sleep(0.01)
    return got


def ev(j: Journal, i: int, kind: str = "signal", session: str = "2024-11-26") -> int:
    return j.append(session, 1_732_600_000_000_000_000 + i, kind, f"K{i}",
                    {"i": i, "price": 10.07 + i, "text": "é\"x"})


# --- append / flush / read ---------------------------------------------------------------------

def test_append_flush_read(url: str) -> None:
    j = Journal(url, batch_size=100)
    try:
        assert [ev(j, i, kind=("signal", "order", "fill")[i % 3]) for i in range(6)] == list(range(1, 7))
        assert j.pending == 6 and count_rows(url) == 0
        j.flush()
        assert j.pending == 0 and count_rows(url) == 6
        rows = j.read()
        assert [r["seq"] for r in rows] == list(range(1, 7))
        assert rows[1] == {"seq": 2, "session": "2024-11-26", "ts": 1_732_600_000_000_000_001,
                           "kind": "order", "key": "K1",
                           "payload": {"i": 1, "price": 11.07, "text": "é\"x"}}
        assert [r["seq"] for r in j.read(kinds=("fill",))] == [3, 6]
        assert j.read(session="2024-11-27") == []
        assert [r["key"] for r in iter_events(j.engine, kinds=("order", "fill"))] == ["K1", "K2", "K4", "K5"]
    finally:
        j.close()


def test_sqlite_file_is_in_wal_mode(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'sub' / 'journal.db'}"
    j = Journal(url)
    try:
        ev(j, 1)
        j.flush()
        with j.engine.connect() as conn:
            assert conn.exec_driver_sql("PRAGMA journal_mode").scalar_one().lower() == "wal"
        assert (tmp_path / "sub" / "journal.db-wal").exists()
    finally:
        j.close()


def test_nothing_written_before_a_full_batch(url: str) -> None:
    j = Journal(url, batch_size=5)
    try:
        for i in range(4):
            ev(j, i)
        assert count_rows(url) == 0 and j.pending == 4
        ev(j, 4)  # the fifth fills the batch: it is written without a flush
        assert wait_rows(url, 5) == 5
        for i in range(5, 8):
            ev(j, i)
        assert wait_rows(url, 8, timeout=0.2) == 5
        j.flush()
        assert count_rows(url) == 8 and j.written == 8
    finally:
        j.close()


def test_flush_is_one_transaction(url: str) -> None:
    j = Journal(url, batch_size=1000)
    commits: list[int] = []
    sa.event.listen(j.engine, "commit", lambda conn: commits.append(1))
    try:
        for i in range(25):
            ev(j, i)
        j.flush()
        # A writer process commits in its own engine, which this listener cannot see: its batch
        # being all or nothing is what the rest of the test checks.
        assert len(commits) == (1 if j.writer == "thread" else 0) and count_rows(url) == 25
        # A row slipped in behind the journal's back makes the 3rd row of the next batch collide:
        # the batch is all or nothing, so none of its rows may be there afterwards.
        engine = sa.create_engine(url)
        with engine.begin() as conn:
            conn.execute(sa.text("INSERT INTO journal_events (seq, session, ts, kind, key, payload) "
                                 "VALUES (28, 'x', 0, 'alert', 'intruder', '{}')"))
        engine.dispose()
        for i in range(25, 30):
            ev(j, i)
        assert j.flush() is False  # the writer fails and retries; flush does not hang on it
        assert "IntegrityError" in (j.health() or "") and j.pending == 5
        assert count_rows(url) == 26
        assert [r[0] for r in dump(j.engine)][-2:] == [25, 28]
    finally:
        with contextlib.suppress(Exception):
            j.close()


# --- reopening and divergence --------------------------------------------------------------------

def test_reopen_verifies_the_prefix_then_continues_seq(url: str) -> None:
    j = Journal(url, batch_size=2)
    for i in range(5):
        ev(j, i)
    j.close()
    before = dump(make_engine(url))

    j2 = Journal(url, batch_size=2)
    try:
        assert j2.recorded_events == 5 and j2.resuming
        assert [ev(j2, i) for i in range(5)] == [1, 2, 3, 4, 5]  # regenerated: verified, not written
        assert j2.verified == 5 and j2.pending == 0 and not j2.resuming
        assert [ev(j2, i) for i in range(5, 8)] == [6, 7, 8]
    finally:
        j2.close()
    after = dump(make_engine(url))
    assert after[:5] == before
    assert [r[0] for r in after] == list(range(1, 9)) and after[7][4] == "K7"


def test_divergence_names_the_seq_and_writes_nothing(url: str) -> None:
    j = Journal(url)
    for i in range(4):
        ev(j, i)
    j.close()
    before = dump(make_engine(url))

    j2 = Journal(url)
    ev(j2, 0)
    ev(j2, 1)
    with pytest.raises(JournalDivergence, match=r"journal event 3 differs") as info:
        j2.append("2024-11-26", 1_732_600_000_000_000_002, "signal", "K2", {"i": 2, "price": 12.08})
    assert "K2" in str(info.value)
    # Sticky: the run cannot carry on past a divergence, even if someone swallowed the first raise.
    with pytest.raises(JournalDivergence, match="journal event 3"):
        ev(j2, 3)
    j2.close()
    assert dump(make_engine(url)) == before


def test_divergence_on_a_swallowed_alert_still_stops_the_run(tmp_path: Path) -> None:
    """The alert system catches journal errors (alerts must not take the trading path down); a
    divergence on an alert event must not let the restarted run write past the stored prefix."""
    url = f"sqlite:///{tmp_path / 'journal.db'}"
    j = Journal(url)
    j.append("2024-11-26", 5, "alert", "feed_stale", {"severity": "warning", "message": "old",
                                                       "component": "node"})
    j.close()
    j2 = Journal(url)
    alerts = AlertSystem([LogSink()], SimClock(5), journal=lambda a: j2.append(
        "2024-11-26", a.ts, "alert", a.key,
        {"severity": a.severity.value, "message": a.message, "component": a.component}))
    try:
        alerts.raise_alert("feed_stale", "warning", "new wording", component="node")  # swallowed
        with pytest.raises(JournalDivergence, match="journal event 1"):
            ev(j2, 1)
    finally:
        alerts.close(1.0)
        j2.close()
    assert count_rows(url) == 1


# --- journal_state -------------------------------------------------------------------------------

def _fill_event(seq: int, session: str, cid: str, side: str, qty: int, price: float, fee: str) -> dict:
    return {"seq": seq, "session": session, "ts": seq, "kind": "fill", "key": cid,
            "payload": {"exec_id": f"{cid}-F{seq}", "symbol": "ABC", "side": side, "qty": qty,
                        "price": price, "commission": fee, "role": "entry", "strategy": "vwap_reclaim"}}


def _order_event(seq: int, cid: str, qty: int, side: str = "buy") -> dict:
    return {"seq": seq, "session": "2024-11-26", "ts": seq, "kind": "order", "key": cid,
            "payload": {"strategy": "vwap_reclaim", "symbol": "ABC", "side": side, "qty": qty,
                        "type": "market", "role": "entry"}}


def test_rebuild_matches_the_portfolio_on_partial_sells() -> None:
    """Average-cost basis, commissions when paid, exact Decimal from the float's repr."""
    fills = [("buy", 100, 10.07, "0.35"), ("buy", 50, 0.1 + 10.0, "0.35"), ("sell", 70, 10.2, "0.35"),
             ("buy", 7, 9.99, "0.35"), ("sell", 41, 10.01, "0.35"), ("sell", 46, 10.0, "0.36")]
    pf = Portfolio(Decimal(100_000))
    events = []
    for seq, (side, qty, price, fee) in enumerate(fills, 1):
        pf.apply_fill(Fill("C", f"E{seq}", "ABC", Side(side), qty, price, Decimal(fee), seq), "vwap_reclaim")
        events.append(_fill_event(seq, "2024-11-26", "C", side, qty, price, fee))
        state = rebuild(events)
        assert state.realized == pf.realized and state.commissions == pf.commissions
        assert {s: (p.qty, p.cost_basis, p.avg_price, p.strategy) for s, p in state.positions.items()} == \
               {s: (p.qty, p.cost_basis, p.avg_price, p.strategy) for s, p in pf.positions.items()}
    assert not state.positions
    # by hand: 714.00 - 1512.00*70/150 = 8.40, then the rest at its average cost ...
    assert state.commissions == Decimal("2.11") and state.sessions["2024-11-26"].realized == pf.realized
    with pytest.raises(JournalStateError, match="exceeds the position"):
        rebuild(events + [_fill_event(7, "2024-11-26", "C", "sell", 1, 10.0, "0.35")])


def test_rebuild_open_orders_and_sessions() -> None:
    s1, s2 = "2024-11-26", "2024-11-27"
    events = [
        _order_event(1, "A", 100), _fill_event(2, s1, "A", "buy", 40, 5.0, "0.35"),  # partial, working
        _order_event(3, "B", 50), _fill_event(4, s1, "B", "buy", 20, 5.0, "0.35"),
        {"seq": 5, "session": s1, "ts": 5, "kind": "order_event", "key": "B",
         "payload": {"status": "canceled", "reason": ""}},
        _order_event(6, "C", 10),
        {"seq": 7, "session": s1, "ts": 7, "kind": "order_event", "key": "C",
         "payload": {"status": "accepted", "reason": ""}},
        _order_event(8, "D", 10),
        {"seq": 9, "session": s1, "ts": 9, "kind": "order_event", "key": "D",
         "payload": {"status": "rejected", "reason": "no"}},
        _order_event(10, "E", 5), _fill_event(11, s1, "E", "buy", 5, 5.0, "0.35"),
        {"seq": 12, "session": s1, "ts": 12, "kind": "trading_state", "key": "reducing",
         "payload": {"from": "active", "reason": "loss"}},
        {"seq": 13, "session": s1, "ts": 13, "kind": "equity", "key": "",
         "payload": {"equity": "99990.25", "cash": "99675.00", "positions": 1}},
        {"seq": 14, "session": s2, "ts": 14, "kind": "session_start", "key": "",
         "payload": {"equity": "99990.25", "early_close": False, "state": "active"}},
        _fill_event(15, s2, "X", "sell", 65, 5.5, "0.35"),
    ]
    state = rebuild(events[:13])
    assert set(state.open_orders) == {"A", "C"} and state.open_orders["A"].remaining == 60
    assert state.orders["B"].status == "canceled" and state.orders["E"].status == "filled"
    assert state.position_qty == {"ABC": 65} and state.trading_state == "reducing"
    assert state.last_equity.equity == Decimal("99990.25") and state.counts["order"] == 5
    state = rebuild(events)
    assert state.position_qty == {} and state.trading_state == "active"
    assert state.sessions[s2].realized == Decimal("32.15")  # 65 * 0.50 - 0.35
    assert state.sessions[s1].realized == Decimal("-1.05") and state.realized == Decimal("31.10")
    assert state.sessions[s1].trading_state == "reducing" and state.sessions[s2].counts["fill"] == 1
    assert {s: p.qty for s, p in state.sessions[s1].positions.items()} == {"ABC": 65}
    assert state.sessions[s2].positions == {} and set(state.sessions[s1].open_orders) == {"A", "C"}


def _rebuilt_equals_summary(state, summary: dict, node: TradingNode) -> None:
    assert state.position_qty == summary["final_positions"] == {}
    assert state.realized == Decimal(summary["realized_pnl"]) == state.trades_pnl
    assert state.commissions == Decimal(summary["commissions"])
    assert len(state.trades) == len(summary["trades"]) > 0
    assert [(t.symbol, t.strategy, t.qty, t.exit_reason, t.pnl, t.commission) for t in state.trades] == [
        (t["symbol"], t["strategy"], t["qty"], t["exit_reason"], Decimal(t["pnl"]), Decimal(t["commission"]))
        for t in summary["trades"]]
    assert state.counts["order"] == summary["orders_submitted"]
    assert state.counts["signal"] == summary["signals"]
    assert state.counts["denial"] == sum(summary["risk_denials"].values())
    assert state.open_orders == {} and node.orders.open_orders == {}
    assert state.trading_state == node.risk.state.value
    for ses in summary["sessions"]:
        rebuilt = state.sessions[ses["date"]]
        assert rebuilt.ended and rebuilt.end == ses
        assert rebuilt.realized == Decimal(ses["realized_pnl"])
        assert sorted(rebuilt.positions) == ses["positions"]
        assert rebuilt.commissions == Decimal(ses["commissions"])
        assert rebuilt.last_equity is None or rebuilt.last_equity.positions >= 0
    assert state.last_equity.equity == Decimal(summary["final_equity"])


def test_rebuilt_replay_journal_matches_the_summary(url: str, bars: Path) -> None:
    nodes: list[TradingNode] = []
    summary = run_session(parse_config({}), RunOptions(bars=bars, journal_url=url), nodes.append)
    state = load_state(url)
    _rebuilt_equals_summary(state, summary, nodes[0])
    assert state.events == count_rows(url)
    first = summary["sessions"][1]["date"]
    upto = load_state(url, session=first)
    assert list(upto.sessions)[-1] == first and upto.realized == sum(
        (Decimal(s["realized_pnl"]) for s in summary["sessions"][:2]), Decimal(0))


def _node_on(url: str, batch_size: int = 64) -> tuple[Journal, TradingNode]:
    journal = Journal(url, batch_size=batch_size)
    node = TradingNode(parse_config({}), journal)
    node.start()
    return journal, node


def test_rebuild_mid_run_equals_the_live_node(bars: Path, tmp_path: Path) -> None:
    """Cut the feed at several points (positions and orders open), flush, rebuild: the journal
    alone gives the node's positions, open orders, realized P&L and commissions exactly."""
    # A first pass finds the bars after which positions with working orders are open.
    journal, node = _node_on("sqlite://", batch_size=100_000)
    busy = []
    for i, bar in enumerate(BarFile(bars).iter_bars(), 1):
        node.data.on_bar(bar)
        if node.portfolio.positions and node.orders.open_orders:
            busy.append(i)
    journal.close()
    node.alerts.close(1.0)
    assert len(busy) > 100, "the sample should hold positions for a while"
    cuts = [busy[int(len(busy) * q)] for q in (0.05, 0.35, 0.65, 0.97)] + [busy[0] - 1]
    for n, cut in enumerate(cuts):
        url = f"sqlite:///{tmp_path / f'cut{n}.db'}"
        journal, node = _node_on(url)
        feed = BarFile(bars).iter_bars()
        node.feed(itertools.islice(feed, cut))
        feed.close()
        journal.flush()
        state = rebuild(iter_events(journal.engine))
        journal.close()
        node.alerts.close(1.0)
        pf = node.portfolio
        assert bool(state.positions) == (n < 4)
        assert {s: (p.qty, p.cost_basis, p.avg_price, p.strategy, p.opened_ts)
                for s, p in state.positions.items()} == {
            s: (p.qty, p.cost_basis, p.avg_price, p.strategy, p.opened_ts) for s, p in pf.positions.items()}
        assert {c: o.remaining for c, o in state.open_orders.items()} == {
            c: o.remaining for c, o in node.orders.open_orders.items()}
        current = state.sessions[node.session_name]
        assert current.realized == pf.realized and current.commissions == pf.commissions
        assert {s: p.qty for s, p in current.positions.items()} == {s: p.qty for s, p in pf.positions.items()}
        assert state.trades_pnl == node.performance.realized_pnl
        assert state.trading_state == node.risk.state.value
