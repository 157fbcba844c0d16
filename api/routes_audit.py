"""Regulator routes (role `regulator`, read-only): trades with both sides, the journal itself,
and the proof that the journal was not altered."""

from __future__ import annotations

import asyncio
import csv
import functools
import io
from collections.abc import AsyncIterator
from typing import Any

import msgspec
from fastapi import APIRouter, Query
from sqlalchemy.exc import SQLAlchemyError
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse

from api.common import (
    LAST_TIME_NS,
    caller,
    decode_cursor,
    encode_cursor,
    error_responses,
    exchange_of,
    json_response,
    parse_order_id,
    time_range,
)
from api.errors import ApiError
from api.routes_trading import RECORD_WAIT_SECONDS, ledger_caught_up
from api.schemas import (
    AuditEventsOut,
    AuditOrderOut,
    AuditTradesOut,
    DayHeadsOut,
    PastBookOut,
    VerifyOut,
)
from clearing.ledger import Ledger
from exchange.commands import Command, decode_command
from exchange.heads import DailyHeads
from exchange.journal import verify
from exchange.participants import Role
from exchange.snapshots import journal_dir
from exchange.times import rfc3339
from exchange.timetravel import BookHistory, NotListedThen, PastBook

router = APIRouter(tags=["audit"])
REGULATOR = Role.REGULATOR
CSV_PAGE_ROWS = 5_000
MAX_SEQUENCE = 2**62
TRADE_COLUMNS = (
    "trade_id",
    "sequence",
    "time",
    "symbol",
    "price",
    "quantity",
    "notional_vnd",
    "aggressor_side",
    "buyer_participant_id",
    "buy_order_id",
    "seller_participant_id",
    "sell_order_id",
    "buyer_fee_vnd",
    "seller_fee_vnd",
)


def _trade_view(row: dict[str, Any]) -> dict[str, Any]:
    return {
        "trade_id": str(row["trade_id"]),
        "sequence": row["sequence"],
        "time": rfc3339(row["time_ns"]),
        "symbol": row["symbol"],
        "price": row["price"],
        "quantity": row["quantity"],
        "notional_vnd": row["notional_vnd"],
        "aggressor_side": row["aggressor_side"],
        "buyer_participant_id": row["buyer_id"],
        "buy_order_id": str(row["buy_order_id"]),
        "seller_participant_id": row["seller_id"],
        "sell_order_id": str(row["sell_order_id"]),
        "buyer_fee_vnd": row["buyer_fee_vnd"],
        "seller_fee_vnd": row["seller_fee_vnd"],
    }


@router.get(
    "/v1/audit/trades",
    summary="Every trade with both sides, oldest first; CSV streams any number of rows",
    description="Filters: symbol, participant (either side), time range [start, end), sequence "
    "range. `Accept: text/csv` or `format=csv` streams every matching trade as CSV, a page of "
    "rows at a time, so memory stays flat whatever the size of the export.",
    responses={
        200: {"model": AuditTradesOut, "content": {"text/csv": {"schema": {"type": "string"}}}},
        **error_responses(401, 403, 422, 429, 503),
    },
)
async def audit_trades(
    request: Request,
    symbol: str | None = Query(default=None, max_length=32),
    participant_id: int | None = Query(default=None, ge=0, le=2**31),
    start: str | None = Query(default=None, max_length=40),
    end: str | None = Query(default=None, max_length=40),
    from_sequence: int = Query(default=0, ge=0, le=MAX_SEQUENCE),
    to_sequence: int = Query(default=MAX_SEQUENCE, ge=0, le=MAX_SEQUENCE),
    limit: int = Query(default=100, ge=1, le=1_000),
    cursor: str | None = Query(default=None, max_length=64),
    format: str | None = Query(default=None, pattern="^(json|csv)$"),
) -> Response:
    caller(request, REGULATOR)
    start_ns, end_ns = time_range(start, end)
    if from_sequence > to_sequence:
        raise ApiError("INVALID_REQUEST", "from_sequence must not be after to_sequence")
    filters: dict[str, Any] = {
        "symbol": symbol,
        "participant_id": participant_id,
        "start_ns": 0 if start_ns is None else start_ns,
        "end_ns": LAST_TIME_NS if end_ns is None else end_ns,
        "from_sequence": from_sequence,
        "to_sequence": to_sequence,
    }
    ledger: Ledger = request.app.state.ledger
    after = decode_cursor(cursor) or 0
    try:
        if not await ledger_caught_up(request, RECORD_WAIT_SECONDS):
            # A regulator's answer must be complete: say so rather than omit recent trades.
            raise ApiError(
                "LEDGER_BEHIND",
                "the clearing ledger is still catching up with the journal; retry shortly",
                503,
                headers={"Retry-After": "1"},
            )
        if format == "csv" or (format is None and "text/csv" in request.headers.get("accept", "")):
            first = await run_in_threadpool(
                lambda: ledger.audit_trades(**filters, after_trade_id=after, limit=CSV_PAGE_ROWS)
            )
            return StreamingResponse(_csv_pages(ledger, filters, first), media_type="text/csv")
        rows = await run_in_threadpool(
            lambda: ledger.audit_trades(**filters, after_trade_id=after, limit=limit + 1)
        )
    except SQLAlchemyError as error:
        raise ApiError("LEDGER_UNAVAILABLE", "the clearing ledger is unreachable", 503) from error
    page = rows[:limit]
    more = len(rows) > limit
    return json_response(
        {
            "trades": [_trade_view(row) for row in page],
            "next_cursor": encode_cursor(page[-1]["trade_id"]) if more else None,
        }
    )


def _csv_row(row: dict[str, Any]) -> tuple[Any, ...]:
    """`_trade_view`'s fields in `TRADE_COLUMNS` order, without building the dict."""
    return (
        row["trade_id"],
        row["sequence"],
        rfc3339(row["time_ns"]),
        row["symbol"],
        row["price"],
        row["quantity"],
        row["notional_vnd"],
        row["aggressor_side"],
        row["buyer_id"],
        row["buy_order_id"],
        row["seller_id"],
        row["sell_order_id"],
        row["buyer_fee_vnd"],
        row["seller_fee_vnd"],
    )


async def _csv_pages(
    ledger: Ledger, filters: dict[str, Any], first: list[dict[str, Any]]
) -> AsyncIterator[str]:
    """The header, then page after page of rows (keyset paging on trade_id)."""
    yield ",".join(TRADE_COLUMNS) + "\n"
    rows = first
    while rows:
        out = io.StringIO()
        writer = csv.writer(out, lineterminator="\n")
        writer.writerows(_csv_row(row) for row in rows)
        yield out.getvalue()
        if len(rows) < CSV_PAGE_ROWS:
            return
        rows = await run_in_threadpool(
            functools.partial(
                ledger.audit_trades,
                **filters,
                after_trade_id=rows[-1]["trade_id"],
                limit=CSV_PAGE_ROWS,
            )
        )


@router.get(
    "/v1/audit/events",
    summary="The journal itself, in order: every command with its sequence, time and hash",
    responses={200: {"model": AuditEventsOut}, **error_responses(401, 403, 422, 429, 503)},
)
async def audit_events(
    request: Request,
    from_sequence: int = Query(default=1, ge=1, le=MAX_SEQUENCE),
    limit: int = Query(default=100, ge=1, le=1_000),
) -> Response:
    caller(request, REGULATOR)
    exchange = exchange_of(request)
    records = await exchange.journal_records(from_sequence, limit)
    events = [
        {
            "sequence": record.sequence,
            "time": rfc3339(record.time_ns),
            "time_ns": record.time_ns,
            "hash": record.hash.hex(),
            "command": _command_view(decode_command(record.payload)),
        }
        for record in records
    ]
    last = records[-1].sequence if records else from_sequence - 1
    more = last < exchange.core.last_sequence
    return json_response({"events": events, "next_from_sequence": last + 1 if more else None})


@router.get(
    "/v1/audit/orders/{order_id}",
    summary="An order's whole life: every event with its sequence, time and command",
    responses={200: {"model": AuditOrderOut}, **error_responses(401, 403, 404, 429)},
)
async def audit_order(request: Request, order_id: str) -> Response:
    caller(request, REGULATOR)
    exchange = exchange_of(request)
    number = parse_order_id(order_id, whose="")
    history = exchange.audit.history(number)
    record = exchange.core.orders.get(number)
    if history is None or record is None:
        raise ApiError("ORDER_NOT_FOUND", f"no order {order_id[:40]}")
    return json_response(
        {
            "order_id": str(number),
            "participant_id": record.participant_id,
            "symbol": record.symbol,
            "client_order_id": record.client_order_id,
            "status": record.status.value,
            "events": [
                {
                    "sequence": entry.sequence,
                    "time": rfc3339(entry.time_ns),
                    "time_ns": entry.time_ns,
                    "kind": entry.kind,
                    "command": entry.command,
                    "details": entry.details,
                }
                for entry in history
            ],
        }
    )


def _command_view(command: Command) -> dict[str, Any]:
    """A command as an object with named fields (the journal stores them as arrays)."""
    fields = msgspec.to_builtins(msgspec.structs.asdict(command))
    return {"type": command.__struct_config__.tag, **fields}


@router.get(
    "/v1/audit/verify",
    summary="Recompute the journal's hash chain; names the first bad sequence",
    description="Optionally checks the journal against a head hash kept outside the exchange "
    "earlier (`anchor_sequence` and `anchor_hash`, hex).",
    responses={200: {"model": VerifyOut}, **error_responses(401, 403, 422, 429)},
)
async def audit_verify(
    request: Request,
    anchor_sequence: int | None = Query(default=None, ge=1, le=MAX_SEQUENCE),
    anchor_hash: str | None = Query(default=None, pattern="^[0-9a-f]{64}$"),
) -> Response:
    caller(request, REGULATOR)
    if (anchor_sequence is None) != (anchor_hash is None):
        raise ApiError("INVALID_REQUEST", "give both anchor_sequence and anchor_hash, or neither")
    anchor = None
    if anchor_sequence is not None and anchor_hash is not None:
        anchor = (anchor_sequence, bytes.fromhex(anchor_hash))
    exchange = exchange_of(request)
    durable = exchange.core.last_sequence
    # A whole-journal scan: on a thread of its own, never on the journal's or the loop's.
    report = await asyncio.to_thread(
        verify, journal_dir(exchange.data_dir), anchor=anchor, durable_through=durable
    )
    return json_response(
        {
            "ok": report.ok,
            "records": report.records,
            "last_sequence": report.last_sequence,
            "head_hash": report.head_hash,
            "first_bad_sequence": report.first_bad_sequence,
            "message": report.message,
        }
    )


@router.get(
    "/v1/audit/book",
    summary="The order book as it stood after any sequence number, rebuilt by replay",
    description="Replays the journal from the nearest snapshot at or below `sequence` (or from "
    "the start) through the same core the live market ran, so it is exactly what traders saw "
    "after that record. `orders=true` adds the resting orders behind the levels, with their "
    "participants, in priority order.",
    responses={200: {"model": PastBookOut}, **error_responses(400, 401, 403, 404, 422, 429)},
)
async def audit_book(
    request: Request,
    symbol: str = Query(max_length=32),
    sequence: int = Query(ge=0, le=MAX_SEQUENCE),
    depth: int = Query(default=10, ge=1, le=1_000),
    orders: bool = Query(default=False),
) -> Response:
    caller(request, REGULATOR)
    exchange = exchange_of(request)
    if sequence > exchange.core.last_sequence:
        raise ApiError(
            "SEQUENCE_NOT_REACHED",
            f"sequence {sequence} is after the last one, {exchange.core.last_sequence}",
        )
    history: BookHistory = request.app.state.book_history
    try:
        past = await history.book_at(symbol, sequence, depth, orders)
    except NotListedThen:
        raise ApiError(
            "UNKNOWN_INSTRUMENT", f"{symbol[:40]!r} was not listed at sequence {sequence}", 404
        ) from None
    return json_response(_past_book_view(past))


def _past_book_view(past: PastBook) -> dict[str, Any]:
    def orders(rows: list[tuple[int, int, int, int]]) -> list[dict[str, Any]]:
        return [
            {
                "order_id": str(order_id),
                "participant_id": participant_id,
                "price": price,
                "remaining_quantity": remaining,
            }
            for order_id, participant_id, price, remaining in rows
        ]

    return {
        "symbol": past.symbol,
        "sequence": past.sequence,
        "time": rfc3339(past.time_ns),
        "halted": past.halted,
        "bids": [list(level) for level in past.bids],
        "asks": [list(level) for level in past.asks],
        "bid_orders": orders(past.bid_orders),
        "ask_orders": orders(past.ask_orders),
    }


@router.get(
    "/v1/audit/heads",
    summary="The journal's published head hash at the end of each trading day",
    description="One entry per Vietnam (UTC+7) day with records, published once the day is "
    "over. Keep them outside the exchange; `GET /v1/audit/verify?anchor_sequence=&anchor_hash=` "
    "later proves the journal still agrees with any of them.",
    responses={200: {"model": DayHeadsOut}, **error_responses(401, 403, 422, 429)},
)
async def audit_heads(
    request: Request,
    from_date: str | None = Query(default=None, pattern=r"^\d{4}-\d{2}-\d{2}$"),
    to_date: str | None = Query(default=None, pattern=r"^\d{4}-\d{2}-\d{2}$"),
) -> Response:
    caller(request, REGULATOR)
    heads: DailyHeads = request.app.state.daily_heads
    return json_response(
        {
            "heads": [
                {
                    "date": head.date,
                    "first_sequence": head.first_sequence,
                    "last_sequence": head.last_sequence,
                    "records": head.records,
                    "head_hash": head.head_hash,
                    "time": rfc3339(head.time_ns),
                }
                for head in heads.heads
                if (from_date is None or head.date >= from_date)
                and (to_date is None or head.date <= to_date)
            ]
        }
    )
