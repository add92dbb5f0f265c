"""The code location's Definitions: what it holds, how the live session is tagged, how secrets
are bound."""

import dagster as dg

from trading_pipeline.definitions import build_resources, defs
from trading_pipeline.live_session import LIVE_SESSION_TAG


def test_definitions_load_with_every_piece():
    repo = defs.get_repository_def()
    assert {"premarket_prep", "live_session", "end_of_day", "data_retention"} <= set(repo.job_names)
    assert {s.name for s in repo.schedule_defs} == {
        "premarket_prep_schedule", "end_of_day_schedule", "data_retention_schedule"}
    assert {s.name for s in repo.sensor_defs} == {"market_open_sensor", "run_failure_alerts"}
    keys = {k.to_user_string() for k in repo.asset_graph.get_all_asset_keys()}
    assert keys == {"daily_bars", "premarket_universe", "intraday_bars", "session_journal",
                    "daily_report", "replay_report"}
    checks = {k.name for k in repo.asset_graph.asset_check_keys}
    assert checks == {"daily_bars_sane", "universe_not_empty", "intraday_bars_sane",
                      "intraday_bars_complete", "report_matches_journal"}
    for schedule in repo.schedule_defs:
        assert schedule.execution_timezone == "America/New_York"


def test_live_session_tags_bound_runtime_retries_and_concurrency():
    tags = defs.resolve_job_def("live_session").tags
    assert int(tags["dagster/max_runtime"]) >= 16 * 3600
    assert tags["dagster/max_retries"] == "0"
    assert tags["dagster/retry_on_asset_or_op_failure"] == "false"
    assert LIVE_SESSION_TAG in tags
    end_of_day = defs.resolve_job_def("end_of_day")
    assert end_of_day.partitions_def is not None


def test_secrets_are_bound_as_env_vars(monkeypatch):
    monkeypatch.setenv("TRADING_ALERT_WEBHOOK_URL", "http://127.0.0.1:9/hook")
    monkeypatch.setenv("TRADING_JOURNAL_URL", "postgresql+psycopg2://u:secret@127.0.0.1/db")
    monkeypatch.delenv("TRADING_ALERT_SMTP_PASSWORD", raising=False)
    resources = build_resources()
    alerts, store = resources["alerts"], resources["store"]
    assert isinstance(alerts.webhook_url, dg.EnvVar) and alerts.webhook_url.env_var_name == "TRADING_ALERT_WEBHOOK_URL"
    assert alerts.smtp_password is None  # unset: absent, not an EnvVar that would fail every run
    assert isinstance(store.journal_url, dg.EnvVar)
