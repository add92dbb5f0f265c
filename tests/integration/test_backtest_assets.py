"""Backtests in process: session_backtest per (session, parameter set) through the runner chain,
newest session first and as one batched range; backtest_summary and its reconciliation check;
a missing history day fails naming the day and the source and records nothing; and the
premarket prep of an older session after a newer one (the source_file bug)."""

from decimal import Decimal

import dagster as dg
import pytest

from live_runner.persistence.journal_state import load_state
from tests.kit.dagster_env import isolated_resources
from trading_pipeline.backtest_params import journal_url, register_param_sets
from trading_pipeline.definitions import make_definitions
from trading_pipeline.history_sources import HistoryResource
from trading_pipeline.market_assets import daily_bars, premarket_universe
from trading_pipeline.resources import MarketDataResource

pytestmark = pytest.mark.timeout(180)
DAYS = ["2024-12-02", "2024-12-03", "2024-12-04"]


def test_backtests_newest_first_and_batched_add_up_to_the_journals(tmp_path):
    resources = isolated_resources(tmp_path, symbols=16)
    defs = make_definitions(resources)
    job = defs.resolve_job_def("backtest")
    with dg.instance_for_test() as instance:
        register_param_sets(instance, ["base", "tight"])
        for day in reversed(DAYS[1:]):  # newest first, one partition per run
            result = job.execute_in_process(partition_key=f"{day}|base", instance=instance)
            assert result.success
        # one run over a range (what a batched backfill run does)
        result = job.execute_in_process(instance=instance, tags={
            "dagster/asset_partition_range_start": f"{DAYS[0]}|tight",
            "dagster/asset_partition_range_end": f"{DAYS[2]}|tight"})
        assert result.success
        mats = result.asset_materializations_for_node("session_backtest")
        assert sorted(m.partition for m in mats) == [f"{d}|tight" for d in DAYS]
        assert all(m.metadata["bars"].value > 0 for m in mats)  # per-partition metadata
        report = defs.resolve_job_def("backtest_report").execute_in_process(instance=instance)
        assert report.success
        [check] = report.get_asset_check_evaluations()
        assert check.passed, check.metadata
        store = resources["store"]
        totals = {}
        for key in instance.get_materialized_partitions(dg.AssetKey("session_backtest")):
            day, params = key.split("|")
            from datetime import date
            d = date.fromisoformat(day)
            ses = load_state(journal_url(store, params, d, create=False), day).sessions[day]
            totals[params] = totals.get(params, Decimal(0)) + ses.realized
        [summary] = report.asset_materializations_for_node("backtest_summary")
        for params, total in totals.items():
            assert Decimal(str(summary.metadata[f"net_pnl_usd/{params}"].value)) == total
        md = summary.metadata["summary"].value
        assert "Sharpe" in md and "Sortino" in md and "tight" in md and "base" in md
        html = (store.root() / "backtest_summary" / "report.html").read_text()
        assert "Monthly P&amp;L" in html and "data:image/png;base64" in html


def test_a_day_without_history_fails_naming_day_and_source(tmp_path):
    empty = tmp_path / "nothing"
    empty.mkdir()
    resources = isolated_resources(tmp_path, history=HistoryResource(
        source="files", path=str(empty), cache_dir=str(tmp_path / "cache")))
    job = make_definitions(resources).resolve_job_def("backtest")
    with dg.instance_for_test() as instance:
        register_param_sets(instance, ["base"])
        result = job.execute_in_process(partition_key="2024-12-03|base", instance=instance,
                                        raise_on_error=False)
        assert not result.success
        [failure] = [e for e in result.all_events if e.is_step_failure]
        message = failure.step_failure_data.error.message
        assert "2024-12-03" in message and "history source files" in message and str(empty) in message
        assert not instance.get_materialized_partitions(dg.AssetKey("session_backtest"))


def test_an_unknown_parameter_set_fails_naming_the_file(tmp_path):
    job = make_definitions(isolated_resources(tmp_path)).resolve_job_def("backtest")
    with dg.instance_for_test() as instance:
        register_param_sets(instance, ["wild"])
        result = job.execute_in_process(partition_key="2024-12-03|wild", instance=instance,
                                        raise_on_error=False)
        [failure] = [e for e in result.all_events if e.is_step_failure]
        assert "'wild' is not defined in" in failure.step_failure_data.error.message
        assert "backtest_params.yaml" in failure.step_failure_data.error.message


def test_premarket_prep_of_an_older_session_after_a_newer_one(tmp_path):
    resources = isolated_resources(tmp_path, symbols=16)
    with dg.instance_for_test() as instance:
        counts = {}
        for day in ("2024-12-03", "2024-12-02"):  # newest first: 12-03's file holds 12-02's hours
            result = dg.materialize([daily_bars, premarket_universe], partition_key=day,
                                    instance=instance, resources=resources)
            assert result.success
            [mat] = result.asset_materializations_for_node("daily_bars")
            counts[day] = mat.metadata["symbols"].value
        assert counts == {"2024-12-03": 16, "2024-12-02": 16}


def test_daily_bars_without_data_fails_and_is_not_materialized(tmp_path):
    (tmp_path / "market").mkdir()
    resources = isolated_resources(tmp_path, market_data=MarketDataResource(
        bars_dir=str(tmp_path / "market"), generate_missing=False))
    with dg.instance_for_test() as instance:
        result = dg.materialize([daily_bars], partition_key="2024-12-02", instance=instance,
                                resources=resources, raise_on_error=False)
        assert not result.success
        [failure] = [e for e in result.all_events if e.is_step_failure]
        message = failure.step_failure_data.error.message
        assert "2024-12-02" in message and str(tmp_path / "market") in message
        assert not instance.get_materialized_partitions(daily_bars.key)
