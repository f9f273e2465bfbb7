"""Stage 3 (queue ``classify``): report.json/.csv/.html → Report rows → done.

The job is done as soon as its reports are written; its annotated video (when asked for) is rendered after
that by its own task (worker/tasks/video.py), and the job waits for it in the workers' ``rendering`` state.
"""
from __future__ import annotations

from sqlalchemy import delete

from har.config import Settings
from har.database import session_scope
from har.db import DONE, RENDERING, Job, JobEvent, Report, utcnow
from har.jobs import as_utc, set_status
from worker import runtime
from worker.celery_app import REPORT_TASK, celery_app


def run_report(settings: Settings, job_id: str, task_id: str | None) -> bool:
    return runtime.run_claimed(settings, job_id, "report", task_id, _report)


def _report(settings: Settings, claim: runtime.Claim) -> bool:
    """Reports; commits Report rows and the move to done (False: taken over/deleted). The move is to the
    workers' ``rendering`` state when the job asks for an annotated video: its task is enqueued next.

    The files are written before the rows that name them, and with no row locked: the reports are rendered (in
    memory, milliseconds) from the job as the move to done leaves it, in a transaction that is then rolled back;
    they are stored (S3: uploaded, which may take a while); then, under the job's lock, the move to done and the
    Report rows (with the stored files' sizes and hashes) are committed, if the job is still this stage's. A job
    deleted meanwhile has its files removed (:func:`worker.runtime.lock_own`)."""
    job_id = claim.job_id
    from har.reports import render_report, store_reports

    storage = runtime.storage(settings)
    with session_scope(settings) as s:
        job = runtime.lock_own(s, settings, claim)
        if job is None:
            return False
        target = RENDERING if runtime.job_params(job, settings)["annotate"] else DONE
        events = list(job.events)
        timings = dict(job.timings or {})
        timings.update(_queue_waits(job, events, claim))
        # the reports take milliseconds to render: the stage's time is taken just before, so the
        # files and the job row carry the same numbers
        timings["report_s"] = runtime.stage_elapsed(claim)
        timings["total_s"] = round((utcnow() - as_utc(job.created_at)).total_seconds(), 3)
        at = utcnow()
        set_status(s, job, target, "done", at=at, task_id=None, worker=None, timings=timings)
        texts = {kind: render_report(job, kind) for kind in ("json", "csv", "html")}
        s.rollback()  # the job's row as it was: the move is committed with the rows below
    files = store_reports(job_id, storage, texts)  # json, csv, html, through the storage (local files or S3)
    with session_scope(settings) as s:
        job = runtime.lock_own(s, settings, claim)
        if job is None:
            return False
        set_status(s, job, target, "done", at=at, task_id=None, worker=None, timings=timings)
        s.execute(delete(Report).where(Report.job_id == job_id))
        for kind, rel_path, media_type, size, sha256 in files:
            s.add(Report(job_id=job_id, kind=kind, path=rel_path, media_type=media_type,
                         size_bytes=size, sha256=sha256))
    return True


def _queue_waits(job: Job, events: list[JobEvent], claim: runtime.Claim) -> dict:
    """Seconds spent waiting in the queues: created → pose start, pose done → classify start,
    classify done → report start (all from the state history and the stage durations)."""
    def first(status):
        return next((as_utc(e.at) for e in events if e.status == status), None)

    created = as_utc(job.created_at)
    extracting, classifying, reporting = first("extracting"), first("classifying"), first("reporting")
    t = job.timings or {}
    waits = {}
    if created and extracting:
        waits["pose_wait_s"] = (extracting - created).total_seconds()
    if classifying and reporting and "classify_s" in t:
        waits["classify_wait_s"] = max(0.0, (reporting - classifying).total_seconds() - t["classify_s"])
    if reporting:
        from datetime import datetime, timezone

        report_start = datetime.fromtimestamp(claim.started, timezone.utc)
        waits["report_wait_s"] = max(0.0, (report_start - reporting).total_seconds())
    waits = {k: round(v, 3) for k, v in waits.items()}
    waits["queue_wait_s"] = round(sum(waits.values()), 3)
    return waits


@celery_app.task(name=REPORT_TASK, bind=True, acks_late=True, reject_on_worker_lost=True)
def report_task(self, job_id: str) -> bool:
    return runtime.run_stage(self, "report", run_report, job_id)
