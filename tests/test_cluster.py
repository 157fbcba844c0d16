"""The cluster's rulebook: the journal on JetStream, hot standby, fencing.

Against the real NATS server (JetStream) on this machine; each test has a shard (so a stream)
of its own and deletes it afterwards. The same promises as the file journal hold: replay gives
the same digest whichever way we come back, a SIGKILL loses nothing acknowledged, and on top:
a standby takes over from a killed leader with no acknowledged order lost and no gap, and two
writers can never both append to one stream.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import random
import secrets
import shutil
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import msgspec
import nats
import pytest
from conftest import REPO, free_port
from nats.js import JetStreamContext
from test_recovery import (
    CRASH_CHILD,
    Acks,
    market_data_hash,
    reap_killed,
    set_up,
    snapshot_writers,
    trade,
)

from benchmarks.cluster import delete_shard
from benchmarks.workload import MarketWorkload
from exchange.cluster import ClusterConfig
from exchange.commands import decode_command
from exchange.jetstream import (
    LEASE_SECONDS,
    FencedError,
    JetStreamWriter,
    Lease,
    LeaseLost,
    StreamMismatchError,
    StreamReader,
    ensure_stream,
    follow,
    read_to_end,
    stream_end,
    stream_name,
)
from exchange.journal import Journal
from exchange.sequencer import Exchange, ExchangeStopped
from exchange.snapshot_store import bucket_name
from exchange.snapshots import Recovered, journal_dir, snapshots_newest_first

pytestmark = pytest.mark.timeout(120)


@pytest.fixture
def shard(nats_url: str) -> Iterator[str]:
    """A shard of this test's own; its stream and snapshot bucket are deleted afterwards."""
    name = f"t{uuid.uuid4().hex[:12]}"
    yield name
    asyncio.run(delete_shard(nats_url, name))


@asynccontextmanager
async def jetstream(url: str) -> AsyncIterator[JetStreamContext]:
    client = await nats.connect(url)
    try:
        yield client.jetstream()
    finally:
        await client.close()


async def node(data_dir: Path, url: str, shard: str, **options: Any) -> Exchange:
    exchange = Exchange(data_dir, cluster=ClusterConfig(url, shard), **options)
    await exchange.start()
    return exchange


async def leader(data_dir: Path, url: str, shard: str, **options: Any) -> Exchange:
    exchange = await node(data_dir, url, shard, **options)
    await asyncio.wait_for(exchange.leading.wait(), timeout=10)
    return exchange


async def delete_shard_snapshots(url: str, shard: str) -> None:
    async with jetstream(url) as js:
        await js.delete_object_store(bucket_name(shard))


def fingerprint(exchange: Exchange | Recovered) -> tuple[str, str]:
    return exchange.core.digest(), market_data_hash(exchange.market_data)


async def replay_of_the_stream(url: str, shard: str) -> Recovered:
    """The reference: a fresh state fed every record of the stream, checked on the way."""
    recovered = Recovered()
    async with jetstream(url) as js:
        async for records in read_to_end(js, shard, 0, None):
            recovered.catch_up(iter(records))
    return recovered


# ------------------------------------------------------------------------------------------------
# 1. The stream is the journal: every way back gives the same digest.


def test_a_session_replays_to_the_same_digest_from_the_stream_a_snapshot_or_a_restart(
    nats_url: str, shard: str, tmp_path: Path
) -> None:
    async def run() -> None:
        first = await leader(tmp_path / "a", nats_url, shard, fsync=False, snapshot_every=1_500)
        workload = MarketWorkload(41)
        await set_up(first, workload)
        await trade(first, workload, 6_000)
        expected = fingerprint(first)
        last = first.core.last_sequence
        await first.stop()
        # The disk and the stream only: the object store's snapshots have tests of their own
        # (test_snapshot_store.py), and a fresh node here would start from one.
        await delete_shard_snapshots(nats_url, shard)

        assert fingerprint(await replay_of_the_stream(nats_url, shard)) == expected

        fresh = await node(tmp_path / "fresh", nats_url, shard)  # nothing on disk: the stream
        assert fresh.recovery is not None and fresh.recovery.replayed == last
        assert fingerprint(fresh) == expected
        await fresh.stop(snapshot=False)

        again = await node(tmp_path / "a", nats_url, shard)  # its own snapshot and mirror
        assert again.recovery is not None and again.recovery.snapshot_sequence == last
        assert fingerprint(again) == expected
        await again.stop(snapshot=False)

        snapshots = snapshots_newest_first(tmp_path / "a")
        assert len(snapshots) >= 2  # at least one written in the background, one at stop
        for snapshot in snapshots:  # each snapshot alone, the rest from the stream
            data_dir = tmp_path / f"from-{snapshot.name}"
            (data_dir / snapshot.parent.name).mkdir(parents=True)
            shutil.copy(snapshot, data_dir / snapshot.parent.name / snapshot.name)
            started = await node(data_dir, nats_url, shard)
            assert started.recovery is not None and started.recovery.snapshot_sequence > 0
            assert fingerprint(started) == expected, snapshot.name
            await started.stop(snapshot=False)

    asyncio.run(run())


def test_a_damaged_local_mirror_is_moved_aside_and_refilled_from_the_stream(
    nats_url: str, shard: str, tmp_path: Path
) -> None:
    async def run() -> None:
        first = await leader(tmp_path / "a", nats_url, shard, fsync=False)
        workload = MarketWorkload(42)
        await set_up(first, workload)
        await trade(first, workload, 500)
        expected = fingerprint(first)
        await first.stop(snapshot=False)
        segment = sorted(journal_dir(tmp_path / "a").glob("*.seg"))[0]
        data = bytearray(segment.read_bytes())
        data[100] ^= 0xFF  # acknowledged data damaged in the middle
        segment.write_bytes(bytes(data))

        again = await node(tmp_path / "a", nats_url, shard)
        assert fingerprint(again) == expected
        await again.stop(snapshot=False)
        assert list(tmp_path.joinpath("a").glob("journal.damaged-*"))

    asyncio.run(run())


def test_a_node_whose_data_dir_holds_another_history_refuses_to_start(
    nats_url: str, shard: str, tmp_path: Path
) -> None:
    async def run() -> None:
        other = Exchange(tmp_path / "other", fsync=False)  # an embedded exchange's journal
        await other.start()
        await set_up(other, MarketWorkload(43))
        await other.stop(snapshot=False)
        with pytest.raises(StreamMismatchError, match="wrong data dir or shard"):
            await node(tmp_path / "other", nats_url, shard)

    asyncio.run(run())


# ------------------------------------------------------------------------------------------------
# 2. Fencing: two writers can never both append.


def test_two_writers_racing_for_one_stream_exactly_one_wins(nats_url: str, shard: str) -> None:
    async def run() -> None:
        client = await nats.connect(nats_url)
        js = client.jetstream()
        await ensure_stream(js, shard)
        end = await stream_end(js, shard)
        writers = [JetStreamWriter(client, js, shard, end) for _ in range(2)]
        batches = [[(1, 1_000 + i, f"writer {i}".encode())] for i in range(2)]
        outcomes = await asyncio.gather(
            *(w.append(b) for w, b in zip(writers, batches, strict=True)), return_exceptions=True
        )
        await client.close()
        winners = [outcome for outcome in outcomes if outcome is None]
        losers = [outcome for outcome in outcomes if isinstance(outcome, FencedError)]
        assert len(winners) == 1 and len(losers) == 1, outcomes
        assert "no longer leads shard" in str(losers[0])
        async with jetstream(nats_url) as js:
            stored = [r async for batch in read_to_end(js, shard, 0, None) for r in batch]
        winner = outcomes.index(None)
        assert [record.payload for record in stored] == [batches[winner][0][2]]

    asyncio.run(run())


def test_a_leader_that_lost_its_lease_is_fenced_off_and_stops(
    nats_url: str, shard: str, tmp_path: Path
) -> None:
    async def run() -> None:
        old = await leader(tmp_path / "old", nats_url, shard, fsync=False)
        workload = MarketWorkload(44)
        await set_up(old, workload)
        standby = await node(tmp_path / "new", nats_url, shard, fsync=False)
        assert not standby.accepting
        # The old leader stalls (no renewals) long enough for its lease to expire...
        assert old._lease_task is not None
        old._lease_task.cancel()
        await asyncio.wait_for(standby.leading.wait(), timeout=10)
        await standby.submit(workload.next_command())
        # ...then wakes up believing it still leads: its next append is refused.
        old._link.lease._renewed_at = time.monotonic()  # type: ignore[union-attr]
        with pytest.raises(ExchangeStopped, match="no longer leads shard"):
            await old.submit(workload.next_command())
        assert not old.accepting
        await old.stop(snapshot=False)
        await standby.stop(snapshot=False)
        replayed = await replay_of_the_stream(nats_url, shard)
        assert replayed.core.digest() == standby.core.digest()

    asyncio.run(run())


def test_only_one_node_leads_a_shard_and_the_other_follows_it_exactly(
    nats_url: str, shard: str, tmp_path: Path
) -> None:
    async def run() -> None:
        nodes = [await node(tmp_path / name, nats_url, shard, fsync=False) for name in "ab"]
        await asyncio.wait_for(nodes[0].leading.wait(), timeout=10)
        await asyncio.sleep(0.5)
        assert [n.leading.is_set() for n in nodes] == [True, False]
        first, standby = nodes
        workload = MarketWorkload(45)
        await set_up(first, workload)
        await trade(first, workload, 1_000)
        with pytest.raises(ExchangeStopped):
            await standby.submit(workload.next_command())
        deadline = time.monotonic() + 10
        while standby.core.last_sequence < first.core.last_sequence:
            assert time.monotonic() < deadline, "the standby fell behind"
            await asyncio.sleep(0.02)
        assert fingerprint(standby) == fingerprint(first)
        await first.stop(snapshot=False)  # a clean stop hands the lease over at once
        await asyncio.wait_for(standby.leading.wait(), timeout=5)
        result = await standby.submit(workload.next_command())
        assert result.sequence == first.core.last_sequence + 1
        await standby.stop(snapshot=False)

    asyncio.run(run())


# ------------------------------------------------------------------------------------------------
# 3. A SIGKILL at any moment loses nothing acknowledged.

CRASH_TASKS = 8
CRASH_SNAPSHOT_EVERY = 400


def crash_on_jetstream(
    data_dir: Path, seed: int, url: str, shard: str, tmp_path: Path, *, mid_snapshot: bool
) -> dict[int, dict[str, Any]]:
    kill_after = random.Random(seed).randint(200, 2_000)
    stderr = tmp_path / "child-stderr.txt"
    with stderr.open("wb") as stderr_file:
        child = subprocess.Popen(
            [sys.executable, str(CRASH_CHILD), str(data_dir), str(seed),
             str(CRASH_SNAPSHOT_EVERY), str(CRASH_TASKS), "60", url, shard],
            cwd=REPO, stdout=subprocess.PIPE, stderr=stderr_file, start_new_session=True,
        )  # fmt: skip
        acks = Acks(child.stdout)
        try:
            deadline = time.monotonic() + 45
            while len(acks.lines) < kill_after or (mid_snapshot and not snapshot_writers(child)):
                assert not acks.finished.is_set(), stderr.read_text()[-3000:]
                assert time.monotonic() < deadline, "timed out before the kill"
                time.sleep(0.002)
        finally:
            reap_killed(child, acks, stderr)
    return acks.by_sequence()


@pytest.mark.parametrize(("seed", "mid_snapshot"), [(1, False), (2, False), (3, True)])
def test_a_crash_at_any_moment_loses_no_acknowledged_command_on_jetstream(
    nats_url: str, shard: str, tmp_path: Path, seed: int, mid_snapshot: bool
) -> None:
    acks = crash_on_jetstream(
        tmp_path / "data", seed, nats_url, shard, tmp_path, mid_snapshot=mid_snapshot
    )
    assert len(acks) >= 200

    async def run() -> None:
        # Every acknowledged command is in the stream, as acknowledged.
        reference = Recovered()
        seen = 0
        async with jetstream(nats_url) as js:
            async for records in read_to_end(js, shard, 0, None):
                for record in records:
                    command = decode_command(record.payload)
                    events = reference.core.apply(command, record.sequence, record.time_ns)
                    reference.market_data.observe(record.sequence, record.time_ns, events)
                    ack = acks.get(record.sequence)
                    if ack is not None:
                        seen += 1
                        assert ack["c"] == hashlib.sha256(record.payload).hexdigest()
                        assert ack["t"] == record.time_ns
                        events_hash = hashlib.sha256(msgspec.msgpack.encode(events)).hexdigest()
                        assert ack["e"] == events_hash
        assert seen == len(acks), "an acknowledged command is missing from the stream"
        # Back on the same data dir (snapshots and a mirror that may lag), and on an empty one.
        for data_dir in (tmp_path / "data", tmp_path / "empty"):
            restarted = await leader(data_dir, nats_url, shard, fsync=False)
            assert fingerprint(restarted) == fingerprint(reference), data_dir.name
            restarted.core.check_invariants()
            result = await restarted.submit(MarketWorkload(seed + 100).next_command())
            assert result.sequence == reference.core.last_sequence + 1  # no gap
            await restarted.stop(snapshot=False)
            reference.catch_up(_tail(data_dir, reference.core.last_sequence))

    asyncio.run(run())


def _tail(data_dir: Path, after: int) -> Iterator[Any]:
    with Journal.open(journal_dir(data_dir), fsync=False) as journal:
        yield from journal.read(after + 1)


# ------------------------------------------------------------------------------------------------
# 4. Failover through real servers: SIGKILL the leader under load; the standby takes over.


class Node:
    def __init__(self, data_dir: Path, url: str, shard: str, operator_key: str) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = data_dir.parent / f"node-{self.port}.log"
        data_dir.mkdir(parents=True)
        self.process = subprocess.Popen(
            [sys.executable, "-m", "exchange.cli", "serve", "--port", str(self.port),
             "--data-dir", str(data_dir), "--nats-url", url, "--shard", shard],
            cwd=REPO, env={**os.environ, "HOGX_OPERATOR_KEY": operator_key},
            stdout=self.log.open("wb"), stderr=subprocess.STDOUT,
        )  # fmt: skip

    def healthy(self) -> bool:
        try:
            return httpx.get(f"{self.url}/healthz", timeout=1).status_code == 200
        except httpx.TransportError:
            return False

    def answers(self) -> bool:
        try:
            httpx.get(f"{self.url}/healthz", timeout=1)
            return True
        except httpx.TransportError:
            return False


def wait_for(condition: Any, what: str, timeout_s: float = 30) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.02)


def test_the_standby_takes_over_from_a_killed_leader_losing_no_acknowledged_order(
    nats_url: str, shard: str, tmp_path: Path
) -> None:
    operator_key = secrets.token_urlsafe(24)
    nodes = [Node(tmp_path / name, nats_url, shard, operator_key) for name in ("a", "b")]
    try:
        wait_for(lambda: all(n.answers() for n in nodes), "both nodes to serve")
        wait_for(lambda: any(n.healthy() for n in nodes), "a leader")
        first = next(n for n in nodes if n.healthy())
        standby = next(n for n in nodes if n is not first)
        assert not standby.healthy(), "two nodes lead one shard"
        operator = {"Authorization": f"Bearer {operator_key}"}
        with httpx.Client(base_url=first.url, headers=operator, timeout=10) as http:
            listed = http.post("/v1/admin/instruments", json={
                "symbol": "HOG-HCM", "name": "Live hogs", "kind": "live_hog",
                "price_unit": "kg", "lot_size": 100, "tick_size": 100,
                "reference_price": 60_000, "price_band_pct": 10,
                "attributes": {"grade": "1", "delivery_hub": "Ho Chi Minh City"}})  # fmt: skip
            assert listed.status_code == 201, listed.text
            trader = http.post("/v1/admin/participants", json={"name": "T", "role": "trader"})
            key = trader.json()["api_key"]
            for asset, amount in (("VND", 10**13), ("HOG-HCM", 10**6)):
                deposit = http.post(
                    "/v1/admin/deposits",
                    json={"participant_id": trader.json()["participant_id"],
                          "asset": asset, "amount": amount},
                )  # fmt: skip
                assert deposit.status_code in (200, 201), deposit.text

        acknowledged: dict[str, tuple[str, int]] = {}  # client_order_id -> order id, sequence
        stop = threading.Event()
        first_ack_after_kill: list[float] = []
        killed_at: list[float] = []

        def place_orders(worker: int) -> None:
            targets = [first.url, standby.url]
            number = 0
            with httpx.Client(headers={"Authorization": f"Bearer {key}"}, timeout=5) as http:
                while not stop.is_set():
                    client_order_id = f"w{worker}-{number}"
                    order = {"symbol": "HOG-HCM", "side": "buy" if number % 2 else "sell",
                             "type": "limit", "price": 60_000 + 100 * (number % 5),
                             "quantity": 1, "client_order_id": client_order_id}  # fmt: skip
                    try:
                        answer = http.post(f"{targets[0]}/v1/orders", json=order)
                    except httpx.TransportError:
                        targets.reverse()  # the load balancer's part: try the other node
                        time.sleep(0.02)
                        continue
                    # 200: a retry after a lost answer, and the first attempt did get in.
                    if answer.status_code in (200, 201):
                        body = answer.json()
                        acknowledged[client_order_id] = (body["order_id"], body["sequence"])
                        if killed_at and not first_ack_after_kill:
                            first_ack_after_kill.append(time.monotonic())
                        number += 1
                    elif answer.status_code == 503:
                        targets.reverse()
                        time.sleep(0.02)
                    else:
                        raise AssertionError(answer.text)

        workers = [threading.Thread(target=place_orders, args=(i,)) for i in range(4)]
        for worker in workers:
            worker.start()
        wait_for(lambda: len(acknowledged) >= 300, "orders before the kill")
        first.process.send_signal(signal.SIGKILL)
        killed_at.append(time.monotonic())
        first.process.wait(timeout=10)
        wait_for(lambda: len(first_ack_after_kill) > 0, "an order acknowledged by the standby")
        count_at_takeover = len(acknowledged)
        wait_for(lambda: len(acknowledged) >= count_at_takeover + 100, "orders after the kill")
        stop.set()
        for worker in workers:
            worker.join(timeout=30)
        failover_s = first_ack_after_kill[0] - killed_at[0]
        assert failover_s < 3.0, f"failover took {failover_s:.2f} s"

        with httpx.Client(base_url=standby.url, headers={"Authorization": f"Bearer {key}"},
                          timeout=10) as http:  # fmt: skip
            for client_order_id, (order_id, sequence) in acknowledged.items():
                found = http.get(f"/v1/orders/{order_id}")
                assert found.status_code == 200, (client_order_id, found.text)
                assert found.json()["sequence"] == sequence
        standby.process.send_signal(signal.SIGTERM)
        assert standby.process.wait(timeout=30) in (0, -signal.SIGTERM)
        with Journal.open(journal_dir(tmp_path / standby_name(nodes, standby)), fsync=False) as j:
            sequences = [record.sequence for record in j.read(1)]
        assert sequences == list(range(1, len(sequences) + 1))  # no gap, nothing twice
        assert max(sequence for _, sequence in acknowledged.values()) <= sequences[-1]
        stream = asyncio.run(replay_of_the_stream(nats_url, shard))
        recovered = Recovered()
        recovered.catch_up(_tail(tmp_path / standby_name(nodes, standby), 0))
        assert recovered.core.digest() == stream.core.digest()
    finally:
        for n in nodes:
            if n.process.poll() is None:
                n.process.kill()
                n.process.wait()


def standby_name(nodes: list[Node], standby: Node) -> str:
    return "ab"[nodes.index(standby)]


# ------------------------------------------------------------------------------------------------
# 5. Feed ticks: the leader says where gateways flush, so they all send the same frames.


def test_a_quiet_leader_appends_a_feed_tick_after_its_last_batch(
    nats_url: str, shard: str, tmp_path: Path
) -> None:
    async def run() -> None:
        first = await leader(tmp_path / "a", nats_url, shard, fsync=False)
        workload = MarketWorkload(46)
        await set_up(first, workload)
        await asyncio.sleep(0.2)  # quiet: well over one feed window
        async with jetstream(nats_url) as js:
            last = (await js.stream_info(stream_name(shard))).state.last_seq
            tick = await js.get_msg(stream_name(shard), last)
            assert tick.data in (b"", None) and (tick.headers or {}).get("Hogx-Flush") == "1"
            end = await stream_end(js, shard)
            assert (end.last_sequence, end.head_hash) == (
                first.core.last_sequence,
                first.head_hash,
            )
            read = 0  # a follower sees every record, then the tick that closes the window
            async for batch in follow(js, shard, 0, None):
                read += len(batch.records)
                if read == first.core.last_sequence and not batch.records:
                    assert batch.flush
                    break
        await first.stop(snapshot=False)
        fresh = await leader(tmp_path / "b", nats_url, shard, fsync=False)
        assert fresh.core.digest() == first.core.digest()
        result = await fresh.submit(workload.next_command())  # appends after the tick
        assert result.sequence == first.core.last_sequence + 1
        await fresh.stop(snapshot=False)

    asyncio.run(run())


def test_a_stream_reader_cancelled_as_its_message_arrives_ends_cancelled() -> None:
    """On Python 3.11, `asyncio.wait_for` inside nats-py's `next_msg` returns the message when
    the cancellation arrives as it does (CPython gh-86296); the reader must not read on, or a
    stopping follower would follow for ever."""

    class Message:
        headers: dict[str, str] | None = None
        data = b""

    class SwallowingSubscription:
        async def next_msg(self, timeout: float) -> Message:
            try:
                await asyncio.sleep(timeout)
            except asyncio.CancelledError:
                return Message()  # what wait_for hands back when the message won the race
            raise nats.errors.TimeoutError

    async def scenario() -> None:
        reader = StreamReader(None, "s", 0, None)  # type: ignore[arg-type]
        reader._subscription = SwallowingSubscription()  # type: ignore[assignment]
        reading = asyncio.create_task(reader.next_batch(5.0))
        await asyncio.sleep(0.01)
        reading.cancel()
        await asyncio.wait({reading}, timeout=2)
        assert reading.cancelled()

    asyncio.run(scenario())


class FlakyLeaseBucket:
    """A lease bucket whose updates fail `failures` times (NATS reconnecting), then succeed."""

    def __init__(self, failures: int) -> None:
        self.failures = failures
        self.revision = 1

    async def update(self, key: str, value: bytes, last: int | None = None) -> int:
        if self.failures > 0:
            self.failures -= 1
            raise nats.errors.ConnectionReconnectingError
        self.revision += 1
        return self.revision


def held_lease(bucket: FlakyLeaseBucket) -> Lease:
    lease = Lease(bucket, "main", "node-a")  # type: ignore[arg-type]
    lease._revision, lease._renewed_at = bucket.revision, time.monotonic()
    return lease


def test_a_lease_outlives_a_renewal_that_failed_while_nats_reconnected() -> None:
    async def scenario() -> None:
        bucket = FlakyLeaseBucket(failures=1)
        lease = held_lease(bucket)
        keeping = asyncio.create_task(lease.keep())
        await asyncio.sleep(LEASE_SECONDS * 1.2)  # past when the lease would have lapsed
        assert not keeping.done(), keeping
        assert lease.held and bucket.revision > 1
        keeping.cancel()

    asyncio.run(scenario())


def test_a_lease_that_cannot_be_renewed_is_lost_once_it_would_have_lapsed() -> None:
    async def scenario() -> None:
        lease = held_lease(FlakyLeaseBucket(failures=10**6))
        with pytest.raises(LeaseLost, match="ConnectionReconnectingError"):
            await asyncio.wait_for(lease.keep(), timeout=LEASE_SECONDS * 2)
        assert not lease.held

    asyncio.run(scenario())
