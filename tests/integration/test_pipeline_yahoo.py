"""The market-data assets with provider yahoo, against the fake Yahoo (127.0.0.1, through yfinance's
own code): daily_bars from each of `symbols`' daily history, premarket_universe from the
price-band, top-volume candidates' premarket minute bars, intraday_bars from the universe's minute
bars. The universe is exactly what `live_runner.strategies.gap_and_go.qualifies` selects on the
same bars.

Yahoo keeps 1-minute bars for the last 30 days only, so the partition is the latest complete
session before today (and its previous session), not a fixed date."""

from __future__ import annotations

import json
from datetime import date, timedelta

import dagster as dg
import pandas as pd
import pytest

import trading_pipeline.market_data as market_data
from live_runner.core.models import Bar
from live_runner.strategies.base import PremarketStats
from live_runner.strategies.gap_and_go import qualifies
from tests.kit.dagster_env import isolated_resources
from tests.kit.fake_yahoo import FakeYahoo
from trading_pipeline.market_assets import daily_bars, intraday_bars, premarket_universe
from trading_pipeline.partitions import is_session, session_times
from trading_pipeline.resources import MarketDataResource, RunnerResource

pytestmark = pytest.mark.timeout(120)

MIN = 60_000_000_000


def latest_complete_session() -> date:
    d = date.today() - timedelta(days=1)
    while not is_session(d):
        d -= timedelta(days=1)
    return d


DAY = latest_complete_session()
SESSION = session_times(DAY)
PREV = SESSION.prev_date
PREV_SESSION = session_times(PREV)

# symbol: (prev close, prev volume, premarket last, premarket volume per minute, pm high)
CASES = {
    "GAPR": (5.00, 2_000_000, 5.60, 400, 5.70),    # +12 %, holds: qualifies
    "GAPS": (10.0, 1_500_000, 10.80, 300, 10.90),  # +8 %: qualifies
    "THIN": (4.00, 900_000, 4.80, 100, 4.85),      # gaps, 33 k premarket volume: too thin
    "FADE": (3.00, 800_000, 3.30, 500, 4.20),      # gapped but far off its highs
    "FLAT": (8.00, 700_000, 8.05, 500, 8.10),      # +0.6 %: no gap
    "RICH": (50.0, 5_000_000, 56.0, 900, 56.5),    # out of the price band: never fetched
    "PENY": (0.50, 9_000_000, 0.70, 900, 0.71),    # out of the band too
}
SYMBOLS = [*CASES, "NOPE"]  # NOPE: Yahoo knows nothing of it (skipped, not an error)


def premarket(sym: str, last: float, vol: float, high: float) -> list[Bar]:
    """Premarket open to the open: flat at `last`, one spike to `high` an hour after it opens."""
    spike = SESSION.premarket_open + 60 * MIN
    return [Bar(sym, ts, last, high if ts == spike else last, last, last, vol)
            for ts in range(SESSION.premarket_open, SESSION.open, MIN)]


def minutes(sym: str, start: int, end: int, price: float) -> list[Bar]:
    return [Bar(sym, ts, price, price, price, price, 1_000.0) for ts in range(start, end, MIN)]


@pytest.fixture
def fake(monkeypatch):
    monkeypatch.delenv("POLYGON_API_KEY", raising=False)
    monkeypatch.delenv("MASSIVE_API_KEY", raising=False)
    with FakeYahoo() as f:
        sessions = []

        def factory():
            sessions.append(f.session())
            return sessions[-1]

        monkeypatch.setattr(market_data, "_yahoo_session_factory", factory)
        pm: dict[str, list[Bar]] = {}
        older = session_times(PREV).prev_date
        for sym, (close, pvol, last, vol, high) in CASES.items():
            f.add_daily(sym, older, 1.0, 1.0, 1.0, 1.0, 1.0)  # another day: not taken
            f.add_daily(sym, PREV, close, close * 1.01, close * 0.99, close, pvol)
            pm[sym] = premarket(sym, last, vol, high)
            f.add_bars(pm[sym])
            f.add_bars(minutes(sym, PREV_SESSION.open, PREV_SESSION.close, close))    # previous session
            f.add_bars(minutes(sym, SESSION.open, SESSION.afterhours_close, last))   # the day itself
        f.premarket = pm
        f.sessions = sessions
        yield f


def expected_universe(fake: FakeYahoo) -> set[str]:
    cfg = RunnerResource().load_config().strategies.gap_and_go
    out = set()
    for sym, (close, *_rest) in CASES.items():
        bars = fake.premarket[sym]
        stats = PremarketStats(prev_close=close, pm_high=max(b.high for b in bars),
                               pm_volume=sum(b.volume for b in bars), pm_last=bars[-1].close)
        if qualifies(stats, cfg):
            out.add(sym)
    return out


def test_yahoo_provider_materializes_a_recent_day(fake, tmp_path):
    market = MarketDataResource(provider="yahoo", symbols=SYMBOLS,
                                bars_dir=str(tmp_path / "market"), generate_missing=False)
    result = dg.materialize([daily_bars, premarket_universe, intraday_bars], partition_key=DAY.isoformat(),
                            resources=isolated_resources(tmp_path, market_data=market))
    assert result.success
    pipeline = tmp_path / "pipeline"

    daily = pd.read_parquet(pipeline / "daily_bars" / f"{DAY}.parquet")
    assert sorted(daily["symbol"]) == sorted(CASES) and set(daily["session"]) == {PREV.isoformat()}
    assert dict(zip(daily["symbol"], daily["close"])) == {s: c[0] for s, c in CASES.items()}
    assert dict(zip(daily["symbol"], daily["volume"])) == {s: c[1] for s, c in CASES.items()}

    stored = json.loads((pipeline / "premarket_universe" / f"{DAY}.json").read_text())
    assert expected_universe(fake) == {"GAPR", "GAPS"}  # the data does exercise every rule
    assert stored["symbols"] == ["GAPR", "GAPS"]          # ranked by gap
    assert stored["provider"] == "yahoo" and stored["candidates"] == 5 and stored["scanned"] == 7
    minute_syms = {r["path"].rsplit("/", 1)[1] for r in fake.requests
                   if r["path"].startswith("/v8/finance/chart/") and r["query"].get("interval") == "1m"}
    assert minute_syms == {"GAPR", "GAPS", "THIN", "FADE", "FLAT"}  # RICH, PENY, NOPE: never asked
    assert fake.sessions and all(s.refused == [] for s in fake.sessions)  # nothing left the machine

    bars = pd.read_parquet(pipeline / "intraday_bars" / f"{DAY}.parquet")
    assert sorted(bars["symbol"].unique()) == ["GAPR", "GAPS"]
    ts = bars["timestamp"].astype("int64")
    prev_rows = bars.loc[ts < SESSION.premarket_open]
    # one seed bar per symbol: the previous session's last regular minute (its close)
    assert sorted(prev_rows["symbol"]) == ["GAPR", "GAPS"]
    assert set(prev_rows["timestamp"].astype("int64")) == {PREV_SESSION.close - MIN}
    assert dict(zip(prev_rows["symbol"], prev_rows["close"])) == {"GAPR": 5.0, "GAPS": 10.0}
    today = bars.loc[ts >= SESSION.premarket_open]
    assert len(today) == 2 * (SESSION.afterhours_close - SESSION.premarket_open) // MIN
    assert not (tmp_path / "market").exists()  # nothing from the replay path


def test_yahoo_provider_without_symbols_fails_clearly():
    with pytest.raises(ValueError, match="symbols"):
        MarketDataResource(provider="yahoo").previous_daily(DAY)
