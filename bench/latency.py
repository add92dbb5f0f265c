"""Tick-to-order latency: from a bar entering the DataManager to the paper broker's submit.

Usage: .venv/bin/python bench/latency.py [--events 100000] [--no-journal] [--clock wall|cpu|sched]
                                         [--writer process|thread]
Every other regular-session bar of a synthetic market produces a signal (bench/pingpong.py), and
the time to the submit of the order that signal causes is recorded (the last submit of the bar):
the first line, over 100,000 signal-producing events. The second line adds the bars with a submit
but no signal (an entry fill placing the stop and target), for the whole picture. Journal (SQLite
file) and the node's latency histogram are on, as in production: the live service's journal
writer (a process, `--writer`) and garbage-collection policy (`live_runner.live.gc_quiet.settle`;
this loop never waits, so the collector's quiet points never come). `unwritten_at_end`: events
the writer had not yet written (or, a process, acknowledged) when the last bar was done: a
writer that keeps up has ~0.2 s of events there.
Targets (issue 2): p50 <= 15 us, p99 <= 50 us; (issue 18) p99.9 <= 1 ms, max <= 5 ms, journal on.
Clocks: `wall` is what a bar sees; `cpu` the main thread's CPU time (blind to waiting, for the
GIL or anything else); `sched` is wall time minus the time the kernel kept the main thread
runnable but off a CPU (its run-queue delay, /proc/thread-self/schedstat): on a shared,
overloaded machine it keeps what the process itself causes (its work, GIL waits, journal
waits) and drops the preemption other processes cause.
"""

from __future__ import annotations

import argparse
from datetime import date
import os
import random
import tempfile
import time

from _common import emit

from live_runner.core.calendar import MarketCalendar
from live_runner.core.config import parse_config
from live_runner.persistence.journal import Journal
from live_runner.core.models import Bar
from live_runner.live import gc_quiet
from live_runner.live.node import TradingNode


def synthetic_bars(symbols: int, days: list, cal: MarketCalendar, seed: int = 1):
    rng = random.Random(seed)
    prices = {f"B{i:03d}": rng.uniform(5, 50) for i in range(symbols)}
    names = sorted(prices)
    for day in days:
        s = cal.session(day)
        t = s.open
        while t < s.close:
            for sym in names:
                p = prices[sym]
                c = round(max(1.0, p * (1 + rng.gauss(0, 0.002))), 2)
                o = round(p, 2)
                h, l = max(o, c) + 0.01, min(o, c) - 0.01
                prices[sym] = c
                yield Bar(sym, t, o, round(h, 2), round(l, 2), c, 1000.0)
            t += 60_000_000_000


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--events", type=int, default=100_000)
    ap.add_argument("--symbols", type=int, default=5)
    ap.add_argument("--no-journal", action="store_true")
    ap.add_argument("--clock", choices=["wall", "cpu", "sched"], default="wall",
                    help="cpu: thread CPU time; sched: wall minus run-queue delay (see above)")
    ap.add_argument("--writer", choices=["thread", "process"], default="process",
                    help="the journal's writer (journal.writer; the live service's default: process)")
    args = ap.parse_args()
    cfg = parse_config({
        "active_strategies": ["bench.pingpong:PingPong"], "account_size": 1_000_000,
        "max_positions": 5, "max_position_size_pct": 0.05,
        "risk": {"max_orders_per_minute": 1_000_000}, "journal": {"batch_size": 2000},
    })
    cal = MarketCalendar()
    days = cal.sessions_in_range(date(2023, 1, 3), date(2024, 12, 31))
    with tempfile.TemporaryDirectory() as tmp:
        url = "sqlite://" if args.no_journal else f"sqlite:///{tmp}/j.db"
        journal = Journal(url, batch_size=cfg.journal.batch_size, writer=args.writer)
        node = TradingNode(cfg, journal, calendar=cal)
        client = node.execution.primary
        real_submit = client.submit
        perf = time.thread_time_ns if args.clock == "cpu" else time.perf_counter_ns
        sched_fd = os.open("/proc/thread-self/schedstat", os.O_RDONLY) if args.clock == "sched" else -1

        def run_delay() -> int:  # ns this thread waited on a run queue
            return int(os.pread(sched_fd, 64, 0).split()[1]) if sched_fd >= 0 else 0

        last = [0]

        def timed_submit(req):  # type: ignore[no-untyped-def]
            last[0] = perf()
            real_submit(req)

        client.submit = timed_submit  # type: ignore[method-assign]
        samples: list[int] = []
        others: list[int] = []  # bars with a submit but no signal (an entry fill placing its exits)
        on_bar = node.data.on_bar
        engine = node.strategies
        node.start()
        gc_quiet.settle()  # as the live service does after start-up
        for bar in synthetic_bars(args.symbols, days, cal):
            last[0] = 0
            signals = engine.signals
            r0 = run_delay()
            t0 = perf()
            on_bar(bar)
            if last[0]:
                took = last[0] - t0
                if sched_fd >= 0:
                    took = max(0, took - (run_delay() - r0))
                if engine.signals != signals:
                    samples.append(took)
                    if len(samples) >= args.events:
                        break
                else:
                    others.append(took)
        behind = journal.pending  # events the writer had not written when the last bar was done
        node.stop()
        journal.close()
    def q(xs: list[int], p: float) -> float:
        return round(xs[min(len(xs) - 1, int(p * len(xs)))] / 1000, 2)

    samples.sort()
    emit(bench="tick_to_order_latency_us", clock=args.clock, events=len(samples), p50=q(samples, 0.50),
         p90=q(samples, 0.90), p99=q(samples, 0.99), p999=q(samples, 0.999),
         max=round(samples[-1] / 1000, 1), journal=not args.no_journal, writer=journal.writer,
         appended=journal.next_seq - 1, unwritten_at_end=behind,
         orders=node.orders.orders_submitted)
    every = sorted(samples + others)
    emit(bench="bar_to_submit_any_us", clock=args.clock, events=len(every), exit_placements=len(others),
         p50=q(every, 0.50), p90=q(every, 0.90), p99=q(every, 0.99), p999=q(every, 0.999),
         max=round(every[-1] / 1000, 1))


if __name__ == "__main__":
    main()
