"""Convert recorded 1-minute bars from public sources into the runner's bar format.

Output: CSV `symbol,timestamp,open,high,low,close,volume`, the timestamp the bar's START in
ISO-8601 with the New York offset, prices as the decimal strings that were recorded (never
through a binary float), rows sorted by (timestamp, symbol). Nothing is filtered, adjusted or
repaired: a recorded bar the runner would reject stays in the file, so the replay meets it.

Sources (see tests/data/README.md for where each file came from):

  lean         QuantConnect Lean `Data/equity/usa/minute/<sym>/<YYYYMMDD>_trade.zip`: one CSV per
               zip, `ms since midnight ET, open, high, low, close, volume`, prices x 10000, bar
               start, raw (split-unadjusted) prices. The date comes from the zip's name.
  ninjatrader  NinjaTrader export (pyalgotrade's testcases/data/nt-spy-minute-2011.csv):
               `YYYYMMDD HHMMSS;open;high;low;close;volume`, stamped at the bar's END, in UTC.
  pyqstrat     pyqstrat's sample bars (sdist `pyqstrat/notebooks/data/<SYM>.csv.gz`): gzip CSV
               `timestamp,o,h,l,c,v`, the timestamp the bar's END in New York local time
               (09:31:00 .. 16:00:00), prices written from binary floats with an error of up to
               0.00003 (129.45999 for 129.46): each is restored to its 4-decimal price (US equity
               prints above $1 have at most four decimals), refusing any error of 0.00004 or more.
  fmp          Financial Modeling Prep intraday JSON (`[{"date": "YYYY-MM-DD HH:MM:SS", "open":
               ..}]`, newest first), bar start, New York local time. JSON numbers are read as
               Decimal, so 4.795 stays "4.795".

Usage:
  python tests/data/convert_recorded.py lean --symbol AAPL --out a.csv 20140606_trade.zip ...
  python tests/data/convert_recorded.py ninjatrader --symbol SPY --dates 2011-01-03,2011-01-04 \
      --out spy.csv nt-spy-minute-2011.csv
  python tests/data/convert_recorded.py fmp --symbol SLRX --out slrx.csv SLRX_1min_..._extended.json
  python tests/data/convert_recorded.py pyqstrat --symbol AAPL --dates 2023-01-03,2023-01-04 \
      --out aapl.csv AAPL.csv.gz
  python tests/data/convert_recorded.py merge --out all.csv a.csv b.csv
"""

from __future__ import annotations

import argparse
import csv
import gzip
import io
import json
import re
import sys
import zipfile
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from zoneinfo import ZoneInfo

NY = ZoneInfo("America/New_York")
HEADER = ("symbol", "timestamp", "open", "high", "low", "close", "volume")
Row = tuple[str, datetime, str, str, str, str, str]


def dec_text(value: Decimal) -> str:
    """Plain decimal text without exponent or trailing zeros: 645.5700 -> '645.57', 92 -> '92'."""
    text = format(value.normalize(), "f")
    return text


def volume_text(value: Decimal) -> str:
    if value != value.to_integral_value():
        raise ValueError(f"fractional volume {value}")
    return str(int(value))


def from_lean(path: Path, symbol: str) -> list[Row]:
    match = re.search(r"(\d{8})_trade\.zip$", path.name)
    if not match:
        raise ValueError(f"{path}: expected <YYYYMMDD>_trade.zip")
    day = datetime.strptime(match.group(1), "%Y%m%d").date()
    midnight = datetime(day.year, day.month, day.day, tzinfo=NY)
    rows: list[Row] = []
    with zipfile.ZipFile(path) as zf:
        (name,) = zf.namelist()
        for rec in csv.reader(io.TextIOWrapper(zf.open(name), "ascii")):
            ms, o, h, lo, c, v = rec
            # Wall-clock minutes after midnight (no DST change falls inside a trading day).
            start = (midnight.replace(tzinfo=None) + timedelta(milliseconds=int(ms))).replace(tzinfo=NY)
            prices = [dec_text(Decimal(x) / 10000) for x in (o, h, lo, c)]
            rows.append((symbol, start, *prices, volume_text(Decimal(v))))
    return rows


def from_ninjatrader(path: Path, symbol: str, dates: set[date] | None) -> list[Row]:
    rows: list[Row] = []
    for line in path.read_text("ascii").splitlines():
        if not line.strip():
            continue
        stamp, o, h, lo, c, v = line.split(";")
        end = datetime.strptime(stamp, "%Y%m%d %H%M%S").replace(tzinfo=UTC)
        start = (end - timedelta(minutes=1)).astimezone(NY)
        if dates is not None and start.date() not in dates:
            continue
        prices = [dec_text(Decimal(x)) for x in (o, h, lo, c)]
        rows.append((symbol, start, *prices, volume_text(Decimal(v))))
    return rows


def from_fmp(path: Path, symbol: str) -> list[Row]:
    rows: list[Row] = []
    for rec in json.loads(path.read_text("utf-8"), parse_float=Decimal, parse_int=Decimal):
        start = datetime.strptime(rec["date"], "%Y-%m-%d %H:%M:%S").replace(tzinfo=NY)
        prices = [dec_text(Decimal(rec[k])) for k in ("open", "high", "low", "close")]
        rows.append((symbol, start, *prices, volume_text(Decimal(rec["volume"]))))
    return rows


_FOUR = Decimal("0.0001")
_FLOAT_ERROR_MAX = Decimal("0.00004")


def four_decimals(text: str) -> str:
    """The 4-decimal price a float-written value stands for ('129.45999' -> '129.46')."""
    value = Decimal(text)
    price = value.quantize(_FOUR)
    if abs(value - price) >= _FLOAT_ERROR_MAX:
        raise ValueError(f"{text} is not a 4-decimal price written as a float")
    return dec_text(price)


def from_pyqstrat(path: Path, symbol: str, dates: set[date] | None) -> list[Row]:
    rows: list[Row] = []
    with gzip.open(path, "rt", encoding="ascii", newline="") as fh:
        reader = csv.reader(fh)
        if next(reader) != ["timestamp", "o", "h", "l", "c", "v"]:
            raise ValueError(f"{path}: expected the header timestamp,o,h,l,c,v")
        for stamp, o, h, lo, c, v in reader:
            end = datetime.strptime(stamp, "%Y-%m-%d %H:%M:%S")
            start = (end - timedelta(minutes=1)).replace(tzinfo=NY)
            if dates is not None and start.date() not in dates:
                continue
            prices = [four_decimals(x) for x in (o, h, lo, c)]
            rows.append((symbol, start, *prices, volume_text(Decimal(v))))
    return rows


def read_converted(path: Path) -> list[Row]:
    with path.open(newline="") as fh:
        reader = csv.reader(fh)
        if tuple(next(reader)) != HEADER:
            raise ValueError(f"{path}: not a converted bar file")
        return [(s, datetime.fromisoformat(t), o, h, lo, c, v) for s, t, o, h, lo, c, v in reader]


def write(rows: list[Row], out: Path) -> None:
    rows = sorted(rows, key=lambda r: (r[1], r[0]))
    seen: set[tuple[str, datetime]] = set()
    for r in rows:
        if (r[0], r[1]) in seen:
            raise ValueError(f"duplicate bar {r[0]} {r[1].isoformat()}")
        seen.add((r[0], r[1]))
    with out.open("w", newline="") as fh:
        w = csv.writer(fh, lineterminator="\n")
        w.writerow(HEADER)
        for s, t, o, h, lo, c, v in rows:
            w.writerow((s, t.isoformat(), o, h, lo, c, v))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("source", choices=("lean", "ninjatrader", "pyqstrat", "fmp", "merge"))
    p.add_argument("inputs", nargs="+", type=Path)
    p.add_argument("--symbol", help="symbol to write (not for merge)")
    p.add_argument("--dates", help="ninjatrader, pyqstrat: comma-separated sessions (ET dates) to keep")
    p.add_argument("--out", type=Path, required=True)
    args = p.parse_args(argv)
    rows: list[Row] = []
    dates = {date.fromisoformat(d) for d in args.dates.split(",")} if args.dates else None
    for path in args.inputs:
        if args.source == "merge":
            rows += read_converted(path)
        elif not args.symbol:
            p.error("--symbol is required")
        elif args.source == "lean":
            rows += from_lean(path, args.symbol)
        elif args.source == "ninjatrader":
            rows += from_ninjatrader(path, args.symbol, dates)
        elif args.source == "pyqstrat":
            rows += from_pyqstrat(path, args.symbol, dates)
        else:
            rows += from_fmp(path, args.symbol)
    write(rows, args.out)
    print(f"{args.out}: {len(rows)} bars", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
