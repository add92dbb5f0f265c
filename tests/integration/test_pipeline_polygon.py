"""The market-data assets with provider polygon, against the fake Polygon (REST on 127.0.0.1):
daily_bars from the grouped daily, premarket_universe from the price-band, top-volume candidates'
premarket minute bars, intraday_bars from the universe's minute bars. The universe is exactly what
`live_runner.strategies.gap_and_go.qualifies` selects on the same bars."""

from __future__ import annotations

import json
from datetime import date

import dagster as dg
import pandas as pd
import pytest

from live_runner.core.models import Bar
from live_runner.strategies.base import PremarketStats
from live_runner.strategies.gap_and_go import qualifies
from tests.kit.dagster_env import isolated_resources
from tests.kit.fake_polygon import FakePolygon
from tests.kit.sessions import et_ns
from trading_pipeline.market_assets import daily_bars, intraday_bars, premarket_universe
from trading_pipeline.resources import MarketDataResource, RunnerResource

pytestmark = pytest.mark.timeout(120)

DAY, PREV = date(2024, 3, 15), date(2024, 3, 14)
MIN = 60_000_000_000

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


def premarket(sym: str, last: float, vol: float, high: float) -> list[Bar]:
    """04:00-09:29: flat at `last`, one spike to `high` at 07:00."""
    out = []
    for i, ts in enumerate(range(et_ns(DAY, "04:00"), et_ns(DAY, "09:30"), MIN)):
        h = high if ts == et_ns(DAY, "07:00") else last
        out.append(Bar(sym, ts, last, h, last, last, vol))
    return out


def session_minutes(sym: str, day: date, start: str, end: str, price: float) -> list[Bar]:
    return [Bar(sym, ts, price, price, price, price, 1_000.0)
            for ts in range(et_ns(day, start), et_ns(day, end), MIN)]


@pytest.fixture
def fake(monkeypatch):
    with FakePolygon() as f:
        monkeypatch.setenv("POLYGON_API_KEY", f.api_key)
        monkeypatch.delenv("MASSIVE_API_KEY", raising=False)
        pm: dict[str, list[Bar]] = {}
        for sym, (close, pvol, last, vol, high) in CASES.items():
            f.add_daily(PREV, sym, close, close * 1.01, close * 0.99, close, pvol)
            pm[sym] = premarket(sym, last, vol, high)
            f.add_bars(pm[sym])
            f.add_bars(session_minutes(sym, PREV, "09:30", "16:00", close))   # previous session
            f.add_bars(session_minutes(sym, DAY, "09:30", "20:00", last))     # the day itself
        f.add_daily(date(2024, 3, 13), "OLD", 1, 1, 1, 1, 1)  # another day: not in the grouped daily
        f.premarket = pm
        yield f


def expected_universe(fake: FakePolygon) -> set[str]:
    cfg = RunnerResource().load_config().strategies.gap_and_go
    out = set()
    for sym, (close, *_rest) in CASES.items():
        bars = fake.premarket[sym]
        stats = PremarketStats(prev_close=close, pm_high=max(b.high for b in bars),
                               pm_volume=sum(b.volume for b in bars), pm_last=bars[-1].close)
        if qualifies(stats, cfg):
            out.add(sym)
    return out


def test_polygon_provider_materializes_the_day_from_rest(fake, tmp_path):
    market = MarketDataResource(provider="polygon", rest_base_url=fake.rest_url,
                                bars_dir=str(tmp_path / "market"), generate_missing=False)
    result = dg.materialize([daily_bars, premarket_universe, intraday_bars], partition_key=DAY.isoformat(),
                            resources=isolated_resources(tmp_path, market_data=market))
    assert result.success
    pipeline = tmp_path / "pipeline"

    daily = pd.read_parquet(pipeline / "daily_bars" / f"{DAY}.parquet")
    assert sorted(daily["symbol"]) == sorted(CASES) and set(daily["session"]) == {PREV.isoformat()}
    assert dict(zip(daily["symbol"], daily["close"])) == {s: c[0] for s, c in CASES.items()}

    stored = json.loads((pipeline / "premarket_universe" / f"{DAY}.json").read_text())
    assert expected_universe(fake) == {"GAPR", "GAPS"}  # the data does exercise every rule
    assert stored["symbols"] == ["GAPR", "GAPS"]          # ranked by gap
    assert stored["provider"] == "polygon" and stored["candidates"] == 5
    minute_paths = {r["path"].split("/")[4] for r in fake.requests if "/range/1/minute/" in r["path"]}
    assert "RICH" not in minute_paths and "PENY" not in minute_paths
    assert all(r["auth_ok"] for r in fake.requests)

    bars = pd.read_parquet(pipeline / "intraday_bars" / f"{DAY}.parquet")
    assert sorted(bars["symbol"].unique()) == ["GAPR", "GAPS"]
    ts = bars["timestamp"].astype("int64")
    prev_rows = bars.loc[ts < et_ns(DAY, "04:00")]
    # one seed bar per symbol: the previous session's last regular minute (its close)
    assert sorted(prev_rows["symbol"]) == ["GAPR", "GAPS"]
    assert set(prev_rows["timestamp"].astype("int64")) == {et_ns(PREV, "15:59")}
    assert dict(zip(prev_rows["symbol"], prev_rows["close"])) == {"GAPR": 5.0, "GAPS": 10.0}
    today = bars.loc[ts >= et_ns(DAY, "04:00")]
    assert len(today) == 2 * (330 + 630)  # 04:00-09:29 premarket + 09:30-19:59
    assert not (tmp_path / "market").exists()  # nothing from the replay path


def test_scan_candidates_take_the_band_then_the_top_volume():
    cfg = RunnerResource().load_config().strategies.gap_and_go
    prev = pd.DataFrame({"symbol": ["A", "B", "C", "D", "E"], "close": [5.0, 25.0, 2.0, 0.5, 7.0],
                         "volume": [100.0, 900.0, 300.0, 800.0, 300.0]})
    market = MarketDataResource(provider="polygon", scan_candidates=2)
    assert market.scan_candidates_of(prev, cfg) == ["C", "E"]
    assert MarketDataResource(provider="polygon").scan_candidates_of(prev, cfg) == ["C", "E", "A"]


def test_polygon_provider_without_a_key_fails_clearly(monkeypatch):
    monkeypatch.delenv("POLYGON_API_KEY", raising=False)
    monkeypatch.delenv("MASSIVE_API_KEY", raising=False)
    with pytest.raises(ValueError, match="POLYGON_API_KEY"):
        MarketDataResource(provider="polygon").previous_daily(DAY)
    with pytest.raises(ValueError, match="unknown"):
        MarketDataResource(provider="bloomberg").source_file(DAY)
