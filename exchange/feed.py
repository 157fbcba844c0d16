"""The market-data feed: books, trades, tickers and candles fanned out to many subscribers.

The sequencer hands every batch of results to `FeedHub.on_results`, which only notes what
changed (cheap, on the sequencer's task). Every `window_s` (25 ms by default, like Coinbase's
level2_batch) `flush()` turns what changed into frames, encodes each frame once for all the
subscribers that get it and offers it to each subscriber's bounded queue, never waiting for
anyone. A subscriber whose queue is full is told to resync and gets a fresh snapshot at the next
flush; the connection layer closes subscribers that keep falling behind.

Book consistency: a snapshot and every update carry the sequence of the last command applied
when they were built, and updates carry new absolute totals per level
(`[side, price, quantity, orders]`; quantity 0 removes the level), so applying the updates
in order to the snapshot gives exactly the book at that sequence (`GET /v1/markets/{symbol}/book`).
Snapshots are only ever sent at a flush, so a new subscriber and the existing ones agree on
where the stream starts. Each update also carries `checksum`, a CRC32 of the top 10 levels
(see `book_checksum`), so a consumer can detect a broken local book.
"""

from __future__ import annotations

import zlib
from collections.abc import Iterable
from typing import Any, Protocol

import msgspec

from exchange.core import ExchangeCore
from exchange.events import (
    AuctionUncrossed,
    BookLevelChanged,
    CircuitBreakerTripped,
    MarketHalted,
    MarketResumed,
    ReferencePriceChanged,
    SessionChanged,
    Trade,
)
from exchange.marketdata import INTERVALS_NS, MarketData, bucket_start_ns
from exchange.times import rfc3339
from matching_engine import OrderBook, Side

CHANNELS = ("book", "trades", "ticker", "candles", "auction")
# Events after which a market's `auction` frame (session, band, indicative price) may differ.
_SESSION_EVENTS = (
    SessionChanged,
    AuctionUncrossed,
    CircuitBreakerTripped,
    ReferencePriceChanged,
    MarketHalted,
    MarketResumed,
)
CHECKSUM_LEVELS = 10
MAX_DEPTH = 1_000
_encode = msgspec.json.Encoder().encode


def book_checksum(bids: Iterable[Any], asks: Iterable[Any]) -> int:
    """CRC32 of the top 10 levels: `price:quantity` of each bid (best first), then a `|`, then
    each ask (best first), joined by commas; e.g. `60000:5,59900:12|60100:3`. Unsigned 32-bit.

    A client recomputes it from its local book after applying an update and compares."""
    top_bids = ",".join(f"{level[0]}:{level[1]}" for level in list(bids)[:CHECKSUM_LEVELS])
    top_asks = ",".join(f"{level[0]}:{level[1]}" for level in list(asks)[:CHECKSUM_LEVELS])
    return zlib.crc32(f"{top_bids}|{top_asks}".encode()) & 0xFFFFFFFF


class Sink(Protocol):
    """One subscriber connection as the hub sees it."""

    def offer(self, frame: str) -> bool:
        """Queue a frame without waiting; False when the queue is full."""
        ...

    def resync(self, channel: str, symbol: str) -> bool:
        """The subscriber fell behind: drop what is queued, tell it, expect fresh snapshots.

        False when the subscriber is being closed instead (it falls behind too often)."""
        ...


class _BookGroup:
    """Subscribers of one symbol's book at one depth (None: the whole book)."""

    __slots__ = ("depth", "last_sent", "members", "newcomers")

    def __init__(self, depth: int | None) -> None:
        self.depth = depth
        self.members: set[Sink] = set()
        self.newcomers: set[Sink] = set()
        # For depth-limited groups: the levels last sent, {(side, price): (quantity, orders)}.
        self.last_sent: dict[tuple[str, int], tuple[int, int]] = {}


class _SymbolFeed:
    __slots__ = (
        "auction",
        "books",
        "candle_subscribers",
        "changes",
        "session_changed",
        "ticker",
        "touched",
        "trades",
    )

    def __init__(self) -> None:
        self.auction: tuple[set[Sink], set[Sink]] = (set(), set())  # members, newcomers
        self.session_changed = False
        self.books: dict[int | None, _BookGroup] = {}
        self.trades: set[Sink] = set()
        self.ticker: tuple[set[Sink], set[Sink]] = (set(), set())  # members, newcomers
        self.candle_subscribers: dict[str, tuple[set[Sink], set[Sink]]] = {}
        # (side, price) -> (quantity, orders), since the last flush, for book groups
        self.changes: dict[tuple[str, int], tuple[int, int]] = {}
        self.touched = False  # any level changed since the last flush (the ticker's best prices)


class FeedHub:
    """Fan-out of one exchange's market data; every method runs on the event loop."""

    def __init__(self, core_of: Any, market_data_of: Any) -> None:
        # Callables, because the exchange replaces its core and projections on recovery.
        self._core_of = core_of
        self._market_data_of = market_data_of
        self._symbols: dict[str, _SymbolFeed] = {}
        self._pending_trades: list[tuple[str, str, int]] = []  # symbol, frame, trade time
        self._dirty_tickers: set[str] = set()
        self._last_time_ns = 0
        self.frames_offered = 0

    @property
    def core(self) -> ExchangeCore:
        core: ExchangeCore = self._core_of()
        return core

    @property
    def market_data(self) -> MarketData:
        market_data: MarketData = self._market_data_of()
        return market_data

    # ------------------------------------------------------------------ subscriptions

    def subscribe(
        self,
        sink: Sink,
        channel: str,
        symbol: str,
        depth: int | None = None,
        interval: str = "1m",
    ) -> str | None:
        """Add a subscription; returns why it is refused, or None. Data starts at the next flush."""
        if channel not in CHANNELS:
            return f"unknown channel {channel!r}; channels are {', '.join(CHANNELS)}"
        if self.core.engine.book(symbol) is None:
            return f"no instrument {symbol!r} is listed"
        feed = self._symbols.setdefault(symbol, _SymbolFeed())
        if channel == "book":
            if depth is not None and not 1 <= depth <= MAX_DEPTH:
                return f"depth must be 1..{MAX_DEPTH}"
            group = feed.books.get(depth)
            if group is None:
                group = feed.books[depth] = _BookGroup(depth)
            group.newcomers.add(sink)
        elif channel == "trades":
            feed.trades.add(sink)
        elif channel == "ticker":
            feed.ticker[1].add(sink)
        elif channel == "auction":
            feed.auction[1].add(sink)
        else:
            if interval not in INTERVALS_NS:
                return f"interval must be one of {', '.join(INTERVALS_NS)}"
            feed.candle_subscribers.setdefault(interval, (set(), set()))[1].add(sink)
        return None

    def unsubscribe(
        self, sink: Sink, channel: str, symbol: str, interval: str | None = None
    ) -> None:
        """End a subscription; for candles, only `interval` when given, else every interval."""
        feed = self._symbols.get(symbol)
        if feed is None:
            return
        if channel == "book":
            for group in feed.books.values():
                group.members.discard(sink)
                group.newcomers.discard(sink)
        elif channel == "trades":
            feed.trades.discard(sink)
        elif channel in ("ticker", "auction"):
            members, newcomers = feed.ticker if channel == "ticker" else feed.auction
            members.discard(sink)
            newcomers.discard(sink)
        else:
            for name, (members, newcomers) in feed.candle_subscribers.items():
                if interval is None or name == interval:
                    members.discard(sink)
                    newcomers.discard(sink)

    def drop(self, sink: Sink) -> None:
        """Forget a connection entirely."""
        for symbol in list(self._symbols):
            for channel in CHANNELS:
                self.unsubscribe(sink, channel, symbol)

    def subscriber_count(self) -> int:
        sinks: set[Sink] = set()
        for feed in self._symbols.values():
            for group in feed.books.values():
                sinks |= group.members | group.newcomers
            sinks |= feed.trades | feed.ticker[0] | feed.ticker[1]
            sinks |= feed.auction[0] | feed.auction[1]
        return len(sinks)

    # ------------------------------------------------------------------ input

    def on_results(self, results: Iterable[Any]) -> None:
        """Sequencer subscriber: note level changes and trades (no encoding here)."""
        symbols = self._symbols
        for result in results:
            for event in result.events:
                kind = type(event)
                if kind is BookLevelChanged:
                    feed = symbols.get(event.symbol)
                    if feed is not None:
                        feed.touched = True
                        if feed.books:
                            level = (event.quantity, event.order_count)
                            feed.changes[(event.side.value, event.price)] = level
                elif kind is Trade:
                    self._on_trade(event, result.sequence, result.time_ns)
                elif kind in _SESSION_EVENTS:
                    feed = symbols.get(event.symbol)
                    if feed is not None:
                        feed.session_changed = True
            self._last_time_ns = result.time_ns

    def _on_trade(self, trade: Trade, sequence: int, time_ns: int) -> None:
        feed = self._symbols.get(trade.symbol)
        if feed is None:
            return
        self._dirty_tickers.add(trade.symbol)
        if feed.trades:
            frame = _encode(
                {
                    "type": "trade",
                    "channel": "trades",
                    "symbol": trade.symbol,
                    "sequence": sequence,
                    "trade_id": str(trade.trade_id),
                    "price": trade.price,
                    "quantity": trade.quantity,
                    "aggressor_side": trade.aggressor_side.value,
                    "time": rfc3339(time_ns),
                    "time_ns": time_ns,
                }
            ).decode()
            self._pending_trades.append((trade.symbol, frame, time_ns))

    @property
    def quiet(self) -> bool:
        """Nothing changed since the last flush: a flush now only greets new subscribers.

        A gateway flushes where its shard's stream says; between two such points it may still
        flush a quiet hub, to send newcomers their snapshots, without changing what anyone
        else receives."""
        return not (self._pending_trades or self._dirty_tickers) and not any(
            feed.changes or feed.touched or feed.session_changed for feed in self._symbols.values()
        )

    # ------------------------------------------------------------------ output

    def flush(self) -> None:
        """Build this window's frames and offer them; called every window by the server."""
        core = self.core
        sequence = core.last_sequence
        for symbol, frame, _ in self._pending_trades:
            self._offer_all(self._symbols[symbol].trades, frame, "trades", symbol)
        self._pending_trades.clear()
        for symbol, feed in self._symbols.items():
            book = core.engine.book(symbol)
            if book is None:
                continue
            for group in list(feed.books.values()):
                self._flush_book(symbol, book, group, feed.changes, sequence)
            self._flush_ticker(symbol, book, feed, sequence)
            self._flush_auction(symbol, feed, sequence)
            feed.changes = {}
            feed.touched = False
            feed.session_changed = False
            self._flush_candles(symbol, feed, sequence)
        self._dirty_tickers.clear()

    def _flush_book(
        self,
        symbol: str,
        book: OrderBook,
        group: _BookGroup,
        changes: dict[tuple[str, int], tuple[int, int]],
        sequence: int,
    ) -> None:
        if not group.members and not group.newcomers:
            return
        bids = book.depth(Side.BUY, group.depth)
        asks = book.depth(Side.SELL, group.depth)
        if group.depth is None:
            delta = [[side, price, q, n] for (side, price), (q, n) in changes.items()]
        else:
            current = {("buy", p): (q, n) for p, q, n in bids}
            current |= {("sell", p): (q, n) for p, q, n in asks}
            gone = group.last_sent.keys() - current.keys()
            delta = [[side, price, 0, 0] for side, price in gone]
            delta += [
                [side, price, q, n]
                for (side, price), (q, n) in current.items()
                if group.last_sent.get((side, price)) != (q, n)
            ]
            group.last_sent = current
        checksum = book_checksum(bids, asks)
        if delta and group.members:
            delta.sort(key=_best_first)
            frame = _encode(
                {
                    "type": "update",
                    "channel": "book",
                    "symbol": symbol,
                    "sequence": sequence,
                    "depth": group.depth,
                    "changes": delta,
                    "checksum": checksum,
                    "time_ns": self._last_time_ns,
                }
            ).decode()
            self._offer_all(group.members, frame, "book", symbol)
        if group.newcomers:
            snapshot = _encode(
                {
                    "type": "snapshot",
                    "channel": "book",
                    "symbol": symbol,
                    "sequence": sequence,
                    "depth": group.depth,
                    "bids": [[p, q, n] for p, q, n in bids],
                    "asks": [[p, q, n] for p, q, n in asks],
                    "checksum": checksum,
                }
            ).decode()
            newcomers, group.newcomers = group.newcomers, set()
            group.members |= newcomers
            self._offer_all(newcomers, snapshot, "book", symbol)

    def ticker(self, symbol: str, book: OrderBook, sequence: int) -> dict[str, Any]:
        day = self.market_data.day(symbol, self._last_time_ns)
        return {
            "type": "ticker",
            "channel": "ticker",
            "symbol": symbol,
            "sequence": sequence,
            "best_bid": book.best_bid(),
            "best_ask": book.best_ask(),
            "last_price": self.market_data.last_price(symbol),
            "open": day.open,
            "high": day.high,
            "low": day.low,
            "volume": day.volume,
        }

    def _flush_ticker(self, symbol: str, book: OrderBook, feed: _SymbolFeed, sequence: int) -> None:
        members, newcomers = feed.ticker
        dirty = symbol in self._dirty_tickers or feed.touched
        if not newcomers and not (dirty and members):
            return
        frame = _encode(self.ticker(symbol, book, sequence)).decode()
        if dirty:
            self._offer_all(members, frame, "ticker", symbol)
        self._offer_all(newcomers, frame, "ticker", symbol)
        members |= newcomers
        newcomers.clear()

    def _flush_auction(self, symbol: str, feed: _SymbolFeed, sequence: int) -> None:
        """The market's phase and, in a call phase, the indicative auction price: sent when the
        phase changes, and as the book changes during a call."""
        members, newcomers = feed.auction
        if not members and not newcomers:
            return
        core = self.core
        calling = core.markets[symbol].session.session.is_call
        dirty = feed.session_changed or (feed.touched and calling)
        if not newcomers and not (dirty and members):
            return
        frame = _encode({"type": "auction", **session_status(core, symbol, sequence)}).decode()
        if dirty:
            self._offer_all(members, frame, "auction", symbol)
        self._offer_all(newcomers, frame, "auction", symbol)
        members |= newcomers
        newcomers.clear()

    def _flush_candles(self, symbol: str, feed: _SymbolFeed, sequence: int) -> None:
        traded = symbol in self._dirty_tickers
        for interval, (members, newcomers) in feed.candle_subscribers.items():
            if not newcomers and not (traded and members):
                continue
            candles = self.market_data.candles(symbol, interval, 0, 2**63)
            candle = candles[-1] if candles else None
            current_start = bucket_start_ns(self._last_time_ns, INTERVALS_NS[interval])
            frame = _encode(
                {
                    "type": "candle",
                    "channel": "candles",
                    "symbol": symbol,
                    "sequence": sequence,
                    "interval": interval,
                    "candle": None
                    if candle is None
                    else {
                        "time": rfc3339(candle.start_ns),
                        "open": candle.open,
                        "high": candle.high,
                        "low": candle.low,
                        "close": candle.close,
                        "volume": candle.volume,
                        "closed": candle.start_ns < current_start,
                    },
                }
            ).decode()
            if traded:
                self._offer_all(members, frame, "candles", symbol)
            self._offer_all(newcomers, frame, "candles", symbol)
            members |= newcomers
            newcomers.clear()

    def _offer_all(self, sinks: set[Sink], frame: str, channel: str, symbol: str) -> None:
        behind = []
        for sink in sinks:
            if sink.offer(frame):
                self.frames_offered += 1
            else:
                behind.append(sink)
        for sink in behind:
            self._resync(sink, channel, symbol)

    def _resync(self, sink: Sink, channel: str, symbol: str) -> None:
        """Start the sink over: its queue was dropped, so every stream it follows gets a fresh
        snapshot (book) or current state (ticker, candle) at the next flush."""
        if not sink.resync(channel, symbol):
            self.drop(sink)
            return
        for feed in self._symbols.values():
            streams = [(g.members, g.newcomers) for g in feed.books.values()]
            streams += [feed.ticker, feed.auction, *feed.candle_subscribers.values()]
            for members, newcomers in streams:
                if sink in members:
                    members.discard(sink)
                    newcomers.add(sink)


def session_status(core: ExchangeCore, symbol: str, sequence: int) -> dict[str, Any]:
    """A market's phase, halt, band and (in a call phase) indicative auction price."""
    market = core.markets[symbol]
    rules = market.book.rules
    indicative = core.indicative_price(symbol)
    reason = core.halted.get(symbol)
    reopen_at_ns = market.session.reopen_at_ns
    return {
        "channel": "auction",
        "symbol": symbol,
        "session": market.session.session.value,
        "status": "open" if reason is None else "halted",
        "halt_reason": reason,
        "reopen_at": rfc3339(reopen_at_ns) if reopen_at_ns else None,
        "reference_price": rules.reference_price,
        "band_low": rules.band_low,
        "band_high": rules.band_high,
        "indicative": None
        if indicative is None
        else {
            "price": indicative.price,
            "volume": indicative.volume,
            "imbalance": indicative.imbalance,
        },
        "sequence": sequence,
    }


def _best_first(change: list[Any]) -> tuple[str, int]:
    side, price = change[0], change[1]
    return side, -price if side == "buy" else price
