"""Garbage collection kept off the hot path of a live session (issue 18: the latency tail).

CPython's cyclic collector runs inside whatever allocation crosses a threshold, i.e. inside a bar.
A young collection is cheap (~0.1-0.3 ms); a full one visits every tracked object of the process
(30+ ms for a runner that has loaded its calendar, config, strategies and a day of orders), and
the default policy starts one whenever the objects that survived since the last one reach a
quarter of the old generation. So, for a live session:

- `settle()` after start-up: one full collection, then everything alive is frozen (moved to the
  permanent generation, which no collection visits; it is still freed by reference counting),
  and full collections are no longer started by allocations;
- `QuietCollector.idle()` at the points where the runner waits for the next bar (the live feed
  after a burst, a paced replay before it sleeps): a young collection, and a full one as often as
  the default policy would run it (every `FULL_EVERY` middle-generation collections).

Replays and backtests keep the default policy: they have no quiet points and no latency target.
"""

from __future__ import annotations

import gc
import time
from collections.abc import Callable

FULL_EVERY = 10  # CPython's default third threshold: middle collections per full collection
_NO_AUTO_FULL = 1 << 30  # a third threshold no session reaches: full collections only when idle


def settle() -> None:
    """Collect and freeze what start-up left, and stop allocations from starting full
    collections (the young and middle generations keep their thresholds)."""
    gc.collect()
    gc.freeze()
    young, middle, _ = gc.get_threshold()
    gc.set_threshold(young, middle, _NO_AUTO_FULL)


def restore_default() -> None:
    """Undo `settle` (tests, and a process that goes on to run replays)."""
    gc.unfreeze()
    young, middle, _ = gc.get_threshold()
    gc.set_threshold(young, middle, FULL_EVERY)


class QuietCollector:
    """Runs the collections the hot path skipped, while the runner waits for input anyway."""

    def __init__(self, min_interval_s: float = 1.0, monotonic: Callable[[], float] = time.monotonic) -> None:
        self.min_interval_s = min_interval_s
        self._monotonic = monotonic
        self._last = float("-inf")
        self.young = 0
        self.full = 0

    def idle(self) -> None:
        """Called where the runner is about to wait: a young collection, or a full one when due."""
        now = self._monotonic()
        if now - self._last < self.min_interval_s:
            return
        self._last = now
        if gc.get_count()[2] >= FULL_EVERY:
            gc.collect(2)
            self.full += 1
        else:
            gc.collect(0)
            self.young += 1
