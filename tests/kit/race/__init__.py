"""The randomized race suite: seeded sessions against the simulated brokers (tests/kit/broker_sim),
with DESIGN.md's invariants checked after every event."""

from tests.kit.race.checker import Checker, RaceViolation
from tests.kit.race.driver import Session, play, run_many, run_session
from tests.kit.race.plan import make_plan

__all__ = ["Checker", "RaceViolation", "Session", "make_plan", "play", "run_many", "run_session"]
