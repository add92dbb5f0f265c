"""What the Alpaca client keeps per order, and the SDK session it talks through."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from typing import Any, Callable

import requests

from live_runner.core.models import OrderRequest, OrderStatus

ZERO = Decimal(0)
SENDING, RESOLVING, LIVE, DONE = "sending", "resolving", "live", "done"

NotAcceptedHandler = Callable[[OrderRequest, str, bool], None]
AlertHandler = Callable[[str, str, str], None]
ConnectionHandler = Callable[[bool, str], None]
FaultHandler = Callable[[str, str], None]


@dataclass(slots=True)
class Tracked:
    request: OrderRequest
    phase: str = SENDING
    broker_id: str = ""
    status: OrderStatus = OrderStatus.SUBMITTED
    filled: int = 0
    notional: Decimal = ZERO
    cancel_requested: bool = False
    cancel_inflight: bool = False
    recovering: bool = False      # fills found by the first lookup are already in the snapshot
    handed_off: bool = False      # judged not accepted and handed to the failover handler
    # OCO exits: the target is the parent at Alpaca, the stop its leg (Alpaca names the leg with a
    # client id of its own, so the leg is known by its broker id only).
    leg: str = ""                 # on a parent: the client id of its stop leg
    parent: str = ""              # on a leg: the client id of its parent
    replaces: str = ""            # on a replacing order: the client id of the order it replaces
    replaced_by: str = ""         # on an order being replaced: the client id of the new one
    confirmed: bool = True        # False while a replacing order waits for the old one to go


class TimeoutSession(requests.Session):
    """The SDK's session with a default (connect, read) timeout on every request."""

    def __init__(self, timeout: float) -> None:
        super().__init__()
        self.timeout = (timeout, timeout)

    def request(self, method: str, url: str, *args: Any, **kwargs: Any) -> requests.Response:  # type: ignore[override]
        kwargs.setdefault("timeout", self.timeout)
        return super().request(method, url, *args, **kwargs)


def disable_sdk_retry(rest: Any) -> None:
    """alpaca-py retries 429/504 (order POSTs included) with no public switch: turn it off, and
    fail loudly if a new SDK version moved the attributes instead of silently retrying again."""
    for attr in ("_retry", "_retry_codes"):
        if not hasattr(rest, attr):
            raise RuntimeError(f"alpaca-py has no {attr}: cannot disable its automatic order retry")
    rest._retry = 0
    rest._retry_codes = []
