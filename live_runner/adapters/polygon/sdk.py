"""The one import site of the Polygon SDK: `massive` (maintained), else `polygon-api-client`.

Both are the same code under two names (the module `polygon` was renamed `massive`); nothing else
in the runner imports either. What the rest of the adapter may use is re-exported here.
"""

from __future__ import annotations

try:  # the maintained continuation
    import massive as _sdk
    from massive import RESTClient, WebSocketClient
    from massive.exceptions import AuthError, BadResponse
    from massive.websocket.models import EquityAgg

    SDK_NAME = "massive"
    SDK_LOGGER_NAMES = ("RESTClient", "WebSocketClient")
except ImportError:  # the frozen original (legacy virtualenv)
    import polygon as _sdk  # type: ignore[no-redef]
    from polygon import RESTClient, WebSocketClient  # type: ignore[no-redef]
    from polygon.exceptions import AuthError, BadResponse  # type: ignore[no-redef]
    from polygon.websocket.models import EquityAgg  # type: ignore[no-redef]

    SDK_NAME = "polygon-api-client"
    SDK_LOGGER_NAMES = ("RESTClient", "WebSocketClient")

try:
    from importlib.metadata import version as _version

    SDK_VERSION = _version("massive" if SDK_NAME == "massive" else "polygon-api-client")
except Exception:  # pragma: no cover - metadata missing in an odd install
    SDK_VERSION = "unknown"

# The environment variables the key may come from (ours first, then the SDK's own name).
API_KEY_ENVS = ("POLYGON_API_KEY", "MASSIVE_API_KEY")

__all__ = ["AuthError", "BadResponse", "EquityAgg", "RESTClient", "WebSocketClient", "SDK_NAME",
           "SDK_VERSION", "SDK_LOGGER_NAMES", "API_KEY_ENVS"]
