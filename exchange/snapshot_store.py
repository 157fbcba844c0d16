"""Snapshots in a JetStream object store, so a new engine node or gateway need not replay the
shard's whole history.

Why: in a cluster each engine node writes snapshots to its own disk, so a node on an empty disk
(a new standby, a replaced machine) and every gateway replica used to apply the shard's stream
from its first record: after a year of trading, minutes. The leader now also puts each
snapshot into the bucket ``hogx_snapshots_<shard>`` (the stream's replicas), where any of them
can start from it.

Layout: object ``snapshot-<sequence:020d>.snap`` holds the very bytes of the snapshot file
(header with the sequence, the journal hash there and a SHA-256 checksum; see
``exchange/snapshots.py``), with the headers ``Hogx-Sequence`` and ``Hogx-Journal-Hash`` and a
description naming both. The newest ``KEEP`` are kept, older ones deleted.

Uploading never holds up trading: it runs as a task beside the sequencer (the file is read and
checked on a thread), and a slow or failing object store only delays or loses that upload,
which is logged; the next snapshot tries again.

Nothing in the bucket is trusted. A snapshot is used only when the file's own checksum holds
(it covers every byte), its header agrees with the object's headers, and its journal hash
equals the hash of the stream's record at that sequence (a record's hash commits to the whole
history before it, so the snapshot belongs to this stream, which the reader then follows from
there, chain checked). Anything else is skipped, saying why, and the next older one tried;
with none left the reader replays the stream from its start, as before.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
from collections.abc import Callable
from pathlib import Path
from typing import Final, NamedTuple

from nats.js import JetStreamContext
from nats.js.api import ObjectInfo, ObjectMeta, ObjectStoreConfig, StorageType
from nats.js.errors import BucketNotFoundError, NotFoundError
from nats.js.object_store import OBJ_CHUNKS_PRE_TEMPLATE, OBJ_STREAM_TEMPLATE, ObjectStore

from exchange.jetstream import check_shard, journal_hash_at
from exchange.snapshots import check_snapshot_bytes, snapshot_name

KEEP: Final = 3
SEQUENCE_HEADER: Final = "Hogx-Sequence"
HASH_HEADER: Final = "Hogx-Journal-Hash"
CHUNK_TIMEOUT_SECONDS: Final = 5.0  # a download that stalls this long is given up
_OBJECT_NAME: Final = re.compile(r"snapshot-(\d{20})\.snap")


def bucket_name(shard: str) -> str:
    return f"hogx_snapshots_{check_shard(shard)}"


class StoredSnapshot(NamedTuple):
    """A snapshot object as its headers describe it (not yet checked)."""

    name: str
    sequence: int
    journal_hash: bytes


class FetchedSnapshot(NamedTuple):
    """A snapshot object's bytes, checked against themselves and against the stream."""

    name: str
    sequence: int
    journal_hash: bytes
    data: bytes


async def _bucket(js: JetStreamContext, shard: str, create_replicas: int | None) -> ObjectStore:
    """The shard's bucket; created (with `create_replicas`) when missing, if that is given."""
    try:
        return await js.object_store(bucket_name(shard))
    except BucketNotFoundError:
        if create_replicas is None:
            raise
    config = ObjectStoreConfig(
        description=f"hogx snapshots of shard {shard}",
        storage=StorageType.FILE,
        replicas=create_replicas,
    )
    return await js.create_object_store(bucket_name(shard), config=config)


async def upload(
    js: JetStreamContext, shard: str, path: Path, *, replicas: int = 1, keep: int = KEEP
) -> StoredSnapshot:
    """Put the snapshot file at `path` into the shard's bucket, then delete all but the newest
    `keep` objects. A damaged file is refused (ValueError), never uploaded."""
    data = await asyncio.to_thread(Path(path).read_bytes)
    sequence, journal_hash = await asyncio.to_thread(check_snapshot_bytes, data, Path(path).name)
    store = await _bucket(js, shard, replicas)
    name = snapshot_name(sequence)
    meta = ObjectMeta(
        name=name,
        description=f"shard {shard} at journal sequence {sequence}, hash {journal_hash.hex()}",
        # As NATS itself stores object headers (Go's http.Header): a list of values per name.
        headers={SEQUENCE_HEADER: [str(sequence)], HASH_HEADER: [journal_hash.hex()]},
    )
    await store.put(name, data, meta)
    for old in (await _listed(store))[keep:]:
        with contextlib.suppress(NotFoundError):  # another leader's upload pruned it first
            await store.delete(old.name)
    return StoredSnapshot(name, sequence, journal_hash)


async def stored_snapshots(js: JetStreamContext, shard: str) -> list[StoredSnapshot]:
    """The shard's snapshot objects, newest first (none when there is no bucket yet)."""
    try:
        store = await _bucket(js, shard, None)
    except BucketNotFoundError:
        return []
    return await _listed(store)


async def _listed(store: ObjectStore) -> list[StoredSnapshot]:
    try:
        infos = await store.list(ignore_deletes=True)
    except NotFoundError:  # an empty bucket
        return []
    found = [snapshot for info in infos if (snapshot := _described(info)) is not None]
    return sorted(found, key=lambda snapshot: snapshot.sequence, reverse=True)


def _described(info: ObjectInfo) -> StoredSnapshot | None:
    """What an object's headers say, or None for an object that is not one of ours."""
    if info.deleted or _OBJECT_NAME.fullmatch(info.name) is None:
        return None
    headers = info.headers or {}
    try:
        sequence = int(_header(headers, SEQUENCE_HEADER))
        journal_hash = bytes.fromhex(_header(headers, HASH_HEADER))
    except (KeyError, ValueError, TypeError):
        return None
    if len(journal_hash) != 32 or sequence < 1:
        return None
    return StoredSnapshot(info.name, sequence, journal_hash)


def _header(headers: dict[str, object], name: str) -> str:
    value = headers[name]
    if isinstance(value, list):
        value = value[0]
    return str(value)


async def newest_verified(
    js: JetStreamContext, shard: str, *, after: int, say: Callable[[str], None]
) -> FetchedSnapshot | None:
    """The newest snapshot object past sequence `after` that verifies (see the module's
    docstring), or None; each one refused, and any trouble reaching the bucket, is said."""
    try:
        store = await _bucket(js, shard, None)
        candidates = await _listed(store)
    except BucketNotFoundError:
        return None
    except Exception as error:  # NATS away, or slow: start without it
        say(f"the snapshots of shard {shard} could not be listed: {error!r}")
        return None
    for candidate in candidates:
        if candidate.sequence <= after:
            break
        try:
            return await _fetch_checked(js, shard, store, candidate)
        except Exception as error:  # damaged, foreign, or NATS trouble: try the next older
            why = str(error) or type(error).__name__
            say(f"snapshot {candidate.name} of shard {shard} refused: {why}")
    return None


async def _fetch_checked(
    js: JetStreamContext, shard: str, store: ObjectStore, candidate: StoredSnapshot
) -> FetchedSnapshot:
    data = await _download(js, shard, await store.get_info(candidate.name))
    sequence, journal_hash = await asyncio.to_thread(check_snapshot_bytes, data, candidate.name)
    if (sequence, journal_hash) != (candidate.sequence, candidate.journal_hash):
        raise ValueError("its header and the object's headers name different records")
    in_stream = await journal_hash_at(js, shard, sequence)
    if in_stream is None:
        raise ValueError(f"the stream does not reach its sequence {sequence}")
    if in_stream != journal_hash:
        raise ValueError(f"it does not match the stream's record {sequence}: another history")
    return FetchedSnapshot(candidate.name, sequence, journal_hash, data)


async def _download(js: JetStreamContext, shard: str, info: ObjectInfo) -> bytes:
    """An object's bytes, read as `ObjectStore.get` reads them (its chunks, in order, from an
    ordered consumer) but gathered in a list: `get` writing into a buffer costs a thread hop
    per chunk, seven times slower. Its digest is not checked here: the snapshot file's own
    checksum covers every byte."""
    bucket = bucket_name(shard)
    subject = OBJ_CHUNKS_PRE_TEMPLATE.format(bucket=bucket, obj=info.nuid)
    stream = OBJ_STREAM_TEMPLATE.format(bucket=bucket)
    subscription = await js.subscribe(subject, stream=stream, ordered_consumer=True)
    try:
        parts = [
            (await subscription.next_msg(timeout=CHUNK_TIMEOUT_SECONDS)).data
            for _ in range(info.chunks or 0)
        ]
    finally:
        await subscription.unsubscribe()
    data = b"".join(parts)
    if len(data) != info.size:
        raise ValueError(f"{len(data)} bytes read, the object holds {info.size}")
    return data
