"""Custody and pre-trade risk, one rule per test: every order is backed, every trade settles.

Market used throughout: HOG-G1, lot 1,000 kg, tick 100 VND, reference 60,000 VND/kg, band 7%,
taker fee 5 bps, maker fee 2 bps. FARMER (1) sells hogs, TRADER (2) buys, OTHER (3) trades too.
"""

from __future__ import annotations

import hashlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from clearing.accounts import CASH, FEE_ACCOUNT
from exchange import commands as c
from exchange.core import ExchangeCore
from exchange.events import (
    CommandRejected,
    DuplicateClientOrderId,
    Event,
    FundsHeld,
    FundsReleased,
    OrderRejected,
    Settlement,
)
from exchange.instruments import Instrument, InstrumentKind
from exchange.participants import Role
from matching_engine import OrderType, Side, TimeInForce

FARMER, TRADER, OTHER, WATCHER = 1, 2, 3, 4
SYMBOL = "HOG-G1"
LOT_KG = 1_000
HOG = Instrument(
    SYMBOL, "Heo hơi loại 1", InstrumentKind.LIVE_HOG, LOT_KG, 100, 60_000,
    maker_fee_bps=2, taker_fee_bps=5,
)  # fmt: skip


class Market:
    def __init__(self) -> None:
        self.core = ExchangeCore()
        self.sequence = 0
        for name, role in (
            ("farmer", Role.TRADER),
            ("trader", Role.TRADER),
            ("other", Role.TRADER),
            ("watcher", Role.MONITOR),
        ):
            self.do(c.RegisterParticipant(name, role, hashlib.sha256(name.encode()).hexdigest()))
        self.do(c.ListInstrument(HOG))

    def do(self, command: c.Command) -> list[Event]:
        self.sequence += 1
        events = self.core.apply(command, self.sequence, self.sequence * 1_000)
        self.core.check_invariants()
        return events

    def order(
        self,
        participant: int,
        side: Side,
        quantity: int,
        price: int | None = None,
        tif: TimeInForce = TimeInForce.GTC,
        client_order_id: str | None = None,
    ) -> list[Event]:
        order_type = OrderType.LIMIT if price is not None else OrderType.MARKET
        return self.do(
            c.PlaceOrder(
                participant, SYMBOL, side, order_type, price, quantity, tif,
                client_order_id=client_order_id,
            )
        )  # fmt: skip

    def balance(self, participant: int, asset: str) -> tuple[int, int]:
        b = self.core.accounts.balance(participant, asset)
        return b.available, b.reserved


def rejection_code(events: list[Event]) -> str:
    assert len(events) == 1, events
    event = events[0]
    assert isinstance(event, CommandRejected | OrderRejected), event
    return str(event.code)


def notional(price: int, lots: int) -> int:
    return price * lots * LOT_KG


@pytest.fixture
def market() -> Market:
    m = Market()
    m.do(c.Deposit(FARMER, SYMBOL, 10))
    m.do(c.Deposit(TRADER, CASH, 2_000_000_000))
    return m


def test_a_buy_holds_price_times_quantity_times_lot_plus_the_largest_fee(market: Market) -> None:
    events = market.order(TRADER, Side.BUY, 5, 59_000)
    held = notional(59_000, 5) + notional(59_000, 5) * 5 // 10_000
    assert FundsHeld(1, TRADER, CASH, held) in events
    assert market.balance(TRADER, CASH) == (2_000_000_000 - held, held)


def test_a_market_buy_holds_at_the_top_of_the_price_band(market: Market) -> None:
    market.order(FARMER, Side.SELL, 1, 60_000)
    events = market.order(TRADER, Side.BUY, 1)
    band_top = 64_200
    held = notional(band_top, 1) + notional(band_top, 1) * 5 // 10_000
    assert FundsHeld(2, TRADER, CASH, held) in events


def test_a_sell_holds_the_goods(market: Market) -> None:
    market.order(FARMER, Side.SELL, 4, 61_000)
    assert market.balance(FARMER, SYMBOL) == (6, 4)


def test_an_order_the_participant_cannot_pay_for_is_rejected_and_holds_nothing(
    market: Market,
) -> None:
    assert rejection_code(market.order(TRADER, Side.BUY, 40, 60_000)) == "INSUFFICIENT_FUNDS"
    assert rejection_code(market.order(FARMER, Side.SELL, 11, 60_000)) == "INSUFFICIENT_FUNDS"
    assert market.core.orders == {}
    assert market.balance(TRADER, CASH) == (2_000_000_000, 0)
    assert market.balance(FARMER, SYMBOL) == (10, 0)


def test_a_refusal_leaves_the_accounts_as_they_were_not_even_an_empty_balance_appears(
    market: Market,
) -> None:
    accounts = market.core.accounts.state()
    # OTHER has never held cash or hogs.
    assert rejection_code(market.order(OTHER, Side.BUY, 1, 60_000)) == "INSUFFICIENT_FUNDS"
    assert rejection_code(market.order(OTHER, Side.SELL, 1, 60_000)) == "INSUFFICIENT_FUNDS"
    assert rejection_code(market.do(c.Withdraw(OTHER, CASH, 1))) == "INSUFFICIENT_FUNDS"
    assert market.core.accounts.balances_of(OTHER) == []
    assert market.core.accounts.state() == accounts


def test_a_bad_price_is_reported_before_missing_funds(market: Market) -> None:
    assert rejection_code(market.order(TRADER, Side.BUY, 40, 60_050)) == "TICK_SIZE"


def test_a_trade_settles_delivery_versus_payment_at_once_with_fees(market: Market) -> None:
    market.order(FARMER, Side.SELL, 4, 60_000)  # maker
    events = market.order(TRADER, Side.BUY, 4, 60_200)  # taker, at the maker's price
    value = notional(60_000, 4)
    buyer_fee, seller_fee = value * 5 // 10_000, value * 2 // 10_000
    settlement = next(e for e in events if isinstance(e, Settlement))
    assert (settlement.notional_vnd, settlement.buyer_fee_vnd, settlement.seller_fee_vnd) == (
        value,
        buyer_fee,
        seller_fee,
    )
    assert market.balance(TRADER, SYMBOL) == (4, 0)
    assert market.balance(TRADER, CASH) == (2_000_000_000 - value - buyer_fee, 0)
    assert market.balance(FARMER, CASH) == (value - seller_fee, 0)
    assert market.balance(FARMER, SYMBOL) == (6, 0)
    assert market.balance(FEE_ACCOUNT, CASH) == (buyer_fee + seller_fee, 0)


def test_a_partial_fill_releases_what_the_better_price_saved_and_keeps_the_rest_held(
    market: Market,
) -> None:
    market.order(FARMER, Side.SELL, 2, 60_000)
    market.order(TRADER, Side.BUY, 5, 60_500)
    still_held = notional(60_500, 3) + notional(60_500, 3) * 5 // 10_000
    assert market.balance(TRADER, CASH)[1] == still_held


def test_cancel_releases_the_hold(market: Market) -> None:
    market.order(TRADER, Side.BUY, 5, 59_000)
    events = market.do(c.CancelOrder(TRADER, 1))
    assert any(isinstance(e, FundsReleased) for e in events)
    assert market.balance(TRADER, CASH) == (2_000_000_000, 0)


def test_an_ioc_remainder_releases_its_hold(market: Market) -> None:
    market.order(FARMER, Side.SELL, 1, 60_000)
    market.order(TRADER, Side.BUY, 5, 60_000, tif=TimeInForce.IOC)
    assert market.balance(TRADER, CASH)[1] == 0
    assert market.balance(TRADER, SYMBOL) == (1, 0)


def test_day_orders_expire_and_release(market: Market) -> None:
    market.order(TRADER, Side.BUY, 5, 59_000, tif=TimeInForce.DAY)
    market.do(c.ExpireDayOrders(SYMBOL))
    assert market.balance(TRADER, CASH) == (2_000_000_000, 0)
    assert market.core.orders[1].status == "expired"


def test_amending_up_holds_more_and_is_refused_when_funds_are_short(market: Market) -> None:
    market.order(TRADER, Side.BUY, 5, 59_000)
    events = market.do(c.AmendOrder(TRADER, 1, quantity=20))
    assert any(isinstance(e, FundsHeld) for e in events)
    assert rejection_code(market.do(c.AmendOrder(TRADER, 1, quantity=40))) == "INSUFFICIENT_FUNDS"
    assert market.core.orders[1].quantity == 20


def test_a_withdrawal_never_dips_into_reserved_funds(market: Market) -> None:
    market.order(TRADER, Side.BUY, 30, 60_000)
    available, _ = market.balance(TRADER, CASH)
    assert rejection_code(market.do(c.Withdraw(TRADER, CASH, available + 1))) == (
        "INSUFFICIENT_FUNDS"
    )
    market.do(c.Withdraw(TRADER, CASH, available))
    assert market.balance(TRADER, CASH)[0] == 0


def test_the_same_client_order_id_returns_the_original_order(market: Market) -> None:
    market.order(TRADER, Side.BUY, 5, 59_000, client_order_id="abc-1")
    events = market.order(TRADER, Side.BUY, 7, 58_000, client_order_id="abc-1")
    assert events == [DuplicateClientOrderId(1, TRADER, "abc-1")]
    assert len(market.core.orders) == 1


def test_only_traders_place_orders(market: Market) -> None:
    assert rejection_code(market.order(WATCHER, Side.BUY, 1, 59_000)) == "FORBIDDEN"


def test_a_halted_market_accepts_cancels_only(market: Market) -> None:
    market.order(TRADER, Side.BUY, 5, 59_000)
    market.do(c.HaltMarket(SYMBOL, "cool-off"))
    assert rejection_code(market.order(TRADER, Side.BUY, 1, 59_000)) == "MARKET_HALTED"
    assert rejection_code(market.do(c.AmendOrder(TRADER, 1, quantity=2))) == "MARKET_HALTED"
    market.do(c.CancelOrder(TRADER, 1))
    market.do(c.ResumeMarket(SYMBOL))
    assert market.order(TRADER, Side.BUY, 1, 59_000)[0].__class__.__name__ == "OrderRegistered"


def test_another_participants_order_cannot_be_cancelled(market: Market) -> None:
    market.order(TRADER, Side.BUY, 5, 59_000)
    assert rejection_code(market.do(c.CancelOrder(FARMER, 1))) == "ORDER_NOT_FOUND"


@settings(max_examples=60, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.sampled_from(["buy", "sell", "cancel", "amend", "deposit", "withdraw"]),
            st.sampled_from([FARMER, TRADER, OTHER]),
            st.integers(1, 12),
            st.integers(-8, 8),
            st.sampled_from(list(TimeInForce)),
            st.booleans(),
        ),
        max_size=60,
    )
)
def test_random_activity_never_breaks_conservation_or_goes_negative(
    actions: list[tuple[str, int, int, int, TimeInForce, bool]],
) -> None:
    m = Market()
    for participant in (FARMER, TRADER, OTHER):
        m.do(c.Deposit(participant, CASH, 1_500_000_000))
        m.do(c.Deposit(participant, SYMBOL, 15))
    for action, participant, size, ticks, tif, market_order in actions:
        price = None if market_order else 60_000 + ticks * 100
        if action in ("buy", "sell"):
            side = Side.BUY if action == "buy" else Side.SELL
            m.order(participant, side, size, price, tif)  # do() checks the invariants
        elif action == "cancel":
            m.do(c.CancelOrder(participant, size))
        elif action == "amend":
            m.do(c.AmendOrder(participant, size, price=price, quantity=size + ticks))
        elif action == "deposit":
            m.do(c.Deposit(participant, CASH, size * 10_000_000))
        else:
            m.do(c.Withdraw(participant, SYMBOL, size))
