"""Everything the engine says happened, as small immutable records.

Market data, clearing and the audit trail consume these, so each one is complete on its own:
it names the symbol, the orders and the participants involved. The engine never reads a clock;
the exchange stamps sequence and time around them.
"""

from __future__ import annotations

import msgspec

from matching_engine.enums import CancelReason, OrderType, RejectCode, Side, TimeInForce


class OrderAccepted(msgspec.Struct, frozen=True, gc=False, tag=True):
    """The order passed every rule and entered matching (it may trade or rest next)."""

    symbol: str
    order_id: int
    participant_id: int
    side: Side
    order_type: OrderType
    price: int | None
    quantity: int
    time_in_force: TimeInForce
    post_only: bool
    all_or_none: bool


class OrderRejected(msgspec.Struct, frozen=True, gc=False, tag=True):
    """A new order was refused; nothing changed."""

    symbol: str
    order_id: int
    participant_id: int
    code: RejectCode
    message: str


class Trade(msgspec.Struct, frozen=True, gc=False, tag=True):
    """Two orders traded `quantity` lots at the resting (maker) order's price."""

    symbol: str
    trade_id: int
    price: int
    quantity: int
    aggressor_side: Side
    maker_order_id: int
    maker_participant_id: int
    maker_remaining: int  # what is left of the maker order after this trade
    taker_order_id: int
    taker_participant_id: int
    taker_remaining: int


class OrderCancelled(msgspec.Struct, frozen=True, gc=False, tag=True):
    """The order is closed; `cancelled_quantity` lots were left unfilled."""

    symbol: str
    order_id: int
    participant_id: int
    side: Side
    cancelled_quantity: int
    reason: CancelReason


class OrderAmended(msgspec.Struct, frozen=True, gc=False, tag=True):
    """The price and/or total quantity changed; `priority_kept` says if it kept its place."""

    symbol: str
    order_id: int
    participant_id: int
    side: Side
    price: int
    quantity: int
    remaining: int
    priority_kept: bool


class AmendRejected(msgspec.Struct, frozen=True, gc=False, tag=True):
    """An amend was refused; the order is unchanged."""

    symbol: str
    order_id: int
    code: RejectCode
    message: str


class CancelRejected(msgspec.Struct, frozen=True, gc=False, tag=True):
    """A cancel was refused; nothing changed."""

    symbol: str
    order_id: int
    code: RejectCode
    message: str


class OrderExpired(msgspec.Struct, frozen=True, gc=False, tag=True):
    """A `day` order reached the end of its trading day with `expired_quantity` lots unfilled."""

    symbol: str
    order_id: int
    participant_id: int
    side: Side
    expired_quantity: int


class BookLevelChanged(msgspec.Struct, frozen=True, gc=False, tag=True):
    """The aggregate at one price changed; quantity 0 (and no orders) means the level is gone."""

    symbol: str
    side: Side
    price: int
    quantity: int
    order_count: int


EngineEvent = (
    OrderAccepted
    | OrderRejected
    | Trade
    | OrderCancelled
    | OrderAmended
    | AmendRejected
    | CancelRejected
    | OrderExpired
    | BookLevelChanged
)
