"""JSON views of jobs, shared by the API and the pages."""
from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

from flask import url_for

from har.db import DONE, EXTRACTING, TERMINAL_STATES, VIDEO_FAILED, VIDEO_READY, Job

from .filters import iso


def _utc(dt: datetime | None) -> datetime | None:
    if dt is None:
        return None
    return dt if dt.tzinfo else dt.replace(tzinfo=timezone.utc)


def eta_seconds(job: Job, now: datetime | None = None) -> float | None:
    """Seconds left in pose extraction, from the rate of the current attempt so far (a new attempt
    starts its count of frames again at its own start); None when unknown or not extracting."""
    if job.status != EXTRACTING or not job.frames_total or job.frames_done <= 0:
        return None
    started = _utc(job.stage_started_at) or _utc(job.started_at)
    if started is None:
        started = next((_utc(e.at) for e in job.events if e.status == EXTRACTING), None)
    if started is None:
        return None
    elapsed = ((now or datetime.now(timezone.utc)) - started).total_seconds()
    if elapsed <= 0:
        return None
    left = max(0, job.frames_total - job.frames_done)
    return round(elapsed * left / job.frames_done, 1)


def progress(job: Job) -> dict[str, Any]:
    return {
        "frames_done": job.frames_done or 0,
        "frames_total": job.frames_total or 0,
        "fraction": round(float(job.progress), 4),
        "eta_s": eta_seconds(job),
    }


def video_facts(job: Job) -> dict[str, Any] | None:
    v = job.video
    if v is None:
        return None
    return {
        "original_filename": v.original_filename,
        "size_bytes": v.size_bytes,
        "sha256": v.sha256,
        "container": v.container,
        "codec": v.codec,
        "duration_s": v.duration_s,
        "fps": v.fps,
        "frame_count": v.frame_count,
        "width": v.width,
        "height": v.height,
        "rotation_deg": v.rotation_deg,
    }


def models_used(job: Job) -> dict[str, Any]:
    models = dict(((job.result or {}).get("models")) or {})
    if not models:
        if job.pose_model:
            models["pose"] = {"name": job.pose_model}
        if job.action_model:
            models["action"] = {"name": job.action_model}
    return models


def links(job: Job) -> dict[str, str | None]:
    done = job.status == DONE
    kinds = {r.kind for r in job.reports}
    return {
        "self": url_for("api.get_job", job_id=job.id),
        "page": url_for("ui.job_page", job_id=job.id),
        "report_json": url_for("api.report", job_id=job.id, fmt="json") if done else None,
        "report_csv": url_for("api.report", job_id=job.id, fmt="csv") if done else None,
        "report_html": url_for("api.report", job_id=job.id, fmt="html") if done else None,
        "video": url_for("api.annotated_video", job_id=job.id) if "video" in kinds else None,
    }


def annotated_video(job: Job) -> dict[str, Any]:
    """The annotated video of a job, rendered after the job is done: its state (``rendering``, ``ready`` or
    ``failed``; null when none was asked for), its URL once ready, and why it failed."""
    status = job.video_status
    return {
        "status": status,
        "url": url_for("api.annotated_video", job_id=job.id) if status == VIDEO_READY else None,
        "error": job.video_error if status == VIDEO_FAILED else None,
    }


def job_summary(job: Job) -> dict[str, Any]:
    v = job.video
    return {
        "id": job.id,
        "status": job.status,
        "stage": job.stage,
        "created_at": iso(job.created_at),
        "finished_at": iso(job.finished_at) or None,
        "original_filename": v.original_filename if v else None,
        "duration_s": v.duration_s if v else None,
        "progress": round(float(job.progress), 4),
        "overall_label": job.overall_label,
        "overall_confidence": job.overall_confidence,
        "persons": job.persons,
        "error": job.error,
        "video_status": job.video_status,
        "url": url_for("ui.job_page", job_id=job.id),
        "status_url": url_for("api.get_job", job_id=job.id),
    }


def job_detail(job: Job) -> dict[str, Any]:
    return {
        "id": job.id,
        "status": job.status,
        "stage": job.stage,
        "final": job.status in TERMINAL_STATES,
        "error": job.error,
        "created_at": iso(job.created_at),
        "updated_at": iso(job.updated_at) or None,
        "started_at": iso(job.started_at) or None,
        "finished_at": iso(job.finished_at) or None,
        "attempts": job.attempts or 0,
        "progress": progress(job),
        "params": dict(job.params or {}),
        "timings": dict(job.timings or {}),
        "video": video_facts(job),
        "annotated_video": annotated_video(job),
        "models": models_used(job),
        "summary": {
            "overall_label": job.overall_label,
            "overall_confidence": job.overall_confidence,
            "persons": job.persons,
        },
        "events": [{"status": e.status, "message": e.message, "at": iso(e.at)} for e in job.events],
        "links": links(job),
        "result": job.result if job.status == DONE else None,
    }


def webhook_delivery(d) -> dict[str, Any]:
    """One webhook delivery of a job (har/webhooks.py): its event, state and attempts, with the start of the last
    answer."""
    return {
        "id": d.id,
        "event": d.event,
        "url": d.url,
        "status": d.status,
        "attempts": d.attempts or 0,
        "created_at": iso(d.created_at),
        "next_attempt_at": iso(d.next_attempt_at) or None if d.status == "pending" else None,
        "delivered_at": iso(d.delivered_at) or None,
        "last_status_code": d.last_status_code,
        "last_error": d.last_error,
        "response_excerpt": d.response_excerpt,
        "redelivery_of": d.redelivery_of,
        "attempt_log": [dict(a) for a in (d.attempt_log or [])],
    }
