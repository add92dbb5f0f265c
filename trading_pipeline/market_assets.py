"""Market-data assets of a trading day: previous closes, the pre-market universe, the session bars.

Each asset writes its own file under the trading store (Parquet or JSON, one per partition) and
returns a MaterializeResult; nothing goes through an IO manager, so the run worker, the runner
subprocess and a later replay all read the same files.
"""


import json

import dagster as dg
import pandas as pd

from trading_pipeline.bars import daily_from_minutes, read_bars, write_bars
from trading_pipeline.catalog import (
    CODE_VERSIONS, END_OF_DAY, OWNERS, PREMARKET, UNIVERSE_FRESHNESS, table, tabular,
)
from trading_pipeline.partitions import parse_session, session_times, trading_days
from trading_pipeline.resources import MarketDataResource, RunnerResource, TradingStoreResource
from trading_pipeline.universe_scan import markdown_table, premarket_stats, scan, valid_bars


BAR_COLUMNS = {"symbol": "ticker", "ts": "bar start, ns since the epoch (UTC)",
               "volume": "shares traded"}
UNIVERSE_COLUMNS = {"rank": "int", "symbol": "string", "gap_pct": "float", "prev_close": "float",
                    "pm_last": "float", "pm_high": "float", "pm_volume": "int"}


@dg.asset(partitions_def=trading_days(), group_name="premarket", kinds={"parquet"}, owners=OWNERS,
          tags=PREMARKET, code_version=CODE_VERSIONS["daily_bars"])
def daily_bars(context: dg.AssetExecutionContext, market_data: MarketDataResource,
               store: TradingStoreResource) -> dg.MaterializeResult:
    """The previous session's daily bar per symbol (its close is the gap reference)."""
    day = parse_session(context.partition_key)
    prev = session_times(session_times(day).prev_date)
    if market_data.provider == "replay":
        try:
            source = market_data.source_file(day)
        except FileNotFoundError as exc:
            raise dg.Failure(f"daily_bars {day.isoformat()}: {exc}") from None
        minutes = read_bars(source, prev.open, prev.close)
        minutes = minutes.loc[valid_bars(minutes)]
        daily = daily_from_minutes(minutes)
        origin = dg.MetadataValue.path(str(source))
    else:  # polygon: grouped daily (the whole market); yahoo: its symbols
        daily = market_data.previous_daily(day)
        origin = dg.MetadataValue.text(f"{market_data.provider} daily bars")
    if daily.empty:  # no data is a failure, never a materialization of 0 symbols
        where = origin.value if market_data.provider == "replay" else f"provider {market_data.provider}"
        raise dg.Failure(f"daily_bars {day.isoformat()}: no bars of the previous session "
                         f"{prev.date.isoformat()} in {where}")
    daily.insert(1, "session", prev.date.isoformat())
    path = store.path("daily_bars", day, ".parquet")
    daily.to_parquet(path, index=False)
    return dg.MaterializeResult(metadata={
        "symbols": len(daily), "previous_session": prev.date.isoformat(),
        "provider": market_data.provider, "source": origin, "path": dg.MetadataValue.path(str(path)),
        **tabular(daily, BAR_COLUMNS)})


@dg.asset(partitions_def=trading_days(), group_name="premarket", deps=[daily_bars], kinds={"json"},
          owners=OWNERS, tags=PREMARKET, code_version=CODE_VERSIONS["premarket_universe"],
          freshness_policy=UNIVERSE_FRESHNESS)
def premarket_universe(context: dg.AssetExecutionContext, market_data: MarketDataResource,
                       runner: RunnerResource, store: TradingStoreResource) -> dg.MaterializeResult:
    """The gap scan at the open: gap_and_go's qualification over the whole market, ranked (due
    by 09:15 ET, before the open sensor's 15-minute lead)."""
    day = parse_session(context.partition_key)
    session = session_times(day)
    daily_path = store.path("daily_bars", day, ".parquet")
    if not daily_path.exists():
        raise dg.Failure(f"daily_bars for {day.isoformat()} is missing ({daily_path})")
    previous = pd.read_parquet(daily_path)
    prev_close = previous.rename(columns={"close": "prev_close"})
    cfg = runner.load_config().strategies.gap_and_go
    # replay: the whole bar file; polygon/yahoo: the price-band, top-volume candidates over REST
    premarket, fetched = market_data.premarket_bars(day, previous, cfg)
    ranked = scan(prev_close, premarket_stats(premarket, session.premarket_open, session.open), cfg)
    path = store.universe_path(day)
    payload = {"session": day.isoformat(), "early_close": session.early_close,
               "symbols": ranked["symbol"].tolist(), "scanned": int(len(prev_close)),
               "rows": json.loads(ranked.to_json(orient="records")),
               "criteria": cfg.model_dump(mode="json"), "provider": market_data.provider,
               "candidates": fetched}
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(payload, indent=1))
    tmp.replace(path)
    context.log.info(f"{day}: {len(ranked)} of {len(prev_close)} symbols qualify")
    rows = json.loads(ranked.to_json(orient="records"))
    return dg.MaterializeResult(metadata={
        "count": len(ranked), "scanned": len(prev_close), "candidates": fetched,
        "provider": market_data.provider, "early_close": session.early_close,
        "universe": dg.MetadataValue.md(markdown_table(ranked)),
        "ranking": table(rows, UNIVERSE_COLUMNS),
        "dagster/row_count": dg.MetadataValue.int(len(ranked)),
        "dagster/column_schema": dg.TableSchema(columns=[
            dg.TableColumn(name, kind) for name, kind in UNIVERSE_COLUMNS.items()]),
        "symbols": ", ".join(ranked["symbol"].head(50)), "path": dg.MetadataValue.path(str(path))})


@dg.asset(partitions_def=trading_days(), group_name="end_of_day", deps=[premarket_universe],
          kinds={"parquet"}, owners=OWNERS, tags=END_OF_DAY, code_version=CODE_VERSIONS["intraday_bars"])
def intraday_bars(context: dg.AssetExecutionContext, market_data: MarketDataResource,
                  store: TradingStoreResource) -> dg.MaterializeResult:
    """The universe's 1-minute bars of the session (with the previous session's regular hours,
    which the runner needs for its previous closes): the input of any later replay."""
    day = parse_session(context.partition_key)
    symbols = store.load_universe(day)
    frame = market_data.session_bars(day, symbols)
    if symbols and frame.empty:
        raise dg.Failure(f"intraday_bars {day.isoformat()}: no bars for its {len(symbols)} universe "
                         f"symbols from provider {market_data.provider}")
    path = write_bars(frame, store.path("intraday_bars", day, ".parquet"))
    session = session_times(day)
    in_session = frame["ts"].between(session.premarket_open, session.afterhours_close - 1)
    return dg.MaterializeResult(metadata={
        "rows": len(frame), "session_rows": int(in_session.sum()), "symbols": len(symbols),
        "early_close": session.early_close, "path": dg.MetadataValue.path(str(path)),
        **tabular(frame, BAR_COLUMNS)})


def load_intraday(store: TradingStoreResource, day) -> pd.DataFrame:
    path = store.path("intraday_bars", day, ".parquet")
    if not path.exists():
        raise dg.Failure(f"intraday_bars for {day.isoformat()} is missing ({path})")
    return read_bars(path)
