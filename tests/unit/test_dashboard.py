"""The dashboard (dashboard/app.py) under Streamlit's own testing API (AppTest).

Inputs are real: a journal written by `python -m live_runner replay` over the sample session, real
runner subprocesses (`run --mode paper --linger`, data cut at 09:40 so they hold positions)
answering /status and /control, and a real PostgreSQL holding the pipeline's per-session schemas.
Each panel and control is checked; the runner dying and coming back with the page open (one
`at.run()` is one refresh); the journal fallback against the runner's last /status, to the cent.
"""

from __future__ import annotations

import re
from collections import Counter
from pathlib import Path

import pandas as pd
import pytest
import sqlalchemy as sa

# `make test` installs the dashboard extra: a missing streamlit is an error, not a skip
from streamlit.testing.v1 import AppTest

from live_runner.persistence.journal import iter_events, make_engine, metadata, events as TABLE  # noqa: E402
from live_runner.persistence.journal_state import load_state  # noqa: E402
from tests.kit import dashboard as kit  # noqa: E402

pytestmark = pytest.mark.timeout(240)
DOWN = "http://127.0.0.1:9"  # nothing listens on the discard port
money = kit.money


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> dict:
    d = tmp_path_factory.mktemp("dash")
    cfg = kit.config(d / "cfg.yaml", batch_size=1000)
    full = kit.bars(d / "full")
    url = f"sqlite:///{d / 'replay.db'}"
    summary = kit.replay(full, url, cfg)
    return {"dir": d, "journal": url, "summary": summary, "full": full,
            "cut": kit.bars(d / "cut", cut_et=kit.CUT_ET)}


@pytest.fixture(scope="module")
def runner(data: dict):
    d = data["dir"]
    with kit.Runner(data["cut"], f"sqlite:///{d / 'runner.db'}", kit.config(d / "cfg_run.yaml"),
                    d / "runner.log") as r:
        r.wait_until(f"{kit.DAY}T14:40:00Z")
        yield r


def app(monkeypatch: pytest.MonkeyPatch, runner_url: str, journal_url: str | None,
        token: str | None = None, pipeline_dir: Path | None = None) -> AppTest:
    monkeypatch.setenv("TRADING_RUNNER_URL", runner_url)
    for name, value in (("TRADING_JOURNAL_URL", journal_url), ("TRADING_CONTROL_TOKEN", token),
                        ("TRADING_PIPELINE_DIR", str(pipeline_dir) if pipeline_dir else None)):
        if value is None:
            monkeypatch.delenv(name, raising=False)
        else:
            monkeypatch.setenv(name, value)
    monkeypatch.setenv("TRADING_OPERATOR", "alice")
    at = AppTest.from_file(str(kit.APP), default_timeout=60)
    return run(at)


def run(at_or_widget) -> AppTest:
    """One refresh of the page (after a widget's interaction, when given one)."""
    at = at_or_widget.run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def metrics(at: AppTest) -> dict[str, str]:
    out: dict[str, str] = {}
    for m in at.metric:
        out.setdefault(m.label, m.value)  # the live tab comes first
    return out


def table(at: AppTest, *cols: str) -> pd.DataFrame:
    """The first dataframe shown with these columns."""
    for df in at.dataframe:
        if set(cols) <= set(df.value.columns):
            return df.value
    raise AssertionError(f"no table with columns {cols}: {[list(d.value.columns) for d in at.dataframe]}")


def texts(elements) -> str:
    return "\n".join(str(e.value) for e in elements)


def everything(at: AppTest) -> str:
    parts = [texts(at.markdown), texts(at.caption), texts(at.success), texts(at.info), texts(at.warning),
             texts(at.error), texts(at.subheader), "\n".join(f"{m.label} {m.value}" for m in at.metric)]
    parts += [df.value.to_csv() for df in at.dataframe]
    return "\n".join(parts)


def charts(at: AppTest) -> list:
    return at.get("arrow_vega_lite_chart") or at.get("vega_lite_chart")


def controls_off(at: AppTest) -> bool:
    return all(b.disabled for b in at.button if b.key.startswith("ctl_") and b.key != "ctl_estop_cancel")


def expected_marks(url: str, session: str) -> dict[str, str]:
    """symbol -> the legend the page must write under its chart, counted from the journal."""
    engine = make_engine(url)
    counts: dict[str, Counter] = {}
    try:
        for e in iter_events(engine, session=session, kinds=("order", "fill")):
            p = e["payload"]
            c = counts.setdefault(p["symbol"], Counter())
            if e["kind"] == "fill":
                c["entry" if p["side"] == "buy" else "exit"] += 1
            elif p["role"] in ("stop", "target"):
                c[p["role"]] += 1
    finally:
        engine.dispose()
    plural = {"entry": "entries", "exit": "exits", "stop": "stops", "target": "targets"}
    return {s: " · ".join(f"{c[k]} {k if c[k] == 1 else plural[k]}" for k in plural) for s, c in counts.items()}


def assert_clean(at: AppTest) -> None:
    """No None/nan, money with two decimals, every time with its New York zone."""
    page = everything(at)
    assert not re.search(r"\bNone\b|\bnan\b|\bNaT\b", page), re.findall(r".{40}\bNone\b.{40}", page)[:3]
    assert not re.search(r"\d{4}-\d\d-\d\dT\d\d:\d\d", page), "an ISO UTC time on the page"
    for stamp in re.findall(r"\b\d\d:\d\d:\d\d\b(?! E[SD]T)", page):
        raise AssertionError(f"a time without its zone: {stamp}")


# --- journal only (runner down): every panel from a real replay ----------------------------------
def test_runner_down_shows_the_journal_with_charts_and_marks(monkeypatch, data) -> None:
    at = app(monkeypatch, DOWN, data["journal"])
    assert "Runner DOWN" in texts(at.error) and DOWN in texts(at.error)
    last = data["summary"]["sessions"][-1]
    banner = texts(at.success)
    assert f"session {kit.DAY} read from the journal, last event {kit.DAY} " in banner and "(session ended)" in banner
    m = metrics(at)
    assert m["Equity"] == money(last["equity"])
    assert m["Realized"] == money(last["realized_pnl"], True)
    assert m["Commissions (in Realized)"] == money(last["commissions"])
    assert m["Daily P&L"] == money(float(last["equity"]) - 100000, True)
    assert "Realized + Unrealized = Daily P&L" in texts(at.caption)
    for title in ("Account", "Open positions", "Orders and fills", "Strategies", "Alerts (newest first)"):
        assert title in [s.value for s in at.subheader]
    state = load_state(data["journal"], kit.DAY)
    orders = table(at, "Client order id", "Status", "Price")
    assert len(orders) == min(200, len(state.sessions[kit.DAY].orders))
    assert set(orders[orders.Role == "stop"].Price.str.split().str[0]) <= {"stop", "market"}
    fills = table(at, "Price", "Commission")
    assert len(fills) == min(200, state.sessions[kit.DAY].counts["fill"])
    stats = table(at, "Strategy", "Win rate", "Net P&L")
    assert set(stats.Strategy) == set(data["summary"]["stats"])
    assert all(re.fullmatch(r"[+-]?[\d,]+\.\d\d", v) for v in stats["Net P&L"])
    assert_clean(at)
    # charts: the equity curve, P&L by strategy, and one candle chart per traded symbol whose
    # legend counts the journal's entries, exits, stops and targets
    want = expected_marks(data["journal"], kit.DAY)
    legends = {c.split(":")[0]: c.split(": ", 1)[1] for c in texts(at.caption).splitlines()
               if re.match(r"^SYM\d+: \d+ entr", c)}
    assert legends == {s: want[s] for s in legends} and len(legends) == min(12, len(want))
    assert len(charts(at)) >= 2 + len(legends)
    # controls: disabled, and say why (no token, and the runner is down anyway)
    assert controls_off(at)
    assert "TRADING_CONTROL_TOKEN is not set" in texts(at.warning)


def test_past_sessions_pick_a_date(monkeypatch, data) -> None:
    at = past_view(app(monkeypatch, DOWN, data["journal"], pipeline_dir=data["full"].parent))
    assert "Account" not in [h.value for h in at.subheader]  # only the view picked is drawn
    pick = at.selectbox(key="past_session")
    assert list(pick.options) == [kit.DAY, "2024-11-25"]  # newest first
    at = run(pick.select("2024-11-25"))
    assert metrics_of_past(at)["Trades"] == "0"
    at = run(at.selectbox(key="past_session").select(kit.DAY))
    past = metrics_of_past(at)
    last = data["summary"]["sessions"][-1]
    assert past["End equity"] == money(last["equity"]) and past["Realized"] == money(last["realized_pnl"], True)
    trades = table(at, "Entry price", "Exit reason", "P&L")
    assert len(trades) == sum(s["trades"] for s in data["summary"]["stats"].values())
    assert f"Session {kit.DAY}" in [s.value for s in at.subheader]
    want = expected_marks(data["journal"], kit.DAY)
    assert len(charts(at)) == 2 + min(12, len(want))  # curve, P&L by strategy, a price chart per symbol
    assert texts(at.caption).count(" entr") >= min(12, len(want))


def metrics_of_past(at: AppTest) -> dict[str, str]:
    return {m.label: m.value for m in at.metric}


def past_view(at: AppTest) -> AppTest:
    return run(at.radio(key="view").set_value("Past sessions"))


def test_daily_report_offered_when_dagster_wrote_it(monkeypatch, data, tmp_path) -> None:
    report = tmp_path / "reports" / kit.DAY / "report.html"
    report.parent.mkdir(parents=True)
    report.write_text("<html>report</html>")
    at = past_view(app(monkeypatch, DOWN, data["journal"], pipeline_dir=tmp_path))
    assert str(report) in texts(at.caption)


# --- fresh install ---------------------------------------------------------------------------------
def test_missing_journal_is_a_fresh_install_and_is_not_created(monkeypatch, tmp_path) -> None:
    db = tmp_path / "none" / "journal.db"
    at = app(monkeypatch, DOWN, f"sqlite:///{db}")
    assert "empty or missing" in texts(at.info) and "Runner DOWN" in texts(at.error)
    assert metrics(at)["Equity"] == "-"
    assert "No past sessions" in texts(past_view(at).info)
    assert not db.exists() and not db.parent.exists()


def test_journal_without_events_and_no_journal_configured(monkeypatch, tmp_path) -> None:
    db = tmp_path / "empty.db"
    sa.create_engine(f"sqlite:///{db}").connect().close()  # a file, no table
    at = app(monkeypatch, DOWN, f"sqlite:///{db}")
    assert "empty or missing" in texts(at.info)
    at = app(monkeypatch, DOWN, None)
    assert "No journal configured" in texts(at.info)


def test_session_template_lists_the_pipelines_journal_files(monkeypatch, data, tmp_path) -> None:
    src = Path(data["journal"][len("sqlite:///"):])
    (tmp_path / "journal_20241126.db").write_bytes(src.read_bytes())
    at = app(monkeypatch, DOWN, f"sqlite:///{tmp_path}/journal_{{session}}.db")
    assert f"session {kit.DAY} read from the journal" in texts(at.success)
    assert list(past_view(at).selectbox(key="past_session").options) == [kit.DAY]


# --- PostgreSQL: the pipeline's one schema per session --------------------------------------------
@pytest.fixture
def pg_database(pg_fresh_database):
    """A fresh database (its `journal_YYYYMMDD` schemas are its own), as a URL string."""
    return pg_fresh_database.render_as_string(hide_password=False)


def copy_journal(src: str, dest: str, until_session: str) -> None:
    with make_engine(src).connect() as conn:
        rows = [dict(r._mapping) for r in conn.execute(sa.select(TABLE).where(TABLE.c.session <= until_session))]
    engine = make_engine(dest)
    try:
        metadata.create_all(engine)
        with engine.begin() as conn:
            conn.execute(TABLE.insert(), rows)
    finally:
        engine.dispose()


@pytest.mark.postgres
def test_postgres_per_session_schemas_are_found_and_listed(monkeypatch, data, pg_database) -> None:
    # as trading_pipeline.resources.TradingStoreResource.journal_url_for lays them out
    admin = sa.create_engine(pg_database, poolclass=sa.pool.NullPool)
    with admin.begin() as conn:
        for day in ("20241125", "20241126"):
            conn.execute(sa.text(f'CREATE SCHEMA "journal_{day}"'))
    admin.dispose()
    search = "{}?options=-csearch_path%3Djournal_{}"
    copy_journal(data["journal"], search.format(pg_database, "20241125"), "2024-11-25")
    copy_journal(data["journal"], search.format(pg_database, "20241126"), kit.DAY)
    at = app(monkeypatch, DOWN, pg_database)  # the database URL, as compose gives it
    assert "empty or missing" not in texts(at.info)
    assert f"session {kit.DAY} read from the journal" in texts(at.success)
    last = data["summary"]["sessions"][-1]
    assert metrics(at)["Equity"] == money(last["equity"])
    at = past_view(at)
    assert list(at.selectbox(key="past_session").options) == [kit.DAY, "2024-11-25"]
    at = run(at.selectbox(key="past_session").select("2024-11-25"))
    assert metrics_of_past(at)["Trades"] == "0"


# --- a live runner ---------------------------------------------------------------------------------
def test_live_panels_from_the_runner(monkeypatch, runner) -> None:
    st = runner.status()
    at = app(monkeypatch, runner.url, None, token=kit.TOKEN)  # journal URL taken from /status
    assert "Trading ACTIVE" in texts(at.success) and "PAUSED" not in texts(at.success)
    assert "market time 09:40:00 EST" in texts(at.caption)
    assert "Not ready: data feed finished" in texts(at.warning)
    m = metrics(at)
    for label, value in kit.page_figures(st).items():
        assert m[label] == value, label
    pos = table(at, "Symbol", "Avg price", "Unrealized", "Stop", "Target")
    assert sorted(pos.Symbol) == sorted(p["symbol"] for p in st["positions"]) and len(pos) >= 1
    assert (pos.Stop != "-").all() and (pos.Target != "-").all()
    open_orders = table(at, "Client order id", "Role", "Price")
    assert len(open_orders) == len(st["open_orders"])
    for role, word in (("stop", "stop "), ("target", "limit ")):  # the price that matters, not "limit 0"
        prices = open_orders[open_orders.Role == role].Price
        assert len(prices) and prices.str.startswith(word).all() and not prices.str.contains(r"\b0\b").any()
    assert set(table(at, "Strategy", "Win rate").Strategy) == set(st["stats"])
    want = expected_marks(runner.journal_url, kit.DAY)
    for p in st["positions"]:
        assert f"{p['symbol']}: {want[p['symbol']]}" in texts(at.caption)
    assert_clean(at)
    assert not any(b.disabled for b in at.button if b.key in ("ctl_pause", "ctl_resume", "ctl_estop"))


def test_controls_pause_resume_flatten_and_emergency_stop(monkeypatch, runner) -> None:
    at = app(monkeypatch, runner.url, None, token=kit.TOKEN)
    at = run(at.button(key="ctl_pause").click())
    assert "pause: accepted by the runner" in texts(at.success)
    assert runner.status()["paused"] is True
    banner = texts(at.warning)  # the page after the click shows it, once
    assert "Trading ACTIVE · PAUSED" in banner and everything(at).count("PAUSED") == 1
    at = run(at.button(key="ctl_resume").click())
    assert "resume: accepted" in texts(at.success) and runner.status()["paused"] is False

    symbol = runner.status()["positions"][0]["symbol"]
    at.text_input(key="flatten_symbol").input(symbol.lower())
    run(at)
    at = run(at.button(key="ctl_flatten_symbol").click())
    assert f"flatten {symbol}: accepted" in texts(at.success)
    at = run(at.button(key="ctl_flatten_all").click())
    assert "flatten: accepted" in texts(at.success)

    # emergency stop: arming asks to confirm, cancel sends nothing, confirm halts
    at = run(at.button(key="ctl_estop").click())
    assert "Emergency stop: halt trading" in texts(at.error)
    at = run(at.button(key="ctl_estop_cancel").click())
    assert runner.status()["trading_state"] == "active"
    assert not [b for b in at.button if b.key == "ctl_estop_confirm"]
    at = run(at.button(key="ctl_estop").click())
    at = run(at.button(key="ctl_estop_confirm").click())
    assert "emergency_stop: accepted" in texts(at.success)
    assert runner.status()["trading_state"] == "halted"
    assert "Trading HALTED" in texts(at.error)  # red, the headline
    assert not [b for b in at.button if b.key == "ctl_estop_confirm"]

    engine = make_engine(runner.journal_url)
    try:
        rows = [(e["key"], e["payload"]) for e in iter_events(engine, kinds=("command",))]
    finally:
        engine.dispose()
    assert [k for k, _ in rows] == ["pause_trading", "resume_trading", "flatten", "flatten", "emergency_stop"]
    assert all(p["source"].endswith(":alice") for _, p in rows)
    assert rows[2][1]["symbol"] == symbol


def test_wrong_token_is_refused_and_said(monkeypatch, runner) -> None:
    at = app(monkeypatch, runner.url, None, token="not-the-token")
    at = run(at.button(key="ctl_pause").click())
    assert "refused by the runner (HTTP 401)" in texts(at.error)


def test_no_token_disables_controls_with_the_reason(monkeypatch, runner) -> None:
    at = app(monkeypatch, runner.url, None, token=None)
    assert "Trading" in texts(at.success) + texts(at.error)
    ctl = [b for b in at.button if b.key.startswith("ctl_")]
    assert ctl and all(b.disabled for b in ctl)
    assert "TRADING_CONTROL_TOKEN is not set" in texts(at.warning)


# --- the runner dies and comes back with the page open ----------------------------------------------
def test_runner_dies_and_comes_back_with_the_page_open(monkeypatch, data, tmp_path) -> None:
    port = kit.free_port()
    journal = f"sqlite:///{tmp_path / 'runner.db'}"
    cfg = kit.config(tmp_path / "cfg.yaml", port=port)
    with kit.Runner(data["cut"], journal, cfg, tmp_path / "runner.log") as r:
        r.wait_until(f"{kit.DAY}T14:40:00Z")
        at = app(monkeypatch, r.url, journal, token=kit.TOKEN)
        assert not controls_off(at)
        at = run(at.button(key="ctl_pause").click())
        assert "pause: accepted" in texts(at.success)
        last = r.status()  # the runner's last /status before it is stopped
    # SIGTERM: it flushed its journal and exited; the next refresh follows
    run(at)
    assert "Runner DOWN" in texts(at.error)
    assert controls_off(at) and "is not answering" in texts(at.warning)
    assert "pause: accepted" not in texts(at.success)  # the answer from before is gone
    banner = texts(at.warning)
    assert "Trading ACTIVE · PAUSED" in banner and f"session {kit.DAY} read from the journal, last event" in banner
    m = metrics(at)
    assert {k: m[k] for k in kit.page_figures(last)} == kit.page_figures(last)  # to the cent
    pos = table(at, "Symbol", "Last", "Unrealized")
    assert sorted(pos.Symbol) == sorted(p["symbol"] for p in last["positions"])
    assert dict(zip(pos.Symbol, pos.Unrealized)) == {p["symbol"]: money(p["unrealized_pnl"], True)
                                                     for p in last["positions"]}
    # it comes back on the same port (resuming its journal): the controls come back too
    with kit.Runner(data["cut"], journal, cfg, tmp_path / "runner2.log") as r2:
        r2.wait_until(f"{kit.DAY}T14:40:00Z")
        run(at)
        assert "Runner DOWN" not in texts(at.error) and not controls_off(at)
        assert "is not answering" not in texts(at.warning)
