"""The matching rulebook, one rule per test.

Book used throughout: tick 100 VND, reference price 60,000 VND/kg, band +/-7% (55,800-64,200).
Participants are plain integers; ALICE, BOB and CAROL are different participants.
Every rule holds for both implementations of the book (`book_implementations`).
"""

from __future__ import annotations

import pytest
from book_implementations import IMPLEMENTATIONS

from matching_engine import (
    AmendRejected,
    BookLevelChanged,
    BookRules,
    CancelReason,
    CancelRejected,
    EngineEvent,
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

ALICE, BOB, CAROL = 1, 2, 3
BUY, SELL = Side.BUY, Side.SELL


class Market:
    """A one-book engine with an order-id counter, so tests read as a sequence of orders."""

    book_class: type[OrderBook] = OrderBook  # set for each test by `book_class` below

    def __init__(self) -> None:
        self.engine = MatchingEngine(self.book_class)
        self.book: OrderBook = self.engine.add_book(
            BookRules("HOG-G1", tick_size=100, reference_price=60_000, price_band_pct=7)
        )
        self.next_id = 0

    def order(
        self,
        participant: int,
        side: Side,
        quantity: int,
        price: int | None = None,
        *,
        tif: TimeInForce = TimeInForce.GTC,
        market: bool = False,
        post_only: bool = False,
        aon: bool = False,
    ) -> list[EngineEvent]:
        self.next_id += 1
        request = OrderRequest(
            self.next_id,
            participant,
            side,
            price,
            quantity,
            OrderType.MARKET if market else OrderType.LIMIT,
            tif,
            post_only,
            aon,
        )
        return self.engine.place("HOG-G1", request)

    def bids(self) -> list[tuple[int, int, int]]:
        return self.book.depth(BUY)

    def asks(self) -> list[tuple[int, int, int]]:
        return self.book.depth(SELL)

    def resting(self, side: Side) -> list[tuple[int, int]]:
        return [(o.order_id, o.remaining) for o in self.book.resting_orders(side)]


def trades(events: list[EngineEvent]) -> list[tuple[int, int, int, int]]:
    """(price, quantity, maker order id, taker order id) of each trade, in order."""
    return [
        (e.price, e.quantity, e.maker_order_id, e.taker_order_id)
        for e in events
        if isinstance(e, Trade)
    ]


def cancel_reason(events: list[EngineEvent]) -> CancelReason | None:
    reasons = [e.reason for e in events if isinstance(e, OrderCancelled)]
    assert len(reasons) <= 1
    return reasons[0] if reasons else None


def rejection(events: list[EngineEvent]) -> RejectCode:
    assert len(events) == 1, events
    event = events[0]
    assert isinstance(event, OrderRejected | CancelRejected | AmendRejected)
    return event.code


@pytest.fixture(autouse=True, params=IMPLEMENTATIONS)
def book_class(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> type[OrderBook]:
    """Each test runs once per implementation of the book."""
    monkeypatch.setattr(Market, "book_class", request.param)
    return request.param  # type: ignore[no-any-return]


@pytest.fixture
def market() -> Market:
    return Market()


# ---------------------------------------------------------------- price-time priority


def test_a_limit_order_that_does_not_cross_rests_in_the_book(market: Market) -> None:
    events = market.order(ALICE, BUY, 5, 59_900)
    assert isinstance(events[0], OrderAccepted)
    assert trades(events) == []
    assert market.bids() == [(59_900, 5, 1)]
    assert events[-1] == BookLevelChanged("HOG-G1", BUY, 59_900, 5, 1)


def test_better_prices_trade_first(market: Market) -> None:
    market.order(ALICE, SELL, 5, 60_200)
    market.order(BOB, SELL, 5, 60_000)
    events = market.order(CAROL, BUY, 5, 60_200)
    assert trades(events) == [(60_000, 5, 2, 3)]


def test_orders_at_the_same_price_trade_first_come_first_served(market: Market) -> None:
    market.order(ALICE, SELL, 3, 60_000)
    market.order(BOB, SELL, 3, 60_000)
    events = market.order(CAROL, BUY, 4, 60_000)
    assert trades(events) == [(60_000, 3, 1, 3), (60_000, 1, 2, 3)]
    assert market.resting(SELL) == [(2, 2)]


def test_trades_happen_at_the_resting_orders_price(market: Market) -> None:
    market.order(ALICE, SELL, 5, 59_800)
    events = market.order(BOB, BUY, 5, 60_500)
    assert trades(events) == [(59_800, 5, 1, 2)]


def test_an_aggressive_order_sweeps_levels_and_rests_its_remainder(market: Market) -> None:
    market.order(ALICE, SELL, 2, 60_000)
    market.order(ALICE, SELL, 2, 60_100)
    events = market.order(BOB, BUY, 6, 60_100)
    assert trades(events) == [(60_000, 2, 1, 3), (60_100, 2, 2, 3)]
    assert market.asks() == []
    assert market.bids() == [(60_100, 2, 1)]


def test_a_trade_names_both_orders_participants_and_the_aggressor(market: Market) -> None:
    market.order(ALICE, SELL, 5, 60_000)
    events = market.order(BOB, BUY, 2, 60_000)
    trade = next(e for e in events if isinstance(e, Trade))
    assert (trade.maker_participant_id, trade.taker_participant_id) == (ALICE, BOB)
    assert trade.aggressor_side is BUY
    assert (trade.maker_remaining, trade.taker_remaining) == (3, 0)
    assert trade.trade_id == 1


# ---------------------------------------------------------------- market orders


def test_a_market_order_trades_and_cancels_its_unfilled_part(market: Market) -> None:
    market.order(ALICE, SELL, 2, 60_000)
    events = market.order(BOB, BUY, 5, market=True)
    assert trades(events) == [(60_000, 2, 1, 2)]
    assert cancel_reason(events) is CancelReason.IMMEDIATE_OR_CANCEL
    assert market.bids() == []


def test_a_market_order_on_an_empty_book_is_cancelled_for_no_liquidity(market: Market) -> None:
    events = market.order(BOB, BUY, 5, market=True)
    assert cancel_reason(events) is CancelReason.NO_LIQUIDITY
    cancelled = events[-1]
    assert isinstance(cancelled, OrderCancelled) and cancelled.cancelled_quantity == 5


def test_a_market_order_never_trades_outside_the_price_band(market: Market) -> None:
    # Only reachable when the band moves; here the reference price is re-based by a new book.
    engine = MatchingEngine(market.book_class)
    wide = engine.add_book(BookRules("X", 100, 60_000, price_band_pct=20))
    wide.place(OrderRequest(1, ALICE, SELL, 70_000, 5))
    assert wide.rules.band_high == 72_000
    narrow_rules = BookRules("X", 100, 60_000, price_band_pct=7)
    narrow = MatchingEngine(market.book_class).add_book(narrow_rules)
    for order in wide.resting_orders(SELL):
        narrow.restore_order(order)  # an ask above the new band's top (64,200)
    events = narrow.place(OrderRequest(2, BOB, BUY, None, 5, OrderType.MARKET))
    assert trades(events) == []
    assert cancel_reason(events) is CancelReason.NO_LIQUIDITY


def test_a_market_order_with_a_price_is_invalid(market: Market) -> None:
    assert rejection(market.order(BOB, BUY, 5, 60_000, market=True)) is RejectCode.INVALID_ORDER


# ---------------------------------------------------------------- time in force


def test_ioc_fills_what_it_can_and_cancels_the_rest(market: Market) -> None:
    market.order(ALICE, SELL, 2, 60_000)
    events = market.order(BOB, BUY, 5, 60_000, tif=TimeInForce.IOC)
    assert trades(events) == [(60_000, 2, 1, 2)]
    assert cancel_reason(events) is CancelReason.IMMEDIATE_OR_CANCEL
    assert market.bids() == []


def test_fok_fills_everything_at_once(market: Market) -> None:
    market.order(ALICE, SELL, 2, 60_000)
    market.order(BOB, SELL, 3, 60_100)
    events = market.order(CAROL, BUY, 5, 60_100, tif=TimeInForce.FOK)
    assert trades(events) == [(60_000, 2, 1, 3), (60_100, 3, 2, 3)]
    assert cancel_reason(events) is None


def test_fok_that_cannot_fill_whole_does_nothing_at_all(market: Market) -> None:
    market.order(ALICE, SELL, 2, 60_000)
    events = market.order(BOB, BUY, 5, 60_000, tif=TimeInForce.FOK)
    assert trades(events) == []
    assert cancel_reason(events) is CancelReason.FILL_OR_KILL
    assert market.asks() == [(60_000, 2, 1)]


def test_day_orders_expire_at_the_end_of_the_day_and_gtc_orders_stay(market: Market) -> None:
    market.order(ALICE, BUY, 5, 59_000, tif=TimeInForce.DAY)
    market.order(BOB, BUY, 3, 59_000)
    events = market.book.expire_day_orders()
    assert OrderExpired("HOG-G1", 1, ALICE, BUY, 5) in events
    assert market.resting(BUY) == [(2, 3)]


# ---------------------------------------------------------------- post-only


def test_post_only_is_rejected_when_it_would_trade_on_entry(market: Market) -> None:
    market.order(ALICE, SELL, 5, 60_000)
    events = market.order(BOB, BUY, 5, 60_000, post_only=True)
    assert rejection(events) is RejectCode.POST_ONLY_WOULD_TAKE
    assert market.asks() == [(60_000, 5, 1)] and market.bids() == []


def test_post_only_rests_when_it_would_not_trade(market: Market) -> None:
    market.order(ALICE, SELL, 5, 60_000)
    market.order(BOB, BUY, 5, 59_900, post_only=True)
    assert market.bids() == [(59_900, 5, 1)]


def test_post_only_cannot_be_immediate(market: Market) -> None:
    events = market.order(BOB, BUY, 5, 59_900, post_only=True, tif=TimeInForce.IOC)
    assert rejection(events) is RejectCode.INVALID_ORDER


# ---------------------------------------------------------------- all-or-none


def test_all_or_none_fills_whole_against_several_orders(market: Market) -> None:
    market.order(ALICE, SELL, 2, 60_000)
    market.order(BOB, SELL, 4, 60_100)
    events = market.order(CAROL, BUY, 5, 60_100, aon=True)
    assert trades(events) == [(60_000, 2, 1, 3), (60_100, 3, 2, 3)]


def test_all_or_none_that_cannot_fill_whole_rests_without_trading(market: Market) -> None:
    market.order(ALICE, SELL, 2, 60_000)
    events = market.order(CAROL, BUY, 5, 60_000, aon=True)
    assert trades(events) == []
    assert market.bids() == [(60_000, 5, 1)]
    assert market.asks() == [(60_000, 2, 1)]  # resting across: the AON order is too large


def test_a_resting_all_or_none_order_too_large_is_passed_over_and_keeps_its_place(
    market: Market,
) -> None:
    market.order(ALICE, SELL, 10, 60_000, aon=True)
    market.order(BOB, SELL, 3, 60_000)
    events = market.order(CAROL, BUY, 3, 60_000)
    assert trades(events) == [(60_000, 3, 2, 3)]
    assert market.resting(SELL) == [(1, 10)]
    events = market.order(CAROL, BUY, 10, 60_000)
    assert trades(events) == [(60_000, 10, 1, 4)]


def test_matching_continues_behind_a_passed_over_all_or_none_order(market: Market) -> None:
    market.order(ALICE, SELL, 10, 60_000, aon=True)
    market.order(BOB, SELL, 3, 60_100)
    events = market.order(CAROL, BUY, 5, 60_100)
    assert trades(events) == [(60_100, 3, 2, 3)]
    assert market.bids() == [(60_100, 2, 1)]


# ---------------------------------------------------------------- self-trade prevention


def test_an_order_never_trades_with_its_own_participant(market: Market) -> None:
    market.order(ALICE, SELL, 5, 60_000)
    events = market.order(ALICE, BUY, 5, 60_000)
    assert trades(events) == []
    assert cancel_reason(events) is CancelReason.SELF_TRADE
    assert market.asks() == [(60_000, 5, 1)]  # the resting order is untouched
    assert market.bids() == []


def test_trades_made_before_a_self_trade_stand(market: Market) -> None:
    market.order(BOB, SELL, 2, 60_000)
    market.order(ALICE, SELL, 5, 60_000)
    market.order(CAROL, SELL, 5, 60_000)
    events = market.order(ALICE, BUY, 10, 60_000)
    assert trades(events) == [(60_000, 2, 1, 4)]
    cancelled = events[-1]
    assert isinstance(cancelled, OrderCancelled)
    assert (cancelled.reason, cancelled.cancelled_quantity) == (CancelReason.SELF_TRADE, 8)
    assert market.resting(SELL) == [(2, 5), (3, 5)]


# ---------------------------------------------------------------- cancel


def test_cancel_removes_an_open_order(market: Market) -> None:
    market.order(ALICE, BUY, 5, 59_000)
    events = market.engine.cancel("HOG-G1", 1)
    assert events == [
        BookLevelChanged("HOG-G1", BUY, 59_000, 0, 0),
        OrderCancelled("HOG-G1", 1, ALICE, BUY, 5, CancelReason.REQUESTED),
    ]
    assert market.bids() == []


def test_cancelling_an_order_that_is_no_longer_open_is_refused(market: Market) -> None:
    market.order(ALICE, SELL, 5, 60_000)
    market.order(BOB, BUY, 5, 60_000)
    assert rejection(market.engine.cancel("HOG-G1", 1)) is RejectCode.ORDER_NOT_OPEN


def test_cancelling_an_order_that_never_existed_is_refused(market: Market) -> None:
    assert rejection(market.engine.cancel("HOG-G1", 99)) is RejectCode.UNKNOWN_ORDER


# ---------------------------------------------------------------- amend


def test_amending_the_quantity_down_keeps_time_priority(market: Market) -> None:
    market.order(ALICE, BUY, 5, 59_000)
    market.order(BOB, BUY, 5, 59_000)
    events = market.engine.amend("HOG-G1", 1, quantity=3)
    assert isinstance(events[0], OrderAmended) and events[0].priority_kept
    assert market.resting(BUY) == [(1, 3), (2, 5)]
    assert market.bids() == [(59_000, 8, 2)]


def test_amending_the_quantity_up_loses_time_priority(market: Market) -> None:
    market.order(ALICE, BUY, 5, 59_000)
    market.order(BOB, BUY, 5, 59_000)
    events = market.engine.amend("HOG-G1", 1, quantity=6)
    assert any(isinstance(e, OrderAmended) and not e.priority_kept for e in events)
    assert market.resting(BUY) == [(2, 5), (1, 6)]


def test_amending_the_price_loses_time_priority(market: Market) -> None:
    market.order(ALICE, BUY, 5, 59_000)
    market.order(BOB, BUY, 5, 59_100)
    market.engine.amend("HOG-G1", 1, price=59_100)
    assert market.resting(BUY) == [(2, 5), (1, 5)]


def test_an_amended_order_that_now_crosses_trades_at_once(market: Market) -> None:
    market.order(ALICE, SELL, 3, 60_000)
    market.order(BOB, BUY, 5, 59_000)
    events = market.engine.amend("HOG-G1", 2, price=60_000)
    assert trades(events) == [(60_000, 3, 1, 2)]
    assert market.bids() == [(60_000, 2, 1)]


def test_amending_to_a_quantity_already_filled_ends_the_order(market: Market) -> None:
    market.order(ALICE, BUY, 5, 60_000)
    market.order(BOB, SELL, 3, 60_000)
    events = market.engine.amend("HOG-G1", 1, quantity=3)
    assert cancel_reason(events) is CancelReason.AMENDED_BELOW_FILLED
    assert market.bids() == []


def test_an_amend_that_breaks_a_rule_changes_nothing(market: Market) -> None:
    market.order(ALICE, BUY, 5, 59_000)
    assert rejection(market.engine.amend("HOG-G1", 1, price=59_050)) is RejectCode.TICK_SIZE
    assert rejection(market.engine.amend("HOG-G1", 1, quantity=0)) is RejectCode.LOT_SIZE
    assert rejection(market.engine.amend("HOG-G1", 1)) is RejectCode.INVALID_AMEND
    assert market.resting(BUY) == [(1, 5)]


def test_a_post_only_order_cannot_be_amended_into_a_trade(market: Market) -> None:
    market.order(ALICE, SELL, 5, 60_000)
    market.order(BOB, BUY, 5, 59_000, post_only=True)
    events = market.engine.amend("HOG-G1", 2, price=60_000)
    assert rejection(events) is RejectCode.POST_ONLY_WOULD_TAKE
    assert market.resting(BUY) == [(2, 5)]


# ---------------------------------------------------------------- validation


@pytest.mark.parametrize(
    ("price", "quantity", "code"),
    [
        (60_050, 5, RejectCode.TICK_SIZE),
        (0, 5, RejectCode.TICK_SIZE),
        (-100, 5, RejectCode.TICK_SIZE),
        (55_700, 5, RejectCode.PRICE_OUT_OF_BAND),
        (64_300, 5, RejectCode.PRICE_OUT_OF_BAND),
        (60_000, 0, RejectCode.LOT_SIZE),
        (60_000, -1, RejectCode.LOT_SIZE),
        (60_000, 100_001, RejectCode.LOT_SIZE),
        (None, 5, RejectCode.INVALID_ORDER),
    ],
)
def test_an_order_breaking_a_price_or_quantity_rule_is_rejected_and_changes_nothing(
    market: Market, price: int | None, quantity: int, code: RejectCode
) -> None:
    before = market.engine.digest()
    assert rejection(market.order(ALICE, BUY, quantity, price)) is code
    assert market.engine.digest() == before


def test_the_band_edges_themselves_are_allowed(market: Market) -> None:
    assert market.book.rules.band_low == 55_800 and market.book.rules.band_high == 64_200
    market.order(ALICE, BUY, 1, 55_800)
    market.order(ALICE, SELL, 1, 64_200)
    assert market.bids() == [(55_800, 1, 1)] and market.asks() == [(64_200, 1, 1)]


def test_an_order_for_an_unlisted_instrument_is_rejected(market: Market) -> None:
    events = market.engine.place("NOPE", OrderRequest(1, ALICE, BUY, 60_000, 1))
    assert rejection(events) is RejectCode.UNKNOWN_INSTRUMENT


def test_order_ids_must_increase(market: Market) -> None:
    market.order(ALICE, BUY, 1, 59_000)
    events = market.engine.place("HOG-G1", OrderRequest(1, ALICE, BUY, 59_000, 1))
    assert rejection(events) is RejectCode.DUPLICATE_ORDER_ID


# ---------------------------------------------------------------- depth and digest


def test_depth_aggregates_levels_best_first(market: Market) -> None:
    market.order(ALICE, BUY, 1, 59_000)
    market.order(BOB, BUY, 2, 59_000)
    market.order(BOB, BUY, 4, 59_500)
    market.order(CAROL, SELL, 3, 60_500)
    market.order(CAROL, SELL, 3, 60_100)
    assert market.bids() == [(59_500, 4, 1), (59_000, 3, 2)]
    assert market.asks() == [(60_100, 3, 1), (60_500, 3, 1)]
    assert market.book.depth(BUY, 1) == [(59_500, 4, 1)]


def test_equal_histories_give_equal_digests_and_different_ones_differ() -> None:
    first, second = Market(), Market()
    for m in (first, second):
        m.order(ALICE, BUY, 1, 59_000)
        m.order(BOB, SELL, 2, 60_000)
    assert first.engine.digest() == second.engine.digest()
    second.engine.amend("HOG-G1", 2, quantity=1)
    assert first.engine.digest() != second.engine.digest()
