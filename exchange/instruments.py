"""Instruments: what can be traded, in which units, under which price rules and fees.

Two kinds: `live_hog` (live hogs by grade and delivery hub, priced in VND per kg of live
weight, traded in lots of `lot_size` kg) and `ocop` (One Commune One Product goods, rated
3-5 stars). Kind-specific facts (grade, hub, stars, producer, province...) live in `attributes`.
"""

from __future__ import annotations

import re
from enum import StrEnum

import msgspec

from clearing.accounts import CASH
from clearing.risk import FeeSchedule
from exchange.sessions import (
    CircuitBreaker,
    Timetable,
    circuit_breaker_problem,
    timetable_problem,
)
from matching_engine import BookRules
from matching_engine.rules import MAX_ORDER_QUANTITY_LIMIT, MAX_PRICE

SYMBOL_PATTERN = re.compile(r"[A-Z0-9][A-Z0-9-]{0,31}")
MAX_LOT_SIZE = 1_000_000
MAX_FEE_BPS = 1_000  # 10%
MAX_ATTRIBUTES = 32
MAX_ATTRIBUTE_TEXT = 200
DEFAULT_SETTLEMENT_WINDOW_S = 300
MAX_SETTLEMENT_WINDOW_S = 3600

AttributeValue = str | int | bool


class InstrumentKind(StrEnum):
    LIVE_HOG = "live_hog"
    OCOP = "ocop"


class Instrument(msgspec.Struct, frozen=True):
    symbol: str
    name: str
    kind: InstrumentKind
    lot_size: int  # price units per lot, e.g. 1,000 kg of live weight
    tick_size: int  # VND
    reference_price: int  # VND per price unit
    price_unit: str = "kg"
    price_band_pct: int = 7
    maker_fee_bps: int = 0
    taker_fee_bps: int = 0
    max_order_quantity: int = 100_000  # lots
    attributes: dict[str, AttributeValue] = {}
    # None: continuous trading at any hour; else the phases of `exchange.sessions`.
    timetable: Timetable | None = None
    circuit_breaker: CircuitBreaker | None = None  # None: no velocity halts
    settlement_window_s: int = DEFAULT_SETTLEMENT_WINDOW_S  # the VWAP's final seconds

    @property
    def book_rules(self) -> BookRules:
        return BookRules(
            self.symbol,
            self.tick_size,
            self.reference_price,
            self.price_band_pct,
            self.max_order_quantity,
        )

    @property
    def fees(self) -> FeeSchedule:
        return FeeSchedule(self.maker_fee_bps, self.taker_fee_bps)


def listing_problem(instrument: Instrument) -> str | None:
    """Why an instrument cannot be listed, as a sentence, or None when it can."""
    if not SYMBOL_PATTERN.fullmatch(instrument.symbol) or instrument.symbol == CASH:
        return "symbol must be 1-32 capital letters, digits or dashes (and not VND)"
    if not instrument.name.strip() or len(instrument.name) > MAX_ATTRIBUTE_TEXT:
        return f"name must be 1-{MAX_ATTRIBUTE_TEXT} characters"
    if not 0 < instrument.lot_size <= MAX_LOT_SIZE:
        return f"lot_size must be 1..{MAX_LOT_SIZE}"
    if not 0 < instrument.tick_size <= MAX_PRICE:
        return "tick_size must be a positive number of VND"
    if not 0 < instrument.reference_price <= MAX_PRICE:
        return "reference_price must be positive"
    if instrument.reference_price % instrument.tick_size:
        return "reference_price must be a whole number of ticks"
    if not 0 < instrument.price_band_pct <= 100:
        return "price_band_pct must be 1..100"
    if not 0 <= instrument.maker_fee_bps <= MAX_FEE_BPS:
        return f"maker_fee_bps must be 0..{MAX_FEE_BPS}"
    if not 0 <= instrument.taker_fee_bps <= MAX_FEE_BPS:
        return f"taker_fee_bps must be 0..{MAX_FEE_BPS}"
    if not 0 < instrument.max_order_quantity <= MAX_ORDER_QUANTITY_LIMIT:
        return f"max_order_quantity must be 1..{MAX_ORDER_QUANTITY_LIMIT}"
    if not instrument.price_unit.strip() or len(instrument.price_unit) > 16:
        return "price_unit must be 1-16 characters"
    if len(instrument.attributes) > MAX_ATTRIBUTES:
        return f"at most {MAX_ATTRIBUTES} attributes"
    for key, value in instrument.attributes.items():
        if not key or len(key) > 64:
            return "attribute names must be 1-64 characters"
        if isinstance(value, str) and len(value) > MAX_ATTRIBUTE_TEXT:
            return f"attribute {key!r} is longer than {MAX_ATTRIBUTE_TEXT} characters"
    if instrument.timetable is not None:
        problem = timetable_problem(instrument.timetable)
        if problem is not None:
            return problem
    if instrument.circuit_breaker is not None:
        problem = circuit_breaker_problem(instrument.circuit_breaker)
        if problem is not None:
            return problem
    if not 1 <= instrument.settlement_window_s <= MAX_SETTLEMENT_WINDOW_S:
        return f"settlement_window_s must be 1..{MAX_SETTLEMENT_WINDOW_S}"
    try:
        rules = instrument.book_rules
    except ValueError as error:
        return str(error)
    if rules.band_high * instrument.lot_size * instrument.max_order_quantity > MAX_PRICE * 10**6:
        return "price x lot size x max order quantity is too large"
    return None
