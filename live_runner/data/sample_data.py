"""A deterministic synthetic US-equities market of 1-minute bars, for replays, demos and tests.

Real recorded sessions cannot be shipped with the project, yet replays need sessions in which both
strategies actually trade. So the generator plants the patterns of DESIGN.md on top of random walks:
about a quarter of the symbols gap up each session (qualifying for gap_and_go and breaking the
premarket high in the opening drive; half of them run to the 2R target, half fail and hit the
stop), and some symbols flush below session VWAP and reclaim it on a volume spike (vwap_reclaim).
Everything comes from one seeded numpy Generator, so the same arguments give the same frame.
"""

from __future__ import annotations

import argparse
import sys
import warnings
from datetime import date, datetime, time
from functools import lru_cache
from pathlib import Path
from zoneinfo import ZoneInfo

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pcsv
import pyarrow.parquet as pq

ET = ZoneInfo("America/New_York")
NS_PER_MIN = 60_000_000_000
PM_MINUTES = 330  # 04:00-09:29 ET
GAP_FRACTION = 0.25
COLUMNS = ["symbol", "timestamp", "open", "high", "low", "close", "volume"]


@lru_cache(maxsize=1)
def _calendar():  # -> exchange_calendars.ExchangeCalendar; building one takes ~0.5 s, so cache it
    import exchange_calendars as xcals

    with warnings.catch_warnings():  # exchange_calendars' own use of a pandas-3 deprecated API
        warnings.filterwarnings("ignore", message=r"Series\.values returning an ndarray")
        return xcals.get_calendar("XNYS")


def _sessions(start: date, count: int) -> tuple[date, list[date]]:
    """(previous session, `count` sessions from `start`); ValueError if `start` is no session."""
    cal = _calendar()
    try:
        if not cal.is_session(start):
            raise ValueError(f"{start.isoformat()} is not an XNYS trading session")
        days = cal.sessions_window(start, count)
        prev = cal.previous_session(start)
    except ValueError:
        raise
    except Exception as exc:  # exchange_calendars bounds errors
        raise ValueError(f"{start.isoformat()}: {exc}") from exc
    return prev.date(), [d.date() for d in days]


def _minutes(day: date) -> tuple[np.ndarray, np.ndarray]:
    """Bar starts (UTC ns) of the premarket (04:00-09:29 ET) and of the regular session."""
    cal = _calendar()
    open_ns, close_ns = cal.session_open(day).value, cal.session_close(day).value
    pm_ns = int(datetime.combine(day, time(4, 0), tzinfo=ET).timestamp()) * 1_000_000_000
    pm = pm_ns + np.arange((open_ns - pm_ns) // NS_PER_MIN, dtype=np.int64) * NS_PER_MIN
    reg = open_ns + np.arange((close_ns - open_ns) // NS_PER_MIN, dtype=np.int64) * NS_PER_MIN
    return pm, reg


def _tickers(n: int) -> np.ndarray:
    width = max(3, len(str(max(n - 1, 0))))
    return np.array([f"SYM{i:0{width}d}" for i in range(n)], dtype=object)


class _Market:
    """Per-symbol traits and the running state (last close) across sessions."""

    def __init__(self, n: int, rng: np.random.Generator) -> None:
        self.n, self.rng = n, rng
        small = np.arange(n) % 2 == 0  # half the names are small caps, the gap candidates
        lo, hi = np.where(small, np.log(2.5), np.log(12.0)), np.where(small, np.log(10.0), np.log(50.0))
        self.base = np.exp(rng.uniform(lo, hi))
        self.sigma = rng.uniform(0.0008, 0.0018, n) * np.where(small, 1.3, 1.0)  # per-minute log vol
        self.adv = np.exp(rng.uniform(np.log(3e5), np.log(6e6), n))  # regular-session shares/day
        self.pm_presence = np.clip(rng.uniform(0.15, 1.4, n), 0.0, 1.0)
        self.last_close = np.round(self.base * np.exp(rng.normal(0.0, 0.05, n)), 2)

    # -- bar construction -------------------------------------------------------------------

    def bars(self, close: np.ndarray, first_open: np.ndarray, sig: np.ndarray) -> dict[str, np.ndarray]:
        """Unrounded OHLC around a (T, n) close path: open = previous close, small wicks."""
        rng = self.rng
        o = np.vstack([first_open[None, :], close[:-1]]) * np.exp(rng.normal(0, 0.15, close.shape) * sig)
        wick = np.abs(rng.normal(0.0, 0.6, (2, *close.shape))) * sig
        return {"open": o, "close": close, "high": np.maximum(o, close) * np.exp(wick[0]),
                "low": np.minimum(o, close) * np.exp(-wick[1])}

    @staticmethod
    def rounded(b: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Cents, and OHLC-consistent after rounding (low <= open, close <= high; low >= 0.01)."""
        o, c = np.round(np.maximum(b["open"], 0.01), 2), np.round(np.maximum(b["close"], 0.01), 2)
        h = np.maximum(np.round(b["high"], 2), np.maximum(o, c))
        low = np.maximum(np.minimum(np.round(b["low"], 2), np.minimum(o, c)), 0.01)
        return {**b, "open": o, "high": h, "low": low, "close": c}

    def volume(self, n_rows: int, boost: np.ndarray | None = None) -> np.ndarray:
        """U-shaped regular-session volume (heavy open, lighter midday, close auction run-up)."""
        t = np.arange(n_rows)[:, None]
        profile = 1.0 + 2.5 * np.exp(-t / 25.0) + 1.2 * np.exp(-(n_rows - 1 - t) / 25.0)
        v = self.adv / 390.0 / 1.45 * profile * self.rng.lognormal(0.0, 0.45, (n_rows, self.n))
        if boost is not None:
            v = v * boost
        return np.maximum(np.round(v), 1.0)

    def regular_noise(self, n_rows: int, start: np.ndarray) -> dict[str, np.ndarray]:
        """A plain random-walk regular session (the session before the first generated one)."""
        t = np.arange(n_rows)[:, None]
        sig = self.sigma * (1.0 + 1.5 * np.exp(-t / 20.0) + 0.5 * np.exp(-(n_rows - 1 - t) / 15.0))
        close = start * np.exp(np.cumsum(sig * self.rng.standard_normal((n_rows, self.n)), axis=0))
        out = self.rounded(self.bars(close, start, sig))
        out["volume"] = self.volume(n_rows)
        return out


def _session(m: _Market, n_reg: int) -> tuple[dict, np.ndarray, dict]:
    """One session: (premarket bars, premarket presence mask, regular bars), all (T, n) arrays."""
    rng, n = m.rng, m.n
    prev = m.last_close.copy()
    # Gappers: a fixed share of the names whose gapped price stays inside the $1-$20 band.
    eligible = np.flatnonzero((prev >= 1.5) & (prev * 1.07 <= 19.5))
    gappers = rng.permutation(eligible)[: max(1, round(GAP_FRACTION * n))]
    gap = np.minimum(rng.uniform(0.07, 0.15, len(gappers)), 19.5 / prev[gappers] - 1.0)
    is_gap = np.zeros(n, bool)
    is_gap[gappers] = True

    # ---- premarket ---------------------------------------------------------------------------
    tp = np.arange(PM_MINUTES)[:, None]
    pm_sig = m.sigma * 0.5
    drift = rng.normal(0.0, 0.012, n) - 0.5 * np.log(prev / m.base)  # overnight, mean-reverting
    log_pm = np.log(prev) + drift + np.cumsum(pm_sig * rng.standard_normal((PM_MINUTES, n)), axis=0)
    present = rng.random((PM_MINUTES, n)) < m.pm_presence
    pm_vol = m.adv * 2e-4 * (0.3 + tp / PM_MINUTES) * rng.lognormal(0.0, 0.8, (PM_MINUTES, n))
    pm_level = prev.copy()
    for k, j in enumerate(gappers):  # news gap: ramp up to the level L, then hold it
        level = prev[j] * (1.0 + gap[k])
        pm_level[j] = level
        t_ramp = rng.integers(90, 270)
        ramp = np.interp(np.arange(PM_MINUTES), [0, t_ramp, PM_MINUTES - 1],
                         [np.log(prev[j] * (1 + gap[k] * rng.uniform(0.2, 0.6))), np.log(level),
                          np.log(level)])
        walk = np.cumsum(rng.normal(0.0, m.sigma[j] * 0.6, PM_MINUTES))
        walk -= np.linspace(0.0, 1.0, PM_MINUTES) * walk[-1]  # bridge: ends exactly at L
        log_pm[:, j] = ramp + np.clip(walk, -0.03, 0.03)
        present[:, j] = rng.random(PM_MINUTES) < 0.95
        w = (1.0 + 3.0 * (np.arange(PM_MINUTES) / PM_MINUTES) ** 2
             + 4.0 * np.exp(-np.abs(np.arange(PM_MINUTES) - t_ramp) / 20.0))
        w = w * rng.lognormal(0.0, 0.5, PM_MINUTES) * present[:, j]
        pm_vol[:, j] = rng.uniform(150_000, 1_200_000) * w / w.sum()
    present[-1] |= is_gap  # the 09:29 bar (pm_last) is always there for gappers
    pm_close = np.exp(log_pm)
    pm = m.rounded(m.bars(pm_close, np.where(is_gap, pm_close[0], prev * np.exp(drift)), pm_sig))
    pm["close"][-1, gappers] = np.round(pm_level[gappers], 2)
    pm["high"][-1] = np.maximum(pm["high"][-1], pm["close"][-1])
    pm["low"][-1] = np.minimum(pm["low"][-1], pm["close"][-1])
    pm["volume"] = np.maximum(np.round(pm_vol), 1.0)
    pm_high = np.where(present, pm["high"], 0.0).max(axis=0)

    # ---- regular session ----------------------------------------------------------------------
    t = np.arange(n_reg)
    sig = m.sigma * (1.0 + 1.5 * np.exp(-t / 20.0) + 0.5 * np.exp(-(n_reg - 1 - t) / 15.0))[:, None]
    sig = sig * np.where(is_gap, 1.8, 1.0)
    noise = np.cumsum(sig * rng.standard_normal((n_reg, n)), axis=0)
    start = np.where(is_gap, pm["close"][-1], pm_close[-1])
    resolved = np.zeros(n, int)  # minute by which a gapper's trade is decided
    wins = rng.permutation(np.arange(len(gappers)) % 2 == rng.integers(2))  # half run, half fail
    for k, j in enumerate(gappers):  # opening drive above pm_high, then run (winner) or fade
        win = bool(wins[k])
        d = int(rng.integers(3, 16))
        e = min(d + int(rng.integers(25, 60)), n_reg - 2)
        above = rng.uniform(0.012, 0.03) if win else rng.uniform(0.006, 0.012)  # over pm_high
        peak = np.log(pm_high[j] * (1 + above) / start[j])
        after = peak + np.log1p(rng.uniform(0.07, 0.14)) if win else np.log(rng.uniform(0.90, 0.95))
        knots = [0, d, e, n_reg - 1]
        fade = np.log(prev[j] * rng.uniform(0.9, 1.02) / start[j])  # gappers fade into the close
        shape = np.interp(t, knots, [0.0, peak, after, fade])
        noise[:, j] = shape + noise[:, j] - np.interp(t, knots, noise[knots, j])
        resolved[j] = e
    close = start * np.exp(noise)
    boost = np.where(is_gap, 2.0 + 6.0 * np.exp(-t / 30.0)[:, None], 1.0)
    reg = m.bars(close, start * np.exp(rng.normal(0.0, 0.002, n)), sig)
    reg["volume"] = m.volume(n_reg, boost)

    # vwap_reclaim: half the gappers (the replay universe by default) and ~10% of the others.
    others = np.flatnonzero(~is_gap)
    reclaimers = [g for k, g in enumerate(gappers) if k % 4 < 2]
    reclaimers += list(others[rng.random(len(others)) < 0.10])
    for k, j in enumerate(reclaimers):
        _plant_reclaim(m, reg, j, max(resolved[j] + 20, 30), n_reg, win=k % 2 == 0)
    reg = m.rounded(reg)
    m.last_close = reg["close"][-1].copy()
    return pm, present, reg


def _plant_reclaim(m: _Market, reg: dict, j: int, lo: int, n_reg: int, win: bool) -> None:
    """Fade to VWAP, >= 3 closes below it, then a close above on >= 2.5x the 20-bar mean volume."""
    rng = m.rng
    hi = n_reg - 60
    if lo > hi:
        return
    t0 = int(rng.integers(lo, hi + 1))  # first bar below VWAP
    o, h, low, c, v = (reg[k][:, j] for k in ("open", "high", "low", "close", "volume"))
    sig = m.sigma[j]

    def vwap_through(i: int) -> float:
        tp = (h[: i + 1] + low[: i + 1] + c[: i + 1]) / 3.0
        return float((tp * v[: i + 1]).sum() / v[: i + 1].sum())

    def put(i: int, open_: float, close_: float) -> None:
        o[i], c[i] = open_, close_
        h[i] = max(open_, close_) * np.exp(abs(rng.normal(0.0, 0.5)) * sig)
        low[i] = min(open_, close_) * np.exp(-abs(rng.normal(0.0, 0.5)) * sig)

    a = t0 - 15  # approach: drift from where the price is down to just under VWAP
    target = np.log(vwap_through(a - 1) * 0.995)
    path = np.exp(np.linspace(np.log(c[a - 1]), target, 16)[1:] + rng.normal(0.0, sig * 0.5, 15))
    for i in range(a, t0):
        put(i, c[i - 1], path[i - a])
    level = vwap_through(t0 - 1) * (1 - rng.uniform(0.015, 0.03))
    k = int(rng.integers(3, 7))
    for i in range(t0, t0 + k):
        put(i, c[i - 1], level * np.exp(rng.normal(0.0, sig * 0.3)))
    tt = t0 + k  # the trigger bar
    v[tt] = np.ceil(rng.uniform(2.5, 4.0) * v[tt - 20: tt].mean())
    put(tt, c[tt - 1], vwap_through(tt - 1) * (1 + rng.uniform(0.008, 0.015)))
    # The rest of the day continues from the trigger close; winners run, losers lose VWAP again.
    rest = slice(tt + 1, n_reg)
    steps = np.arange(n_reg - tt - 1)  # run (or drop) for 45 minutes, give it back by the close
    move = np.interp(steps, [0, 45, max(steps[-1], 46)], [0.0, 1.0, 0.0])
    move = move * (np.log1p(0.12) if win else np.log(0.95))
    scale = c[tt] / o[tt + 1] * np.exp(move)
    for arr in (o, h, low, c):
        arr[rest] = arr[rest] * scale


def generate(start_date: date, sessions: int, symbols: int, seed: int) -> pd.DataFrame:
    """Bars for `sessions` XNYS sessions from `start_date` (plus the previous session's regular
    hours, so every symbol has a prev_close), sorted by (timestamp, symbol)."""
    if sessions < 1 or symbols < 1:
        raise ValueError("sessions and symbols must be >= 1")
    prev_day, days = _sessions(start_date, sessions)
    rng = np.random.default_rng(seed)
    m = _Market(symbols, rng)
    parts: list[tuple[np.ndarray, dict, np.ndarray | None]] = []
    _, prev_reg = _minutes(prev_day)
    parts.append((prev_reg, m.regular_noise(len(prev_reg), m.last_close), None))
    m.last_close = parts[0][1]["close"][-1].copy()
    for day in days:
        pm_ts, reg_ts = _minutes(day)
        pm, present, reg = _session(m, len(reg_ts))
        parts += [(pm_ts, pm, present), (reg_ts, reg, None)]
    codes, cols = [], {k: [] for k in COLUMNS[1:]}
    for ts, bars, mask in parts:  # time-major flattening keeps rows sorted by (timestamp, symbol)
        keep = np.ones(bars["close"].shape, bool) if mask is None else mask
        rows, sym = np.nonzero(keep)
        codes.append(sym)
        cols["timestamp"].append(ts[rows])
        for k in ("open", "high", "low", "close", "volume"):
            cols[k].append(bars[k][keep])
    names = _tickers(symbols)
    df = pd.DataFrame({"symbol": names[np.concatenate(codes)],
                       **{k: np.concatenate(v) for k, v in cols.items()}})
    df["volume"] = df["volume"].astype(np.int64)
    df.attrs["first_session"] = days[0].isoformat()
    return df


def write(df: pd.DataFrame, out_dir: str | Path, fmt: str = "parquet") -> Path:
    """Write `bars_<first session>.parquet|csv` (CSV timestamps: ISO-8601 UTC with 'Z')."""
    if fmt not in ("parquet", "csv"):
        raise ValueError(f"unknown format {fmt!r} (parquet or csv)")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    first = df.attrs.get("first_session") or (
        pd.Timestamp(int(df["timestamp"].iloc[0]), tz="UTC").tz_convert(ET).date().isoformat())
    path = out / f"bars_{first}.{fmt}"
    ts = pa.array(df["timestamp"].to_numpy(np.int64)).cast(pa.timestamp("ns", tz="UTC"))
    if fmt == "csv":
        ts = pc.strftime(ts.cast(pa.timestamp("s", tz="UTC")), format="%Y-%m-%dT%H:%M:%SZ")
    table = pa.table({"symbol": pa.array(df["symbol"].to_numpy(object), pa.string()), "timestamp": ts,
                      **{k: pa.array(df[k].to_numpy()) for k in COLUMNS[2:]}})
    if fmt == "csv":
        pcsv.write_csv(table, path, pcsv.WriteOptions(quoting_style="none"))
    else:
        pq.write_table(table, path, row_group_size=65_536)
    return path


def main(argv: list[str] | None = None) -> int:
    """`sample-data --out DIR --date YYYY-MM-DD --symbols N --seed S [--sessions K] [--format F]`."""
    p = argparse.ArgumentParser(prog="sample-data", description="Write a synthetic bar file.")
    p.add_argument("--out", required=True, type=Path, help="output directory")
    p.add_argument("--date", required=True, type=date.fromisoformat, help="first session, YYYY-MM-DD")
    p.add_argument("--symbols", required=True, type=int, help="number of symbols")
    p.add_argument("--seed", required=True, type=int, help="random seed")
    p.add_argument("--sessions", type=int, default=1, help="consecutive sessions (default 1)")
    p.add_argument("--format", dest="fmt", choices=("parquet", "csv"), default="parquet")
    args = p.parse_args(argv)
    try:
        df = generate(args.date, args.sessions, args.symbols, args.seed)
    except ValueError as exc:
        print(f"sample-data: {exc}", file=sys.stderr)
        return 2
    print(write(df, args.out, args.fmt))
    return 0
