"""Alembic environment: run on the connection :func:`steward.server.migrate.migrate` passes.

The version table is the server's own, so the state store's history (in the same database)
never sees these revisions and vice versa.
"""

from __future__ import annotations

from alembic import context

from steward.server.db import VERSION_TABLE, metadata

connection = context.config.attributes["connection"]
context.configure(
    connection=connection,
    target_metadata=metadata,
    version_table=VERSION_TABLE,
    render_as_batch=connection.dialect.name == "sqlite",
)
with context.begin_transaction():
    context.run_migrations()
