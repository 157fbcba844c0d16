"""Snapshots in the shard's JetStream object store: a new node or gateway skips the history.

Against the real NATS server (the `nats_url` fixture); each test has a shard of its own and
deletes its stream and its snapshot bucket afterwards. The promises: the leader's snapshots
reach the bucket with the right sequence and journal hash, and only the newest few stay; a
node on an empty disk and a gateway replica start from the newest one and end exactly where a
full replay ends; a snapshot that is damaged or belongs to another history is refused, and
they replay the whole stream instead.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import nats
import pytest
from nats.js import JetStreamContext
from nats.js.api import ObjectMeta
from test_cluster import fingerprint, jetstream, leader, node, replay_of_the_stream
from test_recovery import market_data_hash, set_up, trade

from api.gateway import ShardFeed
from benchmarks.cluster import delete_shard
from benchmarks.workload import MarketWorkload
from exchange import sequencer
from exchange.jetstream import journal_hash_at
from exchange.sequencer import Exchange
from exchange.snapshot_store import (
    HASH_HEADER,
    KEEP,
    SEQUENCE_HEADER,
    StoredSnapshot,
    bucket_name,
    stored_snapshots,
)
from exchange.snapshots import snapshot_name, snapshots_newest_first, write_snapshot
from matching_engine.enums import Side

pytestmark = pytest.mark.timeout(120)

NEVER = 10**12


@pytest.fixture
def shard(nats_url: str) -> Iterator[str]:
    """A shard of this test's own; its stream and its snapshot bucket are deleted afterwards."""
    name = f"s{uuid.uuid4().hex[:12]}"
    yield name
    asyncio.run(delete_shard(nats_url, name))


async def stored_once(url: str, shard: str, at_least: int) -> list[StoredSnapshot]:
    """The bucket's snapshots, once the newest is at `at_least` or later."""
    deadline = time.monotonic() + 20
    async with jetstream(url) as js:
        while True:
            stored = await stored_snapshots(js, shard)
            if stored and stored[0].sequence >= at_least:
                return stored
            assert time.monotonic() < deadline, f"no snapshot at {at_least} in the bucket"
            await asyncio.sleep(0.05)


async def leader_with_history(
    url: str, shard: str, data_dir: Path, orders: int, snapshot_every: int
) -> tuple[Exchange, MarketWorkload]:
    first = await leader(data_dir, url, shard, fsync=False, snapshot_every=snapshot_every)
    workload = MarketWorkload(61)
    await set_up(first, workload)
    await trade(first, workload, orders)
    return first, workload


async def past_a_stored_snapshot(
    url: str, shard: str, tmp_path: Path
) -> tuple[Exchange, MarketWorkload, StoredSnapshot]:
    """A leader whose snapshot is in the bucket, and 300 records after it."""
    first, workload = await leader_with_history(url, shard, tmp_path / "a", 1_500, 1_000)
    stored = await stored_once(url, shard, 1_000)
    await trade(first, workload, 300)  # the tail after the newest snapshot
    return first, workload, stored[0]


async def follow_until(feed: ShardFeed, url: str, sequence: int) -> None:
    """Run the gateway's replica of `feed`'s shard until it has applied up to `sequence`."""
    client = await nats.connect(url)
    following = asyncio.create_task(feed.follow(client))
    try:
        deadline = time.monotonic() + 20
        while not (feed.caught_up and feed.replica.last_sequence >= sequence):
            assert not following.done(), following.exception()
            assert time.monotonic() < deadline, "the replica did not catch up"
            await asyncio.sleep(0.02)
    finally:
        following.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await following
        await client.close()


def test_the_leaders_snapshots_reach_the_bucket_with_their_hash_and_only_the_newest_stay(
    nats_url: str, shard: str, tmp_path: Path
) -> None:
    async def run() -> None:
        first, workload = await leader_with_history(nats_url, shard, tmp_path / "a", 0, 400)
        for _ in range(KEEP + 1):  # a background snapshot each round, each uploaded
            await trade(first, workload, 450)
            await stored_once(nats_url, shard, first.core.last_sequence - 450)
        last = first.core.last_sequence
        await first.stop()  # the stop's own snapshot is uploaded too
        async with jetstream(nats_url) as js:
            stored = await stored_snapshots(js, shard)
            assert len(stored) == KEEP
            assert stored[0].sequence == last
            assert stored[0].name == snapshot_name(last)
            for snapshot in stored:
                assert snapshot.journal_hash == await journal_hash_at(js, shard, snapshot.sequence)
            info = await (await js.object_store(bucket_name(shard))).get_info(stored[0].name)
            assert info.description is not None and stored[0].journal_hash.hex() in info.description

    asyncio.run(run())


def test_a_node_on_an_empty_disk_starts_from_the_bucket_and_applies_only_the_tail(
    nats_url: str, shard: str, tmp_path: Path
) -> None:
    async def run() -> None:
        first, workload, snapshot = await past_a_stored_snapshot(nats_url, shard, tmp_path)
        last = first.core.last_sequence

        fresh = await node(tmp_path / "fresh", nats_url, shard, fsync=False)  # a standby
        assert fresh.recovery is not None
        assert fresh.recovery.snapshot_sequence == snapshot.sequence
        assert fresh.recovery.replayed == last - snapshot.sequence
        assert fresh.recovery.last_sequence == last
        assert fingerprint(fresh) == fingerprint(first)
        assert fingerprint(await replay_of_the_stream(nats_url, shard)) == fingerprint(first)
        # The mirror is the whole journal all the same: it starts at the first record.
        assert [r.sequence for r in await fresh.journal_records(1, 1)] == [1]
        await trade(first, workload, 100)  # and it follows the leader on from there
        deadline = time.monotonic() + 10
        while fresh.core.last_sequence < first.core.last_sequence:
            assert time.monotonic() < deadline, "the standby fell behind"
            await asyncio.sleep(0.02)
        assert fingerprint(fresh) == fingerprint(first)
        await fresh.stop(snapshot=False)
        await first.stop(snapshot=False)

    asyncio.run(run())


async def put_object(js: JetStreamContext, shard: str, data: bytes, sequence: int) -> None:
    """An object in the bucket as the leader would name it, whatever its bytes."""
    store = await js.object_store(bucket_name(shard))  # made by the stop's upload
    journal_hash = data[20:52]
    meta = ObjectMeta(
        name=snapshot_name(sequence),
        headers={SEQUENCE_HEADER: [str(sequence)], HASH_HEADER: [journal_hash.hex()]},
    )
    await store.put(snapshot_name(sequence), data, meta)


@pytest.mark.parametrize("tampering", ["damaged bytes", "another history"])
def test_a_damaged_or_foreign_snapshot_in_the_bucket_is_refused_and_the_stream_replayed(
    nats_url: str, shard: str, tmp_path: Path, tampering: str
) -> None:
    async def run() -> None:
        first, _ = await leader_with_history(nats_url, shard, tmp_path / "a", 800, NEVER)
        last = first.core.last_sequence
        expected = fingerprint(first)
        await first.stop()  # writes its snapshot on disk; uploaded, then replaced below
        good = snapshots_newest_first(tmp_path / "a")[0].read_bytes()
        if tampering == "damaged bytes":
            data = bytearray(good)
            data[len(data) // 2] ^= 0xFF
            tampered = bytes(data)
        else:  # a valid snapshot file, but taken at a hash this stream never had
            body = (await replay_of_the_stream(nats_url, shard)).snapshot()
            other = write_snapshot(tmp_path / "other", body, hashlib.sha256(b"other").digest())
            tampered = other.read_bytes()
        async with jetstream(nats_url) as js:
            await put_object(js, shard, tampered, last)

        fresh = await node(tmp_path / "fresh", nats_url, shard, fsync=False)
        assert fresh.recovery is not None
        assert (fresh.recovery.snapshot_sequence, fresh.recovery.replayed) == (0, last)
        assert fingerprint(fresh) == expected
        assert snapshots_newest_first(tmp_path / "fresh") == []  # nothing refused was kept
        await fresh.stop(snapshot=False)

        feed = ShardFeed(shard, say=lambda text: None)  # a gateway refuses it too
        await follow_until(feed, nats_url, last)
        assert (feed.replica.snapshot_sequence, feed.replica.applied) == (0, last)
        assert feed.replica.core.digest() == expected[0]

    asyncio.run(run())


def test_a_gateway_replica_starts_from_the_bucket_and_serves_the_engines_book(
    nats_url: str, shard: str, tmp_path: Path
) -> None:
    async def run() -> None:
        first, _, snapshot = await past_a_stored_snapshot(nats_url, shard, tmp_path)
        last = first.core.last_sequence

        feed = ShardFeed(shard, say=lambda text: None)
        await follow_until(feed, nats_url, last)
        replica = feed.replica
        assert replica.snapshot_sequence == snapshot.sequence
        assert replica.applied == last - snapshot.sequence < last
        assert replica.core.digest() == first.core.digest()
        assert market_data_hash(replica.market_data) == market_data_hash(first.market_data)
        assert first.core.engine.symbols
        for symbol in first.core.engine.symbols:
            book, served = first.core.engine.book(symbol), replica.core.engine.book(symbol)
            assert served is not None and book is not None
            for side in Side:
                assert served.depth(side) == book.depth(side)
        await first.stop(snapshot=False)

    asyncio.run(run())


@pytest.mark.parametrize("trouble", ["hangs", "fails"])
def test_an_object_store_that_hangs_or_fails_never_holds_up_trading_or_a_stop(
    nats_url: str, shard: str, tmp_path: Path, trouble: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    attempts: list[Path] = []

    async def troubled_upload(js: JetStreamContext, shard: str, path: Path, **_: object) -> None:
        attempts.append(path)
        if trouble == "hangs":
            await asyncio.sleep(3600)
        raise RuntimeError("the object store is down")

    monkeypatch.setattr(sequencer, "upload", troubled_upload)
    monkeypatch.setattr(sequencer, "STOP_UPLOAD_SECONDS", 0.3)

    async def run() -> None:
        first, workload = await leader_with_history(nats_url, shard, tmp_path / "a", 0, 300)
        deadline = time.monotonic() + 20
        while len(attempts) < (1 if trouble == "hangs" else 2):  # failed: the next one tries
            assert time.monotonic() < deadline, "no upload was attempted"
            await trade(first, workload, 100)
        if trouble == "hangs":
            await trade(first, workload, 1_000)  # trading goes on while the upload hangs
            assert len(attempts) == 1  # one upload at a time
        started = time.monotonic()
        await first.stop()
        assert time.monotonic() - started < 5
        assert snapshots_newest_first(tmp_path / "a")[0].name == snapshot_name(
            first.core.last_sequence
        )

    asyncio.run(run())
