"""Jobs: enqueued_at (publish time of a waiting stage's message) and stage_started_at (current attempt).

``enqueued_at``: when the message of the stage a job waits for was handed to the broker (None: never, or
not since the job last changed state). ``stage_started_at``: when the current attempt of the running
stage was claimed (the ETA counts from it).

Jobs already waiting in a queue before the upgrade were published by the version that enqueued them:
their enqueued_at is taken from updated_at, so they keep the long requeue_after_s wait instead of being
sent again in a burst right after the upgrade.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-26 04:40:00.000000
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0002'
down_revision = '0001'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('jobs', schema=None) as batch_op:
        batch_op.add_column(sa.Column('enqueued_at', sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column('stage_started_at', sa.DateTime(timezone=True), nullable=True))
    op.execute("UPDATE jobs SET enqueued_at = updated_at "
               "WHERE status IN ('queued', 'classifying', 'reporting') AND task_id IS NULL")


def downgrade() -> None:
    with op.batch_alter_table('jobs', schema=None) as batch_op:
        batch_op.drop_column('stage_started_at')
        batch_op.drop_column('enqueued_at')
