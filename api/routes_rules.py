"""The market's rules over HTTP: sessions and auctions, settlement prices, physical delivery and
traceability.

Public: a market's session (with the indicative auction price in a call phase) and its
settlement-price history. Operator: move a market's session by hand, publish a settlement price,
record deliveries into and out of custody. Trader: where the lots they bought came from.
Regulator: any trade traced back to its receipts and farms.
"""

from __future__ import annotations

import re
from typing import Any, TypeVar

from fastapi import APIRouter, Query
from pydantic import BaseModel
from starlette.requests import Request
from starlette.responses import Response

from api.common import (
    body_schema,
    caller,
    decode_cursor,
    error_responses,
    exchange_of,
    json_response,
    parse_time_ns,
    read_model,
    submit,
    take_page,
)
from api.errors import ApiError
from api.schemas_rules import (
    DeliveryIn,
    DeliveryOut,
    DeliveryReceiptOut,
    MarketSessionOut,
    ReleaseOut,
    SessionRequest,
    SettlementOut,
    SettlementsOut,
    TraceabilityOut,
    TradeTraceOut,
)
from api.views import rfc3339
from exchange import commands as c
from exchange.core import ExchangeCore
from exchange.delivery import UNTRACED, Receipt
from exchange.events import GoodsDelivered, GoodsReleased, SettlementPublished
from exchange.feed import session_status
from exchange.participants import Role
from exchange.sessions import Session
from exchange.settlement import SettlementPrice
from matching_engine import Side

router = APIRouter(tags=["market rules"])
TRADE_ID = re.compile(r"[0-9]{1,18}")  # ids fit in 63 bits; anything else is not found
OPERATOR, TRADER, REGULATOR = Role.OPERATOR, Role.TRADER, Role.REGULATOR
M = TypeVar("M", bound=BaseModel)


def _listed(core: ExchangeCore, symbol: str) -> str:
    if symbol not in core.instruments:
        raise ApiError("UNKNOWN_INSTRUMENT", f"no instrument {symbol[:40]!r} is listed", 404)
    return symbol


async def _body(request: Request, model: type[M]) -> M:
    body = await read_model(request, model)
    assert body is not None
    return body


# ---------------------------------------------------------------------- views


def session_view(core: ExchangeCore, symbol: str, sequence: int) -> dict[str, Any]:
    view = session_status(core, symbol, sequence)
    del view["channel"]
    return view


def settlement_view(settled: SettlementPrice) -> dict[str, Any]:
    return {
        "symbol": settled.symbol,
        "trading_day": settled.trading_day,
        "price": settled.price,
        "method": settled.method.value,
        "volume": settled.volume,
        "window_start": rfc3339(settled.window_start_ns),
        "cut_off": rfc3339(settled.cut_off_ns),
        "previous_reference_price": settled.previous_reference_price,
        "sequence": settled.sequence,
    }


def receipt_view(receipt: Receipt) -> dict[str, Any]:
    return {
        "receipt_id": receipt.receipt_id,
        "participant_id": receipt.participant_id,
        "symbol": receipt.symbol,
        "lots": receipt.lots,
        "head_count": receipt.head_count,
        "average_weight_kg": receipt.average_weight_kg,
        "farm_code": receipt.farm_code,
        "certificate": receipt.certificate,
        "inspected_at": rfc3339(receipt.inspected_at_ns),
        "time": rfc3339(receipt.time_ns),
        "sequence": receipt.sequence,
    }


def sources_view(core: ExchangeCore, sources: list[tuple[int, int]]) -> list[dict[str, Any]]:
    receipts = core.lineage.receipts
    return [
        {
            "receipt_id": None if receipt_id == UNTRACED else receipt_id,
            "lots": lots,
            "receipt": None if receipt_id == UNTRACED else receipt_view(receipts[receipt_id]),
        }
        for receipt_id, lots in sources
    ]


def _trade_sources(core: ExchangeCore, trade_id: int, quantity: int) -> list[tuple[int, int]]:
    return core.lineage.trade_lots.get(trade_id) or [(UNTRACED, quantity)]


# ---------------------------------------------------------------------- public


@router.get(
    "/v1/markets/{symbol}/session",
    summary="The market's trading phase, band and (in a call phase) indicative auction price",
    responses={200: {"model": MarketSessionOut}, **error_responses(404)},
)
async def market_session(request: Request, symbol: str) -> Response:
    core = exchange_of(request).core
    return json_response(session_view(core, _listed(core, symbol), core.last_sequence))


@router.get(
    "/v1/markets/{symbol}/settlements",
    summary="Daily settlement prices, newest first",
    responses={200: {"model": SettlementsOut}, **error_responses(404, 422)},
)
async def settlements(
    request: Request, symbol: str, limit: int = Query(default=30, ge=1, le=1_000)
) -> Response:
    core = exchange_of(request).core
    history = core.settlements.get(_listed(core, symbol), [])
    newest = [settlement_view(s) for s in reversed(history[-limit:])]
    return json_response({"symbol": symbol, "settlements": newest})


# ---------------------------------------------------------------------- operator


@router.post(
    "/v1/admin/markets/{symbol}/session",
    openapi_extra=body_schema(SessionRequest),
    summary="Move a market to another phase; to auction (or on to continuous / closed from a "
    "call) runs the uncross",
    responses={
        200: {"model": MarketSessionOut},
        **error_responses(400, 401, 403, 404, 409, 413, 422, 429, 503),
    },
)
async def advance_session(request: Request, symbol: str) -> Response:
    operator = caller(request, OPERATOR)
    body = await _body(request, SessionRequest)
    exchange = exchange_of(request)
    command = c.AdvanceSession(
        _listed(exchange.core, symbol), Session(body.session), operator.participant_id
    )
    result = await submit(exchange, command)
    return json_response(session_view(exchange.core, symbol, result.sequence))


@router.post(
    "/v1/admin/markets/{symbol}/settlement",
    status_code=201,
    summary="Fix today's settlement price now; it becomes the reference price",
    responses={
        201: {"model": SettlementOut},
        **error_responses(401, 403, 404, 409, 429, 503),
    },
)
async def publish_settlement(request: Request, symbol: str) -> Response:
    operator = caller(request, OPERATOR)
    exchange = exchange_of(request)
    command = c.PublishSettlement(_listed(exchange.core, symbol), operator.participant_id)
    result = await submit(exchange, command)
    published = next(e for e in result.events if isinstance(e, SettlementPublished))
    return json_response(settlement_view(published.settlement), 201)


@router.post(
    "/v1/admin/deliveries/in",
    status_code=201,
    openapi_extra=body_schema(DeliveryIn),
    summary="Record goods inspected into custody: a receipt, lots credited to the owner",
    responses={
        201: {"model": DeliveryReceiptOut},
        **error_responses(400, 401, 403, 413, 422, 429, 503),
    },
)
async def deliver_in(request: Request) -> Response:
    operator = caller(request, OPERATOR)
    body = await _body(request, DeliveryIn)
    inspected_at_ns = parse_time_ns(body.inspected_at, "inspected_at")
    if inspected_at_ns is None or not 0 < inspected_at_ns < 2**63:
        raise ApiError("INVALID_REQUEST", "inspected_at must be a time after 1970")
    command = c.DeliverGoods(
        body.participant_id,
        body.symbol,
        body.lots,
        body.head_count,
        body.average_weight_kg,
        body.farm_code,
        body.certificate,
        inspected_at_ns,
        operator.participant_id,
    )
    result = await submit(exchange_of(request), command)
    delivered = result.events[0]
    assert isinstance(delivered, GoodsDelivered)
    return json_response({**receipt_view(delivered.receipt), "available": delivered.available}, 201)


@router.post(
    "/v1/admin/deliveries/out",
    status_code=201,
    openapi_extra=body_schema(DeliveryOut),
    summary="Record goods delivered out of custody to their owner (oldest receipts first)",
    responses={
        201: {"model": ReleaseOut},
        **error_responses(400, 401, 403, 413, 422, 429, 503),
    },
)
async def deliver_out(request: Request) -> Response:
    operator = caller(request, OPERATOR)
    body = await _body(request, DeliveryOut)
    command = c.ReleaseGoods(
        body.participant_id, body.symbol, body.lots, body.destination, operator.participant_id
    )
    exchange = exchange_of(request)
    result = await submit(exchange, command)
    released = result.events[0]
    assert isinstance(released, GoodsReleased)
    release = released.release
    return json_response(
        {
            "release_id": release.release_id,
            "participant_id": release.participant_id,
            "symbol": release.symbol,
            "lots": release.lots,
            "destination": release.destination,
            "sources": sources_view(exchange.core, release.sources),
            "available": released.available,
            "time": rfc3339(release.time_ns),
            "sequence": release.sequence,
        },
        201,
    )


# ---------------------------------------------------------------------- trader


@router.get(
    "/v1/account/traceability",
    summary="Where the lots you bought came from: each buy fill with its receipts, newest first",
    responses={200: {"model": TraceabilityOut}, **error_responses(401, 403, 422, 429)},
)
async def traceability(
    request: Request,
    symbol: str | None = Query(default=None, max_length=32),
    limit: int = Query(default=100, ge=1, le=1_000),
    cursor: str | None = Query(default=None, max_length=64),
) -> Response:
    trader = caller(request, TRADER)
    core = exchange_of(request).core
    before = decode_cursor(cursor)
    fills = core.fills_by_participant.get(trader.participant_id, [])

    def bought() -> Any:
        for trade_id, order_id in reversed(fills):
            if before is not None and trade_id >= before:
                continue
            record = core.orders[order_id]
            if record.side is Side.BUY and (symbol is None or record.symbol == symbol):
                yield trade_id, record

    page, next_cursor = take_page(bought(), limit, lambda item: item[0])
    received = []
    for trade_id, record in page:
        fill = next(f for f in record.fills or () if f.trade_id == trade_id)
        received.append(
            {
                "trade_id": str(trade_id),
                "symbol": record.symbol,
                "price": fill.price,
                "quantity": fill.quantity,
                "time": rfc3339(fill.time_ns),
                "sources": sources_view(core, _trade_sources(core, trade_id, fill.quantity)),
            }
        )
    return json_response(
        {"participant_id": trader.participant_id, "received": received, "next_cursor": next_cursor}
    )


# ---------------------------------------------------------------------- regulator


@router.get(
    "/v1/audit/trades/{trade_id}/trace",
    summary="A trade traced to the receipts and farms its lots came from",
    responses={200: {"model": TradeTraceOut}, **error_responses(401, 403, 404, 429)},
)
async def trace_trade(request: Request, trade_id: str) -> Response:
    caller(request, REGULATOR)
    core = exchange_of(request).core
    sides = core.fills_of_trade(int(trade_id)) if TRADE_ID.fullmatch(trade_id) else []
    if len(sides) != 2:
        raise ApiError("TRADE_NOT_FOUND", f"no trade {trade_id[:40]!r}", 404)
    (buy, fill), (sell, _) = sides
    sources = _trade_sources(core, fill.trade_id, fill.quantity)
    receipts = core.lineage.receipts
    farms = sorted({receipts[r].farm_code for r, _ in sources if r != UNTRACED} - {""})
    return json_response(
        {
            "trade_id": str(fill.trade_id),
            "symbol": buy.symbol,
            "kind": core.instruments[buy.symbol].kind.value,
            "price": fill.price,
            "quantity": fill.quantity,
            "time": rfc3339(fill.time_ns),
            "sequence": fill.sequence,
            "buyer_participant_id": buy.participant_id,
            "seller_participant_id": sell.participant_id,
            "sources": sources_view(core, sources),
            "farm_codes": farms,
        }
    )
