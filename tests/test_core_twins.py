"""The compiled trading path against core.py, command by command: the very same events, always.

`exchange/compiled_core.pyx` replaces `ExchangeCore`'s placing, cancelling, amending and
settling with compiled twins of the same methods. Random sessions on a small market, where
everything that can go wrong does (unknown and non-trading participants, client order ids
repeated and too long, prices off tick and out of band, orders of other participants and
closed ones, short cash, halts, every session phase with its auctions, day-order expiry,
circuit breakers tripping, goods from several warehouse receipts changing hands, deposits and
withdrawals), run through a core of each kind. After every command both must have answered with
the same events; at the end both must hold the same state (digest and invariants), and each
must load the other's snapshot to that digest and go on exactly as the other does.

Then the whole exchange: a seeded session with call phases and auctions (`digest_child.py`)
once on each core, in a child process each, must end with the same digest and events.
"""

from __future__ import annotations

import hashlib
import os
from datetime import UTC, date, datetime, timedelta
from typing import Any, NamedTuple

import msgspec
import pytest
from conftest import ocop_attributes
from digest_child import fingerprint
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_market_rules import HOG, hog

from clearing.accounts import CASH
from exchange import commands as c
from exchange.core import (
    CORE_IMPLEMENTATION,
    PURE_PYTHON_ENV,
    CompiledExchangeCore,
    ExchangeCore,
    PythonExchangeCore,
)
from exchange.events import Event
from exchange.instruments import Instrument, InstrumentKind
from exchange.participants import Role
from exchange.sessions import CircuitBreaker, Session
from matching_engine import OrderType, Side, TimeInForce
from matching_engine.engine import MatchingEngine
from matching_engine.implementation import CompiledOrderBook

NOT_BUILT = "exchange/compiled_core.pyx is not built (no C compiler or Cython at install time)"
pytestmark = pytest.mark.skipif(
    CompiledExchangeCore is None and os.environ.get("CI") != "true", reason=NOT_BUILT
)

HOG2, TEA = "HOG-G2", "OCOP-TEA"
TRADERS = (1, 2, 3, 4)
MONITOR = 5  # registered, but not a trader
UNKNOWN = 6
NS = 1_000_000_000
# 01:00 UTC today, a Vietnam trading morning: the OCOP certificate below is valid then.
TODAY_NS = int(datetime.now(UTC).replace(hour=1, minute=0, second=0).timestamp()) * NS


TEA_LISTING = Instrument(TEA, "Trà Tân Cương", InstrumentKind.OCOP, 10, 1_000, 450_000)
INSTRUMENTS = (
    hog(
        symbol=HOG,
        maker_fee_bps=2,
        taker_fee_bps=5,
        max_order_quantity=30,
        circuit_breaker=CircuitBreaker(move_pct=1, window_s=60, cool_off_s=30),
    ),
    hog(symbol=HOG2, max_order_quantity=30),
    # Certified so that its certificate (36 months) runs out two days from now: sessions that
    # move on by days see orders refused for it, and ExpireCertificate halt it.
    msgspec.structs.replace(
        TEA_LISTING,
        attributes=ocop_attributes(
            certification_date=(date.today() - timedelta(days=3 * 365 - 1)).isoformat()
        ),
    ),
)


def delivery(owner: int, symbol: str, lots: int, farm: str) -> c.DeliverGoods:
    return c.DeliverGoods(owner, symbol, lots, 10 * lots, 110, farm, "VietGAP-CN-1182", TODAY_NS)


def setup() -> list[c.Command]:
    """Four traders and a monitor; cash enough for some orders, not for all; goods from several
    warehouse receipts (so trades take lots across receipts) and untraced deposits."""
    commands: list[c.Command] = []
    for trader in TRADERS:
        name = f"trader-{trader}"
        commands.append(
            c.RegisterParticipant(name, Role.TRADER, hashlib.sha256(name.encode()).hexdigest())
        )
    commands.append(c.RegisterParticipant("monitor", Role.MONITOR, "ab" * 32))
    commands += [c.ListInstrument(instrument) for instrument in INSTRUMENTS]
    for trader in TRADERS:
        commands.append(c.Deposit(trader, CASH, 2_000_000_000 * trader))
    for owner, farm in ((1, "DN-TB-0137"), (2, "DN-TB-0200"), (1, "DN-TB-0311")):
        commands += [delivery(owner, HOG, 4, farm), delivery(owner, HOG2, 3, farm)]
    for trader in (2, 3):
        commands += [c.Deposit(trader, symbol, 40) for symbol in (HOG, HOG2, TEA)]
    return commands


participants = st.sampled_from((*TRADERS * 6, MONITOR, UNKNOWN))
symbols = st.sampled_from((HOG, HOG, HOG, HOG2, HOG2, TEA, "NOPE"))
# Around the reference, the band's edges, outside it, off tick, not positive; OCOP's own.
prices = st.sampled_from(
    (
        *(60_000 + 100 * k for k in range(-8, 9)),
        55_800,
        64_200,
        64_300,
        60_050,
        0,
        *(450_000 + 1_000 * k for k in range(-4, 5)),
    )
)
quantities = st.sampled_from((*range(1, 13), 30, 31, 0))
client_order_ids = st.sampled_from((*(None,) * 12, "a", "b", "c", "", "x" * 65))
order_ids = st.integers(0, 40)

place = st.builds(
    c.PlaceOrder,
    participant_id=participants,
    symbol=symbols,
    side=st.sampled_from(Side),
    order_type=st.just(OrderType.LIMIT),
    price=prices,
    quantity=quantities,
    time_in_force=st.sampled_from(TimeInForce),
    post_only=st.sampled_from((False,) * 9 + (True,)),
    all_or_none=st.sampled_from((False,) * 6 + (True,)),
    client_order_id=client_order_ids,
)
market_order = st.builds(
    c.PlaceOrder,
    participant_id=participants,
    symbol=symbols,
    side=st.sampled_from(Side),
    order_type=st.just(OrderType.MARKET),
    price=st.sampled_from((None, None, 60_000)),
    quantity=quantities,
    time_in_force=st.sampled_from(TimeInForce),
    client_order_id=client_order_ids,
)


class CancelOpen(NamedTuple):
    """A cancel of the `index`-th open order (mod their number), by its owner."""

    index: int


class AmendOpen(NamedTuple):
    """An amend of the `index`-th open order by its owner: `ticks` from its price, new size."""

    index: int
    ticks: int | None
    quantity: int | None


cancel = st.one_of(
    st.builds(c.CancelOrder, participants, order_ids),  # often not the owner's, or closed
    st.builds(CancelOpen, st.integers(0, 10**6)),
    st.builds(CancelOpen, st.integers(0, 10**6)),
)
amend = st.one_of(
    st.builds(
        c.AmendOrder,
        participants,
        order_ids,
        price=st.none() | prices,
        quantity=st.none() | quantities,
    ),
    st.builds(
        AmendOpen,
        st.integers(0, 10**6),
        st.none() | st.integers(-12, 12),
        st.none() | quantities,
    ),
    st.builds(
        AmendOpen,
        st.integers(0, 10**6),
        st.none() | st.integers(-12, 12),
        st.none() | quantities,
    ),
)
market_control = st.one_of(
    st.builds(c.HaltMarket, symbols, st.just("test")),
    st.builds(c.ResumeMarket, symbols),
    st.builds(c.ResumeMarket, symbols),
    st.builds(c.AdvanceSession, symbols, st.sampled_from(Session)),
    st.builds(c.AdvanceSession, symbols, st.sampled_from(Session)),
    st.builds(c.AdvanceSession, symbols, st.sampled_from(Session)),
    st.builds(c.ExpireDayOrders, symbols),
    # A day that ended at some instant: only the day orders placed before it expire.
    st.builds(
        c.ExpireDayOrders, symbols, st.just(0), st.integers(TODAY_NS, TODAY_NS + 3 * 86_400 * NS)
    ),
    st.builds(c.ExpireCertificate, symbols),
)
custody = st.one_of(
    st.builds(c.Deposit, participants, st.sampled_from((CASH, HOG, HOG2)), st.integers(1, 10**9)),
    st.builds(c.Withdraw, participants, st.sampled_from((CASH, HOG)), st.integers(1, 10**9)),
    st.builds(
        delivery, participants, st.sampled_from((HOG, HOG2)), st.integers(1, 4), st.just("X")
    ),
)
# Mostly orders, as in a market; now and then a halt, a new phase, a deposit or a delivery.
MIX = {place: 14, market_order: 2, cancel: 4, amend: 3, market_control: 3, custody: 1}
commands = st.sampled_from([kind for kind, weight in MIX.items() for _ in range(weight)]).flatmap(
    lambda kind: kind
)
# Between commands, time moves on by nothing, a little, past the breaker's window and cool-off,
# and now and then by a day.
steps_ns = st.sampled_from(
    (0, 0, 1_000, 1_000, NS // 2, NS // 2, 3 * NS, 3 * NS, 61 * NS, 86_400 * NS)
)
CHECK_EVERY = 20  # commands between two comparisons of the whole state


class TwinCores:
    """A Python core and a compiled core, fed the same commands at the same times."""

    def __init__(self) -> None:
        assert CompiledExchangeCore is not None, NOT_BUILT
        self.python = PythonExchangeCore()
        self.compiled = CompiledExchangeCore()
        self.sequence = 0
        self.now = TODAY_NS

    def apply(self, command: c.Command | CancelOpen | AmendOpen, step_ns: int = 0) -> list[Event]:
        command = self.resolved(command)
        self.sequence += 1
        self.now += step_ns
        expected = self.python.apply(command, self.sequence, self.now)
        actual = self.compiled.apply(command, self.sequence, self.now)
        # Equal, and of the same types: a str where core.py has a StrEnum would compare equal.
        assert [typed(event) for event in actual] == [typed(event) for event in expected], command
        if self.sequence % CHECK_EVERY == 0:
            self.assert_same_state()
        return actual

    def resolved(self, command: c.Command | CancelOpen | AmendOpen) -> c.Command:
        """A command on an open order, named by its owner: cancels and amends that reach the
        book, as most do in a real market."""
        if not isinstance(command, CancelOpen | AmendOpen):
            return command
        open_orders = [r for r in self.python.orders.values() if r.status.is_open]
        if not open_orders:
            return c.CancelOrder(1, command.index)
        record = open_orders[command.index % len(open_orders)]
        if isinstance(command, CancelOpen):
            return c.CancelOrder(record.participant_id, record.order_id)
        tick = 1_000 if record.symbol == TEA else 100
        price = None
        if command.ticks is not None and record.price is not None:
            price = record.price + command.ticks * tick
        return c.AmendOrder(record.participant_id, record.order_id, price, command.quantity)

    def assert_same_state(self) -> None:
        python, compiled = self.python, self.compiled
        assert compiled.state() == python.state()
        assert compiled.digest() == python.digest()
        # What the digest leaves out: the indexes the API answers from, and the fields' types.
        assert compiled.fills_by_participant == python.fills_by_participant
        assert compiled.orders_by_participant == python.orders_by_participant
        assert compiled.client_order_ids == python.client_order_ids
        assert [typed(r) for r in compiled.orders.values()] == [
            typed(r) for r in python.orders.values()
        ]


def typed(struct: Any) -> list[tuple[type, Any]]:
    """A struct's fields with their types (nested structs and lists of them alike)."""
    if isinstance(struct, list):
        return [typed(item) for item in struct]
    if not isinstance(struct, msgspec.Struct):
        return [(type(struct), struct)]
    fields = [getattr(struct, name) for name in struct.__struct_fields__]
    return [(type(struct), None), *((type(v), typed(v)) for v in fields)]


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.tuples(commands, steps_ns), min_size=40, max_size=150))
def test_both_cores_answer_every_command_with_the_same_events(
    session: list[tuple[c.Command | CancelOpen | AmendOpen, int]],
) -> None:
    twins = TwinCores()
    for command in setup():
        twins.apply(command)
    for command, step_ns in session:
        twins.apply(command, step_ns)
    twins.compiled.check_invariants()
    twins.python.check_invariants()
    twins.assert_same_state()


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.lists(st.tuples(commands, steps_ns), min_size=10, max_size=60),
    st.lists(st.tuples(commands, steps_ns), min_size=10, max_size=60),
)
def test_each_core_loads_the_others_snapshot_and_goes_on_as_it_would(
    before: list[tuple[Any, int]], after: list[tuple[Any, int]]
) -> None:
    twins = TwinCores()
    for command in setup():
        twins.apply(command)
    for command, step_ns in before:
        twins.apply(command, step_ns)
    assert CompiledExchangeCore is not None
    # Swapped: the compiled core restarts from the Python core's snapshot and vice versa.
    twins.python, twins.compiled = (
        PythonExchangeCore.from_state(twins.compiled.state()),
        CompiledExchangeCore.from_state(twins.python.state()),
    )
    assert type(twins.compiled) is CompiledExchangeCore
    assert twins.compiled.digest() == twins.python.digest()
    for command, step_ns in after:
        twins.apply(command, step_ns)
    assert twins.compiled.digest() == twins.python.digest()


def test_a_breaker_trips_the_same_way_on_both() -> None:
    twins = TwinCores()
    for command in setup():
        twins.apply(command)
    twins.apply(c.PlaceOrder(2, HOG, Side.SELL, OrderType.LIMIT, 60_000, 2))
    twins.apply(c.PlaceOrder(3, HOG, Side.BUY, OrderType.LIMIT, 60_000, 1))
    twins.apply(c.PlaceOrder(2, HOG, Side.SELL, OrderType.LIMIT, 61_000, 1))
    events = twins.apply(c.PlaceOrder(4, HOG, Side.BUY, OrderType.LIMIT, 61_000, 2), NS)
    assert [type(e).__name__ for e in events][-2:] == ["CircuitBreakerTripped", "SessionChanged"]
    assert twins.compiled.digest() == twins.python.digest()


def test_an_order_keeps_its_markets_own_symbol_not_the_copy_it_came_with() -> None:
    """Every order placed names its market by the market's own string, not by the copy decoded
    with its command: one string per market, however many orders (both cores agree on the
    value either way; the compiled one shares the object)."""
    twins = TwinCores()
    for command in setup():
        twins.apply(command)
    copy = "".join(HOG)  # equal to the listed symbol, another object
    assert copy == HOG and copy is not HOG
    events = twins.apply(c.PlaceOrder(2, copy, Side.SELL, OrderType.LIMIT, 60_000, 2))
    registered = next(e for e in events if type(e).__name__ == "OrderRegistered")
    market_symbol = twins.compiled.markets[HOG].symbol
    assert twins.compiled.orders[registered.order_id].symbol is market_symbol
    assert registered.symbol is market_symbol


def test_the_compiled_core_calls_a_subclass_of_risk_through_its_python_methods() -> None:
    """The compiled trading path calls the compiled clearing's `Risk` in C only when it is
    exactly that class (compiled_clearing.pxd): a subclass's overrides must run."""
    calls: list[str] = []

    def recorded(method: Any) -> Any:
        def call(self: Any, *args: Any) -> Any:
            calls.append(method.__name__)
            return method(self, *args)

        return call

    twins = TwinCores()
    base = type(twins.compiled.risk)  # compiled, unless HOGX_PURE_PYTHON_CLEARING=1
    names = ("hold_for_buy", "hold_for_sell", "held", "resize_buy", "resize_sell", "settle")
    overrides = {name: recorded(getattr(base, name)) for name in (*names, "release")}
    twins.compiled.risk = type("RecordingRisk", (base,), overrides)(twins.compiled.accounts)
    for command in setup():
        twins.apply(command)
    assert calls == []
    twins.apply(c.PlaceOrder(2, HOG, Side.SELL, OrderType.LIMIT, 60_000, 2))  # order 1
    twins.apply(c.PlaceOrder(3, HOG, Side.BUY, OrderType.LIMIT, 60_000, 1))  # 2: fills
    assert calls == ["hold_for_sell", "hold_for_buy", "settle", "release"]
    del calls[:]
    twins.apply(c.AmendOrder(2, 1, None, 3))
    twins.apply(c.PlaceOrder(3, HOG, Side.BUY, OrderType.LIMIT, 59_900, 1))  # 3: rests
    twins.apply(c.AmendOrder(3, 3, 59_800, None))
    assert calls == ["held", "resize_sell", "held", "hold_for_buy", "held", "resize_buy", "held"]
    del calls[:]
    # Post-only, it would take: the book rejects it and its hold is released at once.
    twins.apply(c.PlaceOrder(4, HOG, Side.BUY, OrderType.LIMIT, 60_000, 1, post_only=True))
    twins.apply(c.CancelOrder(2, 1))
    assert calls == ["hold_for_buy", "release", "release"]
    twins.assert_same_state()


def test_the_compiled_core_is_built_wherever_ci_runs() -> None:
    # Under CI=true the module is not skipped: a compiled core that failed to build fails here.
    assert CompiledExchangeCore is not None, NOT_BUILT
    if os.environ.get(PURE_PYTHON_ENV) != "1":
        assert ExchangeCore is CompiledExchangeCore
        assert CORE_IMPLEMENTATION == "compiled"


@pytest.mark.parametrize("seed", [1, 2])
def test_a_whole_session_gives_the_same_digest_and_events_on_either_core(seed: int) -> None:
    start_ns = TODAY_NS
    python = fingerprint(
        seed, 4000, pure_python_env=PURE_PYTHON_ENV, pure_python=True, start_ns=start_ns
    )
    compiled = fingerprint(
        seed, 4000, pure_python_env=PURE_PYTHON_ENV, pure_python=False, start_ns=start_ns
    )
    assert (python[2], compiled[2]) == ("python", "compiled")
    assert python[:2] == compiled[:2] and python[3:] == compiled[3:]


def test_the_compiled_core_calls_a_subclass_of_the_book_through_its_python_methods() -> None:
    # The compiled core calls the commands of an exact compiled book as C (compiled_book.pxd);
    # any other book, a subclass included, through its Python methods, so overrides are heard.
    if CompiledOrderBook is None:
        pytest.skip("matching_engine/compiled_book.pyx is not built")
    called: set[str] = set()

    class RecordingBook(CompiledOrderBook):  # type: ignore[valid-type,misc]
        def place(self, request: Any, *, validated: bool = False) -> Any:
            called.add("place")
            return super().place(request, validated=validated)

        def validate(self, request: Any) -> Any:
            called.add("validate")
            return super().validate(request)

        def rest(self, request: Any) -> Any:
            called.add("rest")
            return super().rest(request)

        def cancel(self, order_id: int) -> Any:
            called.add("cancel")
            return super().cancel(order_id)

        def amend_error(self, order_id: int, price: Any, quantity: Any) -> Any:
            called.add("amend_error")
            return super().amend_error(order_id, price, quantity)

        def order(self, order_id: int) -> Any:
            called.add("order")
            return super().order(order_id)

        def amend(self, order_id: int, price: Any = None, quantity: Any = None, **kw: Any) -> Any:
            called.add("amend")
            return super().amend(order_id, price, quantity, **kw)

    twins = TwinCores()
    twins.compiled.engine = MatchingEngine(RecordingBook)
    for command in setup():
        twins.apply(command)
    assert type(twins.compiled.markets[HOG].book) is RecordingBook
    twins.apply(c.PlaceOrder(2, HOG, Side.SELL, OrderType.LIMIT, 60_000, 3))
    sell = max(twins.python.orders)
    twins.apply(c.PlaceOrder(3, HOG, Side.BUY, OrderType.LIMIT, 60_000, 1))
    twins.apply(c.AmendOrder(2, sell, 60_100, None))
    twins.apply(c.CancelOrder(2, sell))
    twins.apply(c.AdvanceSession(HOG, Session.CLOSING))
    twins.apply(c.PlaceOrder(3, HOG, Side.BUY, OrderType.LIMIT, 59_900, 1))
    assert called == {"place", "validate", "rest", "cancel", "amend_error", "order", "amend"}
    twins.assert_same_state()
