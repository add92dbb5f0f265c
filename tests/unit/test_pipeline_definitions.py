"""The code location's Definitions: what it holds, how the live session is tagged, how secrets
are bound."""

import dagster as dg

from trading_pipeline.definitions import build_resources, defs
from trading_pipeline.live_session import LIVE_SESSION_TAG, LiveSessionConfig, live_session_tags
from trading_pipeline.retention import RetentionConfig


def test_definitions_load_with_every_piece():
    repo = defs.get_repository_def()
    assert {"premarket_prep", "live_session", "end_of_day", "data_retention"} <= set(repo.job_names)
    assert {s.name for s in repo.schedule_defs} == {
        "premarket_prep_schedule", "end_of_day_schedule", "data_retention_schedule"}
    assert {s.name for s in repo.sensor_defs} == {"market_open_sensor", "run_failure_alerts"}
    keys = {k.to_user_string() for k in repo.asset_graph.get_all_asset_keys()}
    assert keys >= {"daily_bars", "premarket_universe", "live_session", "intraday_bars",
                    "session_journal", "daily_report", "replay_report"}
    checks = {k.name for k in repo.asset_graph.asset_check_keys}
    assert checks == {"daily_bars_sane", "universe_not_empty", "intraday_bars_sane",
                      "intraday_bars_complete", "report_matches_journal",
                      "backtest_summary_matches_journals"}
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


def _key(name: str) -> dg.AssetKey:
    return dg.AssetKey(name)


def test_lineage_reads_premarket_then_session_then_end_of_day():
    graph = defs.get_repository_def().asset_graph
    parents = {k.to_user_string(): {p.to_user_string() for p in graph.get(k).parent_keys}
               for k in graph.get_all_asset_keys()}
    assert parents["live_session"] == {"premarket_universe"}
    assert parents["session_journal"] == {"live_session"}
    assert "session_journal" in parents["daily_report"]
    groups = {k: graph.get(_key(k)).group_name for k in ("premarket_universe", "live_session", "daily_report")}
    assert groups == {"premarket_universe": "premarket", "live_session": "session", "daily_report": "end_of_day"}
    # a whole day is one selection: every asset upstream of the report, the session included
    upstream = dg.AssetSelection.assets("daily_report").upstream().resolve(graph)
    assert {"daily_bars", "premarket_universe", "live_session", "session_journal"} <= {
        k.to_user_string() for k in upstream}
    job = defs.resolve_job_def("live_session")
    assert job.asset_layer.selected_asset_keys == {_key("live_session")}
    assert job.partitions_def is not None


def test_assets_carry_owner_tags_code_version_and_source():
    graph = defs.get_repository_def().asset_graph
    for key in graph.get_all_asset_keys():
        node = graph.get(key)
        if key.to_user_string() not in {"daily_bars", "premarket_universe", "live_session",
                                        "intraday_bars", "session_journal", "daily_report", "replay_report"}:
            continue  # assets of other features (e.g. backtests) are theirs to describe
        assert node.owners == ["team:trading-desk"], key
        assert node.tags.get("stage") in {"premarket", "session", "end-of-day"}, key
        assert node.code_version, key
        assert "dagster/code_references" in node.metadata, key
        assert node.description, key
    assert graph.get(_key("premarket_universe")).freshness_policy.deadline_cron == "15 9 * * 1-5"
    assert graph.get(_key("daily_report")).freshness_policy.timezone == "America/New_York"
    assert "2024-11-29" in graph.get(_key("live_session")).description  # early closes are named


def test_every_config_check_and_resource_field_is_described():
    for config in (LiveSessionConfig, RetentionConfig):
        for name, field in config.model_fields.items():
            assert field.description, f"{config.__name__}.{name}"
    mode = LiveSessionConfig.to_config_schema().as_field().config_type.fields["mode"]
    assert {v.config_value for v in mode.config_type.enum_values} == {"auto", "paced", "replay"}
    for name, resource in build_resources().items():
        if isinstance(resource, dg.ConfigurableResource):
            for field_name, field in type(resource).model_fields.items():
                assert field.description, f"{name}.{field_name}"
        else:
            assert resource.description, name
    for check in defs.get_repository_def().asset_graph.asset_check_keys:
        spec = defs.get_repository_def().asset_graph.get_check_spec(check)
        assert spec.description, check.name
    sensor = defs.get_repository_def().get_sensor_def("market_open_sensor")
    assert "15 minutes before the open" in sensor.description and "one run at a time" in sensor.description


def test_the_kubernetes_pod_config_tag_only_in_kubernetes():
    assert "dagster-k8s/config" not in live_session_tags({})
    assert "dagster-k8s/config" in live_session_tags({"KUBERNETES_SERVICE_HOST": "10.0.0.1"})
