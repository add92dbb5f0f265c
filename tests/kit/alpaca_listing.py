"""GET /v2/orders as Alpaca answers it, over an `AlpacaBook`: the fake's order listing.

Query parameters (Alpaca's documentation, "Get all orders"):
- `status`: open | closed | all (default open);
- `limit`: default 50, at most 500. Above 500 (or below 1, or not a number) the request is refused
  with 422 "invalid limit". Alpaca's own wording for the orders endpoint is not documented; this
  follows the answer its data API gives for a limit out of range (alpaca-trade-api-js #191);
- `after` / `until`: timestamps (RFC 3339, or a date), exclusive, on `submitted_at`;
- `direction`: asc | desc (default desc), on `submitted_at`; equal times keep submission order;
- `nested`: multi-leg orders rolled up under their parent (`legs`), legs not listed on their own;
  `limit` counts the listed (top-level) orders;
- `symbols` (comma separated) and `side` filter.
A listing cut at `limit` is how a busy day hides orders from a client that does not page.
"""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Any

from tests.kit.alpaca_book import OPEN, AlpacaBook, Order

MAX_LIMIT = 500
DEFAULT_LIMIT = 50


def _refuse(message: str) -> tuple[int, dict[str, Any]]:
    return 422, {"code": 42210000, "message": message}


def parse_ts(text: str) -> int:
    """UTC ns of an RFC 3339 timestamp or a date (as Alpaca accepts for after/until)."""
    text = text.strip()
    if len(text) == 10:
        d = date.fromisoformat(text)
        dt = datetime(d.year, d.month, d.day, tzinfo=UTC)
    else:
        dt = datetime.fromisoformat(text)
        if dt.tzinfo is None:
            dt = dt.replace(tzinfo=UTC)
    delta = dt - datetime(1970, 1, 1, tzinfo=UTC)
    return (delta.days * 86_400 + delta.seconds) * 1_000_000_000 + delta.microseconds * 1000


def submitted_ns(o: Order) -> int:
    return parse_ts(o["submitted_at"])


def listing(book: AlpacaBook, q: dict[str, list[str]], nested: bool) -> tuple[int, Any]:
    """(HTTP status, body) of GET /v2/orders with the parsed query `q`."""
    arg = {k: v[0] for k, v in q.items() if v}
    status = arg.get("status", "open")
    if status not in ("open", "closed", "all"):
        return _refuse(f"invalid status {status}")
    try:
        limit = int(arg.get("limit", DEFAULT_LIMIT))
    except ValueError:
        return _refuse("invalid limit")
    if not 1 <= limit <= MAX_LIMIT:
        return _refuse(f"invalid limit, limit must be between 1 and {MAX_LIMIT}")
    direction = arg.get("direction", "desc")
    if direction not in ("asc", "desc"):
        return _refuse(f"invalid direction {direction}")
    bounds: dict[str, int | None] = {}
    for key in ("after", "until"):
        try:
            bounds[key] = parse_ts(arg[key]) if arg.get(key) else None
        except ValueError:
            return _refuse(f"invalid {key}")
    after, until = bounds["after"], bounds["until"]
    symbols = set(arg["symbols"].split(",")) if arg.get("symbols") else None
    side = arg.get("side")
    rows = []
    for o in book.orders.values():   # insertion order = submission order
        if nested and o["id"] in book.parent_of:
            continue
        if status != "all" and (status == "open") != (o["status"] in OPEN):
            continue
        if (symbols is not None and o["symbol"] not in symbols) or (side and o["side"] != side):
            continue
        t = submitted_ns(o)
        if (after is not None and t <= after) or (until is not None and t >= until):
            continue
        rows.append((t, o))
    rows.sort(key=lambda r: r[0], reverse=direction == "desc")
    return 200, [book.view(o, nested) for _, o in rows[:limit]]


__all__ = ["DEFAULT_LIMIT", "MAX_LIMIT", "listing", "parse_ts", "submitted_ns"]
