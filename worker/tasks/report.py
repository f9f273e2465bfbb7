"""Stage 3 (queue ``classify``): annotated video + report.json/.csv/.html → Report rows → done."""
from __future__ import annotations

import time

from sqlalchemy import delete

from har.config import Settings
from har.database import session_scope
from har.db import DONE, REPORTING, Job, JobEvent, PoseData, Report, utcnow
from har.jobs import as_utc, lock_job, set_status
from har.storage import sha256_file
from worker import runtime
from worker.celery_app import REPORT_TASK, celery_app

# The annotated video's name; its suffix and media type follow the format written (worker/annotate.py):
# annotated.mp4 (video/mp4, H.264 through ffmpeg) or annotated.webm (video/webm, OpenCV VP8 fallback).
VIDEO_NAME = "annotated.mp4"


def run_report(settings: Settings, job_id: str, task_id: str | None) -> bool:
    return runtime.run_claimed(settings, job_id, "report", task_id, _report)


def _report(settings: Settings, claim: runtime.Claim) -> bool:
    """Annotated video + reports; commits Report rows and the move to done (False: taken over/deleted)."""
    job_id = claim.job_id
    from har.reports import render_reports
    from models.tracks import PoseExtraction
    from worker.annotate import write_annotated_video

    storage = runtime.storage(settings)
    with session_scope(settings) as s:
        job = runtime.get_job(s, job_id)
        params = runtime.job_params(job, settings)
        video_rel = job.video.path
        result = job.result
        pose = s.get(PoseData, job_id)
        data = pose.data if pose is not None else None

    video_note = None
    video = None  # AnnotatedVideo
    annotate_s = 0.0
    with runtime.Heartbeat(settings, claim):
        if params["annotate"] and data is not None:
            t0 = time.monotonic()
            out, _rel = storage.job_path(job_id, VIDEO_NAME)
            try:
                video = write_annotated_video(storage.path(video_rel), PoseExtraction.from_bytes(data), result,
                                              out)
            except Exception as exc:  # the reports are still worth delivering
                runtime.log.warning("report: annotated video for job %s failed", job_id, exc_info=True)
                video_note = f"annotated video not available ({type(exc).__name__}: {exc})"[:300]
            else:
                for suffix in (".mp4", ".webm"):  # a retried job may have left the other format behind
                    if suffix != video.path.suffix:
                        try:
                            video.path.with_suffix(suffix).unlink(missing_ok=True)
                        except OSError:
                            pass
            annotate_s = time.monotonic() - t0

        with session_scope(settings) as s:
            job = lock_job(s, job_id)
            if job is None:
                runtime.log.warning("report: job %s was deleted meanwhile; its files are removed", job_id)
                runtime.discard_job_files(settings, job_id)
                return False
            if job.task_id != claim.task_id or job.status != REPORTING:
                runtime.log.warning("report: job %s was taken over or finished meanwhile", job_id)
                return False
            events = list(job.events)
            timings = dict(job.timings or {})
            timings.update(_queue_waits(job, events, claim))
            timings["annotate_s"] = round(annotate_s, 3)
            # the reports take milliseconds to render: the stage's time is taken just before, so the
            # files and the job row carry the same numbers
            timings["report_s"] = runtime.stage_elapsed(claim)
            timings["total_s"] = round((utcnow() - as_utc(job.created_at)).total_seconds(), 3)
            set_status(s, job, DONE, "done" if video_note is None else f"done; {video_note}",
                       task_id=None, worker=None, timings=timings)
            files = render_reports(job, storage)  # json, csv, html
            if video is not None:
                files.append(("video", storage.relative(video.path), video.media_type))
            s.execute(delete(Report).where(Report.job_id == job_id))
            for kind, rel_path, media_type in files:
                path = storage.path(rel_path)
                s.add(Report(job_id=job_id, kind=kind, path=rel_path, media_type=media_type,
                             size_bytes=path.stat().st_size, sha256=sha256_file(path)))
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
