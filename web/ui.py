"""Pages: upload form, job page (polls the API), jobs history."""
from __future__ import annotations

from flask import Blueprint, abort, current_app, flash, redirect, render_template, request, url_for
from flask_wtf import FlaskForm
from sqlalchemy import func, select
from wtforms import DecimalField, FileField, IntegerField, StringField
from wtforms.validators import Optional

from har import reports as har_reports
from har.db import STATES, TERMINAL_STATES, VIDEO_FAILED, VIDEO_READY, VIDEO_RENDERING, Job

from . import actions, auth, get_session, get_settings, get_storage, ratelimit
from .serialize import eta_seconds
from .uploads import PARAM_FIELDS, UploadError, accept_upload, refuse_when_disk_low, webhook_fields

bp = Blueprint("ui", __name__)


class UploadForm(FlaskForm):
    """The upload form; checks beyond CSRF are shared with the API (web.uploads)."""

    video = FileField("Video file")
    imgsz = IntegerField("Pose input size (px)", validators=[Optional()])
    fps = DecimalField("Frames per second analysed", validators=[Optional()])
    stride = IntegerField("Window stride (frames)", validators=[Optional()])
    callback_url = StringField("Webhook URL", validators=[Optional()])


def _limits():
    s = get_settings()
    return {
        "extensions": sorted(s.allowed_extension_set),
        "max_upload_mb": s.max_upload_mb,
        "max_video_seconds": s.max_video_seconds,
        "params": PARAM_FIELDS,
        "defaults": {"imgsz": s.pose_imgsz, "fps": s.sample_fps or None, "stride": s.window_stride},
    }


def _refuse_upload_when_disk_low():
    """The upload form's refusals before the request body is read, the reason on the form: no token under
    HAR_AUTH=required (401), over the rate limit (429, Retry-After), low disk (507)."""
    if request.method != "POST" or request.endpoint != "ui.upload":
        return None
    try:
        principal = auth.current_principal()
        auth.require_submitter(principal)
        ratelimit.check_new_job(principal)
        refuse_when_disk_low(get_settings(), get_storage(), request.content_length)
    except UploadError as exc:
        flash(exc.message, "error")
        form = UploadForm(formdata=None)  # not the posted form: reading it would spool the body to disk
        resp = current_app.make_response(
            (render_template("upload.html", form=form, failed_job=None, **_limits()), exc.status))
        resp.headers.update(getattr(exc, "headers", {}))
        return resp
    return None


@bp.record_once
def _install_disk_guard(state) -> None:
    # First of the app's before-request hooks: CSRFProtect's check reads the form, which spools the whole body.
    state.app.before_request_funcs.setdefault(None, []).insert(0, _refuse_upload_when_disk_low)


@bp.route("/", methods=["GET", "POST"])
def upload():
    form = UploadForm()
    if request.method == "POST":
        # CSRF is checked by CSRFProtect before we get here.
        principal = auth.current_principal()
        try:
            webhook = webhook_fields(request.form, get_settings(), principal)
            job = accept_upload(request.files.get("video"), request.form, get_settings(), get_storage(),
                                get_session(), owner=principal.owner, webhook=webhook)
        except UploadError as exc:
            flash(exc.message, "error")
            failed_job = exc.job_id
            return render_template("upload.html", form=form, failed_job=failed_job, **_limits()), exc.status
        if job.callback_url and job.job_key:  # shown this once: the receiver verifies the webhooks with it
            flash(f"Webhooks of this job go to {job.callback_url}, signed with this job's key (shown only now): "
                  f"{job.job_key}", "info")
        return redirect(url_for("ui.job_page", job_id=job.id), code=303)
    return render_template("upload.html", form=form, failed_job=None, **_limits())


@bp.get("/jobs")
def jobs():
    from .api import paginate_jobs

    settings = get_settings()
    try:
        page = min(max(1, int(request.args.get("page", 1))), 1_000_000)  # a huge offset overflows the DB
    except ValueError:
        page = 1
    status = request.args.get("status") or None
    if status not in STATES:
        status = None
    per_page = settings.jobs_per_page
    owners = auth.current_principal().owners  # the history lists only the visitor's jobs
    items, total, pages = paginate_jobs(page, per_page, status, owners=owners)
    if page > pages:  # beyond the end (the list shrank, or a hand-made link): show the last page
        page = pages
        items, total, pages = paginate_jobs(page, per_page, status, owners=owners)
    return render_template("jobs.html", jobs=items, page=page, pages=pages, total=total, status=status,
                           states=STATES, per_page=per_page)


@bp.get("/jobs/<job_id>")
def job_page(job_id: str):
    job = get_session().get(Job, job_id) if len(job_id) <= 64 else None
    if job is None:
        abort(404, description=f"There is no job with id {job_id}.")
    result = job.result or {}
    duration = har_reports.timeline_duration(result, job.video.duration_s if job.video else None)
    has_video = any(r.kind == "video" for r in job.reports) and get_storage().exists(
        next(r.path for r in job.reports if r.kind == "video"))
    # the annotated video renders after the job is done: the page shows it rendering, then the player
    video_state = VIDEO_READY if has_video else (
        job.video_status if job.video_status in (VIDEO_RENDERING, VIDEO_FAILED) else None)
    final = job.status in TERMINAL_STATES
    video_stored = final and job.video is not None and get_storage().exists(job.video.path)
    video_shared = final and job.video is not None and (get_session().scalar(
        select(func.count()).select_from(Job).where(Job.video_id == job.video_id, Job.id != job.id)) or 0) > 0
    return render_template(
        "job.html",
        job=job,
        can_manage=auth.current_principal().may_manage(job),  # delete / run again: the owner's (web/auth.py)
        video_stored=video_stored,
        video_shared=video_shared,
        **_limits(),
        result=result,
        final=final,
        rows=har_reports.timeline_rows(result, duration),
        legend=har_reports.legend(result),
        duration=duration,
        video_state=video_state,
        eta=eta_seconds(job),
        stages=("queued", "extracting", "classifying", "reporting", "done"),
    )


@bp.post("/jobs/<job_id>/delete")
def delete_job(job_id: str):
    # CSRF is checked by CSRFProtect before we get here.
    try:
        job = actions.delete_job(job_id, get_storage(), get_session(), principal=auth.current_principal())
    except UploadError as exc:
        if exc.status == 404:
            abort(404, description=f"There is no job with id {job_id}.")
        if exc.status in (401, 403, 429):  # no token, not the owner, over the rate limit: an error page
            return auth.error_response(exc)
        flash(exc.message, "error")
        return redirect(url_for("ui.job_page", job_id=job_id), code=303)
    name = job.video.original_filename if job.video else job_id
    flash(f"Deleted the job for “{name}” and its files.", "info")
    return redirect(url_for("ui.jobs"), code=303)


@bp.post("/jobs/<job_id>/webhooks/<int:delivery_id>/resend")
def resend_webhook(job_id: str, delivery_id: int):
    # CSRF is checked by CSRFProtect before we get here.
    job = get_session().get(Job, job_id) if len(job_id) <= 64 else None
    if job is None:
        abort(404, description=f"There is no job with id {job_id}.")
    try:
        auth.require_manager(auth.current_principal(), job, "send its webhooks again")
        row = actions.resend_webhook(job, delivery_id, get_session())
    except UploadError as exc:
        if exc.status == 404:
            abort(404, description=exc.message)
        if exc.status in (401, 403):
            return auth.error_response(exc)
        flash(exc.message, "error")
        return redirect(url_for("ui.job_page", job_id=job_id), code=303)
    flash(f"The {row.event} webhook is being sent again.", "info")
    return redirect(url_for("ui.job_page", job_id=job_id, _anchor="webhooks"), code=303)


@bp.post("/jobs/<job_id>/rerun")
def rerun_job(job_id: str):
    try:
        job = actions.rerun_job(job_id, request.form, get_settings(), get_storage(), get_session(),
                                principal=auth.current_principal())
    except UploadError as exc:
        if exc.status == 404:
            abort(404, description=f"There is no job with id {job_id}.")
        if exc.status in (401, 403, 429):  # no token, not the owner, over the rate limit: an error page
            return auth.error_response(exc)
        flash(exc.message, "error")
        return redirect(url_for("ui.job_page", job_id=exc.job_id or job_id), code=303)
    flash("Started again as a new job; the earlier run stays in the history.", "info")
    return redirect(url_for("ui.job_page", job_id=job.id), code=303)
