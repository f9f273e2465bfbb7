"""Upload handling shared by the form and the API: validate, store, probe, create the job, enqueue.

Order matters: nothing reaches the database until the file is known to be a readable video within
the limits, and a rejected upload leaves nothing behind in storage.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any, Mapping

from flask import current_app

from har.db import Job
from har.disk import MB, LowDiskSpace, check_free_space, is_disk_full
from har.storage import UploadTooLarge, file_extension

log = logging.getLogger(__name__)

# Optional per-job parameters: form field -> (key in Job.params, type, min, max, help).
PARAM_FIELDS: dict[str, tuple[str, type, float, float, str]] = {
    "imgsz": ("imgsz", int, 320, 1280, "pose model input size in pixels, a multiple of 32"),
    "fps": ("sample_fps", float, 5.0, 60.0, "frames per second analysed"),
    "stride": ("stride", int, 1, 32, "frames between two classification windows"),
}


@dataclass
class UploadError(Exception):
    """A rejected upload: HTTP status, machine-readable code and a message for people."""

    status: int
    error: str
    message: str
    job_id: str | None = None

    def __str__(self) -> str:
        return self.message


def refuse_oversized(info, settings) -> None:
    """422 for frames larger than ``HAR_MAX_VIDEO_WIDTH`` x ``HAR_MAX_VIDEO_HEIGHT`` (either orientation) or a frame
    rate above ``HAR_MAX_VIDEO_FPS``, saying how to convert the video."""
    long_side, short_side = max(info.width, info.height), min(info.width, info.height)
    max_long, max_short = max(settings.max_video_width, settings.max_video_height), \
        min(settings.max_video_width, settings.max_video_height)
    if long_side > max_long or short_side > max_short:
        raise UploadError(
            422, "video_resolution_too_high",
            f"The video is {info.width}×{info.height} pixels; the largest accepted is {max_long}×{max_short} "
            f"(either orientation). Scale it down first, e.g. ffmpeg -i in.mp4 -vf scale=-2:{min(1080, max_short)} "
            f"out.mp4.")
    if info.fps and info.fps > settings.max_video_fps + 1e-6:
        raise UploadError(
            422, "video_fps_too_high",
            f"The video has {info.fps:.0f} frames per second; the most accepted is {settings.max_video_fps:g}. "
            f"Convert it first, e.g. ffmpeg -i in.mp4 -r 30 out.mp4 (the actions are recognised at 11 frames "
            f"a second, so nothing is lost).")


def parse_params(form: Mapping[str, Any]) -> dict[str, Any]:
    """Validate the optional imgsz / fps / stride fields; empty fields mean "use the default"."""
    params: dict[str, Any] = {}
    for field, (key, typ, lo, hi, help_) in PARAM_FIELDS.items():
        raw = form.get(field)
        if raw is None or str(raw).strip() == "":
            continue
        try:
            value = typ(str(raw).strip())
        except ValueError:
            raise UploadError(400, "invalid_parameter",
                              f"{field} must be a {'whole ' if typ is int else ''}number ({help_}).") from None
        if value != value or not (lo <= value <= hi):  # NaN or out of range
            raise UploadError(400, "invalid_parameter", f"{field} must be between {lo:g} and {hi:g} ({help_}).")
        if field == "imgsz" and value % 32:
            raise UploadError(400, "invalid_parameter", f"imgsz must be a multiple of 32 (got {value}).")
        params[key] = value
    return params


def webhook_fields(form: Mapping[str, Any], settings, principal, source=None) -> dict[str, Any]:
    """The webhook columns of a new job (har/webhooks.py): its ``callback_url`` (the form's, checked; else the
    re-run job's ``source``; else the default of the client's API token), a ``job_key`` of its own when the client
    has no token (it signs the job's webhooks and manages the job), and the service's base URL for the links."""
    from flask import request
    from sqlalchemy import select

    from har import webhooks
    from har.db import ApiToken

    raw = form.get("callback_url")
    url = None
    if raw is not None and str(raw).strip():
        try:
            url = webhooks.check_url(str(raw), allow_private=settings.webhook_allow_private)
        except webhooks.UnsafeURL as exc:
            raise UploadError(400, "invalid_callback_url", str(exc)) from None
    elif source is not None:
        url = source.callback_url
    elif principal is not None and principal.token_name:
        from . import get_session

        url = get_session().scalar(select(ApiToken.callback_url).where(ApiToken.name == principal.token_name,
                                                                         ApiToken.revoked_at.is_(None)))
    authenticated = principal is not None and principal.authenticated
    return {"callback_url": url or None, "job_key": None if authenticated else webhooks.new_job_key(),
            "public_url": (settings.public_url or request.url_root).rstrip("/")[:255]}


def _enqueue(job_id: str, settings) -> None:
    hook = current_app.config.get("HAR_ENQUEUE")
    if hook is not None:
        hook(job_id)
        return
    if not settings.task_always_eager:
        # Fail fast when the broker is unreachable (publishing retries for many seconds otherwise).
        import redis

        client = redis.Redis.from_url(settings.redis_url, socket_connect_timeout=2, socket_timeout=2)
        try:
            client.ping()
        finally:
            client.close()
    from worker.celery_app import enqueue_job

    enqueue_job(job_id, settings)


LOW_DISK_MESSAGE = ("The server does not have enough free disk space to store this upload right now. "
                    "Please try again later.")


STORAGE_UNAVAILABLE_MESSAGE = ("The video could not be stored: the storage service is unavailable right now. "
                               "Please try again later.")


def _low_disk() -> UploadError:
    return UploadError(507, "insufficient_storage", LOW_DISK_MESSAGE)


def refuse_when_disk_low(settings, storage, incoming_bytes: int | None = None) -> None:
    """Raise :class:`UploadError` 507 when storing ``incoming_bytes`` (the request's declared Content-Length; None:
    unknown) would leave less than ``settings.min_free_mb`` free on the storage volume.

    The views call it before the request body is read (parsing the form spools the file to a temporary file), so
    a refused upload writes nothing anywhere. A declared length over the upload limit is left to the 413 answer.
    The volume checked is the storage's spool (``storage.spool_dir``): the local storage root, or with S3 the
    local directory where uploads are staged and validated before they go to the bucket."""
    if incoming_bytes is not None and incoming_bytes > settings.max_upload_mb * MB:
        return
    try:
        check_free_space(storage.spool_dir, settings.min_free_mb, incoming_bytes)
    except LowDiskSpace as exc:
        log.warning("upload refused for lack of disk space on %s: %s", storage.spool_dir, exc)
        raise _low_disk() from None
    except OSError:  # the volume cannot be asked: let the upload try
        log.warning("could not read the free space of %s", storage.spool_dir, exc_info=True)


def _human_limit(seconds: float) -> str:
    if seconds >= 60 and seconds % 60 == 0:
        minutes = int(seconds // 60)
        return f"{minutes} minute{'s' if minutes != 1 else ''}"
    return f"{seconds:g} seconds"


def accept_upload(file, form: Mapping[str, Any], settings, storage, session, owner: str | None = None,
                  webhook: Mapping[str, Any] | None = None) -> Job:
    """Validate and store an upload (a werkzeug ``FileStorage``), create its job (belonging to ``owner``, who
    submitted it: web/auth.py; ``webhook``: its :func:`webhook_fields`) and enqueue it.

    Raises :class:`UploadError` for anything the user must fix (4xx) or when the queue is down (503;
    the job then exists and is marked failed with the reason).
    """
    from models.video import VideoError, probe_video

    allowed = sorted(settings.allowed_extension_set)
    if file is None or not (file.filename or "").strip():
        raise UploadError(400, "no_file", "Choose a video file to upload.")
    filename = file.filename
    ext = file_extension(filename)
    if ext not in settings.allowed_extension_set:
        shown = f".{ext}" if ext else "files without an extension"
        raise UploadError(415, "unsupported_type",
                          f"{shown} is not supported. Upload one of: {', '.join('.' + e for e in allowed)}.")
    params = parse_params(form)

    max_bytes = settings.max_upload_mb * 1024 * 1024
    refuse_when_disk_low(settings, storage)  # the views checked the declared size before the body was read
    try:  # to a local file first: it is validated before anything is stored (S3: before it reaches the bucket)
        staged = storage.stage_upload(file, filename, max_bytes=max_bytes)
    except UploadTooLarge:
        raise UploadError(413, "file_too_large",
                          f"The file is too large: uploads are limited to {settings.max_upload_mb} MB.") from None
    except OSError as exc:  # the disk filled while the file was written (stage_upload removed its part)
        if is_disk_full(exc):
            log.warning("upload refused: the storage volume is full (%s)", exc)
            raise _low_disk() from None
        raise
    with staged:  # leaving the block without a commit removes the staged file
        sha256, size = staged.sha256, staged.size
        if size == 0:
            raise UploadError(400, "empty_file", f"“{filename}” is empty (0 bytes).")
        try:
            info = probe_video(staged.path)
        except VideoError as exc:
            raise UploadError(422, "invalid_video", f"“{filename}” cannot be read as a video: {exc}") from None
        if info.duration_s is not None and info.duration_s > settings.max_video_seconds:
            raise UploadError(
                422, "video_too_long",
                f"The video is {info.duration_s:.0f} s long; the limit is {_human_limit(settings.max_video_seconds)}.",
            )
        refuse_oversized(info, settings)
        try:
            rel = staged.commit()
        except OSError as exc:
            if is_disk_full(exc):
                log.warning("upload refused: the storage volume is full (%s)", exc)
                raise _low_disk() from None
            if storage.kind == "local":
                raise
            # botocore's timeouts are OSErrors too: the object storage cannot be reached
            log.exception("could not store the upload %r", filename)
            raise UploadError(503, "storage_unavailable", STORAGE_UNAVAILABLE_MESSAGE) from exc
        except Exception as exc:  # the object storage refused it or cannot be reached
            log.exception("could not store the upload %r", filename)
            raise UploadError(503, "storage_unavailable", STORAGE_UNAVAILABLE_MESSAGE) from exc

    video_fields = {
        "path": rel,
        "original_filename": filename[:255],
        "sha256": sha256,
        "size_bytes": size,
        "container": ext,
        "codec": (info.codec or None),
        "duration_s": float(info.duration_s),
        "fps": float(info.fps),
        "frame_count": int(info.frame_count),
        "width": int(info.width),
        "height": int(info.height),
        "rotation_deg": int(info.rotation_deg or 0),
    }
    from har.jobs import create_job

    try:
        job = create_job(session, video_fields, params, owner=owner)
        for name, value in (webhook or {}).items():
            setattr(job, name, value)
        session.commit()
    except BaseException as exc:
        session.rollback()
        storage.delete(rel)
        if isinstance(exc, Exception) and is_disk_full(exc):  # the database's disk is full
            log.warning("upload refused: the database's disk is full (%s)", exc)
            raise _low_disk() from None
        raise

    enqueue_or_fail(job, settings, session)
    return job


def enqueue_or_fail(job: Job, settings, session) -> None:
    """Send the committed, queued ``job`` to the workers. When the broker is unreachable the job is
    marked failed with the reason (never left silently stuck) and :class:`UploadError` 503 is raised."""
    from har.jobs import fail_job

    try:
        _enqueue(job.id, settings)
    except Exception as exc:  # the broker is down: never leave a silently stuck job
        log.exception("could not enqueue job %s", job.id)
        reason = "The job could not be queued: the processing service is unavailable. Please try again later."
        session.refresh(job)
        fail_job(session, job, f"{reason} ({type(exc).__name__})")
        session.commit()
        raise UploadError(503, "queue_unavailable", reason, job_id=job.id) from None
