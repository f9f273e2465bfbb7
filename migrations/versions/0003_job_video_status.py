"""Jobs: video_status and video_error (the annotated video, rendered by its own task after the job is done).

``video_status``: ``rendering``, ``ready`` or ``failed``; null when no annotated video was asked for.
``video_error``: why its rendering failed (the job itself stays done).

Jobs finished before the upgrade rendered their video inside the report stage: those with a stored video
(a ``video`` report row) are ``ready``; those whose stage says the video was not available are ``failed``
with that note as the reason; the others had none.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-03 09:40:00.000000
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0003'
down_revision = '0002'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('jobs', schema=None) as batch_op:
        batch_op.add_column(sa.Column('video_status', sa.String(length=16), nullable=True))
        batch_op.add_column(sa.Column('video_error', sa.Text(), nullable=True))
    op.execute("UPDATE jobs SET video_status = 'ready' "
               "WHERE status = 'done' AND id IN (SELECT job_id FROM reports WHERE kind = 'video')")
    op.execute("UPDATE jobs SET video_status = 'failed', video_error = stage "
               "WHERE status = 'done' AND video_status IS NULL AND stage LIKE 'done; annotated video not available%'")


def downgrade() -> None:
    bind = op.get_bind()
    if bind.dialect.name == 'sqlite' and (bind.dialect.server_version_info or (0,)) >= (3, 35):
        # ALTER TABLE ... DROP COLUMN (SQLite 3.35+) instead of a batch rebuild: dropping the old jobs table
        # would, with foreign keys on, delete every row that references a job (events, reports, tracks, ...)
        op.execute('ALTER TABLE jobs DROP COLUMN video_error')
        op.execute('ALTER TABLE jobs DROP COLUMN video_status')
        return
    with op.batch_alter_table('jobs', schema=None) as batch_op:
        batch_op.drop_column('video_error')
        batch_op.drop_column('video_status')
