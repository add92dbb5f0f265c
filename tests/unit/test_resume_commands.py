"""Operator commands survive a restart: a resumed run re-applies them where the journal has them,
and rebalance trims oversize positions as well as closing the newest beyond max_positions."""

from __future__ import annotations

from pathlib import Path

import sqlalchemy as sa

from live_runner.core.config import parse_config
from live_runner.persistence.journal import Journal, dump
from live_runner.live.node import TradingNode
from tests.kit.sessions import SessionBuilder


def session() -> SessionBuilder:
    s = SessionBuilder()
    for sym, base in (("AAA", 10.0), ("BBB", 8.0)):
        s.prev_close(sym, base)
        s.bar(sym, "08:00", base * 1.05, base * 1.08, base * 1.04, base * 1.07, 40_000)
        s.bar(sym, "09:00", base * 1.07, base * 1.10, base * 1.06, base * 1.09, 40_000)
        s.bar(sym, "09:30", base * 1.09, base * 1.10, base * 1.08, base * 1.095, 50_000)
        s.bar(sym, "09:31", base * 1.095, base * 1.13, base * 1.09, base * 1.12, 60_000)
        s.flat(sym, "09:32", "10:30", round(base * 1.12, 2), 20_000)
    return s


def run(url: str, bars: list, pause_at: int, stop_after: int | None = None) -> None:
    cfg = parse_config({"active_strategies": ["gap_and_go"], "journal": {"batch_size": 1}})
    journal = Journal(url, batch_size=1)
    node = TradingNode(cfg, journal)
    node.start()
    for i, bar in enumerate(bars):
        if stop_after is not None and i == stop_after:
            journal.flush()  # a crash: nothing closed, only what was written survives
            journal.engine.dispose()
            return
        if i == pause_at and not journal.resuming:
            node.command("pause_trading", source="http:127.0.0.1:ana")
        node.data.on_bar(bar)
    node.stop()
    journal.close()


def test_a_paused_session_resumes_paused(tmp_path: Path) -> None:
    bars = session().sorted_bars()
    pause_at = next(i for i, b in enumerate(bars) if b.symbol == "AAA" and b.ts == bars[-1].ts) - 100
    run(f"sqlite:///{tmp_path}/a.db", bars, pause_at)
    run(f"sqlite:///{tmp_path}/b.db", bars, pause_at, stop_after=pause_at + 10)
    run(f"sqlite:///{tmp_path}/b.db", bars, pause_at)  # resumes: the pause is re-applied, not lost
    a = dump(sa.create_engine(f"sqlite:///{tmp_path}/a.db"))
    b = dump(sa.create_engine(f"sqlite:///{tmp_path}/b.db"))
    assert [r[3] for r in a].count("command") == 1
    assert a == b


def test_rebalance_trims_a_position_above_the_size_limit() -> None:
    s = session()
    cfg = parse_config({"active_strategies": ["gap_and_go"]})
    node = TradingNode(cfg, Journal("sqlite://"))
    node.start()
    bars = s.sorted_bars()
    from tests.kit.sessions import et_ns

    cut = next(i for i, b in enumerate(bars) if b.ts >= et_ns(s.day, "09:35"))  # both entries filled
    node.feed(bars[:cut])
    held = {sym: p.qty for sym, p in node.portfolio.positions.items()}
    assert set(held) == {"AAA", "BBB"}
    # The limit is lowered at runtime (an operator tightening risk): rebalance trims to it.
    node.config = node.config.model_copy(update={"max_position_size_pct": 0.05})
    node.command("rebalance_portfolio", source="test")
    node.feed(bars[cut:cut + 4])
    equity = node.portfolio.equity()
    for sym, pos in node.portfolio.positions.items():
        assert 0 < pos.qty < held[sym]
        assert pos.qty * pos.last_price <= 0.05 * equity + pos.last_price
        working = [o for o in node.orders.open_orders.values() if o.request.symbol == sym]
        assert sorted(o.request.qty for o in working) == [pos.qty, pos.qty]  # stop and target follow
