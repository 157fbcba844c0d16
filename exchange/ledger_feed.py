"""The ledger feed: the core's events, turned into double-entry transfers in the SQL ledger.

    sequencer --results--> LedgerFeed.__call__ (append to a bounded queue; never blocks)
        --> planner thread: events -> postings (`entry_of`) -> rows (`Ledger.prepare`)
        --> commit (`Ledger.commit`), one transaction per batch, the same batch retried with
            backoff while the database is down (by a writer thread if `pipeline=True`)
        --> behind (start-up, a dropped queue, a gap)? replay the journal from the last planned
            sequence and feed every command after it, until the live queue continues it

The core never waits for the database: if the queue overflows during an outage it is dropped
whole and the journal, the source of truth, fills the gap later. The ledger skips what it has
already applied, so nothing is ever written twice, whatever crashes when.

Event -> transfer mapping (zero amounts skipped). With it, the SQL balances equal the in-memory
`Accounts` at every sequence:

    FundsDeposited   external                -> participant available
    FundsWithdrawn   participant available   -> external
    GoodsDelivered   external                -> owner available     lots (reference: receipt id)
    GoodsReleased    owner available         -> external            lots (reference: release id)
    CashTransferredOut  participant available -> in transit     VND sent to another shard
    CashTransferredIn   in transit -> participant available     VND from another shard
                     + a shard_transfers row each: the core's transfer id, the other shard
                     (TransferRepeated, a phase sent again, moved nothing: nothing booked)
    FundsHeld        participant available   -> participant reserved
    FundsReleased    participant reserved    -> participant available
    Settlement       cash  buyer reserved    -> seller available    notional
                     cash  buyer reserved    -> fee account         buyer fee
                     cash  seller available  -> fee account         seller fee
                     cash  buyer reserved    -> buyer available     hold the fill freed
                     goods seller reserved   -> buyer available     quantity (asset = symbol)
                     + a trades row (aggressor side from the Trade event just before it)
"""

from __future__ import annotations

import asyncio
import functools
import itertools
import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Final, TypeVar

import msgspec
from sqlalchemy.exc import SQLAlchemyError

from clearing.accounts import CASH, FEE_ACCOUNT, Accounts
from clearing.ledger import (
    EXTERNAL_ACCOUNT,
    AccountKind,
    Ledger,
    LedgerEntry,
    LedgerGap,
    LedgerReport,
    LedgerStateMoved,
    Posting,
    PreparedBatch,
    ShardTransferRow,
    TradeRow,
    TransferCode,
)
from exchange.commands import decode_command
from exchange.core import ExchangeCore
from exchange.events import (
    CashTransferredIn,
    CashTransferredOut,
    Event,
    FundsDeposited,
    FundsHeld,
    FundsReleased,
    FundsWithdrawn,
    GoodsDelivered,
    GoodsReleased,
    Settlement,
    Trade,
)
from exchange.journal import JournalCorruptError, read_committed
from exchange.sequencer import CommandResult
from exchange.snapshots import Recovered, journal_dir

__all__ = [
    "LedgerFeed",
    "balances_of",
    "check_ledger",
    "entries_of",
    "entry_of",
    "expected_balances_at",
    "in_transit_of",
    "replay_into",
]

log = logging.getLogger("hogx.ledger")

DEFAULT_MAX_QUEUE: Final = 200_000  # commands waiting for the ledger before the queue is dropped
DEFAULT_MAX_BATCH_COMMANDS: Final = 4_096  # commands per ledger transaction
DEFAULT_MAX_BATCH_POSTINGS: Final = 50_000  # events (a bound on transfers) per transaction
DEFAULT_MAX_PREPARED_BATCHES: Final = 2  # planned ahead of the writer (pipeline=True)
DEFAULT_RETRY_INITIAL_S: Final = 0.05
DEFAULT_RETRY_MAX_S: Final = 2.0

AVAILABLE: Final = AccountKind.AVAILABLE
RESERVED: Final = AccountKind.RESERVED
EXTERNAL: Final = AccountKind.EXTERNAL
IN_TRANSIT: Final = AccountKind.IN_TRANSIT
HOLD: Final = TransferCode.HOLD
RELEASE: Final = TransferCode.RELEASE
Balances = dict[tuple[int, str], tuple[int, int]]
T = TypeVar("T")


# --------------------------------------------------------------------------------------------
# Events -> postings: pure.


# Only these events move anything; everything else (book levels, acceptances...), which is most
# of the events, is skipped in C, by `_moves` over the events' types.
_MOVING: Final[frozenset[type]] = frozenset(
    (
        FundsHeld,
        FundsReleased,
        Trade,
        Settlement,
        FundsDeposited,
        FundsWithdrawn,
        GoodsDelivered,
        GoodsReleased,
        CashTransferredOut,
        CashTransferredIn,
    )
)
_moves = _MOVING.__contains__


def entry_of(sequence: int, time_ns: int, events: Sequence[Event]) -> LedgerEntry:
    """The transfers and trades one sequenced command caused (none for most commands)."""
    if _MOVING.isdisjoint(map(type, events)):
        return LedgerEntry(sequence, time_ns)
    postings: list[Posting] = []
    trades: list[TradeRow] = []
    shard_transfers: list[ShardTransferRow] = []
    trade: Trade | None = None
    add = postings.append
    for event in itertools.compress(events, map(_moves, map(type, events))):
        if type(event) is FundsHeld:
            if event.amount:
                participant = event.participant_id
                add(
                    Posting(
                        HOLD, event.asset, event.amount, participant, AVAILABLE, participant,
                        RESERVED, event.order_id,
                    )
                )  # fmt: skip
        elif type(event) is FundsReleased:
            if event.amount:
                participant = event.participant_id
                add(
                    Posting(
                        RELEASE, event.asset, event.amount, participant, RESERVED,
                        participant, AVAILABLE, event.order_id,
                    )
                )  # fmt: skip
        elif type(event) is Trade:
            trade = event
        elif type(event) is Settlement:
            assert trade is not None and trade.trade_id == event.trade_id, event
            _settle(event, trade, postings, trades)
        elif type(event) is FundsDeposited:
            add(
                Posting(
                    TransferCode.DEPOSIT, event.asset, event.amount, EXTERNAL_ACCOUNT,
                    EXTERNAL, event.participant_id, AVAILABLE,
                )
            )  # fmt: skip
        elif type(event) is GoodsDelivered:
            receipt = event.receipt
            add(
                Posting(
                    TransferCode.DELIVERY_IN, receipt.symbol, receipt.lots, EXTERNAL_ACCOUNT,
                    EXTERNAL, receipt.participant_id, AVAILABLE, receipt.receipt_id,
                )
            )  # fmt: skip
        elif type(event) is GoodsReleased:
            release = event.release
            add(
                Posting(
                    TransferCode.DELIVERY_OUT, release.symbol, release.lots,
                    release.participant_id, AVAILABLE, EXTERNAL_ACCOUNT, EXTERNAL,
                    release.release_id,
                )
            )  # fmt: skip
        elif type(event) is FundsWithdrawn:
            add(
                Posting(
                    TransferCode.WITHDRAWAL, event.asset, event.amount,
                    event.participant_id, AVAILABLE, EXTERNAL_ACCOUNT, EXTERNAL,
                )
            )  # fmt: skip
        elif type(event) is CashTransferredOut or type(event) is CashTransferredIn:
            _between_shards(event, postings, shard_transfers)
    return LedgerEntry(sequence, time_ns, postings, trades or (), shard_transfers or ())


def _between_shards(
    event: CashTransferredOut | CashTransferredIn,
    postings: list[Posting],
    shard_transfers: list[ShardTransferRow],
) -> None:
    """One phase of a transfer between shards: the participant's cash goes into this shard's
    in-transit account (out) or comes out of it (in), with the core's transfer id beside it."""
    participant = (event.participant_id, AVAILABLE)
    in_transit = (EXTERNAL_ACCOUNT, IN_TRANSIT)
    if isinstance(event, CashTransferredOut):
        code, other_shard = TransferCode.TRANSFER_OUT, event.to_shard
        (debit, debit_kind), (credit, credit_kind) = participant, in_transit
    else:
        code, other_shard = TransferCode.TRANSFER_IN, event.from_shard
        (debit, debit_kind), (credit, credit_kind) = in_transit, participant
    shard_transfers.append(ShardTransferRow(len(postings), event.transfer_id, other_shard))
    postings.append(Posting(code, CASH, event.amount, debit, debit_kind, credit, credit_kind))


def _settle(s: Settlement, trade: Trade, postings: list[Posting], trades: list[TradeRow]) -> None:
    """Delivery versus payment: every leg of one trade, in the order the core moved them."""
    buyer, seller, trade_id, fees = s.buyer_id, s.seller_id, s.trade_id, FEE_ACCOUNT
    legs = (
        (TransferCode.PAYMENT, CASH, s.notional_vnd, buyer, RESERVED, seller, AVAILABLE),
        (TransferCode.BUYER_FEE, CASH, s.buyer_fee_vnd, buyer, RESERVED, fees, AVAILABLE),
        (TransferCode.SELLER_FEE, CASH, s.seller_fee_vnd, seller, AVAILABLE, fees, AVAILABLE),
        (TransferCode.EXCESS_HOLD, CASH, s.buyer_released_vnd, buyer, RESERVED, buyer, AVAILABLE),
        (TransferCode.DELIVERY, s.symbol, s.quantity, seller, RESERVED, buyer, AVAILABLE),
    )  # fmt: skip
    for code, asset, amount, debit, debit_kind, credit, credit_kind in legs:
        if amount:
            postings.append(
                Posting(code, asset, amount, debit, debit_kind, credit, credit_kind, trade_id)
            )
    trades.append(
        TradeRow(
            trade_id, s.symbol, s.price, s.quantity, s.notional_vnd,
            trade.aggressor_side.value, buyer, seller, s.buy_order_id, s.sell_order_id,
            s.buyer_fee_vnd, s.seller_fee_vnd,
        )
    )  # fmt: skip


def entries_of(results: Iterable[CommandResult]) -> list[LedgerEntry]:
    return [entry_of(r.sequence, r.time_ns, r.events) for r in results]


def balances_of(accounts: Accounts) -> Balances:
    """The in-memory accounts in the shape `Ledger.check` compares: zero balances omitted."""
    return {
        (b.participant_id, b.asset): (b.available, b.reserved)
        for b in accounts.state().balances
        if b.available or b.reserved
    }


# --------------------------------------------------------------------------------------------
# Catching up from the journal.


def replay_into(
    ledger_apply: Callable[[Sequence[LedgerEntry]], int],
    data_dir: Path,
    after: int,
    up_to: int,
    *,
    max_batch_commands: int = DEFAULT_MAX_BATCH_COMMANDS,
    max_batch_postings: int = DEFAULT_MAX_BATCH_POSTINGS,
    should_stop: Callable[[], bool] = lambda: False,
) -> int:
    """Feed the journal's commands `after+1 .. up_to` to `ledger_apply`, in batches.

    A core is rebuilt at `after` (newest snapshot at or below it, then the journal) and
    replayed from there, so every command yields exactly the events it yielded live.
    Returns the last sequence applied (`after` if there was nothing to do or it stopped).
    """
    if up_to <= after:
        return after
    directory = journal_dir(data_dir)
    core = _core_at(data_dir, after)
    applied = after
    batch: list[LedgerEntry] = []
    postings = 0
    for record in read_committed(directory, after + 1, up_to):
        if should_stop():
            return applied
        events = core.apply(decode_command(record.payload), record.sequence, record.time_ns)
        entry = entry_of(record.sequence, record.time_ns, events)
        batch.append(entry)
        postings += len(entry.postings)
        if len(batch) >= max_batch_commands or postings >= max_batch_postings:
            applied = ledger_apply(batch)
            if applied != batch[-1].sequence:  # the ledger is elsewhere: the caller decides
                return applied
            batch, postings = [], 0
    if batch:
        applied = ledger_apply(batch)
    return applied


def in_transit_of(core: ExchangeCore) -> dict[str, int]:
    """What the shard's in-transit account holds by the core's own record (asset -> cash
    transferred out of this shard minus cash transferred in), in the shape `Ledger.check`
    compares: zero omitted."""
    moved = sum(t.amount for t in core.transfers_out.values())
    moved -= sum(t.amount for t in core.transfers_in.values())
    return {CASH: moved} if moved else {}


def expected_balances_at(data_dir: Path, sequence: int) -> Balances:
    """The in-memory balances at journal `sequence`, rebuilt from the snapshot and journal."""
    return balances_of(_core_at(data_dir, sequence).accounts)


def _core_at(data_dir: Path, sequence: int) -> ExchangeCore:
    """The core at `sequence`: the newest snapshot at or below it, then the journal (from the
    snapshot's own record, whose hash proves the snapshot belongs to this journal)."""
    recovered = Recovered.newest(data_dir, sequence)
    if sequence > 0:
        first = max(recovered.core.last_sequence, 1)
        recovered.catch_up(read_committed(journal_dir(data_dir), first, sequence))
    assert recovered.core.last_sequence == sequence, (recovered.core.last_sequence, sequence)
    return recovered.core


def check_ledger(ledger: Ledger, data_dir: Path, *, attempts: int = 3) -> LedgerReport:
    """`hogx ledger check`: every invariant, and SQL balances equal to the in-memory accounts
    rebuilt from the journal at the ledger's own sequence, the in-transit accounts to the
    core's transfers between shards (retried if the ledger moves on)."""
    report: LedgerReport | None = None
    for _ in range(attempts):
        last = ledger.last_applied_sequence()
        try:
            core = _core_at(data_dir, last)
        except JournalCorruptError as error:
            report = ledger.check()
            problem = f"cannot rebuild the accounts at sequence {last} from the journal: {error}"
            return msgspec.structs.replace(report, ok=False, problems=[*report.problems, problem])
        report = ledger.check(
            balances_of(core.accounts), at_sequence=last, expected_in_transit=in_transit_of(core)
        )
        if report.last_applied_sequence == last:
            return report
    assert report is not None
    return report


# --------------------------------------------------------------------------------------------
# The feed.


class _Stopping(Exception):
    pass


class LedgerFeed:
    """Keeps a `Ledger` following the exchange. Subscribe it, then start it:

        exchange.subscribe(feed)
        feed.start(exchange.core.last_sequence)
        ...
        await feed.drain(timeout)   # at shutdown, after exchange.stop()
        feed.stop()

    One thread plans each batch (events -> postings -> rows, pure Python) and commits it. With
    `pipeline=True` a second thread commits while the next batch is planned, and the database
    (PostgreSQL's server process, or SQLite's C code, which lets go of the GIL) works meanwhile.
    The ledger process runs it so (`exchange.ledger_process.ledger_feed_in_this_process`), with
    a short GIL switch interval: at Python's default of 5 ms the writer waits for the planner
    after every answer from the database, and the pipeline gained nothing on 2 cores.
    """

    def __init__(
        self,
        ledger: Ledger,
        data_dir: Path,
        *,
        max_queue: int = DEFAULT_MAX_QUEUE,
        max_batch_commands: int = DEFAULT_MAX_BATCH_COMMANDS,
        max_batch_postings: int = DEFAULT_MAX_BATCH_POSTINGS,
        max_prepared_batches: int = DEFAULT_MAX_PREPARED_BATCHES,
        retry_initial_s: float = DEFAULT_RETRY_INITIAL_S,
        retry_max_s: float = DEFAULT_RETRY_MAX_S,
        pipeline: bool = False,
    ) -> None:
        assert min(max_queue, max_batch_commands, max_batch_postings, max_prepared_batches) > 0
        self.ledger = ledger
        self.data_dir = Path(data_dir)
        self._max_queue = max_queue
        self._max_batch_commands = max_batch_commands
        self._max_batch_postings = max_batch_postings
        self._max_prepared = max_prepared_batches
        self._retry_initial_s = retry_initial_s
        self._retry_max_s = retry_max_s
        self._pipeline = pipeline
        self._changed = threading.Condition()  # guards everything below; notified on change
        self._queue: deque[CommandResult] = deque()  # published results not yet planned
        self._prepared: deque[PreparedBatch] = deque()  # planned, not yet committed
        self._seen = 0  # the newest sequence the exchange has published (or started at)
        self._planned = 0  # the last sequence prepared
        self._applied = 0  # the last sequence committed to the ledger
        self._started_at = 0
        self._resync = False  # the ledger moved under the feed: re-read it before planning
        self._stopping = False
        self._wake = threading.Event()  # cuts a backoff sleep short when stopping
        self._threads: list[threading.Thread] = []
        self.failure: BaseException | None = None
        self.overflows = 0  # how often the queue was dropped (the journal filled the gap)
        self.journal_catch_ups = 0
        self.retries = 0
        self.outage_since: float | None = None  # monotonic time the database became unreachable
        self.last_error: str | None = None

    # ------------------------------------------------------------------ the exchange's side

    def __call__(self, results: list[CommandResult]) -> None:
        """The subscriber: runs on the sequencer task, so it only queues (or drops) results."""
        if not results:
            return
        with self._changed:
            if len(self._queue) + len(results) > self._max_queue:
                self._queue.clear()  # the journal has it all: catch up from there later
                self.overflows += 1
            if len(results) <= self._max_queue:
                self._queue.extend(results)
            self._seen = results[-1].sequence
            self._changed.notify_all()

    def start(self, exchange_last_sequence: int) -> None:
        """Start the threads; they first catch up from the journal to `exchange_last_sequence`."""
        assert not self._threads, "started twice"
        with self._changed:
            self._seen = max(self._seen, exchange_last_sequence)
            self._started_at = exchange_last_sequence
        loops = [(self._plan_loop, "hogx-ledger-plan")]
        if self._pipeline:
            loops.append((self._write_loop, "hogx-ledger-write"))
        self._threads = [
            threading.Thread(target=self._guarded, args=(run,), name=name, daemon=True)
            for run, name in loops
        ]
        for thread in self._threads:
            thread.start()

    def stop(self, timeout: float | None = 10.0) -> None:
        """Stop both threads; what is not committed yet is caught up from the journal later."""
        with self._changed:
            self._stopping = True
            self._changed.notify_all()
        self._wake.set()
        for thread in self._threads:
            thread.join(timeout)
        self.ledger.forget_prepared()

    # ------------------------------------------------------------------ progress

    def lag(self) -> int:
        """How many sequences the ledger is behind what the exchange has published."""
        with self._changed:
            return max(self._seen - self._applied, 0)

    @property
    def last_applied(self) -> int:
        return self._applied

    def flush(self, timeout: float | None = None) -> bool:
        """Wait until everything published so far is in the ledger; False on timeout/failure."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._changed:
            target = self._seen
            while self._applied < target:
                if self.failure is not None or not self._running():
                    return False
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    return False
                self._changed.wait(remaining)
            return True

    async def drain(self, timeout: float | None = None) -> bool:
        """`flush` without blocking the event loop."""
        return await asyncio.to_thread(self.flush, timeout)

    def status(self) -> dict[str, object]:
        outage = None if self.outage_since is None else time.monotonic() - self.outage_since
        with self._changed:
            return {
                "running": self._running(),
                "last_applied_sequence": self._applied,
                "published_sequence": self._seen,
                "lag": max(self._seen - self._applied, 0),
                "queued": len(self._queue),
                "prepared_batches": len(self._prepared),
                "overflows": self.overflows,
                "journal_catch_ups": self.journal_catch_ups,
                "outage_seconds": outage,
                "last_error": self.last_error,
                "failure": None if self.failure is None else repr(self.failure),
            }

    def _running(self) -> bool:
        return bool(self._threads) and all(thread.is_alive() for thread in self._threads)

    # ------------------------------------------------------------------ the planner

    def _guarded(self, run: Callable[[], None]) -> None:
        try:
            run()
        except _Stopping:
            return
        except BaseException as error:
            self.failure = error
            log.exception("hogx ledger feed stopped: %r", error)
            with self._changed:
                self._stopping = True
            self._wake.set()
        finally:
            with self._changed:
                self._changed.notify_all()

    def _plan_loop(self) -> None:
        last = self._retrying(self.ledger.last_applied_sequence)
        if last > self._started_at:
            raise RuntimeError(
                f"the ledger is at sequence {last}, ahead of the exchange's journal "
                f"(at {self._started_at}): is it the database of another data directory?"
            )
        self._resynchronize()
        while True:
            work = self._next_work()
            if work is None:
                self._resynchronize()
            elif isinstance(work, int):
                self._catch_up(work)
            else:
                self._prepare(entries_of(work))

    def _next_work(self) -> list[CommandResult] | int | None:
        """The next live batch that continues what is planned, the sequence to catch up to from
        the journal, or None: the ledger moved, re-read it."""
        with self._changed:
            while True:
                if self._stopping:
                    raise _Stopping
                if self._resync:
                    return None
                queue, planned = self._queue, self._planned
                while queue and queue[0].sequence <= planned:
                    queue.popleft()
                if queue and queue[0].sequence == planned + 1:
                    return self._take_batch()
                if queue:
                    return queue[0].sequence - 1
                if planned < self._seen:
                    return self._seen
                self._changed.wait()

    def _take_batch(self) -> list[CommandResult]:
        queue, postings = self._queue, 0
        batch: list[CommandResult] = []
        while queue and len(batch) < self._max_batch_commands:
            result = queue.popleft()
            batch.append(result)
            postings += len(result.events)  # a bound on its postings, without converting
            if postings >= self._max_batch_postings:
                break
        return batch

    def _catch_up(self, target: int) -> None:
        self.journal_catch_ups += 1
        log.warning(
            "hogx ledger: catching up from the journal, sequences %d..%d", self._planned + 1, target
        )
        replay_into(
            self._prepare,
            self.data_dir,
            self._planned,
            target,
            max_batch_commands=self._max_batch_commands,
            max_batch_postings=self._max_batch_postings,
            should_stop=lambda: self._stopping or self._resync,
        )

    def _prepare(self, entries: Sequence[LedgerEntry]) -> int:
        """Plan a batch and hand it to the writer (waiting while it has enough to do)."""
        try:
            batch = self._retrying(lambda: self.ledger.prepare(entries))
        except LedgerGap as gap:  # the ledger is not where the feed thought: go by the ledger
            log.warning("hogx ledger: %s; re-reading the ledger", gap)
            with self._changed:
                self._resync = True
            return self._planned
        with self._changed:
            if batch is None:
                return self._planned
            while len(self._prepared) >= self._max_prepared:
                if self._stopping:
                    raise _Stopping
                self._changed.wait()
            self._prepared.append(batch)
            self._planned = batch.last_sequence
            self._changed.notify_all()
        if not self._pipeline:
            self._commit(batch)
        return self._planned

    def _resynchronize(self) -> None:
        """Start planning again from what the database says, once the writer is idle."""
        with self._changed:
            while self._prepared:
                if self._stopping:
                    raise _Stopping
                self._changed.wait()
        self.ledger.forget_prepared()
        last = self._retrying(self.ledger.last_applied_sequence)
        with self._changed:
            self._planned = self._applied = last
            self._resync = False
            self._changed.notify_all()

    # ------------------------------------------------------------------ the writer

    def _write_loop(self) -> None:
        while True:
            with self._changed:
                while not self._prepared:
                    if self._stopping:
                        raise _Stopping
                    self._changed.wait()
                batch = self._prepared[0]
            self._commit(batch)

    def _commit(self, batch: PreparedBatch) -> None:
        """Commit the oldest prepared batch, retrying until the database takes it."""
        try:
            applied = self._retrying(functools.partial(self.ledger.commit, batch))
        except LedgerStateMoved as moved:  # someone else wrote: drop the plans, re-read
            log.warning("hogx ledger: %s; re-reading the ledger", moved)
            with self._changed:
                self._prepared.clear()
                self._resync = True
                self._changed.notify_all()
            return
        with self._changed:
            self._prepared.popleft()
            self._applied = max(self._applied, applied)
            self._changed.notify_all()

    # ------------------------------------------------------------------ retrying

    def _retrying(self, action: Callable[[], T]) -> T:
        """Run `action`, retrying database errors with exponential backoff until it works."""
        delay = self._retry_initial_s
        while True:
            if self._stopping:
                raise _Stopping
            try:
                result = action()
            except (SQLAlchemyError, OSError) as error:
                self._note_outage(error, delay)
                self._wake.wait(delay)
                delay = min(delay * 2, self._retry_max_s)
                continue
            if self.outage_since is not None:
                seconds = time.monotonic() - self.outage_since
                log.warning("hogx ledger: the database is back after %.1f s", seconds)
                self.outage_since = None
            return result

    def _note_outage(self, error: BaseException, delay: float) -> None:
        self.retries += 1
        self.last_error = f"{type(error).__name__}: {str(error).splitlines()[0][:300]}"
        if self.outage_since is None:
            self.outage_since = time.monotonic()
            log.warning(
                "hogx ledger: the database is unreachable (%s); trading goes on, retrying",
                self.last_error,
            )
        else:
            log.debug("hogx ledger: still unreachable, next try in %.2f s", delay)
