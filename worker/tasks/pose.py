"""Stage 1 (queue ``pose``): sample the video, find people, follow them → PoseData + Track rows."""
from __future__ import annotations

import time

from sqlalchemy import delete

from har.config import Settings
from har.database import session_scope
from har.db import CLASSIFYING, PoseData, Track
from har.jobs import set_status
from worker import runtime
from worker.celery_app import POSE_TASK, celery_app
from worker.engines import get_classifier, get_pose_estimator

PROGRESS_EVERY_S = 0.5


class _Progress:
    """Writes frames done/total to the job row, at most every ``PROGRESS_EVERY_S`` seconds."""

    def __init__(self, settings: Settings, claim: runtime.Claim):
        self.settings, self.claim = settings, claim
        self.last = 0.0

    def __call__(self, done: int, total: int) -> None:
        now = time.monotonic()
        if now - self.last < PROGRESS_EVERY_S and done < total:
            return
        self.last = now
        try:
            runtime.beat(self.settings, self.claim.job_id, self.claim.task_id,
                         frames_done=int(done), frames_total=int(total))
        except Exception:  # progress is informative; a missed update must not stop the stage
            runtime.log.warning("pose: progress update for job %s failed", self.claim.job_id, exc_info=True)


def run_pose(settings: Settings, job_id: str, task_id: str | None) -> bool:
    """The pose stage for one job; True when the job moved on to classifying."""
    return runtime.run_claimed(settings, job_id, "pose", task_id, _extract)


def _extract(settings: Settings, claim: runtime.Claim) -> bool:
    """Video → tracks; commits PoseData + Track rows and the move to classifying (False: taken over)."""
    job_id = claim.job_id
    with session_scope(settings) as s:
        job = runtime.get_job(s, job_id)
        video_rel = job.video.path
        params = runtime.job_params(job, settings)
    storage = runtime.storage(settings)
    if not storage.exists(video_rel):
        raise runtime.JobError("The uploaded video file is missing from storage, so it cannot be processed.")

    from models.pose import default_sample_fps
    from models.pose.extract import extract_tracks

    # the video as a local file: where it lies (local storage), else fetched into a per-job temporary directory
    # that is removed when the block ends, also on an error
    with runtime.Heartbeat(settings, claim), storage.local_copy(video_rel, job_id=job_id) as video_path:
        estimator = get_pose_estimator(settings, params["imgsz"])
        target_fps = params["sample_fps"] or default_sample_fps(get_classifier().fps)
        t0 = time.monotonic()
        extraction = extract_tracks(str(video_path), estimator, target_fps=target_fps,
                                    batch_size=params["batch"], progress=_Progress(settings, claim),
                                    mode=params["pose_mode"], crop_imgsz=params["crop_imgsz"],
                                    redetect_s=params["redetect_s"], crop_margin=params["crop_margin"])
        extract_s = time.monotonic() - t0
    data = extraction.to_bytes()

    with session_scope(settings) as s:
        job = runtime.lock_own(s, settings, claim)
        if job is None:
            return False
        s.execute(delete(Track).where(Track.job_id == job_id))
        s.execute(delete(PoseData).where(PoseData.job_id == job_id))
        s.add(PoseData(job_id=job_id, sampled_fps=float(extraction.sampled_fps),
                       frames_sampled=int(extraction.n_frames), data=data))
        for t in extraction.tracks:
            if len(t) == 0:
                continue
            s.add(Track(job_id=job_id, track_id=int(t.track_id), start_s=float(t.times[0]),
                        end_s=float(t.times[-1]), frames=len(t), mean_score=float(t.scores.mean())))
        timings = dict(job.timings or {})
        timings["pose_s"] = runtime.stage_elapsed(claim)
        timings["pose_extract_s"] = round(extract_s, 3)
        cpu = extraction.meta.get("cpu_s") or {}
        if cpu:  # where the pose stage's CPU went (models.pose.extract)
            timings["pose_cpu_s"] = cpu.get("total")
            timings["pose_decode_cpu_s"] = cpu.get("decode")
        name = getattr(estimator, "name", "pose")
        version = getattr(estimator, "version", "")
        set_status(s, job, CLASSIFYING, f"{len(extraction.tracks)} track(s) found; waiting to classify",
                   frames_done=int(extraction.n_frames), frames_total=int(extraction.n_frames),
                   pose_model=f"{name} {version}".strip()[:128], timings=timings,
                   task_id=None, worker=None, attempts=0)
    return True


@celery_app.task(name=POSE_TASK, bind=True, acks_late=True, reject_on_worker_lost=True)
def pose_task(self, job_id: str) -> bool:
    return runtime.run_stage(self, "pose", run_pose, job_id)
