"""Alembic environment of the clearing ledger.

`clearing.ledger.migrate` runs it programmatically and hands over its own connection in
`config.attributes["connection"]`, so no `alembic.ini` is needed. Offline (`--sql`) and
stand-alone runs read `sqlalchemy.url` from the config instead.
"""

from __future__ import annotations

from alembic import context
from sqlalchemy import Connection, create_engine

# Its own version table, so the ledger can share a database with other components.
VERSION_TABLE = "ledger_alembic_version"


def _url() -> str:
    url = context.config.get_main_option("sqlalchemy.url")
    if not url:
        raise RuntimeError("no connection was handed in and no sqlalchemy.url is configured")
    return url


def _run(connection: Connection) -> None:
    context.configure(connection=connection, version_table=VERSION_TABLE)
    with context.begin_transaction():
        context.run_migrations()


def run_offline() -> None:
    context.configure(url=_url(), literal_binds=True, version_table=VERSION_TABLE)
    with context.begin_transaction():
        context.run_migrations()


def run_online() -> None:
    connection = context.config.attributes.get("connection")
    if connection is not None:
        _run(connection)
        return
    engine = create_engine(_url())
    try:
        with engine.begin() as owned:
            _run(owned)
    finally:
        engine.dispose()


if context.is_offline_mode():
    run_offline()
else:
    run_online()
