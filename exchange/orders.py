"""The exchange's record of every order: status, fills, client ids. What the API shows a trader.

The book only knows open orders; this registry remembers all of them, so an order can be looked
up after it closed and a `client_order_id` maps to its order forever.
"""

from __future__ import annotations

from enum import StrEnum

import msgspec

from matching_engine import OrderType, Side, TimeInForce


class OrderStatus(StrEnum):
    NEW = "new"  # resting, nothing filled
    PARTIALLY_FILLED = "partially_filled"
    FILLED = "filled"
    CANCELLED = "cancelled"
    EXPIRED = "expired"

    @property
    def is_open(self) -> bool:
        return self is OrderStatus.NEW or self is OrderStatus.PARTIALLY_FILLED


class Liquidity(StrEnum):
    MAKER = "maker"
    TAKER = "taker"


class Fill(msgspec.Struct, frozen=True, array_like=True, gc=False):
    trade_id: int
    price: int
    quantity: int
    liquidity: Liquidity
    fee_vnd: int
    sequence: int
    time_ns: int


class OrderRecord(msgspec.Struct, array_like=True, gc=False):
    """One order's whole story as the exchange tells it. Mutated only by the core.

    Not tracked by the garbage collector (it holds no reference cycles): the registry keeps
    every order ever placed, and scanning them on every collection would cost more than trading.
    """

    order_id: int
    participant_id: int
    symbol: str
    side: Side
    order_type: OrderType
    price: int | None
    quantity: int  # total, including what has filled (amends change it)
    time_in_force: TimeInForce
    post_only: bool
    all_or_none: bool
    client_order_id: str | None
    created_sequence: int
    created_time_ns: int
    status: OrderStatus = OrderStatus.NEW
    filled_quantity: int = 0
    cancel_reason: str | None = None
    updated_sequence: int = 0
    fills: list[Fill] | None = None  # created at the first fill: most orders never get one

    @property
    def remaining_quantity(self) -> int:
        return self.quantity - self.filled_quantity if self.status.is_open else 0
