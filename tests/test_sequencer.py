"""The sequencer's promises: nothing is answered before it is durable, batches share one fsync,
every subscriber sees every result in order, and a restart recovers everything acknowledged."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import pytest

from benchmarks.workload import MarketWorkload
from exchange import commands as c
from exchange.events import DuplicateClientOrderId, OrderRegistered
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
        pending = [asyncio.ensure_future(exchange.submit(order())) for _ in range(50)]
        await asyncio.sleep(0)
        await exchange.stop()
        results = await asyncio.gather(*pending)
        assert len({r.sequence for r in results}) == 50
        with pytest.raises(ExchangeStopped):
            await exchange.submit(order())

    asyncio.run(scenario())
