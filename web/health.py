"""Liveness and readiness of a web process, for load balancers and orchestrators.

* ``GET /healthz`` — liveness: the process answers. Touches no dependency, so a database or Redis outage never
  gets healthy web processes restarted. Always 200 ``{"status": "ok"}``.
* ``GET /readyz`` — readiness: this process can serve uploads and jobs now. 200 when every check passes, else
  503; the JSON body lists every check and names the failed ones::

      {"status": "unavailable", "failed": ["redis"],
       "checks": {"database": {"ok": true}, "redis": {"ok": false, "error": "ConnectionError: ..."},
                  "storage": {"ok": true}}}

  Checks: ``database`` (``SELECT 1`` on a pooled connection), ``redis`` (PING on the broker, 1 s timeouts) and
  ``storage`` (a small file created and removed in the storage directory: the uploads volume is mounted and
  writable; with S3 storage, the local spool), plus with S3 storage ``bucket`` (HEAD of the bucket, a few
  seconds at most).

``GET /api/health`` (web/api.py) is the older check of the database and Redis only.
"""
from __future__ import annotations

from flask import Blueprint, current_app, jsonify
from sqlalchemy import text

from har.config import Settings

bp = Blueprint("health", __name__)

REDIS_TIMEOUT_S = 1.0


def _error(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"[:300]


def check_database(engine) -> dict:
    try:
        with engine.connect() as conn:
            conn.execute(text("SELECT 1"))
        return {"ok": True}
    except Exception as exc:  # noqa: BLE001 - any failure means not ready
        return {"ok": False, "error": _error(exc)}


def check_redis(settings: Settings) -> dict:
    try:
        import redis

        client = redis.Redis.from_url(settings.redis_url, socket_connect_timeout=REDIS_TIMEOUT_S,
                                      socket_timeout=REDIS_TIMEOUT_S)
        try:
            client.ping()
        finally:
            client.close()
        return {"ok": True}
    except Exception as exc:  # noqa: BLE001
        return {"ok": False, "error": _error(exc)}


def check_storage(settings: Settings) -> dict:
    """Whether the storage directory (with S3 storage: the local spool) takes new files."""
    try:
        from har.storage import Storage

        Storage(settings.resolved_storage_dir).check()
        return {"ok": True}
    except Exception as exc:  # noqa: BLE001
        return {"ok": False, "error": _error(exc)}


def check_bucket(settings: Settings) -> dict | None:
    """With S3 storage (``HAR_STORAGE_URL``): whether the bucket answers; None with local storage."""
    if not (getattr(settings, "storage_url", "") or "").strip():
        return None
    try:
        from har.storage import open_storage

        open_storage(settings).check()
        return {"ok": True}
    except Exception as exc:  # noqa: BLE001
        return {"ok": False, "error": _error(exc)}


def readiness(settings: Settings, engine) -> dict:
    """Every check's result, and the names of those that failed."""
    checks = {"database": check_database(engine), "redis": check_redis(settings), "storage": check_storage(settings)}
    bucket = check_bucket(settings)
    if bucket is not None:
        checks["bucket"] = bucket
    failed = [name for name, result in checks.items() if not result["ok"]]
    return {"status": "unavailable" if failed else "ok", "failed": failed, "checks": checks}


def _no_store(resp):
    resp.headers["Cache-Control"] = "no-store"
    return resp


@bp.get("/healthz")
def healthz():
    return _no_store(jsonify({"status": "ok"}))


@bp.get("/readyz")
def readyz():
    har = current_app.extensions["har"]
    body = readiness(har["settings"], har["engine"])
    resp = jsonify(body)
    resp.status_code = 503 if body["failed"] else 200
    return _no_store(resp)
