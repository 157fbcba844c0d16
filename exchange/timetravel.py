"""The market as it stood after any sequence number, rebuilt by replay: what a trader saw then.

History never changes, so this is a pure function of the durable journal (and the snapshots
that shortcut it): start from the newest snapshot at or below the asked sequence whose hash
matches the journal, or from nothing, and replay the journal up to that sequence through the
same `ExchangeCore.apply` the live market used. Only the core is rebuilt; the projections
(market data, audit) are not needed to answer "what was in the book".

It is CPU work that can take seconds on a long journal, so the server runs it in a separate
process (`BookHistory`), never on the event loop or beside the sequencer under the GIL.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import os
import threading
import time
from collections import OrderedDict
from concurrent.futures import Executor, ProcessPoolExecutor
from pathlib import Path
from typing import Any

import msgspec

from exchange.commands import decode_command
from exchange.core import ExchangeCore
from exchange.journal import GENESIS_HASH, read_committed
from exchange.snapshots import journal_dir, load_newest
from matching_engine import Side

CACHED_BOOKS = 64
PARENT_CHECK_S = 1.0  # how often the worker looks whether the server is still there


class PastBook(msgspec.Struct, frozen=True):
    """One instrument's book after `sequence`: aggregated levels and, for regulators, the
    resting orders behind them in priority order."""

    symbol: str
    sequence: int
    time_ns: int  # the time stamp of the record at `sequence`
    halted: bool
    bids: list[tuple[int, int, int]]  # (price, total quantity, order count), best first
    asks: list[tuple[int, int, int]]
    # (order id, participant id, price, remaining quantity), priority order; empty unless asked
    bid_orders: list[tuple[int, int, int, int]]
    ask_orders: list[tuple[int, int, int, int]]


class NotListedThen(Exception):
    """The instrument did not exist yet at that sequence."""


class SnapshotMismatch(Exception):
    pass


def core_at(data_dir: Path, sequence: int) -> ExchangeCore:
    """The core exactly as it was after `sequence` (which must be durable)."""
    journal = journal_dir(data_dir)
    for info, body in load_newest(data_dir, sequence):
        core = ExchangeCore.from_state(body.core)
        try:
            _replay(core, journal, sequence, expected_hash=info.journal_hash)
        except SnapshotMismatch:
            continue  # a snapshot of another history: try an older one, or start from nothing
        return core
    core = ExchangeCore()
    if sequence > 0:
        _replay(core, journal, sequence, expected_hash=GENESIS_HASH)
    return core


def _replay(core: ExchangeCore, journal: Path, up_to: int, *, expected_hash: bytes) -> None:
    start = core.last_sequence
    if start >= up_to:
        return
    # From the snapshot's own record, whose hash proves the snapshot belongs to this journal.
    for record in read_committed(journal, max(start, 1), up_to):
        if record.sequence <= start:
            if record.hash != expected_hash:
                raise SnapshotMismatch(record.sequence)
            continue
        core.apply(decode_command(record.payload), record.sequence, record.time_ns)
    assert core.last_sequence == up_to, (core.last_sequence, up_to)


def book_at(data_dir: Path, symbol: str, sequence: int, depth: int, with_orders: bool) -> PastBook:
    """`symbol`'s book after `sequence`; raises `NotListedThen` if it was not listed yet."""
    core = core_at(data_dir, sequence)
    book = core.engine.book(symbol)
    if book is None:
        raise NotListedThen(symbol)

    def orders(side: Side) -> list[tuple[int, int, int, int]]:
        if not with_orders:
            return []
        return [
            (order.order_id, order.participant_id, order.price, order.remaining)
            for order in book.resting_orders(side)
        ]

    return PastBook(
        symbol,
        sequence,
        core.last_time_ns,
        symbol in core.halted,
        book.depth(Side.BUY, depth),
        book.depth(Side.SELL, depth),
        orders(Side.BUY),
        orders(Side.SELL),
    )


def _book_at_encoded(
    data_dir: str, symbol: str, sequence: int, depth: int, with_orders: bool
) -> bytes | str:
    """The worker-process side: a msgpack-encoded `PastBook`, or the unlisted symbol's name."""
    try:
        return msgspec.msgpack.encode(book_at(Path(data_dir), symbol, sequence, depth, with_orders))
    except NotListedThen:
        return symbol


class BookHistory:
    """Answers past-book questions in one worker process, remembering recent answers.

    One worker is enough: these are rare, expensive questions, and a second replay running in
    parallel would only take the second core away from the live market.
    """

    def __init__(self, data_dir: Path, executor: Executor | None = None) -> None:
        self._data_dir = str(data_dir)
        self._executor = executor
        self._cache: OrderedDict[tuple[Any, ...], PastBook] = OrderedDict()

    def _pool(self) -> Executor:
        if self._executor is None:
            context = multiprocessing.get_context("spawn")  # no fork of a threaded server
            self._executor = ProcessPoolExecutor(
                max_workers=1,
                mp_context=context,
                initializer=_exit_with_parent,
                initargs=(os.getpid(),),
            )
        return self._executor

    async def book_at(self, symbol: str, sequence: int, depth: int, with_orders: bool) -> PastBook:
        key = (symbol, sequence, depth, with_orders)
        cached = self._cache.get(key)
        if cached is not None:
            self._cache.move_to_end(key)
            return cached
        loop = asyncio.get_running_loop()
        answer = await loop.run_in_executor(
            self._pool(), _book_at_encoded, self._data_dir, symbol, sequence, depth, with_orders
        )
        if isinstance(answer, str):
            raise NotListedThen(answer)
        past = msgspec.msgpack.decode(answer, type=PastBook)
        self._cache[key] = past
        if len(self._cache) > CACHED_BOOKS:
            self._cache.popitem(last=False)
        return past

    def close(self) -> None:
        if self._executor is not None:
            self._executor.shutdown(wait=False, cancel_futures=True)
            self._executor = None


def _exit_with_parent(parent_pid: int) -> None:
    """In the worker: end when the server does, however it ended.

    A pool worker holds both ends of its own task queue, so it never sees the server go; a
    server killed (SIGKILL, a crash) or stopping while a replay runs would leave it behind.
    """

    def watch() -> None:
        while os.getppid() == parent_pid:
            time.sleep(PARENT_CHECK_S)
        os._exit(0)

    threading.Thread(target=watch, name="hogx-exit-with-server", daemon=True).start()
