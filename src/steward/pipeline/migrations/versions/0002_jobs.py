"""Task jobs and their per-node results (docs/tasks.md).

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-24
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from steward.store.db import UTCDateTime

revision = '0002'
down_revision = '0001'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('steward_jobs',
    sa.Column('id', sa.String(length=32), nullable=False),
    sa.Column('task', sa.String(length=64), nullable=False),
    sa.Column('environment', sa.String(length=255), nullable=False),
    sa.Column('noop', sa.Integer(), nullable=False),
    sa.Column('parameters', sa.JSON(), nullable=False),
    sa.Column('query', sa.Text(), nullable=False),
    sa.Column('requested_by', sa.String(length=255), nullable=False),
    sa.Column('state', sa.String(length=16), nullable=False),
    sa.Column('concurrency', sa.Integer(), nullable=False),
    sa.Column('timeout', sa.Integer(), nullable=False),
    sa.Column('created_at', UTCDateTime(), nullable=False),
    sa.Column('finished_at', UTCDateTime(), nullable=True),
    sa.PrimaryKeyConstraint('id')
    )
    op.create_table('steward_job_results',
    sa.Column('job_id', sa.String(length=32), nullable=False),
    sa.Column('certname', sa.String(length=255), nullable=False),
    sa.Column('environment', sa.String(length=255), nullable=False),
    sa.Column('commit', sa.String(length=64), nullable=False),
    sa.Column('state', sa.String(length=16), nullable=False),
    sa.Column('started_at', UTCDateTime(), nullable=True),
    sa.Column('finished_at', UTCDateTime(), nullable=True),
    sa.Column('exit_code', sa.Integer(), nullable=True),
    sa.Column('result', sa.JSON(), nullable=True),
    sa.Column('output', sa.Text(), nullable=True),
    sa.ForeignKeyConstraint(['job_id'], ['steward_jobs.id'], ),
    sa.PrimaryKeyConstraint('job_id', 'certname')
    )
    with op.batch_alter_table('steward_job_results', schema=None) as batch_op:
        batch_op.create_index('ix_steward_job_results_node', ['certname', 'job_id'],
                              unique=False)


def downgrade() -> None:
    with op.batch_alter_table('steward_job_results', schema=None) as batch_op:
        batch_op.drop_index('ix_steward_job_results_node')
    op.drop_table('steward_job_results')
    op.drop_table('steward_jobs')
