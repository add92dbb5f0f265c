"""Dagster code location (control plane) for the intraday trading system.

Imports ``live_runner`` (config, models, store); ``live_runner`` never imports this package.
"""
