"""The small vocabularies of the market: sides, order types, time in force, reasons, codes.

String enums so that they read the same in the journal, on the wire and in a test.
"""

from __future__ import annotations

from enum import StrEnum


class Side(StrEnum):
    BUY = "buy"
    SELL = "sell"

    @property
    def opposite(self) -> Side:
        return Side.SELL if self is Side.BUY else Side.BUY


class OrderType(StrEnum):
    LIMIT = "limit"
    MARKET = "market"


class TimeInForce(StrEnum):
    GTC = "gtc"  # good till cancelled
    DAY = "day"  # expires at the close of the trading day
    IOC = "ioc"  # immediate or cancel: fill what is possible now, cancel the rest
    FOK = "fok"  # fill or kill: fill everything now, or nothing at all


class CancelReason(StrEnum):
    """Why an order (or what was left of it) stopped being open."""

    REQUESTED = "REQUESTED"  # the participant (or an operator) asked for it
    IMMEDIATE_OR_CANCEL = "IMMEDIATE_OR_CANCEL"  # the unfilled part of an IOC or market order
    FILL_OR_KILL = (
        "FILL_OR_KILL"  # a FOK (or immediate all-or-none) order that could not fill whole
    )
    NO_LIQUIDITY = "NO_LIQUIDITY"  # a market order that found nothing to trade with
    SELF_TRADE = "SELF_TRADE"  # the next match would have been against the same participant
    AMENDED_BELOW_FILLED = "AMENDED_BELOW_FILLED"  # amended to a quantity already filled


class RejectCode(StrEnum):
    """Stable codes of commands the engine refuses; a rejected command changes nothing."""

    UNKNOWN_INSTRUMENT = "UNKNOWN_INSTRUMENT"
    DUPLICATE_ORDER_ID = "DUPLICATE_ORDER_ID"
    INVALID_ORDER = "INVALID_ORDER"  # contradictory fields, e.g. a market order with a price
    TICK_SIZE = "TICK_SIZE"
    LOT_SIZE = "LOT_SIZE"  # quantity not a positive whole number of lots within the limit
    PRICE_OUT_OF_BAND = "PRICE_OUT_OF_BAND"
    POST_ONLY_WOULD_TAKE = "POST_ONLY_WOULD_TAKE"
    UNKNOWN_ORDER = "UNKNOWN_ORDER"
    ORDER_NOT_OPEN = "ORDER_NOT_OPEN"
    INVALID_AMEND = "INVALID_AMEND"
    NOT_ALLOWED_IN_CALL = "NOT_ALLOWED_IN_CALL"  # ioc / fok while orders wait for an auction
