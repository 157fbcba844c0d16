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
    caller,
    decode_cursor,
    encode_cursor,
    error_responses,
    exchange_of,
    json_response,
    parse_order_id,
    parse_time_ns,
)
from api.errors import ApiError
from api.routes_trading import LEDGER_WAIT_SECONDS, ledger_caught_up
from api.schemas import AuditEventsOut, AuditOrderOut, AuditTradesOut, VerifyOut
from clearing.ledger import Ledger
from exchange.commands import Command, decode_command
from exchange.journal import verify
from exchange.participants import Role
from exchange.snapshots import journal_dir
from exchange.times import rfc3339

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
    start_ns = parse_time_ns(start, "start")
    end_ns = parse_time_ns(end, "end")
    filters: dict[str, Any] = {
        "symbol": symbol,
        "participant_id": participant_id,
        "start_ns": 0 if start_ns is None else start_ns,
        "end_ns": MAX_SEQUENCE if end_ns is None else end_ns,
        "from_sequence": from_sequence,
        "to_sequence": to_sequence,
    }
    ledger: Ledger = request.app.state.ledger
    after = decode_cursor(cursor) or 0
    try:
        await ledger_caught_up(request, LEDGER_WAIT_SECONDS)
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


async def _csv_pages(
    ledger: Ledger, filters: dict[str, Any], first: list[dict[str, Any]]
) -> AsyncIterator[str]:
    """The header, then page after page of rows (keyset paging on trade_id)."""
    yield ",".join(TRADE_COLUMNS) + "\n"
    rows = first
    while rows:
        out = io.StringIO()
        writer = csv.DictWriter(out, fieldnames=TRADE_COLUMNS, lineterminator="\n")
        writer.writerows(_trade_view(row) for row in rows)
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
    number = parse_order_id(order_id)
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
