"""Commands: everything that can change the exchange, as journaled. This is the journal schema.

Each command is a small immutable record, tagged by name and encoded as a msgpack array.
Compatibility rules for old journals staying readable: never rename a tag, never remove or
reorder a field, add new fields only at the end with a default. `SCHEMA_VERSION` is written in
every record; a reader refuses versions it does not know instead of guessing.
"""

from __future__ import annotations

from typing import Final

import msgspec

from exchange.instruments import Instrument
from exchange.participants import Role
from exchange.sessions import Session
from exchange.surveillance_config import SurveillanceConfig
from matching_engine import OrderType, Side, TimeInForce

SCHEMA_VERSION = 1


class _Command(msgspec.Struct, frozen=True, array_like=True, tag_field="type", gc=False):
    pass


class RegisterParticipant(_Command, frozen=True, tag="register_participant"):
    name: str
    role: Role
    api_key_hash: str
    actor_id: int = 0  # the operator who asked (0: the exchange itself, e.g. at start-up)
    # 0: the next free id. Else exactly this id: a participant of the home shard registered on
    # another shard, where they must have the same id.
    participant_id: int = 0


class ListInstrument(_Command, frozen=True, tag="list_instrument"):
    instrument: Instrument
    actor_id: int = 0


class Deposit(_Command, frozen=True, tag="deposit"):
    """Cash (asset `VND`) or goods (asset = an instrument's symbol, in lots) into custody."""

    participant_id: int
    asset: str
    amount: int
    actor_id: int = 0


class Withdraw(_Command, frozen=True, tag="withdraw"):
    participant_id: int
    asset: str
    amount: int
    actor_id: int = 0


class PlaceOrder(_Command, frozen=True, tag="place_order"):
    participant_id: int
    symbol: str
    side: Side
    order_type: OrderType
    price: int | None
    quantity: int
    time_in_force: TimeInForce = TimeInForce.GTC
    post_only: bool = False
    all_or_none: bool = False
    client_order_id: str | None = None


class CancelOrder(_Command, frozen=True, tag="cancel_order"):
    participant_id: int  # the order's owner; an operator cancels with `actor_id` set
    order_id: int
    actor_id: int = 0


class AmendOrder(_Command, frozen=True, tag="amend_order"):
    participant_id: int
    order_id: int
    price: int | None = None
    quantity: int | None = None  # new total quantity, including what has filled


class HaltMarket(_Command, frozen=True, tag="halt_market"):
    symbol: str
    reason: str = ""
    actor_id: int = 0


class ResumeMarket(_Command, frozen=True, tag="resume_market"):
    symbol: str
    actor_id: int = 0


class ExpireDayOrders(_Command, frozen=True, tag="expire_day_orders"):
    """The trading day of `symbol` ended: every open `day` order expires; with `ended_at_ns`,
    only those placed before that instant (a day of a market that never closes ends at
    midnight, and the orders placed since belong to the next one)."""

    symbol: str
    actor_id: int = 0
    ended_at_ns: int = 0  # 0: every open day order


class ConfigureSurveillance(_Command, frozen=True, tag="configure_surveillance"):
    """The surveillance thresholds and participant links in force from this sequence on."""

    config: SurveillanceConfig
    actor_id: int = 0


class AdvanceSession(_Command, frozen=True, tag="advance_session"):
    """Move a market to another phase (`exchange.sessions`); to `auction` runs the uncross."""

    symbol: str
    session: Session
    actor_id: int = 0  # 0: the exchange's scheduler


class PublishSettlement(_Command, frozen=True, tag="publish_settlement"):
    """Fix today's settlement price now (a close from continuous or closing does it itself)."""

    symbol: str
    actor_id: int = 0


class ExpireCertificate(_Command, frozen=True, tag="expire_certificate"):
    """An OCOP certificate reached its expiry: the market halts itself."""

    symbol: str
    actor_id: int = 0


class DeliverGoods(_Command, frozen=True, tag="deliver_goods"):
    """Goods inspected into custody: a receipt, and lots credited to the owner."""

    participant_id: int
    symbol: str
    lots: int
    head_count: int
    average_weight_kg: int
    farm_code: str
    certificate: str
    inspected_at_ns: int
    actor_id: int = 0


class ReleaseGoods(_Command, frozen=True, tag="release_goods"):
    """Goods delivered out of custody to their owner, debiting the owner's lots."""

    participant_id: int
    symbol: str
    lots: int
    destination: str = ""
    actor_id: int = 0


class ConfigureShard(_Command, frozen=True, tag="configure_shard"):
    """Name this core's shard; its order and trade ids start at `index * SHARD_ID_SPAN`."""

    index: int
    name: str
    actor_id: int = 0


class TransferOut(_Command, frozen=True, tag="transfer_out"):
    """Phase one of moving cash to another shard: `amount` VND leaves available cash here."""

    participant_id: int
    amount: int
    transfer_id: str  # the coordinator's key: the same transfer sent again moves nothing
    to_shard: str
    actor_id: int = 0


class TransferIn(_Command, frozen=True, tag="transfer_in"):
    """Phase two, once the source shard acknowledged phase one: the cash arrives here."""

    participant_id: int
    amount: int
    transfer_id: str
    from_shard: str
    actor_id: int = 0


Command = (
    RegisterParticipant
    | ListInstrument
    | Deposit
    | Withdraw
    | PlaceOrder
    | CancelOrder
    | AmendOrder
    | HaltMarket
    | ResumeMarket
    | ExpireDayOrders
    | ConfigureSurveillance
    | AdvanceSession
    | PublishSettlement
    | ExpireCertificate
    | DeliverGoods
    | ReleaseGoods
    | ConfigureShard
    | TransferOut
    | TransferIn
)


class JournalEntry(msgspec.Struct, frozen=True, array_like=True, gc=False):
    """One journal payload: the schema version and the command."""

    version: int
    command: Command


class UnknownSchemaVersion(Exception):
    pass


_encoder = msgspec.msgpack.Encoder()
_decoder = msgspec.msgpack.Decoder(JournalEntry)

# A payload's `JournalEntry`, its version not yet checked (`command_of` checks it): replay
# hands this to the journal reader, which decodes each payload straight from the chunk read.
decode_entry: Final = _decoder.decode


def encode_command(command: Command) -> bytes:
    return _encoder.encode(JournalEntry(SCHEMA_VERSION, command))


def decode_command(payload: bytes) -> Command:
    return command_of(_decoder.decode(payload))


def command_of(entry: JournalEntry) -> Command:
    """The command of a decoded payload, once its schema version is one this hogx reads."""
    if entry.version != SCHEMA_VERSION:
        raise UnknownSchemaVersion(
            f"journal record has schema version {entry.version}; this hogx reads {SCHEMA_VERSION}"
        )
    return entry.command
