"""How the exchange's records look on the wire (JSON-ready dicts, RFC 3339 UTC times)."""

from __future__ import annotations

from typing import Any

import msgspec

from exchange.core import ExchangeCore
from exchange.instruments import Instrument
from exchange.marketdata import Candle, PublicTrade
from exchange.orders import OrderRecord
from exchange.times import rfc3339

__all__ = ["candle_view", "instrument_view", "order_view", "public_trade_view", "rfc3339"]


def order_view(record: OrderRecord, sequence: int | None = None) -> dict[str, Any]:
    return {
        "order_id": str(record.order_id),
        "client_order_id": record.client_order_id,
        "symbol": record.symbol,
        "side": record.side.value,
        "type": record.order_type.value,
        "price": record.price,
        "quantity": record.quantity,
        "filled_quantity": record.filled_quantity,
        "remaining_quantity": record.remaining_quantity,
        "status": record.status.value,
        "cancel_reason": record.cancel_reason,
        "time_in_force": record.time_in_force.value,
        "post_only": record.post_only,
        "all_or_none": record.all_or_none,
        "created_at": rfc3339(record.created_time_ns),
        "sequence": record.updated_sequence if sequence is None else sequence,
        "trades": [
            {
                "trade_id": str(fill.trade_id),
                "price": fill.price,
                "quantity": fill.quantity,
                "liquidity": fill.liquidity.value,
                "fee_vnd": fill.fee_vnd,
                "time": rfc3339(fill.time_ns),
            }
            for fill in record.fills or ()
        ],
    }


def instrument_view(instrument: Instrument, core: ExchangeCore) -> dict[str, Any]:
    market = core.markets[instrument.symbol]
    rules = market.book.rules  # the reference price moves with each settlement price
    session = market.session
    return {
        "symbol": instrument.symbol,
        "name": instrument.name,
        "kind": instrument.kind.value,
        "price_unit": instrument.price_unit,
        "lot_size": instrument.lot_size,
        "tick_size": instrument.tick_size,
        "reference_price": rules.reference_price,
        "price_band_pct": instrument.price_band_pct,
        "band_low": rules.band_low,
        "band_high": rules.band_high,
        "maker_fee_bps": instrument.maker_fee_bps,
        "taker_fee_bps": instrument.taker_fee_bps,
        "max_order_quantity": instrument.max_order_quantity,
        "attributes": dict(instrument.attributes),
        "status": "halted" if instrument.symbol in core.halted else "open",
        "session": session.session.value,
        "reopen_at": rfc3339(session.reopen_at_ns) if session.reopen_at_ns else None,
        "timetable": msgspec.to_builtins(instrument.timetable),
        "circuit_breaker": msgspec.to_builtins(instrument.circuit_breaker),
        "settlement_window_s": instrument.settlement_window_s,
    }


def public_trade_view(trade: PublicTrade) -> dict[str, Any]:
    return {
        "trade_id": str(trade.trade_id),
        "price": trade.price,
        "quantity": trade.quantity,
        "aggressor_side": trade.aggressor_side.value,
        "time": rfc3339(trade.time_ns),
        "sequence": trade.sequence,
    }


def candle_view(candle: Candle) -> dict[str, Any]:
    return {
        "time": rfc3339(candle.start_ns),
        "open": candle.open,
        "high": candle.high,
        "low": candle.low,
        "close": candle.close,
        "volume": candle.volume,
    }
