"""The sequencer: one asyncio task that owns all exchange state and never loses an acknowledged
command.

    callers --submit()--> pending --batch--> stamp (sequence, UTC ns) --> journal (one fsync)
        --> core.apply() in order --> subscribers (clearing, market data, audit) --> answers

Callers `await exchange.submit(command)` and get the command's `CommandResult`. The writer task
takes every command waiting (a batch, up to `MAX_BATCH`), stamps each with the next sequence
number and time, appends the batch to the journal with a single fsync (group commit), applies
the commands one by one, publishes the results and only then answers. The two stages overlap:
while one batch is made durable on the I/O thread, the one before it (durable already) is
applied and answered and the next one gathers, so the batch grows with the load.

Start-up recovers: the newest valid snapshot, then the journal after it. Snapshots are written
by a separate process every `snapshot_every` records and by the exchange itself at shutdown.

In a cluster (`ClusterConfig`), the journal is a JetStream stream (`exchange.jetstream`) and the
files here are its local mirror. A node starts as a follower: it fills its mirror from the
stream, recovers, then applies whatever the leader appends, until it takes the shard's lease.
Then it reads the stream to its end and becomes the writer: each batch is acknowledged once
JetStream stored it (fenced by the expected last stream sequence), then mirrored locally. The
leader also puts each snapshot into the shard's object store (`exchange.snapshot_store`), and
a node with nothing as new on its disk starts from the newest one there that verifies.
"""

from __future__ import annotations

import asyncio
import shutil
import sys
import time
from collections import deque
from collections.abc import Callable, Coroutine, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import msgspec

from exchange.audit import AuditTrail
from exchange.cancellation import cancel_and_wait
from exchange.cluster import ClusterConfig, ClusterLink
from exchange.commands import Command, decode_command, encode_command
from exchange.core import ExchangeCore
from exchange.events import Event
from exchange.jetstream import (
    JetStreamWriter,
    LeaseLost,
    StreamMismatchError,
    StreamPosition,
    StreamReader,
    read_to_end,
    stream_end,
)
from exchange.journal import (
    GENESIS_HASH,
    MAX_PAYLOAD_BYTES,
    Journal,
    JournalCorruptError,
    JournalRecord,
)
from exchange.marketdata import MarketData
from exchange.snapshot_store import FetchedSnapshot, newest_verified, upload
from exchange.snapshots import (
    Recovered,
    SnapshotBody,
    install_snapshot,
    journal_dir,
    newest_snapshot_sequence,
    remove_partial_snapshots,
    snapshot_dir,
    snapshot_name,
    write_snapshot,
)
from exchange.surveillance import Surveillance

MAX_BATCH = 4096
MAX_PENDING = 100_000
DEFAULT_SNAPSHOT_EVERY = 1_000_000
FEED_TICK_S = 0.025  # the feed's window, as the embedded server's flush timer
ELECTION_POLL_SECONDS = 0.1
STOP_UPLOAD_SECONDS = 10.0  # a clean stop waits this long at most for its snapshot's upload


class CommandResult(msgspec.Struct, frozen=True, gc=False):
    """A command as sequenced, with what it caused."""

    sequence: int
    time_ns: int
    command: Command
    events: list[Event]


Subscriber = Callable[[list[CommandResult]], None]
Pending = tuple[
    Command, bytes, "asyncio.Future[CommandResult]"
]  # a command waiting to be sequenced


class _Batch:
    """Commands sequenced together: their records, and the task making them durable."""

    __slots__ = ("durable", "items", "records")

    def __init__(
        self,
        items: list[Pending],
        records: list[tuple[int, int, bytes]],
        durable: asyncio.Task[None],
    ) -> None:
        self.items = items
        self.records = records
        self.durable = durable


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
    return next(iter(journal.read(sequence, sequence))).hash


def _snapshot_at_core(data_dir: Path, body: SnapshotBody, journal: Journal) -> Path:
    """The stop's snapshot, labelled with the hash of the record the core applied last. A
    follower stopped while mirroring a batch leaves the journal ahead of the core: the journal's
    head hash would label the core's state with a record it never applied."""
    sequence = body.core.last_sequence
    at = journal.head_hash if sequence == journal.last_sequence else _hash_at(journal, sequence)
    return write_snapshot(data_dir, body, at)


class Exchange:
    """The running exchange: single writer over an `ExchangeCore`, durable before answering."""

    def __init__(
        self,
        data_dir: Path,
        *,
        fsync: bool = True,
        snapshot_every: int = DEFAULT_SNAPSHOT_EVERY,
        clock: Callable[[], int] = time.time_ns,
        cluster: ClusterConfig | None = None,
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
        self._pending: deque[Pending] = deque()
        self._stamped_sequence = 0  # the last sequence and time handed out (see _stamp)
        self._stamped_time_ns = 0
        self._wakeup = asyncio.Event()
        self._writer: asyncio.Task[None] | None = None
        self._io = ThreadPoolExecutor(max_workers=1, thread_name_prefix="hogx-journal")
        self._subscribers: list[Subscriber] = []
        self._accepting = False
        self._loop: asyncio.AbstractEventLoop  # the loop it leads on: set before it accepts
        self._failure: BaseException | None = None
        self._snapshotter: asyncio.subprocess.Process | None = None
        self._snapshot_task: asyncio.Task[None] | None = None
        self._upload_task: asyncio.Task[None] | None = None  # a snapshot to the object store
        self._last_snapshot_sequence = 0
        self.recovery: RecoveryReport | None = None
        self._max_payload = MAX_PAYLOAD_BYTES
        # The cluster: how this node reaches the stream, and its part in it.
        self._cluster = cluster
        self._link: ClusterLink | None = None
        self._stream_writer: JetStreamWriter | None = None
        self._role_task: asyncio.Task[None] | None = None
        self._lease_task: asyncio.Task[None] | None = None
        self._on_leading: list[Callable[[], Coroutine[Any, Any, None]]] = []
        self._tick_due: float | None = None  # when gateways must next be told to flush
        self.leading = asyncio.Event()  # set once this node writes (at once when embedded)

    # ------------------------------------------------------------------ life cycle

    async def start(self) -> RecoveryReport:
        """Recover state from the data directory and start accepting commands."""
        started = time.perf_counter()
        self.data_dir.mkdir(parents=True, exist_ok=True)
        journal = await self._open_journal()
        self._journal = journal
        if self._cluster is not None:
            self._link = await ClusterLink.connect(self._cluster)
            await self._fill_from_stream_and_store(journal)
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
        if self._cluster is None:
            await self._lead(None)
        else:
            self._role_task = asyncio.create_task(self._follow_then_lead(), name="hogx-follower")
        return self.recovery

    async def on_leading(self, callback: Callable[[], Coroutine[Any, Any, None]]) -> None:
        """Run `callback` when this node starts writing; now, if it already does."""
        self._on_leading.append(callback)
        if self.leading.is_set():
            await callback()

    async def stop(self, *, snapshot: bool = True) -> None:
        """Stop accepting, finish every command already accepted, snapshot and close."""
        self._accepting = False
        if self._role_task is not None:
            await cancel_and_wait(self._role_task)
        if self._lease_task is not None:  # read only now: the follower may have just made it
            await cancel_and_wait(self._lease_task)
        if self._writer is not None:
            self._wakeup.set()
            await self._writer
            self._writer = None
        if self._snapshot_task is not None:
            await self._snapshot_task  # a snapshot in progress finishes; it is cheap to wait for
            self._snapshot_task = None
        journal = self._journal
        written: Path | None = None
        if journal is not None:
            if snapshot and self._failure is None and self.core.last_sequence > 0:
                body = SnapshotBody(
                    self.core.state(),
                    self.market_data.state(),
                    self.audit.state(),
                    self.surveillance.state(),
                )
                written = await asyncio.get_running_loop().run_in_executor(
                    self._io, _snapshot_at_core, self.data_dir, body, journal
                )
            journal.close()
            self._journal = None
        if self._link is not None:
            await self._link.lease.release()  # a standby takes over at once, not after uploads
            await self._finish_uploads(written)
            await self._link.close()
            self._link = None
        self._io.shutdown(wait=True)

    @property
    def cluster_link(self) -> ClusterLink | None:
        """This node's connection to its cluster (None when embedded)."""
        return self._link

    @property
    def accepting(self) -> bool:
        return self._accepting

    @property
    def all_applied(self) -> bool:
        """Has the core applied every command stamped so far (none is on its way to the disk)?
        Commands still waiting to be stamped will be stamped from now on."""
        return self._stamped_sequence <= self.core.last_sequence

    @property
    def head_hash(self) -> bytes:
        return self._journal.head_hash if self._journal is not None else GENESIS_HASH

    async def journal_records(self, from_sequence: int, limit: int) -> list[JournalRecord]:
        """Up to `limit` journal records from `from_sequence`, read on the journal's own
        thread (the journal is single-threaded), so reads and appends never interleave.

        Only records the core has applied: with pipelined group commit the journal may already
        hold the next batch, whose results nobody has seen yet; a reader of the journal sees
        the same history as every other view of the exchange."""
        journal = self._journal
        if journal is None:
            raise ExchangeStopped("the journal is closed")
        count = min(limit, self.core.last_sequence - from_sequence + 1)
        if count <= 0:
            return []
        return await asyncio.get_running_loop().run_in_executor(
            self._io, lambda: list(journal.read(from_sequence, from_sequence + count - 1))
        )

    def subscribe(self, subscriber: Subscriber) -> None:
        """Call `subscriber` with every batch of results, in order, before callers are answered.

        Subscribers run on the sequencer task: they must only hand the results on (a queue),
        never block or await.
        """
        self._subscribers.append(subscriber)

    # ------------------------------------------------------------------ cluster roles

    async def _open_journal(self) -> Journal:
        """The local journal; in a cluster, a mirror the stream can always rebuild, so it needs
        no fsync of its own, and a damaged one is moved aside rather than refusing to start."""
        directory = journal_dir(self.data_dir)
        fsync = self._fsync and self._cluster is None

        def open_it() -> Journal:
            try:
                return Journal.open(directory, fsync=fsync)
            except JournalCorruptError as error:
                if self._cluster is None:
                    raise
                aside = directory.with_name(f"{directory.name}.damaged-{time.time_ns()}")
                print(f"hogx: local journal mirror damaged ({error}); moved to {aside}, "
                      "refilling it from the stream", file=sys.stderr)  # fmt: skip
                shutil.move(directory, aside)
                return Journal.open(directory, fsync=fsync)

        return await asyncio.get_running_loop().run_in_executor(self._io, open_it)

    async def _fill_from_stream_and_store(self, journal: Journal) -> None:
        """Fill the mirror from the stream (from its first record: the mirror is the whole
        journal, which the audit trail and `hogx verify` read) while fetching the newest
        snapshot of the shard's object store that is newer than any here; once the mirror
        holds its sequence, put it into the snapshot directory, so recovery applies only the
        records after it. A store that fails or holds nothing usable costs only the replay."""
        link = self._link
        assert link is not None
        fetching = asyncio.create_task(
            newest_verified(
                link.js,
                link.shard,
                after=newest_snapshot_sequence(self.data_dir),
                say=lambda text: print(f"hogx: {text}", file=sys.stderr),
            )
        )
        try:
            await self._fill_from_stream(journal)
            fetched = await fetching
        finally:
            fetching.cancel()
        if fetched is not None and fetched.sequence <= journal.last_sequence:
            await self._install_fetched(fetched)

    async def _install_fetched(self, fetched: FetchedSnapshot) -> None:
        try:
            await asyncio.get_running_loop().run_in_executor(
                self._io, install_snapshot, self.data_dir, fetched.data
            )
        except (OSError, ValueError) as error:
            print(f"hogx: snapshot {fetched.name} from the object store not kept: {error}",
                  file=sys.stderr)  # fmt: skip
            return
        print(f"hogx: starting from snapshot {fetched.name} of the object store",
              file=sys.stderr)  # fmt: skip

    async def _fill_from_stream(self, journal: Journal) -> None:
        """Bring the local mirror up to the stream's end, checking both tell one history."""
        link = self._link
        assert link is not None
        end = await stream_end(link.js, link.shard)
        local_last = journal.last_sequence
        if end.last_sequence < local_last or (
            end.last_sequence == local_last and end.head_hash != journal.head_hash
        ):
            raise StreamMismatchError(
                f"the journal in {self.data_dir} holds {local_last:,} records that the stream of "
                f"shard {link.shard} (up to {end.last_sequence:,}) does not: wrong data dir or "
                "shard"
            )
        loop = asyncio.get_running_loop()
        previous_hash = journal.head_hash if local_last else GENESIS_HASH
        async for records in read_to_end(link.js, link.shard, local_last, previous_hash):
            rows = [(record.sequence, record.time_ns, record.payload) for record in records]
            await loop.run_in_executor(self._io, journal.append_batch, rows)

    async def _follow_then_lead(self) -> None:
        """Apply what the leader appends, until this node takes the lease; then lead."""
        link = self._link
        journal = self._journal
        assert link is not None and journal is not None
        reader = StreamReader(link.js, link.shard, self.core.last_sequence, journal.head_hash)
        end: int | None = None  # the stream's last message when the lease became ours
        next_try = 0.0
        try:
            await reader.open()
            while end is None or reader.stream_sequence < end:
                if end is None and time.monotonic() >= next_try:
                    next_try = time.monotonic() + ELECTION_POLL_SECONDS
                    if await link.lease.try_acquire():
                        self._lease_task = asyncio.create_task(self._keep_lease(link))
                        end = (await stream_end(link.js, link.shard)).stream_sequence
                        continue
                records = await reader.next_batch(ELECTION_POLL_SECONDS)
                if records:
                    await self._apply_followed(journal, records)
        except BaseException as error:
            if not isinstance(error, asyncio.CancelledError):
                self._fail(error)
            raise
        finally:
            await reader.close()
        position = StreamPosition(reader.stream_sequence, journal.last_sequence, journal.head_hash)
        try:
            await self._lead(JetStreamWriter(link.nc, link.js, link.shard, position))
        except Exception as error:  # e.g. the start-up commands of the new leader failed
            self._fail(error)

    async def _keep_lease(self, link: ClusterLink) -> None:
        try:
            await link.lease.keep()
        except LeaseLost as error:
            self._fail(error)

    async def _apply_followed(self, journal: Journal, records: list[JournalRecord]) -> None:
        """What a follower does with the leader's batch: mirror it, apply it, publish it."""
        rows = [(record.sequence, record.time_ns, record.payload) for record in records]
        await asyncio.get_running_loop().run_in_executor(self._io, journal.append_batch, rows)
        results = []
        for record in records:
            command = decode_command(record.payload)
            events = self.core.apply(command, record.sequence, record.time_ns)
            results.append(CommandResult(record.sequence, record.time_ns, command, events))
        self._publish(results)
        self._maybe_snapshot()

    async def _lead(self, stream_writer: JetStreamWriter | None) -> None:
        """Start writing: from here on commands are accepted and sequenced by this node."""
        self._stream_writer = stream_writer
        if stream_writer is not None:
            self._max_payload = min(MAX_PAYLOAD_BYTES, stream_writer.max_record_payload)
            print(f"hogx: leading shard {stream_writer.shard} from sequence "
                  f"{self.core.last_sequence:,}", file=sys.stderr, flush=True)  # fmt: skip
        self._loop = asyncio.get_running_loop()  # submit's, once per command: not looked up
        self._accepting = True
        self._writer = asyncio.create_task(self._write_loop(), name="hogx-sequencer")
        self.leading.set()
        for callback in self._on_leading:
            await callback()

    # ------------------------------------------------------------------ commands

    def submit(self, command: Command) -> asyncio.Future[CommandResult]:
        """Sequence, journal and apply `command`; `await` the answer: it comes once the command
        is durable and applied.

        A plain function returning the caller's future, not a coroutine: one coroutine fewer
        per command on the hottest path there is. So a refusal (`ExchangeStopped`, `Overloaded`,
        `ValueError`) is raised by the call itself, before anything is queued."""
        if not self._accepting:
            raise ExchangeStopped("the exchange is not accepting commands")
        if len(self._pending) >= MAX_PENDING:
            raise Overloaded(f"{MAX_PENDING} commands are already waiting")
        # Pair the check with the write: a command the journal could not read back must never
        # be written, or replay would fail on it.
        try:
            payload = encode_command(command)
            survives = len(payload) <= self._max_payload and decode_command(payload) == command
        except (msgspec.MsgspecError, TypeError, OverflowError) as error:  # an int beyond 64 bits
            raise ValueError(f"command does not survive encoding: {error}") from error
        if not survives:
            raise ValueError(f"command does not survive encoding: {command!r}")
        future: asyncio.Future[CommandResult] = self._loop.create_future()
        self._pending.append((command, payload, future))
        self._wakeup.set()
        return future

    async def _write_loop(self) -> None:
        """Pipelined group commit: once a batch is durable, the commands that gathered
        meanwhile start their own write (stream, journal, fsync), and the durable batch is
        applied, published and answered while that write runs. So the disk and the core work
        at once, yet every batch is applied only once it is durable, in order, and answered
        only after its subscribers saw it."""
        self._stamped_sequence = self.core.last_sequence
        self._stamped_time_ns = self.core.last_time_ns
        in_flight: _Batch | None = None
        while True:
            if in_flight is None:
                if not self._pending:
                    if not self._accepting:
                        return
                    self._wakeup.clear()
                    if not await self._wait_or_tick():
                        return
                    continue
                in_flight = self._start_batch(None)
            try:
                await in_flight.durable
            except BaseException as error:  # the disk failed: nothing in this batch happened
                await self._fail_batches(error, in_flight, None)
                return
            following = None
            try:
                if self._pending:
                    following = self._start_batch(in_flight)
                    await asyncio.sleep(0)  # let its write begin: it runs beside the apply below
                self._apply_batch(in_flight)
            except BaseException as error:  # a bug in the core (or cancelled): untrustworthy
                await self._fail_batches(error, in_flight, following)
                return
            in_flight = following

    def _start_batch(self, previous: _Batch | None) -> _Batch:
        """Take the waiting commands (up to MAX_BATCH), stamp them and start making them
        durable, after `previous` (writes never overtake each other)."""
        items = [self._pending.popleft() for _ in range(min(len(self._pending), MAX_BATCH))]
        records = self._stamp(items)
        flush = self._stream_writer is not None and self._feed_tick_due()
        durable = asyncio.create_task(
            self._make_durable(records, None if previous is None else previous.durable, flush)
        )
        return _Batch(items, records, durable)

    async def _make_durable(
        self,
        records: list[tuple[int, int, bytes]],
        previous: asyncio.Task[None] | None,
        flush: bool,
    ) -> None:
        if previous is not None:
            await previous  # raises if it failed: nothing after a failed batch is written
        journal = self._journal
        assert journal is not None
        if self._stream_writer is not None:  # the stream is the truth; then the mirror
            if self._link is not None and not self._link.lease.held:
                raise LeaseLost("the shard's lease was not renewed in time")
            await self._stream_writer.append(records, flush=flush)
        await asyncio.get_running_loop().run_in_executor(self._io, journal.append_batch, records)

    def _apply_batch(self, batch: _Batch) -> None:
        """Apply a durable batch, publish its results, then answer its callers."""
        apply = self.core.apply
        results = []
        for (command, _, _), (sequence, time_ns, _) in zip(batch.items, batch.records, strict=True):
            results.append(
                CommandResult(sequence, time_ns, command, apply(command, sequence, time_ns))
            )
        self._publish(results)
        for (_, _, future), result in zip(batch.items, results, strict=True):
            if not future.done():
                future.set_result(result)
        self._maybe_snapshot()

    async def _fail_batches(
        self, error: BaseException, batch: _Batch, following: _Batch | None
    ) -> None:
        """Stop: `batch`, `following` and every waiting command are answered with
        `ExchangeStopped`."""
        self._accepting = False  # at once: nothing new while the write below ends
        if following is not None:
            # Let its write end before anyone closes the journal under it. It may succeed:
            # its commands are then in the journal though their callers heard of the failure
            # (as with any answer lost in a crash: `ExchangeStopped` after a submit means
            # "unknown"; a retry with the same client order id finds the order).
            await asyncio.gather(following.durable, return_exceptions=True)
        self._fail(error, [*batch.items, *(following.items if following is not None else ())])

    # Gateways turn the stream into feed frames, flushing where the stream says (so every
    # gateway sends the same frames): at most every FEED_TICK_S, and FEED_TICK_S at most after
    # any batch. A busy leader marks a batch's message; a quiet one appends an empty tick.

    def _feed_tick_due(self) -> bool:
        """True when this batch's message should tell gateways to flush their feed."""
        now = time.monotonic()
        if self._tick_due is None:
            self._tick_due = now + FEED_TICK_S
        if now < self._tick_due:
            return False
        self._tick_due = None
        return True

    async def _wait_or_tick(self) -> bool:
        """Wait for commands; append a feed tick if one falls due first. False on failure."""
        if self._tick_due is None or self._stream_writer is None:
            await self._wakeup.wait()
            return True
        try:
            await asyncio.wait_for(self._wakeup.wait(), self._tick_due - time.monotonic())
            return True
        except TimeoutError:
            pass
        self._tick_due = None
        try:
            await self._stream_writer.tick()
        except BaseException as error:  # fenced, or NATS gone: as for a batch
            self._fail(error)
            return False
        return True

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

    def _stamp(self, batch: list[Pending]) -> list[tuple[int, int, bytes]]:
        """Next sequence numbers, and one UTC time for the whole batch (it is sequenced at one
        moment), never earlier than the last batch stamped (which may not be applied yet)."""
        first = self._stamped_sequence + 1
        time_ns = max(self._clock(), self._stamped_time_ns)
        records = [
            (sequence, time_ns, payload) for sequence, (_, payload, _) in enumerate(batch, first)
        ]
        self._stamped_sequence, self._stamped_time_ns = first + len(batch) - 1, time_ns
        return records

    def _fail(self, error: BaseException, batch: Sequence[Pending] = ()) -> None:
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
        if await self._snapshotter.wait() == 0:
            self._upload_snapshot(snapshot_dir(self.data_dir) / snapshot_name(up_to))

    def _upload_snapshot(self, path: Path) -> None:
        """The leader puts its new snapshot into the shard's object store, beside the loop; one
        upload at a time (a snapshot skipped here is superseded by the next)."""
        if self._stream_writer is None or self._link is None or not path.exists():
            return
        if self._upload_task is None or self._upload_task.done():
            self._upload_task = asyncio.create_task(self._upload(path), name="hogx-upload")

    async def _upload(self, path: Path) -> None:
        link, cluster = self._link, self._cluster
        assert link is not None and cluster is not None
        try:
            await upload(link.js, link.shard, path, replicas=cluster.replicas)
        except Exception as error:  # never fatal: the next snapshot tries again
            print(f"hogx: snapshot {path.name} not uploaded to the object store: {error!r}",
                  file=sys.stderr)  # fmt: skip

    async def _finish_uploads(self, written: Path | None) -> None:
        """At a clean stop: let an upload under way end, then upload the stop's own snapshot,
        within `STOP_UPLOAD_SECONDS` in all (the lease is given up already)."""

        async def finish() -> None:
            if self._upload_task is not None:
                await self._upload_task
            if written is not None and self._stream_writer is not None:
                await self._upload(written)

        try:
            await asyncio.wait_for(finish(), STOP_UPLOAD_SECONDS)
        except TimeoutError:
            print("hogx: the object store was too slow; stopping without that upload",
                  file=sys.stderr)  # fmt: skip
        self._upload_task = None
