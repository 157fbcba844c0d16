"""Candles and day statistics of `exchange.marketdata.MarketData`, with explicit times.

The trades below straddle minute, five-minute, hour, UTC-day and Vietnam-day (UTC+7) boundaries;
every expected candle is written out by hand: (start, open, high, low, close, volume).
"""

from __future__ import annotations

import itertools
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from benchmarks.ledger import event_stream
from clearing.ledger import Ledger, default_database_url
from exchange.candles import history_candles, ohlcv
from exchange.events import Trade
from exchange.ledger_feed import entries_of
from exchange.marketdata import INTERVALS_NS, Candle, MarketData, bucket_start_ns
from matching_engine import Side

SYMBOL = "HOG-TEST"


def ns(text: str) -> int:
    """`2026-03-01T16:59:30Z` (optionally with a fraction of up to 9 digits) → epoch ns."""
    whole, _, fraction = text.rstrip("Z").partition(".")
    moment = datetime.fromisoformat(whole).replace(tzinfo=UTC)
    return int(moment.timestamp()) * 1_000_000_000 + int(fraction.ljust(9, "0"))


# time (UTC), price, quantity; Vietnam time in the comment.
TRADES = [
    ("2026-03-01T16:59:30Z", 100, 1),  # A  Mar 1 23:59:30
    ("2026-03-01T16:59:59.999999999Z", 120, 2),  # B  Mar 1 23:59:59.999999999
    ("2026-03-01T17:00:00Z", 90, 3),  # C  Mar 2 00:00:00: new Vietnam day
    ("2026-03-01T17:00:59Z", 95, 1),  # D  Mar 2 00:00:59
    ("2026-03-01T17:01:00Z", 110, 5),  # E  Mar 2 00:01:00
    ("2026-03-01T17:59:59Z", 80, 1),  # F  Mar 2 00:59:59
    ("2026-03-01T18:00:00Z", 130, 2),  # G  Mar 2 01:00:00
    ("2026-03-02T00:00:00Z", 70, 1),  # H  Mar 2 07:00:00: new UTC day, same Vietnam day
    ("2026-03-02T16:59:59Z", 75, 4),  # I  Mar 2 23:59:59
    ("2026-03-02T17:00:00Z", 85, 6),  # J  Mar 3 00:00:00: new Vietnam day
]

EXPECTED = {
    "1m": [
        ("2026-03-01T16:59:00Z", 100, 120, 100, 120, 3),
        ("2026-03-01T17:00:00Z", 90, 95, 90, 95, 4),
        ("2026-03-01T17:01:00Z", 110, 110, 110, 110, 5),
        ("2026-03-01T17:59:00Z", 80, 80, 80, 80, 1),
        ("2026-03-01T18:00:00Z", 130, 130, 130, 130, 2),
        ("2026-03-02T00:00:00Z", 70, 70, 70, 70, 1),
        ("2026-03-02T16:59:00Z", 75, 75, 75, 75, 4),
        ("2026-03-02T17:00:00Z", 85, 85, 85, 85, 6),
    ],
    "5m": [
        ("2026-03-01T16:55:00Z", 100, 120, 100, 120, 3),
        ("2026-03-01T17:00:00Z", 90, 110, 90, 110, 9),
        ("2026-03-01T17:55:00Z", 80, 80, 80, 80, 1),
        ("2026-03-01T18:00:00Z", 130, 130, 130, 130, 2),
        ("2026-03-02T00:00:00Z", 70, 70, 70, 70, 1),
        ("2026-03-02T16:55:00Z", 75, 75, 75, 75, 4),
        ("2026-03-02T17:00:00Z", 85, 85, 85, 85, 6),
    ],
    "1h": [
        ("2026-03-01T16:00:00Z", 100, 120, 100, 120, 3),
        ("2026-03-01T17:00:00Z", 90, 110, 80, 80, 10),
        ("2026-03-01T18:00:00Z", 130, 130, 130, 130, 2),
        ("2026-03-02T00:00:00Z", 70, 70, 70, 70, 1),
        ("2026-03-02T16:00:00Z", 75, 75, 75, 75, 4),
        ("2026-03-02T17:00:00Z", 85, 85, 85, 85, 6),
    ],
    # Days start at midnight in Vietnam: 17:00 UTC the day before.
    "1d": [
        ("2026-02-28T17:00:00Z", 100, 120, 100, 120, 3),  # Vietnam Mar 1
        ("2026-03-01T17:00:00Z", 90, 130, 70, 75, 17),  # Vietnam Mar 2: C..I
        ("2026-03-02T17:00:00Z", 85, 85, 85, 85, 6),  # Vietnam Mar 3
    ],
}


def trade(number: int, price: int, quantity: int) -> Trade:
    return Trade(
        SYMBOL, number, price, quantity, Side.BUY, 1000 + number, 1, 0, 2000 + number, 2, 0
    )


def observe(market_data: MarketData, first: int = 1, last: int = len(TRADES)) -> None:
    """Feed trades number `first`..`last` (1-based) of TRADES, at sequence 10 × number."""
    for number, (moment, price, quantity) in enumerate(TRADES, start=1):
        if first <= number <= last:
            market_data.observe(10 * number, ns(moment), [trade(number, price, quantity)])


def as_rows(market_data: MarketData, interval: str) -> list[tuple[int, int, int, int, int, int]]:
    return [
        (c.start_ns, c.open, c.high, c.low, c.close, c.volume)
        for c in market_data.candles(SYMBOL, interval, 0, 2**63)
    ]


def expected_rows(interval: str) -> list[tuple[int, int, int, int, int, int]]:
    return [(ns(start), *ohlcv) for start, *ohlcv in EXPECTED[interval]]


@pytest.mark.parametrize("interval", list(EXPECTED))
def test_candles_equal_hand_computed_ohlcv(interval: str) -> None:
    market_data = MarketData()
    observe(market_data)
    assert as_rows(market_data, interval) == expected_rows(interval)


@pytest.mark.parametrize("interval", list(EXPECTED))
def test_candles_survive_a_snapshot(interval: str) -> None:
    market_data = MarketData()
    observe(market_data, last=5)
    restored = MarketData.from_state(market_data.state())
    observe(restored, first=6)
    assert as_rows(restored, interval) == expected_rows(interval)


def test_candle_queries_select_by_start() -> None:
    market_data = MarketData()
    observe(market_data)
    found = market_data.candles(
        SYMBOL, "1h", ns("2026-03-01T17:00:00Z"), ns("2026-03-02T00:00:00Z")
    )
    assert [(c.start_ns, c.volume) for c in found] == [
        (ns("2026-03-01T17:00:00Z"), 10),
        (ns("2026-03-01T18:00:00Z"), 2),
    ]
    assert market_data.candles("OTHER", "1m", 0, 2**63) == []


def test_bucket_starts() -> None:
    assert bucket_start_ns(ns("2026-03-01T16:59:59.999999999Z"), 86_400 * 10**9) == ns(
        "2026-02-28T17:00:00Z"
    )
    assert bucket_start_ns(ns("2026-03-01T17:00:00Z"), 86_400 * 10**9) == ns("2026-03-01T17:00:00Z")
    assert bucket_start_ns(ns("2026-03-02T00:00:00Z"), 86_400 * 10**9) == ns("2026-03-01T17:00:00Z")
    assert bucket_start_ns(ns("2026-03-01T17:04:59Z"), 300 * 10**9) == ns("2026-03-01T17:00:00Z")


def test_day_statistics_follow_the_vietnam_day() -> None:
    market_data = MarketData()
    observe(market_data, last=2)  # Vietnam Mar 1
    day = market_data.day(SYMBOL, ns("2026-03-01T16:59:59.999999999Z"))
    assert (day.open, day.high, day.low, day.last, day.volume) == (100, 120, 100, 120, 3)
    observe(market_data, 3, 9)  # C..I: Vietnam Mar 2, across the UTC midnight
    day = market_data.day(SYMBOL, ns("2026-03-02T16:59:59Z"))
    assert day.day_start_ns == ns("2026-03-01T17:00:00Z")
    assert (day.open, day.high, day.low, day.last, day.volume) == (90, 130, 70, 75, 17)
    # Asked about another day: nothing traded on it.
    empty = market_data.day(SYMBOL, ns("2026-03-02T17:00:00Z"))
    assert (empty.open, empty.high, empty.low, empty.last, empty.volume) == (
        None,
        None,
        None,
        None,
        0,
    )
    observe(market_data, 10, 10)  # J: Vietnam Mar 3
    day = market_data.day(SYMBOL, ns("2026-03-03T05:00:00Z"))
    assert (day.open, day.high, day.low, day.last, day.volume) == (85, 85, 85, 85, 6)
    assert market_data.last_price(SYMBOL) == 85


def test_recent_trades_newest_first() -> None:
    market_data = MarketData()
    observe(market_data)
    recent = market_data.recent_trades(SYMBOL, 3)
    assert [(t.trade_id, t.price, t.quantity, t.sequence) for t in recent] == [
        (10, 85, 6, 100),
        (9, 75, 4, 90),
        (8, 70, 1, 80),
    ]
    assert recent[0].time_ns == ns("2026-03-02T17:00:00Z")


# ------------------------------------------------------------------------------------------------
# The same candles with numpy, from a series of trades (what the ledger's history is built with)


def series(trades: list[tuple[int, int, int]]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    array = np.array(trades, dtype=np.int64).reshape(-1, 3)
    return array[:, 0].copy(), array[:, 1].copy(), array[:, 2].copy()


def candle_rows(candles: list[Candle]) -> list[tuple[int, int, int, int, int, int]]:
    return [(c.start_ns, c.open, c.high, c.low, c.close, c.volume) for c in candles]


@pytest.mark.parametrize("interval", list(EXPECTED))
def test_numpy_candles_equal_hand_computed_ohlcv(interval: str) -> None:
    trades = [(ns(moment), price, quantity) for moment, price, quantity in TRADES]
    built = ohlcv(*series(trades), INTERVALS_NS[interval])
    assert candle_rows(built) == expected_rows(interval)


@settings(max_examples=60, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.integers(0, 3 * 86_400 * 10**9),  # gap to the previous trade, up to 3 days
            st.integers(1, 10**9),
            st.integers(1, 10**6),
        ),
        max_size=80,
    ),
    st.sampled_from(list(INTERVALS_NS)),
)
def test_numpy_candles_equal_the_live_candles_for_any_trades(
    gaps: list[tuple[int, int, int]], interval: str
) -> None:
    market_data = MarketData()
    times = list(itertools.accumulate(gap for gap, _, _ in gaps))
    trades = [
        (ns("2026-03-01T00:00:00Z") + t, p, q) for t, (_, p, q) in zip(times, gaps, strict=True)
    ]
    for number, (time_ns, price, quantity) in enumerate(trades, start=1):
        market_data.observe(number, time_ns, [trade(number, price, quantity)])
    live = market_data.candles(SYMBOL, interval, 0, 2**63)
    assert candle_rows(ohlcv(*series(trades), INTERVALS_NS[interval])) == candle_rows(live)


class TradeList:
    """A trade source like the ledger's `trade_series`, over a list."""

    def __init__(self, trades: list[tuple[int, int, int]]) -> None:
        self.trades = trades

    def trade_series(
        self, symbol: str, start_ns: int, end_ns: int
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        return series([t for t in self.trades if start_ns <= t[0] < end_ns])


def test_history_candles_select_by_start_like_the_live_query() -> None:
    trades = TradeList([(ns(moment), price, quantity) for moment, price, quantity in TRADES])
    found = history_candles(
        trades, SYMBOL, "1h", ns("2026-03-01T16:30:00Z"), ns("2026-03-01T18:00:00Z")
    )
    # the 16:00 candle starts before the range and 18:00 at its end: neither is in it
    assert candle_rows(found) == [(ns("2026-03-01T17:00:00Z"), 90, 110, 80, 80, 10)]


def test_old_candles_the_live_projection_dropped_come_back_from_the_ledger(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr("exchange.marketdata.MAX_CANDLES_PER_INTERVAL", 3)
    market_data = MarketData()
    observe(market_data)
    kept_from = market_data.retained_from(SYMBOL, "1m")
    assert kept_from == ns("2026-03-02T00:00:00Z")  # only the newest three 1m candles are kept
    trades = TradeList([(ns(moment), price, quantity) for moment, price, quantity in TRADES])
    older = history_candles(trades, SYMBOL, "1m", 0, kept_from)
    assert candle_rows(older) + as_rows(market_data, "1m") == expected_rows("1m")
    few = MarketData()
    observe(few, last=2)  # one candle of each interval: nothing dropped, no ledger needed
    assert few.retained_from(SYMBOL, "1m") is None


def test_the_ledger_gives_the_trade_series_of_a_symbol(tmp_path: Path) -> None:
    ledger = Ledger.open(default_database_url(tmp_path))
    try:
        stream, _ = event_stream(3_000, seed=5)
        ledger.apply(entries_of(stream))
        symbol = "HOG-G1-HCM"
        trades = [
            (r.time_ns, e.price, e.quantity)
            for r in stream
            for e in r.events
            if isinstance(e, Trade) and e.symbol == symbol
        ]
        assert len(trades) > 50
        middle = trades[len(trades) // 2][0]
        times, prices, quantities = ledger.trade_series(symbol, middle, 2**62)
        expected = [t for t in trades if t[0] >= middle]
        assert (
            list(zip(times.tolist(), prices.tolist(), quantities.tolist(), strict=True)) == expected
        )
        assert [len(a) for a in ledger.trade_series("NOPE", 0, 2**62)] == [0, 0, 0]
    finally:
        ledger.close()
