"""The matching engine against a simple reference model, command by command.

A hypothesis state machine drives random sequences of orders, cancels, amends and day-order
expiries through `MatchingEngine` and through `reference_book.ReferenceExchange` (a slow,
obviously-correct model written from the rulebook), and after every single command compares:
the events (trades with every field, rejections with their codes, cancels with reason and
quantity, amends, expiries), the resting orders of both sides in priority order, the depth, and
the id counters. It also checks invariants of the engine on its own: level totals, FIFO within a
level, quantity conservation per order, no crossed book, and that replaying the engine's
`BookLevelChanged` events reproduces its depth exactly.

On a mismatch the assertion message lists the concrete commands run so far. Everything here
runs once per implementation of the book (`book_implementations`).
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from dataclasses import dataclass

import msgspec
import pytest
from book_implementations import IMPLEMENTATIONS, NOT_BUILT
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, precondition, rule
from reference_book import ReferenceExchange, RefEvent

from matching_engine import (
    AmendRejected,
    BookLevelChanged,
    BookRules,
    CancelReason,
    CancelRejected,
    EngineEvent,
    EngineState,
    MatchingEngine,
    OrderAccepted,
    OrderAmended,
    OrderBook,
    OrderCancelled,
    OrderExpired,
    OrderRejected,
    OrderRequest,
    OrderType,
    RejectCode,
    Side,
    TimeInForce,
    Trade,
)
from matching_engine.implementation import CompiledOrderBook, PythonOrderBook

BUY = Side.BUY
SELL = Side.SELL
SIDES = (BUY, SELL)


@dataclass(frozen=True)
class BookConfig:
    rules: BookRules
    core_prices: tuple[int, ...]  # valid prices around the reference, the reference first
    odd_prices: tuple[int, ...]  # band edges, outside the band, off tick, not positive
    # Ticks away from the reference on the passive side (negative: the aggressive side). Bids
    # and asks overlap only near the reference, so the book builds depth and still trades.
    passive_ticks: tuple[int, ...]

    def limit_price(self, side: Side, ticks: int) -> int:
        away = ticks * self.rules.tick_size
        return (
            self.rules.reference_price - away if side is BUY else self.rules.reference_price + away
        )


BOOKS = {
    # Band 60,000 +/- 7% = [55,800, 64,200] exactly.
    "HOG": BookConfig(
        BookRules("HOG", tick_size=100, reference_price=60_000, max_order_quantity=50),
        (60_000, *(60_000 + 100 * k for k in (-5, -4, -3, -2, -1, 1, 2, 3, 4, 5))),
        (55_800, 64_200, 55_700, 64_300, 60_050, 0, -100),
        (0, 1, 2, 3, 4, 5, -1, -2),
    ),
    # Band 990 +/- 5% = [940.5, 1039.5], rounded inwards to ticks of 30: [960, 1020].
    "OCOP": BookConfig(
        BookRules(
            "OCOP", tick_size=30, reference_price=990, price_band_pct=5, max_order_quantity=12
        ),
        (990, 960, 1020),
        (930, 1050, 1000, 0),
        (0, 1, -1),
    ),
}
SYMBOLS = ("HOG", "HOG", "HOG", "OCOP")  # weighted: most commands go to HOG
PARTICIPANTS = (1, 2, 3, 4)


def new_pair(book_class: type[OrderBook] = OrderBook) -> tuple[MatchingEngine, ReferenceExchange]:
    engine = MatchingEngine(book_class)
    reference = ReferenceExchange()
    for config in BOOKS.values():
        r = config.rules
        engine.add_book(r)
        reference.add_book(
            r.symbol, r.tick_size, r.reference_price, r.price_band_pct, r.max_order_quantity
        )
    return engine, reference


def normalize(event: EngineEvent) -> RefEvent | None:
    """An engine event as the reference model's tuple (messages left out); None for levels."""
    e = event
    if isinstance(e, BookLevelChanged):
        return None
    if isinstance(e, OrderAccepted):
        return (
            "accepted",
            e.symbol,
            e.order_id,
            e.participant_id,
            e.side,
            e.order_type,
            e.price,
            e.quantity,
            e.time_in_force,
            e.post_only,
            e.all_or_none,
        )
    if isinstance(e, OrderRejected):
        return ("rejected", e.symbol, e.order_id, e.participant_id, e.code)
    if isinstance(e, Trade):
        return (
            "trade",
            e.symbol,
            e.trade_id,
            e.price,
            e.quantity,
            e.aggressor_side,
            e.maker_order_id,
            e.maker_participant_id,
            e.maker_remaining,
            e.taker_order_id,
            e.taker_participant_id,
            e.taker_remaining,
        )
    if isinstance(e, OrderCancelled):
        return (
            "cancelled",
            e.symbol,
            e.order_id,
            e.participant_id,
            e.side,
            e.cancelled_quantity,
            e.reason,
        )
    if isinstance(e, OrderAmended):
        return (
            "amended",
            e.symbol,
            e.order_id,
            e.participant_id,
            e.side,
            e.price,
            e.quantity,
            e.remaining,
            e.priority_kept,
        )
    if isinstance(e, AmendRejected):
        return ("amend_rejected", e.symbol, e.order_id, e.code)
    if isinstance(e, CancelRejected):
        return ("cancel_rejected", e.symbol, e.order_id, e.code)
    assert isinstance(e, OrderExpired), e
    return ("expired", e.symbol, e.order_id, e.participant_id, e.side, e.expired_quantity)


# ---------------------------------------------------------------------- strategies


@dataclass(frozen=True)
class OrderSpec:
    """A new order, except its id: that is the newest accepted id plus `id_step`."""

    symbol: str
    participant_id: int
    side: Side
    order_type: OrderType
    price: int | None
    quantity: int
    time_in_force: TimeInForce
    post_only: bool
    all_or_none: bool
    id_step: int  # 1 is the usual next id; 0 or less reuses an old id (DUPLICATE_ORDER_ID)


def _quantities(max_quantity: int) -> st.SearchStrategy[int]:
    return st.sampled_from((*range(1, 11),) * 4 + (0, -1, max_quantity, max_quantity + 1))


@st.composite
def order_specs(draw: st.DrawFn) -> OrderSpec:
    symbol = draw(st.sampled_from(SYMBOLS))
    config = BOOKS[symbol]
    side = draw(st.sampled_from(SIDES))
    order_type = draw(st.sampled_from((OrderType.LIMIT,) * 7 + (OrderType.MARKET,)))
    price: int | None
    if order_type is OrderType.MARKET:
        price = draw(st.sampled_from((None,) * 8 + config.core_prices[:1]))
    elif draw(st.sampled_from((True,) * 10 + (False,))):
        price = config.limit_price(side, draw(st.sampled_from(config.passive_ticks)))
    else:
        price = draw(st.sampled_from((*config.odd_prices, None)))
    return OrderSpec(
        symbol=symbol,
        participant_id=draw(st.sampled_from(PARTICIPANTS)),
        side=side,
        order_type=order_type,
        price=price,
        quantity=draw(_quantities(config.rules.max_order_quantity)),
        time_in_force=draw(
            st.sampled_from(
                (TimeInForce.GTC,) * 3 + (TimeInForce.DAY,) * 2 + (TimeInForce.IOC, TimeInForce.FOK)
            )
        ),
        post_only=draw(st.sampled_from((False,) * 5 + (True,))),
        all_or_none=draw(st.sampled_from((False,) * 4 + (True,))),
        id_step=draw(st.sampled_from((1,) * 30 + (2, 0, -2))),
    )


@dataclass(frozen=True)
class AmendSpec:
    symbol: str
    price: int | None
    quantity: int | None  # the new total quantity; with `relative_to`, an offset from ...
    relative_to: str | None  # ... the order's "filled" part or its "total" (when it is open)


@st.composite
def amend_specs(draw: st.DrawFn) -> AmendSpec:
    symbol = draw(st.sampled_from(SYMBOLS))
    config = BOOKS[symbol]
    price = draw(st.sampled_from((None,) * 8 + config.core_prices + config.odd_prices[:4]))
    relative_to = draw(st.sampled_from((None, None, "filled", "total")))
    if relative_to is None:
        max_quantity = config.rules.max_order_quantity
        quantity = draw(st.sampled_from((None,) * 5 + (*range(0, 13), max_quantity + 1)))
    else:
        quantity = draw(st.sampled_from((0, 1, -1, 2, 3)))
    return AmendSpec(symbol, price, quantity, relative_to)


# ---------------------------------------------------------------------- the state machine


@dataclass
class Ledger:
    """One order's quantities as told by the engine's events alone."""

    side: Side
    participant_id: int
    quantity: int
    filled: int = 0
    closed: int = 0  # cancelled or expired


class EngineVersusReference(RuleBasedStateMachine):
    book_class: type[OrderBook] = OrderBook

    @initialize()
    def start(self) -> None:
        self.engine, self.reference = new_pair(self.book_class)
        self.log: list[str] = []
        # Engine-side bookkeeping built from the engine's own events.
        self.replayed: dict[tuple[str, Side], dict[int, tuple[int, int]]] = {
            (symbol, side): {} for symbol in BOOKS for side in SIDES
        }
        self.ledger: dict[int, Ledger] = {}
        self.arrival: dict[int, int] = {}
        self.last_arrival = 0
        self.last_trade_id = 0
        self.traded = 0
        self.crowded = False

    # ------------------------------------------------------------------ rules

    @rule(specs=st.lists(order_specs(), min_size=1, max_size=5))
    def place(self, specs: list[OrderSpec]) -> None:
        for spec in specs:
            self.place_one(spec)

    def place_one(self, spec: OrderSpec) -> None:
        request = OrderRequest(
            order_id=self.reference.ids.last_order_id + spec.id_step,
            participant_id=spec.participant_id,
            side=spec.side,
            price=spec.price,
            quantity=spec.quantity,
            order_type=spec.order_type,
            time_in_force=spec.time_in_force,
            post_only=spec.post_only,
            all_or_none=spec.all_or_none,
        )
        self.run(
            f"engine.place({spec.symbol!r}, {request!r})",
            lambda: self.engine.place(spec.symbol, request),
            lambda: self.reference.books[spec.symbol].place(request),
            spec.symbol,
            placed=request.order_id,
        )

    @rule(symbol=st.sampled_from(SYMBOLS), data=st.data())
    def cancel(self, symbol: str, data: st.DataObject) -> None:
        self.run_cancel(symbol, data.draw(self.target_ids(symbol), label="order_id"))

    def run_cancel(self, symbol: str, order_id: int) -> None:
        self.run(
            f"engine.cancel({symbol!r}, {order_id})",
            lambda: self.engine.cancel(symbol, order_id),
            lambda: self.reference.books[symbol].cancel(order_id),
            symbol,
        )

    @rule(spec=amend_specs(), data=st.data())
    def amend(self, spec: AmendSpec, data: st.DataObject) -> None:
        symbol = spec.symbol
        order_id = data.draw(self.target_ids(symbol), label="order_id")
        quantity = spec.quantity
        order = self.reference.books[symbol].open_order(order_id)
        if order is not None and quantity is not None and spec.relative_to == "filled":
            quantity += order.filled
        if order is not None and quantity is not None and spec.relative_to == "total":
            quantity += order.quantity
        price = spec.price
        self.run(
            f"engine.amend({symbol!r}, {order_id}, price={price}, quantity={quantity})",
            lambda: self.engine.amend(symbol, order_id, price, quantity),
            lambda: self.reference.books[symbol].amend(order_id, price, quantity),
            symbol,
            amended=order_id,
        )

    @precondition(lambda self: not self.crowded)
    @rule(
        symbol=st.sampled_from(SYMBOLS),
        side=st.sampled_from(SIDES),
        count=st.integers(17, 24),
        keep=st.sets(st.integers(0, 23), max_size=3),
        data=st.data(),
    )
    def crowd_one_level(
        self, symbol: str, side: Side, count: int, keep: set[int], data: st.DataObject
    ) -> None:
        """Many orders at one price, then most of them cancelled: queues full of dead entries.

        About 40 commands, so at most once per example (it would crowd out everything else).
        """
        self.crowded = True
        price = data.draw(st.sampled_from(BOOKS[symbol].core_prices), label="price")
        first = self.reference.ids.last_order_id + 1
        for i in range(count):
            participant = PARTICIPANTS[i % len(PARTICIPANTS)]
            tif = TimeInForce.DAY if i % 5 == 4 else TimeInForce.GTC
            self.place_one(
                OrderSpec(
                    symbol=symbol,
                    participant_id=participant,
                    side=side,
                    order_type=OrderType.LIMIT,
                    price=price,
                    quantity=1 + i % 3,
                    time_in_force=tif,
                    post_only=False,
                    all_or_none=i % 7 == 6,
                    id_step=1,
                )
            )
        for i in range(count):
            if i not in keep:
                self.run_cancel(symbol, first + i)

    @rule(symbol=st.sampled_from(SYMBOLS), back=st.none() | st.integers(0, 6))
    def expire_day_orders(self, symbol: str, back: int | None) -> None:
        """The close of the day (`back` None), or the day that ended just before one of the
        last few orders arrived: only the day orders that arrived before it expire."""
        book = self.engine.book(symbol)
        assert book is not None
        below = None if back is None else self.reference.ids.last_order_id + 1 - back
        self.run(
            f"engine.book({symbol!r}).expire_day_orders({below})",
            lambda: book.expire_day_orders(below),
            lambda: self.reference.books[symbol].expire_day_orders(below),
            symbol,
            unordered=True,  # the rulebook does not order the expiries of one call
        )

    def target_ids(self, symbol: str) -> st.SearchStrategy[int]:
        """Mostly open orders of this book; sometimes closed ids, other books' ids, unknowns."""
        here = sorted(o.order_id for o in self.reference.books[symbol].resting)
        everywhere = self.reference.open_order_ids()
        last = self.reference.ids.last_order_id
        closed = [i for i in range(last, 0, -1) if i not in everywhere][:3]
        elsewhere = sorted(everywhere - set(here))[:2]
        unknown = [0, last + 1, -1]
        groups = [g for g in (here,) * 8 + (closed, elsewhere, unknown) if g]
        return st.sampled_from(groups).flatmap(st.sampled_from)

    # ------------------------------------------------------------------ one command

    def run(
        self,
        description: str,
        on_engine: Callable[[], list[EngineEvent]],
        on_reference: Callable[[], list[RefEvent]],
        symbol: str,
        *,
        placed: int | None = None,
        amended: int | None = None,
        unordered: bool = False,
    ) -> None:
        self.log.append(description)
        events = on_engine()
        expected = on_reference()
        actual = [t for t in map(normalize, events) if t is not None]
        if unordered:
            actual.sort(key=repr)
            expected = sorted(expected, key=repr)
        self.check(
            actual == expected, f"events differ\n  engine:    {actual}\n  reference: {expected}"
        )
        self.follow_engine_events(events)
        # Time priority as seen from outside: an order that rests after this command (a new
        # order, or an amend that lost priority) is the newest arrival at its level.
        book = self.engine.book(symbol)
        assert book is not None
        moved = None
        if placed is not None and any(isinstance(e, OrderAccepted) for e in events):
            moved = placed
        if amended is not None and any(
            isinstance(e, OrderAmended) and not e.priority_kept for e in events
        ):
            moved = amended
        if moved is not None and book.order(moved) is not None:
            self.last_arrival += 1
            self.arrival[moved] = self.last_arrival
        self.compare_state()

    def check(self, condition: bool, what: str) -> None:
        if not condition:
            steps = "\n    ".join(self.log)
            raise AssertionError(f"{what}\n  after these commands:\n    {steps}")

    def follow_engine_events(self, events: list[EngineEvent]) -> None:
        """Bookkeeping of quantities and levels from the engine's events alone."""
        for e in events:
            if isinstance(e, BookLevelChanged):
                levels = self.replayed[(e.symbol, e.side)]
                if e.order_count == 0:
                    self.check(e.quantity == 0, f"an empty level with quantity: {e}")
                    self.check(e.price in levels, f"a level that was never there emptied: {e}")
                    del levels[e.price]
                else:
                    self.check(e.quantity > 0, f"a level with orders but no quantity: {e}")
                    levels[e.price] = (e.quantity, e.order_count)
            elif isinstance(e, OrderAccepted):
                self.ledger[e.order_id] = Ledger(e.side, e.participant_id, e.quantity)
            elif isinstance(e, OrderAmended):
                entry = self.ledger[e.order_id]
                self.check(entry.closed == 0, f"amended a closed order: {e}")
                entry.quantity = e.quantity
                self.check(e.remaining == e.quantity - entry.filled, f"amend remaining: {e}")
            elif isinstance(e, Trade):
                self.last_trade_id += 1
                self.check(e.trade_id == self.last_trade_id, f"trade ids not consecutive: {e}")
                self.check(e.quantity > 0, f"empty trade: {e}")
                self.traded += e.quantity
                maker = self.ledger[e.maker_order_id]
                taker = self.ledger[e.taker_order_id]
                self.check(
                    maker.side is not e.aggressor_side and taker.side is e.aggressor_side,
                    f"trade sides: {e}",
                )
                self.check(maker.participant_id != taker.participant_id, f"self-trade: {e}")
                for entry, left in ((maker, e.maker_remaining), (taker, e.taker_remaining)):
                    entry.filled += e.quantity
                    self.check(
                        left == entry.quantity - entry.filled - entry.closed >= 0,
                        f"trade remaining does not add up: {e}",
                    )
            elif isinstance(e, OrderCancelled | OrderExpired):
                entry = self.ledger[e.order_id]
                quantity = (
                    e.cancelled_quantity if isinstance(e, OrderCancelled) else e.expired_quantity
                )
                self.check(quantity > 0, f"closed nothing: {e}")
                entry.closed += quantity
                self.check(entry.filled + entry.closed == entry.quantity, f"closed quantity: {e}")

    # ------------------------------------------------------------------ the comparison

    def compare_state(self) -> None:
        check = self.check
        check(
            self.engine.last_order_id == self.reference.ids.last_order_id,
            f"last order id {self.engine.last_order_id} != {self.reference.ids.last_order_id}",
        )
        check(
            self.engine.last_trade_id == self.reference.ids.last_trade_id,
            f"last trade id {self.engine.last_trade_id} != {self.reference.ids.last_trade_id}",
        )
        open_ids: set[int] = set()
        for symbol in BOOKS:
            book = self.engine.book(symbol)
            assert book is not None
            ref_book = self.reference.books[symbol]
            resting = {side: list(book.resting_orders(side)) for side in SIDES}
            for side in SIDES:
                orders = resting[side]
                actual = [
                    (o.order_id, o.participant_id, o.price, o.quantity, o.remaining) for o in orders
                ]
                expected = [
                    (o.order_id, o.participant_id, o.price, o.quantity, o.remaining)
                    for o in ref_book.resting_on(side)
                ]
                check(
                    actual == expected,
                    f"{symbol} {side} book:\n  engine:    {actual}\n  reference: {expected}",
                )
                # Levels: aggregated from the live orders, as the engine reports them, as the
                # level events replay them, and as the reference computes them.
                aggregated: dict[int, tuple[int, int]] = {}
                for o in orders:
                    quantity, count = aggregated.get(o.price, (0, 0))
                    aggregated[o.price] = (quantity + o.remaining, count + 1)
                from_orders = [(p, q, c) for p, (q, c) in aggregated.items()]
                replayed = sorted(
                    ((p, q, c) for p, (q, c) in self.replayed[(symbol, side)].items()),
                    reverse=side is BUY,
                )
                depth = book.depth(side)
                check(
                    depth == from_orders, f"{symbol} {side} depth {depth} != orders {from_orders}"
                )
                check(depth == replayed, f"{symbol} {side} depth {depth} != replay {replayed}")
                check(depth == ref_book.depth(side), f"{symbol} {side} depth != reference")
                check(book.depth(side, 2) == depth[:2], f"{symbol} {side} depth(levels=2)")
                best = book.best_bid() if side is BUY else book.best_ask()
                check(best == (depth[0][0] if depth else None), f"{symbol} best {side} {best}")
                # Priority: better price first; FIFO (arrival order) within a price.
                for a, b in itertools.pairwise(orders):
                    better = a.price > b.price if side is BUY else a.price < b.price
                    fifo = (
                        a.price == b.price and self.arrival[a.order_id] < self.arrival[b.order_id]
                    )
                    check(better or fifo, f"{symbol} {side} priority: {a} before {b}")
                for o in orders:
                    check(o.side is side and o.live, f"{symbol}: {o} on the {side} side")
                    check(0 < o.remaining <= o.quantity, f"{symbol}: bad quantities {o}")
                    check(book.order(o.order_id) is o, f"{symbol}: order({o.order_id})")
                    entry = self.ledger[o.order_id]
                    check(
                        entry.closed == 0
                        and entry.quantity == o.quantity
                        and entry.filled + o.remaining == o.quantity,
                        f"{symbol}: {o} does not match its events {entry}",
                    )
                    check(o.order_id not in open_ids, f"{o.order_id} open twice")
                    open_ids.add(o.order_id)
            check(
                book.open_order_count() == len(resting[BUY]) + len(resting[SELL]),
                f"{symbol} open order count",
            )
            # No crossed pair of different participants where neither is all-or-none.
            for bid in resting[BUY]:
                for ask in resting[SELL]:
                    check(
                        bid.price < ask.price
                        or bid.participant_id == ask.participant_id
                        or bid.all_or_none
                        or ask.all_or_none,
                        f"{symbol} crossed: {bid} and {ask}",
                    )
        # Conservation: every order is filled + open + closed, and trades balance per side.
        filled = {BUY: 0, SELL: 0}
        for order_id, entry in self.ledger.items():
            filled[entry.side] += entry.filled
            if order_id not in open_ids:
                check(
                    entry.filled + entry.closed == entry.quantity,
                    f"order {order_id} is neither open nor fully accounted for: {entry}",
                )
                for symbol in BOOKS:
                    book = self.engine.book(symbol)
                    assert book is not None
                    check(book.order(order_id) is None, f"closed order {order_id} still found")
        check(
            filled[BUY] == filled[SELL] == self.traded,
            f"filled {filled} but traded {self.traded}",
        )


EngineVersusReference.TestCase.settings = settings(
    max_examples=200, stateful_step_count=50, deadline=None
)


class PythonBookVersusReference(EngineVersusReference):
    book_class = PythonOrderBook


class CompiledBookVersusReference(EngineVersusReference):
    book_class = CompiledOrderBook or PythonOrderBook


TestPythonBookVersusReference = PythonBookVersusReference.TestCase
TestCompiledBookVersusReference = pytest.mark.skipif(CompiledOrderBook is None, reason=NOT_BUILT)(
    CompiledBookVersusReference.TestCase
)


# ---------------------------------------------------------------------- small checks


def test_reference_band_matches_rules() -> None:
    _, reference = new_pair()
    for symbol, config in BOOKS.items():
        assert reference.books[symbol].band_low == config.rules.band_low
        assert reference.books[symbol].band_high == config.rules.band_high
    assert (reference.books["OCOP"].band_low, reference.books["OCOP"].band_high) == (960, 1020)


@pytest.mark.parametrize("book_class", IMPLEMENTATIONS)
def test_a_worked_example_of_the_trickier_rules(book_class: type[OrderBook]) -> None:
    """All-or-none, self-trade, fill-or-kill, post-only and amends, worked out by hand."""
    engine, reference = new_pair(book_class)
    hog = reference.books["HOG"]
    gtc, ioc, fok = TimeInForce.GTC, TimeInForce.IOC, TimeInForce.FOK
    limit, market = OrderType.LIMIT, OrderType.MARKET
    self_trade, kill = CancelReason.SELF_TRADE, CancelReason.FILL_OR_KILL

    def check(command: tuple[object, ...], expected: list[RefEvent]) -> None:
        if command[0] == "place":
            request = command[1]
            assert isinstance(request, OrderRequest)
            actual = engine.place("HOG", request)
            modelled = hog.place(request)
        elif command[0] == "amend":
            _, order_id, price, quantity = command
            assert isinstance(order_id, int)
            assert price is None or isinstance(price, int)
            assert quantity is None or isinstance(quantity, int)
            actual = engine.amend("HOG", order_id, price, quantity)
            modelled = hog.amend(order_id, price, quantity)
        else:
            order_id = command[1]
            assert isinstance(order_id, int)
            actual = engine.cancel("HOG", order_id)
            modelled = hog.cancel(order_id)
        assert modelled == expected, command
        assert [t for t in map(normalize, actual) if t is not None] == expected, command

    def place(*fields: object) -> tuple[object, ...]:
        return ("place", OrderRequest(*fields))  # type: ignore[arg-type]

    def accepted(request: tuple[object, ...]) -> RefEvent:
        r = request[1]
        assert isinstance(r, OrderRequest)
        return (
            "accepted",
            "HOG",
            r.order_id,
            r.participant_id,
            r.side,
            r.order_type,
            r.price,
            r.quantity,
            r.time_in_force,
            r.post_only,
            r.all_or_none,
        )

    # Asks: an all-or-none 10 lots, then 3 lots, at 60,000; 5 lots at 60,100.
    for command in (
        place(1, 1, SELL, 60_000, 10, limit, gtc, False, True),
        place(2, 2, SELL, 60_000, 3),
        place(3, 3, SELL, 60_100, 5),
    ):
        check(command, [accepted(command)])
    # Buying 5 passes over the all-or-none 10 (it keeps its place) and walks on.
    c = place(4, 4, BUY, 60_100, 5)
    check(
        c,
        [
            accepted(c),
            ("trade", "HOG", 1, 60_000, 3, BUY, 2, 2, 0, 4, 4, 2),
            ("trade", "HOG", 2, 60_100, 2, BUY, 3, 3, 3, 4, 4, 0),
        ],
    )
    # 10 lots would take the all-or-none order whole, but it is the buyer's own.
    c = place(5, 1, BUY, 60_000, 10, limit, ioc)
    check(c, [accepted(c), ("cancelled", "HOG", 5, 1, BUY, 10, self_trade)])
    # Fill-or-kill for 10: the dry run fills it whole, so it trades.
    c = place(6, 4, BUY, 60_100, 10, limit, fok)
    check(c, [accepted(c), ("trade", "HOG", 3, 60_000, 10, BUY, 1, 1, 0, 6, 4, 0)])
    # Left: order 3 (participant 3) with 3 lots. Not enough, or one's own: nothing trades.
    c = place(7, 3, BUY, 60_100, 2, limit, fok)
    check(c, [accepted(c), ("cancelled", "HOG", 7, 3, BUY, 2, self_trade)])
    c = place(8, 2, BUY, 60_100, 5, limit, fok)
    check(c, [accepted(c), ("cancelled", "HOG", 8, 2, BUY, 5, kill)])
    c = place(9, 2, BUY, None, 5, market, gtc, False, True)
    check(c, [accepted(c), ("cancelled", "HOG", 9, 2, BUY, 5, CancelReason.NO_LIQUIDITY)])
    # A good-till-cancelled all-or-none that cannot fill whole rests, untraded and crossed.
    c = place(10, 2, BUY, 60_100, 5, limit, gtc, False, True)
    check(c, [accepted(c)])
    # Post-only selling 1 only meets that all-or-none 5, which is passed over: it rests.
    c = place(11, 1, SELL, 60_100, 1, limit, gtc, True)
    check(c, [accepted(c)])
    # Post-only selling 5 would take the all-or-none bid whole: rejected, id not used.
    c = place(12, 4, SELL, 60_100, 5, limit, gtc, True)
    check(c, [("rejected", "HOG", 12, 4, RejectCode.POST_ONLY_WOULD_TAKE)])
    assert engine.last_order_id == 11
    # Order 3 (5 lots, 2 filled): total 4 keeps its place; total 2 is all that filled: gone.
    check(("amend", 3, None, 4), [("amended", "HOG", 3, 3, SELL, 60_100, 4, 2, True)])
    check(
        ("amend", 3, None, 2),
        [("cancelled", "HOG", 3, 3, SELL, 2, CancelReason.AMENDED_BELOW_FILLED)],
    )
    # Post-only 11 moves to 60,000: still only the all-or-none bid, so it re-enters and rests.
    check(("amend", 11, 60_000, None), [("amended", "HOG", 11, 1, SELL, 60_000, 1, 1, False)])
    check(("cancel", 3), [("cancel_rejected", "HOG", 3, RejectCode.ORDER_NOT_OPEN)])
    check(("cancel", 12), [("cancel_rejected", "HOG", 12, RejectCode.UNKNOWN_ORDER)])
    book = engine.book("HOG")
    assert book is not None
    assert [(o.order_id, o.price, o.remaining) for o in book.resting_orders(BUY)] == [
        (10, 60_100, 5)
    ]
    assert [(o.order_id, o.price, o.remaining) for o in book.resting_orders(SELL)] == [
        (11, 60_000, 1)
    ]
    assert book.depth(SELL) == hog.depth(SELL) == [(60_000, 1, 1)]


@pytest.mark.parametrize("time_in_force", [TimeInForce.IOC, TimeInForce.FOK])
@pytest.mark.parametrize(
    ("price", "quantity"),
    [(60_050, 1), (55_700, 1), (60_000, 0), (60_000, 51)],
    ids=["off-tick", "out-of-band", "zero-lots", "too-many-lots"],
)
@pytest.mark.parametrize("book_class", IMPLEMENTATIONS)
def test_post_only_with_ioc_or_fok_is_invalid_before_price_and_quantity_checks(
    time_in_force: TimeInForce, price: int, quantity: int, book_class: type[OrderBook]
) -> None:
    """Rule 1: contradictory flags are INVALID_ORDER, checked before tick, band and lot size."""
    engine, reference = new_pair(book_class)
    request = OrderRequest(1, 1, BUY, price, quantity, OrderType.LIMIT, time_in_force, True)
    expected = reference.books["HOG"].place(request)
    assert expected == [("rejected", "HOG", 1, 1, RejectCode.INVALID_ORDER)]
    assert [normalize(e) for e in engine.place("HOG", request)] == expected


# ---------------------------------------------------------------------- snapshots


Command = tuple[object, ...]


@st.composite
def commands(draw: st.DrawFn) -> Command:
    """A command with relative order ids: places take the next id, others look back."""
    kind = draw(st.sampled_from(("place",) * 8 + ("cancel", "amend", "expire")))
    symbol = draw(st.sampled_from(SYMBOLS))
    if kind == "place":
        order = draw(order_specs())
        return ("place", order.symbol, order)
    if kind == "cancel":
        return ("cancel", symbol, draw(st.integers(0, 6)))
    if kind == "amend":
        change = draw(amend_specs())
        return ("amend", change.symbol, draw(st.integers(0, 6)), change.price, change.quantity)
    return ("expire", symbol)


def apply(engine: MatchingEngine, command: Command, next_id: int) -> list[EngineEvent]:
    """Run one command; order ids are derived from `next_id`, so every engine sees the same."""
    symbol = command[1]
    assert isinstance(symbol, str)
    if command[0] == "place":
        spec = command[2]
        assert isinstance(spec, OrderSpec)
        request = OrderRequest(
            next_id,
            spec.participant_id,
            spec.side,
            spec.price,
            spec.quantity,
            spec.order_type,
            spec.time_in_force,
            spec.post_only,
            spec.all_or_none,
        )
        return engine.place(symbol, request)
    if command[0] == "cancel":
        back = command[2]
        assert isinstance(back, int)
        return engine.cancel(symbol, next_id - 1 - back)
    if command[0] == "amend":
        _, _, back, price, quantity = command
        assert isinstance(back, int)
        assert price is None or isinstance(price, int)
        assert quantity is None or isinstance(quantity, int)
        return engine.amend(symbol, next_id - 1 - back, price, quantity)
    book = engine.book(symbol)
    assert book is not None
    return book.expire_day_orders()


@pytest.mark.parametrize("book_class", IMPLEMENTATIONS)
@settings(max_examples=60, deadline=None)
@given(
    before=st.lists(commands(), min_size=10, max_size=60),
    after=st.lists(commands(), min_size=1, max_size=30),
)
def test_snapshot_restores_and_continues_identically(
    book_class: type[OrderBook], before: list[Command], after: list[Command]
) -> None:
    engine, _ = new_pair(book_class)
    next_id = 1
    for command in before:
        apply(engine, command, next_id)
        next_id += command[0] == "place"
    state = engine.state()
    restored = MatchingEngine.from_state(state, book_class)
    decoded = msgspec.msgpack.decode(msgspec.msgpack.encode(state), type=EngineState)
    from_bytes = MatchingEngine.from_state(decoded, book_class)
    assert restored.digest() == engine.digest()
    assert from_bytes.digest() == engine.digest()
    for command in after:
        expected = apply(engine, command, next_id)
        assert apply(restored, command, next_id) == expected, command
        assert apply(from_bytes, command, next_id) == expected, command
        next_id += command[0] == "place"
        assert restored.digest() == engine.digest()
        assert from_bytes.digest() == engine.digest()
    for symbol in BOOKS:
        for side in SIDES:
            original = engine.book(symbol)
            copy = restored.book(symbol)
            assert original is not None and copy is not None
            assert copy.depth(side) == original.depth(side)
            assert list(copy.resting_orders(side)) == list(original.resting_orders(side))
