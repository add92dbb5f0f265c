"""Dagster resources: where bars come from, how the runner is started, where results are kept,
and where alerts go.

Everything has a working default (replay files and the synthetic market under `var/`, SQLite
journals), so the code location runs on a laptop with nothing configured. Secrets (a data API key,
a journal URL with a password, SMTP credentials, the webhook URL) reach these resources only as
`EnvVar`s, bound in `definitions.py`, and never appear in run config.
"""

from __future__ import annotations

import json
import re
import shutil
import sys
import time
from datetime import date, datetime, timezone
from pathlib import Path
from typing import Any

import dagster as dg
import sqlalchemy as sa
from pydantic import Field

from trading_pipeline.market_data import MarketDataResource
from trading_pipeline.partitions import NEW_YORK
from trading_pipeline.paths import PROJECT_ROOT, SAMPLE_ANCHOR, resolve

# MarketDataResource and the paths live in their own modules; the definitions and tests import
# every resource from here.
__all__ = ["AlertsResource", "MarketClockResource", "MarketDataResource", "MissingUniverse",
           "PROJECT_ROOT", "RunnerResource", "SAMPLE_ANCHOR", "TradingStoreResource", "resolve"]


class RunnerResource(dg.ConfigurableResource):
    """How `python -m live_runner run` is started for the live session."""

    config_path: str | None = Field(default=None, description="runner YAML (defaults if unset)")
    python: str = Field(default="", description="interpreter (default: the one running Dagster)")
    speed: float = Field(default=1.0, gt=0, description="feed pace in live mode (1 = real time)")
    replay_speed: float = Field(default=1_000_000.0, gt=0, description="pace in replay mode")
    termination_timeout_s: float = Field(default=30.0, gt=0, description=(
        "kept for existing configs; the bound used on termination is pipes_subprocess_client's "
        "(TRADING_RUNNER_TERMINATION_TIMEOUT)"))
    ops_port: int | None = Field(default=None, description=(
        "the runner's ops server port (0: any free port). Unset: the runner YAML's ops.port when "
        "it sets one, else any free port (never a fixed port nobody configured)"))

    def interpreter(self) -> str:
        return self.python or sys.executable

    def load_config(self, overrides: dict[str, Any] | None = None):  # -> SystemConfig
        """The runner config (ConfigError names the bad key, e.g. an unknown strategy)."""
        from live_runner.core.config import load_config

        path = resolve(self.config_path) if self.config_path else None
        config = load_config(path, overrides)
        if self.ops_port is not None:
            config = config.model_copy(update={"ops": config.ops.model_copy(update={"port": self.ops_port})})
        return config


class MissingUniverse(FileNotFoundError):
    """The session's universe was never materialized."""


class TradingStoreResource(dg.ConfigurableResource):
    """Where the pipeline keeps what it produces: Parquet/JSON files under `data_dir`, and the
    runner's journal. One journal per session (`{session}` in the URL): the runner resumes from
    whatever a journal holds, so two sessions must never share one. A PostgreSQL URL without
    `{session}` gets one schema per session (`journal_YYYYMMDD`)."""

    data_dir: str = Field(default="var/pipeline", description=(
        "folder of the stored outputs (bars, universes, reports, sessions; relative to the project)"))
    journal_url: str = Field(default="", description="SQLAlchemy URL (EnvVar when it has a password)")

    def root(self) -> Path:
        return resolve(self.data_dir)

    def path(self, kind: str, day: date, suffix: str) -> Path:
        """`<data_dir>/<kind>/<YYYY-MM-DD><suffix>` (directories created)."""
        p = self.root() / kind / f"{day.isoformat()}{suffix}"
        p.parent.mkdir(parents=True, exist_ok=True)
        return p

    def session_dir(self, day: date) -> Path:
        p = self.root() / "sessions" / day.isoformat()
        p.mkdir(parents=True, exist_ok=True)
        return p

    def universe_path(self, day: date) -> Path:
        return self.path("premarket_universe", day, ".json")

    def load_universe(self, day: date) -> list[str]:
        """The day's ranked universe symbols; MissingUniverse when the scan has not run."""
        path = self.universe_path(day)
        try:
            data = json.loads(path.read_text())
        except FileNotFoundError:
            raise MissingUniverse(
                f"no premarket_universe for {day.isoformat()} ({path} missing): "
                "materialize premarket_prep for that session first") from None
        return list(data["symbols"])

    def _template(self) -> str:
        return self.journal_url or f"sqlite:///{self.root() / 'journals' / 'journal_{session}.db'}"

    def journal_url_for(self, day: date, create: bool = True) -> str:
        url = self._template()
        tag = day.strftime("%Y%m%d")
        if "{session}" in url:
            return url.replace("{session}", tag)
        if url.startswith("postgresql"):
            schema = f"journal_{tag}"
            if create:
                engine = sa.create_engine(url, poolclass=sa.pool.NullPool)
                try:
                    with engine.begin() as conn:
                        conn.execute(sa.text(f'CREATE SCHEMA IF NOT EXISTS "{schema}"'))
                finally:
                    engine.dispose()
            return _with_search_path(url, schema)
        raise ValueError("journal_url must contain {session} (one journal per session)")

    def journal_exists(self, day: date) -> bool:
        url = self.journal_url_for(day, create=False)
        if url.startswith("sqlite:///"):
            return Path(url[len("sqlite:///"):]).exists()
        per_schema = "{session}" not in self._template()  # search_path alone would fall back
        engine = sa.create_engine(self._template() if per_schema else url, poolclass=sa.pool.NullPool)
        try:
            schema = f"journal_{day:%Y%m%d}" if per_schema else None
            return sa.inspect(engine).has_table("journal_events", schema=schema)
        finally:
            engine.dispose()

    def journal_days(self) -> list[date]:
        """Sessions that have a journal (for retention)."""
        url = self._template()
        days: set[date] = set()
        if url.startswith("sqlite:///") and "{session}" in url:
            pattern = Path(url[len("sqlite:///"):])
            rx = re.compile(re.escape(pattern.name).replace(re.escape("{session}"), r"(\d{8})") + "$")
            for p in pattern.parent.glob("*") if pattern.parent.is_dir() else []:
                m = rx.match(p.name)
                if m:
                    days.add(datetime.strptime(m.group(1), "%Y%m%d").date())
        elif url.startswith("postgresql") and "{session}" not in url:
            engine = sa.create_engine(url, poolclass=sa.pool.NullPool)
            try:
                for name in sa.inspect(engine).get_schema_names():
                    if re.fullmatch(r"journal_\d{8}", name):
                        days.add(datetime.strptime(name[8:], "%Y%m%d").date())
            finally:
                engine.dispose()
        return sorted(days)

    def drop_journal(self, day: date) -> int:
        """Delete a session's journal rows (and its file or schema); returns the rows deleted."""
        from live_runner.persistence.journal import events

        url = self.journal_url_for(day, create=False)
        engine = sa.create_engine(url, poolclass=sa.pool.NullPool)
        try:
            if not sa.inspect(engine).has_table(events.name):
                rows = 0
            else:
                with engine.begin() as conn:
                    rows = conn.execute(events.delete()).rowcount or 0
        finally:
            engine.dispose()
        if url.startswith("sqlite:///"):
            for suffix in ("", "-wal", "-shm"):
                Path(url[len("sqlite:///"):] + suffix).unlink(missing_ok=True)
        elif "{session}" not in self._template():
            engine = sa.create_engine(self._template(), poolclass=sa.pool.NullPool)
            try:
                with engine.begin() as conn:
                    conn.execute(sa.text(f'DROP SCHEMA IF EXISTS "journal_{day:%Y%m%d}" CASCADE'))
            finally:
                engine.dispose()
        return rows

    def remove_day_files(self, day: date) -> list[Path]:
        """Every file the pipeline stored for `day` (bars, universe, reports, session folder)."""
        removed: list[Path] = []
        root = self.root()
        if not root.is_dir():
            return removed
        for kind_dir in root.iterdir():
            if not kind_dir.is_dir() or kind_dir.name == "journals":
                continue
            for p in kind_dir.glob(f"{day.isoformat()}*"):
                shutil.rmtree(p) if p.is_dir() else p.unlink()
                removed.append(p)
        return removed


def _with_search_path(url: str, schema: str) -> str:
    """The operator's URL with `options=-csearch_path=<schema>` added to its query. Built on the
    string as given (never re-rendered with its password): the result lives in memory and in the
    runner's environment only; anything shown goes through live_runner.ops.redact.redact_url."""
    if "options" in sa.engine.make_url(url).query:
        raise ValueError("journal_url: a PostgreSQL URL without {session} gets one schema per "
                         "session through its `options`; remove the `options` it already has")
    return f"{url}{'&' if '?' in url else '?'}options=-csearch_path%3D{schema}"


class _WallClock:
    def now_ns(self) -> int:
        return time.time_ns()


class AlertsResource(dg.ConfigurableResource):
    """Operator alerts through live_runner's AlertSystem (log always; webhook and email when set).
    Every field is a secret or an address, so each is bound to its TRADING_ALERT_* EnvVar."""

    webhook_url: str | None = Field(default=None, description="webhook sink URL (TRADING_ALERT_WEBHOOK_URL)")
    smtp_host: str | None = Field(default=None, description="email sink: SMTP server (TRADING_ALERT_SMTP_HOST)")
    smtp_port: str | None = Field(default=None, description="email sink: SMTP port (TRADING_ALERT_SMTP_PORT)")
    smtp_user: str | None = Field(default=None, description="email sink: SMTP login (TRADING_ALERT_SMTP_USER)")
    smtp_password: str | None = Field(default=None, description=(
        "email sink: SMTP password (TRADING_ALERT_SMTP_PASSWORD, EnvVar only)"))
    smtp_tls: str | None = Field(default=None, description=(
        "email sink: starttls | ssl | none (TRADING_ALERT_SMTP_TLS; live_runner.ops.alerts.EmailSink)"))
    smtp_starttls: str | None = Field(default=None, description=(
        "email sink: the older STARTTLS switch, kept for existing .env files (TRADING_ALERT_SMTP_STARTTLS)"))
    smtp_cafile: str | None = Field(default=None, description=(
        "email sink: CA bundle to verify the SMTP server (TRADING_ALERT_SMTP_CAFILE)"))
    email_from: str | None = Field(default=None, description="email sink: sender (TRADING_ALERT_EMAIL_FROM)")
    email_to: str | None = Field(default=None, description=(
        "email sink: recipients, comma-separated (TRADING_ALERT_EMAIL_TO)"))

    def _env(self) -> dict[str, str]:
        pairs = {"WEBHOOK_URL": self.webhook_url, "SMTP_HOST": self.smtp_host,
                 "SMTP_PORT": self.smtp_port, "SMTP_USER": self.smtp_user,
                 "SMTP_PASSWORD": self.smtp_password, "SMTP_TLS": self.smtp_tls,
                 "SMTP_STARTTLS": self.smtp_starttls, "SMTP_CAFILE": self.smtp_cafile,
                 "EMAIL_FROM": self.email_from, "EMAIL_TO": self.email_to}
        return {f"TRADING_ALERT_{k}": v for k, v in pairs.items() if v}

    def send(self, key: str, severity: str, message: str, timeout_s: float = 10.0,
             **data: object) -> bool:
        """Deliver one alert now (blocking up to `timeout_s`); True when every sink took it."""
        from live_runner.ops.alerts import AlertSystem, sinks_from_env

        system = AlertSystem(sinks_from_env(self._env()), _WallClock(), max_retries=1, backoff_s=0.2)
        queued = system.raise_alert(key, severity, message, component="dagster", **data)
        flushed = system.close(timeout_s)
        return queued and flushed and not any(system.failed.values())


class MarketClockResource(dg.ConfigurableResource):
    """The time sensors act on: the wall clock, or a fixed instant (tests, drills)."""

    now_iso: str | None = Field(default=None, description="fixed ISO-8601 instant with offset")

    def now(self) -> datetime:
        if self.now_iso:
            fixed = datetime.fromisoformat(self.now_iso)
            if fixed.tzinfo is None:
                raise ValueError("now_iso needs a UTC offset")
            return fixed.astimezone(NEW_YORK)
        return datetime.now(timezone.utc).astimezone(NEW_YORK)
