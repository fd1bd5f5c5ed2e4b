"""The server's own control-plane tables, and how its database engine is set up.

These tables (identities and tokens, nodes, enrollment requests, run requests, the audit
log) belong to the server, not to the state store: they have their own Alembic history
(``steward/server/migrations``, version table ``steward_server_version``) so the two schemas
evolve independently in one database. The engine comes from the store's factory
(:func:`steward.store.db.make_engine`) with :data:`SERVER_ENGINE`.
"""

from __future__ import annotations

from sqlalchemy import (
    JSON,
    BigInteger,
    Column,
    Index,
    Integer,
    String,
    Table,
    Text,
)
from sqlalchemy.engine import make_url

from steward.access.tables import SERVER_METADATA
from steward.catalog.redaction import REDACTED
from steward.server.errors import ConfigError
from steward.store.db import EngineOptions, UTCDateTime

VERSION_TABLE = "steward_server_version"

#: The server's engine settings. Its transactions mostly read then write, so on SQLite they
#: take the write lock up front unless opened with ``reading()``, waiting 15 s for it; its
#: JSON columns keep the driver's own text; PostgreSQL gets a larger pool (request handlers
#: and the agents' check-ins share it).
SERVER_ENGINE: EngineOptions = {
    "begin_immediate": True,
    "busy_timeout_ms": 15_000,
    "pool_size": 10,
    "max_overflow": 20,
    "canonical_json": False,
}


metadata = SERVER_METADATA


nodes = Table(
    "steward_nodes",
    metadata,
    Column("certname", String(255), primary_key=True),
    # pending | approved | revoked
    Column("status", String(16), nullable=False),
    # pull | ssh
    Column("transport", String(8), nullable=False, server_default="pull"),
    Column("environment", String(255), nullable=True),
    Column("ssh", JSON, nullable=True),
    Column("requested_at", UTCDateTime(), nullable=True),
    Column("approved_at", UTCDateTime(), nullable=True),
    Column("approved_by", String(255), nullable=True),
    Column("revoked_at", UTCDateTime(), nullable=True),
    Column("revoked_by", String(255), nullable=True),
    Column("last_seen_at", UTCDateTime(), nullable=True),
    Column("last_catalog_hash", String(80), nullable=True),
    Column("last_environment", String(255), nullable=True),
    Column("last_run_at", UTCDateTime(), nullable=True),
)

enrollments = Table(
    "steward_enrollments",
    metadata,
    Column("id", String(32), primary_key=True),
    Column("certname", String(255), nullable=False),
    # pending | approved | rejected | collected
    Column("status", String(16), nullable=False),
    Column("poll_token_id", String(32), nullable=False),
    Column("facts", JSON, nullable=True),
    Column("requested_at", UTCDateTime(), nullable=False),
    Column("remote", String(255), nullable=True),
    Column("decided_at", UTCDateTime(), nullable=True),
    Column("decided_by", String(255), nullable=True),
    Index("ix_steward_enrollments_certname", "certname"),
)

run_requests = Table(
    "steward_run_requests",
    metadata,
    Column("id", BigInteger().with_variant(Integer, "sqlite"), primary_key=True,
           autoincrement=True),
    Column("certname", String(255), nullable=False),
    Column("requested_at", UTCDateTime(), nullable=False),
    Column("requested_by", String(255), nullable=False),
    Column("noop", Integer, nullable=False, server_default="0"),
    Column("claimed_at", UTCDateTime(), nullable=True),
    # Live prediction (revision 0003): run this commit's catalog, compiled for this
    # environment, in noop; the request is the node's grant to fetch that catalog until
    # expires_at. NULL commit: an ordinary run of the environment's tip.
    Column("commit", String(64), nullable=True),
    Column("environment", String(255), nullable=True),
    Column("change_id", String(32), nullable=True),
    Column("expires_at", UTCDateTime(), nullable=True),
    # Why the request could not be carried out (an SSH push that failed), if it could not.
    Column("error", Text, nullable=True),
    Index("ix_steward_run_requests_pending", "certname", "claimed_at"),
)


def normalise_url(url: str) -> str:
    """Accept the URLs people write (``postgresql://``) and pick the installed driver."""
    try:
        parsed = make_url(url)
    except Exception as exc:  # sqlalchemy raises ArgumentError and ValueError subclasses
        raise ConfigError(f"invalid database URL {redact_url(url)!r}: {exc}") from None
    if parsed.drivername in ("postgresql", "postgres"):
        parsed = parsed.set(drivername="postgresql+psycopg")
    if parsed.drivername not in ("sqlite", "sqlite+pysqlite", "postgresql+psycopg"):
        raise ConfigError(
            f"unsupported database {parsed.drivername!r}: use sqlite:///PATH or "
            "postgresql://USER@HOST/DB"
        )
    return parsed.render_as_string(hide_password=False)


def redact_url(url: str) -> str:
    """The URL without its password (the one marker in its place), for messages and logs."""
    try:
        parsed = make_url(url)
        if parsed.password is None:
            return parsed.render_as_string(hide_password=False)
        hidden = parsed.render_as_string(hide_password=True)  # user:***@
        return hidden.replace(":***@", f":{REDACTED}@", 1)
    except Exception:  # an unparsable URL is shown as a placeholder, never verbatim
        return "<unparsable database URL>"
