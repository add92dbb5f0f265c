"""Alpaca (alpaca-py): the execution client, its trade-updates consumer and the type mapping."""

from live_runner.adapters.alpaca.client import (
    KEY_ENV, SECRET_ENV, AlpacaExecutionClient, disable_sdk_retry,
)

__all__ = ["AlpacaExecutionClient", "KEY_ENV", "SECRET_ENV", "disable_sdk_retry"]
