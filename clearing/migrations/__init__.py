"""Alembic migrations of the clearing ledger's schema, applied at start-up by `Ledger`."""
