"""Interactive Brokers adapter (TWS / IB Gateway through ib_async, or ib_insync).

- `client.IbkrExecutionClient`: the ExecutionClient (orders, fills, reconnect, reconcile).
- `exits`: a position's stop and target as one OCA group (`ibkr.oca_type`, default 2), never
  resized (added shares get a group of their own); `connection`: connect, reconcile, reconnect.
- `compat`: the one import site of the SDK; `mapping`: error codes and statuses;
  `throttle`: the message throttle; `order_ids`: order ids never reused across sessions.

Configuration: the `ibkr:` section (host, port, paper (the Gateway's login must be a paper
account, ids D...; false: live), client_id, account or the variable named by
`account_env` (IBKR_ACCOUNT), timeouts, max_msgs_per_s, reconnect backoff, order_id_state, oca_type). The API
has no credentials: the Gateway holds the login (IBC for unattended restarts).
"""

from __future__ import annotations

from typing import Any

from live_runner.core.config import SystemConfig


def build_execution_client(config: SystemConfig, **kwargs: Any):
    """The IBKR execution client for a runner config (the orderRef prefix is the session prefix)."""
    from live_runner.adapters.ibkr.client import IbkrExecutionClient

    kwargs.setdefault("prefix", config.session_id_prefix)
    return IbkrExecutionClient(config.ibkr, **kwargs)


async def probe(config: SystemConfig, environ: dict[str, str] | None = None) -> dict[str, Any]:
    """What `check-connections` reports: reachable?, server version, accounts, the SDK used."""
    import asyncio

    from live_runner.adapters.ibkr import compat
    from live_runner.adapters.ibkr.connection import account_mode_problem

    cfg = config.ibkr
    ib = compat.IB()
    out: dict[str, Any] = {"adapter": "ibkr", "endpoint": f"{cfg.host}:{cfg.port}",
                           "client_id": cfg.client_id, "library": f"{compat.LIBRARY} {compat.VERSION}"}
    try:
        await asyncio.wait_for(ib.client.connectAsync(cfg.host, cfg.port, cfg.client_id,
                                                      cfg.connect_timeout_s), cfg.connect_timeout_s)
        accounts = ib.client.getAccounts()
        out.update(ok=True, server_version=ib.client.serverVersion(), accounts=accounts,
                   mode="paper" if cfg.paper else "live")
        problem = account_mode_problem(accounts, cfg.paper)
        if problem is not None:  # reachable, but the runner would refuse this login
            out.update(ok=False, error=problem)
    except Exception as exc:  # refused, timeout, handshake failure
        out.update(ok=False, error=f"{type(exc).__name__}: {exc}")
    finally:
        ib.disconnect()
    return out
