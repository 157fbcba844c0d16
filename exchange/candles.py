"""Candles from a series of trades, with numpy: the batch twin of `MarketData`'s live candles.

The live projection updates the current candle trade by trade and keeps the most recent
`MAX_CANDLES_PER_INTERVAL` of each interval. History older than that is built here from the
ledger's trades (or any trade series, e.g. from a journal replay) in one vectorised pass:
bucket every trade, find where the bucket changes, and reduce each run. Both use the same
bucketing rule (`marketdata.bucket_start_ns`: minutes and hours in UTC, days from midnight in
Vietnam), so for the same trades they give the same candles, which the tests check.
"""

from __future__ import annotations

from typing import Protocol

import numpy as np

from exchange.marketdata import INTERVALS_NS, VIETNAM_UTC_OFFSET_NS, Candle


def bucket_starts(times_ns: np.ndarray, interval_ns: int) -> np.ndarray:
    """`bucket_start_ns` for a whole array of times."""
    if interval_ns >= INTERVALS_NS["1d"]:
        local = times_ns + VIETNAM_UTC_OFFSET_NS
        starts: np.ndarray = local // interval_ns * interval_ns - VIETNAM_UTC_OFFSET_NS
        return starts
    plain: np.ndarray = times_ns // interval_ns * interval_ns
    return plain


def ohlcv(
    times_ns: np.ndarray, prices: np.ndarray, quantities: np.ndarray, interval_ns: int
) -> list[Candle]:
    """One candle per interval that has trades, oldest first. Trades must be in trade order
    (which is time order: the sequencer's times never go backwards)."""
    if len(times_ns) == 0:
        return []
    assert len(times_ns) == len(prices) == len(quantities)
    assert bool(np.all(np.diff(times_ns) >= 0)), "trades must be in time order"
    buckets = bucket_starts(times_ns.astype(np.int64), interval_ns)
    firsts = np.flatnonzero(np.r_[True, buckets[1:] != buckets[:-1]])
    lasts = np.r_[firsts[1:], len(buckets)] - 1
    opens, closes = prices[firsts], prices[lasts]
    highs = np.maximum.reduceat(prices, firsts)
    lows = np.minimum.reduceat(prices, firsts)
    volumes = np.add.reduceat(quantities, firsts)
    return [
        Candle(int(start), int(o), int(h), int(lo), int(c), int(v))
        for start, o, h, lo, c, v in zip(
            buckets[firsts], opens, highs, lows, closes, volumes, strict=True
        )
    ]


class TradeSeries(Protocol):
    def trade_series(
        self, symbol: str, start_ns: int, end_ns: int
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]: ...


def history_candles(
    source: TradeSeries, symbol: str, interval: str, start_ns: int, end_ns: int
) -> list[Candle]:
    """The complete candles whose start lies in [start_ns, end_ns), built from the trades of
    `source` (the ledger): the same selection `MarketData.candles` makes."""
    interval_ns = INTERVALS_NS[interval]
    first, last = (_first_start_at_or_after(t, interval_ns) for t in (start_ns, end_ns))
    if first >= last:
        return []
    return ohlcv(*source.trade_series(symbol, first, last), interval_ns)


def _first_start_at_or_after(time_ns: int, interval_ns: int) -> int:
    start = int(bucket_starts(np.array([time_ns], dtype=np.int64), interval_ns)[0])
    return start if start == time_ns else start + interval_ns
