"""The journal on NATS JetStream: one stream per shard, the replicated truth of a cluster.

Why: on one machine the journal is a directory of segment files; in a cluster the truth must
outlive any machine, so it is a JetStream stream (replicated by NATS's own Raft, not by us).
Every engine node of a shard keeps a local mirror of the stream in its data directory (the
same segment files), so snapshots, the ledger's catch-up, the regulator's book history and the
daily heads read local files exactly as in the embedded set-up.

Stream layout
-------------
Stream ``HOGX_<shard>`` holds subject ``hogx.<shard>.journal``. One stream message carries one
journal batch (or a part of one that would exceed the server's message limit): the very bytes
the file journal writes for those records (length, CRC32, sequence, time, payload, SHA-256
chained hash; see ``exchange/journal.py``), with headers naming the first and last journal
sequence and the hash before the first record, so a reader can start at any message and still
check the chain. Stream messages and journal sequences both only ever grow by one: messages
never disappear (``deny_delete``, ``deny_purge``).

Feed ticks: gateways build the websocket feed from the stream and flush it where the leader
says, so that every gateway sends the same frames. A message with the ``Hogx-Flush`` header
closes a feed window; when trading goes quiet the leader appends a tick, a message with that
header and no records (``Hogx-First-Sequence`` is then one past ``Hogx-Last-Sequence``).

Fencing: the writer publishes each message with ``Nats-Expected-Last-Sequence`` set to the
stream sequence of its own previous message. JetStream appends it only if nothing else was
appended in between, so two engines that both think they lead can never both succeed: the
loser gets ``FencedError`` and stops, with nothing acknowledged that is not in the stream.

Leadership: a key per shard in the key-value bucket ``hogx_leaders`` whose entries expire after
``LEASE_SECONDS``. A node leads while it holds the key, renewing it with a revision check (an
update that fails if anyone else wrote the key), and a standby takes the key with ``create``
(which fails while the key exists), after the leader stopped renewing or deleted it.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import time
from collections.abc import AsyncIterator, Sequence
from typing import Final, NamedTuple

from nats.aio.client import Client as NatsClient
from nats.js import JetStreamContext
from nats.js.api import (
    ConsumerConfig,
    DeliverPolicy,
    DiscardPolicy,
    KeyValueConfig,
    RetentionPolicy,
    StorageType,
    StreamConfig,
)
from nats.js.errors import APIError, KeyNotFoundError, KeyWrongLastSequenceError, NotFoundError
from nats.js.kv import KeyValue

from exchange.journal import GENESIS_HASH, JournalRecord, _encode_batch, _parse_records

SHARD_PATTERN: Final = re.compile(r"[A-Za-z0-9_-]{1,32}")
FIRST_HEADER: Final = "Hogx-First-Sequence"
LAST_HEADER: Final = "Hogx-Last-Sequence"
PREVIOUS_HEADER: Final = "Hogx-Previous-Hash"
FLUSH_HEADER: Final = "Hogx-Flush"  # gateways flush their feed after this message
# Room left in a message for headers and the framing of the record that does not fit.
HEADROOM_BYTES: Final = 8 * 1024
RECORD_OVERHEAD_BYTES: Final = 8 + 48  # frame (length, crc) + sequence, time and hash
PUBLISH_TIMEOUT_SECONDS: Final = 5.0
WRONG_LAST_SEQUENCE: Final = 10071  # JetStream's error code for a failed expected-last check
LEASE_BUCKET: Final = "hogx_leaders"
LEASE_SECONDS: Final = 1.5
RENEW_EVERY_SECONDS: Final = LEASE_SECONDS / 5


def check_shard(shard: str) -> str:
    """A shard name is also part of a stream name and of subjects: letters, digits, - and _."""
    if not SHARD_PATTERN.fullmatch(shard):
        raise ValueError(f"shard {shard!r} must be 1-32 letters, digits, '-' or '_'")
    return shard


def stream_name(shard: str) -> str:
    return f"HOGX_{check_shard(shard)}"


def journal_subject(shard: str) -> str:
    return f"hogx.{check_shard(shard)}.journal"


def api_subject(shard: str) -> str:
    """Where the shard's leader answers HTTP requests forwarded by gateways."""
    return f"hogx.{check_shard(shard)}.api"


class FencedError(Exception):
    """Another writer appended to the stream: this engine no longer leads the shard."""


class StreamCorruptError(Exception):
    """A stream message fails its CRC or hash-chain checks, or the stream skips a sequence."""


class StreamMismatchError(Exception):
    """The local journal and the stream tell different histories (wrong stream or data dir)."""


async def ensure_stream(js: JetStreamContext, shard: str, *, replicas: int = 1) -> int:
    """Create the shard's stream if it is missing; returns its last stream sequence."""
    name = stream_name(shard)
    try:
        info = await js.stream_info(name)
    except NotFoundError:
        config = StreamConfig(
            name=name,
            subjects=[journal_subject(shard)],
            retention=RetentionPolicy.LIMITS,
            storage=StorageType.FILE,
            discard=DiscardPolicy.NEW,  # never drop history to make room
            num_replicas=replicas,
            deny_delete=True,
            deny_purge=True,
            allow_direct=True,
        )
        info = await js.add_stream(config)
    return int(info.state.last_seq)


class StreamPosition:
    """Where a shard's stream ends: its last message and the journal it holds up to there."""

    __slots__ = ("head_hash", "last_sequence", "stream_sequence")

    def __init__(self, stream_sequence: int, last_sequence: int, head_hash: bytes) -> None:
        self.stream_sequence = stream_sequence
        self.last_sequence = last_sequence
        self.head_hash = head_hash


async def stream_end(js: JetStreamContext, shard: str) -> StreamPosition:
    """The position after the stream's last message (all zero for an empty stream)."""
    last = int((await js.stream_info(stream_name(shard))).state.last_seq)
    if last == 0:
        return StreamPosition(0, 0, GENESIS_HASH)
    message = await js.get_msg(stream_name(shard), last)
    headers = message.headers or {}
    previous_hash = bytes.fromhex(headers[PREVIOUS_HEADER])
    if not message.data:  # a feed tick: the journal ends where its headers say
        return StreamPosition(last, int(headers[LAST_HEADER]), previous_hash)
    records: list[JournalRecord] = []
    _check_message(message.data, int(headers[FIRST_HEADER]), previous_hash, records)
    return StreamPosition(last, records[-1].sequence, records[-1].hash)


def _check_message(
    data: bytes, first: int, previous_hash: bytes, out: list[JournalRecord]
) -> tuple[int, bytes]:
    """Verify one message's records (CRC, contiguous sequences, chain from `previous_hash`)
    and append them to `out`. Returns the next sequence and the head hash."""
    used, expected, head_hash, problem = _parse_records(
        data, first, previous_hash, first, 2**64 - 1, out
    )
    if problem is not None or used != len(data) or expected == first:
        raise StreamCorruptError(
            f"journal record {expected} in the stream fails its checks ({problem or 'empty'})"
        )
    return expected, head_hash


async def _message_holding(js: JetStreamContext, shard: str, sequence: int, last: int) -> int:
    """The stream sequence of the message holding journal `sequence` (binary search over the
    messages' headers); `last + 1` when the stream does not reach it yet."""
    low, high = 1, last
    while low <= high:
        middle = (low + high) // 2
        headers = (await js.get_msg(stream_name(shard), middle)).headers or {}
        if int(headers[LAST_HEADER]) < sequence:
            low = middle + 1
        elif int(headers[FIRST_HEADER]) > sequence:
            high = middle - 1
        else:
            return middle
    return last + 1


async def journal_hash_at(js: JetStreamContext, shard: str, sequence: int) -> bytes | None:
    """The hash of journal record `sequence` as the stream holds it (its message's records
    checked, chained from the message's own header), or None when the stream ends before it.
    A record's hash commits to the whole history before it: state taken at `sequence` with
    this hash belongs to this stream, and `follow(js, shard, sequence, hash)` continues it."""
    last = int((await js.stream_info(stream_name(shard))).state.last_seq)
    at = await _message_holding(js, shard, sequence, last)
    if sequence < 1 or at > last:
        return None
    message = await js.get_msg(stream_name(shard), at)
    headers = message.headers or {}
    first = int(headers[FIRST_HEADER])
    records: list[JournalRecord] = []
    _check_message(message.data or b"", first, bytes.fromhex(headers[PREVIOUS_HEADER]), records)
    return records[sequence - first].hash


def _raise_if_cancelling() -> None:
    """Honour a cancellation that was swallowed on the way: on Python 3.11, `asyncio.wait_for`
    (which nats-py's `next_msg` awaits) returns the message instead of raising when the
    cancellation arrives as the message does (CPython gh-86296). The task still counts the
    request (`Task.cancelling`), so a reader being cancelled stops here instead of reading on."""
    task = asyncio.current_task()
    if task is not None and task.cancelling():
        raise asyncio.CancelledError


class StreamReader:
    """Reads a shard's journal from the stream after a given journal sequence, verified.

    ``next_batch`` hands out the records of the next message (or of several that arrived
    together); ``stream_sequence`` says which stream message was read last. An ordered
    consumer delivers the messages: in order, gap-free, recreated by the client if it stalls.
    """

    def __init__(
        self, js: JetStreamContext, shard: str, after: int, previous_hash: bytes | None
    ) -> None:
        self._js = js
        self._shard = shard
        self.last_sequence = after
        self.head_hash = previous_hash
        self.stream_sequence = 0
        self.flush = False  # the message read last closes a feed window
        self._subscription: JetStreamContext.PushSubscription | None = None

    async def open(self) -> None:
        """Subscribe from the message holding the next record (so `stream_sequence` is the
        message before it); `next_batch` opens the reader itself if need be."""
        if self._subscription is None:
            self._subscription = await self._subscribe()

    async def _subscribe(self) -> JetStreamContext.PushSubscription:
        last = int((await self._js.stream_info(stream_name(self._shard))).state.last_seq)
        start = await _message_holding(self._js, self._shard, self.last_sequence + 1, last)
        self.stream_sequence = start - 1
        config = ConsumerConfig(deliver_policy=DeliverPolicy.BY_START_SEQUENCE, opt_start_seq=start)
        return await self._js.subscribe(
            journal_subject(self._shard),
            stream=stream_name(self._shard),
            ordered_consumer=True,
            config=config,
        )

    async def next_batch(self, timeout: float) -> list[JournalRecord] | None:
        """The next records, or None when nothing arrives within `timeout` seconds."""
        await self.open()
        assert self._subscription is not None
        try:
            message = await self._subscription.next_msg(timeout=timeout)
        except TimeoutError:
            return None
        _raise_if_cancelling()
        headers = message.headers or {}
        self.flush = FLUSH_HEADER in headers
        if not message.data:  # a feed tick: no records
            self._check_tick(headers)
            self.stream_sequence = int(message.metadata.sequence.stream)
            return []
        first = int(headers[FIRST_HEADER])
        if first > self.last_sequence + 1:
            raise StreamCorruptError(
                f"the stream of shard {self._shard} jumps from journal sequence "
                f"{self.last_sequence} to {first}"
            )
        stated_previous = bytes.fromhex(headers[PREVIOUS_HEADER])
        after = self.last_sequence
        if self.head_hash is not None and first == after + 1 and stated_previous != self.head_hash:
            raise StreamMismatchError(
                f"the stream of shard {self._shard} does not continue the journal held here "
                f"after sequence {after}: a different history"
            )
        # Starting mid-stream with no known hash, or mid-message: the message's own header
        # starts the chain, and the record we already hold is checked against it.
        previous_hash = (
            stated_previous if first <= after or self.head_hash is None else (self.head_hash)
        )
        records: list[JournalRecord] = []
        _, head_hash = _check_message(message.data or b"", first, previous_hash, records)
        if first <= after and self.head_hash is not None:
            held = records[after - first].hash if after - first < len(records) else None
            if held != self.head_hash:
                raise StreamMismatchError(
                    f"the stream of shard {self._shard} holds a different record {after} "
                    "than the journal here: a different history"
                )
        records = [record for record in records if record.sequence > after]
        self.stream_sequence = int(message.metadata.sequence.stream)
        if records:
            self.last_sequence = records[-1].sequence
        self.head_hash = head_hash
        return records

    def _check_tick(self, headers: dict[str, str]) -> None:
        last = int(headers[LAST_HEADER])
        if last > self.last_sequence:
            raise StreamCorruptError(
                f"a feed tick of shard {self._shard} follows journal sequence {last}, "
                f"but the stream gave {self.last_sequence}"
            )

    async def close(self) -> None:
        if self._subscription is not None:
            await self._subscription.unsubscribe()
            self._subscription = None


class StreamBatch(NamedTuple):
    """One stream message: its journal records (none for a feed tick), and whether gateways
    flush their feed after it."""

    records: list[JournalRecord]
    flush: bool


async def follow(
    js: JetStreamContext,
    shard: str,
    after_sequence: int,
    previous_hash: bytes | None = None,
    *,
    poll_seconds: float = 1.0,
) -> AsyncIterator[StreamBatch]:
    """Yield the shard's journal after `after_sequence` message by message, forever.

    With `previous_hash` (the hash at `after_sequence`), the stream must continue exactly that
    history. A message is what the writer appended together (a sequencer batch), or a tick."""
    reader = StreamReader(js, shard, after_sequence, previous_hash)
    try:
        while True:
            records = await reader.next_batch(poll_seconds)
            if records or (records is not None and reader.flush):
                yield StreamBatch(records, reader.flush)
    finally:
        await reader.close()


async def read_to_end(
    js: JetStreamContext, shard: str, after_sequence: int, previous_hash: bytes | None
) -> AsyncIterator[list[JournalRecord]]:
    """Yield the records after `after_sequence` up to the stream's end as of this call."""
    end = int((await js.stream_info(stream_name(shard))).state.last_seq)
    reader = StreamReader(js, shard, after_sequence, previous_hash)
    try:
        await reader.open()
        while reader.stream_sequence < end:
            records = await reader.next_batch(PUBLISH_TIMEOUT_SECONDS)
            if records is None:
                raise TimeoutError(f"the stream of shard {shard} stopped before message {end}")
            if records:
                yield records
    finally:
        await reader.close()


def _messages(
    records: Sequence[tuple[int, int, bytes]], limit_bytes: int
) -> list[Sequence[tuple[int, int, bytes]]]:
    """Split a batch into runs whose encoded size fits one stream message."""
    runs: list[Sequence[tuple[int, int, bytes]]] = []
    start, size = 0, 0
    for index, (_, _, payload) in enumerate(records):
        record_bytes = RECORD_OVERHEAD_BYTES + len(payload)
        if size + record_bytes > limit_bytes and index > start:
            runs.append(records[start:index])
            start, size = index, 0
        size += record_bytes
    runs.append(records[start:])
    return runs


class JetStreamWriter:
    """Appends journal batches to a shard's stream: the leader's half of the journal.

    Each message is published with the expected last stream sequence (fencing) and counts as
    written only once JetStream acknowledged it, i.e. stored it on its replicas."""

    def __init__(self, nc: NatsClient, js: JetStreamContext, shard: str, end: StreamPosition):
        self._js = js
        self.shard = shard
        self._subject = journal_subject(shard)
        self._stream = stream_name(shard)
        self._position = end
        self.message_bytes = nc.max_payload - HEADROOM_BYTES

    @property
    def last_sequence(self) -> int:
        return self._position.last_sequence

    @property
    def head_hash(self) -> bytes:
        return self._position.head_hash

    @property
    def max_record_payload(self) -> int:
        """The largest command payload one message can carry."""
        return self.message_bytes - RECORD_OVERHEAD_BYTES

    async def append(
        self, records: Sequence[tuple[int, int, bytes]], *, flush: bool = False
    ) -> None:
        """Append `(sequence, time_ns, payload)` records, continuing the stream's journal.

        Raises `FencedError` if another writer appended since our last message. A batch split
        over several messages can be cut between them by a failure: its first part is then in
        the journal though no caller was told so (as with any write whose answer was lost)."""
        position = self._position
        if records and records[0][0] != position.last_sequence + 1:
            raise ValueError(
                f"batch starts at {records[0][0]}, the stream is at {position.last_sequence}"
            )
        runs = _messages(records, self.message_bytes)
        for number, run in enumerate(runs, start=1):
            data, head_hash = _encode_batch(run, position.head_hash)
            position = await self._publish(
                data, run[0][0], run[-1][0], head_hash, flush=flush and number == len(runs)
            )

    async def tick(self) -> None:
        """An empty message that tells gateways to flush their feed (trading went quiet)."""
        position = self._position
        await self._publish(
            b"", position.last_sequence + 1, position.last_sequence, position.head_hash, flush=True
        )

    async def _publish(
        self, data: bytes, first: int, last: int, head_hash: bytes, *, flush: bool
    ) -> StreamPosition:
        position = self._position
        headers = {
            "Nats-Expected-Last-Sequence": str(position.stream_sequence),
            FIRST_HEADER: str(first),
            LAST_HEADER: str(last),
            PREVIOUS_HEADER: position.head_hash.hex(),
        }
        if flush:
            headers[FLUSH_HEADER] = "1"
        try:
            ack = await self._js.publish(
                self._subject,
                data,
                timeout=PUBLISH_TIMEOUT_SECONDS,
                stream=self._stream,
                headers=headers,
            )
        except APIError as error:
            if error.err_code == WRONG_LAST_SEQUENCE:
                raise FencedError(
                    f"another engine appended to stream {self._stream} after message "
                    f"{position.stream_sequence}: this one no longer leads shard "
                    f"{self.shard} and stops"
                ) from error
            raise
        assert ack.seq == position.stream_sequence + 1, (ack.seq, position.stream_sequence)
        self._position = StreamPosition(ack.seq, last, head_hash)
        return self._position


class LeaseLost(Exception):
    """Another node holds the shard's lease, or it could not be renewed in time."""


class Lease:
    """Leadership of one shard, held by renewing a key that expires after `LEASE_SECONDS`."""

    def __init__(self, kv: KeyValue, shard: str, holder: str) -> None:
        self._kv = kv
        self._key = check_shard(shard)
        self._holder = holder.encode()
        self._revision: int | None = None
        self._renewed_at = 0.0

    @classmethod
    async def open(cls, js: JetStreamContext, shard: str, holder: str) -> Lease:
        try:
            kv = await js.key_value(LEASE_BUCKET)
        except Exception:  # the bucket does not exist yet: first node of the cluster
            kv = await js.create_key_value(
                KeyValueConfig(bucket=LEASE_BUCKET, ttl=LEASE_SECONDS, history=1)
            )
        return cls(kv, shard, holder)

    @property
    def held(self) -> bool:
        """Held, and renewed recently enough that no one else can have taken it since."""
        return (
            self._revision is not None and time.monotonic() - self._renewed_at < LEASE_SECONDS * 0.8
        )

    async def try_acquire(self) -> bool:
        """Take the lease if no one holds it; True when it is ours now."""
        started = time.monotonic()
        try:
            self._revision = await self._kv.create(self._key, self._holder)
        except (KeyWrongLastSequenceError, KeyNotFoundError):
            # KeyNotFoundError: the client looks the key up after a refused create, and the
            # holder's entry may expire in between; either way it was not ours this time.
            return False
        self._renewed_at = started
        return True

    async def renew(self) -> None:
        """Extend the lease; raises `LeaseLost` if someone else wrote the key since."""
        started = time.monotonic()
        try:
            self._revision = await self._kv.update(self._key, self._holder, last=self._revision)
        except (KeyWrongLastSequenceError, APIError) as error:
            self._revision = None
            raise LeaseLost(f"the lease of shard {self._key} was lost: {error}") from error
        self._renewed_at = started

    async def keep(self) -> None:
        """Renew until cancelled or lost (raises `LeaseLost`). A renewal that fails otherwise
        (a timeout, the connection reconnecting) is tried again at the next beat, until the
        lease would have lapsed: then it is lost too, and says why."""
        while True:
            await asyncio.sleep(RENEW_EVERY_SECONDS)
            try:
                await asyncio.wait_for(self.renew(), timeout=LEASE_SECONDS / 2)
            except LeaseLost:
                raise
            except Exception as error:
                if not self.held:
                    raise LeaseLost(
                        f"could not renew the lease of shard {self._key}: {error!r}"
                    ) from error

    async def release(self) -> None:
        """Give the lease up at once (a clean stop), so a standby need not wait for expiry."""
        if self._revision is None:
            return
        revision, self._revision = self._revision, None
        # Someone else may hold it already: then there is nothing of ours to release.
        with contextlib.suppress(KeyWrongLastSequenceError, APIError):
            await self._kv.delete(self._key, last=revision)
