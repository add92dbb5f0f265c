"""Backtest partitions (trading days x parameter sets), parameter sets, and backtest journals.

A parameter set is a name plus runner-config overrides (config/backtest_params.yaml), deep-merged
into the live runner config, so a backtest runs what live runs except what the set changes. The
names are a dynamic partition dimension: registered from the file (`register_param_sets`), or
added in the UI (a name the file does not define fails the run, naming the file).

Each (day, set) partition has its own journal, in the usual format: a SQLite file under the
store (`backtests/<set>/journal_<YYYYMMDD>.db`), or with a PostgreSQL journal URL one schema
per partition (`bt_<set>_<YYYYMMDD>`), or the `{session}` template with `bt_<set>_<YYYYMMDD>`.
"""

from __future__ import annotations

import copy
import re
from datetime import date
from pathlib import Path
from typing import Any

import dagster as dg
import sqlalchemy as sa
import yaml
from pydantic import Field

from trading_pipeline.partitions import parse_session, trading_days
from trading_pipeline.resources import (
    PROJECT_ROOT, RunnerResource, TradingStoreResource, _with_search_path, resolve,
)

PARAMS = dg.DynamicPartitionsDefinition(name="backtest_params")
BACKTEST_PARTITIONS = dg.MultiPartitionsDefinition({"date": trading_days(), "params": PARAMS})
NAME = re.compile(r"^[a-z0-9_]{1,24}$")
# Forced in every backtest: the paper fill model, replayed bars, no account lease.
BACKTEST_FIXED = {"primary_broker": "paper", "backup_broker": None,
                  "primary_data_provider": "replay", "backup_data_provider": None}


def split_key(key: str | dg.MultiPartitionKey) -> tuple[date, str]:
    """(session, parameter set) of a `YYYY-MM-DD|<set>` partition key."""
    if isinstance(key, dg.MultiPartitionKey):
        dims = key.keys_by_dimension
        return parse_session(dims["date"]), dims["params"]
    day, _, params = str(key).partition("|")
    return parse_session(day), params


def deep_merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    out = copy.deepcopy(base)
    for k, v in over.items():
        out[k] = deep_merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


class BacktestResource(dg.ConfigurableResource):
    """Parameter sets and where backtest journals go."""

    params_file: str = Field(default="config/backtest_params.yaml", description=(
        "YAML file naming the parameter sets (runner-config overrides); relative paths are under "
        "the project folder"))

    def path(self) -> Path:
        """Relative: under the project folder, else the one shipped with the code."""
        path = resolve(self.params_file)
        shipped = PROJECT_ROOT / self.params_file
        return path if path.exists() or Path(self.params_file).is_absolute() or not shipped.exists() \
            else shipped

    def param_sets(self) -> dict[str, dict[str, Any]]:
        path = self.path()
        try:
            data = yaml.safe_load(path.read_text()) or {}
        except OSError as exc:
            raise ValueError(f"backtest parameter sets: cannot read {path}: {exc.strerror}") from None
        if not isinstance(data, dict):
            raise ValueError(f"{path}: the top level must map set names to overrides")
        for name, over in data.items():
            if not isinstance(name, str) or not NAME.match(name):
                raise ValueError(f"{path}: set name {name!r} must match {NAME.pattern}")
            if not isinstance(over, dict):
                raise ValueError(f"{path}: set {name!r} must be a mapping of config overrides")
        return data

    def config_for(self, runner: RunnerResource, name: str):  # -> SystemConfig
        """The live runner config with set `name`'s overrides (ConfigError names a bad key)."""
        from live_runner.core.config import parse_config

        sets = self.param_sets()
        if name not in sets:
            raise ValueError(f"parameter set {name!r} is not defined in {self.path()} "
                             f"(defined: {', '.join(sorted(sets)) or 'none'})")
        live = runner.load_config().model_dump(mode="json")
        return parse_config(deep_merge(live, {**sets[name], **BACKTEST_FIXED}),
                            f"parameter set {name}")


def journal_url(store: TradingStoreResource, params: str, day: date, create: bool = True) -> str:
    """The partition's journal URL (its SQLite folder or PostgreSQL schema created)."""
    tag = f"bt_{params}_{day:%Y%m%d}"
    url = store.journal_url
    if url and "{session}" in url:
        return url.replace("{session}", tag)
    if url.startswith("postgresql"):
        if create:
            _pg(url, f'CREATE SCHEMA IF NOT EXISTS "{tag}"')
        return _with_search_path(url, tag)
    path = store.root() / "backtests" / params / f"journal_{day:%Y%m%d}.db"
    path.parent.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{path}"


def drop_journal(store: TradingStoreResource, params: str, day: date) -> None:
    """Forget a partition's journal: a re-run replays from scratch (a kept one would resume)."""
    from live_runner.persistence.journal import events

    url = journal_url(store, params, day, create=False)
    if url.startswith("sqlite:///"):
        for suffix in ("", "-wal", "-shm"):
            Path(url[len("sqlite:///"):] + suffix).unlink(missing_ok=True)
    elif store.journal_url.startswith("postgresql") and "{session}" not in store.journal_url:
        _pg(store.journal_url, f'DROP SCHEMA IF EXISTS "bt_{params}_{day:%Y%m%d}" CASCADE')
    else:
        engine = sa.create_engine(url, poolclass=sa.pool.NullPool)
        try:
            if sa.inspect(engine).has_table(events.name):
                with engine.begin() as conn:
                    conn.execute(events.delete())
        finally:
            engine.dispose()


def _pg(url: str, statement: str) -> None:
    engine = sa.create_engine(url, poolclass=sa.pool.NullPool)
    try:
        with engine.begin() as conn:
            conn.execute(sa.text(statement))
    finally:
        engine.dispose()


def register_param_sets(instance: dg.DagsterInstance, names: list[str]) -> list[str]:
    """Add parameter-set names as partitions of the `params` dimension; returns the new ones."""
    have = set(instance.get_dynamic_partitions(PARAMS.name))
    new = [n for n in names if n not in have]
    if new:
        instance.add_dynamic_partitions(PARAMS.name, new)
    return new
