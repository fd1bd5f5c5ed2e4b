"""Tamper-evident audit log: hash-chained entries, the chain head, signed checkpoints.

Adds ``parameters``, ``request_id``, ``prev_hash`` and ``entry_hash`` to ``steward_audit``
(and widens ``action``), creates ``steward_audit_head`` and the append-only
``steward_audit_checkpoints``. Entries written before this revision are **chained here**, in
id order, with the same hash definition as new ones (format 1 of
:func:`steward.access.audit_entries.entry_hash`), so verification covers the whole log from
entry 1. Their ids may have gaps (an old sequence skips the ids of rolled-back inserts):
``legacy_through`` records the last of them, and only later ids must be consecutive.

Revision ID: 0002
Revises: 0001
Create Date: 2025-02-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from steward.access.audit_entries import GENESIS_HASH, EntryFields, entry_hash
from steward.store.db import UTCDateTime

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
_BATCH = 2000


def _append_only(table: str) -> None:
    """Refuse UPDATE and DELETE (and TRUNCATE on PostgreSQL) on ``table``."""
    if op.get_bind().dialect.name == "sqlite":
        for verb in ("UPDATE", "DELETE"):
            op.execute(
                f"CREATE TRIGGER {table}_no_{verb.lower()} BEFORE {verb} ON {table} "
                f"BEGIN SELECT RAISE(ABORT, '{table} is append-only'); END"
            )
        return
    op.execute(f"CREATE TRIGGER {table}_no_change BEFORE UPDATE OR DELETE ON {table} "
               "FOR EACH ROW EXECUTE FUNCTION steward_append_only()")
    op.execute(f"CREATE TRIGGER {table}_no_truncate BEFORE TRUNCATE ON {table} "
               "FOR EACH STATEMENT EXECUTE FUNCTION steward_append_only()")


def _chain_existing_rows(bind: sa.Connection) -> tuple[int, str]:
    """Hash the rows written before the chain existed; returns the last (id, hash)."""
    audit = sa.table(
        "steward_audit",
        sa.column("id", _ID), sa.column("at", UTCDateTime()), sa.column("actor", sa.String()),
        sa.column("actor_kind", sa.String()), sa.column("action", sa.String()),
        sa.column("target", sa.String()), sa.column("outcome", sa.String()),
        sa.column("reason", sa.Text()), sa.column("remote", sa.String()),
        sa.column("prev_hash", sa.String()), sa.column("entry_hash", sa.String()),
    )
    last_id, last_hash = 0, GENESIS_HASH
    while True:
        rows = bind.execute(
            sa.select(audit).where(audit.c.id > last_id).order_by(audit.c.id).limit(_BATCH)
        ).all()
        if not rows:
            return last_id, last_hash
        for row in rows:
            digest = entry_hash(EntryFields(
                id=row.id, at=row.at, actor=row.actor, actor_kind=row.actor_kind,
                action=row.action, target=row.target, parameters=None, outcome=row.outcome,
                reason=row.reason, remote=row.remote, request_id=None,
            ), last_hash)
            bind.execute(sa.update(audit).where(audit.c.id == row.id)
                         .values(prev_hash=last_hash, entry_hash=digest))
            last_id, last_hash = row.id, digest


def upgrade() -> None:
    bind = op.get_bind()
    sqlite = bind.dialect.name == "sqlite"
    # Legacy rows are rewritten once, here, to chain them: lift the append-only guard.
    if sqlite:
        op.execute("DROP TRIGGER IF EXISTS steward_audit_no_update")
        op.execute("DROP TRIGGER IF EXISTS steward_audit_no_delete")
    else:
        op.execute(
            "CREATE FUNCTION steward_append_only() RETURNS trigger LANGUAGE plpgsql AS "
            "$$ BEGIN RAISE EXCEPTION '% is append-only', TG_TABLE_NAME; END $$"
        )
        op.execute("DROP TRIGGER IF EXISTS steward_audit_no_change ON steward_audit")
        op.execute("DROP TRIGGER IF EXISTS steward_audit_no_truncate ON steward_audit")
        op.execute("DROP FUNCTION IF EXISTS steward_audit_append_only()")
        op.alter_column("steward_audit", "action", type_=sa.String(255),
                        existing_type=sa.String(64), existing_nullable=False)
    for column in (
        sa.Column("parameters", sa.Text(), nullable=True),
        sa.Column("request_id", sa.String(64), nullable=True),
        sa.Column("prev_hash", sa.String(64), nullable=True),
        sa.Column("entry_hash", sa.String(64), nullable=True),
    ):
        op.add_column("steward_audit", column)
    last_id, last_hash = _chain_existing_rows(bind)
    op.create_index("ix_steward_audit_target", "steward_audit", ["target"])
    op.create_index("ix_steward_audit_request_id", "steward_audit", ["request_id"])
    op.create_index("ux_steward_audit_prev_hash", "steward_audit", ["prev_hash"], unique=True)
    _append_only("steward_audit")

    head = op.create_table(
        "steward_audit_head",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=False),
        sa.Column("last_id", sa.BigInteger(), nullable=False),
        sa.Column("last_hash", sa.String(64), nullable=False),
        sa.Column("legacy_through", sa.BigInteger(), nullable=False, server_default="0"),
    )
    assert head is not None
    op.bulk_insert(head, [{"id": 1, "last_id": last_id, "last_hash": last_hash,
                           "legacy_through": last_id}])
    op.create_table(
        "steward_audit_checkpoints",
        sa.Column("id", _ID, primary_key=True, autoincrement=False),
        sa.Column("size", sa.BigInteger(), nullable=False),
        sa.Column("head_hash", sa.String(64), nullable=False),
        sa.Column("at", UTCDateTime(), nullable=False),
        sa.Column("prev_signature", sa.String(128), nullable=True),
        sa.Column("signature", sa.String(128), nullable=False),
        sa.Column("key_id", sa.String(64), nullable=False),
    )
    _append_only("steward_audit_checkpoints")


def downgrade() -> None:
    sqlite = op.get_bind().dialect.name == "sqlite"
    for table in ("steward_audit_checkpoints", "steward_audit"):
        if sqlite:
            op.execute(f"DROP TRIGGER IF EXISTS {table}_no_update")
            op.execute(f"DROP TRIGGER IF EXISTS {table}_no_delete")
        else:
            op.execute(f"DROP TRIGGER IF EXISTS {table}_no_change ON {table}")
            op.execute(f"DROP TRIGGER IF EXISTS {table}_no_truncate ON {table}")
    op.drop_table("steward_audit_checkpoints")
    op.drop_table("steward_audit_head")
    op.drop_index("ux_steward_audit_prev_hash", "steward_audit")
    op.drop_index("ix_steward_audit_request_id", "steward_audit")
    op.drop_index("ix_steward_audit_target", "steward_audit")
    for column in ("entry_hash", "prev_hash", "request_id", "parameters"):
        op.drop_column("steward_audit", column)
    # Back to revision 0001's guard.
    if sqlite:
        for verb in ("UPDATE", "DELETE"):
            op.execute(
                f"CREATE TRIGGER steward_audit_no_{verb.lower()} BEFORE {verb} ON steward_audit "
                "BEGIN SELECT RAISE(ABORT, 'steward_audit is append-only'); END"
            )
    else:
        op.execute("DROP FUNCTION IF EXISTS steward_append_only()")
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
