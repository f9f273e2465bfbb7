"""Job lifecycle: creation and state changes, each recorded as a :class:`~har.db.JobEvent`.

States move forward only, one step at a time::

    queued → extracting → classifying → reporting → done
       └──────────┴─────────────┴────────────┴──────→ failed   (from any non-final state)

``done`` and ``failed`` are final. These functions change the session only; the caller commits
(use :func:`har.database.session_scope`), and commits *before* enqueuing the next task.
"""
from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

from sqlalchemy import delete, func, select, update
from sqlalchemy.orm import Session

from har.db import (
    CLASSIFYING,
    DONE,
    EXTRACTING,
    FAILED,
    QUEUED,
    REPORTING,
    STATES,
    TERMINAL_STATES,
    Job,
    JobEvent,
    Report,
    Video,
    utcnow,
)

# The one forward step allowed from each state (besides failing).
NEXT_STATE = {QUEUED: EXTRACTING, EXTRACTING: CLASSIFYING, CLASSIFYING: REPORTING, REPORTING: DONE}
MAX_ERROR_CHARS = 2000


class TransitionError(ValueError):
    """A state change the lifecycle does not allow (going back, skipping, leaving done/failed)."""


class JobBusy(Exception):
    """The job is still being processed (not done or failed): it cannot be deleted or run again yet."""

    def __init__(self, job: Job):
        super().__init__(f"job {job.id} is {job.status}")
        self.status = job.status


def can_transition(old: str, new: str) -> bool:
    if new not in STATES or old not in STATES:
        return False
    if old in TERMINAL_STATES:
        return False
    if old == new:
        return True  # refreshing the current state (progress, retry) is not a change
    return new == FAILED or NEXT_STATE.get(old) == new


def as_utc(dt: datetime | None) -> datetime | None:
    """SQLite returns naive datetimes; every timestamp here is UTC."""
    if dt is None:
        return None
    return dt if dt.tzinfo else dt.replace(tzinfo=timezone.utc)


def create_job(session: Session, video_fields: dict[str, Any], params: dict[str, Any] | None = None,
               job_id: str | None = None) -> Job:
    """A new ``queued`` job for a new video row (``video_fields``: path, original_filename, sha256,
    size_bytes, container, codec, duration_s, fps, frame_count, width, height, rotation_deg)."""
    video = Video(**video_fields)
    now = utcnow()
    job = Job(video=video, status=QUEUED, stage="waiting for a worker", params=dict(params or {}),
              timings={}, frames_done=0, frames_total=int(video_fields.get("frame_count") or 0),
              attempts=0, created_at=now, updated_at=now)
    if job_id:
        job.id = job_id
    session.add(job)
    session.flush()
    session.add(JobEvent(job_id=job.id, status=QUEUED, message="uploaded and queued", at=now))
    session.flush()
    return job


def create_rerun(session: Session, source: Job, params: dict[str, Any] | None = None) -> Job:
    """A new ``queued`` job for the same stored video as the finished job ``source`` (locked by the
    caller with :func:`lock_job`). Its params are ``source``'s with ``params`` on top. ``source`` stays
    as it is (it remains in the history). Raises :class:`JobBusy` unless ``source`` is done or failed."""
    if source.status not in TERMINAL_STATES:
        raise JobBusy(source)
    video = source.video
    now = utcnow()
    merged = {**(source.params or {}), **(params or {})}
    job = Job(video_id=video.id, status=QUEUED, stage="waiting for a worker", params=merged, timings={},
              frames_done=0, frames_total=int(video.frame_count or 0), attempts=0, created_at=now, updated_at=now)
    session.add(job)
    session.flush()
    session.add(JobEvent(job_id=job.id, status=QUEUED, message=f"run again from job {source.id}", at=now))
    session.flush()
    return job


def delete_job(session: Session, job: Job) -> list[str]:
    """Delete the finished ``job`` (locked by the caller with :func:`lock_job`) and everything that
    belongs to it: events, tracks, pose data, predictions, segments and report rows (the foreign keys
    cascade), and its video row when no other job uses that video.

    Returns the storage-relative paths of files to remove *after* the caller commits (report files,
    and the uploaded video when its row went too); the job's directory (``jobs/<id>/``) goes as well
    (:meth:`har.storage.Storage.delete_job_files`). Raises :class:`JobBusy` unless the job is done or
    failed, so that a worker never writes into a deleted job.
    """
    if job.status not in TERMINAL_STATES:
        raise JobBusy(job)
    files = list(session.scalars(select(Report.path).where(Report.job_id == job.id)))
    video_id = job.video_id
    # Two jobs of one video deleted at once must not each see the other and both keep the video:
    # lock the video row first (PostgreSQL; SQLite already holds the database's write lock).
    session.execute(select(Video.id).where(Video.id == video_id).with_for_update())
    others = session.scalar(select(func.count()).select_from(Job)
                            .where(Job.video_id == video_id, Job.id != job.id)) or 0
    # Bulk deletes in the database (ON DELETE CASCADE does the child rows), not ORM cascades that load
    # every pose blob first.
    session.execute(delete(Job).where(Job.id == job.id), execution_options={"synchronize_session": False})
    session.expunge(job)
    if not others:
        video_path = session.scalar(select(Video.path).where(Video.id == video_id))
        session.execute(delete(Video).where(Video.id == video_id), execution_options={"synchronize_session": False})
        if video_path:
            shared = session.scalar(select(func.count()).select_from(Video).where(Video.path == video_path)) or 0
            if not shared:
                files.append(video_path)
    session.flush()
    return files


def set_status(session: Session, job: Job, status: str, message: str | None = None, **fields: Any) -> bool:
    """Move ``job`` to ``status`` and record a :class:`JobEvent`; set any other Job ``fields`` too.

    Returns True when the state changed, False when ``status`` is already the current state (then only
    ``fields`` and ``message`` (as ``stage``) are updated and no event is written). A change of state
    clears ``enqueued_at`` (unless given): the message the job waits for now is not published yet.
    Raises :class:`TransitionError` for a transition the lifecycle forbids.
    """
    old = job.status
    if not can_transition(old, status):
        raise TransitionError(f"job {job.id}: cannot go from {old!r} to {status!r}")
    for name, value in fields.items():
        if not hasattr(Job, name) or name in {"id", "status", "events", "video"}:
            raise AttributeError(f"Job has no settable field {name!r}")
        setattr(job, name, value)
    now = utcnow()
    job.updated_at = now
    if message is not None and status != FAILED:
        job.stage = message[:64]
    if old == status:
        session.flush()
        return False
    job.status = status
    if "enqueued_at" not in fields:  # the new state's message (if any) is not published yet
        job.enqueued_at = None
    if status == EXTRACTING and job.started_at is None:
        job.started_at = now
    if status in TERMINAL_STATES:
        job.finished_at = now
        job.task_id = None
    if status == FAILED:
        reason = (message or job.error or "failed").strip()[:MAX_ERROR_CHARS]
        job.error = reason
        job.stage = f"failed while {old}" if old != QUEUED else "failed before processing"
        message = reason
    elif status == DONE:
        job.stage = message[:64] if message else "done"
    session.add(JobEvent(job_id=job.id, status=status, message=message, at=now))
    session.flush()
    return True


def mark_enqueued(session: Session, job_id: str, waiting_states: tuple[str, ...], at: datetime | None = None) -> bool:
    """Record that the message of the stage ``job_id`` waits for was just published to the broker.

    Only while the job still waits for that stage (its state is one of ``waiting_states`` and no worker
    holds it); a job that a worker already took, moved on or ended is left as it is. ``updated_at`` is
    not touched (bookkeeping, not a change a user sees). True when the job was marked."""
    res = session.execute(
        update(Job)
        .where(Job.id == job_id, Job.status.in_(waiting_states), (Job.task_id.is_(None)) | (Job.worker.is_(None)))
        .values(enqueued_at=at or utcnow(), updated_at=Job.updated_at),
        execution_options={"synchronize_session": False},
    )
    return bool(res.rowcount)


def fail_job(session: Session, job: Job, reason: str) -> bool:
    """Mark ``job`` failed with a reason shown to the user. A no-op (False) if it is already final."""
    if job.status in TERMINAL_STATES:
        return False
    return set_status(session, job, FAILED, reason)


def stage_index(status: str) -> int:
    """Position in the lifecycle (failed counts as final)."""
    order = (QUEUED, EXTRACTING, CLASSIFYING, REPORTING, DONE)
    return len(order) if status == FAILED else order.index(status)


def lock_job(session: Session, job_id: str) -> Job | None:
    """The job row, locked for this transaction and refreshed from the database.

    PostgreSQL: ``SELECT … FOR UPDATE OF jobs``. SQLite has no row locks, and its driver runs a SELECT
    outside any transaction, so a plain read would let two writers both see the old state and both
    act on it (two claims of one stage, a sweep failing a job that a task just finished). There a
    no-op UPDATE of the row comes first: it opens the transaction and takes the database's write lock
    (other writers wait, up to the busy timeout) before the row is read.
    """
    if session.get_bind().dialect.name == "sqlite":
        # sets updated_at to itself: a real no-op (naming the column keeps its onupdate from firing)
        session.execute(update(Job).where(Job.id == job_id).values(updated_at=Job.updated_at),
                        execution_options={"synchronize_session": False})
    return session.get(Job, job_id, with_for_update={"of": Job}, populate_existing=True)
