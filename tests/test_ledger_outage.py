"""Outages and crashes: trading goes on without the database, the ledger catches up from the
journal when it returns, and a crash at any moment applies nothing twice.

Run on SQLite (the outage: another connection holds the file's write lock) and on PostgreSQL
(the outage: the database stops accepting connections and its sessions are terminated). Under
CI=true an unreachable PostgreSQL fails these tests; elsewhere they are skipped with the reason.

This file is also the crash test's child process:

    python tests/test_ledger_outage.py DATA_DIR DATABASE_URL COMMANDS
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from conftest import postgres_server
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from benchmarks.workload import MarketWorkload
from clearing.ledger import Ledger
from exchange.ledger_feed import LedgerFeed, balances_of, check_ledger, replay_into
from exchange.sequencer import Exchange

REPO = Path(__file__).resolve().parents[1]
NEVER = 10**12  # a snapshot_every that never comes due

# ------------------------------------------------------------------------------------------------
# Databases that can be taken away and given back.


class Database:
    """One empty ledger database of a kind, and a way to make it unreachable for a while."""

    def __init__(self, kind: str, directory: Path) -> None:
        self.kind = kind
        self._counter = itertools.count(1)
        self._directory = directory
        self._server: str | None = None
        self.name = f"hogx_outage_{uuid.uuid4().hex[:12]}"
        if kind == "postgresql":
            self._server = postgres_server()
            if self._server is None:
                reason = "PostgreSQL is not reachable at 127.0.0.1:5432 (users postgres, root)"
                if os.environ.get("CI") == "true":
                    pytest.fail(f"{reason}; under CI=true the PostgreSQL tests must run")
                pytest.skip(reason)
            self._admin(f'CREATE DATABASE "{self.name}"')

    def url(self) -> str:
        if self.kind == "sqlite":
            return f"sqlite:///{self._directory / 'ledger.sqlite3'}"
        assert self._server is not None
        return make_url(self._server).set(database=self.name).render_as_string(False)

    @contextlib.contextmanager
    def unreachable(self) -> Iterator[None]:
        """While inside, the ledger can neither write nor connect."""
        if self.kind == "sqlite":
            blocker = sqlite3.connect(self._directory / "ledger.sqlite3", isolation_level=None)
            blocker.execute("BEGIN EXCLUSIVE")  # holds the write lock: every writer gets BUSY
            try:
                yield
            finally:
                blocker.execute("ROLLBACK")
                blocker.close()
            return
        self._admin(f'ALTER DATABASE "{self.name}" ALLOW_CONNECTIONS false')
        self._admin(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            f"WHERE datname = '{self.name}' AND pid <> pg_backend_pid()"
        )
        try:
            yield
        finally:
            self._admin(f'ALTER DATABASE "{self.name}" ALLOW_CONNECTIONS true')

    def drop(self) -> None:
        if self.kind == "postgresql" and self._server is not None:
            self._admin(f'DROP DATABASE IF EXISTS "{self.name}" WITH (FORCE)')

    def _admin(self, sql: str) -> None:
        assert self._server is not None
        engine = create_engine(self._server, isolation_level="AUTOCOMMIT")
        try:
            with engine.connect() as connection:
                connection.execute(text(sql))
        finally:
            engine.dispose()


@pytest.fixture(params=["sqlite", "postgresql"])
def database(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Database]:
    found = Database(request.param, tmp_path)
    try:
        yield found
    finally:
        found.drop()


# ------------------------------------------------------------------------------------------------
# A running exchange with its ledger feed.


def new_feed(ledger: Ledger, data_dir: Path, **options: int) -> LedgerFeed:
    return LedgerFeed(
        ledger,
        data_dir,
        max_batch_commands=options.get("batch", 64),
        max_queue=options.get("queue", 10_000),
        retry_initial_s=0.01,
        retry_max_s=0.1,
        pipeline=bool(options.get("pipeline", 0)),
    )


@contextlib.asynccontextmanager
async def running(
    data_dir: Path, ledger: Ledger | None, **options: int
) -> AsyncIterator[tuple[Exchange, LedgerFeed | None]]:
    exchange = Exchange(data_dir, fsync=False, snapshot_every=NEVER)
    await exchange.start()
    feed = None
    if ledger is not None:
        feed = new_feed(ledger, data_dir, **options)
        exchange.subscribe(feed)
        feed.start(exchange.core.last_sequence)
    try:
        yield exchange, feed
    finally:
        await exchange.stop()
        if feed is not None:
            feed.stop()


async def trade(exchange: Exchange, workload: MarketWorkload, count: int) -> int:
    """Submit `count` workload commands; returns how many the exchange acknowledged."""
    acknowledged = 0
    for _ in range(count):
        result = await exchange.submit(workload.next_command())
        workload.observe(result.events)
        acknowledged += 1
    return acknowledged


def assert_ledger_matches(ledger: Ledger, exchange: Exchange) -> None:
    last = exchange.core.last_sequence
    report = ledger.check(balances_of(exchange.core.accounts), at_sequence=last)
    assert report.ok, report.text()
    assert report.trades > 0


# ------------------------------------------------------------------------------------------------
# Outages.


def test_trading_goes_on_while_the_database_is_down_and_the_ledger_catches_up(
    database: Database, tmp_path: Path
) -> None:
    async def session() -> None:
        ledger = Ledger(database.url(), sqlite_busy_timeout_ms=20)
        workload = MarketWorkload(seed=5, traders=6)
        # Pipelined: the writer thread retries the batch it holds while the planner waits.
        async with running(tmp_path / "data", ledger, queue=100, pipeline=1) as (exchange, feed):
            assert feed is not None
            for command in workload.setup():
                await exchange.submit(command)
            await trade(exchange, workload, 200)
            assert await feed.drain(30), feed.status()

            with database.unreachable():
                acknowledged = await trade(exchange, workload, 600)
                assert acknowledged == 600  # every command answered while the database is down
                await asyncio.sleep(0.3)
                assert feed.lag() > 0
                assert feed.outage_since is not None, feed.status()
            assert feed.overflows > 0  # the queue was dropped: the journal fills the gap

            await trade(exchange, workload, 100)
            assert await feed.drain(60), feed.status()
            assert feed.journal_catch_ups > 0
            assert feed.outage_since is None
            assert_ledger_matches(ledger, exchange)
        ledger.close()

    asyncio.run(session())


def test_a_restarted_exchange_catches_a_lagging_ledger_up_from_the_journal(
    database: Database, tmp_path: Path
) -> None:
    data_dir = tmp_path / "data"
    workload = MarketWorkload(seed=9, traders=6)

    async def first_day() -> int:
        ledger = Ledger(database.url())
        async with running(data_dir, ledger) as (exchange, feed):
            assert feed is not None
            for command in workload.setup():
                await exchange.submit(command)
            await trade(exchange, workload, 200)
            assert await feed.drain(30)
            feed.stop()  # the ledger stops following: from here on it lags behind
            await trade(exchange, workload, 300)
            applied = ledger.last_applied_sequence()
            assert applied < exchange.core.last_sequence
        ledger.close()
        return applied

    async def next_day(lagging_at: int) -> None:
        ledger = Ledger(database.url())
        assert ledger.last_applied_sequence() == lagging_at
        async with running(data_dir, ledger) as (exchange, feed):
            assert feed is not None
            assert exchange.recovery is not None and exchange.recovery.snapshot_sequence > 0
            await trade(exchange, workload, 50)
            assert await feed.drain(60), feed.status()
            assert feed.journal_catch_ups == 1
            assert_ledger_matches(ledger, exchange)
        report = check_ledger(ledger, data_dir)  # what `hogx ledger check` runs
        assert report.ok and report.compared_with_memory, report.text()
        ledger.close()

    lagging_at = asyncio.run(first_day())
    asyncio.run(next_day(lagging_at))


def test_a_ledger_ahead_of_the_journal_is_refused_and_trading_goes_on(
    database: Database, tmp_path: Path
) -> None:
    async def session() -> None:
        ledger = Ledger(database.url())
        other = MarketWorkload(seed=1, traders=2)
        async with running(tmp_path / "other", ledger) as (exchange, feed):
            for command in other.setup():
                await exchange.submit(command)
            assert feed is not None and await feed.drain(30)
        workload = MarketWorkload(seed=2, traders=2)
        async with running(tmp_path / "fresh", ledger) as (exchange, feed):
            assert feed is not None
            await exchange.submit(workload.setup()[0])
            assert not await feed.drain(10)
            assert isinstance(feed.failure, RuntimeError), feed.status()
            assert "ahead of the exchange's journal" in str(feed.failure)
            assert (await exchange.submit(workload.setup()[1])).sequence == 2
        ledger.close()

    asyncio.run(session())


# ------------------------------------------------------------------------------------------------
# Crashes.


def test_a_crash_at_any_moment_applies_nothing_twice(database: Database, tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    child = subprocess.Popen(
        [sys.executable, __file__, str(data_dir), database.url(), "20000"],
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
    )
    try:
        assert child.stdout is not None
        deadline = time.monotonic() + 60
        applied = 0
        for line in child.stdout:  # progress lines: kill it once the ledger has some batches
            applied = json.loads(line)["applied"]
            if applied >= 800 or time.monotonic() > deadline:
                break
        assert applied >= 800, "the child's ledger did not get going"
        child.send_signal(signal.SIGKILL)
        child.wait(timeout=30)
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()

    async def restart() -> None:
        ledger = Ledger(database.url())
        crashed_at = ledger.last_applied_sequence()
        async with running(data_dir, ledger) as (exchange, feed):
            assert feed is not None
            assert 0 < crashed_at <= exchange.core.last_sequence
            assert await feed.drain(60), feed.status()
            assert_ledger_matches(ledger, exchange)
            rows = ledger.rows()
        ledger.close()
        # The journal rebuilds exactly the same rows into an empty ledger: nothing was doubled.
        again = Ledger(sqlite_url := f"sqlite:///{tmp_path / 'rebuilt.sqlite3'}")
        replay_into(again.apply, data_dir, 0, exchange.core.last_sequence)
        assert again.rows() == rows, sqlite_url
        again.close()

    asyncio.run(restart())


async def crash_child(data_dir: Path, url: str, commands: int) -> None:
    """Trade with a ledger feed, printing the ledger's progress, until killed."""
    ledger = Ledger(url)
    workload = MarketWorkload(seed=11, traders=6)
    async with running(data_dir, ledger, batch=50) as (exchange, feed):
        assert feed is not None
        for command in workload.setup():
            await exchange.submit(command)
        for _ in range(commands // 100):
            await trade(exchange, workload, 100)
            print(json.dumps({"applied": feed.last_applied}), flush=True)


if __name__ == "__main__":
    asyncio.run(crash_child(Path(sys.argv[1]), sys.argv[2], int(sys.argv[3])))


@pytest.mark.timeout(60)  # the way it fails is by hanging
def test_stopping_beside_a_ledger_process_that_reads_nothing_still_ends(tmp_path: Path) -> None:
    """A child that never reads (here: frozen with SIGSTOP) leaves batches in the queue's pipe;
    stopping terminates it and must not wait for ever for that pipe to drain."""
    from exchange.commands import Deposit
    from exchange.ledger_process import LedgerProcess
    from exchange.sequencer import CommandResult

    ledger = LedgerProcess(tmp_path, f"sqlite:///{tmp_path / 'ledger.db'}")
    ledger.start(0)
    child = ledger._child
    assert child is not None and child.pid is not None
    os.kill(child.pid, signal.SIGSTOP)
    try:
        batch = [CommandResult(n, n, Deposit(1, "VND", n), []) for n in range(1, 5_001)]
        ledger(batch)  # far more than a pipe holds

        async def stop() -> None:
            await asyncio.wait_for(ledger.stop(timeout=0.5), 20)

        asyncio.run(stop())
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.kill(child.pid, signal.SIGKILL)
        child.join(5)
