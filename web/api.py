"""REST API under /api: jobs, reports, annotated video, health, OpenAPI document."""
from __future__ import annotations

import math

from flask import Blueprint, Response, current_app, jsonify, render_template, request, url_for
from sqlalchemy import func, select

from har import reports as har_reports
from har.db import DONE, FAILED, STATES, VIDEO_FAILED, VIDEO_RENDERING, Job

from . import actions, auth, get_session, get_settings, get_storage, json_error, ratelimit
from .downloads import send_stored
from .openapi import openapi_document
from .serialize import job_detail, job_summary, webhook_delivery
from .uploads import UploadError, accept_upload, refuse_when_disk_low, webhook_fields

bp = Blueprint("api", __name__)

REPORT_KINDS = {"json", "csv", "html"}


def _load_job(job_id: str) -> Job | None:
    if len(job_id) > 64:
        return None
    return get_session().get(Job, job_id)


def _not_found(job_id: str):
    return json_error(404, "not_found", f"No job with id {job_id}.")


@bp.post("/jobs")
def create_job():
    principal = auth.current_principal()
    try:  # before request.files: reading the form spools the whole body to a temporary file
        auth.require_submitter(principal)  # 401 under HAR_AUTH=required without a token
        ratelimit.check_new_job(principal)  # 429
        refuse_when_disk_low(get_settings(), get_storage(), request.content_length)
    except UploadError as exc:
        return auth.error_response(exc)
    if "video" not in request.files:
        return json_error(400, "no_file", "Send the video as multipart/form-data in a field named 'video'.")
    try:
        webhook = webhook_fields(request.form, get_settings(), principal)
        job = accept_upload(request.files["video"], request.form, get_settings(), get_storage(), get_session(),
                            owner=principal.owner, webhook=webhook)
    except UploadError as exc:
        extra = {"id": exc.job_id, "status_url": url_for("api.get_job", job_id=exc.job_id)} if exc.job_id else {}
        return json_error(exc.status, exc.error, exc.message, **extra)
    return _accepted(job)


def _accepted(job: Job):
    """202 for a new queued job: its id, page and status URL (also in ``Location``); for a job submitted without an
    API token its own key (shown this once: it signs the job's webhooks and deletes or re-runs the job as
    ``Authorization: Bearer <job_key>``); its callback URL."""
    body = {
        "id": job.id,
        "status": job.status,
        "url": url_for("ui.job_page", job_id=job.id),
        "status_url": url_for("api.get_job", job_id=job.id),
        "callback_url": job.callback_url,
        "webhooks_url": url_for("api.job_webhooks", job_id=job.id),
    }
    if job.job_key:
        body["job_key"] = job.job_key
    resp = jsonify(body)
    resp.status_code = 202
    resp.headers["Location"] = body["status_url"]
    return resp


def _int_arg(name: str, default: int, lo: int, hi: int) -> int:
    raw = request.args.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise UploadError(400, "invalid_parameter", f"{name} must be a whole number.") from None
    if not lo <= value <= hi:
        raise UploadError(400, "invalid_parameter", f"{name} must be between {lo} and {hi}.")
    return value


def paginate_jobs(page: int, per_page: int, status: str | None, *, owners: tuple[str, ...] | None):
    """One page of jobs, newest first: those of ``owners`` (the client's: web/auth.py; None: every job)."""
    session = get_session()
    query = select(Job)
    count = select(func.count()).select_from(Job)
    if owners is not None:
        query = query.where(Job.owner.in_(owners))
        count = count.where(Job.owner.in_(owners))
    if status:
        query = query.where(Job.status == status)
        count = count.where(Job.status == status)
    total = session.scalar(count) or 0
    jobs = session.scalars(
        query.order_by(Job.created_at.desc(), Job.id.desc()).offset((page - 1) * per_page).limit(per_page)
    ).unique().all()
    pages = max(1, math.ceil(total / per_page)) if per_page else 1
    return jobs, total, pages


@bp.get("/jobs")
def list_jobs():
    settings = get_settings()
    try:
        page = _int_arg("page", 1, 1, 1_000_000)
        per_page = _int_arg("per_page", settings.jobs_per_page, 1, 100)
    except UploadError as exc:
        return json_error(exc.status, exc.error, exc.message)
    status = request.args.get("status") or None
    if status is not None and status not in STATES:
        return json_error(400, "invalid_parameter", f"status must be one of: {', '.join(STATES)}.")
    scope = request.args.get("scope") or "mine"
    if scope not in ("mine", "all"):
        return json_error(400, "invalid_parameter", "scope must be one of: mine, all.")
    principal = auth.current_principal()
    if scope == "all" and not principal.admin:
        return json_error(403, "forbidden", "Only an admin token can list every job (scope=all).")
    jobs, total, pages = paginate_jobs(page, per_page, status, owners=None if scope == "all" else principal.owners)

    def link(p):
        args = {"page": p, "per_page": per_page}
        if status:
            args["status"] = status
        if scope != "mine":
            args["scope"] = scope
        return url_for("api.list_jobs", **args)

    return jsonify({
        "items": [job_summary(j) for j in jobs],
        "page": page,
        "per_page": per_page,
        "total": total,
        "pages": pages,
        "links": {
            "self": link(page),
            "next": link(page + 1) if page < pages else None,
            "prev": link(min(page - 1, pages)) if page > 1 else None,
        },
    })


@bp.get("/jobs/<job_id>")
def get_job(job_id: str):
    job = _load_job(job_id)
    if job is None:
        return _not_found(job_id)
    resp = jsonify(job_detail(job))
    resp.headers["Cache-Control"] = "no-store"
    return resp


@bp.delete("/jobs/<job_id>")
def delete_job(job_id: str):
    try:
        actions.delete_job(job_id, get_storage(), get_session(), principal=auth.current_principal())
    except UploadError as exc:
        return json_error(exc.status, exc.error, exc.message)
    return Response(status=204)


@bp.post("/jobs/<job_id>/rerun")
def rerun_job(job_id: str):
    if request.is_json:
        form = request.get_json(silent=True)
        if form is None and not request.get_data():
            form = {}  # no body: run with the old job's settings
        if not isinstance(form, dict):
            return json_error(400, "invalid_body", "Send the optional fields as a JSON object (or as form fields).")
    else:
        form = request.form
    try:
        job = actions.rerun_job(job_id, form, get_settings(), get_storage(), get_session(),
                                principal=auth.current_principal())
    except UploadError as exc:
        extra = {"id": exc.job_id, "status_url": url_for("api.get_job", job_id=exc.job_id)} if exc.job_id else {}
        resp = json_error(exc.status, exc.error, exc.message, **extra)
        resp.headers.update(getattr(exc, "headers", {}))  # 401 WWW-Authenticate, 429 Retry-After
        return resp
    return _accepted(job)


def _managed_job(job_id: str, action: str):
    """The job, when the client may manage it (its owner, its own key, an admin token); else an error response."""
    job = _load_job(job_id)
    if job is None:
        return None, _not_found(job_id)
    try:
        auth.require_manager(auth.current_principal(), job, action)
    except UploadError as exc:
        return None, json_error(exc.status, exc.error, exc.message)
    return job, None


@bp.get("/jobs/<job_id>/webhooks")
def job_webhooks(job_id: str):
    """The job's webhook deliveries, oldest first, with every attempt (its owner's: the URL may hold a secret)."""
    job, error = _managed_job(job_id, "see its webhook deliveries")
    if error is not None:
        return error
    resp = jsonify({"job_id": job.id, "callback_url": job.callback_url,
                    "items": [webhook_delivery(d) for d in job.webhook_deliveries]})
    resp.headers["Cache-Control"] = "no-store"
    return resp


@bp.post("/jobs/<job_id>/webhooks/<int:delivery_id>/resend")
def resend_webhook(job_id: str, delivery_id: int):
    """Send a delivery's event again, as a new delivery to the job's callback URL (202)."""
    job, error = _managed_job(job_id, "send its webhooks again")
    if error is not None:
        return error
    try:
        new = actions.resend_webhook(job, delivery_id, get_session())
    except UploadError as exc:
        return json_error(exc.status, exc.error, exc.message)
    resp = jsonify(webhook_delivery(new))
    resp.status_code = 202
    return resp


@bp.get("/jobs/<job_id>/report.<fmt>")
def report(job_id: str, fmt: str):
    if fmt not in REPORT_KINDS:
        return json_error(404, "not_found", f"Unknown report format {fmt!r}; use json, csv or html.")
    job = _load_job(job_id)
    if job is None:
        return _not_found(job_id)
    if job.status != DONE:
        if job.status == "failed":
            message = f"The job failed, so there is no report: {job.error or 'no reason recorded'}"
        else:
            message = f"The job is not finished yet (status: {job.status}); try again when it is done."
        return json_error(409, "not_ready", message, job_status=job.status)
    download = request.args.get("download") in {"1", "true", "yes"}
    name = f"har-{job.id[:8]}-report.{fmt}"
    row = next((r for r in job.reports if r.kind == fmt), None)
    if row is not None:
        # the bare type: send_file adds "; charset=utf-8" to text types itself
        mimetype = (row.media_type or har_reports.MEDIA_TYPES[fmt]).split(";")[0]
        resp = send_stored(get_storage(), row.path, mimetype=mimetype, as_attachment=download, download_name=name)
        if resp is not None:
            return resp
    body = har_reports.render_report(job, fmt)  # older job or missing file: render on demand
    resp = Response(body, mimetype=har_reports.MEDIA_TYPES[fmt].split(";")[0])
    if download:
        resp.headers["Content-Disposition"] = f'attachment; filename="{name}"'
    return resp


@bp.get("/jobs/<job_id>/video")
def annotated_video(job_id: str):
    job = _load_job(job_id)
    if job is None:
        return _not_found(job_id)
    row = next((r for r in job.reports if r.kind == "video"), None)
    ext = row.path.rsplit(".", 1)[-1] if row is not None and "." in row.path else "webm"
    resp = None if row is None else send_stored(  # range requests: the player seeks with them
        get_storage(), row.path, mimetype=row.media_type or "video/webm",
        as_attachment=request.args.get("download") in {"1", "true", "yes"},
        download_name=f"har-{job.id[:8]}-annotated.{ext}")
    if resp is None:
        return json_error(404, "not_available", _no_video_message(job), video_status=job.video_status)
    return resp


def _no_video_message(job: Job) -> str:
    if job.status not in (DONE, FAILED):
        return "The annotated video is not available yet: the job is not done."
    if job.video_status == VIDEO_RENDERING:
        return "The annotated video is being rendered; try again in a moment (the reports are ready)."
    if job.video_status == VIDEO_FAILED:
        return f"The annotated video could not be rendered: {job.video_error or 'no reason was recorded'}"
    return "This job has no annotated video."


@bp.get("/health")
def health():
    """The database and Redis (the older check; ``/readyz`` also checks the storage)."""
    from .health import check_database, check_redis

    har = current_app.extensions["har"]
    checks = {"database": check_database(har["engine"]), "redis": check_redis(har["settings"])}
    ok = all(c["ok"] for c in checks.values())
    resp = jsonify({"status": "ok" if ok else "unavailable", "checks": checks})
    resp.status_code = 200 if ok else 503
    resp.headers["Cache-Control"] = "no-store"
    return resp


@bp.get("/openapi.json")
def openapi():
    return jsonify(openapi_document(get_settings()))


@bp.get("/docs")
def docs():
    return render_template("api_docs.html", spec=openapi_document(get_settings()))
