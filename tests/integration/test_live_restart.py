"""A live session survives kill -9 (issue 3, crash recovery with a real broker and a live feed).

The runner is the real CLI (`python -m live_runner run`) in its own process, trading the gapper
of test_end_to_end_fakes from the fake Polygon (websocket + REST) to the fake TWS (ib_async on
the real wire protocol). It is killed with SIGKILL while it holds 1785 GAPR with its stop and
target working at IB; while it is down the target fills at IB. The restarted runner must:
- read its state back from the journal (the position, the working exits, the day's signal);
- warm up on the day's bars from Polygon's REST without re-entering or sending anything stale;
- find its orders at IB by orderRef (never send them again), record the fill it missed, close
  the trade (exit reason "target"), cancel the stop, and reconcile flat with IB;
and a restart facing a position at IB that the journal cannot explain halts trading and alerts.

The subprocess reads the fake market clock from a file (sitecustomize in a temp dir), since the
live feed's clock is injected: there is no other way to make 2024-03-15 09:33 "now" for it. The
Alpaca client's wall clock (its adoption listing's bound) reads the same file.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any, Callable

import pytest
import yaml

from live_runner.persistence.journal import Journal
from tests.integration.test_data_failover import DAY, serve_session
from tests.kit.fake_polygon import FakeMarketClock, FakePolygon
from tests.kit.fake_tws import FakeTws
from tests.kit.sessions import et_ns, gapper

pytestmark = pytest.mark.timeout(180)
ROOT = Path(__file__).resolve().parents[2]

SITECUSTOMIZE = '''
import os
_path = os.environ.get("TEST_MARKET_CLOCK_FILE")
if _path:
    import live_runner.live.feeds as _feeds
    _orig = _feeds.build_live_feed

    def _market_now() -> int:
        with open(_path) as f:
            return int(f.read())

    def build_live_feed(config, environ, symbols, *, market_now=None, yahoo_session=None):
        return _orig(config, environ, symbols, market_now=_market_now, yahoo_session=yahoo_session)

    _feeds.build_live_feed = build_live_feed

    # The fake Alpaca stamps its orders on the market clock: the client's wall clock (the bound of
    # its adoption listing) must read the same time, as the real one does at the real Alpaca.
    import live_runner.adapters.alpaca.client as _alpaca
    _alpaca_init = _alpaca.AlpacaExecutionClient.__init__

    def _init(self, *args, **kwargs):
        kwargs.setdefault("wall_clock", _market_now)
        _alpaca_init(self, *args, **kwargs)

    _alpaca.AlpacaExecutionClient.__init__ = _init
'''


class FileClock(FakeMarketClock):
    """The fakes' market clock, mirrored to a file the runner process reads."""

    def __init__(self, path: Path, now_ns: int) -> None:
        self.path = path
        super().__init__(now_ns)
        self._write()

    def set(self, ns: int) -> None:
        super().set(ns)
        self._write()

    def _write(self) -> None:
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(str(self.now_ns()))
        os.replace(tmp, self.path)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_until(cond: Callable[[], Any], what: str, timeout: float = 90.0,
               proc: subprocess.Popen | None = None) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = cond()
        if value:
            return value
        if proc is not None and proc.poll() is not None:
            out, err = proc.communicate()
            raise AssertionError(f"runner exited ({proc.returncode}) waiting for {what}:\n{err[-4000:]}")
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.02)


class Runner:
    """`python -m live_runner run` against the fakes, with its ops server on a known port."""

    def __init__(self, tmp: Path, cfg: dict[str, Any], env: dict[str, str]) -> None:
        self.cfg_path = tmp / "runner.yaml"
        self.cfg_path.write_text(yaml.safe_dump(cfg))
        self.port = cfg["ops"]["port"]
        self.env = env
        self.proc: subprocess.Popen | None = None

    def start(self) -> "Runner":
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "live_runner", "run", "--config", str(self.cfg_path), "--mode", "paper",
             "--json"], cwd=ROOT, env=self.env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        return self

    def status(self) -> dict[str, Any] | None:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/status", timeout=2) as r:
                return json.loads(r.read())
        except OSError:
            return None

    def wait(self, cond: Callable[[dict[str, Any]], bool], what: str, timeout: float = 90.0) -> dict[str, Any]:
        def check() -> dict[str, Any] | None:
            st = self.status()
            return st if st is not None and cond(st) else None
        return wait_until(check, what, timeout, self.proc)

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)
        self.proc.communicate()

    def finish(self) -> dict[str, Any]:
        assert self.proc is not None
        out, err = self.proc.communicate(timeout=60)
        assert self.proc.returncode == 0, err[-4000:]
        return json.loads(out.strip().splitlines()[-1])


@pytest.fixture()
def market(tmp_path: Path):  # type: ignore[no-untyped-def]
    s = gapper()
    clock = FileClock(tmp_path / "market_clock", et_ns(DAY, "09:30"))
    tws = asyncio.run(FakeTws(market_fill=False).start())  # market orders fill at the next bar's open
    try:
        with FakePolygon(clock=clock) as poly:
            today = serve_session(s, poly, None)
            (tmp_path / "site").mkdir()
            (tmp_path / "site" / "sitecustomize.py").write_text(SITECUSTOMIZE)
            cfg = {
                "universe": ["GAPR"], "active_strategies": ["gap_and_go"], "primary_broker": "ibkr",
                "ibkr": {"host": "127.0.0.1", "port": tws.port, "client_id": 7, "account": "DU123",
                         "connect_timeout_s": 5.0, "reconnect_initial_s": 0.05, "reconnect_max_s": 0.2,
                         "commission_wait_s": 0.3, "order_id_state": str(tmp_path / "ibkr_ids.json")},
                "primary_data_provider": "polygon", "polygon": poly.config(stale_after_s=30.0),
                "journal": {"url": f"sqlite:///{tmp_path / 'journal.db'}", "batch_size": 1000},
                "ops": {"port": free_port()}, "log_dir": None,
            }
            env = {**os.environ, "POLYGON_API_KEY": poly.api_key, "TEST_MARKET_CLOCK_FILE": str(clock.path),
                   "PYTHONPATH": os.pathsep.join([str(tmp_path / "site"), str(ROOT)])}
            yield {"s": s, "clock": clock, "tws": tws, "poly": poly, "today": today, "cfg": cfg, "env": env}
    finally:
        asyncio.run(tws.stop())


def warmed_up(m: dict[str, Any], runner: Runner) -> None:
    """The runner is up and has warmed up on the REST seed (everything before 09:30)."""
    seeded = sum(1 for b in m["s"].bars if b.ts < et_ns(DAY, "09:30"))
    runner.wait(lambda st: st["bars_processed"] == seeded, "the warm-up", timeout=60)


def play_minute(m: dict[str, Any], runner: Runner, hhmm: str) -> dict[str, Any]:
    """IB trades the minute (fills at its prices), then Polygon sends its bar; returns the runner's
    status once it has handled it."""
    ts = et_ns(DAY, hhmm)
    for b in (b for b in m["today"] if b.ts == ts):
        m["tws"].trade_bar(b.symbol, b.open, b.high, b.low, b.close, b.ts)
    done = sum(1 for b in m["s"].bars if b.ts <= ts)
    m["poly"].play([b for b in m["today"] if b.ts == ts], 0.0).result(10)
    return runner.wait(lambda st: st["bars_processed"] >= done, f"the {hhmm} bar")


def journal_rows(cfg: dict[str, Any], kinds: tuple[str, ...] | None = None) -> list[dict[str, Any]]:
    j = Journal(cfg["journal"]["url"])
    try:
        return j.read(kinds=kinds)
    finally:
        j.close()


def lose_journal_after_entry_fill(cfg: dict[str, Any]) -> None:
    """What a crash can do to the journal's tail: every event after the entry fill is gone."""
    j = Journal(cfg["journal"]["url"])
    try:
        entry_fill = next(e["seq"] for e in j.read(kinds=("fill",)))
        with j.engine.begin() as conn:
            conn.exec_driver_sql("DELETE FROM journal_events WHERE seq > ?", (entry_fill,))
    finally:
        j.close()


def trade_until_killed_in_position(m: dict[str, Any], tmp_path: Path) -> None:
    """Run 1: the break at 09:31, the entry filled at the 09:32 open, the stop and target working
    at IB; kill -9. Then, while the runner is down, the 09:33 bar trades through the target."""
    runner = Runner(tmp_path, m["cfg"], m["env"]).start()
    warmed_up(m, runner)
    for hhmm in ("09:30", "09:31"):
        play_minute(m, runner, hhmm)
    # The 09:31 break's market order must be at IB before IB trades 09:32 (on a loaded machine it
    # can still be on its way when the runner reports the bar handled).
    wait_until(lambda: any(o.action == "BUY" for o in m["tws"].orders), "the entry at IB")
    play_minute(m, runner, "09:32")
    st = runner.wait(lambda st: len(st["open_orders"]) == 2 and st["positions"], "the exits at IB")
    assert [(p["symbol"], p["qty"]) for p in st["positions"]] == [("GAPR", 1785)]
    wait_until(lambda: len(journal_rows(m["cfg"], ("order",))) == 3, "the journal to hold the orders")
    runner.kill()
    bar = next(b for b in m["today"] if b.ts == et_ns(DAY, "09:33"))
    assert m["tws"].trade_bar(bar.symbol, bar.open, bar.high, bar.low, bar.close, bar.ts) == 1
    m["clock"].set(et_ns(DAY, "09:34"))


def assert_one_target_trade_and_nothing_resent(summary: dict[str, Any], tws: FakeTws) -> None:
    (trade,) = summary["trades"]  # as if nothing had happened: entry 11.25, target 11.95
    assert (trade["qty"], trade["entry_price"], trade["exit_price"], trade["exit_reason"]) == (
        1785, 11.25, 11.95, "target")
    assert trade["pnl"] == "1237.00"  # 0.70 * 1785 - 12.50 of IB commissions
    assert summary["final_positions"] == {}
    refs = [o.order_ref for o in tws.orders]  # IB saw each order once: no re-send, no new entry
    assert len(refs) == 3 and len(set(refs)) == 3 and len(tws.messages(3)) == 3
    stop = next(o for o in tws.orders if o.order_type == "STP")
    assert stop.status == "Cancelled"  # the restarted runner canceled the orphaned stop


def test_killed_in_a_position_the_restart_recovers_the_fill_made_while_down(market: dict[str, Any],
                                                                            tmp_path: Path) -> None:
    m, tws = market, market["tws"]
    trade_until_killed_in_position(m, tmp_path)

    runner = Runner(tmp_path, m["cfg"], m["env"]).start()
    st = runner.wait(lambda st: "restart" in st and not st["positions"] and not st["open_orders"],
                     "the restart to settle with IB", timeout=60)
    restart = st["restart"]
    assert restart["restart"] == 1 and restart["positions"] == {"GAPR": 1785}
    assert len(restart["open_orders"]) == 2
    assert restart["warmup"]["signals"] == {"accepted_before": 1}  # the 09:31 break: not re-entered
    assert any(a["key"] == "runner_restarted" and "GAPR" in a["message"] for a in st["alerts"])
    assert st["trading_state"] == "active"
    m["clock"].set(et_ns(DAY, "20:00"))  # the day is over: the feed ends, the runner exits 0
    summary = runner.finish()
    assert_one_target_trade_and_nothing_resent(summary, tws)
    # the journal holds each IB execution once, the missed one recorded by the restarted runner
    fills = journal_rows(m["cfg"], ("fill",))
    assert sorted(f["payload"]["exec_id"] for f in fills) == sorted(ex.exec_id for ex in tws.executions)
    kinds = [e["kind"] for e in journal_rows(m["cfg"])]
    assert kinds.count("restart") == 1 and kinds.count("session_start") == 1
    assert kinds.count("trade") == 1 and kinds.count("signal") == 1


def test_a_position_at_ib_the_journal_cannot_explain_halts_the_restart(market: dict[str, Any],
                                                                      tmp_path: Path) -> None:
    m, tws = market, market["tws"]
    runner = Runner(tmp_path, m["cfg"], m["env"]).start()
    warmed_up(m, runner)
    play_minute(m, runner, "09:30")
    runner.kill()
    # someone bought 500 GAPR by hand in the account while the runner was down
    tws._sync(lambda: tws.positions.__setitem__(("DU123", "GAPR"), [500.0, 5450.0]))
    m["clock"].set(et_ns(DAY, "09:31"))

    runner = Runner(tmp_path, m["cfg"], m["env"]).start()
    runner.wait(lambda st: "restart" in st, "the restart", timeout=60)
    play_minute(m, runner, "09:31")  # the first live bar: reconciliation runs, then the break
    st = runner.wait(lambda st: st["trading_state"] == "halted", "the halt")
    assert any(a["key"] == "reconciliation_mismatch" for a in st["alerts"])
    assert st["positions"] == [] and st["risk_denials"] == {"HALTED": 1}
    m["clock"].set(et_ns(DAY, "20:00"))
    summary = runner.finish()
    assert summary["trades"] == [] and len(tws.orders) == 0  # the break was not traded
    mismatch = journal_rows(m["cfg"], ("reconciliation",))
    assert mismatch[0]["payload"]["diff"] == {"GAPR": {"runner": 0, "broker": 500}}


def test_orders_the_crash_kept_out_of_the_journal_are_adopted_from_ib(market: dict[str, Any],
                                                                      tmp_path: Path) -> None:
    m, tws = market, market["tws"]
    trade_until_killed_in_position(m, tmp_path)
    lose_journal_after_entry_fill(m["cfg"])  # the stop and target orders' events too

    runner = Runner(tmp_path, m["cfg"], m["env"]).start()
    st = runner.wait(lambda st: "restart" in st and not st["positions"] and not st["open_orders"],
                     "the adoption and the missed fill", timeout=60)
    assert st["restart"]["open_orders"] == [] and st["restart"]["positions"] == {"GAPR": 1785}
    assert {a["key"].split(":")[0] for a in st["alerts"]} >= {"order_adopted"}
    m["clock"].set(et_ns(DAY, "20:00"))
    summary = runner.finish()
    assert_one_target_trade_and_nothing_resent(summary, tws)
    adopted = [e for e in journal_rows(m["cfg"], ("order",)) if e["payload"].get("adopted")]
    assert sorted((e["payload"]["role"], e["payload"]["strategy"]) for e in adopted) == [
        ("stop", "gap_and_go"), ("target", "gap_and_go")]
    assert not any(e["kind"] == "reconciliation" for e in journal_rows(m["cfg"]))


def test_the_paper_broker_keeps_its_book_across_a_live_restart(market: dict[str, Any], tmp_path: Path) -> None:
    """Paper trading on the live feed: the embedded broker's own log (`paper.state_url`) is
    continued too; its working exits rest again after the restart and fill on the next live bar."""
    m = market
    cfg = {**m["cfg"], "primary_broker": "paper", "paper": {"state_url": f"sqlite:///{tmp_path / 'paper.db'}"}}
    runner = Runner(tmp_path, cfg, m["env"]).start()
    warmed_up(m, runner)
    for hhmm in ("09:30", "09:31", "09:32"):
        play_minute(m, runner, hhmm)
    runner.wait(lambda st: len(st["open_orders"]) == 2 and st["positions"], "the exits")
    wait_until(lambda: len(journal_rows(cfg, ("order",))) == 3, "the journal to hold the orders")
    runner.kill()
    m["clock"].set(et_ns(DAY, "09:33"))

    runner = Runner(tmp_path, cfg, m["env"]).start()
    st = runner.wait(lambda st: "restart" in st, "the restart", timeout=60)
    assert [(p["symbol"], p["qty"]) for p in st["positions"]] == [("GAPR", 1785)]
    assert len(st["open_orders"]) == 2 and st["trading_state"] == "active"  # reconciled: equal
    play_minute(m, runner, "09:33")  # the target trades on the live bar
    runner.wait(lambda st: not st["positions"] and not st["open_orders"], "the target fill")
    m["clock"].set(et_ns(DAY, "20:00"))
    summary = runner.finish()
    (trade,) = summary["trades"]
    assert (trade["qty"], trade["entry_price"], trade["exit_price"], trade["exit_reason"]) == (
        1785, 11.25, 11.95, "target")
    orders = journal_rows(cfg, ("order",))
    assert len(orders) == 3 and len({e["key"] for e in orders}) == 3  # entry, stop, target: once each


@pytest.fixture()
def alpaca_rig(market: dict[str, Any]):  # type: ignore[no-untyped-def]
    """The fake Alpaca on the market clock, filling only by hand, and the runner's config for it."""
    from tests.kit.fake_alpaca import KEY, SECRET, FakeAlpaca

    alpaca = FakeAlpaca(clock=market["clock"].now_ns).start()
    alpaca.auto_fill = False
    try:
        cfg = {**market["cfg"], "primary_broker": "alpaca",
               "alpaca": {"base_url": alpaca.base_url, "stream_url": alpaca.stream_url,
                          "request_timeout_s": 2.0}}
        yield {"alpaca": alpaca, "cfg": cfg,
               "env": {**market["env"], "APCA_API_KEY_ID": KEY, "APCA_API_SECRET_KEY": SECRET}}
    finally:
        alpaca.stop()


def alpaca_entry_sent(m: dict[str, Any], alpaca: Any, cfg: dict[str, Any], env: dict[str, str],
                      tmp_path: Path) -> tuple[Runner, str]:
    """Run 1 up to the 09:31 break: its market entry is at Alpaca, unfilled."""
    runner = Runner(tmp_path, cfg, env).start()
    warmed_up(m, runner)
    for hhmm in ("09:30", "09:31"):
        play_minute(m, runner, hhmm)
    entry = runner.wait(lambda st: len(st["open_orders"]) == 1, "the entry")["open_orders"][0]["client_order_id"]
    wait_until(lambda: alpaca.order(entry), "the entry to reach Alpaca")
    return runner, entry


def test_alpaca_an_entry_partly_filled_before_the_crash_is_completed_not_double_counted(
        market: dict[str, Any], alpaca_rig: dict[str, Any], tmp_path: Path) -> None:
    """Alpaca reports cumulative fills (exec id = order id : cumulative qty). The restarted runner
    tells it what the journal holds, so the rest of the entry arrives as the 785 shares it is, the
    exits are re-sized to 1785 with new ids (one replace of the OCO), and nothing is sent twice."""
    m, alpaca, cfg, env = market, alpaca_rig["alpaca"], alpaca_rig["cfg"], alpaca_rig["env"]
    runner, entry = alpaca_entry_sent(m, alpaca, cfg, env, tmp_path)
    alpaca.fill(entry, 1000, 11.25)
    runner.wait(lambda st: len(st["open_orders"]) == 3 and st["positions"], "exits for 1000")
    wait_until(lambda: len(journal_rows(cfg, ("order",))) == 3, "the journal to hold the exits")
    runner.kill()
    alpaca.fill(entry, 785, 11.25)  # the rest fills while the runner is down

    runner = Runner(tmp_path, cfg, env).start()
    st = runner.wait(lambda st: "restart" in st and st["positions"] and st["positions"][0]["qty"] == 1785
                     and len(st["open_orders"]) == 2, "the rest of the entry and new exits", timeout=60)
    assert st["trading_state"] == "active"  # reconciled with Alpaca's 1785: no mismatch
    assert {o["qty"] for o in st["open_orders"]} == {1785}
    assert all("R1-" in o["client_order_id"] for o in st["open_orders"])
    runner.proc.send_signal(signal.SIGTERM)  # keep the position (flatten_on_shutdown: false)
    runner.finish()
    fills = journal_rows(cfg, ("fill",))
    assert [(f["payload"]["qty"], f["payload"]["exec_id"].split(":")[1]) for f in fills] == [
        (1000, "1000"), (785, "1785")]
    assert alpaca.position_qty() == {"GAPR": 1785}
    posted = [b["client_order_id"] for b in alpaca.bodies]
    assert len(posted) == len(set(posted)) == 2  # entry, the OCO for 1000 (then replaced)
    assert len(alpaca.patches) == 1 and alpaca.book.cancels == []
    assert alpaca.order(posted[1])["status"] == "replaced"
    assert alpaca.book.refused == [] and alpaca.book.violations == []


def test_alpaca_exits_the_crash_kept_out_of_the_journal_are_adopted(market: dict[str, Any],
                                                                     alpaca_rig: dict[str, Any],
                                                                     tmp_path: Path) -> None:
    m, alpaca, cfg, env = market, alpaca_rig["alpaca"], alpaca_rig["cfg"], alpaca_rig["env"]
    runner, entry = alpaca_entry_sent(m, alpaca, cfg, env, tmp_path)
    alpaca.fill(entry, 1785, 11.25)
    runner.wait(lambda st: len(st["open_orders"]) == 2 and st["positions"], "the exits")
    wait_until(lambda: len(alpaca.bodies) == 2 and len(journal_rows(cfg, ("order",))) == 3, "the exits")
    runner.kill()
    lose_journal_after_entry_fill(cfg)
    alpaca.set_price("GAPR", 11.95)  # the target fills while the runner is down

    runner = Runner(tmp_path, cfg, env).start()
    st = runner.wait(lambda st: "restart" in st and not st["positions"] and not st["open_orders"],
                     "the adoption and the target fill", timeout=60)
    assert st["trading_state"] == "active"
    m["clock"].set(et_ns(DAY, "20:00"))
    summary = runner.finish()
    (trade,) = summary["trades"]
    assert (trade["qty"], trade["exit_price"], trade["exit_reason"]) == (1785, 11.95, "target")
    adopted = sorted(e["payload"]["role"] for e in journal_rows(cfg, ("order",)) if e["payload"].get("adopted"))
    assert adopted == ["stop", "target"]
    posted = [b["client_order_id"] for b in alpaca.bodies]
    assert len(posted) == 2  # nothing re-sent: the entry and one OCO
    oco = next(b["client_order_id"] for b in alpaca.bodies if b.get("order_class") == "oco")
    assert alpaca.order(oco)["legs"][0]["status"] == "canceled" and alpaca.position_qty() == {}


def test_alpaca_an_emergency_stop_cut_short_by_a_crash_is_finished_after_restart(
        market: dict[str, Any], alpaca_rig: dict[str, Any], tmp_path: Path) -> None:
    """An emergency stop answered 200 is durable: the runner is killed while Alpaca still holds
    the exits' cancel (pending), so no flatten was sold yet. The restart comes back HALTED,
    learns the cancel was confirmed meanwhile, and finishes the flatten: flat at the broker,
    one market sell, nothing sent twice."""
    from tests.kit.live import TOKEN, http_call

    m, alpaca = market, alpaca_rig["alpaca"]
    cfg = {**alpaca_rig["cfg"], "ops": {**alpaca_rig["cfg"]["ops"], "token_env": "TEST_CONTROL_TOKEN"}}
    env = {**alpaca_rig["env"], "TEST_CONTROL_TOKEN": TOKEN}
    runner, entry = alpaca_entry_sent(m, alpaca, cfg, env, tmp_path)
    alpaca.fill(entry, 1785, 11.25)
    runner.wait(lambda st: len(st["open_orders"]) == 2 and st["positions"], "the exits")
    alpaca.book.cancel_delay_ns = 3_600 * 10**9  # Alpaca holds the cancel pending
    code, body = http_call(runner.port, "POST", "/control/emergency_stop", token=TOKEN, body={"operator": "ana"})
    assert code == 200 and body["durable"] is True
    wait_until(lambda: alpaca.book.cancels, "the cancel request at Alpaca")
    runner.kill()
    market_sells = lambda: [b for b in alpaca.bodies if b["side"] == "sell" and b["type"] == "market"]  # noqa: E731
    assert market_sells() == [] and alpaca.position_qty() == {"GAPR": 1785}  # still waiting: nothing sold

    m["clock"].set(et_ns(DAY, "10:40"))  # an hour later the cancel is confirmed, the runner still down
    alpaca.tick()
    runner = Runner(tmp_path, cfg, env).start()
    runner.wait(lambda st: "restart" in st and st["trading_state"] == "halted", "the restart, halted", timeout=60)
    wait_until(lambda: market_sells(), "the flatten to reach Alpaca")
    [sell] = market_sells()
    assert int(sell["qty"]) == 1785
    alpaca.fill(sell["client_order_id"], 1785, 11.30)
    st = runner.wait(lambda st: not st["positions"] and not st["open_orders"], "flat")
    assert st["trading_state"] == "halted" and alpaca.position_qty() == {}
    posted = [b["client_order_id"] for b in alpaca.bodies]
    assert len(posted) == len(set(posted)) == 3  # entry, the OCO, the flatten: each once
    assert alpaca.book.refused == [] and alpaca.book.violations == []
    runner.proc.send_signal(signal.SIGTERM)
    runner.finish()
