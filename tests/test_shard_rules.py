"""Shards, one rule per test: ids name their shard, cash moves between shards in two phases.

Each shard is one core. Participants register on the home shard `main` and then, with the same
id, on the others. A participant's VND is split into one allocation per shard; a transfer takes
cash out of one shard's allocation (phase one, `TransferOut`) and, once that was acknowledged,
the coordinator credits it on the destination (phase two, `TransferIn`). In between the cash is
in neither shard, so it can never be spent twice.

Shards used throughout: `main` (index 0), `north` (1) and `south` (2), each with a live hog
market of its own: lot 1,000 kg, tick 100 VND, reference 60,000 VND/kg.
"""

from __future__ import annotations

import hashlib
from collections import Counter
from dataclasses import dataclass, field
from typing import TypeVar

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from clearing.accounts import CASH, FEE_ACCOUNT
from exchange import commands as c
from exchange.audit import AuditTrail
from exchange.core import MAX_AMOUNT, SHARD_ID_SPAN, CoreState, ExchangeCore, shard_of
from exchange.events import (
    CashTransferredIn,
    CashTransferredOut,
    CommandRejected,
    Event,
    FundsDeposited,
    FundsWithdrawn,
    OrderRegistered,
    ParticipantRegistered,
    Settlement,
    ShardConfigured,
    Trade,
    TransferRepeated,
)
from exchange.instruments import Instrument, InstrumentKind
from exchange.marketdata import MarketData
from exchange.participants import Role
from exchange.surveillance import Surveillance
from matching_engine import OrderType, Side

SHARDS = ("main", "north", "south")
FARMER, TRADER = 1, 2
LOT_KG = 1_000
PRICE = 60_000
LOT_VND = PRICE * LOT_KG  # one lot at the reference price, before fees


def key_hash(name: str) -> str:
    return hashlib.sha256(name.encode()).hexdigest()


def hog(shard: str) -> Instrument:
    return Instrument(
        f"HOG-{shard.upper()}", f"Heo hơi ({shard})", InstrumentKind.LIVE_HOG, LOT_KG, 100, PRICE,
        maker_fee_bps=2, taker_fee_bps=5,
    )  # fmt: skip


class Shard:
    """One shard's core, fed commands in sequence, its invariants checked after each."""

    def __init__(self, index: int | None = None, name: str = "") -> None:
        self.core = ExchangeCore()
        self.name = name
        self.symbol = hog(name or "main").symbol
        self.sequence = 0
        if index is not None:
            assert self.do(c.ConfigureShard(index, name)) == [ShardConfigured(index, name)]

    def do(self, command: c.Command) -> list[Event]:
        self.sequence += 1
        events = self.core.apply(command, self.sequence, self.sequence * 1_000)
        self.core.check_invariants()
        return events

    def register(self, name: str, participant_id: int = 0) -> list[Event]:
        return self.do(c.RegisterParticipant(name, Role.TRADER, key_hash(name), 0, participant_id))

    def order(self, participant: int, side: Side, lots: int, price: int = PRICE) -> list[Event]:
        return self.do(c.PlaceOrder(participant, self.symbol, side, OrderType.LIMIT, price, lots))

    def cash(self, participant: int) -> tuple[int, int]:
        b = self.core.accounts.balance(participant, CASH)
        return b.available, b.reserved

    def out(self, participant: int, amount: int, transfer_id: str, to: str) -> list[Event]:
        return self.do(c.TransferOut(participant, amount, transfer_id, to))

    def into(self, participant: int, amount: int, transfer_id: str, source: str) -> list[Event]:
        return self.do(c.TransferIn(participant, amount, transfer_id, source))


E = TypeVar("E")


def only(events: list[Event], kind: type[E]) -> E:
    event = events[0]
    assert len(events) == 1 and isinstance(event, kind), events
    return event


def rejection_code(events: list[Event]) -> str:
    assert len(events) == 1 and isinstance(events[0], CommandRejected), events
    return events[0].code


def refused_without_change(shard: Shard, command: c.Command) -> str:
    """The rejection's code, once sure that nothing but the sequence and the time moved."""
    before = shard.core.state()
    code = rejection_code(shard.do(command))
    after = msgspec.structs.replace(
        shard.core.state(), last_sequence=before.last_sequence, last_time_ns=before.last_time_ns
    )
    assert msgspec.msgpack.encode(after) == msgspec.msgpack.encode(before)
    return code


def cluster() -> dict[str, Shard]:
    """Three configured shards, FARMER and TRADER registered on `main` then on the others, each
    shard with its own market; TRADER holds 10 lots' worth of VND on `north`."""
    shards = {name: Shard(index, name) for index, name in enumerate(SHARDS)}
    for name in ("farmer", "trader"):
        registered = only(shards["main"].register(name), ParticipantRegistered)
        for other in ("north", "south"):
            assert shards[other].register(name, registered.participant_id) == [registered]
    for shard in shards.values():
        shard.do(c.ListInstrument(hog(shard.name)))
        shard.do(c.Deposit(FARMER, shard.symbol, 20))
    shards["north"].do(c.Deposit(TRADER, CASH, 10 * LOT_VND))
    return shards


@pytest.fixture
def shards() -> dict[str, Shard]:
    return cluster()


# ---------------------------------------------------------------------------- participant ids


def test_participants_registered_without_an_id_are_numbered_one_by_one_as_before() -> None:
    shard = Shard()
    ids = [only(shard.register(name), ParticipantRegistered).participant_id for name in "abc"]
    assert ids == [1, 2, 3]


def test_a_participant_is_registered_on_another_shard_with_the_id_of_the_home_shard() -> None:
    north = Shard(1, "north")
    assert north.register("trader", 7) == [ParticipantRegistered(7, "trader", Role.TRADER)]
    assert north.core.participants[7].name == "trader"


def test_the_next_free_participant_id_is_one_above_the_highest_taken() -> None:
    shard = Shard()
    shard.register("a", 5)
    shard.register("b", 2)
    assert shard.register("c") == [ParticipantRegistered(6, "c", Role.TRADER)]


def test_the_next_free_participant_id_survives_a_snapshot() -> None:
    shard = Shard()
    shard.register("a", 5)
    shard.core = ExchangeCore.from_state(shard.core.state())
    assert shard.register("b") == [ParticipantRegistered(6, "b", Role.TRADER)]


def test_a_participant_id_that_is_taken_is_refused() -> None:
    shard = Shard()
    shard.register("a")
    command = c.RegisterParticipant("b", Role.TRADER, key_hash("b"), 0, 1)
    assert refused_without_change(shard, command) == "PARTICIPANT_ID_TAKEN"


@pytest.mark.parametrize("participant_id", [-1, 2**31])
def test_a_participant_id_below_one_or_too_large_is_refused(participant_id: int) -> None:
    command = c.RegisterParticipant("b", Role.TRADER, key_hash("b"), 0, participant_id)
    assert refused_without_change(Shard(), command) == "INVALID_PARTICIPANT_ID"


# ---------------------------------------------------------------------------- shard ids


def test_a_shard_hands_out_order_and_trade_ids_that_name_it() -> None:
    shards = cluster()
    south = shards["south"]
    south.do(c.Deposit(TRADER, CASH, 10 * LOT_VND))
    sell = south.order(FARMER, Side.SELL, 1)
    buy = south.order(TRADER, Side.BUY, 1)
    assert sell[0] == OrderRegistered(2 * SHARD_ID_SPAN + 1, FARMER, south.symbol, None)
    assert buy[0] == OrderRegistered(2 * SHARD_ID_SPAN + 2, TRADER, south.symbol, None)
    (trade,) = (e for e in buy if isinstance(e, Trade))
    assert trade.trade_id == 2 * SHARD_ID_SPAN + 1
    assert shard_of(trade.trade_id) == shard_of(trade.taker_order_id) == 2


def test_shard_zero_and_an_unconfigured_core_number_orders_from_one() -> None:
    for shard in (Shard(), Shard(0, "main")):
        shard.register("farmer")
        shard.do(c.ListInstrument(hog("main")))
        shard.do(c.Deposit(FARMER, shard.symbol, 5))
        assert shard.order(FARMER, Side.SELL, 1)[0] == OrderRegistered(1, 1, "HOG-MAIN", None)


def test_a_shard_keeps_its_id_range_across_a_snapshot() -> None:
    north = cluster()["north"]
    north.order(FARMER, Side.SELL, 1)
    north.core = ExchangeCore.from_state(north.core.state())
    registered = north.order(FARMER, Side.SELL, 1)[0]
    assert isinstance(registered, OrderRegistered) and registered.order_id == SHARD_ID_SPAN + 2


def test_a_shard_is_configured_only_once() -> None:
    north = Shard(1, "north")
    assert refused_without_change(north, c.ConfigureShard(2, "south")) == (
        "SHARD_ALREADY_CONFIGURED"
    )


def test_a_shard_is_configured_before_its_first_order() -> None:
    shard = Shard()
    shard.register("farmer")
    shard.do(c.ListInstrument(hog("main")))
    shard.do(c.Deposit(FARMER, shard.symbol, 5))
    shard.order(FARMER, Side.SELL, 1)
    assert refused_without_change(shard, c.ConfigureShard(1, "north")) == "SHARD_HAS_ORDERS"


def test_a_refused_order_takes_no_id_so_the_shard_can_still_be_configured() -> None:
    shard = Shard()
    shard.register("farmer")
    shard.do(c.ListInstrument(hog("main")))
    assert rejection_code(shard.order(FARMER, Side.SELL, 1)) == "INSUFFICIENT_FUNDS"
    assert shard.do(c.ConfigureShard(1, "north")) == [ShardConfigured(1, "north")]


@pytest.mark.parametrize(
    ("index", "name"),
    [(-1, "north"), (1_000, "north"), (1, ""), (1, "no.dots"), (1, "x" * 33), (1, "sp ace")],
)
def test_a_shard_index_is_0_to_999_and_its_name_can_name_a_stream(index: int, name: str) -> None:
    assert refused_without_change(Shard(), c.ConfigureShard(index, name)) == "INVALID_SHARD"


# ---------------------------------------------------------------------------- transfers


def test_a_transfer_out_takes_available_cash_like_a_withdrawal(shards: dict[str, Shard]) -> None:
    north = shards["north"]
    events = north.out(TRADER, 3 * LOT_VND, "t-1", "south")
    assert events == [CashTransferredOut(TRADER, 3 * LOT_VND, "t-1", "south", 7 * LOT_VND)]
    assert north.cash(TRADER) == (7 * LOT_VND, 0)
    assert north.core.accounts.net_deposits(CASH) == 7 * LOT_VND


def test_a_transfer_out_never_takes_reserved_cash(shards: dict[str, Shard]) -> None:
    north = shards["north"]
    north.order(TRADER, Side.BUY, 5, PRICE - 1_000)
    available, reserved = north.cash(TRADER)
    command = c.TransferOut(TRADER, available + 1, "t-1", "south")
    assert refused_without_change(north, command) == "INSUFFICIENT_FUNDS"
    north.out(TRADER, available, "t-1", "south")
    assert north.cash(TRADER) == (0, reserved)


def test_a_transfer_in_credits_available_cash_that_orders_can_use(
    shards: dict[str, Shard],
) -> None:
    south = shards["south"]
    events = south.into(TRADER, 3 * LOT_VND, "t-1", "north")
    assert events == [CashTransferredIn(TRADER, 3 * LOT_VND, "t-1", "north", 3 * LOT_VND)]
    assert south.core.accounts.net_deposits(CASH) == 3 * LOT_VND
    assert isinstance(south.order(TRADER, Side.BUY, 2)[0], OrderRegistered)


def test_cash_in_transit_can_be_spent_on_neither_shard(shards: dict[str, Shard]) -> None:
    north, south = shards["north"], shards["south"]
    north.out(TRADER, 10 * LOT_VND, "t-1", "south")
    assert rejection_code(north.order(TRADER, Side.BUY, 1)) == "INSUFFICIENT_FUNDS"
    assert rejection_code(south.order(TRADER, Side.BUY, 1)) == "INSUFFICIENT_FUNDS"
    south.into(TRADER, 10 * LOT_VND, "t-1", "north")
    assert isinstance(south.order(TRADER, Side.BUY, 1)[0], OrderRegistered)
    assert rejection_code(north.order(TRADER, Side.BUY, 1)) == "INSUFFICIENT_FUNDS"


@pytest.mark.parametrize("direction", ["out", "in"])
def test_a_transfer_is_refused_with_the_codes_of_a_withdrawal(
    shards: dict[str, Shard], direction: str
) -> None:
    north = shards["north"]

    def command(participant: int, amount: int) -> c.Command:
        if direction == "out":
            return c.TransferOut(participant, amount, "t-1", "south")
        return c.TransferIn(participant, amount, "t-1", "south")

    assert refused_without_change(north, command(99, LOT_VND)) == "UNKNOWN_PARTICIPANT"
    for amount in (0, -LOT_VND, MAX_AMOUNT + 1):
        assert refused_without_change(north, command(TRADER, amount)) == "INVALID_AMOUNT"


@pytest.mark.parametrize(
    ("transfer_id", "other_shard"),
    [("", "south"), ("t" * 65, "south"), ("t-1", "north"), ("t-1", ""), ("t-1", "a.b")],
)
def test_a_transfer_names_an_id_of_1_to_64_characters_and_another_shard(
    shards: dict[str, Shard], transfer_id: str, other_shard: str
) -> None:
    north = shards["north"]
    out = c.TransferOut(TRADER, LOT_VND, transfer_id, other_shard)
    into = c.TransferIn(TRADER, LOT_VND, transfer_id, other_shard)
    assert refused_without_change(north, out) == "INVALID_TRANSFER"
    assert refused_without_change(north, into) == "INVALID_TRANSFER"


def test_a_core_that_is_no_configured_shard_makes_no_transfers() -> None:
    shard = Shard()
    shard.register("farmer")
    shard.do(c.Deposit(FARMER, CASH, LOT_VND))
    assert refused_without_change(shard, c.TransferOut(FARMER, 1, "t-1", "south")) == (
        "INVALID_TRANSFER"
    )
    assert refused_without_change(shard, c.TransferIn(FARMER, 1, "t-1", "south")) == (
        "INVALID_TRANSFER"
    )


def test_the_same_transfer_out_again_moves_nothing_and_repeats_the_first_answer(
    shards: dict[str, Shard],
) -> None:
    north = shards["north"]
    first = only(north.out(TRADER, 3 * LOT_VND, "t-1", "south"), CashTransferredOut)
    north.do(c.Deposit(TRADER, CASH, LOT_VND))
    assert north.out(TRADER, 3 * LOT_VND, "t-1", "south") == [TransferRepeated(first)]
    assert north.cash(TRADER) == (8 * LOT_VND, 0)


def test_the_same_transfer_in_again_moves_nothing_and_repeats_the_first_answer(
    shards: dict[str, Shard],
) -> None:
    south = shards["south"]
    first = only(south.into(TRADER, 3 * LOT_VND, "t-1", "north"), CashTransferredIn)
    assert south.into(TRADER, 3 * LOT_VND, "t-1", "north") == [TransferRepeated(first)]
    assert south.cash(TRADER) == (3 * LOT_VND, 0)


def test_a_repeated_transfer_is_recognised_after_a_snapshot(shards: dict[str, Shard]) -> None:
    north, south = shards["north"], shards["south"]
    out = only(north.out(TRADER, LOT_VND, "t-1", "south"), CashTransferredOut)
    into = only(south.into(TRADER, LOT_VND, "t-1", "north"), CashTransferredIn)
    for shard in (north, south):
        shard.core = ExchangeCore.from_state(shard.core.state())
    assert north.out(TRADER, LOT_VND, "t-1", "south") == [TransferRepeated(out)]
    assert south.into(TRADER, LOT_VND, "t-1", "north") == [TransferRepeated(into)]


@pytest.mark.parametrize(
    ("participant", "amount", "shard"),
    [(FARMER, LOT_VND, "south"), (TRADER, 2 * LOT_VND, "south"), (TRADER, LOT_VND, "main")],
)
def test_a_transfer_id_used_before_with_other_details_is_refused(
    shards: dict[str, Shard], participant: int, amount: int, shard: str
) -> None:
    north, south = shards["north"], shards["south"]
    north.do(c.Deposit(FARMER, CASH, LOT_VND))
    north.out(TRADER, LOT_VND, "t-1", "south")
    south.do(c.Deposit(FARMER, CASH, LOT_VND))
    south.into(TRADER, LOT_VND, "t-1", "north")
    other = "north" if shard == "south" else shard
    out = c.TransferOut(participant, amount, "t-1", shard)
    assert refused_without_change(north, out) == "DUPLICATE_TRANSFER"
    into = c.TransferIn(participant, amount, "t-1", other)
    assert refused_without_change(south, into) == "DUPLICATE_TRANSFER"


def test_a_transfer_id_is_kept_apart_for_each_direction(shards: dict[str, Shard]) -> None:
    north = shards["north"]
    north.out(TRADER, LOT_VND, "t-1", "south")
    assert isinstance(north.into(TRADER, LOT_VND, "t-1", "south")[0], CashTransferredIn)


def test_a_refused_transfer_leaves_its_id_free(shards: dict[str, Shard]) -> None:
    north = shards["north"]
    assert rejection_code(north.out(TRADER, 11 * LOT_VND, "t-1", "south")) == "INSUFFICIENT_FUNDS"
    north.do(c.Deposit(TRADER, CASH, LOT_VND))
    assert isinstance(north.out(TRADER, 11 * LOT_VND, "t-1", "south")[0], CashTransferredOut)


# ---------------------------------------------------------------------------- state and journal


def test_transfers_and_the_shard_are_part_of_the_snapshot_and_the_digest(
    shards: dict[str, Shard],
) -> None:
    north = shards["north"]
    before = north.core.digest()
    north.out(TRADER, LOT_VND, "t-1", "south")
    north.into(TRADER, LOT_VND, "t-2", "south")
    state = north.core.state()
    assert state.shard == ShardConfigured(1, "north")
    assert [t.transfer_id for t in state.transfers_out] == ["t-1"]
    assert [t.transfer_id for t in state.transfers_in] == ["t-2"]
    decoded = msgspec.msgpack.decode(msgspec.msgpack.encode(state), type=CoreState)
    assert decoded == state
    assert ExchangeCore.from_state(decoded).digest() == north.core.digest() != before


def test_a_snapshot_from_before_shards_still_loads() -> None:
    shard = Shard()
    shard.register("farmer")
    encoded = msgspec.msgpack.decode(msgspec.msgpack.encode(shard.core.state()))
    for added in ("shard", "transfers_out", "transfers_in"):
        del encoded[added]
    old = msgspec.msgpack.decode(msgspec.msgpack.encode(encoded), type=CoreState)
    assert (old.shard, old.transfers_out, old.transfers_in) == (None, [], [])
    assert ExchangeCore.from_state(old).digest() == shard.core.digest()


def test_a_journal_record_from_before_explicit_participant_ids_still_reads() -> None:
    record = [c.SCHEMA_VERSION, ["register_participant", "farmer", "trader", key_hash("f"), 0]]
    command = c.decode_command(msgspec.msgpack.encode(record))
    assert command == c.RegisterParticipant("farmer", Role.TRADER, key_hash("f"), 0, 0)


@pytest.mark.parametrize(
    "command",
    [
        c.ConfigureShard(1, "north", 3),
        c.TransferOut(2, LOT_VND, "t-1", "south", 3),
        c.TransferIn(2, LOT_VND, "t-1", "north"),
        c.RegisterParticipant("farmer", Role.TRADER, key_hash("f"), 0, 7),
    ],
)
def test_the_shard_commands_are_journaled_like_every_other(command: c.Command) -> None:
    assert c.decode_command(c.encode_command(command)) == command


def test_audit_market_data_and_surveillance_pass_over_transfers(
    shards: dict[str, Shard],
) -> None:
    north = shards["north"]
    commands: list[c.Command] = [
        c.TransferOut(TRADER, LOT_VND, "t-1", "south"),
        c.TransferOut(TRADER, LOT_VND, "t-1", "south"),
        c.TransferIn(TRADER, LOT_VND, "t-2", "south"),
    ]
    audit, market_data, surveillance = AuditTrail(), MarketData(), Surveillance()
    before = (audit.state(), market_data.state(), surveillance.state())
    for command in commands:
        events = north.do(command)
        audit.observe(north.sequence, north.sequence * 1_000, command, events)
        market_data.observe(north.sequence, north.sequence * 1_000, events)
        surveillance.observe(north.sequence, north.sequence * 1_000, command, events)
    assert (audit.state(), market_data.state(), surveillance.state()) == before


# ---------------------------------------------------------------------------- the model


@dataclass
class Coordinator:
    """What a gateway knows of transfers, and the VND the whole exchange must account for."""

    deposited: Counter[int] = field(default_factory=Counter)  # participant -> net VND in
    traded: Counter[int] = field(default_factory=Counter)  # participant -> VND from trades
    sent: dict[str, tuple[Shard, c.TransferOut]] = field(default_factory=dict)  # acknowledged
    in_flight: dict[str, c.TransferOut] = field(default_factory=dict)  # sent, not yet credited
    arrived: dict[str, tuple[Shard, c.TransferIn]] = field(default_factory=dict)
    credited: Counter[str] = field(default_factory=Counter)  # transfer id -> credits seen
    next_id: int = 0


ACTIONS = ("deposit", "withdraw", "buy", "sell", "cancel", "out", "in", "retry_out", "retry_in")
PARTICIPANTS = (FARMER, TRADER, 3)


def step(
    shards: dict[str, Shard],
    model: Coordinator,
    action: str,
    shard_no: int,
    participant: int,
    size: int,
    pick: int,
) -> None:
    shard = shards[SHARDS[shard_no]]
    events: list[Event] = []
    if action == "deposit":
        events = shard.do(c.Deposit(participant, CASH, size * LOT_VND))
    elif action == "withdraw":
        events = shard.do(c.Withdraw(participant, CASH, size * LOT_VND // 2))
    elif action in ("buy", "sell"):
        side = Side.BUY if action == "buy" else Side.SELL
        events = shard.order(participant, side, size, PRICE + (pick % 9 - 4) * 100)
    elif action == "cancel":
        order_id = shard_no * SHARD_ID_SPAN + pick
        events = shard.do(c.CancelOrder(participant, order_id))
    elif action == "out":
        model.next_id += 1
        to = SHARDS[(shard_no + 1 + pick % 2) % len(SHARDS)]
        out = c.TransferOut(participant, size * LOT_VND // 3, f"t-{model.next_id}", to)
        events = shard.do(out)
        if isinstance(events[0], CashTransferredOut):
            model.sent[out.transfer_id] = (shard, out)
            model.in_flight[out.transfer_id] = out
    elif action == "in" and model.in_flight:  # phase two, only after phase one's answer
        out = model.in_flight.pop(sorted(model.in_flight)[pick % len(model.in_flight)])
        source = model.sent[out.transfer_id][0]
        into = c.TransferIn(out.participant_id, out.amount, out.transfer_id, source.name)
        model.arrived[out.transfer_id] = (shards[out.to_shard], into)
        events = shards[out.to_shard].do(into)
        assert isinstance(events[0], CashTransferredIn)
    elif action == "retry_out" and model.sent:  # the coordinator lost an answer
        source, out = model.sent[sorted(model.sent)[pick % len(model.sent)]]
        events = source.do(out)
        assert isinstance(events[0], TransferRepeated)
    elif action == "retry_in" and model.arrived:
        destination, into = model.arrived[sorted(model.arrived)[pick % len(model.arrived)]]
        events = destination.do(into)
        assert isinstance(events[0], TransferRepeated)
    observe(model, events)


def observe(model: Coordinator, events: list[Event]) -> None:
    for event in events:
        if isinstance(event, Settlement):
            model.traded[event.seller_id] += event.notional_vnd - event.seller_fee_vnd
            model.traded[event.buyer_id] -= event.notional_vnd + event.buyer_fee_vnd
            model.traded[FEE_ACCOUNT] += event.buyer_fee_vnd + event.seller_fee_vnd
        elif isinstance(event, CashTransferredIn):
            model.credited[event.transfer_id] += 1
        elif isinstance(event, FundsDeposited) and event.asset == CASH:
            model.deposited[event.participant_id] += event.amount
        elif isinstance(event, FundsWithdrawn) and event.asset == CASH:
            model.deposited[event.participant_id] -= event.amount


def check_cash_is_never_spent_twice(shards: dict[str, Shard], model: Coordinator) -> None:
    in_transit: Counter[int] = Counter()
    for out in model.in_flight.values():
        in_transit[out.participant_id] += out.amount
    held: Counter[int] = Counter()
    for shard in shards.values():
        for balance in shard.core.accounts.state().balances:
            if balance.asset == CASH:
                assert balance.available >= 0 and balance.reserved >= 0, balance
                held[balance.participant_id] += balance.available + balance.reserved
    # All VND of the exchange: in some shard's custody, or in transit between two.
    assert sum(held.values()) + sum(in_transit.values()) == sum(model.deposited.values())
    # No participant has more than they paid in and earned: no cash was spent or credited twice.
    for participant in (FEE_ACCOUNT, *PARTICIPANTS):
        expected = model.deposited[participant] + model.traded[participant]
        assert held[participant] + in_transit[participant] == expected, participant
    assert all(count == 1 for count in model.credited.values()), model.credited
    assert model.credited.keys() == model.arrived.keys()


@settings(max_examples=150, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.sampled_from(ACTIONS),
            st.integers(0, len(SHARDS) - 1),
            st.sampled_from(PARTICIPANTS),
            st.integers(1, 6),
            st.integers(0, 30),
        ),
        max_size=80,
    )
)
def test_cash_moved_between_shards_at_random_is_never_spent_twice(
    actions: list[tuple[str, int, int, int, int]],
) -> None:
    shards = cluster()
    third = only(shards["main"].register("other"), ParticipantRegistered)
    assert third.participant_id == PARTICIPANTS[2]
    for other in ("north", "south"):
        shards[other].register("other", third.participant_id)
    model = Coordinator()
    model.deposited[TRADER] = 10 * LOT_VND  # the cluster's deposit on north
    for shard in shards.values():
        for participant in PARTICIPANTS:
            shard.do(c.Deposit(participant, shard.symbol, 10))
    for action in actions:
        step(shards, model, *action)
        check_cash_is_never_spent_twice(shards, model)
