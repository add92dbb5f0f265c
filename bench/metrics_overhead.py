"""What the metrics cost: the hot-path additions in isolation, and a /metrics render.

Usage: .venv/bin/python bench/metrics_overhead.py [--loops 2000000] [--events 50000]
Prints JSON lines (ns per operation, empty-loop overhead subtracted):
- bar_stamp: DataManager.on_bar's `self.bar_start_ns = perf_counter_ns()` (every bar);
- submit_stamp: the same store in ExecutionEngine.submit (every order sent);
- signal_record: the node's signal branch bookkeeping plus LatencyHistogram.record (per signal bar
  that caused an order);
- render: RunnerMetrics.render() after a long synthetic run (off the hot path, on the loop).
The chain-level before/after comparison is bench/latency.py (tick-to-order p50/p99).
"""

from __future__ import annotations

import argparse
import time
import timeit

from _common import emit

from live_runner.core.latency import LatencyHistogram


class _Obj:
    __slots__ = ("bar_start_ns", "last_submit_ns")

    def __init__(self) -> None:
        self.bar_start_ns = 0
        self.last_submit_ns = 0


def _per_op(stmt: str, setup: str, ns: dict, loops: int) -> float:
    best = min(timeit.repeat(stmt, setup, repeat=7, number=loops, globals=ns))
    empty = min(timeit.repeat("pass", setup, repeat=7, number=loops, globals=ns))
    return round((best - empty) / loops * 1e9, 1)


def micro(loops: int) -> None:
    o = _Obj()
    hist = LatencyHistogram()
    ns = {"o": o, "hist": hist, "perf": time.perf_counter_ns}
    emit(bench="metrics_hot_path_ns", op="bar_stamp",
         ns_per_op=_per_op("o.bar_start_ns = perf()", "", ns, loops))
    emit(bench="metrics_hot_path_ns", op="submit_stamp",
         ns_per_op=_per_op("o.last_submit_ns = perf()", "", ns, loops))
    # The node's branch: read the mark, (the signals submit: simulated by the +=), compare, record;
    # the simulated submit is measured alone and subtracted.
    setup = "o.last_submit_ns = o.bar_start_ns = 0"
    with_record = _per_op("ex = o; sent = ex.last_submit_ns; ex.last_submit_ns += 13_000\n"
                          "if ex.last_submit_ns != sent: hist.record(ex.last_submit_ns - o.bar_start_ns)",
                          setup, ns, loops)
    submit_only = _per_op("ex = o; ex.last_submit_ns += 13_000", setup, ns, loops)
    emit(bench="metrics_hot_path_ns", op="signal_record", ns_per_op=round(with_record - submit_only, 1))


def render(events: int) -> None:
    import tempfile
    from datetime import date

    from latency import synthetic_bars

    from live_runner.core.calendar import MarketCalendar
    from live_runner.core.config import parse_config
    from live_runner.persistence.journal import Journal
    from live_runner.ops.metrics import RunnerMetrics
    from live_runner.live.node import TradingNode

    cfg = parse_config({
        "active_strategies": ["bench.pingpong:PingPong"], "account_size": 1_000_000,
        "max_positions": 5, "max_position_size_pct": 0.05,
        "risk": {"max_orders_per_minute": 1_000_000}, "journal": {"batch_size": 2000},
    })
    cal = MarketCalendar()
    days = cal.sessions_in_range(date(2023, 1, 3), date(2024, 12, 31))
    with tempfile.TemporaryDirectory() as tmp:
        journal = Journal(f"sqlite:///{tmp}/j.db", batch_size=2000)
        node = TradingNode(cfg, journal, calendar=cal)
        node.start()

        class _Service:  # what RunnerMetrics reads from a LiveService
            pass

        service = _Service()
        service.node = node  # type: ignore[attr-defined]
        metrics = RunnerMetrics(service)
        on_bar = node.data.on_bar
        for bar in synthetic_bars(5, days, cal):
            on_bar(bar)
            if node.tick_to_order.count >= events:
                break
        times = []
        for _ in range(21):
            t0 = time.perf_counter()
            text = metrics.render()
            times.append(time.perf_counter() - t0)
        node.stop()
        journal.close()
    first, rest = times[0], sorted(times[1:])
    lat = node.tick_to_order
    emit(bench="metrics_render", orders=node.orders.orders_submitted,
         trades=len(node.performance.trades), bytes=len(text),
         first_ms=round(first * 1e3, 3), median_ms=round(rest[len(rest) // 2] * 1e3, 3),
         tick_to_order_samples=lat.count,
         tick_to_order_p50_bucket_us=round((lat.quantile(0.5) or 0) * 1e6, 1),
         tick_to_order_p99_bucket_us=round((lat.quantile(0.99) or 0) * 1e6, 1))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--loops", type=int, default=2_000_000)
    ap.add_argument("--events", type=int, default=50_000)
    args = ap.parse_args()
    micro(args.loops)
    render(args.events)


if __name__ == "__main__":
    main()
