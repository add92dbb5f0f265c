"""The TWS API wire format, server side, at server version 176 (stdlib only).

Framing: each message is a 4-byte big-endian length, then NUL-terminated text fields. The client
opens with `API\\0` and a framed version range (`v157..176` or `..178`); the server answers with
`(serverVersion, connTime)`. The layouts below follow the decoders of ib_insync 0.9.86 and
ib_async 2.1.0, which agree at version 176 (`faProfile` is present below 177).
"""

from __future__ import annotations

import asyncio
import struct
from datetime import datetime, timezone
from typing import Any, Iterable

SERVER_VERSION = 176


def frame(fields: Iterable[Any]) -> bytes:
    payload = "".join(f"{_text(f)}\0" for f in fields).encode()
    return struct.pack(">I", len(payload)) + payload


def _text(v: Any) -> str:
    if v is None:
        return ""
    if isinstance(v, bool):
        return "1" if v else "0"
    if isinstance(v, float):
        return repr(int(v)) if v.is_integer() else repr(v)
    return str(v)


async def read_message(reader: asyncio.StreamReader) -> list[str]:
    size = struct.unpack(">I", await reader.readexactly(4))[0]
    data = await reader.readexactly(size)
    fields = data.decode(errors="backslashreplace").split("\0")
    if fields and fields[-1] == "":
        fields.pop()
    return fields


def ib_time(dt: datetime) -> str:
    """Execution times as TWS sends them (UTC)."""
    return dt.astimezone(timezone.utc).strftime("%Y%m%d %H:%M:%S") + " UTC"


def parse_filter_time(text: str) -> datetime | None:
    """reqExecutions' time filter: 'yyyymmdd-hh:mm:ss' (UTC) or 'yyyymmdd hh:mm:ss[ UTC]'."""
    text = text.strip()
    if not text:
        return None
    for fmt in ("%Y%m%d-%H:%M:%S", "%Y%m%d %H:%M:%S"):
        try:
            return datetime.strptime(text[:17], fmt).replace(tzinfo=timezone.utc)
        except ValueError:
            continue
    return None


def contract11(con_id: int, symbol: str, exchange: str = "SMART") -> list[Any]:
    """conId, symbol, secType, lastTradeDate, strike, right, multiplier, exchange, currency,
    localSymbol, tradingClass."""
    return [con_id, symbol, "STK", "", "0", "", "", exchange, "USD", symbol, "NMS"]


_COUNTS = {"numLegs", "numOrderLegs", "numParams", "dncPresent", "numConditions"}

OPEN_ORDER = (
    "action totalQuantity orderType lmtPrice auxPrice tif ocaGroup account openClose origin "
    "orderRef clientId permId outsideRth hidden discretionaryAmt goodAfterTime _skip faGroup "
    "faMethod faPercentage faProfile modelCode goodTillDate rule80A percentOffset settlingFirm "
    "shortSaleSlot designatedLocation exemptCode auctionStrategy startingPrice stockRefPrice delta "
    "stockRangeLower stockRangeUpper displaySize blockOrder sweepToFill allOrNone minQty ocaType "
    "eTradeOnly firmQuoteOnly nbboPriceCap parentId triggerMethod volatility volatilityType "
    "deltaNeutralOrderType deltaNeutralAuxPrice continuousUpdate referencePriceType trailStopPrice "
    "trailingPercent basisPoints basisPointsType comboLegsDescrip numLegs numOrderLegs numParams "
    "scaleInitLevelSize scaleSubsLevelSize scalePriceIncrement hedgeType optOutSmartRouting "
    "clearingAccount clearingIntent notHeld dncPresent algoStrategy solicited whatIf status "
    "initMarginBefore maintMarginBefore equityWithLoanBefore initMarginChange maintMarginChange "
    "equityWithLoanChange initMarginAfter maintMarginAfter equityWithLoanAfter commission "
    "minCommission maxCommission commissionCurrency warningText randomizeSize randomizePrice "
    "numConditions adjustedOrderType triggerPrice trailStopPrice2 lmtPriceOffset adjustedStopPrice "
    "adjustedStopLimitPrice adjustedTrailingAmount adjustableTrailingUnit softDollarName "
    "softDollarValue softDollarDisplayName cashQty dontUseAutoPriceForHedge isOmsContainer "
    "discretionaryUpToLimitPrice usePriceMgmtAlgo duration postToAts autoCancelParent minTradeQty "
    "minCompeteSize competeAgainstBestOffset midOffsetAtWhole midOffsetAtHalf"
).split()

COMPLETED_ORDER = (
    "action totalQuantity orderType lmtPrice auxPrice tif ocaGroup account openClose origin "
    "orderRef permId outsideRth hidden discretionaryAmt goodAfterTime faGroup faMethod faPercentage "
    "faProfile modelCode goodTillDate rule80A percentOffset settlingFirm shortSaleSlot "
    "designatedLocation exemptCode startingPrice stockRefPrice delta stockRangeLower stockRangeUpper "
    "displaySize sweepToFill allOrNone minQty ocaType triggerMethod volatility volatilityType "
    "deltaNeutralOrderType deltaNeutralAuxPrice continuousUpdate referencePriceType trailStopPrice "
    "trailingPercent comboLegsDescrip numLegs numOrderLegs numParams scaleInitLevelSize "
    "scaleSubsLevelSize scalePriceIncrement hedgeType clearingAccount clearingIntent notHeld "
    "dncPresent algoStrategy solicited status randomizeSize randomizePrice numConditions "
    "trailStopPrice2 lmtPriceOffset cashQty dontUseAutoPriceForHedge isOmsContainer autoCancelDate "
    "filledQuantity refFuturesConId autoCancelParent shareholder imbalanceOnly routeMarketableToBbo "
    "parentPermId completedTime completedStatus minTradeQty minCompeteSize competeAgainstBestOffset "
    "midOffsetAtWhole midOffsetAtHalf"
).split()


# placeOrder (client to server) at these versions, non-combo orders: the fields the fake reads.
PLACE = {"order_id": 1, "symbol": 3, "action": 16, "qty": 17, "order_type": 18, "lmt_price": 19,
         "aux_price": 20, "tif": 21, "oca_group": 22, "account": 23, "order_ref": 26,
         "outside_rth": 33, "oca_type": 47}


def _layout(names: list[str], values: dict[str, Any]) -> list[Any]:
    return [values.get(n, "0" if n in _COUNTS else "") for n in names]


def _order_values(o: Any, status: str) -> dict[str, Any]:
    return {
        "action": o.action, "totalQuantity": o.qty, "orderType": o.order_type,
        "lmtPrice": o.lmt_price if o.order_type == "LMT" else "",
        "auxPrice": o.aux_price if o.order_type == "STP" else "", "tif": o.tif,
        "account": o.account, "openClose": "O", "origin": "0", "orderRef": o.order_ref,
        "clientId": o.client_id, "permId": o.perm_id, "outsideRth": int(o.outside_rth),
        "hidden": "0", "status": status, "whatIf": "0", "filledQuantity": o.filled,
        "ocaGroup": getattr(o, "oca_group", ""), "ocaType": getattr(o, "oca_type", 0),
    }


def open_order(o: Any, status: str) -> list[Any]:
    return [5, o.order_id, *contract11(o.con_id, o.symbol), *_layout(OPEN_ORDER, _order_values(o, status))]


def completed_order(o: Any) -> list[Any]:
    values = _order_values(o, o.status)
    values.update(completedTime=ib_time(o.updated), completedStatus=o.status)
    return [101, *contract11(o.con_id, o.symbol), *_layout(COMPLETED_ORDER, values)]


def order_status(o: Any) -> list[Any]:
    return [3, o.order_id, o.status, o.filled, o.qty - o.filled, o.avg_price, o.perm_id, 0,
            o.last_fill_price, o.client_id, "", 0]


def exec_details(req_id: int, ex: Any) -> list[Any]:
    o = ex.order
    return [11, req_id, o.order_id, *contract11(o.con_id, o.symbol, "ISLAND"), ex.exec_id,
            ib_time(ex.time), o.account, "ISLAND", "BOT" if o.action == "BUY" else "SLD", ex.shares,
            ex.price, o.perm_id, o.client_id, 0, ex.cum_qty, ex.avg_price, ex.order_ref or o.order_ref, "", "", "", 1]


def commission_report(ex: Any) -> list[Any]:
    return [59, 1, ex.exec_id, float(ex.commission), "USD", "", "", ""]


def position(account: str, con_id: int, symbol: str, qty: float, avg_cost: float) -> list[Any]:
    return [61, 3, account, *contract11(con_id, symbol, "NASDAQ"), qty, avg_cost]


def error(req_id: int, code: int, message: str) -> list[Any]:
    return [4, 2, req_id, code, message, ""]
