"""The pipeline's tables: Alembic history ``steward/pipeline/migrations``.

Its version table (``steward_pipeline_version``) is separate from the server's and the state
store's, so each part of the schema evolves on its own in one database.
"""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy import Engine, MetaData, text

VERSION_TABLE = "steward_pipeline_version"
MIGRATIONS = Path(__file__).resolve().parent / "migrations"
#: Serialises concurrent server starts migrating one PostgreSQL database.
_PG_LOCK_KEY = 0x5374_6570
_MODULES = ("steward.pipeline.changes.model", "steward.access.rbac",
            "steward.pipeline.approvals.records", "steward.pipeline.deploy.rollout",
            "steward.pipeline.changes.analyses", "steward.tasks.jobs")


def load_metadata() -> MetaData:
    """The shared metadata with every pipeline module's tables registered on it."""
    import importlib

    from steward.pipeline.tables import metadata

    for module in _MODULES:
        importlib.import_module(module)
    return metadata


def _config() -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.set_main_option("version_table", VERSION_TABLE)
    return config


def migrate(engine: Engine) -> None:
    """Upgrade the pipeline's tables to the newest revision (idempotent)."""
    config = _config()
    with engine.begin() as connection:
        if connection.dialect.name == "postgresql":
            connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _PG_LOCK_KEY})
        config.attributes["connection"] = connection
        command.upgrade(config, "head")


def create_all(engine: Engine) -> None:
    """Tests' and tools' entry point: the same as :func:`migrate`."""
    migrate(engine)
