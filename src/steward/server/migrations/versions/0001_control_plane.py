"""Control-plane tables: tokens, nodes, enrollments, run requests, append-only audit log.

Revision ID: 0001
Revises:
Create Date: 2025-01-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from steward.store.db import UTCDateTime

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "steward_tokens",
        sa.Column("id", sa.String(32), primary_key=True),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("name", sa.String(255), nullable=False),
        sa.Column("token_hash", sa.String(64), nullable=False, unique=True),
        sa.Column("certname", sa.String(255), nullable=True),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("created_by", sa.String(255), nullable=True),
        sa.Column("expires_at", UTCDateTime(), nullable=True),
        sa.Column("revoked_at", UTCDateTime(), nullable=True),
        sa.Column("max_uses", sa.Integer(), nullable=True),
        sa.Column("uses", sa.Integer(), nullable=False, server_default="0"),
        sa.Column("last_used_at", UTCDateTime(), nullable=True),
    )
    op.create_index("ix_steward_tokens_certname", "steward_tokens", ["certname"])
    op.create_table(
        "steward_nodes",
        sa.Column("certname", sa.String(255), primary_key=True),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("transport", sa.String(8), nullable=False, server_default="pull"),
        sa.Column("environment", sa.String(255), nullable=True),
        sa.Column("ssh", sa.JSON(), nullable=True),
        sa.Column("requested_at", UTCDateTime(), nullable=True),
        sa.Column("approved_at", UTCDateTime(), nullable=True),
        sa.Column("approved_by", sa.String(255), nullable=True),
        sa.Column("revoked_at", UTCDateTime(), nullable=True),
        sa.Column("revoked_by", sa.String(255), nullable=True),
        sa.Column("last_seen_at", UTCDateTime(), nullable=True),
        sa.Column("last_catalog_hash", sa.String(80), nullable=True),
        sa.Column("last_environment", sa.String(255), nullable=True),
        sa.Column("last_run_at", UTCDateTime(), nullable=True),
    )
    op.create_table(
        "steward_enrollments",
        sa.Column("id", sa.String(32), primary_key=True),
        sa.Column("certname", sa.String(255), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("poll_token_id", sa.String(32), nullable=False),
        sa.Column("facts", sa.JSON(), nullable=True),
        sa.Column("requested_at", UTCDateTime(), nullable=False),
        sa.Column("remote", sa.String(255), nullable=True),
        sa.Column("decided_at", UTCDateTime(), nullable=True),
        sa.Column("decided_by", sa.String(255), nullable=True),
    )
    op.create_index("ix_steward_enrollments_certname", "steward_enrollments", ["certname"])
    op.create_table(
        "steward_run_requests",
        sa.Column("id", _ID, primary_key=True, autoincrement=True),
        sa.Column("certname", sa.String(255), nullable=False),
        sa.Column("requested_at", UTCDateTime(), nullable=False),
        sa.Column("requested_by", sa.String(255), nullable=False),
        sa.Column("noop", sa.Integer(), nullable=False, server_default="0"),
        sa.Column("claimed_at", UTCDateTime(), nullable=True),
    )
    op.create_index(
        "ix_steward_run_requests_pending", "steward_run_requests", ["certname", "claimed_at"]
    )
    op.create_table(
        "steward_audit",
        sa.Column("id", _ID, primary_key=True, autoincrement=True),
        sa.Column("at", UTCDateTime(), nullable=False),
        sa.Column("actor", sa.String(255), nullable=False),
        sa.Column("actor_kind", sa.String(16), nullable=False),
        sa.Column("action", sa.String(64), nullable=False),
        sa.Column("target", sa.String(512), nullable=True),
        sa.Column("outcome", sa.String(16), nullable=False),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.Column("remote", sa.String(255), nullable=True),
    )
    op.create_index("ix_steward_audit_outcome", "steward_audit", ["outcome", "id"])
    # The audit log is append-only in the database itself, not only by convention in the code.
    if op.get_bind().dialect.name == "sqlite":
        for verb in ("UPDATE", "DELETE"):
            op.execute(
                f"CREATE TRIGGER steward_audit_no_{verb.lower()} BEFORE {verb} ON steward_audit "
                "BEGIN SELECT RAISE(ABORT, 'steward_audit is append-only'); END"
            )
    else:
        op.execute(
            "CREATE FUNCTION steward_audit_append_only() RETURNS trigger LANGUAGE plpgsql AS "
            "$$ BEGIN RAISE EXCEPTION 'steward_audit is append-only'; END $$"
        )
        op.execute(
            "CREATE TRIGGER steward_audit_no_change BEFORE UPDATE OR DELETE ON steward_audit "
            "FOR EACH ROW EXECUTE FUNCTION steward_audit_append_only()"
        )
        op.execute(
            "CREATE TRIGGER steward_audit_no_truncate BEFORE TRUNCATE ON steward_audit "
            "FOR EACH STATEMENT EXECUTE FUNCTION steward_audit_append_only()"
        )


def downgrade() -> None:
    if op.get_bind().dialect.name != "sqlite":
        op.execute("DROP TRIGGER IF EXISTS steward_audit_no_truncate ON steward_audit")
        op.execute("DROP TRIGGER IF EXISTS steward_audit_no_change ON steward_audit")
        op.execute("DROP FUNCTION IF EXISTS steward_audit_append_only()")
    for table in ("steward_audit", "steward_run_requests", "steward_enrollments",
                  "steward_nodes", "steward_tokens"):
        op.drop_table(table)
