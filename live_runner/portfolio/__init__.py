"""Positions, cash and P&L (Portfolio) and the session statistics (PerformanceTracker)."""
