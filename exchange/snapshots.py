"""Snapshots of the whole core state, so start-up replays only the journal after the newest one.

File `snapshot-{sequence:020d}.snap` in `<data-dir>/snapshots/`:

    offset  size  field
    0       8     magic  b"HOGXSNAP"
    8       4     format version, u32 little-endian
    12      8     sequence of the last command the state includes, u64
    20      32    journal hash of that record (ties the snapshot to this journal's history)
    52      32    SHA-256 of the body
    84      n     body: the msgpack encoding of `CoreState`

A snapshot is written to a temporary file, fsynced and renamed into place, so a crash leaves
either the complete file or none. Start-up takes the newest snapshot whose checksum holds and
whose journal hash matches the journal, and skips damaged ones. The newest few are kept.

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

import msgspec

from exchange.commands import decode_command
from exchange.core import CoreState, ExchangeCore
from exchange.journal import GENESIS_HASH, JournalRecord, read_committed

MAGIC = b"HOGXSNAP"
FORMAT_VERSION = 1
KEEP = 3
PROGRESS_EVERY = 50_000
_HEADER = struct.Struct("<8sIQ32s32s")
_NAME = re.compile(r"snapshot-(\d{20})\.snap")


class SnapshotInfo(msgspec.Struct, frozen=True):
    path: Path
    sequence: int
    journal_hash: bytes


def snapshot_dir(data_dir: Path) -> Path:
    return Path(data_dir) / "snapshots"


def journal_dir(data_dir: Path) -> Path:
    return Path(data_dir) / "journal"


def write_snapshot(data_dir: Path, state: CoreState, journal_hash: bytes) -> Path:
    """Write `state` durably and atomically; returns the new file's path."""
    assert len(journal_hash) == 32
    directory = snapshot_dir(data_dir)
    directory.mkdir(parents=True, exist_ok=True)
    body = msgspec.msgpack.encode(state)
    header = _HEADER.pack(
        MAGIC, FORMAT_VERSION, state.last_sequence, journal_hash, hashlib.sha256(body).digest()
    )
    final = directory / f"snapshot-{state.last_sequence:020d}.snap"
    temporary = directory / f".{final.name}.{os.getpid()}.tmp"
    with temporary.open("wb") as file:
        file.write(header)
        file.write(body)
        file.flush()
        os.fsync(file.fileno())
    os.replace(temporary, final)
    _fsync_directory(directory)
    _prune(directory)
    return final


def read_snapshot(path: Path) -> tuple[SnapshotInfo, CoreState]:
    """Read and check one snapshot; raises ValueError when it is damaged."""
    data = Path(path).read_bytes()
    if len(data) < _HEADER.size:
        raise ValueError(f"{path.name}: shorter than a snapshot header")
    magic, version, sequence, journal_hash, checksum = _HEADER.unpack_from(data)
    if magic != MAGIC or version != FORMAT_VERSION:
        raise ValueError(f"{path.name}: not a hogx snapshot of format {FORMAT_VERSION}")
    body = memoryview(data)[_HEADER.size :]
    if hashlib.sha256(body).digest() != checksum:
        raise ValueError(f"{path.name}: checksum mismatch")
    state = msgspec.msgpack.decode(body, type=CoreState)
    if state.last_sequence != sequence:
        raise ValueError(f"{path.name}: header and body disagree on the sequence")
    return SnapshotInfo(Path(path), sequence, journal_hash), state


def snapshots_newest_first(data_dir: Path) -> list[Path]:
    directory = snapshot_dir(data_dir)
    if not directory.is_dir():
        return []
    found = [p for p in directory.iterdir() if _NAME.fullmatch(p.name)]
    return sorted(found, reverse=True)


def load_newest(data_dir: Path, usable: int) -> Iterator[tuple[SnapshotInfo, CoreState]]:
    """Valid snapshots at or below sequence `usable`, newest first (damaged ones are skipped)."""
    for path in snapshots_newest_first(data_dir):
        if int(_NAME.fullmatch(path.name).group(1)) > usable:  # type: ignore[union-attr]
            continue
        try:
            yield read_snapshot(path)
        except (ValueError, msgspec.DecodeError, OSError) as error:
            print(f"hogx: skipping snapshot {path.name}: {error}", file=sys.stderr)


def catch_up(
    core: ExchangeCore,
    records: Iterator[JournalRecord],
    journal_hash: bytes,
    progress: Callable[[int], None] | None = None,
) -> tuple[bytes, int]:
    """Apply journal records after `core.last_sequence`; returns (head hash, records applied).

    When the core came from a snapshot, `records` starts at the snapshot's own sequence, whose
    hash must equal `journal_hash`: proof that the snapshot belongs to this journal's history.
    """
    applied = 0
    for record in records:
        if record.sequence <= core.last_sequence:
            if record.sequence == core.last_sequence and record.hash != journal_hash:
                raise ValueError(
                    f"the snapshot at sequence {record.sequence} does not match the journal"
                )
            continue
        core.apply(decode_command(record.payload), record.sequence, record.time_ns)
        journal_hash = record.hash
        applied += 1
        if progress is not None and applied % PROGRESS_EVERY == 0:
            progress(applied)
    return journal_hash, applied


def build_snapshot(data_dir: Path, up_to: int) -> Path | None:
    """Bring the newest snapshot up to `up_to` by replaying the durable journal; write it."""
    core, journal_hash = ExchangeCore(), GENESIS_HASH
    for info, state in load_newest(data_dir, up_to):
        core, journal_hash = ExchangeCore.from_state(state), info.journal_hash
        break
    if core.last_sequence >= up_to:
        return None
    records = read_committed(journal_dir(data_dir), max(core.last_sequence, 1), up_to)
    journal_hash, _ = catch_up(core, records, journal_hash)
    assert core.last_sequence == up_to
    return write_snapshot(data_dir, core.state(), journal_hash)


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
    path = build_snapshot(args.data_dir, args.up_to)
    print(path if path is not None else "nothing new to snapshot")
    return 0


if __name__ == "__main__":
    sys.exit(main())
