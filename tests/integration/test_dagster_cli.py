"""The dagster CLI on the code location, for real: validate, and materialize one partition."""

import json

import dagster as dg

from tests.kit.dagster_env import SAMPLE_DAY, dagster_cli, dagster_home, pipeline_env, process_env


def test_definitions_validate_through_the_workspace(tmp_path):
    env = process_env({**pipeline_env(tmp_path), "DAGSTER_HOME": str(dagster_home(tmp_path))})
    out = dagster_cli(["definitions", "validate", "-w", "workspace.yaml"], env)
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-2000:]
    assert "Validation successful" in out.stdout + out.stderr


def test_asset_materialize_of_a_partition(tmp_path):
    home = dagster_home(tmp_path)
    env = process_env({**pipeline_env(tmp_path), "DAGSTER_HOME": str(home)})
    out = dagster_cli(["asset", "materialize", "-m", "trading_pipeline.definitions",
                       "--select", "daily_bars,premarket_universe", "--partition", SAMPLE_DAY], env)
    assert out.returncode == 0, out.stderr[-3000:]
    universe = json.loads((tmp_path / "pipeline" / "premarket_universe" / f"{SAMPLE_DAY}.json").read_text())
    assert universe["session"] == SAMPLE_DAY and universe["symbols"]
    with dg.DagsterInstance.from_config(str(home)) as instance:
        assert instance.get_materialized_partitions(dg.AssetKey("premarket_universe")) == {SAMPLE_DAY}
        [run] = instance.get_runs()
        assert run.status == dg.DagsterRunStatus.SUCCESS and run.tags["dagster/partition"] == SAMPLE_DAY
    bad = dagster_cli(["asset", "materialize", "-m", "trading_pipeline.definitions",
                       "--select", "daily_bars", "--partition", "2024-11-28"], env)
    assert bad.returncode != 0  # Thanksgiving is no partition
    assert "2024-11-28" in bad.stderr
