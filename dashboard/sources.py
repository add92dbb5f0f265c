"""Where the journals are: one journal, SQLite files per session, or PostgreSQL schemas per session.

The dashboard is given one URL (TRADING_JOURNAL_URL, else the one the runner reports):
- `sqlite:///…/journal_{session}.db`: the pipeline's one SQLite file per session (YYYYMMDD); the
  files present are the sessions.
- a PostgreSQL URL without `{session}`: the pipeline's one schema per session (`journal_YYYYMMDD`,
  trading_pipeline/resources.py), read with `search_path` set to it; a journal table in the URL's
  own schema (a runner started by hand on that database) adds the sessions it holds.
- anything else: one journal holding every session.
A day's journal may also hold the day before (the runner's context); the day is the session shown.
Nothing here creates a file, a schema or a table.
"""

from __future__ import annotations

import glob
import re
from dataclasses import dataclass, field
from pathlib import Path

import sqlalchemy as sa
import streamlit as st

from live_runner.persistence.journal import events as TABLE, make_engine

SCHEMA_RX = re.compile(r"journal_(\d{8})")


def sqlite_path(url: str) -> Path | None:
    if not url.startswith("sqlite:///"):
        return None
    path = url[len("sqlite:///"):].split("?", 1)[0]
    return Path(path) if path and path != ":memory:" else None


def _day(tag: str) -> str:
    return f"{tag[:4]}-{tag[4:6]}-{tag[6:]}"


def with_search_path(url: str, schema: str) -> str:
    """As trading_pipeline.resources._with_search_path: the URL as given, `options` added."""
    return f"{url}{'&' if '?' in url else '?'}options=-csearch_path%3D{schema}"


@st.cache_resource(show_spinner=False)
def engine_for(url: str) -> sa.Engine:
    return make_engine(url, connect_timeout_s=3.0)


@dataclass(frozen=True, slots=True)
class Probe:
    url: str
    exists: bool = False
    last_seq: int = 0
    last_session: str = ""  # the session of the journal's newest event
    sessions: tuple[str, ...] = ()
    error: str = ""


def probe(url: str) -> Probe:
    """Is there a journal at `url`, its last seq, its newest event's session and its sessions;
    never raises (an unreadable journal is said, not raised)."""
    path = sqlite_path(url)
    if path is not None and not path.exists():
        return Probe(url)
    try:
        engine = engine_for(url)
        with engine.connect() as conn:
            if not sa.inspect(conn).has_table(TABLE.name):
                return Probe(url)
            row = conn.execute(sa.select(TABLE.c.seq, TABLE.c.session).order_by(TABLE.c.seq.desc())
                               .limit(1)).first()
        if row is None:
            return Probe(url, True)
        return Probe(url, True, int(row[0]), row[1], sessions_of(url, int(row[0])))
    except Exception as exc:  # a down database is shown, not raised
        return Probe(url, error=f"{type(exc).__name__}: {exc}"[:400])


@st.cache_data(show_spinner=False, max_entries=64)
def sessions_of(url: str, last_seq: int) -> tuple[str, ...]:
    with engine_for(url).connect() as conn:
        rows = conn.execute(sa.select(TABLE.c.session).distinct().order_by(TABLE.c.session)).all()
    return tuple(r[0] for r in rows)


@dataclass(slots=True)
class Catalog:
    """Sessions (YYYY-MM-DD, oldest first) and the journal URL each is read from."""

    template: str
    urls: dict[str, str] = field(default_factory=dict)
    error: str = ""
    per_session: bool = False  # one journal per session (files or schemas)

    @property
    def sessions(self) -> list[str]:
        return sorted(self.urls)

    def url(self, session: str | None) -> str:
        if session and session in self.urls:
            return self.urls[session]
        if session and "{session}" in self.template:
            return self.template.replace("{session}", session.replace("-", ""))
        return self.template

    def latest(self) -> str | None:
        """The newest session: for one shared journal, the session of its newest event."""
        if not self.urls:
            return None
        if not self.per_session:
            p = probe(self.template)
            if p.last_session:
                return p.last_session
        return self.sessions[-1]


def catalog(template: str) -> Catalog:
    if not template:
        return Catalog(template)
    if "{session}" in template:
        path = sqlite_path(template)
        cat = Catalog(template, per_session=True)
        if path is None:
            cat.error = ("a {session} template is listed for SQLite files only; for PostgreSQL give "
                         "the database URL without {session} (one schema per session)")
            return cat
        rx = re.compile(re.escape(str(path)).replace(re.escape("{session}"), r"(\d{8})") + "$")
        for f in sorted(glob.glob(str(path).replace("{session}", "*"))):
            m = rx.match(f)
            if m:
                cat.urls[_day(m.group(1))] = "sqlite:///" + f
        return cat
    if template.startswith("postgresql"):
        return _postgres(template)
    p = probe(template)
    return Catalog(template, {s: template for s in p.sessions}, p.error)


def _postgres(template: str) -> Catalog:
    cat = Catalog(template)
    shared = probe(template)  # a journal in the URL's own schema (a runner started by hand)
    cat.error = shared.error
    for s in shared.sessions:
        cat.urls[s] = template
    if shared.error:
        return cat
    try:
        schemas = _session_schemas(template, shared.last_seq)
    except Exception as exc:
        cat.error = f"{type(exc).__name__}: {exc}"[:400]
        return cat
    for schema in schemas:
        cat.urls[_day(SCHEMA_RX.fullmatch(schema).group(1))] = with_search_path(template, schema)  # type: ignore[union-attr]
    cat.per_session = bool(schemas)
    return cat


@st.cache_data(show_spinner=False, ttl=5, max_entries=16)
def _session_schemas(template: str, _shared_seq: int) -> list[str]:
    """The `journal_YYYYMMDD` schemas holding a journal table (one query; cached 5 s)."""
    query = sa.text("SELECT table_schema FROM information_schema.tables WHERE table_name = :t "
                    "AND table_schema ~ '^journal_[0-9]{8}$' ORDER BY table_schema")
    with engine_for(template).connect() as conn:
        return [r[0] for r in conn.execute(query, {"t": TABLE.name})]
