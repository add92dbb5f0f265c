"""The dashboard (dashboard/app.py) under Streamlit's own testing API (AppTest).

Inputs are real: a journal written by `python -m live_runner replay` over the sample session, and
a real runner subprocess (`run --mode paper --linger`, data cut at 09:40 so it holds positions)
answering /status and /control. Each panel and control is checked, then the runner-down and
empty-journal (fresh install) cases.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
import sqlalchemy as sa

pytest.importorskip("streamlit")
from streamlit.testing.v1 import AppTest  # noqa: E402

from live_runner.journal import iter_events, make_engine  # noqa: E402
from live_runner.journal_state import load_state  # noqa: E402
from tests.kit import dashboard as kit  # noqa: E402

pytestmark = pytest.mark.timeout(240)
DOWN = "http://127.0.0.1:9"  # nothing listens on the discard port


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> dict:
    d = tmp_path_factory.mktemp("dash")
    cfg = kit.config(d / "cfg.yaml", batch_size=1000)
    full = kit.bars(d / "full")
    url = f"sqlite:///{d / 'replay.db'}"
    summary = kit.replay(full, url, cfg)
    return {"dir": d, "journal": url, "summary": summary, "cut": kit.bars(d / "cut", cut_et=kit.CUT_ET)}


@pytest.fixture(scope="module")
def runner(data: dict):
    d = data["dir"]
    with kit.Runner(data["cut"], f"sqlite:///{d / 'runner.db'}", kit.config(d / "cfg_run.yaml"),
                    d / "runner.log") as r:
        r.wait_until(f"{kit.DAY}T14:40:00Z")
        yield r


def app(monkeypatch: pytest.MonkeyPatch, runner_url: str, journal_url: str | None,
        token: str | None = None) -> AppTest:
    monkeypatch.setenv("TRADING_RUNNER_URL", runner_url)
    if journal_url is None:
        monkeypatch.delenv("TRADING_JOURNAL_URL", raising=False)
    else:
        monkeypatch.setenv("TRADING_JOURNAL_URL", journal_url)
    if token is None:
        monkeypatch.delenv("TRADING_CONTROL_TOKEN", raising=False)
    else:
        monkeypatch.setenv("TRADING_CONTROL_TOKEN", token)
    monkeypatch.setenv("TRADING_OPERATOR", "alice")
    at = AppTest.from_file(str(kit.APP), default_timeout=60)
    at.run()
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


def charts(at: AppTest) -> list:
    return at.get("vega_lite_chart")


def money(x: object) -> str:
    return f"{float(x):,.2f}"


# --- journal only (runner down): every panel from a real replay ----------------------------------
def test_runner_down_shows_it_and_every_journal_panel(monkeypatch, data) -> None:
    at = app(monkeypatch, DOWN, data["journal"])
    assert "Runner DOWN" in texts(at.error) and DOWN in texts(at.error)
    last = data["summary"]["sessions"][-1]
    m = metrics(at)
    assert m["System"] == "unreachable" and m["Session"] == kit.DAY
    assert m["Equity"] == money(last["equity"])
    assert m["Realized"] == money(last["realized_pnl"]) and m["Commissions"] == money(last["commissions"])
    assert m["Daily P&L"] == money(float(last["equity"]) - 100000)
    assert len(charts(at)) >= 1  # the intraday equity curve
    subheaders = [s.value for s in at.subheader]
    for title in ("State and health", "Account", "Open positions", "Orders and fills", "Strategies",
                  "Alerts (newest first)"):
        assert title in subheaders
    state = load_state(data["journal"], kit.DAY)
    orders = table(at, "client_order_id", "status", "filled_qty", "limit")
    assert len(orders) == min(200, len(state.sessions[kit.DAY].orders))
    assert orders["time"].is_monotonic_decreasing  # newest first
    fills = table(at, "price", "commission")
    assert len(fills) == state.sessions[kit.DAY].counts["fill"]
    stats = table(at, "strategy", "win_rate", "net_pnl")
    assert set(stats.strategy) == set(data["summary"]["stats"])
    assert stats.net_pnl.sum() == pytest.approx(float(last["realized_pnl"]), abs=0.05)
    alerts = table(at, "severity", "message")  # the replay's risk denials
    assert alerts["time"].is_monotonic_decreasing
    # controls: disabled, and say why (no token, and the runner is down anyway)
    assert all(b.disabled for b in at.button if b.key.startswith("ctl_"))
    assert "TRADING_CONTROL_TOKEN is not set" in texts(at.warning)


def test_past_sessions_pick_a_date(monkeypatch, data) -> None:
    at = app(monkeypatch, DOWN, data["journal"])
    pick = at.selectbox(key="past_session")
    assert list(pick.options) == [kit.DAY, "2024-11-25"]  # newest first
    pick.select("2024-11-25").run()
    assert metrics_of_past(at)["Trades"] == "0"
    at.selectbox(key="past_session").select(kit.DAY).run()
    past = metrics_of_past(at)
    last = data["summary"]["sessions"][-1]
    assert past["End equity"] == money(last["equity"]) and past["Realized"] == money(last["realized_pnl"])
    trades = table(at, "entry_price", "exit_reason", "pnl")
    assert len(trades) == sum(s["trades"] for s in data["summary"]["stats"].values())
    assert f"Session {kit.DAY}" in [s.value for s in at.subheader]
    assert len(charts(at)) >= 2  # today's curve and the picked session's


def metrics_of_past(at: AppTest) -> dict[str, str]:
    labels = [m.label for m in at.metric]
    start = labels.index("Start equity")
    return {m.label: m.value for m in list(at.metric)[start:]}


def test_daily_report_offered_when_dagster_wrote_it(monkeypatch, data, tmp_path) -> None:
    report = tmp_path / "reports" / kit.DAY / "report.html"
    report.parent.mkdir(parents=True)
    report.write_text("<html>report</html>")
    monkeypatch.setenv("TRADING_PIPELINE_DIR", str(tmp_path))
    at = app(monkeypatch, DOWN, data["journal"])
    assert str(report) in texts(at.caption)


# --- fresh install ---------------------------------------------------------------------------------
def test_missing_journal_is_a_fresh_install_and_is_not_created(monkeypatch, tmp_path) -> None:
    db = tmp_path / "none" / "journal.db"
    at = app(monkeypatch, DOWN, f"sqlite:///{db}")
    assert "empty or missing" in texts(at.info) and "Runner DOWN" in texts(at.error)
    assert "No past sessions" in texts(at.info)
    assert not db.exists() and not db.parent.exists()
    assert metrics(at)["Equity"] == "-"


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
    assert list(at.selectbox(key="past_session").options) == [kit.DAY]
    assert metrics(at)["Session"] == kit.DAY


# --- a live runner ---------------------------------------------------------------------------------
def test_live_panels_from_the_runner(monkeypatch, runner) -> None:
    st = runner.status()
    at = app(monkeypatch, runner.url, None, token=kit.TOKEN)  # journal URL taken from /status
    assert "Runner up" in texts(at.success)
    m = metrics(at)
    assert (m["System"], m["Trading"], m["Paused"]) == ("running", "active", "no")
    # --linger after the data ends: the runner says it is not ready, and the page says why
    assert m["Ready"] == "NO" and "Not ready: data feed finished" in texts(at.warning)
    assert m["Equity"] == money(st["equity"]) and m["Daily P&L"] == money(st["daily_pnl"])
    health = table(at, "component", "heartbeat_age_s")
    assert set(health.component) == set(st["health"]["components"]) and health.healthy.all()
    pos = table(at, "symbol", "avg_price", "unrealized_pnl", "stop", "target")
    assert sorted(pos.symbol) == sorted(p["symbol"] for p in st["positions"]) and len(pos) >= 1
    assert pos.stop.notna().all() and pos.target.notna().all()
    open_orders = table(at, "client_order_id", "role", "status")
    assert len(open_orders) == len(st["open_orders"])
    assert set(table(at, "strategy", "win_rate").strategy) == set(st["stats"])
    assert len(charts(at)) >= 1  # equity curve from the runner's own journal
    assert not any(b.disabled for b in at.button if b.key in ("ctl_pause", "ctl_resume", "ctl_estop"))


def test_controls_pause_resume_flatten_and_emergency_stop(monkeypatch, runner) -> None:
    at = app(monkeypatch, runner.url, None, token=kit.TOKEN)
    at.button(key="ctl_pause").click().run()
    assert "pause: accepted by the runner" in texts(at.success)
    assert runner.status()["paused"] is True
    assert metrics(at)["Paused"] == "yes"  # the page after the click shows it
    at.button(key="ctl_resume").click().run()
    assert "resume: accepted" in texts(at.success) and runner.status()["paused"] is False

    symbol = runner.status()["positions"][0]["symbol"]
    at.text_input(key="flatten_symbol").input(symbol.lower()).run()
    at.button(key="ctl_flatten_symbol").click().run()
    assert f"flatten {symbol}: accepted" in texts(at.success)
    at.button(key="ctl_flatten_all").click().run()
    assert "flatten: accepted" in texts(at.success)

    # emergency stop: arming asks to confirm, cancel sends nothing, confirm halts
    at.button(key="ctl_estop").click().run()
    assert "Emergency stop: halt trading" in texts(at.error)
    at.button(key="ctl_estop_cancel").click().run()
    assert runner.status()["trading_state"] == "active"
    assert not [b for b in at.button if b.key == "ctl_estop_confirm"]
    at.button(key="ctl_estop").click().run()
    at.button(key="ctl_estop_confirm").click().run()
    assert "emergency_stop: accepted" in texts(at.success)
    assert runner.status()["trading_state"] == "halted"

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
    at.button(key="ctl_pause").click().run()
    assert "refused by the runner (HTTP 401)" in texts(at.error)


def test_no_token_disables_controls_with_the_reason(monkeypatch, runner) -> None:
    at = app(monkeypatch, runner.url, None, token=None)
    assert "Runner up" in texts(at.success)
    ctl = [b for b in at.button if b.key.startswith("ctl_")]
    assert ctl and all(b.disabled for b in ctl)
    assert "TRADING_CONTROL_TOKEN is not set" in texts(at.warning)
