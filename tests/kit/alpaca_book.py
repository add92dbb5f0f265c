"""Alpaca's order book as the broker runs it, without HTTP: what the fake server (fake_alpaca.py)
answers and what the in-process race tests drive on a simulated clock.

Written from Alpaca's documentation and public reports (see notes/broker-sdk-facts.md):
- shares are reserved for every open sell: a sell for more than (position - shares held by open
  sells) is refused, 403 code 40310000 "insufficient qty available for order (requested: N,
  available: M)" (Alpaca-API #279, alpaca-trade-api-python #322); the account cannot short;
- `order_class: "oco"` (exit only: sell, type limit, `take_profit.limit_price`,
  `stop_loss.stop_price`) is one parent (the limit) with the stop under `legs`, each leg with its own
  id and an Alpaca-generated client_order_id; it reserves its shares once; a fill of one leg
  reduces the other by the same shares and a full fill cancels the other;
- replace (`PATCH /v2/orders/{id}`) is asynchronous: the old order goes `pending_replace`, then
  `replaced` (a `replaced` trade update) and the new order (new id, new legs) goes `new`; if the old
  order filled meanwhile the new one is `rejected`; orders that are accepted, pending_new,
  pending_cancel or pending_replace cannot be replaced;
- a cancel is a request: with `cancel_delay_ns` the order sits in `pending_cancel` (and can still
  fill) until the clock passes the delay;
- stops and limits trigger from the price path the test drives (`set_price`, `walk`).
Everything runs on the injected clock; `tick()` confirms what is due. Not thread-safe by itself:
the fake holds its lock around every call.
"""

from __future__ import annotations

import uuid
from collections import Counter
from datetime import datetime, timezone
from decimal import Decimal
from typing import Any, Callable

Order = dict[str, Any]
Push = Callable[..., None]  # push(event, order_json, **extra)

WORKING = frozenset({"new", "accepted", "pending_new", "partially_filled", "held",
                     "pending_cancel", "pending_replace"})
OPEN = WORKING
REPLACEABLE = frozenset({"new", "partially_filled", "held"})
INSUFFICIENT = 40310000


def iso(ns: int) -> str:
    s, rem = divmod(ns, 1_000_000_000)
    return datetime.fromtimestamp(s, tz=timezone.utc).replace(microsecond=rem // 1000).strftime(
        "%Y-%m-%dT%H:%M:%S.%fZ")


def num(x: Decimal | float | int | str) -> str:
    return format(Decimal(str(x)).normalize(), "f")


class ManualClock:
    """A clock the test moves: deterministic delays."""

    def __init__(self, now_ns: int = 1_710_510_000_000_000_000) -> None:
        self.now = now_ns

    def __call__(self) -> int:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += int(seconds * 1e9)


class AlpacaBook:
    def __init__(self, clock: Callable[[], int], push: Push | None = None) -> None:
        self.clock = clock
        self.push: Push = push or (lambda *a, **k: None)
        self.orders: dict[str, Order] = {}           # id -> order json (legs under their parent)
        self.by_cid: dict[str, str] = {}
        self.leg_of: dict[str, str] = {}             # parent id -> leg id (OCO)
        self.parent_of: dict[str, str] = {}          # leg id -> parent id
        self.positions: dict[str, list[Decimal]] = {}  # sym -> [qty, cost]
        self.prices: dict[str, float] = {}
        self.auto_fill = True
        self.cancel_delay_ns = 0
        self.replace_delay_ns = 0
        self.accepted: Counter[str] = Counter()
        self.refused: list[tuple[str, str]] = []      # (client id, message) of 403 insufficient qty
        self.replaces: list[tuple[str, str]] = []     # (old id, new id) PATCHes accepted
        self.cancels: list[str] = []                  # DELETEs accepted (order ids)
        self.violations: list[str] = []              # a sell beyond the position (must stay empty)
        self._due: list[tuple[int, str, str]] = []    # (due ns, "cancel"|"replace", order id)
        self._replacing: dict[str, tuple[str, int]] = {}  # new id -> (old id, old filled at PATCH)
        self.account: dict[str, Any] = {}
        self.pdt_protect = False
        self._bought_today: set[str] = set()

    # --- views ---------------------------------------------------------------------------------
    def view(self, o: Order, nested: bool = True) -> Order:
        """The order as Alpaca returns it: an OCO parent carries its leg under `legs`."""
        out = dict(o)
        leg = self.leg_of.get(o["id"])
        out["legs"] = [dict(self.orders[leg])] if nested and leg else None
        return out

    def find(self, key: str) -> Order | None:
        """An order by id or client id."""
        oid = self.by_cid.get(key, key)
        return self.orders.get(oid)

    def position(self, sym: str) -> int:
        p = self.positions.get(sym)
        return int(p[0]) if p else 0

    def reserved(self, sym: str, excluding: str = "") -> int:
        """Shares held by open sells (an OCO once; a pending replace at the larger of the two)."""
        held = 0
        for o in self.orders.values():
            if (o["symbol"] != sym or o["side"] != "sell" or o["status"] not in WORKING
                    or o["id"] == excluding or o["id"] in self._replacing):
                continue
            parent = self.parent_of.get(o["id"])
            if parent is not None and self.orders[parent]["status"] in WORKING:
                continue  # counted with its parent
            rem = int(o["qty"]) - int(o["filled_qty"])
            new = o.get("replaced_by")
            if o["status"] == "pending_replace" and new in self._replacing:
                rem = max(rem, int(self.orders[new]["qty"]))
            held += rem
        return held

    def replacing(self, o: Order) -> bool:
        """The new order of a pending replace, or its OCO leg: not at the venue until `replaced`."""
        return o["id"] in self._replacing or self.parent_of.get(o["id"]) in self._replacing

    def available(self, sym: str, excluding: str = "") -> int:
        return max(self.position(sym) - self.reserved(sym, excluding), 0)

    # --- new orders ----------------------------------------------------------------------------
    def new_order(self, body: dict[str, Any]) -> tuple[int, Order]:
        """Validate and store an order (status `accepted`); (HTTP status, json)."""
        cid = body.get("client_order_id") or str(uuid.uuid4())
        try:
            qty = Decimal(str(body["qty"]))
        except Exception:
            return 422, {"code": 40010001, "message": "qty is required"}
        if qty <= 0 or qty != qty.to_integral_value():
            return 422, {"code": 40010001, "message": "qty must be a positive integer"}
        kind, side, oclass = body.get("type"), body.get("side"), body.get("order_class") or "simple"
        if kind not in ("market", "limit", "stop"):
            return 422, {"code": 40010001, "message": f"invalid order type {kind}"}
        if oclass not in ("simple", "oco"):
            return 422, {"code": 40010001, "message": f"order_class {oclass} not supported here"}
        if oclass == "oco":
            tp, sl = body.get("take_profit") or {}, body.get("stop_loss") or {}
            if side != "sell" or kind != "limit":
                return 422, {"code": 40010001, "message": "oco orders must be sell limit orders"}
            if not tp.get("limit_price") or not sl.get("stop_price"):
                return 422, {"code": 40010001, "message": "oco orders require take_profit.limit_price "
                                                          "and stop_loss.stop_price"}
            body = {**body, "limit_price": tp["limit_price"]}
        if kind == "limit" and not body.get("limit_price"):
            return 422, {"code": 40010001, "message": "limit_price is required"}
        if kind == "stop" and not body.get("stop_price"):
            return 422, {"code": 40010001, "message": "stop_price is required"}
        if body.get("extended_hours") and (kind != "limit" or body.get("time_in_force") != "day"):
            return 422, {"code": 42210000, "message": "extended hours order must be DAY limit orders"}
        if cid in self.by_cid:
            return 422, {"code": 40010001, "message": "client_order_id must be unique"}
        if (self.pdt_protect and side == "buy" and float(self.account.get("equity", 0)) < 25_000
                and self.account.get("daytrade_count", 0) >= 3):
            return 403, {"code": 40310100, "message": "trade denied due to pattern day trading protection"}
        sym = body.get("symbol") or ""
        if side == "sell":
            refusal = self._insufficient(cid, sym, int(qty))
            if refusal is not None:
                return 403, refusal
        o = self._store(body, cid, int(qty), kind, oclass)
        if oclass == "oco":
            leg_body = {**body, "type": "stop", "limit_price": None,
                        "stop_price": body["stop_loss"]["stop_price"]}
            leg = self._store(leg_body, str(uuid.uuid4()), int(qty), "stop", "oco")
            self.leg_of[o["id"]], self.parent_of[leg["id"]] = leg["id"], o["id"]
        return 200, self.view(o)

    def _insufficient(self, cid: str, sym: str, qty: int, excluding: str = "") -> Order | None:
        avail = self.available(sym, excluding)
        if qty <= avail:
            return None
        msg = f"insufficient qty available for order (requested: {qty}, available: {avail})"
        self.refused.append((cid, msg))
        return {"code": INSUFFICIENT, "message": msg}

    def _store(self, body: dict[str, Any], cid: str, qty: int, kind: str, oclass: str) -> Order:
        now = iso(self.clock())
        sym = body.get("symbol") or ""
        o: Order = {
            "id": str(uuid.uuid4()), "client_order_id": cid, "created_at": now, "updated_at": now,
            "submitted_at": now, "filled_at": None, "expired_at": None, "expires_at": None,
            "canceled_at": None, "failed_at": None, "replaced_at": None, "replaced_by": None,
            "replaces": None, "asset_id": str(uuid.uuid5(uuid.NAMESPACE_DNS, sym)),
            "symbol": sym, "asset_class": "us_equity", "notional": None,
            "qty": str(qty), "filled_qty": "0", "filled_avg_price": None, "order_class": oclass,
            "order_type": kind, "type": kind, "side": body.get("side"),
            "time_in_force": body.get("time_in_force", "day"),
            "limit_price": num(body["limit_price"]) if body.get("limit_price") else None,
            "stop_price": num(body["stop_price"]) if body.get("stop_price") else None,
            "status": "accepted", "extended_hours": bool(body.get("extended_hours", False)),
            "legs": None, "trail_percent": None, "trail_price": None, "hwm": None,
        }
        self.orders[o["id"]] = o
        self.by_cid[cid] = o["id"]
        self.accepted[cid] += 1
        return o

    def after_accept(self, oid: str, reject_async: bool = False) -> None:
        """Routed: `new` (parent and leg), or `rejected`; a market order fills at the price."""
        o = self.orders[oid]
        for x in self._group(o):
            x["status"] = "new"
            self._push("new", x)
        if reject_async:
            self._close(o, "rejected")
            return
        if self.auto_fill and o["type"] == "market" and o["symbol"] in self.prices:
            self.fill(o, int(o["qty"]), self.prices[o["symbol"]])

    # --- replace -------------------------------------------------------------------------------
    def replace(self, oid: str, body: dict[str, Any]) -> tuple[int, Order]:
        """PATCH /v2/orders/{id}: the new order (accepted); confirmed after `replace_delay_ns`."""
        self.tick()
        o = self.orders.get(oid)
        if o is None:
            return 404, {"code": 40410000, "message": "order not found"}
        if oid in self.parent_of:
            return 422, {"code": 42210000, "message": "replace the oco order through its parent"}
        if o["status"] not in REPLACEABLE:
            return 422, {"code": 42210000, "message": f"order is not replaceable (status {o['status']})"}
        cid = body.get("client_order_id") or str(uuid.uuid4())
        if cid in self.by_cid:
            return 422, {"code": 40010001, "message": "client_order_id must be unique"}
        qty = int(Decimal(str(body.get("qty") or o["qty"])))
        if qty <= 0:
            return 422, {"code": 40010001, "message": "qty must be > 0"}
        if o["side"] == "sell":
            refusal = self._insufficient(cid, o["symbol"], qty, excluding=oid)
            if refusal is not None:
                return 403, refusal
        spec = {"symbol": o["symbol"], "side": o["side"], "extended_hours": o["extended_hours"],
                "time_in_force": body.get("time_in_force") or o["time_in_force"],
                "limit_price": body.get("limit_price") or o["limit_price"]}
        leg_id = self.leg_of.get(oid)
        if o["type"] == "stop":
            spec["stop_price"] = body.get("stop_price") or o["stop_price"]
        new = self._store(spec, cid, qty, o["type"], o["order_class"])
        new["replaces"] = oid
        if leg_id is not None:
            old_leg = self.orders[leg_id]
            leg = self._store({**spec, "limit_price": None,
                               "stop_price": body.get("stop_price") or old_leg["stop_price"]},
                              str(uuid.uuid4()), qty, "stop", "oco")
            leg["replaces"] = leg_id
            self.leg_of[new["id"]], self.parent_of[leg["id"]] = leg["id"], new["id"]
        self._replacing[new["id"]] = (oid, int(o["filled_qty"]))
        o["replaced_by"] = new["id"]
        self.replaces.append((oid, new["id"]))
        for x in self._group(o):
            x["status"] = "pending_replace"
            x["updated_at"] = iso(self.clock())
            self._push("pending_replace", x)
        self._due.append((self.clock() + self.replace_delay_ns, "replace", new["id"]))
        out = self.view(new)
        self.tick()
        return 200, out

    def _confirm_replace(self, new_id: str) -> None:
        old_id, filled_then = self._replacing.pop(new_id)
        old, new = self.orders[old_id], self.orders[new_id]
        now = iso(self.clock())
        if old["status"] not in ("pending_replace",) or int(old["filled_qty"]) > filled_then:
            # filled before the replacement reached the venue: the new order is rejected
            if old["status"] == "pending_replace":
                for x in self._group(old):
                    x["status"] = "partially_filled" if int(x["filled_qty"]) else "new"
            for x in self._group(new):
                x.update(status="rejected", failed_at=now, updated_at=now)
                self._push("rejected", x)
            return
        for x, y in zip(self._group(old), self._group(new)):
            x.update(status="replaced", replaced_at=now, updated_at=now, replaced_by=y["id"])
            self._push("replaced", x)
        for y in self._group(new):
            y.update(status="new", updated_at=now)
            self._push("new", y)
        if new["symbol"] in self.prices:
            self.set_price(new["symbol"], self.prices[new["symbol"]])

    # --- cancel --------------------------------------------------------------------------------
    def cancel(self, oid: str) -> tuple[int, Order | None]:
        """DELETE /v2/orders/{id}: 204 and `pending_cancel` until confirmed (an OCO as a whole)."""
        self.tick()
        o = self.orders.get(oid)
        if o is None:
            return 404, {"code": 40410000, "message": "order not found"}
        o = self.orders.get(self.parent_of.get(oid, oid), o)
        if o["status"] == "pending_cancel":
            return 204, None
        if o["status"] not in WORKING or o["id"] in self._replacing:
            return 422, {"code": 42210000, "message": "order is not cancelable"}
        self.cancels.append(o["id"])
        if self.cancel_delay_ns <= 0:
            self._close(o, "canceled")
            return 204, None
        for x in self._group(o):
            x.update(status="pending_cancel", updated_at=iso(self.clock()))
            self._push("pending_cancel", x)
        self._due.append((self.clock() + self.cancel_delay_ns, "cancel", o["id"]))
        return 204, None

    def cancel_all(self) -> list[str]:
        out = []
        for o in list(self.orders.values()):
            if o["status"] in WORKING and o["id"] not in self.parent_of and o["id"] not in self._replacing:
                if self.cancel(o["id"])[0] == 204:
                    out.append(o["id"])
        return out

    def tick(self) -> None:
        """Confirm every cancel and replace whose delay has passed on the clock."""
        now = self.clock()
        due = sorted(d for d in self._due if d[0] <= now)
        self._due = [d for d in self._due if d[0] > now]
        for _, kind, oid in due:
            if kind == "replace":
                self._confirm_replace(oid)
            elif self.orders[oid]["status"] == "pending_cancel":
                self._close(self.orders[oid], "canceled")

    @property
    def pending(self) -> int:
        return len(self._due)

    # --- market --------------------------------------------------------------------------------
    def set_price(self, symbol: str, price: float) -> None:
        """The market trades at `price`: working orders that cross it fill (pending ones too)."""
        self.tick()
        self.prices[symbol] = price
        for o in list(self.orders.values()):
            if o["symbol"] != symbol or o["status"] not in WORKING or self.replacing(o):
                continue
            px = self._crossing(o, price)
            if px is not None:
                self.fill(o, int(o["qty"]) - int(o["filled_qty"]), px)

    def walk(self, symbol: str, prices: list[float]) -> None:
        for px in prices:
            self.set_price(symbol, px)

    @staticmethod
    def _crossing(o: Order, price: float) -> float | None:
        kind, side = o["type"], o["side"]
        if kind == "market":
            return price
        if kind == "limit":
            limit = float(o["limit_price"])
            if (side == "sell" and price >= limit) or (side == "buy" and price <= limit):
                return limit
        if kind == "stop":
            stop = float(o["stop_price"])
            if (side == "sell" and price <= stop) or (side == "buy" and price >= stop):
                return price
        return None

    def fill(self, o: Order, qty: int, price: float) -> None:
        """Fill up to `qty` of `o` (a partial fill when less than it has left)."""
        if o["status"] not in WORKING:
            return
        done = int(o["filled_qty"])
        qty = min(qty, int(o["qty"]) - done)
        sym = o["symbol"]
        if o["side"] == "sell" and qty > self.position(sym):
            self.violations.append(f"{o['client_order_id']}: sell {qty} {sym} > {self.position(sym)}")
        if qty <= 0:
            return
        now = self.clock()
        avg = Decimal(o["filled_avg_price"] or 0)
        cum = done + qty
        o["filled_avg_price"] = num(round((avg * done + Decimal(str(price)) * qty) / cum, 6))
        o["filled_qty"], o["updated_at"] = str(cum), iso(now)
        full = cum >= int(o["qty"])
        if full:
            o["status"], o["filled_at"] = "filled", iso(now)
        elif o["status"] not in ("pending_cancel", "pending_replace"):
            o["status"] = "partially_filled"
        pos = self.positions.setdefault(sym, [Decimal(0), Decimal(0)])
        if o["side"] == "buy":
            pos[1] += Decimal(str(price)) * qty
            self._bought_today.add(sym)
        elif pos[0]:
            pos[1] -= pos[1] * qty / pos[0]
        pos[0] += qty if o["side"] == "buy" else -qty
        if o["side"] == "sell" and pos[0] == 0 and sym in self._bought_today and self.account:
            self.account["daytrade_count"] += 1
        self._push("fill" if full else "partial_fill", o, execution_id=str(uuid.uuid4()),
                   qty=str(qty), price=num(price), position_qty=str(int(pos[0])))
        sibling = self._sibling(o)
        if sibling is not None and sibling["status"] in WORKING:
            if full:
                self._close(sibling, "canceled")
            else:  # the legs share the shares
                sibling["qty"] = str(int(sibling["qty"]) - qty)
                sibling["updated_at"] = iso(now)

    def _sibling(self, o: Order) -> Order | None:
        other = self.leg_of.get(o["id"]) or self.parent_of.get(o["id"])
        return self.orders[other] if other else None

    def _group(self, o: Order) -> list[Order]:
        """The order and its OCO leg (parent first)."""
        leg = self.leg_of.get(o["id"])
        return [o, self.orders[leg]] if leg else [o]

    def close(self, o: Order, status: str) -> None:
        self._close(self.orders.get(self.parent_of.get(o["id"], o["id"]), o), status)

    def _close(self, o: Order, status: str) -> None:
        now = iso(self.clock())
        field = {"canceled": "canceled_at", "expired": "expired_at", "rejected": "failed_at"}[status]
        for x in self._group(o):
            if x["status"] not in WORKING:
                continue
            x.update(status=status, updated_at=now)
            x[field] = now
            self._push(status, x)

    def _push(self, event: str, o: Order, **extra: Any) -> None:
        self.push(event, self.view(o) if o["id"] in self.leg_of else dict(o), **extra)


__all__ = ["AlpacaBook", "ManualClock", "OPEN", "WORKING", "iso", "num"]
