"""Events of the exchange core, beside the matching engine's own (re-exported here).

Every command yields a list of events; the sequencer publishes them with the command's sequence
number and time to clearing, market data and the audit trail. A rejected command yields one
rejection event and changes nothing.
"""

from __future__ import annotations

import msgspec

from clearing.risk import Settlement
from exchange.instruments import Instrument
from exchange.participants import Role
from matching_engine.events import (
    AmendRejected,
    BookLevelChanged,
    CancelRejected,
    OrderAccepted,
    OrderAmended,
    OrderCancelled,
    OrderExpired,
    OrderRejected,
    Trade,
)


class _Event(msgspec.Struct, frozen=True, gc=False, tag=True):
    pass


class CommandRejected(_Event, frozen=True):
    """The core refused a command before it reached a book (unknown participant, funds...)."""

    code: str
    message: str


class ParticipantRegistered(_Event, frozen=True):
    participant_id: int
    name: str
    role: Role


class InstrumentListed(_Event, frozen=True):
    instrument: Instrument


class FundsDeposited(_Event, frozen=True):
    participant_id: int
    asset: str
    amount: int
    available: int  # after the deposit


class FundsWithdrawn(_Event, frozen=True):
    participant_id: int
    asset: str
    amount: int
    available: int  # after the withdrawal


class FundsHeld(_Event, frozen=True):
    """An order reserved `amount` of `asset` (cash for a buy, goods for a sell)."""

    order_id: int
    participant_id: int
    asset: str
    amount: int


class FundsReleased(_Event, frozen=True):
    """What an order's hold no longer needs went back to available."""

    order_id: int
    participant_id: int
    asset: str
    amount: int


class OrderRegistered(_Event, frozen=True):
    """The exchange assigned `order_id` to a participant's order (before the book saw it)."""

    order_id: int
    participant_id: int
    symbol: str
    client_order_id: str | None


class DuplicateClientOrderId(_Event, frozen=True):
    """The `client_order_id` was used before: the answer is the original order, nothing changed."""

    order_id: int
    participant_id: int
    client_order_id: str


class MarketHalted(_Event, frozen=True):
    symbol: str
    reason: str


class MarketResumed(_Event, frozen=True):
    symbol: str


Event = (
    CommandRejected
    | ParticipantRegistered
    | InstrumentListed
    | FundsDeposited
    | FundsWithdrawn
    | FundsHeld
    | FundsReleased
    | OrderRegistered
    | DuplicateClientOrderId
    | MarketHalted
    | MarketResumed
    | Settlement
    | OrderAccepted
    | OrderRejected
    | Trade
    | OrderCancelled
    | OrderAmended
    | AmendRejected
    | CancelRejected
    | OrderExpired
    | BookLevelChanged
)

__all__ = [
    "AmendRejected",
    "BookLevelChanged",
    "CancelRejected",
    "CommandRejected",
    "DuplicateClientOrderId",
    "Event",
    "FundsDeposited",
    "FundsHeld",
    "FundsReleased",
    "FundsWithdrawn",
    "InstrumentListed",
    "MarketHalted",
    "MarketResumed",
    "OrderAccepted",
    "OrderAmended",
    "OrderCancelled",
    "OrderExpired",
    "OrderRegistered",
    "OrderRejected",
    "ParticipantRegistered",
    "Settlement",
    "Trade",
]
