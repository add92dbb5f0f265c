"""Asset checks: bars complete and sane, a universe on a normal day, a report that reconciles.

Sanity (duplicates, OHLC consistency, positive prices) is an ERROR and blocks what is built on the
bars; completeness (a missing regular-session minute) is a WARN, since illiquid names really do
skip minutes. The reconciliation check recomputes the session's P&L from the journal itself, not
from the report's inputs.
"""


import json
import warnings
from decimal import Decimal

import dagster as dg
import numpy as np
import pandas as pd

from live_runner.persistence.journal_state import load_state
from trading_pipeline.catalog import usd
from trading_pipeline.market_assets import daily_bars, intraday_bars, load_intraday, premarket_universe
from trading_pipeline.partitions import parse_session, session_times, trading_days
from trading_pipeline.resources import TradingStoreResource
from trading_pipeline.session_assets import daily_report

NS_PER_MIN = 60_000_000_000
# Partitioned asset checks are a preview API in dagster 1.13 (pinned); they are what lets a check
# run per trading day, so the preview warning is expected here and silenced.
warnings.filterwarnings("ignore", message=r"Specifying a partitions_def on an AssetCheckSpec")


def ohlc_problems(frame: pd.DataFrame, keys: list[str]) -> dict[str, int]:
    """Counts of rows breaking each sanity rule (zero everywhere = sane)."""
    o, h, low, c, v = (frame[k].to_numpy(np.float64) for k in ("open", "high", "low", "close", "volume"))
    with np.errstate(invalid="ignore"):
        return {
            "duplicates": int(frame.duplicated(keys).sum()),
            "non_positive_or_nan_price": int((~((o > 0) & (h > 0) & (low > 0) & (c > 0))).sum()),
            "high_below_low": int((h < low).sum()),
            "open_or_close_outside_range": int(((o < low) | (o > h) | (c < low) | (c > h)).sum()),
            "negative_volume": int((v < 0).sum()),
        }


@dg.asset_check(asset=daily_bars, blocking=True, partitions_def=trading_days(),
                description="Previous closes are usable (blocks the scan when not): at least one "
                            "symbol, no duplicate symbol, OHLC consistent, positive prices, no "
                            "negative volume.")
def daily_bars_sane(context: dg.AssetCheckExecutionContext,
                    store: TradingStoreResource) -> dg.AssetCheckResult:
    """Each sanity rule's count of offending rows (all zero when it passes)."""
    day = parse_session(context.partition_key)
    frame = pd.read_parquet(store.path("daily_bars", day, ".parquet"))
    problems = ohlc_problems(frame, ["symbol"])
    return dg.AssetCheckResult(passed=not any(problems.values()) and len(frame) > 0,
                               metadata={**problems, "symbols": len(frame)})


@dg.asset_check(asset=premarket_universe, partitions_def=trading_days())
def universe_not_empty(context: dg.AssetCheckExecutionContext,
                       store: TradingStoreResource) -> dg.AssetCheckResult:
    """On a normal (full) session some stock gaps; an empty scan is more likely a data problem."""
    day = parse_session(context.partition_key)
    count = len(store.load_universe(day))
    early = session_times(day).early_close
    return dg.AssetCheckResult(passed=count > 0 or early, severity=dg.AssetCheckSeverity.WARN,
                               metadata={"count": count, "early_close": early})


@dg.asset_check(asset=intraday_bars, blocking=True, partitions_def=trading_days())
def intraday_bars_sane(context: dg.AssetCheckExecutionContext,
                       store: TradingStoreResource) -> dg.AssetCheckResult:
    """No duplicate (symbol, minute), OHLC consistent, positive prices, no negative volume."""
    frame = load_intraday(store, parse_session(context.partition_key))
    problems = ohlc_problems(frame, ["symbol", "ts"])
    return dg.AssetCheckResult(passed=not any(problems.values()),
                               metadata={**problems, "rows": len(frame)})


@dg.asset_check(asset=intraday_bars, partitions_def=trading_days())
def intraday_bars_complete(context: dg.AssetCheckExecutionContext,
                           store: TradingStoreResource) -> dg.AssetCheckResult:
    """Every universe symbol has every regular-session minute (390, or 210 on an early close)."""
    day = parse_session(context.partition_key)
    session = session_times(day)
    frame = load_intraday(store, day)
    expected = (session.close - session.open) // NS_PER_MIN
    universe = store.load_universe(day)
    ts = frame["ts"].to_numpy(np.int64)
    regular = frame.loc[(ts >= session.open) & (ts < session.close) & (ts % NS_PER_MIN == 0)]
    have = regular.drop_duplicates(["symbol", "ts"]).groupby("symbol").size()
    missing = {s: int(expected - have.get(s, 0)) for s in universe if have.get(s, 0) < expected}
    return dg.AssetCheckResult(
        passed=not missing, severity=dg.AssetCheckSeverity.WARN,
        metadata={"expected_minutes": int(expected), "symbols": len(universe),
                  "symbols_with_gaps": len(missing),
                  "missing_minutes_total": int(sum(missing.values())),
                  "missing_minutes": dg.MetadataValue.json(dict(sorted(missing.items())[:20]))})


@dg.asset_check(asset=daily_report, partitions_def=trading_days())
def report_matches_journal(context: dg.AssetCheckExecutionContext,
                           store: TradingStoreResource) -> dg.AssetCheckResult:
    """The report's realized P&L equals the journal's (rebuilt from fills), to the cent; when the
    session closed flat it also equals the sum of the trades and the runner's session_end."""
    day = parse_session(context.partition_key)
    report = json.loads(store.path("reports", day, ".json").read_text())
    reported = Decimal(report["realized_pnl"])
    journal = Decimal(0)
    ended_with = None
    if store.journal_exists(day):
        url = store.journal_url_for(day, create=False)
        ses = load_state(url, day.isoformat()).sessions.get(day.isoformat())
        if ses is not None:
            journal = ses.realized
            if ses.end is not None and not ses.end.get("positions"):
                ended_with = Decimal(ses.end["realized_pnl"])
    ok = reported == journal
    if ended_with is not None:
        ok = ok and ended_with == journal == Decimal(report["trades_pnl"])
    return dg.AssetCheckResult(passed=ok, metadata={
        "report_pnl_usd": usd(reported), "journal_pnl_usd": usd(journal),
        "trades_pnl_usd": usd(report["trades_pnl"]), "session_end_pnl_usd": usd(ended_with),
        "difference_usd": usd(reported - journal)})


ALL_CHECKS = [daily_bars_sane, universe_not_empty, intraday_bars_sane, intraday_bars_complete,
              report_matches_journal]
