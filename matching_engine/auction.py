"""The call auction: one price at which the orders collected in a call phase trade at once.

Used at the opening (after `pre_open`), at the close (after `closing`) and when a market reopens
after a circuit-breaker halt. The book calls it only then; continuous matching never comes here.

The uncrossing price, among the prices within the band (`_Call.candidates` narrows them down
to the few that can win, without changing the outcome):

1. the price that executes the largest volume;
2. then the one with the smallest imbalance |buy volume - sell volume| at that price;
3. then the one nearest the reference price;
4. then, two prices equally near the reference, the lower one.

Which orders take part at price p: buys with a limit at or above p, sells at or below p, and
every market order (they cannot rest beyond the auction: what is left of them is cancelled).
Priority: market orders first, then by price (best first), then time (the book's own queues).
Fills are handed out in that priority; an all-or-none order takes part only if it fills whole
(it is passed over otherwise and keeps its place), which the volume in rule 1 already counts.

Self-trade prevention, first: continuous trading never lets a participant's order rest
across its own (the later one is cancelled), so before pricing, each order that crosses an
earlier order of its own participant on the other side is cancelled (`SELF_TRADE`), taking
the orders in time order. No participant is then on both sides at any price.

Pairing: each buy's fill is taken from the sells in priority order; each trade is at the
auction price, the earlier order (smaller order id) is the maker and the later one the taker.
(Pairing still steps over a sell of the buyer's own participant, as a second guard.) An
all-or-none order that would end up filled only in part sits the auction out (and the
auction is worked out again without it).

Rule 4 rarely decides: between two prices equally near the reference, the reference price
itself has at least the volume and at most the imbalance of both (the buy volume falls and the
sell volume rises with the price), so it wins; only all-or-none orders, whose volume is not
monotonic, can leave two prices equally near the reference tied on all else.
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right
from collections.abc import Iterable, Iterator, Sequence
from itertools import accumulate, pairwise
from typing import TYPE_CHECKING

import msgspec

from matching_engine.enums import CancelReason, Side
from matching_engine.events import EngineEvent, OrderCancelled, Trade
from matching_engine.orders import Order

if TYPE_CHECKING:
    from matching_engine.book import OrderBook

_NO_LIMIT = 1 << 62  # a market buy's effective limit: above every price


class AuctionPrice(msgspec.Struct, frozen=True):
    """The outcome of the price determination: what an uncross now would do.

    `imbalance` is the buy volume minus the sell volume at `price` (negative: sell surplus).
    """

    price: int
    volume: int
    imbalance: int


class _Allocation(msgspec.Struct):
    order: Order
    quantity: int


def _limit(order: Order, market_ids: frozenset[int] | set[int]) -> int:
    if order.order_id in market_ids:
        return _NO_LIMIT if order.side is Side.BUY else 0
    return order.price


def _in_priority(
    orders: Iterable[Order], market_ids: frozenset[int] | set[int], excluded: set[int]
) -> list[Order]:
    """Market orders first, then the book's own price-time order (a stable sort keeps FIFO)."""
    kept = [o for o in orders if o.order_id not in excluded]
    kept.sort(key=lambda o: o.order_id not in market_ids)
    return kept


def _fill_to(orders: Sequence[Order], cap: int) -> list[_Allocation]:
    """Hand out `cap` lots in priority order; an all-or-none order only whole."""
    allocations = []
    left = cap
    for order in orders:
        if left == 0:
            break
        quantity = order.remaining
        if quantity > left:
            if order.all_or_none:
                continue
            quantity = left
        allocations.append(_Allocation(order, quantity))
        left -= quantity
    return allocations


def _executable(buys: Sequence[Order], sells: Sequence[Order], all_or_none: bool) -> int:
    """The volume both sides can fill exactly: a fixed point when all-or-none orders skip."""
    volume = min(sum(o.remaining for o in buys), sum(o.remaining for o in sells))
    if not all_or_none:
        return volume
    while volume:
        bought = sum(a.quantity for a in _fill_to(buys, volume))
        sold = sum(a.quantity for a in _fill_to(sells, volume))
        fillable = min(bought, sold)
        if fillable == volume:
            break
        volume = fillable
    return volume


class _Call:
    """Both sides of one book as the auction sees them."""

    def __init__(
        self,
        book: OrderBook,
        market_ids: frozenset[int] | set[int],
        excluded: set[int],
    ) -> None:
        self.market_ids = market_ids
        self.rules = book.rules
        self.buys = _in_priority(book.resting_orders(Side.BUY), market_ids, excluded)
        self.sells = _in_priority(book.resting_orders(Side.SELL), market_ids, excluded)
        self.all_or_none = any(o.all_or_none for o in (*self.buys, *self.sells))

    def at(self, price: int) -> tuple[list[Order], list[Order]]:
        ids = self.market_ids
        buys = [o for o in self.buys if _limit(o, ids) >= price]
        sells = [o for o in self.sells if _limit(o, ids) <= price]
        return buys, sells

    def candidates(self, reference_price: int) -> list[int]:
        """The prices that can win: every limit price and the reference price, and, for each
        gap between two of them, the prices one tick inside it (all prices inside a gap trade
        the same volume with the same imbalance, which can beat both ends; the reference, or
        else the end of the gap nearest to it, is the one rule 3 picks), within the band."""
        limits = {o.price for o in (*self.buys, *self.sells) if o.order_id not in self.market_ids}
        prices = sorted(limits | {reference_price})
        tick = self.rules.tick_size
        inside = {prices[0] - tick, prices[-1] + tick}
        for low, high in pairwise(prices):
            if high - low > tick:
                inside.update((low + tick, high - tick))
        band_low, band_high = self.rules.band_low, self.rules.band_high
        return sorted(p for p in inside.union(prices) if band_low <= p <= band_high)

    def price(self, reference_price: int) -> AuctionPrice | None:
        best: tuple[tuple[int, int, int, int], AuctionPrice] | None = None
        for price, volume, imbalance in self._volumes(reference_price):
            if volume == 0:
                continue
            key = (-volume, abs(imbalance), abs(price - reference_price), price)
            if best is None or key < best[0]:
                best = key, AuctionPrice(price, volume, imbalance)
        return best[1] if best is not None else None

    def _volumes(self, reference_price: int) -> Iterator[tuple[int, int, int]]:
        """(price, executable volume, imbalance) at every candidate price.

        Without all-or-none orders the volume is min(buys at or above, sells at or below),
        read off cumulative sums in O(log n) per price; all-or-none orders need the
        fixed point of `_executable`, one pass over the eligible orders per price.
        """
        candidates = self.candidates(reference_price)
        if self.all_or_none:
            for price in candidates:
                buys, sells = self.at(price)
                imbalance = sum(o.remaining for o in buys) - sum(o.remaining for o in sells)
                yield price, _executable(buys, sells, True), imbalance
            return
        ids = self.market_ids
        buy_limits = sorted((_limit(o, ids), o.remaining) for o in self.buys)
        sell_limits = sorted((_limit(o, ids), o.remaining) for o in self.sells)
        buy_prices = [limit for limit, _ in buy_limits]
        sell_prices = [limit for limit, _ in sell_limits]
        buy_from = list(accumulate((q for _, q in reversed(buy_limits)), initial=0))[::-1]
        sell_upto = list(accumulate((q for _, q in sell_limits), initial=0))
        for price in candidates:
            bought = buy_from[bisect_left(buy_prices, price)]  # limits at or above the price
            sold = sell_upto[bisect_right(sell_prices, price)]  # limits at or below it
            yield price, min(bought, sold), bought - sold


def indicative_price(
    book: OrderBook, reference_price: int, market_ids: frozenset[int] | set[int] = frozenset()
) -> AuctionPrice | None:
    """The price and volume an uncross would have now (None: nothing would trade)."""
    return _Call(book, market_ids, self_crossing(book, market_ids)).price(reference_price)


def self_crossing(book: OrderBook, market_ids: frozenset[int] | set[int]) -> set[int]:
    """Orders that cross an earlier order of the same participant on the other side.

    Continuous trading never lets that rest (self-trade prevention cancels the incoming,
    later order), so the auction does the same before it prices: taken in time order, each
    participant's order that crosses one of its own earlier, surviving orders is cancelled.
    """
    orders = sorted(
        (*book.resting_orders(Side.BUY), *book.resting_orders(Side.SELL)),
        key=lambda o: o.order_id,
    )
    highest_buy: dict[int, int] = {}  # participant -> highest limit of its surviving buys
    lowest_sell: dict[int, int] = {}
    crossing: set[int] = set()
    for order in orders:
        owner, limit = order.participant_id, _limit(order, market_ids)
        if order.side is Side.BUY:
            if owner in lowest_sell and limit >= lowest_sell[owner]:
                crossing.add(order.order_id)
            else:
                highest_buy[owner] = max(limit, highest_buy.get(owner, limit))
        elif owner in highest_buy and limit <= highest_buy[owner]:
            crossing.add(order.order_id)
        else:
            lowest_sell[owner] = min(limit, lowest_sell.get(owner, limit))
    return crossing


def _pair(buys: list[_Allocation], sells: list[Order]) -> list[tuple[Order, Order, int]]:
    """Each buy's allocation from the sells in priority order, never a participant's own:
    a sell of the buyer's own participant is stepped over and the fill goes to the next one."""
    pairs = []
    left = [order.remaining for order in sells]
    first = 0  # every sell before it is used up
    for buy in buys:
        wanted = buy.quantity
        while first < len(sells) and left[first] == 0:
            first += 1
        for index in range(first, len(sells)):
            if wanted == 0:
                break
            sell = sells[index]
            if left[index] == 0 or sell.participant_id == buy.order.participant_id:
                continue
            quantity = min(wanted, left[index])
            left[index] -= quantity
            wanted -= quantity
            pairs.append((buy.order, sell, quantity))
    return pairs


def _half_paired_all_or_none(pairs: list[tuple[Order, Order, int]]) -> set[int]:
    paired: dict[int, int] = {}
    orders: dict[int, Order] = {}
    for buy, sell, quantity in pairs:
        for order in (buy, sell):
            paired[order.order_id] = paired.get(order.order_id, 0) + quantity
            orders[order.order_id] = order
    return {i for i, q in paired.items() if orders[i].all_or_none and q < orders[i].remaining}


def plan(
    book: OrderBook, reference_price: int, market_ids: frozenset[int] | set[int]
) -> tuple[AuctionPrice | None, list[tuple[Order, Order, int]]]:
    """The uncrossing price and the trades at it, (buy, sell, quantity) in priority order."""
    excluded: set[int] = set()
    while True:
        call = _Call(book, market_ids, excluded)
        found = call.price(reference_price)
        if found is None:
            return None, []
        buys, sells = call.at(found.price)
        pairs = _pair(_fill_to(buys, found.volume), sells)
        spoilt = _half_paired_all_or_none(pairs)
        if not spoilt:
            return found, pairs
        excluded |= spoilt


def uncross(
    book: OrderBook, reference_price: int, market_ids: frozenset[int] | set[int]
) -> tuple[AuctionPrice | None, list[EngineEvent]]:
    """Run the auction on `book`: trades, the levels they changed, then the cancelled remainders
    of market orders (they never rest once the auction is over)."""
    events = _cancel(book, self_crossing(book, market_ids), CancelReason.SELF_TRADE)
    found, pairs = plan(book, reference_price, market_ids)
    touched: set[tuple[Side, int]] = set()
    for buy, sell, quantity in pairs:
        assert found is not None
        maker, taker = (buy, sell) if buy.order_id < sell.order_id else (sell, buy)
        book.fill_resting(maker, quantity)
        book.fill_resting(taker, quantity)
        touched.update(((buy.side, buy.price), (sell.side, sell.price)))
        events.append(
            Trade(
                book.symbol,
                book.next_trade_id(),
                found.price,
                quantity,
                taker.side,
                maker.order_id,
                maker.participant_id,
                maker.remaining,
                taker.order_id,
                taker.participant_id,
                taker.remaining,
            )
        )
    for side, price in sorted(touched):
        events.append(book.level_event(side, price))
    events.extend(cancel_market_orders(book, market_ids))
    return found, events


def cancel_market_orders(
    book: OrderBook, market_ids: frozenset[int] | set[int]
) -> list[EngineEvent]:
    """End the market orders still resting after a call (they never rest in continuous
    trading): `NO_LIQUIDITY` when nothing filled, else `IMMEDIATE_OR_CANCEL`."""
    events: list[EngineEvent] = []
    for order_id in sorted(market_ids):
        order = book.order(order_id)
        if order is not None:
            unfilled = order.remaining == order.quantity
            reason = CancelReason.NO_LIQUIDITY if unfilled else CancelReason.IMMEDIATE_OR_CANCEL
            events += _cancel(book, {order_id}, reason)
    return events


def _cancel(book: OrderBook, order_ids: set[int], reason: CancelReason) -> list[EngineEvent]:
    events: list[EngineEvent] = []
    for order_id in sorted(order_ids):
        order = book.order(order_id)
        assert order is not None
        remaining = order.remaining
        events.append(book.remove_order(order))
        events.append(
            OrderCancelled(
                book.symbol, order_id, order.participant_id, order.side, remaining, reason
            )
        )
    return events


__all__ = [
    "AuctionPrice",
    "cancel_market_orders",
    "indicative_price",
    "plan",
    "self_crossing",
    "uncross",
]
