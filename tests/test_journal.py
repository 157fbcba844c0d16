"""The journal's rulebook: durability, the on-disk format, crash recovery and the hash chain.

Every rule holds for both record codecs: the compiled one the exchange runs and the Python one
that states the format (the `codec` fixture runs each test once with each)."""

from __future__ import annotations

import contextlib
import gc
import hashlib
import os
import struct
import tempfile
import threading
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from exchange import journal
from exchange.journal import (
    GENESIS_HASH,
    MAX_BATCH_RECORDS,
    MAX_PAYLOAD_BYTES,
    DecodedBatch,
    Journal,
    JournalCorruptError,
    JournalLockedError,
    JournalReader,
    JournalRecord,
    read_committed,
    record_hash,
    segment_name,
    verify,
)

T0_NS = 1_767_225_600_000_000_000  # 2026-01-01T00:00:00Z

Entry = tuple[int, int, bytes]

CODECS = [
    pytest.param(
        journal._compiled,
        id="compiled-codec",
        marks=pytest.mark.skipif(
            journal._compiled is None and os.environ.get("CI") != "true",
            reason="the compiled journal codec is not built (pip install -e . builds it)",
        ),
    ),
    pytest.param(None, id="python-codec"),
]


# Each codec; and the compiled one checking every buffer of two records or more in two halves
# at once (by default only buffers of a megabyte or more, which these small journals never are).
READERS = [
    *((param.values[0], journal._SPLIT_CHECK_BYTES, param) for param in CODECS),
    (journal._compiled, 1, CODECS[0]),
]


@pytest.fixture(
    autouse=True,
    params=[
        pytest.param((codec, split), id=f"{param.id}{'-in-halves' if split == 1 else ''}",
                     marks=param.marks)
        for codec, split, param in READERS
    ],
)  # fmt: skip
def codec(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> None:
    compiled, split_bytes = request.param
    monkeypatch.setattr(journal, "_compiled", compiled)
    monkeypatch.setattr(journal, "_SPLIT_CHECK_BYTES", split_bytes)


def entries(first: int, count: int) -> list[Entry]:
    return [(s, T0_NS + s * 1_000, f"command {s}".encode()) for s in range(first, first + count)]


def write(directory: Path, batches: list[int], segment_bytes: int = 1 << 20) -> list[Entry]:
    """Append batches of the given sizes; return everything written."""
    written: list[Entry] = []
    with Journal.open(directory, segment_bytes=segment_bytes, fsync=False) as journal:
        for size in batches:
            batch = entries(len(written) + 1, size)
            journal.append_batch(batch)
            written += batch
    return written


def read_all(directory: Path, from_sequence: int = 1) -> list[Entry]:
    with Journal.open(directory, fsync=False) as journal:
        return [(r.sequence, r.time_ns, r.payload) for r in journal.read(from_sequence)]


def segments(directory: Path) -> list[Path]:
    return sorted(directory.glob("journal-*.seg"))


def record_spans(path: Path) -> list[tuple[int, int]]:
    """(offset, total size) of each record in a segment, walking the length fields."""
    data = path.read_bytes()
    spans, offset = [], 0
    while offset < len(data):
        (length,) = struct.unpack_from("<I", data, offset)
        spans.append((offset, 8 + length))
        offset += 8 + length
    return spans


def flip_byte(path: Path, offset: int) -> None:
    data = bytearray(path.read_bytes())
    data[offset] ^= 0xFF
    path.write_bytes(bytes(data))


def reframe(body: bytes) -> bytes:
    """A record with a valid CRC around ``body``: what a forger would write."""
    return struct.pack("<II", len(body), zlib.crc32(body)) + body


# -- round trip and format ---------------------------------------------------------------------


def test_records_read_back_exactly_as_appended(tmp_path: Path) -> None:
    written = write(tmp_path, [1, 5, 100])
    assert read_all(tmp_path) == written


def test_an_empty_journal_has_sequence_zero_and_the_genesis_hash(tmp_path: Path) -> None:
    with Journal.open(tmp_path / "new" / "journal") as journal:
        assert journal.last_sequence == 0
        assert journal.record_count == 0
        assert journal.head_hash == GENESIS_HASH == bytes(32)
        assert list(journal.read()) == []
    assert segments(tmp_path / "new" / "journal") == []


def test_each_hash_chains_the_previous_hash_sequence_time_and_payload(tmp_path: Path) -> None:
    write(tmp_path, [3])
    with Journal.open(tmp_path) as journal:
        records = list(journal.read())
        previous = bytes(32)
        for record in records:
            expected = hashlib.sha256(
                previous + struct.pack("<QQ", record.sequence, record.time_ns) + record.payload
            ).digest()
            assert (
                record.hash
                == expected
                == record_hash(previous, record.sequence, record.time_ns, record.payload)
            )
            previous = record.hash
        assert journal.head_hash == previous


def test_a_record_is_length_crc_sequence_time_payload_hash_little_endian(tmp_path: Path) -> None:
    write(tmp_path, [1])
    data = segments(tmp_path)[0].read_bytes()
    length, crc, sequence, time_ns = struct.unpack_from("<IIQQ", data)
    payload = b"command 1"
    assert (length, sequence, time_ns) == (48 + len(payload), 1, T0_NS + 1_000)
    assert crc == zlib.crc32(data[8:])
    assert data[24:-32] == payload
    assert data[-32:] == record_hash(bytes(32), 1, T0_NS + 1_000, payload)
    assert len(data) == 8 + length


def test_records_are_frozen_structs(tmp_path: Path) -> None:
    write(tmp_path, [1])
    with Journal.open(tmp_path) as journal:
        record = next(journal.read())
    assert isinstance(record, JournalRecord)
    with pytest.raises(AttributeError):
        record.payload = b"forged"  # type: ignore[misc]


def test_reopening_continues_the_sequence_and_the_chain(tmp_path: Path) -> None:
    write(tmp_path, [10])
    with Journal.open(tmp_path) as journal:
        assert journal.last_sequence == journal.record_count == 10
        head = journal.head_hash
        journal.append_batch([(11, T0_NS, b"after reopen")])
        assert journal.head_hash == record_hash(head, 11, T0_NS, b"after reopen")
    with Journal.open(tmp_path) as journal:
        assert journal.last_sequence == 11
        assert [r.sequence for r in journal.read()] == list(range(1, 12))
    assert verify(tmp_path).ok


# -- durability --------------------------------------------------------------------------------


@pytest.fixture
def fsyncs(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    calls: list[int] = []
    real_fsync = os.fsync

    def counting_fsync(fd: int) -> None:
        calls.append(fd)
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", counting_fsync)
    return calls


def test_each_batch_is_fsynced_exactly_once(tmp_path: Path, fsyncs: list[int]) -> None:
    with Journal.open(tmp_path) as journal:
        journal.append_batch(entries(1, 1))  # creates the first segment
        fsyncs.clear()
        journal.append_batch(entries(2, 500))
        assert len(fsyncs) == 1
        journal.append_batch(entries(502, 3))
        assert len(fsyncs) == 2


def test_creating_a_segment_fsyncs_the_directory(tmp_path: Path, fsyncs: list[int]) -> None:
    with Journal.open(tmp_path) as journal:
        fsyncs.clear()
        journal.append_batch(entries(1, 2))
        kinds = [os.path.isdir(f"/proc/self/fd/{fd}") for fd in fsyncs]
    assert kinds == [True, False]  # the new name, then the data


def test_fsync_false_never_fsyncs(tmp_path: Path, fsyncs: list[int]) -> None:
    write(tmp_path, [5, 5], segment_bytes=100)
    assert fsyncs == []


def test_a_failed_write_refuses_further_appends_until_reopened(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write(tmp_path, [3])
    journal = Journal.open(tmp_path)

    def failing_write(fd: int, data: bytes) -> int:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "write", failing_write)
    with pytest.raises(OSError):
        journal.append_batch(entries(4, 2))
    monkeypatch.undo()
    with pytest.raises(RuntimeError, match="reopen"):
        journal.append_batch(entries(4, 2))
    assert journal.last_sequence == 3
    journal.close()
    with Journal.open(tmp_path) as reopened:
        assert reopened.last_sequence == 3
        reopened.append_batch(entries(4, 2))


# -- segments ----------------------------------------------------------------------------------


def test_a_new_segment_starts_at_a_batch_boundary_once_the_current_one_is_full(
    tmp_path: Path,
) -> None:
    write(tmp_path, [3, 4, 2, 5], segment_bytes=100)  # each record is 65 or 66 bytes
    names = [path.name for path in segments(tmp_path)]
    assert names == [segment_name(1), segment_name(4), segment_name(8), segment_name(10)]
    assert segment_name(8) == "journal-00000000000000000008.seg"


def test_a_segment_keeps_filling_until_it_reaches_segment_bytes(tmp_path: Path) -> None:
    write(tmp_path, [1, 1, 1, 1], segment_bytes=150)
    assert [path.name for path in segments(tmp_path)] == [segment_name(1), segment_name(4)]


def test_reading_spans_segments_and_can_start_anywhere(tmp_path: Path) -> None:
    written = write(tmp_path, [3, 4, 2, 5], segment_bytes=100)
    for start in range(1, len(written) + 1):
        assert read_all(tmp_path, start) == written[start - 1 :]


def test_reading_from_a_late_sequence_skips_earlier_segments_by_name(tmp_path: Path) -> None:
    write(tmp_path, [3, 4, 2], segment_bytes=100)
    with Journal.open(tmp_path) as journal:
        flip_byte(segments(tmp_path)[0], 30)  # damage that only a read of segment 1 would see
        assert [r.sequence for r in journal.read(5)] == [5, 6, 7, 8, 9]
        with pytest.raises(JournalCorruptError):
            list(journal.read(1))


def test_reading_from_the_middle_of_a_large_segment_is_correct(tmp_path: Path) -> None:
    # ~26 MB in one segment: several read chunks, so reads start at in-segment checkpoints,
    # both those noted while appending and those noted while open() checks the journal.
    payload = bytes(range(256)) * 20

    def check_reads(journal: Journal) -> None:
        for start in (1, 777, 2500, 4999, 5000):
            records = list(journal.read(start))
            assert [r.sequence for r in records] == list(range(start, 5001))
            assert records[0].payload == payload + start.to_bytes(4, "little")

    with Journal.open(tmp_path, fsync=False) as journal:
        for first in range(1, 5001, 500):
            journal.append_batch(
                [(s, T0_NS, payload + s.to_bytes(4, "little")) for s in range(first, first + 500)]
            )
        check_reads(journal)
    with Journal.open(tmp_path, fsync=False) as journal:
        check_reads(journal)
    assert len(segments(tmp_path)) == 1


def test_reading_past_the_end_yields_nothing(tmp_path: Path) -> None:
    write(tmp_path, [3])
    assert read_all(tmp_path, 4) == []
    assert read_all(tmp_path, 1_000) == []


def test_reading_from_below_one_is_rejected(tmp_path: Path) -> None:
    with Journal.open(tmp_path) as journal, pytest.raises(ValueError):
        journal.read(0)


def test_a_read_sees_the_records_durable_when_it_started(tmp_path: Path) -> None:
    with Journal.open(tmp_path, fsync=False, segment_bytes=100) as journal:
        journal.append_batch(entries(1, 3))
        reader = journal.read()
        assert next(reader).sequence == 1
        journal.append_batch(entries(4, 3))
        assert [r.sequence for r in reader] == [2, 3]
        assert [r.sequence for r in journal.read()] == [1, 2, 3, 4, 5, 6]


# -- appending rules ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "batch",
    [
        [(5, T0_NS, b"gap")],
        [(3, T0_NS, b"repeat")],
        [(4, T0_NS, b"ok"), (6, T0_NS, b"gap inside the batch")],
        [(4, T0_NS, b"ok"), (4, T0_NS, b"duplicate inside the batch")],
    ],
)
def test_a_non_contiguous_append_raises_and_changes_nothing(
    tmp_path: Path, batch: list[Entry]
) -> None:
    write(tmp_path, [3])
    sizes_before = [path.stat().st_size for path in segments(tmp_path)]
    with Journal.open(tmp_path) as journal:
        head = journal.head_hash
        with pytest.raises(ValueError, match="contiguous"):
            journal.append_batch(batch)
        assert (journal.last_sequence, journal.head_hash) == (3, head)
        assert [path.stat().st_size for path in segments(tmp_path)] == sizes_before
        journal.append_batch([(4, T0_NS, b"the right next one")])
        assert journal.last_sequence == 4


def test_the_first_sequence_is_one(tmp_path: Path) -> None:
    with Journal.open(tmp_path) as journal, pytest.raises(ValueError):
        journal.append_batch([(0, T0_NS, b"zero")])


def test_an_oversized_payload_is_rejected(tmp_path: Path) -> None:
    with Journal.open(tmp_path) as journal:
        with pytest.raises(ValueError, match="payload"):
            journal.append_batch([(1, T0_NS, bytes(MAX_PAYLOAD_BYTES + 1))])
        journal.append_batch([(1, T0_NS, bytes(MAX_PAYLOAD_BYTES))])
        assert len(next(journal.read()).payload) == MAX_PAYLOAD_BYTES


def test_an_oversized_batch_is_rejected(tmp_path: Path) -> None:
    with Journal.open(tmp_path) as journal:
        with pytest.raises(ValueError, match="batch"):
            journal.append_batch(entries(1, MAX_BATCH_RECORDS + 1))
        with pytest.raises(ValueError, match="batch"):
            journal.append_batch([(s, T0_NS, bytes(MAX_PAYLOAD_BYTES)) for s in range(1, 18)])
        assert journal.last_sequence == 0


@pytest.mark.parametrize(
    "record",
    [(1, -1, b"x"), (1, 1 << 64, b"x"), (1, T0_NS, bytearray(b"x")), (1, T0_NS, "text")],
)
def test_time_must_be_a_u64_and_the_payload_bytes(tmp_path: Path, record: Entry) -> None:
    with Journal.open(tmp_path) as journal, pytest.raises((ValueError, TypeError)):
        journal.append_batch([record])


def test_an_empty_batch_writes_nothing(tmp_path: Path, fsyncs: list[int]) -> None:
    with Journal.open(tmp_path) as journal:
        fsyncs.clear()
        journal.append_batch([])
        assert journal.last_sequence == 0
    assert fsyncs == [] and segments(tmp_path) == []


def test_a_second_writer_is_refused(tmp_path: Path) -> None:
    with Journal.open(tmp_path), pytest.raises(JournalLockedError):
        Journal.open(tmp_path)
    Journal.open(tmp_path).close()


def test_a_closed_journal_refuses_to_append(tmp_path: Path) -> None:
    journal = Journal.open(tmp_path)
    journal.close()
    journal.close()
    assert journal.closed
    with pytest.raises(ValueError, match="closed"):
        journal.append_batch(entries(1, 1))


# -- crash recovery: torn tails ----------------------------------------------------------------


def tear_mid_record(path: Path) -> None:
    with path.open("r+b") as file:
        file.truncate(path.stat().st_size - 10)


def tear_inside_the_header(path: Path) -> None:
    offset, _ = record_spans(path)[-1]
    with path.open("r+b") as file:
        file.truncate(offset + 5)


def append_zeros(path: Path) -> None:
    with path.open("ab") as file:
        file.write(bytes(4096))


def spoil_the_last_crc(path: Path) -> None:
    offset, size = record_spans(path)[-1]
    flip_byte(path, offset + size - 1)


def spoil_the_last_crc_then_zeros(path: Path) -> None:
    spoil_the_last_crc(path)
    append_zeros(path)


def zero_the_last_record(path: Path) -> None:
    offset, size = record_spans(path)[-1]
    data = bytearray(path.read_bytes())
    data[offset + 20 : offset + size] = bytes(size - 20)
    path.write_bytes(bytes(data))


TEARS = {
    "truncated mid-record": (tear_mid_record, 9),
    "truncated inside the header": (tear_inside_the_header, 9),
    "trailing zero bytes": (append_zeros, 10),
    "bad CRC on the last record": (spoil_the_last_crc, 9),
    "bad CRC on the last record, then zeros": (spoil_the_last_crc_then_zeros, 9),
    "last record partly zeroed": (zero_the_last_record, 9),
}


@pytest.mark.parametrize("tear", TEARS.values(), ids=TEARS.keys())
def test_a_torn_tail_is_cut_off_on_open_and_appending_continues(
    tmp_path: Path, tear: tuple[Callable[[Path], None], int]
) -> None:
    damage, survivors = tear
    written = write(tmp_path, [4, 6], segment_bytes=1 << 20)
    last = segments(tmp_path)[-1]
    damage(last)
    with Journal.open(tmp_path) as journal:
        assert journal.last_sequence == survivors
        assert journal.torn_tail_bytes > 0
        assert last.stat().st_size == sum(size for _, size in record_spans(last))
        journal.append_batch([(survivors + 1, T0_NS, b"after the crash")])
    assert read_all(tmp_path) == [*written[:survivors], (survivors + 1, T0_NS, b"after the crash")]
    assert verify(tmp_path).ok


def test_a_torn_tail_in_the_last_of_several_segments_is_cut_off(tmp_path: Path) -> None:
    write(tmp_path, [3, 3, 3], segment_bytes=100)
    tear_mid_record(segments(tmp_path)[-1])
    with Journal.open(tmp_path) as journal:
        assert journal.last_sequence == 8
        journal.append_batch(entries(9, 2))
    assert [s for s, _, _ in read_all(tmp_path)] == list(range(1, 11))


def test_an_empty_segment_left_by_a_crash_is_reused(tmp_path: Path) -> None:
    write(tmp_path, [3])
    (tmp_path / segment_name(4)).touch()  # created, then the crash, before the batch landed
    with Journal.open(tmp_path, segment_bytes=100) as journal:
        assert journal.last_sequence == 3
        journal.append_batch(entries(4, 2))
    assert [path.name for path in segments(tmp_path)] == [segment_name(1), segment_name(4)]
    assert verify(tmp_path).ok


def test_a_clean_journal_reports_no_torn_tail(tmp_path: Path) -> None:
    write(tmp_path, [3])
    with Journal.open(tmp_path) as journal:
        assert journal.torn_tail_bytes == 0


# -- corruption is never silently dropped ------------------------------------------------------


def test_a_flipped_byte_in_an_early_record_raises_naming_its_sequence(tmp_path: Path) -> None:
    write(tmp_path, [10])
    path = segments(tmp_path)[0]
    offset, _ = record_spans(path)[2]
    flip_byte(path, offset + 26)  # in the payload of sequence 3
    with pytest.raises(JournalCorruptError, match="sequence 3") as caught:
        Journal.open(tmp_path)
    assert (caught.value.sequence, caught.value.path, caught.value.offset) == (3, path, offset)
    assert "CRC" in str(caught.value)


def test_a_bad_record_followed_by_more_data_is_corruption_not_a_torn_tail(tmp_path: Path) -> None:
    write(tmp_path, [10])
    path = segments(tmp_path)[0]
    size_before = path.stat().st_size
    offset, _ = record_spans(path)[-2]
    flip_byte(path, offset + 30)  # sequence 9, with sequence 10 after it
    with pytest.raises(JournalCorruptError) as caught:
        Journal.open(tmp_path)
    assert caught.value.sequence == 9
    assert path.stat().st_size == size_before  # nothing was cut


def test_an_impossible_length_followed_by_data_is_corruption(tmp_path: Path) -> None:
    write(tmp_path, [10])
    path = segments(tmp_path)[0]
    offset, _ = record_spans(path)[-1]
    flip_byte(path, offset + 3)  # length of sequence 10 becomes enormous; its body follows
    with pytest.raises(JournalCorruptError, match="sequence 10"):
        Journal.open(tmp_path)


def test_a_torn_record_in_a_segment_that_is_not_the_last_is_corruption(tmp_path: Path) -> None:
    write(tmp_path, [3, 3, 3], segment_bytes=100)
    tear_mid_record(segments(tmp_path)[1])
    with pytest.raises(JournalCorruptError, match="sequence 6"):
        Journal.open(tmp_path)


def test_a_missing_segment_is_a_sequence_gap(tmp_path: Path) -> None:
    write(tmp_path, [3, 3, 3], segment_bytes=100)
    segments(tmp_path)[1].unlink()
    with pytest.raises(JournalCorruptError, match="sequence 4") as caught:
        Journal.open(tmp_path)
    assert caught.value.path.name == segment_name(7)


def test_a_missing_first_segment_is_a_sequence_gap(tmp_path: Path) -> None:
    write(tmp_path, [3, 3], segment_bytes=100)
    segments(tmp_path)[0].unlink()
    with pytest.raises(JournalCorruptError, match="sequence 1"):
        Journal.open(tmp_path)


def test_a_forged_record_with_a_valid_crc_breaks_the_chain(tmp_path: Path) -> None:
    write(tmp_path, [5])
    path = segments(tmp_path)[0]
    data = path.read_bytes()
    offset, size = record_spans(path)[1]
    forged = (
        data[offset + 8 : offset + 24] + b"command X" + data[offset + size - 32 : offset + size]
    )
    path.write_bytes(data[:offset] + reframe(forged) + data[offset + size :])
    with pytest.raises(JournalCorruptError, match="hash chain") as caught:
        Journal.open(tmp_path)
    assert caught.value.sequence == 2


# -- verify, for regulators --------------------------------------------------------------------


def splice_records(path: Path, order: list[int]) -> None:
    """Rewrite a segment with its records in ``order`` (indexes), dropping the others."""
    data = path.read_bytes()
    spans = record_spans(path)
    path.write_bytes(b"".join(data[spans[i][0] : spans[i][0] + spans[i][1]] for i in order))


def test_verify_accepts_an_intact_journal(tmp_path: Path) -> None:
    write(tmp_path, [3, 3, 3], segment_bytes=100)
    with Journal.open(tmp_path) as journal:
        head = journal.head_hash
    report = verify(tmp_path)
    assert report.ok and report.first_bad_sequence is None
    assert (report.records, report.last_sequence, report.head_hash) == (9, 9, head.hex())


def test_verify_detects_an_altered_payload(tmp_path: Path) -> None:
    write(tmp_path, [10])
    path = segments(tmp_path)[0]
    flip_byte(path, record_spans(path)[6][0] + 25)
    report = verify(tmp_path)
    assert not report.ok and report.first_bad_sequence == 7
    assert "sequence 7" in report.message
    assert report.records == 6


def test_verify_detects_an_altered_payload_with_a_recomputed_crc(tmp_path: Path) -> None:
    write(tmp_path, [10])
    path = segments(tmp_path)[0]
    data = path.read_bytes()
    offset, size = record_spans(path)[6]
    body = bytearray(data[offset + 8 : offset + size])
    body[20] ^= 1
    path.write_bytes(data[:offset] + reframe(bytes(body)) + data[offset + size :])
    report = verify(tmp_path)
    assert not report.ok and report.first_bad_sequence == 7
    assert "hash chain" in report.message


def test_verify_detects_a_removed_record(tmp_path: Path) -> None:
    write(tmp_path, [10])
    splice_records(segments(tmp_path)[0], [0, 1, 2, 4, 5, 6, 7, 8, 9])
    report = verify(tmp_path)
    assert not report.ok and report.first_bad_sequence == 4


def test_verify_detects_two_swapped_records(tmp_path: Path) -> None:
    write(tmp_path, [10])
    splice_records(segments(tmp_path)[0], [0, 1, 2, 3, 5, 4, 6, 7, 8, 9])
    report = verify(tmp_path)
    assert not report.ok and report.first_bad_sequence == 5


def test_verify_detects_a_rewrite_only_with_an_anchor(tmp_path: Path) -> None:
    write(tmp_path, [10])
    with Journal.open(tmp_path) as journal:
        anchor = (8, next(journal.read(8)).hash)
    for path in segments(tmp_path):
        path.unlink()
    with Journal.open(tmp_path) as journal:  # a consistent history with sequence 3 rewritten
        forged = entries(1, 10)
        forged[2] = (3, T0_NS, b"a different command")
        journal.append_batch(forged)
    assert verify(tmp_path).ok
    report = verify(tmp_path, anchor=anchor)
    assert not report.ok and report.first_bad_sequence == 8
    assert "anchor" in report.message


def test_verify_accepts_a_matching_anchor(tmp_path: Path) -> None:
    write(tmp_path, [4, 4], segment_bytes=100)
    with Journal.open(tmp_path) as journal:
        anchor = (6, next(journal.read(6)).hash)
    report = verify(tmp_path, anchor=anchor)
    assert report.ok and "anchor" in report.message


def test_verify_rejects_an_anchor_beyond_the_end(tmp_path: Path) -> None:
    write(tmp_path, [4])
    report = verify(tmp_path, anchor=(9, bytes(32)))
    assert not report.ok and report.first_bad_sequence == 9
    assert "missing" in report.message


def test_verify_reports_a_torn_tail_without_cutting_it(tmp_path: Path) -> None:
    write(tmp_path, [5])
    path = segments(tmp_path)[0]
    tear_mid_record(path)
    size = path.stat().st_size
    report = verify(tmp_path)
    assert not report.ok and report.torn_tail
    assert "torn tail" in report.message
    assert (report.last_sequence, report.first_bad_sequence) == (4, 5)
    assert path.stat().st_size == size


def test_verify_of_an_empty_journal_is_ok(tmp_path: Path) -> None:
    report = verify(tmp_path)
    assert report.ok and report.records == 0 and report.head_hash == bytes(32).hex()


# -- properties --------------------------------------------------------------------------------

payloads = st.binary(max_size=300)
batches_strategy = st.lists(
    st.lists(st.tuples(st.integers(0, (1 << 64) - 1), payloads), max_size=12), max_size=12
)


@settings(max_examples=60, deadline=None)
@given(
    batches=batches_strategy,
    segment_bytes=st.sampled_from([1, 300, 2_000, 1 << 20]),
    from_sequence=st.integers(1, 200),
)
def test_whatever_is_appended_reads_back_identically(
    batches: list[list[tuple[int, bytes]]], segment_bytes: int, from_sequence: int
) -> None:
    with tempfile.TemporaryDirectory() as name:
        directory = Path(name)
        written: list[Entry] = []
        head = GENESIS_HASH
        with Journal.open(directory, segment_bytes=segment_bytes, fsync=False) as journal:
            for batch in batches:
                numbered = [(len(written) + i + 1, t, p) for i, (t, p) in enumerate(batch)]
                journal.append_batch(numbered)
                written += numbered
            for sequence, time_ns, payload in written:
                head = record_hash(head, sequence, time_ns, payload)
            assert journal.head_hash == head
            assert [(r.sequence, r.time_ns, r.payload) for r in journal.read()] == written
        assert read_all(directory) == written
        assert read_all(directory, from_sequence) == written[from_sequence - 1 :]
        report = verify(directory)
        assert report.ok and report.records == len(written) and report.head_hash == head.hex()


def test_verify_of_a_live_journal_reports_acknowledged_records_that_are_gone(
    tmp_path: Path,
) -> None:
    write(tmp_path, [10])
    splice_records(segments(tmp_path)[0], list(range(7)))  # cut at a record boundary
    assert verify(tmp_path).ok  # on its own, a shorter chain is still a chain...
    report = verify(tmp_path, durable_through=10)  # ...but 8-10 were acknowledged
    assert not report.ok and report.first_bad_sequence == 8
    assert "8..10" in report.message


def test_a_read_can_stop_at_a_sequence(tmp_path: Path) -> None:
    written = write(tmp_path, [3, 4, 2, 5], segment_bytes=100)
    last = len(written)
    with Journal.open(tmp_path) as journal:

        def read(start: int, end: int) -> list[Entry]:
            return [(r.sequence, r.time_ns, r.payload) for r in journal.read(start, end)]

        for start in range(1, last + 1):
            for end in range(start, last + 1):
                assert read(start, end) == written[start - 1 : end]
        assert read(3, last + 100) == written[2:]  # at most what is there
        assert read(5, 4) == []


def test_a_bounded_read_checks_and_builds_only_what_it_asks_for(tmp_path: Path) -> None:
    # Damage after the bound goes unseen by the read that stops before it (the whole journal is
    # checked when it is opened), and a read through it still refuses it.
    write(tmp_path, [5, 5], segment_bytes=10_000)
    with Journal.open(tmp_path) as journal:
        flip_byte(segments(tmp_path)[0], record_spans(segments(tmp_path)[0])[7][0] + 30)
        assert [r.sequence for r in journal.read(2, 6)] == [2, 3, 4, 5, 6]
        with pytest.raises(JournalCorruptError):
            list(journal.read(2, 8))


# -- the replay read: a chunk of checked records at a time, payloads decoded -------------------


def reversed_payload(payload: bytes) -> bytes:
    """A stand-in for a payload decoder: anything computed from the payload alone."""
    return payload[::-1]


def flatten(batches: list[DecodedBatch]) -> list[tuple[int, int, object]]:
    """(sequence, time_ns, entry) of every record in ``batches``."""
    return [
        (batch.first_sequence + index, time_ns, entry)
        for batch in batches
        for index, (time_ns, entry) in enumerate(zip(batch.times, batch.entries, strict=True))
    ]


def hashes_of(directory: Path) -> list[bytes]:
    """The chain hash before each sequence: [GENESIS_HASH, hash of 1, hash of 2, ...]."""
    with Journal.open(directory, fsync=False) as journal:
        return [GENESIS_HASH] + [record.hash for record in journal.read()]


def check_batch_hashes(batches: list[DecodedBatch], hashes: list[bytes]) -> None:
    for batch in batches:
        first = batch.first_sequence
        assert batch.previous_hash == hashes[first - 1]
        assert batch.last_hash == hashes[first - 1 + len(batch.entries)]
        for index in range(len(batch.entries)):
            assert batch.hash_at(index) == hashes[first + index]


@settings(max_examples=60, deadline=None)
@given(
    batches=batches_strategy,
    segment_bytes=st.sampled_from([1, 300, 2_000, 1 << 20]),
    chunk_bytes=st.sampled_from([40, 150, 1_000, journal._READ_CHUNK_BYTES]),
    from_sequence=st.integers(1, 80),
    span=st.integers(-2, 80),
    after=st.integers(0, 80),
)
def test_a_replay_read_gives_exactly_the_records_of_a_plain_read_decoded(
    batches: list[list[tuple[int, bytes]]],
    segment_bytes: int,
    chunk_bytes: int,
    from_sequence: int,
    span: int,
    after: int,
) -> None:
    """Whatever was appended, wherever the segments and the read chunks end: the same records,
    each decoded from its own payload, with the chain hashes of the plain read."""
    with tempfile.TemporaryDirectory() as name, pytest.MonkeyPatch.context() as patch:
        directory = Path(name)
        patch.setattr(journal, "_READ_CHUNK_BYTES", chunk_bytes)
        with Journal.open(directory, segment_bytes=segment_bytes, fsync=False) as opened:
            for batch in batches:
                first = opened.last_sequence + 1
                opened.append_batch([(first + i, t, p) for i, (t, p) in enumerate(batch)])
        hashes = hashes_of(directory)
        to_sequence = from_sequence + span
        with Journal.open(directory, fsync=False) as opened:
            plain = [
                (r.sequence, r.time_ns, reversed_payload(r.payload))
                for r in opened.read(from_sequence, to_sequence)
                if r.sequence > after
            ]
            read = opened.read(from_sequence, to_sequence)
            decoded = list(read.decoded_batches(reversed_payload, after))
        assert flatten(decoded) == plain
        check_batch_hashes(decoded, hashes)
        assert all(batch.error is None for batch in decoded)
        if from_sequence <= after <= min(to_sequence, len(hashes) - 1):
            # The record at `after` is in the read: its hash is a batch's previous hash.
            assert any(batch.first_sequence == after + 1 for batch in decoded)


def test_a_replay_read_stops_at_the_first_payload_its_decoder_refuses(tmp_path: Path) -> None:
    write(tmp_path, [3, 4, 5])

    def decode(payload: bytes) -> bytes:
        if payload == b"command 6":
            raise ValueError("not a command")
        return payload

    with Journal.open(tmp_path) as opened:
        decoded = list(opened.read().decoded_batches(decode))
    assert flatten(decoded) == entries(1, 5)
    assert isinstance(decoded[-1].error, ValueError)
    assert str(decoded[-1].error) == "not a command"
    assert decoded[-1].last_hash == hashes_of(tmp_path)[5]
    assert all(batch.error is None for batch in decoded[:-1])


@pytest.mark.parametrize("chunk_bytes", [60, 500, journal._READ_CHUNK_BYTES])
def test_damage_anywhere_stops_a_replay_read_where_it_stops_a_plain_read(
    tmp_path: Path, chunk_bytes: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every byte of every record, flipped after the journal was opened (and checked): the
    replay read gives the same records before it and raises the same error, naming the same
    sequence, segment and offset."""
    monkeypatch.setattr(journal, "_READ_CHUNK_BYTES", chunk_bytes)
    write(tmp_path, [4, 3, 5], segment_bytes=250)
    paths = segments(tmp_path)
    with Journal.open(tmp_path, fsync=False) as opened:
        for path in paths:
            for offset in range(path.stat().st_size):
                flip_byte(path, offset)
                plain: list[tuple[int, int, object]] = []
                with pytest.raises(JournalCorruptError) as plain_error:
                    for r in opened.read():
                        plain.append((r.sequence, r.time_ns, r.payload))
                replayed: list[DecodedBatch] = []
                with pytest.raises(JournalCorruptError) as replay_error:
                    for batch in opened.read().decoded_batches(bytes):
                        replayed.append(batch)
                flip_byte(path, offset)
                assert flatten(replayed) == plain
                assert str(replay_error.value) == str(plain_error.value)
                seen = (replay_error.value.sequence, replay_error.value.offset)
                assert seen == (plain_error.value.sequence, plain_error.value.offset)


def read_ahead_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == "hogx-journal-read-ahead"]


def open_segments(directory: Path) -> list[str]:
    """The segment files of `directory` this process has open."""
    found = []
    for fd in os.listdir("/proc/self/fd"):
        with contextlib.suppress(OSError):
            target = os.readlink(f"/proc/self/fd/{fd}")
            if target.startswith(str(directory)) and target.endswith(".seg"):
                found.append(target)
    return found


def test_a_replay_read_checks_at_most_two_chunks_ahead_and_stops_when_abandoned(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Chunks are checked on a thread of their own, ahead of the decoding, but never more than
    two ahead of the one handed over (their memory is bounded); a consumer that stops early
    ends that thread and closes the segment file it read. (With the Python codec, whose check
    holds the GIL, on the reader's own thread.)"""
    monkeypatch.setattr(journal, "_READ_CHUNK_BYTES", 100)  # one 59-byte record a chunk
    written = write(tmp_path, [3, 3, 3])
    if journal._compiled is None:
        with Journal.open(tmp_path, fsync=False) as opened:
            batches = opened.read().decoded_batches(bytes)
            assert flatten([next(batches)]) == written[:1] and read_ahead_threads() == []
        return
    checked: list[int] = []
    check = journal._parse_records

    def counting_check(*args: Any, **kwargs: Any) -> Any:
        checked.append(1)
        return check(*args, **kwargs)

    monkeypatch.setattr(journal, "_parse_records", counting_check)
    with Journal.open(tmp_path, fsync=False) as opened:
        checked.clear()  # the opening scan's checks
        writing = open_segments(tmp_path)  # the journal's own, to append to
        batches = opened.read().decoded_batches(bytes)
        assert flatten([next(batches)]) == written[:1]
        assert len(read_ahead_threads()) == 1 and len(open_segments(tmp_path)) == len(writing) + 1
        for _ in range(500):  # let the thread run as far ahead as it may
            if len(checked) >= 3:
                break
            threading.Event().wait(0.01)
        threading.Event().wait(0.1)
        assert len(checked) == 3  # the one handed over, and two ahead
        assert flatten([next(batches)]) == written[1:2]
        for _ in range(500):
            if len(checked) >= 4:
                break
            threading.Event().wait(0.01)
        threading.Event().wait(0.1)
        assert len(checked) == 4
        batches.close()
        assert read_ahead_threads() == [] and open_segments(tmp_path) == writing
        batches = opened.read().decoded_batches(bytes)
        next(batches)
        del batches  # dropped, not closed: collected, it ends its thread all the same
        gc.collect()
        assert read_ahead_threads() == [] and open_segments(tmp_path) == writing


def test_a_replay_read_that_raises_leaves_no_thread_behind(tmp_path: Path) -> None:
    write(tmp_path, [4, 3, 5], segment_bytes=250)
    with Journal.open(tmp_path, fsync=False) as opened:
        writing = open_segments(tmp_path)  # the journal's own, to append to
        flip_byte(segments(tmp_path)[1], 30)
        with pytest.raises(JournalCorruptError):
            list(opened.read().decoded_batches(bytes))
        assert read_ahead_threads() == [] and open_segments(tmp_path) == writing
        with pytest.raises(RuntimeError, match="failed at 1"):
            for batch in opened.read().decoded_batches(bytes):  # a consumer failing midway
                raise RuntimeError(f"failed at {batch.first_sequence}")
        assert read_ahead_threads() == [] and open_segments(tmp_path) == writing


def test_a_replay_read_of_a_journal_whose_torn_tail_was_cut_reads_the_rest(
    tmp_path: Path,
) -> None:
    written = write(tmp_path, [4, 6])
    tear_mid_record(segments(tmp_path)[-1])
    with Journal.open(tmp_path) as opened:
        decoded = list(opened.read().decoded_batches(bytes))
    assert flatten(decoded) == written[:9]


def test_a_committed_replay_read_of_a_live_journal_ignores_a_half_written_batch(
    tmp_path: Path,
) -> None:
    written = write(tmp_path, [4, 6])
    tear_mid_record(segments(tmp_path)[-1])  # a batch being written: not yet durable
    assert flatten(list(read_committed(tmp_path, 2, 9).decoded_batches(bytes))) == written[1:9]
    with pytest.raises(JournalCorruptError, match="sequence 10"):
        list(read_committed(tmp_path, 2, 10).decoded_batches(bytes))


def test_a_reader_is_read_once_either_way(tmp_path: Path) -> None:
    written = write(tmp_path, [5])
    with Journal.open(tmp_path) as opened:
        reader = opened.read(2)
        assert isinstance(reader, JournalReader) and not reader.started
        assert next(reader).sequence == 2
        assert [r.sequence for r in reader] == [3, 4, 5]
        with pytest.raises(ValueError, match="already started"):
            reader.decoded_batches(bytes)
        reader = opened.read(2)
        assert flatten(list(reader.decoded_batches(bytes))) == written[1:]
        assert reader.started and list(reader) == []
