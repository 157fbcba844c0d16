"""Transfers between shards: the exchange's `in_transit` accounts, and each transfer's own id.

Cash moved to another shard goes from the participant to the exchange's `in_transit` account of
the asset, and cash arriving from another shard the other way; `shard_transfers` keeps, under
the ledger transfer's id, the core's transfer id (a string, the same on both shards) and the
other shard.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def _kinds(*kinds: str) -> str:
    return "kind IN (" + ", ".join(f"'{kind}'" for kind in kinds) + ")"


def upgrade() -> None:
    # SQLite cannot alter a constraint: the batch copies the table into a new one (PostgreSQL
    # alters it in place).
    with op.batch_alter_table("accounts") as accounts:
        accounts.drop_constraint("ck_accounts_kind", type_="check")
        accounts.create_check_constraint(
            "ck_accounts_kind", _kinds("available", "reserved", "external", "in_transit")
        )
    op.create_table(
        "shard_transfers",
        sa.Column("id", ID, primary_key=True, autoincrement=False),
        sa.Column("shard_transfer_id", sa.String(64), nullable=False),
        sa.Column("other_shard", sa.String(32), nullable=False),
    )
    op.create_index(
        "ix_shard_transfers_shard_transfer_id",
        "shard_transfers",
        ["shard_transfer_id"],
        unique=False,
    )


def downgrade() -> None:
    op.drop_index("ix_shard_transfers_shard_transfer_id", table_name="shard_transfers")
    op.drop_table("shard_transfers")
    with op.batch_alter_table("accounts") as accounts:
        accounts.drop_constraint("ck_accounts_kind", type_="check")
        accounts.create_check_constraint(
            "ck_accounts_kind", _kinds("available", "reserved", "external")
        )
