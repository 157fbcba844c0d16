"""The ledger feed in a process of its own, so settling into SQL never competes with trading.

Measured on the 2-core machine: with the `LedgerFeed` thread inside the server, order entry fell
from about 5,500 to 3,300 orders/s (the thread's planning and the database driver take the GIL).
Here the exchange's only work per batch is one msgpack encode of the batch's results and a
non-blocking hand-off to a `multiprocessing` queue; a child process decodes them and runs the
same `LedgerFeed` (its own thread, retries, catch-up from the journal).

Never blocking the exchange: when the child falls behind by more than `MAX_PENDING_BATCHES`
batches, new batches are dropped, and the child's feed sees the gap and replays those sequences
from the durable journal. If the child dies it is started again on the next batch, and it
catches up from the journal from wherever the ledger stands.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import multiprocessing
import os
import queue as queue_module
import sys
import time
from multiprocessing.context import SpawnProcess
from pathlib import Path
from typing import TYPE_CHECKING, Any

import msgspec

from exchange.sequencer import CommandResult

if TYPE_CHECKING:
    from clearing.ledger import Ledger
    from exchange.ledger_feed import LedgerFeed

log = logging.getLogger("hogx.ledger")

MAX_PENDING_BATCHES = 10_000
RESTART_BACKOFF_SECONDS = 5.0
PARENT_CHECK_SECONDS = 1.0
# Python hands the GIL to a thread whose wait is over (the writer, when the database answers)
# only after the holder (the planner) has run a whole switch interval: 5 ms by default, many
# times a batch, with the database idle meanwhile.
SWITCH_INTERVAL_S = 0.000_2
# What the feed allocates is freed by reference counting (batches of events, postings and
# rows hold no cycles), yet the collector's default thresholds had it walk every batch still
# queued or planned hundreds of times a second: about 15% of the feed's CPU.
GC_THRESHOLDS = (50_000, 20, 20)
_decoder = msgspec.msgpack.Decoder(list[CommandResult])
_encoder = msgspec.msgpack.Encoder()


def ledger_feed_in_this_process(ledger: Ledger, data_dir: Path, **options: Any) -> LedgerFeed:
    """The feed as the ledger process runs it, which has nothing else to do: a planner thread
    turns batches into rows while a writer thread commits the previous one (the database
    works on another core), the interpreter switches threads promptly, and the collector
    leaves alone what was built at start-up and runs seldom."""
    from exchange.ledger_feed import LedgerFeed

    sys.setswitchinterval(SWITCH_INTERVAL_S)
    gc.collect()
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLDS)
    return LedgerFeed(ledger, data_dir, pipeline=True, **options)


def _child_main(data_dir: str, url: str, inbox: Any, start_sequence: int, parent_pid: int) -> None:
    """The child: a `LedgerFeed` fed from the parent's queue until it sends None."""
    from clearing.ledger import Ledger

    logging.basicConfig(level=logging.WARNING, format="hogx ledger: %(message)s")
    ledger = Ledger(url)
    feed = ledger_feed_in_this_process(ledger, Path(data_dir))
    feed.start(start_sequence)
    try:
        while True:
            try:
                item = inbox.get(timeout=PARENT_CHECK_SECONDS)
            except queue_module.Empty:
                # The queue never reports a dead parent (this process holds a writing end of
                # it too): a server killed outright would leave this one waiting for ever.
                # What it had not written yet, the next server's ledger process replays.
                if os.getppid() != parent_pid:
                    log.warning("the server is gone; stopping")
                    return
                continue
            if item is None:
                break
            feed(_decoder.decode(item))
        feed.flush(30)  # the parent is stopping: finish what it sent, if the database lets us
    finally:
        feed.stop()
        ledger.close()


class LedgerProcess:
    """The exchange's side: a subscriber that hands every batch to the ledger process."""

    def __init__(self, data_dir: Path, database_url: str) -> None:
        self.data_dir = Path(data_dir)
        self.database_url = database_url
        self._context = multiprocessing.get_context("spawn")
        self._inbox: Any = None
        self._child: SpawnProcess | None = None
        self._last_sequence = 0
        self._last_start = 0.0
        self.dropped_batches = 0

    def start(self, exchange_last_sequence: int) -> None:
        """Start the child; it first catches up from the journal to `exchange_last_sequence`."""
        self._last_sequence = exchange_last_sequence
        self._spawn()

    def _spawn(self) -> None:
        self._last_start = time.monotonic()
        self._inbox = self._context.Queue()
        self._child = self._context.Process(
            target=_child_main,
            args=(
                str(self.data_dir),
                self.database_url,
                self._inbox,
                self._last_sequence,
                os.getpid(),  # the child may start after we died: compare with this, not 1
            ),
            name="hogx-ledger",
            daemon=True,
        )
        self._child.start()

    def __call__(self, results: list[CommandResult]) -> None:
        """Sequencer subscriber: encode once, hand off without waiting (or drop, see above)."""
        if not results:
            return
        self._last_sequence = results[-1].sequence
        if self._child is None or not self._child.is_alive():
            if time.monotonic() - self._last_start < RESTART_BACKOFF_SECONDS:
                return  # the journal has it; the restarted child catches up from there
            log.warning("the ledger process is not running; starting it again")
            self._spawn()
            return
        try:
            if self._inbox.qsize() >= MAX_PENDING_BATCHES:
                raise queue_module.Full
            self._inbox.put_nowait(_encoder.encode(results))
        except queue_module.Full:
            self.dropped_batches += 1

    async def stop(self, timeout: float = 30.0) -> None:
        """Let the child finish what it was sent, then end it."""
        child = self._child
        if child is None:
            return
        if child.is_alive():
            self._inbox.put(None)
            await asyncio.to_thread(child.join, timeout)
        if child.is_alive():
            child.terminate()
            await asyncio.to_thread(child.join, 5)
        self._child = None
        # Let go of the queue now, not at exit: its three semaphores are given back when it
        # is freed, and a server stopped by SIGTERM ends by the signal (uvicorn raises it
        # again), skipping the exit handlers that would otherwise free them, so the resource
        # tracker reported them leaked at every stop.
        inbox, self._inbox = self._inbox, None
        if child.exitcode != 0:
            # Nobody reads the queue any more (the child died or was terminated): what its
            # feeder thread still holds would block that thread, and the join, for ever. The
            # journal has it all; the next start catches up from there.
            inbox.cancel_join_thread()
        inbox.close()
        if child.exitcode == 0:
            await asyncio.to_thread(inbox.join_thread)
