"""Daily settlement prices and the recent-trade window they (and the circuit breaker) read.

The core keeps each market's trades of the last few minutes in one-second buckets
(`TradeBucket`: volume, price x volume, low and high of that second), so the memory it needs is
bounded by the window, not by the trading rate. Window boundaries therefore fall on whole seconds.

Settlement price of a trading day, fixed at the cut-off (the close, or the operator's command):

1. the volume-weighted average price of the trades in the final `settlement_window_s` seconds
   before the cut-off, rounded to the nearest tick (halves up);
2. without trades in that window: the day's last trade price;
3. without trades that day: the reference price.

It is published (`SettlementPublished`), kept in the market's history, and becomes the reference
price of the next day: the price band moves with it.
"""

from __future__ import annotations

from collections import deque
from enum import StrEnum

import msgspec
import numpy as np

NS_PER_SECOND = 1_000_000_000
MAX_SETTLEMENT_WINDOW_S = 3600
INT64_SAFE = 2**62


class TradeBucket(msgspec.Struct, array_like=True, gc=False):
    """The trades of one second: their volume, value (price x volume), low and high."""

    second: int
    volume: int
    value: int
    low: int
    high: int


class TradeWindowState(msgspec.Struct, frozen=True, array_like=True):
    last_price: int | None
    buckets: list[TradeBucket]


class SettlementMethod(StrEnum):
    VWAP = "vwap"
    LAST_TRADE = "last_trade"
    REFERENCE = "reference"


class SettlementPrice(msgspec.Struct, frozen=True, array_like=True, gc=False):
    symbol: str
    trading_day: str  # the Vietnam calendar day it settles, YYYY-MM-DD
    price: int
    method: SettlementMethod
    volume: int  # lots traded in the window (VWAP), else 0
    window_start_ns: int
    cut_off_ns: int
    previous_reference_price: int
    sequence: int


class TradeWindow:
    """One market's recent trades, bucketed by second, kept for `keep_s` seconds."""

    __slots__ = ("buckets", "keep_s", "last_price")

    def __init__(self, keep_s: int, last_price: int | None = None) -> None:
        self.keep_s = keep_s
        self.buckets: deque[TradeBucket] = deque()
        self.last_price = last_price  # the day's last trade (None: no trade since settling)

    def add(self, time_ns: int, price: int, quantity: int) -> None:
        second = time_ns // NS_PER_SECOND
        buckets = self.buckets
        self.last_price = price
        if buckets and buckets[-1].second == second:
            bucket = buckets[-1]
            bucket.volume += quantity
            bucket.value += price * quantity
            if price < bucket.low:
                bucket.low = price
            elif price > bucket.high:
                bucket.high = price
            return
        buckets.append(TradeBucket(second, quantity, price * quantity, price, price))
        oldest = second - self.keep_s
        while buckets[0].second <= oldest:
            buckets.popleft()

    def state(self) -> TradeWindowState:
        return TradeWindowState(self.last_price, [msgspec.structs.replace(b) for b in self.buckets])

    def restore(self, state: TradeWindowState) -> None:
        self.last_price = state.last_price
        self.buckets.extend(msgspec.structs.replace(b) for b in state.buckets)

    def range_within(
        self, time_ns: int, window_s: int, since_ns: int = 0
    ) -> tuple[int, int] | None:
        """Lowest and highest price traded in the `window_s` seconds up to `time_ns`, counting
        no second before the one holding `since_ns`."""
        after = max(time_ns // NS_PER_SECOND - window_s, since_ns // NS_PER_SECOND - 1)
        low = high = None
        for bucket in reversed(self.buckets):
            if bucket.second <= after:
                break
            low = bucket.low if low is None else min(low, bucket.low)
            high = bucket.high if high is None else max(high, bucket.high)
        if low is None or high is None:
            return None
        return low, high

    def vwap(self, cut_off_ns: int, window_s: int) -> tuple[int, int, int] | None:
        """(value, volume, first second) of the trades in the window before the cut-off."""
        if not self.buckets:
            return None
        seconds = np.fromiter((b.second for b in self.buckets), dtype=np.int64)
        end = cut_off_ns // NS_PER_SECOND
        mask = (seconds > end - window_s) & (seconds <= end)
        if not mask.any():
            return None
        values = [b.value for b in self.buckets]
        volumes = np.fromiter((b.volume for b in self.buckets), dtype=np.int64)[mask]
        if max(values) < INT64_SAFE // len(values):
            value = int(np.asarray(values, dtype=np.int64)[mask].sum())
        else:  # beyond int64: Python's integers, never a float
            value = sum(v for v, keep in zip(values, mask, strict=True) if keep)
        return value, int(volumes.sum()), int(seconds[mask][0])


def round_to_tick(value: int, volume: int, tick_size: int) -> int:
    """value / volume to the nearest whole tick, halves up, in integers only."""
    ticks = (2 * value + volume * tick_size) // (2 * volume * tick_size)
    return max(ticks, 1) * tick_size


def settlement_price(
    window: TradeWindow | None,
    symbol: str,
    trading_day: str,
    cut_off_ns: int,
    window_s: int,
    reference_price: int,
    tick_size: int,
    sequence: int,
) -> SettlementPrice:
    """The day's settlement price by the rules of this module."""
    found = window.vwap(cut_off_ns, window_s) if window is not None else None
    start_ns = cut_off_ns - window_s * NS_PER_SECOND
    if found is not None:
        value, volume, _ = found
        price = round_to_tick(value, volume, tick_size)
        method = SettlementMethod.VWAP
    elif window is not None and window.last_price is not None:
        price, volume, method = window.last_price, 0, SettlementMethod.LAST_TRADE
    else:
        price, volume, method = reference_price, 0, SettlementMethod.REFERENCE
    return SettlementPrice(
        symbol,
        trading_day,
        price,
        method,
        volume,
        start_ns,
        cut_off_ns,
        reference_price,
        sequence,
    )


__all__ = [
    "SettlementMethod",
    "SettlementPrice",
    "TradeBucket",
    "TradeWindow",
    "TradeWindowState",
    "round_to_tick",
    "settlement_price",
]
