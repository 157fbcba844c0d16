"""Events of the exchange core, beside the matching engine's own (re-exported here).

Every command yields a list of events; the sequencer publishes them with the command's sequence
number and time to clearing, market data and the audit trail. A rejected command yields one
rejection event and changes nothing.
"""

from __future__ import annotations

import msgspec

from clearing.risk import Settlement
from exchange.delivery import Receipt, Release
from exchange.instruments import Instrument
from exchange.participants import Role
from exchange.sessions import Session
from exchange.settlement import SettlementPrice
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


class SessionChanged(_Event, frozen=True):
    """A market moved from one phase to another (`reopen_at_ns`: a cool-off's end, else 0)."""

    symbol: str
    previous: Session
    session: Session
    reopen_at_ns: int = 0


class AuctionUncrossed(_Event, frozen=True):
    """The call auction ran: `price` None when nothing could trade (its trades follow)."""

    symbol: str
    price: int | None
    volume: int
    imbalance: int
    reference_price: int


class CircuitBreakerTripped(_Event, frozen=True):
    """Trades spanned `low`..`high` within the window: a reopening call until `reopen_at_ns`."""

    symbol: str
    low: int
    high: int
    move_pct: int
    window_s: int
    reopen_at_ns: int


class SettlementPublished(_Event, frozen=True):
    settlement: SettlementPrice


class ReferencePriceChanged(_Event, frozen=True):
    """A new reference price, and the band it gives new orders."""

    symbol: str
    reference_price: int
    band_low: int
    band_high: int


class CertificateExpired(_Event, frozen=True):
    symbol: str
    expired_on: str


class GoodsDelivered(_Event, frozen=True):
    """Goods entered custody under `receipt`; `available` is the owner's lots after it."""

    receipt: Receipt
    available: int


class GoodsReleased(_Event, frozen=True):
    """Goods left custody to their owner; `available` is the owner's lots after it."""

    release: Release
    available: int


class ShardConfigured(_Event, frozen=True):
    """This core is shard `name`; its order and trade ids start at `index * SHARD_ID_SPAN`."""

    index: int
    name: str


class CashTransferredOut(_Event, frozen=True):
    """Phase one of a transfer: `amount` VND left this shard, in transit to `to_shard`."""

    participant_id: int
    amount: int
    transfer_id: str
    to_shard: str
    available: int  # the participant's VND available here after it


class CashTransferredIn(_Event, frozen=True):
    """Phase two of a transfer: `amount` VND arrived here from `from_shard`."""

    participant_id: int
    amount: int
    transfer_id: str
    from_shard: str
    available: int  # the participant's VND available here after it


class TransferRepeated(_Event, frozen=True):
    """The same transfer was sent again (a coordinator's retry): nothing moved this time.

    `original` is the answer the first one had. A separate event, so that no projection
    books the same transfer twice."""

    original: CashTransferredOut | CashTransferredIn


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
    | SessionChanged
    | AuctionUncrossed
    | CircuitBreakerTripped
    | SettlementPublished
    | ReferencePriceChanged
    | CertificateExpired
    | GoodsDelivered
    | GoodsReleased
    | ShardConfigured
    | CashTransferredOut
    | CashTransferredIn
    | TransferRepeated
)

__all__ = [
    "AmendRejected",
    "AuctionUncrossed",
    "BookLevelChanged",
    "CancelRejected",
    "CashTransferredIn",
    "CashTransferredOut",
    "CertificateExpired",
    "CircuitBreakerTripped",
    "CommandRejected",
    "DuplicateClientOrderId",
    "Event",
    "FundsDeposited",
    "FundsHeld",
    "FundsReleased",
    "FundsWithdrawn",
    "GoodsDelivered",
    "GoodsReleased",
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
    "ReferencePriceChanged",
    "SessionChanged",
    "Settlement",
    "SettlementPublished",
    "ShardConfigured",
    "Trade",
    "TransferRepeated",
]
