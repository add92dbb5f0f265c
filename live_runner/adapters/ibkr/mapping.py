"""IB error codes and order statuses, mapped to the runner's order states and connection states.

TWS reports everything through one `error` message: real order rejections, connection changes and
a stream of harmless notices. Treating a notice as a failure is the classic mistake (2104/2106/2158
arrive on every connect, and again after the nightly reset), so each code is classified once here.
Codes from https://interactivebrokers.github.io/tws-api/message_codes.html.
"""

from __future__ import annotations

from enum import Enum

from live_runner.adapters.ibkr import compat
from live_runner.core.models import OrderStatus


class ErrorKind(str, Enum):
    ADVISORY = "advisory"                    # information only: never a failure
    LINK_LOST = "link_lost"                  # TWS/Gateway lost IB's servers (socket still up)
    LINK_RESTORED = "link_restored"          # back, subscriptions kept: reconcile
    LINK_RESTORED_LOST_DATA = "link_restored_lost_data"  # back, subscriptions lost: resubscribe
    SOCKET = "socket"                        # our socket to TWS is unusable: reconnect
    ORDER_REJECTED = "order_rejected"        # a new order was refused
    ORDER_CANCELED = "order_canceled"        # the broker canceled a working order
    ORDER_WARNING = "order_warning"          # about an order, which stays live
    CANCEL_REJECTED = "cancel_rejected"      # a cancel that could not be applied (order done)
    DUPLICATE_ORDER_ID = "duplicate_order_id"
    REQUEST_ERROR = "request_error"          # a request (not an order) failed
    UNKNOWN = "unknown"


# Market-data farm notices (OK / inactive / sec-def OK), delayed or partial market data,
# "no market data during competing session", display-group notices.
_ADVISORY = frozenset({2103, 2104, 2105, 2106, 2107, 2108, 2119, 2157, 2158, 10090, 10167, 10197,
                       2100, 2150, 2168, 2169, 2170, 2137})
# About one order, which stays live ("held while locating shares", "outsideRth ignored"...).
_ORDER_WARNING = frozenset({399, 404, 2102, 2109, 2148, 2161})
_ORDER_REJECTED = frozenset({
    104, 105, 106, 107, 109, 110, 111, 113, 114, 115, 116, 117, 118, 119, 120, 121, 122, 123, 124,
    125, 126, 129, 131, 132, 133, 134, 136, 137, 140, 141, 144, 146, 147, 148, 151, 152, 153, 154,
    155, 156, 157, 158, 159, 160, 163, 164, 166, 167, 168, 200, 201, 203, 382, 383, 387, 388, 434,
    435, 436, 437, 10006, 10007, 10008, 10009, 10010, 10011, 10012, 10013, 10014, 10015, 10016,
    10017, 10018, 10019, 10020, 10021, 10022, 10023, 10024, 10025, 10026, 10027, 10268, 10289,
})
_CANCEL_REJECTED = frozenset({135, 161, 10147, 10148, 10149})
_SOCKET = frozenset({502, 503, 504, 505, 506, 507, 509, 510, 511, 1300, 2110})


def classify(code: int) -> ErrorKind:
    if code in _ADVISORY:
        return ErrorKind.ADVISORY
    if code == 1100:
        return ErrorKind.LINK_LOST
    if code == 1101:
        return ErrorKind.LINK_RESTORED_LOST_DATA
    if code == 1102:
        return ErrorKind.LINK_RESTORED
    if code == 103:
        return ErrorKind.DUPLICATE_ORDER_ID
    if code == 202:
        return ErrorKind.ORDER_CANCELED
    if code in _CANCEL_REJECTED:
        return ErrorKind.CANCEL_REJECTED
    if code in _ORDER_REJECTED:
        return ErrorKind.ORDER_REJECTED
    if code in _SOCKET:
        return ErrorKind.SOCKET
    if code in _ORDER_WARNING:
        return ErrorKind.ORDER_WARNING
    if 2100 <= code < 2200:
        return ErrorKind.ADVISORY  # warnings by IB's own convention (both SDKs treat them so)
    if code in (162, 165, 300, 309, 310, 312, 314, 316, 317, 320, 321, 322, 354, 420):
        return ErrorKind.REQUEST_ERROR
    return ErrorKind.UNKNOWN


def is_failure(code: int) -> bool:
    """False for notices (farm status, delayed data...): they never reject, halt or disconnect."""
    return classify(code) not in (ErrorKind.ADVISORY, ErrorKind.ORDER_WARNING)


def outcome_for_error(code: int, acknowledged: bool) -> OrderStatus | None:
    """What an error tied to one of our orders means for that order (None: it stays as it is)."""
    kind = classify(code)
    if kind in (ErrorKind.ORDER_REJECTED, ErrorKind.DUPLICATE_ORDER_ID):
        # A "rejection" of an order TWS had already accepted (e.g. a price check on a working
        # order) ends it as canceled: it was live, and may have partial fills.
        return OrderStatus.CANCELED if acknowledged else OrderStatus.REJECTED
    if kind is ErrorKind.ORDER_CANCELED:
        return OrderStatus.CANCELED
    if kind is ErrorKind.UNKNOWN:
        # Unknown codes tied to an order: both SDKs mark the order canceled; follow them.
        return OrderStatus.CANCELED if acknowledged else OrderStatus.REJECTED
    return None


# IB order status -> what it means for the runner. Filled/partial are driven by executions, never
# by orderStatus (which TWS does not guarantee for every change).
WORKING = frozenset({compat.PRE_SUBMITTED, compat.SUBMITTED})
PENDING = frozenset({compat.PENDING_SUBMIT, compat.API_PENDING, compat.PENDING_CANCEL})
CANCELED = frozenset({compat.CANCELLED, compat.API_CANCELLED})
DONE = frozenset({compat.CANCELLED, compat.API_CANCELLED, compat.FILLED, compat.INACTIVE})
