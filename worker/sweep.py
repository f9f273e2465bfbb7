"""Recovery of jobs whose worker died, and of jobs whose next task was never enqueued.

Acks late + reject-on-worker-lost make the broker deliver a task again when the process running it
dies; this sweep covers what that cannot (the whole worker killed, Redis restarted without the
message, the web app stopped between committing a job and enqueuing it):

* a stage *held* by a worker (``jobs.task_id`` set) whose heartbeat stopped for ``settings.stale_after_s``:
  the stage is enqueued again, or the job fails once it used its ``settings.max_attempts`` starts;
* a job *waiting* for its next stage (``queued``, or ``classifying``/``reporting``/``rendering`` not yet picked up)
  whose message never reached the broker (no ``jobs.enqueued_at``: the sender died between its commit and
  the publish, or the publish failed) for ``settings.unsent_after_s``; or whose message was published that long
  ago and is no longer in its queue (read from Redis: a worker took it and lost it, e.g. Redis was killed while
  the worker held it unacknowledged, so it could not be handed back, and it would sit in Redis' unacked set for
  the 4 h visibility timeout); or, when the queues cannot be read, whose message was published
  ``settings.requeue_after_s`` ago: the stage is enqueued again (a duplicate is harmless: tasks skip jobs that
  are past their stage or held by a live worker).

A done job whose annotated video renders is in the workers' ``rendering`` state (har.jobs.worker_state) and
is swept the same way: its render is enqueued again, or, once it used its attempts, its video is marked
failed with the reason (the job stays done), so no video is left ``rendering`` for good.

It runs in every worker at start-up and then every ``settings.sweep_interval_s`` (one worker at a time, by a
Redis lock), and by hand with ``python -m worker.sweep``. Each periodic pass then removes expired jobs when data
retention is on (``HAR_RETENTION_DAYS``: worker/retention.py, with its own lock).
"""
from __future__ import annotations

import logging
import threading
from datetime import timedelta

from sqlalchemy import select

from har.config import Settings, load_settings
from har.database import session_scope
from har.db import CLASSIFYING, EXTRACTING, QUEUED, RENDERING, REPORTING, TERMINAL_STATES, Job, utcnow
from har.jobs import as_utc, fail_job, lock_job, unfinished_sql, worker_state
from worker import retention, runtime
from worker.celery_app import (
    CLASSIFY_TASK,
    POSE_TASK,
    REPORT_TASK,
    SWEEP_TASK,
    VIDEO_TASK,
    celery_app,
    get_settings,
)

log = logging.getLogger("worker.sweep")

# the workers' state of a job (har.jobs.worker_state) -> the task it needs next, and the stage's name
STAGE_TASK = {QUEUED: POSE_TASK, EXTRACTING: POSE_TASK, CLASSIFYING: CLASSIFY_TASK, REPORTING: REPORT_TASK,
              RENDERING: VIDEO_TASK}
STAGE_NAME = {QUEUED: "pose", EXTRACTING: "pose", CLASSIFYING: "classify", REPORTING: "report", RENDERING: "video"}


def sweep(settings: Settings | None = None, now=None, stale_after_s: float | None = None,
          requeue_after_s: float | None = None, max_attempts: int | None = None,
          enqueue: bool = True, unsent_after_s: float | None = None) -> list[tuple[str, str]]:
    """One pass; returns ``[(job_id, "requeued" | "failed"), ...]``."""
    settings = settings or load_settings()
    now = now or utcnow()
    stale_after_s = settings.stale_after_s if stale_after_s is None else stale_after_s
    requeue_after_s = settings.requeue_after_s if requeue_after_s is None else requeue_after_s
    unsent_after_s = settings.unsent_after_s if unsent_after_s is None else unsent_after_s
    max_attempts = settings.max_attempts if max_attempts is None else max_attempts
    actions: list[tuple[str, str]] = []
    to_send: list[tuple[str, str]] = []
    queued = queued_job_ids(settings) if enqueue else None  # read before the rows: a later publish is recent
    with session_scope(settings) as s:
        ids = s.scalars(select(Job.id).where(unfinished_sql())).all()
        for job_id in ids:
            job = lock_job(s, job_id)
            state = worker_state(job) if job is not None else None
            if state is None or state in TERMINAL_STATES:
                continue
            if job.task_id and job.worker:  # held by a worker
                if runtime.holder_alive(job.worker, job.heartbeat_at, stale_after_s, now, from_task=False):
                    continue
                stage = STAGE_NAME[state]
                if (job.attempts or 0) >= max_attempts:
                    fail_job(s, job, f"Gave up after {job.attempts} attempts at the {stage} stage: each attempt "
                                     f"stopped before finishing (the worker crashed, ran out of memory, was "
                                     f"restarted or lost its connection).")
                    actions.append((job_id, "failed"))
                    continue
                log.warning("job %s: the %s stage stopped (worker %s silent since %s); enqueued again",
                            job_id, stage, job.worker, job.heartbeat_at)
                job.worker = None  # released: the next start of this stage counts as another attempt
            else:  # waiting for a worker to pick up its stage (or released by an earlier pass)
                sent = as_utc(job.enqueued_at)
                if sent is not None and queued is not None and job_id not in queued:
                    # taken from the queue but never started: lost (see the module doc); sent again soon
                    last, wait, why = sent, unsent_after_s, "its message is no longer in the queue"
                elif sent is not None:  # its message is in the queue (workers may be busy): the long wait
                    last, wait, why = sent, requeue_after_s, "its message was sent"
                else:  # its message never reached the broker: send it after a short grace
                    last = max((t for t in (as_utc(job.heartbeat_at), as_utc(job.updated_at),
                                            as_utc(job.created_at)) if t is not None), default=now)
                    wait, why = unsent_after_s, "its message was never sent"
                if now - last < timedelta(seconds=wait):
                    continue
                log.warning("job %s: %s for %s without a worker (%s); enqueued again", job_id, state,
                            now - last, why)
            job.heartbeat_at = now  # the next pass waits a full period again
            job.enqueued_at = None  # until the new message is published (worker.celery_app.send_stage)
            to_send.append((STAGE_TASK[state], job_id))
            actions.append((job_id, "requeued"))
    if enqueue:
        for i, (task_name, job_id) in enumerate(to_send):
            if runtime.hand_over(settings, task_name, job_id) is False:
                # the broker is unreachable: the rest stay unsent, and the next pass tries them again
                log.warning("sweep: the broker is unreachable; %d job(s) left for the next pass", len(to_send) - i - 1)
                break
    return actions


PRIORITY_SEP = "\x06\x16"  # kombu's Redis transport: a queue's priority levels are lists "<queue>\x06\x16<n>"


def queued_job_ids(settings: Settings) -> set[str] | None:
    """The job ids of the stage messages waiting in the broker's queues (Redis lists), or None when they cannot be
    read (Redis unreachable, another broker)."""
    try:
        import redis

        client = redis.Redis.from_url(settings.redis_url, socket_timeout=5, socket_connect_timeout=5)
    except Exception:  # noqa: BLE001 - not a Redis URL
        return None
    ids: set[str] = set()
    try:
        for queue in {settings.pose_queue, settings.classify_queue, settings.report_queue, settings.video_queue}:
            for key in [queue] + [f"{queue}{PRIORITY_SEP}{n}" for n in range(1, 10)]:
                for start in range(0, client.llen(key), 500):
                    ids.update(filter(None, map(_message_job_id, client.lrange(key, start, start + 499))))
    except Exception:  # noqa: BLE001 - unreachable right now
        return None
    finally:
        client.close()
    return ids


def _message_job_id(raw: bytes) -> str | None:
    """The job id a stage message is for (Celery's message protocol 2: the body is ``[args, kwargs, embed]``)."""
    import base64
    import json

    try:
        msg = json.loads(raw)
        body = msg["body"]
        if (msg.get("properties") or {}).get("body_encoding") == "base64":
            body = base64.b64decode(body)
        args = json.loads(body)[0]
        return str(args[0]) if args else None
    except Exception:  # noqa: BLE001 - not one of ours
        return None


def _acquire_lock(settings: Settings, seconds: float, key: str = "har:sweep-lock") -> bool:
    """One sweep per period across all workers (Redis SET NX EX); True when Redis is unreachable."""
    try:
        import redis

        client = redis.Redis.from_url(settings.redis_url, socket_timeout=5, socket_connect_timeout=5)
        try:
            return bool(client.set(key, runtime.worker_name(), nx=True, ex=max(1, int(seconds))))
        finally:
            client.close()
    except Exception:
        return True


def sweep_once(settings: Settings, locked: bool = True, unsent_after_s: float | None = None
               ) -> list[tuple[str, str]]:
    actions: list[tuple[str, str]] = []
    if not locked or _acquire_lock(settings, settings.sweep_interval_s * 0.8):
        try:
            actions = sweep(settings, unsent_after_s=unsent_after_s)
            if actions:
                log.warning("sweep: %s", actions)
        except Exception:
            log.exception("sweep failed")
    if not locked or _acquire_lock(settings, settings.sweep_interval_s * 0.8, "har:webhook-sweep-lock"):
        try:  # webhook deliveries due after a long wait, or whose message was lost (worker/webhooks.py)
            from worker.webhooks import sweep_deliveries

            sweep_deliveries(settings)
        except Exception:
            log.exception("sweep of the webhook deliveries failed")
    # HAR_RETENTION_DAYS: expired jobs removed in bounded batches, one worker per period (its own lock); never raises
    retention.run_scheduled(settings)
    _remove_stale_temp_dirs(settings)
    if not locked or _acquire_lock(settings, settings.sweep_interval_s * 0.8, "har:upload-sweep-lock"):
        _abort_stale_uploads(settings)
    return actions


def _abort_stale_uploads(settings: Settings) -> None:
    """S3: multipart uploads that a process which died (worker or web) left unfinished for
    ``settings.multipart_abort_after_s``."""
    try:
        from har.storage import open_storage

        aborted = open_storage(settings).abort_stale_uploads(settings.multipart_abort_after_s)
        if aborted:
            log.warning("sweep: aborted %d unfinished multipart upload(s): %s", len(aborted), aborted)
    except Exception:
        log.exception("sweep: could not abort the unfinished uploads")


def _remove_stale_temp_dirs(settings: Settings) -> None:
    """Temporary copies a killed worker left in this machine's spool (S3 storage: the inputs it had fetched)."""
    try:
        from har.storage import open_storage

        removed = open_storage(settings).remove_stale_temp_dirs()
        if removed:
            log.warning("sweep: removed %d temporary folder(s) of stopped processes: %s", len(removed), removed)
    except Exception:
        log.exception("sweep: could not clean the spool")


# after the broker connection comes back (see SweepThread.wake): passes this many seconds later, so a pool
# process Celery cancelled when the connection broke has exited by then (its pid is checked), and the hand-overs
# that failed while the broker was down are sent after this grace instead of settings.unsent_after_s
RECONNECT_PASSES_S = (1.0, 6.0)
RECONNECT_UNSENT_AFTER_S = 3.0


class SweepThread(threading.Thread):
    """A pass at start-up (this worker's own lost jobs, without the lock), then one every ``interval`` seconds,
    and a short burst of passes when :meth:`wake` says the broker connection is back."""

    def __init__(self, settings: Settings, interval: float | None = None):
        super().__init__(name="har-sweep", daemon=True)
        self.settings = settings
        self.interval = settings.sweep_interval_s if interval is None else interval
        self.stopped = threading.Event()
        self._woken = threading.Event()

    def run(self) -> None:
        sweep_once(self.settings, locked=False)
        while not self.stopped.is_set():
            if not self._woken.wait(self.interval):
                if not self.stopped.is_set():
                    sweep_once(self.settings)
                continue
            self._woken.clear()
            # The connection broke and came back (Redis restarted): the stage Celery cancelled meanwhile and
            # the hand-overs that could not be published are sent now, not a sweep period (and the unsent
            # grace) later. Without the lock: the last holder may have taken it before the outage.
            waited = 0.0
            for at in RECONNECT_PASSES_S:
                if self.stopped.wait(at - waited):
                    return
                waited = at
                log.info("sweep: the broker connection is back; looking for interrupted jobs")
                sweep_once(self.settings, locked=False,
                           unsent_after_s=min(RECONNECT_UNSENT_AFTER_S, self.settings.unsent_after_s))

    def wake(self) -> None:
        """The broker connection was lost and is back (worker.lifecycle)."""
        self._woken.set()

    def stop(self) -> None:
        self.stopped.set()
        self._woken.set()


@celery_app.task(name=SWEEP_TASK, ignore_result=True)
def sweep_task() -> list:
    """The same pass as a task (for a Celery beat schedule, or ``celery call har.sweep``)."""
    return [list(a) for a in sweep(get_settings())]


if __name__ == "__main__":  # python -m worker.sweep
    logging.basicConfig(level=logging.INFO)
    for job_id, action in sweep(load_settings()):
        print(action, job_id)
