"""Trading routes (role `trader`): place, amend, cancel and list own orders; fills; balances.

Placing and amending decode the body with msgspec and answer pre-encoded JSON: they are the hot
path. The OpenAPI schema still documents both bodies and answers.
"""

from __future__ import annotations

import asyncio
import csv
import io
import time
from typing import Any

import msgspec
from fastapi import APIRouter, Query
from sqlalchemy.exc import SQLAlchemyError
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response

from api.auth import RateLimiter
from api.common import (
    authorize,
    caller,
    decode_cursor,
    encode_cursor,
    error_responses,
    exchange_of,
    json_response,
    parse_order_id,
    parse_time_bound,
    submit,
    take_page,
)
from api.errors import ApiError
from api.schemas import (
    MAX_BODY_BYTES,
    AccountOut,
    AmendOrderBody,
    FillsPage,
    OrderOut,
    OrdersPage,
    PlaceOrderBody,
    StatementOut,
)
from api.views import order_view, rfc3339
from clearing.ledger import FillRow, Ledger
from exchange import commands as c
from exchange.events import DuplicateClientOrderId, OrderRegistered
from exchange.orders import OrderRecord
from exchange.participants import Role
from exchange.sequencer import Exchange
from matching_engine import OrderType, Side, TimeInForce

router = APIRouter(tags=["trading"])
TRADER = Role.TRADER

_place_decoder = msgspec.json.Decoder(PlaceOrderBody)
_amend_decoder = msgspec.json.Decoder(AmendOrderBody)


def _inline_schema(struct: type) -> dict[str, Any]:
    schema = msgspec.json.schema(struct)
    definitions = schema.pop("$defs", {})
    name = schema.pop("$ref").rsplit("/", 1)[-1]
    inline: dict[str, Any] = definitions[name]
    return inline


def _body(schema_of: type, example: dict[str, Any]) -> dict[str, Any]:
    return {
        "requestBody": {
            "required": True,
            "content": {
                "application/json": {"schema": _inline_schema(schema_of), "example": example}
            },
        }
    }


def _decode(body: bytes, decoder: msgspec.json.Decoder[Any]) -> Any:
    if len(body) > MAX_BODY_BYTES:
        raise ApiError("PAYLOAD_TOO_LARGE", f"the body is over {MAX_BODY_BYTES} bytes")
    try:
        return decoder.decode(body)
    except msgspec.ValidationError as error:
        raise ApiError("INVALID_REQUEST", str(error)) from error
    except (msgspec.DecodeError, UnicodeDecodeError) as error:
        raise ApiError("INVALID_REQUEST", f"the body is not valid JSON: {error}") from error


def _own_order(exchange: Exchange, participant_id: int, raw_order_id: str) -> OrderRecord:
    order_id = parse_order_id(raw_order_id)
    record = exchange.core.orders.get(order_id)
    if record is None or record.participant_id != participant_id:
        raise ApiError("ORDER_NOT_FOUND", f"no order {raw_order_id[:40]} of this participant")
    return record


# The order-entry operations, shared by the FastAPI routes below (which document them) and by
# `api.fastpath`, which serves the same paths without the framework's per-request work.
Answer = tuple[int, dict[str, Any]]


async def place(
    exchange: Exchange, limiter: RateLimiter, authorization: str | None, body: bytes
) -> Answer:
    participant = authorize(exchange, limiter, authorization, TRADER)
    order: PlaceOrderBody = _decode(body, _place_decoder)
    command = c.PlaceOrder(
        participant.participant_id,
        order.symbol,
        Side(order.side),
        OrderType(order.type),
        order.price,
        order.quantity,
        TimeInForce(order.time_in_force),
        order.post_only,
        order.all_or_none,
        order.client_order_id,
    )
    result = await submit(exchange, command)
    first = result.events[0]
    orders = exchange.core.orders
    if isinstance(first, DuplicateClientOrderId):
        return 200, order_view(orders[first.order_id])
    assert isinstance(first, OrderRegistered)
    return 201, order_view(orders[first.order_id], result.sequence)


async def amend(
    exchange: Exchange,
    limiter: RateLimiter,
    authorization: str | None,
    order_id: str,
    body: bytes,
) -> Answer:
    participant = authorize(exchange, limiter, authorization, TRADER)
    change: AmendOrderBody = _decode(body, _amend_decoder)
    if change.price is None and change.quantity is None:
        raise ApiError("INVALID_REQUEST", "give a new price, a new quantity, or both")
    record = _own_order(exchange, participant.participant_id, order_id)
    command = c.AmendOrder(
        participant.participant_id, record.order_id, change.price, change.quantity
    )
    result = await submit(exchange, command)
    return 200, order_view(record, result.sequence)


async def cancel(
    exchange: Exchange, limiter: RateLimiter, authorization: str | None, order_id: str
) -> Answer:
    participant = authorize(exchange, limiter, authorization, TRADER)
    record = _own_order(exchange, participant.participant_id, order_id)
    result = await submit(exchange, c.CancelOrder(participant.participant_id, record.order_id))
    return 200, order_view(record, result.sequence)


@router.post(
    "/v1/orders",
    status_code=201,
    summary="Place an order",
    description="Answers 201 with the new order, or 200 with the original order when "
    "`client_order_id` was used before. IOC/FOK/market remainders, self-trade cancels and "
    "market orders facing an empty book end `cancelled` with a `cancel_reason`.",
    responses={
        201: {"model": OrderOut, "description": "the order as it stands after matching"},
        200: {"model": OrderOut, "description": "the original order (client_order_id reused)"},
        **error_responses(400, 401, 403, 413, 422, 429, 503),
    },
    openapi_extra=_body(
        PlaceOrderBody,
        {
            "symbol": "HOG-G1-HCM",
            "side": "buy",
            "type": "limit",
            "price": 60000,
            "quantity": 5,
            "time_in_force": "gtc",
            "client_order_id": "abc-1",
        },
    ),
)
async def place_order(request: Request) -> Response:
    status, answer = await place(
        exchange_of(request),
        request.app.state.rate_limiter,
        request.headers.get("authorization"),
        await request.body(),
    )
    return json_response(answer, status)


@router.patch(
    "/v1/orders/{order_id}",
    summary="Amend an order's price and/or total quantity",
    description="Lowering the quantity keeps time priority; a new price or a higher quantity "
    "loses it. A new quantity at or below what has filled ends the order.",
    responses={
        200: {"model": OrderOut, "description": "the amended order"},
        **error_responses(400, 401, 403, 404, 409, 413, 422, 429, 503),
    },
    openapi_extra=_body(AmendOrderBody, {"price": 60100}),
)
async def amend_order(request: Request, order_id: str) -> Response:
    status, answer = await amend(
        exchange_of(request),
        request.app.state.rate_limiter,
        request.headers.get("authorization"),
        order_id,
        await request.body(),
    )
    return json_response(answer, status)


@router.delete(
    "/v1/orders/{order_id}",
    summary="Cancel an order",
    responses={
        200: {"model": OrderOut, "description": "the cancelled order"},
        **error_responses(401, 403, 404, 409, 429, 503),
    },
)
async def cancel_order(request: Request, order_id: str) -> Response:
    status, answer = await cancel(
        exchange_of(request),
        request.app.state.rate_limiter,
        request.headers.get("authorization"),
        order_id,
    )
    return json_response(answer, status)


@router.get(
    "/v1/orders/{order_id}",
    summary="One of your orders, with its trades",
    responses={200: {"model": OrderOut}, **error_responses(401, 403, 404, 429)},
)
async def get_order(request: Request, order_id: str) -> Response:
    participant = caller(request, TRADER)
    record = _own_order(exchange_of(request), participant.participant_id, order_id)
    return json_response(order_view(record))


@router.get(
    "/v1/orders",
    summary="Your orders, newest first",
    responses={200: {"model": OrdersPage}, **error_responses(401, 403, 422, 429)},
)
async def list_orders(
    request: Request,
    symbol: str | None = Query(default=None, max_length=32),
    status: str = Query(default="open", pattern="^(open|all)$"),
    limit: int = Query(default=100, ge=1, le=1_000),
    cursor: str | None = Query(default=None, max_length=64),
) -> Response:
    participant = caller(request, TRADER)
    core = exchange_of(request).core
    before = decode_cursor(cursor)
    ids = core.orders_by_participant.get(participant.participant_id, [])
    matching = (
        core.orders[order_id] for order_id in reversed(ids) if before is None or order_id < before
    )
    wanted = (
        record
        for record in matching
        if (symbol is None or record.symbol == symbol)
        and (status == "all" or record.status.is_open)
    )
    page, next_cursor = take_page(wanted, limit, lambda record: record.order_id)
    return json_response({"orders": [order_view(r) for r in page], "next_cursor": next_cursor})


@router.get(
    "/v1/fills",
    summary="Your fills, newest first",
    responses={200: {"model": FillsPage}, **error_responses(401, 403, 422, 429)},
)
async def list_fills(
    request: Request,
    symbol: str | None = Query(default=None, max_length=32),
    limit: int = Query(default=100, ge=1, le=1_000),
    cursor: str | None = Query(default=None, max_length=64),
) -> Response:
    participant = caller(request, TRADER)
    before = decode_cursor(cursor)
    from_ledger = await _ledger_fills(request, participant.participant_id, symbol, limit, before)
    if from_ledger is not None:
        return json_response(from_ledger)
    # The ledger is down or behind: the core remembers every fill too, and says the same.
    core = exchange_of(request).core
    fills = core.fills_by_participant.get(participant.participant_id, [])
    wanted = (
        (trade_id, core.orders[order_id])
        for trade_id, order_id in reversed(fills)
        if (before is None or trade_id < before)
        and (symbol is None or core.orders[order_id].symbol == symbol)
    )
    page, next_cursor = take_page(wanted, limit, lambda item: item[0])
    return json_response(
        {
            "fills": [_fill_view(_remembered_fill(*item)) for item in page],
            "next_cursor": next_cursor,
        }
    )


LEDGER_WAIT_SECONDS = 0.5  # fills: after that, the in-memory registry answers instead
# Statements and audit exports have no other source and are not latency-critical: give a
# ledger that is busy (or just started, catching up from the journal) time to get there.
RECORD_WAIT_SECONDS = 5.0
LEDGER_POLL_SECONDS = 0.01


async def ledger_caught_up(request: Request, timeout: float) -> bool:
    """Wait (briefly) until the ledger holds every command applied when the request came in,
    so an answer never misses what the caller was already told."""
    ledger: Ledger = request.app.state.ledger
    target = exchange_of(request).core.last_sequence
    deadline = time.monotonic() + timeout
    while await run_in_threadpool(ledger.last_applied_sequence) < target:
        if time.monotonic() >= deadline:
            return False
        await asyncio.sleep(LEDGER_POLL_SECONDS)
    return True


async def _ledger_fills(
    request: Request, participant_id: int, symbol: str | None, limit: int, before: int | None
) -> dict[str, Any] | None:
    """Fills as the clearing ledger records them, once it has caught up with what this caller
    may just have been told; None when it cannot answer now."""
    ledger: Ledger = request.app.state.ledger
    try:
        if not await ledger_caught_up(request, LEDGER_WAIT_SECONDS):
            return None
        page = await run_in_threadpool(ledger.fills, participant_id, symbol, limit, before)
    except SQLAlchemyError:
        return None
    return {
        "fills": [_fill_view(fill) for fill in page.fills],
        "next_cursor": None if page.next_cursor is None else encode_cursor(page.next_cursor),
    }


STATEMENT_COLUMNS = (
    "transfer_id",
    "sequence",
    "time",
    "code",
    "asset",
    "reference_id",
    "available_change",
    "reserved_change",
    "available",
    "reserved",
)


@router.get(
    "/v1/account/statement",
    summary="Every custody movement of yours in a period, with running balances (JSON or CSV)",
    description="From the clearing ledger. `start`/`end` are RFC 3339 or epoch nanoseconds "
    "(default: everything). `Accept: text/csv` (or `format=csv`) answers CSV.",
    responses={
        200: {
            "model": StatementOut,
            "content": {"text/csv": {"schema": {"type": "string"}}},
        },
        **error_responses(401, 403, 422, 429, 503),
    },
)
async def statement(
    request: Request,
    start: str | None = Query(default=None, max_length=40),
    end: str | None = Query(default=None, max_length=40),
    format: str | None = Query(default=None, pattern="^(json|csv)$"),
) -> Response:
    participant = caller(request, TRADER)
    start_ns = parse_time_bound(start, "start")
    end_ns = parse_time_bound(end, "end")
    start_ns = 0 if start_ns is None else start_ns
    end_ns = 2**63 - 1 if end_ns is None else end_ns
    if start_ns > end_ns:
        raise ApiError("INVALID_REQUEST", "start must not be after end")
    ledger: Ledger = request.app.state.ledger
    try:
        await ledger_caught_up(request, RECORD_WAIT_SECONDS)
        as_of = await run_in_threadpool(ledger.last_applied_sequence)
        found = await run_in_threadpool(
            ledger.statement, participant.participant_id, start_ns, end_ns
        )
    except SQLAlchemyError as error:
        raise ApiError("LEDGER_UNAVAILABLE", "the clearing ledger is unreachable", 503) from error
    lines = [
        {
            "transfer_id": str(line.transfer_id),
            "sequence": line.sequence,
            "time": rfc3339(line.time_ns),
            "code": line.code,
            "asset": line.asset,
            # A transfer between shards is referenced by its own transfer id, a string.
            "reference_id": line.shard_transfer_id or str(line.reference_id),
            "available_change": line.available_change,
            "reserved_change": line.reserved_change,
            "available": line.available,
            "reserved": line.reserved,
        }
        for line in found.lines
    ]
    wants_csv = format == "csv" or (
        format is None and "text/csv" in request.headers.get("accept", "")
    )
    if wants_csv:
        return _csv(lines)
    return json_response(
        {
            "participant_id": participant.participant_id,
            "start": rfc3339(start_ns) if start is not None else None,
            "end": rfc3339(end_ns) if end is not None else None,
            "as_of_sequence": as_of,
            "opening": _balances_view(found.opening),
            "closing": _balances_view(found.closing),
            "lines": lines,
            "truncated": found.truncated,
        }
    )


def _balances_view(balances: dict[str, tuple[int, int]]) -> list[dict[str, Any]]:
    return [
        {"asset": asset, "available": available, "reserved": reserved}
        for asset, (available, reserved) in sorted(balances.items())
    ]


def _csv(lines: list[dict[str, Any]]) -> Response:
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=STATEMENT_COLUMNS, lineterminator="\n")
    writer.writeheader()
    writer.writerows(lines)
    return Response(out.getvalue(), media_type="text/csv")


def _remembered_fill(trade_id: int, record: OrderRecord) -> FillRow:
    """One fill as the core remembers it, in the ledger's shape."""
    fill = next(f for f in record.fills or () if f.trade_id == trade_id)
    return FillRow(
        trade_id,
        record.order_id,
        record.symbol,
        record.side.value,
        fill.price,
        fill.quantity,
        fill.liquidity.value,
        fill.fee_vnd,
        fill.sequence,
        fill.time_ns,
    )


def _fill_view(fill: FillRow) -> dict[str, Any]:
    return {
        "trade_id": str(fill.trade_id),
        "order_id": str(fill.order_id),
        "symbol": fill.symbol,
        "side": fill.side,
        "price": fill.price,
        "quantity": fill.quantity,
        "liquidity": fill.liquidity,
        "fee_vnd": fill.fee_vnd,
        "time": rfc3339(fill.time_ns),
        "sequence": fill.sequence,
    }


@router.get(
    "/v1/account",
    summary="Your balances: available and reserved, per asset",
    responses={200: {"model": AccountOut}, **error_responses(401, 403, 429)},
)
async def account(request: Request) -> Response:
    participant = caller(request, TRADER)
    balances = exchange_of(request).core.accounts.balances_of(participant.participant_id)
    return json_response(
        {
            "participant_id": participant.participant_id,
            "balances": [
                {"asset": asset, "available": available, "reserved": reserved}
                for asset, available, reserved in balances
            ],
        }
    )
