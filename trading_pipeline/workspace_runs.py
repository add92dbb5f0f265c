"""Runs of the workspace's jobs, made the way the webserver and `dagster job launch` make them,
then executed in this process.

A run made with `JobDefinition.execute_in_process` has no remote origin: the UI cannot tie it to
the workspace's job, so the Overview timeline, the job's Runs and Partitions tabs never show it
and Re-execute warns about "a different version". Here the run is created from the code location
`trading_pipeline` of workspace.yaml (loaded in process, same module, same location name): it
carries the job's remote origin, its snapshot and its tags, exactly like a launch from the UI.
It is then executed by `execute_run`, which is what the run worker process of Dagster's default
run launcher does; doing it here saves that worker's start-up (seconds per run) and needs no
daemon to dequeue it. The definitions must be loaded with the same environment as the webserver's
(`make ui`) for the snapshots to match, so nothing here changes the environment.
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import dagster as dg
from dagster._core.definitions.selector import JobSubsetSelector
from dagster._core.execution.api import execute_run
from dagster._core.remote_origin import InProcessCodeLocationOrigin
from dagster._core.remote_representation.code_location import CodeLocation
from dagster._core.types.loadable_target_origin import LoadableTargetOrigin
from dagster._utils.hosted_user_process import recon_job_from_origin

LOCATION_NAME = "trading_pipeline"  # workspace.yaml's location_name
MODULE = "trading_pipeline.definitions"
PARTITION_TAG = "dagster/partition"


@contextlib.contextmanager
def code_location(instance: dg.DagsterInstance, working_directory: Path) -> Iterator[CodeLocation]:
    """The workspace's code location, loaded in this process."""
    origin = InProcessCodeLocationOrigin(
        loadable_target_origin=LoadableTargetOrigin(
            executable_path=sys.executable, module_name=MODULE,
            working_directory=str(working_directory)),
        location_name=LOCATION_NAME)
    with origin.create_location(instance) as location:
        yield location


def create_run(instance: dg.DagsterInstance, location: CodeLocation, job_name: str,
               partition_key: str | None = None,
               run_config: Mapping[str, Any] | None = None,
               extra_tags: Mapping[str, str] | None = None) -> dg.DagsterRun:
    """A NOT_STARTED run of the workspace's job, with its remote origin (as `dagster job launch`)."""
    [repo] = location.get_repositories().values()
    remote_job = location.get_job(JobSubsetSelector(
        location_name=location.name, repository_name=repo.name, job_name=job_name,
        op_selection=None))
    run_config = dict(run_config or {})
    tags = {**remote_job.tags, **({PARTITION_TAG: partition_key} if partition_key else {}),
            **(extra_tags or {})}
    plan = location.get_execution_plan(remote_job, run_config, step_keys_to_execute=None,
                                       known_state=None, instance=instance).execution_plan_snapshot
    return instance.create_run(
        job_name=job_name, run_id=None, run_config=run_config, status=None, tags=tags,
        root_run_id=None, parent_run_id=None, step_keys_to_execute=plan.step_keys_to_execute,
        execution_plan_snapshot=plan, job_snapshot=remote_job.job_snapshot,
        parent_job_snapshot=remote_job.parent_job_snapshot, asset_selection=None,
        asset_check_selection=None, resolved_op_selection=None, op_selection=None,
        remote_job_origin=remote_job.get_remote_origin(),
        job_code_origin=remote_job.get_python_origin(), asset_graph=repo.asset_graph)


def run_job(instance: dg.DagsterInstance, location: CodeLocation, job_name: str,
            partition_key: str | None = None,
            run_config: Mapping[str, Any] | None = None,
            extra_tags: Mapping[str, str] | None = None) -> dg.DagsterRun:
    """Create the run and execute it here, to the end; the finished run. `extra_tags`: e.g. a
    partition range (`dagster/asset_partition_range_start` / `_end`), as a batched backfill sets."""
    run = create_run(instance, location, job_name, partition_key, run_config, extra_tags)
    assert run.job_code_origin is not None
    execute_run(recon_job_from_origin(run.job_code_origin), run, instance)
    finished = instance.get_run_by_id(run.run_id)
    assert finished is not None
    return finished


def failure_messages(instance: dg.DagsterInstance, run_id: str) -> list[str]:
    """Why a run failed: its step failures (else the run's failure event), as messages."""
    records = instance.get_records_for_run(run_id, of_type=dg.DagsterEventType.STEP_FAILURE).records
    if not records:
        records = instance.get_records_for_run(run_id, of_type=dg.DagsterEventType.RUN_FAILURE).records
    out = []
    for record in records:
        event = record.event_log_entry.dagster_event
        data = event.step_failure_data if event is not None and event.is_step_failure else None
        error = data.error.message.strip() if data is not None and data.error else ""
        out.append(error or record.event_log_entry.message or "failed")
    return out
