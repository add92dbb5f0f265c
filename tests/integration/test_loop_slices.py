"""A paced file that has fallen behind schedule (here: released flat out) must not starve the event
loop (issue 18): the ops server answers while bars are still being processed, and a stop request
takes effect before the data runs out ("SIGTERM stops taking bars", README). Before the loop
yielded only when a bar was not yet due, `/status` answered only once the whole file was done."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.kit.live import ServiceThread, live_config
from tests.kit.sessions import et_ns

pytestmark = pytest.mark.timeout(120)

DAY, MINUTE = "2024-03-15", 60_000_000_000
SYMBOLS, MINUTES = 200, 390


def write_bars(path: Path) -> int:
    """SYMBOLS flat symbols over the regular session: no strategy trades, every bar is work."""
    t0 = et_ns(DAY, "09:30")
    rows = ["symbol,timestamp,open,high,low,close,volume\n"]
    for m in range(MINUTES):
        ts = t0 + m * MINUTE
        rows.extend(f"S{s:03d},{ts},10.0,10.01,9.99,10.0,1000\n" for s in range(SYMBOLS))
    path.write_text("".join(rows))
    return SYMBOLS * MINUTES


def test_the_ops_server_answers_and_a_stop_takes_effect_while_a_late_feed_catches_up(tmp_path: Path) -> None:
    total = write_bars(tmp_path / "bars.csv")
    cfg = live_config(journal={"batch_size": 500})
    with ServiceThread(tmp_path, cfg, bars=tmp_path / "bars.csv", speed=1e9, linger=False) as svc:
        seen = []
        while len(seen) < 3:  # three answers, each while the feed is still catching up
            code, status = svc.get("/status")
            assert code == 200
            processed = svc.node.data.bars_processed
            assert 0 <= processed < total, "the ops server answered only after the whole file"
            seen.append(processed)
        summary = svc.stop()
    assert svc.node.data.bars_processed < total, "the stop took effect only when the data ran out"
    assert summary is not None
