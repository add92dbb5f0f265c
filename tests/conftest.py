"""Shared fixtures for the whole test suite.

PostgreSQL: tests that need the real server use ``pg_url`` (a database URL) or ``pg_schema_url``
(a fresh, isolated schema per test). Outside CI they skip when the server is unreachable; in CI
(``CI=true``) they fail, so a missing server is never mistaken for a green run.
"""

from __future__ import annotations

import os
import re
import uuid
from collections.abc import Iterator
from dataclasses import dataclass

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


# --- Parallel runs (pytest-xdist, `make test`) ------------------------------------------------
# Tests that use the PostgreSQL server share one database (and its advisory-lock namespace: the
# runner's lease keys on the account, not the schema), so they run one at a time on a single
# worker (`--dist loadgroup`). Everything else isolates itself (tmp_path, free ports).
_PG_FIXTURES = re.compile(r"\b(pg_url|pg_schema_url|pg_database)\b")
_pg_modules: dict[str, bool] = {}


def _uses_postgres(item: pytest.Item) -> bool:
    path = str(item.path)
    if path not in _pg_modules:
        try:
            _pg_modules[path] = bool(_PG_FIXTURES.search(item.path.read_text(encoding="utf-8")))
        except OSError:
            _pg_modules[path] = False
    return _pg_modules[path]


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if _uses_postgres(item):
            item.add_marker(pytest.mark.xdist_group("postgres"))
