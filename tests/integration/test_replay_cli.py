"""`python -m live_runner replay` end to end, as an operator runs it (a subprocess from the repo root).

The --json summary's documented keys, determinism (two replays give byte-identical journals, on
SQLite and on PostgreSQL), bad bars rejected and counted without stopping the run, malformed files
and invalid configurations refused up front (non-zero exit, the culprit named, nothing journaled).
"""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import date
from decimal import Decimal
from pathlib import Path

import pytest
import sqlalchemy as sa

from live_runner.data import sample_data
from live_runner.persistence.journal import dump, make_engine

ROOT = Path(__file__).resolve().parents[2]
POSTGRES = pytest.mark.postgres
EXIT_REASONS = {"stop", "target", "vwap_loss", "eod", "manual"}
SUMMARY_KEYS = {"trades", "realized_pnl", "commissions", "final_positions", "signals", "orders_submitted",
                "risk_denials", "bars_processed", "bars_rejected", "elapsed_s"}
TRADE_KEYS = {"symbol", "strategy", "qty", "entry_time", "entry_price", "exit_time", "exit_price",
              "exit_reason", "pnl", "commission"}


def replay(bars: Path, journal: str, *extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "live_runner", "replay", "--bars", str(bars), "--journal", journal,
         "--json", *extra],
        cwd=ROOT, capture_output=True, text=True, timeout=120)


def ok(proc: subprocess.CompletedProcess[str]) -> dict:
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout)


def events_in(url: str) -> int:
    """Rows in a journal; 0 when the database or its table does not exist."""
    if url.startswith("sqlite:///") and not Path(url[len("sqlite:///"):]).exists():
        return 0
    engine = sa.create_engine(url)
    try:
        with engine.connect() as conn:
            if not sa.inspect(conn).has_table("journal_events"):
                return 0
            return conn.execute(sa.text("SELECT count(*) FROM journal_events")).scalar_one()
    finally:
        engine.dispose()


def rows(url: str) -> list[tuple]:
    engine = make_engine(url)
    try:
        return dump(engine)
    finally:
        engine.dispose()


def comparable(summary: dict) -> dict:
    return {k: v for k, v in summary.items() if k not in ("elapsed_s", "journal")}


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    out = tmp_path_factory.mktemp("cli")
    parquet = sample_data.write(sample_data.generate(date(2024, 11, 26), sessions=2, symbols=30, seed=3),
                                out / "parquet")
    csv = sample_data.write(sample_data.generate(date(2024, 11, 26), sessions=1, symbols=6, seed=11),
                            out / "csv", fmt="csv")
    return {"dir": out, "parquet": parquet, "csv": csv}


@pytest.fixture(scope="module")
def first_run(data: dict[str, Path]) -> tuple[str, dict]:
    url = f"sqlite:///{data['dir'] / 'first.db'}"
    return url, ok(replay(data["parquet"], url))


# --- the summary -------------------------------------------------------------------------------

def test_json_summary_has_the_documented_keys(first_run: tuple[str, dict]) -> None:
    url, s = first_run
    assert SUMMARY_KEYS <= set(s)
    assert s["trades"], "the sample session is built so that both strategies trade"
    for t in s["trades"]:
        assert TRADE_KEYS <= set(t)
        assert t["exit_reason"] in EXIT_REASONS
        assert isinstance(t["qty"], int) and t["qty"] > 0
        assert isinstance(t["entry_price"], float) and isinstance(t["exit_price"], float)
        assert t["entry_time"] <= t["exit_time"]
        Decimal(t["pnl"]), Decimal(t["commission"])
    assert {t["strategy"] for t in s["trades"]} <= {"gap_and_go", "vwap_reclaim"}
    assert sum(Decimal(t["pnl"]) for t in s["trades"]) == Decimal(s["realized_pnl"])
    assert sum(Decimal(t["commission"]) for t in s["trades"]) == Decimal(s["commissions"])
    assert s["final_positions"] == {}
    assert s["bars_processed"] > 0 and s["bars_rejected"] == 0
    assert s["signals"] > 0 and s["orders_submitted"] > len(s["trades"])  # entries + exits
    assert isinstance(s["risk_denials"], dict) and isinstance(s["elapsed_s"], float)
    assert s["journal_events_resumed"] == 0 and events_in(url) > 0


# --- determinism ---------------------------------------------------------------------------------

def test_two_replays_give_identical_journals(data: dict[str, Path], first_run: tuple[str, dict]) -> None:
    url_a, summary_a = first_run
    url_b = f"sqlite:///{data['dir'] / 'second.db'}"
    summary_b = ok(replay(data["parquet"], url_b))
    assert summary_b["journal_events_resumed"] == 0
    assert comparable(summary_b) == comparable(summary_a)
    a, b = rows(url_a), rows(url_b)
    assert len(a) > 1000 and a == b


@POSTGRES
def test_replay_into_postgres_gives_the_same_rows(data: dict[str, Path], first_run: tuple[str, dict],
                                                  pg_schema_url) -> None:
    url_a, summary_a = first_run
    summary_pg = ok(replay(data["parquet"], pg_schema_url.url))
    assert comparable(summary_pg) == comparable(summary_a)
    assert rows(pg_schema_url.url) == rows(url_a)


# --- bad bars and malformed files ----------------------------------------------------------------

def test_bad_bars_are_rejected_and_counted(data: dict[str, Path], tmp_path: Path) -> None:
    lines = data["csv"].read_text().splitlines()
    header, body = lines[0], lines[1:]
    n = len(body)

    def cells(i: int) -> list[str]:
        return body[i].split(",")

    nan_row = cells(100)
    nan_row[2] = "NaN"  # open
    body[100] = ",".join(nan_row)
    inverted = cells(200)  # high below low
    inverted[3] = f"{float(inverted[4]) - 0.05:.2f}"
    body[200] = ",".join(inverted)
    early = body[50]  # a copy of an early bar of the same symbol, re-sent much later
    body.insert(301, body[300])  # the same bar twice in a row
    body.append(early)
    path = tmp_path / "bad_bars.csv"
    path.write_text("\n".join([header, *body]) + "\n")

    s = ok(replay(path, f"sqlite:///{tmp_path / 'j.db'}"))
    assert s["bars_rejected"] == 4
    assert s["bars_rejected_by_reason"] == {"NAN": 1, "HIGH_BELOW_LOW": 1, "DUPLICATE": 1, "OUT_OF_ORDER": 1}
    assert s["bars_processed"] == n - 2


@pytest.mark.parametrize("defect", ["missing_column", "bad_timestamp"])
def test_malformed_file_is_refused_before_the_journal(data: dict[str, Path], tmp_path: Path,
                                                      defect: str) -> None:
    lines = data["csv"].read_text().splitlines()
    if defect == "missing_column":
        lines = [",".join(line.split(",")[:-1]) for line in lines]  # no volume
        expect = ["'volume'", "missing"]
    else:
        row = lines[7].split(",")
        row[1] = "2024-11-25 not a time"
        lines[7] = ",".join(row)
        expect = ["row 7", "'timestamp'", "not a time"]
    path = tmp_path / f"{defect}.csv"
    path.write_text("\n".join(lines) + "\n")
    journal = tmp_path / "journal.db"

    proc = replay(path, f"sqlite:///{journal}")
    assert proc.returncode != 0
    assert str(path) in proc.stderr
    for text in expect:
        assert text in proc.stderr, proc.stderr
    assert "Traceback" not in proc.stderr
    assert events_in(f"sqlite:///{journal}") == 0


# --- configuration -------------------------------------------------------------------------------

@pytest.mark.parametrize(("config", "named"), [
    ("max_positionz: 3\n", ["max_positionz", "unknown key"]),
    ("risk:\n  max_orders_per_minutes: 5\n", ["risk.max_orders_per_minutes", "unknown key"]),
    ("max_daily_loss_pct: -0.05\n", ["max_daily_loss_pct"]),
    ("max_positions: 0\n", ["max_positions"]),
    ("active_strategies: [gap_and_go, gap_and_run]\n", ["active_strategies", "gap_and_run"]),
    ("active_strategies: ['no_such_package.strategies:Breakout']\n",
     ["active_strategies", "no_such_package"]),
], ids=["unknown_key", "unknown_nested_key", "negative_loss_limit", "zero_positions",
        "unknown_strategy", "bad_import_path"])
def test_invalid_config_is_refused_naming_the_key(data: dict[str, Path], tmp_path: Path, config: str,
                                                  named: list[str]) -> None:
    path = tmp_path / "config.yaml"
    path.write_text(config)
    url = f"sqlite:///{tmp_path / 'journal.db'}"
    proc = replay(data["csv"], url, "--config", str(path))
    assert proc.returncode == 2, proc.stderr
    assert "invalid configuration" in proc.stderr
    for text in named:
        assert text in proc.stderr, proc.stderr
    assert "Traceback" not in proc.stderr and proc.stdout == ""
    assert events_in(url) == 0


# --- calendar range and previous closes ----------------------------------------------------------

def _gap_csv(path: Path, day: str, prev_day: str, skip: str | None = None) -> Path:
    """gap_and_go's reference trade (tests/kit/sessions.gapper: 1785 shares, 11.25 -> 11.95 target)
    on `day`, GAPR's previous close 10.00 on `prev_day`; OTHR trades on `skip` (a session GAPR
    skips, scanner style)."""
    from tests.kit.sessions import gapper

    s = gapper(day=day, prev_day=prev_day)
    if skip:
        s.bar("OTHR", "10:00", 5.0, 5.0, 5.0, 5.0, 1_000, day=skip)
    from live_runner.core.clock import format_ns

    lines = ["symbol,timestamp,open,high,low,close,volume"] + [
        f"{b.symbol},{format_ns(b.ts)},{b.open},{b.high},{b.low},{b.close},{int(b.volume)}"
        for b in s.sorted_bars()]
    path.write_text("\n".join(lines) + "\n")
    return path


def test_sessions_before_2015_replay(tmp_path: Path) -> None:
    """2013-10-04 (the issue's crash): replays like any other day, same trade."""
    s = ok(replay(_gap_csv(tmp_path / "2013.csv", "2013-10-04", "2013-10-03"),
                  f"sqlite:///{tmp_path / 'j.db'}"))
    [t] = s["trades"]
    assert (t["entry_time"], t["qty"], t["entry_price"], t["exit_price"], t["exit_reason"]) == (
        "2013-10-04T13:32:00Z", 1785, 11.25, 11.95, "target")
    assert Decimal(t["pnl"]) == Decimal("1237.00") and s["prev_close_missing"] == 0


def test_a_date_the_calendar_cannot_place_is_a_clean_error(tmp_path: Path) -> None:
    """exchange_calendars (pandas) cannot build sessions around 2262-04-10: exit 2, the date
    named, no traceback, no journal file."""
    path = tmp_path / "far.csv"
    path.write_text("symbol,timestamp,open,high,low,close,volume\n"
                    "AAA,2262-04-10T14:00:00Z,10.0,10.0,10.0,10.0,1000\n")
    journal = tmp_path / "journal.db"
    proc = replay(path, f"sqlite:///{journal}")
    assert proc.returncode == 2, proc.stderr
    assert "2262-04-10" in proc.stderr and str(path) in proc.stderr
    assert "Traceback" not in proc.stderr and proc.stdout == ""
    assert not journal.exists()


def test_prev_close_only_from_the_previous_session(tmp_path: Path) -> None:
    """GAPR skips Thu 2024-03-14: its Wed close is not used (counted in --json); the provider's
    daily close of Thu (--daily-bars) is."""
    bars = _gap_csv(tmp_path / "scan.csv", "2024-03-15", "2024-03-13", skip="2024-03-14")
    s = ok(replay(bars, f"sqlite:///{tmp_path / 'a.db'}"))
    assert s["trades"] == [] and s["signals"] == 0
    assert s["prev_close_missing"] == 1
    assert [d["prev_close_missing"] for d in s["sessions"]] == [0, 0, 1]
    daily = tmp_path / "daily.csv"
    daily.write_text("symbol,session,close\nGAPR,2024-03-14,10.00\nGAPR,2024-03-13,9.00\n")
    s = ok(replay(bars, f"sqlite:///{tmp_path / 'b.db'}", "--daily-bars", str(daily)))
    [t] = s["trades"]
    assert (t["qty"], t["exit_reason"], Decimal(t["pnl"])) == (1785, "target", Decimal("1237.00"))
    assert s["prev_close_missing"] == 0
    daily.write_text("symbol,session,close\nGAPR,2024-03-14,-1\n")
    proc = replay(bars, f"sqlite:///{tmp_path / 'c.db'}", "--daily-bars", str(daily))
    assert proc.returncode == 2 and "row 1" in proc.stderr and "'close'" in proc.stderr, proc.stderr
    assert not (tmp_path / "c.db").exists()
