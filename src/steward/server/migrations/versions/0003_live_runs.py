"""Run requests that carry a commit: the live prediction of a change.

Adds ``commit``, ``environment``, ``change_id``, ``expires_at`` and ``error`` to
``steward_run_requests`` (all nullable: existing rows are ordinary runs of the environment
tip). A request with a commit asks the node for a noop run of the catalog compiled at that
commit for that environment, and is the node's grant to fetch that catalog until
``expires_at``; ``error`` records why the server could not carry a request out (an SSH node
it could not reach).

Revision ID: 0003
Revises: 0002
Create Date: 2025-02-10
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from steward.store.db import UTCDateTime

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

_COLUMNS = ("commit", "environment", "change_id", "expires_at", "error")


def upgrade() -> None:
    with op.batch_alter_table("steward_run_requests") as batch:
        batch.add_column(sa.Column("commit", sa.String(64), nullable=True))
        batch.add_column(sa.Column("environment", sa.String(255), nullable=True))
        batch.add_column(sa.Column("change_id", sa.String(32), nullable=True))
        batch.add_column(sa.Column("expires_at", UTCDateTime(), nullable=True))
        batch.add_column(sa.Column("error", sa.Text(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("steward_run_requests") as batch:
        for name in reversed(_COLUMNS):
            batch.drop_column(name)
