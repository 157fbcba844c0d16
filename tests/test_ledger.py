"""The clearing ledger's rulebook, on SQLite and on PostgreSQL.

Double entry: every transfer debits one account and credits another with a positive amount of
one asset, so every asset sums to zero (the external account holds minus what is in custody).
Exactly once: a batch is applied at most once, whatever is retried. A projection: the SQL
balances equal the in-memory accounts at the same sequence, and a rebuild from the journal gives
the very same rows.

PostgreSQL runs at 127.0.0.1:5432 (trust auth); each test gets its own database and each ledger
in it its own schema. Under CI=true an unreachable PostgreSQL fails these tests; elsewhere they
are skipped with the reason.
"""

from __future__ import annotations

import itertools
import os
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import alembic.command
import pytest
from alembic.autogenerate import compare_metadata
from alembic.config import Config
from alembic.migration import MigrationContext
from conftest import postgres_server
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import create_engine, text

from benchmarks.workload import INSTRUMENTS, MarketWorkload, key_hash
from clearing.ledger import (
    EXTERNAL_ACCOUNT,
    FEE_PARTICIPANT,
    MIGRATIONS_DIR,
    AccountKind,
    Ledger,
    LedgerEntry,
    LedgerGap,
    LedgerInvariantError,
    Posting,
    ShardTransferRow,
    TransferCode,
    metadata,
    transfer_id,
)
from exchange import commands as c
from exchange.commands import encode_command
from exchange.core import ExchangeCore
from exchange.events import CashTransferredIn, CashTransferredOut, Event, TransferRepeated
from exchange.instruments import Instrument, InstrumentKind
from exchange.journal import Journal
from exchange.ledger_feed import balances_of, check_ledger, entry_of, in_transit_of, replay_into
from exchange.participants import Role
from exchange.snapshots import build_snapshot, journal_dir
from matching_engine import OrderType, Side

T0_NS = 1_767_225_600_000_000_000  # 2026-01-01T00:00:00Z
# Sessions run on today's date: the workload's OCOP certificate is dated from today, so on a
# clock far from it the OCOP listing is refused and no goods but hogs would settle.
TODAY_NS = (time.time_ns() // 86_400_000_000_000) * 86_400_000_000_000
AVAILABLE, RESERVED, EXTERNAL = AccountKind.AVAILABLE, AccountKind.RESERVED, AccountKind.EXTERNAL
IN_TRANSIT = AccountKind.IN_TRANSIT

# ------------------------------------------------------------------------------------------------
# Databases: a fresh, empty one for every ledger a test opens.


class Databases:
    """Hands out URLs of empty databases of one kind and removes them afterwards."""

    def __init__(self, kind: str, directory: Path, server: str | None = None) -> None:
        self.kind = kind
        self._directory = directory
        self._server = server
        self._counter = itertools.count(1)
        self.database = f"hogx_test_{uuid.uuid4().hex[:12]}"
        if kind == "postgresql":
            assert server is not None
            self._admin(f'CREATE DATABASE "{self.database}"')

    def url(self) -> str:
        """A new empty ledger database: a SQLite file, or a PostgreSQL schema."""
        n = next(self._counter)
        if self.kind == "sqlite":
            return f"sqlite:///{self._directory / f'ledger-{n}.sqlite3'}"
        schema = f"ledger_{n}"
        engine = create_engine(self.database_url())
        with engine.begin() as connection:
            connection.execute(text(f"CREATE SCHEMA {schema}"))
        engine.dispose()
        return f"{self.database_url()}?options=-csearch_path%3D{schema}"

    def database_url(self) -> str:
        assert self._server is not None
        return self._server.rsplit("/", 1)[0] + f"/{self.database}"

    def drop(self) -> None:
        if self.kind == "postgresql":
            self._admin(f'DROP DATABASE IF EXISTS "{self.database}" WITH (FORCE)')

    def _admin(self, sql: str) -> None:
        assert self._server is not None
        engine = create_engine(self._server, isolation_level="AUTOCOMMIT")
        try:
            with engine.connect() as connection:
                connection.execute(text(sql))
        finally:
            engine.dispose()


@pytest.fixture(params=["sqlite", "postgresql"])
def databases(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Databases]:
    server = None
    if request.param == "postgresql":
        server = postgres_server()
        if server is None:
            reason = "PostgreSQL is not reachable at 127.0.0.1:5432 (users postgres, root)"
            if os.environ.get("CI") == "true":
                pytest.fail(f"{reason}; under CI=true the PostgreSQL tests must run")
            pytest.skip(reason)
    found = Databases(request.param, tmp_path, server)
    try:
        yield found
    finally:
        found.drop()


@pytest.fixture
def open_ledger(databases: Databases) -> Iterator[Callable[[], Ledger]]:
    """Opens ledgers on fresh databases and closes them at the end of the test."""
    opened: list[Ledger] = []

    def make() -> Ledger:
        ledger = Ledger.open(databases.url())
        opened.append(ledger)
        return ledger

    yield make
    for ledger in opened:
        ledger.close()


# ------------------------------------------------------------------------------------------------
# Sessions: a core driven by commands, its events turned into ledger entries.


class Session:
    """An `ExchangeCore` with a journal, recording each command's ledger entry."""

    def __init__(self, data_dir: Path | None = None) -> None:
        self.core = ExchangeCore()
        self.entries: list[LedgerEntry] = []
        self.commands: list[c.Command] = []
        self.events: list[list[Event]] = []  # each command's
        self.journal = (
            None if data_dir is None else Journal.open(journal_dir(data_dir), fsync=False)
        )

    def run(self, command: c.Command) -> LedgerEntry:
        sequence = self.core.last_sequence + 1
        time_ns = TODAY_NS + sequence * 1_000_000
        if self.journal is not None:
            self.journal.append_batch([(sequence, time_ns, encode_command(command))])
        events = self.core.apply(command, sequence, time_ns)
        self.commands.append(command)
        self.events.append(events)
        entry = entry_of(sequence, time_ns, events)
        self.entries.append(entry)
        self.last_events = events
        return entry

    def close(self) -> None:
        if self.journal is not None:
            self.journal.close()


HOG = Instrument(
    "HOG-TEST", "Heo hơi test", InstrumentKind.LIVE_HOG, 100, 100, 60_000,
    maker_fee_bps=2, taker_fee_bps=5,
)  # fmt: skip


def two_traders() -> Session:
    """Participants 1 (buyer) and 2 (seller), funded, and one listed instrument."""
    session = Session()
    session.run(c.RegisterParticipant("buyer", Role.TRADER, key_hash("buyer")))
    session.run(c.RegisterParticipant("seller", Role.TRADER, key_hash("seller")))
    session.run(c.ListInstrument(HOG))
    session.run(c.Deposit(1, "VND", 10_000_000_000))
    session.run(c.Deposit(2, HOG.symbol, 50))
    return session


def limit(participant: int, side: Side, price: int, quantity: int) -> c.PlaceOrder:
    return c.PlaceOrder(participant, HOG.symbol, side, OrderType.LIMIT, price, quantity)


def deposit(sequence: int, participant: int, asset: str, amount: int) -> LedgerEntry:
    posting = Posting(
        TransferCode.DEPOSIT, asset, amount, EXTERNAL_ACCOUNT, EXTERNAL, participant, AVAILABLE
    )
    return LedgerEntry(sequence, T0_NS + sequence, [posting])


# ------------------------------------------------------------------------------------------------
# Schema.


def test_migrations_create_exactly_the_tables_the_code_uses(
    open_ledger: Callable[[], Ledger],
) -> None:
    ledger = open_ledger()
    with ledger.engine.connect() as connection:
        context = MigrationContext.configure(
            connection, opts={"version_table": "ledger_alembic_version"}
        )
        differences = compare_metadata(context, metadata)
    assert differences == []


def test_the_in_transit_migration_keeps_a_ledger_written_before_it(databases: Databases) -> None:
    """Revision 0003 widens the account kinds (SQLite copies the table to change its check)
    and adds `shard_transfers`: the rows written at 0002 stay, and transfers book on top."""
    ledger = Ledger(databases.url())
    try:
        config = Config()
        config.set_main_option("script_location", str(MIGRATIONS_DIR))
        with ledger.engine.begin() as connection:
            config.attributes["connection"] = connection
            alembic.command.upgrade(config, "0002")
        with ledger.engine.begin() as connection:
            connection.execute(
                text(
                    "INSERT INTO accounts VALUES (1, 0, 'VND', 'external', -100),"
                    " (2, 7, 'VND', 'available', 100)"
                )
            )
            connection.execute(
                text("INSERT INTO transfers VALUES (:id, 1, :t, 'deposit', 'VND', 1, 2, 100, 0,"
                     " -100, 100)"),
                {"id": transfer_id(1, 0), "t": T0_NS + 1},
            )  # fmt: skip
            connection.execute(text("UPDATE ledger_state SET last_applied_sequence = 1"))
        before = ledger.rows()  # migrates to the newest revision first
        assert before["accounts"] == [
            (1, 0, "VND", "external", -100),
            (2, 7, "VND", "available", 100),
        ]
        posting = Posting(
            TransferCode.TRANSFER_OUT, "VND", 40, 7, AVAILABLE, EXTERNAL_ACCOUNT, IN_TRANSIT
        )
        ledger.apply([LedgerEntry(2, T0_NS + 2, [posting], (), [ShardTransferRow(0, "t-1", "x")])])
        assert ledger.check({(7, "VND"): (60, 0)}, expected_in_transit={"VND": 40}).ok
        assert ledger.rows()["accounts"][2] == (3, 0, "VND", "in_transit", 40)
    finally:
        ledger.close()


def test_opening_a_ledger_again_keeps_its_rows(databases: Databases) -> None:
    url = databases.url()
    first = Ledger.open(url)
    first.apply([deposit(1, 7, "VND", 500)])
    first.close()
    again = Ledger.open(url)
    try:
        assert again.last_applied_sequence() == 1
        assert again.balance(7, "VND") == (500, 0)
    finally:
        again.close()


# ------------------------------------------------------------------------------------------------
# Double entry.


def test_a_deposit_moves_money_from_the_external_account(open_ledger: Callable[[], Ledger]) -> None:
    ledger = open_ledger()
    ledger.apply([deposit(1, 7, "VND", 1_000)])
    assert ledger.balance(7, "VND") == (1_000, 0)
    report = ledger.check()
    assert report.ok, report.text()
    assert report.asset_totals == {"VND": 0}
    external = [row for row in ledger.rows()["accounts"] if row[3] == "external"]
    assert [(row[2], row[4]) for row in external] == [("VND", -1_000)]


def test_every_asset_sums_to_zero_and_no_participant_goes_negative(
    open_ledger: Callable[[], Ledger],
) -> None:
    session = two_traders()
    session.run(limit(2, Side.SELL, 60_000, 10))
    session.run(limit(1, Side.BUY, 60_100, 4))
    session.run(c.Withdraw(2, "VND", 1_000))
    ledger = open_ledger()
    ledger.apply(session.entries)
    report = ledger.check(balances_of(session.core.accounts))
    assert report.ok, report.text()
    assert set(report.asset_totals.values()) == {0}


def test_a_trade_settles_cash_goods_and_fees_in_the_same_transaction(
    open_ledger: Callable[[], Ledger],
) -> None:
    session = two_traders()
    session.run(limit(2, Side.SELL, 60_000, 10))
    trade_entry = session.run(limit(1, Side.BUY, 60_100, 4))
    ledger = open_ledger()
    ledger.apply(session.entries)

    rows = ledger.rows()
    (trade,) = rows["trades"]
    assert trade[0] == 1  # trade id
    assert trade[1] == trade_entry.sequence
    legs = {row[3]: row for row in rows["transfers"] if row[1] == trade_entry.sequence}
    notional = 60_000 * 4 * 100
    assert legs["payment"][7] == notional
    assert legs["delivery"][7] == 4 and legs["delivery"][4] == HOG.symbol
    assert legs["buyer_fee"][7] == notional * 5 // 10_000  # the buyer took liquidity
    assert legs["seller_fee"][7] == notional * 2 // 10_000
    assert ledger.balances() == balances_of(session.core.accounts)


def test_holds_and_releases_move_between_available_and_reserved(
    open_ledger: Callable[[], Ledger],
) -> None:
    session = two_traders()
    placed = session.run(limit(2, Side.SELL, 61_000, 10))
    ledger = open_ledger()
    ledger.apply(session.entries)
    assert ledger.balance(2, HOG.symbol) == (40, 10)
    order_id = placed.postings[0].reference_id
    session.run(c.CancelOrder(2, order_id))
    ledger.apply(session.entries)
    assert ledger.balance(2, HOG.symbol) == (50, 0)
    codes = [row[3] for row in ledger.rows()["transfers"]]
    assert codes[-2:] == ["hold", "release"]


def test_sql_balances_equal_the_in_memory_accounts_at_every_sequence(
    open_ledger: Callable[[], Ledger],
) -> None:
    session = two_traders()
    ledger = open_ledger()
    ledger.apply(session.entries)
    for command in (
        limit(2, Side.SELL, 60_000, 10),
        limit(1, Side.BUY, 60_200, 3),
        limit(1, Side.BUY, 59_900, 5),
        c.AmendOrder(1, 3, price=60_000),
        limit(2, Side.SELL, 59_000, 20),
        c.Withdraw(1, "VND", 1_000),
        c.Withdraw(1, HOG.symbol, 2),
    ):
        ledger.apply([session.run(command)])
        assert ledger.balances() == balances_of(session.core.accounts), command


# ------------------------------------------------------------------------------------------------
# Exactly once.


def test_transfer_ids_derive_from_the_sequence_and_the_index_in_the_command(
    open_ledger: Callable[[], Ledger],
) -> None:
    session = two_traders()
    session.run(limit(2, Side.SELL, 60_000, 10))
    entry = session.run(limit(1, Side.BUY, 60_000, 4))
    ledger = open_ledger()
    ledger.apply(session.entries)
    ids = [row[0] for row in ledger.rows()["transfers"] if row[1] == entry.sequence]
    assert ids == [transfer_id(entry.sequence, i) for i in range(len(entry.postings))]


def test_applying_the_same_batch_again_changes_nothing(open_ledger: Callable[[], Ledger]) -> None:
    session = two_traders()
    session.run(limit(2, Side.SELL, 60_000, 10))
    session.run(limit(1, Side.BUY, 60_000, 4))
    ledger = open_ledger()
    assert ledger.apply(session.entries) == len(session.entries)
    before = ledger.rows()
    assert ledger.apply(session.entries) == len(session.entries)
    assert ledger.apply(session.entries[2:5]) == len(session.entries)
    assert ledger.rows() == before


def test_a_batch_overlapping_the_applied_ones_applies_only_what_is_new(
    open_ledger: Callable[[], Ledger],
) -> None:
    ledger = open_ledger()
    ledger.apply([deposit(1, 7, "VND", 100), deposit(2, 7, "VND", 200)])
    ledger.apply([deposit(2, 7, "VND", 200), deposit(3, 7, "VND", 300)])
    assert ledger.balance(7, "VND") == (600, 0)
    assert ledger.last_applied_sequence() == 3


def test_a_batch_that_skips_a_sequence_is_refused(open_ledger: Callable[[], Ledger]) -> None:
    ledger = open_ledger()
    ledger.apply([deposit(1, 7, "VND", 100)])
    with pytest.raises(LedgerGap):
        ledger.apply([deposit(3, 7, "VND", 100)])
    assert ledger.last_applied_sequence() == 1


def test_a_batch_that_would_overdraw_a_participant_writes_nothing(
    open_ledger: Callable[[], Ledger],
) -> None:
    ledger = open_ledger()
    ledger.apply([deposit(1, 7, "VND", 100)])
    before = ledger.rows()
    overdraw = Posting(
        TransferCode.WITHDRAWAL, "VND", 106, 7, AVAILABLE, EXTERNAL_ACCOUNT, EXTERNAL
    )
    with pytest.raises(LedgerInvariantError):
        ledger.apply([deposit(2, 7, "VND", 5), LedgerEntry(3, T0_NS + 3, [overdraw])])
    assert ledger.rows() == before
    ledger.apply([deposit(2, 7, "VND", 5)])  # and the ledger goes on from where it was
    assert ledger.balance(7, "VND") == (105, 0)


def test_a_commit_repeated_after_a_lost_answer_is_harmless(
    open_ledger: Callable[[], Ledger],
) -> None:
    ledger = open_ledger()
    batch = ledger.prepare([deposit(1, 7, "VND", 100)])
    assert batch is not None
    assert ledger.commit(batch) == 1
    assert ledger.commit(batch) == 1  # as a retry after a connection drop would
    assert ledger.balance(7, "VND") == (100, 0)
    assert len(ledger.rows()["transfers"]) == 1


def test_batches_prepared_ahead_commit_in_order(open_ledger: Callable[[], Ledger]) -> None:
    ledger = open_ledger()
    first = ledger.prepare([deposit(1, 7, "VND", 100)])
    second = ledger.prepare([deposit(2, 7, "VND", 50)])
    assert first is not None and second is not None
    ledger.commit(first)
    ledger.commit(second)
    assert ledger.balance(7, "VND") == (150, 0)
    assert [row[10] for row in ledger.rows()["transfers"]] == [100, 150]  # running balances


def test_two_writers_never_apply_a_batch_twice(databases: Databases) -> None:
    url = databases.url()
    one, two = Ledger.open(url), Ledger.open(url)
    try:
        entries = [deposit(s, 7, "VND", s) for s in range(1, 7)]
        one.apply(entries[:2])
        two.apply(entries[:4])  # re-reads the state: skips 1-2, applies 3-4
        one.apply(entries)  # its cache is stale: the guard makes it re-read and apply 5-6
        assert one.balance(7, "VND") == (21, 0)
        assert len(one.rows()["transfers"]) == 6
        assert one.check().ok
    finally:
        one.close()
        two.close()


# ------------------------------------------------------------------------------------------------
# Checks.


def test_check_reports_a_balance_that_disagrees_with_its_transfers(
    open_ledger: Callable[[], Ledger],
) -> None:
    ledger = open_ledger()
    ledger.apply([deposit(1, 7, "VND", 100)])
    with ledger.engine.begin() as connection:
        connection.execute(
            text("UPDATE accounts SET balance = balance + 1 WHERE kind = 'available'")
        )
    report = ledger.check()
    assert not report.ok
    assert any("sum to 1, not 0" in problem for problem in report.problems)
    assert any("its transfers sum to 100" in problem for problem in report.problems)


def test_check_reports_a_negative_participant_balance(open_ledger: Callable[[], Ledger]) -> None:
    ledger = open_ledger()
    ledger.apply([deposit(1, 7, "VND", 100)])
    with ledger.engine.begin() as connection:
        connection.execute(text("UPDATE accounts SET balance = -balance"))
    report = ledger.check()
    assert any("participant 7 is -100" in problem for problem in report.problems)


def test_check_reports_where_sql_and_memory_differ(open_ledger: Callable[[], Ledger]) -> None:
    ledger = open_ledger()
    ledger.apply([deposit(1, 7, "VND", 100)])
    assert ledger.check({(7, "VND"): (100, 0)}, at_sequence=1).ok
    report = ledger.check({(7, "VND"): (90, 10)})
    assert not report.ok
    assert report.problems == [
        "participant 7 VND: SQL (available, reserved) (100, 0), in memory (90, 10)"
    ]
    assert not ledger.check({(7, "VND"): (100, 0)}, at_sequence=2).ok


# ------------------------------------------------------------------------------------------------
# Statements and fills.


def test_a_statement_lists_each_transfer_with_running_balances(
    open_ledger: Callable[[], Ledger],
) -> None:
    session = two_traders()
    session.run(limit(2, Side.SELL, 60_000, 10))
    session.run(limit(1, Side.BUY, 60_000, 4))
    ledger = open_ledger()
    ledger.apply(session.entries)
    statement = ledger.statement(2)
    lines = [(line.code, line.asset, line.available, line.reserved) for line in statement.lines]
    assert lines == [
        ("deposit", HOG.symbol, 50, 0),
        ("hold", HOG.symbol, 40, 10),
        ("payment", "VND", 24_000_000, 0),
        ("seller_fee", "VND", 24_000_000 - 4_800, 0),
        ("delivery", HOG.symbol, 40, 6),
    ]
    assert statement.opening == {"VND": (0, 0), HOG.symbol: (0, 0)}
    assert statement.closing == {"VND": (23_995_200, 0), HOG.symbol: (40, 6)}
    assert statement.closing["VND"] == ledger.balance(2, "VND")


def test_a_statement_of_a_period_opens_with_the_balances_before_it(
    open_ledger: Callable[[], Ledger],
) -> None:
    session = two_traders()
    session.run(limit(2, Side.SELL, 60_000, 10))
    trade_entry = session.run(limit(1, Side.BUY, 60_000, 4))
    ledger = open_ledger()
    ledger.apply(session.entries)
    statement = ledger.statement(2, trade_entry.time_ns, trade_entry.time_ns + 1)
    assert statement.opening == {"VND": (0, 0), HOG.symbol: (40, 10)}
    assert [line.code for line in statement.lines] == ["payment", "seller_fee", "delivery"]
    assert [line.available_change for line in statement.lines] == [24_000_000, -4_800, 0]
    assert [line.reserved_change for line in statement.lines] == [0, 0, -4]
    assert ledger.statement(2, 0, T0_NS).lines == []


def test_a_statement_longer_than_its_limit_says_it_is_truncated(
    open_ledger: Callable[[], Ledger],
) -> None:
    ledger = open_ledger()
    ledger.apply([deposit(s, 7, "VND", 10) for s in range(1, 6)])
    statement = ledger.statement(7, limit=3)
    assert statement.truncated
    assert [line.available for line in statement.lines] == [10, 20, 30]


def test_fills_come_newest_first_with_a_cursor_for_the_next_page(
    open_ledger: Callable[[], Ledger],
) -> None:
    session = two_traders()
    session.run(limit(2, Side.SELL, 60_000, 10))
    for _ in range(3):
        session.run(limit(1, Side.BUY, 60_000, 1))
    ledger = open_ledger()
    ledger.apply(session.entries)
    page = ledger.fills(2, limit=2)
    assert [(f.trade_id, f.side, f.liquidity) for f in page.fills] == [
        (3, "sell", "maker"),
        (2, "sell", "maker"),
    ]
    assert page.next_cursor == 2
    rest = ledger.fills(2, limit=2, cursor=page.next_cursor)
    assert [f.trade_id for f in rest.fills] == [1] and rest.next_cursor is None
    buyer = ledger.fills(1, symbol=HOG.symbol).fills
    assert (buyer[0].side, buyer[0].liquidity, buyer[0].fee_vnd) == ("buy", "taker", 3_000)
    assert ledger.fills(1, symbol="OTHER").fills == []


# ------------------------------------------------------------------------------------------------
# Transfers between shards: each phase moves cash between a participant's available account and
# the in-transit account of the shard's ledger; a phase sent again books nothing.

OUT, IN, BACK = 3_000_000_000, 500_000_000, 100_000_000


def shard_session(data_dir: Path | None = None) -> Session:
    """Shard `north`: participants 1 (a buyer with an order resting, so some of its cash is
    reserved) and 2 (a seller), funded, and one listed instrument."""
    session = Session(data_dir)
    session.run(c.ConfigureShard(1, "north"))
    session.run(c.RegisterParticipant("buyer", Role.TRADER, key_hash("buyer")))
    session.run(c.RegisterParticipant("seller", Role.TRADER, key_hash("seller")))
    session.run(c.ListInstrument(HOG))
    session.run(c.Deposit(1, "VND", 10_000_000_000))
    session.run(c.Deposit(2, HOG.symbol, 50))
    session.run(limit(1, Side.BUY, 60_000, 10))
    return session


def move_cash(session: Session) -> dict[str, LedgerEntry]:
    """Cash out to `south` and in from `main`, each phase sent twice, a clashing id, a trade,
    and cash the seller earned sent back to `main`."""
    return {
        "out": session.run(c.TransferOut(1, OUT, "t-1", "south")),
        "out again": session.run(c.TransferOut(1, OUT, "t-1", "south")),
        "in": session.run(c.TransferIn(2, IN, "t-2", "main")),
        "in again": session.run(c.TransferIn(2, IN, "t-2", "main")),
        "clash": session.run(c.TransferOut(1, 1, "t-1", "south")),
        "trade": session.run(limit(2, Side.SELL, 60_000, 4)),
        "back": session.run(c.TransferOut(2, BACK, "t-3", "main")),
    }


def shard_ledger(
    open_ledger: Callable[[], Ledger],
) -> tuple[Session, dict[str, LedgerEntry], Ledger]:
    """A `shard_session` that moved cash (`move_cash`), applied to a new ledger."""
    session = shard_session()
    moved = move_cash(session)
    ledger = open_ledger()
    ledger.apply(session.entries)
    return session, moved, ledger


def test_a_transfer_out_books_cash_into_transit_and_a_transfer_in_out_of_it(
    open_ledger: Callable[[], Ledger],
) -> None:
    session, _, ledger = shard_ledger(open_ledger)

    report = ledger.check(
        balances_of(session.core.accounts),
        at_sequence=session.core.last_sequence,
        expected_in_transit=in_transit_of(session.core),
    )
    assert report.ok, report.text()
    assert report.asset_totals == {"VND": 0, HOG.symbol: 0}
    assert ledger.balances() == balances_of(session.core.accounts)
    rows = ledger.rows()
    owners = {row[0]: row[1:4] for row in rows["accounts"]}
    booked = [
        (row[3], owners[row[5]], owners[row[6]], row[7])
        for row in rows["transfers"]
        if row[3] in ("transfer_out", "transfer_in")
    ]
    assert booked == [
        ("transfer_out", (1, "VND", "available"), (0, "VND", "in_transit"), OUT),
        ("transfer_in", (0, "VND", "in_transit"), (2, "VND", "available"), IN),
        ("transfer_out", (2, "VND", "available"), (0, "VND", "in_transit"), BACK),
    ]
    in_transit = [row[2:] for row in rows["accounts"] if row[3] == "in_transit"]
    assert in_transit == [("VND", "in_transit", OUT - IN + BACK)]
    assert in_transit_of(session.core) == {"VND": OUT - IN + BACK}


def test_a_transfer_sent_again_or_refused_books_nothing(
    open_ledger: Callable[[], Ledger],
) -> None:
    session, moved, ledger = shard_ledger(open_ledger)
    for name in ("out again", "in again", "clash"):
        assert moved[name].postings == () and moved[name].shard_transfers == (), name
    sequences = {row[1] for row in ledger.rows()["transfers"]}
    assert not sequences & {moved[name].sequence for name in ("out again", "in again", "clash")}
    assert ledger.last_applied_sequence() == session.core.last_sequence


def test_a_transfer_between_shards_keeps_its_transfer_id_and_the_other_shard(
    open_ledger: Callable[[], Ledger],
) -> None:
    _, moved, ledger = shard_ledger(open_ledger)
    rows = ledger.rows()
    assert rows["shard_transfers"] == [
        (transfer_id(moved["out"].sequence, 0), "t-1", "south"),
        (transfer_id(moved["in"].sequence, 0), "t-2", "main"),
        (transfer_id(moved["back"].sequence, 0), "t-3", "main"),
    ]
    codes = {row[0]: row[3] for row in rows["transfers"]}
    assert [codes[row[0]] for row in rows["shard_transfers"]] == [
        "transfer_out",
        "transfer_in",
        "transfer_out",
    ]


def test_a_statement_shows_the_transfers_between_shards(
    open_ledger: Callable[[], Ledger],
) -> None:
    session, moved, ledger = shard_ledger(open_ledger)

    buyer = ledger.statement(1)
    (out,) = [line for line in buyer.lines if line.code == "transfer_out"]
    assert (out.asset, out.available_change, out.reserved_change) == ("VND", -OUT, 0)
    assert (out.shard_transfer_id, out.other_shard) == ("t-1", "south")
    assert (out.sequence, out.reference_id) == (moved["out"].sequence, 0)
    (sent,) = session.events[moved["out"].sequence - 1]
    assert isinstance(sent, CashTransferredOut) and out.available == sent.available
    assert buyer.closing["VND"] == ledger.balance(1, "VND")

    seller = ledger.statement(2)
    moves = [
        (line.code, line.available_change, line.shard_transfer_id, line.other_shard)
        for line in seller.lines
        if line.asset == "VND"
    ]
    assert moves[0] == ("transfer_in", IN, "t-2", "main")
    (arrived,) = session.events[moved["in"].sequence - 1]
    assert isinstance(arrived, CashTransferredIn) and arrived.available == IN
    assert moves[-1] == ("transfer_out", -BACK, "t-3", "main")
    assert all(line.shard_transfer_id == "" for line in seller.lines if line.code == "payment")
    assert seller.closing["VND"] == ledger.balance(2, "VND")
    # The exchange's own participant sees its fees, never the in-transit account.
    fees = ledger.statement(FEE_PARTICIPANT)
    assert {line.code for line in fees.lines} == {"buyer_fee", "seller_fee"}


def test_check_compares_the_in_transit_account_and_keeps_transfer_ids_paired(
    open_ledger: Callable[[], Ledger],
) -> None:
    session, _, ledger = shard_ledger(open_ledger)
    report = ledger.check(expected_in_transit={"VND": OUT})
    assert report.problems == [f"in transit VND: SQL {OUT - IN + BACK}, in memory {OUT}"]
    with ledger.engine.begin() as connection:
        connection.execute(text("DELETE FROM shard_transfers WHERE shard_transfer_id = 't-2'"))
    report = ledger.check(balances_of(session.core.accounts))
    assert report.problems == ["1 transfers between shards and shard transfer ids unpaired"]


def test_a_shard_ledger_rebuilt_from_the_journal_has_the_same_rows(
    open_ledger: Callable[[], Ledger], tmp_path: Path
) -> None:
    session = shard_session(tmp_path)
    moved = move_cash(session)
    repeats = [
        session.run(c.TransferOut(1, OUT, "t-1", "south")),  # after the snapshot below
        session.run(c.TransferIn(2, IN, "t-2", "main")),
    ]
    assert [type(e) for e in session.last_events] == [TransferRepeated]
    assert all(entry.postings == () for entry in repeats)
    session.close()
    live, rebuilt = open_ledger(), open_ledger()
    live.apply(session.entries)
    last = session.core.last_sequence

    middle = moved["in"].sequence
    build_snapshot(tmp_path, middle)
    assert replay_into(rebuilt.apply, tmp_path, 0, middle, max_batch_commands=3) == middle
    assert replay_into(rebuilt.apply, tmp_path, middle, last) == last
    assert rebuilt.rows() == live.rows()
    report = check_ledger(rebuilt, tmp_path)  # what `hogx ledger check` runs
    assert report.ok and report.compared_with_memory, report.text()


# ------------------------------------------------------------------------------------------------
# The property: random sessions keep every invariant, and the journal rebuilds the same rows.

TRADERS = 4
ASSETS = ("VND", *(instrument.symbol for instrument in INSTRUMENTS))
traders, assets = st.integers(1, TRADERS), st.sampled_from(ASSETS)
step = st.one_of(
    st.tuples(st.just("orders"), st.integers(1, 40)),
    st.tuples(st.just("deposit"), traders, assets, st.integers(1, 10**9)),
    st.tuples(st.just("withdraw"), traders, assets, st.integers(1, 110)),  # percent of available
    # Cash to and from other shards: out a percent of available VND, in an amount, or the last
    # transfer sent again (it books nothing).
    st.tuples(st.just("transfer_out"), traders, st.just("VND"), st.integers(1, 110)),
    st.tuples(st.just("transfer_in"), traders, st.just("VND"), st.integers(1, 10**9)),
    st.tuples(st.just("transfer_again")),
)


@settings(
    max_examples=12,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    seed=st.integers(0, 2**32),
    steps=st.lists(step, min_size=1, max_size=12),
    batch_sizes=st.lists(st.integers(1, 60), min_size=1, max_size=6),
    snapshot_at=st.floats(0.1, 0.9),
)
def test_random_sessions_keep_every_invariant_and_rebuild_identically(
    databases: Databases,
    tmp_path_factory: pytest.TempPathFactory,
    seed: int,
    steps: list[tuple[object, ...]],
    batch_sizes: list[int],
    snapshot_at: float,
) -> None:
    data_dir = tmp_path_factory.mktemp("session")
    session = Session(data_dir)
    session.run(c.ConfigureShard(0, "main"))  # index 0: ids as without shards
    workload = MarketWorkload(seed, traders=TRADERS)
    for command in workload.setup():
        session.run(command)
    transfers: list[c.Command] = []
    for kind, *args in steps:
        if kind == "orders":
            for _ in range(int(args[0])):  # type: ignore[call-overload]
                session.run(workload.next_command())
                workload.observe(session.last_events)
        elif kind == "transfer_again":
            if transfers:
                session.run(transfers[-1])
        elif kind in ("transfer_out", "transfer_in"):
            participant, _, amount = args
            assert isinstance(participant, int) and isinstance(amount, int)
            name = f"t-{len(session.commands)}"
            if kind == "transfer_out":  # a share of the available cash; over 100% is refused
                amount = max(1, session.core.accounts.available(participant, "VND") * amount // 100)
                transfers.append(c.TransferOut(participant, amount, name, "north"))
            else:
                transfers.append(c.TransferIn(participant, amount, name, "south"))
            session.run(transfers[-1])
        else:
            participant, asset, amount = args
            assert isinstance(participant, int) and isinstance(asset, str)
            assert isinstance(amount, int)
            if kind == "withdraw":  # a share of what is available; over 100% is refused
                amount = max(1, session.core.accounts.available(participant, asset) * amount // 100)
                session.run(c.Withdraw(participant, asset, amount))
            else:
                session.run(c.Deposit(participant, asset, amount))
    session.close()

    live = Ledger.open(databases.url())
    rebuilt = Ledger.open(databases.url())
    try:
        # Live: the entries in batches of random sizes, balances compared after every batch.
        replay = ExchangeCore()
        sizes = itertools.cycle(batch_sizes)
        position = 0
        while position < len(session.entries):
            batch = session.entries[position : position + next(sizes)]
            for entry in batch:
                replay.apply(session.commands[entry.sequence - 1], entry.sequence, entry.time_ns)
            live.apply(batch)
            position += len(batch)
            assert live.balances() == balances_of(replay.accounts)
        last = session.core.last_sequence
        report = live.check(
            balances_of(session.core.accounts),
            at_sequence=last,
            expected_in_transit=in_transit_of(session.core),
        )
        assert report.ok, report.text()
        assert_statements_add_up(live, session, snapshot_at)

        # Rebuilt from the journal in two legs, the second from a snapshot in between.
        middle = max(1, int(last * snapshot_at))
        build_snapshot(data_dir, middle)
        assert replay_into(rebuilt.apply, data_dir, 0, middle, max_batch_commands=17) == middle
        assert replay_into(rebuilt.apply, data_dir, middle, last, max_batch_commands=50) == last
        assert rebuilt.rows() == live.rows()
    finally:
        live.close()
        rebuilt.close()


def assert_statements_add_up(ledger: Ledger, session: Session, fraction: float) -> None:
    """For every trader, over the whole history and over a later period: the opening balances
    plus each line's changes give each line's running balances and the closing balances, which
    are the participant's balances now."""
    start_ns = session.entries[int(len(session.entries) * fraction)].time_ns
    for participant in range(1, TRADERS + 1):
        for statement in (ledger.statement(participant), ledger.statement(participant, start_ns)):
            running = {asset: list(balances) for asset, balances in statement.opening.items()}
            for line in statement.lines:
                balances = running[line.asset]
                balances[0] += line.available_change
                balances[1] += line.reserved_change
                assert balances == [line.available, line.reserved], line
            assert {a: tuple(b) for a, b in running.items()} == statement.closing
            for asset, closing in statement.closing.items():
                assert closing == ledger.balance(participant, asset)
