"""The server's own control-plane tables, and the database engine both backends share.

These tables (identities and tokens, nodes, enrollment requests, run requests, the audit
log) belong to the server, not to the state store: they have their own Alembic history
(``steward/server/migrations``, version table ``steward_server_version``) so the two schemas
evolve independently in one database. SQLite runs in WAL mode so the agents' writes and the
operators' reads do not block each other.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Column,
    Connection,
    Engine,
    Index,
    Integer,
    String,
    Table,
    Text,
    create_engine,
    event,
)
from sqlalchemy.engine import make_url

from steward.access.tables import SERVER_METADATA
from steward.catalog.redaction import REDACTED
from steward.server.errors import ConfigError
from steward.store.db import READONLY_OPTION, UTCDateTime, create_private_sqlite

VERSION_TABLE = "steward_server_version"
SQLITE_BUSY_TIMEOUT_MS = 15000


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


def make_engine(url: str) -> Engine:
    """An engine for either backend; SQLite gets WAL, a busy timeout and foreign keys."""
    url = normalise_url(url)
    if url.startswith("sqlite"):
        create_private_sqlite(url)  # 0600, and so its -wal and -shm
        engine = create_engine(
            url, connect_args={"timeout": SQLITE_BUSY_TIMEOUT_MS / 1000,
                               "check_same_thread": False},
        )

        @event.listens_for(engine, "connect")
        def _pragmas(dbapi_connection: Any, _record: Any) -> None:
            cursor = dbapi_connection.cursor()
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.execute("PRAGMA synchronous=NORMAL")
            cursor.close()
            # Transactions are begun by hand below, so pysqlite must not begin its own.
            dbapi_connection.isolation_level = None

        @event.listens_for(engine, "begin")
        def _begin(connection: Connection) -> None:
            # IMMEDIATE takes the write lock up front: a read-then-write transaction then
            # waits for the busy timeout instead of failing when another writer got in first.
            # Plain reads (see reading()) need no lock in WAL mode.
            readonly = connection.get_execution_options().get(READONLY_OPTION, False)
            connection.exec_driver_sql("BEGIN" if readonly else "BEGIN IMMEDIATE")

        return engine
    return create_engine(url, pool_pre_ping=True, pool_size=10, max_overflow=20)


