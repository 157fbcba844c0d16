"""One instrument's order book and its matching rules: price-time priority, integer prices.

The rules, in the order a new order meets them:

1. Validation (`BookRules`): tick, band, quantity, contradictory flags. A rejection changes nothing.
2. Post-only: an order that would trade on entry is rejected with `POST_ONLY_WOULD_TAKE`.
3. Fill-or-kill and all-or-none: a dry run first checks that the whole quantity can fill now.
4. Matching walks the opposite side best price first, FIFO within a price, and trades at the
   resting (maker) order's price. A resting all-or-none order larger than what the incoming
   order still needs is passed over (it keeps its place). Meeting a resting order of the same
   participant stops matching: the incoming remainder is cancelled with `SELF_TRADE`.
5. What is left rests (`gtc`, `day`), or is cancelled (`ioc`, `fok`, market orders). Market
   orders never trade beyond the price band's edge; with nothing filled they end `NO_LIQUIDITY`.

Amend: a lower quantity at the same price keeps time priority; a new price or a higher quantity
re-enters the order at the back of its new level, where it may trade at once. A new quantity at
or below what has already filled ends the order.

Call phases (`pre_open`, `closing`, a circuit-breaker reopening): `rest()` accepts orders
without matching and `uncross()` runs the call auction of `matching_engine.auction`; amends pass
`matching=False`. Continuous matching never goes through that code.

Hot path notes: each side keeps its levels in a dict by price and a sorted list of keys whose
last element is the best price (bids keyed by price, asks by -price), so the best level is one
index away; cancels are O(1) through lazy deletion in `PriceLevel`.
"""

from __future__ import annotations

from bisect import bisect_left, insort
from collections.abc import Iterator

from matching_engine import auction
from matching_engine.auction import AuctionPrice
from matching_engine.enums import CancelReason, OrderType, RejectCode, Side, TimeInForce
from matching_engine.events import (
    AmendRejected,
    BookLevelChanged,
    CancelRejected,
    EngineEvent,
    OrderAccepted,
    OrderAmended,
    OrderCancelled,
    OrderExpired,
    OrderRejected,
    Trade,
)
from matching_engine.ids import IdCounters
from matching_engine.level import COMPACTION_SLACK, PriceLevel
from matching_engine.orders import Order, OrderRequest
from matching_engine.rules import BookRules

BUY = Side.BUY
SELL = Side.SELL
MARKET = OrderType.MARKET
IOC = TimeInForce.IOC
FOK = TimeInForce.FOK
DAY = TimeInForce.DAY
# Enum members are bound once: attribute access on an enum class costs ~70 ns on the hot path.
REQUESTED = CancelReason.REQUESTED

_REJECT_MESSAGES = {
    RejectCode.DUPLICATE_ORDER_ID: "order id is not newer than every order id already used",
    RejectCode.INVALID_ORDER: "the order's fields contradict each other",
    RejectCode.TICK_SIZE: "price must be a positive whole number of ticks",
    RejectCode.LOT_SIZE: "quantity must be a positive whole number of lots within the limit",
    RejectCode.PRICE_OUT_OF_BAND: "price is outside the instrument's price band",
    RejectCode.POST_ONLY_WOULD_TAKE: "a post-only order would trade on entry",
    RejectCode.UNKNOWN_ORDER: "no such order",
    RejectCode.ORDER_NOT_OPEN: "the order is no longer open",
    RejectCode.INVALID_AMEND: "an amend must change the price or the quantity",
    RejectCode.NOT_ALLOWED_IN_CALL: "ioc and fok orders cannot wait for a call auction",
}


def reject_message(code: RejectCode) -> str:
    return _REJECT_MESSAGES.get(code, code.value)


class OrderBook:
    """Bids and asks of one instrument; every method returns the events it caused, in order."""

    __slots__ = (
        "_ask_keys",
        "_asks",
        "_band_high",
        "_band_low",
        "_bid_keys",
        "_bids",
        "_ids",
        "_max_quantity",
        "_orders",
        "_tick",
        "rules",
        "symbol",
    )

    def __init__(self, rules: BookRules, ids: IdCounters | None = None) -> None:
        self.rules = rules
        self.symbol = rules.symbol
        self._ids = ids if ids is not None else IdCounters()
        # Copies of the rules read on every order, kept as plain attributes for speed.
        self._band_low = rules.band_low
        self._band_high = rules.band_high
        self._tick = rules.tick_size
        self._max_quantity = rules.max_order_quantity
        self._bids: dict[int, PriceLevel] = {}
        self._asks: dict[int, PriceLevel] = {}
        # Sorted ascending; the last key is the best price: bids by price, asks by -price.
        self._bid_keys: list[int] = []
        self._ask_keys: list[int] = []
        self._orders: dict[int, Order] = {}

    # ------------------------------------------------------------------ commands

    def place(self, request: OrderRequest, *, validated: bool = False) -> list[EngineEvent]:
        """Validate, match and rest (or cancel) one new order.

        `validated=True` skips `validate()` for a caller that has just called it (the exchange
        does, to hold funds only for orders the book accepts); post-only is checked here.
        """
        code = None if validated else self.validate(request)
        side = request.side
        price = request.price
        quantity = request.quantity
        # Post-only implies a limit order (validate() refuses a post-only market order).
        if (
            code is None
            and request.post_only
            and self._would_trade(side, price or 0, request.participant_id, quantity)
        ):
            code = RejectCode.POST_ONLY_WOULD_TAKE
        if code is not None:
            return [
                OrderRejected(
                    self.symbol,
                    request.order_id,
                    request.participant_id,
                    code,
                    reject_message(code),
                )
            ]
        is_market = request.order_type is MARKET
        if is_market:
            limit = self._band_high if side is BUY else self._band_low
        else:
            assert price is not None
            limit = price
        tif = request.time_in_force
        self._ids.last_order_id = request.order_id
        events: list[EngineEvent] = [
            OrderAccepted(
                self.symbol,
                request.order_id,
                request.participant_id,
                side,
                request.order_type,
                price,
                quantity,
                tif,
                request.post_only,
                request.all_or_none,
            )
        ]
        order = Order(
            request.order_id,
            request.participant_id,
            side,
            limit,
            quantity,
            quantity,
            tif,
            request.post_only,
            request.all_or_none,
        )
        self._enter(order, is_market or tif is IOC or tif is FOK, is_market, events)
        return events

    def validate(self, request: OrderRequest) -> RejectCode | None:
        """Why `request` breaks a static rule of this book, or None (post-only aside).

        The rules of `BookRules` on price and quantity, contradictory flags and the order id.
        Runs for every new order, hence the plain attributes rather than the rules' methods.
        """
        price = request.price
        is_market = request.order_type is MARKET
        # Contradictory fields first (one code, INVALID_ORDER), then price, size and id.
        if request.post_only:
            tif = request.time_in_force
            if is_market or tif is IOC or tif is FOK:
                return RejectCode.INVALID_ORDER
        if is_market:
            if price is not None:
                return RejectCode.INVALID_ORDER
        elif price is None:
            return RejectCode.INVALID_ORDER
        elif price <= 0 or price % self._tick:
            return RejectCode.TICK_SIZE
        elif price < self._band_low or price > self._band_high:
            return RejectCode.PRICE_OUT_OF_BAND
        quantity = request.quantity
        if quantity <= 0 or quantity > self._max_quantity:
            return RejectCode.LOT_SIZE
        if request.order_id <= self._ids.last_order_id:
            return RejectCode.DUPLICATE_ORDER_ID
        return None

    def cancel(self, order_id: int) -> list[EngineEvent]:
        """Cancel an open order at the participant's request."""
        order = self._orders.get(order_id)
        if order is None:
            code = self._not_open_code(order_id)
            return [CancelRejected(self.symbol, order_id, code, reject_message(code))]
        level_changed = self._remove_resting(order)
        return [
            level_changed,
            OrderCancelled(
                self.symbol, order_id, order.participant_id, order.side, order.remaining, REQUESTED
            ),
        ]

    def amend(
        self,
        order_id: int,
        price: int | None = None,
        quantity: int | None = None,
        *,
        matching: bool = True,
    ) -> list[EngineEvent]:
        """Change an open order's price and/or total quantity (see the module rules).

        `matching=False` (a call phase): an order that loses priority re-enters at the back of
        its new level without trading, whatever it crosses.
        """
        order = self._orders.get(order_id)
        code = self.amend_error(order_id, price, quantity)
        if code is not None:
            return [AmendRejected(self.symbol, order_id, code, reject_message(code))]
        assert order is not None
        new_price = order.price if price is None else price
        new_quantity = order.quantity if quantity is None else quantity
        filled = order.filled
        events: list[EngineEvent] = []
        if new_quantity <= filled:
            events.append(self._remove_resting(order))
            events.append(
                OrderCancelled(
                    self.symbol,
                    order_id,
                    order.participant_id,
                    order.side,
                    order.remaining,
                    CancelReason.AMENDED_BELOW_FILLED,
                )
            )
            return events
        if new_price == order.price and new_quantity <= order.quantity:
            self._reduce_in_place(order, new_quantity, events)
            return events
        # A new price or a larger quantity loses time priority: the order re-enters the book.
        if (
            matching
            and order.post_only
            and self._would_trade(
                order.side, new_price, order.participant_id, new_quantity - filled
            )
        ):
            code = RejectCode.POST_ONLY_WOULD_TAKE
            return [AmendRejected(self.symbol, order_id, code, reject_message(code))]
        events.append(self._remove_resting(order))
        replacement = Order(
            order_id,
            order.participant_id,
            order.side,
            new_price,
            new_quantity,
            new_quantity - filled,
            order.time_in_force,
            order.post_only,
            order.all_or_none,
        )
        events.append(
            OrderAmended(
                self.symbol,
                order_id,
                order.participant_id,
                order.side,
                new_price,
                new_quantity,
                replacement.remaining,
                False,
            )
        )
        if matching:
            self._enter(replacement, False, False, events)
        else:
            self._rest(replacement, events)
        return events

    def expire_day_orders(self, below_order_id: int | None = None) -> list[EngineEvent]:
        """End every open `day` order (the close of its trading day), oldest order first.

        With `below_order_id`, only those with a smaller id. Ids grow as orders arrive, so
        these are the orders that arrived before the one given that id: a day that ends at an
        instant ends the orders placed before it, not those placed since."""
        events: list[EngineEvent] = []
        expiring = [
            order
            for order in self._orders.values()
            if order.time_in_force is DAY
            and (below_order_id is None or order.order_id < below_order_id)
        ]
        for order in sorted(expiring, key=lambda o: o.order_id):
            events.append(self._remove_resting(order))
            events.append(
                OrderExpired(
                    self.symbol, order.order_id, order.participant_id, order.side, order.remaining
                )
            )
        return events

    # ------------------------------------------------------------------ call phases (cold path)

    def rest(self, request: OrderRequest) -> list[EngineEvent]:
        """Accept an order in a call phase: it rests without trading, even across the book.

        A market order rests at the edge of the band (its priority is the auction's business);
        immediate orders (`ioc`, `fok`) cannot wait for an auction: `NOT_ALLOWED_IN_CALL`.
        """
        code = self.validate(request)
        if code is None and request.time_in_force in (IOC, FOK):
            code = RejectCode.NOT_ALLOWED_IN_CALL
        if code is not None:
            return [
                OrderRejected(
                    self.symbol,
                    request.order_id,
                    request.participant_id,
                    code,
                    reject_message(code),
                )
            ]
        # The acceptance below repeats place()'s on purpose: place() keeps it inline for speed.
        side = request.side
        if request.order_type is MARKET:
            limit = self._band_high if side is BUY else self._band_low
        else:
            assert request.price is not None
            limit = request.price
        self._ids.last_order_id = request.order_id
        events: list[EngineEvent] = [
            OrderAccepted(
                self.symbol,
                request.order_id,
                request.participant_id,
                side,
                request.order_type,
                request.price,
                request.quantity,
                request.time_in_force,
                request.post_only,
                request.all_or_none,
            )
        ]
        order = Order(
            request.order_id,
            request.participant_id,
            side,
            limit,
            request.quantity,
            request.quantity,
            request.time_in_force,
            request.post_only,
            request.all_or_none,
        )
        self._rest(order, events)
        return events

    def uncross(
        self, reference_price: int, market_order_ids: frozenset[int] | set[int] = frozenset()
    ) -> tuple[AuctionPrice | None, list[EngineEvent]]:
        """Run the call auction (see `matching_engine.auction`); `market_order_ids` are the
        resting orders that came in as market orders."""
        return auction.uncross(self, reference_price, market_order_ids)

    def indicative_price(
        self, reference_price: int, market_order_ids: frozenset[int] | set[int] = frozenset()
    ) -> AuctionPrice | None:
        return auction.indicative_price(self, reference_price, market_order_ids)

    def set_rules(self, rules: BookRules) -> None:
        """New rules for the orders to come (a new reference price moves the band); resting
        orders stay where they are."""
        assert rules.symbol == self.symbol
        self.rules = rules
        self._band_low = rules.band_low
        self._band_high = rules.band_high
        self._tick = rules.tick_size
        self._max_quantity = rules.max_order_quantity

    def fill_resting(self, order: Order, quantity: int) -> None:
        """Take `quantity` lots off a resting order (an auction fill); its level's event is the
        caller's to send, once, when all fills are done (`level_event`)."""
        assert order.live and 0 < quantity <= order.remaining
        order.remaining -= quantity
        book = self._bids if order.side is BUY else self._asks
        level = book[order.price]
        level.quantity -= quantity
        if order.remaining == 0:
            order.live = False
            del self._orders[order.order_id]
            level.count -= 1
            if level.count == 0:
                del book[order.price]
                self._drop_key(order.side, order.price)

    def level_event(self, side: Side, price: int) -> BookLevelChanged:
        level = (self._bids if side is BUY else self._asks).get(price)
        if level is None:
            return BookLevelChanged(self.symbol, side, price, 0, 0)
        return BookLevelChanged(self.symbol, side, price, level.quantity, level.count)

    def remove_order(self, order: Order) -> BookLevelChanged:
        """Take an open order out of the book (its closing event is the caller's to send)."""
        return self._remove_resting(order)

    def next_trade_id(self) -> int:
        self._ids.last_trade_id += 1
        return self._ids.last_trade_id

    # ------------------------------------------------------------------ queries

    def depth(self, side: Side, levels: int | None = None) -> list[tuple[int, int, int]]:
        """Aggregated levels `(price, total quantity, order count)`, best first."""
        book = self._bids if side is BUY else self._asks
        keys = self._bid_keys if side is BUY else self._ask_keys
        count = len(keys) if levels is None else min(levels, len(keys))
        out = []
        for i in range(len(keys) - 1, len(keys) - 1 - count, -1):
            level = book[keys[i] if side is BUY else -keys[i]]
            out.append((level.price, level.quantity, level.count))
        return out

    def best_bid(self) -> int | None:
        return self._bid_keys[-1] if self._bid_keys else None

    def best_ask(self) -> int | None:
        return -self._ask_keys[-1] if self._ask_keys else None

    def order(self, order_id: int) -> Order | None:
        """The open order with this id (a live view: do not mutate), or None."""
        return self._orders.get(order_id)

    def open_order_count(self) -> int:
        return len(self._orders)

    def resting_orders(self, side: Side) -> Iterator[Order]:
        """Live orders of one side in priority order: best price first, FIFO within a price."""
        book = self._bids if side is BUY else self._asks
        keys = self._bid_keys if side is BUY else self._ask_keys
        for i in range(len(keys) - 1, -1, -1):
            yield from book[keys[i] if side is BUY else -keys[i]].live_orders()

    def restore_order(self, order: Order) -> None:
        """Put an open order back at the back of its level (snapshot loading, in priority order)."""
        assert order.live and 0 < order.remaining <= order.quantity
        assert order.order_id not in self._orders
        self._orders[order.order_id] = order
        level = self._level_for(order.side, order.price)
        level.orders.append(order)
        level.quantity += order.remaining
        level.count += 1

    # ------------------------------------------------------------------ validation

    def amend_error(
        self, order_id: int, price: int | None, quantity: int | None
    ) -> RejectCode | None:
        """Why an amend breaks a static rule (post-only aside), or None."""
        order = self._orders.get(order_id)
        if order is None:
            return self._not_open_code(order_id)
        if price is None and quantity is None:
            return RejectCode.INVALID_AMEND
        if price is not None:
            code = self.rules.price_error(price)
            if code is not None:
                return code
        if quantity is not None:
            return self.rules.quantity_error(quantity)
        return None

    def _not_open_code(self, order_id: int) -> RejectCode:
        # Ids are handed out in increasing order, so an id at or below the newest one was used.
        if 0 < order_id <= self._ids.last_order_id:
            return RejectCode.ORDER_NOT_OPEN
        return RejectCode.UNKNOWN_ORDER

    # ------------------------------------------------------------------ matching

    def _enter(
        self, order: Order, immediate: bool, is_market: bool, events: list[EngineEvent]
    ) -> None:
        """Match an incoming order, then rest its remainder or cancel it."""
        if order.side is BUY:
            opposite_keys = self._ask_keys
            bound = -order.price
        else:
            opposite_keys = self._bid_keys
            bound = order.price
        self_trade = False
        if opposite_keys and opposite_keys[-1] >= bound:
            if order.all_or_none or order.time_in_force is FOK:
                fillable, self_trade = self._dry_run(
                    order.side, order.price, order.participant_id, order.remaining
                )
                if fillable == order.remaining:
                    self_trade = self._take(order, events)
            else:
                self_trade = self._take(order, events)
        remaining = order.remaining
        if remaining == 0:
            return
        if self_trade or immediate:
            reason = self._unfilled_reason(order, is_market, self_trade)
            events.append(
                OrderCancelled(
                    self.symbol, order.order_id, order.participant_id, order.side, remaining, reason
                )
            )
            return
        # Rest at the back of its price level (inlined: most orders end here).
        price = order.price
        self._orders[order.order_id] = order
        if order.side is BUY:
            level = self._bids.get(price)
            if level is None:
                level = self._bids[price] = PriceLevel(price)
                insort(self._bid_keys, price)
        else:
            level = self._asks.get(price)
            if level is None:
                level = self._asks[price] = PriceLevel(price)
                insort(self._ask_keys, -price)
        level.orders.append(order)
        level.quantity += remaining
        level.count += 1
        events.append(BookLevelChanged(self.symbol, order.side, price, level.quantity, level.count))

    @staticmethod
    def _unfilled_reason(order: Order, is_market: bool, self_trade: bool) -> CancelReason:
        if self_trade:
            return CancelReason.SELF_TRADE
        if is_market and order.remaining == order.quantity:
            return CancelReason.NO_LIQUIDITY
        if order.time_in_force is FOK or order.all_or_none:
            return CancelReason.FILL_OR_KILL
        return CancelReason.IMMEDIATE_OR_CANCEL

    def _take(self, taker: Order, events: list[EngineEvent]) -> bool:
        """Trade `taker` against the opposite side; True when stopped by self-trade prevention."""
        if taker.side is BUY:
            keys = self._ask_keys
            book = self._asks
            bound = -taker.price
            sign = -1
        else:
            keys = self._bid_keys
            book = self._bids
            bound = taker.price
            sign = 1
        i = len(keys) - 1
        while i >= 0:
            key = keys[i]
            if key < bound:
                return False
            level = book[key * sign]
            self_trade = self._take_from_level(taker, level, events)
            if level.count == 0:
                del book[level.price]
                del keys[i]
            if self_trade:
                return True
            if taker.remaining == 0:
                return False
            i -= 1
        return False

    def _take_from_level(self, taker: Order, level: PriceLevel, events: list[EngineEvent]) -> bool:
        """Trade against one level in time priority; True when stopped by self-trade prevention."""
        orders = level.orders
        idx = level.head
        end = len(orders)
        remaining = taker.remaining
        taker_participant = taker.participant_id
        at_head = True  # entries before idx are all dead, so the head may move up to idx
        self_trade = False
        traded = 0
        live_orders = self._orders
        ids = self._ids
        symbol = self.symbol
        while idx < end:
            maker = orders[idx]
            if not maker.live:
                idx += 1
                if at_head:
                    level.head = idx
                continue
            if maker.all_or_none and maker.remaining > remaining:
                at_head = False  # passed over: it keeps its place
                idx += 1
                continue
            if maker.participant_id == taker_participant:
                self_trade = True
                break
            fill = remaining if remaining < maker.remaining else maker.remaining
            maker.remaining -= fill
            remaining -= fill
            traded += fill
            ids.last_trade_id += 1
            events.append(
                Trade(
                    symbol,
                    ids.last_trade_id,
                    maker.price,
                    fill,
                    taker.side,
                    maker.order_id,
                    maker.participant_id,
                    maker.remaining,
                    taker.order_id,
                    taker_participant,
                    remaining,
                )
            )
            if maker.remaining == 0:
                maker.live = False
                level.count -= 1
                del live_orders[maker.order_id]
                idx += 1
                if at_head:
                    level.head = idx
            if remaining == 0:
                break
        taker.remaining = remaining
        if traded:
            level.quantity -= traded
            events.append(
                BookLevelChanged(symbol, maker.side, level.price, level.quantity, level.count)
            )
            if level.count and len(orders) - level.head > 2 * level.count + COMPACTION_SLACK:
                level.compact()
        return self_trade

    def _dry_run(
        self, side: Side, limit: int, participant_id: int, quantity: int
    ) -> tuple[int, bool]:
        """How much of `quantity` would fill now, and whether self-trade prevention would stop it.

        Walks exactly as `_take` would, without changing anything.
        """
        if side is BUY:
            keys = self._ask_keys
            book = self._asks
            bound = -limit
            sign = -1
        else:
            keys = self._bid_keys
            book = self._bids
            bound = limit
            sign = 1
        remaining = quantity
        for i in range(len(keys) - 1, -1, -1):
            key = keys[i]
            if key < bound:
                break
            level = book[key * sign]
            for maker in level.orders[level.head :]:
                if not maker.live or (maker.all_or_none and maker.remaining > remaining):
                    continue
                if maker.participant_id == participant_id:
                    return quantity - remaining, True
                remaining -= remaining if remaining < maker.remaining else maker.remaining
                if remaining == 0:
                    return quantity, False
        return quantity - remaining, False

    def _would_trade(self, side: Side, limit: int, participant_id: int, quantity: int) -> bool:
        keys = self._ask_keys if side is BUY else self._bid_keys
        bound = -limit if side is BUY else limit
        if not keys or keys[-1] < bound:
            return False
        fillable, _ = self._dry_run(side, limit, participant_id, quantity)
        return fillable > 0

    # ------------------------------------------------------------------ resting orders

    def _rest(self, order: Order, events: list[EngineEvent]) -> None:
        """Put a new order at the back of its level without matching (call phases)."""
        self._orders[order.order_id] = order
        level = self._level_for(order.side, order.price)
        level.orders.append(order)
        level.quantity += order.remaining
        level.count += 1
        events.append(
            BookLevelChanged(self.symbol, order.side, order.price, level.quantity, level.count)
        )

    def _level_for(self, side: Side, price: int) -> PriceLevel:
        if side is BUY:
            level = self._bids.get(price)
            if level is None:
                level = self._bids[price] = PriceLevel(price)
                insort(self._bid_keys, price)
        else:
            level = self._asks.get(price)
            if level is None:
                level = self._asks[price] = PriceLevel(price)
                insort(self._ask_keys, -price)
        return level

    def _remove_resting(self, order: Order) -> BookLevelChanged:
        """Take an open order out of the book; its queue entry dies in place (lazy deletion)."""
        del self._orders[order.order_id]
        order.live = False
        side = order.side
        price = order.price
        book = self._bids if side is BUY else self._asks
        level = book[price]
        level.quantity -= order.remaining
        level.count -= 1
        if level.count == 0:
            del book[price]
            self._drop_key(side, price)
        elif len(level.orders) - level.head > 2 * level.count + COMPACTION_SLACK:
            level.compact()
        return BookLevelChanged(self.symbol, side, price, level.quantity, level.count)

    def _drop_key(self, side: Side, price: int) -> None:
        keys = self._bid_keys if side is BUY else self._ask_keys
        key = price if side is BUY else -price
        if keys[-1] == key:  # the common case: the best level emptied
            keys.pop()
        else:
            index = bisect_left(keys, key)
            assert keys[index] == key
            del keys[index]

    def _reduce_in_place(self, order: Order, new_quantity: int, events: list[EngineEvent]) -> None:
        """Lower an order's total quantity without losing its place in the queue."""
        book = self._bids if order.side is BUY else self._asks
        level = book[order.price]
        reduction = order.quantity - new_quantity
        order.quantity = new_quantity
        order.remaining -= reduction
        level.quantity -= reduction
        events.append(
            OrderAmended(
                self.symbol,
                order.order_id,
                order.participant_id,
                order.side,
                order.price,
                new_quantity,
                order.remaining,
                True,
            )
        )
        if reduction:
            events.append(
                BookLevelChanged(self.symbol, order.side, level.price, level.quantity, level.count)
            )
