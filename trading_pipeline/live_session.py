"""The `live_session` job: one op that runs the real-time chain as a Dagster Pipes subprocess.

Everything that can be wrong with a launch (a date that is no session, an unknown strategy, no
universe for the day, no bars to feed) is checked before the runner starts, and the run fails
with a message naming the problem. The runner then runs as `python -m live_runner run --mode
paper`; its logs and end-of-session summary come back through Pipes (live_runner/pipes_bridge.py).
The session's journal URL (a credential when it holds a password) goes to the runner in its
environment (`TRADING_JOURNAL_URL`), never on its command line, which /proc shows to every user;
what is logged or stored shows it with the password masked (live_runner/redact.py).
Terminating the run makes PipesSubprocessClient send SIGINT to the runner, which stops taking
bars, flushes its journal and exits (a canceled run stays down). No Dagster retries: a run that
fails during the trading day is relaunched by market_open_sensor (trading_pipeline/relaunch.py),
on the same journal; the runner's account lease (live_runner/lease.py) refuses a second runner.
"""


import json
import warnings
from dataclasses import dataclass
from datetime import date
from pathlib import Path

import dagster as dg
import yaml
from dagster._core.errors import DagsterPipesExecutionError  # a non-zero exit (not exported)

from live_runner.redact import JOURNAL_URL_ENV, redact_url
from trading_pipeline.bars import write_bars
from trading_pipeline.k8s_config import LIVE_SESSION_K8S_CONFIG
from trading_pipeline.partitions import NotASession, parse_session, trading_days
from trading_pipeline.resources import (
    MarketDataResource, MissingUniverse, RunnerResource, TradingStoreResource,
)

# Emitted by Dagster's own Pipes session code (not by anything used here).
warnings.filterwarnings("ignore", message=r"Function `PipesMessageReader.expected_writer_count`")
LIVE_SESSION_TAG = "trading/live_session"
LIVE_SESSION_TAGS = {
    "dagster/max_runtime": str(17 * 3600),  # 04:00-20:00 ET plus slack; run monitoring enforces it
    "dagster/max_retries": "0",
    "dagster/retry_on_asset_or_op_failure": "false",
    LIVE_SESSION_TAG: "true",  # QueuedRunCoordinator: tag_concurrency_limits = 1 (dagster.yaml)
    "dagster-k8s/config": LIVE_SESSION_K8S_CONFIG,  # pod settings under the K8sRunLauncher (k8s/)
}
MODES = ("live", "replay")


class LiveSessionConfig(dg.Config):
    session: str = ""  # YYYY-MM-DD; empty: the run's partition
    mode: str = "live"  # live: feed paced by runner.speed; replay: as fast as possible
    speed: float | None = None
    strategies: list[str] | None = None  # overrides the runner config's active_strategies
    universe: list[str] | None = None  # overrides the stored premarket_universe


@dataclass(frozen=True)
class LaunchPlan:
    day: date
    universe: list[str]
    config_file: Path
    feed: Path
    journal_url: str  # with its password: only in memory and in the runner's environment
    command: list[str]

    def env(self) -> dict[str, str]:
        """The runner's environment additions: the journal URL (not argv, see the module doc)."""
        return {JOURNAL_URL_ENV: self.journal_url}


def plan_launch(context: dg.OpExecutionContext, cfg: LiveSessionConfig, runner: RunnerResource,
                store: TradingStoreResource, market_data: MarketDataResource) -> LaunchPlan:
    """Validate the launch and prepare its files; dg.Failure (runner not started) on bad input."""
    from live_runner.config import ConfigError
    from live_runner.strategy_engine import load_strategy_class

    key = cfg.session or (context.partition_key if context.has_partition_key else "")
    if not key:
        raise dg.Failure("live_session needs a session: run a partition or set config.session")
    try:
        day = parse_session(key)
    except NotASession as exc:
        raise dg.Failure(f"live_session: {exc}") from None
    if cfg.mode not in MODES:
        raise dg.Failure(f"live_session: unknown mode {cfg.mode!r} (expected live or replay)")
    overrides = {"active_strategies": cfg.strategies} if cfg.strategies is not None else None
    try:
        config = runner.load_config(overrides)
        for name in config.active_strategies:
            load_strategy_class(name)
    except ConfigError as exc:
        raise dg.Failure(f"live_session: invalid runner configuration: {exc}") from None
    if cfg.universe is not None:
        universe = sorted(set(cfg.universe))
    else:
        try:
            universe = store.load_universe(day)
        except MissingUniverse as exc:
            raise dg.Failure(f"live_session: {exc}") from None
    try:
        frame = market_data.session_bars(day, universe)
    except (FileNotFoundError, ValueError) as exc:
        raise dg.Failure(f"live_session: no bars to feed for {day.isoformat()}: {exc}") from None
    folder = store.session_dir(day)
    config_file = folder / "config.yaml"
    config_file.write_text(yaml.safe_dump(config.model_dump(mode="json"), sort_keys=True))
    feed = write_bars(frame, folder / "feed.parquet")
    journal_url = store.journal_url_for(day)
    speed = cfg.speed or (runner.replay_speed if cfg.mode == "replay" else runner.speed)
    command = [runner.interpreter(), "-m", "live_runner", "run", "--mode", "paper",
               "--config", str(config_file), "--bars", str(feed), "--speed", repr(float(speed)),
               "--universe", ",".join(universe), "--json"]
    daily = store.path("daily_bars", day, ".parquet")
    if daily.exists():  # previous closes for symbols whose feed lacks the previous session
        command += ["--daily-bars", str(daily)]
    return LaunchPlan(day, universe, config_file, feed, journal_url, command)


@dg.op(tags={"kind": "pipes"})
def run_live_session(context: dg.OpExecutionContext, config: LiveSessionConfig,
                     runner: RunnerResource, store: TradingStoreResource,
                     market_data: MarketDataResource,
                     pipes_subprocess_client: dg.PipesSubprocessClient) -> dg.Output[dict]:
    """Start the runner for the session and wait for it (hours when live, seconds in replay)."""
    plan = plan_launch(context, config, runner, store, market_data)
    if not plan.universe:
        context.log.warning(f"{plan.day}: the universe is empty; nothing to trade, runner not started")
        return dg.Output({"session": plan.day.isoformat(), "skipped": "empty universe"},
                         metadata={"skipped": "empty universe"})
    context.log.info(f"{plan.day}: starting the runner on {len(plan.universe)} symbols "
                     f"({config.mode}); journal {redact_url(plan.journal_url)}")
    try:
        invocation = pipes_subprocess_client.run(
            context=context, command=plan.command, env=plan.env(),
            extras={"session": plan.day.isoformat()})
    except DagsterPipesExecutionError as exc:
        raise dg.Failure(f"{plan.day}: the runner failed: {exc}; its journal keeps what it did "
                         f"({redact_url(plan.journal_url)})") from exc
    messages = [m for m in invocation.get_custom_messages() if isinstance(m, dict)]
    summary = next((m["summary"] for m in reversed(messages) if "summary" in m), None)
    if summary is None:
        raise dg.Failure(f"{plan.day}: the runner exited without reporting a session summary")
    summary["journal"] = redact_url(str(summary.get("journal", "")))  # the runner's already is
    (store.session_dir(plan.day) / "summary.json").write_text(json.dumps(summary, indent=1))
    return dg.Output({"session": plan.day.isoformat(), "realized_pnl": summary["realized_pnl"]},
                     metadata=summary_metadata(summary))


def summary_metadata(summary: dict) -> dict[str, object]:
    """The runner's end-of-session summary as run metadata."""
    return {
        "realized_pnl": float(summary["realized_pnl"]), "commissions": float(summary["commissions"]),
        "final_equity": float(summary["final_equity"]), "trades": len(summary["trades"]),
        "signals": summary["signals"], "orders_submitted": summary["orders_submitted"],
        "bars_processed": summary["bars_processed"], "bars_rejected": summary["bars_rejected"],
        "open_positions": json.dumps(summary["final_positions"]),
        "risk_denials": json.dumps(summary["risk_denials"]), "elapsed_s": summary["elapsed_s"],
    }


@dg.job(partitions_def=trading_days(), tags=LIVE_SESSION_TAGS,
        description="Run the real-time chain for one session (Pipes subprocess).")
def live_session() -> None:
    run_live_session()
