"""Trades by symbol and time: candle history older than the live projection keeps is built
from the ledger's trades, a range scan per request.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-22
"""

from __future__ import annotations

from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_trades_symbol_time", "trades", ["symbol", "time_ns"], unique=False)


def downgrade() -> None:
    op.drop_index("ix_trades_symbol_time", table_name="trades")
