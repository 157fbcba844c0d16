"""Self-trade reports name the owner's lowest crossing resting orders, read by price level.

`Surveillance._first_crossing` reads the owner's orders on the other side by price level, an
index kept beside the orders by id and rebuilt by from_state. The rulebook statement is the
plain scan it replaced, kept here: the first MAX_LINKED - 1 of the owner's resting orders, in
id order, that the incoming order could have traded with. Both must name the same orders in
the same order, always, or a replay would raise other alerts than the live run did.
"""

from __future__ import annotations

import itertools
from typing import Any
from unittest import mock

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from benchmarks.workload import MarketWorkload
from exchange import surveillance as surveillance_module
from exchange.core import ExchangeCore
from exchange.events import (
    Event,
    OrderAccepted,
    OrderAmended,
    OrderCancelled,
    OrderExpired,
    Trade,
)
from exchange.surveillance import (
    MAX_LINKED,
    SELF_TRADE_ATTEMPT,
    OpenOrder,
    Surveillance,
    SurveillanceState,
)
from matching_engine import OrderType, Side, TimeInForce
from matching_engine.enums import CancelReason

START_NS = 1_772_323_200 * 10**9  # 2026-03-01T00:00:00Z
SYMBOLS = ("HOG-A", "HOG-B")

Record = tuple[int, int, Any, list[Event]]  # sequence, time_ns, command, events


def plain_scan(
    self: Surveillance,
    incoming: OpenOrder,
    resting: dict[int, OpenOrder],
    levels: dict[int | None, list[int]],
) -> list[int]:
    """The rulebook: every resting order in id order, the first MAX_LINKED - 1 crossing ones.

    (`levels` is the index under test: unread here.) MAX_LINKED is read off the module, so a
    test may lower it.
    """
    wanted = surveillance_module.MAX_LINKED - 1
    limit = incoming.price
    if limit is None:
        return list(itertools.islice(resting, wanted))
    buying = incoming.side is Side.BUY
    crossing: list[int] = []
    for order_id, order in resting.items():
        price = order.price
        if price is None or (price <= limit if buying else price >= limit):
            crossing.append(order_id)
            if len(crossing) == wanted:
                break
    return crossing


class PlainScan(Surveillance):
    _first_crossing = plain_scan


def restored(surveillance: Surveillance) -> Surveillance:
    """`surveillance` through a snapshot: encoded, decoded and rebuilt (as its own class)."""
    snapshot = msgspec.msgpack.encode(surveillance.state())
    state = msgspec.msgpack.decode(snapshot, type=SurveillanceState)
    return type(surveillance).from_state(state)


def encoded(surveillance: Surveillance) -> bytes:
    return msgspec.msgpack.encode(surveillance.state())


# ------------------------------------------------------------------------------------------------
# Random order flow, event by event

OWNERS = st.integers(1, 2)
SIDES = st.sampled_from([Side.BUY, Side.SELL])
# Few prices, so levels hold several orders and limits split them; now and then a market order.
PRICES = st.one_of(st.integers(96, 104), st.integers(96, 104), st.none())
PICKS = st.integers(0, 10**6)  # an open order: the pick-th, modulo how many there are

OPS = st.one_of(
    st.tuples(st.just("add"), OWNERS, st.sampled_from(SYMBOLS), SIDES, PRICES, st.integers(1, 8)),
    st.tuples(st.just("amend"), PICKS, st.integers(96, 104), st.integers(1, 9)),
    st.tuples(st.just("remove"), PICKS, st.sampled_from(["cancel", "expire", "fill"])),
    st.tuples(st.just("partial_fill"), PICKS),
    st.tuples(st.just("query"), OWNERS, st.sampled_from(SYMBOLS), SIDES, PRICES),
    st.tuples(st.just("restore")),
)


class Flow:
    """Feeds the same events to the surveillance under test and to the plain scan's; keeps
    which orders are open, with their owner, market, side and price now."""

    def __init__(self) -> None:
        self.tested: Surveillance = Surveillance()
        self.reference: Surveillance = PlainScan()
        self.open: dict[int, tuple[int, str, Side, int | None]] = {}
        self.ids = itertools.count(1)
        self.sequence = 0

    def observe(self, *events: Event) -> None:
        self.sequence += 1
        for surveillance in (self.tested, self.reference):
            surveillance.observe(self.sequence, START_NS + self.sequence, None, list(events))

    def accepted(self, owner: int, symbol: str, side: Side, price: int | None) -> OrderAccepted:
        order_id = next(self.ids)
        self.open[order_id] = (owner, symbol, side, price)
        order_type = OrderType.LIMIT if price is not None else OrderType.MARKET
        return OrderAccepted(
            symbol, order_id, owner, side, order_type, price, 5, TimeInForce.GTC, False, False
        )

    def pick(self, pick: int) -> tuple[int, tuple[int, str, Side, int | None]] | None:
        if not self.open:
            return None
        order_id = sorted(self.open)[pick % len(self.open)]
        return order_id, self.open[order_id]

    def apply(self, op: tuple[Any, ...]) -> None:
        kind = op[0]
        if kind == "add":
            _, owner, symbol, side, price, count = op
            self.observe(*(self.accepted(owner, symbol, side, price) for _ in range(count)))
        elif kind == "amend":
            _, pick, price, quantity = op
            if (picked := self.pick(pick)) is not None:
                order_id, (owner, symbol, side, _) = picked
                self.open[order_id] = (owner, symbol, side, price)
                self.observe(
                    OrderAmended(symbol, order_id, owner, side, price, quantity, quantity, False)
                )
        elif kind in ("remove", "partial_fill"):
            if (picked := self.pick(op[1])) is not None:
                order_id, (owner, symbol, side, _) = picked
                self.observe(self.leaving(order_id, owner, symbol, side, op))
        elif kind == "query":
            self.query(*op[1:])
        else:
            self.tested = restored(self.tested)

    def leaving(self, order_id: int, owner: int, symbol: str, side: Side, op: Any) -> Event:
        """A fill of the order (participant 9 taking it), or its cancel or expiry."""
        taker_side = Side.SELL if side is Side.BUY else Side.BUY
        if op[0] == "partial_fill":  # it stays open, traded
            return Trade(symbol, order_id, 100, 1, taker_side, order_id, owner, 4, 0, 9, 0)
        del self.open[order_id]
        if op[2] == "cancel":
            return OrderCancelled(symbol, order_id, owner, side, 5, CancelReason.REQUESTED)
        if op[2] == "expire":
            return OrderExpired(symbol, order_id, owner, side, 5)
        return Trade(symbol, order_id, 100, 5, taker_side, order_id, owner, 0, 0, 9, 0)

    def query(self, owner: int, symbol: str, side: Side, limit: int | None) -> None:
        """An order of `owner`'s stopped by self-trade prevention: the report names its
        resting orders on the other side that it could have traded with."""
        incoming = self.accepted(owner, symbol, side, limit)
        del self.open[incoming.order_id]
        stopped = OrderCancelled(symbol, incoming.order_id, owner, side, 5, CancelReason.SELF_TRADE)
        self.observe(incoming, stopped)
        tested_alert, reference_alert = self.tested.alerts[-1], self.reference.alerts[-1]
        assert tested_alert.kind == SELF_TRADE_ATTEMPT
        assert tested_alert.order_ids == reference_alert.order_ids
        # And, plainly, the lowest crossing ids: the plain scan relies on ids only growing.
        crossing = sorted(
            order_id
            for order_id, (o, s, d, price) in self.open.items()
            if (o, s) == (owner, symbol)
            and d is not side
            and (
                limit is None
                or price is None
                or (price <= limit if side is Side.BUY else price >= limit)
            )
        )
        wanted = surveillance_module.MAX_LINKED - 1
        assert tested_alert.order_ids == [incoming.order_id, *crossing[:wanted]]


@settings(max_examples=300, deadline=None)
@given(st.sampled_from([2, 4, 7, MAX_LINKED]), st.lists(OPS, max_size=80))
def test_a_self_trade_report_names_what_the_plain_scan_does(
    max_linked: int, ops: list[tuple[Any, ...]]
) -> None:
    """Random adds, amends (market orders included), cancels, expiries, fills and snapshots,
    with self-trade reports between them; a low MAX_LINKED makes the cut matter often."""
    with mock.patch.object(surveillance_module, "MAX_LINKED", max_linked):
        flow = Flow()
        for op in ops:
            flow.apply(op)
        flow.query(1, SYMBOLS[0], Side.BUY, 100)
        flow.query(2, SYMBOLS[1], Side.SELL, None)
    assert encoded(flow.tested) == encoded(flow.reference)
    assert encoded(restored(flow.tested)) == encoded(flow.reference)


# ------------------------------------------------------------------------------------------------
# The benchmark's order flow, three traders so that each rests hundreds of orders


@pytest.fixture(scope="module")
def journal() -> list[Record]:
    """20,000 commands of three traders through a core: more than a thousand self-trade
    reports, hundreds of them cut at MAX_LINKED orders, and amends moving orders across."""
    workload = MarketWorkload(seed=1, traders=3)
    core = ExchangeCore()
    records: list[Record] = []
    commands = itertools.chain(workload.setup(), (workload.next_command() for _ in range(20_000)))
    for sequence, command in enumerate(commands, start=1):
        events = core.apply(command, sequence, START_NS + sequence * 1_000_000)
        workload.observe(events)
        records.append((sequence, START_NS + sequence * 1_000_000, command, events))
    return records


def test_replaying_the_workload_raises_the_alerts_the_plain_scan_did(
    journal: list[Record], monkeypatch: pytest.MonkeyPatch
) -> None:
    with monkeypatch.context() as patch:
        patch.setattr(Surveillance, "_first_crossing", plain_scan)
        before = Surveillance()
        for record in journal:
            before.observe(*record)
    reports = [a for a in before.alerts if a.kind == SELF_TRADE_ATTEMPT]
    assert len(reports) > 1_000
    assert sum(len(a.order_ids) == MAX_LINKED for a in reports) > 100
    assert sum(a.details["price"] is None for a in reports) > 100  # market orders stopped
    assert any(type(e) is OrderAmended for *_, events in journal for e in events)

    now = Surveillance()
    half = len(journal) // 2
    for record in journal[:half]:
        now.observe(*record)
    now = restored(now)  # and from_state's rebuilt index in the second half
    for record in journal[half:]:
        now.observe(*record)
    assert now.alerts == before.alerts
    assert encoded(now) == encoded(before)
