"""The clearing ledger in SQL: double-entry, immutable, idempotent, a projection of the journal.

The in-memory accounts (`clearing.accounts`) decide; this ledger is the durable, queryable record
a clearing house and its auditors rely on. TigerBeetle's model is the reference:

- An *account* belongs to one (participant, asset, kind): `available` and `reserved` custody
  balances per participant, the fee account (participant `FEE_ACCOUNT`, `available`), and per
  asset the exchange's `external` account, the other side of every deposit and withdrawal, whose
  balance goes negative by exactly what is in custody. With shards, cash moved to or from
  another shard goes through the exchange's `in_transit` account instead: a transfer out
  credits it, a transfer in debits it (so it holds what left this shard minus what arrived; it
  may be negative, like `external`). Every account keeps a running balance.
- A *transfer* debits one account and credits another with a positive integer amount of one
  asset; it never changes once written. Its id is derived from the journal sequence of the
  command that caused it and its index within that command (`transfer_id`), so applying the
  same command twice can never write it twice. Each transfer also records both accounts'
  balances after it, which is what a statement's running balances are. A transfer between
  shards also keeps the core's own transfer id (a string) and the other shard, in
  `shard_transfers` under the ledger transfer's id.
- A trade settles as linked transfers (cash buyer -> seller, goods seller -> buyer, fees and the
  buyer's unused hold) written in one database transaction with the trade's own row.
- `ledger_state.last_applied_sequence` is updated in the same transaction as the rows it
  covers, with a guard on its previous value: a batch takes effect exactly once, even if the
  process dies between batches or two writers race.

Invariants (`check`): for every asset the sum of all balances is zero; no participant balance is
negative; every running balance equals the sum of its account's transfers; every transfer
between shards keeps its transfer id; and, given the in-memory accounts at the same sequence,
the SQL balances equal them (and the in-transit balances the core's own transfers).

The same SQLAlchemy Core code runs on SQLite (WAL; the embedded default, a file in the data dir)
and on PostgreSQL through psycopg 3 (`postgresql+psycopg://...`); only the bulk insert differs
(binary COPY on PostgreSQL, multi-row INSERTs elsewhere). Alembic migrations run before first
use. Writes are batched: one transaction per batch of commands, rows inserted in bulk, each
touched account updated once per batch by its aggregated delta. A batch is planned first
(`prepare`: ids, rows, running balances, invariants, and on PostgreSQL the COPY data, which
psycopg formats in C) and written after (`commit`), so planning the next batch can overlap
writing this one.

Limits: a transfer id holds 20 bits of index, so at most 2**20 transfers per command and
journal sequences below 2**43; balances are BIGINT (checked before every write).
"""

from __future__ import annotations

import collections
import contextlib
import io
import itertools
import sqlite3
import threading
from collections.abc import Iterable, Iterator, Mapping, Sequence
from enum import StrEnum
from pathlib import Path
from typing import Any, Final

import msgspec
import numpy as np
import psycopg
import psycopg.copy
from sqlalchemy import (
    BigInteger,
    Column,
    Connection,
    Engine,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    UniqueConstraint,
    and_,
    bindparam,
    create_engine,
    event,
    func,
    select,
    update,
)
from sqlalchemy.engine import make_url

from clearing.accounts import FEE_ACCOUNT

__all__ = [
    "EXTERNAL_ACCOUNT",
    "FEE_PARTICIPANT",
    "AccountKind",
    "FillRow",
    "FillsPage",
    "Ledger",
    "LedgerEntry",
    "LedgerError",
    "LedgerGap",
    "LedgerInvariantError",
    "LedgerReport",
    "LedgerStateMoved",
    "Posting",
    "PreparedBatch",
    "ShardTransferRow",
    "Statement",
    "StatementLine",
    "TradeRow",
    "TransferCode",
    "default_database_url",
    "migrate",
    "normalize_database_url",
    "transfer_id",
]

# The exchange's external and in-transit accounts (one of each per asset) belong to participant
# 0, kinds `external` and `in_transit`; the fee account is the `available` VND account of
# `FEE_ACCOUNT` (also participant 0).
EXTERNAL_ACCOUNT: Final = 0
FEE_PARTICIPANT: Final = FEE_ACCOUNT
# A transfer id is `sequence << TRANSFER_INDEX_BITS | index within the command`.
TRANSFER_INDEX_BITS: Final = 20
MAX_TRANSFERS_PER_COMMAND: Final = 1 << TRANSFER_INDEX_BITS
MAX_SEQUENCE: Final = (1 << (63 - TRANSFER_INDEX_BITS)) - 1
MAX_BALANCE: Final = (1 << 63) - 1  # BIGINT, on both databases
MAX_ENTRIES_PER_APPLY: Final = 100_000
MAX_STATEMENT_LINES: Final = 100_000
MAX_FILLS_PAGE: Final = 1_000
MAX_REPORTED_PROBLEMS: Final = 100
SQLITE_FILE_NAME: Final = "ledger.sqlite3"
MIGRATIONS_DIR: Final = Path(__file__).resolve().parent / "migrations"


class AccountKind(StrEnum):
    AVAILABLE = "available"
    RESERVED = "reserved"
    EXTERNAL = "external"
    IN_TRANSIT = "in_transit"


# A participant's custody accounts; the others (`external`, `in_transit`) are the exchange's
# own, the other side of cash and goods entering or leaving this shard's custody: they may go
# negative and no participant sees them.
_CUSTODY_KINDS: Final = (AccountKind.AVAILABLE.value, AccountKind.RESERVED.value)


class TransferCode(StrEnum):
    """Why money or goods moved; TigerBeetle's `code`."""

    DEPOSIT = "deposit"  # external -> participant available
    WITHDRAWAL = "withdrawal"  # participant available -> external
    HOLD = "hold"  # available -> reserved, for an order
    RELEASE = "release"  # reserved -> available, what an order's hold no longer needs
    PAYMENT = "payment"  # buyer reserved -> seller available, the trade's notional
    BUYER_FEE = "buyer_fee"  # buyer reserved -> fee account
    SELLER_FEE = "seller_fee"  # seller available -> fee account
    EXCESS_HOLD = "excess_hold"  # buyer reserved -> buyer available, released by a fill
    DELIVERY = "delivery"  # seller reserved -> buyer available, the goods
    DELIVERY_IN = "delivery_in"  # external -> owner available: goods inspected into custody
    DELIVERY_OUT = "delivery_out"  # owner available -> external: goods delivered out
    TRANSFER_OUT = "transfer_out"  # participant available -> in transit: cash to another shard
    TRANSFER_IN = "transfer_in"  # in transit -> participant available: cash from another shard


# --------------------------------------------------------------------------------------------
# Input: what the exchange's ledger feed builds from the core's events.


class Posting(msgspec.Struct, frozen=True, array_like=True, gc=False):
    """One transfer to write: `amount` of `asset` from the debit account to the credit account."""

    code: TransferCode
    asset: str
    amount: int
    debit_participant_id: int
    debit_kind: AccountKind
    credit_participant_id: int
    credit_kind: AccountKind
    reference_id: int = 0  # the order (holds, releases) or trade (settlement) it belongs to


class TradeRow(msgspec.Struct, frozen=True, array_like=True, gc=False):
    """Both sides of one trade, as settled."""

    trade_id: int
    symbol: str
    price: int
    quantity: int
    notional_vnd: int
    aggressor_side: str  # "buy" or "sell"
    buyer_id: int
    seller_id: int
    buy_order_id: int
    sell_order_id: int
    buyer_fee_vnd: int
    seller_fee_vnd: int


class ShardTransferRow(msgspec.Struct, frozen=True, array_like=True, gc=False):
    """What a transfer between shards was, beside its posting (the `index`-th of its entry)."""

    index: int
    shard_transfer_id: str  # the core's transfer id, the same on both shards
    other_shard: str  # where the cash went (transfer out) or came from (transfer in)


class LedgerEntry(msgspec.Struct, frozen=True, gc=False):
    """Everything one journaled command moved. Commands that move nothing still advance the
    ledger's sequence, so every sequence is accounted for and gaps are caught."""

    sequence: int
    time_ns: int
    postings: Sequence[Posting] = ()
    trades: Sequence[TradeRow] = ()
    shard_transfers: Sequence[ShardTransferRow] = ()


# --------------------------------------------------------------------------------------------
# Output.


class StatementLine(msgspec.Struct, frozen=True):
    """One transfer touching the participant, with its balances of that asset after it."""

    transfer_id: int
    sequence: int
    time_ns: int
    code: str
    asset: str
    reference_id: int
    available_change: int
    reserved_change: int
    available: int
    reserved: int
    # A transfer between shards: the core's transfer id and the other shard ("" otherwise).
    shard_transfer_id: str = ""
    other_shard: str = ""


class Statement(msgspec.Struct, frozen=True):
    participant_id: int
    start_ns: int
    end_ns: int
    opening: dict[str, tuple[int, int]]  # asset -> (available, reserved) before start_ns
    closing: dict[str, tuple[int, int]]  # asset -> (available, reserved) after the last line
    lines: list[StatementLine]
    truncated: bool  # more than `limit` lines fell in the period


class FillRow(msgspec.Struct, frozen=True):
    """One side of one trade, as the participant on that side sees it."""

    trade_id: int
    order_id: int
    symbol: str
    side: str
    price: int
    quantity: int
    liquidity: str  # "maker" or "taker"
    fee_vnd: int
    sequence: int
    time_ns: int


class FillsPage(msgspec.Struct, frozen=True):
    fills: list[FillRow]
    next_cursor: int | None  # pass as `cursor` for the next (older) page; None: no more


class LedgerReport(msgspec.Struct, frozen=True):
    """What `check` found; `ok` only when `problems` is empty."""

    ok: bool
    last_applied_sequence: int
    accounts: int
    transfers: int
    trades: int
    asset_totals: dict[str, int]  # sum of all balances per asset (must be 0)
    compared_with_memory: bool
    problems: list[str]

    def text(self) -> str:
        lines = [
            f"ok: {str(self.ok).lower()}",
            f"last applied sequence: {self.last_applied_sequence:,}",
            f"accounts: {self.accounts:,}  transfers: {self.transfers:,}  trades: {self.trades:,}",
            "sum of balances per asset: "
            + (", ".join(f"{a} {t}" for a, t in sorted(self.asset_totals.items())) or "none"),
            "compared with the in-memory accounts: "
            + ("yes" if self.compared_with_memory else "no"),
        ]
        lines += [f"problem: {problem}" for problem in self.problems]
        return "\n".join(lines)


class LedgerError(Exception):
    pass


class LedgerGap(LedgerError):
    """A batch does not continue from the last applied sequence: something was skipped."""

    def __init__(self, last_applied: int, first_given: int) -> None:
        super().__init__(
            f"the ledger is at sequence {last_applied}; the batch starts at {first_given}"
        )
        self.last_applied = last_applied
        self.first_given = first_given


class LedgerStateMoved(LedgerError):
    """The ledger is not at the sequence a prepared batch continues from: another writer?"""


class _NotWhereExpected(Exception):
    """Rolls back a write whose guard found the ledger at another sequence."""


class LedgerInvariantError(LedgerError):
    """A batch would break the ledger's rules (a negative balance, a bad transfer): a bug
    upstream, never a database problem. Nothing of the batch was written."""


# --------------------------------------------------------------------------------------------
# Schema, as the code uses it (the migrations in `clearing/migrations` create it).

# BIGINT, but on SQLite `INTEGER PRIMARY KEY`: the rowid itself, with no separate index.
_ID: Final = BigInteger().with_variant(Integer(), "sqlite")
metadata = MetaData()
accounts_table = Table(
    "accounts",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=False),
    Column("participant_id", BigInteger, nullable=False),
    Column("asset", String(32), nullable=False),
    Column("kind", String(16), nullable=False),
    Column("balance", BigInteger, nullable=False),
    UniqueConstraint("participant_id", "asset", "kind", name="uq_accounts_owner"),
)
transfers_table = Table(
    "transfers",
    metadata,
    Column("id", _ID, primary_key=True, autoincrement=False),
    Column("sequence", BigInteger, nullable=False),
    Column("time_ns", BigInteger, nullable=False),
    Column("code", String(16), nullable=False),
    Column("asset", String(32), nullable=False),
    Column("debit_account_id", Integer, nullable=False),
    Column("credit_account_id", Integer, nullable=False),
    Column("amount", BigInteger, nullable=False),
    Column("reference_id", BigInteger, nullable=False),
    Column("debit_balance", BigInteger, nullable=False),
    Column("credit_balance", BigInteger, nullable=False),
    # A statement reads one participant's accounts over a range of ids, on either side (time
    # never goes backwards as ids grow, so a period is a range of ids: see `_first_id_at`).
    Index("ix_transfers_debit", "debit_account_id", "id"),
    Index("ix_transfers_credit", "credit_account_id", "id"),
)
trades_table = Table(
    "trades",
    metadata,
    Column("trade_id", _ID, primary_key=True, autoincrement=False),
    Column("sequence", BigInteger, nullable=False),
    Column("time_ns", BigInteger, nullable=False),
    Column("symbol", String(32), nullable=False),
    Column("price", BigInteger, nullable=False),
    Column("quantity", BigInteger, nullable=False),
    Column("notional_vnd", BigInteger, nullable=False),
    Column("aggressor_side", String(4), nullable=False),
    Column("buyer_id", BigInteger, nullable=False),
    Column("seller_id", BigInteger, nullable=False),
    Column("buy_order_id", BigInteger, nullable=False),
    Column("sell_order_id", BigInteger, nullable=False),
    Column("buyer_fee_vnd", BigInteger, nullable=False),
    Column("seller_fee_vnd", BigInteger, nullable=False),
    Index("ix_trades_buyer", "buyer_id", "trade_id"),
    Index("ix_trades_seller", "seller_id", "trade_id"),
    Index("ix_trades_symbol_time", "symbol", "time_ns"),
)
shard_transfers_table = Table(
    "shard_transfers",
    metadata,
    Column("id", _ID, primary_key=True, autoincrement=False),  # the ledger transfer's id
    Column("shard_transfer_id", String(64), nullable=False),
    Column("other_shard", String(32), nullable=False),
    Index("ix_shard_transfers_shard_transfer_id", "shard_transfer_id"),
)
state_table = Table(
    "ledger_state",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=False),
    Column("last_applied_sequence", BigInteger, nullable=False),
    Column("last_applied_time_ns", BigInteger, nullable=False),
)

_MAX_UPDATES_PER_STATEMENT: Final = 1_000
_MAX_IDS_PER_QUERY: Final = 1_000  # in one `IN (...)` list
_SQLITE_CHECKPOINT_PAGES: Final = 10_000
_SQLITE_MAX_VARIABLES: Final = 32_766 if sqlite3.sqlite_version_info >= (3, 32) else 999
_ACCOUNT_COLUMNS: Final = ("id", "participant_id", "asset", "kind", "balance")
# PostgreSQL's binary COPY needs each column's wire type.
_COPY_TYPES: Final = {
    table.name: [
        "int8"
        if isinstance(c.type, BigInteger)
        else "int4"
        if isinstance(c.type, Integer)
        else "text"
        for c in table.columns
    ]
    for table in (accounts_table, transfers_table, trades_table, shard_transfers_table)
}
# Every table a batch inserts into, in the order it does.
_INSERTED_TABLES: Final = (accounts_table, transfers_table, trades_table, shard_transfers_table)
_TABLES_IN_ORDER: Final = (*_INSERTED_TABLES, state_table)
# A batch's balance changes, by account id, in one statement: built with SQLAlchemy's `case`
# they cost more to compile each time than to run.
_PG_UPDATE_BALANCES: Final = (
    "UPDATE accounts AS a SET balance = a.balance + d.delta"
    " FROM unnest(%s::integer[], %s::bigint[]) AS d(id, delta) WHERE a.id = d.id"
)
_SQLITE_UPDATE_BALANCES: Final = (
    "WITH d(id, delta) AS (VALUES {pairs}) UPDATE accounts"
    " SET balance = balance + (SELECT d.delta FROM d WHERE d.id = accounts.id)"
    " WHERE id IN (SELECT id FROM d)"
)

AccountKey = tuple[int, str, str]  # participant id, asset, kind


def transfer_id(sequence: int, index: int) -> int:
    """The id of the `index`-th transfer caused by the command at journal `sequence`."""
    return sequence << TRANSFER_INDEX_BITS | index


def default_database_url(data_dir: Path) -> str:
    """The embedded default: a SQLite file inside the exchange's data directory."""
    return f"sqlite:///{(Path(data_dir) / SQLITE_FILE_NAME).resolve()}"


def normalize_database_url(url: str) -> str:
    """`postgresql://` and `postgres://` mean PostgreSQL through psycopg 3."""
    for prefix in ("postgres://", "postgresql://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix) :]
    return url


def migrate(engine: Engine) -> None:
    """Bring the schema to the newest revision (Alembic, configured here: no ini file)."""
    from alembic import command
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    with engine.begin() as connection:
        config.attributes["connection"] = connection
        command.upgrade(config, "head")


# --------------------------------------------------------------------------------------------
# The plan of one batch: pure Python, computed before touching the database.


class PreparedBatch:
    """One batch turned into rows and balance changes by `Ledger.prepare`, ready to commit.

    It continues the batch prepared before it (`previous_sequence`), so batches are committed
    in the order they were prepared; committing the same one again is harmless."""

    __slots__ = (
        "account_values",
        "balance_updates",
        "balances",
        "copy_data",
        "first_sequence",
        "last_sequence",
        "last_time_ns",
        "new_accounts",
        "previous_sequence",
        "shard_transfer_values",
        "trade_values",
        "transfer_values",
    )

    def __init__(self) -> None:
        self.previous_sequence = 0
        self.first_sequence = 0
        # Rows flattened into one list per table (row after row, column after column): one
        # long-lived object instead of one tuple per row keeps the garbage collector quiet.
        self.account_values: list[Any] = []
        self.new_accounts: dict[AccountKey, int] = {}
        self.transfer_values: list[Any] = []
        self.trade_values: list[Any] = []
        self.shard_transfer_values: list[Any] = []
        # PostgreSQL: each table's rows as binary COPY data, formatted by the planner so that
        # the writer only sends them (the values lists are then emptied).
        self.copy_data: dict[str, bytes] = {}
        self.balances: dict[int, int] = {}  # account id -> balance after the batch (all of them)
        self.balance_updates: dict[int, int] = {}  # account id -> delta, existing accounts
        self.last_sequence = 0
        self.last_time_ns = 0

    def inserts(self) -> tuple[tuple[Table, list[Any]], ...]:
        """Each table the batch inserts into, with its flattened rows, in `_INSERTED_TABLES`
        order."""
        values = (
            self.account_values,
            self.transfer_values,
            self.trade_values,
            self.shard_transfer_values,
        )
        return tuple(zip(_INSERTED_TABLES, values, strict=True))


class _Accounts:
    """Which id each account has and its committed balance: a cache of the accounts table,
    rebuilt from the database whenever a write might have failed halfway."""

    __slots__ = ("balances", "ids", "kinds", "next_id")

    def __init__(self, rows: Iterable[Sequence[Any]] = ()) -> None:
        self.ids: dict[AccountKey, int] = {}
        self.kinds: dict[int, str] = {}
        self.balances: dict[int, int] = {}
        self.next_id = 1
        for account_id, participant_id, asset, kind, balance in rows:
            self.ids[(participant_id, asset, kind)] = account_id
            self.kinds[account_id] = kind
            self.balances[account_id] = balance
            self.next_id = max(self.next_id, account_id + 1)

    def adopt(self, plan: PreparedBatch) -> None:
        """The accounts once `plan` is committed (`_plan` already added its new accounts)."""
        self.balances = plan.balances


def _plan(entries: Sequence[LedgerEntry], accounts: _Accounts) -> PreparedBatch:
    """Turn entries into rows: assigns account ids in order of first use (so a rebuild from the
    journal assigns the same ones) and computes every balance after every transfer.

    Adds the new accounts to `accounts.ids` as it goes: on any error the caller must drop
    `accounts` (a projection) and re-read the database."""
    plan = PreparedBatch()
    ids, kinds, committed = accounts.ids, accounts.kinds, accounts.balances
    balances = dict(committed)  # a working copy: cheaper than tracking what was touched
    new_accounts, values, trade_values = plan.new_accounts, plan.transfer_values, plan.trade_values
    shard_transfer_values = plan.shard_transfer_values
    next_id = accounts.next_id
    for entry in entries:
        sequence, time_ns, postings = entry.sequence, entry.time_ns, entry.postings
        base = sequence << TRANSFER_INDEX_BITS
        if len(postings) > MAX_TRANSFERS_PER_COMMAND:
            raise LedgerInvariantError(f"sequence {sequence}: too many transfers")
        for index, posting in enumerate(postings):
            amount, asset = posting.amount, posting.asset
            if amount <= 0:
                raise LedgerInvariantError(f"sequence {sequence}: amount {amount!r} <= 0")
            debit = ids.get((posting.debit_participant_id, asset, posting.debit_kind))
            if debit is None:
                key = (posting.debit_participant_id, asset, posting.debit_kind)
                debit = ids[key] = new_accounts[key] = next_id
                kinds[debit], balances[debit] = key[2], 0
                next_id += 1
            credit = ids.get((posting.credit_participant_id, asset, posting.credit_kind))
            if credit is None:
                key = (posting.credit_participant_id, asset, posting.credit_kind)
                credit = ids[key] = new_accounts[key] = next_id
                kinds[credit], balances[credit] = key[2], 0
                next_id += 1
            if debit == credit:
                raise LedgerInvariantError(f"sequence {sequence}: debit and credit are one account")
            debit_balance = balances[debit] - amount
            balances[debit] = debit_balance
            credit_balance = balances[credit] + amount
            balances[credit] = credit_balance
            values += (
                base | index, sequence, time_ns, posting.code, asset, debit, credit, amount,
                posting.reference_id, debit_balance, credit_balance,
            )  # fmt: skip
        for trade in entry.trades:
            trade_values += (
                trade.trade_id, sequence, time_ns, trade.symbol, trade.price, trade.quantity,
                trade.notional_vnd, trade.aggressor_side, trade.buyer_id, trade.seller_id,
                trade.buy_order_id, trade.sell_order_id, trade.buyer_fee_vnd,
                trade.seller_fee_vnd,
            )  # fmt: skip
        for row in entry.shard_transfers:
            if not 0 <= row.index < len(postings):
                raise LedgerInvariantError(f"sequence {sequence}: no transfer {row.index}")
            shard_transfer_values += (base | row.index, row.shard_transfer_id, row.other_shard)
    accounts.next_id = next_id
    plan.balances = balances
    plan.balance_updates = {
        account_id: balance - committed[account_id]
        for account_id, balance in balances.items()
        if account_id in committed and balance != committed[account_id]
    }
    _check_balances(plan, accounts)
    for (participant_id, asset, kind), account_id in new_accounts.items():
        plan.account_values += (account_id, participant_id, asset, str(kind), balances[account_id])
    plan.previous_sequence = entries[0].sequence - 1
    plan.first_sequence = entries[0].sequence
    plan.last_sequence = entries[-1].sequence
    plan.last_time_ns = entries[-1].time_ns
    return plan


def _check_balances(plan: PreparedBatch, accounts: _Accounts) -> None:
    """A participant balance never ends a batch negative; nothing leaves BIGINT."""
    changed = itertools.chain(plan.balance_updates, plan.new_accounts.values())
    for account_id in changed:
        balance = plan.balances[account_id]
        if not -MAX_BALANCE <= balance <= MAX_BALANCE:
            raise LedgerInvariantError(f"account {account_id}: balance {balance} leaves BIGINT")
        if balance < 0 and accounts.kinds[account_id] in _CUSTODY_KINDS:
            raise LedgerInvariantError(f"account {account_id} would go negative: {balance}")


# --------------------------------------------------------------------------------------------
# The ledger.


class Ledger:
    """The SQL ledger of one exchange. Thread-safe: one writer at a time, any number of readers.

    Creating it does not connect: the schema is migrated on first use, so an exchange can start
    (and keep trading) while the database is still down. `Ledger.open` connects at once.
    """

    def __init__(self, url: str, *, sqlite_busy_timeout_ms: int = 2_000) -> None:
        self.url = normalize_database_url(url)
        self.engine = _create_engine(self.url, sqlite_busy_timeout_ms)
        self.is_postgresql = self.engine.dialect.name == "postgresql"
        self._prepare_lock = threading.Lock()
        self._commit_lock = threading.Lock()
        self._ready_lock = threading.Lock()
        self._migrated = False
        # The accounts as they will be once every prepared batch is committed (None: re-read
        # from the database before the next prepare), and the last sequence prepared.
        self._projected: _Accounts | None = None
        self._prepared_sequence = 0

    @classmethod
    def open(cls, url: str, **options: Any) -> Ledger:
        ledger = cls(url, **options)
        ledger.ensure_ready()
        return ledger

    def close(self) -> None:
        self.engine.dispose()

    def __repr__(self) -> str:
        return f"Ledger({make_url(self.url).render_as_string(hide_password=True)!r})"

    def ensure_ready(self) -> None:
        """Apply the migrations once (raises the database's error while it is unreachable)."""
        if self._migrated:
            return
        with self._ready_lock:
            if not self._migrated:
                migrate(self.engine)
                self._migrated = True

    # ------------------------------------------------------------------ writing

    def apply(self, entries: Sequence[LedgerEntry]) -> int:
        """Write the entries after the last applied sequence in one transaction; returns the
        last applied sequence. Entries at or below it are skipped (idempotent); the first new
        one must follow it directly (`LedgerGap` otherwise). On any error nothing is written."""
        for _attempt in range(3):
            batch = self.prepare(entries)
            if batch is None:
                return self._prepared_sequence
            try:
                return self.commit(batch)
            except LedgerStateMoved:
                continue  # another writer got there first: re-read and go again
            except BaseException:
                self.forget_prepared()
                raise
        raise LedgerError("the ledger's state keeps moving: is another writer running?")

    def prepare(self, entries: Sequence[LedgerEntry]) -> PreparedBatch | None:
        """Turn the entries after the last prepared sequence into rows (no database write).

        Batches may be prepared ahead of their commits (a pipeline: the next batch is planned
        while the database writes this one); they must then be committed in order. Returns None
        when every entry is already applied or prepared. On PostgreSQL it borrows a pooled
        connection, whose type adapters format the COPY data."""
        if len(entries) > MAX_ENTRIES_PER_APPLY:
            raise ValueError(f"at most {MAX_ENTRIES_PER_APPLY} entries per batch")
        self.ensure_ready()
        with self._prepare_lock:
            projected = self._projected
            if projected is None:
                projected = self._reload()
            new = _new_entries(entries, self._prepared_sequence)
            if not new:
                return None
            try:
                batch = _plan(new, projected)
                if self.is_postgresql:
                    self._format_copy_data(batch)
            except BaseException:
                self._projected = None
                raise
            projected.adopt(batch)
            self._prepared_sequence = batch.last_sequence
            return batch

    def commit(self, batch: PreparedBatch) -> int:
        """Write a prepared batch in one transaction; returns the last applied sequence.

        Safe to call again with the same batch after an error (the commit may or may not have
        happened): the guard on `ledger_state` sees whether it did. `LedgerStateMoved` means
        someone else changed the ledger: every prepared batch is forgotten."""
        with self._commit_lock:
            if self._write(batch):
                return batch.last_sequence
            last = self.last_applied_sequence()
            if last >= batch.last_sequence:
                return last  # an earlier attempt did commit it
            self.forget_prepared()
            raise LedgerStateMoved(
                f"expected the ledger at sequence {batch.previous_sequence}, found {last}"
            )

    def forget_prepared(self) -> None:
        """Drop every prepared batch not yet committed; the next `prepare` re-reads the DB."""
        with self._prepare_lock:
            self._projected = None

    def _format_copy_data(self, batch: PreparedBatch) -> None:
        """Binary COPY data of the batch's rows, formatted by the driver (in C) here in the
        planner's thread: the writer's thread then holds the GIL only to send it, and does not
        keep the database waiting for the next block while the planner runs."""
        with self.engine.connect() as connection, _driver_cursor(connection) as cursor:
            for table, values in batch.inserts():
                if values:
                    batch.copy_data[table.name] = _binary_copy_data(cursor, table, values)
                    values.clear()

    def _reload(self) -> _Accounts:
        with self.engine.connect() as connection:
            last = connection.execute(select(state_table.c.last_applied_sequence)).scalar_one()
            columns = [accounts_table.c[name] for name in _ACCOUNT_COLUMNS]
            projected = _Accounts(connection.execute(select(*columns)).all())
        self._prepared_sequence = last
        self._projected = projected
        return projected

    def _write(self, batch: PreparedBatch) -> bool:
        """One transaction; False (and nothing written) if the ledger is not where the batch
        continues from."""
        try:
            with self.engine.begin() as connection:
                self._write_rows(connection, batch)
        except _NotWhereExpected:
            return False
        return True

    def _write_rows(self, connection: Connection, batch: PreparedBatch) -> None:
        guard = (
            update(state_table)
            .where(
                and_(
                    state_table.c.id == 1,
                    state_table.c.last_applied_sequence == batch.previous_sequence,
                )
            )
            .values(
                last_applied_sequence=batch.last_sequence,
                last_applied_time_ns=batch.last_time_ns,
            )
        )
        if connection.execute(guard).rowcount != 1:
            raise _NotWhereExpected
        for table, values in batch.inserts():
            if self.is_postgresql:
                if table.name in batch.copy_data:
                    self._copy(connection, table, batch.copy_data[table.name])
            else:
                self._insert(connection, table, values)
        if batch.balance_updates:
            self._update_balances(connection, batch.balance_updates)

    def _copy(self, connection: Connection, table: Table, data: bytes) -> None:
        """PostgreSQL: binary COPY, several times faster than any INSERT."""
        names = ", ".join(column.name for column in table.columns)
        sql = f"COPY {table.name} ({names}) FROM STDIN (FORMAT BINARY)"
        with _driver_cursor(connection) as cursor, cursor.copy(sql) as copy:
            copy.write(data)

    def _insert(self, connection: Connection, table: Table, values: list[Any]) -> None:
        """SQLite: rows given flattened (`len(table.columns)` values per row)."""
        if not values:
            return
        width = len(table.columns)
        names = ", ".join(column.name for column in table.columns)
        # One statement per chunk of rows, not `executemany`: the driver would release and
        # re-take the GIL around every row, and each re-take can wait a whole switch interval
        # while another thread is busy.
        row_marks = "(" + ", ".join("?" for _ in table.columns) + ")"
        rows_per_statement = _SQLITE_MAX_VARIABLES // width
        with _driver_cursor(connection) as cursor:
            for start in range(0, len(values), rows_per_statement * width):
                chunk = tuple(values[start : start + rows_per_statement * width])
                marks = ", ".join(itertools.repeat(row_marks, len(chunk) // width))
                cursor.execute(f"INSERT INTO {table.name} ({names}) VALUES {marks}", chunk)

    def _update_balances(self, connection: Connection, updates: dict[int, int]) -> None:
        """Every touched account once, by its delta for the batch (in id order, so that two
        writers never lock accounts in opposite orders)."""
        ids = sorted(updates)
        deltas = [updates[account_id] for account_id in ids]
        with _driver_cursor(connection) as cursor:
            if self.is_postgresql:  # one statement whatever the number of accounts
                cursor.execute(_PG_UPDATE_BALANCES, (ids, deltas))
                return
            for start in range(0, len(ids), _MAX_UPDATES_PER_STATEMENT):
                chunk = ids[start : start + _MAX_UPDATES_PER_STATEMENT]
                pairs = ", ".join(itertools.repeat("(?, ?)", len(chunk)))
                values = itertools.chain.from_iterable(
                    zip(chunk, deltas[start : start + len(chunk)], strict=True)
                )
                cursor.execute(_SQLITE_UPDATE_BALANCES.format(pairs=pairs), tuple(values))

    # ------------------------------------------------------------------ reading

    def last_applied_sequence(self) -> int:
        """The journal sequence the ledger has applied everything up to (read from the DB)."""
        self.ensure_ready()
        with self.engine.connect() as connection:
            last: int = connection.execute(select(state_table.c.last_applied_sequence)).scalar_one()
        return last

    def balances(self) -> dict[tuple[int, str], tuple[int, int]]:
        """(participant, asset) -> (available, reserved); accounts that are all zero omitted."""
        self.ensure_ready()
        with self.engine.connect() as connection:
            return _participant_balances(connection)

    def balance(self, participant_id: int, asset: str) -> tuple[int, int]:
        """(available, reserved) of one participant in one asset."""
        self.ensure_ready()
        a = accounts_table.c
        query = select(a.kind, a.balance).where(
            and_(a.participant_id == participant_id, a.asset == asset)
        )
        with self.engine.connect() as connection:
            found = {kind: balance for kind, balance in connection.execute(query)}
        return found.get(AccountKind.AVAILABLE, 0), found.get(AccountKind.RESERVED, 0)

    def statement(
        self,
        participant_id: int,
        start_ns: int = 0,
        end_ns: int = MAX_BALANCE,
        *,
        limit: int = MAX_STATEMENT_LINES,
    ) -> Statement:
        """Every transfer touching the participant's custody accounts with `start_ns <= time <
        end_ns`, oldest first, with the balances of that asset after each (running balances)."""
        if not 0 < limit <= MAX_STATEMENT_LINES:
            raise ValueError(f"limit must be 1..{MAX_STATEMENT_LINES}")
        self.ensure_ready()
        with self._reading() as connection:
            owned = _custody_accounts(connection, participant_id)
            if not owned:
                return Statement(participant_id, start_ns, end_ns, {}, {}, [], False)
            first = _first_id_at(connection, start_ns)
            end = _first_id_at(connection, end_ns)
            opening_by_account = {
                account_id: _balance_before(connection, account_id, first) for account_id in owned
            }
            rows = _statement_rows(connection, list(owned), first, end, limit + 1)
            shard_transfers = _shard_transfers_of(connection, rows[:limit])
        return _build_statement(
            participant_id, start_ns, end_ns, owned, opening_by_account, rows, limit,
            shard_transfers,
        )  # fmt: skip

    def fills(
        self,
        participant_id: int,
        symbol: str | None = None,
        limit: int = 100,
        cursor: int | None = None,
    ) -> FillsPage:
        """The participant's fills, newest first: trades with `trade_id < cursor`. Both sides of
        a self-trade stay on one page."""
        if not 0 < limit <= MAX_FILLS_PAGE:
            raise ValueError(f"limit must be 1..{MAX_FILLS_PAGE}")
        self.ensure_ready()
        t = trades_table.c
        found: list[FillRow] = []
        with self.engine.connect() as connection:
            for side, owner in (("buy", t.buyer_id), ("sell", t.seller_id)):
                query = select(trades_table).where(owner == participant_id)
                if symbol is not None:
                    query = query.where(t.symbol == symbol)
                if cursor is not None:
                    query = query.where(t.trade_id < cursor)
                query = query.order_by(t.trade_id.desc()).limit(limit + 1)
                found += (_fill_of(row, side) for row in connection.execute(query).mappings())
        found.sort(key=lambda fill: (-fill.trade_id, fill.side))
        page = found[:limit]
        if len(found) > limit and found[limit].trade_id == page[-1].trade_id:
            page.append(found[limit])  # the other side of a self-trade
        more = len(found) > len(page)
        return FillsPage(page, page[-1].trade_id if more else None)

    def audit_trades(
        self,
        *,
        symbol: str | None = None,
        participant_id: int | None = None,
        start_ns: int = 0,
        end_ns: int = MAX_BALANCE,
        from_sequence: int = 0,
        to_sequence: int = MAX_BALANCE,
        after_trade_id: int = 0,
        limit: int = 1_000,
    ) -> list[dict[str, Any]]:
        """Trades with both sides, oldest first, `trade_id > after_trade_id` (keyset paging,
        so a regulator's export of millions of rows is a series of small queries)."""
        if not 0 < limit <= 10_000:
            raise ValueError("limit must be 1..10,000")
        self.ensure_ready()
        t = trades_table.c
        query = select(trades_table).where(
            t.trade_id > after_trade_id,
            t.time_ns >= start_ns,
            t.time_ns < end_ns,
            t.sequence >= from_sequence,
            t.sequence <= to_sequence,
        )
        if symbol is not None:
            query = query.where(t.symbol == symbol)
        if participant_id is not None:
            query = query.where((t.buyer_id == participant_id) | (t.seller_id == participant_id))
        query = query.order_by(t.trade_id).limit(limit)
        with self.engine.connect() as connection:
            result = connection.execute(query)
            names = tuple(result.keys())  # one fetchall and plain zips: exports read millions
            return [dict(zip(names, row, strict=True)) for row in result.fetchall()]

    def trade_series(
        self, symbol: str, start_ns: int, end_ns: int
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Times, prices and quantities of `symbol`'s trades in [start_ns, end_ns), in trade
        order, as int64 arrays: the input of `exchange.candles.ohlcv`."""
        self.ensure_ready()
        t = trades_table.c
        query = (
            select(t.time_ns, t.price, t.quantity)
            .where(t.symbol == symbol, t.time_ns >= start_ns, t.time_ns < end_ns)
            .order_by(t.trade_id)
        )
        with self.engine.connect() as connection:
            rows = connection.execute(query).fetchall()
        series = np.array(rows, dtype=np.int64).reshape(-1, 3)
        return series[:, 0].copy(), series[:, 1].copy(), series[:, 2].copy()

    def rows(self) -> dict[str, list[tuple[Any, ...]]]:
        """Every row of every table, in key order: for tests and audits of small ledgers."""
        self.ensure_ready()
        with self._reading() as connection:
            return {
                table.name: [
                    tuple(row)
                    for row in connection.execute(
                        select(table).order_by(*table.primary_key.columns)
                    )
                ]
                for table in _TABLES_IN_ORDER
            }

    # ------------------------------------------------------------------ checking

    def check(
        self,
        expected_balances: Mapping[tuple[int, str], tuple[int, int]] | None = None,
        *,
        at_sequence: int | None = None,
        expected_in_transit: Mapping[str, int] | None = None,
    ) -> LedgerReport:
        """Verify the invariants in one consistent read:

        - per asset, the sum of all balances (external and in-transit accounts included) is
          zero;
        - no participant balance is negative (the exchange's external and in-transit accounts
          may be);
        - every account's running balance equals credits minus debits of its transfers, and
          every transfer names existing accounts of its own asset;
        - every transfer between shards, and only those, keeps its shard transfer id;
        - with `expected_balances` ((participant, asset) -> (available, reserved), e.g. the
          in-memory accounts), the SQL balances equal them; `at_sequence` says at which journal
          sequence they were taken, and a ledger at another sequence is a problem;
        - with `expected_in_transit` (asset -> cash transferred out of this shard minus cash
          transferred in, by the core's own record), the in-transit accounts hold it.
        """
        self.ensure_ready()
        problems: list[str] = []
        with self._reading() as connection:
            last = connection.execute(select(state_table.c.last_applied_sequence)).scalar_one()
            columns = [accounts_table.c[name] for name in _ACCOUNT_COLUMNS]
            accounts = connection.execute(select(*columns)).all()
            histories = _transfer_sums(connection)
            orphans = _orphan_transfers(connection)
            unnamed = _unnamed_shard_transfers(connection)
            transfers = connection.execute(select(func.count()).select_from(transfers_table))
            transfer_count = transfers.scalar_one()
            trades = connection.execute(select(func.count()).select_from(trades_table))
            trade_count = trades.scalar_one()
        totals: dict[str, int] = {}
        actual: dict[tuple[int, str], tuple[int, int]] = {}
        in_transit: dict[str, int] = {}
        for account_id, participant_id, asset, kind, balance in accounts:
            totals[asset] = totals.get(asset, 0) + balance
            history = histories.pop(account_id, 0)
            if history != balance:
                problems.append(
                    f"account {account_id} ({participant_id} {asset} {kind}) has balance "
                    f"{balance} but its transfers sum to {history}"
                )
            if kind == AccountKind.IN_TRANSIT and balance:
                in_transit[asset] = balance
            if kind not in _CUSTODY_KINDS:
                continue
            if balance < 0:
                problems.append(f"{kind} {asset} of participant {participant_id} is {balance}")
            available, reserved = actual.get((participant_id, asset), (0, 0))
            if kind == AccountKind.AVAILABLE:
                actual[(participant_id, asset)] = (balance, reserved)
            else:
                actual[(participant_id, asset)] = (available, balance)
        problems += [f"transfers name unknown account {account_id}" for account_id in histories]
        if orphans:
            problems.append(f"{orphans} transfers name a missing account or another asset")
        if unnamed:
            problems.append(f"{unnamed} transfers between shards and shard transfer ids unpaired")
        problems += [f"asset {a}: balances sum to {t}, not 0" for a, t in totals.items() if t]
        if at_sequence is not None and at_sequence != last:
            problems.append(
                f"the ledger is at sequence {last}, the expected balances at {at_sequence}"
            )
        if expected_balances is not None:
            problems += _compare(expected_balances, actual)
        if expected_in_transit is not None:
            for asset in sorted(set(expected_in_transit) | set(in_transit)):
                want, got = expected_in_transit.get(asset, 0), in_transit.get(asset, 0)
                if want != got:
                    problems.append(f"in transit {asset}: SQL {got}, in memory {want}")
        return LedgerReport(
            ok=not problems,
            last_applied_sequence=last,
            accounts=len(accounts),
            transfers=transfer_count,
            trades=trade_count,
            asset_totals=dict(sorted(totals.items())),
            compared_with_memory=expected_balances is not None,
            problems=_capped(problems),
        )

    def _reading(self) -> Connection:
        """A connection whose reads all see one snapshot (REPEATABLE READ on PostgreSQL; a
        single read transaction on SQLite in WAL mode)."""
        connection = self.engine.connect()
        if self.is_postgresql:
            connection = connection.execution_options(isolation_level="REPEATABLE READ")
        return connection


# --------------------------------------------------------------------------------------------
# Helpers below the ledger: engine set-up, queries and comparisons.


def _create_engine(url: str, sqlite_busy_timeout_ms: int) -> Engine:
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        database = parsed.database
        if database and database != ":memory:":
            Path(database).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(url)
        _configure_sqlite(engine, sqlite_busy_timeout_ms)
        return engine
    engine = create_engine(url, pool_pre_ping=True, pool_size=4, max_overflow=4)
    _configure_postgresql(engine)
    return engine


def _configure_postgresql(engine: Engine) -> None:
    """No waiting for the WAL flush of each commit, set once per connection rather than once
    per batch: the ledger is rebuilt from the journal and `ledger_state` commits with its rows,
    so a commit lost in a server crash is simply applied again."""

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        with dbapi_connection.cursor() as cursor:
            cursor.execute("SET synchronous_commit TO off")
        dbapi_connection.commit()


def _configure_sqlite(engine: Engine, busy_timeout_ms: int) -> None:
    """WAL, and real transactions: the driver's own transaction handling is switched off so
    that SQLAlchemy's BEGIN covers reads too (one snapshot per `check`)."""

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        # The ledger is rebuilt from the journal, so a power cut may lose its last commits
        # (never corrupt it): NORMAL is enough in WAL mode and much faster than FULL.
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute(f"PRAGMA busy_timeout={int(busy_timeout_ms)}")
        cursor.execute("PRAGMA cache_size=-32768")
        # Checkpoint every 40 MB of WAL rather than 4 MB: a batch rewrites the same index
        # pages (one per account and index), and each checkpoint copies them back and syncs.
        cursor.execute(f"PRAGMA wal_autocheckpoint={_SQLITE_CHECKPOINT_PAGES}")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(connection: Connection) -> None:
        connection.exec_driver_sql("BEGIN")


def _binary_copy_data(cursor: psycopg.Cursor[Any], table: Table, values: list[Any]) -> bytes:
    """Rows given flattened (`len(table.columns)` values per row) as binary COPY data.

    psycopg formats them without a round trip: the cursor only lends its type adapters."""
    buffer = io.BytesIO()
    writer = psycopg.copy.FileWriter(buffer)
    with psycopg.copy.Copy(cursor, binary=True, writer=writer) as copy:
        copy.set_types(_COPY_TYPES[table.name])
        # `zip` of one iterator `width` times groups the values into rows, in C and reusing one
        # tuple; the driver formats each row in C.
        rows = zip(*[iter(values)] * len(table.columns), strict=True)
        collections.deque(map(copy.write_row, rows), maxlen=0)
    return buffer.getvalue()


@contextlib.contextmanager
def _driver_cursor(connection: Connection) -> Iterator[Any]:
    """A cursor of the driver's own connection, inside the connection's transaction: bulk
    writes skip SQLAlchemy's per-statement work."""
    cursor = connection.connection.cursor()
    try:
        yield cursor
    finally:
        cursor.close()


def _new_entries(entries: Sequence[LedgerEntry], last_applied: int) -> Sequence[LedgerEntry]:
    """The entries after `last_applied`, checked to continue it without a gap."""
    start = 0
    while start < len(entries) and entries[start].sequence <= last_applied:
        start += 1
    new = entries[start:]
    expected = last_applied + 1
    for entry in new:
        if entry.sequence != expected:
            raise LedgerGap(expected - 1, entry.sequence)
        expected += 1
    if new and new[-1].sequence > MAX_SEQUENCE:
        raise LedgerInvariantError(f"sequence {new[-1].sequence} is past {MAX_SEQUENCE}")
    return new


def _participant_balances(connection: Connection) -> dict[tuple[int, str], tuple[int, int]]:
    a = accounts_table.c
    query = select(a.participant_id, a.asset, a.kind, a.balance).where(a.kind.in_(_CUSTODY_KINDS))
    found: dict[tuple[int, str], tuple[int, int]] = {}
    for participant_id, asset, kind, balance in connection.execute(query):
        available, reserved = found.get((participant_id, asset), (0, 0))
        if kind == AccountKind.AVAILABLE:
            found[(participant_id, asset)] = (balance, reserved)
        else:
            found[(participant_id, asset)] = (available, balance)
    return {key: value for key, value in found.items() if value != (0, 0)}


def _custody_accounts(connection: Connection, participant_id: int) -> dict[int, tuple[str, str]]:
    """account id -> (asset, kind) of the participant's available and reserved accounts."""
    a = accounts_table.c
    query = select(a.id, a.asset, a.kind).where(
        and_(a.participant_id == participant_id, a.kind.in_(_CUSTODY_KINDS))
    )
    return {account_id: (asset, kind) for account_id, asset, kind in connection.execute(query)}


def _first_id_at(connection: Connection, time_ns: int) -> int:
    """The id of the first transfer at or after `time_ns` (one past the last if none).

    Times never go backwards as ids grow (both follow the journal), so a binary search over
    the primary key finds it in a few dozen index probes, with no index on time to maintain."""
    t = transfers_table.c
    low, high = connection.execute(select(func.min(t.id), func.max(t.id))).one()
    if low is None:
        return 0
    last_time = connection.execute(select(t.time_ns).where(t.id == high)).scalar_one()
    if last_time < time_ns:
        return int(high) + 1
    probe = select(t.id, t.time_ns).where(t.id >= bindparam("at")).order_by(t.id).limit(1)
    # The smallest `x` whose first transfer at or after it is at or after `time_ns`: the first
    # transfer from `high` on is, and the answer is never below `low`.
    while low < high:
        middle = (low + high) // 2
        found_id, found_time = connection.execute(probe, {"at": middle}).one()
        if found_time >= time_ns:
            high = middle
        else:
            low = found_id + 1
    found: int = connection.execute(probe, {"at": low}).one()[0]
    return found


def _balance_before(connection: Connection, account_id: int, before_id: int) -> int:
    """The account's balance after its last transfer before id `before_id` (0 if none)."""
    t = transfers_table.c
    best_id, best_balance = -1, 0
    for account, balance in (
        (t.debit_account_id, t.debit_balance),
        (t.credit_account_id, t.credit_balance),
    ):
        query = (
            select(t.id, balance)
            .where(and_(account == account_id, t.id < before_id))
            .order_by(t.id.desc())
            .limit(1)
        )
        row = connection.execute(query).first()
        if row is not None and row[0] > best_id:
            best_id, best_balance = row[0], row[1]
    return best_balance


def _statement_rows(
    connection: Connection, account_ids: list[int], first_id: int, end_id: int, limit: int
) -> list[Any]:
    """The first `limit` transfers touching the accounts with `first_id <= id < end_id`."""
    t = transfers_table.c
    found: dict[int, Any] = {}
    for account in (t.debit_account_id, t.credit_account_id):
        query = (
            select(transfers_table)
            .where(and_(account.in_(account_ids), t.id >= first_id, t.id < end_id))
            .order_by(t.id)
            .limit(limit)
        )
        for row in connection.execute(query):
            found[row.id] = row
    return [found[key] for key in sorted(found)][:limit]


def _shard_transfers_of(connection: Connection, rows: list[Any]) -> dict[int, tuple[str, str]]:
    """transfer id -> (shard transfer id, other shard) of the transfers between shards among
    `rows` (at most a statement's lines: one query per chunk of them)."""
    codes = (TransferCode.TRANSFER_OUT.value, TransferCode.TRANSFER_IN.value)
    ids = [row.id for row in rows if row.code in codes]
    s = shard_transfers_table.c
    found: dict[int, tuple[str, str]] = {}
    for start in range(0, len(ids), _MAX_IDS_PER_QUERY):
        query = select(s.id, s.shard_transfer_id, s.other_shard).where(
            s.id.in_(ids[start : start + _MAX_IDS_PER_QUERY])
        )
        for transfer, shard_transfer_id, other_shard in connection.execute(query):
            found[transfer] = (shard_transfer_id, other_shard)
    return found


def _build_statement(
    participant_id: int,
    start_ns: int,
    end_ns: int,
    owned: dict[int, tuple[str, str]],
    opening_by_account: dict[int, int],
    rows: list[Any],
    limit: int,
    shard_transfers: dict[int, tuple[str, str]],
) -> Statement:
    running: dict[str, list[int]] = {}  # asset -> [available, reserved]
    for account_id, (asset, kind) in owned.items():
        balances = running.setdefault(asset, [0, 0])
        balances[0 if kind == AccountKind.AVAILABLE else 1] = opening_by_account[account_id]
    opening = {asset: (b[0], b[1]) for asset, b in sorted(running.items())}
    lines = []
    for row in rows[:limit]:
        changes = [0, 0]
        balances = running[row.asset]
        for account_id, sign, after in (
            (row.debit_account_id, -1, row.debit_balance),
            (row.credit_account_id, 1, row.credit_balance),
        ):
            owner = owned.get(account_id)
            if owner is not None:
                slot = 0 if owner[1] == AccountKind.AVAILABLE else 1
                changes[slot] += sign * row.amount
                balances[slot] = after
        lines.append(
            StatementLine(
                row.id,
                row.sequence,
                row.time_ns,
                row.code,
                row.asset,
                row.reference_id,
                changes[0],
                changes[1],
                balances[0],
                balances[1],
                *shard_transfers.get(row.id, ("", "")),
            )
        )
    closing = {asset: (b[0], b[1]) for asset, b in sorted(running.items())}
    return Statement(participant_id, start_ns, end_ns, opening, closing, lines, len(rows) > limit)


def _fill_of(row: Any, side: str) -> FillRow:
    buying = side == "buy"
    taker = row["aggressor_side"] == side
    return FillRow(
        trade_id=row["trade_id"],
        order_id=row["buy_order_id"] if buying else row["sell_order_id"],
        symbol=row["symbol"],
        side=side,
        price=row["price"],
        quantity=row["quantity"],
        liquidity="taker" if taker else "maker",
        fee_vnd=row["buyer_fee_vnd"] if buying else row["seller_fee_vnd"],
        sequence=row["sequence"],
        time_ns=row["time_ns"],
    )


def _transfer_sums(connection: Connection) -> dict[int, int]:
    """account id -> credits minus debits over all its transfers."""
    t = transfers_table.c
    sums: dict[int, int] = {}
    for account, sign in ((t.debit_account_id, -1), (t.credit_account_id, 1)):
        query = select(account, func.sum(t.amount)).group_by(account)
        for account_id, total in connection.execute(query):
            sums[account_id] = sums.get(account_id, 0) + sign * int(total)
    return sums


def _orphan_transfers(connection: Connection) -> int:
    """Transfers whose accounts are missing or hold another asset than the transfer moves."""
    t, a = transfers_table.c, accounts_table.alias("a")
    total = 0
    for account in (t.debit_account_id, t.credit_account_id):
        query = (
            select(func.count())
            .select_from(transfers_table.outerjoin(a, a.c.id == account))
            .where((a.c.id.is_(None)) | (a.c.asset != t.asset))
        )
        total += connection.execute(query).scalar_one()
    return total


def _unnamed_shard_transfers(connection: Connection) -> int:
    """Transfers between shards without their `shard_transfers` row, plus rows of that table
    that name no transfer between shards."""
    t, s = transfers_table.c, shard_transfers_table.c
    codes = (TransferCode.TRANSFER_OUT.value, TransferCode.TRANSFER_IN.value)
    unnamed = (
        select(func.count())
        .select_from(transfers_table.outerjoin(shard_transfers_table, s.id == t.id))
        .where(t.code.in_(codes), s.id.is_(None))
    )
    stray = (
        select(func.count())
        .select_from(shard_transfers_table.outerjoin(transfers_table, t.id == s.id))
        .where(t.id.is_(None) | t.code.not_in(codes))
    )
    return int(connection.execute(unnamed).scalar_one() + connection.execute(stray).scalar_one())


def _compare(
    expected: Mapping[tuple[int, str], tuple[int, int]],
    actual: Mapping[tuple[int, str], tuple[int, int]],
) -> list[str]:
    problems = []
    for key in sorted(set(expected) | set(actual)):
        want = tuple(expected.get(key, (0, 0)))
        got = actual.get(key, (0, 0))
        if want != got:
            problems.append(
                f"participant {key[0]} {key[1]}: SQL (available, reserved) {got}, in memory {want}"
            )
    return problems


def _capped(problems: list[str]) -> list[str]:
    if len(problems) <= MAX_REPORTED_PROBLEMS:
        return problems
    hidden = len(problems) - MAX_REPORTED_PROBLEMS
    return [*problems[:MAX_REPORTED_PROBLEMS], f"... and {hidden} more"]
