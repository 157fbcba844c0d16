"""Replay's rulebook: reading the journal a chunk at a time, payloads decoded as they are read
(what start-up, `hogx replay`, the snapshot writer and the ledger feed do), rebuilds exactly
what applying it record by record rebuilds.

The same state digest, projections, journal hash and progress reports, from scratch or from a
snapshot, wherever the read chunks end; the same refusal of a snapshot from another history;
and the same error, with the same state and hash behind it, at a payload that is not a command
of this schema or at a record whose application fails. Every rule holds for both record codecs.
"""

from __future__ import annotations

import hashlib
import time
from pathlib import Path
from typing import Any

import msgspec
import pytest

from benchmarks.workload import MarketWorkload
from exchange import journal, snapshots
from exchange.commands import JournalEntry, PlaceOrder, UnknownSchemaVersion, encode_command
from exchange.core import ExchangeCore
from exchange.journal import GENESIS_HASH, Journal
from exchange.snapshots import Recovered, SnapshotBody, SnapshotInfo
from matching_engine import OrderType, Side
from tests.test_journal import CODECS

# The start of this UTC day: the workload's OCOP certificate is dated from today.
T0_NS = (time.time_ns() // 86_400_000_000_000) * 86_400_000_000_000

# Small chunks, so a replay of a few hundred records spans many, and the default.
CHUNKS = [700, journal._READ_CHUNK_BYTES]


@pytest.fixture(autouse=True, params=CODECS)
def codec(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(journal, "_compiled", request.param)


@pytest.fixture(params=CHUNKS, ids=["small-chunks", "4-MB-chunks"])
def chunk_bytes(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> int:
    monkeypatch.setattr(journal, "_READ_CHUNK_BYTES", request.param)
    return int(request.param)


def write_journal(directory: Path, count: int, odd: dict[int, bytes] | None = None) -> int:
    """A journal of the workload's set-up and `count` of its commands (payload `odd[s]`
    instead at sequence `s`); returns its last sequence."""
    workload = MarketWorkload(5)
    scratch = ExchangeCore()
    commands = list(workload.setup())
    setup = len(commands)
    records = []
    for sequence in range(1, setup + count + 1):
        if sequence > setup:
            commands.append(workload.next_command())
        command = commands[sequence - 1]
        time_ns = T0_NS + sequence * 1_000
        workload.observe(scratch.apply(command, sequence, time_ns))
        payload = (odd or {}).get(sequence, encode_command(command))
        records.append((sequence, time_ns, payload))
    with Journal.open(directory, segment_bytes=20_000, fsync=False) as opened:
        for start in range(0, len(records), 64):
            opened.append_batch(records[start : start + 64])
    return len(records)


def state_at(
    directory: Path, sequence: int, journal_hash: bytes | None = None, *, projections: bool = True
) -> Recovered:
    """What start-up (or, without the projections, `hogx replay`) would load from a snapshot at
    `sequence` (taken with `journal_hash`, the journal's own by default)."""
    recovered = Recovered()
    with Journal.open(directory, fsync=False) as opened:
        recovered.catch_up(iter(opened.read(1, sequence)))
    body = msgspec.msgpack.decode(msgspec.msgpack.encode(recovered.snapshot()), type=SnapshotBody)
    info = SnapshotInfo(directory / "snapshot", sequence, journal_hash or recovered.journal_hash)
    return Recovered((info, body), projections=projections)


def fingerprint(recovered: Recovered) -> tuple[str, ...]:
    def hashed(state: Any) -> str:
        return hashlib.sha256(msgspec.msgpack.encode(state)).hexdigest()

    return (
        recovered.core.digest(),
        hashed(recovered.market_data.state()),
        hashed(recovered.audit.state()),
        hashed(recovered.surveillance.state()),
        recovered.journal_hash.hex(),
    )


def replay(
    directory: Path, recovered: Recovered, *, decoded: bool, from_sequence: int | None = None
) -> tuple[object, ...]:
    """Catch `recovered` up with the journal, as a reader (decoded chunks) or record by record
    (`iter` of the reader: a plain iterator); what happened, and the state it left."""
    reports: list[tuple[int, bytes]] = []
    start = max(recovered.core.last_sequence, 1) if from_sequence is None else from_sequence
    with Journal.open(directory, fsync=False) as opened:
        reader = opened.read(start)
        records = reader if decoded else iter(reader)
        try:
            applied: object = recovered.catch_up(
                records, lambda count: reports.append((count, recovered.journal_hash))
            )
        except Exception as error:
            applied = (type(error), str(error))
    return applied, reports, fingerprint(recovered)


def both_ways(directory: Path, make: Any, **options: Any) -> tuple[object, ...]:
    """`replay` from the state `make()` returns, both ways; they must agree."""
    by_chunks = replay(directory, make(), decoded=True, **options)
    by_records = replay(directory, make(), decoded=False, **options)
    assert by_chunks == by_records
    return by_chunks


def test_a_replay_rebuilds_what_a_record_by_record_replay_rebuilds(
    tmp_path: Path, chunk_bytes: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(snapshots, "PROGRESS_EVERY", 37)
    last = write_journal(tmp_path, 400)
    with Journal.open(tmp_path, fsync=False) as opened:
        head = opened.head_hash
    applied, reports, (*_, journal_hash) = both_ways(tmp_path, Recovered)
    assert applied == last and journal_hash == head.hex()
    assert [count for count, _ in reports] == list(range(37, last + 1, 37))
    for at in (1, 2, 63, 64, 65, 150, last - 1, last):  # from a snapshot there
        applied, _, (*_, journal_hash) = both_ways(tmp_path, lambda at=at: state_at(tmp_path, at))
        assert applied == last - at and journal_hash == head.hex()


def test_a_replay_of_the_core_alone_rebuilds_the_core_a_full_replay_rebuilds(
    tmp_path: Path, chunk_bytes: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`hogx replay`'s way: the same core digest, journal hash and progress reports as a replay
    with the projections, from scratch or from a snapshot; the projections stay as loaded."""
    monkeypatch.setattr(snapshots, "PROGRESS_EVERY", 37)
    last = write_journal(tmp_path, 400)
    for at in (None, 1, 64, 150, last):

        def make(projections: bool, at: int | None = at) -> Recovered:
            if at is None:
                return Recovered(projections=projections)
            return state_at(tmp_path, at, projections=projections)

        full_applied, full_reports, full = both_ways(tmp_path, lambda: make(True))
        alone_applied, alone_reports, alone = both_ways(tmp_path, lambda: make(False))
        assert (alone_applied, alone_reports) == (full_applied, full_reports)
        core_digest, *projections, journal_hash = alone
        assert (core_digest, journal_hash) == (full[0], full[-1])
        assert projections == list(fingerprint(make(False))[1:-1])  # untouched
        if at != last:
            assert projections != list(full[1:-1])


def test_a_replay_of_the_core_alone_makes_no_snapshot() -> None:
    with pytest.raises(ValueError, match="no projections to snapshot"):
        Recovered(projections=False).snapshot()


def test_a_replay_from_before_the_snapshot_skips_to_it(tmp_path: Path, chunk_bytes: int) -> None:
    last = write_journal(tmp_path, 100)
    applied, *_ = both_ways(tmp_path, lambda: state_at(tmp_path, 60), from_sequence=3)
    assert applied == last - 60
    applied, *_ = both_ways(tmp_path, lambda: state_at(tmp_path, 60), from_sequence=70)
    assert isinstance(applied, tuple) and applied[0] is AssertionError  # a gap: refused


def test_a_snapshot_of_another_history_is_refused_wherever_its_record_lies(
    tmp_path: Path, chunk_bytes: int
) -> None:
    last = write_journal(tmp_path, 120)
    foreign = bytes(31) + b"\x01"
    for at in [*range(1, 30), 64, 100, last - 1, last]:
        applied, reports, (*_, journal_hash) = both_ways(
            tmp_path, lambda at=at: state_at(tmp_path, at, foreign)
        )
        assert applied == (ValueError, f"the snapshot at sequence {at} does not match the journal")
        assert journal_hash == foreign.hex() and reports == []


def failing_at(failing: int, *, projections: bool) -> Recovered:
    """A state whose replay fails at record `failing`: in the surveillance with the
    projections (`observe(sequence, ...)`), in the core without them (`apply(command,
    sequence, time_ns)`)."""
    recovered = Recovered(projections=projections)
    part: Any = recovered.surveillance if projections else recovered.core
    name, sequence_at = ("observe", 0) if projections else ("apply", 1)
    original = getattr(part, name)

    def until_failing(*args: Any) -> Any:
        if args[sequence_at] == failing:
            raise RuntimeError(f"{name} failed at {failing}")
        return original(*args)

    setattr(part, name, until_failing)
    return recovered


@pytest.mark.parametrize("projections", [True, False], ids=["with-projections", "core-alone"])
def test_a_replay_stopped_by_a_failing_record_keeps_the_hash_of_the_last_one_applied(
    tmp_path: Path, chunk_bytes: int, projections: bool
) -> None:
    write_journal(tmp_path, 200)
    with Journal.open(tmp_path, fsync=False) as opened:
        hashes = [GENESIS_HASH] + [record.hash for record in opened.read()]
    for failing in (1, 2, 40, 64, 65, 199):
        applied, _, (*_, journal_hash) = both_ways(
            tmp_path, lambda failing=failing: failing_at(failing, projections=projections)
        )
        name = "observe" if projections else "apply"
        assert applied == (RuntimeError, f"{name} failed at {failing}")
        assert journal_hash == hashes[failing - 1].hex()


def not_this_schema() -> bytes:
    order = PlaceOrder(1, "HOG-G1-HCM", Side.BUY, OrderType.LIMIT, 60_000, 1)
    return msgspec.msgpack.encode(JournalEntry(2, order))


@pytest.mark.parametrize(
    ("payload", "error"),
    [
        (not_this_schema(), UnknownSchemaVersion),
        (b"\xc1", msgspec.DecodeError),
        (b"", msgspec.DecodeError),
        (
            encode_command(PlaceOrder(1, "HOG-G1-HCM", Side.BUY, OrderType.LIMIT, 1, 1)) + b"\x00",
            msgspec.DecodeError,
        ),
        (msgspec.msgpack.encode([1, ["no_such_command", 1]]), msgspec.ValidationError),
    ],
    ids=["another-schema-version", "not-msgpack", "empty", "trailing-bytes", "unknown-tag"],
)
def test_a_payload_that_is_no_command_of_this_schema_stops_a_replay_at_it(
    tmp_path: Path, chunk_bytes: int, payload: bytes, error: type[Exception]
) -> None:
    write_journal(tmp_path, 150, odd={90: payload})
    with Journal.open(tmp_path, fsync=False) as opened:
        hashes = [GENESIS_HASH] + [record.hash for record in opened.read()]
    applied, _, (*_, journal_hash) = both_ways(tmp_path, Recovered)
    assert isinstance(applied, tuple) and issubclass(applied[0], error)
    assert journal_hash == hashes[89].hex()
    applied, _, _ = both_ways(tmp_path, lambda: state_at(tmp_path, 89))
    assert isinstance(applied, tuple) and issubclass(applied[0], error)
