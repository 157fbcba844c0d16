"""The sequencer's promises: nothing is answered before it is durable, batches share one fsync,
every subscriber sees every result in order, and a restart recovers everything acknowledged."""

from __future__ import annotations

import asyncio
import contextlib
import os
import threading
import time
from pathlib import Path

import pytest

from benchmarks.workload import MarketWorkload
from exchange import commands as c
from exchange import snapshots
from exchange.core import ExchangeCore
from exchange.events import DuplicateClientOrderId, Event, OrderRegistered
from exchange.journal import Journal
from exchange.sequencer import CommandResult, Exchange, ExchangeStopped
from matching_engine import OrderType, Side


def order(client_order_id: str | None = None, price: int = 59_000) -> c.PlaceOrder:
    return c.PlaceOrder(1, "HOG-G1-HCM", Side.BUY, OrderType.LIMIT, price, 1,
                        client_order_id=client_order_id)  # fmt: skip


async def started(data_dir: Path, **options: object) -> Exchange:
    exchange = Exchange(data_dir, **options)  # type: ignore[arg-type]
    await exchange.start()
    return exchange


async def with_market(data_dir: Path) -> Exchange:
    exchange = await started(data_dir)
    for command in MarketWorkload(seed=1, traders=3).setup():
        await exchange.submit(command)
    return exchange


def test_an_answer_comes_only_after_the_batch_is_durable(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    durable: list[int] = []
    original = Journal.append_batch

    def append_batch(self: Journal, records: list[tuple[int, int, bytes]]) -> None:
        original(self, records)
        durable.extend(sequence for sequence, _, _ in records)

    monkeypatch.setattr(Journal, "append_batch", append_batch)

    async def scenario() -> None:
        exchange = await with_market(tmp_path)
        result = await exchange.submit(order())
        assert result.sequence in durable
        await exchange.stop()

    asyncio.run(scenario())


def test_concurrent_commands_share_one_fsync_per_batch(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def scenario() -> int:
        exchange = await with_market(tmp_path)
        fsyncs = 0
        original = os.fsync

        def counting_fsync(fd: int) -> None:
            nonlocal fsyncs
            fsyncs += 1
            original(fd)

        monkeypatch.setattr(os, "fsync", counting_fsync)
        results = await asyncio.gather(*(exchange.submit(order()) for _ in range(500)))
        monkeypatch.setattr(os, "fsync", original)
        assert sorted(r.sequence for r in results) == [r.sequence for r in results]
        await exchange.stop(snapshot=False)
        return fsyncs

    fsyncs = asyncio.run(scenario())
    assert 1 <= fsyncs < 50


def test_sequences_are_contiguous_and_times_never_go_backwards(tmp_path: Path) -> None:
    clock = iter([5_000, 4_000, 6_000, 6_000, 1_000] + [7_000] * 1_000)

    async def scenario() -> list[CommandResult]:
        exchange = await started(tmp_path, clock=lambda: next(clock))
        results = [await exchange.submit(command) for command in MarketWorkload(1, 2).setup()]
        await exchange.stop()
        return results

    results = asyncio.run(scenario())
    assert [r.sequence for r in results] == list(range(1, len(results) + 1))
    times = [r.time_ns for r in results]
    assert times == sorted(times) and times[0] == 5_000


def test_commands_sequenced_together_share_the_batchs_one_time_stamp(tmp_path: Path) -> None:
    clock = iter(range(10**9, 10**10, 1_000))  # a clock that moves at every reading

    async def scenario() -> tuple[list[CommandResult], list[list[int]]]:
        exchange = await with_market(tmp_path)
        exchange._clock = lambda: next(clock)
        batches: list[list[int]] = []
        exchange.subscribe(lambda results: batches.append([r.time_ns for r in results]))
        results = await asyncio.gather(*(exchange.submit(order()) for _ in range(300)))
        await exchange.stop()
        return results, batches

    results, batches = asyncio.run(scenario())
    assert any(len(batch) > 1 for batch in batches), "the commands were never batched"
    assert all(len(set(batch)) == 1 for batch in batches)
    times = [result.time_ns for result in results]
    assert times == sorted(times) and len(set(times)) == len(batches)


def test_a_refused_command_is_refused_by_the_call_itself_and_nothing_is_queued(
    tmp_path: Path,
) -> None:
    async def scenario() -> None:
        exchange = await with_market(tmp_path)
        last = exchange.core.last_sequence
        with pytest.raises(ValueError, match="does not survive encoding"):
            exchange.submit(c.Deposit(1, "VND", 2**70))  # beyond what the journal encodes
        await exchange.stop()
        with pytest.raises(ExchangeStopped):
            exchange.submit(order())
        assert exchange.core.last_sequence == last

    asyncio.run(scenario())


def test_every_subscriber_sees_every_result_in_order_before_the_caller(tmp_path: Path) -> None:
    seen: list[int] = []

    async def scenario() -> None:
        exchange = await started(tmp_path)
        exchange.subscribe(lambda results: seen.extend(r.sequence for r in results))
        for command in MarketWorkload(1, 2).setup():
            result = await exchange.submit(command)
            assert seen[-1] == result.sequence
        await exchange.stop()

    asyncio.run(scenario())
    assert seen == list(range(1, len(seen) + 1))


def test_a_failing_subscriber_does_not_stop_the_market(tmp_path: Path) -> None:
    def broken(results: list[CommandResult]) -> None:
        raise RuntimeError("projection bug")

    async def scenario() -> None:
        exchange = await started(tmp_path)
        exchange.subscribe(broken)
        result = await exchange.submit(MarketWorkload(1, 2).setup()[0])
        assert result.sequence == 1
        await exchange.stop()

    asyncio.run(scenario())


def test_client_order_ids_survive_a_restart(tmp_path: Path) -> None:
    async def first_life() -> int:
        exchange = await with_market(tmp_path)
        result = await exchange.submit(order("farm-7"))
        await exchange.stop(snapshot=False)
        return next(e.order_id for e in result.events if isinstance(e, OrderRegistered))

    async def second_life() -> list[object]:
        exchange = await started(tmp_path)
        result = await exchange.submit(order("farm-7", price=58_000))
        await exchange.stop()
        return list(result.events)

    order_id = asyncio.run(first_life())
    assert asyncio.run(second_life()) == [DuplicateClientOrderId(order_id, 1, "farm-7")]


def test_a_restart_recovers_the_same_state(tmp_path: Path) -> None:
    async def run(snapshot: bool) -> str:
        exchange = await with_market(tmp_path)
        workload = MarketWorkload(seed=3, traders=3)
        for _ in range(300):
            result = await exchange.submit(workload.next_command())
            workload.observe(result.events)
        digest = exchange.core.digest()
        await exchange.stop(snapshot=snapshot)
        return digest

    async def recovered() -> str:
        exchange = await started(tmp_path)
        digest = exchange.core.digest()
        await exchange.stop(snapshot=False)
        return digest

    before = asyncio.run(run(snapshot=False))
    assert asyncio.run(recovered()) == before


def test_a_journal_failure_stops_the_exchange_and_answers_with_an_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def scenario() -> None:
        exchange = await with_market(tmp_path)
        before = exchange.core.digest()

        def disk_full(self: Journal, records: object) -> None:
            raise OSError(28, "No space left on device")

        monkeypatch.setattr(Journal, "append_batch", disk_full)
        with pytest.raises(ExchangeStopped):
            await exchange.submit(order())
        assert exchange.core.digest() == before
        with pytest.raises(ExchangeStopped):
            await exchange.submit(order())
        await exchange.stop()

    asyncio.run(scenario())


def test_a_command_that_would_not_read_back_is_refused_before_the_journal(tmp_path: Path) -> None:
    async def scenario() -> None:
        exchange = await with_market(tmp_path)
        last = exchange.core.last_sequence
        bad = c.Deposit(1, "VND", "a lot")  # type: ignore[arg-type]
        with pytest.raises(ValueError, match="does not survive encoding"):
            await exchange.submit(bad)
        assert exchange.core.last_sequence == last
        await exchange.stop()

    asyncio.run(scenario())


def test_stop_finishes_every_command_already_accepted(tmp_path: Path) -> None:
    async def scenario() -> None:
        exchange = await with_market(tmp_path)
        pending = [exchange.submit(order()) for _ in range(50)]  # accepted by the call
        await exchange.stop()
        results = await asyncio.gather(*pending)
        assert len({r.sequence for r in results}) == 50
        with pytest.raises(ExchangeStopped):
            await exchange.submit(order())

    asyncio.run(scenario())


def test_the_disk_and_the_core_work_at_once_yet_nothing_is_applied_before_it_is_durable(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Pipelined group commit: while one batch is written, the one before it is applied."""
    durable: list[int] = []
    original = Journal.append_batch

    def slow_append_batch(self: Journal, records: list[tuple[int, int, bytes]]) -> None:
        original(self, records)
        time.sleep(0.005)  # a slow fsync: the next batch gathers and waits behind this one
        durable.extend(sequence for sequence, _, _ in records)

    published: list[tuple[int, int]] = []  # (last sequence published, last durable then)

    def check(results: list[CommandResult]) -> None:
        published.append((results[-1].sequence, durable[-1] if durable else 0))

    async def scenario() -> None:
        exchange = await with_market(tmp_path)
        monkeypatch.setattr(Journal, "append_batch", slow_append_batch)
        exchange.subscribe(check)

        async def trader(count: int) -> None:
            for _ in range(count):
                await exchange.submit(order())

        await asyncio.gather(*(trader(20) for _ in range(50)))
        await exchange.stop(snapshot=False)

    asyncio.run(scenario())
    assert published and all(sequence <= durable_then for sequence, durable_then in published)

    # The overlap, with orders arriving all the time (not only once answered): while one
    # batch is written, the batch before it is applied.
    applying_while_writing = 0
    writing = threading.Event()

    def watched_append_batch(self: Journal, records: list[tuple[int, int, bytes]]) -> None:
        writing.set()
        original(self, records)
        time.sleep(0.005)
        writing.clear()

    real_apply = ExchangeCore.apply

    def watched_apply(
        self: ExchangeCore, command: c.Command, sequence: int, time_ns: int
    ) -> list[Event]:
        nonlocal applying_while_writing
        time.sleep(0.0005)  # a slow core (and the GIL free), so the writer thread gets going
        applying_while_writing += writing.is_set()
        return real_apply(self, command, sequence, time_ns)

    async def arriving() -> None:
        exchange = await started(tmp_path)
        monkeypatch.setattr(Journal, "append_batch", watched_append_batch)
        monkeypatch.setattr(ExchangeCore, "apply", watched_apply)
        submitted = []
        for _ in range(100):
            submitted += [asyncio.ensure_future(exchange.submit(order())) for _ in range(10)]
            await asyncio.sleep(0.001)
        results = await asyncio.gather(*submitted)
        await exchange.stop(snapshot=False)
        assert [r.sequence for r in results] == sorted(r.sequence for r in results)

    asyncio.run(arriving())
    assert applying_while_writing > 0


def test_a_failed_write_in_the_pipeline_loses_nothing_answered_and_writes_nothing_after_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    original = Journal.append_batch
    appends = 0

    def failing_third_append(self: Journal, records: list[tuple[int, int, bytes]]) -> None:
        nonlocal appends
        appends += 1
        if appends == 3:
            raise OSError(5, "Input/output error")
        original(self, records)
        time.sleep(0.005)

    answered: list[int] = []
    refused = 0

    async def scenario() -> None:
        nonlocal refused
        exchange = await with_market(tmp_path)
        monkeypatch.setattr(Journal, "append_batch", failing_third_append)

        async def trader(count: int) -> None:
            nonlocal refused
            for _ in range(count):
                try:
                    answered.append((await exchange.submit(order())).sequence)
                except ExchangeStopped:
                    refused += 1
                    return

        await asyncio.gather(*(trader(20) for _ in range(50)))
        await exchange.stop(snapshot=False)

    asyncio.run(scenario())
    assert answered and refused
    monkeypatch.setattr(Journal, "append_batch", original)

    async def restarted() -> int:
        exchange = await started(tmp_path)
        last = exchange.core.last_sequence
        await exchange.stop(snapshot=False)
        return last

    # Exactly what was answered is in the journal: the failed batch and the one queued behind
    # it were refused and never written.
    assert asyncio.run(restarted()) == max(answered)
    assert sorted(answered) == list(range(min(answered), max(answered) + 1))


def test_a_writer_cancelled_mid_pipeline_answers_every_caller_and_stops(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Cancelled between a batch's durability and its apply (a supervisor, a loop torn down):
    nobody is left waiting, and the exchange stops accepting."""
    original = Journal.append_batch

    def slow_append_batch(self: Journal, records: list[tuple[int, int, bytes]]) -> None:
        original(self, records)
        time.sleep(0.005)

    async def scenario() -> None:
        exchange = await with_market(tmp_path)
        monkeypatch.setattr(Journal, "append_batch", slow_append_batch)
        real_sleep = asyncio.sleep
        cancelled = False

        async def sleep_cancelling_the_writer(delay: float, result: object = None) -> object:
            nonlocal cancelled
            writer = asyncio.current_task()
            if delay == 0 and writer is exchange._writer and not cancelled:
                cancelled = True
                writer.cancel()
            return await real_sleep(delay, result)

        monkeypatch.setattr(asyncio, "sleep", sleep_cancelling_the_writer)
        callers = [asyncio.ensure_future(exchange.submit(order())) for _ in range(50)]
        await real_sleep(0.002)
        callers += [asyncio.ensure_future(exchange.submit(order())) for _ in range(50)]
        done, waiting = await asyncio.wait(callers, timeout=5)
        assert cancelled and not waiting
        assert not exchange.accepting
        answered = [c for c in done if c.exception() is None]
        refused = [c for c in done if isinstance(c.exception(), ExchangeStopped)]
        assert len(answered) + len(refused) == len(callers) and refused

    asyncio.run(scenario())


def test_journal_reads_show_only_what_the_core_has_applied(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A batch can be durable before it is applied (pipelined group commit); readers of the
    journal (the regulator's /v1/audit/events) see it only once its results exist."""

    async def scenario() -> None:
        exchange = await with_market(tmp_path)
        applied = exchange.core.last_sequence
        held: list[object] = []
        real_apply_batch = Exchange._apply_batch
        monkeypatch.setattr(Exchange, "_apply_batch", lambda self, batch: held.append(batch))
        answer = asyncio.ensure_future(exchange.submit(order()))
        while not held:  # the batch is durable: the writer handed it over to be applied
            await asyncio.sleep(0.001)
        assert exchange._journal is not None
        assert exchange._journal.last_sequence == applied + 1  # in the journal, not applied
        assert await exchange.journal_records(1, 1_000) == await exchange.journal_records(
            1, applied
        )
        assert (await exchange.journal_records(1, 1_000))[-1].sequence == applied
        assert await exchange.journal_records(applied + 1, 10) == []

        real_apply_batch(exchange, held[0])  # type: ignore[arg-type]
        result = await answer
        assert result.sequence == applied + 1
        assert [r.sequence for r in await exchange.journal_records(applied, 10)] == [
            applied,
            applied + 1,
        ]
        monkeypatch.undo()
        await exchange.stop()

    asyncio.run(scenario())


def test_a_stop_ends_a_background_task_that_swallowed_its_first_cancellation(
    tmp_path: Path,
) -> None:
    """As a follower does on Python 3.11 when its cancellation arrives just as the message
    `asyncio.wait_for` awaited completes (CPython gh-86296): it goes on as if never cancelled."""
    cancellations = 0

    async def stubborn_follower() -> None:
        nonlocal cancellations
        while True:
            try:
                await asyncio.sleep(0.01)
            except asyncio.CancelledError:
                cancellations += 1
                if cancellations == 1:
                    continue  # swallowed, as wait_for does
                raise

    async def scenario() -> None:
        exchange = await started(tmp_path)
        exchange._role_task = asyncio.create_task(stubborn_follower())
        await asyncio.sleep(0)
        stopping = asyncio.create_task(exchange.stop())
        await asyncio.wait({stopping}, timeout=5)
        assert stopping.done(), "the stop waits for ever on a task that goes on"
        assert exchange._role_task.done()

    asyncio.run(scenario())
    assert cancellations == 2


def test_a_stop_also_ends_the_lease_task_a_stubborn_follower_started_while_being_stopped(
    tmp_path: Path,
) -> None:
    """The follower takes the lease with a nats request, which on 3.11 may swallow the first
    cancellation; it then starts the lease task before the stop's next cancellation ends it."""

    async def keep_lease() -> None:
        while True:
            await asyncio.sleep(0.01)

    async def scenario() -> None:
        exchange = await started(tmp_path)

        async def follower() -> None:
            # `await link.lease.try_acquire()`; the cancellation swallowed, as wait_for does
            # when the reply comes with it
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.sleep(10)
            exchange._lease_task = asyncio.create_task(keep_lease())
            await asyncio.sleep(10)  # the stop's next cancellation ends the follower here

        exchange._role_task = asyncio.create_task(follower())
        await asyncio.sleep(0)
        await asyncio.wait_for(exchange.stop(), timeout=5)
        assert exchange._role_task.done()
        assert exchange._lease_task is not None and exchange._lease_task.done()

    asyncio.run(scenario())


def test_a_snapshot_at_stop_is_labelled_with_the_record_the_core_applied_last(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A follower stopped while it mirrors the leader's batch: the journal holds the batch, the
    core never applied it. The stop's snapshot is the core's state, so it carries the hash of
    the core's last record, not the journal's head (or the snapshot writer would refuse it)."""
    original = Journal.append_batch

    def slow_append(self: Journal, records: list[tuple[int, int, bytes]]) -> None:
        original(self, records)
        time.sleep(0.2)  # the mirror write is still under way when the stop comes

    async def scenario() -> int:
        exchange = await with_market(tmp_path)
        journal = exchange._journal
        assert journal is not None
        monkeypatch.setattr(Journal, "append_batch", slow_append)
        following = exchange.core.last_sequence + 1
        batch = [(following, exchange.core.last_time_ns, c.encode_command(order()))]

        async def follower() -> None:  # `_apply_followed`: mirror, then apply
            await asyncio.get_running_loop().run_in_executor(
                exchange._io, journal.append_batch, batch
            )
            raise AssertionError("cancelled before applying")

        exchange._role_task = asyncio.create_task(follower())
        await asyncio.sleep(0.05)
        await exchange.stop()
        monkeypatch.setattr(Journal, "append_batch", original)
        return following - 1

    applied = asyncio.run(scenario())
    snapshot, _ = next(snapshots.load_newest(tmp_path, 10**9))
    with Journal.open(snapshots.journal_dir(tmp_path), fsync=False) as journal:
        assert journal.last_sequence == applied + 1
        assert snapshot.sequence == applied
        assert snapshot.journal_hash == next(iter(journal.read(applied, applied))).hash
    snapshots.build_snapshot(tmp_path, applied + 1)  # the snapshot writer takes it
