"""Seeded order streams for one instrument, in the shared `.npy` format.

Format: a numpy int64 array of shape (n, 5); each row is `(kind, order_id, side, price, quantity)`.

- kind 0: a new good-till-cancelled limit order. side 0 = buy, 1 = sell; price in whole VND
  (a multiple of the tick), quantity in whole lots (> 0). Order ids are unique.
- kind 1: cancel `order_id`; the side, price and quantity columns are 0 and ignored. The order
  may already have traded away, in which case the cancel does nothing.

Every order belongs to a participant of its own, so self-trade prevention never applies and any
price-time engine must end with the same resting book.

The generator keeps a minimal price-time book of its own so that its cancels name orders that are
really resting and its aggressive orders sweep exactly the levels it means them to.
"""

from __future__ import annotations

import random
from collections import deque
from pathlib import Path

import numpy as np
import numpy.typing as npt

KIND_NEW = 0
KIND_CANCEL = 1
SIDE_BUY = 0
SIDE_SELL = 1

MID_PRICE = 60_000
TICK = 100
BAND_LOW = 55_800  # 60,000 - 7%
BAND_HIGH = 64_200  # 60,000 + 7%
TARGET_RESTING = 3_000

Stream = npt.NDArray[np.int64]


class _SimpleBook:
    """Just enough of a price-time book to know which orders rest and what each level holds."""

    def __init__(self) -> None:
        self.levels: tuple[dict[int, deque[list[int]]], dict[int, deque[list[int]]]] = ({}, {})
        self.live: dict[int, list[int]] = {}  # order id -> [order_id, side, price, remaining]
        self.live_ids: list[int] = []
        self.live_index: dict[int, int] = {}

    def best(self, side: int) -> int | None:
        prices = self.levels[side]
        if not prices:
            return None
        return max(prices) if side == SIDE_BUY else min(prices)

    def sorted_prices(self, side: int) -> list[int]:
        return sorted(self.levels[side], reverse=side == SIDE_BUY)

    def level_quantity(self, side: int, price: int) -> int:
        return sum(entry[3] for entry in self.levels[side][price])

    def rest(self, order_id: int, side: int, price: int, quantity: int) -> None:
        entry = [order_id, side, price, quantity]
        self.levels[side].setdefault(price, deque()).append(entry)
        self.live[order_id] = entry
        self.live_index[order_id] = len(self.live_ids)
        self.live_ids.append(order_id)

    def forget(self, order_id: int) -> None:
        entry = self.live.pop(order_id)
        queue = self.levels[entry[1]][entry[2]]
        queue.remove(entry)
        if not queue:
            del self.levels[entry[1]][entry[2]]
        index = self.live_index.pop(order_id)
        last = self.live_ids.pop()
        if last != order_id:
            self.live_ids[index] = last
            self.live_index[last] = index

    def take(self, side: int, limit: int, quantity: int) -> int:
        """Match an incoming order; returns the unfilled quantity."""
        opposite = 1 - side
        while quantity:
            best = self.best(opposite)
            if best is None or (best > limit if side == SIDE_BUY else best < limit):
                break
            queue = self.levels[opposite][best]
            maker = queue[0]
            fill = min(quantity, maker[3])
            maker[3] -= fill
            quantity -= fill
            if maker[3] == 0:
                self.forget(maker[0])
        return quantity


def generate(messages: int = 1_000_000, seed: int = 1) -> Stream:
    """About 60% passive limits near the mid, 30% cancels of resting orders, 10% sweeps of 1-3
    levels, holding roughly `TARGET_RESTING` orders in the book."""
    rng = random.Random(seed)
    book = _SimpleBook()
    rows = np.zeros((messages, 5), dtype=np.int64)
    next_id = 1
    for i in range(messages):
        resting = len(book.live_ids)
        passive_share = 0.68 if resting < TARGET_RESTING else 0.52
        roll = rng.random()
        side = rng.randrange(2)
        if roll >= passive_share + 0.30:
            side = _sweep_side(rng, book)
        if roll >= passive_share + 0.30 and book.best(1 - side) is not None:
            price, quantity = _sweep(rng, book, side)
            left = book.take(side, price, quantity)
            assert left == 0, "a sweep is sized to fill completely"
            rows[i] = (KIND_NEW, next_id, side, price, quantity)
            next_id += 1
        elif roll >= passive_share and resting:
            order_id = book.live_ids[rng.randrange(resting)]
            book.forget(order_id)
            rows[i] = (KIND_CANCEL, order_id, 0, 0, 0)
        else:
            price = _passive_price(rng, book, side)
            quantity = rng.randint(1, 50)
            book.rest(next_id, side, price, quantity)
            rows[i] = (KIND_NEW, next_id, side, price, quantity)
            next_id += 1
    return rows


def _passive_price(rng: random.Random, book: _SimpleBook, side: int) -> int:
    """A price 0-24 ticks behind the mid on the order's own side, so it never crosses."""
    bid, ask = book.best(SIDE_BUY), book.best(SIDE_SELL)
    if bid is not None and ask is not None:
        mid_low, mid_high = (bid + ask) // (2 * TICK) * TICK, -(-(bid + ask) // (2 * TICK)) * TICK
    elif bid is not None:
        mid_low = mid_high = bid + TICK
    elif ask is not None:
        mid_low = mid_high = ask - TICK
    else:
        mid_low = mid_high = MID_PRICE
    depth_ticks = rng.randint(0, 24)
    if side == SIDE_BUY:
        price = mid_low - depth_ticks * TICK
        if ask is not None and price >= ask:
            price = ask - TICK
        return max(BAND_LOW, price)
    price = mid_high + depth_ticks * TICK
    if bid is not None and price <= bid:
        price = bid + TICK
    return min(BAND_HIGH, price)


def _sweep_side(rng: random.Random, book: _SimpleBook) -> int:
    """Buy or sell, leaning against the mid's drift from 60,000 so prices stay near it."""
    bid, ask = book.best(SIDE_BUY), book.best(SIDE_SELL)
    if bid is None or ask is None:
        return rng.randrange(2)
    drift = ((bid + ask) // 2 - MID_PRICE) / 2_000
    sell_probability = 0.5 + max(-0.45, min(0.45, drift))
    return SIDE_SELL if rng.random() < sell_probability else SIDE_BUY


def _sweep(rng: random.Random, book: _SimpleBook, side: int) -> tuple[int, int]:
    """Price and quantity of an order that takes the best 1-3 levels of the other side."""
    prices = book.sorted_prices(1 - side)[: rng.randint(1, 3)]
    taken = sum(book.level_quantity(1 - side, price) for price in prices[:-1])
    last_level = book.level_quantity(1 - side, prices[-1])
    return prices[-1], taken + rng.randint(1, last_level)


def load(path: Path) -> Stream:
    stream: Stream = np.load(path)
    if stream.ndim != 2 or stream.shape[1] != 5:
        raise ValueError(f"{path}: expected an int64 array of shape (n, 5), got {stream.shape}")
    return np.asarray(stream, dtype=np.int64)
