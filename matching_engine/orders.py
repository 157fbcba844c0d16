"""Orders: what a participant asks for (`OrderRequest`) and what rests in the book (`Order`)."""

from __future__ import annotations

import msgspec

from matching_engine.enums import OrderType, Side, TimeInForce


class OrderRequest(msgspec.Struct, frozen=True, gc=False):
    """A new order as the engine receives it: validated for shape, not yet for the market's rules.

    `order_id` is assigned by the exchange and strictly increases; `price` is None for market
    orders. Quantities are whole lots, prices whole VND per price unit.
    """

    order_id: int
    participant_id: int
    side: Side
    price: int | None
    quantity: int
    order_type: OrderType = OrderType.LIMIT
    time_in_force: TimeInForce = TimeInForce.GTC
    post_only: bool = False
    all_or_none: bool = False


class Order(msgspec.Struct, gc=False):
    """An order while it is open in the book; private to the engine and mutated only by it.

    `live` turns False when the order leaves the book; its entry in the price level's queue is
    then skipped and dropped lazily, which keeps cancels O(1).
    """

    order_id: int
    participant_id: int
    side: Side
    price: int
    quantity: int  # total ordered, including what has filled
    remaining: int
    time_in_force: TimeInForce
    post_only: bool
    all_or_none: bool
    live: bool = True

    @property
    def filled(self) -> int:
        return self.quantity - self.remaining
