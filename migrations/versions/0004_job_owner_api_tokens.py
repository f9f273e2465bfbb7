"""Job owners and API tokens.

``jobs.owner``: who submitted the job (``token:<name>`` or ``anon:<browser identity>``, web/auth.py), indexed with
``created_at`` for the history. Jobs from before have none: they are listed to nobody and only an admin token may
delete or re-run them (they stay readable by their id, like every job).

``api_tokens``: one row per token, only its SHA-256 stored; at most one active (not revoked) token per name.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-10 10:00:00.000000
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0004'
down_revision = '0003'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        'api_tokens',
        sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
        sa.Column('name', sa.String(length=64), nullable=False),
        sa.Column('token_hash', sa.String(length=64), nullable=False),
        sa.Column('admin', sa.Boolean(), nullable=False),
        sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
        sa.Column('last_used_at', sa.DateTime(timezone=True), nullable=True),
        sa.Column('revoked_at', sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint('id'),
        sa.UniqueConstraint('token_hash'),
    )
    op.create_index('ux_api_tokens_active_name', 'api_tokens', ['name'], unique=True,
                    sqlite_where=sa.text('revoked_at IS NULL'), postgresql_where=sa.text('revoked_at IS NULL'))
    with op.batch_alter_table('jobs', schema=None) as batch_op:
        batch_op.add_column(sa.Column('owner', sa.String(length=80), nullable=True))
    op.create_index('ix_jobs_owner_created_at', 'jobs', ['owner', 'created_at'], unique=False)


def downgrade() -> None:
    op.drop_index('ix_jobs_owner_created_at', table_name='jobs')
    bind = op.get_bind()
    if bind.dialect.name == 'sqlite' and (bind.dialect.server_version_info or (0,)) >= (3, 35):
        # ALTER TABLE ... DROP COLUMN (SQLite 3.35+) instead of a batch rebuild: dropping the old jobs table
        # would, with foreign keys on, delete every row that references a job (events, reports, tracks, ...)
        op.execute('ALTER TABLE jobs DROP COLUMN owner')
    else:
        with op.batch_alter_table('jobs', schema=None) as batch_op:
            batch_op.drop_column('owner')
    op.drop_index('ux_api_tokens_active_name', table_name='api_tokens')
    op.drop_table('api_tokens')
