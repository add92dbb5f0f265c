"""Polygon (massive) market data. Third-party types stay inside this package (see sdk.py)."""

from live_runner.adapters.polygon.client import PolygonDataClient, api_key_from_env
from live_runner.adapters.polygon.rest import PolygonError, PolygonRest
from live_runner.adapters.polygon.sdk import SDK_NAME, SDK_VERSION
from live_runner.adapters.polygon.stream import PolygonStream

__all__ = ["PolygonDataClient", "PolygonError", "PolygonRest", "PolygonStream", "SDK_NAME",
           "SDK_VERSION", "api_key_from_env"]
