"""The API's OpenAPI 3.1 document, written by hand (served at /api/openapi.json, shown at /api/docs)."""
from __future__ import annotations

from typing import Any

from har.db import STATES, VIDEO_STATES


def _error(description: str) -> dict[str, Any]:
    return {"description": description,
            "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}}


def _limited(description: str) -> dict[str, Any]:
    return {**_error(description), "headers": {"Retry-After": {
        "description": "Seconds until the client may submit a job again.", "schema": {"type": "integer"}}}}


INVALID_TOKEN = {**_error("The `Authorization` header holds no valid API token (`invalid_token`: unknown, revoked, "
                          "or not sent as `Bearer <token>`). Refused on every call, whatever the call."),
                 "headers": {"WWW-Authenticate": {"schema": {"type": "string"}}}}
TOKEN_REQUIRED = {**_error("`invalid_token` (see above), or `token_required`: this server takes new jobs only with "
                           "an API token (`HAR_AUTH=required`)."),
                  "headers": {"WWW-Authenticate": {"schema": {"type": "string"}}}}
RATE_LIMITED = _limited("Too many new jobs (uploads and re-runs) from this client (`rate_limited`, "
                        "`HAR_UPLOAD_RATE`): try again after `Retry-After` seconds.")
NOT_YOURS = _error("The job is not the client's (`forbidden`): only whoever submitted it (or an admin token) may "
                   "do this.")

DATABASE_UNAVAILABLE = {**_error("The database (`database_unavailable`) or the object storage (`storage_unavailable`) "
                                 "is unavailable right now: nothing was changed; try again after `Retry-After` "
                                 "seconds."),
                        "headers": {"Retry-After": {"description": "Seconds to wait before trying again.",
                                                    "schema": {"type": "integer"}}}}
CROSS_SITE = _error("A change sent by another web site with a browser's cookie (`cross_site_request`: "
                    "`Sec-Fetch-Site` cross-site or same-site, and no bearer token).")

JOB_ID = {"name": "job_id", "in": "path", "required": True, "description": "The job's id (a UUID).",
          "schema": {"type": "string", "format": "uuid"}}

# Optional settings of a rerun (the upload's, without the file); those not given keep the old job's.
RUN_SETTINGS = {
    "type": "object",
    "properties": {
        "imgsz": {"type": "integer", "minimum": 320, "maximum": 1280, "multipleOf": 32,
                  "description": "Pose model input size in pixels."},
        "fps": {"type": "number", "minimum": 5, "maximum": 60, "description": "Frames per second analysed."},
        "stride": {"type": "integer", "minimum": 1, "maximum": 32,
                   "description": "Sampled frames between classification windows."},
        "callback_url": {"type": "string", "format": "uri", "maxLength": 2048,
                         "description": "Webhook URL of the new job (default: the old job's)."},
    },
}

CALLBACK_URL = {"type": "string", "format": "uri", "maxLength": 2048,
                "description": ("Webhook: POSTed a signed JSON event when the job ends (`job.done`, `job.failed`) "
                                "and when its annotated video is ready or failed (`video.ready`, `video.failed`); "
                                "http(s) to a public address (README: Webhooks). Default: the API token's "
                                "callback URL, if it has one.")}
DELIVERY_ID = {"name": "delivery_id", "in": "path", "required": True, "description": "The delivery's id.",
               "schema": {"type": "integer"}}


# Response schemas whose every property is always present (the serializers in web/serialize.py write them all).
COMPLETE = ("JobCreated", "JobSummary", "JobPage", "Job", "Progress", "Event", "Video", "AnnotatedVideo", "Health",
            "WebhookAttempt", "WebhookDelivery", "WebhookLog")
OPTIONAL = {"JobCreated": {"job_key"}}


VIDEO_PROPERTIES = {
    "original_filename": {"type": "string"}, "size_bytes": {"type": "integer"},
    "sha256": {"type": "string"}, "container": {"type": "string"},
    "codec": {"type": ["string", "null"]}, "duration_s": {"type": "number"},
    "fps": {"type": "number"}, "frame_count": {"type": "integer"},
    "width": {"type": "integer"}, "height": {"type": "integer"},
    "rotation_deg": {"type": "integer"},
}
RESULT_PROPERTIES = {
    "status": {"type": "string", "enum": ["ok", "too_short", "no_person"],
               "description": "`ok`: at least one person classified; `too_short`: people were tracked, but none long "
                              "enough to classify (shorter than `params.min_track_s`; listed in `short_tracks`); "
                              "`no_person`: nobody was tracked."},
    "classes": {"type": "array", "items": {"type": "string"}},
    "models": {"type": "object"},
    "video": {"type": "object"},
    "params": {"type": "object"},
    "persons": {"type": "array", "items": {"$ref": "#/components/schemas/Person"}},
    "short_tracks": {"type": "array", "items": {"type": "object"}},
}


def openapi_document(settings=None) -> dict[str, Any]:
    """The document. Its object schemas name every property a response may have: no others are allowed
    (``additionalProperties: false`` unless a schema says otherwise), and the :data:`COMPLETE` ones require them all;
    tests/contract.py checks every response of the API tests against it."""
    doc = _document(settings)
    for ops in doc["paths"].values():  # a token that is not valid is refused whatever the call (web/auth.py)
        for method, op in ops.items():
            op["responses"].setdefault("401", INVALID_TOKEN)
            # the database unreachable, whatever the call (web/__init__.py); /api/health reports it in its own body
            mine = op["responses"].get("503")
            if mine is None:
                op["responses"]["503"] = DATABASE_UNAVAILABLE
            elif mine.get("content") == DATABASE_UNAVAILABLE["content"]:
                op["responses"]["503"] = {**mine, "description": mine["description"] + " Or "
                                          + DATABASE_UNAVAILABLE["description"][0].lower()
                                          + DATABASE_UNAVAILABLE["description"][1:],
                                          "headers": DATABASE_UNAVAILABLE["headers"]}
            if method in ("post", "delete"):  # a change sent by another site with a browser's cookie (web/auth.py)
                mine = op["responses"].get("403")
                op["responses"]["403"] = CROSS_SITE if mine is None else {
                    **mine, "description": mine["description"] + " Or " + CROSS_SITE["description"][0].lower()
                    + CROSS_SITE["description"][1:]}
    schemas = doc["components"]["schemas"]
    for schema in schemas.values():
        _closed(schema)
    for name in COMPLETE:
        schemas[name]["required"] = [p for p in schemas[name]["properties"] if p not in OPTIONAL.get(name, ())]
    return doc


def _closed(node) -> None:
    """``additionalProperties: false`` on every object schema under ``node`` that lists its properties."""
    if isinstance(node, dict):
        if "properties" in node and "additionalProperties" not in node:
            node["additionalProperties"] = False
        for value in node.values():
            _closed(value)
    elif isinstance(node, list):
        for value in node:
            _closed(value)


def _document(settings=None) -> dict[str, Any]:
    max_mb = getattr(settings, "max_upload_mb", 500)
    max_s = getattr(settings, "max_video_seconds", 600.0)
    exts = ", ".join(sorted(getattr(settings, "allowed_extension_set", {"mp4", "mov", "avi", "mkv", "webm"})))
    nullable_num = {"type": ["number", "null"]}
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "Human action recognition API",
            "version": "1.0.0",
            "description": (
                "Upload a video, follow the job, and get per person a timeline of actions "
                "(jumping, jumping jacks, boxing, waving two hands, waving one hand, clapping) with "
                "confidences. Jobs move queued → extracting → classifying → reporting → done, or to "
                "failed with a reason. A job is done as soon as its results and reports are; its annotated "
                "video is rendered after that (`annotated_video.status`: rendering → ready, or failed with a "
                "reason while the job stays done). Every error is JSON: `{\"error\": code, \"message\": text}`. "
                "Confidences are probabilities in [0, 1].\n\n"
                "Access: a job belongs to whoever submitted it: an API token (`Authorization: Bearer <token>`, made "
                "with `flask --app web tokens create NAME`), or else the client's anonymous identity (a signed "
                "`har_identity` cookie, as browsers keep it; a client that keeps no cookies is a new one every time). "
                "The list shows only the client's jobs; delete and rerun are the owner's (403 for anyone else); "
                "everything else about a job (status, reports, video) is readable by anyone with its id. A token "
                "that is not valid is refused with 401 on every call. New jobs (uploads and reruns) are limited per "
                "client (429 with `Retry-After`), and under `HAR_AUTH=required` need a token (401)."
            ),
        },
        "servers": [{"url": "/"}],
        "tags": [{"name": "jobs"}, {"name": "reports"}, {"name": "service"}],
        "paths": {
            "/api/jobs": {
                "post": {
                    "tags": ["jobs"],
                    "operationId": "createJob",
                    "summary": "Upload a video and start a job",
                    "description": (f"Accepted containers: {exts}. At most {max_mb} MB and {max_s:g} seconds. "
                                    "The file is checked (readable video, not empty, not truncated) before a "
                                    "job is created."),
                    "requestBody": {
                        "required": True,
                        "content": {"multipart/form-data": {"schema": {
                            "type": "object",
                            "required": ["video"],
                            "properties": {
                                "video": {"type": "string", "format": "binary", "description": "The video file."},
                                "imgsz": {"type": "integer", "minimum": 320, "maximum": 1280, "multipleOf": 32,
                                          "description": "Pose model input size in pixels (default: server setting)."},
                                "fps": {"type": "number", "minimum": 5, "maximum": 60,
                                        "description": "Frames per second analysed (default: the action model's rate)."},
                                "stride": {"type": "integer", "minimum": 1, "maximum": 32,
                                           "description": "Sampled frames between classification windows."},
                                "callback_url": CALLBACK_URL,
                            },
                        }}},
                    },
                    "responses": {
                        "202": {
                            "description": "Accepted; the job is queued.",
                            "headers": {"Location": {"description": "The job's status URL.",
                                                     "schema": {"type": "string"}}},
                            "content": {"application/json": {"schema": {"$ref": "#/components/schemas/JobCreated"}}},
                        },
                        "400": _error("No file, an empty file or an invalid parameter (`invalid_callback_url`: not "
                                      "http(s), or a loopback, private, link-local or metadata address)."),
                        "413": _error(f"The file is larger than {max_mb} MB."),
                        "415": _error("Unsupported file extension."),
                        "422": _error("Not a readable video (corrupt, truncated; `invalid_video`), longer than the limit "
                                      "(`video_too_long`), frames larger than the limit (`video_resolution_too_high`) or a "
                                      "higher frame rate (`video_fps_too_high`)."),
                        "401": TOKEN_REQUIRED,
                        "429": RATE_LIMITED,
                        "503": _error("The queue is unavailable (`queue_unavailable`): the job was created and marked "
                                      "failed (its `id` and `status_url` are included); or the object storage is "
                                      "(`storage_unavailable`): nothing was created."),
                        "507": _error("Not enough free disk space to store the upload (`HAR_MIN_FREE_MB`); "
                                      "nothing was stored."),
                    },
                },
                "get": {
                    "tags": ["jobs"],
                    "operationId": "listJobs",
                    "summary": "List the client's jobs, newest first",
                    "description": ("The jobs submitted by this client: with its API token, else with its identity "
                                    "cookie. `scope=all`: every job, for admin tokens only."),
                    "parameters": [
                        {"name": "page", "in": "query", "schema": {"type": "integer", "minimum": 1, "default": 1}},
                        {"name": "per_page", "in": "query",
                         "schema": {"type": "integer", "minimum": 1, "maximum": 100,
                                    "default": getattr(settings, "jobs_per_page", 20)}},
                        {"name": "status", "in": "query", "schema": {"type": "string", "enum": list(STATES)}},
                        {"name": "scope", "in": "query",
                         "schema": {"type": "string", "enum": ["mine", "all"], "default": "mine"},
                         "description": "`all`: every job, jobs from before owners were recorded included "
                                        "(admin tokens only)."},
                    ],
                    "responses": {
                        "200": {"description": "One page of jobs.",
                                "content": {"application/json": {"schema": {"$ref": "#/components/schemas/JobPage"}}}},
                        "400": _error("Invalid page, per_page, status or scope."),
                        "403": _error("`scope=all` without an admin token (`forbidden`)."),
                    },
                },
            },
            "/api/jobs/{job_id}": {
                "get": {
                    "tags": ["jobs"],
                    "operationId": "getJob",
                    "summary": "Status, progress, history and (when done) the result of a job",
                    "parameters": [JOB_ID],
                    "responses": {
                        "200": {"description": "The job.",
                                "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Job"}}}},
                        "404": _error("Unknown job."),
                    },
                },
                "delete": {
                    "tags": ["jobs"],
                    "operationId": "deleteJob",
                    "summary": "Delete a finished job with its results and files",
                    "description": ("Removes the job and everything it produced (history, tracks, pose data, "
                                    "predictions, reports, the annotated video) and, when no other job uses it, "
                                    "the uploaded video. Only a finished job (`done` or `failed`) can be deleted; "
                                    "a running one answers 409: wait for it to finish."),
                    "parameters": [JOB_ID],
                    "responses": {
                        "204": {"description": "Deleted."},
                        "403": NOT_YOURS,
                        "404": _error("Unknown job."),
                        "409": _error("The job is still running (`job_running`); wait for it to finish."),
                    },
                },
            },
            "/api/jobs/{job_id}/rerun": {
                "post": {
                    "tags": ["jobs"],
                    "operationId": "rerunJob",
                    "summary": "Run a finished job again on the same stored video, as a new job",
                    "description": ("Creates and queues a new job for the video of a finished job (`done` or "
                                    "`failed`), without uploading it again; the old job stays in the history. "
                                    "Optional settings as form fields or a JSON object, validated like the "
                                    "upload's; those not given keep the old job's values."),
                    "parameters": [JOB_ID],
                    "requestBody": {
                        "required": False,
                        "content": {
                            "application/json": {"schema": RUN_SETTINGS},
                            "application/x-www-form-urlencoded": {"schema": RUN_SETTINGS},
                        },
                    },
                    "responses": {
                        "202": {
                            "description": "Accepted; the new job is queued.",
                            "headers": {"Location": {"description": "The new job's status URL.",
                                                     "schema": {"type": "string"}}},
                            "content": {"application/json": {"schema": {"$ref": "#/components/schemas/JobCreated"}}},
                        },
                        "400": _error("An invalid parameter or body."),
                        "401": TOKEN_REQUIRED,
                        "403": NOT_YOURS,
                        "404": _error("Unknown job."),
                        "409": _error("The job is still running (`job_running`); wait for it to finish."),
                        "410": _error("The job's uploaded video is no longer stored (`video_gone`); upload it again."),
                        "429": RATE_LIMITED,
                        "503": _error("The queue is unavailable; the new job was created and marked failed "
                                      "(its `id` and `status_url` are included)."),
                    },
                },
            },
            "/api/jobs/{job_id}/webhooks": {
                "get": {
                    "tags": ["jobs"],
                    "operationId": "listWebhookDeliveries",
                    "summary": "The job's webhook deliveries, oldest first, with every attempt",
                    "description": "For whoever may manage the job (its owner, its job key, an admin token).",
                    "parameters": [JOB_ID],
                    "responses": {
                        "200": {"description": "The delivery log.", "content": {"application/json": {
                            "schema": {"$ref": "#/components/schemas/WebhookLog"}}}},
                        "403": NOT_YOURS,
                        "404": _error("Unknown job."),
                    },
                },
            },
            "/api/jobs/{job_id}/webhooks/{delivery_id}/resend": {
                "post": {
                    "tags": ["jobs"],
                    "operationId": "resendWebhook",
                    "summary": "Send a delivery's event again (a new delivery, the same body)",
                    "parameters": [JOB_ID, DELIVERY_ID],
                    "responses": {
                        "202": {"description": "The new delivery, pending.", "content": {"application/json": {
                            "schema": {"$ref": "#/components/schemas/WebhookDelivery"}}}},
                        "403": NOT_YOURS,
                        "404": _error("Unknown job or delivery."),
                        "409": _error("The job has no callback URL (`no_callback_url`)."),
                    },
                },
            },
            "/api/jobs/{job_id}/report.json": _report_path(
                "json", "application/json",
                "The result document (see docs/contracts.md) plus `report`, `job`, `source` and `timings`."),
            "/api/jobs/{job_id}/report.csv": _report_path(
                "csv", "text/csv",
                "Columns: job_id, track_id, row_type (`person` = the whole track with its overall label, "
                "`segment` = one stretch of its timeline), label, start_s, end_s, duration_s, confidence "
                "(0–1), frames (person rows only). Per person: its person row, then its segments by start time."),
            "/api/jobs/{job_id}/report.html": _report_path(
                "html", "text/html", "A standalone human-readable report (no external assets)."),
            "/api/jobs/{job_id}/video": {
                "get": {
                    "tags": ["reports"],
                    "operationId": "getAnnotatedVideo",
                    "summary": "The annotated video (H.264 MP4, or VP8 WebM where ffmpeg is absent), with byte-range support",
                    "parameters": [JOB_ID, {"name": "download", "in": "query", "schema": {"type": "boolean"},
                                            "description": "Send as an attachment."}],
                    "responses": {
                        "200": {"description": "The video.", "content": {
                            "video/mp4": {"schema": {"type": "string", "format": "binary"}},
                            "video/webm": {"schema": {"type": "string", "format": "binary"}},
                        }},
                        "206": {"description": "Part of the video (Range request)."},
                        "404": _error("Unknown job, or no annotated video (`not_available`): the job is not done, "
                                      "its video is still rendering or failed (`video_status` says which), or "
                                      "none was asked for."),
                        "416": _error("The `Range` asked for is outside the video."),
                    },
                },
            },
            "/api/health": {
                "get": {
                    "tags": ["service"],
                    "operationId": "health",
                    "summary": "Whether the database and Redis are reachable",
                    "responses": {
                        "200": {"description": "All dependencies reachable.",
                                "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Health"}}}},
                        "503": {"description": "A dependency is unreachable (see `checks`).",
                                "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Health"}}}},
                    },
                },
            },
            "/api/openapi.json": {
                "get": {
                    "tags": ["service"],
                    "operationId": "openapi",
                    "summary": "This document",
                    "responses": {"200": {"description": "OpenAPI 3.1 document.",
                                          "content": {"application/json": {"schema": {"type": "object"}}}}},
                },
            },
            "/api/docs": {
                "get": {
                    "tags": ["service"],
                    "operationId": "docs",
                    "summary": "This document as a web page",
                    "responses": {"200": {"description": "HTML page.", "content": {"text/html": {"schema": {"type": "string"}}}}},
                },
            },
        },
        "security": [{"bearerAuth": []}, {"identityCookie": []}, {}],
        "components": {
            "securitySchemes": {
                "bearerAuth": {"type": "http", "scheme": "bearer",
                               "description": "An API token (`flask --app web tokens create NAME`). Jobs submitted "
                                              "with it belong to the token's name. Or a job's own key (`hjk_…`, "
                                              "from the 202 of a submission without a token): it manages that "
                                              "job only."},
                "identityCookie": {"type": "apiKey", "in": "cookie", "name": "har_identity",
                                   "description": "The anonymous identity the service gives a client that has no "
                                                  "token (signed; a year)."},
            },
            "schemas": {
                "Error": {
                    "type": "object",
                    "required": ["error", "message"],
                    "properties": {
                        "error": {"type": "string", "description": "Machine-readable code, e.g. `invalid_video`."},
                        "message": {"type": "string", "description": "What went wrong, for people."},
                        "id": {"type": "string", "format": "uuid",
                               "description": "503 `queue_unavailable`: the job that was created and marked failed."},
                        "status_url": {"type": "string", "description": "503 `queue_unavailable`: that job's status."},
                        "job_status": {"type": "string", "enum": list(STATES),
                                       "description": "409 `not_ready` of a report: the job's status."},
                        "video_status": {"type": ["string", "null"], "enum": [*VIDEO_STATES, None],
                                         "description": "404 `not_available` of the annotated video: its state."},
                        "max_upload_mb": {"type": "integer", "description": "413 `file_too_large`: the limit."},
                    },
                },
                "JobCreated": {
                    "type": "object",
                    "required": ["id", "status", "url", "status_url", "callback_url", "webhooks_url"],
                    "properties": {
                        "id": {"type": "string", "format": "uuid"},
                        "status": {"type": "string", "enum": list(STATES)},
                        "url": {"type": "string", "description": "The job's web page."},
                        "status_url": {"type": "string", "description": "GET this for the status."},
                        "callback_url": {"type": ["string", "null"], "description": "The job's webhook URL."},
                        "webhooks_url": {"type": "string", "description": "The job's webhook delivery log."},
                        "job_key": {"type": "string", "pattern": "^hjk_",
                                    "description": ("Only for a job submitted without an API token, and only "
                                                    "here: the job's own key. It signs the job's webhooks, and "
                                                    "`Authorization: Bearer <job_key>` deletes or re-runs this job "
                                                    "(and reads its webhook log).")},
                    },
                },
                "WebhookAttempt": {
                    "type": "object",
                    "required": ["at", "status_code", "error", "duration_ms", "retry_in_s"],
                    "properties": {
                        "at": {"type": "string", "format": "date-time"},
                        "status_code": {"type": ["integer", "null"], "description": "The receiver's HTTP status."},
                        "error": {"type": ["string", "null"]},
                        "duration_ms": {"type": "integer"},
                        "retry_in_s": {**nullable_num, "description": "Seconds until the next attempt."},
                    },
                },
                "WebhookDelivery": {
                    "type": "object",
                    "required": ["id", "event", "url", "status", "attempts", "created_at", "attempt_log"],
                    "properties": {
                        "id": {"type": "integer"},
                        "event": {"type": "string", "enum": ["job.done", "job.failed", "video.ready", "video.failed"]},
                        "url": {"type": "string"},
                        "status": {"type": "string", "enum": ["pending", "delivered", "failed"],
                                   "description": "`failed`: given up (after about a day of retries, or at once "
                                                  "for a 4xx, a redirect or a refused address)."},
                        "attempts": {"type": "integer"},
                        "created_at": {"type": "string", "format": "date-time"},
                        "next_attempt_at": {"type": ["string", "null"], "format": "date-time"},
                        "delivered_at": {"type": ["string", "null"], "format": "date-time"},
                        "last_status_code": {"type": ["integer", "null"]},
                        "last_error": {"type": ["string", "null"]},
                        "response_excerpt": {"type": ["string", "null"], "maxLength": 500,
                                             "description": "The start of the receiver's last answer."},
                        "redelivery_of": {"type": ["integer", "null"],
                                          "description": "The delivery this one sends again."},
                        "attempt_log": {"type": "array", "items": {"$ref": "#/components/schemas/WebhookAttempt"}},
                    },
                },
                "WebhookLog": {
                    "type": "object",
                    "required": ["job_id", "callback_url", "items"],
                    "properties": {
                        "job_id": {"type": "string", "format": "uuid"},
                        "callback_url": {"type": ["string", "null"]},
                        "items": {"type": "array", "items": {"$ref": "#/components/schemas/WebhookDelivery"}},
                    },
                },
                "Progress": {
                    "type": "object",
                    "properties": {
                        "frames_done": {"type": "integer"},
                        "frames_total": {"type": "integer"},
                        "fraction": {"type": "number", "minimum": 0, "maximum": 1,
                                     "description": "Overall progress across stages."},
                        "eta_s": {**nullable_num, "description": "Seconds left in pose extraction (estimate)."},
                    },
                },
                "Event": {
                    "type": "object",
                    "properties": {"status": {"type": "string"}, "message": {"type": ["string", "null"]},
                                   "at": {"type": "string", "format": "date-time"}},
                },
                "Video": {"type": "object", "properties": VIDEO_PROPERTIES},
                "JobSummary": {
                    "type": "object",
                    "properties": {
                        "id": {"type": "string", "format": "uuid"},
                        "status": {"type": "string", "enum": list(STATES)},
                        "stage": {"type": ["string", "null"]},
                        "created_at": {"type": "string", "format": "date-time"},
                        "finished_at": {"type": ["string", "null"], "format": "date-time"},
                        "original_filename": {"type": ["string", "null"]},
                        "duration_s": nullable_num,
                        "progress": {"type": "number"},
                        "overall_label": {"type": ["string", "null"]},
                        "overall_confidence": nullable_num,
                        "persons": {"type": ["integer", "null"]},
                        "error": {"type": ["string", "null"]},
                        "video_status": {"type": ["string", "null"], "enum": [*VIDEO_STATES, None],
                                         "description": "The annotated video's state (see `AnnotatedVideo`)."},
                        "url": {"type": "string"},
                        "status_url": {"type": "string"},
                    },
                },
                "AnnotatedVideo": {
                    "type": "object",
                    "description": ("The annotated video, rendered after the job is done (the results and reports "
                                    "never wait for it)."),
                    "properties": {
                        "status": {"type": ["string", "null"], "enum": [*VIDEO_STATES, None],
                                   "description": "`rendering`, then `ready` or `failed` (the job stays done); "
                                                  "null when no annotated video was asked for."},
                        "url": {"type": ["string", "null"], "description": "The video, once `ready`."},
                        "error": {"type": ["string", "null"], "description": "Why it failed."},
                    },
                },
                "JobPage": {
                    "type": "object",
                    "properties": {
                        "items": {"type": "array", "items": {"$ref": "#/components/schemas/JobSummary"}},
                        "page": {"type": "integer"}, "per_page": {"type": "integer"},
                        "total": {"type": "integer"}, "pages": {"type": "integer"},
                        "links": {"type": "object", "properties": {
                            "self": {"type": "string"}, "next": {"type": ["string", "null"]},
                            "prev": {"type": ["string", "null"]}}},
                    },
                },
                "Job": {
                    "type": "object",
                    "properties": {
                        "id": {"type": "string", "format": "uuid"},
                        "status": {"type": "string", "enum": list(STATES)},
                        "stage": {"type": ["string", "null"]},
                        "final": {"type": "boolean"},
                        "error": {"type": ["string", "null"], "description": "Why the job failed."},
                        "created_at": {"type": "string", "format": "date-time"},
                        "updated_at": {"type": ["string", "null"], "format": "date-time"},
                        "started_at": {"type": ["string", "null"], "format": "date-time"},
                        "finished_at": {"type": ["string", "null"], "format": "date-time"},
                        "attempts": {"type": "integer"},
                        "progress": {"$ref": "#/components/schemas/Progress"},
                        "params": {"type": "object"},
                        "timings": {"type": "object", "additionalProperties": {"type": "number"},
                                    "description": "Seconds per stage."},
                        "video": {"$ref": "#/components/schemas/Video"},
                        "annotated_video": {"$ref": "#/components/schemas/AnnotatedVideo"},
                        "models": {"type": "object"},
                        "summary": {"type": "object", "properties": {
                            "overall_label": {"type": ["string", "null"]},
                            "overall_confidence": nullable_num,
                            "persons": {"type": ["integer", "null"]}}},
                        "events": {"type": "array", "items": {"$ref": "#/components/schemas/Event"}},
                        "links": {"type": "object", "additionalProperties": {"type": ["string", "null"]}},
                        "result": {"oneOf": [{"$ref": "#/components/schemas/Result"}, {"type": "null"}]},
                    },
                },
                "Segment": {
                    "type": "object",
                    "properties": {"label": {"type": "string"}, "start_s": {"type": "number"},
                                   "end_s": {"type": "number"}, "confidence": {"type": "number"}},
                },
                "Person": {
                    "type": "object",
                    "properties": {
                        "track_id": {"type": "integer"}, "start_s": {"type": "number"},
                        "end_s": {"type": "number"}, "frames": {"type": "integer"},
                        "label": {"type": "string", "description": "A class name or `uncertain`."},
                        "confidence": {"type": "number"},
                        "probabilities": {"type": "object", "additionalProperties": {"type": "number"}},
                        "segments": {"type": "array", "items": {"$ref": "#/components/schemas/Segment"}},
                        "windows": {"type": "array", "items": {"type": "object"}},
                    },
                },
                "Result": {
                    "type": "object",
                    "description": "The result document (docs/contracts.md).",
                    "required": ["status", "persons"],
                    "properties": RESULT_PROPERTIES,
                },
                "ReportDocument": {
                    "type": "object",
                    "description": ("report.json: the result document (`Result`) with the report's own format and "
                                    "time, the job, its source video and its timings."),
                    "required": ["status", "persons", "report", "job", "source", "timings", "models"],
                    "properties": {
                        **RESULT_PROPERTIES,
                        "report": {"type": "object", "required": ["format", "generated_at"], "properties": {
                            "format": {"type": "string", "const": "har.report/1"},
                            "generated_at": {"type": "string", "format": "date-time"}}},
                        "job": {"type": "object", "properties": {
                            "id": {"type": "string", "format": "uuid"},
                            "status": {"type": "string", "enum": list(STATES)},
                            "created_at": {"type": ["string", "null"], "format": "date-time"},
                            "started_at": {"type": ["string", "null"], "format": "date-time"},
                            "finished_at": {"type": ["string", "null"], "format": "date-time"},
                            "params": {"type": "object"},
                            "timings": {"type": "object", "additionalProperties": {"type": "number"}},
                            "pose_model": {"type": ["string", "null"]},
                            "action_model": {"type": ["string", "null"]},
                            "overall_label": {"type": ["string", "null"]},
                            "overall_confidence": nullable_num,
                            "persons": {"type": ["integer", "null"]}}},
                        "source": {"oneOf": [{"type": "null"}, {"type": "object", "properties": {
                            "id": {"type": "string"}, **VIDEO_PROPERTIES}}]},
                        "timings": {"type": "object", "additionalProperties": {"type": "number"}},
                    },
                },
                "Health": {
                    "type": "object",
                    "properties": {
                        "status": {"type": "string", "enum": ["ok", "unavailable"]},
                        "checks": {"type": "object", "additionalProperties": {"type": "object", "properties": {
                            "ok": {"type": "boolean"}, "error": {"type": "string"}}}},
                    },
                },
            },
        },
    }


def _report_path(fmt: str, media_type: str, description: str) -> dict[str, Any]:
    return {
        "get": {
            "tags": ["reports"],
            "operationId": f"getReport{fmt.upper()}",
            "summary": f"The {fmt.upper()} report of a finished job",
            "description": description,
            "parameters": [JOB_ID, {"name": "download", "in": "query", "schema": {"type": "boolean"},
                                    "description": "Send as an attachment."}],
            "responses": {
                "200": {"description": "The report.", "content": {media_type: {"schema": (
                    {"$ref": "#/components/schemas/ReportDocument"} if fmt == "json" else {"type": "string"})}}},
                "404": _error("Unknown job."),
                "409": _error("The job is not done (still running, or failed)."),
            },
        },
    }
