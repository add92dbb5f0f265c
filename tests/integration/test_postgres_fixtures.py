"""The PostgreSQL fixtures of tests/conftest.py: reachability and per-test schema isolation."""

import pytest
import sqlalchemy as sa

pytestmark = pytest.mark.postgres


def test_pg_url_connects(pg_url):
    engine = sa.create_engine(pg_url)
    try:
        with engine.connect() as conn:
            assert conn.execute(sa.text("SELECT 1")).scalar_one() == 1
    finally:
        engine.dispose()


def test_schema_url_creates_tables_in_the_fresh_schema(pg_schema_url):
    engine = pg_schema_url.engine()
    try:
        table = sa.Table("probe", sa.MetaData(), sa.Column("id", sa.Integer, primary_key=True))
        with engine.begin() as conn:
            assert conn.execute(sa.text("SELECT current_schema()")).scalar_one() == pg_schema_url.schema
            table.create(conn)
            conn.execute(table.insert().values(id=1))
        with engine.connect() as conn:
            found = conn.execute(
                sa.text("SELECT table_schema FROM information_schema.tables WHERE table_name = 'probe'")
            ).scalars().all()
        assert pg_schema_url.schema in found
    finally:
        engine.dispose()
