"""The live session: a partitioned Pipes asset that runs the real-time chain for one trading day.

`live_session` sits between the premarket assets and the end-of-day ones (premarket_universe ->
live_session -> session_journal), so the lineage reads the day in order and a backfill of a whole
day is one selection. Its op, `run_live_session`, starts `python -m live_runner run --mode paper`
as a Dagster Pipes subprocess; the runner tells its story through Pipes (live_runner/ops/pipes_bridge.py)
and writes the session's journal. The `live_session` asset job is what the market_open_sensor,
`dagster job launch -j live_session` and the relaunch policy run.

Everything that can be wrong with a launch (a date that is no session, an unknown strategy, no
universe for the day, no bars to feed) is checked before the runner starts, and the run fails
with a message naming the problem. The session's journal URL (a credential when it holds a
password) goes to the runner in its environment (`TRADING_JOURNAL_URL`), never on its command
line, which /proc shows to every user; what is logged or stored shows it with the password masked
(live_runner/ops/redact.py). The Dagster-launched runner binds its ops server to any free port unless
a port is configured (RunnerResource.ops_port, or ops.port in the runner YAML), so a replay never
collides with a live runner on the same host.
Terminating the run makes PipesSubprocessClient send SIGINT to the runner, which stops taking
bars, flushes its journal and exits (a canceled run stays down). No Dagster retries: a run that
fails during the trading day is relaunched by market_open_sensor (trading_pipeline/relaunch.py),
on the same journal; the runner's account lease (live_runner/live/lease.py) refuses a second runner.
"""

import json
import os
import warnings
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Literal

import dagster as dg
import yaml
from dagster._core.errors import DagsterPipesExecutionError  # a non-zero exit (not exported)
from pydantic import Field

from live_runner.ops.redact import JOURNAL_URL_ENV, redact_url
from trading_pipeline.bars import write_bars
from trading_pipeline.catalog import AFTER_CLOSE_FRESHNESS, CODE_VERSIONS, OWNERS, SESSION, usd
from trading_pipeline.k8s_config import LIVE_SESSION_K8S_CONFIG
from trading_pipeline.market_assets import premarket_universe
from trading_pipeline.partitions import (
    NotASession, early_close_note, parse_session, session_times, trading_days,
)
from trading_pipeline.resources import (
    MarketClockResource, MarketDataResource, MissingUniverse, RunnerResource, TradingStoreResource,
)

# Emitted by Dagster's own Pipes session code (not by anything used here).
warnings.filterwarnings("ignore", message=r"Function `PipesMessageReader.expected_writer_count`")
warnings.filterwarnings("ignore", message=r"AssetExecutionContext.run_id is deprecated")
LIVE_SESSION_TAG = "trading/live_session"
K8S_CONFIG_TAG = "dagster-k8s/config"


def live_session_tags(environ: dict[str, str] | None = None) -> dict[str, object]:
    """The live_session job's run tags. The pod settings (`dagster-k8s/config`, read by the
    K8sRunLauncher) only where the code location runs in Kubernetes: elsewhere no launcher reads
    them and the UI would show them as a JSON chip on every run."""
    env = os.environ if environ is None else environ
    tags: dict[str, object] = {
        "dagster/max_runtime": str(17 * 3600),  # 04:00-20:00 ET plus slack; run monitoring enforces it
        "dagster/max_retries": "0",
        "dagster/retry_on_asset_or_op_failure": "false",
        LIVE_SESSION_TAG: "true",  # QueuedRunCoordinator: tag_concurrency_limits = 1 (dagster.yaml)
    }
    if env.get("KUBERNETES_SERVICE_HOST"):  # set by the kubelet in every pod
        tags[K8S_CONFIG_TAG] = LIVE_SESSION_K8S_CONFIG
    return tags


LIVE_SESSION_TAGS = live_session_tags()
Mode = Literal["auto", "paced", "replay"]


class LiveSessionConfig(dg.Config):
    """Launchpad settings of one live session (all optional: the partition says which day)."""

    session: str = Field(default="", description=(
        "The session to trade, YYYY-MM-DD (an XNYS session). Empty: the run's partition."))
    mode: Mode = Field(default="auto", description=(
        "paced: bars are released on the wall clock at `speed` (1 = real time): the trading day "
        "itself, a paper session. replay: as fast as possible (a past day, in seconds). auto: "
        "paced when the session is today (market clock), replay for a past session."))
    speed: float | None = Field(default=None, gt=0, description=(
        "Feed pace override: 1 = real time, 60 = one bar-minute per second. Empty: the runner "
        "resource's speed when paced, its replay_speed in replay."))
    strategies: list[str] | None = Field(default=None, description=(
        "Strategies to run (e.g. [gap_and_go, vwap_reclaim]); empty: the runner config's "
        "active_strategies."))
    universe: list[str] | None = Field(default=None, description=(
        "Symbols to trade; empty: the day's stored premarket_universe."))


@dataclass(frozen=True)
class LaunchPlan:
    day: date
    mode: str  # paced or replay (auto resolved)
    universe: list[str]
    config_file: Path
    feed: Path
    journal_url: str  # with its password: only in memory and in the runner's environment
    command: list[str]

    def env(self) -> dict[str, str]:
        """The runner's environment additions: the journal URL (not argv, see the module doc)."""
        return {JOURNAL_URL_ENV: self.journal_url}


def resolve_mode(mode: str, day: date, today: date) -> str:
    """`auto` is paced for today's (or a future) session and replay for a past one."""
    if mode == "auto":
        return "replay" if day < today else "paced"
    return mode


def plan_launch(context: dg.OpExecutionContext | dg.AssetExecutionContext, cfg: LiveSessionConfig,
                runner: RunnerResource, store: TradingStoreResource, market_data: MarketDataResource,
                today: date) -> LaunchPlan:
    """Validate the launch and prepare its files; dg.Failure (runner not started) on bad input."""
    from live_runner.core.config import ConfigError
    from live_runner.strategies.engine import load_strategy_class

    key = cfg.session or (context.partition_key if context.has_partition_key else "")
    if not key:
        raise dg.Failure("live_session needs a session: run a partition or set config.session")
    try:
        day = parse_session(key)
    except NotASession as exc:
        raise dg.Failure(f"live_session: {exc}") from None
    mode = resolve_mode(cfg.mode, day, today)
    overrides = {"active_strategies": cfg.strategies} if cfg.strategies is not None else None
    try:
        config = runner.load_config(overrides)
        for name in config.active_strategies:
            load_strategy_class(name)
    except ConfigError as exc:
        raise dg.Failure(f"live_session: invalid runner configuration: {exc}") from None
    if runner.ops_port is None and "port" not in config.ops.model_fields_set:
        # Not configured anywhere: any free port (it is logged), never the default 8080 that a
        # live runner on the same host may hold.
        config = config.model_copy(update={"ops": config.ops.model_copy(update={"port": 0})})
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
    speed = cfg.speed or (runner.replay_speed if mode == "replay" else runner.speed)
    command = [runner.interpreter(), "-m", "live_runner", "run", "--mode", "paper",
               "--config", str(config_file), "--bars", str(feed), "--speed", repr(float(speed)),
               "--universe", ",".join(universe), "--json"]
    daily = store.path("daily_bars", day, ".parquet")
    if daily.exists():  # previous closes for symbols whose feed lacks the previous session
        command += ["--daily-bars", str(daily)]
    return LaunchPlan(day, mode, universe, config_file, feed, journal_url, command)


LIVE_SESSION_KEY = dg.AssetKey("live_session")


@dg.multi_asset(
    name="run_live_session", partitions_def=trading_days(), can_subset=False,
    op_tags={"kind": "pipes"},
    specs=[dg.AssetSpec(
        LIVE_SESSION_KEY, deps=[premarket_universe], group_name="session", kinds={"python"},
        description=("The trading session itself: the runner trades the day's universe (paper) "
                     "as a Pipes subprocess and writes the session's journal; its story (entries, "
                     "exits, denials, state changes, alerts) is in the run's logs. "
                     + early_close_note()),
        owners=OWNERS, tags=SESSION, code_version=CODE_VERSIONS["live_session"],
        freshness_policy=AFTER_CLOSE_FRESHNESS)])
def run_live_session(context: dg.AssetExecutionContext, config: LiveSessionConfig,
                     runner: RunnerResource, store: TradingStoreResource,
                     market_data: MarketDataResource, market_clock: MarketClockResource,
                     pipes_subprocess_client: dg.PipesSubprocessClient) -> dg.MaterializeResult:
    """Start the runner for the session and wait for it (hours when paced, seconds in replay)."""
    plan = plan_launch(context, config, runner, store, market_data, market_clock.now().date())
    if not plan.universe:
        context.log.warning(f"{plan.day}: the universe is empty; nothing to trade, runner not started")
        return dg.MaterializeResult(metadata={"session": plan.day.isoformat(),
                                              "skipped": "empty universe", "trades": 0})
    context.log.info(f"[{plan.day}] starting the runner on {len(plan.universe)} symbols "
                     f"({plan.mode}); journal {redact_url(plan.journal_url)}")
    try:
        invocation = pipes_subprocess_client.run(
            context=context, command=plan.command, env=plan.env(),
            extras={"session": plan.day.isoformat(), "mode": plan.mode})
    except DagsterPipesExecutionError as exc:
        raise dg.Failure(f"{plan.day}: the runner failed: {exc}; its journal keeps what it did "
                         f"({redact_url(plan.journal_url)})") from exc
    messages = [m for m in invocation.get_custom_messages() if isinstance(m, dict)]
    summary = next((m["summary"] for m in reversed(messages) if "summary" in m), None)
    if summary is None:
        raise dg.Failure(f"{plan.day}: the runner exited without reporting a session summary")
    summary["journal"] = redact_url(str(summary.get("journal", "")))  # the runner's already is
    (store.session_dir(plan.day) / "summary.json").write_text(json.dumps(summary, indent=1))
    return dg.MaterializeResult(metadata={
        "session": plan.day.isoformat(), "mode": plan.mode,
        "early_close": session_times(plan.day).early_close, **summary_metadata(summary)})


def summary_metadata(summary: dict) -> dict[str, object]:
    """The runner's end-of-session summary as typed metadata (money in US dollars)."""
    denials = {str(k): int(v) for k, v in sorted(summary["risk_denials"].items())}
    return {
        "realized_pnl_usd": usd(summary["realized_pnl"]), "commissions_usd": usd(summary["commissions"]),
        "final_equity_usd": usd(summary["final_equity"]),
        "trades": dg.MetadataValue.int(len(summary["trades"])),
        "signals": dg.MetadataValue.int(int(summary["signals"])),
        "orders_submitted": dg.MetadataValue.int(int(summary["orders_submitted"])),
        "bars_processed": dg.MetadataValue.int(int(summary["bars_processed"])),
        "bars_rejected": dg.MetadataValue.int(int(summary["bars_rejected"])),
        "open_positions": dg.MetadataValue.json(dict(summary["final_positions"])),
        "risk_denials": dg.MetadataValue.json(denials),
        "risk_denials_total": dg.MetadataValue.int(sum(denials.values())),
        "elapsed_s": dg.MetadataValue.float(float(summary["elapsed_s"])),
    }


live_session = dg.define_asset_job(
    "live_session", selection=dg.AssetSelection.assets(LIVE_SESSION_KEY), tags=LIVE_SESSION_TAGS,
    description="Run the real-time chain for one session: the live_session asset (Pipes subprocess).")
