"""The one import site of yfinance (and its HTTP backend, curl_cffi) in the runner."""

from __future__ import annotations

from typing import Any

import yfinance as _yf
from yfinance import Ticker
from yfinance.exceptions import (
    YFDataException, YFPricesMissingError, YFRateLimitError, YFTickerMissingError, YFTzMissingError,
)

VERSION = getattr(_yf, "__version__", "unknown")

try:
    from curl_cffi import requests as _curl

    HTTP_ERRORS: tuple[type[BaseException], ...] = (_curl.exceptions.RequestException,)

    def new_session() -> Any:
        """A browser-impersonating session with no proxy taken from the environment."""
        return _curl.Session(impersonate="chrome", trust_env=False)
except ImportError:  # pragma: no cover - yfinance then uses requests
    import requests as _requests

    HTTP_ERRORS = (_requests.RequestException,)

    def new_session() -> Any:
        return _requests.Session()


def set_cache_location(folder: str) -> None:
    """yfinance's caches (ticker time zones, cookies) live in `folder` (process-wide)."""
    _yf.set_tz_cache_location(folder)


def clear_caches() -> None:
    """The request lru_cache and the singleton's cookie and crumb."""
    from yfinance.data import SingletonMeta, YfData

    YfData.cache_get.cache_clear()
    inst = SingletonMeta._instances.get(YfData)
    if inst is not None:
        inst._crumb = None
        inst._cookie = None


__all__ = ["Ticker", "YFDataException", "YFPricesMissingError", "YFRateLimitError", "YFTickerMissingError",
           "YFTzMissingError", "HTTP_ERRORS", "VERSION", "new_session", "set_cache_location",
           "clear_caches"]
