"""The IB message throttle on simulated time: at most 45 messages in every sliding second.

TWS disconnects a client that sends more than 50 messages a second. The throttle's clock and sleep
are injected, so these tests check the guarantee itself (every window, whatever the arrival
pattern) and not the machine's scheduling jitter. The module imports no SDK: it runs in both SDK
generations (`make test-legacy`)."""

from __future__ import annotations

import asyncio
import random

import pytest

from live_runner.adapters.ibkr.throttle import MessageThrottle

pytestmark = pytest.mark.legacy_sdk


class SimTime:
    """Simulated seconds: `sleep` moves time forward instead of waiting."""

    def __init__(self) -> None:
        self.now = 0.0
        self.slept: list[float] = []

    def clock(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += max(seconds, 0.0)
        await asyncio.sleep(0)


def send_times(arrivals: list[float], rate: int = 45, margin_s: float = 0.05) -> list[float]:
    """When each message (arriving at the given simulated times, in order) leaves the throttle."""
    sim = SimTime()
    th = MessageThrottle(rate, window_s=1.0, margin_s=margin_s, clock=sim.clock, sleep=sim.sleep)

    async def produce() -> list[float]:
        sent = []
        for at in arrivals:
            sim.now = max(sim.now, at)  # a message queued while others waited goes after them
            await th.acquire()
            sent.append(sim.now)
        return sent

    sent = asyncio.run(produce())
    assert th.acquired == len(arrivals)
    return sent


def busiest_window(times: list[float], width: float) -> int:
    """The most messages in any half-open window [t, t + width) (the busiest one starts at a send)."""
    return max(sum(1 for u in times[i:] if u - t < width) for i, t in enumerate(times))


def test_a_burst_of_200_never_puts_more_than_45_in_any_second() -> None:
    sent = send_times([0.0] * 200)
    assert busiest_window(sent, 1.0) == 45
    # Sliding, not per calendar second: the 46th goes one window (1 s + margin) after the 1st,
    # and the next 45 follow together only when the first 45 have left the window.
    assert sent[:45] == [0.0] * 45
    assert sent[45:90] == [pytest.approx(1.05)] * 45
    assert sent[199] == pytest.approx(4.2)


def test_bursts_straddling_a_second_boundary_still_hold_45() -> None:
    # 40 just before the boundary, 40 just after it: a per-second counter would let all 80 pass
    # within 0.2 s; a sliding window holds the 6th after the boundary back.
    sent = send_times([0.9] * 40 + [1.1] * 40)
    assert busiest_window(sent, 1.0) == 45
    assert sent[44] == pytest.approx(1.1) and sent[45] == pytest.approx(1.95)


@pytest.mark.parametrize("seed", range(40))
def test_random_arrivals_hold_45_in_every_sliding_second_and_wait_no_longer_than_needed(seed: int) -> None:
    rng = random.Random(seed)
    arrivals, t = [], 0.0
    for _ in range(rng.randint(50, 400)):
        t += rng.choice([0.0, 0.0, 0.0, rng.uniform(0, 0.02), rng.uniform(0, 0.5), rng.uniform(0, 2)])
        arrivals.append(t)
    sent = send_times(arrivals)
    assert busiest_window(sent, 1.0) <= 45
    assert busiest_window(sent, 1.05) <= 45  # the margin for jitter on the way to the Gateway
    for i, at in enumerate(arrivals):
        earliest = max([at] + ([sent[i - 1]] if i else []) + ([sent[i - 45] + 1.05] if i >= 45 else []))
        assert sent[i] == pytest.approx(earliest), f"message {i} held longer than the window requires"


def test_waiting_callers_are_served_in_arrival_order() -> None:
    sim = SimTime()
    th = MessageThrottle(3, window_s=1.0, margin_s=0.0, clock=sim.clock, sleep=sim.sleep)
    order: list[int] = []

    async def send(i: int) -> None:
        await th.acquire()
        order.append(i)

    async def main() -> None:
        await asyncio.gather(*(send(i) for i in range(10)))

    asyncio.run(main())
    assert order == list(range(10))
    assert th.waits == 3 and sim.now == pytest.approx(3.0)


def test_try_acquire_refuses_the_message_over_the_rate_until_the_window_passes() -> None:
    sim = SimTime()
    th = MessageThrottle(3, window_s=1.0, margin_s=0.0, clock=sim.clock, sleep=sim.sleep)
    assert [th.try_acquire() for _ in range(4)] == [True, True, True, False]
    sim.now = 0.999
    assert not th.try_acquire() and th.delay() == pytest.approx(0.001)
    sim.now = 1.0
    assert th.try_acquire() and th.acquired == 4
