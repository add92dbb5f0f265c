"""The vocabulary every area shares: domain models, exact money, clocks, the market calendar, configuration, latency figures. Imports nothing else from live_runner."""
