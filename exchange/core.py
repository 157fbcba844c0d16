"""The core state machine: (state, command) -> events, pure and deterministic.

It composes the matching engine (one book per instrument) with custody and pre-trade risk
(`clearing`), and keeps the registries the exchange answers from: participants, instruments,
market status and every order ever accepted. No clock, no randomness, no I/O: the sequencer
hands in each command with its sequence number and time, so replaying the journal rebuilds
exactly the same state, which `digest()` proves.

Order of checks for a new order: participant and role, client order id (a repeat answers with
the original order), instrument, market status, the book's own rules, then funds: so a
participant hears about a bad price before hearing about money.

Shards: a core may be one shard of several (`ConfigureShard`), its order and trade ids in a
range of their own. Each shard holds its own allocation of every participant's cash; cash moves
between shards only by a two-phase transfer (`TransferOut` here, then `TransferIn` there), so it
is in at most one shard at any moment and can never be spent twice.
"""

from __future__ import annotations

import hashlib
import os
import re
from bisect import bisect_left
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, cast

import msgspec

from clearing.accounts import CASH, FEE_ACCOUNT, AccountsState
from clearing.implementation import Accounts, Risk
from clearing.risk import RiskState, cash_to_hold
from exchange import commands as c
from exchange.attributes import (
    attribute_problem,
    certificate_expiry_ns,
    normalized,
    requires,
    vietnam_date,
)
from exchange.delivery import UNTRACED, Lineage, LineageState, Receipt, Release
from exchange.events import (
    AuctionUncrossed,
    CashTransferredIn,
    CashTransferredOut,
    CertificateExpired,
    CircuitBreakerTripped,
    CommandRejected,
    DuplicateClientOrderId,
    Event,
    FundsDeposited,
    FundsHeld,
    FundsReleased,
    FundsWithdrawn,
    GoodsDelivered,
    GoodsReleased,
    InstrumentListed,
    MarketHalted,
    MarketResumed,
    OrderRegistered,
    ParticipantRegistered,
    ReferencePriceChanged,
    SessionChanged,
    SettlementPublished,
    ShardConfigured,
    TransferRepeated,
)
from exchange.instruments import Instrument, InstrumentKind, listing_problem
from exchange.orders import Fill, Liquidity, OrderRecord, OrderStatus
from exchange.participants import MAX_NAME_LENGTH, Participant, Role
from exchange.sessions import (
    NS_PER_SECOND,
    TRANSITIONS,
    MarketSession,
    Session,
)
from exchange.settlement import (
    SettlementPrice,
    TradeWindow,
    TradeWindowState,
    settlement_price,
)
from matching_engine import (
    AmendRejected,
    AuctionPrice,
    BookLevelChanged,
    EngineEvent,
    EngineState,
    MatchingEngine,
    OrderAmended,
    OrderBook,
    OrderCancelled,
    OrderExpired,
    OrderRejected,
    OrderRequest,
    OrderType,
    Side,
    TimeInForce,
    Trade,
)
from matching_engine.auction import cancel_market_orders
from matching_engine.book import reject_message
from matching_engine.enums import RejectCode

MAX_AMOUNT = 10**15  # per deposit or withdrawal, in VND or lots
MAX_CLIENT_ORDER_ID_LENGTH = 64
MAX_REASON_LENGTH = 200
MAX_DELIVERY_TEXT = 64
MAX_HEAD_COUNT = 1_000_000
MAX_HEAD_WEIGHT_KG = 1_000
MAX_PARTICIPANT_ID = 2**31 - 1

# Shards: one core per shard. Shard i hands out order and trade ids from i * SHARD_ID_SPAN + 1,
# so an id names its shard (`shard_of`) and a gateway routes by id without asking anyone.
SHARD_ID_SPAN = 10**12
MAX_SHARD_INDEX = 999  # the largest id stays below 2**53: exact as a JavaScript number too
# A shard's name is part of its stream's name and subjects (as `exchange.jetstream.check_shard`).
SHARD_NAME = re.compile(r"[A-Za-z0-9_-]{1,32}")
MAX_TRANSFER_ID_LENGTH = 64
Transfer = CashTransferredOut | CashTransferredIn  # as a shard keeps it: its first answer

BUY = Side.BUY
MARKET = OrderType.MARKET
MAKER = Liquidity.MAKER
TAKER = Liquidity.TAKER
TRADER = Role.TRADER
PARTIALLY_FILLED = OrderStatus.PARTIALLY_FILLED
FILLED = OrderStatus.FILLED
CONTINUOUS = Session.CONTINUOUS
CLOSED = Session.CLOSED
_IMMEDIATE = (TimeInForce.IOC, TimeInForce.FOK)


class CoreState(msgspec.Struct, frozen=True):
    """The whole core as data: what a snapshot holds and what the digest covers."""

    last_sequence: int
    last_time_ns: int
    engine: EngineState
    accounts: AccountsState
    risk: RiskState
    participants: list[Participant]
    instruments: list[Instrument]
    halted: dict[str, str]
    orders: list[OrderRecord]
    # Added with the market's rules; a snapshot from before them decodes with these defaults.
    sessions: dict[str, MarketSession] = {}
    trade_windows: dict[str, TradeWindowState] = {}
    settlements: dict[str, list[SettlementPrice]] = {}
    lineage: LineageState | None = None
    # Added with shards: this core's shard and every cash transfer it made, in journal order.
    shard: ShardConfigured | None = None
    transfers_out: list[CashTransferredOut] = []
    transfers_in: list[CashTransferredIn] = []


class Market:
    """What the hot path needs about one listed instrument, gathered behind one dict lookup."""

    __slots__ = (
        "band_high",
        "book",
        "breaker",
        "expiry_ns",
        "fees",
        "instrument",
        "lot_size",
        "session",
        "symbol",
        "window",
    )

    def __init__(self, instrument: Instrument, book: OrderBook, session: MarketSession) -> None:
        self.instrument = instrument
        self.symbol = instrument.symbol
        self.book = book
        self.lot_size = instrument.lot_size
        self.fees = instrument.fees
        self.band_high = book.rules.band_high
        self.session = session
        self.breaker = instrument.circuit_breaker
        self.expiry_ns = certificate_expiry_ns(instrument) or 0  # 0: no certificate to expire
        keep_s = instrument.settlement_window_s
        if self.breaker is not None:
            keep_s = max(keep_s, self.breaker.window_s)
        self.window = TradeWindow(keep_s)


def _crossed(book: OrderBook) -> bool:
    bid, ask = book.best_bid(), book.best_ask()
    return bid is not None and ask is not None and bid >= ask


def _rejected(code: str, message: str) -> list[Event]:
    return [CommandRejected(code, message)]


def shard_of(order_or_trade_id: int) -> int:
    """The index of the shard that handed out an order or trade id."""
    return order_or_trade_id // SHARD_ID_SPAN


class ExchangeCore:
    """All exchange state, changed only by `apply`, one command at a time."""

    def __init__(self) -> None:
        self.engine = MatchingEngine()
        self.accounts = Accounts()
        self.risk = Risk(self.accounts)
        self.participants: dict[int, Participant] = {}
        self.participant_by_key_hash: dict[str, int] = {}
        self.instruments: dict[str, Instrument] = {}
        self.markets: dict[str, Market] = {}
        self.halted: dict[str, str] = {}  # symbol -> reason
        self.orders: dict[int, OrderRecord] = {}
        self.client_order_ids: dict[tuple[int, str], int] = {}
        self.orders_by_participant: dict[int, list[int]] = {}
        # (trade id, order id) of every fill, per participant, in trade order (derived state).
        self.fills_by_participant: dict[int, list[tuple[int, int]]] = {}
        self.settlements: dict[str, list[SettlementPrice]] = {}
        self.lineage = Lineage()
        self.shard: ShardConfigured | None = None  # None: not configured (shard 0's ids)
        self.transfers_out: dict[str, CashTransferredOut] = {}  # by transfer id
        self.transfers_in: dict[str, CashTransferredIn] = {}
        self._next_participant_id = 1  # above every id taken: ids may be given explicitly
        self._tripped: Market | None = None  # a circuit breaker tripped by the command at hand
        self.last_sequence = 0
        self.last_time_ns = 0
        self._handlers: dict[type[Any], Callable[[Any], list[Event]]] = {
            c.RegisterParticipant: self._register_participant,
            c.ListInstrument: self._list_instrument,
            c.Deposit: self._deposit,
            c.Withdraw: self._withdraw,
            c.PlaceOrder: self._place,
            c.CancelOrder: self._cancel,
            c.AmendOrder: self._amend,
            c.HaltMarket: self._halt,
            c.ResumeMarket: self._resume,
            c.ExpireDayOrders: self._expire_day_orders,
            c.ConfigureSurveillance: self._configure_surveillance,
            c.AdvanceSession: self._advance_session,
            c.PublishSettlement: self._publish_settlement,
            c.ExpireCertificate: self._expire_certificate,
            c.DeliverGoods: self._deliver_goods,
            c.ReleaseGoods: self._release_goods,
            c.ConfigureShard: self._configure_shard,
            c.TransferOut: self._transfer_out,
            c.TransferIn: self._transfer_in,
        }

    # ------------------------------------------------------------------ the one entry point

    def apply(self, command: c.Command, sequence: int, time_ns: int) -> list[Event]:
        """Apply one sequenced command; returns its events. Never raises on bad input."""
        assert sequence == self.last_sequence + 1, (sequence, self.last_sequence)
        assert time_ns >= self.last_time_ns, (time_ns, self.last_time_ns)
        self.last_sequence = sequence
        self.last_time_ns = time_ns
        return self._handlers[type(command)](command)

    # ------------------------------------------------------------------ participants, instruments

    def _register_participant(self, command: c.RegisterParticipant) -> list[Event]:
        name = command.name.strip()
        if not name or len(name) > MAX_NAME_LENGTH:
            return _rejected("INVALID_REQUEST", f"name must be 1-{MAX_NAME_LENGTH} characters")
        # 0 asks for the next free id (0 itself is the exchange's own fee account).
        participant_id = command.participant_id or self._next_participant_id
        if not 0 < participant_id <= MAX_PARTICIPANT_ID:
            return _rejected(
                "INVALID_PARTICIPANT_ID",
                f"participant_id must be 1..{MAX_PARTICIPANT_ID}, or 0 for the next free id",
            )
        if participant_id in self.participants:
            return _rejected("PARTICIPANT_ID_TAKEN", f"participant {participant_id} exists already")
        if len(command.api_key_hash) != 64 or command.api_key_hash in self.participant_by_key_hash:
            return _rejected("INVALID_REQUEST", "the API key hash is malformed or already in use")
        participant = Participant(participant_id, name, command.role, command.api_key_hash)
        self.participants[participant_id] = participant
        self.participant_by_key_hash[command.api_key_hash] = participant_id
        self._next_participant_id = max(self._next_participant_id, participant_id + 1)
        return [ParticipantRegistered(participant_id, name, command.role)]

    def _list_instrument(self, command: c.ListInstrument) -> list[Event]:
        instrument = command.instrument
        if instrument.symbol in self.instruments:
            return _rejected("DUPLICATE_SYMBOL", f"{instrument.symbol} is already listed")
        problem = listing_problem(instrument)
        if problem is not None:
            return _rejected("INVALID_INSTRUMENT", problem)
        attribute = attribute_problem(instrument, self.last_time_ns)
        if attribute is not None:
            return _rejected(*attribute)
        instrument = normalized(instrument)
        # With a timetable a market waits, closed, for the scheduler to open it.
        session = MarketSession(CLOSED if instrument.timetable is not None else CONTINUOUS)
        self.instruments[instrument.symbol] = instrument
        self.markets[instrument.symbol] = Market(
            instrument, self.engine.add_book(instrument.book_rules), session
        )
        return [InstrumentListed(instrument)]

    # ------------------------------------------------------------------ custody

    def _asset_problem(self, participant_id: int, asset: str, amount: int) -> list[Event] | None:
        if participant_id not in self.participants:
            return _rejected("UNKNOWN_PARTICIPANT", f"no participant {participant_id}")
        if asset != CASH and asset not in self.instruments:
            return _rejected("UNKNOWN_ASSET", f"{asset!r} is neither VND nor a listed symbol")
        if not 0 < amount <= MAX_AMOUNT:
            return _rejected("INVALID_AMOUNT", f"amount must be 1..{MAX_AMOUNT}")
        return None

    def _deposit(self, command: c.Deposit) -> list[Event]:
        problem = self._asset_problem(command.participant_id, command.asset, command.amount)
        if problem is not None:
            return problem
        self.accounts.deposit(command.participant_id, command.asset, command.amount)
        if command.asset != CASH:
            self.lineage.credit(command.participant_id, command.asset, UNTRACED, command.amount)
        available = self.accounts.available(command.participant_id, command.asset)
        return [FundsDeposited(command.participant_id, command.asset, command.amount, available)]

    def _withdraw(self, command: c.Withdraw) -> list[Event]:
        problem = self._asset_problem(command.participant_id, command.asset, command.amount)
        if problem is not None:
            return problem
        if not self.accounts.can_withdraw(command.participant_id, command.asset, command.amount):
            return _rejected(
                "INSUFFICIENT_FUNDS", "a withdrawal cannot exceed what is available (not reserved)"
            )
        self.accounts.withdraw(command.participant_id, command.asset, command.amount)
        if command.asset != CASH:
            self.lineage.debit(command.participant_id, command.asset, command.amount)
        available = self.accounts.available(command.participant_id, command.asset)
        return [FundsWithdrawn(command.participant_id, command.asset, command.amount, available)]

    # ------------------------------------------------------------------ shards

    def _configure_shard(self, command: c.ConfigureShard) -> list[Event]:
        """Once, before the first order: ids handed out before it would lie about their shard."""
        if self.shard is not None:
            return _rejected(
                "SHARD_ALREADY_CONFIGURED", f"this core is shard {self.shard.name!r} already"
            )
        if self.engine.last_order_id:
            return _rejected("SHARD_HAS_ORDERS", "a shard is configured before its first order")
        if not 0 <= command.index <= MAX_SHARD_INDEX:
            return _rejected("INVALID_SHARD", f"a shard's index is 0..{MAX_SHARD_INDEX}")
        if not SHARD_NAME.fullmatch(command.name):
            return _rejected("INVALID_SHARD", "a shard's name is 1-32 letters, digits, - or _")
        self.engine.start_ids_after(command.index * SHARD_ID_SPAN)
        self.shard = ShardConfigured(command.index, command.name)
        return [self.shard]

    def _transfer_problem(self, command: c.TransferOut | c.TransferIn) -> list[Event] | None:
        if command.participant_id not in self.participants:
            return _rejected("UNKNOWN_PARTICIPANT", f"no participant {command.participant_id}")
        if not 0 < command.amount <= MAX_AMOUNT:
            return _rejected("INVALID_AMOUNT", f"amount must be 1..{MAX_AMOUNT}")
        if self.shard is None:
            return _rejected("INVALID_TRANSFER", "this core is no configured shard: no transfers")
        if not 0 < len(command.transfer_id) <= MAX_TRANSFER_ID_LENGTH:
            return _rejected(
                "INVALID_TRANSFER", f"transfer_id must be 1-{MAX_TRANSFER_ID_LENGTH} characters"
            )
        other_shard = _other_shard(command)
        if other_shard == self.shard.name or not SHARD_NAME.fullmatch(other_shard):
            return _rejected("INVALID_TRANSFER", f"{other_shard!r} names no other shard")
        return None

    def _transfer_answered(
        self, command: c.TransferOut | c.TransferIn, seen: Mapping[str, Transfer]
    ) -> list[Event] | None:
        """The answer of a transfer that moves nothing: refused, or a retry of one made before
        (its first answer again, so a coordinator that lost an answer can safely send it again).
        """
        problem = self._transfer_problem(command)
        if problem is not None:
            return problem
        original = seen.get(command.transfer_id)
        if original is None:
            return None
        made = (original.participant_id, original.amount, _other_shard(original))
        if made != (command.participant_id, command.amount, _other_shard(command)):
            return _rejected(
                "DUPLICATE_TRANSFER",
                f"transfer {command.transfer_id!r} was made already, with other details",
            )
        return [TransferRepeated(original)]

    def _transfer_out(self, command: c.TransferOut) -> list[Event]:
        """Phase one: the cash leaves available (never reserved) funds, as a withdrawal would."""
        answer = self._transfer_answered(command, self.transfers_out)
        if answer is not None:
            return answer
        participant_id, amount = command.participant_id, command.amount
        if not self.accounts.can_withdraw(participant_id, CASH, amount):
            return _rejected(
                "INSUFFICIENT_FUNDS", "a transfer cannot exceed the VND available (not reserved)"
            )
        self.accounts.transfer_out(participant_id, amount)
        available = self.accounts.available(participant_id, CASH)
        event = CashTransferredOut(
            participant_id, amount, command.transfer_id, command.to_shard, available
        )
        self.transfers_out[command.transfer_id] = event
        return [event]

    def _transfer_in(self, command: c.TransferIn) -> list[Event]:
        """Phase two: the coordinator sends it only once the source acknowledged phase one."""
        answer = self._transfer_answered(command, self.transfers_in)
        if answer is not None:
            return answer
        participant_id, amount = command.participant_id, command.amount
        self.accounts.transfer_in(participant_id, amount)
        available = self.accounts.available(participant_id, CASH)
        event = CashTransferredIn(
            participant_id, amount, command.transfer_id, command.from_shard, available
        )
        self.transfers_in[command.transfer_id] = event
        return [event]

    # ------------------------------------------------------------------ markets

    def _halt(self, command: c.HaltMarket) -> list[Event]:
        if command.symbol not in self.instruments:
            return _rejected("UNKNOWN_INSTRUMENT", f"no instrument {command.symbol!r} is listed")
        reason = command.reason[:MAX_REASON_LENGTH]
        self.halted[command.symbol] = reason
        return [MarketHalted(command.symbol, reason)]

    def _resume(self, command: c.ResumeMarket) -> list[Event]:
        market = self.markets.get(command.symbol)
        if market is None:
            return _rejected("UNKNOWN_INSTRUMENT", f"no instrument {command.symbol!r} is listed")
        if self._certificate_expired(market):
            return _rejected("CERTIFICATE_EXPIRED", certificate_halt_reason(market))
        self.halted.pop(command.symbol, None)
        return [MarketResumed(command.symbol)]

    def _expire_day_orders(self, command: c.ExpireDayOrders) -> list[Event]:
        market = self.markets.get(command.symbol)
        if market is None:
            return _rejected("UNKNOWN_INSTRUMENT", f"no instrument {command.symbol!r} is listed")
        if command.ended_at_ns < 0:
            return _rejected("INVALID_REQUEST", "a day cannot end before 1970")
        events: list[Event] = []
        below = self._first_order_id_since(command.ended_at_ns) if command.ended_at_ns else None
        self._absorb(market.book.expire_day_orders(below), market, events)
        return events

    def _first_order_id_since(self, time_ns: int) -> int:
        """The id of the first order placed at `time_ns` or later (or the next id to be given).
        Ids grow with time, so the walk back from the newest order is as long as what was
        placed since `time_ns` (on every market): little, when the scheduler ends a day just
        after it ended."""
        first = self.engine.last_order_id + 1
        for order_id in reversed(self.orders):
            if self.orders[order_id].created_time_ns < time_ns:
                break
            first = order_id
        return first

    def _configure_surveillance(self, command: c.ConfigureSurveillance) -> list[Event]:
        """Surveillance is a projection: the core only refuses an unusable config."""
        problem = command.config.problem()
        return [] if problem is None else _rejected("INVALID_REQUEST", problem)

    # ------------------------------------------------------------------ sessions

    def _advance_session(self, command: c.AdvanceSession) -> list[Event]:
        market = self.markets.get(command.symbol)
        if market is None:
            return _rejected("UNKNOWN_INSTRUMENT", f"no instrument {command.symbol!r} is listed")
        current, target = market.session.session, command.session
        if target not in TRANSITIONS[current]:
            return _rejected(
                "INVALID_SESSION_TRANSITION",
                f"{command.symbol} is {current.value}: it cannot move to {target.value}",
            )
        if market.symbol in self.halted and current.is_call and target is not CLOSED:
            # A halted market's orders wait: no auction until it resumes (or it closes).
            return _rejected(
                "MARKET_HALTED",
                f"{command.symbol} is halted: its call ends in an auction only once it resumes",
            )
        events: list[Event] = []
        if current is CLOSED and target is CONTINUOUS and _crossed(market.book):
            # Orders left from a pre-open that closed without an auction: uncross them first.
            self._change_session(market, Session.AUCTION, events)
            self._uncross(market, events)
            self._change_session(market, CONTINUOUS, events)
        elif market.symbol not in self.halted and (
            (current.is_call and target is not CLOSED) or current is Session.CLOSING
        ):
            self._change_session(market, Session.AUCTION, events)
            self._uncross(market, events)
            after = CONTINUOUS if current is Session.PRE_OPEN else CLOSED
            self._change_session(market, after, events)
            if after is CLOSED:
                self._close(market, events, settle=True)
        elif target is CLOSED:
            self._cancel_waiting_market_orders(market, events)
            # A pre-open that never opened had no trading day to settle; a cool-off had one.
            traded = current in (CONTINUOUS, Session.CLOSING) or market.session.reopen_at_ns != 0
            self._change_session(market, CLOSED, events)
            self._close(market, events, settle=traded)
        else:
            self._change_session(market, target, events)
        return events

    def _change_session(self, market: Market, session: Session, events: list[Event]) -> None:
        state = market.session
        previous = state.session
        if previous is CLOSED:  # a new trading day opens
            state.trading_day = vietnam_date(self.last_time_ns).isoformat()
        if session is CONTINUOUS:  # (re)opened: only trades from now count towards a trip
            state.breaker_since_ns = self.last_time_ns
        state.session = session
        state.reopen_at_ns = 0
        events.append(SessionChanged(market.symbol, previous, session))

    def _uncross(self, market: Market, events: list[Event]) -> None:
        """The call auction (a halted market never gets here: its orders wait)."""
        book = market.book
        reference = book.rules.reference_price
        assert market.symbol not in self.halted
        found, engine_events = book.uncross(reference, self._waiting_market_orders(market))
        if found is None:
            events.append(AuctionUncrossed(market.symbol, None, 0, 0, reference))
        else:
            events.append(
                AuctionUncrossed(
                    market.symbol, found.price, found.volume, found.imbalance, reference
                )
            )
        self._absorb(engine_events, market, events)
        self._tripped = None  # the auction is the price discovery: it never trips the breaker

    def _waiting_market_orders(self, market: Market) -> set[int]:
        """The market orders resting in a call (they exist only there)."""
        return {
            order.order_id
            for side in (Side.BUY, Side.SELL)
            for order in market.book.resting_orders(side)
            if self.orders[order.order_id].order_type is MARKET
        }

    def _cancel_waiting_market_orders(self, market: Market, events: list[Event]) -> None:
        waiting = self._waiting_market_orders(market)
        self._absorb(cancel_market_orders(market.book, waiting), market, events)

    def _close(self, market: Market, events: list[Event], *, settle: bool) -> None:
        """The end of a trading day: day orders expire; the settlement price is fixed once."""
        self._absorb(market.book.expire_day_orders(), market, events)
        if settle and not self._settled_today(market):
            self._settle_day(market, events)

    def _trading_day(self, market: Market) -> str:
        """The Vietnam day the market's trading day opened on (a close caught up the next
        morning still settles the day it closes); today for a market that never closes."""
        return market.session.trading_day or vietnam_date(self.last_time_ns).isoformat()

    def _settled_today(self, market: Market) -> bool:
        history = self.settlements.get(market.symbol)
        day = self._trading_day(market)
        return bool(history) and history[-1].trading_day == day  # type: ignore[index]

    def _publish_settlement(self, command: c.PublishSettlement) -> list[Event]:
        market = self.markets.get(command.symbol)
        if market is None:
            return _rejected("UNKNOWN_INSTRUMENT", f"no instrument {command.symbol!r} is listed")
        if self._settled_today(market):
            return _rejected(
                "SETTLEMENT_ALREADY_PUBLISHED",
                f"{command.symbol} already has today's settlement price",
            )
        if market.session.session.is_call or market.session.reopen_at_ns:
            # The new reference moves the band, and market orders waiting for the auction
            # were funded at the old band's edge: publish after the auction, not during it.
            return _rejected(
                "SETTLEMENT_DURING_CALL",
                f"{command.symbol} is in a call phase: publish its settlement after the auction",
            )
        events: list[Event] = []
        self._settle_day(market, events)
        return events

    def _settle_day(self, market: Market, events: list[Event]) -> None:
        book = market.book
        rules = book.rules
        instrument = market.instrument
        settled = settlement_price(
            market.window,
            market.symbol,
            self._trading_day(market),
            self.last_time_ns,
            instrument.settlement_window_s,
            rules.reference_price,
            rules.tick_size,
            self.last_sequence,
        )
        self.settlements.setdefault(market.symbol, []).append(settled)
        market.window.last_price = None  # the next day's "last trade" starts afresh
        events.append(SettlementPublished(settled))
        book.set_rules(msgspec.structs.replace(rules, reference_price=settled.price))
        market.band_high = book.rules.band_high
        events.append(
            ReferencePriceChanged(
                market.symbol, settled.price, book.rules.band_low, book.rules.band_high
            )
        )

    # ------------------------------------------------------------------ circuit breaker

    def _check_breaker(self, market: Market) -> None:
        """After a continuous trade: did the prices of the window move too far?"""
        breaker = market.breaker
        assert breaker is not None
        if market.session.session is not CONTINUOUS:
            return
        span = market.window.range_within(
            self.last_time_ns, breaker.window_s, market.session.breaker_since_ns
        )
        if span is not None and (span[1] - span[0]) * 100 > breaker.move_pct * span[0]:
            self._tripped = market

    def _trip(self, events: list[Event]) -> None:
        market = self._tripped
        assert market is not None and market.breaker is not None
        self._tripped = None
        breaker = market.breaker
        span = market.window.range_within(
            self.last_time_ns, breaker.window_s, market.session.breaker_since_ns
        )
        assert span is not None
        reopen_at_ns = self.last_time_ns + breaker.cool_off_s * NS_PER_SECOND
        state = market.session
        state.session = Session.PRE_OPEN
        state.reopen_at_ns = reopen_at_ns
        # Only trades after the reopening count towards the next trip.
        state.breaker_since_ns = reopen_at_ns
        events.append(
            CircuitBreakerTripped(
                market.symbol, span[0], span[1], breaker.move_pct, breaker.window_s, reopen_at_ns
            )
        )
        events.append(SessionChanged(market.symbol, CONTINUOUS, Session.PRE_OPEN, reopen_at_ns))

    # ------------------------------------------------------------------ certificates

    def _certificate_expired(self, market: Market) -> bool:
        return bool(market.expiry_ns) and self.last_time_ns >= market.expiry_ns

    def _expire_certificate(self, command: c.ExpireCertificate) -> list[Event]:
        market = self.markets.get(command.symbol)
        if market is None:
            return _rejected("UNKNOWN_INSTRUMENT", f"no instrument {command.symbol!r} is listed")
        if not self._certificate_expired(market):
            return _rejected(
                "CERTIFICATE_NOT_EXPIRED", f"{command.symbol} has no expired certificate"
            )
        reason = certificate_halt_reason(market)
        if self.halted.get(command.symbol) == reason:
            return _rejected("ALREADY_HALTED", f"{command.symbol} is already halted: {reason}")
        self.halted[command.symbol] = reason
        expired_on = str(market.instrument.attributes["certificate_expires_on"])
        return [
            CertificateExpired(command.symbol, expired_on),
            MarketHalted(command.symbol, reason),
        ]

    # ------------------------------------------------------------------ physical delivery

    def _delivery_problem(self, command: c.DeliverGoods) -> list[Event] | None:
        problem = self._asset_problem(command.participant_id, command.symbol, command.lots)
        if problem is not None:
            return problem
        if command.symbol == CASH:
            return _rejected("UNKNOWN_ASSET", "cash is deposited, not delivered")
        instrument = self.instruments[command.symbol]
        texts = (command.farm_code, command.certificate)
        if any(len(text) > MAX_DELIVERY_TEXT for text in texts):
            return _rejected("INVALID_REQUEST", f"texts are at most {MAX_DELIVERY_TEXT} characters")
        if not 0 < command.inspected_at_ns <= self.last_time_ns:
            return _rejected("INVALID_REQUEST", "the inspection cannot be in the future")
        if instrument.kind is InstrumentKind.OCOP:
            return self._ocop_delivery_problem(command, instrument)
        return self._hog_delivery_problem(command, instrument)

    @staticmethod
    def _hog_delivery_problem(
        command: c.DeliverGoods, instrument: Instrument
    ) -> list[Event] | None:
        if not 0 < command.head_count <= MAX_HEAD_COUNT:
            return _rejected("INVALID_REQUEST", f"head_count must be 1..{MAX_HEAD_COUNT}")
        if not 0 < command.average_weight_kg <= MAX_HEAD_WEIGHT_KG:
            return _rejected(
                "INVALID_REQUEST", f"average_weight_kg must be 1..{MAX_HEAD_WEIGHT_KG}"
            )
        low = instrument.attributes.get("head_weight_min_kg")
        high = instrument.attributes.get("head_weight_max_kg")
        weight = command.average_weight_kg
        if isinstance(low, int) and isinstance(high, int) and not low <= weight <= high:
            return _rejected(
                "WEIGHT_OUT_OF_BAND",
                f"{instrument.symbol} takes hogs of {low}-{high} kg a head on average",
            )
        if command.head_count * command.average_weight_kg < command.lots * instrument.lot_size:
            return _rejected(
                "DELIVERY_SHORT_WEIGHT",
                f"head count x average weight is less than {command.lots} lots of "
                f"{instrument.lot_size} kg",
            )
        if requires(instrument, "vietgap_required") and not command.certificate.strip():
            return _rejected("TRACEABILITY_REQUIRED", "a VietGAP certificate is required")
        if requires(instrument, "farm_code_required") and not command.farm_code.strip():
            return _rejected("TRACEABILITY_REQUIRED", "a farm code is required")
        return None

    @staticmethod
    def _ocop_delivery_problem(
        command: c.DeliverGoods, instrument: Instrument
    ) -> list[Event] | None:
        if command.head_count or command.average_weight_kg:
            return _rejected("INVALID_REQUEST", "OCOP goods have no head count or head weight")
        listed = str(instrument.attributes["certificate_number"])
        if command.certificate not in ("", listed):
            return _rejected(
                "CERTIFICATE_MISMATCH", f"{instrument.symbol} is listed under certificate {listed}"
            )
        return None

    def _deliver_goods(self, command: c.DeliverGoods) -> list[Event]:
        problem = self._delivery_problem(command)
        if problem is not None:
            return problem
        instrument = self.instruments[command.symbol]
        certificate = command.certificate
        if instrument.kind is InstrumentKind.OCOP and not certificate:
            certificate = str(instrument.attributes["certificate_number"])
        receipt = Receipt(
            len(self.lineage.receipts) + 1,
            command.participant_id,
            command.symbol,
            command.lots,
            command.head_count,
            command.average_weight_kg,
            command.farm_code.strip(),
            certificate.strip(),
            command.inspected_at_ns,
            self.last_sequence,
            self.last_time_ns,
        )
        self.accounts.deposit(command.participant_id, command.symbol, command.lots)
        self.lineage.receipts[receipt.receipt_id] = receipt
        self.lineage.credit(
            command.participant_id, command.symbol, receipt.receipt_id, receipt.lots
        )
        available = self.accounts.available(command.participant_id, command.symbol)
        return [GoodsDelivered(receipt, available)]

    def _release_goods(self, command: c.ReleaseGoods) -> list[Event]:
        participant_id, symbol, lots = command.participant_id, command.symbol, command.lots
        problem = self._asset_problem(participant_id, symbol, lots)
        if problem is not None:
            return problem
        if symbol == CASH:
            return _rejected("UNKNOWN_ASSET", "cash is withdrawn, not delivered")
        if len(command.destination) > MAX_DELIVERY_TEXT:
            return _rejected("INVALID_REQUEST", f"texts are at most {MAX_DELIVERY_TEXT} characters")
        if not self.accounts.can_withdraw(participant_id, symbol, lots):
            return _rejected(
                "INSUFFICIENT_FUNDS", "a delivery cannot exceed the lots available (not reserved)"
            )
        self.accounts.withdraw(participant_id, symbol, lots)
        release = Release(
            len(self.lineage.releases) + 1,
            participant_id,
            symbol,
            lots,
            command.destination.strip(),
            self.lineage.debit(participant_id, symbol, lots),
            self.last_sequence,
            self.last_time_ns,
        )
        self.lineage.releases[release.release_id] = release
        return [GoodsReleased(release, self.accounts.available(participant_id, symbol))]

    # ------------------------------------------------------------------ orders

    def _trader_problem(self, participant_id: int) -> list[Event] | None:
        participant = self.participants.get(participant_id)
        if participant is None:
            return _rejected("UNKNOWN_PARTICIPANT", f"no participant {participant_id}")
        if participant.role is not Role.TRADER:
            return _rejected("FORBIDDEN", "only traders place, amend and cancel orders")
        return None

    def _place(self, command: c.PlaceOrder) -> list[Event]:
        participant_id = command.participant_id
        participant = self.participants.get(participant_id)
        if participant is None or participant.role is not TRADER:
            problem = self._trader_problem(participant_id)
            assert problem is not None
            return problem
        client_order_id = command.client_order_id
        if client_order_id is not None:
            if not 0 < len(client_order_id) <= MAX_CLIENT_ORDER_ID_LENGTH:
                return _rejected(
                    "INVALID_REQUEST",
                    f"client_order_id must be 1-{MAX_CLIENT_ORDER_ID_LENGTH} characters",
                )
            original = self.client_order_ids.get((participant_id, client_order_id))
            if original is not None:
                return [DuplicateClientOrderId(original, participant_id, client_order_id)]
        symbol = command.symbol
        market = self.markets.get(symbol)
        if market is None:
            return _rejected("UNKNOWN_INSTRUMENT", f"no instrument {symbol!r} is listed")
        if market.expiry_ns and self.last_time_ns >= market.expiry_ns:
            return _rejected("CERTIFICATE_EXPIRED", certificate_halt_reason(market))
        if symbol in self.halted:
            return _rejected("MARKET_HALTED", f"{symbol} is halted: only cancels are accepted")
        session = market.session.session
        if session is CLOSED:
            return _rejected("MARKET_CLOSED", f"{symbol} is closed: only cancels are accepted")
        book = market.book
        order_id = self.engine.last_order_id + 1
        request = OrderRequest(
            order_id,
            participant_id,
            command.side,
            command.price,
            command.quantity,
            command.order_type,
            command.time_in_force,
            command.post_only,
            command.all_or_none,
        )
        code = book.validate(request)
        if code is None and session is not CONTINUOUS and command.time_in_force in _IMMEDIATE:
            code = RejectCode.NOT_ALLOWED_IN_CALL
        if code is not None:
            return [OrderRejected(symbol, order_id, participant_id, code, reject_message(code))]
        hold_event = self._hold(request, market)
        if hold_event is None:
            return _rejected("INSUFFICIENT_FUNDS", _short_of(command.side, symbol))

        if session is CONTINUOUS:
            engine_events = book.place(request, validated=True)
        else:  # a call phase: the order waits for the auction
            engine_events = book.rest(request)
        if type(engine_events[0]) is OrderRejected:  # post-only would take: undo the hold
            self.risk.release(order_id)
            return cast(list[Event], engine_events)
        self._register(command, order_id)
        events: list[Event] = [
            OrderRegistered(order_id, participant_id, symbol, client_order_id),
            hold_event,
        ]
        self._absorb(engine_events, market, events)
        if self._tripped is not None:
            self._trip(events)
        return events

    def _hold(self, request: OrderRequest, market: Market) -> FundsHeld | None:
        """Reserve what the order needs; None when the participant is short."""
        if request.side is BUY:
            price = market.band_high if request.price is None else request.price
            amount = self.risk.hold_for_buy(
                request.order_id,
                request.participant_id,
                price,
                request.quantity,
                market.lot_size,
                market.fees,
            )
            asset = CASH
        else:
            asset = market.symbol
            amount = self.risk.hold_for_sell(
                request.order_id, request.participant_id, asset, request.quantity
            )
        if amount is None:
            return None
        return FundsHeld(request.order_id, request.participant_id, asset, amount)

    def _register(self, command: c.PlaceOrder, order_id: int) -> None:
        self.orders[order_id] = OrderRecord(
            order_id,
            command.participant_id,
            command.symbol,
            command.side,
            command.order_type,
            command.price,
            command.quantity,
            command.time_in_force,
            command.post_only,
            command.all_or_none,
            command.client_order_id,
            self.last_sequence,
            self.last_time_ns,
            updated_sequence=self.last_sequence,
        )
        if command.client_order_id is not None:
            self.client_order_ids[(command.participant_id, command.client_order_id)] = order_id
        self.orders_by_participant.setdefault(command.participant_id, []).append(order_id)

    def _owned_open_order(self, participant_id: int, order_id: int) -> OrderRecord | list[Event]:
        record = self.orders.get(order_id)
        if record is None or record.participant_id != participant_id:
            return _rejected("ORDER_NOT_FOUND", f"no order {order_id} of this participant")
        if not record.status.is_open:
            return _rejected("ORDER_NOT_OPEN", f"order {order_id} is {record.status.value}")
        return record

    def _cancel(self, command: c.CancelOrder) -> list[Event]:
        record = self._owned_open_order(command.participant_id, command.order_id)
        if isinstance(record, list):
            return record
        market = self.markets[record.symbol]
        events: list[Event] = []
        self._absorb(market.book.cancel(command.order_id), market, events)
        return events

    def _amend(self, command: c.AmendOrder) -> list[Event]:
        problem = self._trader_problem(command.participant_id)
        if problem is not None:
            return problem
        record = self._owned_open_order(command.participant_id, command.order_id)
        if isinstance(record, list):
            return record
        symbol = record.symbol
        if symbol in self.halted:
            return _rejected("MARKET_HALTED", f"{symbol} is halted: only cancels are accepted")
        market = self.markets[symbol]
        if self._certificate_expired(market):  # as for new orders: no window before the halt
            return _rejected("CERTIFICATE_EXPIRED", certificate_halt_reason(market))
        session = market.session.session
        if session is CLOSED:
            return _rejected("MARKET_CLOSED", f"{symbol} is closed: only cancels are accepted")
        book = market.book
        order_id = command.order_id
        if command.price is not None and record.order_type is MARKET:  # waiting in a call
            message = "a market order waiting for the auction has no price to change"
            return [AmendRejected(symbol, order_id, RejectCode.INVALID_AMEND, message)]
        code = book.amend_error(order_id, command.price, command.quantity)
        if code is not None:
            return [AmendRejected(symbol, order_id, code, reject_message(code))]
        open_order = book.order(order_id)
        assert open_order is not None
        old_price, old_remaining = open_order.price, open_order.remaining
        new_price = old_price if command.price is None else command.price
        new_quantity = open_order.quantity if command.quantity is None else command.quantity
        new_remaining = new_quantity - open_order.filled
        held_before = self.risk.held(order_id)
        if new_remaining > 0 and not self._resize_hold(record, market, new_price, new_remaining):
            return _rejected("INSUFFICIENT_FUNDS", _short_of(record.side, symbol))
        engine_events = book.amend(
            order_id, command.price, command.quantity, matching=session is CONTINUOUS
        )
        if isinstance(engine_events[0], AmendRejected):  # post-only would take: undo
            restored = self._resize_hold(record, market, old_price, old_remaining)
            assert restored
            return cast(list[Event], engine_events)
        events = self._hold_change(record, held_before)
        self._absorb(engine_events, market, events)
        if self._tripped is not None:
            self._trip(events)
        return events

    def _hold_change(self, record: OrderRecord, held_before: int) -> list[Event]:
        """The amend's change to the order's hold, as an event (none when unchanged)."""
        held = self.risk.held(record.order_id)
        asset = CASH if record.side is BUY else record.symbol
        if held > held_before:
            return [FundsHeld(record.order_id, record.participant_id, asset, held - held_before)]
        if held < held_before:
            return [
                FundsReleased(record.order_id, record.participant_id, asset, held_before - held)
            ]
        return []

    def _resize_hold(self, record: OrderRecord, market: Market, price: int, remaining: int) -> bool:
        if record.side is BUY:
            return self.risk.resize_buy(
                record.order_id, price, remaining, market.lot_size, market.fees
            )
        return self.risk.resize_sell(record.order_id, remaining)

    # ------------------------------------------------------------------ engine events

    def _absorb(
        self,
        engine_events: list[EngineEvent],
        market: Market,
        events: list[Event],
    ) -> None:
        """Pass the book's events on, settling trades and updating records as they come."""
        sequence = self.last_sequence
        for event in engine_events:
            events.append(event)
            kind = type(event)
            if kind is BookLevelChanged:
                continue
            if kind is Trade:
                assert isinstance(event, Trade)
                self._settle(event, market, events)
            elif kind is OrderCancelled:
                assert isinstance(event, OrderCancelled)
                record = self.orders[event.order_id]
                record.status = OrderStatus.CANCELLED
                record.cancel_reason = event.reason.value
                record.updated_sequence = sequence
                self._release(record, events)
            elif kind is OrderExpired:
                assert isinstance(event, OrderExpired)
                record = self.orders[event.order_id]
                record.status = OrderStatus.EXPIRED
                record.updated_sequence = sequence
                self._release(record, events)
            elif kind is OrderAmended:
                assert isinstance(event, OrderAmended)
                record = self.orders[event.order_id]
                record.price = event.price
                record.quantity = event.quantity
                record.updated_sequence = sequence

    def _settle(self, trade: Trade, market: Market, events: list[Event]) -> None:
        fees = market.fees
        if trade.aggressor_side is BUY:
            buy_id, sell_id = trade.taker_order_id, trade.maker_order_id
            buy_remaining = trade.taker_remaining
            buyer_bps, seller_bps = fees.taker_bps, fees.maker_bps
        else:
            buy_id, sell_id = trade.maker_order_id, trade.taker_order_id
            buy_remaining = trade.maker_remaining
            buyer_bps, seller_bps = fees.maker_bps, fees.taker_bps
        settlement = self.risk.settle(
            trade.symbol,
            trade.trade_id,
            buy_id,
            sell_id,
            trade.price,
            trade.quantity,
            buy_remaining,
            market.lot_size,
            buyer_bps,
            seller_bps,
            fees.max_bps,
        )
        events.append(settlement)
        self.lineage.transfer(
            trade.trade_id, settlement.seller_id, settlement.buyer_id, trade.symbol, trade.quantity
        )
        market.window.add(self.last_time_ns, trade.price, trade.quantity)
        if market.breaker is not None and self._tripped is None:
            self._check_breaker(market)
        if trade.aggressor_side is BUY:
            maker_fee, taker_fee = settlement.seller_fee_vnd, settlement.buyer_fee_vnd
        else:
            maker_fee, taker_fee = settlement.buyer_fee_vnd, settlement.seller_fee_vnd
        self._record_fill(trade.maker_order_id, trade, MAKER, maker_fee)
        self._record_fill(trade.taker_order_id, trade, TAKER, taker_fee)
        if trade.maker_remaining == 0:
            self._release(self.orders[trade.maker_order_id], events)
        if trade.taker_remaining == 0:
            self._release(self.orders[trade.taker_order_id], events)

    def _record_fill(self, order_id: int, trade: Trade, liquidity: Liquidity, fee: int) -> None:
        record = self.orders[order_id]
        record.filled_quantity += trade.quantity
        record.status = FILLED if record.filled_quantity == record.quantity else PARTIALLY_FILLED
        record.updated_sequence = self.last_sequence
        fill = Fill(
            trade.trade_id,
            trade.price,
            trade.quantity,
            liquidity,
            fee,
            self.last_sequence,
            self.last_time_ns,
        )
        if record.fills is None:
            record.fills = [fill]
        else:
            record.fills.append(fill)
        fills = self.fills_by_participant.get(record.participant_id)
        if fills is None:
            fills = self.fills_by_participant[record.participant_id] = []
        fills.append((trade.trade_id, order_id))

    def _release(self, record: OrderRecord, events: list[Event]) -> None:
        amount = self.risk.release(record.order_id)
        if amount:
            asset = CASH if record.side is BUY else record.symbol
            events.append(FundsReleased(record.order_id, record.participant_id, asset, amount))

    # ------------------------------------------------------------------ queries

    @property
    def next_participant_id(self) -> int:
        """The id the next participant registered without one gets (ids may have gaps)."""
        return self._next_participant_id

    def indicative_price(self, symbol: str) -> AuctionPrice | None:
        """In a call phase: the price and volume the auction would have now (else None)."""
        market = self.markets[symbol]
        if not market.session.session.is_call:
            return None
        return market.book.indicative_price(
            market.book.rules.reference_price, self._waiting_market_orders(market)
        )

    def fills_of_trade(self, trade_id: int) -> list[tuple[OrderRecord, Fill]]:
        """Both sides of a trade (buy first), or [] for a trade id never issued."""
        if not 0 < trade_id <= self.engine.last_trade_id:
            return []
        found = []
        for fills in self.fills_by_participant.values():
            index = bisect_left(fills, (trade_id, 0))
            while index < len(fills) and fills[index][0] == trade_id:
                record = self.orders[fills[index][1]]
                fill = next(f for f in record.fills or () if f.trade_id == trade_id)
                found.append((record, fill))
                index += 1
        found.sort(key=lambda pair: pair[0].side is not BUY)
        return found

    # ------------------------------------------------------------------ state

    def check_invariants(self) -> None:
        """Accounts conserve every asset, holds match reservations, open orders match books."""
        self.risk.check_invariants()
        resting = 0
        for symbol in self.engine.symbols:
            book = self.engine.book(symbol)
            assert book is not None
            resting += book.open_order_count()
            for side in (Side.BUY, Side.SELL):
                for order in book.resting_orders(side):
                    record = self.orders[order.order_id]
                    assert record.status.is_open, record
                    assert record.quantity - record.filled_quantity == order.remaining, record
        open_records = sum(1 for r in self.orders.values() if r.status.is_open)
        assert open_records == resting, (open_records, resting)
        # Every lot in custody belongs to exactly one receipt queue entry of its owner.
        for balance in self.accounts.state().balances:
            if balance.asset != CASH and balance.participant_id != FEE_ACCOUNT:
                total = balance.available + balance.reserved
                held = self.lineage.held(balance.participant_id, balance.asset)
                assert held == total, (balance, held)
        self._check_transfers()

    def _check_transfers(self) -> None:
        """Transfers need a configured shard, and each names another shard and moved cash."""
        transfers: list[Transfer] = [*self.transfers_out.values(), *self.transfers_in.values()]
        assert self.shard is not None or not transfers, transfers
        for transfer in transfers:
            assert self.shard is not None and _other_shard(transfer) != self.shard.name
            assert 0 < transfer.amount <= MAX_AMOUNT, transfer
            assert transfer.participant_id in self.participants, transfer

    def state(self) -> CoreState:
        return CoreState(
            self.last_sequence,
            self.last_time_ns,
            self.engine.state(),
            self.accounts.state(),
            self.risk.state(),
            list(self.participants.values()),
            list(self.instruments.values()),
            dict(sorted(self.halted.items())),
            list(self.orders.values()),
            {s: msgspec.structs.replace(m.session) for s, m in sorted(self.markets.items())},
            {s: m.window.state() for s, m in sorted(self.markets.items())},
            {s: list(h) for s, h in sorted(self.settlements.items())},
            self.lineage.state(),
            self.shard,
            list(self.transfers_out.values()),
            list(self.transfers_in.values()),
        )

    @classmethod
    def from_state(cls, state: CoreState) -> ExchangeCore:
        core = cls()
        core.last_sequence = state.last_sequence
        core.last_time_ns = state.last_time_ns
        core.engine = MatchingEngine.from_state(state.engine)
        core.accounts = Accounts.from_state(state.accounts)
        core.risk = Risk.from_state(core.accounts, state.risk)
        for participant in state.participants:
            core.participants[participant.participant_id] = participant
            core.participant_by_key_hash[participant.api_key_hash] = participant.participant_id
        core._next_participant_id = max(core.participants, default=0) + 1
        core.shard = state.shard
        core.transfers_out = {t.transfer_id: t for t in state.transfers_out}
        core.transfers_in = {t.transfer_id: t for t in state.transfers_in}
        core.instruments = {i.symbol: i for i in state.instruments}
        for instrument in state.instruments:
            book = core.engine.book(instrument.symbol)
            assert book is not None
            session = state.sessions.get(instrument.symbol)
            session = MarketSession() if session is None else msgspec.structs.replace(session)
            market = core.markets[instrument.symbol] = Market(instrument, book, session)
            window = state.trade_windows.get(instrument.symbol)
            if window is not None:
                market.window.restore(window)
        core.settlements = {s: list(h) for s, h in state.settlements.items()}
        core.lineage = (
            Lineage.from_state(state.lineage)
            if state.lineage is not None
            else _untraced_lineage(state.accounts)
        )
        core.halted = dict(state.halted)
        for record in state.orders:
            record = msgspec.structs.replace(record)
            core.orders[record.order_id] = record
            if record.client_order_id is not None:
                core.client_order_ids[(record.participant_id, record.client_order_id)] = (
                    record.order_id
                )
            core.orders_by_participant.setdefault(record.participant_id, []).append(record.order_id)
            fills = core.fills_by_participant.setdefault(record.participant_id, [])
            fills.extend((fill.trade_id, record.order_id) for fill in record.fills or ())
        for fills in core.fills_by_participant.values():
            fills.sort()  # trade ids increase with time: back to trade order
        return core

    def digest(self) -> str:
        """SHA-256 of the canonical encoding of the whole state: equal digests, equal cores."""
        return hashlib.sha256(msgspec.msgpack.encode(self.state())).hexdigest()


def _untraced_lineage(accounts: AccountsState) -> Lineage:
    """A snapshot from before receipts: every lot in custody is untraced."""
    lineage = Lineage()
    for balance in accounts.balances:
        if balance.asset != CASH and balance.available + balance.reserved:
            lineage.credit(
                balance.participant_id,
                balance.asset,
                UNTRACED,
                balance.available + balance.reserved,
            )
    return lineage


def _other_shard(transfer: Transfer | c.TransferOut | c.TransferIn) -> str:
    """The shard at the other end of a transfer: where the cash goes, or where it comes from."""
    if isinstance(transfer, CashTransferredOut | c.TransferOut):
        return transfer.to_shard
    return transfer.from_shard


def certificate_halt_reason(market: Market) -> str:
    expired_on = market.instrument.attributes.get("certificate_expires_on")
    return f"the OCOP certificate of {market.symbol} expired on {expired_on}"


def _short_of(side: Side, symbol: str) -> str:
    if side is BUY:
        return "not enough VND available to hold for this order (price x quantity x lot + fee)"
    return f"not enough {symbol} lots available in custody to sell"


# ---------------------------------------------------------------------- the compiled twin

# `exchange/compiled_core.pyx`, when it was built: the trading path above (placing, cancelling
# and amending orders, holds, settling trades), compiled; everything else is this file's. The
# methods above stay the readable statement of the rules and the fallback without a C compiler;
# `HOGX_PURE_PYTHON_CORE=1` forces them. Both behave identically: tests/test_core_twins.py.
PURE_PYTHON_ENV = "HOGX_PURE_PYTHON_CORE"
PythonExchangeCore = ExchangeCore
CompiledExchangeCore: type[ExchangeCore] | None = None
if not TYPE_CHECKING:  # the type checker reads the Python class: the compiled one is the same
    try:
        from exchange import compiled_core

        # ImportError too when a field it reads in place is no slot of `Market` any more, or
        # when `clearing.compiled_clearing` or `matching_engine.compiled_book`, which it calls
        # in C, was not built or was built from another .pxd (`check_interfaces`);
        # AttributeError when the built module is older than this file (`pip install -e .`);
        # ValueError when a compiled clearing class is smaller than when this module was built
        # (Cython's size check on the classes it cimports, in compiled_clearing.pxd).
        compiled_core.bind(Market, MAX_CLIENT_ORDER_ID_LENGTH, certificate_halt_reason, _short_of)
        _refuse_overrides = compiled_core.refuse_overrides
    except (ImportError, AttributeError, ValueError):  # not built, or out of date
        pass
    else:

        class CompiledExchangeCore(compiled_core.CompiledTradingPath, PythonExchangeCore):
            """`ExchangeCore`, with the trading path of `compiled_core` first in its bases."""

            def __init_subclass__(cls, **kwargs: Any) -> None:
                super().__init_subclass__(**kwargs)
                _refuse_overrides(cls)

        if os.environ.get(PURE_PYTHON_ENV) != "1":
            ExchangeCore = CompiledExchangeCore

CORE_IMPLEMENTATION = "compiled" if ExchangeCore is CompiledExchangeCore else "python"
"""Which implementation `ExchangeCore` runs: "compiled" or "python"."""

__all__ = [
    "CORE_IMPLEMENTATION",
    "PURE_PYTHON_ENV",
    "SHARD_ID_SPAN",
    "CompiledExchangeCore",
    "CoreState",
    "ExchangeCore",
    "PythonExchangeCore",
    "Transfer",
    "cash_to_hold",
    "certificate_halt_reason",
    "shard_of",
]
