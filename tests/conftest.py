"""Shared fixtures for the whole test suite.

PostgreSQL: tests that need the real server use ``pg_url`` (a database URL) or ``pg_schema_url``
(a fresh, isolated schema per test). Outside CI they skip when the server is unreachable; in CI
(``CI=true``) they fail, so a missing server is never mistaken for a green run.
"""

from __future__ import annotations

import fcntl
import os
import re
import tempfile
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import make_url

DEFAULT_TEST_POSTGRES_URL = "postgresql+psycopg2://postgres@127.0.0.1:5432/test"


def _display(url: str) -> str:
    """The URL with its password masked, for messages."""
    return make_url(url).render_as_string(hide_password=True)


@pytest.fixture(scope="session")
def pg_url() -> str:
    """SQLAlchemy URL of the real PostgreSQL test database (env ``TRADING_TEST_POSTGRES_URL``)."""
    url = os.environ.get("TRADING_TEST_POSTGRES_URL") or DEFAULT_TEST_POSTGRES_URL
    engine = sa.create_engine(url, connect_args={"connect_timeout": 3}, poolclass=sa.pool.NullPool)
    try:
        with engine.connect() as conn:
            conn.execute(sa.text("SELECT 1"))
    except Exception as exc:  # any driver / network / auth error means "unreachable"
        message = f"{type(exc).__name__}: {exc}".strip()
        if os.environ.get("CI") == "true":
            pytest.fail(
                f"PostgreSQL is required in CI but unreachable at {_display(url)}: {message}",
                pytrace=False,
            )
        pytest.skip(
            f"PostgreSQL not reachable at {_display(url)} (set TRADING_TEST_POSTGRES_URL); "
            "these tests run in CI"
        )
    finally:
        engine.dispose()
    return url


@dataclass(frozen=True, slots=True)
class PgSchema:
    """A fresh schema in the test database.

    ``url`` connects with ``search_path`` set to ``schema``, so unqualified tables are
    created and read there; ``base_url`` is the plain database URL.
    """

    url: str
    schema: str
    base_url: str

    def engine(self, **kwargs: object) -> sa.Engine:
        kwargs.setdefault("connect_args", {"connect_timeout": 3})
        return sa.create_engine(self.url, **kwargs)


@pytest.fixture
def pg_schema_url(pg_url: str) -> Iterator[PgSchema]:
    """An isolated schema ``t_<uuid hex>`` per test, dropped (CASCADE) afterwards."""
    schema = f"t_{uuid.uuid4().hex}"
    admin = sa.create_engine(pg_url, connect_args={"connect_timeout": 3}, poolclass=sa.pool.NullPool)
    try:
        with admin.begin() as conn:
            conn.execute(sa.text(f'CREATE SCHEMA "{schema}"'))
        url = make_url(pg_url).update_query_dict({"options": f"-csearch_path={schema}"})
        yield PgSchema(
            url=url.render_as_string(hide_password=False), schema=schema, base_url=pg_url
        )
    finally:
        try:
            with admin.begin() as conn:
                conn.execute(sa.text(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))
        finally:
            admin.dispose()


@pytest.fixture
def pg_fresh_database(pg_url: str) -> Iterator[sa.engine.URL]:
    """A fresh database on the test server (for what owns a whole database: Dagster's tables,
    one journal schema per session), dropped afterwards (FORCE: a leftover connection too)."""
    name = f"t_{uuid.uuid4().hex[:12]}"
    admin = sa.create_engine(pg_url, isolation_level="AUTOCOMMIT", poolclass=sa.pool.NullPool)
    with admin.connect() as conn:
        conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    try:
        yield make_url(pg_url).set(database=name)
    finally:
        with admin.connect() as conn:
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


# --- Parallel runs (pytest-xdist, `make test`) ------------------------------------------------
# `--dist loadfile` keeps a file's tests on one worker, in order (some share a module-scoped
# runner). Files that use the PostgreSQL server share one database and its advisory-lock
# namespace (the runner's lease keys on the account, not the schema), so they take a machine-wide
# file lock for their whole module: one such file at a time, whatever the worker or the pytest
# process (two checkouts tested at once on one machine share the server too).
_PG_FIXTURES = re.compile(r"\b(pg_url|pg_schema_url|pg_database|pg_fresh_database)\b")
_PG_LOCK = Path(tempfile.gettempdir()) / "intraday-trader-tests-postgres.lock"


@pytest.fixture(scope="module", autouse=True)
def _postgres_one_file_at_a_time(request: pytest.FixtureRequest) -> Iterator[None]:
    path = request.node.path
    try:
        uses = bool(_PG_FIXTURES.search(path.read_text(encoding="utf-8")))
    except (OSError, UnicodeDecodeError):
        uses = False
    if not uses:
        yield
        return
    with open(_PG_LOCK, "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)
