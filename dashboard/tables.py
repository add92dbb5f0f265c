"""Rows (from /status or the journal) as the tables the page shows: human column names, money
with two decimals and separators, prices by their tick, New York times with the zone, "-" for a
missing value. Every cell is text, so nothing is reformatted (or shown as None) by the grid."""

from __future__ import annotations

from typing import Any, Iterable

import pandas as pd

from dashboard import fmt

POSITIONS = ["Symbol", "Strategy", "Qty", "Avg price", "Last", "Unrealized", "Stop", "Target", "Opened"]
ORDERS = ["Time", "Symbol", "Side", "Qty", "Filled", "Role", "Price", "Status", "Strategy", "Client order id"]
FILLS = ["Time", "Symbol", "Side", "Qty", "Price", "Commission", "Role", "Strategy", "Client order id"]
TRADES = ["Symbol", "Strategy", "Qty", "Entry", "Entry price", "Exit", "Exit price", "Exit reason", "P&L",
          "Commission", "R"]
STRATEGIES = ["Strategy", "Trades", "Wins", "Losses", "Win rate", "Net P&L", "Profit factor", "Avg R"]
ALERTS = ["Time", "Severity", "Key", "Message"]
COMMANDS = ["Time", "Command", "Symbol", "By"]
HEALTH = ["Component", "Healthy", "Running", "Heartbeat age", "Detail"]


def _frame(rows: Iterable[list[str]], columns: list[str]) -> pd.DataFrame:
    return pd.DataFrame(list(rows), columns=columns)


def positions(rows: list[dict[str, Any]]) -> pd.DataFrame:
    return _frame(([r.get("symbol", ""), fmt.text(r.get("strategy")), fmt.number(r.get("qty"), 0),
                    fmt.price(r.get("avg_price")), fmt.price(r.get("last")), fmt.money(r.get("unrealized_pnl"), True),
                    fmt.price(r.get("stop")), fmt.price(r.get("target")), fmt.et(r.get("opened"))]
                   for r in rows), POSITIONS)


def orders(rows: list[dict[str, Any]]) -> pd.DataFrame:
    return _frame(([fmt.et(r.get("time")) if r.get("time") else fmt.MISSING, r.get("symbol", ""), fmt.text(r.get("side")),
                    fmt.number(r.get("qty"), 0), fmt.number(r.get("filled_qty"), 0), fmt.text(r.get("role")),
                    fmt.order_price(r.get("type"), r.get("limit"), r.get("stop")), fmt.text(r.get("status")),
                    fmt.text(r.get("strategy")), fmt.text(r.get("client_order_id"))]
                   for r in rows), ORDERS)


def fills(rows: list[dict[str, Any]]) -> pd.DataFrame:
    return _frame(([fmt.et(r.get("time")), r.get("symbol", ""), fmt.text(r.get("side")), fmt.number(r.get("qty"), 0),
                    fmt.price(r.get("price")), fmt.money(r.get("commission")), fmt.text(r.get("role")),
                    fmt.text(r.get("strategy")), fmt.text(r.get("client_order_id"))]
                   for r in rows), FILLS)


def trades(rows: list[dict[str, Any]]) -> pd.DataFrame:
    return _frame(([r.get("symbol", ""), fmt.text(r.get("strategy")), fmt.number(r.get("qty"), 0),
                    fmt.et(r.get("entry_ts")), fmt.price(r.get("entry_price")), fmt.et(r.get("exit_ts")),
                    fmt.price(r.get("exit_price")), fmt.text(r.get("exit_reason")), fmt.money(r.get("pnl"), True),
                    fmt.money(r.get("commission")), fmt.number(r.get("r_multiple"), 2)]
                   for r in rows), TRADES)


def strategies(rows: list[dict[str, Any]]) -> pd.DataFrame:
    """Rows with the keys of the runner's StrategyStats.to_dict (or journal_view.strategy_stats)."""
    return _frame(([r.get("strategy", ""), fmt.number(r.get("trades"), 0), fmt.number(r.get("wins"), 0),
                    fmt.number(r.get("losses"), 0), fmt.percent(r.get("win_rate")),
                    fmt.money(r.get("net_pnl"), True), fmt.number(r.get("profit_factor"), 2),
                    fmt.number(r.get("avg_r"), 2)] for r in rows), STRATEGIES)


def alerts(rows: list[dict[str, Any]]) -> pd.DataFrame:
    return _frame(([fmt.et(r.get("time", r.get("ts"))), fmt.text(r.get("severity")), fmt.text(r.get("key")),
                    fmt.text(r.get("message"))] for r in rows), ALERTS)


def commands(rows: list[dict[str, Any]]) -> pd.DataFrame:
    return _frame(([fmt.et(r.get("time")), fmt.text(r.get("command")), r.get("symbol") or fmt.MISSING,
                    fmt.text(r.get("source"))] for r in rows), COMMANDS)


def health(components: dict[str, dict[str, Any]]) -> pd.DataFrame:
    return _frame(([name, "yes" if c.get("is_healthy") else "NO", "yes" if c.get("is_running") else "no",
                    f"{fmt.number(c.get('heartbeat_age_s'), 1)} s" if c.get("heartbeat_age_s") is not None
                    else fmt.MISSING, fmt.text(c.get("detail") or "")]
                   for name, c in sorted(components.items())), HEALTH)
