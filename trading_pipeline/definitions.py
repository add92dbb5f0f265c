"""Dagster definitions of the `trading_pipeline` code location.

Resources are configured from the environment when the code location loads (defaults: the
synthetic market under var/market, files and SQLite journals under var/pipeline). Secrets are
bound as `EnvVar`s, so Dagster reads them in the process that needs them and never shows or stores
their values; a secret that is not set is simply absent (e.g. no webhook sink).

    TRADING_MARKET_DATA_DIR  bar files (replay provider)      TRADING_PIPELINE_DIR  stored outputs
    TRADING_JOURNAL_URL      journal URL, `{session}` or PG   TRADING_RUNNER_CONFIG runner YAML
    TRADING_RUNNER_SPEED     live feed pace (1 = real time)   TRADING_RUNNER_OPS_PORT ops.port override
    TRADING_SAMPLE_SYMBOLS / TRADING_SAMPLE_SEED   synthetic market size and seed
    TRADING_MARKET_DATA_PROVIDER replay, polygon or yahoo   TRADING_POLYGON_API_KEY (or POLYGON_API_KEY)
    TRADING_POLYGON_REST_URL / TRADING_SCAN_CANDIDATES    Polygon endpoint, premarket scan size
    TRADING_ALERT_*          alert sinks (live_runner.ops.alerts.sinks_from_env)
    TRADING_MARKET_CLOCK_NOW  a fixed ISO instant for the sensors (drills, tests)
    TRADING_LIVE_MAX_RELAUNCHES / TRADING_LIVE_RELAUNCH_BACKOFF_S  failed live session relaunches
    TRADING_SENSOR_INTERVAL_S  market_open_sensor's evaluation interval (30 s)
    TRADING_LIVE_LOST_AFTER_S  a started session without a lease heartbeat this long is failed (90 s)
    TRADING_HISTORY_SOURCE / _PATH / _CACHE / _SYMBOLS  backtest bars (history_sources.py)
    TRADING_BACKTEST_PARAMS  parameter sets file (default config/backtest_params.yaml)
"""


import os
import warnings

import dagster as dg

from trading_pipeline.backtest_assets import BACKTEST_ASSETS, BACKTEST_CHECKS, BACKTEST_JOBS
from trading_pipeline.backtest_params import BacktestResource
from trading_pipeline.checks import ALL_CHECKS
from trading_pipeline.history_sources import HistoryResource
from trading_pipeline.jobs import end_of_day, premarket_prep
from trading_pipeline.live_session import live_session, run_live_session
from trading_pipeline.market_assets import daily_bars, intraday_bars, premarket_universe
from trading_pipeline.relaunch import RelaunchPolicyResource
from trading_pipeline.resources import (
    AlertsResource, MarketClockResource, MarketDataResource, RunnerResource, TradingStoreResource,
)
from trading_pipeline.retention import data_retention
from trading_pipeline.schedules import ALL_SCHEDULES
from trading_pipeline.sensors import ALL_SENSORS
from trading_pipeline.session_assets import daily_report, replay_report, session_journal

ALERT_FIELDS = ("webhook_url", "smtp_host", "smtp_port", "smtp_user", "smtp_password", "smtp_tls",
                "smtp_starttls", "smtp_cafile", "email_from", "email_to")


def _secret(name: str) -> dg.EnvVar | None:
    """An EnvVar when the variable is set (an unset EnvVar would fail every run)."""
    return dg.EnvVar(name) if os.environ.get(name) else None


def _env(name: str, default: str) -> str:
    return os.environ.get(name) or default


def build_resources() -> dict[str, object]:
    ops_port = os.environ.get("TRADING_RUNNER_OPS_PORT")
    return {
        "market_data": MarketDataResource(
            provider=_env("TRADING_MARKET_DATA_PROVIDER", "replay"),
            bars_dir=_env("TRADING_MARKET_DATA_DIR", "var/market"),
            sample_symbols=int(_env("TRADING_SAMPLE_SYMBOLS", "40")),
            sample_seed=int(_env("TRADING_SAMPLE_SEED", "7")),
            api_key=_secret("TRADING_POLYGON_API_KEY"),
            rest_base_url=os.environ.get("TRADING_POLYGON_REST_URL") or None,
            scan_candidates=int(_env("TRADING_SCAN_CANDIDATES", "500"))),
        "runner": RunnerResource(
            config_path=os.environ.get("TRADING_RUNNER_CONFIG") or None,
            speed=float(_env("TRADING_RUNNER_SPEED", "1.0")),
            ops_port=int(ops_port) if ops_port else None),
        "store": TradingStoreResource(
            data_dir=_env("TRADING_PIPELINE_DIR", "var/pipeline"),
            journal_url=_secret("TRADING_JOURNAL_URL") or ""),
        "alerts": AlertsResource(**{f: _secret(f"TRADING_ALERT_{f.upper()}") for f in ALERT_FIELDS}),
        "market_clock": MarketClockResource(now_iso=os.environ.get("TRADING_MARKET_CLOCK_NOW") or None),
        "relaunch_policy": RelaunchPolicyResource(
            max_relaunches=int(_env("TRADING_LIVE_MAX_RELAUNCHES", "3")),
            backoff_s=float(_env("TRADING_LIVE_RELAUNCH_BACKOFF_S", "30")),
            lost_after_s=float(_env("TRADING_LIVE_LOST_AFTER_S", "90"))),
        "history": HistoryResource(
            source=_env("TRADING_HISTORY_SOURCE", "market_data"),
            path=_env("TRADING_HISTORY_PATH", ""), cache_dir=_env("TRADING_HISTORY_CACHE", "var/history"),
            symbols=[s for s in _env("TRADING_HISTORY_SYMBOLS", "").split(",") if s] or None,
            api_key=_secret("TRADING_POLYGON_API_KEY"),
            rest_base_url=os.environ.get("TRADING_POLYGON_REST_URL") or None,
            s3_endpoint_url=os.environ.get("TRADING_POLYGON_S3_ENDPOINT") or None),
        "backtest": BacktestResource(params_file=_env("TRADING_BACKTEST_PARAMS", "config/backtest_params.yaml")),
        "pipes_subprocess_client": dg.ResourceDefinition.hardcoded_resource(
            dg.PipesSubprocessClient(
                termination_timeout_seconds=float(_env("TRADING_RUNNER_TERMINATION_TIMEOUT", "30"))),
            description="Starts the runner as a Dagster Pipes subprocess (its logs and summary come "
                        "back through Pipes); on termination it sends SIGINT and waits "
                        "TRADING_RUNNER_TERMINATION_TIMEOUT seconds (default 30) before killing it."),
    }


# The day in order: premarket -> the session itself -> end of day, then the research loop. Each
# asset links to its source (a beta API in the pinned dagster; its warnings are expected).
with warnings.catch_warnings():
    warnings.simplefilter("ignore", dg.BetaWarning)
    ASSETS = dg.with_source_code_references([
        daily_bars, premarket_universe, run_live_session, intraday_bars, session_journal,
        daily_report, replay_report, *BACKTEST_ASSETS])


def make_definitions(resources: dict[str, object] | None = None) -> dg.Definitions:
    """The code location with these resources (tests bind temporary folders this way)."""
    return dg.Definitions(
        assets=ASSETS,
        asset_checks=[*ALL_CHECKS, *BACKTEST_CHECKS],
        jobs=[premarket_prep, live_session, end_of_day, data_retention, *BACKTEST_JOBS],
        schedules=ALL_SCHEDULES,
        sensors=ALL_SENSORS,
        resources=resources if resources is not None else build_resources(),
        # Steps are light (files, a subprocess): one process per run, not one per step, saves
        # seconds of interpreter start-up per step on a small machine.
        executor=dg.in_process_executor,
    )


defs = make_definitions()
