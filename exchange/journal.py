"""The journal: an append-only, hash-chained log of sequenced commands.

Why it exists: the journal is the exchange's source of truth. The sequencer stamps each command
with a global sequence number and a UTC nanosecond time, appends a batch of them here, and only
after the batch is durable (one fsync per batch: group commit) applies and acknowledges them.
Every other piece of state is a projection that can be rebuilt by replaying the journal, and
regulators verify its SHA-256 hash chain to prove that no record was altered, removed or reordered.

On-disk format
--------------
A journal is a directory of segment files named ``journal-{first_sequence:020d}.seg``; the name
is the sequence of the segment's first record, so a reader can skip whole segments by name. A new
segment starts, at a batch boundary, once the current one has reached ``segment_bytes``; the
directory is fsynced when a segment is created so the new file survives a crash. Segments hold
records back to back, with no file header. Sequences start at 1 and are contiguous across
segments. Every integer is little-endian::

    offset   size  field
    0        4     length     u32  number of bytes after the crc field (= 48 + len(payload))
    4        4     crc32      u32  zlib.crc32 of those ``length`` bytes
    8        8     sequence   u64  global sequence number, previous record's + 1
    16       8     time_ns    u64  UTC nanoseconds, stamped once by the sequencer
    24       n     payload    the encoded command, at most MAX_PAYLOAD_BYTES
    24+n     32    hash       sha256(previous_hash || sequence u64 || time_ns u64 || payload)

The first record's ``previous_hash`` is 32 zero bytes (``GENESIS_HASH``). The hashed bytes after
``previous_hash`` are exactly the record bytes from offset 8 up to the hash, so anyone can
re-derive the chain with a dozen lines of code and no knowledge of the payload encoding.

Crash recovery: what counts as a torn tail
------------------------------------------
A crash can leave only the last, unacknowledged batch half-written, and only at the end of the
last segment. ``Journal.open`` therefore cuts off (truncates and fsyncs) a problem found at
offset ``o`` of the last segment when what lies from ``o`` to the end of the file is what a crash
leaves behind:

1. fewer bytes than a record header; or
2. a record whose declared length is within limits but runs past the end of the file; or
3. only zero bytes (a file extended but never filled); or
4. one complete record with a bad CRC followed by nothing but zero bytes.

Anything else is corruption of acknowledged data and raises ``JournalCorruptError``: a bad record
followed by further data, any problem in a segment that is not the last, a CRC-valid record with
the wrong sequence or hash, a segment whose name does not continue the sequence. A journal never
silently drops a record that follows a bad one.

``verify`` is read-only and never truncates; it reports a torn tail as ``ok=False`` with
``torn_tail=True`` and a message saying so, because a regulator should hear that the files are
not clean even though no acknowledged record is lost. ``records``, ``last_sequence`` and
``head_hash`` then describe the intact prefix, which is what ``Journal.open`` would keep.

Limits (TigerStyle: a limit on everything): a payload is at most ``MAX_PAYLOAD_BYTES``; a batch
is at most ``MAX_BATCH_RECORDS`` records and ``MAX_BATCH_BYTES`` encoded bytes. Every batch is
decoded and checked again right before it is written, and every record is checked (CRC,
sequence, hash chain) each time it is read back.

Reading: ``Journal.read`` and ``read_committed`` return a ``JournalReader``. Iterated, it gives
one ``JournalRecord`` (with its hash) per record. A replay reads it instead with
``decoded_batches(decode)``: per chunk read, the records' times and payloads decoded straight
from the chunk by ``decode`` (no record or hash object per record), with the chain hashes
before the first and after the last; checked exactly as any read is, but on a thread of its own
up to two chunks ahead, so that the check runs on another core beside the decoding and applying.

A ``Journal`` is the single writer of its directory (it holds an exclusive ``flock`` on the
directory) and is not thread-safe. It reads no clock, no randomness and no global state.
"""

from __future__ import annotations

import bisect
import contextlib
import fcntl
import hashlib
import os
import queue
import re
import struct
import threading
import zlib
from collections.abc import Callable, Generator, Iterator, Sequence
from pathlib import Path
from types import ModuleType, TracebackType
from typing import Any, Final, NamedTuple, TypeVar

import msgspec

__all__ = [
    "DEFAULT_SEGMENT_BYTES",
    "GENESIS_HASH",
    "MAX_BATCH_BYTES",
    "MAX_BATCH_RECORDS",
    "MAX_PAYLOAD_BYTES",
    "DecodedBatch",
    "Journal",
    "JournalCorruptError",
    "JournalLockedError",
    "JournalReader",
    "JournalRecord",
    "VerifyReport",
    "read_committed",
    "record_hash",
    "segment_name",
    "verify",
]

MAX_PAYLOAD_BYTES: Final = 1 << 20
MAX_BATCH_RECORDS: Final = 8192
MAX_BATCH_BYTES: Final = 16 << 20
DEFAULT_SEGMENT_BYTES: Final = 64 << 20
GENESIS_HASH: Final = bytes(32)

_U64_LIMIT: Final = 1 << 64
_HEADER: Final = struct.Struct("<IIQQ")  # length, crc32, sequence, time_ns
_FRAME: Final = struct.Struct("<II")  # length, crc32
_SEQUENCE_TIME: Final = struct.Struct("<QQ")  # sequence, time_ns
_U64: Final = struct.Struct("<Q")
_HEADER_BYTES: Final = _HEADER.size  # 24
_FRAME_BYTES: Final = _FRAME.size  # 8
_HASH_BYTES: Final = 32
_MIN_LENGTH: Final = _SEQUENCE_TIME.size + _HASH_BYTES  # an empty payload
_MAX_LENGTH: Final = _MIN_LENGTH + MAX_PAYLOAD_BYTES
_MAX_RECORD_BYTES: Final = _FRAME_BYTES + _MAX_LENGTH
# Reads go in big chunks so the per-record cost is parsing, not system calls.
_READ_CHUNK_BYTES: Final = 4 << 20
# Reading from the middle of a segment starts at the nearest checkpoint at or before it.
_CHECKPOINT_BYTES: Final = 4 << 20
# A replay's reader checks up to this many chunks ahead of the one being decoded (on a thread:
# _read_ahead), holding that many more chunks in memory; it looks for a consumer that went away
# at this interval while it waits for room.
_READ_AHEAD_CHUNKS: Final = 2
# The compiled codec checks a buffer this long or longer in two halves at once, on two threads
# (compiled_journal.pyx, `_scan_in_halves`): a read chunk is, a batch being written is not.
_SPLIT_CHECK_BYTES: Final = 1 << 20
_READ_AHEAD_POLL_S: Final = 0.05
_SEGMENT_NAME: Final = re.compile(r"journal-(\d{20})\.seg")

assert _HEADER_BYTES == 24 and _MIN_LENGTH == 48
assert _MAX_RECORD_BYTES <= MAX_BATCH_BYTES, "a batch must be able to hold one maximal record"
assert _MAX_RECORD_BYTES < _READ_CHUNK_BYTES, "one read chunk must hold any record"

# Why a scan stopped early. _SHORT means "the data ends inside a record".
_SHORT: Final = "the record runs past the end of the segment"
_LENGTH: Final = "the record length is impossible"
_CRC: Final = "the CRC does not match"
_SEQUENCE: Final = "the sequence number does not follow the previous record"
_CHAIN: Final = "the hash chain is broken"
_NAME: Final = "the segment name does not continue the sequence"

# The compiled twin of the record codec (`exchange/compiled_journal.pyx`): the same bytes and
# the same answers, several times faster; this module's Python codec is the fallback when it
# was not built, and `HOGX_PURE_PYTHON_JOURNAL=1` forces it (to debug, or to compare).
PURE_PYTHON_ENV: Final = "HOGX_PURE_PYTHON_JOURNAL"
_compiled: ModuleType | None
try:
    from exchange import compiled_journal as _compiled
except ImportError:  # not built: no compiler, Cython, or OpenSSL/zlib headers at install time
    _compiled = None
if os.environ.get(PURE_PYTHON_ENV) == "1":
    _compiled = None
CODEC_IMPLEMENTATION: Final = "python" if _compiled is None else "compiled"
# The compiled codec's problem codes, as this module's messages (identity matters: `is _SHORT`).
_PROBLEMS: Final = (None, _SHORT, _LENGTH, _CRC, _SEQUENCE, _CHAIN)

# What a scan makes of each chunk it reads: records, a checked chunk, or nothing (a check).
_Made = TypeVar("_Made")
# (offset after the good prefix, next expected sequence, head hash, problem, what it made)
_Parsed = tuple[int, int, bytes, "str | None", _Made]
_ChunkParse = Callable[[bytes, int, bytes], _Parsed[_Made]]


class JournalRecord(msgspec.Struct, frozen=True, gc=False):
    """One journaled command. ``gc=False``: it holds only ints and bytes, so no cycles."""

    sequence: int
    time_ns: int
    payload: bytes
    hash: bytes


class VerifyReport(msgspec.Struct, frozen=True):
    """What ``verify`` found; ``records``, ``last_sequence``, ``head_hash``: the intact prefix."""

    ok: bool
    records: int
    last_sequence: int
    head_hash: str
    first_bad_sequence: int | None
    message: str
    torn_tail: bool = False


class JournalCorruptError(Exception):
    """Acknowledged journal data is damaged; replaying past ``sequence`` would be a lie."""

    def __init__(self, reason: str, *, sequence: int, path: Path, offset: int) -> None:
        super().__init__(
            f"journal corrupt at sequence {sequence}: {reason} ({path.name} at offset {offset})"
        )
        self.reason = reason
        self.sequence = sequence
        self.path = path
        self.offset = offset


class JournalLockedError(Exception):
    """Another ``Journal`` already writes to this directory; there must be a single writer."""


def record_hash(previous_hash: bytes, sequence: int, time_ns: int, payload: bytes) -> bytes:
    """The chain hash of one record, as a regulator would recompute it."""
    return hashlib.sha256(previous_hash + _SEQUENCE_TIME.pack(sequence, time_ns) + payload).digest()


def segment_name(first_sequence: int) -> str:
    return f"journal-{first_sequence:020d}.seg"


# --------------------------------------------------------------------------------------------
# Decoding: the hot loop and the scans built on it.


def _compiled_fits(
    buf: bytes, expected: int, previous_hash: bytes, wanted_from: int, wanted_to: int
) -> bool:
    """Can the compiled codec parse with these arguments (is it built, do they fit its u64
    fields)? Else the Python codec does, and gives the same answers."""
    return (
        _compiled is not None
        and type(buf) is bytes
        and type(previous_hash) is bytes
        and len(previous_hash) == _HASH_BYTES  # else no record can chain: Python says so
        and 0 <= expected < _U64_LIMIT
        and 0 <= wanted_from < _U64_LIMIT
        and wanted_to >= 0
    )


def _parse_records(
    buf: bytes,
    expected: int,
    previous_hash: bytes,
    wanted_from: int,
    wanted_to: int,
    out: list[JournalRecord] | None,
    *,
    in_halves: bool = True,
) -> tuple[int, int, bytes, str | None]:
    """Check records in ``buf`` from offset 0 until the data, or ``wanted_to``, ends; with the
    compiled codec when it is built (and the arguments fit its u64 fields), else in Python.
    The compiled codec checks a long buffer in two halves at once unless ``in_halves`` is False.

    Returns ``(offset, expected, previous_hash, problem)``, as `_parse_records_python`.
    """
    if _compiled_fits(buf, expected, previous_hash, wanted_from, wanted_to):
        assert _compiled is not None
        stops = wanted_to < _U64_LIMIT
        used, expected, previous_hash, code = _compiled.parse_records(
            buf,
            expected,
            previous_hash,
            wanted_from,
            wanted_to if stops else 0,
            stops,
            out,
            JournalRecord,
            _MAX_LENGTH,
            _SPLIT_CHECK_BYTES if in_halves else len(buf) + 1,
        )
        return used, expected, previous_hash, _PROBLEMS[code]
    return _parse_records_python(buf, expected, previous_hash, wanted_from, wanted_to, out)


def _parse_records_python(
    buf: bytes,
    expected: int,
    previous_hash: bytes,
    wanted_from: int,
    wanted_to: int,
    out: list[JournalRecord] | None,
) -> tuple[int, int, bytes, str | None]:
    """Check records in ``buf`` from offset 0 until the data, or ``wanted_to``, ends.

    Returns ``(offset, expected, previous_hash, problem)``: the offset after the last good record,
    the sequence and previous hash the next record must have, and why parsing stopped early
    (None when it consumed everything or reached ``wanted_to``). Records with sequence
    >= ``wanted_from`` are appended to ``out`` when it is given. Deliberately one flat loop with
    local names: this is the replay path and runs once per record.
    """
    unpack = _HEADER.unpack_from
    crc32 = zlib.crc32
    sha256 = hashlib.sha256
    build = out is not None
    sink: list[JournalRecord] = out if out is not None else []
    end = len(buf)
    offset = 0
    with memoryview(buf) as view:
        while offset < end:
            if end - offset < _HEADER_BYTES:
                return offset, expected, previous_hash, _SHORT
            length, crc, sequence, time_ns = unpack(buf, offset)
            if length < _MIN_LENGTH or length > _MAX_LENGTH:
                return offset, expected, previous_hash, _LENGTH
            body = offset + _FRAME_BYTES
            record_end = body + length
            if record_end > end:
                return offset, expected, previous_hash, _SHORT
            if crc32(view[body:record_end]) != crc:
                return offset, expected, previous_hash, _CRC
            if sequence != expected:
                return offset, expected, previous_hash, _SEQUENCE
            hash_start = record_end - _HASH_BYTES
            stored_hash = buf[hash_start:record_end]
            if sha256(previous_hash + view[body:hash_start]).digest() != stored_hash:
                return offset, expected, previous_hash, _CHAIN
            if build and sequence >= wanted_from:
                payload = buf[offset + _HEADER_BYTES : hash_start]
                sink.append(JournalRecord(sequence, time_ns, payload, stored_hash))
            previous_hash = stored_hash
            expected = sequence + 1
            offset = record_end
            if sequence == wanted_to:
                break
    return offset, expected, previous_hash, None


class DecodedBatch(msgspec.Struct, frozen=True):
    """Consecutive checked records of one read chunk, their payloads decoded: what a replay
    applies (`JournalReader.decoded_batches`). Record ``first_sequence + i`` has time
    ``times[i]`` and payload ``decode(payload)`` = ``entries[i]``; no record or hash object is
    built per record, only the chain hashes a replay keeps: before the first and after the last.
    """

    first_sequence: int  # of entries[0]; without entries, of the next record (read or not)
    times: list[int]
    entries: list[Any]
    previous_hash: bytes  # the chain hash of record first_sequence - 1
    last_hash: bytes  # the chain hash of the last record in entries; previous_hash if none
    # What decoding the record after the last entry raised: that record and the rest of the
    # chunk are not in the batch, and a reader that hands this batch out reads no further.
    error: Exception | None
    data: bytes  # the chunk read, for `hash_at`
    first_offset: int  # where record first_sequence starts in data

    def hash_at(self, index: int) -> bytes:
        """The chain hash of record ``first_sequence + index`` (walking the chunk: not for
        every record)."""
        if not 0 <= index < len(self.entries):
            raise IndexError(f"no entry {index} in a batch of {len(self.entries)}")
        return _hash_of_record(self.data, self.first_offset, index)


def _hash_of_record(data: bytes, offset: int, index: int) -> bytes:
    """The stored hash of the ``index``-th record from ``offset`` in checked ``data``."""
    for _ in range(index):
        offset += _FRAME_BYTES + _FRAME.unpack_from(data, offset)[0]
    end = offset + _FRAME_BYTES + _FRAME.unpack_from(data, offset)[0]
    return data[end - _HASH_BYTES : end]


def _check_for_decoding(
    buf: bytes, expected: int, previous_hash: bytes, wanted_from: int, wanted_to: int
) -> _Parsed[_CheckedChunk]:
    """`_parse_records`' check of a chunk, building nothing: the chunk and its good prefix,
    for `_decode_checked` and `_decoded_batch` to make the replay's batch of."""
    # Not in halves: this check already runs on a thread of its own beside the decoding
    # (_read_ahead), and a third thread would take turns with the replay's own on two cores.
    used, next_expected, head_hash, problem = _parse_records(
        buf, expected, previous_hash, wanted_from, wanted_to, None, in_halves=False
    )
    chunk = _CheckedChunk(buf, used, previous_hash, next_expected, head_hash)
    return used, next_expected, head_hash, problem, chunk


class _CheckedChunk(NamedTuple):
    """A chunk read and its good prefix ``data[:used]``, checked from ``previous_hash`` on."""

    data: bytes
    used: int
    previous_hash: bytes  # the chain hash of the record before the chunk's first
    next_expected: int  # the sequence after the prefix's last record
    head_hash: bytes  # the chain hash of the prefix's last record (previous_hash if none)


def _decoded_batch(
    chunk: _CheckedChunk, decoded: tuple[int, list[int], list[Any], Exception | None]
) -> DecodedBatch:
    """The `DecodedBatch` of a checked chunk, from what decoding its prefix gave."""
    first_offset, times, entries, error = decoded
    buf = chunk.data
    if first_offset < chunk.used:
        (first_sequence,) = _U64.unpack_from(buf, first_offset + _FRAME_BYTES)
    else:
        first_sequence = chunk.next_expected
    before = buf[first_offset - _HASH_BYTES : first_offset] if first_offset else chunk.previous_hash
    if not entries:
        last_hash = before
    elif error is None:  # every record from the first wanted one to the good prefix's end
        last_hash = chunk.head_hash
    else:
        last_hash = _hash_of_record(buf, first_offset, len(entries) - 1)
    return DecodedBatch(first_sequence, times, entries, before, last_hash, error, buf, first_offset)


def _decode_checked(
    buf: bytes, end: int, wanted_from: int, decode: Callable[[bytes], Any]
) -> tuple[int, list[int], list[Any], Exception | None]:
    """`_decode_checked_python`, with the compiled codec when it is built (and the arguments
    fit it)."""
    if (
        _compiled is not None
        and type(buf) is bytes
        and 0 <= end <= len(buf)
        and 0 <= wanted_from < _U64_LIMIT
    ):
        decoded: tuple[int, list[int], list[Any], Exception | None]
        decoded = _compiled.decode_checked(buf, end, wanted_from, decode)
        return decoded
    return _decode_checked_python(buf, end, wanted_from, decode)


def _decode_checked_python(
    buf: bytes, end: int, wanted_from: int, decode: Callable[[bytes], Any]
) -> tuple[int, list[int], list[Any], Exception | None]:
    """Decode the payload of each record of ``buf[:end]``, a prefix a check passed, from
    sequence ``wanted_from`` on, in order, until ``decode`` raises (an ``Exception``).

    Returns ``(first_offset, times, entries, error)``: where the first wanted record starts
    (``end`` if there is none), the time and decoded payload of each record decoded, and what
    ``decode`` raised at the record after them. Framing that does not fit the prefix (a wrong
    ``end``) is a ``ValueError`` before anything is decoded.
    """
    if not 0 <= end <= len(buf):
        raise ValueError(f"end {end} is outside a buffer of {len(buf)} bytes")
    starts = []
    offset = 0
    while offset < end:
        if end - offset < _HEADER_BYTES:
            raise ValueError(f"a record at offset {offset} is cut by the end of the prefix")
        length = _FRAME.unpack_from(buf, offset)[0]
        if length < _MIN_LENGTH or length > end - offset - _FRAME_BYTES:
            raise ValueError(f"the record at offset {offset} does not fit the prefix")
        starts.append(offset)
        offset += _FRAME_BYTES + length
    first_offset = end
    times: list[int] = []
    entries: list[Any] = []
    error: Exception | None = None
    for start in starts:
        length, _, sequence, time_ns = _HEADER.unpack_from(buf, start)
        if first_offset == end:
            if sequence < wanted_from:
                continue
            first_offset = start
        try:
            entry = decode(buf[start + _HEADER_BYTES : start + _FRAME_BYTES + length - _HASH_BYTES])
        except Exception as raised:
            error = raised
            break
        times.append(time_ns)
        entries.append(entry)
    return first_offset, times, entries, error


class _Cursor:
    """Where a scan stands: the next expected record, and where and why it stopped early."""

    __slots__ = ("expected", "offset", "previous_hash", "problem")

    def __init__(self, expected: int, previous_hash: bytes) -> None:
        self.expected = expected
        self.previous_hash = previous_hash
        self.offset = 0  # in the current segment, just after the last good record
        self.problem: str | None = None


class _Checkpoint(NamedTuple):
    """A checked record boundary inside a segment, so a read can start there instead of at 0."""

    sequence: int  # of the record at ``offset``
    offset: int
    previous_hash: bytes


def _scan_segment(
    path: Path,
    cursor: _Cursor,
    start_offset: int,
    wanted_to: int,
    parse: _ChunkParse[_Made],
    checkpoints: list[_Checkpoint] | None = None,
) -> Iterator[_Made]:
    """Check one segment chunk by chunk, yielding what ``parse`` makes of each chunk read.

    Starts at ``start_offset``, a record boundary where ``cursor`` describes the next record.
    Stops at the end of the file, after ``wanted_to``, or at the first problem, which it leaves
    in ``cursor.problem`` with ``cursor.offset`` pointing at the bad record. Appends a checkpoint
    to ``checkpoints``, if given, every ``_CHECKPOINT_BYTES`` or so. Every chunk is read from a
    record boundary (a record cut by the chunk's end is read again with the next chunk), so no
    chunk is ever copied to join it with the one before.
    """
    cursor.offset = start_offset
    cursor.problem = None
    size = _READ_CHUNK_BYTES
    fd = os.open(path, os.O_RDONLY)
    try:
        while cursor.expected <= wanted_to:
            if checkpoints is not None:
                _maybe_checkpoint(checkpoints, cursor.expected, cursor.offset, cursor.previous_hash)
            data = os.pread(fd, size, cursor.offset)
            if not data:
                return
            used, cursor.expected, cursor.previous_hash, problem, made = parse(
                data, cursor.expected, cursor.previous_hash
            )
            cursor.offset += used
            yield made
            if problem is _SHORT and used > 0:
                size = _READ_CHUNK_BYTES  # the chunk ended inside a record: read on from it
            elif problem is _SHORT and len(data) == size:
                size *= 2  # a record longer than a chunk (only if chunks are made small)
            elif problem is not None:  # _SHORT with nothing used: the file ends in a record
                cursor.problem = problem
                return
    finally:
        os.close(fd)


def _maybe_checkpoint(
    checkpoints: list[_Checkpoint], sequence: int, offset: int, previous_hash: bytes
) -> None:
    if offset - checkpoints[-1].offset >= _CHECKPOINT_BYTES:
        checkpoints.append(_Checkpoint(sequence, offset, previous_hash))


def _drain(made: Iterator[object]) -> None:
    for _ in made:
        pass


def _check_chunk(buf: bytes, expected: int, previous_hash: bytes) -> _Parsed[None]:
    """Check every record of a chunk, building nothing."""
    used, expected, previous_hash, problem = _parse_records(
        buf, expected, previous_hash, 1, _U64_LIMIT, None
    )
    return used, expected, previous_hash, problem, None


class _Segment(msgspec.Struct, frozen=True):
    first_sequence: int
    path: Path
    checkpoints: list[_Checkpoint]  # ascending; the first is (first_sequence, 0, previous hash)


class _TornTail(msgspec.Struct, frozen=True):
    path: Path
    offset: int
    size_bytes: int


class _JournalScan(msgspec.Struct, frozen=True):
    """Everything ``open`` and ``verify`` learn by checking the whole journal."""

    segments: list[_Segment]
    last_sequence: int
    head_hash: bytes
    torn_tail: _TornTail | None
    error: JournalCorruptError | None


def _list_segments(directory: Path) -> list[tuple[int, Path]]:
    found = []
    for entry in directory.iterdir():
        match = _SEGMENT_NAME.fullmatch(entry.name)
        if match is not None and entry.is_file():
            found.append((int(match.group(1)), entry))
    found.sort()
    return found


def _scan_journal(directory: Path) -> _JournalScan:
    """Check every segment: CRCs, contiguity (within and across segments), the hash chain."""
    listed = _list_segments(directory)
    cursor = _Cursor(1, GENESIS_HASH)
    segments: list[_Segment] = []
    for index, (first_sequence, path) in enumerate(listed):
        if first_sequence != cursor.expected:
            error = JournalCorruptError(
                f"{_NAME}: {path.name} should start at sequence {cursor.expected}",
                sequence=cursor.expected,
                path=path,
                offset=0,
            )
            return _partial_scan(segments, cursor, None, error)
        start = _Checkpoint(first_sequence, 0, cursor.previous_hash)
        segment = _Segment(first_sequence, path, [start])
        segments.append(segment)
        _drain(_scan_segment(path, cursor, 0, _U64_LIMIT, _check_chunk, segment.checkpoints))
        if cursor.problem is None:
            continue
        is_last = index == len(listed) - 1
        if is_last and _is_torn_tail(path, cursor.problem, cursor.offset, cursor.expected):
            size = path.stat().st_size - cursor.offset
            return _partial_scan(segments, cursor, _TornTail(path, cursor.offset, size), None)
        error = JournalCorruptError(
            cursor.problem, sequence=cursor.expected, path=path, offset=cursor.offset
        )
        return _partial_scan(segments, cursor, None, error)
    return _partial_scan(segments, cursor, None, None)


def _partial_scan(
    segments: list[_Segment],
    cursor: _Cursor,
    torn_tail: _TornTail | None,
    error: JournalCorruptError | None,
) -> _JournalScan:
    return _JournalScan(segments, cursor.expected - 1, cursor.previous_hash, torn_tail, error)


def _is_torn_tail(path: Path, problem: str, offset: int, expected: int) -> bool:
    """Could the bytes from ``offset`` to the end of the last segment be a crash's leftovers?

    A crash tears only the end of the last batch, so no complete record can follow the torn
    one: if a CRC-valid record with a later sequence lies beyond ``offset``, the bad record is
    damage (a flipped length bit, say), not a tear, and cutting there would drop acknowledged
    records.
    """
    if _valid_record_after(path, offset, expected):
        return False
    if problem is _SHORT:
        return True
    if problem is _LENGTH:
        return _only_zeros_from(path, offset)
    if problem is _CRC:
        with path.open("rb") as file:
            file.seek(offset)
            (length,) = struct.unpack("<I", file.read(4))
        return _only_zeros_from(path, offset + _FRAME_BYTES + length)
    return False


def _valid_record_after(path: Path, offset: int, expected: int) -> bool:
    """Is there a CRC-valid record with sequence ``expected + 1`` after ``offset``?

    The record after a damaged one would carry the next sequence number, so its 8 bytes are
    searched for directly; each hit is confirmed by its CRC.
    """
    data = path.read_bytes()
    needle = _SEQUENCE_TIME.pack(expected + 1, 0)[:8]
    position = data.find(needle, offset + _FRAME_BYTES + 1)
    while position != -1:
        start = position - _FRAME_BYTES
        length, crc = _FRAME.unpack_from(data, start)
        end = start + _FRAME_BYTES + length
        framed = _MIN_LENGTH <= length <= _MAX_LENGTH and end <= len(data)
        if framed and zlib.crc32(memoryview(data)[start + _FRAME_BYTES : end]) == crc:
            return True
        position = data.find(needle, position + 1)
    return False


def _only_zeros_from(path: Path, offset: int) -> bool:
    with path.open("rb", buffering=0) as file:
        file.seek(offset)
        while chunk := file.read(_READ_CHUNK_BYTES):
            if chunk.count(0) != len(chunk):
                return False
    return True


# --------------------------------------------------------------------------------------------
# Encoding.


def _check_batch(records: Sequence[tuple[int, int, bytes]], last_sequence: int) -> None:
    """Reject a batch that would break a limit or the sequence before anything touches disk."""
    if len(records) > MAX_BATCH_RECORDS:
        raise ValueError(f"batch of {len(records)} records exceeds {MAX_BATCH_RECORDS}")
    total_bytes = 0
    for index, (sequence, time_ns, payload) in enumerate(records):
        expected = last_sequence + 1 + index
        if type(sequence) is not int or type(time_ns) is not int:
            raise TypeError(f"sequence and time_ns must be int, got {sequence!r}, {time_ns!r}")
        if sequence != expected:
            raise ValueError(f"sequence {sequence} is not contiguous: expected {expected}")
        if not 0 <= time_ns < _U64_LIMIT:
            raise ValueError(f"time_ns {time_ns} of sequence {sequence} is not a u64")
        if type(payload) is not bytes:
            raise TypeError(f"payload of sequence {sequence} must be bytes")
        if len(payload) > MAX_PAYLOAD_BYTES:
            raise ValueError(
                f"payload of sequence {sequence} is {len(payload)} bytes, over {MAX_PAYLOAD_BYTES}"
            )
        total_bytes += _FRAME_BYTES + _MIN_LENGTH + len(payload)
    if total_bytes > MAX_BATCH_BYTES:
        raise ValueError(f"batch of {total_bytes} bytes exceeds {MAX_BATCH_BYTES}")
    if records[-1][0] >= _U64_LIMIT:
        raise ValueError("sequence overflows u64")


def _encode_batch(
    records: Sequence[tuple[int, int, bytes]], previous_hash: bytes
) -> tuple[bytes, bytes]:
    """Encode a checked batch; returns the bytes to write and the new head hash. The compiled
    codec, when built, writes exactly the bytes `_encode_batch_python` would."""
    if _compiled is not None and type(previous_hash) is bytes and len(previous_hash) == _HASH_BYTES:
        encoded: tuple[bytes, bytes] = _compiled.encode_batch(records, previous_hash)
        return encoded
    return _encode_batch_python(records, previous_hash)


def _encode_batch_python(
    records: Sequence[tuple[int, int, bytes]], previous_hash: bytes
) -> tuple[bytes, bytes]:
    """Encode a checked batch; returns the bytes to write and the new head hash."""
    parts: list[bytes] = []
    sha256 = hashlib.sha256
    pack_frame = _FRAME.pack
    pack_sequence_time = _SEQUENCE_TIME.pack
    for sequence, time_ns, payload in records:
        hashed = pack_sequence_time(sequence, time_ns) + payload
        digest = sha256(previous_hash + hashed).digest()
        body = hashed + digest
        parts.append(pack_frame(len(body), zlib.crc32(body)))
        parts.append(body)
        previous_hash = digest
    return b"".join(parts), previous_hash


def _assert_batch_decodes(
    data: bytes, records: Sequence[tuple[int, int, bytes]], previous_hash: bytes, head_hash: bytes
) -> None:
    """Pair assertion: what we are about to write must read back as exactly what we were given.

    The reader re-derives the chain from the encoded bytes; ``head_hash`` was derived from the
    caller's tuples. Equal hashes over the same sequence range mean equal records, without the
    cost of building and comparing them one by one.
    """
    first, last = records[0][0], records[-1][0]
    used, expected, chained_hash, problem = _parse_records(
        data, first, previous_hash, first, last, None
    )
    assert problem is None and used == len(data), problem
    assert expected == last + 1 and chained_hash == head_hash


# --------------------------------------------------------------------------------------------
# The writer.


class Journal:
    """The single writer of a journal directory. Create it with ``Journal.open``."""

    def __init__(
        self,
        directory: Path,
        directory_fd: int,
        scan: _JournalScan,
        *,
        segment_bytes: int,
        fsync: bool,
        torn_tail_bytes: int,
    ) -> None:
        self._directory = directory
        self._directory_fd: int | None = directory_fd
        self._segments = list(scan.segments)
        self._last_sequence = scan.last_sequence
        self._head_hash = scan.head_hash
        self._segment_bytes = segment_bytes
        self._fsync = fsync
        self._torn_tail_bytes = torn_tail_bytes
        self._active_fd: int | None = None
        self._active_bytes = 0
        self._broken: str | None = None
        if self._segments:
            active = self._segments[-1].path
            self._active_fd = os.open(active, os.O_WRONLY | os.O_APPEND)
            self._active_bytes = os.fstat(self._active_fd).st_size

    @classmethod
    def open(
        cls,
        directory: Path,
        *,
        segment_bytes: int = DEFAULT_SEGMENT_BYTES,
        fsync: bool = True,
    ) -> Journal:
        """Open (creating if needed) a journal, checking all of it and cutting off a torn tail.

        Raises ``JournalCorruptError`` if acknowledged data is damaged and
        ``JournalLockedError`` if another ``Journal`` has the directory open.
        """
        if segment_bytes < 1:
            raise ValueError(f"segment_bytes must be positive, got {segment_bytes}")
        directory = Path(directory)
        _make_directory(directory, fsync=fsync)
        directory_fd = _lock_directory(directory)
        try:
            scan = _scan_journal(directory)
            if scan.error is not None:
                raise scan.error
            torn_tail_bytes = 0
            if scan.torn_tail is not None:
                _cut_torn_tail(scan.torn_tail, fsync=fsync)
                torn_tail_bytes = scan.torn_tail.size_bytes
            return cls(
                directory,
                directory_fd,
                scan,
                segment_bytes=segment_bytes,
                fsync=fsync,
                torn_tail_bytes=torn_tail_bytes,
            )
        except BaseException:
            os.close(directory_fd)
            raise

    @property
    def directory(self) -> Path:
        return self._directory

    @property
    def last_sequence(self) -> int:
        """Sequence of the last durable record; 0 when the journal is empty."""
        return self._last_sequence

    @property
    def head_hash(self) -> bytes:
        """Chain hash of the last record; ``GENESIS_HASH`` when the journal is empty."""
        return self._head_hash

    @property
    def record_count(self) -> int:
        return self._last_sequence  # sequences start at 1 and are contiguous

    @property
    def torn_tail_bytes(self) -> int:
        """How many bytes of an unfinished write ``open`` cut off (0 if the tail was clean)."""
        return self._torn_tail_bytes

    @property
    def closed(self) -> bool:
        return self._directory_fd is None

    def append_batch(self, records: Sequence[tuple[int, int, bytes]]) -> None:
        """Append ``(sequence, time_ns, payload)`` records durably: one write, one fsync.

        Sequences must continue from ``last_sequence``. A rejected batch changes nothing. Returns
        only once the batch is on disk (with ``fsync=True``), so the caller may acknowledge it.
        """
        self._check_writable()
        if not records:
            return
        _check_batch(records, self._last_sequence)
        data, head_hash = _encode_batch(records, self._head_hash)
        _assert_batch_decodes(data, records, self._head_hash, head_hash)
        if self._active_fd is None or self._active_bytes >= self._segment_bytes:
            self._start_segment(records[0][0])
        offset = self._active_bytes
        self._write_durably(data)
        _maybe_checkpoint(self._segments[-1].checkpoints, records[0][0], offset, self._head_hash)
        self._last_sequence = records[-1][0]
        self._head_hash = head_hash

    def read(self, from_sequence: int = 1, to_sequence: int | None = None) -> JournalReader:
        """Iterate records from ``from_sequence`` to ``to_sequence`` (at most the
        ``last_sequence`` of this moment, which is also the default).

        Every record is checked again (CRC, sequence, hash chain) on the way out; damage raises
        ``JournalCorruptError``. Segments wholly before ``from_sequence`` are skipped by name.
        A reader that wants a few records says which: reads go a 4 MB chunk at a time, and
        building the records of a whole chunk (tens of thousands) holds the GIL for
        milliseconds that the event loop, and trading, would wait.
        """
        self._check_open()
        if from_sequence < 1:
            raise ValueError(f"from_sequence must be >= 1, got {from_sequence}")
        last = self._last_sequence if to_sequence is None else min(to_sequence, self._last_sequence)
        return JournalReader(tuple(self._segments), from_sequence, last)

    def close(self) -> None:
        if self._active_fd is not None:
            os.close(self._active_fd)
            self._active_fd = None
        if self._directory_fd is not None:
            os.close(self._directory_fd)  # releases the writer lock
            self._directory_fd = None

    def __enter__(self) -> Journal:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"Journal({str(self._directory)!r}, last_sequence={self._last_sequence})"

    def _check_open(self) -> None:
        if self._directory_fd is None:
            raise ValueError("journal is closed")

    def _check_writable(self) -> None:
        self._check_open()
        if self._broken is not None:
            raise RuntimeError(
                f"journal is unusable after a failed write; reopen it: {self._broken}"
            )

    def _start_segment(self, first_sequence: int) -> None:
        path = self._directory / segment_name(first_sequence)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_APPEND, 0o644)
        if self._fsync:
            assert self._directory_fd is not None
            os.fsync(self._directory_fd)  # the new name must survive a crash too
        if self._active_fd is not None:
            os.close(self._active_fd)
        self._active_fd = fd
        self._active_bytes = 0
        start = _Checkpoint(first_sequence, 0, self._head_hash)
        self._segments.append(_Segment(first_sequence, path, [start]))

    def _write_durably(self, data: bytes) -> None:
        fd = self._active_fd
        assert fd is not None
        size_before = self._active_bytes
        try:
            with memoryview(data) as view:
                written = 0
                while written < len(data):  # one call unless the kernel writes partially
                    written += os.write(fd, view[written:])
            if self._fsync:
                os.fsync(fd)
        except OSError as error:
            # After a failed write or fsync the page cache cannot be trusted (an fsync error
            # may never be reported again): refuse further appends; reopening re-checks disk.
            self._broken = repr(error)
            _try_truncate(fd, size_before)
            raise
        self._active_bytes = size_before + len(data)


class JournalReader(Iterator[JournalRecord]):
    """Checked records ``from_sequence..to_sequence`` of a journal, read once, lazily: what
    ``Journal.read`` and ``read_committed`` return.

    Iterated, it gives each ``JournalRecord``. A replay reads it instead with
    ``decoded_batches``, a chunk's records at a time with their payloads decoded, without a
    record or hash object per record. Either way every record is checked (CRC, sequence, hash
    chain) on the way out, and damage raises ``JournalCorruptError`` naming its sequence.
    """

    __slots__ = ("_records", "_segments", "from_sequence", "to_sequence")

    def __init__(
        self, segments: tuple[_Segment, ...], from_sequence: int, to_sequence: int
    ) -> None:
        self._segments = segments
        self.from_sequence = from_sequence
        self.to_sequence = to_sequence
        self._records: Iterator[JournalRecord] | None = None

    @property
    def started(self) -> bool:
        """Has reading begun (one way or the other)? Then ``decoded_batches`` is refused."""
        return self._records is not None

    def __iter__(self) -> Iterator[JournalRecord]:
        if self._records is None:
            self._records = _read_records(self._segments, self.from_sequence, self.to_sequence)
        return self._records

    def __next__(self) -> JournalRecord:
        return next(iter(self))

    def decoded_batches(
        self, decode: Callable[[bytes], Any], after: int = 0
    ) -> Iterator[DecodedBatch]:
        """The records, one `DecodedBatch` per chunk read, payloads decoded with ``decode``.

        Records up to ``after`` are checked but not decoded (a replay from a snapshot at
        ``after`` needs only their hashes: a batch's ``previous_hash``). Every chunk gives a
        batch, even one without entries. After a batch with an ``error`` the reader stops.

        The chunks are read and checked on a thread of their own, up to two ahead of the one
        being decoded (`_read_ahead`): read to the end, or close the iterator, which ends the
        thread (as does the iterator's garbage collection).
        """
        if self._records is not None:
            raise ValueError("this reader has already started reading")
        self._records = iter(())
        return _read_decoded(
            self._segments, self.from_sequence, self.to_sequence, decode, max(after + 1, 1)
        )


def _read_segments(
    segments: tuple[_Segment, ...],
    from_sequence: int,
    last_sequence: int,
    parse: _ChunkParse[_Made],
) -> Generator[_Made, None, None]:
    """Scan ``from_sequence..last_sequence``, yielding what ``parse`` makes of each chunk;
    raises ``JournalCorruptError`` at the first problem, after yielding its chunk's prefix."""
    if from_sequence > last_sequence:
        return
    firsts = [segment.first_sequence for segment in segments]
    first_index = max(bisect.bisect_right(firsts, from_sequence) - 1, 0)
    checkpoints = segments[first_index].checkpoints
    sequences = [checkpoint.sequence for checkpoint in checkpoints]
    start = checkpoints[max(bisect.bisect_right(sequences, from_sequence) - 1, 0)]
    cursor = _Cursor(start.sequence, start.previous_hash)
    for segment in segments[first_index:]:
        if cursor.expected != segment.first_sequence and segment is not segments[first_index]:
            raise JournalCorruptError(
                f"{_NAME}: {segment.path.name} should start at sequence {cursor.expected}",
                sequence=cursor.expected,
                path=segment.path,
                offset=0,
            )
        start_offset = start.offset if segment is segments[first_index] else 0
        yield from _scan_segment(segment.path, cursor, start_offset, last_sequence, parse)
        if cursor.problem is not None:
            raise JournalCorruptError(
                cursor.problem, sequence=cursor.expected, path=segment.path, offset=cursor.offset
            )
        if cursor.expected > last_sequence:
            return
    raise JournalCorruptError(
        "the journal ends early", sequence=cursor.expected, path=segments[-1].path, offset=0
    )


def _read_records(
    segments: tuple[_Segment, ...], from_sequence: int, last_sequence: int
) -> Generator[JournalRecord, None, None]:
    def parse(buf: bytes, expected: int, previous_hash: bytes) -> _Parsed[list[JournalRecord]]:
        out: list[JournalRecord] = []
        used, expected, previous_hash, problem = _parse_records(
            buf, expected, previous_hash, from_sequence, last_sequence, out
        )
        return used, expected, previous_hash, problem, out

    for records in _read_segments(segments, from_sequence, last_sequence, parse):
        yield from records


def _read_decoded(
    segments: tuple[_Segment, ...],
    from_sequence: int,
    last_sequence: int,
    decode: Callable[[bytes], Any],
    decode_from: int,
) -> Generator[DecodedBatch, None, None]:
    wanted_from = max(from_sequence, decode_from)

    def check(buf: bytes, expected: int, previous_hash: bytes) -> _Parsed[_CheckedChunk]:
        return _check_for_decoding(buf, expected, previous_hash, wanted_from, last_sequence)

    checked = _read_segments(segments, from_sequence, last_sequence, check)
    # The Python codec's check holds the GIL: on another thread it would only take turns.
    chunks = checked if _compiled is None else _read_ahead(checked, _READ_AHEAD_CHUNKS)
    for chunk in chunks:
        decoded = _decode_checked(chunk.data, chunk.used, wanted_from, decode)
        batch = _decoded_batch(chunk, decoded)
        yield batch
        if batch.error is not None:
            return


def _read_ahead(items: Generator[_Made, None, None], depth: int) -> Generator[_Made, None, None]:
    """``items``, made on a thread of their own, at most ``depth`` ahead of the one the consumer
    took last; what making them raises is raised here, in its place, after the items made
    before it.

    Why: a replay reads a chunk, checks it (CRC-32 and SHA-256 of every record), then decodes
    and applies its records. The check needs no interpreter (the compiled codec releases the
    GIL for it), so on a thread of its own it runs on another core while this one decodes and
    applies the chunk before. Every record is still checked before it is decoded: a chunk is
    handed over only once checked, with only its good prefix to decode. The price is memory:
    ``depth`` chunks more than a reader on one thread holds.

    Closing this generator (a consumer that stops early, an error, garbage collection) stops
    the thread; ``items`` is closed on the thread that ran it."""
    handoff: queue.SimpleQueue[tuple[bool, Any]] = queue.SimpleQueue()
    room = threading.Semaphore(depth)  # a permit per item made and not yet taken
    stop = threading.Event()

    def make() -> None:
        try:
            while True:
                while not room.acquire(timeout=_READ_AHEAD_POLL_S):
                    if stop.is_set():
                        return
                if stop.is_set():
                    return
                item = next(items, _NOTHING_MORE)
                if item is _NOTHING_MORE:
                    handoff.put((False, None))
                    return
                handoff.put((True, item))
        except BaseException as error:  # the consumer raises it in its place
            handoff.put((False, error))
        finally:
            items.close()

    maker = threading.Thread(target=make, name="hogx-journal-read-ahead", daemon=True)
    maker.start()
    try:
        while True:
            try:
                is_item, value = handoff.get(timeout=_READ_AHEAD_POLL_S)
            except queue.Empty:
                if maker.is_alive() or not handoff.empty():
                    continue
                raise RuntimeError("the journal's read-ahead thread ended without a word") from None
            if not is_item:
                if value is not None:
                    raise value
                return
            room.release()
            yield value
    finally:
        stop.set()
        # Not when a collection on the maker thread itself finalizes this generator.
        if threading.get_ident() != maker.ident:
            maker.join()


_NOTHING_MORE: Final = object()


def _make_directory(directory: Path, *, fsync: bool) -> None:
    if directory.is_dir():
        return
    directory.mkdir(parents=True)
    if fsync:
        _fsync_directory(directory.parent)


def _fsync_directory(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _lock_directory(directory: Path) -> int:
    fd = os.open(directory, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise JournalLockedError(f"journal {directory} is already open by another writer") from None
    return fd


def _cut_torn_tail(torn_tail: _TornTail, *, fsync: bool) -> None:
    fd = os.open(torn_tail.path, os.O_WRONLY)
    try:
        os.ftruncate(fd, torn_tail.offset)
        if fsync:
            os.fsync(fd)
    finally:
        os.close(fd)


def _try_truncate(fd: int, size: int) -> None:
    # Already failing: if this fails too, open() treats what is left as a torn tail or corruption.
    with contextlib.suppress(OSError):
        os.ftruncate(fd, size)


# --------------------------------------------------------------------------------------------
# Verification for regulators.


def verify(
    directory: Path,
    *,
    anchor: tuple[int, bytes] | None = None,
    durable_through: int | None = None,
) -> VerifyReport:
    """Check the whole journal read-only: CRCs, contiguity and the hash chain from genesis.

    With ``anchor=(sequence, hash)``, also check that the record at ``sequence`` still has the
    ``hash`` a regulator saved earlier: that catches a rewrite which recomputed every hash.
    Never modifies the directory; a torn tail is reported (``ok=False``, ``torn_tail=True``).
    It takes no lock: on a live journal, pass ``durable_through`` (the writer's last durable
    sequence): a batch caught mid-write after it is then not a failure.
    """
    directory = Path(directory)
    if not directory.is_dir():
        raise FileNotFoundError(f"no journal directory at {directory}")
    if anchor is not None and (anchor[0] < 1 or len(anchor[1]) != _HASH_BYTES):
        raise ValueError("anchor must be (sequence >= 1, 32-byte hash)")
    scan = _scan_journal(directory)
    if scan.error is not None:
        return _report(scan, False, scan.error.sequence, str(scan.error))
    if anchor is not None:
        problem = _anchor_problem(scan, *anchor)
        if problem is not None:
            return _report(scan, False, anchor[0], problem)
    if durable_through is not None and scan.last_sequence < durable_through:
        # Cut off, at a record boundary or not: what was acknowledged is gone, not "torn".
        missing = scan.last_sequence + 1
        return _report(
            scan,
            False,
            missing,
            f"sequences {missing}..{durable_through} were acknowledged but are missing: "
            f"the journal ends at sequence {scan.last_sequence}",
        )
    writing = durable_through is not None
    if scan.torn_tail is not None and not writing:
        return _report(scan, False, scan.last_sequence + 1, _torn_tail_message(scan))
    message = f"ok: {scan.last_sequence} records, hash chain intact through sequence"
    message += f" {scan.last_sequence}"
    if anchor is not None:
        message += f", anchor at sequence {anchor[0]} matches"
    return _report(scan, True, None, message)


def _report(scan: _JournalScan, ok: bool, first_bad: int | None, message: str) -> VerifyReport:
    return VerifyReport(
        ok=ok,
        records=scan.last_sequence,
        last_sequence=scan.last_sequence,
        head_hash=scan.head_hash.hex(),
        first_bad_sequence=first_bad,
        message=message,
        torn_tail=scan.torn_tail is not None,
    )


def _torn_tail_message(scan: _JournalScan) -> str:
    torn = scan.torn_tail
    assert torn is not None
    return (
        f"torn tail: {torn.size_bytes} bytes of an unfinished write after sequence"
        f" {scan.last_sequence} ({torn.path.name} at offset {torn.offset}); no acknowledged"
        " record is affected and Journal.open() cuts them off"
    )


def _anchor_problem(scan: _JournalScan, sequence: int, expected_hash: bytes) -> str | None:
    if sequence > scan.last_sequence:
        return f"anchor sequence {sequence} is missing: the journal ends at {scan.last_sequence}"
    records = _read_records(tuple(scan.segments), sequence, sequence)
    found = next(records).hash
    records.close()
    if found != expected_hash:
        return (
            f"anchor mismatch at sequence {sequence}: the journal has hash {found.hex()},"
            f" the anchor says {expected_hash.hex()}"
        )
    return None


def read_committed(directory: Path, from_sequence: int, up_to: int) -> JournalReader:
    """Read records ``from_sequence..up_to`` of a journal that a writer may still be appending to.

    Takes no lock and never truncates: for background readers (the snapshot writer, followers)
    that only ask for records the writer has already made durable. Everything read is checked
    like any other read; damage at or before ``up_to`` raises ``JournalCorruptError``.
    """
    if not from_sequence >= 1:
        raise ValueError(f"from_sequence must be >= 1, got {from_sequence}")
    scan = _scan_journal(Path(directory))
    if scan.error is not None and scan.error.sequence <= up_to:
        raise scan.error
    if scan.last_sequence < up_to:
        raise JournalCorruptError(
            f"the journal ends at {scan.last_sequence}, before {up_to}",
            sequence=scan.last_sequence + 1,
            path=Path(directory),
            offset=0,
        )
    return JournalReader(tuple(scan.segments), from_sequence, up_to)
