"""The market's rulebook, one rule per test: instruments and their listing rules, sessions and
call auctions, price bands, circuit breakers, settlement prices, certificate expiry, physical
delivery and traceability. Everything goes through `ExchangeCore.apply`, as the journal does.

Markets: HOG (live hogs, lot 1,000 kg, tick 100, reference 60,000, band 7%: 55,800-64,200) and
TEA (OCOP, 4 stars). FARM (1) and COOP (2) sell, BUYER (3) and TRADER (4) buy. Times are Vietnam
time (UTC+7) on Monday 23 November 2026 unless a test says otherwise.
"""

from __future__ import annotations

import hashlib
from datetime import date
from typing import Any

import msgspec
import pytest
from conftest import ocop_attributes as shared_ocop_attributes
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from clearing.accounts import CASH
from exchange import commands as c
from exchange.attributes import add_months, vietnam_midnight_ns
from exchange.core import ExchangeCore
from exchange.events import (
    AmendRejected,
    AuctionUncrossed,
    CertificateExpired,
    CircuitBreakerTripped,
    CommandRejected,
    Event,
    GoodsDelivered,
    GoodsReleased,
    MarketHalted,
    OrderExpired,
    OrderRejected,
    ReferencePriceChanged,
    SessionChanged,
    SettlementPublished,
    Trade,
)
from exchange.instruments import Instrument, InstrumentKind
from exchange.ledger_feed import entry_of
from exchange.participants import Role
from exchange.scheduler import due_commands, overnight_day_orders
from exchange.sessions import CircuitBreaker, Session, Timetable, phase_at
from exchange.settlement import SettlementMethod
from matching_engine import OrderAccepted, OrderType, Side, TimeInForce

FARM, COOP, BUYER, TRADER = 1, 2, 3, 4
HOG, TEA = "HOG-G1", "OCOP-TEA"
NS = 1_000_000_000
MONDAY = vietnam_midnight_ns(date(2026, 11, 23))
TIMETABLE = Timetable(pre_open="08:45", open="09:00", closing="14:30", close="14:45")
BREAKER = CircuitBreaker(move_pct=3, window_s=60, cool_off_s=120)
BUY, SELL = Side.BUY, Side.SELL


def at(clock: str, day: int = 0) -> int:
    """UTC nanoseconds of `HH:MM[:SS]` Vietnam time, `day` days after Monday."""
    parts = [int(p) for p in clock.split(":")] + [0]
    return MONDAY + day * 86_400 * NS + (parts[0] * 3600 + parts[1] * 60 + parts[2]) * NS


def hog(**overrides: object) -> Instrument:
    fields: dict[str, object] = {
        "symbol": HOG,
        "name": "Heo hơi loại 1 - TP.HCM",
        "kind": InstrumentKind.LIVE_HOG,
        "lot_size": 1_000,
        "tick_size": 100,
        "reference_price": 60_000,
        "attributes": {
            "grade": "1",
            "delivery_hub": "Ho Chi Minh City",
            "head_weight_min_kg": 95,
            "head_weight_max_kg": 125,
        },
    }
    return Instrument(**(fields | overrides))  # type: ignore[arg-type]


def ocop_attributes(**overrides: object) -> dict[str, object]:
    """The shared OCOP attributes, certified on 10 March 2025 (valid until 10 March 2028)."""
    return shared_ocop_attributes(**({"certification_date": "2025-03-10"} | overrides))


def tea(**attributes: object) -> Instrument:
    return Instrument(
        TEA, "Trà Tân Cương", InstrumentKind.OCOP, 10, 1_000, 450_000,
        attributes=ocop_attributes(**attributes),  # type: ignore[arg-type]
    )  # fmt: skip


class Market:
    """An exchange core with a clock: `now` is the time stamp of the next command."""

    def __init__(self, *instruments: Instrument, now: int = at("10:00")) -> None:
        self.core = ExchangeCore()
        self.sequence = 0
        self.now = now
        self.journal: list[tuple[c.Command, int]] = []
        for name in ("farm", "coop", "buyer", "trader"):
            key = hashlib.sha256(name.encode()).hexdigest()
            self.do(c.RegisterParticipant(name, Role.TRADER, key))
        for instrument in instruments:
            assert not rejected(self.do(c.ListInstrument(instrument)))
            for seller in (FARM, COOP):
                self.do(c.Deposit(seller, instrument.symbol, 100))
        for buyer in (BUYER, TRADER):
            self.do(c.Deposit(buyer, CASH, 10**12))

    def do(self, command: c.Command) -> list[Event]:
        self.sequence += 1
        self.now = max(self.now, self.core.last_time_ns)
        self.journal.append((command, self.now))
        events = self.core.apply(command, self.sequence, self.now)
        self.core.check_invariants()
        return events

    def order(
        self,
        participant: int,
        side: Side,
        quantity: int,
        price: int | None = None,
        *,
        symbol: str = HOG,
        tif: TimeInForce = TimeInForce.GTC,
    ) -> list[Event]:
        kind = OrderType.LIMIT if price is not None else OrderType.MARKET
        return self.do(c.PlaceOrder(participant, symbol, side, kind, price, quantity, tif))

    def session(self, target: Session, symbol: str = HOG) -> list[Event]:
        return self.do(c.AdvanceSession(symbol, target))

    def phase(self, symbol: str = HOG) -> Session:
        return self.core.markets[symbol].session.session

    def reference(self, symbol: str = HOG) -> int:
        return self.core.markets[symbol].book.rules.reference_price


def rejected(events: list[Event]) -> str | None:
    first = events[0] if events else None
    if isinstance(first, CommandRejected | OrderRejected | AmendRejected):
        return str(first.code)
    return None


def traded(events: list[Event]) -> list[tuple[int, int]]:
    return [(e.price, e.quantity) for e in events if isinstance(e, Trade)]


def of(kind: type, events: list[Event]) -> list[object]:
    return [e for e in events if isinstance(e, kind)]


def opened(market: Market, symbol: str = HOG) -> None:
    market.session(Session.PRE_OPEN, symbol)
    market.session(Session.AUCTION, symbol)


# ---------------------------------------------------------------------- listing


def test_a_live_hog_lists_with_its_grade_hub_weight_band_and_traceability() -> None:
    market = Market()
    listed = hog(attributes={**hog().attributes, "vietgap_required": True})
    assert rejected(market.do(c.ListInstrument(listed))) is None
    assert market.core.instruments[HOG].attributes["grade"] == "1"


@pytest.mark.parametrize(
    ("attributes", "price_unit"),
    [
        ({"grade": "A"}, "kg"),
        ({"delivery_hub": ""}, "kg"),
        ({"head_weight_min_kg": 130, "head_weight_max_kg": 90}, "kg"),
        ({"head_weight_min_kg": 95}, "kg"),
        ({"vietgap_required": "yes"}, "kg"),
        ({}, "head"),
    ],
    ids=["unknown grade", "empty hub", "inverted weight band", "half a band", "flag", "unit"],
)
def test_a_live_hog_with_a_wrong_attribute_is_refused_with_invalid_attribute(
    attributes: dict[str, object], price_unit: str
) -> None:
    market = Market()
    listing = hog(attributes=attributes, price_unit=price_unit)
    assert rejected(market.do(c.ListInstrument(listing))) == "INVALID_ATTRIBUTE"
    assert HOG not in market.core.instruments


def test_an_ocop_product_lists_with_stars_group_producer_province_and_certificate() -> None:
    market = Market()
    assert rejected(market.do(c.ListInstrument(tea()))) is None
    assert market.core.instruments[TEA].attributes["stars"] == 4


@pytest.mark.parametrize("stars", [1, 2])
def test_ocop_goods_below_three_stars_cannot_list(stars: int) -> None:
    market = Market()
    assert rejected(market.do(c.ListInstrument(tea(stars=stars)))) == "OCOP_STARS_TOO_LOW"


@pytest.mark.parametrize(
    "attribute",
    ["stars", "product_group", "producer_type", "province", "certificate_number",
     "certification_date"],
)  # fmt: skip
def test_ocop_goods_need_every_attribute(attribute: str) -> None:
    market = Market()
    attributes = ocop_attributes()
    del attributes[attribute]
    listing = msgspec.structs.replace(tea(), attributes=attributes)
    assert rejected(market.do(c.ListInstrument(listing))) == "INVALID_ATTRIBUTE"


def test_an_ocop_product_group_is_one_of_the_six_groups() -> None:
    market = Market()
    assert rejected(market.do(c.ListInstrument(tea(product_group="cars")))) == "INVALID_ATTRIBUTE"


def test_an_ocop_certificate_lasts_36_months_and_the_expiry_is_written_in() -> None:
    market = Market()
    market.do(c.ListInstrument(tea()))
    assert market.core.instruments[TEA].attributes["certificate_expires_on"] == "2028-03-10"
    assert add_months(date(2024, 2, 29), 36) == date(2027, 2, 28)  # no 29 February in 2027


def test_an_ocop_product_with_an_expired_certificate_cannot_list() -> None:
    market = Market()
    expired = tea(certification_date="2023-11-22")  # expired on 2026-11-22, yesterday
    assert rejected(market.do(c.ListInstrument(expired))) == "CERTIFICATE_EXPIRED"


@pytest.mark.parametrize("certified", ["2026-12-01", "9998-06-01", "9999-12-31"])
def test_an_ocop_certificate_cannot_be_dated_in_the_future(certified: str) -> None:
    market = Market()  # its clock is in November 2026
    listing = tea(certification_date=certified)
    assert rejected(market.do(c.ListInstrument(listing))) == "INVALID_ATTRIBUTE"
    assert TEA not in market.core.instruments


def test_a_given_expiry_must_be_the_36_months_one() -> None:
    market = Market()
    listing = tea(certificate_expires_on="2030-01-01")
    assert rejected(market.do(c.ListInstrument(listing))) == "INVALID_ATTRIBUTE"


@pytest.mark.parametrize(
    "listing",
    [
        hog(timetable=Timetable("09:00", "08:45", "14:30", "14:45")),
        hog(timetable=Timetable("08:45", "09:00", "14:30", "25:00")),
        hog(timetable=Timetable("08:45", "09:00", "14:30", "14:45", weekdays=[7])),
        hog(circuit_breaker=CircuitBreaker(move_pct=0)),
        hog(settlement_window_s=0),
    ],
    ids=["open before pre-open", "no such hour", "no such weekday", "no move", "no window"],
)
def test_a_timetable_breaker_or_settlement_window_that_makes_no_sense_is_refused(
    listing: Instrument,
) -> None:
    assert rejected(Market().do(c.ListInstrument(listing))) == "INVALID_INSTRUMENT"


# ---------------------------------------------------------------------- sessions


def test_an_instrument_without_a_timetable_trades_continuously_at_once() -> None:
    market = Market(hog(), now=at("03:00"))
    assert market.phase() is Session.CONTINUOUS
    market.order(FARM, SELL, 1, 60_000)
    assert traded(market.order(BUYER, BUY, 1, 60_000)) == [(60_000, 1)]


def test_an_instrument_with_a_timetable_waits_closed_for_its_first_session() -> None:
    market = Market(hog(timetable=TIMETABLE))
    assert market.phase() is Session.CLOSED


def test_a_closed_market_refuses_new_orders_and_amends_but_takes_cancels() -> None:
    market = Market(hog())
    market.order(FARM, SELL, 2, 61_000)
    market.session(Session.CLOSED)
    assert rejected(market.order(BUYER, BUY, 1, 60_000)) == "MARKET_CLOSED"
    assert rejected(market.do(c.AmendOrder(FARM, 1, price=61_500))) == "MARKET_CLOSED"
    assert rejected(market.do(c.CancelOrder(FARM, 1))) is None


def test_pre_open_accepts_orders_but_matches_nothing() -> None:
    market = Market(hog(timetable=TIMETABLE))
    market.session(Session.PRE_OPEN)
    market.order(FARM, SELL, 2, 59_000)
    assert traded(market.order(BUYER, BUY, 2, 61_000)) == []
    book = market.core.markets[HOG].book
    assert (book.best_bid(), book.best_ask()) == (61_000, 59_000)


def test_pre_open_refuses_immediate_orders() -> None:
    market = Market(hog(timetable=TIMETABLE))
    market.session(Session.PRE_OPEN)
    for tif in (TimeInForce.IOC, TimeInForce.FOK):
        assert rejected(market.order(BUYER, BUY, 1, 60_000, tif=tif)) == "NOT_ALLOWED_IN_CALL"


def test_pre_open_publishes_an_indicative_opening_price() -> None:
    market = Market(hog(timetable=TIMETABLE))
    market.session(Session.PRE_OPEN)
    market.order(FARM, SELL, 2, 59_000)
    market.order(BUYER, BUY, 3, 61_000)
    indicative = market.core.indicative_price(HOG)
    assert indicative is not None and (indicative.price, indicative.volume) == (60_000, 2)


def test_the_opening_auction_uncrosses_then_trading_is_continuous() -> None:
    market = Market(hog(timetable=TIMETABLE))
    market.session(Session.PRE_OPEN)
    market.order(FARM, SELL, 2, 59_000)
    market.order(BUYER, BUY, 3, 61_000)
    events = market.session(Session.AUCTION)
    phases = [(e.previous, e.session) for e in of(SessionChanged, events)]  # type: ignore[attr-defined]
    assert phases == [
        (Session.PRE_OPEN, Session.AUCTION),
        (Session.AUCTION, Session.CONTINUOUS),
    ]
    assert of(AuctionUncrossed, events) == [AuctionUncrossed(HOG, 60_000, 2, 1, 60_000)]
    assert traded(events) == [(60_000, 2)]
    # Delivery versus payment at the auction price.
    assert market.core.accounts.balance(BUYER, HOG).available == 2
    assert traded(market.order(COOP, SELL, 1, 61_000)) == [(61_000, 1)]


def test_asking_for_continuous_from_pre_open_goes_through_the_auction() -> None:
    market = Market(hog(timetable=TIMETABLE))
    market.session(Session.PRE_OPEN)
    market.order(FARM, SELL, 1, 60_000)
    market.order(BUYER, BUY, 1, 60_000)
    events = market.session(Session.CONTINUOUS)
    assert traded(events) == [(60_000, 1)] and market.phase() is Session.CONTINUOUS


def test_the_closing_call_ends_in_the_closing_auction_and_the_market_closes() -> None:
    market = Market(hog())
    market.session(Session.CLOSING)
    market.order(FARM, SELL, 1, 60_000)
    assert traded(market.order(BUYER, BUY, 1, 60_500)) == []
    events = market.session(Session.AUCTION)
    assert traded(events) == [(60_000, 1)]  # 60,000 to 60,500 all trade 1: the reference
    assert market.phase() is Session.CLOSED
    assert of(SettlementPublished, events)


def test_day_orders_expire_at_the_close() -> None:
    market = Market(hog())
    market.order(BUYER, BUY, 1, 59_000, tif=TimeInForce.DAY)
    market.order(TRADER, BUY, 1, 59_000)
    events = market.session(Session.CLOSED)
    assert [e.order_id for e in of(OrderExpired, events)] == [1]  # type: ignore[attr-defined]
    assert market.core.markets[HOG].book.open_order_count() == 1


def test_without_a_timetable_the_trading_day_ends_at_vietnam_midnight() -> None:
    market = Market(hog(), now=at("23:59"))
    market.order(BUYER, BUY, 1, 59_000, tif=TimeInForce.DAY)  # order 1: yesterday's
    market.order(TRADER, BUY, 1, 59_000)  # order 2: good till cancelled
    market.now = at("00:00:00", day=1)
    market.order(BUYER, BUY, 1, 58_000, tif=TimeInForce.DAY)  # order 3: today's
    assert overnight_day_orders(market.core, HOG, at("23:59")) is None  # the day is not over
    end = overnight_day_orders(market.core, HOG, at("00:00:01", day=1))
    assert end == c.ExpireDayOrders(HOG, ended_at_ns=at("00:00", day=1))
    market.now = at("00:00:01", day=1)
    events = market.do(end)
    assert [e.order_id for e in of(OrderExpired, events)] == [1]  # type: ignore[attr-defined]
    assert market.core.orders[1].status.value == "expired"
    assert market.core.markets[HOG].book.open_order_count() == 2
    assert overnight_day_orders(market.core, HOG, at("23:00", day=1)) is None  # done for today


def test_a_market_with_a_timetable_ends_its_day_orders_at_its_close_not_at_midnight() -> None:
    market = Market(hog(timetable=TIMETABLE), now=at("08:50"))
    for command in due_commands(market.core, market.now):
        market.do(command)
    market.session(Session.AUCTION)
    market.now = at("10:00")
    market.order(BUYER, BUY, 1, 59_000, tif=TimeInForce.DAY)
    assert overnight_day_orders(market.core, HOG, at("10:00", day=1)) is None


def test_without_a_timetable_but_with_sessions_run_by_hand_the_close_ends_the_day() -> None:
    market = Market(hog(), now=at("21:00"))
    market.session(Session.CLOSED)
    market.now = at("22:00")
    opened(market)  # a night session, opened by hand
    market.now = at("23:00")
    market.order(BUYER, BUY, 1, 59_000, tif=TimeInForce.DAY)
    assert overnight_day_orders(market.core, HOG, at("00:00:01", day=1)) is None
    market.now = at("02:00", day=1)
    events = market.session(Session.CLOSED)  # the operator's close, past midnight
    assert [e.order_id for e in of(OrderExpired, events)] == [1]  # type: ignore[attr-defined]


def test_a_day_cannot_end_before_1970() -> None:
    market = Market(hog())
    market.order(BUYER, BUY, 1, 59_000, tif=TimeInForce.DAY)
    assert rejected(market.do(c.ExpireDayOrders(HOG, ended_at_ns=-1))) == "INVALID_REQUEST"
    assert market.core.markets[HOG].book.open_order_count() == 1


def test_an_end_of_day_from_an_old_journal_expires_every_day_order() -> None:
    market = Market(hog(), now=at("10:00"))
    market.order(BUYER, BUY, 1, 59_000, tif=TimeInForce.DAY)
    market.order(BUYER, BUY, 1, 58_000, tif=TimeInForce.DAY)
    events = market.do(c.ExpireDayOrders(HOG))  # no end instant: the whole day, as before
    assert [e.order_id for e in of(OrderExpired, events)] == [1, 2]  # type: ignore[attr-defined]


def test_a_market_order_waiting_for_the_auction_cannot_be_given_a_price() -> None:
    market = Market(hog(timetable=TIMETABLE))
    market.session(Session.PRE_OPEN)
    market.order(BUYER, BUY, 2)
    assert rejected(market.do(c.AmendOrder(BUYER, 1, price=60_000))) == "INVALID_AMEND"
    assert rejected(market.do(c.AmendOrder(BUYER, 1, quantity=1))) is None


def test_a_market_order_waiting_in_a_pre_open_that_is_called_off_is_cancelled() -> None:
    market = Market(hog(timetable=TIMETABLE))
    market.session(Session.PRE_OPEN)
    market.order(BUYER, BUY, 1)
    market.session(Session.CLOSED)
    assert market.core.orders[1].cancel_reason == "NO_LIQUIDITY"
    assert market.core.accounts.balance(BUYER, CASH).reserved == 0


@pytest.mark.parametrize(
    ("start", "target"),
    [
        (Session.CLOSED, Session.CLOSING),
        (Session.CLOSED, Session.AUCTION),
        (Session.CONTINUOUS, Session.PRE_OPEN),
        (Session.CONTINUOUS, Session.AUCTION),
        (Session.CONTINUOUS, Session.CONTINUOUS),
    ],
)
def test_a_session_change_out_of_the_daily_cycle_is_refused(
    start: Session, target: Session
) -> None:
    market = Market(hog(timetable=TIMETABLE) if start is Session.CLOSED else hog())
    assert market.phase() is start
    assert rejected(market.session(target)) == "INVALID_SESSION_TRANSITION"
    assert market.phase() is start


def test_a_halted_market_does_not_uncross_its_orders_wait_for_the_resume() -> None:
    market = Market(hog(timetable=TIMETABLE))
    market.session(Session.PRE_OPEN)
    market.order(FARM, SELL, 1, 61_000)
    market.order(BUYER, BUY, 1, 61_000)
    market.do(c.HaltMarket(HOG, "inspection"))
    for step in (Session.AUCTION, Session.CONTINUOUS):
        assert rejected(market.session(step)) == "MARKET_HALTED"
    assert market.phase() is Session.PRE_OPEN
    assert market.core.markets[HOG].book.open_order_count() == 2
    market.do(c.ResumeMarket(HOG))
    assert traded(market.session(Session.AUCTION)) == [(61_000, 1)]
    assert market.phase() is Session.CONTINUOUS


def test_a_halted_market_in_a_call_may_still_close_for_the_day() -> None:
    market = Market(hog(timetable=TIMETABLE))
    market.session(Session.PRE_OPEN)
    market.order(TRADER, BUY, 1)  # a market order waiting for the auction
    market.do(c.HaltMarket(HOG, "inspection"))
    events = market.session(Session.CLOSED)
    assert traded(events) == [] and market.phase() is Session.CLOSED
    assert market.core.orders[[*market.core.orders][-1]].cancel_reason == "NO_LIQUIDITY"


def test_a_market_halted_in_its_closing_call_closes_without_the_closing_auction() -> None:
    market = Market(hog())
    assert traded(market.order(FARM, SELL, 1, 60_000) + market.order(BUYER, BUY, 1, 60_000))
    market.session(Session.CLOSING)
    market.order(FARM, SELL, 1, 59_000)
    market.order(BUYER, BUY, 1, 61_000)  # crossed, waiting for the closing auction
    market.do(c.HaltMarket(HOG, "inspection"))
    events = market.session(Session.CLOSED)  # the close, as the scheduler sends it
    assert traded(events) == [] and market.phase() is Session.CLOSED
    assert len(market.core.settlements[HOG]) == 1
    assert market.core.markets[HOG].book.open_order_count() == 2  # GTC: they wait for a resume


def test_orders_left_crossed_by_a_pre_open_that_closed_uncross_before_continuous_trading() -> None:
    market = Market(hog(timetable=TIMETABLE))
    market.session(Session.PRE_OPEN)
    market.order(FARM, SELL, 1, 59_000)
    market.order(BUYER, BUY, 1, 61_000)
    market.session(Session.CLOSED)  # no auction: the two orders are left crossed
    events = market.session(Session.CONTINUOUS)
    assert traded(events) == [(60_000, 1)]  # the uncross, at the reference price
    book = market.core.markets[HOG].book
    assert book.best_bid() is None and book.best_ask() is None


def test_the_timetable_gives_the_phase_in_vietnam_time_on_trading_days() -> None:
    weekdays = Timetable("08:45", "09:00", "14:30", "14:45", weekdays=[0, 1, 2, 3, 4])
    assert phase_at(weekdays, at("08:44")) is Session.CLOSED
    assert phase_at(weekdays, at("08:45")) is Session.PRE_OPEN
    assert phase_at(weekdays, at("09:00")) is Session.CONTINUOUS
    assert phase_at(weekdays, at("14:30")) is Session.CLOSING
    assert phase_at(weekdays, at("14:45")) is Session.CLOSED
    assert phase_at(weekdays, at("10:00", day=5)) is Session.CLOSED  # Saturday


def test_the_scheduler_walks_a_market_through_its_day_one_step_at_a_time() -> None:
    market = Market(hog(timetable=TIMETABLE), now=at("08:50"))
    steps = []
    for clock in ("08:50", "08:50", "09:00", "09:00", "14:31", "14:46", "14:46"):
        market.now = at(clock)
        for command in due_commands(market.core, market.now):
            market.do(command)
        steps.append(market.phase().value)
    assert steps == [
        "pre_open", "pre_open", "continuous", "continuous", "closing", "closed", "closed",
    ]  # fmt: skip
    assert len(market.core.settlements[HOG]) == 1


def test_the_scheduler_leaves_a_halted_market_waiting_but_still_closes_it() -> None:
    market = Market(hog(timetable=TIMETABLE), now=at("08:50"))
    for command in due_commands(market.core, market.now):
        market.do(command)
    market.do(c.HaltMarket(HOG, "inspection"))
    assert due_commands(market.core, at("09:05")) == []  # no auction while halted
    assert due_commands(market.core, at("14:50")) == [c.AdvanceSession(HOG, Session.CLOSED)]
    market.now = at("14:50")
    market.do(c.AdvanceSession(HOG, Session.CLOSED))
    assert market.phase() is Session.CLOSED
    assert due_commands(market.core, at("15:00")) == []


# ---------------------------------------------------------------------- bands


def test_the_default_band_is_seven_percent_around_the_reference() -> None:
    rules = Market(hog()).core.markets[HOG].book.rules
    assert (rules.price_band_pct, rules.band_low, rules.band_high) == (7, 55_800, 64_200)


def test_a_limit_price_outside_the_band_is_refused() -> None:
    market = Market(hog())
    assert rejected(market.order(BUYER, BUY, 1, 64_300)) == "PRICE_OUT_OF_BAND"
    assert rejected(market.order(FARM, SELL, 1, 55_700)) == "PRICE_OUT_OF_BAND"


def test_a_market_order_stops_at_the_band() -> None:
    market = Market(hog())
    market.order(FARM, SELL, 1, 64_200)
    trade_at(market, 58_000, 1)
    market.do(c.PublishSettlement(HOG))  # reference 58,000: band 54,000-62,000
    # The sell at 64,200 still rests, but above the band: a market buy stops short of it.
    events = market.order(BUYER, BUY, 1)
    assert traded(events) == []
    assert market.core.orders[4].cancel_reason == "NO_LIQUIDITY"


# ---------------------------------------------------------------------- circuit breaker


def breaker_market() -> Market:
    market = Market(hog(circuit_breaker=BREAKER))
    market.order(FARM, SELL, 1, 60_000)
    market.order(BUYER, BUY, 1, 60_000)
    return market


def test_a_fast_move_halts_continuous_trading_for_a_reopening_call() -> None:
    market = breaker_market()
    market.now += 30 * NS
    market.order(FARM, SELL, 1, 61_900)
    events = market.order(BUYER, BUY, 1, 61_900)  # 3.17% above 60,000 within 30 s
    assert traded(events) == [(61_900, 1)]
    tripped = of(CircuitBreakerTripped, events)
    assert tripped == [CircuitBreakerTripped(HOG, 60_000, 61_900, 3, 60, market.now + 120 * NS)]
    assert market.phase() is Session.PRE_OPEN
    assert traded(market.order(COOP, SELL, 1, 61_000)) == []  # the call collects, no trade


def test_a_move_within_the_threshold_does_not_trip() -> None:
    market = breaker_market()
    market.now += 30 * NS
    market.order(FARM, SELL, 1, 61_800)
    events = market.order(BUYER, BUY, 1, 61_800)  # 3.0%: not more than 3%
    assert not of(CircuitBreakerTripped, events) and market.phase() is Session.CONTINUOUS


def test_a_move_slower_than_the_window_does_not_trip() -> None:
    market = breaker_market()
    market.now += 61 * NS
    market.order(FARM, SELL, 1, 62_500)
    events = market.order(BUYER, BUY, 1, 62_500)
    assert not of(CircuitBreakerTripped, events)


def test_after_the_cool_off_the_market_reopens_through_the_call_auction() -> None:
    market = breaker_market()
    market.order(FARM, SELL, 1, 62_000)
    market.order(BUYER, BUY, 1, 62_000)
    reopen_at = market.core.markets[HOG].session.reopen_at_ns
    market.order(COOP, SELL, 2, 61_000)
    market.order(TRADER, BUY, 2, 61_500)
    assert due_commands(market.core, reopen_at - 1) == []
    due = due_commands(market.core, reopen_at)
    assert due == [c.AdvanceSession(HOG, Session.AUCTION)]
    market.now = reopen_at
    events = market.do(due[0])
    assert traded(events) == [(61_000, 2)]
    assert market.phase() is Session.CONTINUOUS


def test_trades_before_a_reopening_do_not_trip_the_breaker_again() -> None:
    market = breaker_market()
    market.order(FARM, SELL, 1, 62_000)
    market.order(BUYER, BUY, 1, 62_000)
    market.now = market.core.markets[HOG].session.reopen_at_ns
    market.session(Session.AUCTION)
    market.order(FARM, SELL, 1, 62_100)
    events = market.order(BUYER, BUY, 1, 62_100)  # 60,000 was before the reopening
    assert not of(CircuitBreakerTripped, events) and market.phase() is Session.CONTINUOUS


def test_a_market_reopened_early_watches_for_the_next_fast_move_at_once() -> None:
    market = breaker_market()
    market.order(FARM, SELL, 1, 62_000)
    market.order(BUYER, BUY, 1, 62_000)  # trips; the cool-off would end 120 s later
    market.now += 10 * NS
    market.session(Session.AUCTION)  # the operator reopens after 10 s
    assert market.phase() is Session.CONTINUOUS
    market.order(FARM, SELL, 1, 62_000)
    market.order(BUYER, BUY, 1, 62_000)
    market.now += 5 * NS
    market.order(FARM, SELL, 1, 64_000)
    events = market.order(BUYER, BUY, 1, 64_000)  # +3.2% within 5 s of the reopening
    assert of(CircuitBreakerTripped, events) and market.phase() is Session.PRE_OPEN


# ---------------------------------------------------------------------- settlement prices


def trade_at(market: Market, price: int, lots: int) -> None:
    market.order(FARM, SELL, lots, price)
    assert traded(market.order(BUYER, BUY, lots, price)) == [(price, lots)]


def test_the_settlement_price_is_the_vwap_of_the_final_minutes() -> None:
    market = Market(hog())
    market.now = at("14:00")
    trade_at(market, 63_000, 5)  # long before the window: not in it
    market.now = at("14:41")
    trade_at(market, 60_000, 1)
    trade_at(market, 61_000, 3)
    market.now = at("14:45")
    events = market.do(c.PublishSettlement(HOG))
    settled = of(SettlementPublished, events)[0].settlement  # type: ignore[attr-defined]
    assert (settled.price, settled.method, settled.volume) == (60_800, SettlementMethod.VWAP, 4)
    assert settled.trading_day == "2026-11-23"


def test_the_vwap_is_rounded_to_the_nearest_tick() -> None:
    market = Market(hog())
    trade_at(market, 60_000, 2)
    trade_at(market, 60_100, 1)  # 60,033.3 -> 60,000
    settled = of(SettlementPublished, market.do(c.PublishSettlement(HOG)))[0]
    assert settled.settlement.price == 60_000  # type: ignore[attr-defined]


def test_without_trades_in_the_window_the_last_trade_settles() -> None:
    market = Market(hog())
    trade_at(market, 61_000, 1)
    market.now += 301 * NS
    settled = of(SettlementPublished, market.do(c.PublishSettlement(HOG)))[0].settlement  # type: ignore[attr-defined]
    assert (settled.price, settled.method) == (61_000, SettlementMethod.LAST_TRADE)


def test_without_a_trade_all_day_the_reference_settles() -> None:
    market = Market(hog())
    settled = of(SettlementPublished, market.do(c.PublishSettlement(HOG)))[0].settlement  # type: ignore[attr-defined]
    assert (settled.price, settled.method) == (60_000, SettlementMethod.REFERENCE)


def test_the_settlement_price_is_the_next_reference_and_moves_the_band() -> None:
    market = Market(hog())
    trade_at(market, 62_000, 1)
    events = market.session(Session.CLOSED)
    assert of(ReferencePriceChanged, events) == [ReferencePriceChanged(HOG, 62_000, 57_700, 66_300)]
    market.now = at("09:00", day=1)
    market.session(Session.CONTINUOUS)
    assert rejected(market.order(BUYER, BUY, 1, 66_300)) is None
    assert rejected(market.order(BUYER, BUY, 1, 66_400)) == "PRICE_OUT_OF_BAND"


def test_a_day_settles_once() -> None:
    market = Market(hog())
    market.do(c.PublishSettlement(HOG))
    assert rejected(market.do(c.PublishSettlement(HOG))) == "SETTLEMENT_ALREADY_PUBLISHED"


def test_no_settlement_during_a_call_the_auction_would_price_past_what_buyers_hold() -> None:
    market = Market(hog())
    trade_at(market, 60_000, 1)
    market.session(Session.CLOSING)
    assert rejected(market.order(BUYER, BUY, 2)) is None  # a market buy, held at the band top
    assert rejected(market.do(c.PublishSettlement(HOG))) == "SETTLEMENT_DURING_CALL"
    assert rejected(market.order(FARM, SELL, 2, 64_200)) is None
    events = market.session(Session.AUCTION)  # uncrosses, closes and settles: nothing raises
    assert traded(events) == [(64_200, 2)]
    assert market.phase() is Session.CLOSED


def test_a_close_caught_up_the_next_morning_settles_the_day_it_closes() -> None:
    market = Market(hog(timetable=TIMETABLE), now=at("08:50"))
    market.session(Session.PRE_OPEN)
    market.now = at("09:00")
    market.session(Session.AUCTION)
    trade_at(market, 60_500, 1)
    market.now = at("08:50", day=1)  # the exchange was down over Monday's close
    market.session(Session.CLOSED)
    market.session(Session.PRE_OPEN)
    market.now = at("09:00", day=1)
    market.session(Session.AUCTION)
    trade_at(market, 61_000, 1)
    market.now = at("14:46", day=1)
    market.session(Session.CLOSING)
    market.session(Session.AUCTION)
    history = market.core.settlements[HOG]
    assert [(s.trading_day, s.price) for s in history] == [
        ("2026-11-23", 60_500),
        ("2026-11-24", 61_000),
    ]


def test_settlement_prices_are_kept_day_after_day() -> None:
    market = Market(hog())
    for day, price in enumerate((60_500, 61_000)):
        market.now = at("10:00", day)
        trade_at(market, price, 1)
        market.do(c.PublishSettlement(HOG))
    history = market.core.settlements[HOG]
    assert [(s.trading_day, s.price) for s in history] == [
        ("2026-11-23", 60_500),
        ("2026-11-24", 61_000),
    ]


# ---------------------------------------------------------------------- certificate expiry


def expiring_market() -> tuple[Market, int]:
    market = Market(tea(certification_date="2023-11-25"))  # expires 2026-11-25
    return market, vietnam_midnight_ns(date(2026, 11, 25))


def test_from_expiry_new_orders_get_certificate_expired() -> None:
    market, expiry = expiring_market()
    market.now = expiry - 1
    assert rejected(market.order(BUYER, BUY, 1, 450_000, symbol=TEA)) is None
    market.now = expiry
    code = rejected(market.order(BUYER, BUY, 1, 450_000, symbol=TEA))
    assert code == "CERTIFICATE_EXPIRED"


def test_from_expiry_amends_get_certificate_expired_too() -> None:
    market, expiry = expiring_market()
    market.now = expiry - 1
    [accepted] = [e for e in market.order(BUYER, BUY, 1, 450_000, symbol=TEA)
                  if isinstance(e, OrderAccepted)]  # fmt: skip
    market.now = expiry  # before the scheduler's halt lands
    amend = c.AmendOrder(BUYER, accepted.order_id, price=451_000)
    assert rejected(market.do(amend)) == "CERTIFICATE_EXPIRED"


def test_at_expiry_the_market_halts_itself_and_takes_only_cancels() -> None:
    market, expiry = expiring_market()
    market.order(BUYER, BUY, 1, 450_000, symbol=TEA)
    assert due_commands(market.core, expiry - 1) == []
    market.now = expiry
    [command] = due_commands(market.core, expiry)
    events = market.do(command)
    assert of(CertificateExpired, events) == [CertificateExpired(TEA, "2026-11-25")]
    assert of(MarketHalted, events)
    assert due_commands(market.core, expiry + NS) == []
    assert rejected(market.do(c.CancelOrder(BUYER, 1))) is None


def test_a_market_whose_certificate_expired_cannot_resume() -> None:
    market, expiry = expiring_market()
    market.now = expiry
    market.do(c.ExpireCertificate(TEA))
    assert rejected(market.do(c.ResumeMarket(TEA))) == "CERTIFICATE_EXPIRED"


def test_a_valid_certificate_cannot_be_expired() -> None:
    market, _ = expiring_market()
    assert rejected(market.do(c.ExpireCertificate(TEA))) == "CERTIFICATE_NOT_EXPIRED"


# ---------------------------------------------------------------------- physical delivery


def delivery(
    lots: int = 2,
    *,
    owner: int = FARM,
    heads: int = 18,
    weight: int = 112,
    farm: str = "DN-TB-0137",
    certificate: str = "VietGAP-CN-1182",
    symbol: str = HOG,
) -> c.DeliverGoods:
    return c.DeliverGoods(owner, symbol, lots, heads, weight, farm, certificate, at("07:30"))


def test_a_delivery_in_issues_a_receipt_and_credits_the_owner() -> None:
    market = Market(hog())
    events = market.do(delivery())
    [delivered] = of(GoodsDelivered, events)
    receipt = delivered.receipt  # type: ignore[attr-defined]
    assert (receipt.receipt_id, receipt.lots, receipt.farm_code) == (1, 2, "DN-TB-0137")
    assert delivered.available == 102  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("command", "code"),
    [
        (delivery(farm=""), "TRACEABILITY_REQUIRED"),
        (delivery(certificate=" "), "TRACEABILITY_REQUIRED"),
        (delivery(weight=130), "WEIGHT_OUT_OF_BAND"),
        (delivery(lots=3, heads=18, weight=112), "DELIVERY_SHORT_WEIGHT"),
        (delivery(heads=0), "INVALID_REQUEST"),
        (delivery(owner=99), "UNKNOWN_PARTICIPANT"),
        (delivery(symbol="HOG-NONE"), "UNKNOWN_ASSET"),
        (delivery(lots=0), "INVALID_AMOUNT"),
    ],
    ids=["farm code", "certificate", "weight band", "short weight", "heads", "owner", "symbol",
         "lots"],
)  # fmt: skip
def test_a_delivery_that_breaks_a_rule_is_refused_and_changes_nothing(
    command: c.DeliverGoods, code: str
) -> None:
    market = Market(hog())
    before = msgspec.structs.replace(market.core.state(), last_sequence=0, last_time_ns=0)
    assert rejected(market.do(command)) == code
    after = msgspec.structs.replace(market.core.state(), last_sequence=0, last_time_ns=0)
    assert after == before


def test_live_hog_traceability_can_be_waived_by_the_listing() -> None:
    attributes = {**hog().attributes, "vietgap_required": False, "farm_code_required": False}
    market = Market(hog(attributes=attributes))
    assert rejected(market.do(delivery(farm="", certificate=""))) is None


def test_an_ocop_delivery_carries_the_listed_certificate() -> None:
    market = Market(tea())
    wrong = delivery(heads=0, weight=0, certificate="OCOP-XX-1", symbol=TEA)
    assert rejected(market.do(wrong)) == "CERTIFICATE_MISMATCH"
    events = market.do(delivery(heads=0, weight=0, certificate="", symbol=TEA))
    receipt = of(GoodsDelivered, events)[0].receipt  # type: ignore[attr-defined]
    assert receipt.certificate == ocop_attributes()["certificate_number"]


def test_a_delivery_out_debits_the_owner_oldest_receipts_first() -> None:
    market = Market(hog())
    market.do(c.Withdraw(FARM, HOG, 100))  # only receipted lots left
    market.do(delivery(2, farm="FARM-A"))
    market.do(delivery(3, heads=30, farm="FARM-B"))
    events = market.do(c.ReleaseGoods(FARM, HOG, 4, "Vissan"))
    [released] = of(GoodsReleased, events)
    assert released.release.sources == [(1, 2), (2, 2)]  # type: ignore[attr-defined]
    assert released.available == 1  # type: ignore[attr-defined]


def test_a_delivery_out_cannot_take_lots_held_for_a_sell_order() -> None:
    market = Market(hog())
    market.order(FARM, SELL, 100, 61_000)
    assert rejected(market.do(c.ReleaseGoods(FARM, HOG, 1))) == "INSUFFICIENT_FUNDS"


def test_a_trade_takes_the_sellers_oldest_receipts_and_the_buyer_can_trace_them() -> None:
    market = Market(hog())
    market.do(c.Withdraw(COOP, HOG, 100))
    market.do(delivery(2, owner=COOP, farm="FARM-A"))
    market.do(delivery(3, owner=COOP, heads=30, farm="FARM-B"))
    market.order(COOP, SELL, 3, 60_000)
    trade = of(Trade, market.order(BUYER, BUY, 3, 60_000))[0]
    assert market.core.lineage.trade_lots[trade.trade_id] == [(1, 2), (2, 1)]  # type: ignore[attr-defined]
    # The buyer now holds those lots, and sells them on in the same order.
    market.order(BUYER, SELL, 1, 60_000)
    onward = of(Trade, market.order(TRADER, BUY, 1, 60_000))[0]
    assert market.core.lineage.trade_lots[onward.trade_id] == [(1, 1)]  # type: ignore[attr-defined]


def test_trades_of_untraced_lots_keep_no_lineage() -> None:
    market = Market(hog())
    trade_at(market, 60_000, 1)
    assert market.core.lineage.trade_lots == {}


def test_deliveries_in_and_out_are_ledger_transfers_like_deposits_and_withdrawals() -> None:
    market = Market(hog())
    delivered = market.do(delivery())
    released = market.do(c.ReleaseGoods(FARM, HOG, 1, "Vissan"))
    [posting_in] = entry_of(1, 1, delivered).postings
    [posting_out] = entry_of(2, 2, released).postings
    assert (posting_in.code.value, posting_in.amount, posting_in.credit_participant_id) == (
        "delivery_in", 2, FARM
    )  # fmt: skip
    assert (posting_out.code.value, posting_out.amount, posting_out.debit_participant_id) == (
        "delivery_out", 1, FARM
    )  # fmt: skip


# ---------------------------------------------------------------------- determinism


def test_a_whole_day_replays_to_the_same_digest_and_survives_a_snapshot() -> None:
    market = Market(hog(timetable=TIMETABLE, circuit_breaker=BREAKER), now=at("08:45"))
    market.do(delivery(2, farm="FARM-A"))
    market.session(Session.PRE_OPEN)
    market.order(FARM, SELL, 2, 59_000)
    market.order(BUYER, BUY, 3, 61_000, tif=TimeInForce.DAY)
    market.now = at("09:00")
    market.session(Session.AUCTION)
    market.order(COOP, SELL, 1, 62_000)
    market.order(TRADER, BUY, 1, 62_000)  # trips the breaker
    market.now = at("14:45")
    market.session(Session.CLOSED)
    replayed = ExchangeCore()
    for sequence, (command, time_ns) in enumerate(market.journal, start=1):
        replayed.apply(command, sequence, time_ns)
    assert replayed.digest() == market.core.digest()
    restored = ExchangeCore.from_state(
        msgspec.msgpack.decode(
            msgspec.msgpack.encode(market.core.state()), type=type(market.core.state())
        )
    )
    assert restored.digest() == market.core.digest()
    restored.check_invariants()


ACTIONS = st.lists(
    st.one_of(
        st.tuples(
            st.sampled_from(["buy", "sell"]),
            st.sampled_from([FARM, COOP, BUYER, TRADER]),
            st.integers(1, 6),
            st.one_of(st.none(), st.integers(-30, 30)),
            st.sampled_from(list(TimeInForce)),
            st.booleans(),
        ),
        st.tuples(
            st.just("session"),
            st.sampled_from(list(Session)),
            st.integers(0, 0),
            st.none(),
            st.just(TimeInForce.GTC),
            st.booleans(),
        ),
        st.tuples(
            st.sampled_from(["cancel", "amend", "deliver", "release", "settle", "wait"]),
            st.sampled_from([FARM, COOP, BUYER, TRADER]),
            st.integers(1, 40),
            st.one_of(st.none(), st.integers(-30, 30)),
            st.just(TimeInForce.GTC),
            st.booleans(),
        ),
    ),
    max_size=60,
)


@settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck))
@given(actions=ACTIONS)
def test_random_sessions_auctions_and_deliveries_keep_every_invariant_and_replay(
    actions: list[tuple[Any, ...]],
) -> None:
    market = Market(hog(timetable=TIMETABLE, circuit_breaker=BREAKER), now=at("08:45"))
    for action, who, size, ticks, tif, flag in actions:
        price = None if ticks is None else 60_000 + ticks * 100
        if action in ("buy", "sell"):
            side = BUY if action == "buy" else SELL
            market.do(c.PlaceOrder(who, HOG, side, OrderType.LIMIT if price else OrderType.MARKET,
                                   price, size, tif, all_or_none=flag))  # fmt: skip
        elif action == "session":
            market.session(who)
        elif action == "cancel":
            market.do(c.CancelOrder(who, size))
        elif action == "amend":
            market.do(c.AmendOrder(who, size, price=price, quantity=size if flag else None))
        elif action == "deliver":
            market.do(delivery(size % 3 + 1, owner=who, heads=40, farm=f"FARM-{size}"))
        elif action == "release":
            market.do(c.ReleaseGoods(who, HOG, size % 5 + 1))
        elif action == "settle":
            market.do(c.PublishSettlement(HOG))
        else:
            market.now += size * 20 * NS
    replayed = ExchangeCore()
    for sequence, (command, time_ns) in enumerate(market.journal, start=1):
        replayed.apply(command, sequence, time_ns)
    assert replayed.digest() == market.core.digest()
    book = market.core.markets[HOG].book
    if market.phase() is Session.CONTINUOUS and not any(
        o.all_or_none for side in (BUY, SELL) for o in book.resting_orders(side)
    ):  # only all-or-none orders may rest across the spread in continuous trading
        bid, ask = book.best_bid(), book.best_ask()
        assert bid is None or ask is None or bid < ask
