"""The pipeline's Alembic history creates exactly the tables its modules declare."""

from __future__ import annotations

from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import create_engine

from steward.pipeline.schema import VERSION_TABLE, load_metadata, migrate
from tests.e2e.harness import database_url


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_migrations_match_the_models(backend: str, tmp_path: Path) -> None:
    with database_url(backend, tmp_path, "pipeline_schema") as url:
        engine = create_engine(url)
        try:
            migrate(engine)
            migrate(engine)  # idempotent
            with engine.connect() as conn:
                context = MigrationContext.configure(
                    conn, opts={"version_table": VERSION_TABLE, "compare_type": True})
                diff = compare_metadata(context, load_metadata())
            ours = [d for d in diff if "steward_" in repr(d) and "version" not in repr(d)
                    and "remove_table" not in repr(d)]
            assert ours == []
        finally:
            engine.dispose()
