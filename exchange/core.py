"""The core state machine: (state, command) -> events, pure and deterministic.

It composes the matching engine (one book per instrument) with custody and pre-trade risk
(`clearing`), and keeps the registries the exchange answers from: participants, instruments,
market status and every order ever accepted. No clock, no randomness, no I/O: the sequencer
hands in each command with its sequence number and time, so replaying the journal rebuilds
exactly the same state, which `digest()` proves.

Order of checks for a new order: participant and role, client order id (a repeat answers with
the original order), instrument, market status, the book's own rules, then funds: so a
participant hears about a bad price before hearing about money.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from typing import Any, cast

import msgspec

from clearing.accounts import CASH, Accounts, AccountsState
from clearing.risk import Risk, RiskState, cash_to_hold
from exchange import commands as c
from exchange.events import (
    CommandRejected,
    DuplicateClientOrderId,
    Event,
    FundsDeposited,
    FundsHeld,
    FundsReleased,
    FundsWithdrawn,
    InstrumentListed,
    MarketHalted,
    MarketResumed,
    OrderRegistered,
    ParticipantRegistered,
)
from exchange.instruments import Instrument, listing_problem
from exchange.orders import Fill, Liquidity, OrderRecord, OrderStatus
from exchange.participants import MAX_NAME_LENGTH, Participant, Role
from matching_engine import (
    AmendRejected,
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
    Trade,
)
from matching_engine.book import reject_message

MAX_AMOUNT = 10**15  # per deposit or withdrawal, in VND or lots
MAX_CLIENT_ORDER_ID_LENGTH = 64
MAX_REASON_LENGTH = 200

BUY = Side.BUY
MARKET = OrderType.MARKET
MAKER = Liquidity.MAKER
TAKER = Liquidity.TAKER
TRADER = Role.TRADER
PARTIALLY_FILLED = OrderStatus.PARTIALLY_FILLED
FILLED = OrderStatus.FILLED


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


class Market:
    """What the hot path needs about one listed instrument, gathered behind one dict lookup."""

    __slots__ = ("band_high", "book", "fees", "instrument", "lot_size", "symbol")

    def __init__(self, instrument: Instrument, book: OrderBook) -> None:
        self.instrument = instrument
        self.symbol = instrument.symbol
        self.book = book
        self.lot_size = instrument.lot_size
        self.fees = instrument.fees
        self.band_high = book.rules.band_high


def _rejected(code: str, message: str) -> list[Event]:
    return [CommandRejected(code, message)]


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
        if len(command.api_key_hash) != 64 or command.api_key_hash in self.participant_by_key_hash:
            return _rejected("INVALID_REQUEST", "the API key hash is malformed or already in use")
        participant_id = len(self.participants) + 1  # 0 is the exchange's own fee account
        participant = Participant(participant_id, name, command.role, command.api_key_hash)
        self.participants[participant_id] = participant
        self.participant_by_key_hash[command.api_key_hash] = participant_id
        return [ParticipantRegistered(participant_id, name, command.role)]

    def _list_instrument(self, command: c.ListInstrument) -> list[Event]:
        instrument = command.instrument
        if instrument.symbol in self.instruments:
            return _rejected("DUPLICATE_SYMBOL", f"{instrument.symbol} is already listed")
        problem = listing_problem(instrument)
        if problem is not None:
            return _rejected("INVALID_INSTRUMENT", problem)
        self.instruments[instrument.symbol] = instrument
        self.markets[instrument.symbol] = Market(
            instrument, self.engine.add_book(instrument.book_rules)
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
        available = self.accounts.available(command.participant_id, command.asset)
        return [FundsWithdrawn(command.participant_id, command.asset, command.amount, available)]

    # ------------------------------------------------------------------ markets

    def _halt(self, command: c.HaltMarket) -> list[Event]:
        if command.symbol not in self.instruments:
            return _rejected("UNKNOWN_INSTRUMENT", f"no instrument {command.symbol!r} is listed")
        reason = command.reason[:MAX_REASON_LENGTH]
        self.halted[command.symbol] = reason
        return [MarketHalted(command.symbol, reason)]

    def _resume(self, command: c.ResumeMarket) -> list[Event]:
        if command.symbol not in self.instruments:
            return _rejected("UNKNOWN_INSTRUMENT", f"no instrument {command.symbol!r} is listed")
        self.halted.pop(command.symbol, None)
        return [MarketResumed(command.symbol)]

    def _expire_day_orders(self, command: c.ExpireDayOrders) -> list[Event]:
        market = self.markets.get(command.symbol)
        if market is None:
            return _rejected("UNKNOWN_INSTRUMENT", f"no instrument {command.symbol!r} is listed")
        events: list[Event] = []
        self._absorb(market.book.expire_day_orders(), market, events)
        return events

    def _configure_surveillance(self, command: c.ConfigureSurveillance) -> list[Event]:
        """Surveillance is a projection: the core only refuses an unusable config."""
        problem = command.config.problem()
        return [] if problem is None else _rejected("INVALID_REQUEST", problem)

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
        if symbol in self.halted:
            return _rejected("MARKET_HALTED", f"{symbol} is halted: only cancels are accepted")
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
        if code is not None:
            return [OrderRejected(symbol, order_id, participant_id, code, reject_message(code))]
        hold_event = self._hold(request, market)
        if hold_event is None:
            return _rejected("INSUFFICIENT_FUNDS", _short_of(command.side, symbol))

        engine_events = book.place(request, validated=True)
        if type(engine_events[0]) is OrderRejected:  # post-only would take: undo the hold
            self.risk.release(order_id)
            return cast(list[Event], engine_events)
        self._register(command, order_id)
        events: list[Event] = [
            OrderRegistered(order_id, participant_id, symbol, client_order_id),
            hold_event,
        ]
        self._absorb(engine_events, market, events)
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
        book = market.book
        order_id = command.order_id
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
        engine_events = book.amend(order_id, command.price, command.quantity)
        if isinstance(engine_events[0], AmendRejected):  # post-only would take: undo
            restored = self._resize_hold(record, market, old_price, old_remaining)
            assert restored
            return cast(list[Event], engine_events)
        events = self._hold_change(record, held_before)
        self._absorb(engine_events, market, events)
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
        core.instruments = {i.symbol: i for i in state.instruments}
        for instrument in state.instruments:
            book = core.engine.book(instrument.symbol)
            assert book is not None
            core.markets[instrument.symbol] = Market(instrument, book)
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


def _short_of(side: Side, symbol: str) -> str:
    if side is BUY:
        return "not enough VND available to hold for this order (price x quantity x lot + fee)"
    return f"not enough {symbol} lots available in custody to sell"


__all__ = ["CoreState", "ExchangeCore", "cash_to_hold"]
