"""The simulated brokers' order records and seeded knobs: an order as the broker holds it, the
groups whose orders share shares (Alpaca OCO, IB OCA), and the per-session fault parameters."""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from decimal import Decimal

from live_runner.core.models import OrderRequest

WORKING = frozenset({"new", "accepted", "partially_filled"})
MS = 1_000_000


@dataclass(frozen=True)
class SimParams:
    """The seeded knobs of one session's broker (latencies in ms, probabilities per event)."""

    ack_ms: tuple[int, int] = (1, 400)
    cancel_ms: tuple[int, int] = (50, 2500)
    replace_ms: tuple[int, int] = (50, 1500)
    market_fill_ms: tuple[int, int] = (1, 300)
    p_partial: float = 0.3
    p_duplicate: float = 0.05
    p_late_ack: float = 0.05
    p_disconnect: float = 0.02
    disconnect_ms: tuple[int, int] = (500, 5000)
    oca_type: int = 1  # IB only: 1 cancel the others, 2 reduce them, 0 no group

    @classmethod
    def random(cls, rng: random.Random, broker: str) -> "SimParams":
        slow = rng.random() < 0.3
        return cls(
            ack_ms=(1, rng.choice((50, 400, 2000))),
            cancel_ms=(rng.choice((5, 50)), rng.choice((2500, 6000, 12000)) if slow else 1000),
            replace_ms=(20, rng.choice((200, 1500, 3000))),
            market_fill_ms=(1, rng.choice((50, 300, 1500))),
            p_partial=rng.choice((0.0, 0.3, 0.6)),
            p_duplicate=rng.choice((0.0, 0.05, 0.2)),
            p_late_ack=rng.choice((0.0, 0.05, 0.3)),
            p_disconnect=rng.choice((0.0, 0.0, 0.03, 0.1)),
            oca_type=rng.choice((1, 2)) if broker == "ibkr" else 0,
        )


@dataclass(eq=False)
class Group:
    """Orders that share shares: an Alpaca OCO unit, or an IB OCA group. `reduce`: a fill on one
    reduces the others by the same quantity (Alpaca OCO, IB ocaType 2); otherwise any fill cancels
    the others (IB ocaType 1). Both block overfills."""

    name: str
    reduce: bool
    members: list["SimOrder"] = field(default_factory=list)

    def working(self) -> list["SimOrder"]:
        return [m for m in self.members if m.status in WORKING]

    def remaining(self) -> int:
        """Shares the group can still sell (counted once)."""
        return max((m.remaining for m in self.working()), default=0)


@dataclass(eq=False)
class SimOrder:
    req: OrderRequest
    qty: int
    filled: int = 0
    notional: Decimal = Decimal(0)
    status: str = "new"
    group: Group | None = None
    cancel_pending: bool = False
    triggered: bool = False
    reached: bool = True  # False: lost in a disconnect (never at the broker)
    reported_terminal: bool = False  # the runner has been told it is done

    @property
    def cid(self) -> str:
        return self.req.client_order_id

    @property
    def remaining(self) -> int:
        return self.qty - self.filled

    @property
    def working(self) -> bool:
        return self.status in WORKING
