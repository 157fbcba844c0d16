"""Market-data projections built from the event stream: recent trades, tickers and candles.

A projection of the journal like any other: deterministic (it uses the sequencer's times, never
a clock), rebuilt by replay, and saved in snapshots beside the core state so that a restart
keeps the trading day's ticker and the candle history.

The trading day is the calendar day in Vietnam (UTC+7); daily candles follow it too.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable

import msgspec

from exchange.events import Event, InstrumentListed, Trade
from matching_engine import Side

NS_PER_SECOND = 1_000_000_000
VIETNAM_UTC_OFFSET_NS = 7 * 3600 * NS_PER_SECOND
INTERVALS_NS = {
    "1m": 60 * NS_PER_SECOND,
    "5m": 300 * NS_PER_SECOND,
    "1h": 3600 * NS_PER_SECOND,
    "1d": 86400 * NS_PER_SECOND,
}
MAX_RECENT_TRADES = 1_000
MAX_CANDLES_PER_INTERVAL = 20_000


def bucket_start_ns(time_ns: int, interval_ns: int) -> int:
    """Start of the candle holding `time_ns`; days (and longer) start at midnight in Vietnam."""
    if interval_ns >= INTERVALS_NS["1d"]:
        local = time_ns + VIETNAM_UTC_OFFSET_NS
        return local // interval_ns * interval_ns - VIETNAM_UTC_OFFSET_NS
    return time_ns // interval_ns * interval_ns


class PublicTrade(msgspec.Struct, frozen=True, array_like=True, gc=False):
    trade_id: int
    price: int
    quantity: int
    aggressor_side: Side
    time_ns: int
    sequence: int


class Candle(msgspec.Struct, array_like=True, gc=False):
    start_ns: int
    open: int
    high: int
    low: int
    close: int
    volume: int


class DayStats(msgspec.Struct, array_like=True, gc=False):
    day_start_ns: int
    open: int | None = None
    high: int | None = None
    low: int | None = None
    last: int | None = None
    volume: int = 0


class SymbolData(msgspec.Struct):
    recent_trades: list[PublicTrade]
    day: DayStats
    candles: dict[str, list[Candle]]
    last_price: int | None = None
    last_trade_sequence: int = 0


class MarketDataState(msgspec.Struct, frozen=True):
    symbols: dict[str, SymbolData]


class _Symbol:
    """Live projection of one symbol (deque and dicts for fast updates).

    It also keeps each interval's newest candle, with the span [current_from_ns, current_until_ns)
    of times that fall in all of their buckets: a trade in that span (nearly every one) updates
    them as they are, with no bucket to work out (a big-int division per interval). Empty after a
    restore, so the first trade works it out again.
    """

    __slots__ = (
        "candles",
        "current_candles",
        "current_from_ns",
        "current_until_ns",
        "day",
        "last_price",
        "last_trade_sequence",
        "recent_trades",
    )

    def __init__(self) -> None:
        self.recent_trades: deque[PublicTrade] = deque(maxlen=MAX_RECENT_TRADES)
        self.day = DayStats(0)
        self.candles: dict[str, deque[Candle]] = {
            name: deque(maxlen=MAX_CANDLES_PER_INTERVAL) for name in INTERVALS_NS
        }
        self.last_price: int | None = None
        self.last_trade_sequence = 0
        self.current_candles: list[Candle] = []  # candles[name][-1], in INTERVALS_NS order
        self.current_from_ns = 0
        self.current_until_ns = 0

    def enter_buckets(self, time_ns: int, price: int) -> None:
        """Make the day and the current candles those holding `time_ns`: the newest ones if it is
        still in them, else new ones opened at `price` with no volume yet."""
        day_start = bucket_start_ns(time_ns, INTERVALS_NS["1d"])
        if self.day.day_start_ns != day_start or self.day.open is None:
            self.day = DayStats(day_start, price, price, price, price, 0)
        self.current_candles = []
        for name, interval_ns in INTERVALS_NS.items():
            start = bucket_start_ns(time_ns, interval_ns)
            candles = self.candles[name]
            if not candles or candles[-1].start_ns != start:
                candles.append(Candle(start, price, price, price, price, 0))
            self.current_candles.append(candles[-1])
        self.current_from_ns = max(c.start_ns for c in self.current_candles)
        self.current_until_ns = min(
            c.start_ns + interval_ns
            for c, interval_ns in zip(self.current_candles, INTERVALS_NS.values(), strict=True)
        )


class MarketData:
    """Trades, day statistics and candles per symbol, fed with every command's events."""

    def __init__(self) -> None:
        self._symbols: dict[str, _Symbol] = {}

    def observe(self, sequence: int, time_ns: int, events: Iterable[Event]) -> None:
        for event in events:
            if type(event) is Trade:
                assert isinstance(event, Trade)
                self._on_trade(event, sequence, time_ns)
            elif type(event) is InstrumentListed:
                assert isinstance(event, InstrumentListed)
                self._symbols.setdefault(event.instrument.symbol, _Symbol())

    def _on_trade(self, trade: Trade, sequence: int, time_ns: int) -> None:
        data = self._symbols.get(trade.symbol)
        if data is None:  # not setdefault: a new _Symbol per trade would be built and dropped
            data = self._symbols[trade.symbol] = _Symbol()
        price, quantity = trade.price, trade.quantity
        data.recent_trades.append(
            PublicTrade(trade.trade_id, price, quantity, trade.aggressor_side, time_ns, sequence)
        )
        data.last_price = price
        data.last_trade_sequence = sequence
        if not data.current_from_ns <= time_ns < data.current_until_ns:
            data.enter_buckets(time_ns, price)  # a new minute, or the first trade since a restore
        day = data.day
        if not day.high or price > day.high:  # set since the day opened (`not` narrows the type)
            day.high = price
        if not day.low or price < day.low:
            day.low = price
        day.last = price
        day.volume += quantity
        for candle in data.current_candles:
            if price > candle.high:
                candle.high = price
            if price < candle.low:
                candle.low = price
            candle.close = price
            candle.volume += quantity

    # ------------------------------------------------------------------ queries

    def recent_trades(self, symbol: str, limit: int) -> list[PublicTrade]:
        """Newest first."""
        data = self._symbols.get(symbol)
        if data is None:
            return []
        trades = data.recent_trades
        return [trades[-1 - i] for i in range(min(limit, len(trades)))]

    def day(self, symbol: str, now_ns: int) -> DayStats:
        """Today's statistics (empty once the day the last trade happened on is over)."""
        data = self._symbols.get(symbol)
        today = bucket_start_ns(now_ns, INTERVALS_NS["1d"])
        if data is None or data.day.day_start_ns != today:
            return DayStats(today)
        return data.day

    def last_price(self, symbol: str) -> int | None:
        data = self._symbols.get(symbol)
        return data.last_price if data is not None else None

    def retained_from(self, symbol: str, interval: str) -> int | None:
        """Start of the oldest candle kept once the kept window is full (older candles may
        have been dropped: ask the ledger for them); None while it is not."""
        data = self._symbols.get(symbol)
        if data is None:
            return None
        kept = data.candles[interval]
        return kept[0].start_ns if len(kept) == kept.maxlen else None

    def candles(self, symbol: str, interval: str, start_ns: int, end_ns: int) -> list[Candle]:
        """Candles whose start lies in [start_ns, end_ns), oldest first."""
        data = self._symbols.get(symbol)
        if data is None:
            return []
        return [c for c in data.candles[interval] if start_ns <= c.start_ns < end_ns]

    # ------------------------------------------------------------------ state

    def state(self) -> MarketDataState:
        return MarketDataState(
            {
                symbol: SymbolData(
                    list(data.recent_trades),
                    msgspec.structs.replace(data.day),
                    {
                        name: [msgspec.structs.replace(c) for c in q]
                        for name, q in data.candles.items()
                    },
                    data.last_price,
                    data.last_trade_sequence,
                )
                for symbol, data in sorted(self._symbols.items())
            }
        )

    @classmethod
    def from_state(cls, state: MarketDataState) -> MarketData:
        market_data = cls()
        for symbol, saved in state.symbols.items():
            data = market_data._symbols[symbol] = _Symbol()
            data.recent_trades.extend(saved.recent_trades)
            data.day = msgspec.structs.replace(saved.day)
            for name, candles in saved.candles.items():
                data.candles[name].extend(msgspec.structs.replace(c) for c in candles)
            data.last_price = saved.last_price
            data.last_trade_sequence = saved.last_trade_sequence
        return market_data
