"""Yahoo (yfinance) data: the degraded backup feed and daily bars. yfinance stays in this package."""

from live_runner.adapters.yahoo.client import YahooDataClient, YahooError

__all__ = ["YahooDataClient", "YahooError"]
