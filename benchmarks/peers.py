"""Replay one order stream through third-party matching engines, for comparison.

Two peers from PyPI are supported (install with the ``bench`` extra):

``liquibook`` (2.0.x, SWIG wrapper of the C++ LiquiBook engine)
    Orders are ``SimpleOrder(is_buy, price, qty)`` objects; the engine assigns its
    own ids, so cancelling needs the very object that was added:
    ``book.cancel(order)``. Cancelling an order that is no longer on the book is
    safe (the engine emits a cancel-reject callback). Fills are reported only to an
    ``OrderListener`` set with ``set_order_listener``; the book's own per-order
    trackers hold the real open quantity either way (``SimpleOrder.open_qty()``
    stays stale unless a listener calls ``order.fill(...)``). IOC/FOK/AON conditions
    are honoured only as the second argument of ``add()``, not through the
    ``SimpleOrder`` constructor. ``bids()``/``asks()`` expose the engine's resting
    multimaps (price key -> order tracker), from which the final book is read.
    Cancel is a linear walk over the orders at that price, so its cost grows with
    queue depth.

``limit-order-book`` (2.0.0 on Python < 3.13, ctypes; 3.x needs Python >= 3.13)
    ``limit(is_buy, order_id, quantity, price)`` matches then rests;
    ``has(order_id)``/``cancel(order_id)``. On 2.x, cancelling an unknown (filled or
    cancelled) id throws a C++ exception through ``extern "C"``, which aborts the
    process, so every cancel is guarded by ``has()``. No fill reporting at all.
    The book cannot be iterated; it answers resting volume per price
    (``volume_buy(price)``/``volume_sell(price)``) and totals, so the final book
    is read by asking it about every price that appeared in the stream, and checked
    against its own side totals. Quantities are ``uint32`` on its side.

Stream rows are ``(kind, order_id, side, price, quantity)``: kind 0 is a new GTC
limit order (side 0 buy, 1 sell), kind 1 cancels ``order_id`` (other columns
ignored; unknown, filled and already-cancelled ids are ignored).
"""

from __future__ import annotations

import importlib
import math
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from types import ModuleType
from typing import Any

import numpy as np
import numpy.typing as npt

__all__ = ["PEERS", "PeerResult", "available_peers", "replay"]

NEW = 0
CANCEL = 1
BUY = 0
SELL = 1

# Peer name -> importable module name.
_MODULES: dict[str, str] = {
    "liquibook": "liquibook",
    "limit-order-book": "limit_order_book",
}
PEERS: tuple[str, ...] = tuple(_MODULES)

_UINT32_MAX = 2**32 - 1

Book = list[tuple[int, int]]


@dataclass(frozen=True)
class PeerResult:
    """Outcome of replaying one stream through one peer engine."""

    name: str
    seconds: float
    messages: int
    bids: list[tuple[int, int]]
    asks: list[tuple[int, int]]

    @property
    def messages_per_second(self) -> float:
        if self.seconds <= 0.0:
            return math.inf
        return self.messages / self.seconds


def _import(name: str) -> ModuleType | None:
    try:
        return importlib.import_module(_MODULES[name])
    except (ImportError, OSError):  # OSError: limit_order_book 2.x with its .so missing
        return None


def available_peers() -> list[str]:
    """Names of the peers whose package imports in this interpreter."""
    return [name for name in PEERS if _import(name) is not None]


def _validated_rows(stream: npt.NDArray[np.int64]) -> tuple[npt.NDArray[np.int64], list[Any]]:
    arr = np.asarray(stream)
    if arr.ndim != 2 or arr.shape[1] != 5:
        raise ValueError(f"stream must have shape (n, 5), got {arr.shape}")
    if arr.size and not np.issubdtype(arr.dtype, np.integer):
        raise ValueError(f"stream must hold integers, got dtype {arr.dtype}")
    arr = arr.astype(np.int64, copy=False)
    kinds = arr[:, 0]
    if not np.isin(kinds, (NEW, CANCEL)).all():
        raise ValueError("stream kind column must be 0 (new) or 1 (cancel)")
    new = arr[kinds == NEW]
    if new.size:
        if (new[:, 1] <= 0).any():
            raise ValueError("order ids must be positive")
        if not np.isin(new[:, 2], (BUY, SELL)).all():
            raise ValueError("side must be 0 (buy) or 1 (sell)")
        # Price 0 means "market" to both engines.
        if (new[:, 3] <= 0).any():
            raise ValueError("limit prices must be positive")
        if (new[:, 4] <= 0).any() or (new[:, 4] > _UINT32_MAX).any():
            raise ValueError("quantities must be in [1, 2**32 - 1]")
    # Plain Python ints: the engines' wrappers convert these fastest.
    return arr, arr.tolist()


def _sorted_book(levels: dict[int, int], *, descending: bool) -> Book:
    return sorted(((p, q) for p, q in levels.items() if q > 0), reverse=descending)


# --------------------------------------------------------------------------- liquibook


def _liquibook_levels(tracker_map: Any) -> dict[int, int]:
    levels: dict[int, int] = {}
    for key, tracker in tracker_map.items():
        price = int(key.price())
        levels[price] = levels.get(price, 0) + int(tracker.open_qty())
    return levels


def _replay_liquibook(lb: Any, rows: list[Any]) -> tuple[float, Book, Book]:
    # The plain OrderBook: no depth aggregation and no listener, so no Python callbacks
    # run inside the loop. The book's own trackers still record every fill. (A listener
    # that marks filled orders, to skip cancelling them, measured no faster: the Python
    # callback per accept/fill costs about what the skipped cancel walks save.)
    book_cls = getattr(lb, "liquibook_book_OrderBook", None) or lb.DepthOrderBook
    book = book_cls()
    new_order = lb.SimpleOrder
    add = book.add
    cancel = book.cancel
    # The engine cancels by order object, not by id: keep ours -> object.
    orders: dict[int, Any] = {}
    pop = orders.pop

    # Literal 0s below are NEW and BUY (constants are cheaper than globals in a hot loop).
    start = time.perf_counter()
    for kind, oid, side, price, qty in rows:
        if kind == 0:
            order = new_order(side == 0, price, qty)
            orders[oid] = order
            add(order)
        else:
            order = pop(oid, None)
            if order is not None:  # filled orders are rejected by the engine itself
                cancel(order)
    seconds = time.perf_counter() - start

    bids = _sorted_book(_liquibook_levels(book.bids()), descending=True)
    asks = _sorted_book(_liquibook_levels(book.asks()), descending=False)
    return seconds, bids, asks


# ---------------------------------------------------------------------- limit-order-book


_RawLob = tuple[Callable[..., Any], Callable[..., Any], Callable[..., Any], int]


def _lob_raw_functions(book: Any) -> _RawLob | None:
    """(limit, has, cancel, handle) for 2.x, whose C functions take the book pointer first.

    On 2.x the ``LimitOrderBook`` methods are thin Python wrappers around ctypes
    functions; calling those directly saves a Python frame per message (~25% faster).
    Returns None elsewhere (3.x is Cython: its bound methods are already direct).
    """
    try:
        functions = importlib.import_module("limit_order_book.library").Library.functions
        handle = book._book
        raw = (functions.limit, functions.has, functions.cancel)
    except (ImportError, AttributeError):
        return None
    if not isinstance(handle, int):
        return None
    return (*raw, handle)


def _replay_limit_order_book(
    lob: Any, rows: list[Any], prices: Iterable[int]
) -> tuple[float, Book, Book]:
    book = lob.LimitOrderBook()
    raw = _lob_raw_functions(book)

    if raw is not None:
        limit, has, cancel, handle = raw
        # Literal 0s below are NEW and BUY, as in the liquibook loop.
        start = time.perf_counter()
        for kind, oid, side, price, qty in rows:
            if kind == 0:
                limit(handle, side == 0, oid, qty, price)
            elif has(handle, oid):  # cancel of an unknown id aborts the process on 2.x
                cancel(handle, oid)
        seconds = time.perf_counter() - start
    else:
        limit_m, has_m, cancel_m = book.limit, book.has, book.cancel
        start = time.perf_counter()
        for kind, oid, side, price, qty in rows:
            if kind == 0:
                limit_m(side == 0, oid, qty, price)
            elif has_m(oid):
                cancel_m(oid)
        seconds = time.perf_counter() - start

    # The book has no iteration API: ask it for the resting volume at every price the
    # stream used (no other price can rest), then check against its own side totals.
    bid_levels: dict[int, int] = {}
    ask_levels: dict[int, int] = {}
    for price in prices:
        bid_levels[price] = int(book.volume_buy(price))
        ask_levels[price] = int(book.volume_sell(price))
    for side_name, levels, total in (
        ("buy", bid_levels, int(book.volume_buy())),
        ("sell", ask_levels, int(book.volume_sell())),
    ):
        # 2.x returns volumes through a 32-bit ctypes type: compare modulo 2**32.
        if (sum(levels.values()) - total) % 2**32:
            raise RuntimeError(f"limit-order-book {side_name} levels do not add up to its total")
    return (
        seconds,
        _sorted_book(bid_levels, descending=True),
        _sorted_book(ask_levels, descending=False),
    )


# ------------------------------------------------------------------------------ dispatch


def replay(name: str, stream: npt.NDArray[np.int64]) -> PeerResult:
    """Replay ``stream`` through peer ``name``; time only the message loop."""
    if name not in _MODULES:
        raise ValueError(f"unknown peer {name!r}; known: {', '.join(PEERS)}")
    module = _import(name)
    if module is None:
        raise RuntimeError(f"peer {name!r} is not installed (pip install 'hogx[bench]')")
    arr, rows = _validated_rows(stream)
    if name == "liquibook":
        seconds, bids, asks = _replay_liquibook(module, rows)
    else:
        prices = np.unique(arr[arr[:, 0] == NEW, 3]).tolist()
        seconds, bids, asks = _replay_limit_order_book(module, rows, prices)
    return PeerResult(name=name, seconds=seconds, messages=len(rows), bids=bids, asks=asks)
