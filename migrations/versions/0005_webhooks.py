"""Webhooks: a job's callback URL, its own key and the service's base URL; per-token webhook secret and default
callback URL; the delivery log (``webhook_deliveries``).

Tokens made before get a webhook secret here.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-07 21:30:00.000000
"""
from __future__ import annotations

import secrets

import sqlalchemy as sa
from alembic import op

revision = '0005'
down_revision = '0004'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('jobs', schema=None) as batch_op:
        batch_op.add_column(sa.Column('callback_url', sa.String(length=2048), nullable=True))
        batch_op.add_column(sa.Column('job_key', sa.String(length=64), nullable=True))
        batch_op.add_column(sa.Column('public_url', sa.String(length=255), nullable=True))
    op.create_index('ux_jobs_job_key', 'jobs', ['job_key'], unique=True)
    with op.batch_alter_table('api_tokens', schema=None) as batch_op:
        batch_op.add_column(sa.Column('webhook_secret', sa.String(length=64), nullable=True))
        batch_op.add_column(sa.Column('callback_url', sa.String(length=2048), nullable=True))
    tokens = sa.table('api_tokens', sa.column('id', sa.Integer), sa.column('webhook_secret', sa.String))
    bind = op.get_bind()
    for (token_id,) in bind.execute(sa.select(tokens.c.id)).all():
        bind.execute(tokens.update().where(tokens.c.id == token_id)
                     .values(webhook_secret='whsec_' + secrets.token_urlsafe(32)))
    op.create_table(
        'webhook_deliveries',
        sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
        sa.Column('job_id', sa.String(length=36), nullable=False),
        sa.Column('event', sa.String(length=32), nullable=False),
        sa.Column('url', sa.String(length=2048), nullable=False),
        sa.Column('body', sa.Text(), nullable=False),
        sa.Column('status', sa.String(length=16), nullable=False),
        sa.Column('attempts', sa.Integer(), nullable=False),
        sa.Column('next_attempt_at', sa.DateTime(timezone=True), nullable=True),
        sa.Column('last_status_code', sa.Integer(), nullable=True),
        sa.Column('last_error', sa.Text(), nullable=True),
        sa.Column('response_excerpt', sa.Text(), nullable=True),
        sa.Column('attempt_log', sa.JSON(), nullable=False),
        sa.Column('redelivery_of', sa.Integer(), nullable=True),
        sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
        sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
        sa.Column('delivered_at', sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(['job_id'], ['jobs.id'], ondelete='CASCADE'),
        sa.PrimaryKeyConstraint('id'),
    )
    op.create_index('ix_webhook_deliveries_job_id', 'webhook_deliveries', ['job_id'], unique=False)
    op.create_index('ix_webhook_deliveries_status', 'webhook_deliveries', ['status'], unique=False)


def downgrade() -> None:
    op.drop_index('ix_webhook_deliveries_status', table_name='webhook_deliveries')
    op.drop_index('ix_webhook_deliveries_job_id', table_name='webhook_deliveries')
    op.drop_table('webhook_deliveries')
    bind = op.get_bind()
    op.drop_index('ux_jobs_job_key', table_name='jobs')
    if bind.dialect.name == 'sqlite' and (bind.dialect.server_version_info or (0,)) >= (3, 35):
        # not a batch rebuild of jobs: with foreign keys on, dropping the old table deletes the rows referencing it
        for column in ('callback_url', 'job_key', 'public_url'):
            op.execute(f'ALTER TABLE jobs DROP COLUMN {column}')
        for column in ('webhook_secret', 'callback_url'):
            op.execute(f'ALTER TABLE api_tokens DROP COLUMN {column}')
    else:
        with op.batch_alter_table('jobs', schema=None) as batch_op:
            batch_op.drop_column('public_url')
            batch_op.drop_column('job_key')
            batch_op.drop_column('callback_url')
        with op.batch_alter_table('api_tokens', schema=None) as batch_op:
            batch_op.drop_column('callback_url')
            batch_op.drop_column('webhook_secret')

