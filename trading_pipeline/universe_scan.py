"""The pre-market gap scan, vectorized: the same qualification as the runner, for a whole market.

`live_runner.strategies.gap_and_go.qualifies` is the definition (one symbol at a time, at 09:30);
`qualify` below is that formula on numpy columns, in the same exact integers (prices in 1e-8
dollars, volumes in 1e-4 shares, config ratios as fractions: live_runner.core.exact), so both agree on
every input (NaN included) and neither decides a boundary in binary floats;
tests/unit/test_pipeline_universe.py checks it against `qualifies` on random frames and on prices
exactly at each threshold. `premarket_stats` derives what `qualifies` reads from
1-minute bars exactly as the runner's StrategyEngine does (high max, volume sum, last close of
the bars before the open, invalid bars dropped as the DataManager drops them).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from live_runner.core.config import GapAndGoConfig
from live_runner.core.exact import MAX_PRICE, MAX_VOLUME, PRICE_SCALE_F, VOLUME_SCALE_F
from live_runner.strategies.gap_and_go import gap_rule

STATS = ["prev_close", "pm_high", "pm_volume", "pm_last"]
TABLE_ROWS = 25


def _price_ok(frame: pd.DataFrame) -> np.ndarray:
    o, h, low, c, v = (frame[k].to_numpy(np.float64) for k in ("open", "high", "low", "close", "volume"))
    with np.errstate(invalid="ignore"):
        ok = (o > 0) & (h > 0) & (low > 0) & (c > 0) & (v >= 0) & (h >= low)
        ok &= (low <= o) & (o <= h) & (low <= c) & (c <= h)
    return ok


def valid_bars(frame: pd.DataFrame) -> np.ndarray:
    """Mask of bars the runner's DataManager would accept: sane prices, range and volume, and
    not a repeat of an accepted bar of the same symbol and minute (the first one wins)."""
    ok = _price_ok(frame)
    dup = np.zeros(len(frame), dtype=bool)
    dup[ok] = frame.loc[ok].duplicated(["symbol", "ts"], keep="first").to_numpy()
    return ok & ~dup


def premarket_stats(bars: pd.DataFrame, premarket_open: int, open_ns: int) -> pd.DataFrame:
    """Per symbol: pm_high, pm_volume, pm_last over the valid bars in [premarket_open, open).

    Vectorized over integer symbol codes (a 10,000-symbol premarket is ~2.3 M bars): one stable
    sort by (symbol, time), then segment reductions; `pm_last` is the close of each symbol's
    latest bar, as the runner's last update."""
    ts = bars["ts"].to_numpy(np.int64)
    window = (ts >= premarket_open) & (ts < open_ns)
    cat = pd.Categorical(bars["symbol"]) if not isinstance(bars["symbol"].dtype, pd.CategoricalDtype) \
        else bars["symbol"].array
    codes = np.asarray(cat.codes, dtype=np.int64)
    ok = window & _price_ok(bars) & (codes >= 0)
    idx = np.flatnonzero(ok)
    order = idx[np.lexsort((ts[idx], codes[idx]))]  # stable: file order among equal keys
    c, t = codes[order], ts[order]
    repeat = np.zeros(len(order), dtype=bool)
    repeat[1:] = (c[1:] == c[:-1]) & (t[1:] == t[:-1])
    order, c = order[~repeat], c[~repeat]
    if len(order) == 0:
        return pd.DataFrame({"symbol": pd.Series([], dtype=object), "pm_high": [], "pm_volume": [],
                             "pm_last": []})
    starts = np.flatnonzero(np.r_[True, c[1:] != c[:-1]])
    ends = np.r_[starts[1:], len(c)] - 1
    high = bars["high"].to_numpy(np.float64)[order]
    volume = bars["volume"].to_numpy(np.float64)[order]
    close = bars["close"].to_numpy(np.float64)[order]
    return pd.DataFrame({
        "symbol": np.asarray(cat.categories, dtype=object)[c[starts]],
        "pm_high": np.maximum.reduceat(high, starts),
        "pm_volume": np.add.reduceat(volume, starts),
        "pm_last": close[ends],
    })


def _exact_units(x: np.ndarray, scale: float) -> np.ndarray:
    """`live_runner.core.exact.units`/`volume_units` on a column: the same IEEE product and the same
    round-half-even, as exact Python ints (object array) so products never overflow."""
    return np.rint(x * scale).astype(np.int64).astype(object)


def qualify(stats: pd.DataFrame, cfg: GapAndGoConfig) -> np.ndarray:
    """`qualifies(PremarketStats(...), cfg)` for every row at once (rows of STATS columns), in
    the same exact integers (live_runner.core.exact): no binary-float decision at a boundary."""
    prev = stats["prev_close"].to_numpy(np.float64)
    high = stats["pm_high"].to_numpy(np.float64)
    vol = stats["pm_volume"].to_numpy(np.float64)
    last = stats["pm_last"].to_numpy(np.float64)
    with np.errstate(invalid="ignore"):  # NaN compares False: a missing prev_close never qualifies
        ok = (prev > 0) & (high > 0) & (last > 0) & (vol >= 0)
        # Integers of up to 9.2e18 units: any price below $92bn, any volume below 9.2e14 shares.
        ok &= (prev < MAX_PRICE) & (high < MAX_PRICE) & (last < MAX_PRICE) & (vol < MAX_VOLUME)
    out = np.zeros(len(stats), dtype=bool)
    idx = np.flatnonzero(ok)
    if len(idx) == 0:
        return out
    rule = gap_rule(cfg)
    p = _exact_units(prev[idx], PRICE_SCALE_F)
    h = _exact_units(high[idx], PRICE_SCALE_F)
    last_u = _exact_units(last[idx], PRICE_SCALE_F)
    vol_u = _exact_units(vol[idx], VOLUME_SCALE_F)
    (gn, gd), (hn, hd) = rule.gap, rule.hold
    sel = (p > 0) & (h > 0)
    sel &= last_u * gd >= (gd + gn) * p
    sel &= vol_u >= rule.volume_min_u
    sel &= (last_u >= rule.price_min_u) & (last_u <= rule.price_max_u)
    sel &= last_u * hd >= hn * h
    out[idx] = sel.astype(bool)
    return out


def scan(prev_close: pd.DataFrame, pm_stats: pd.DataFrame, cfg: GapAndGoConfig) -> pd.DataFrame:
    """The ranked universe: qualified symbols by gap (desc), premarket volume (desc), symbol.

    `prev_close`: symbol, prev_close. `pm_stats`: symbol, pm_high, pm_volume, pm_last. A symbol
    with no premarket trade cannot qualify (the runner has no stats for it)."""
    merged = pm_stats.merge(prev_close[["symbol", "prev_close"]], on="symbol", how="left")
    mask = qualify(merged, cfg)
    out = merged.loc[mask, ["symbol", *STATS]].copy()
    out["gap_pct"] = out["pm_last"] / out["prev_close"] - 1.0
    out["hold_ratio"] = out["pm_last"] / out["pm_high"]
    out = out.sort_values(["gap_pct", "pm_volume", "symbol"], ascending=[False, False, True],
                          kind="stable").reset_index(drop=True)
    out.insert(0, "rank", np.arange(1, len(out) + 1))
    return out


def markdown_table(ranked: pd.DataFrame, limit: int = TABLE_ROWS) -> str:
    """The top of the ranking as a Markdown table (for the asset's metadata)."""
    if ranked.empty:
        return "_no symbol qualified_"
    lines = ["| # | symbol | gap % | prev close | pm last | pm high | pm volume |",
             "|---:|:---|---:|---:|---:|---:|---:|"]
    for r in ranked.head(limit).itertuples(index=False):
        lines.append(f"| {r.rank} | {r.symbol} | {r.gap_pct * 100:.2f} | {r.prev_close:.2f} | "
                     f"{r.pm_last:.2f} | {r.pm_high:.2f} | {int(r.pm_volume):,} |")
    if len(ranked) > limit:
        lines.append(f"\n_{len(ranked) - limit} more not shown_")
    return "\n".join(lines)
