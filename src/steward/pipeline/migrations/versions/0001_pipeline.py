"""The pipeline's tables: changes, history, analyses, overrides, validations, approvals,
role bindings, deployments and the per-environment locks.

Revision ID: 0001
Revises:
Create Date: 2026-11-24
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from steward.store.db import UTCDateTime

revision = '0001'
down_revision = None
branch_labels = None
depends_on = None

_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table('steward_analyses',
    sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
    sa.Column('change_id', sa.String(length=32), nullable=False),
    sa.Column('head', sa.String(length=64), nullable=False),
    sa.Column('digest', sa.String(length=80), nullable=False),
    sa.Column('at', UTCDateTime(), nullable=False),
    sa.Column('actor', sa.String(length=255), nullable=False),
    sa.Column('summary', sa.JSON(), nullable=False),
    sa.Column('report', sa.JSON(), nullable=False),
    sa.Column('policy', sa.JSON(), nullable=False),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('steward_analyses', schema=None) as batch_op:
        batch_op.create_index('ix_steward_analyses_change', ['change_id', 'id'], unique=False)

    op.create_table('steward_approvals',
    sa.Column('id', _ID, autoincrement=True, nullable=False),
    sa.Column('change_id', sa.String(length=32), nullable=False),
    sa.Column('environment', sa.String(length=255), nullable=False),
    sa.Column('approver_name', sa.String(length=255), nullable=False),
    sa.Column('approver_kind', sa.String(length=16), nullable=False),
    sa.Column('verdict', sa.String(length=16), nullable=False),
    sa.Column('head', sa.String(length=64), nullable=False),
    sa.Column('impact_digest', sa.String(length=80), nullable=False),
    sa.Column('roles', sa.JSON(), nullable=False),
    sa.Column('at', UTCDateTime(), nullable=False),
    sa.Column('comment', sa.Text(), nullable=True),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('steward_approvals', schema=None) as batch_op:
        batch_op.create_index('ix_steward_approvals_change', ['change_id', 'id'], unique=False)

    op.create_table('steward_change_counter',
    sa.Column('name', sa.String(length=32), nullable=False),
    sa.Column('value', sa.Integer(), nullable=False),
    sa.PrimaryKeyConstraint('name')
    )
    op.create_table('steward_changes',
    sa.Column('id', sa.String(length=32), nullable=False),
    sa.Column('seq', sa.Integer(), nullable=False),
    sa.Column('title', sa.String(length=255), nullable=False),
    sa.Column('message', sa.Text(), nullable=False),
    sa.Column('proposer_name', sa.String(length=255), nullable=False),
    sa.Column('proposer_kind', sa.String(length=16), nullable=False),
    sa.Column('environment', sa.String(length=255), nullable=False),
    sa.Column('base', sa.String(length=64), nullable=False),
    sa.Column('head', sa.String(length=64), nullable=False),
    sa.Column('branch', sa.String(length=255), nullable=False),
    sa.Column('state', sa.String(length=16), nullable=False),
    sa.Column('impact_digest', sa.String(length=80), nullable=True),
    sa.Column('kind', sa.String(length=16), nullable=False),
    sa.Column('parent_id', sa.String(length=32), nullable=True),
    sa.Column('created_at', UTCDateTime(), nullable=False),
    sa.Column('updated_at', UTCDateTime(), nullable=False),
    sa.ForeignKeyConstraint(['parent_id'], ['steward_changes.id'], ),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('branch'),
    sa.UniqueConstraint('seq')
    )
    with op.batch_alter_table('steward_changes', schema=None) as batch_op:
        batch_op.create_index('ix_steward_changes_environment', ['environment'], unique=False)
        batch_op.create_index('ix_steward_changes_parent', ['parent_id'], unique=False)
        batch_op.create_index('ix_steward_changes_state', ['state'], unique=False)

    op.create_table('steward_deployments',
    sa.Column('id', sa.String(length=32), nullable=False),
    sa.Column('change_id', sa.String(length=32), nullable=False),
    sa.Column('environment', sa.String(length=255), nullable=False),
    sa.Column('commit', sa.String(length=64), nullable=False),
    sa.Column('state', sa.String(length=16), nullable=False),
    sa.Column('strategy', sa.JSON(), nullable=False),
    sa.Column('started_by', sa.String(length=255), nullable=False),
    sa.Column('started_at', UTCDateTime(), nullable=False),
    sa.Column('finished_at', UTCDateTime(), nullable=True),
    sa.Column('detail', sa.Text(), nullable=True),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('steward_deployments', schema=None) as batch_op:
        batch_op.create_index('ix_steward_deployments_change', ['change_id'], unique=False)

    op.create_table('steward_environment_locks',
    sa.Column('environment', sa.String(length=255), nullable=False),
    sa.Column('deployment_id', sa.String(length=32), nullable=False),
    sa.Column('acquired_at', UTCDateTime(), nullable=False),
    sa.PrimaryKeyConstraint('environment')
    )
    op.create_table('steward_policy_overrides',
    sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
    sa.Column('change_id', sa.String(length=32), nullable=False),
    sa.Column('digest', sa.String(length=80), nullable=False),
    sa.Column('policy', sa.String(length=255), nullable=False),
    sa.Column('actor', sa.String(length=255), nullable=False),
    sa.Column('reason', sa.Text(), nullable=False),
    sa.Column('at', UTCDateTime(), nullable=False),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('steward_policy_overrides', schema=None) as batch_op:
        batch_op.create_index('ix_steward_policy_overrides_change', ['change_id'], unique=False)

    op.create_table('steward_role_bindings',
    sa.Column('identity_name', sa.String(length=255), nullable=False),
    sa.Column('identity_kind', sa.String(length=16), nullable=False),
    sa.Column('role', sa.String(length=64), nullable=False),
    sa.Column('environment', sa.String(length=255), nullable=False),
    sa.Column('granted_by', sa.String(length=255), nullable=True),
    sa.Column('granted_at', UTCDateTime(), nullable=False),
    sa.PrimaryKeyConstraint('identity_name', 'identity_kind', 'role', 'environment',
                            name='pk_steward_role_bindings')
    )
    op.create_table('steward_validations',
    sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
    sa.Column('change_id', sa.String(length=32), nullable=False),
    sa.Column('digest', sa.String(length=80), nullable=False),
    sa.Column('actor', sa.String(length=255), nullable=False),
    sa.Column('verdict', sa.String(length=8), nullable=False),
    sa.Column('evidence', sa.Text(), nullable=False),
    sa.Column('at', UTCDateTime(), nullable=False),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('steward_validations', schema=None) as batch_op:
        batch_op.create_index('ix_steward_validations_change', ['change_id'], unique=False)

    op.create_table('steward_change_history',
    sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
    sa.Column('change_id', sa.String(length=32), nullable=False),
    sa.Column('at', UTCDateTime(), nullable=False),
    sa.Column('actor', sa.String(length=255), nullable=False),
    sa.Column('action', sa.String(length=32), nullable=False),
    sa.Column('from_state', sa.String(length=16), nullable=True),
    sa.Column('to_state', sa.String(length=16), nullable=False),
    sa.Column('detail', sa.JSON(), nullable=True),
    sa.ForeignKeyConstraint(['change_id'], ['steward_changes.id'], ),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('steward_change_history', schema=None) as batch_op:
        batch_op.create_index('ix_steward_change_history_change', ['change_id', 'id'], unique=False)

    op.create_table('steward_deployment_nodes',
    sa.Column('deployment_id', sa.String(length=32), nullable=False),
    sa.Column('certname', sa.String(length=255), nullable=False),
    sa.Column('batch', sa.Integer(), nullable=False),
    sa.Column('position', sa.Integer(), nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('started_at', UTCDateTime(), nullable=True),
    sa.Column('finished_at', UTCDateTime(), nullable=True),
    sa.Column('report', sa.String(length=128), nullable=True),
    sa.Column('exit_code', sa.Integer(), nullable=True),
    sa.Column('detail', sa.Text(), nullable=True),
    sa.ForeignKeyConstraint(['deployment_id'], ['steward_deployments.id'], ),
    sa.PrimaryKeyConstraint('deployment_id', 'certname')
    )


def downgrade() -> None:
    op.drop_table('steward_deployment_nodes')
    with op.batch_alter_table('steward_change_history', schema=None) as batch_op:
        batch_op.drop_index('ix_steward_change_history_change')

    op.drop_table('steward_change_history')
    with op.batch_alter_table('steward_validations', schema=None) as batch_op:
        batch_op.drop_index('ix_steward_validations_change')

    op.drop_table('steward_validations')
    op.drop_table('steward_role_bindings')
    with op.batch_alter_table('steward_policy_overrides', schema=None) as batch_op:
        batch_op.drop_index('ix_steward_policy_overrides_change')

    op.drop_table('steward_policy_overrides')
    op.drop_table('steward_environment_locks')
    with op.batch_alter_table('steward_deployments', schema=None) as batch_op:
        batch_op.drop_index('ix_steward_deployments_change')

    op.drop_table('steward_deployments')
    with op.batch_alter_table('steward_changes', schema=None) as batch_op:
        batch_op.drop_index('ix_steward_changes_state')
        batch_op.drop_index('ix_steward_changes_parent')
        batch_op.drop_index('ix_steward_changes_environment')

    op.drop_table('steward_changes')
    op.drop_table('steward_change_counter')
    with op.batch_alter_table('steward_approvals', schema=None) as batch_op:
        batch_op.drop_index('ix_steward_approvals_change')

    op.drop_table('steward_approvals')
    with op.batch_alter_table('steward_analyses', schema=None) as batch_op:
        batch_op.drop_index('ix_steward_analyses_change')

    op.drop_table('steward_analyses')
