"""The running node and its process: wiring (TradingNode), the service loop, replay runs, feeds, health, the lease, broker selection."""
