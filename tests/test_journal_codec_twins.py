"""The journal's compiled record codec is a twin of the Python one in `exchange/journal.py`.

`_encode_batch_python` and `_parse_records_python` state the format; `compiled_journal.pyx`
must write exactly the same bytes and give exactly the same answers on any input, damaged or
not: the same good prefix, the same next sequence and hash, the same problem, the same records.
"""

from __future__ import annotations

import os
from typing import ClassVar, NamedTuple

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from exchange import journal
from exchange.journal import (
    _U64_LIMIT,
    GENESIS_HASH,
    JournalRecord,
    _check_for_decoding,
    _decode_checked,
    _decode_checked_python,
    _decoded_batch,
    _encode_batch,
    _encode_batch_python,
    _parse_records,
    _parse_records_python,
)

compiled = journal._compiled
# CI builds on a machine with a compiler and the headers: there a missing codec fails.
pytestmark = pytest.mark.skipif(
    compiled is None and os.environ.get("CI") != "true",
    reason="the compiled journal codec is not built (pip install -e . builds it)",
)

hashes = st.binary(min_size=32, max_size=32)
payloads = st.binary(max_size=300)
times = st.integers(0, _U64_LIMIT - 1)


@st.composite
def batches(draw: st.DrawFn) -> tuple[list[tuple[int, int, bytes]], bytes]:
    # Near 2**64 too: after sequence 2**64 - 1 no record can follow.
    first = draw(st.one_of(st.integers(1, 1000), st.integers(_U64_LIMIT - 16, _U64_LIMIT - 1)))
    count = min(draw(st.integers(1, 12)), _U64_LIMIT - first)  # sequences are u64
    records = [(first + index, draw(times), draw(payloads)) for index in range(count)]
    return records, draw(st.one_of(st.just(GENESIS_HASH), hashes))


def test_the_compiled_codec_is_the_one_in_use() -> None:
    assert compiled is not None
    assert journal.CODEC_IMPLEMENTATION == "compiled"


@settings(max_examples=300, deadline=None)
@given(batch=batches())
def test_both_codecs_write_the_same_bytes_and_head_hash(
    batch: tuple[list[tuple[int, int, bytes]], bytes],
) -> None:
    records, previous_hash = batch
    assert _encode_batch(records, previous_hash) == _encode_batch_python(records, previous_hash)


class Read(NamedTuple):
    """The arguments of a parse: bytes, maybe damaged, and where they are read from."""

    data: bytes
    expected: int
    previous_hash: bytes
    wanted_from: int
    wanted_to: int


@st.composite
def reads(draw: st.DrawFn) -> Read:
    """Any batch's bytes, damaged or not, read from its start or not, for all or some of it,
    chained from its own previous hash or not."""
    records, previous_hash = draw(batches())
    data, _ = _encode_batch_python(records, previous_hash)
    damage = draw(
        st.one_of(
            st.none(),
            st.tuples(st.just("flip"), st.integers(0, 10_000), st.integers(1, 255)),
            st.tuples(st.just("cut"), st.integers(0, 10_000), st.just(0)),
            st.tuples(st.just("zeros"), st.integers(1, 100), st.just(0)),
        )
    )
    if damage is not None:
        how, where, value = damage
        where %= len(data)
        if how == "flip":
            data = data[:where] + bytes([data[where] ^ value]) + data[where + 1 :]
        elif how == "cut":
            data = data[:where]
        else:
            data = data + bytes(where)
    first = records[0][0]
    expected = first + draw(st.sampled_from([0, 0, 0, 1, -1]))
    hash_is_wrong = draw(st.booleans())
    chain_from = bytes(32) if hash_is_wrong and previous_hash != bytes(32) else previous_hash
    wanted = draw(st.tuples(st.integers(0, 20), st.one_of(st.integers(0, 20), st.just(None))))
    wanted_to = _U64_LIMIT if wanted[1] is None else first + wanted[1]
    return Read(data, expected, chain_from, first + wanted[0], wanted_to)


@settings(max_examples=500, deadline=None)
@given(read=reads(), build=st.booleans())
def test_both_codecs_read_any_bytes_alike(read: Read, build: bool) -> None:
    data, expected, chain_from, wanted_from, wanted_to = read
    answers = []
    for parse in (_parse_records, _parse_records_python):
        out: list[JournalRecord] | None = [] if build else None
        used, next_expected, head, problem = parse(
            data, expected, chain_from, wanted_from, wanted_to, out
        )
        answers.append((used, next_expected, head, problem, out))
    compiled_answer, python_answer = answers
    assert compiled_answer == python_answer
    assert compiled_answer[3] is python_answer[3]  # the very message: callers compare with `is`


@settings(max_examples=1000, deadline=None)
@given(read=reads(), build=st.booleans(), more=st.integers(0, 40))
def test_a_check_in_two_halves_at_once_answers_as_one_from_the_start(
    read: Read, build: bool, more: int
) -> None:
    """The compiled codec checks a long buffer in two halves on two threads: whatever the
    bytes, damaged or not, wherever the read stops, the same answer and the same records as
    one scan from the start (here every buffer is split, wherever its middle falls)."""
    data, expected, chain_from, wanted_from, wanted_to = read
    if not journal._compiled_fits(data, expected, chain_from, wanted_from, wanted_to):
        return
    if more and expected == 1 and chain_from == GENESIS_HASH:  # a longer run, and its damage
        extra, _ = _encode_batch_python(
            [(1 + i, i, bytes([i % 7]) * (i % 50)) for i in range(more)], GENESIS_HASH
        )
        data = extra + data[len(data) // 3 :]
    stops = wanted_to < _U64_LIMIT
    answers = []
    for split_bytes in (1, _U64_LIMIT >> 2):
        out: list[JournalRecord] | None = [] if build else None
        answer = compiled.parse_records(
            data, expected, chain_from, wanted_from, wanted_to if stops else 0, stops, out,
            JournalRecord, journal._MAX_LENGTH, split_bytes,
        )  # fmt: skip
        answers.append((*answer, out))
    assert answers[0] == answers[1]


def picky_decoder(payload: bytes) -> tuple[int, bytes]:
    """Decodes most payloads, refuses some: a decoder as replay hands the reader."""
    if payload[:1] == b"\x00":
        raise ValueError(f"refused {payload.hex()}")
    return len(payload), payload


def comparable(answer: tuple[object, ...]) -> tuple[object, ...]:
    """An answer with its last item, an exception or None, as (type, args): exceptions
    compare by identity."""
    *rest, error = answer
    return (*rest, None if not isinstance(error, Exception) else (type(error), error.args))


def decoded_plainly(read: Read) -> tuple[list[int], list[object], Exception | None]:
    """The oracle: the records a plain read builds, each payload decoded in turn until the
    decoder refuses one."""
    records: list[JournalRecord] = []
    _parse_records_python(*read, records)
    times: list[int] = []
    entries: list[object] = []
    for record in records:
        try:
            entries.append(picky_decoder(record.payload))
        except ValueError as refused:
            return times, entries, refused
        times.append(record.time_ns)
    return times, entries, None


@settings(max_examples=500, deadline=None)
@given(read=reads())
def test_both_codecs_read_and_decode_any_bytes_alike(read: Read) -> None:
    """The replay read (a chunk checked, then its good prefix decoded by `decode_checked`): with
    either codec, the records of a plain read, each decoded, and the same refusal by the decoder
    at the same record; and the same batch, hashes and all."""
    data, expected, chain_from, wanted_from, wanted_to = read
    made = []
    for codec in (compiled, None):
        journal._compiled = codec
        try:
            *answers, chunk = _check_for_decoding(
                data, expected, chain_from, wanted_from, wanted_to
            )
            decoded = _decode_checked(chunk.data, chunk.used, wanted_from, picky_decoder)
            batch = _decoded_batch(chunk, decoded)
        finally:
            journal._compiled = compiled
        assert comparable((batch.times, batch.entries, batch.error)) == comparable(
            decoded_plainly(read)
        )
        made.append((*answers, msgspec.structs.replace(batch, error=None), batch.error))
    assert comparable(tuple(made[0])) == comparable(tuple(made[1]))


@settings(max_examples=500, deadline=None)
@given(read=reads(), cut=st.integers(0, 10_000))
def test_both_codecs_decode_a_checked_prefix_alike(read: Read, cut: int) -> None:
    """`decode_checked` itself, compiled and in Python: the same answers on a checked prefix;
    an end that is not a record boundary of the prefix is refused by both, alike, before
    anything is decoded."""
    assert compiled is not None
    data, expected, chain_from, wanted_from, wanted_to = read
    if not 0 <= wanted_from < _U64_LIMIT:
        return
    used, *_ = _parse_records_python(data, expected, chain_from, wanted_from, wanted_to, None)
    compiled_answer = compiled.decode_checked(data, used, wanted_from, picky_decoder)
    python_answer = _decode_checked_python(data, used, wanted_from, picky_decoder)
    assert comparable(compiled_answer) == comparable(python_answer)
    end = cut % (used + 1)
    answers = []
    for decode_checked in (compiled.decode_checked, _decode_checked_python):
        try:
            answers.append(comparable(decode_checked(data, end, wanted_from, picky_decoder)))
        except ValueError as refused:
            answers.append(("refused", str(refused)))
    assert answers[0] == answers[1]


def test_decoding_a_prefix_never_reads_past_its_end() -> None:
    data, _ = _encode_batch_python([(1, 5, b"one"), (2, 6, b"two")], GENESIS_HASH)
    for decode_checked in (compiled.decode_checked, _decode_checked_python):
        for end in (-1, len(data) + 1):
            with pytest.raises(ValueError, match="outside a buffer"):
                decode_checked(data, end, 1, bytes)
        with pytest.raises(ValueError, match="does not fit the prefix"):
            decode_checked(data, len(data) - 1, 1, bytes)
        with pytest.raises(ValueError, match="cut by the end of the prefix"):
            decode_checked(data, len(data) // 2 + 10, 1, bytes)


@pytest.mark.parametrize("in_halves", [False, True], ids=["one-scan", "in-halves"])
def test_no_record_follows_sequence_2_64_minus_1_in_either_codec(
    in_halves: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Nor in a check in two halves whose first ends at 2**64 - 1 (the record is long enough to
    end at the middle, so the wrapped ones are the second half)."""
    monkeypatch.setattr(journal, "_SPLIT_CHECK_BYTES", 1 if in_halves else 1 << 20)
    last, head = _encode_batch_python([(_U64_LIMIT - 1, 5, b"l" * 200)], GENESIS_HASH)
    wrapped, _ = _encode_batch_python([(0, 6, b"wrapped"), (1, 7, b"on")], head)
    assert len(last) >= len(last + wrapped) // 2  # the middle: just after `last`
    for parse in (_parse_records, _parse_records_python):
        out: list[JournalRecord] = []
        used, expected, _, problem = parse(
            last + wrapped, _U64_LIMIT - 1, GENESIS_HASH, 0, _U64_LIMIT, out
        )
        assert (used, expected, problem) == (len(last), _U64_LIMIT, journal._SEQUENCE)
        assert [record.sequence for record in out] == [_U64_LIMIT - 1]


@pytest.mark.parametrize("stop_at", [1, 2, 3, 4, 5, 6])
def test_a_read_that_stops_in_either_half_stops_there(stop_at: int) -> None:
    """Wherever `wanted_to` falls (in the first half, so the second is not checked at all; at
    the middle; in the second half), the same answer split or not."""
    data, _ = _encode_batch_python([(s, s, b"x" * 10) for s in range(1, 7)], GENESIS_HASH)
    answers = []
    for split_bytes in (1, len(data) + 1):
        out: list[JournalRecord] = []
        answers.append(
            (
                compiled.parse_records(
                    data, 1, GENESIS_HASH, 1, stop_at, True, out, JournalRecord,
                    journal._MAX_LENGTH, split_bytes,
                ),
                [record.sequence for record in out],
            )
        )  # fmt: skip
    assert answers[0] == answers[1]
    assert answers[0][1] == list(range(1, stop_at + 1))


class _Meddling:
    """A sequence number whose conversion empties the batch being encoded."""

    batch: ClassVar[list[tuple[object, int, bytes]]] = []

    def __init__(self, value: int) -> None:
        self.value = value

    def __index__(self) -> int:
        self.batch.clear()
        return self.value

    __int__ = __index__


def test_a_batch_changed_while_being_encoded_is_refused_not_a_memory_error() -> None:
    assert compiled is not None
    batch: list[tuple[object, int, bytes]] = [(_Meddling(1), 1, b"x"), (2, 2, b"y"), (3, 3, b"")]
    _Meddling.batch = batch
    with pytest.raises(ValueError, match="changed"):
        compiled.encode_batch(batch, GENESIS_HASH)  # type: ignore[arg-type]


def test_the_compiled_codec_refuses_malformed_batches_instead_of_crashing() -> None:
    assert compiled is not None
    with pytest.raises(ValueError):
        compiled.encode_batch([(1, 2)], GENESIS_HASH)  # type: ignore[list-item]
    with pytest.raises(TypeError):
        compiled.encode_batch([(1, 2, "text")], GENESIS_HASH)  # type: ignore[list-item]
    with pytest.raises(TypeError):
        compiled.encode_batch([(1, 2, 3)], GENESIS_HASH)  # type: ignore[list-item]
    with pytest.raises(OverflowError):
        compiled.encode_batch([(-1, 2, b"x")], GENESIS_HASH)
    with pytest.raises(ValueError):
        compiled.encode_batch([(1, 2, b"x")], b"short")
    with pytest.raises(TypeError):
        compiled.parse_records(None, 1, GENESIS_HASH, 1, 1, True, None, JournalRecord, 100, 1)  # type: ignore[arg-type]
