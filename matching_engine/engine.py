"""The matching engine: one order book per instrument, shared id counters, a state digest."""

from __future__ import annotations

import hashlib

import msgspec

from matching_engine.book import reject_message
from matching_engine.enums import RejectCode, Side
from matching_engine.events import (
    AmendRejected,
    CancelRejected,
    EngineEvent,
    OrderRejected,
)
from matching_engine.ids import IdCounters
from matching_engine.implementation import OrderBook
from matching_engine.orders import Order, OrderRequest
from matching_engine.rules import BookRules


class BookState(msgspec.Struct, frozen=True):
    """One book as data: its rules and its open orders in priority order, bids then asks."""

    rules: BookRules
    bids: list[Order]
    asks: list[Order]


class EngineState(msgspec.Struct, frozen=True):
    """The whole engine as data, for snapshots and the digest. Restoring it is exact."""

    last_order_id: int
    last_trade_id: int
    books: list[BookState]


class MatchingEngine:
    """Routes commands to the right book; pure and deterministic (no clock, no I/O)."""

    __slots__ = ("_book_class", "_books", "_ids")

    def __init__(self, book_class: type[OrderBook] = OrderBook) -> None:
        """`book_class`: the implementation of the books (by default the compiled one when it
        is built, see `matching_engine.implementation`); tests pass each in turn."""
        self._book_class = book_class
        self._books: dict[str, OrderBook] = {}
        self._ids = IdCounters()

    # ------------------------------------------------------------------ books

    def add_book(self, rules: BookRules) -> OrderBook:
        if rules.symbol in self._books:
            raise ValueError(f"a book for {rules.symbol} already exists")
        book = self._books[rules.symbol] = self._book_class(rules, self._ids)
        return book

    def book(self, symbol: str) -> OrderBook | None:
        return self._books.get(symbol)

    @property
    def symbols(self) -> list[str]:
        return list(self._books)

    @property
    def last_order_id(self) -> int:
        return self._ids.last_order_id

    @property
    def last_trade_id(self) -> int:
        return self._ids.last_trade_id

    def start_ids_after(self, last_id: int) -> None:
        """Hand out order and trade ids above `last_id` from now on (a shard's own id range).

        Only while no id was used yet, so ids still strictly increase and none is handed out twice.
        """
        ids = self._ids
        assert last_id >= 0, last_id
        assert ids.last_order_id == 0 and ids.last_trade_id == 0, (ids.last_order_id, last_id)
        ids.last_order_id = last_id
        ids.last_trade_id = last_id

    # ------------------------------------------------------------------ commands

    def place(self, symbol: str, request: OrderRequest) -> list[EngineEvent]:
        book = self._books.get(symbol)
        if book is None:
            code = RejectCode.UNKNOWN_INSTRUMENT
            return [
                OrderRejected(
                    symbol, request.order_id, request.participant_id, code, _unknown(symbol)
                )
            ]
        return book.place(request)

    def cancel(self, symbol: str, order_id: int) -> list[EngineEvent]:
        book = self._books.get(symbol)
        if book is None:
            code = RejectCode.UNKNOWN_INSTRUMENT
            return [CancelRejected(symbol, order_id, code, _unknown(symbol))]
        return book.cancel(order_id)

    def amend(
        self, symbol: str, order_id: int, price: int | None = None, quantity: int | None = None
    ) -> list[EngineEvent]:
        book = self._books.get(symbol)
        if book is None:
            code = RejectCode.UNKNOWN_INSTRUMENT
            return [AmendRejected(symbol, order_id, code, _unknown(symbol))]
        return book.amend(order_id, price, quantity)

    # ------------------------------------------------------------------ state

    def state(self) -> EngineState:
        books = [
            BookState(
                book.rules,
                [_copy(o) for o in book.resting_orders(Side.BUY)],
                [_copy(o) for o in book.resting_orders(Side.SELL)],
            )
            for _, book in sorted(self._books.items())
        ]
        return EngineState(self._ids.last_order_id, self._ids.last_trade_id, books)

    @classmethod
    def from_state(
        cls, state: EngineState, book_class: type[OrderBook] = OrderBook
    ) -> MatchingEngine:
        engine = cls(book_class)
        engine._ids.last_order_id = state.last_order_id
        engine._ids.last_trade_id = state.last_trade_id
        for book_state in state.books:
            book = engine.add_book(book_state.rules)
            for order in (*book_state.bids, *book_state.asks):
                book.restore_order(_copy(order))
        return engine

    def digest(self) -> str:
        """SHA-256 over the canonical encoding of the whole state: equal digests, equal engines."""
        return hashlib.sha256(msgspec.msgpack.encode(self.state())).hexdigest()


def _copy(order: Order) -> Order:
    return msgspec.structs.replace(order)


def _unknown(symbol: str) -> str:
    return f"no instrument {symbol!r} is listed"


__all__ = ["BookState", "EngineState", "MatchingEngine", "reject_message"]
