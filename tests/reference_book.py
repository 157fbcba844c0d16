"""A deliberately simple, slow reference model of hogx's order books, for tests only.

It is written from the rulebook, not from `matching_engine`: every resting order of a book sits
in ONE plain list kept sorted by (side, price priority, arrival number), and every question
(what would this order trade with? what does the depth look like?) is answered by walking that
list from the start. Nothing is cached, nothing is lazy, nothing is clever.

What it reports is a list of plain tuples, one per event, in the order they happen:

    ("accepted", symbol, order_id, participant_id, side, order_type, price, quantity,
     time_in_force, post_only, all_or_none)
    ("rejected", symbol, order_id, participant_id, code)
    ("trade", symbol, trade_id, price, quantity, aggressor_side, maker_order_id,
     maker_participant_id, maker_remaining, taker_order_id, taker_participant_id,
     taker_remaining)
    ("cancelled", symbol, order_id, participant_id, side, quantity, reason)
    ("amended", symbol, order_id, participant_id, side, price, quantity, remaining,
     priority_kept)
    ("amend_rejected", symbol, order_id, code)
    ("cancel_rejected", symbol, order_id, code)
    ("expired", symbol, order_id, participant_id, side, quantity)

Market-data level changes are not modelled event by event: the tests compare the engine's
levels with `ReferenceBook.depth`, which is aggregated from the list on every call.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from fractions import Fraction

from matching_engine.enums import CancelReason, OrderType, RejectCode, Side, TimeInForce
from matching_engine.orders import OrderRequest

BUY = Side.BUY
SELL = Side.SELL

RefEvent = tuple[object, ...]


@dataclass
class RefOrder:
    """An order while it is open (or while it is being matched, before it rests)."""

    order_id: int
    participant_id: int
    side: Side
    price: int  # the limit; for a market order the band edge it may trade up to
    quantity: int  # total ordered, including what has filled
    remaining: int
    time_in_force: TimeInForce
    post_only: bool
    all_or_none: bool
    arrival: int = 0  # position in time priority, set when it rests

    @property
    def filled(self) -> int:
        return self.quantity - self.remaining


class RefIds:
    """What every book of one exchange shares: the newest accepted order id, trade ids, and
    the arrival counter (a single clock is simplest: only its order within a level matters)."""

    def __init__(self) -> None:
        self.last_order_id = 0
        self.last_trade_id = 0
        self.last_arrival = 0


def priority_key(order: RefOrder) -> tuple[int, int, int]:
    """Bids before asks; then better price first (higher bid, lower ask); then earlier arrival."""
    if order.side is BUY:
        return (0, -order.price, order.arrival)
    return (1, order.price, order.arrival)


def price_acceptable(taker_side: Side, limit: int, maker_price: int) -> bool:
    """Would a taker on `taker_side` with this limit accept a trade at `maker_price`?"""
    if taker_side is BUY:
        return maker_price <= limit
    return maker_price >= limit


class ReferenceBook:
    def __init__(
        self,
        symbol: str,
        tick_size: int,
        reference_price: int,
        price_band_pct: int,
        max_order_quantity: int,
        ids: RefIds,
    ) -> None:
        self.symbol = symbol
        self.tick = tick_size
        self.max_quantity = max_order_quantity
        self.ids = ids
        # The band, rounded inwards to whole ticks, computed with exact fractions.
        low = Fraction(reference_price) * (100 - price_band_pct) / 100
        high = Fraction(reference_price) * (100 + price_band_pct) / 100
        low_ticks = math.ceil(low / tick_size)
        high_ticks = math.floor(high / tick_size)
        self.band_low = max(low_ticks, 1) * tick_size
        self.band_high = high_ticks * tick_size
        self.resting: list[RefOrder] = []  # both sides, always sorted by priority_key

    # ------------------------------------------------------------------ queries

    def resting_on(self, side: Side) -> list[RefOrder]:
        return [order for order in self.resting if order.side is side]

    def open_order(self, order_id: int) -> RefOrder | None:
        for order in self.resting:
            if order.order_id == order_id:
                return order
        return None

    def depth(self, side: Side) -> list[tuple[int, int, int]]:
        """(price, total remaining, order count) per price, best price first."""
        out: list[tuple[int, int, int]] = []
        for order in self.resting_on(side):
            if out and out[-1][0] == order.price:
                price, quantity, count = out[-1]
                out[-1] = (price, quantity + order.remaining, count + 1)
            else:
                out.append((order.price, order.remaining, 1))
        return out

    # ------------------------------------------------------------------ validation

    def price_error(self, price: int) -> RejectCode | None:
        if price <= 0 or price % self.tick != 0:
            return RejectCode.TICK_SIZE
        if not self.band_low <= price <= self.band_high:
            return RejectCode.PRICE_OUT_OF_BAND
        return None

    def quantity_error(self, quantity: int) -> RejectCode | None:
        if not 1 <= quantity <= self.max_quantity:
            return RejectCode.LOT_SIZE
        return None

    def order_error(self, request: OrderRequest) -> RejectCode | None:
        """Rule 1, in the rulebook's order: INVALID_ORDER, TICK_SIZE, PRICE_OUT_OF_BAND,
        LOT_SIZE, DUPLICATE_ORDER_ID (POST_ONLY_WOULD_TAKE is checked by `place`)."""
        market = request.order_type is OrderType.MARKET
        if market and request.price is not None:
            return RejectCode.INVALID_ORDER
        if market and request.post_only:
            return RejectCode.INVALID_ORDER
        if not market and request.price is None:
            return RejectCode.INVALID_ORDER
        if request.post_only and request.time_in_force in (TimeInForce.IOC, TimeInForce.FOK):
            return RejectCode.INVALID_ORDER
        if request.price is not None:
            code = self.price_error(request.price)
            if code is not None:
                return code
        code = self.quantity_error(request.quantity)
        if code is not None:
            return code
        if request.order_id <= self.ids.last_order_id:
            return RejectCode.DUPLICATE_ORDER_ID
        return None

    def not_open_code(self, order_id: int) -> RejectCode:
        if 0 < order_id <= self.ids.last_order_id:
            return RejectCode.ORDER_NOT_OPEN
        return RejectCode.UNKNOWN_ORDER

    # ------------------------------------------------------------------ matching

    def walk(
        self, side: Side, limit: int, participant_id: int, quantity: int
    ) -> tuple[list[tuple[RefOrder, int]], bool]:
        """Rules 2-4 without changing anything.

        Returns the (maker, lots) pairs an incoming order would trade, in order, and whether
        self-trade prevention stopped it. Each maker appears at most once, so applying the
        pairs afterwards is exactly the real matching.
        """
        plan: list[tuple[RefOrder, int]] = []
        need = quantity
        for maker in self.resting_on(side.opposite):  # price priority, then FIFO
            if need == 0:
                break
            if not price_acceptable(side, limit, maker.price):
                continue
            if maker.all_or_none and maker.remaining > need:
                continue  # passed over: keeps its place, matching goes on behind it
            if maker.participant_id == participant_id:
                return plan, True
            lots = min(need, maker.remaining)
            plan.append((maker, lots))
            need -= lots
        return plan, False

    def match_incoming(
        self, order: RefOrder, immediate: bool, market: bool, events: list[RefEvent]
    ) -> None:
        """Rules 2-7 for an order that has been accepted (or re-entered by an amend)."""
        plan, self_trade = self.walk(order.side, order.price, order.participant_id, order.remaining)
        all_or_nothing = order.all_or_none or order.time_in_force is TimeInForce.FOK
        if all_or_nothing and sum(lots for _, lots in plan) != order.remaining:
            plan = []  # rule 5: not the whole quantity, so no trades at all
        for maker, lots in plan:
            maker.remaining -= lots
            order.remaining -= lots
            self.ids.last_trade_id += 1
            events.append(
                (
                    "trade",
                    self.symbol,
                    self.ids.last_trade_id,
                    maker.price,
                    lots,
                    order.side,
                    maker.order_id,
                    maker.participant_id,
                    maker.remaining,
                    order.order_id,
                    order.participant_id,
                    order.remaining,
                )
            )
        self.resting = [maker for maker in self.resting if maker.remaining > 0]
        if order.remaining == 0:
            return
        if self_trade or immediate:
            if self_trade:
                reason = CancelReason.SELF_TRADE
            elif market and order.filled == 0:
                reason = CancelReason.NO_LIQUIDITY
            elif order.time_in_force is TimeInForce.FOK or order.all_or_none:
                reason = CancelReason.FILL_OR_KILL
            else:
                reason = CancelReason.IMMEDIATE_OR_CANCEL
            events.append(self.cancelled(order, reason))
            return
        self.ids.last_arrival += 1
        order.arrival = self.ids.last_arrival
        self.resting.append(order)
        self.resting.sort(key=priority_key)

    def cancelled(self, order: RefOrder, reason: CancelReason) -> RefEvent:
        return (
            "cancelled",
            self.symbol,
            order.order_id,
            order.participant_id,
            order.side,
            order.remaining,
            reason,
        )

    def remove(self, order: RefOrder) -> None:
        self.resting = [o for o in self.resting if o.order_id != order.order_id]

    # ------------------------------------------------------------------ commands

    def place(self, request: OrderRequest) -> list[RefEvent]:
        code = self.order_error(request)
        market = request.order_type is OrderType.MARKET
        if request.price is not None:
            limit = request.price
        else:
            limit = self.band_high if request.side is BUY else self.band_low
        if code is None and request.post_only:
            plan, _ = self.walk(request.side, limit, request.participant_id, request.quantity)
            if plan:
                code = RejectCode.POST_ONLY_WOULD_TAKE
        if code is not None:
            return [("rejected", self.symbol, request.order_id, request.participant_id, code)]
        self.ids.last_order_id = request.order_id
        events: list[RefEvent] = [
            (
                "accepted",
                self.symbol,
                request.order_id,
                request.participant_id,
                request.side,
                request.order_type,
                request.price,
                request.quantity,
                request.time_in_force,
                request.post_only,
                request.all_or_none,
            )
        ]
        order = RefOrder(
            request.order_id,
            request.participant_id,
            request.side,
            limit,
            request.quantity,
            request.quantity,
            request.time_in_force,
            request.post_only,
            request.all_or_none,
        )
        immediate = market or request.time_in_force in (TimeInForce.IOC, TimeInForce.FOK)
        self.match_incoming(order, immediate, market, events)
        return events

    def cancel(self, order_id: int) -> list[RefEvent]:
        order = self.open_order(order_id)
        if order is None:
            return [("cancel_rejected", self.symbol, order_id, self.not_open_code(order_id))]
        self.remove(order)
        return [self.cancelled(order, CancelReason.REQUESTED)]

    def amend(
        self, order_id: int, price: int | None = None, quantity: int | None = None
    ) -> list[RefEvent]:
        order = self.open_order(order_id)
        code: RejectCode | None
        if order is None:
            code = self.not_open_code(order_id)
        elif price is None and quantity is None:
            code = RejectCode.INVALID_AMEND
        else:
            code = None
            if price is not None:
                code = self.price_error(price)
            if code is None and quantity is not None:
                code = self.quantity_error(quantity)
        if code is not None:
            return [("amend_rejected", self.symbol, order_id, code)]
        assert order is not None
        new_price = order.price if price is None else price
        new_total = order.quantity if quantity is None else quantity
        filled = order.filled
        if new_total <= filled:
            self.remove(order)
            return [self.cancelled(order, CancelReason.AMENDED_BELOW_FILLED)]
        if new_price == order.price and new_total <= order.quantity:
            order.quantity = new_total
            order.remaining = new_total - filled
            return [self.amended(order, True)]
        new_remaining = new_total - filled
        if order.post_only:
            plan, _ = self.walk(order.side, new_price, order.participant_id, new_remaining)
            if plan:
                return [("amend_rejected", self.symbol, order_id, RejectCode.POST_ONLY_WOULD_TAKE)]
        self.remove(order)
        replacement = RefOrder(
            order.order_id,
            order.participant_id,
            order.side,
            new_price,
            new_total,
            new_remaining,
            order.time_in_force,
            order.post_only,
            order.all_or_none,
        )
        events = [self.amended(replacement, False)]
        self.match_incoming(replacement, False, False, events)
        return events

    def amended(self, order: RefOrder, priority_kept: bool) -> RefEvent:
        return (
            "amended",
            self.symbol,
            order.order_id,
            order.participant_id,
            order.side,
            order.price,
            order.quantity,
            order.remaining,
            priority_kept,
        )

    def expire_day_orders(self, below_order_id: int | None = None) -> list[RefEvent]:
        """Day orders end; with `below_order_id`, only those that arrived before that id."""

        def expires(order: RefOrder) -> bool:
            arrived_before = below_order_id is None or order.order_id < below_order_id
            return order.time_in_force is TimeInForce.DAY and arrived_before

        expiring = [o for o in self.resting if expires(o)]
        self.resting = [o for o in self.resting if not expires(o)]
        return [
            ("expired", self.symbol, o.order_id, o.participant_id, o.side, o.remaining)
            for o in expiring
        ]


class ReferenceExchange:
    """Several reference books sharing order ids and trade ids, like a `MatchingEngine`."""

    def __init__(self) -> None:
        self.ids = RefIds()
        self.books: dict[str, ReferenceBook] = {}

    def add_book(
        self,
        symbol: str,
        tick_size: int,
        reference_price: int,
        price_band_pct: int,
        max_order_quantity: int,
    ) -> ReferenceBook:
        book = ReferenceBook(
            symbol, tick_size, reference_price, price_band_pct, max_order_quantity, self.ids
        )
        self.books[symbol] = book
        return book

    def open_order_ids(self) -> set[int]:
        return {o.order_id for book in self.books.values() for o in book.resting}
