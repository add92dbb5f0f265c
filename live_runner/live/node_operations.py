"""The operator's side of a TradingNode: the /status view and the commands (pause, resume,
emergency stop, flatten, rebalance), journaled with who sent them and when.

Mixed into TradingNode (live/node.py); the attributes below are the node's.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from live_runner.core.clock import format_ns
from live_runner.core.models import OrderRole, Severity, SystemState, TradingState
from live_runner.core.money import money_str

if TYPE_CHECKING:
    from live_runner.core.clock import SimClock
    from live_runner.core.config import SystemConfig
    from live_runner.data.data_manager import DataManager
    from live_runner.execution.engine import ExecutionEngine
    from live_runner.execution.order_manager import OrderManager
    from live_runner.ops.alerts import AlertSystem
    from live_runner.persistence.journal import Journal
    from live_runner.portfolio.performance import PerformanceTracker
    from live_runner.portfolio.portfolio import Portfolio
    from live_runner.risk.manager import RiskManager

COMMANDS = ("pause_trading", "resume_trading", "emergency_stop", "rebalance_portfolio", "flatten")


class NodeOperations:
    """TradingNode's status view and operator commands."""

    config: SystemConfig
    journal: Journal
    clock: SimClock
    state: SystemState
    session_name: str
    risk: RiskManager
    portfolio: Portfolio
    performance: PerformanceTracker
    orders: OrderManager
    execution: ExecutionEngine
    data: DataManager
    alerts: AlertSystem

    # --- views ---------------------------------------------------------------------------------
    def status(self) -> dict:
        """What /status shows: states, positions, open orders, P&L, stats, last alerts."""
        pf = self.portfolio
        positions = [
            {"symbol": p.symbol, "strategy": p.strategy, "qty": p.qty, "avg_price": round(p.avg_price, 4),
             "last": p.last_price, "unrealized_pnl": round(p.unrealized, 2), "stop": p.stop,
             "target": p.target, "opened": format_ns(p.opened_ts)}
            for p in sorted(pf.positions.values(), key=lambda p: p.symbol)]
        orders = [
            {"client_order_id": o.client_order_id, "symbol": o.request.symbol, "side": o.request.side.value,
             "qty": o.request.qty, "filled_qty": o.filled_qty, "type": o.request.order_type.value,
             "role": o.request.role.value, "status": o.status.value, "limit": o.request.limit_price,
             "stop": o.request.stop_price}
            for o in sorted(self.orders.open_orders.values(), key=lambda o: o.client_order_id)]
        return {
            "system_state": self.state.value, "trading_state": self.risk.state.value,
            "paused": self.risk.paused, "session": self.session_name,
            "market_time": format_ns(self.clock.now_ns()) if self.clock.now_ns() else None,
            "equity": money_str(pf.equity_decimal()), "cash": money_str(pf.cash),
            "realized_pnl": money_str(pf.realized), "unrealized_pnl": round(pf.unrealized(), 2),
            "daily_pnl": round(pf.daily_pnl(), 2), "commissions": money_str(pf.commissions),
            "positions": positions, "open_orders": orders,
            "stats": {k: v.to_dict() for k, v in self.performance.stats_by_strategy().items()},
            "risk_denials": dict(sorted(self.risk.denials.items())),
            "bars_processed": self.data.bars_processed, "bars_rejected": self.data.bars_rejected,
            "brokers": self.execution.status(),
            "alerts": [{"key": a.key, "severity": a.severity.value, "message": a.message,
                        "ts": format_ns(a.ts)} for a in reversed(list(self.alerts.recent)[-20:])],
        }

    def command(self, name: str, source: str = "cli", symbol: str = "") -> dict:
        """The sketch's system events, with DESIGN.md's semantics; journaled with who/when."""
        now = self.clock.now_ns()
        if name not in COMMANDS:
            raise ValueError(f"unknown command {name!r}; expected one of {', '.join(COMMANDS)}")
        self.journal.append(self.session_name, now, "command", name, {"source": source, "symbol": symbol})
        if name == "pause_trading":
            self.risk.paused = True
            self.state = SystemState.PAUSED
        elif name == "resume_trading":
            self.risk.paused = False
            self.state = SystemState.RUNNING
        elif name == "emergency_stop":
            was_halted = self.risk.state is TradingState.HALTED
            open_orders, positions = len(self.orders.open_orders), len(self.portfolio.positions)
            self.risk.set_state(TradingState.HALTED, f"emergency stop by {source}")
            self.orders.cancel_all()
            self.orders.flatten_all(OrderRole.MANUAL)
            if was_halted:
                # Already HALTED, so no state-change alert went out: the stop itself must still
                # page. Raised here, not by the ops server, so a resumed run regenerates it.
                self.alerts.raise_alert("emergency_stop", Severity.CRITICAL,
                                        f"emergency stop by {source}: {open_orders} open orders canceled, "
                                        f"{positions} positions flattened", component="ops_server")
        elif name == "flatten":
            if symbol:
                self.orders.flatten(symbol, OrderRole.MANUAL)
            else:
                self.orders.flatten_all(OrderRole.MANUAL)
        elif name == "rebalance_portfolio":
            self._rebalance()
        return {"command": name, "state": self.state.value, "trading_state": self.risk.state.value}

    def _rebalance(self) -> None:
        """Close the newest positions beyond max_positions, then trim any position worth more than
        max_position_size_pct of equity (plus risk.rebalance_tolerance_pct of it) back to that size
        (its stop and target follow)."""
        positions = sorted(self.portfolio.positions.values(), key=lambda p: (p.opened_ts, p.symbol))
        for pos in positions[self.config.max_positions:]:
            self.orders.flatten(pos.symbol, OrderRole.MANUAL)
        equity = self.portfolio.equity()
        cap = self.config.max_position_size_pct * equity
        trigger = cap * (1.0 + self.config.risk.rebalance_tolerance_pct)
        for pos in positions[:self.config.max_positions]:
            if pos.last_price > 0 and pos.qty * pos.last_price > trigger:
                keep = int(cap // pos.last_price)
                self.orders.trim(pos.symbol, pos.qty - keep)
