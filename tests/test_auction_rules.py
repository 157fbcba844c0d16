"""The call auction's rulebook, one rule per test (`matching_engine.auction`).

Book: tick 100 VND, reference price 60,000 VND/kg, band +/-7% (55,800-64,200). Orders are
collected with `rest()` (a call phase: nothing trades) and `uncross()` runs the auction.
ALICE, BOB, CAROL and DAVE are different participants. Every rule holds for both
implementations of the book (`book_implementations`).
"""

from __future__ import annotations

import random

import pytest
from book_implementations import IMPLEMENTATIONS

from matching_engine import (
    AuctionPrice,
    BookRules,
    CancelReason,
    EngineEvent,
    MatchingEngine,
    OrderAccepted,
    OrderBook,
    OrderCancelled,
    OrderRejected,
    OrderRequest,
    OrderType,
    RejectCode,
    Side,
    TimeInForce,
    Trade,
)
from matching_engine.auction import self_crossing

ALICE, BOB, CAROL, DAVE = 1, 2, 3, 4
BUY, SELL = Side.BUY, Side.SELL
REFERENCE = 60_000


class Call:
    """A book in a call phase; `order()` rests, `uncross()` runs the auction."""

    book_class: type[OrderBook] = OrderBook  # set for each test by `book_class` below

    def __init__(self) -> None:
        self.engine = MatchingEngine(self.book_class)
        self.book: OrderBook = self.engine.add_book(
            BookRules("HOG-G1", tick_size=100, reference_price=REFERENCE, price_band_pct=7)
        )
        self.next_id = 0
        self.market_ids: set[int] = set()

    def order(
        self,
        participant: int,
        side: Side,
        quantity: int,
        price: int | None = None,
        *,
        aon: bool = False,
        tif: TimeInForce = TimeInForce.GTC,
    ) -> int:
        self.next_id += 1
        kind = OrderType.MARKET if price is None else OrderType.LIMIT
        request = OrderRequest(
            self.next_id, participant, side, price, quantity, kind, tif, False, aon
        )
        events = self.book.rest(request)
        assert isinstance(events[0], OrderAccepted), events
        if price is None:
            self.market_ids.add(self.next_id)
        return self.next_id

    def uncross(self, reference: int = REFERENCE) -> tuple[AuctionPrice | None, list[EngineEvent]]:
        return self.book.uncross(reference, self.market_ids)

    def remaining(self, order_id: int) -> int:
        order = self.book.order(order_id)
        return 0 if order is None else order.remaining


@pytest.fixture(autouse=True, params=IMPLEMENTATIONS)
def book_class(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> type[OrderBook]:
    """Each test runs once per implementation of the book."""
    monkeypatch.setattr(Call, "book_class", request.param)
    return request.param  # type: ignore[no-any-return]


def trades(events: list[EngineEvent]) -> list[tuple[int, int, int, int]]:
    """(maker order, taker order, price, quantity) of each trade."""
    return [
        (e.maker_order_id, e.taker_order_id, e.price, e.quantity)
        for e in events
        if isinstance(e, Trade)
    ]


def test_orders_in_a_call_rest_without_trading_even_when_they_cross() -> None:
    call = Call()
    call.order(ALICE, BUY, 5, 61_000)
    call.order(BOB, SELL, 3, 59_000)
    assert call.book.best_bid() == 61_000 and call.book.best_ask() == 59_000


def test_immediate_orders_cannot_wait_for_an_auction() -> None:
    call = Call()
    for tif in (TimeInForce.IOC, TimeInForce.FOK):
        events = call.book.rest(OrderRequest(1, ALICE, BUY, 60_000, 1, OrderType.LIMIT, tif))
        assert isinstance(events[0], OrderRejected)
        assert events[0].code is RejectCode.NOT_ALLOWED_IN_CALL


def test_a_call_keeps_the_price_band() -> None:
    call = Call()
    events = call.book.rest(OrderRequest(1, ALICE, BUY, 64_300, 1))
    assert isinstance(events[0], OrderRejected)
    assert events[0].code is RejectCode.PRICE_OUT_OF_BAND


def test_the_auction_price_executes_the_largest_volume() -> None:
    call = Call()
    call.order(ALICE, BUY, 5, 61_000)
    call.order(BOB, SELL, 3, 59_000)
    call.order(CAROL, SELL, 4, 60_500)
    # 59,000 and the reference 60,000 execute 3 lots; 60,500 and 61,000 execute 5.
    found, _ = call.uncross()
    assert found is not None and (found.price, found.volume) == (60_500, 5)


def test_equal_volumes_go_to_the_smallest_imbalance() -> None:
    call = Call()
    call.order(ALICE, BUY, 5, 60_100)
    call.order(DAVE, BUY, 2, 60_000)
    call.order(BOB, SELL, 5, 59_900)
    # 59,900, 60,000 and 60,100 all execute 5 lots; only 60,100 leaves nothing over, and it
    # wins although it is the furthest from a reference of 59,000.
    found, _ = call.uncross(reference=59_000)
    assert found == AuctionPrice(60_100, 5, 0)


def test_equal_volume_and_imbalance_go_to_the_price_nearest_the_reference() -> None:
    call = Call()
    call.order(ALICE, BUY, 5, 61_000)
    call.order(BOB, SELL, 3, 59_000)
    call.order(CAROL, SELL, 4, 60_500)
    # 60,500 and 61,000 both execute 5 lots with 2 sells over; 60,500 is nearer 60,000.
    found, _ = call.uncross()
    assert found == AuctionPrice(60_500, 5, -2)


def test_the_reference_price_stands_for_the_gap_between_crossing_prices() -> None:
    call = Call()
    call.order(ALICE, BUY, 5, 60_500)
    call.order(BOB, SELL, 5, 59_500)
    # 59,500, 60,000 and 60,500 all execute 5 lots without imbalance: the reference wins,
    # which is also why two prices equally near the reference never need rule 4 here.
    found, _ = call.uncross()
    assert found == AuctionPrice(60_000, 5, 0)


def test_fills_follow_price_then_time_priority() -> None:
    call = Call()
    best = call.order(ALICE, BUY, 2, 61_000)
    earlier = call.order(BOB, BUY, 3, 60_500)
    later = call.order(CAROL, BUY, 3, 60_500)
    call.order(DAVE, SELL, 5, 60_000)
    found, events = call.uncross()
    assert found is not None and found.price == 60_000
    assert call.remaining(best) == 0 and call.remaining(earlier) == 0
    assert call.remaining(later) == 3
    assert sum(q for *_, q in trades(events)) == 5


def test_every_auction_trade_is_at_the_auction_price_with_the_earlier_order_as_maker() -> None:
    call = Call()
    buy = call.order(ALICE, BUY, 2, 61_000)
    sell = call.order(BOB, SELL, 2, 59_000)
    _, events = call.uncross()
    assert trades(events) == [(buy, sell, 60_000, 2)]
    trade = next(e for e in events if isinstance(e, Trade))
    assert trade.aggressor_side is SELL  # the later order's side


def test_market_orders_fill_first_and_their_remainder_is_cancelled() -> None:
    call = Call()
    limit = call.order(ALICE, BUY, 2, 61_000)
    market = call.order(CAROL, BUY, 5)
    call.order(BOB, SELL, 3, 60_000)
    _, events = call.uncross()
    assert [(t[0], t[1], t[3]) for t in trades(events)] == [(market, 3, 3)]
    cancelled = [e for e in events if isinstance(e, OrderCancelled)]
    assert [(e.order_id, e.cancelled_quantity, e.reason) for e in cancelled] == [
        (market, 2, CancelReason.IMMEDIATE_OR_CANCEL)
    ]
    assert call.remaining(limit) == 2 and call.book.order(market) is None


def test_a_market_order_that_finds_nothing_is_cancelled_for_no_liquidity() -> None:
    call = Call()
    market = call.order(ALICE, SELL, 4)
    found, events = call.uncross()
    assert found is None and not trades(events)
    cancelled = [e for e in events if isinstance(e, OrderCancelled)]
    assert [(e.order_id, e.reason) for e in cancelled] == [(market, CancelReason.NO_LIQUIDITY)]


def test_an_all_or_none_order_that_cannot_fill_whole_sits_out_and_keeps_its_place() -> None:
    call = Call()
    aon = call.order(ALICE, BUY, 5, 60_000, aon=True)
    small = call.order(CAROL, BUY, 2, 60_000)
    call.order(BOB, SELL, 3, 60_000)
    found, events = call.uncross()
    assert found == AuctionPrice(60_000, 2, 4)
    assert [(t[0], t[3]) for t in trades(events)] == [(small, 2)]
    assert call.remaining(aon) == 5 and call.remaining(small) == 0


def test_an_all_or_none_order_that_can_fill_whole_trades() -> None:
    call = Call()
    aon = call.order(ALICE, BUY, 3, 60_000, aon=True)
    call.order(BOB, SELL, 2, 59_800)
    call.order(CAROL, SELL, 1, 60_000)
    found, _ = call.uncross()
    assert found is not None and found.volume == 3 and call.remaining(aon) == 0


def test_an_order_crossing_its_own_participants_earlier_order_is_cancelled_first() -> None:
    call = Call()
    buy = call.order(ALICE, BUY, 3, 60_000)
    own = call.order(ALICE, SELL, 3, 59_900)  # crosses Alice's own earlier buy
    other = call.order(BOB, SELL, 3, 60_000)
    _, events = call.uncross()
    cancelled = [e for e in events if isinstance(e, OrderCancelled)]
    assert [(e.order_id, e.reason) for e in cancelled] == [(own, CancelReason.SELF_TRADE)]
    assert trades(events) == [(buy, other, 60_000, 3)]
    assert call.book.best_bid() is None or call.book.best_ask() is None


def test_the_indicative_price_already_leaves_out_self_crossing_orders() -> None:
    call = Call()
    call.order(ALICE, BUY, 3, 60_000)
    call.order(ALICE, SELL, 3, 59_000)
    assert call.book.indicative_price(REFERENCE, call.market_ids) is None


def test_without_crossing_orders_the_auction_trades_nothing() -> None:
    call = Call()
    call.order(ALICE, BUY, 3, 59_000)
    call.order(BOB, SELL, 3, 61_000)
    found, events = call.uncross()
    assert found is None and events == []


def test_the_indicative_price_is_what_the_uncross_then_does() -> None:
    call = Call()
    call.order(ALICE, BUY, 5, 61_000)
    call.order(BOB, SELL, 3, 59_000)
    call.order(CAROL, SELL, 4, 60_500)
    indicative = call.book.indicative_price(REFERENCE, call.market_ids)
    found, _ = call.uncross()
    assert indicative == found


def test_an_amend_in_a_call_does_not_trade() -> None:
    call = Call()
    buy = call.order(ALICE, BUY, 3, 59_000)
    call.order(BOB, SELL, 3, 60_000)
    events = call.book.amend(buy, price=60_500, matching=False)
    assert not trades(events)
    assert call.book.best_bid() == 60_500 and call.remaining(buy) == 3


def test_what_the_auction_leaves_rests_for_continuous_trading() -> None:
    call = Call()
    call.order(ALICE, BUY, 5, 60_500)
    call.order(BOB, SELL, 2, 60_000)
    call.uncross()
    assert call.book.depth(BUY) == [(60_500, 3, 1)] and call.book.depth(SELL) == []
    # Continuous matching picks up where the auction left off.
    events = call.book.place(OrderRequest(99, CAROL, SELL, 60_500, 3))
    assert [(t[2], t[3]) for t in trades(events)] == [(60_500, 3)]


def test_a_price_inside_a_gap_wins_when_it_leaves_no_imbalance() -> None:
    call = Call()
    call.order(ALICE, BUY, 5, 60_500)
    call.order(BOB, BUY, 3, 59_500)
    call.order(CAROL, SELL, 5, 59_500)
    call.order(DAVE, SELL, 3, 60_500)
    # 59,500 leaves 3 buys over, 60,500 3 sells; any price between trades 5 lots with none
    # over, and of those, 61,000's nearest is 60,400.
    found, _ = call.uncross(reference=61_000)
    assert found == AuctionPrice(60_400, 5, 0)


def brute_force(call: Call, reference: int) -> AuctionPrice | None:
    """Rules 1-4 tried at every tick of the band, the slow and obvious way."""
    rules = call.book.rules
    cancelled = self_crossing(call.book, call.market_ids)  # the documented first step
    buys = [o for o in call.book.resting_orders(BUY) if o.order_id not in cancelled]
    sells = [o for o in call.book.resting_orders(SELL) if o.order_id not in cancelled]
    best = None
    for price in range(rules.band_low, rules.band_high + 1, rules.tick_size):
        bought = sum(o.remaining for o in buys if o.order_id in call.market_ids or o.price >= price)
        sold = sum(o.remaining for o in sells if o.order_id in call.market_ids or o.price <= price)
        volume, imbalance = min(bought, sold), bought - sold
        key = (-volume, abs(imbalance), abs(price - reference), price)
        if volume and (best is None or key < best[0]):
            best = key, AuctionPrice(price, volume, imbalance)
    return None if best is None else best[1]


@pytest.mark.parametrize("seed", range(200))
def test_the_auction_price_is_the_best_of_every_price_in_the_band(seed: int) -> None:
    rng = random.Random(seed)
    call = Call()
    for _ in range(rng.randint(1, 12)):
        side = rng.choice((BUY, SELL))
        price = None if rng.random() < 0.1 else rng.randrange(58_000, 62_001, 100)
        call.order(rng.randint(1, 4), side, rng.randint(1, 9), price)
    reference = rng.randrange(57_000, 63_001, 100)
    expected = brute_force(call, reference)
    assert call.book.indicative_price(reference, call.market_ids) == expected
    found, _ = call.uncross(reference)
    assert found == expected
    bid, ask = call.book.best_bid(), call.book.best_ask()
    assert bid is None or ask is None or bid < ask  # nothing is left crossing
