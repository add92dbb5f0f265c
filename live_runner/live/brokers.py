"""Building the execution clients a config names, and checking what each configured adapter reaches.

`primary_broker` / `backup_broker` pick paper, ibkr or alpaca; the node wires them into its
ExecutionEngine (failover only ever moves an order the primary provably did not accept). Real
brokers are started on the live service's loop (`start_clients`); a replay only uses the paper broker.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import os
from typing import Any, Callable

from live_runner.adapters.paper import (
    PaperExecutionClient,
    load_external_positions,
    record_external_position,
)
from live_runner.core.config import RiskConfig, SystemConfig
from live_runner.persistence.journal import Journal, make_engine
from live_runner.risk.rules import Rule, pdt_rule_factory

log = logging.getLogger("live_runner.live.brokers")


def build_client(name: str, config: SystemConfig, environ: dict[str, str] | None = None,
                 calendar: Any = None, clock: Callable[[], int] | None = None,
                 continue_log: bool = False) -> Any:
    """One execution client by name; credentials come from the environment only. `clock` is the
    node's market clock, so session rules (extended hours) follow the data being traded.
    `continue_log`: a live restart, so the paper broker's own log is continued, not regenerated."""
    if name == "paper":
        if not config.paper.state_url:
            return PaperExecutionClient(config.paper)
        state = Journal(config.paper.state_url, batch_size=1, continue_log=continue_log)
        return PaperExecutionClient(config.paper, state, load_external_positions(state.engine))
    if name == "ibkr":
        from live_runner.adapters.ibkr import build_execution_client

        extra: dict[str, Any] = {"calendar": calendar}
        if clock is not None:
            extra["now_ns"] = clock
        return build_execution_client(config, **extra)
    if name == "alpaca":
        from live_runner.adapters.alpaca.client import AlpacaExecutionClient

        return AlpacaExecutionClient.from_config(config, environ=environ, calendar=calendar, clock=clock)
    raise ValueError(f"unknown broker {name!r}")


def add_external_position(state_url: str, symbol: str, qty: int) -> None:
    """Record a position entered at the paper broker outside the runner (a manual trade), in the
    database of its event log (`paper.state_url`)."""
    engine = make_engine(state_url)
    try:
        record_external_position(engine, symbol, qty)
    finally:
        engine.dispose()


def broker_risk_rules(risk: RiskConfig, *clients: Any) -> list[Rule]:
    """The pre-trade rules the brokers' accounts call for: the pattern-day-trader rule, fed by each
    client that reports its account's PDT state (`pdt_state()`, Alpaca), when `risk.pdt_check`."""
    if not risk.pdt_check:
        return []
    return [pdt_rule_factory(client.pdt_state, risk.pdt_max_day_trades, risk.pdt_min_equity)
            for client in clients if client is not None and callable(getattr(client, "pdt_state", None))]


async def start_clients(*clients: Any) -> None:
    """Connect the clients that have I/O to do (paper has none)."""
    for client in clients:
        start = getattr(client, "start", None)
        if start is not None and inspect.iscoroutinefunction(start):
            await start()


async def stop_clients(*clients: Any, timeout_s: float = 10.0) -> None:
    """Await each client's close path: `aclose()` (Alpaca), `stop()` (IB), or a plain `close()`;
    bounded, and a failure is logged, never raised (shutting down: the journal holds what
    happened)."""
    for client in clients:
        for name in ("aclose", "stop"):
            fn = getattr(client, name, None)
            if fn is not None and inspect.iscoroutinefunction(fn):
                try:
                    await asyncio.wait_for(fn(), timeout_s)
                except Exception:
                    log.exception("closing %s failed", getattr(client, "name", type(client).__name__))
                break
        else:
            close = getattr(client, "close", None)
            if close is not None:
                try:
                    close()
                except Exception:
                    log.exception("closing %s failed", getattr(client, "name", type(client).__name__))


def refuse_live_endpoints(config: SystemConfig) -> str | None:
    """In paper mode, a configured broker that would trade real money is refused (the reason)."""
    for name in filter(None, (config.primary_broker, config.backup_broker)):
        if name == "alpaca" and not config.alpaca.paper:
            return "alpaca.paper is false: that is a live-money account; use --mode live --confirm-live"
        if name == "ibkr" and not config.ibkr.paper:
            return "ibkr.paper is false: that is a live-money account; use --mode live --confirm-live"
        if name == "ibkr" and config.ibkr.port in (7496, 4001):
            return (f"ibkr.port {config.ibkr.port} is a live-trading Gateway/TWS port; "
                    "use --mode live --confirm-live")
    return None


def refuse_paper_accounts(config: SystemConfig) -> str | None:
    """In live mode, an IB section that expects a paper login is refused (the reason): the client
    would refuse the live account at connect anyway, so say so before anything starts. (The IB
    client also checks the Gateway's accounts at every connect: the port proves nothing.)"""
    for name in filter(None, (config.primary_broker, config.backup_broker)):
        if name == "ibkr" and config.ibkr.paper:
            return ("--mode live but ibkr.paper is true (a paper account expected): set ibkr.paper: "
                    "false to trade the live IB account")
    return None


async def check_connections(config: SystemConfig, environ: dict[str, str] | None = None) -> list[dict[str, Any]]:
    """What each configured adapter can reach, and with what account (`check-connections`)."""
    env = dict(os.environ if environ is None else environ)
    out: list[dict[str, Any]] = []
    for role, name in (("primary_broker", config.primary_broker), ("backup_broker", config.backup_broker)):
        if not name:
            continue
        entry: dict[str, Any] = {"role": role, "adapter": name}
        try:
            if name == "paper":
                entry.update(ok=True, detail="embedded paper broker",
                             state=config.paper.state_url or "in memory")
            elif name == "ibkr":
                from live_runner.adapters.ibkr import probe

                entry.update(await probe(config, env))
            else:
                client = build_client(name, config, env)
                result = await asyncio.wait_for(client.check(), config.alpaca.request_timeout_s + 5)
                entry.update(result, ok=bool(result.get("reachable")))
        except Exception as exc:  # a check reports, it never raises
            entry.update(ok=False, error=f"{type(exc).__name__}: {exc}")
        out.append(entry)
    for role, name in (("primary_data_provider", config.primary_data_provider),
                       ("backup_data_provider", config.backup_data_provider)):
        if not name:
            continue
        entry = {"role": role, "adapter": name}
        if name == "replay":
            entry.update(ok=True, detail="bars file (feed.bars or --bars)")
        elif name == "polygon":
            key = env.get("POLYGON_API_KEY") or env.get("MASSIVE_API_KEY")
            entry.update(ok=bool(key), endpoint=config.polygon.rest_base_url or "SDK default",
                         detail="API key set" if key else "POLYGON_API_KEY / MASSIVE_API_KEY not set")
        else:
            entry.update(ok=True, detail="yfinance (no account; delayed, backup only)")
        out.append(entry)
    return out
