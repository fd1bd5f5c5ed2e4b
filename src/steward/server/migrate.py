"""Bring the server's control-plane schema up to date (idempotent; safe at every start)."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy import Engine, text

from steward.server.db import VERSION_TABLE

MIGRATIONS = Path(__file__).resolve().parent / "migrations"
#: Arbitrary constant: serialises concurrent server starts migrating one PostgreSQL database.
_PG_LOCK_KEY = 0x5374_6577


def migrate(engine: Engine) -> None:
    """Upgrade to the newest revision on ``engine``'s database."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.set_main_option("version_table", VERSION_TABLE)
    with engine.begin() as connection:
        if connection.dialect.name == "postgresql":
            connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _PG_LOCK_KEY})
        config.attributes["connection"] = connection
        command.upgrade(config, "head")
