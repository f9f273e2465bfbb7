"""Data retention: finished jobs are removed, rows and files, ``HAR_RETENTION_DAYS`` after they ended.

Off by default (``settings.retention_days`` 0). A job is *expired* when it is done or failed (and its annotated video
is not being rendered: har.jobs.worker_state) and both its end (``jobs.finished_at``) and its last change
(``jobs.updated_at``) are more than ``retention_days`` ago. A queued or running job is never removed, however old
(the recovery sweep ends those).

An expired job goes the way a user's delete goes (web.actions.delete_job): its row locked
(har.jobs.lock_job), its rows deleted by har.jobs.delete_job (events, tracks, pose data, predictions, segments,
reports, and its video row only when no other job uses that video, so the upload a re-run shares stays while one
of its jobs is kept), committed, then its files removed (har.storage.BaseStorage.delete_job_files: reports, annotated
video, ``jobs/<id>/``, and the uploaded video when its row went).

The passes run in the workers' sweep (worker.sweep.sweep_once: at start-up and every ``sweep_interval_s``), one
worker per period by a Redis lock (``har:retention-lock``; without Redis the pass is skipped), oldest jobs first and
at most ``retention_batch`` a pass, so a large backlog is worked off over several passes without holding up the
sweep. Passes that overlap anyway are safe: each job is deleted under its row lock, and one already gone is
skipped. By hand: ``python -m worker.retention`` (the whole backlog, no lock).

Each scheduled pass logs what it removed, and its result is kept in Redis (``har:retention-last``), so any process
can read the last pass: :func:`last_run`.
"""
from __future__ import annotations

import json
import logging
import os
import socket
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta

from sqlalchemy import and_, func, or_, select

from har.config import Settings, load_settings
from har.database import session_scope
from har.db import TERMINAL_STATES, VIDEO_RENDERING, Job, utcnow
from har.jobs import as_utc, delete_job, lock_job, worker_state
from har.storage import open_storage

log = logging.getLogger("worker.retention")

LOCK_KEY = "har:retention-lock"
LAST_RUN_KEY = "har:retention-last"


@dataclass
class RetentionRun:
    """One pass: when, the cutoff (jobs that ended before it were expired), the jobs removed."""

    at: str  # ISO 8601, UTC
    cutoff: str
    removed: int = 0
    job_ids: list[str] = field(default_factory=list)
    files_left: list[str] = field(default_factory=list)  # files that could not be removed (logged)
    more: bool = False  # the batch was full: expired jobs may be left for the next pass

    def to_dict(self) -> dict:
        return asdict(self)


_last_run: dict | None = None  # this process's last scheduled pass (when Redis cannot be read)


def _ended():
    return func.coalesce(Job.finished_at, Job.updated_at)


def expired_sql(cutoff: datetime):
    """SQL condition: the job is expired at ``cutoff`` (see the module doc)."""
    return and_(Job.status.in_(TERMINAL_STATES),
                or_(Job.video_status.is_(None), Job.video_status != VIDEO_RENDERING),
                _ended() < cutoff, Job.updated_at < cutoff)


def is_expired(job: Job, cutoff: datetime) -> bool:
    """The same test on a loaded (locked) row."""
    if worker_state(job) not in TERMINAL_STATES:
        return False
    updated = as_utc(job.updated_at)
    ended = as_utc(job.finished_at) or updated
    return ended is not None and updated is not None and ended < cutoff and updated < cutoff


def remove_expired(settings: Settings, now: datetime | None = None, days: float | None = None,
                   batch: int | None = None) -> RetentionRun:
    """One pass without the lock: remove up to ``batch`` (default ``settings.retention_batch``) jobs that ended
    more than ``days`` (default ``settings.retention_days``) before ``now``, oldest first."""
    now = now or utcnow()
    days = settings.retention_days if days is None else days
    batch = max(1, settings.retention_batch if batch is None else batch)
    cutoff = now - timedelta(days=days)
    run = RetentionRun(at=now.isoformat(), cutoff=cutoff.isoformat())
    with session_scope(settings) as s:
        ids = s.scalars(select(Job.id).where(expired_sql(cutoff)).order_by(_ended(), Job.id).limit(batch)).all()
    run.more = len(ids) >= batch
    storage = open_storage(settings)  # local files or S3: the same files a delete removes
    for job_id in ids:
        try:
            deleted = _delete(settings, job_id, cutoff)
        except Exception:  # noqa: BLE001 - one job's trouble must not stop the pass
            log.exception("retention: could not remove job %s", job_id)
            continue
        if deleted is None:
            continue
        files, what = deleted
        left = storage.delete_job_files(job_id, files)
        run.removed += 1
        run.job_ids.append(job_id)
        run.files_left.extend(left)
        log.info("retention: removed job %s (%s; %d file(s) besides its folder)", job_id, what, len(files))
        if left:
            log.warning("retention: job %s removed, but these files could not be: %s", job_id, ", ".join(left))
    return run


def _delete(settings: Settings, job_id: str, cutoff: datetime) -> tuple[list[str], str] | None:
    """Delete the job's rows (committed on return) → (its files to remove, a description), or None when it is
    gone or no longer expired (run again, or changed, since it was selected)."""
    with session_scope(settings) as s:
        job = lock_job(s, job_id)
        if job is None or not is_expired(job, cutoff):
            return None
        ended = as_utc(job.finished_at) or as_utc(job.updated_at)
        name = job.video.original_filename if job.video is not None else "?"
        what = f"{job.status}, ended {ended:%Y-%m-%d %H:%M} UTC, video {name!r}"
        return delete_job(s, job), what


def _redis(settings: Settings):
    import redis

    return redis.Redis.from_url(settings.redis_url, socket_timeout=5, socket_connect_timeout=5)


def _take_lock(settings: Settings) -> bool:
    """This period's pass, for one worker (Redis SET NX EX, held for most of a sweep period)."""
    seconds = max(1, int(settings.sweep_interval_s * 0.8))
    client = _redis(settings)
    try:
        owner = f"{socket.gethostname()}:{os.getpid()}"
        return bool(client.set(LOCK_KEY, owner, nx=True, ex=seconds))
    finally:
        client.close()


def run_scheduled(settings: Settings) -> RetentionRun | None:
    """The sweep's retention step: one pass when retention is on and this worker takes the period's lock, else
    None. Never raises (the recovery sweep must go on)."""
    if settings.retention_days <= 0:
        return None
    try:
        if not _take_lock(settings):
            return None
    except Exception as exc:  # noqa: BLE001 - Redis unreachable: the next period tries again
        log.warning("retention: pass skipped, the lock could not be taken (%s)", exc)
        return None
    try:
        run = remove_expired(settings)
    except Exception:  # noqa: BLE001
        log.exception("retention: pass failed")
        return None
    if run.removed or run.files_left:
        log.info("retention: removed %d job(s) that ended before %s%s", run.removed, run.cutoff,
                 "; more are left for the next pass" if run.more else "")
    _record(settings, run)
    return run


def _record(settings: Settings, run: RetentionRun) -> None:
    global _last_run
    _last_run = run.to_dict()
    try:
        client = _redis(settings)
        try:
            client.set(LAST_RUN_KEY, json.dumps(_last_run))
        finally:
            client.close()
    except Exception:  # noqa: BLE001 - only the record of the pass is lost
        log.debug("retention: the last pass could not be recorded in Redis", exc_info=True)


def last_run(settings: Settings | None = None) -> dict | None:
    """The last scheduled pass of any worker: ``{"at", "cutoff", "removed", "job_ids", "files_left", "more"}``
    (from Redis; this process's own last pass when Redis cannot be read), or None before the first."""
    settings = settings or load_settings()
    try:
        client = _redis(settings)
        try:
            raw = client.get(LAST_RUN_KEY)
        finally:
            client.close()
        if raw:
            return json.loads(raw)
    except Exception:  # noqa: BLE001
        log.debug("retention: the last pass could not be read from Redis", exc_info=True)
    return _last_run


def main(argv: list[str] | None = None) -> int:
    """``python -m worker.retention [--days N]``: remove every expired job now (no lock)."""
    import argparse

    parser = argparse.ArgumentParser(prog="python -m worker.retention", description=main.__doc__)
    parser.add_argument("--days", type=float, default=None, help="instead of HAR_RETENTION_DAYS")
    args = parser.parse_args(argv)
    settings = load_settings()
    days = settings.retention_days if args.days is None else args.days
    if days <= 0:
        print("retention is off: set HAR_RETENTION_DAYS (or --days) to a number of days above 0")
        return 2
    total = 0
    while True:
        run = remove_expired(settings, days=days)
        total += run.removed
        if not (run.more and run.removed):
            break
    print(f"removed {total} job(s) that ended more than {days:g} days ago")
    return 0


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO)
    raise SystemExit(main())
