"""Public market data: instruments, books, trades, tickers and candles. No key needed."""

from __future__ import annotations

import time

from fastapi import APIRouter, Query
from sqlalchemy.exc import SQLAlchemyError
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response

from api.common import (
    decode_cursor,
    error_responses,
    exchange_of,
    json_response,
    parse_time_bound,
    take_page,
)
from api.errors import ApiError
from api.schemas import BookOut, CandlesOut, InstrumentOut, InstrumentsOut, TickerOut, TradesOut
from api.views import candle_view, instrument_view, public_trade_view
from clearing.ledger import Ledger
from exchange.candles import history_candles
from exchange.instruments import Instrument
from exchange.marketdata import INTERVALS_NS
from matching_engine import OrderBook, Side

router = APIRouter(tags=["market data"])
MAX_CANDLE_SPAN = 10_000  # candles per request


def _book(request: Request, symbol: str) -> OrderBook:
    book = exchange_of(request).core.engine.book(symbol)
    if book is None:
        raise ApiError("UNKNOWN_INSTRUMENT", f"no instrument {symbol[:40]!r} is listed", 404)
    return book


@router.get(
    "/v1/instruments",
    summary="Listed instruments, filtered by kind, province (exact) and OCOP stars",
    responses={200: {"model": InstrumentsOut}, **error_responses(422)},
)
async def instruments(
    request: Request,
    kind: str | None = Query(default=None, pattern="^(live_hog|ocop)$"),
    province: str | None = Query(
        default=None, min_length=1, max_length=200, description="exact `province` attribute"
    ),
    stars: int | None = Query(default=None, ge=1, le=5, description="OCOP star rating"),
    limit: int = Query(default=100, ge=1, le=1_000),
    cursor: str | None = Query(default=None, max_length=64),
) -> Response:
    core = exchange_of(request).core
    after = decode_cursor(cursor) or 0  # the position in listing order of the last one sent
    listed = list(core.instruments.values())

    def matches(instrument: Instrument) -> bool:
        attributes = instrument.attributes
        return (
            (kind is None or instrument.kind.value == kind)
            and (province is None or attributes.get("province") == province)
            and (stars is None or attributes.get("stars") == stars)
        )

    wanted = (
        (position, listed[position - 1])
        for position in range(after + 1, len(listed) + 1)
        if matches(listed[position - 1])
    )
    page, next_cursor = take_page(wanted, limit, lambda item: item[0])
    return json_response(
        {"instruments": [instrument_view(i, core) for _, i in page], "next_cursor": next_cursor}
    )


@router.get(
    "/v1/instruments/{symbol}",
    summary="One instrument",
    responses={200: {"model": InstrumentOut}, **error_responses(404)},
)
async def instrument(request: Request, symbol: str) -> Response:
    core = exchange_of(request).core
    listed = core.instruments.get(symbol)
    if listed is None:
        raise ApiError("UNKNOWN_INSTRUMENT", f"no instrument {symbol[:40]!r} is listed", 404)
    return json_response(instrument_view(listed, core))


@router.get(
    "/v1/markets/{symbol}/book",
    summary="Aggregated order book, best first: [price, quantity, orders]",
    responses={200: {"model": BookOut}, **error_responses(404, 422)},
)
async def book(
    request: Request, symbol: str, depth: int = Query(default=10, ge=1, le=1_000)
) -> Response:
    found = _book(request, symbol)
    return json_response(
        {
            "symbol": symbol,
            "sequence": exchange_of(request).core.last_sequence,
            "bids": [list(level) for level in found.depth(Side.BUY, depth)],
            "asks": [list(level) for level in found.depth(Side.SELL, depth)],
        }
    )


@router.get(
    "/v1/markets/{symbol}/trades",
    summary="Recent trades, newest first",
    responses={200: {"model": TradesOut}, **error_responses(404, 422)},
)
async def trades(
    request: Request, symbol: str, limit: int = Query(default=100, ge=1, le=1_000)
) -> Response:
    _book(request, symbol)
    recent = exchange_of(request).market_data.recent_trades(symbol, limit)
    return json_response({"trades": [public_trade_view(t) for t in recent]})


@router.get(
    "/v1/markets/{symbol}/ticker",
    summary="Best prices, last price and today's open, high, low and volume (Vietnam day)",
    responses={200: {"model": TickerOut}, **error_responses(404)},
)
async def ticker(request: Request, symbol: str) -> Response:
    found = _book(request, symbol)
    exchange = exchange_of(request)
    day = exchange.market_data.day(symbol, time.time_ns())
    return json_response(
        {
            "symbol": symbol,
            "best_bid": found.best_bid(),
            "best_ask": found.best_ask(),
            "last_price": exchange.market_data.last_price(symbol),
            "open": day.open,
            "high": day.high,
            "low": day.low,
            "volume": day.volume,
            "sequence": exchange.core.last_sequence,
        }
    )


@router.get(
    "/v1/markets/{symbol}/candles",
    summary="OHLCV candles from trades, oldest first",
    responses={200: {"model": CandlesOut}, **error_responses(404, 422, 503)},
)
async def candles(
    request: Request,
    symbol: str,
    interval: str = Query(default="1m", pattern="^(1m|5m|1h|1d)$"),
    start: str | None = Query(default=None, max_length=40),
    end: str | None = Query(default=None, max_length=40),
) -> Response:
    _book(request, symbol)
    interval_ns = INTERVALS_NS[interval]
    end_ns = parse_time_bound(end, "end")
    start_ns = parse_time_bound(start, "start")
    if end_ns is None:
        end_ns = time.time_ns() + interval_ns
    if start_ns is None:
        start_ns = end_ns - MAX_CANDLE_SPAN * interval_ns
    if start_ns > end_ns:
        raise ApiError("INVALID_REQUEST", "start must not be after end")
    market_data = exchange_of(request).market_data
    found = market_data.candles(symbol, interval, start_ns, end_ns)
    kept_from = market_data.retained_from(symbol, interval)
    if kept_from is not None and start_ns < kept_from:
        # Older than the live projection keeps: built from the ledger's trades (numpy).
        ledger: Ledger = request.app.state.ledger
        try:
            older = await run_in_threadpool(
                history_candles, ledger, symbol, interval, start_ns, min(end_ns, kept_from)
            )
        except SQLAlchemyError as error:
            raise ApiError(
                "LEDGER_UNAVAILABLE", "candle history is read from the ledger: unreachable", 503
            ) from error
        found = older + found
    return json_response({"candles": [candle_view(c) for c in found[-MAX_CANDLE_SPAN:]]})
