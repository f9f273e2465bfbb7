"""Flask front end: upload videos, follow their jobs, read the results.

``create_app()`` builds the app from :func:`har.config.load_settings`; the database schema comes
from the Alembic migrations (``har.database.upgrade_database``), never from this package.
"""
from __future__ import annotations

import re

from flask import Flask, current_app, g, jsonify, render_template, request
from flask_wtf.csrf import CSRFError, CSRFProtect
from werkzeug.exceptions import HTTPException, RequestEntityTooLarge

from har.config import Settings, load_settings

csrf = CSRFProtect()


def create_app(settings: Settings | None = None, **config) -> Flask:
    """The WSGI app. ``config`` entries override Flask config keys (e.g. ``TESTING=True``)."""
    from har.database import get_engine
    from har.db import make_session_factory
    from har.storage import open_storage

    settings = settings or load_settings()
    app = Flask(__name__)
    app.config.update(
        SECRET_KEY=settings.resolved_secret_key,
        MAX_CONTENT_LENGTH=settings.max_upload_mb * 1024 * 1024,
        WTF_CSRF_TIME_LIMIT=None,
        JSON_SORT_KEYS=False,
        HAR_SETTINGS=settings,
        HAR_ENQUEUE=None,  # callable(job_id) to replace worker.celery_app.enqueue_job (tests)
    )
    app.config.update(config)
    app.json.sort_keys = False

    storage = open_storage(settings)  # local files or S3 (HAR_STORAGE_URL)
    engine = get_engine(settings)
    app.extensions["har"] = {
        "settings": settings,
        "storage": storage,
        "engine": engine,
        "session_factory": make_session_factory(engine),
    }

    csrf.init_app(app)

    from . import api, ui
    from .filters import register_filters

    app.register_blueprint(ui.bp)
    app.register_blueprint(api.bp, url_prefix="/api")
    csrf.exempt(api.bp)
    register_filters(app)

    from . import health, metrics  # /healthz, /readyz, /metrics (README: Operations / Monitoring)

    app.register_blueprint(health.bp)
    app.register_blueprint(metrics.bp)
    _log_job_ids(app)

    @app.teardown_appcontext
    def _close_session(exc):
        session = g.pop("db_session", None)
        if session is not None:
            if exc is not None:
                session.rollback()
            session.close()

    from . import auth, ratelimit, security  # owners and tokens, new-job rate limit, headers (README: Access)

    auth.init_app(app)  # after the blueprints: its token check runs before their hooks
    ratelimit.init_app(app)
    security.init_app(app)

    _register_error_handlers(app)
    return app


_JOB_ID_IN_URL = re.compile(r"[0-9A-Za-z-]{1,64}")

def _log_job_ids(app: Flask) -> None:
    """Log lines of a request whose URL names a job carry " job=<id>" (har.logcontext)."""
    import logging

    from flask.logging import default_handler

    from har import logcontext

    logcontext.install()
    default_handler.addFilter(logcontext.JOB_FILTER)
    default_handler.setFormatter(logging.Formatter(logcontext.WEB_FORMAT))
    app.logger  # noqa: B018 - attaches Flask's handler to the "web" loggers when nothing else handles them

    @app.before_request
    def _bind_job():
        job_id = str((request.view_args or {}).get("job_id") or "")
        if _JOB_ID_IN_URL.fullmatch(job_id):  # not whatever a URL holds (a newline would forge log lines)
            g.log_job_token = logcontext.bind(job_id)

    @app.teardown_request
    def _unbind_job(exc):
        token = g.pop("log_job_token", None)
        if token is not None:
            logcontext.unbind(token)


def get_settings() -> Settings:
    return current_app.extensions["har"]["settings"]


def get_storage():
    return current_app.extensions["har"]["storage"]


def get_session():
    """The request's database session (closed when the request ends)."""
    if "db_session" not in g:
        g.db_session = current_app.extensions["har"]["session_factory"]()
        g.db_session.info["har_settings"] = get_settings()  # webhooks queued by a request: sent after its commit
    return g.db_session


def wants_json() -> bool:
    return request.path.startswith("/api/") or request.path == "/api"


def json_error(http_status: int, error: str, message: str, **extra):
    body = {"error": error, "message": message}
    body.update(extra)
    resp = jsonify(body)
    resp.status_code = http_status
    return resp


DATABASE_UNAVAILABLE_MESSAGE = "The database is unavailable right now; nothing was changed. Please try again in a moment."
DATABASE_RETRY_AFTER_S = 10
STORAGE_UNAVAILABLE_MESSAGE = "The storage service is unavailable right now; nothing was changed. Please try again later."


def _register_error_handlers(app: Flask) -> None:
    @app.errorhandler(RequestEntityTooLarge)
    def _too_large(exc):
        limit = get_settings().max_upload_mb
        message = f"The file is too large: uploads are limited to {limit} MB."
        if wants_json():
            return json_error(413, "file_too_large", message, max_upload_mb=limit)
        return render_template("error.html", title="File too large", message=message, status=413), 413

    @app.errorhandler(CSRFError)
    def _csrf(exc):
        message = "The form expired or was not sent from this site. Reload the page and try again."
        return render_template("error.html", title="Form expired", message=message, status=400), 400

    @app.errorhandler(HTTPException)
    def _http(exc: HTTPException):
        if wants_json():
            return json_error(exc.code or 500, (exc.name or "error").lower().replace(" ", "_"),
                              exc.description or exc.name)
        return render_template("error.html", title=exc.name, message=exc.description,
                               status=exc.code), exc.code

    from sqlalchemy.exc import InterfaceError, OperationalError
    from sqlalchemy.exc import TimeoutError as PoolTimeout

    @app.errorhandler(OperationalError)
    @app.errorhandler(InterfaceError)
    @app.errorhandler(PoolTimeout)
    def _database_unavailable(exc):
        """The database cannot be reached (stopped, restarting, refusing connections, its pool exhausted): a 503 that
        says so and when to try again, not a 500 "something went wrong"; nothing was changed."""
        app.logger.warning("database unavailable on %s %s: %s", request.method, request.path,
                           str(exc).splitlines()[0][:300])
        if wants_json():
            resp = json_error(503, "database_unavailable", DATABASE_UNAVAILABLE_MESSAGE)
        else:
            try:
                html = render_template("error.html", title="Temporarily unavailable",
                                       message=DATABASE_UNAVAILABLE_MESSAGE, status=503)
            except Exception:  # noqa: BLE001 - the page's own parts may need the database too
                html = f"<!doctype html><title>Temporarily unavailable</title><p>{DATABASE_UNAVAILABLE_MESSAGE}</p>"
            resp = app.make_response((html, 503))
        resp.headers["Retry-After"] = str(DATABASE_RETRY_AFTER_S)
        resp.headers["Cache-Control"] = "no-store"
        return resp

    def _storage_unavailable(exc):
        """The object storage cannot be reached (S3: connection refused or cut, timeouts) while a request reads it
        (a re-run checks the stored video, a download): 503, as an upload that cannot be stored gets."""
        app.logger.warning("storage unavailable on %s %s: %s", request.method, request.path,
                           str(exc).splitlines()[0][:300] if str(exc) else type(exc).__name__)
        if wants_json():
            resp = json_error(503, "storage_unavailable", STORAGE_UNAVAILABLE_MESSAGE)
        else:
            resp = app.make_response((render_template("error.html", title="Temporarily unavailable",
                                                      message=STORAGE_UNAVAILABLE_MESSAGE, status=503), 503))
        resp.headers["Retry-After"] = str(DATABASE_RETRY_AFTER_S)
        resp.headers["Cache-Control"] = "no-store"
        return resp

    try:
        from har.storage_s3 import transient_errors

        for cls in transient_errors():
            app.register_error_handler(cls, _storage_unavailable)
    except ImportError:  # boto3 not installed: local storage only
        pass

    @app.errorhandler(Exception)
    def _unexpected(exc: Exception):
        if isinstance(exc, HTTPException):  # pragma: no cover - handled above
            return _http(exc)
        app.logger.exception("unhandled error on %s %s", request.method, request.path)
        message = "Something went wrong on our side. Please try again later."
        if wants_json():
            return json_error(500, "internal_error", message)
        return render_template("error.html", title="Server error", message=message, status=500), 500
