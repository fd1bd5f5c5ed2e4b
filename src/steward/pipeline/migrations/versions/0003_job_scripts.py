"""Jobs survive a restart and another process: scripts in the database, sensitive names.

``steward_job_scripts`` holds a job's script once per environment, so any process sharing the
database can hand a node its part; ``steward_jobs.sensitive`` lists the names (never the
values) of the job's sensitive parameters, so a process that does not hold the values can say
so instead of running the script without them (docs/tasks.md).

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-24
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0003'
down_revision = '0002'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column('steward_jobs', sa.Column('sensitive', sa.JSON(), nullable=True))
    op.create_table('steward_job_scripts',
    sa.Column('job_id', sa.String(length=32), nullable=False),
    sa.Column('environment', sa.String(length=255), nullable=False),
    sa.Column('script_name', sa.String(length=255), nullable=False),
    sa.Column('script', sa.Text(), nullable=False),
    sa.ForeignKeyConstraint(['job_id'], ['steward_jobs.id'], ),
    sa.PrimaryKeyConstraint('job_id', 'environment')
    )


def downgrade() -> None:
    op.drop_table('steward_job_scripts')
    if op.get_bind().dialect.name == "sqlite":
        # Native since SQLite 3.35; a batch rebuild of steward_jobs would have to drop a table
        # that steward_job_results references, which fails with foreign keys enforced.
        op.execute("ALTER TABLE steward_jobs DROP COLUMN sensitive")
    else:
        op.drop_column('steward_jobs', 'sensitive')
