"""The access package's tables: tokens, the audit log and its checkpoints, role bindings.

No schema of its own: the tokens and audit tables belong to the server's Alembic history
(``steward/server/migrations``), the role bindings to the pipeline's, so each is declared on
that history's ``MetaData``, which is defined here, below both.
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Column,
    Index,
    Integer,
    MetaData,
    PrimaryKeyConstraint,
    String,
    Table,
    Text,
)

from steward.store.db import UTCDateTime

#: The server's history (version table ``steward_server_version``).
SERVER_METADATA = MetaData()
#: The pipeline's history (version table ``steward_pipeline_version``).
PIPELINE_METADATA = MetaData()

tokens = Table(
    "steward_tokens",
    SERVER_METADATA,
    Column("id", String(32), primary_key=True),
    # admin | operator | node | join | enrollment
    Column("kind", String(16), nullable=False),
    Column("name", String(255), nullable=False),
    Column("token_hash", String(64), nullable=False, unique=True),
    Column("certname", String(255), nullable=True),
    Column("created_at", UTCDateTime(), nullable=False),
    Column("created_by", String(255), nullable=True),
    Column("expires_at", UTCDateTime(), nullable=True),
    Column("revoked_at", UTCDateTime(), nullable=True),
    Column("max_uses", Integer, nullable=True),
    Column("uses", Integer, nullable=False, server_default="0"),
    Column("last_used_at", UTCDateTime(), nullable=True),
    Index("ix_steward_tokens_certname", "certname"),
)

audit = Table(
    "steward_audit",
    SERVER_METADATA,
    # Gapless: entry n+1 is appended under the head lock (see steward.access.audit).
    Column("id", BigInteger().with_variant(Integer, "sqlite"), primary_key=True,
           autoincrement=False),
    Column("at", UTCDateTime(), nullable=False),
    Column("actor", String(255), nullable=False),
    Column("actor_kind", String(16), nullable=False),
    Column("action", String(255), nullable=False),
    Column("target", String(512), nullable=True),
    # allowed | denied | succeeded | failed
    Column("outcome", String(16), nullable=False),
    Column("reason", Text, nullable=True),
    Column("remote", String(255), nullable=True),
    # Canonical JSON text of the (redacted) parameters, hashed byte for byte.
    Column("parameters", Text, nullable=True),
    Column("request_id", String(64), nullable=True),
    Column("prev_hash", String(64), nullable=True),
    Column("entry_hash", String(64), nullable=True),
    Index("ix_steward_audit_outcome", "outcome", "id"),
    Index("ix_steward_audit_target", "target"),
    Index("ix_steward_audit_request_id", "request_id"),
    # Two entries can never extend the same predecessor: the chain cannot fork.
    Index("ux_steward_audit_prev_hash", "prev_hash", unique=True),
)

#: One row (id 1): the chain's last entry. Appends lock it, so they are serialised.
audit_head = Table(
    "steward_audit_head",
    SERVER_METADATA,
    Column("id", Integer, primary_key=True, autoincrement=False),
    Column("last_id", BigInteger, nullable=False),
    Column("last_hash", String(64), nullable=False),
    # Entries up to this id predate the chain; the migration chained them (ids may have gaps).
    Column("legacy_through", BigInteger, nullable=False, server_default="0"),
)

#: Signed tree heads: each signs (size, head hash, time, previous signature), append-only.
audit_checkpoints = Table(
    "steward_audit_checkpoints",
    SERVER_METADATA,
    Column("id", BigInteger().with_variant(Integer, "sqlite"), primary_key=True,
           autoincrement=False),
    Column("size", BigInteger, nullable=False),
    Column("head_hash", String(64), nullable=False),
    Column("at", UTCDateTime(), nullable=False),
    Column("prev_signature", String(128), nullable=True),
    Column("signature", String(128), nullable=False),
    Column("key_id", String(64), nullable=False),
)


role_bindings = Table(
    "steward_role_bindings",
    PIPELINE_METADATA,
    Column("identity_name", String(255), nullable=False),
    # human | agent (the principal; every token of that principal shares its bindings)
    Column("identity_kind", String(16), nullable=False),
    Column("role", String(64), nullable=False),
    # an environment name, or * for every environment
    Column("environment", String(255), nullable=False),
    Column("granted_by", String(255), nullable=True),
    Column("granted_at", UTCDateTime(), nullable=False),
    PrimaryKeyConstraint("identity_name", "identity_kind", "role", "environment",
                         name="pk_steward_role_bindings"),
)
