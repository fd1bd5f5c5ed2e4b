"""Alembic environment of the pipeline's tables (version table ``steward_pipeline_version``).

Run on the connection :func:`steward.pipeline.schema.migrate` passes; the server's and the
state store's histories live in the same database under their own version tables.
"""

from __future__ import annotations

from alembic import context

from steward.pipeline.schema import VERSION_TABLE, load_metadata

connection = context.config.attributes["connection"]
context.configure(
    connection=connection,
    target_metadata=load_metadata(),
    version_table=VERSION_TABLE,
    render_as_batch=connection.dialect.name == "sqlite",
)
with context.begin_transaction():
    context.run_migrations()
