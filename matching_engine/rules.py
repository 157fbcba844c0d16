"""The price and quantity rules one order book enforces: tick size, price band, order size.

Every price rule of the book lives here, so a reader finds them in one place. All arithmetic
is on integers (whole VND per price unit, whole lots).
"""

from __future__ import annotations

import msgspec

from matching_engine.enums import RejectCode

MAX_ORDER_QUANTITY_LIMIT = 1_000_000_000
MAX_PRICE = 10**12


class BookRules(msgspec.Struct, frozen=True, gc=False):
    """Static rules of one instrument's book.

    The band is `reference_price` +/- `price_band_pct` percent, rounded inwards to whole ticks:
    no limit order may be priced outside it, and market orders stop at its edge.
    """

    symbol: str
    tick_size: int
    reference_price: int
    price_band_pct: int = 7
    max_order_quantity: int = 100_000

    def __post_init__(self) -> None:
        if not self.symbol:
            raise ValueError("symbol must not be empty")
        if not 0 < self.tick_size <= MAX_PRICE:
            raise ValueError(f"tick_size must be a positive integer, got {self.tick_size}")
        if not 0 < self.reference_price <= MAX_PRICE:
            raise ValueError(f"reference_price must be positive, got {self.reference_price}")
        if self.reference_price % self.tick_size:
            raise ValueError("reference_price must be a whole number of ticks")
        if not 0 < self.price_band_pct <= 100:
            raise ValueError(f"price_band_pct must be in 1..100, got {self.price_band_pct}")
        if not 0 < self.max_order_quantity <= MAX_ORDER_QUANTITY_LIMIT:
            raise ValueError(f"max_order_quantity must be in 1..{MAX_ORDER_QUANTITY_LIMIT}")
        if self.band_low > self.band_high:
            raise ValueError("the price band holds no whole tick")

    @property
    def band_low(self) -> int:
        """Lowest allowed price: reference minus the band, rounded up to a tick, at least a tick."""
        low = self.reference_price * (100 - self.price_band_pct)
        low_ticks = -(-low // (100 * self.tick_size))  # ceiling division
        return max(low_ticks, 1) * self.tick_size

    @property
    def band_high(self) -> int:
        """Highest allowed price: reference plus the band, rounded down to a tick."""
        high = self.reference_price * (100 + self.price_band_pct)
        return high // (100 * self.tick_size) * self.tick_size

    def price_error(self, price: int) -> RejectCode | None:
        """The reason a limit price is not allowed, or None when it is."""
        if price <= 0 or price % self.tick_size:
            return RejectCode.TICK_SIZE
        if price < self.band_low or price > self.band_high:
            return RejectCode.PRICE_OUT_OF_BAND
        return None

    def quantity_error(self, quantity: int) -> RejectCode | None:
        """The reason an order quantity (in whole lots) is not allowed, or None when it is."""
        if quantity <= 0 or quantity > self.max_order_quantity:
            return RejectCode.LOT_SIZE
        return None
