"""Shared helpers for the benchmarks (not a test: prints JSON lines with the figures)."""

from __future__ import annotations

import json
import platform
import sys
from datetime import date
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
CACHE = ROOT / "var" / "bench"


def sample_file(symbols: int, sessions: int, seed: int = 11, start: date = date(2024, 10, 1)) -> Path:
    """Generate (once) and cache a sample bars file."""
    from live_runner.data import sample_data

    out = CACHE / f"s{symbols}x{sessions}_seed{seed}"
    existing = sorted(out.glob("bars_*.parquet")) if out.exists() else []
    if existing:
        return existing[0]
    out.mkdir(parents=True, exist_ok=True)
    df = sample_data.generate(start, sessions=sessions, symbols=symbols, seed=seed)
    return sample_data.write(df, out)


def emit(**fields: object) -> None:
    fields.setdefault("python", platform.python_version())
    print(json.dumps(fields, sort_keys=True), flush=True)
