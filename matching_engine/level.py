"""One price level: a FIFO queue of orders at the same price, with its running totals."""

from __future__ import annotations

from matching_engine.orders import Order

# A level rebuilds its queue once dead entries outnumber live ones by this much, so lazily
# deleted orders cost O(1) at cancel time without letting a queue grow without bound.
COMPACTION_SLACK = 16


class PriceLevel:
    """Orders at one price in time priority; `quantity` and `count` cover live orders only.

    Dead entries (cancelled, amended away or filled) stay in `orders` until the head passes
    them or the queue is compacted; `head` is the index of the first entry not yet skipped.
    A plain slotted class rather than a struct: the matching loop writes these fields often.
    """

    __slots__ = ("count", "head", "orders", "price", "quantity")

    def __init__(self, price: int) -> None:
        self.price = price
        self.orders: list[Order] = []
        self.head = 0
        self.quantity = 0
        self.count = 0

    def compact(self) -> None:
        self.orders = [order for order in self.orders[self.head :] if order.live]
        self.head = 0

    def live_orders(self) -> list[Order]:
        """The live orders in time priority (not for the hot path)."""
        return [order for order in self.orders[self.head :] if order.live]
