"""Stage 4 (queue ``video``): the annotated video of a done job → its ``video`` Report row → video ready.

Enqueued by the report stage once the job is done (only when the job asks for an annotated video), so the
results and reports never wait for the render. The job waits in the workers' ``rendering`` state
(har.jobs.worker_state) and is claimed, heartbeated, retried and swept like every other stage; a failure
marks the video failed with a reason, and the job stays done.
"""
from __future__ import annotations

from sqlalchemy import delete, select

from har.config import Settings
from har.database import session_scope
from har.db import DONE, PoseData, Report
from har.jobs import set_status
from har.storage import sha256_file
from worker import runtime
from worker.celery_app import VIDEO_TASK, celery_app

# The annotated video's name; its suffix and media type follow the format written (worker/annotate.py):
# annotated.mp4 (video/mp4, H.264 through ffmpeg) or annotated.webm (video/webm, OpenCV VP8 fallback).
VIDEO_NAME = "annotated.mp4"
VIDEO_SUFFIXES = (".mp4", ".webm")


def run_video(settings: Settings, job_id: str, task_id: str | None) -> bool:
    return runtime.run_claimed(settings, job_id, "video", task_id, _render)


def _render(settings: Settings, claim: runtime.Claim) -> bool:
    """Render the video; commits its Report row and the video's move to ready (False: taken over/deleted)."""
    job_id = claim.job_id
    from models.tracks import PoseExtraction
    from worker.annotate import write_annotated_video

    storage = runtime.storage(settings)
    with session_scope(settings) as s:
        job = runtime.get_job(s, job_id)
        video_rel = job.video.path
        result = job.result
        data = s.scalar(select(PoseData.data).where(PoseData.job_id == job_id))
    if data is None:
        raise runtime.JobError("The annotated video could not be rendered: the pose data of this job is missing.")
    if not storage.exists(video_rel):
        raise runtime.JobError("The annotated video could not be rendered: the uploaded video is no longer stored.")

    # the upload as a local file (fetched into a per-job temporary directory unless stored locally), the video
    # written into the job's output folder (local: jobs/<id>/; S3: a temporary folder, uploaded when the block ends)
    with runtime.Heartbeat(settings, claim), storage.local_copy(video_rel, job_id=job_id) as source, \
            storage.job_output(job_id) as folder:
        video = write_annotated_video(source, PoseExtraction.from_bytes(data), result, folder / VIDEO_NAME)
        name, size, sha256 = video.path.name, video.path.stat().st_size, sha256_file(video.path)
    key = storage.job_key(job_id, name)
    _remove_other_formats(storage, job_id, name)

    with session_scope(settings) as s:
        job = runtime.lock_own(s, settings, claim)
        if job is None:
            return False
        timings = dict(job.timings or {})
        timings["video_s"] = runtime.stage_elapsed(claim)
        s.execute(delete(Report).where(Report.job_id == job_id, Report.kind == "video"))
        s.add(Report(job_id=job_id, kind="video", path=key, media_type=video.media_type, size_bytes=size,
                     sha256=sha256))
        set_status(s, job, DONE, "done", worker=None, timings=timings)
    return True


def _remove_other_formats(storage, job_id: str, name: str) -> None:
    """A retried render may have left the other format behind (ffmpeg .mp4 vs the OpenCV .webm fallback)."""
    stem, _, suffix = name.rpartition(".")
    for other in VIDEO_SUFFIXES:
        if other != f".{suffix}":
            try:
                storage.delete(storage.job_key(job_id, stem + other))
            except Exception:  # noqa: BLE001 - a leftover costs space, not correctness
                runtime.log.warning("video: could not remove %s%s of job %s", stem, other, job_id, exc_info=True)


@celery_app.task(name=VIDEO_TASK, bind=True, acks_late=True, reject_on_worker_lost=True)
def video_task(self, job_id: str) -> bool:
    return runtime.run_stage(self, "video", run_video, job_id)
