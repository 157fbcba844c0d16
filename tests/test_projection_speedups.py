"""The projections' shortcuts change nothing: a projection restored from a snapshot anywhere in
the stream ends exactly where one fed everything did, and what a shortcut skips working out is
what the plain rule would have found.

Market data skips finding a trade's candle buckets while trades stay in the current ones; the
audit trail files each step straight into its order's history; surveillance looks for an owner's
crossing orders in a plain loop over them.
"""

from __future__ import annotations

import itertools
import time
from typing import Any

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from benchmarks.core import command_stream
from exchange.audit import AuditState, AuditTrail
from exchange.commands import CancelOrder
from exchange.core import ExchangeCore
from exchange.events import Event, OrderAccepted, OrderAmended, OrderCancelled, Trade
from exchange.marketdata import INTERVALS_NS, MarketData, MarketDataState, bucket_start_ns
from exchange.surveillance import (
    MAX_LINKED,
    SELF_TRADE_ATTEMPT,
    WASH_TRADE,
    Surveillance,
    SurveillanceState,
)
from exchange.surveillance_config import SurveillanceConfig
from matching_engine import OrderType, Side, TimeInForce
from matching_engine.enums import CancelReason

Record = tuple[int, int, Any, list[Event]]  # sequence, time_ns, command, events

SYMBOL = "HOG-TEST"
# The start of this UTC day: command_stream's orders were chosen on today's clock (its OCOP
# listing needs a certificate dated from today), so the core here must run near it too.
START_NS = (time.time_ns() // 86_400_000_000_000) * 86_400_000_000_000

# Gaps between trades from none to three days, so trades share buckets or cross any boundary.
GAPS_NS = st.one_of(
    st.just(0),
    st.integers(1, 90 * 10**9),
    st.integers(0, 3 * 86_400 * 10**9),
)
TRADES = st.lists(st.tuples(GAPS_NS, st.integers(1, 10**9), st.integers(1, 10**6)), max_size=60)


def trade(number: int, price: int, quantity: int) -> Trade:
    return Trade(
        SYMBOL, number, price, quantity, Side.BUY, 1000 + number, 1, 0, 2000 + number, 2, 0
    )


def timed(trades: list[tuple[int, int, int]]) -> list[tuple[int, int, int]]:
    """(gap, price, quantity) -> (time_ns, price, quantity)."""
    times = itertools.accumulate(gap for gap, _, _ in trades)
    return [(START_NS + t, p, q) for t, (_, p, q) in zip(times, trades, strict=True)]


def feed_market_data(
    market_data: MarketData, trades: list[tuple[int, int, int]], first: int = 1
) -> MarketData:
    for number, (time_ns, price, quantity) in enumerate(trades, start=first):
        market_data.observe(number, time_ns, [trade(number, price, quantity)])
    return market_data


@settings(max_examples=80, deadline=None)
@given(TRADES, st.integers(0, 60))
def test_market_data_restored_anywhere_ends_where_one_fed_everything_did(
    gaps: list[tuple[int, int, int]], cut: int
) -> None:
    trades = timed(gaps)
    cut = min(cut, len(trades))
    whole = feed_market_data(MarketData(), trades)
    snapshot = msgspec.msgpack.encode(feed_market_data(MarketData(), trades[:cut]).state())
    restored = MarketData.from_state(msgspec.msgpack.decode(snapshot, type=MarketDataState))
    feed_market_data(restored, trades[cut:], first=cut + 1)
    assert msgspec.msgpack.encode(restored.state()) == msgspec.msgpack.encode(whole.state())


@settings(max_examples=80, deadline=None)
@given(TRADES)
def test_every_trade_is_in_the_candle_of_its_bucket_of_every_interval(
    gaps: list[tuple[int, int, int]],
) -> None:
    trades = timed(gaps)
    market_data = feed_market_data(MarketData(), trades)
    for name, interval_ns in INTERVALS_NS.items():
        expected: dict[int, list[int]] = {}  # start -> open, high, low, close, volume
        for time_ns, price, quantity in trades:
            start = bucket_start_ns(time_ns, interval_ns)
            candle = expected.setdefault(start, [price, price, price, price, 0])
            candle[1:] = [max(candle[1], price), min(candle[2], price), price, candle[4] + quantity]
        live = market_data.candles(SYMBOL, name, 0, 2**63)
        assert {c.start_ns: [c.open, c.high, c.low, c.close, c.volume] for c in live} == expected


@settings(max_examples=80, deadline=None)
@given(TRADES.filter(bool))
def test_the_days_statistics_are_its_daily_candle(gaps: list[tuple[int, int, int]]) -> None:
    trades = timed(gaps)
    market_data = feed_market_data(MarketData(), trades)
    last_time_ns = trades[-1][0]
    day = market_data.day(SYMBOL, last_time_ns)
    [candle] = market_data.candles(SYMBOL, "1d", day.day_start_ns, day.day_start_ns + 1)
    assert (day.open, day.high, day.low, day.last, day.volume) == (
        candle.open,
        candle.high,
        candle.low,
        candle.close,
        candle.volume,
    )


# ------------------------------------------------------------------------------------------------
# The projections fed by the exchange core with the benchmark's mixed order flow


@pytest.fixture(scope="module")
def records() -> list[Record]:
    """4,000 commands through a core, a second or so apart, so they span about an hour."""
    setup, stream = command_stream(4_000, seed=7)
    core = ExchangeCore()
    records: list[Record] = []
    time_ns = START_NS
    for sequence, command in enumerate(setup + stream, start=1):
        time_ns += sequence * 7_919_000_003 % 2_000_000_000
        records.append((sequence, time_ns, command, core.apply(command, sequence, time_ns)))
    return records


CUTS = [0, 1, 30, 1_000, 2_500, 4_000]


@pytest.mark.parametrize("cut", CUTS)
def test_the_audit_trail_restored_anywhere_ends_where_one_fed_everything_did(
    records: list[Record], cut: int
) -> None:
    whole, before = AuditTrail(), AuditTrail()
    for record in records:
        whole.observe(*record)
    for record in records[:cut]:
        before.observe(*record)
    snapshot = msgspec.msgpack.encode(before.state())
    after = AuditTrail.from_state(msgspec.msgpack.decode(snapshot, type=AuditState))
    for record in records[cut:]:
        after.observe(*record)
    assert msgspec.msgpack.encode(after.state()) == msgspec.msgpack.encode(whole.state())


def test_a_fill_is_a_step_of_the_makers_life_and_of_the_takers(records: list[Record]) -> None:
    trail = AuditTrail()
    for record in records:
        trail.observe(*record)
    trades = [event for *_, events in records for event in events if type(event) is Trade]
    assert trades
    for trade in trades:
        for order_id, liquidity in (
            (trade.maker_order_id, "maker"),
            (trade.taker_order_id, "taker"),
        ):
            history = trail.history(order_id) or []
            fills = [e for e in history if e.kind == "fill" and e.event == trade]
            assert [e.liquidity for e in fills] == [liquidity]


# Links and thresholds that make the benchmark's random flow raise alerts of several kinds.
WATCHFUL = SurveillanceConfig(
    linked_participants=((1, 2, 3), (4, 5)),
    spoofing_size_ratio=2,
    spoofing_window_s=60,
    close_window_minutes=600,
    close_move_bps=10,
    price_move_bps=20,
    price_move_window_s=600,
)


@pytest.mark.parametrize("cut", CUTS)
def test_surveillance_restored_anywhere_ends_where_one_fed_everything_did(
    records: list[Record], cut: int
) -> None:
    whole, before = Surveillance(WATCHFUL), Surveillance(WATCHFUL)
    for record in records:
        whole.observe(*record)
    assert {SELF_TRADE_ATTEMPT, WASH_TRADE} <= {alert.kind for alert in whole.alerts}
    for record in records[:cut]:
        before.observe(*record)
    snapshot = msgspec.msgpack.encode(before.state())
    after = Surveillance.from_state(msgspec.msgpack.decode(snapshot, type=SurveillanceState))
    for record in records[cut:]:
        after.observe(*record)
    assert msgspec.msgpack.encode(after.state()) == msgspec.msgpack.encode(whole.state())


def accepted(order_id: int, side: Side, price: int | None) -> OrderAccepted:
    order_type = OrderType.LIMIT if price is not None else OrderType.MARKET
    return OrderAccepted(
        SYMBOL, order_id, 1, side, order_type, price, 5, TimeInForce.GTC, False, False
    )


@pytest.mark.parametrize("restored", [False, True])
@pytest.mark.parametrize("limit", [60_000, None])
def test_a_self_trade_names_the_owners_lowest_crossing_orders_at_their_prices_now(
    limit: int | None, restored: bool
) -> None:
    """300 resting sells of one owner, every seventh a market order, the others at 59,000 to
    61,200; every fifth limit sell then amended across 60,000 (after a snapshot, if restored)."""
    prices = [59_000 + 100 * (order_id % 23) if order_id % 7 else None for order_id in range(300)]
    surveillance = Surveillance()
    command = CancelOrder(1, 0)
    surveillance.observe(
        1, START_NS, command, [accepted(i, Side.SELL, p) for i, p in enumerate(prices)]
    )
    if restored:
        snapshot = msgspec.msgpack.encode(surveillance.state())
        surveillance = Surveillance.from_state(
            msgspec.msgpack.decode(snapshot, type=SurveillanceState)
        )
    amends: list[Event] = []
    for order_id in range(0, 300, 5):
        if prices[order_id] is not None:
            prices[order_id] = 61_000 if order_id % 2 else 59_500
            amends.append(
                OrderAmended(SYMBOL, order_id, 1, Side.SELL, prices[order_id], 5, 5, False)
            )
    surveillance.observe(2, START_NS, command, amends)
    stopped = OrderCancelled(SYMBOL, 300, 1, Side.BUY, 5, CancelReason.SELF_TRADE)
    surveillance.observe(3, START_NS, command, [accepted(300, Side.BUY, limit), stopped])
    crossing = [
        order_id
        for order_id, price in enumerate(prices)
        if limit is None or price is None or price <= limit
    ]
    assert len(crossing) > MAX_LINKED
    [alert] = surveillance.alerts
    assert alert.order_ids == [300, *crossing[: MAX_LINKED - 1]]
