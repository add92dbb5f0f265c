"""The trading day through Dagster's testing APIs, in process, on temporary folders: premarket
prep, the live session in replay mode (a real runner subprocess through Pipes), end of day, the
checks, bad launches that fail fast without starting a runner, and retention."""

import json
import logging
from datetime import date
from decimal import Decimal
from pathlib import Path

import dagster as dg
import pytest

from tests.kit.dagster_env import SAMPLE_DAY, isolated_resources
from trading_pipeline.definitions import make_definitions
from trading_pipeline.market_assets import daily_bars, premarket_universe
from trading_pipeline.resources import RunnerResource

DAY = date.fromisoformat(SAMPLE_DAY)
REPLAY = {"ops": {"run_live_session": {"config": {"mode": "replay"}}}}


def checks_of(result: dg.ExecuteInProcessResult) -> dict[str, bool]:
    return {e.asset_check_evaluation_data.check_name: e.asset_check_evaluation_data.passed
            for e in result.all_events if e.event_type_value == "ASSET_CHECK_EVALUATION"}


def metadata_of(result, asset: str) -> dict:
    [mat] = [m for m in result.asset_materializations_for_node(asset)]
    return mat.metadata


class SpyPipesClient(dg.PipesSubprocessClient):
    """Records whether a runner would have been started."""

    calls: list = []

    def run(self, **kwargs):  # type: ignore[override]
        SpyPipesClient.calls.append(kwargs["command"])
        raise AssertionError("the runner must not be started")


@pytest.fixture(scope="module")
def trading_day(tmp_path_factory):
    """One full sample day: premarket_prep, live_session (replay), end_of_day."""
    tmp = tmp_path_factory.mktemp("day")
    defs = make_definitions(isolated_resources(tmp))
    instance = dg.DagsterInstance.ephemeral()
    results = {}
    for job, config in (("premarket_prep", None), ("live_session", REPLAY), ("end_of_day", None)):
        results[job] = defs.resolve_job_def(job).execute_in_process(
            partition_key=SAMPLE_DAY, instance=instance, run_config=config)
        assert results[job].success, job
    return tmp, defs, instance, results


def test_premarket_prep_materializes_a_ranked_universe(trading_day):
    tmp, _, _, results = trading_day
    prep = results["premarket_prep"]
    meta = metadata_of(prep, "premarket_universe")
    assert meta["count"].value > 0 and meta["scanned"].value == 24
    assert meta["universe"].value.startswith("| # | symbol | gap % |")
    assert metadata_of(prep, "daily_bars")["previous_session"].value == "2024-11-25"
    assert checks_of(prep) == {"daily_bars_sane": True, "universe_not_empty": True}
    stored = json.loads((tmp / "pipeline" / "premarket_universe" / f"{SAMPLE_DAY}.json").read_text())
    gaps = [r["gap_pct"] for r in stored["rows"]]
    assert gaps == sorted(gaps, reverse=True) and min(gaps) >= 0.04


def test_live_session_reports_the_runner_summary_through_pipes(trading_day):
    tmp, _, instance, results = trading_day
    live = results["live_session"]
    summary = json.loads((tmp / "pipeline" / "sessions" / SAMPLE_DAY / "summary.json").read_text())
    assert summary["trades"], "the sample session trades"
    meta = metadata_of(live, "run_live_session")  # the op of the live_session asset
    assert meta["trades"] == dg.IntMetadataValue(len(summary["trades"]))
    assert meta["realized_pnl_usd"] == dg.FloatMetadataValue(float(summary["realized_pnl"]))
    assert isinstance(meta["risk_denials"], dg.JsonMetadataValue)
    assert meta["risk_denials"].value == summary["risk_denials"]
    assert meta["mode"].value == "replay" and meta["early_close"].value is False


def test_the_runner_tells_the_sessions_story_in_the_run_logs(trading_day):
    """At INFO, each line dated with the session (not the wall clock): start and end, every entry,
    every exit with its reason, each trade, the risk denials."""
    tmp, _, instance, results = trading_day
    summary = json.loads((tmp / "pipeline" / "sessions" / SAMPLE_DAY / "summary.json").read_text())
    logs = [e for e in instance.all_logs(results["live_session"].run_id) if e.user_message]
    assert any("[pipes] external process successfully opened dagster pipes" in e.user_message for e in logs)
    story = [e.user_message for e in logs if e.user_message.startswith(f"[{SAMPLE_DAY}] story: ")]
    assert all(e.level == logging.INFO for e in logs if e.user_message in story)
    assert any("session starts: equity $100,000.00" in m for m in story)
    assert any(f"session ends: realized P&L ${Decimal(summary['realized_pnl']):,.2f}" in m for m in story)
    trades = summary["trades"]
    assert sum(" ENTRY " in m for m in story) >= len(trades)
    assert sum(" EXIT " in m and ", reason " in m for m in story) >= len(trades)
    assert sum(" TRADE closed " in m for m in story) == len(trades)
    assert sum(" RISK DENIED " in m for m in story) == sum(summary["risk_denials"].values())
    assert not any(m.startswith("[2024-11-25]") for m in (e.user_message for e in logs))
    ops = [e.user_message for e in logs if "ops server on http://127.0.0.1:" in e.user_message]
    assert ops and ops[0].startswith(f"[{SAMPLE_DAY}] ") and ":8080" not in ops[0]  # any free port


def test_end_of_day_report_reconciles_and_replay_is_identical(trading_day):
    tmp, _, _, results = trading_day
    eod = results["end_of_day"]
    assert checks_of(eod) == {"intraday_bars_sane": True, "intraday_bars_complete": True,
                              "report_matches_journal": True}
    report = metadata_of(eod, "daily_report")
    assert "### Per strategy" in report["report"].value and "win rate" in report["report"].value
    assert report["equity_curve"].value.startswith("![equity curve](data:image/png;base64,")
    html = Path(report["html_file"].value)
    assert html.exists() and "<img alt=\"equity curve\"" in html.read_text()
    assert Path(report["png_file"].value).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    summary = json.loads((tmp / "pipeline" / "sessions" / SAMPLE_DAY / "summary.json").read_text())
    assert report["realized_pnl_usd"] == dg.FloatMetadataValue(float(summary["realized_pnl"]))
    assert isinstance(report["max_drawdown_usd"], dg.FloatMetadataValue)
    assert "Sharpe (per trade)" in report["report"].value and "max drawdown ($)" in report["report"].value
    audit = metadata_of(eod, "replay_report")
    assert audit["identical"].value is True and audit["pnl_drift_usd"] == dg.FloatMetadataValue(0.0)
    journal = metadata_of(eod, "session_journal")
    assert journal["ran"].value is True and journal["fills"].value > 0


def test_session_without_live_run_is_reported_empty_and_replayed(trading_day):
    _, defs, instance, _ = trading_day
    day = "2024-11-27"
    assert defs.resolve_job_def("premarket_prep").execute_in_process(partition_key=day, instance=instance).success
    eod = defs.resolve_job_def("end_of_day").execute_in_process(partition_key=day, instance=instance)
    assert eod.success
    assert metadata_of(eod, "session_journal")["ran"].value is False
    audit = metadata_of(eod, "replay_report")
    assert audit["live_ran"].value is False and audit["replay_trades"].value >= 0


@pytest.mark.parametrize("config, problem", [
    ({"session": "2024-11-28", "mode": "replay"}, "2024-11-28 is not an XNYS session (an exchange holiday)"),
    ({"session": "2024-11-30", "mode": "replay"}, "2024-11-30 is not an XNYS session (a weekend day)"),
    ({"mode": "replay", "strategies": ["gap_and_go", "momentum_magic"]}, "unknown strategy 'momentum_magic'"),
    ({"session": "2024-12-02", "mode": "replay"}, "no premarket_universe for 2024-12-02"),
])
def test_bad_launch_fails_fast_without_starting_the_runner(tmp_path, config, problem):
    SpyPipesClient.calls = []
    defs = make_definitions(isolated_resources(tmp_path, pipes_subprocess_client=SpyPipesClient()))
    result = defs.resolve_job_def("live_session").execute_in_process(
        partition_key=SAMPLE_DAY, raise_on_error=False,
        run_config={"ops": {"run_live_session": {"config": config}}})
    assert not result.success
    [failure] = [e for e in result.all_events if e.event_type_value == "STEP_FAILURE"]
    assert problem in failure.step_failure_data.error.message
    assert SpyPipesClient.calls == []


def test_mode_is_a_choice_the_launchpad_checks(tmp_path):
    defs = make_definitions(isolated_resources(tmp_path, pipes_subprocess_client=SpyPipesClient()))
    with pytest.raises(dg.DagsterInvalidConfigError, match="mode") as exc:
        defs.resolve_job_def("live_session").execute_in_process(
            partition_key=SAMPLE_DAY, run_config={"ops": {"run_live_session": {"config": {"mode": "warp"}}}})
    assert "auto" in str(exc.value) and "paced" in str(exc.value) and "replay" in str(exc.value)


def test_a_runner_that_dies_fails_the_run(tmp_path):
    fake = tmp_path / "dying_python"
    fake.write_text("#!/bin/sh\necho 'runner crashed' >&2\nexit 4\n")
    fake.chmod(0o755)
    resources = isolated_resources(tmp_path, runner=RunnerResource(python=str(fake), ops_port=0))
    defs = make_definitions(resources)
    dg.materialize([daily_bars, premarket_universe], partition_key=SAMPLE_DAY, resources=resources)
    result = defs.resolve_job_def("live_session").execute_in_process(
        partition_key=SAMPLE_DAY, run_config=REPLAY, raise_on_error=False)
    assert not result.success
    [failure] = [e for e in result.all_events if e.event_type_value == "STEP_FAILURE"]
    message = failure.step_failure_data.error.to_string()
    assert "the runner failed: External execution process failed with code 4" in message
    assert "its journal keeps what it did" in message


def test_retention_deletes_old_files_journals_and_runs(trading_day, tmp_path):
    tmp, defs, instance, _ = trading_day
    old_runs = len(instance.get_runs())
    assert old_runs >= 3
    journals = list((tmp / "pipeline" / "journals").glob("journal_*.db"))
    assert journals
    keep = defs.resolve_job_def("data_retention").execute_in_process(
        instance=instance, run_config={"ops": {"apply_retention": {"config": {"as_of": "2024-11-27", "days": 30}}}})
    assert keep.output_for_node("apply_retention")["files"] == 0  # nothing is 30 days old yet
    result = defs.resolve_job_def("data_retention").execute_in_process(
        instance=instance, run_config={"ops": {"apply_retention": {"config": {"as_of": "2099-01-01"}}}})
    out = result.output_for_node("apply_retention")
    assert out["journals"] == len(journals) and out["journal_rows"] > 0
    assert out["files"] > 5 and out["runs"] >= old_runs
    assert not list((tmp / "pipeline" / "journals").glob("journal_*.db"))
    assert not list((tmp / "market").glob("bars_*"))
    assert not list((tmp / "pipeline" / "intraday_bars").glob("*.parquet"))
    assert [r.run_id for r in instance.get_runs()] == [result.run_id]
