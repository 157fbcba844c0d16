"""Snapshots of the whole core state, so start-up replays only the journal after the newest one.

File `snapshot-{sequence:020d}.snap` in `<data-dir>/snapshots/`:

    offset  size  field
    0       8     magic  b"HOGXSNAP"
    8       4     format version, u32 little-endian
    12      8     sequence of the last command the state includes, u64
    20      32    journal hash of that record (ties the snapshot to this journal's history)
    52      32    SHA-256 of bytes 0-51 followed by the body
    84      n     body: the msgpack encoding of `SnapshotBody` (core state and projections)

A snapshot is written to a temporary file, fsynced and renamed into place, so a crash leaves
either the complete file or none. Start-up takes the newest snapshot whose checksum holds and
whose journal hash matches the journal's record at its sequence, and skips damaged or foreign
ones (a snapshot that belongs to another history is as useless as a damaged one). The newest
few are kept.

Snapshots are made without stalling the exchange: while it runs, a separate process
(`python -m exchange.snapshots`) loads the newest snapshot, replays the durable journal after
it and writes the next one, using the other core; at shutdown the exchange writes one itself.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import re
import struct
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TypeVar

import msgspec

from exchange.audit import AuditState, AuditTrail
from exchange.collector import collecting_seldom, paused
from exchange.commands import SCHEMA_VERSION, command_of, decode_command, decode_entry
from exchange.core import CoreState, ExchangeCore
from exchange.journal import (
    GENESIS_HASH,
    DecodedBatch,
    JournalReader,
    JournalRecord,
    read_committed,
)
from exchange.marketdata import MarketData, MarketDataState
from exchange.surveillance import Surveillance, SurveillanceState, empty_state

MAGIC = b"HOGXSNAP"
FORMAT_VERSION = 1
KEEP = 3
PROGRESS_EVERY = 50_000
_HEADER_FIELDS = struct.Struct("<8sIQ32s")
_HEADER = struct.Struct("<8sIQ32s32s")
_NAME = re.compile(r"snapshot-(\d{20})\.snap")


class SnapshotBody(msgspec.Struct, frozen=True):
    """The core state and the projections kept beside it, all at the same sequence."""

    core: CoreState
    market_data: MarketDataState
    audit: AuditState
    # Snapshots written before surveillance existed load with no alerts before them.
    surveillance: SurveillanceState = msgspec.field(default_factory=empty_state)


class CoreAndMarketData(msgspec.Struct, frozen=True):
    """What a gateway's replica takes from a snapshot: decoding skips the rest, most of all the
    audit trail, which is most of a snapshot's bytes."""

    core: CoreState
    market_data: MarketDataState


_Body = TypeVar("_Body", SnapshotBody, CoreAndMarketData)


class SnapshotInfo(msgspec.Struct, frozen=True):
    path: Path
    sequence: int
    journal_hash: bytes


def snapshot_dir(data_dir: Path) -> Path:
    return Path(data_dir) / "snapshots"


def journal_dir(data_dir: Path) -> Path:
    return Path(data_dir) / "journal"


def write_snapshot(data_dir: Path, snapshot: SnapshotBody, journal_hash: bytes) -> Path:
    """Write `snapshot` durably and atomically; returns the new file's path."""
    assert len(journal_hash) == 32
    body = msgspec.msgpack.encode(snapshot)
    fields = _HEADER_FIELDS.pack(MAGIC, FORMAT_VERSION, snapshot.core.last_sequence, journal_hash)
    header = fields + hashlib.sha256(fields + body).digest()
    return _install(data_dir, snapshot.core.last_sequence, (header, body))


def install_snapshot(data_dir: Path, data: bytes) -> Path:
    """Put a whole snapshot file fetched from elsewhere (the cluster's object store) into
    `data_dir`, durably and atomically, once its header and checksum hold (else ValueError)."""
    sequence, _ = check_snapshot_bytes(data, "snapshot")
    return _install(data_dir, sequence, (data,))


def _install(data_dir: Path, sequence: int, parts: tuple[bytes, ...]) -> Path:
    directory = snapshot_dir(data_dir)
    directory.mkdir(parents=True, exist_ok=True)
    final = directory / snapshot_name(sequence)
    temporary = directory / f".{final.name}.{os.getpid()}.tmp"
    with temporary.open("wb") as file:
        for part in parts:
            file.write(part)
        file.flush()
        os.fsync(file.fileno())
    os.replace(temporary, final)
    _fsync_directory(directory)
    _prune(directory)
    return final


def snapshot_name(sequence: int) -> str:
    return f"snapshot-{sequence:020d}.snap"


def check_snapshot_bytes(data: bytes, name: str) -> tuple[int, bytes]:
    """A whole snapshot file's sequence and journal hash, once its magic, format and checksum
    hold; raises ValueError (naming `name`) when they do not."""
    if len(data) < _HEADER.size:
        raise ValueError(f"{name}: shorter than a snapshot header")
    magic, version, sequence, journal_hash, checksum = _HEADER.unpack_from(data)
    if magic != MAGIC or version != FORMAT_VERSION:
        raise ValueError(f"{name}: not a hogx snapshot of format {FORMAT_VERSION}")
    covered = hashlib.sha256(memoryview(data)[: _HEADER_FIELDS.size])
    covered.update(memoryview(data)[_HEADER.size :])
    if covered.digest() != checksum:
        raise ValueError(f"{name}: checksum mismatch")
    return sequence, journal_hash


def decode_snapshot(data: bytes, name: str, body: type[_Body]) -> tuple[int, bytes, _Body]:
    """Check a whole snapshot file (as `check_snapshot_bytes`) and decode its body as `body`."""
    sequence, journal_hash = check_snapshot_bytes(data, name)
    snapshot = msgspec.msgpack.decode(memoryview(data)[_HEADER.size :], type=body)
    if snapshot.core.last_sequence != sequence:
        raise ValueError(f"{name}: header and body disagree on the sequence")
    return sequence, journal_hash, snapshot


def read_snapshot(path: Path) -> tuple[SnapshotInfo, SnapshotBody]:
    """Read and check one snapshot; raises ValueError when it is damaged."""
    data = Path(path).read_bytes()
    sequence, journal_hash, snapshot = decode_snapshot(data, Path(path).name, SnapshotBody)
    return SnapshotInfo(Path(path), sequence, journal_hash), snapshot


def snapshots_newest_first(data_dir: Path) -> list[Path]:
    directory = snapshot_dir(data_dir)
    if not directory.is_dir():
        return []
    found = [p for p in directory.iterdir() if _NAME.fullmatch(p.name)]
    return sorted(found, reverse=True)


def newest_snapshot_sequence(data_dir: Path) -> int:
    """The sequence the newest snapshot file here is named after (0 when there is none); its
    contents are checked only when it is loaded."""
    newest = snapshots_newest_first(data_dir)
    return int(_NAME.fullmatch(newest[0].name).group(1)) if newest else 0  # type: ignore[union-attr]


def load_newest(data_dir: Path, usable: int) -> Iterator[tuple[SnapshotInfo, SnapshotBody]]:
    """Valid snapshots at or below sequence `usable`, newest first (damaged ones are skipped)."""
    for path in snapshots_newest_first(data_dir):
        if int(_NAME.fullmatch(path.name).group(1)) > usable:  # type: ignore[union-attr]
            continue
        try:
            yield read_snapshot(path)
        except (ValueError, msgspec.DecodeError, OSError) as error:
            print(f"hogx: skipping snapshot {path.name}: {error}", file=sys.stderr)


class Recovered:
    """A core and its projections, at one sequence, with the journal hash there.

    With `projections=False`, a replay applies the journal to the core alone: what `hogx
    replay` reports is the core's (its digest, last sequence and the journal's head), and the
    projections (market data, audit trail, surveillance) cost twice what the core does to
    replay. They then stay as they were loaded, behind the core, so such a `Recovered` refuses
    to make a snapshot."""

    def __init__(
        self,
        snapshot: tuple[SnapshotInfo, SnapshotBody] | None = None,
        *,
        projections: bool = True,
    ) -> None:
        self.projections = projections
        if snapshot is None:
            self.core, self.market_data, self.journal_hash = (
                ExchangeCore(),
                MarketData(),
                GENESIS_HASH,
            )
            self.audit = AuditTrail()
            self.surveillance = Surveillance()
        else:
            info, body = snapshot
            self.core = ExchangeCore.from_state(body.core)
            self.market_data = MarketData.from_state(body.market_data)
            self.audit = AuditTrail.from_state(body.audit)
            self.surveillance = Surveillance.from_state(body.surveillance)
            self.journal_hash = info.journal_hash
        self.snapshot_sequence = self.core.last_sequence

    @classmethod
    def newest(
        cls,
        data_dir: Path,
        usable: int,
        journal_hash_at: Callable[[int], bytes] | None = None,
        *,
        projections: bool = True,
    ) -> Recovered:
        """From the newest valid snapshot at or below `usable`, or from nothing.

        With `journal_hash_at`, a snapshot is used only if the journal's record at its sequence
        has the hash the snapshot was taken at.
        """
        with paused():  # loading builds only lasting state, as a replay does
            return cls._newest(data_dir, usable, journal_hash_at, projections)

    @classmethod
    def _newest(
        cls,
        data_dir: Path,
        usable: int,
        journal_hash_at: Callable[[int], bytes] | None,
        projections: bool,
    ) -> Recovered:
        for info, body in load_newest(data_dir, usable):
            if journal_hash_at is not None and journal_hash_at(info.sequence) != info.journal_hash:
                print(
                    f"hogx: skipping snapshot {info.path.name}: it does not match the journal",
                    file=sys.stderr,
                )
                continue
            return cls((info, body), projections=projections)
        return cls(projections=projections)

    def snapshot(self) -> SnapshotBody:
        if not self.projections:
            raise ValueError("a replay of the core alone has no projections to snapshot")
        return SnapshotBody(
            self.core.state(),
            self.market_data.state(),
            self.audit.state(),
            self.surveillance.state(),
        )

    def catch_up(
        self, records: Iterator[JournalRecord], progress: Callable[[int], None] | None = None
    ) -> int:
        """Apply journal records after the current sequence; returns how many were applied.

        When the state came from a snapshot, `records` starts at the snapshot's own sequence,
        whose hash must equal the snapshot's: proof that it belongs to this journal's history.
        `progress` is called with the count every `PROGRESS_EVERY` records.

        A `JournalReader` not yet started (what `Journal.read` and `read_committed` return)
        is read a chunk at a time with the payloads decoded as they are read
        (`JournalReader.decoded_batches`), which is the same records, checked the same way,
        applied the same way, with the same `journal_hash` at the end (or at an error).
        """
        with paused():  # a replay leaves no cyclic garbage to collect (exchange/collector.py)
            if isinstance(records, JournalReader) and not records.started:
                return self._catch_up_decoded(records, progress)
            return self._catch_up(records, progress)

    def _catch_up(
        self, records: Iterator[JournalRecord], progress: Callable[[int], None] | None
    ) -> int:
        core, market_data = self.core, self.market_data
        applied = 0
        for record in records:
            if record.sequence <= core.last_sequence:
                if record.sequence == core.last_sequence and record.hash != self.journal_hash:
                    raise _snapshot_mismatch(record.sequence)
                continue
            command = decode_command(record.payload)
            events = core.apply(command, record.sequence, record.time_ns)
            if self.projections:
                market_data.observe(record.sequence, record.time_ns, events)
                self.audit.observe(record.sequence, record.time_ns, command, events)
                self.surveillance.observe(record.sequence, record.time_ns, command, events)
            self.journal_hash = record.hash
            applied += 1
            if progress is not None and applied % PROGRESS_EVERY == 0:
                progress(applied)
        return applied

    def _catch_up_decoded(
        self, reader: JournalReader, progress: Callable[[int], None] | None
    ) -> int:
        """`_catch_up`, a decoded chunk at a time. The snapshot's record is in the stream when
        the reader starts at or before it: then its hash is the `previous_hash` of the batch
        that starts right after it (every chunk read gives a batch, with entries or not)."""
        after = self.core.last_sequence
        boundary = after if reader.from_sequence <= after else None
        applied = 0
        for batch in reader.decoded_batches(decode_entry, after):
            if boundary is not None and batch.first_sequence == boundary + 1:
                if batch.previous_hash != self.journal_hash:
                    raise _snapshot_mismatch(boundary)
                boundary = None
            count = len(batch.entries)
            start = 0
            while start < count:  # in runs that end where `progress` is due
                stop = count
                if progress is not None:
                    stop = min(count, start + PROGRESS_EVERY - applied % PROGRESS_EVERY)
                self._apply_run(batch, start, stop)
                applied += stop - start
                if progress is not None and applied % PROGRESS_EVERY == 0:
                    progress(applied)
                start = stop
            if batch.error is not None:  # decoding the next record failed, as it would have
                raise batch.error
        return applied

    def _apply_run(self, batch: DecodedBatch, start: int, stop: int) -> None:
        """Apply entries `start:stop` of `batch`; `journal_hash` ends as the last applied
        record's, also when one of them raises."""
        apply = self.core.apply
        market_data, audit, surveillance = self.market_data, self.audit, self.surveillance
        records = zip(batch.times[start:stop], batch.entries[start:stop], strict=True)
        sequence = batch.first_sequence + start - 1
        # `command_of` checks the version too; inline below, for the records where it holds.
        try:
            if not self.projections:
                for time_ns, entry in records:
                    sequence += 1
                    command = (
                        entry.command if entry.version == SCHEMA_VERSION else command_of(entry)
                    )
                    apply(command, sequence, time_ns)
            else:
                for time_ns, entry in records:
                    sequence += 1
                    command = (
                        entry.command if entry.version == SCHEMA_VERSION else command_of(entry)
                    )
                    events = apply(command, sequence, time_ns)
                    market_data.observe(sequence, time_ns, events)
                    audit.observe(sequence, time_ns, command, events)
                    surveillance.observe(sequence, time_ns, command, events)
        except BaseException:
            done = sequence - batch.first_sequence  # entries fully applied before this one
            if done > 0:
                self.journal_hash = batch.hash_at(done - 1)
            raise
        if stop == len(batch.entries):
            self.journal_hash = batch.last_hash
        elif stop > start:  # a run cut short for `progress`: walk the chunk to its hash
            self.journal_hash = batch.hash_at(stop - 1)


def _snapshot_mismatch(sequence: int) -> ValueError:
    return ValueError(f"the snapshot at sequence {sequence} does not match the journal")


def build_snapshot(data_dir: Path, up_to: int) -> Path | None:
    """Bring the newest snapshot up to `up_to` by replaying the durable journal; write it."""
    state = Recovered.newest(data_dir, up_to)
    if state.core.last_sequence >= up_to:
        return None
    state.catch_up(read_committed(journal_dir(data_dir), max(state.core.last_sequence, 1), up_to))
    assert state.core.last_sequence == up_to
    return write_snapshot(data_dir, state.snapshot(), state.journal_hash)


def remove_partial_snapshots(data_dir: Path) -> int:
    """Delete temporary files a killed snapshot writer left behind; returns how many."""
    directory = snapshot_dir(data_dir)
    if not directory.is_dir():
        return 0
    partial = [p for p in directory.iterdir() if p.name.startswith(".") and p.suffix == ".tmp"]
    for path in partial:
        path.unlink(missing_ok=True)
    return len(partial)


def _prune(directory: Path) -> None:
    for old in sorted(p for p in directory.iterdir() if _NAME.fullmatch(p.name))[:-KEEP]:
        old.unlink(missing_ok=True)


def _fsync_directory(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m exchange.snapshots",
        description="Write a snapshot by replaying the durable journal after the newest one.",
    )
    parser.add_argument("--data-dir", type=Path, required=True)
    parser.add_argument("--up-to", type=int, required=True, help="last durable sequence")
    args = parser.parse_args(argv)
    with collecting_seldom():  # this process only replays
        path = build_snapshot(args.data_dir, args.up_to)
    print(path if path is not None else "nothing new to snapshot")
    return 0


if __name__ == "__main__":
    sys.exit(main())
