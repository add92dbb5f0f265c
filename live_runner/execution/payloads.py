"""The order manager's journal payloads, built by the journal's writer thread (`journal.Deferred`)
from frozen values, so the hot path hands over a request or a fill instead of building a dict.
Each returns exactly the dict the journal stores (encoded with sorted keys)."""

from __future__ import annotations

from live_runner.core.models import Fill, OrderEvent, OrderRequest, Signal
from live_runner.core.trades import TradeRecord


def signal_payload(signal: Signal, _: None) -> dict:
    return {"strategy": signal.strategy, "side": signal.side.value, "stop": signal.stop,
            "reason": signal.reason, "ref": signal.reference_price}


def event_payload(ev: OrderEvent, _: None) -> dict:
    return {"status": ev.status.value, "reason": ev.reason}


def fill_payload(fill: Fill, req: OrderRequest) -> dict:
    return {"exec_id": fill.exec_id, "symbol": fill.symbol, "side": fill.side.value, "qty": fill.qty,
            "price": fill.price, "commission": str(fill.commission), "role": req.role.value,
            "strategy": req.strategy}


def trade_payload(record: TradeRecord, _: None) -> dict:
    return record.to_dict()


def request_payload(req: OrderRequest, _: None = None) -> dict:
    return {"strategy": req.strategy, "symbol": req.symbol, "side": req.side.value, "qty": req.qty,
            "type": req.order_type.value, "role": req.role.value, "limit": req.limit_price,
            "stop": req.stop_price, "ref": req.reference_price, "protective_stop": req.protective_stop,
            "target_r": req.target_r, "oco": req.oco_group}
