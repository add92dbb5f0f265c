"""Passwords out of everything shown or logged.

A journal URL (`postgresql+psycopg2://user:PASSWORD@host/db`) is a credential: it reaches the
runner through the environment (`TRADING_JOURNAL_URL`, never argv, which /proc shows to every
user of the machine), and every place that displays a URL (the CLI summary, /status, the Dagster
op's logs and metadata, the dashboard) renders it through `redact_url`. `scrub` does the same to
free text that may quote a URL (an exception message).
"""

from __future__ import annotations

import re

import sqlalchemy as sa

JOURNAL_URL_ENV = "TRADING_JOURNAL_URL"
MASK = "***"
# scheme://user:password@ : the password runs to the last '@' of its whitespace-free token, so a
# raw '@' inside it masks more, never less.
_USERINFO = re.compile(r"(?P<scheme>[A-Za-z][A-Za-z0-9+.\-]*://)(?P<user>[^:/@\s]*):(?P<pw>\S*)@")


def has_password(url: str) -> bool:
    """Whether `url` carries a password (SQLAlchemy's parse, else the `user:pw@` pattern)."""
    try:
        return bool(sa.engine.make_url(url).password)
    except Exception:
        return bool(_USERINFO.search(url))


def redact_url(url: str) -> str:
    """The URL as it may be shown: its password replaced by ***, everything else unchanged."""
    if not url:
        return url
    try:
        parsed = sa.engine.make_url(url)
    except Exception:
        return scrub(url)
    if parsed.password is None:
        return url
    return scrub(parsed.render_as_string(hide_password=True))


def scrub(text: str) -> str:
    """Free text with the password of every `scheme://user:password@host` in it masked."""
    return _USERINFO.sub(lambda m: f"{m['scheme']}{m['user']}:{MASK}@", text)
