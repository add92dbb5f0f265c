"""A client-side message throttle: TWS disconnects a client that sends more than 50 messages/s.

A sliding-window log: at most `rate` messages in any `window_s` seconds. The window is a little
longer than a second (`margin_s`) so that the rate holds at the Gateway too, whatever the jitter
between our send and its receipt. Every message the adapter sends (orders, cancels, reconcile
requests) passes here first, in FIFO order; the SDK's own throttle stays on as a backstop for the
requests it makes by itself at connect.

The clock and the sleep are injectable so that the guarantee is tested on simulated time: a test
that counts arrivals on the wall clock measures the machine's scheduling jitter, not the throttle.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from typing import Awaitable, Callable


class MessageThrottle:
    def __init__(self, rate: int = 45, window_s: float = 1.0, margin_s: float = 0.05,
                 clock: Callable[[], float] = time.monotonic,
                 sleep: Callable[[float], Awaitable[None]] = asyncio.sleep) -> None:
        if rate < 1:
            raise ValueError("rate must be >= 1")
        self.rate = rate
        self.window = window_s + margin_s
        self._clock = clock
        self._sleep = sleep
        self._sent: deque[float] = deque()
        self._lock: asyncio.Lock | None = None
        self.waits = 0  # how many messages had to wait (a metric: sustained waits mean too much traffic)
        self.waited_s = 0.0
        self.acquired = 0  # messages let through: every message the adapter sends is counted here

    def _prune(self, now: float) -> None:
        sent = self._sent
        while sent and now - sent[0] >= self.window:
            sent.popleft()

    def delay(self) -> float:
        """Seconds until one more message may go (0 when it may go now)."""
        now = self._clock()
        self._prune(now)
        if len(self._sent) < self.rate:
            return 0.0
        return self._sent[0] + self.window - now

    def try_acquire(self) -> bool:
        """Take a slot if one is free now, without waiting."""
        if self.delay() > 0:
            return False
        self._take()
        return True

    def _take(self) -> None:
        self._sent.append(self._clock())
        self.acquired += 1

    async def acquire(self) -> None:
        """Wait for a slot and take it; callers are served in arrival order."""
        if self._lock is None:
            self._lock = asyncio.Lock()
        async with self._lock:
            waited = False
            while True:
                wait = self.delay()
                if wait <= 0:
                    break
                waited = True
                self.waited_s += wait
                await self._sleep(wait)
            if waited:
                self.waits += 1
            self._take()
