"""The sequencer: one asyncio task that owns all exchange state and never loses an acknowledged
command.

    callers --submit()--> pending --batch--> stamp (sequence, UTC ns) --> journal (one fsync)
        --> core.apply() in order --> subscribers (clearing, market data, audit) --> answers

Callers `await exchange.submit(command)` and get the command's `CommandResult`. The writer task
takes every command waiting (a batch, up to `MAX_BATCH`), stamps each with the next sequence
number and time, appends the batch to the journal with a single fsync (group commit), applies
the commands one by one, publishes the results and only then answers. While one batch is being
made durable on the I/O thread, the next one gathers, so the batch grows with the load.

Start-up recovers: the newest valid snapshot, then the journal after it. Snapshots are written
by a separate process every `snapshot_every` records and by the exchange itself at shutdown.
"""

from __future__ import annotations

import asyncio
import itertools
import sys
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import msgspec

from exchange.audit import AuditTrail
from exchange.commands import Command, decode_command, encode_command
from exchange.core import ExchangeCore
from exchange.events import Event
from exchange.journal import GENESIS_HASH, MAX_PAYLOAD_BYTES, Journal, JournalRecord
from exchange.marketdata import MarketData
from exchange.snapshots import (
    Recovered,
    SnapshotBody,
    journal_dir,
    remove_partial_snapshots,
    write_snapshot,
)
from exchange.surveillance import Surveillance

MAX_BATCH = 4096
MAX_PENDING = 100_000
DEFAULT_SNAPSHOT_EVERY = 1_000_000


class CommandResult(msgspec.Struct, frozen=True, gc=False):
    """A command as sequenced, with what it caused."""

    sequence: int
    time_ns: int
    command: Command
    events: list[Event]


Subscriber = Callable[[list[CommandResult]], None]


class ExchangeStopped(Exception):
    """The exchange is not accepting commands (not started, stopping, or failed)."""


class Overloaded(Exception):
    """Too many commands are waiting; the caller should retry later."""


class RecoveryReport(msgspec.Struct, frozen=True):
    snapshot_sequence: int
    replayed: int
    last_sequence: int
    torn_tail_bytes: int
    seconds: float


def _hash_at(journal: Journal, sequence: int) -> bytes:
    return next(iter(journal.read(sequence))).hash


class Exchange:
    """The running exchange: single writer over an `ExchangeCore`, durable before answering."""

    def __init__(
        self,
        data_dir: Path,
        *,
        fsync: bool = True,
        snapshot_every: int = DEFAULT_SNAPSHOT_EVERY,
        clock: Callable[[], int] = time.time_ns,
    ) -> None:
        self.data_dir = Path(data_dir)
        self.core = ExchangeCore()
        self.market_data = MarketData()
        self.audit = AuditTrail()
        self.surveillance = Surveillance()
        self._fsync = fsync
        self._snapshot_every = snapshot_every
        self._clock = clock
        self._journal: Journal | None = None
        self._pending: deque[tuple[Command, bytes, asyncio.Future[CommandResult]]] = deque()
        self._wakeup = asyncio.Event()
        self._writer: asyncio.Task[None] | None = None
        self._io = ThreadPoolExecutor(max_workers=1, thread_name_prefix="hogx-journal")
        self._subscribers: list[Subscriber] = []
        self._accepting = False
        self._failure: BaseException | None = None
        self._snapshotter: asyncio.subprocess.Process | None = None
        self._snapshot_task: asyncio.Task[None] | None = None
        self._last_snapshot_sequence = 0
        self.recovery: RecoveryReport | None = None

    # ------------------------------------------------------------------ life cycle

    async def start(self) -> RecoveryReport:
        """Recover state from the data directory and start accepting commands."""
        started = time.perf_counter()
        loop = asyncio.get_running_loop()
        self.data_dir.mkdir(parents=True, exist_ok=True)
        journal = await loop.run_in_executor(
            self._io, lambda: Journal.open(journal_dir(self.data_dir), fsync=self._fsync)
        )
        self._journal = journal
        # The journal lock says no other exchange runs here; an orphaned snapshot writer would
        # only lose its own unfinished file.
        remove_partial_snapshots(self.data_dir)
        recovered = Recovered.newest(
            self.data_dir, journal.last_sequence, lambda sequence: _hash_at(journal, sequence)
        )
        replayed = recovered.catch_up(journal.read(max(recovered.core.last_sequence, 1)))
        assert recovered.core.last_sequence == journal.last_sequence
        self.core = recovered.core
        self.market_data = recovered.market_data
        self.audit = recovered.audit
        self.surveillance = recovered.surveillance
        self._last_snapshot_sequence = recovered.snapshot_sequence
        self.recovery = RecoveryReport(
            recovered.snapshot_sequence,
            replayed,
            self.core.last_sequence,
            journal.torn_tail_bytes,
            time.perf_counter() - started,
        )
        self._accepting = True
        self._writer = asyncio.create_task(self._write_loop(), name="hogx-sequencer")
        return self.recovery

    async def stop(self, *, snapshot: bool = True) -> None:
        """Stop accepting, finish every command already accepted, snapshot and close."""
        self._accepting = False
        if self._writer is not None:
            self._wakeup.set()
            await self._writer
            self._writer = None
        if self._snapshot_task is not None:
            await self._snapshot_task  # a snapshot in progress finishes; it is cheap to wait for
            self._snapshot_task = None
        journal = self._journal
        if journal is not None:
            if snapshot and self._failure is None and self.core.last_sequence > 0:
                body = SnapshotBody(
                    self.core.state(),
                    self.market_data.state(),
                    self.audit.state(),
                    self.surveillance.state(),
                )
                await asyncio.get_running_loop().run_in_executor(
                    self._io, write_snapshot, self.data_dir, body, journal.head_hash
                )
            journal.close()
            self._journal = None
        self._io.shutdown(wait=True)

    @property
    def accepting(self) -> bool:
        return self._accepting

    @property
    def head_hash(self) -> bytes:
        return self._journal.head_hash if self._journal is not None else GENESIS_HASH

    async def journal_records(self, from_sequence: int, limit: int) -> list[JournalRecord]:
        """Up to `limit` durable journal records from `from_sequence`, read on the journal's
        own thread (the journal is single-threaded), so reads and appends never interleave."""
        journal = self._journal
        if journal is None:
            raise ExchangeStopped("the journal is closed")
        return await asyncio.get_running_loop().run_in_executor(
            self._io, lambda: list(itertools.islice(journal.read(from_sequence), limit))
        )

    def subscribe(self, subscriber: Subscriber) -> None:
        """Call `subscriber` with every batch of results, in order, before callers are answered.

        Subscribers run on the sequencer task: they must only hand the results on (a queue),
        never block or await.
        """
        self._subscribers.append(subscriber)

    # ------------------------------------------------------------------ commands

    async def submit(self, command: Command) -> CommandResult:
        """Sequence, journal and apply `command`; returns once it is durable and applied."""
        if not self._accepting:
            raise ExchangeStopped("the exchange is not accepting commands")
        if len(self._pending) >= MAX_PENDING:
            raise Overloaded(f"{MAX_PENDING} commands are already waiting")
        # Pair the check with the write: a command the journal could not read back must never
        # be written, or replay would fail on it.
        try:
            payload = encode_command(command)
            survives = len(payload) <= MAX_PAYLOAD_BYTES and decode_command(payload) == command
        except (msgspec.MsgspecError, TypeError) as error:
            raise ValueError(f"command does not survive encoding: {error}") from error
        if not survives:
            raise ValueError(f"command does not survive encoding: {command!r}")
        future: asyncio.Future[CommandResult] = asyncio.get_running_loop().create_future()
        self._pending.append((command, payload, future))
        self._wakeup.set()
        return await future

    async def _write_loop(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            if not self._pending:
                if not self._accepting:
                    return
                self._wakeup.clear()
                await self._wakeup.wait()
                continue
            batch = [self._pending.popleft() for _ in range(min(len(self._pending), MAX_BATCH))]
            records = self._stamp(batch)
            journal = self._journal
            assert journal is not None
            try:
                await loop.run_in_executor(self._io, journal.append_batch, records)
            except BaseException as error:  # the disk failed: nothing in this batch happened
                self._fail(error, batch)
                return
            try:
                results = [
                    CommandResult(
                        sequence, time_ns, command, self.core.apply(command, sequence, time_ns)
                    )
                    for (command, _, _), (sequence, time_ns, _) in zip(batch, records, strict=True)
                ]
            except BaseException as error:  # a bug in the core: state can no longer be trusted
                self._fail(error, batch)
                return
            self._publish(results)
            for (_, _, future), result in zip(batch, results, strict=True):
                if not future.done():
                    future.set_result(result)
            self._maybe_snapshot()

    def _publish(self, results: list[CommandResult]) -> None:
        market_data, audit, surveillance = self.market_data, self.audit, self.surveillance
        for result in results:
            market_data.observe(result.sequence, result.time_ns, result.events)
            audit.observe(result.sequence, result.time_ns, result.command, result.events)
            surveillance.observe(result.sequence, result.time_ns, result.command, result.events)
        for subscriber in self._subscribers:
            try:
                subscriber(results)
            except Exception as error:  # a projection's bug must not stop the market
                print(f"hogx: subscriber {subscriber!r} failed: {error!r}", file=sys.stderr)

    def _stamp(
        self, batch: list[tuple[Command, bytes, asyncio.Future[CommandResult]]]
    ) -> list[tuple[int, int, bytes]]:
        """Next sequence numbers and a UTC time that never goes backwards."""
        sequence = self.core.last_sequence
        time_ns = self.core.last_time_ns
        records = []
        for _, payload, _ in batch:
            sequence += 1
            time_ns = max(self._clock(), time_ns)
            records.append((sequence, time_ns, payload))
        return records

    def _fail(
        self,
        error: BaseException,
        batch: list[tuple[Command, bytes, asyncio.Future[CommandResult]]],
    ) -> None:
        self._accepting = False
        self._failure = error
        print(f"hogx: stopped accepting commands: {error!r}", file=sys.stderr)
        stopped = ExchangeStopped(f"the exchange failed: {error!r}")
        for _, _, future in (*batch, *self._pending):
            if not future.done():
                future.set_exception(stopped)
        self._pending.clear()

    # ------------------------------------------------------------------ snapshots

    def _maybe_snapshot(self) -> None:
        due = self.core.last_sequence - self._last_snapshot_sequence >= self._snapshot_every
        if not due or (self._snapshotter is not None and self._snapshotter.returncode is None):
            return
        self._last_snapshot_sequence = self.core.last_sequence
        self._snapshot_task = asyncio.get_running_loop().create_task(
            self._snapshot_in_background(self.core.last_sequence)
        )

    async def _snapshot_in_background(self, up_to: int) -> None:
        """Another process replays the durable journal onto the newest snapshot and writes it."""
        self._snapshotter = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "exchange.snapshots",
            "--data-dir",
            str(self.data_dir),
            "--up-to",
            str(up_to),
            stdout=asyncio.subprocess.DEVNULL,
        )
        await self._snapshotter.wait()
