"""The scheduler turns the clock into journaled commands, through the sequencer like any other:
here, the end of the trading day of a market that never closes (Vietnam midnight)."""

from __future__ import annotations

import asyncio
from datetime import date
from pathlib import Path

import pytest

from benchmarks.workload import MarketWorkload
from exchange import commands as c
from exchange.attributes import vietnam_midnight_ns
from exchange.scheduler import Scheduler
from exchange.sequencer import Exchange
from matching_engine import OrderType, Side, TimeInForce

HOG = "HOG-G1-HCM"  # the workload's live-hog market: no timetable, continuous at any hour
MIDNIGHT = vietnam_midnight_ns(date(2026, 11, 24))
SECOND = 1_000_000_000


class Clock:
    def __init__(self, now_ns: int) -> None:
        self.now_ns = now_ns

    def __call__(self) -> int:
        return self.now_ns


def day_bid(price: int) -> c.PlaceOrder:
    return c.PlaceOrder(1, HOG, Side.BUY, OrderType.LIMIT, price, 1, TimeInForce.DAY)


async def market_open_at(data_dir: Path, clock: Clock) -> Exchange:
    exchange = Exchange(data_dir, clock=clock)
    await exchange.start()
    for command in MarketWorkload(seed=1, traders=3).setup():
        await exchange.submit(command)
    return exchange


def test_a_day_order_left_at_midnight_expires_once_and_todays_stay(tmp_path: Path) -> None:
    clock = Clock(MIDNIGHT - 60 * SECOND)

    async def scenario() -> None:
        exchange = await market_open_at(tmp_path, clock)
        scheduler = Scheduler(exchange, clock=clock)
        assert await scheduler.run_once() == 0  # the day is not over
        yesterdays = (await exchange.submit(day_bid(59_000))).events[0].order_id
        clock.now_ns = MIDNIGHT
        todays = (await exchange.submit(day_bid(58_900))).events[0].order_id
        clock.now_ns = MIDNIGHT + SECOND
        assert await scheduler.run_once() == 1
        assert exchange.core.orders[yesterdays].status.value == "expired"
        assert exchange.core.orders[todays].status.value == "new"
        journaled = exchange.core.last_sequence
        assert await scheduler.run_once() == 0  # once a day
        await exchange.stop()

        # A restart looks again (a day may have ended while it was down): nothing is left.
        restarted = Exchange(tmp_path, clock=clock)
        await restarted.start()
        assert await Scheduler(restarted, clock=clock).run_once() == 0
        assert restarted.core.last_sequence == journaled
        assert restarted.core.orders[todays].status.value == "new"
        await restarted.stop()

    asyncio.run(scenario())


def test_no_look_at_the_day_while_a_batch_is_on_its_way_to_the_disk(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    clock = Clock(MIDNIGHT - 60 * SECOND)

    async def scenario() -> None:
        exchange = await market_open_at(tmp_path, clock)
        yesterdays = (await exchange.submit(day_bid(59_000))).events[0].order_id
        clock.now_ns = MIDNIGHT + SECOND
        scheduler = Scheduler(exchange, clock=clock)
        with monkeypatch.context() as patch:  # as if a batch stamped before midnight were
            patch.setattr(Exchange, "all_applied", property(lambda self: False))  # unwritten
            assert await scheduler.run_once() == 0
        assert await scheduler.run_once() == 1  # the next pass looks: not a day later
        assert exchange.core.orders[yesterdays].status.value == "expired"
        await exchange.stop()

    asyncio.run(scenario())
