"""The double-entry ledger: accounts, transfers, trades and the last applied journal sequence.

Revision ID: 0001
Revises:
Create Date: 2025-01-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

# SQLite makes an `INTEGER PRIMARY KEY` the table's rowid (no separate index); its integers
# are 64-bit anyway.
ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "accounts",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("participant_id", sa.BigInteger, nullable=False),
        sa.Column("asset", sa.String(32), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("balance", sa.BigInteger, nullable=False),
        sa.UniqueConstraint("participant_id", "asset", "kind", name="uq_accounts_owner"),
        sa.CheckConstraint(
            "kind IN ('available', 'reserved', 'external')", name="ck_accounts_kind"
        ),
    )
    op.create_table(
        "transfers",
        sa.Column("id", ID, primary_key=True, autoincrement=False),
        sa.Column("sequence", sa.BigInteger, nullable=False),
        sa.Column("time_ns", sa.BigInteger, nullable=False),
        sa.Column("code", sa.String(16), nullable=False),
        sa.Column("asset", sa.String(32), nullable=False),
        sa.Column("debit_account_id", sa.Integer, nullable=False),
        sa.Column("credit_account_id", sa.Integer, nullable=False),
        sa.Column("amount", sa.BigInteger, nullable=False),
        sa.Column("reference_id", sa.BigInteger, nullable=False),
        sa.Column("debit_balance", sa.BigInteger, nullable=False),
        sa.Column("credit_balance", sa.BigInteger, nullable=False),
        sa.CheckConstraint("amount > 0", name="ck_transfers_amount"),
        sa.CheckConstraint("debit_account_id <> credit_account_id", name="ck_transfers_accounts"),
    )
    op.create_index("ix_transfers_debit", "transfers", ["debit_account_id", "id"], unique=False)
    op.create_index("ix_transfers_credit", "transfers", ["credit_account_id", "id"], unique=False)
    op.create_table(
        "trades",
        sa.Column("trade_id", ID, primary_key=True, autoincrement=False),
        sa.Column("sequence", sa.BigInteger, nullable=False),
        sa.Column("time_ns", sa.BigInteger, nullable=False),
        sa.Column("symbol", sa.String(32), nullable=False),
        sa.Column("price", sa.BigInteger, nullable=False),
        sa.Column("quantity", sa.BigInteger, nullable=False),
        sa.Column("notional_vnd", sa.BigInteger, nullable=False),
        sa.Column("aggressor_side", sa.String(4), nullable=False),
        sa.Column("buyer_id", sa.BigInteger, nullable=False),
        sa.Column("seller_id", sa.BigInteger, nullable=False),
        sa.Column("buy_order_id", sa.BigInteger, nullable=False),
        sa.Column("sell_order_id", sa.BigInteger, nullable=False),
        sa.Column("buyer_fee_vnd", sa.BigInteger, nullable=False),
        sa.Column("seller_fee_vnd", sa.BigInteger, nullable=False),
    )
    op.create_index("ix_trades_buyer", "trades", ["buyer_id", "trade_id"], unique=False)
    op.create_index("ix_trades_seller", "trades", ["seller_id", "trade_id"], unique=False)
    state = op.create_table(
        "ledger_state",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("last_applied_sequence", sa.BigInteger, nullable=False),
        sa.Column("last_applied_time_ns", sa.BigInteger, nullable=False),
        sa.CheckConstraint("id = 1", name="ck_ledger_state_one_row"),
    )
    op.bulk_insert(state, [{"id": 1, "last_applied_sequence": 0, "last_applied_time_ns": 0}])


def downgrade() -> None:
    op.drop_table("ledger_state")
    op.drop_index("ix_trades_seller", table_name="trades")
    op.drop_index("ix_trades_buyer", table_name="trades")
    op.drop_table("trades")
    op.drop_index("ix_transfers_credit", table_name="transfers")
    op.drop_index("ix_transfers_debit", table_name="transfers")
    op.drop_table("transfers")
    op.drop_table("accounts")
