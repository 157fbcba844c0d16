"""Operator routes: register participants, list instruments, record deposits and withdrawals,
halt and resume markets. Regulators may read the participant list too."""

from __future__ import annotations

from typing import TypeVar

from fastapi import APIRouter, Query
from pydantic import BaseModel
from starlette.requests import Request
from starlette.responses import Response

from api.auth import hash_key
from api.common import (
    body_schema,
    caller,
    decode_cursor,
    error_responses,
    exchange_of,
    json_response,
    read_model,
    submit,
    take_page,
)
from api.errors import ApiError
from api.schemas import (
    HaltRequest,
    InstrumentOut,
    MarketStatusOut,
    NewInstrument,
    NewParticipant,
    ParticipantCreated,
    ParticipantsOut,
    Transfer,
    TransferOut,
)
from api.views import instrument_view
from exchange import commands as c
from exchange.demo import new_api_key
from exchange.events import (
    FundsDeposited,
    FundsWithdrawn,
    InstrumentListed,
    ParticipantRegistered,
)
from exchange.instruments import Instrument, InstrumentKind
from exchange.participants import Role
from exchange.sessions import CircuitBreaker, Timetable

router = APIRouter(tags=["operator"])
OPERATOR = Role.OPERATOR
M = TypeVar("M", bound=BaseModel)


async def _read(request: Request, model: type[M]) -> M:
    body = await read_model(request, model)
    assert body is not None
    return body


@router.post(
    "/v1/admin/participants",
    status_code=201,
    openapi_extra=body_schema(NewParticipant),
    summary="Register a participant; the API key is shown once",
    responses={
        201: {"model": ParticipantCreated},
        **error_responses(400, 401, 403, 413, 422, 429, 503),
    },
)
async def register_participant(request: Request) -> Response:
    operator = caller(request, OPERATOR)
    body = await _read(request, NewParticipant)
    api_key = new_api_key()
    result = await submit(
        exchange_of(request),
        c.RegisterParticipant(
            body.name, Role(body.role), hash_key(api_key), operator.participant_id
        ),
    )
    registered = result.events[0]
    assert isinstance(registered, ParticipantRegistered)
    return json_response(
        {
            "participant_id": registered.participant_id,
            "name": registered.name,
            "role": registered.role.value,
            "api_key": api_key,
        },
        201,
    )


@router.get(
    "/v1/admin/participants",
    summary="Every participant (no keys)",
    responses={200: {"model": ParticipantsOut}, **error_responses(401, 403, 422, 429)},
)
async def list_participants(
    request: Request,
    limit: int = Query(default=100, ge=1, le=1_000),
    cursor: str | None = Query(default=None, max_length=64),
) -> Response:
    caller(request, OPERATOR, Role.REGULATOR)
    after = decode_cursor(cursor) or 0
    participants = exchange_of(request).core.participants
    # By id: on a shard other than the home shard, ids arrive as the home shard gave them out,
    # not necessarily in order or without gaps.
    wanted = (participants[i] for i in sorted(participants) if i > after)
    page, next_cursor = take_page(wanted, limit, lambda p: p.participant_id)
    return json_response(
        {
            "participants": [
                {"participant_id": p.participant_id, "name": p.name, "role": p.role.value}
                for p in page
            ],
            "next_cursor": next_cursor,
        }
    )


@router.post(
    "/v1/admin/instruments",
    status_code=201,
    openapi_extra=body_schema(NewInstrument),
    summary="List an instrument; it trades continuously at once",
    responses={
        201: {"model": InstrumentOut},
        **error_responses(400, 401, 403, 413, 422, 429, 503),
    },
)
async def list_instrument(request: Request) -> Response:
    operator = caller(request, OPERATOR)
    body = await _read(request, NewInstrument)
    instrument = Instrument(
        symbol=body.symbol,
        name=body.name,
        kind=InstrumentKind(body.kind),
        lot_size=body.lot_size,
        tick_size=body.tick_size,
        reference_price=body.reference_price,
        price_unit=body.price_unit,
        price_band_pct=body.price_band_pct,
        maker_fee_bps=body.maker_fee_bps,
        taker_fee_bps=body.taker_fee_bps,
        max_order_quantity=body.max_order_quantity,
        attributes=dict(body.attributes),
        timetable=None if body.timetable is None else Timetable(**body.timetable.model_dump()),
        circuit_breaker=(
            None
            if body.circuit_breaker is None
            else CircuitBreaker(**body.circuit_breaker.model_dump())
        ),
        settlement_window_s=body.settlement_window_s,
    )
    result = await submit(
        exchange_of(request), c.ListInstrument(instrument, operator.participant_id)
    )
    listed = result.events[0]
    assert isinstance(listed, InstrumentListed)
    return json_response(instrument_view(listed.instrument, exchange_of(request).core), 201)


async def _transfer(request: Request, command: c.Deposit | c.Withdraw) -> Response:
    result = await submit(exchange_of(request), command)
    moved = result.events[0]
    assert isinstance(moved, FundsDeposited | FundsWithdrawn)
    return json_response(
        {
            "participant_id": moved.participant_id,
            "asset": moved.asset,
            "amount": moved.amount,
            "available": moved.available,
            "sequence": result.sequence,
        },
        201,
    )


@router.post(
    "/v1/admin/deposits",
    status_code=201,
    openapi_extra=body_schema(Transfer),
    summary="Record cash (VND) or goods (lots of a symbol) delivered into custody",
    responses={
        201: {"model": TransferOut},
        **error_responses(400, 401, 403, 413, 422, 429, 503),
    },
)
async def deposit(request: Request) -> Response:
    operator = caller(request, OPERATOR)
    body = await _read(request, Transfer)
    return await _transfer(
        request, c.Deposit(body.participant_id, body.asset, body.amount, operator.participant_id)
    )


@router.post(
    "/v1/admin/withdrawals",
    status_code=201,
    openapi_extra=body_schema(Transfer),
    summary="Record cash or goods leaving custody; never below what is reserved",
    responses={
        201: {"model": TransferOut},
        **error_responses(400, 401, 403, 413, 422, 429, 503),
    },
)
async def withdraw(request: Request) -> Response:
    operator = caller(request, OPERATOR)
    body = await _read(request, Transfer)
    return await _transfer(
        request, c.Withdraw(body.participant_id, body.asset, body.amount, operator.participant_id)
    )


def _market_status(request: Request, symbol: str, sequence: int) -> Response:
    reason = exchange_of(request).core.halted.get(symbol)
    return json_response(
        {
            "symbol": symbol,
            "status": "open" if reason is None else "halted",
            "reason": reason,
            "sequence": sequence,
        }
    )


def _listed(request: Request, symbol: str) -> str:
    if symbol not in exchange_of(request).core.instruments:
        raise ApiError("UNKNOWN_INSTRUMENT", f"no instrument {symbol[:40]!r} is listed", 404)
    return symbol


@router.post(
    "/v1/admin/markets/{symbol}/halt",
    openapi_extra=body_schema(HaltRequest, required=False),
    summary="Halt a market: only cancels are accepted until it resumes",
    responses={
        200: {"model": MarketStatusOut},
        **error_responses(401, 403, 404, 413, 422, 429, 503),
    },
)
async def halt(request: Request, symbol: str) -> Response:
    operator = caller(request, OPERATOR)
    body = await read_model(request, HaltRequest, optional=True)
    reason = body.reason if body is not None else ""
    command = c.HaltMarket(_listed(request, symbol), reason, operator.participant_id)
    result = await submit(exchange_of(request), command)
    return _market_status(request, symbol, result.sequence)


@router.post(
    "/v1/admin/markets/{symbol}/resume",
    summary="Resume a halted market (not one whose OCOP certificate expired)",
    responses={
        200: {"model": MarketStatusOut},
        **error_responses(400, 401, 403, 404, 429, 503),
    },
)
async def resume(request: Request, symbol: str) -> Response:
    operator = caller(request, OPERATOR)
    command = c.ResumeMarket(_listed(request, symbol), operator.participant_id)
    result = await submit(exchange_of(request), command)
    return _market_status(request, symbol, result.sequence)
