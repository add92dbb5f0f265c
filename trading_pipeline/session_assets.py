"""End-of-day assets: what the live run did, the daily report, and the replay audit."""


import json
from decimal import Decimal

import dagster as dg

from trading_pipeline.journal_snapshot import snapshot, trade_records
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


@dg.asset(partitions_def=trading_days(), group_name="end_of_day", kinds={"json"})
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
        "realized_pnl": float(snap["realized_pnl"]), "open_positions": json.dumps(snap["positions"]),
        "open_orders": snap["open_orders"], "trading_state": snap["trading_state"] or "n/a"})


@dg.asset(partitions_def=trading_days(), group_name="end_of_day", deps=[session_journal],
          kinds={"html"})
def daily_report(context: dg.AssetExecutionContext,
                 store: TradingStoreResource) -> dg.MaterializeResult:
    """The day's P&L, per-strategy statistics, trades and equity curve (Markdown, PNG, HTML)."""
    day = parse_session(context.partition_key)
    snap = load_snapshot(store, day)
    out = build(snap, trade_records(snap["trades"]), store.root() / "reports" / day.isoformat())
    numbers = {k: v for k, v in out.items() if k not in ("png_b64", "markdown")}
    _write_json(store.path("reports", day, ".json"), numbers)
    return dg.MaterializeResult(metadata={
        "realized_pnl": float(out["realized_pnl"]), "trades": out["trades"],
        "report": dg.MetadataValue.md(out["markdown"]),
        "equity_curve": dg.MetadataValue.md(f"![equity curve](data:image/png;base64,{out['png_b64']})"),
        "html": dg.MetadataValue.path(out["html_path"]),
        "png": dg.MetadataValue.path(out["png_path"])})


@dg.asset(partitions_def=trading_days(), group_name="end_of_day",
          deps=[intraday_bars, session_journal], kinds={"json"})
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
        "pnl_drift": float(drift) if drift is not None else dg.MetadataValue.null(),
        "replay_realized_pnl": float(replay_realized), "replay_trades": diff["trade"]["replay"],
        "diff": dg.MetadataValue.md(markdown(rows) + "\n\n" + examples)})


def _config_yaml(runner: RunnerResource) -> str:
    import yaml

    return yaml.safe_dump(runner.load_config().model_dump(mode="json"), sort_keys=True)
