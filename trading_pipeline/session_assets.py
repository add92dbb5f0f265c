"""End-of-day assets: what the live run did, the daily report, and the replay audit."""


import json
from decimal import Decimal

import dagster as dg

from trading_pipeline.catalog import (
    AFTER_CLOSE_FRESHNESS, CODE_VERSIONS, END_OF_DAY, OWNERS, table, usd,
)
from trading_pipeline.journal_snapshot import snapshot, trade_records
from trading_pipeline.live_session import LIVE_SESSION_KEY
from trading_pipeline.market_assets import intraday_bars
from trading_pipeline.partitions import parse_session, trading_days
from trading_pipeline.replay_diff import ReplayFailed, compare, live_events, pnl_drift, run_replay
from trading_pipeline.report import build, markdown
from trading_pipeline.resources import RunnerResource, TradingStoreResource


def _write_json(path, data) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(data, indent=1, default=str))
    tmp.replace(path)


def load_snapshot(store: TradingStoreResource, day) -> dict:
    path = store.path("session_journal", day, ".json")
    if not path.exists():
        raise dg.Failure(f"session_journal for {day.isoformat()} is missing ({path})")
    return json.loads(path.read_text())


TRADE_COLUMNS = {"symbol": "string", "strategy": "string", "qty": "int", "entry_price": "float",
                 "exit_price": "float", "exit_reason": "string", "pnl_usd": "float",
                 "commission_usd": "float"}


def trade_table(trades: list[dict]) -> dg.MetadataValue:
    rows = [{**t, "pnl_usd": t["pnl"], "commission_usd": t["commission"]} for t in trades]
    return table(rows, TRADE_COLUMNS, limit=100)


@dg.asset(partitions_def=trading_days(), group_name="end_of_day", deps=[LIVE_SESSION_KEY],
          kinds={"json"}, owners=OWNERS, tags=END_OF_DAY, code_version=CODE_VERSIONS["session_journal"])
def session_journal(context: dg.AssetExecutionContext,
                    store: TradingStoreResource) -> dg.MaterializeResult:
    """Orders, fills, trades, positions and P&L of the session, read from the runner's journal."""
    day = parse_session(context.partition_key)
    url = store.journal_url_for(day, create=False) if store.journal_exists(day) else None
    snap = snapshot(url, day)
    _write_json(store.path("session_journal", day, ".json"), snap)
    counts = snap["counts"]
    if not snap["ran"]:
        context.log.warning(f"{day}: no journal for this session (no live run)")
    return dg.MaterializeResult(metadata={
        "ran": snap["ran"], "ended": snap["ended"], "orders": counts.get("order", 0),
        "fills": counts.get("fill", 0), "trades": len(snap["trades"]),
        "realized_pnl_usd": usd(snap["realized_pnl"]), "commissions_usd": usd(snap["commissions"]),
        "open_positions": dg.MetadataValue.json(snap["positions"]),
        "open_orders": snap["open_orders"], "trading_state": snap["trading_state"] or "n/a",
        "trade_list": trade_table(snap["trades"]),
        "dagster/row_count": dg.MetadataValue.int(len(snap["trades"])),
        "dagster/column_schema": dg.TableSchema(columns=[
            dg.TableColumn(name, kind) for name, kind in TRADE_COLUMNS.items()])})


@dg.asset(partitions_def=trading_days(), group_name="end_of_day", deps=[session_journal],
          kinds={"html"}, owners=OWNERS, tags=END_OF_DAY, code_version=CODE_VERSIONS["daily_report"],
          freshness_policy=AFTER_CLOSE_FRESHNESS)
def daily_report(context: dg.AssetExecutionContext,
                 store: TradingStoreResource) -> dg.MaterializeResult:
    """The day's P&L, per-strategy statistics, trades and equity curve: shown here as Markdown
    with the chart embedded (`report`, `equity_curve`), and written as PNG and one self-contained
    HTML file (`html_file`, to open or mail from the machine that holds it). Max drawdown is in
    dollars from the session's peak equity; the Sharpe ratio is per trade (mean / standard
    deviation of trade P&L), not annualized."""
    day = parse_session(context.partition_key)
    snap = load_snapshot(store, day)
    out = build(snap, trade_records(snap["trades"]), store.root() / "reports" / day.isoformat())
    numbers = {k: v for k, v in out.items() if k not in ("png_b64", "markdown")}
    _write_json(store.path("reports", day, ".json"), numbers)
    total = out["stats"][-1]
    return dg.MaterializeResult(metadata={
        "realized_pnl_usd": usd(out["realized_pnl"]), "trades": dg.MetadataValue.int(out["trades"]),
        "max_drawdown_usd": usd(total["max_drawdown"]),
        "sharpe_per_trade": (dg.MetadataValue.float(total["sharpe"]) if total["sharpe"] is not None
                             else dg.MetadataValue.null()),
        "win_rate": dg.MetadataValue.float(total["win_rate"]),
        "report": dg.MetadataValue.md(out["markdown"]),
        "equity_curve": dg.MetadataValue.md(f"![equity curve](data:image/png;base64,{out['png_b64']})"),
        "html_file": dg.MetadataValue.path(out["html_path"]),
        "png_file": dg.MetadataValue.path(out["png_path"])})


@dg.asset(partitions_def=trading_days(), group_name="end_of_day",
          deps=[intraday_bars, session_journal], kinds={"json"}, owners=OWNERS, tags=END_OF_DAY,
          code_version=CODE_VERSIONS["replay_report"])
def replay_report(context: dg.AssetExecutionContext, runner: RunnerResource,
                  store: TradingStoreResource) -> dg.MaterializeResult:
    """Replays the stored session bars through the same chain (the runner CLI) and diffs the
    result against the live journal: orders, fills, trades and P&L drift."""
    day = parse_session(context.partition_key)
    universe = store.load_universe(day)
    bars = store.path("intraday_bars", day, ".parquet")
    if not bars.exists():
        raise dg.Failure(f"intraday_bars for {day.isoformat()} is missing ({bars})")
    if not universe:
        _write_json(store.path("replay_report", day, ".json"), {"skipped": "empty universe"})
        return dg.MaterializeResult(metadata={"skipped": "empty universe"})
    config = store.session_dir(day) / "config.yaml"  # what the live run used, when it ran
    if not config.exists():
        config.write_text(_config_yaml(runner))
    try:
        replay = run_replay(runner.interpreter(), bars, config, universe, day)
    except ReplayFailed as exc:
        raise dg.Failure(f"{day}: {exc}") from None
    snap = load_snapshot(store, day)
    live = live_events(store.journal_url_for(day, create=False), day) if snap["ran"] else []
    diff = compare(live, replay["events"])
    replay_realized = replay["realized"].realized if replay["realized"] else Decimal(0)
    drift = pnl_drift(Decimal(snap["realized_pnl"]), replay_realized) if snap["ran"] else None
    result = {"session": day.isoformat(), "live_ran": snap["ran"], "identical": diff["identical"],
              "pnl_drift": drift, "replay_realized_pnl": str(replay_realized),
              "live_realized_pnl": snap["realized_pnl"] if snap["ran"] else None,
              "replay_signals": replay["summary"]["signals"], "diff": diff}
    _write_json(store.path("replay_report", day, ".json"), result)
    rows = [{"kind": k, **{c: str(v) for c, v in diff[k].items()}} for k in ("order", "fill", "trade")]
    examples = markdown([{k: str(v) for k, v in e.items()} for e in diff["examples"]])
    if snap["ran"] and not diff["identical"]:
        context.log.warning(f"{day}: the replay differs from the live run (P&L drift {drift})")
    return dg.MaterializeResult(metadata={
        "live_ran": snap["ran"], "identical": diff["identical"],
        "pnl_drift_usd": usd(drift), "replay_realized_pnl_usd": usd(replay_realized),
        "replay_trades": diff["trade"]["replay"],
        "diff": dg.MetadataValue.md(markdown(rows) + "\n\n" + examples)})


def _config_yaml(runner: RunnerResource) -> str:
    import yaml

    return yaml.safe_dump(runner.load_config().model_dump(mode="json"), sort_keys=True)
