"""Job lifecycle: creation and state changes, each recorded as a :class:`~har.db.JobEvent`.

States move forward only, one step at a time::

    queued → extracting → classifying → reporting → done
       └──────────┴─────────────┴────────────┴──────→ failed   (from any non-final state)

``done`` and ``failed`` are final. A done job may still have its annotated video rendered by the workers
(``jobs.video_status``): for them that is one more stage, ``rendering`` (:func:`worker_state`), between
reporting and done, which the job's users never see as a state::

    reporting → rendering → done     (video ready; a failure of the render: video failed, the job stays done)

These functions change the session only; the caller commits (use :func:`har.database.session_scope`),
and commits *before* enqueuing the next task.
"""
from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

from sqlalchemy import and_, delete, func, or_, select, update
from sqlalchemy.orm import Session

from har import webhooks
from har.db import (
    CLASSIFYING,
    DONE,
    EXTRACTING,
    FAILED,
    QUEUED,
    RENDERING,
    REPORTING,
    STATES,
    TERMINAL_STATES,
    VIDEO_FAILED,
    VIDEO_READY,
    VIDEO_RENDERING,
    Job,
    JobEvent,
    Report,
    Video,
    utcnow,
)

# The forward steps allowed from each state (besides failing); reporting ends in rendering when the job's
# annotated video is to be rendered next, else in done.
NEXT_STATES = {QUEUED: (EXTRACTING,), EXTRACTING: (CLASSIFYING,), CLASSIFYING: (REPORTING,),
               REPORTING: (DONE, RENDERING), RENDERING: (DONE,)}
WORKER_STATES = STATES + (RENDERING,)
MAX_ERROR_CHARS = 2000


class TransitionError(ValueError):
    """A state change the lifecycle does not allow (going back, skipping, leaving done/failed)."""


class JobBusy(Exception):
    """The job is still being processed (not done or failed): it cannot be deleted or run again yet."""

    def __init__(self, job: Job):
        super().__init__(f"job {job.id} is {job.status}")
        self.status = job.status


def can_transition(old: str, new: str) -> bool:
    """Whether a job may go from ``old`` to ``new`` (states as :func:`worker_state` gives them)."""
    if new not in WORKER_STATES or old not in WORKER_STATES:
        return False
    if old in TERMINAL_STATES:
        return False
    if old == new:
        return True  # refreshing the current state (progress, retry) is not a change
    return new == FAILED or new in NEXT_STATES.get(old, ())


def worker_state(job: Job) -> str:
    """The job's state for the workers: its status, or ``rendering`` while a done job's annotated video is
    being rendered (the job is done for its users, but not finished for the workers)."""
    if job.status == DONE and job.video_status == VIDEO_RENDERING:
        return RENDERING
    return job.status


def _rendering_sql():
    return and_(Job.status == DONE, Job.video_status == VIDEO_RENDERING)


def worker_state_in(states) -> object:
    """SQL condition: the job's :func:`worker_state` is one of ``states``."""
    states = tuple(states)
    plain = [s for s in states if s != RENDERING]
    conditions = []
    if plain:
        not_rendering = or_(Job.status != DONE, Job.video_status.is_(None), Job.video_status != VIDEO_RENDERING)
        conditions.append(and_(Job.status.in_(plain), not_rendering) if DONE in plain else Job.status.in_(plain))
    if RENDERING in states:
        conditions.append(_rendering_sql())
    return or_(*conditions) if conditions else Job.id.is_(None)


def unfinished_sql() -> object:
    """SQL condition: the workers still have work for the job (not final, or its annotated video renders)."""
    return or_(Job.status.not_in(TERMINAL_STATES), _rendering_sql())


def as_utc(dt: datetime | None) -> datetime | None:
    """SQLite returns naive datetimes; every timestamp here is UTC."""
    if dt is None:
        return None
    return dt if dt.tzinfo else dt.replace(tzinfo=timezone.utc)


def create_job(session: Session, video_fields: dict[str, Any], params: dict[str, Any] | None = None,
               job_id: str | None = None, owner: str | None = None) -> Job:
    """A new ``queued`` job for a new video row (``video_fields``: path, original_filename, sha256,
    size_bytes, container, codec, duration_s, fps, frame_count, width, height, rotation_deg), belonging to
    ``owner`` (``jobs.owner``: who submitted it, web/auth.py)."""
    video = Video(**video_fields)
    now = utcnow()
    job = Job(video=video, status=QUEUED, stage="waiting for a worker", params=dict(params or {}),
              timings={}, frames_done=0, frames_total=int(video_fields.get("frame_count") or 0),
              attempts=0, created_at=now, updated_at=now, owner=owner)
    if job_id:
        job.id = job_id
    session.add(job)
    session.flush()
    session.add(JobEvent(job_id=job.id, status=QUEUED, message="uploaded and queued", at=now))
    session.flush()
    return job


def create_rerun(session: Session, source: Job, params: dict[str, Any] | None = None,
                 owner: str | None = None) -> Job:
    """A new ``queued`` job for the same stored video as the finished job ``source`` (locked by the
    caller with :func:`lock_job`), belonging to ``owner`` (who asked for it). Its params are ``source``'s with
    ``params`` on top. ``source`` stays as it is (it remains in the history). Raises :class:`JobBusy` unless
    ``source`` is done or failed."""
    if source.status not in TERMINAL_STATES:
        raise JobBusy(source)
    video = source.video
    now = utcnow()
    merged = {**(source.params or {}), **(params or {})}
    job = Job(video_id=video.id, status=QUEUED, stage="waiting for a worker", params=merged, timings={},
              frames_done=0, frames_total=int(video.frame_count or 0), attempts=0, created_at=now, updated_at=now,
              owner=owner)
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


def set_status(session: Session, job: Job, status: str, message: str | None = None, *, at: datetime | None = None,
               **fields: Any) -> bool:
    """Move ``job`` to ``status`` and record a :class:`JobEvent`; set any other Job ``fields`` too.

    Returns True when the state changed, False when ``status`` is already the current state (then only
    ``fields`` and ``message`` (as ``stage``) are updated and no event is written). A change of state
    clears ``enqueued_at`` (unless given): the message the job waits for now is not published yet.
    Raises :class:`TransitionError` for a transition the lifecycle forbids. ``at``: the time of the change (default:
    now), e.g. the time a report already written for this change states.

    States are the workers' (:func:`worker_state`): ``rendering`` makes the job done (its ``done`` event) with
    its annotated video to be rendered next; from ``rendering``, ``done`` marks the video ready and ``failed``
    marks the video failed with ``message`` as the reason, and the job stays done (no event: its state does
    not change for its users).
    """
    old = worker_state(job)
    if not can_transition(old, status):
        raise TransitionError(f"job {job.id}: cannot go from {old!r} to {status!r}")
    for name, value in fields.items():
        if not hasattr(Job, name) or name in {"id", "status", "events", "video"}:
            raise AttributeError(f"Job has no settable field {name!r}")
        setattr(job, name, value)
    now = at or utcnow()
    job.updated_at = now
    if message is not None and status != FAILED:
        job.stage = message[:64]
    if old == status:
        session.flush()
        return False
    if "enqueued_at" not in fields:  # the new state's message (if any) is not published yet
        job.enqueued_at = None
    if old == RENDERING:
        _end_video(job, failed=status == FAILED, reason=message)
        session.flush()
        webhooks.record_event(session, job, webhooks.VIDEO_FAILED if status == FAILED else webhooks.VIDEO_READY)
        return True
    if status == RENDERING:
        job.video_status, job.video_error = VIDEO_RENDERING, None
        status = DONE
    job.status = status
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
    if status in TERMINAL_STATES:  # the job's webhook (har/webhooks.py), sent once this transaction commits
        webhooks.record_event(session, job, webhooks.JOB_DONE if status == DONE else webhooks.JOB_FAILED)
    return True


def _end_video(job: Job, failed: bool, reason: str | None) -> None:
    """The annotated video of a done job is ready, or failed for ``reason``; the job stays done."""
    job.task_id = None
    if failed:
        job.video_status = VIDEO_FAILED
        job.video_error = (reason or "The annotated video could not be rendered.").strip()[:MAX_ERROR_CHARS]
        job.stage = "done; the annotated video failed"
    else:
        job.video_status, job.video_error = VIDEO_READY, None
        job.stage = "done"


def mark_enqueued(session: Session, job_id: str, waiting_states: tuple[str, ...], at: datetime | None = None) -> bool:
    """Record that the message of the stage ``job_id`` waits for was just published to the broker.

    Only while the job still waits for that stage (its :func:`worker_state` is one of ``waiting_states`` and
    no worker holds it); a job that a worker already took, moved on or ended is left as it is. ``updated_at`` is
    not touched (bookkeeping, not a change a user sees). True when the job was marked."""
    res = session.execute(
        update(Job)
        .where(Job.id == job_id, worker_state_in(waiting_states), (Job.task_id.is_(None)) | (Job.worker.is_(None)))
        .values(enqueued_at=at or utcnow(), updated_at=Job.updated_at),
        execution_options={"synchronize_session": False},
    )
    return bool(res.rowcount)


def fail_job(session: Session, job: Job, reason: str) -> bool:
    """Mark ``job`` failed with a reason shown to the user (while its annotated video renders: the video
    failed, and the job stays done). A no-op (False) if the workers are done with it."""
    if worker_state(job) in TERMINAL_STATES:
        return False
    return set_status(session, job, FAILED, reason)


def stage_index(status: str) -> int:
    """Position in the lifecycle of the workers' states (failed counts as final)."""
    order = (QUEUED, EXTRACTING, CLASSIFYING, REPORTING, RENDERING, DONE)
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
