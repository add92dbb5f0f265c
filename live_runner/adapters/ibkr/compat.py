"""The one import site of the Interactive Brokers SDK.

`ib_async` (the maintained continuation) is used when installed, else `ib_insync` (the archived
original, same API). The two must never share an environment: both install a top-level `eventkit`
module and the later one silently overwrites the other. `LIVE_RUNNER_IB_LIBRARY=ib_insync` (or
`ib_async`) forces one; nothing else in the project imports either library.
"""

from __future__ import annotations

import importlib
import os
from types import ModuleType


def _load() -> ModuleType:
    wanted = os.environ.get("LIVE_RUNNER_IB_LIBRARY", "").strip()
    names = [wanted] if wanted else ["ib_async", "ib_insync"]
    errors = []
    for name in names:
        if name not in ("ib_async", "ib_insync"):
            raise ImportError(f"LIVE_RUNNER_IB_LIBRARY={name!r}: expected ib_async or ib_insync")
        try:
            return importlib.import_module(name)
        except ImportError as exc:
            errors.append(f"{name}: {exc}")
    raise ImportError("no Interactive Brokers SDK installed (pip install ib_async): " + "; ".join(errors))


ib_lib = _load()
LIBRARY: str = ib_lib.__name__
VERSION: str = getattr(ib_lib, "__version__", "?")

IB = ib_lib.IB
Stock = ib_lib.Stock
MarketOrder = ib_lib.MarketOrder
LimitOrder = ib_lib.LimitOrder
StopOrder = ib_lib.StopOrder
ExecutionFilter = ib_lib.ExecutionFilter

# The decoder logs (and swallows) every message it cannot parse on this logger: the adapter counts
# those records as malformed messages.
DECODER_LOGGER = f"{LIBRARY}.Decoder"
# Loggers that report the library's own view of errors (quiet them in tests if needed).
LOGGERS = (f"{LIBRARY}.client", f"{LIBRARY}.wrapper", f"{LIBRARY}.ib", DECODER_LOGGER)

# Order statuses as the library spells them (identical in both generations).
PENDING_SUBMIT = "PendingSubmit"
PENDING_CANCEL = "PendingCancel"
PRE_SUBMITTED = "PreSubmitted"
SUBMITTED = "Submitted"
API_PENDING = "ApiPending"
API_CANCELLED = "ApiCancelled"
CANCELLED = "Cancelled"
FILLED = "Filled"
INACTIVE = "Inactive"

UNSET_DOUBLE = 1.7976931348623157e308
