"""OrderManager through a TradingNode: ids, exits, partial fills, duplicate fills, OCO, the order
state machine, and the operator commands (pause, emergency_stop, flatten)."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from live_runner.core.config import parse_config
from live_runner.persistence.journal import Journal
from live_runner.core.models import Fill, OrderEvent, OrderStatus, TradingState
from live_runner.live.node import TradingNode
from live_runner.live.runs import summarize
from tests.kit.sessions import SessionBuilder, et_ns

DAY = "2024-03-15"
GG = {"active_strategies": ["gap_and_go"]}


def gapper(s: SessionBuilder, sym: str = "GAPR", break_at: str = "09:31") -> SessionBuilder:
    """prev close 10.00, pm_high 11.00; flat 10.95 from 09:30 until the bar at `break_at`, which
    closes 11.20 (low 10.90): stop 10.90, qty min(3333, floor(20000 / 11.20)) = 1785; the next
    bar opens 11.25 (target 11.95) and stays inside the exits."""
    s.prev_close(sym, 10.00)
    s.bar(sym, "08:00", 10.5, 10.8, 10.4, 10.7, 30_000)
    s.bar(sym, "09:00", 10.7, 11.0, 10.6, 10.9, 30_000)
    h, m = (int(x) for x in break_at.split(":"))
    before = f"{h:02d}:{m - 1:02d}" if m else f"{h - 1:02d}:59"
    s.flat(sym, "09:30", before, 10.95, 40_000)
    s.bar(sym, break_at, 10.95, 11.3, 10.9, 11.2, 60_000)
    after = f"{h:02d}:{m + 1:02d}" if m < 59 else f"{h + 1:02d}:00"
    s.bar(sym, after, 11.25, 11.4, 11.1, 11.35, 40_000)
    return s


class Stepper:
    """A TradingNode fed in steps, so commands and checks can sit between bars."""

    def __init__(self, s: SessionBuilder, **config: Any) -> None:
        self.node = TradingNode(parse_config({**GG, **config}), Journal("sqlite://"))
        self.node.start()
        self.bars = s.sorted_bars()
        self.i = 0

    def until(self, hhmm: str, day: str = DAY) -> "Stepper":
        """Feed every bar starting at or before hhmm (New York time)."""
        stop = et_ns(day, hhmm)
        j = self.i
        while j < len(self.bars) and self.bars[j].ts <= stop:
            j += 1
        self.node.feed(self.bars[self.i:j])
        self.i = j
        return self

    def finish(self) -> dict:
        self.node.feed(self.bars[self.i:])
        self.node.stop()
        return summarize(self.node, 0.0)

    def orders(self, symbol: str | None = None, role: str | None = None) -> list:
        return [o for o in self.node.orders.orders.values()
                if (symbol is None or o.request.symbol == symbol)
                and (role is None or o.request.role.value == role)]

    def open_exits(self, symbol: str = "GAPR") -> dict[str, Any]:
        out: dict[str, Any] = {}
        for o in self.node.orders.open_orders.values():
            if o.request.symbol == symbol and o.request.role.value in ("stop", "target"):
                assert o.request.role.value not in out, "two working orders of one exit role"
                out[o.request.role.value] = o
        return out

    def events(self, *kinds: str) -> list[dict]:
        self.node.journal.flush()
        return self.node.journal.read(kinds=kinds or None)


def target_session() -> SessionBuilder:
    s = gapper(SessionBuilder())
    s.bar("GAPR", "09:33", 11.4, 12.0, 11.35, 11.9, 40_000)  # target 11.95
    return s


# --- client order ids ------------------------------------------------------------------------

def test_client_order_ids_are_deterministic() -> None:
    run = Stepper(target_session())
    run.finish()
    ids = list(run.node.orders.orders)
    assert ids == ["LR-20240315-GG-GAPR-1", "LR-20240315-GG-GAPR-2", "LR-20240315-GG-GAPR-3"]
    assert [run.node.orders.orders[i].request.role.value for i in ids] == ["entry", "stop", "target"]

    again = Stepper(target_session())
    again.finish()
    assert list(again.node.orders.orders) == ids

    prefixed = Stepper(target_session(), session_id_prefix="PAPER1")
    prefixed.finish()
    assert list(prefixed.node.orders.orders)[0] == "PAPER1-20240315-GG-GAPR-1"


def test_sequence_is_per_session_across_symbols_and_strategies() -> None:
    s = gapper(SessionBuilder(), "GAPR")
    gapper(s, "ABCD")
    run = Stepper(s)
    run.finish()
    assert list(run.node.orders.orders)[:6] == [
        "LR-20240315-GG-ABCD-1", "LR-20240315-GG-GAPR-2",   # 09:31 signals, in symbol order
        "LR-20240315-GG-ABCD-3", "LR-20240315-GG-ABCD-4",   # 09:32 fills: exit pairs
        "LR-20240315-GG-GAPR-5", "LR-20240315-GG-GAPR-6",
    ]
    # vwap_reclaim's code is VR
    v = SessionBuilder()
    v.flat("VWP", "09:30", "09:44", 20.0, 1000)
    for hhmm, o, h, l, c, vol in [("09:45", 20.0, 20.0, 19.7, 19.8, 1000), ("09:46", 19.8, 19.85, 19.6, 19.7, 1000),
                                  ("09:47", 19.7, 19.8, 19.65, 19.75, 1000), ("09:48", 19.75, 20.3, 19.7, 20.2, 2000)]:
        v.bar("VWP", hhmm, o, h, l, c, vol)
    vr = Stepper(v, active_strategies=["vwap_reclaim"], universe=["VWP"])
    vr.finish()
    assert list(vr.node.orders.orders)[0] == "LR-20240315-VR-VWP-1"


def test_orders_are_journaled_before_they_are_sent() -> None:
    run = Stepper(target_session())
    run.finish()
    rows = [(e["kind"], e["key"], e["payload"].get("status")) for e in run.events("order", "order_event")]
    for cid in run.node.orders.orders:
        assert rows.index(("order", cid, None)) < rows.index(("order_event", cid, "accepted"))


# --- exits -----------------------------------------------------------------------------------

def test_exits_are_placed_only_after_the_entry_fill_and_sized_to_the_position() -> None:
    run = Stepper(target_session()).until("09:31")
    [entry] = run.orders()
    assert entry.request.role.value == "entry" and entry.status is OrderStatus.ACCEPTED
    assert run.open_exits() == {}

    run.until("09:32")
    assert entry.status is OrderStatus.FILLED and entry.filled_qty == 1785
    ex = run.open_exits()
    assert (ex["stop"].request.qty, ex["stop"].request.stop_price) == (1785, 10.90)
    assert (ex["target"].request.qty, ex["target"].request.limit_price) == (1785, 11.95)
    assert ex["stop"].request.oco_group == ex["target"].request.oco_group != ""
    assert ex["stop"].status is ex["target"].status is OrderStatus.ACCEPTED
    pos = run.node.portfolio.positions["GAPR"]
    assert (pos.qty, pos.stop, pos.target) == (1785, 10.90, 11.95)
    kinds = [(e["kind"], e["key"]) for e in run.events("fill", "order")]
    assert kinds.index(("fill", entry.client_order_id)) < kinds.index(("order", ex["stop"].client_order_id))


def test_partial_entry_fills_resize_the_exit_pair() -> None:
    """max_participation 1%: 400 shares of a 40,000-share bar. The 1785-share entry fills
    400 @ 11.25, 400 @ 11.35, 400 @ 11.45, 400 @ 11.55, 185 @ 11.65; after each fill the pair is
    replaced by one for the whole position, the target re-based on the average price."""
    s = gapper(SessionBuilder())
    s.bars.pop()  # replace the 09:32 bar
    for hhmm, o in [("09:32", 11.25), ("09:33", 11.35), ("09:34", 11.45), ("09:35", 11.55), ("09:36", 11.65)]:
        s.bar("GAPR", hhmm, o, o + 0.05, o - 0.05, o, 40_000)
    s.bar("GAPR", "09:37", 11.7, 12.6, 11.65, 12.5, 1_000_000)
    run = Stepper(s, paper={"max_participation": 0.01})
    expected = [("09:32", 400, 11.95), ("09:33", 800, 12.10), ("09:34", 1200, 12.25),
                ("09:35", 1600, 12.40), ("09:36", 1785, 12.48)]
    for hhmm, held, target in expected:
        run.until(hhmm)
        assert run.node.portfolio.position_qty("GAPR") == held
        ex = run.open_exits()
        assert ex["stop"].request.qty == ex["target"].request.qty == held, hhmm
        assert ex["stop"].request.stop_price == 10.90
        assert ex["target"].request.limit_price == target, hhmm
    replaced = [o for o in run.orders("GAPR") if o.request.role.value in ("stop", "target")
                and o.status is OrderStatus.CANCELED]
    assert len(replaced) == 8  # four superseded pairs
    summary = run.finish()
    [t] = summary["trades"]
    assert (t["qty"], t["entry_price"], t["exit_price"], t["exit_reason"]) == (1785, 11.4259, 12.48, "target")
    assert t["commission"] == "12.50"  # one 6.25 per order, however many fills
    assert Decimal(t["pnl"]) == Decimal("12.48") * 1785 - Decimal("20395.25") - Decimal("12.50")
    assert summary["final_positions"] == {}


def test_a_fill_delivered_twice_is_counted_once() -> None:
    run = Stepper(target_session())
    om = run.node.orders

    def twice(fill: Fill) -> None:
        om.on_fill(fill)
        om.on_fill(fill)

    run.node.execution.connect(om.on_order_event, twice)
    run.until("09:32")
    assert run.node.portfolio.position_qty("GAPR") == 1785
    assert run.node.portfolio.cash == Decimal("100000") - Decimal("11.25") * 1785 - Decimal("6.25")
    summary = run.finish()
    [t] = summary["trades"]
    assert (t["qty"], t["exit_reason"], Decimal(t["pnl"])) == (1785, "target", Decimal("1237.00"))
    assert om.fills == 2 and om.duplicate_fills == 2
    assert len(run.events("fill")) == 2
    assert Decimal(summary["final_equity"]) == Decimal("101237.00")


def test_a_target_fill_cancels_the_stop() -> None:
    run = Stepper(target_session())
    run.finish()
    stop = run.orders(role="stop")[0]
    target = run.orders(role="target")[0]
    assert target.status is OrderStatus.FILLED and stop.status is OrderStatus.CANCELED
    rows = [(e["kind"], e["key"], e["payload"].get("status")) for e in run.events("fill", "order_event")]
    assert ("order_event", stop.client_order_id, "canceled") in rows
    assert rows.index(("fill", target.client_order_id, None)) < rows.index(
        ("order_event", stop.client_order_id, "canceled"))
    assert run.node.orders.open_orders == {}


def test_the_state_machine_ignores_illegal_transitions() -> None:
    run = Stepper(target_session())
    run.finish()
    target = run.orders(role="target")[0]
    stop = run.orders(role="stop")[0]
    before = run.node.journal.next_seq
    om = run.node.orders
    om.on_order_event(OrderEvent(target.client_order_id, OrderStatus.ACCEPTED, 0))
    om.on_order_event(OrderEvent(target.client_order_id, OrderStatus.CANCELED, 0))
    om.on_order_event(OrderEvent(stop.client_order_id, OrderStatus.ACCEPTED, 0))
    om.on_order_event(OrderEvent("NO-SUCH-ORDER", OrderStatus.CANCELED, 0))
    assert target.status is OrderStatus.FILLED and stop.status is OrderStatus.CANCELED
    assert om.open_orders == {}
    assert run.node.journal.next_seq == before  # nothing journaled


# --- operator commands -----------------------------------------------------------------------

def test_pause_blocks_new_entries_but_exits_still_fill() -> None:
    s = target_session()
    gapper(s, "LATE", break_at="09:40")
    run = Stepper(s).until("09:32")
    run.node.command("pause_trading", source="test")
    summary = run.finish()
    assert [(t["symbol"], t["exit_reason"]) for t in summary["trades"]] == [("GAPR", "target")]
    assert summary["risk_denials"] == {"PAUSED": 1}
    assert run.orders("LATE") == []

    resumed = Stepper(s).until("09:32")
    resumed.node.command("pause_trading")
    resumed.until("09:35")
    resumed.node.command("resume_trading")
    summary = resumed.finish()
    assert sorted(t["symbol"] for t in summary["trades"]) == ["GAPR", "LATE"]
    assert summary["risk_denials"] == {}


def test_emergency_stop_cancels_flattens_and_halts() -> None:
    """At 09:32: GAPR is held with its exit pair, PEND has an entry waiting for the 09:33 open."""
    s = gapper(SessionBuilder())
    s.bar("GAPR", "09:33", 11.6, 11.7, 11.5, 11.6, 40_000)
    s.flat("GAPR", "09:34", "09:45", 11.50, 40_000)
    gapper(s, "PEND", break_at="09:32")
    gapper(s, "LATE", break_at="09:40")
    run = Stepper(s).until("09:32")
    [pending] = run.orders("PEND")
    assert pending.status is OrderStatus.ACCEPTED
    before = dict(run.open_exits())

    result = run.node.command("emergency_stop", source="test")
    assert result["trading_state"] == "halted"
    assert run.node.risk.state is TradingState.HALTED
    assert pending.status is OrderStatus.CANCELED
    assert before["stop"].status is before["target"].status is OrderStatus.CANCELED
    [flat] = run.orders("GAPR", "manual")
    assert flat.request.qty == 1785 and flat.request.order_type.value == "market"
    assert set(run.node.orders.open_orders) == {flat.client_order_id}

    summary = run.finish()
    [t] = summary["trades"]
    assert (t["symbol"], t["exit_reason"], t["exit_price"], t["exit_time"]) == (
        "GAPR", "manual", 11.60, "2024-03-15T13:33:00Z")
    assert Decimal(t["pnl"]) == Decimal("0.35") * 1785 - Decimal("12.50")
    assert run.orders("PEND")[0].filled_qty == 0
    assert run.orders("LATE") == []  # its 09:40 signal was refused
    assert summary["risk_denials"] == {"HALTED": 1}
    assert summary["final_positions"] == {}
    assert run.node.risk.state is TradingState.HALTED
    halted = [e for e in run.events("trading_state")]
    assert [(e["key"], e["payload"]["from"]) for e in halted] == [("halted", "active")]


def test_flatten_one_symbol_leaves_the_others() -> None:
    s = gapper(SessionBuilder(), "GAPR")
    gapper(s, "KEEP")
    s.bar("GAPR", "09:33", 11.6, 11.7, 11.5, 11.6, 40_000)
    s.bar("KEEP", "09:33", 11.3, 11.4, 11.2, 11.3, 40_000)
    s.bar("KEEP", "09:34", 11.3, 11.4, 11.2, 11.32, 40_000)
    run = Stepper(s).until("09:32")
    run.node.command("flatten", source="test", symbol="GAPR")
    assert run.open_exits("GAPR") == {}
    keep = run.open_exits("KEEP")
    run.until("09:33")
    assert run.node.portfolio.position_qty("GAPR") == 0
    assert run.node.portfolio.position_qty("KEEP") == 1785
    assert run.open_exits("KEEP") == keep  # its exit pair untouched
    assert run.node.risk.state is TradingState.ACTIVE
    summary = run.finish()
    trades = {t["symbol"]: t for t in summary["trades"]}
    assert (trades["GAPR"]["exit_reason"], trades["GAPR"]["exit_price"]) == ("manual", 11.60)
    assert (trades["KEEP"]["exit_reason"], trades["KEEP"]["exit_price"]) == ("eod", 11.32)


def two_days() -> SessionBuilder:
    """GAPR trades to its target on 2024-03-14 (last regular close 11.90), then gaps again on
    2024-03-15: premarket 12.90 (high 13.00) on 60k shares, 09:31 closes 13.20 above it."""
    s = SessionBuilder(day="2024-03-14", prev_day="2024-03-13")
    gapper(s)
    s.bar("GAPR", "09:33", 11.4, 12.0, 11.35, 11.9, 40_000)
    day2 = [("08:00", 12.5, 13.0, 12.4, 12.9, 60_000), ("09:30", 12.9, 13.0, 12.8, 12.95, 40_000),
            ("09:31", 12.95, 13.3, 12.9, 13.2, 60_000), ("09:32", 13.25, 13.4, 13.1, 13.35, 40_000)]
    for hhmm, o, h, l, c, v in day2:
        s.bar("GAPR", hhmm, o, h, l, c, v, day="2024-03-15")
    return s


def test_ids_restart_each_session_with_its_date() -> None:
    run = Stepper(two_days())
    summary = run.finish()
    assert len(summary["trades"]) == 2
    entries = [cid for cid, o in run.node.orders.orders.items() if o.request.role.value == "entry"]
    assert "LR-20240315-GG-GAPR-1" in entries
    journal_ids = [e["key"] for e in run.events("order")]
    assert journal_ids[:3] == ["LR-20240314-GG-GAPR-1", "LR-20240314-GG-GAPR-2", "LR-20240314-GG-GAPR-3"]
    assert journal_ids[3] == "LR-20240315-GG-GAPR-1"
    assert len(set(journal_ids)) == len(journal_ids)


def test_halted_after_emergency_stop_stays_halted_the_next_session() -> None:
    run = Stepper(two_days()).until("10:00", day="2024-03-14")
    assert run.node.portfolio.positions == {}
    run.node.command("emergency_stop", source="test")
    summary = run.finish()
    assert len(summary["trades"]) == 1  # day 1 only
    assert summary["risk_denials"] == {"HALTED": 1}  # the 2024-03-15 09:31 signal
    assert run.node.risk.state is TradingState.HALTED


def test_a_flatten_all_order_never_fills_on_a_bar_that_opened_before_it() -> None:
    """AAA gaps through its stop at 09:33 (filled at 7.00: the day's P&L drops below -5%); with
    flatten_on_daily_loss the node flattens BBB and CCC at the close of an earlier symbol's 09:33
    bar (09:34:00). CCC's own 09:33 bar comes later in the feed but opened at 09:33:00, before the
    order existed: both sells fill at the 09:34 opens, never at a 09:33 open."""
    s = gapper(SessionBuilder(), "AAA")
    gapper(s, "BBB")
    gapper(s, "CCC")
    s.bar("AAA", "09:33", 7.0, 7.1, 6.9, 7.0, 40_000)
    s.bar("BBB", "09:33", 11.3, 11.35, 11.2, 11.3, 40_000)
    s.bar("CCC", "09:33", 11.5, 11.6, 11.4, 11.5, 40_000)
    s.bar("BBB", "09:34", 11.1, 11.15, 11.05, 11.1, 40_000)
    s.bar("CCC", "09:34", 11.0, 11.1, 10.95, 11.0, 40_000)
    run = Stepper(s, risk={"flatten_on_daily_loss": True})
    summary = run.finish()
    trades = {t["symbol"]: t for t in summary["trades"]}
    assert (trades["AAA"]["exit_reason"], trades["AAA"]["exit_price"]) == ("stop", 7.0)
    for sym, price in (("BBB", 11.1), ("CCC", 11.0)):
        [flat] = run.orders(sym, "manual")
        assert flat.request.ts == et_ns(DAY, "09:34")
        assert (trades[sym]["exit_reason"], trades[sym]["exit_time"], trades[sym]["exit_price"]) == (
            "manual", "2024-03-15T13:34:00Z", price)
    assert run.node.risk.state is TradingState.REDUCING
