"""hogx's matching engine: pure, deterministic price-time order books with no I/O and no clock."""

from matching_engine.auction import AuctionPrice
from matching_engine.engine import BookState, EngineState, MatchingEngine
from matching_engine.enums import CancelReason, OrderType, RejectCode, Side, TimeInForce
from matching_engine.events import (
    AmendRejected,
    BookLevelChanged,
    CancelRejected,
    EngineEvent,
    OrderAccepted,
    OrderAmended,
    OrderCancelled,
    OrderExpired,
    OrderRejected,
    Trade,
)
from matching_engine.ids import IdCounters
from matching_engine.implementation import BOOK_IMPLEMENTATION, OrderBook
from matching_engine.orders import Order, OrderRequest
from matching_engine.rules import BookRules

__all__ = [
    "BOOK_IMPLEMENTATION",
    "AmendRejected",
    "AuctionPrice",
    "BookLevelChanged",
    "BookRules",
    "BookState",
    "CancelReason",
    "CancelRejected",
    "EngineEvent",
    "EngineState",
    "IdCounters",
    "MatchingEngine",
    "Order",
    "OrderAccepted",
    "OrderAmended",
    "OrderBook",
    "OrderCancelled",
    "OrderExpired",
    "OrderRejected",
    "OrderRequest",
    "OrderType",
    "RejectCode",
    "Side",
    "TimeInForce",
    "Trade",
]
