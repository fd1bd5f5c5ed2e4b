"""Alembic environment: run by ``Store.migrate()`` on a connection it passes in.

There is no alembic.ini: the caller puts the open connection into
``config.attributes["connection"]`` and the script location into the config, so migrations
run inside the caller's transaction (and, on PostgreSQL, under its advisory lock).
"""

from __future__ import annotations

from alembic import context
from sqlalchemy import Connection

from steward.store.models import Base

config = context.config


def run_migrations_online() -> None:
    connection = config.attributes.get("connection")
    if not isinstance(connection, Connection):
        raise RuntimeError("run migrations through steward.store.Store.migrate()")
    context.configure(
        connection=connection,
        target_metadata=Base.metadata,
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


if context.is_offline_mode():
    raise RuntimeError("offline (SQL script) migrations are not supported")
run_migrations_online()
