"""What every stage task shares: claiming a job, heartbeats, failing with a readable reason.

The stages are pose, classify, report and video (the annotated video, rendered after the job is done: the
workers' ``rendering`` state, har.jobs.worker_state; a failure there fails the video, never the job).
A stage task runs in three steps:

1. :func:`claim` (one transaction, job row locked on PostgreSQL): skip the task when the job is
   missing, final (done/failed), already past this stage, or being run right now by another live
   worker; otherwise count the attempt (fail the job after ``settings.max_attempts`` starts of the same stage:
   a video that kills the worker every time must not loop forever), move the job into the stage's
   state and record which task/worker holds it.
2. the work, with a :class:`Heartbeat` thread refreshing ``jobs.heartbeat_at`` (the sweep in
   :mod:`worker.sweep` re-enqueues a stage whose heartbeat stopped: its worker died).
3. the results and the next state written in one transaction, committed before the next task is
   enqueued. Any exception instead fails the job with a reason a user can read.
"""
from __future__ import annotations

import logging
import os
import threading
import time
from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy import update

from har.config import Settings
from har.database import session_scope
from har.db import CLASSIFYING, EXTRACTING, QUEUED, RENDERING, REPORTING, TERMINAL_STATES, Job, utcnow
from har.jobs import as_utc, fail_job, lock_job, set_status, stage_index, unfinished_sql, worker_state
from har.processes import host_name, pid_alive
from har.storage import BaseStorage, open_storage
from worker.celery_app import CLASSIFY_TASK, REPORT_TASK, VIDEO_TASK

log = logging.getLogger("worker")

# stage name -> (state the job is in while the stage runs, states the task may start from)
STAGES = {
    "pose": (EXTRACTING, (QUEUED, EXTRACTING)),
    "classify": (CLASSIFYING, (CLASSIFYING,)),
    "report": (REPORTING, (REPORTING,)),
    "video": (RENDERING, (RENDERING,)),
}
# stages that report frames done / total while they run (started again from 0 by a new attempt)
PROGRESS_STAGES = ("pose",)
STAGE_MESSAGES = {"pose": "extracting poses", "classify": "classifying actions", "report": "writing reports",
                  "video": "done; rendering the annotated video"}


class JobError(Exception):
    """A failure whose message is meant for the user as it is."""


class JobGone(Exception):
    """The job no longer exists (it was deleted while a task was on its way or running)."""

    def __init__(self, job_id: str):
        super().__init__(f"job {job_id} no longer exists")
        self.job_id = job_id


def get_job(session, job_id: str) -> Job:
    """The job row, or :class:`JobGone` (a stage ends quietly then: see :func:`fail`)."""
    job = session.get(Job, job_id)
    if job is None:
        raise JobGone(job_id)
    return job


def discard_job_files(settings: Settings, job_id: str) -> None:
    """Remove what a task wrote for a job that was deleted meanwhile (``jobs/<job id>/``)."""
    try:
        left = storage(settings).delete_job_files(job_id)
    except Exception:  # noqa: BLE001 - cleanup is best effort
        log.warning("could not remove the files of deleted job %s", job_id, exc_info=True)
        return
    if left:
        log.warning("could not remove the files of deleted job %s: %s", job_id, ", ".join(left))


def worker_name() -> str:
    return f"{host_name()}:{os.getpid()}"


def holder_alive(holder: str | None, heartbeat_at, stale_after_s: float, now=None,
                 from_task: bool = True) -> bool:
    """Whether the worker recorded in ``holder`` ("host:pid") may still be running the stage.

    ``from_task``: asked by a task starting in this process; a worker process runs one task at a
    time, so a holder with our own pid is an earlier run that is over. The sweep (a thread beside
    the tasks) passes False: our own pid with a fresh heartbeat is then a task running right now.
    """
    if not holder:
        return False
    now = now or utcnow()
    hb = as_utc(heartbeat_at)
    if hb is None or now - hb > timedelta(seconds=stale_after_s):
        return False
    host, _, pid = holder.rpartition(":")
    if host == host_name() and pid.isdigit():
        if int(pid) == os.getpid():
            return not from_task
        return pid_alive(int(pid))
    return True  # another machine with a fresh heartbeat


@dataclass
class Claim:
    job_id: str
    stage: str
    task_id: str
    attempt: int
    started: float  # time.time() when the stage started
    start_monotonic: float


# stage -> the task of the stage after it, and the state a job waits in for that task (a report stage that
# makes the job done without an annotated video to render has no next stage)
NEXT_TASK = {"pose": (CLASSIFY_TASK, CLASSIFYING), "classify": (REPORT_TASK, REPORTING),
             "report": (VIDEO_TASK, RENDERING)}


def claim(settings: Settings, job_id: str, stage: str, task_id: str | None) -> Claim | None:
    """Take the job for ``stage`` or return None (the task is then a no-op). See the module doc.

    A task for a job that already moved on to the next stage, which no worker has picked up yet,
    sends that stage's task again before returning None: it is the redelivery of a task whose worker
    died between committing the stage and enqueuing the next one (a duplicate is skipped by the next
    stage's own claim), and the job goes on now instead of waiting for the sweep."""
    resend: list[str] = []
    result = _claim(settings, job_id, stage, task_id, resend)
    for task_name in resend:
        hand_over(settings, task_name, job_id)
    return result


def _claim(settings: Settings, job_id: str, stage: str, task_id: str | None, resend: list[str]) -> Claim | None:
    running_state, entry_states = STAGES[stage]
    task_id = task_id or "local"
    with session_scope(settings) as s:
        job = lock_job(s, job_id)
        if job is None:
            log.warning("%s: job %s does not exist; skipped", stage, job_id)
            return None
        state = worker_state(job)
        if state in TERMINAL_STATES:
            log.info("%s: job %s is already %s; skipped", stage, job_id, state)
            return None
        if stage_index(state) > stage_index(running_state):
            log.info("%s: job %s is already past this stage (%s); skipped", stage, job_id, state)
            next_task, waiting_state = NEXT_TASK.get(stage, (None, None))
            if next_task and state == waiting_state and job.task_id is None:
                log.warning("%s: job %s waits for %s: enqueued it again", stage, job_id, next_task)
                resend.append(next_task)
            return None
        if state not in entry_states:
            log.warning("%s: job %s is %s, not ready for this stage; skipped", stage, job_id, state)
            return None
        rerun = state == running_state and job.task_id is not None
        if rerun and job.task_id != task_id and holder_alive(job.worker, job.heartbeat_at, settings.stale_after_s):
            log.info("%s: job %s is being processed by %s; duplicate skipped", stage, job_id, job.worker)
            return None
        attempt = (job.attempts or 0) + 1 if rerun else 1
        if attempt > settings.max_attempts:
            fail_job(s, job, f"Gave up after {settings.max_attempts} attempts at the {stage} stage: each attempt stopped "
                             f"before finishing (the worker crashed, ran out of memory, was restarted or lost "
                             f"its connection).")
            log.error("%s: job %s failed: attempt limit reached", stage, job_id)
            return None
        if attempt > 1:
            log.warning("%s: job %s: attempt %d (the previous run stopped before finishing)", stage, job_id, attempt)
        now = utcnow()
        message = STAGE_MESSAGES[stage] + (f" (attempt {attempt})" if attempt > 1 else "")
        # The stage's message is taken (enqueued_at), and this attempt starts now: progress and the ETA
        # count from here, not from an earlier attempt that stopped (its frames are done again).
        progress = {"frames_done": 0} if attempt > 1 and stage in PROGRESS_STAGES else {}
        set_status(s, job, running_state, message, attempts=attempt, task_id=task_id,
                   worker=worker_name(), heartbeat_at=now, enqueued_at=None, stage_started_at=now,
                   started_at=job.started_at or now, **progress)
        return Claim(job_id, stage, task_id, attempt, time.time(), time.monotonic())


def beat(settings: Settings, job_id: str, task_id: str, **fields) -> bool:
    """Refresh the heartbeat (and any ``fields``) while this task still holds the job."""
    now = utcnow()
    with session_scope(settings) as s:
        res = s.execute(
            update(Job)
            .where(Job.id == job_id, Job.task_id == task_id, unfinished_sql())
            .values(heartbeat_at=now, updated_at=now, **fields)
        )
        return bool(res.rowcount)


class Heartbeat:
    """A daemon thread calling :func:`beat` every ``interval`` seconds while the stage runs."""

    def __init__(self, settings: Settings, claim: Claim, interval: float | None = None):
        self.settings, self.claim = settings, claim
        self.interval = settings.heartbeat_s if interval is None else interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"heartbeat-{claim.job_id[:8]}", daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                beat(self.settings, self.claim.job_id, self.claim.task_id)
            except Exception:  # a missed beat is not fatal
                log.warning("heartbeat for job %s failed", self.claim.job_id, exc_info=True)

    def __enter__(self) -> "Heartbeat":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join(timeout=5)


def readable_reason(stage: str, exc: BaseException) -> str:
    """A sentence for the user (and the log keeps the traceback)."""
    from celery.exceptions import SoftTimeLimitExceeded

    if isinstance(exc, JobError):
        return str(exc)
    if isinstance(exc, SoftTimeLimitExceeded):
        return f"The {stage} stage took longer than the time limit and was stopped."
    from har.disk import disk_full_reason, is_disk_full

    if is_disk_full(exc):  # ENOSPC while writing outputs, or the database's disk full
        return disk_full_reason(stage)
    try:
        from models.video import VideoError
    except Exception:  # pragma: no cover - models.video missing
        VideoError = ()  # type: ignore[assignment]
    if VideoError and isinstance(exc, VideoError):
        return f"The video could not be read: {exc}"
    if isinstance(exc, MemoryError):
        return f"The {stage} stage ran out of memory."
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    detail = f"{type(exc).__name__}: {text}" if text else type(exc).__name__
    return f"Internal error in the {stage} stage ({detail[:500]})."


def fail(settings: Settings, job_id: str, stage: str, exc: BaseException, task_id: str | None = None) -> None:
    """Mark the job failed for ``exc`` (unless it is already final).

    ``task_id``: the task that hit the error. When another task holds the job by now (the sweep gave
    the stage to a new task while this one was presumed dead), the job is that task's to finish or
    fail: the error is only logged."""
    reason = readable_reason(stage, exc)
    try:
        with session_scope(settings) as s:
            job = lock_job(s, job_id)
            if job is None:  # deleted meanwhile: nothing to record, and nothing of it may stay behind
                log.warning("%s: job %s no longer exists (deleted); stopped (%s)", stage, job_id, reason)
                discard_job_files(settings, job_id)
                return
            log.error("%s: job %s failed: %s", stage, job_id, reason, exc_info=exc)
            if task_id is not None and job.task_id not in (None, task_id):
                log.warning("%s: job %s is held by task %s now; not failed for the error of task %s",
                            stage, job_id, job.task_id, task_id)
                return
            fail_job(s, job, reason)
    except Exception:
        log.error("%s: job %s failed: %s", stage, job_id, reason, exc_info=exc)
        log.exception("could not record the failure of job %s", job_id)
        raise


def storage(settings: Settings) -> BaseStorage:
    """The job files' storage: local files, or an S3 bucket shared by workers on any machine (har/storage.py)."""
    return open_storage(settings)


def lock_own(session, settings: Settings, claim: Claim) -> Job | None:
    """Lock the job to commit what the claimed stage produced: the job, or None when that must be dropped — the
    job was deleted meanwhile (what the stage wrote under ``jobs/<id>/`` is removed), or it is no longer in the
    stage's state under this task (taken over, or finished)."""
    job = lock_job(session, claim.job_id)
    if job is None:
        log.warning("%s: job %s was deleted meanwhile; its files are removed", claim.stage, claim.job_id)
        discard_job_files(settings, claim.job_id)
        return None
    if job.task_id != claim.task_id or worker_state(job) != STAGES[claim.stage][0]:
        log.warning("%s: job %s was taken over or finished meanwhile; its results are dropped", claim.stage,
                    claim.job_id)
        return None
    return job


def stage_elapsed(c: Claim) -> float:
    return round(time.monotonic() - c.start_monotonic, 3)


def job_params(job: Job, settings: Settings) -> dict:
    """The processing parameters of a job: its own ``params`` over the worker's settings."""
    p = dict(job.params or {})
    return {
        "imgsz": int(p.get("imgsz") or settings.pose_imgsz),
        "sample_fps": float(p.get("sample_fps") or settings.sample_fps or 0.0),
        "stride": int(p.get("stride") or settings.window_stride),
        "batch": int(p.get("batch") or settings.pose_batch),
        "pose_mode": str(p.get("pose_mode") or settings.pose_mode),
        "crop_imgsz": int(p.get("crop_imgsz") or settings.pose_crop_imgsz),
        "redetect_s": float(p.get("redetect_s") or settings.pose_redetect_s),
        "crop_margin": float(p["crop_margin"] if p.get("crop_margin") is not None else settings.pose_crop_margin),
        "annotate": bool(p.get("annotate", settings.annotate_video)),
    }


def hand_over(settings: Settings, task_name: str, job_id: str) -> bool:
    """Enqueue the next stage (its state is already committed); True when the message was published.
    If the broker is unreachable the job is left waiting in that state with no publish recorded
    (``jobs.enqueued_at``), and the sweep (worker.sweep) enqueues it again after
    ``settings.unsent_after_s``."""
    from worker.celery_app import send_stage

    try:
        send_stage(task_name, job_id, settings)
    except Exception:
        log.exception("could not enqueue %s for job %s; the sweep will retry", task_name, job_id)
        return False
    return True


def run_claimed(settings: Settings, job_id: str, stage: str, task_id: str | None, body) -> bool:
    """Claim ``stage`` of the job, run its body and hand the job over to the next stage
    (:data:`NEXT_TASK`, when the body left the job waiting for it); True when the body ran to its end.

    ``body(settings, claim)`` returns True once the stage's results and the job's next state are committed,
    False when the job was taken over, finished or deleted meanwhile. An error fails the job with a readable
    reason, except a lost database/broker connection, which propagates so the Celery task retries
    (run_stage)."""
    claimed = claim(settings, job_id, stage, task_id)
    if claimed is None:
        return False
    try:
        if not body(settings, claimed):
            return False
    except Exception as exc:  # noqa: BLE001 - every failure ends the job with a reason
        if transient(exc):
            give_back_attempt(settings, claimed)
            raise
        fail(settings, job_id, stage, exc, claimed.task_id)
        return False
    next_task, waiting_state = NEXT_TASK.get(stage, (None, None))
    if next_task and waits_for(settings, job_id, waiting_state):
        hand_over(settings, next_task, job_id)
    return True


def give_back_attempt(settings: Settings, c: Claim) -> None:
    """The claimed stage stopped on a transient error (the database, the broker or the object storage unreachable)
    and its task will be retried (run_stage, at most TRANSIENT_RETRIES times): that run does not count against
    ``HAR_MAX_ATTEMPTS``, which bounds the attempts that crashed (a worker killed, out of memory), so a short outage
    and a worker restart together do not fail a job with "gave up after 3 attempts". Best effort: when the database
    itself cannot record it, the attempt counts."""
    try:
        with session_scope(settings) as s:
            s.execute(update(Job)
                      .where(Job.id == c.job_id, Job.task_id == c.task_id, Job.attempts == c.attempt,
                             unfinished_sql())
                      .values(attempts=c.attempt - 1))
    except Exception as exc:  # noqa: BLE001 - the database is down too: the attempt counts
        log.warning("%s: job %s: could not give back attempt %d (%s)", c.stage, c.job_id, c.attempt,
                    str(exc).splitlines()[0][:200] if str(exc) else type(exc).__name__)


def waits_for(settings: Settings, job_id: str, state: str) -> bool:
    """Whether the job is in ``state`` (har.jobs.worker_state), waiting there for its next task."""
    with session_scope(settings) as s:
        job = s.get(Job, job_id)
        return job is not None and worker_state(job) == state


TRANSIENT_RETRIES = 5


def transient(exc: BaseException) -> bool:
    """Lost database or broker connections: worth retrying the task rather than failing the job."""
    from sqlalchemy.exc import DBAPIError

    if isinstance(exc, DBAPIError) and exc.connection_invalidated:
        return True
    try:
        from sqlalchemy.exc import OperationalError

        if isinstance(exc, OperationalError):
            return True
    except ImportError:  # pragma: no cover
        pass
    try:  # the object storage unreachable or overloaded (S3 storage only)
        from har.storage_s3 import is_transient

        if is_transient(exc):
            return True
    except ImportError:  # pragma: no cover - boto3 not installed: local storage only
        pass
    try:
        import kombu.exceptions
        import redis.exceptions

        return isinstance(exc, (kombu.exceptions.OperationalError, redis.exceptions.ConnectionError))
    except ImportError:  # pragma: no cover
        return False


def run_stage(task, stage: str, fn, job_id: str) -> bool:
    """Run ``fn(settings, job_id, task_id)`` for a Celery task: an unexpected error (even in the
    bookkeeping around the stage) fails the job with a reason, except a lost database/broker
    connection, which retries the task a few times (with back-off) first."""
    from worker.celery_app import get_settings

    settings = get_settings()
    try:
        return fn(settings, job_id, task.request.id)
    except Exception as exc:  # noqa: BLE001
        if transient(exc) and task.request.retries < TRANSIENT_RETRIES:
            log.warning("%s: job %s: %s; retrying", stage, job_id, exc)
            raise task.retry(exc=exc, countdown=min(60, 5 * 2 ** task.request.retries)) from exc
        fail(settings, job_id, stage, exc, task.request.id or "local")
        return False
