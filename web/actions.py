"""Actions on an existing job, shared by the API and the pages: delete it, run it again.

Both need the job to be finished (done or failed): a job still in the workers' hands is never
deleted (a worker would write into a job that is gone) nor run again (it has not ended yet). Both are
for the job's owner (or an admin token): 403 for anyone else (web/auth.py).
Errors are :class:`web.uploads.UploadError` (HTTP status, code, message for people).
"""
from __future__ import annotations

import logging
from typing import Any, Mapping

from har.db import TERMINAL_STATES, Job
from har.jobs import JobBusy, create_rerun, lock_job
from har.jobs import delete_job as delete_job_rows

from .auth import require_manager, require_submitter
from .ratelimit import check_new_job
from .uploads import UploadError, enqueue_or_fail, parse_params, webhook_fields

log = logging.getLogger(__name__)

MAX_JOB_ID = 64
DELETE_STORAGE_UNAVAILABLE_MESSAGE = ("The job was not deleted: the storage service is unavailable right now, so its "
                                      "files could not be removed. Nothing was changed; please try again later.")


def _not_found(job_id: str) -> UploadError:
    return UploadError(404, "not_found", f"No job with id {job_id}.")


def _busy(status: str, action: str) -> UploadError:
    return UploadError(409, "job_running",
                       f"The job is still in progress (status: {status}); wait for it to finish, then {action}.")


def _locked_job(session, job_id: str) -> Job:
    job = lock_job(session, job_id) if len(job_id) <= MAX_JOB_ID else None
    if job is None:
        session.rollback()
        raise _not_found(job_id)
    return job


def delete_job(job_id: str, storage, session, *, principal) -> Job:
    """Delete a finished job of ``principal``'s, its rows and its files (and its video when no other job uses it).

    Returns the deleted (detached) job. The rows go in one transaction; the files after it commits,
    so a failure never leaves rows pointing at missing files. When the storage cannot be reached the job is not
    deleted at all (503 ``storage_unavailable``): its rows would go and its files stay, with nothing left to find
    them by."""
    try:  # before the row is locked (S3: a HEAD of the bucket, seconds at most)
        storage.check()
    except Exception as exc:  # noqa: BLE001 - unreachable, refusing, not writable
        session.rollback()
        log.warning("job %s not deleted: the storage cannot be reached (%s)", job_id,
                    str(exc).splitlines()[0][:200] if str(exc) else type(exc).__name__)
        raise UploadError(503, "storage_unavailable", DELETE_STORAGE_UNAVAILABLE_MESSAGE) from None
    job = _locked_job(session, job_id)
    try:
        require_manager(principal, job, "delete it")
    except UploadError:
        session.rollback()
        raise
    try:
        files = delete_job_rows(session, job)
    except JobBusy as exc:
        session.rollback()
        raise _busy(exc.status, "delete it") from None
    except BaseException:
        session.rollback()
        raise
    session.commit()
    left = storage.delete_job_files(job_id, files)
    if left:
        log.warning("job %s deleted, but these files could not be removed: %s", job_id, ", ".join(left))
    return job


def _check_can_rerun(job: Job, storage) -> None:
    """409 while the job runs, 410 when its uploaded video is no longer stored."""
    if job.status not in TERMINAL_STATES:
        raise _busy(job.status, "run it again")
    if job.video is None or not storage.exists(job.video.path):
        raise UploadError(410, "video_gone",
                          "The uploaded video of this job is no longer stored, so it cannot be run again. "
                          "Upload the video again instead.")


def rerun_job(job_id: str, form: Mapping[str, Any], settings, storage, session, *, principal) -> Job:
    """A new queued job (``principal``'s) for the stored video of the finished job ``job_id``, enqueued; the old
    job stays.

    ``form``: optional imgsz / fps / stride (validated like an upload's); the ones not given keep the
    old job's values; ``callback_url`` likewise (the old job's when not given). A new job: it needs a token under
    ``HAR_AUTH=required`` and counts against the rate limit."""
    params = parse_params(form)
    require_submitter(principal)
    # everything that can refuse the request is checked before the job's row is locked: whether the job is there
    # and the principal's, whether it has finished, whether its video is still stored (S3: a HEAD request), the
    # webhook fields and the rate limit; the lock is then held only to create the new job
    job = session.get(Job, job_id) if len(job_id) <= MAX_JOB_ID else None
    if job is None:
        session.rollback()
        raise _not_found(job_id)
    try:
        require_manager(principal, job, "run it again")
        _check_can_rerun(job, storage)
        webhook = webhook_fields(form, settings, principal, source=job)
        check_new_job(principal)  # 429 when over the limit
    except BaseException:
        session.rollback()
        raise
    session.rollback()  # end the read: the row is read again under its lock
    job = _locked_job(session, job_id)
    try:
        if job.status not in TERMINAL_STATES:  # re-run or deleted since the check above
            raise _busy(job.status, "run it again")
        new = create_rerun(session, job, params, owner=principal.owner)
        for name, value in webhook.items():
            setattr(new, name, value)
        session.commit()
    except BaseException:
        session.rollback()
        raise
    enqueue_or_fail(new, settings, session)
    return new


def resend_webhook(job: Job, delivery_id: int, session):
    """A new delivery of the event of ``job``'s delivery ``delivery_id`` (the manager was checked by the caller);
    committed, and its task sent after the commit."""
    from har import webhooks
    from har.db import WebhookDelivery

    delivery = session.get(WebhookDelivery, delivery_id)
    if delivery is None or delivery.job_id != job.id:
        raise UploadError(404, "not_found", f"Job {job.id} has no webhook delivery {delivery_id}.")
    if not (job.callback_url or delivery.url):
        raise UploadError(409, "no_callback_url", "This job has no callback URL.")
    row = webhooks.resend(session, delivery)
    session.commit()
    return row
