"""The REST API (web.api) against a migrated SQLite database, real uploads and a real redis-server."""
from __future__ import annotations

import io
import re
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from sqlalchemy import func, select

from har.config import load_settings
from har.database import dispose_engines, session_scope, upgrade_database
from har.db import DONE, FAILED, QUEUED, Job, JobEvent, Report, Video
from tests.conftest import TEST_OWNER, identity_client_class
from tests.media import make_people_video, truncate_file
from tests.test_reports import sample_result

# --------------------------------------------------------------------------- fixtures (web only)
# (redis_server comes from tests/conftest.py)


@pytest.fixture(scope="session")
def clip(tmp_path_factory) -> Path:
    """A real 1 s mp4 with people."""
    return make_people_video(tmp_path_factory.mktemp("media") / "people.mp4", seconds=1.0, fps=15.0)


def make_settings(tmp_path, **overrides):
    """Settings for one test, independent of any HAR_* variables in the environment."""
    base = dict(data_dir=str(tmp_path / "data"), database_url=f"sqlite:///{tmp_path / 'data' / 'web.sqlite3'}",
                storage_dir=str(tmp_path / "data" / "storage"), redis_url="redis://127.0.0.1:1/0",
                secret_key="test-secret", jobs_per_page=20, max_upload_mb=500, max_video_seconds=600.0,
                allowed_extensions="mp4,mov,avi,mkv,webm", task_always_eager=False)
    base.update(overrides)
    return load_settings(**base)


class Enqueued(list):
    """Records the job ids the app enqueues (replaces the Celery hand-off)."""

    def __call__(self, job_id):
        self.append(job_id)


def make_app(settings, **config):
    from web import create_app

    upgrade_database(settings)
    config.setdefault("TESTING", True)
    config.setdefault("WTF_CSRF_ENABLED", False)
    app = create_app(settings, **config)
    app.test_client_class = identity_client_class()  # its clients own what add_job writes (tests/conftest.py)
    return app


@pytest.fixture
def settings(tmp_path):
    yield make_settings(tmp_path)
    dispose_engines()


@pytest.fixture
def enqueued():
    return Enqueued()


@pytest.fixture
def app(settings, enqueued):
    return make_app(settings, HAR_ENQUEUE=enqueued)


@pytest.fixture
def client(app):
    return app.test_client()


def stored_files(settings) -> list[Path]:
    root = settings.resolved_storage_dir
    return [p for p in root.rglob("*") if p.is_file()] if root.exists() else []


def row_counts(settings) -> tuple[int, int, int]:
    with session_scope(settings) as s:
        return (s.scalar(select(func.count()).select_from(Video)), s.scalar(select(func.count()).select_from(Job)),
                s.scalar(select(func.count()).select_from(JobEvent)))


def upload(client, data: bytes | Path, filename: str, url="/api/jobs", **fields):
    if isinstance(data, Path):
        data = data.read_bytes()
    return client.post(url, data={"video": (io.BytesIO(data), filename), **fields},
                       content_type="multipart/form-data")


def add_job(settings, *, status=QUEUED, created_at=None, result=None, name="clip.mp4", **fields) -> str:
    """Insert a job (and its video) directly, as the workers would have left it; it belongs to the test
    clients' identity unless ``owner`` says otherwise."""
    fields.setdefault("owner", TEST_OWNER)
    with session_scope(settings) as s:
        video = Video(path=f"uploads/{name}", original_filename=name, sha256="d" * 64, size_bytes=1000,
                      container="mp4", codec="mp4v", duration_s=10.0, fps=30.0, frame_count=300, width=1280,
                      height=720, rotation_deg=0)
        now = created_at or datetime.now(timezone.utc)
        job = Job(video=video, status=status, stage=fields.pop("stage", status), created_at=now, updated_at=now,
                  frames_total=fields.pop("frames_total", 220), result=result, params=fields.pop("params", {}),
                  timings=fields.pop("timings", {}), **fields)
        s.add(job)
        s.flush()
        s.add(JobEvent(job_id=job.id, status=QUEUED, message="uploaded and queued", at=now))
        if status != QUEUED:
            s.add(JobEvent(job_id=job.id, status=status, message=status, at=now + timedelta(seconds=1)))
        return job.id


def add_done_job(settings, **fields) -> str:
    t0 = datetime.now(timezone.utc) - timedelta(minutes=2)
    fields.setdefault("pose_model", "yolo11n-pose 8.3.0")
    fields.setdefault("action_model", "gru-har 2.1")
    return add_job(settings, status=DONE, result=sample_result(), overall_label="BOXING", overall_confidence=0.934,
                   persons=2, frames_done=220, started_at=t0, finished_at=t0 + timedelta(seconds=30),
                   timings={"pose_s": 12.5, "classify_s": 0.25}, **fields)


# --------------------------------------------------------------------------- uploads


def test_upload_creates_queued_job(client, settings, enqueued, clip):
    r = upload(client, clip, "My clip.mp4", imgsz="480", fps="15", stride="4")
    assert r.status_code == 202, r.json
    body = r.json
    # an anonymous client's job comes with its own key (shown only here), and no webhook unless asked for
    assert set(body) == {"id", "status", "url", "status_url", "callback_url", "webhooks_url", "job_key"}
    assert body["job_key"].startswith("hjk_") and body["callback_url"] is None
    assert body["status"] == "queued"
    assert r.headers["Location"] == body["status_url"] == f"/api/jobs/{body['id']}"
    assert body["url"] == f"/jobs/{body['id']}"
    assert enqueued == [body["id"]]
    with session_scope(settings) as s:
        job = s.get(Job, body["id"])
        assert job.status == QUEUED
        assert job.params == {"imgsz": 480, "sample_fps": 15.0, "stride": 4}
        assert job.video.original_filename == "My clip.mp4"
        assert (job.video.width, job.video.height, job.video.frame_count) == (640, 360, 15)
        assert job.video.size_bytes == clip.stat().st_size
        assert [e.status for e in job.events] == [QUEUED]
        assert (settings.resolved_storage_dir / job.video.path).is_file()

    detail = client.get(body["status_url"]).json
    assert detail["status"] == "queued" and detail["final"] is False
    assert detail["progress"] == {"frames_done": 0, "frames_total": 15, "fraction": 0.0, "eta_s": None}
    assert detail["video"]["original_filename"] == "My clip.mp4"
    assert detail["video"]["duration_s"] == pytest.approx(1.0, abs=0.1)
    assert [e["status"] for e in detail["events"]] == ["queued"]
    assert detail["result"] is None
    assert detail["error"] is None


@pytest.mark.parametrize("name", ["видео.mp4", "视频.MP4", "../../etc/clip.mp4"])
def test_upload_with_non_ascii_or_path_in_filename(client, settings, enqueued, clip, name):
    """The extension comes from the name as sent: a name without ASCII letters is still an .mp4, and
    a path in the name never reaches the storage layout."""
    r = upload(client, clip, name)
    assert r.status_code == 202, r.json
    with session_scope(settings) as s:
        video = s.get(Job, r.json["id"]).video
        assert video.original_filename == name and video.container == "mp4"
        assert video.path.startswith("uploads/") and video.path.endswith(".mp4") and ".." not in video.path
    assert [p.parent for p in stored_files(settings)] == [settings.resolved_storage_dir.resolve() / "uploads"]


@pytest.mark.parametrize("case", ["empty", "text_as_mp4", "truncated", "extension", "no_extension"])
def test_bad_uploads_rejected_and_nothing_kept(client, settings, enqueued, clip, tmp_path, case):
    if case == "empty":
        data, name, status, code = b"", "empty.mp4", 400, "empty_file"
    elif case == "text_as_mp4":
        data, name, status, code = b"this is not a video\n" * 50, "notes.mp4", 422, "invalid_video"
    elif case == "truncated":
        data = truncate_file(clip, tmp_path / "cut.mp4", keep_fraction=0.3).read_bytes()
        name, status, code = "cut.mp4", 422, "invalid_video"
    elif case == "extension":
        data, name, status, code = clip.read_bytes(), "clip.gif", 415, "unsupported_type"
    else:
        data, name, status, code = clip.read_bytes(), "clip", 415, "unsupported_type"
    r = upload(client, data, name)
    assert r.status_code == status, r.json
    assert r.json["error"] == code
    assert isinstance(r.json["message"], str) and len(r.json["message"]) > 15
    if case in ("extension", "no_extension"):
        assert ".mp4" in r.json["message"]
    assert stored_files(settings) == []
    assert row_counts(settings) == (0, 0, 0)
    assert enqueued == []


def test_missing_file_field(client, settings):
    r = client.post("/api/jobs", data={"file": (io.BytesIO(b"x"), "a.mp4")}, content_type="multipart/form-data")
    assert r.status_code == 400 and r.json["error"] == "no_file" and "video" in r.json["message"]
    r = client.post("/api/jobs", json={"video": "x"})
    assert r.status_code == 400 and r.json["error"] == "no_file"
    r = upload(client, b"", "")
    assert r.status_code == 400 and r.json["error"] == "no_file"


@pytest.mark.parametrize("field,value", [("imgsz", "abc"), ("imgsz", "100"), ("imgsz", "500"), ("fps", "0"),
                                         ("fps", "nan"), ("stride", "0"), ("stride", "2.5")])
def test_invalid_parameters(client, settings, clip, field, value):
    r = upload(client, clip, "clip.mp4", **{field: value})
    assert r.status_code == 400
    assert r.json["error"] == "invalid_parameter" and field in r.json["message"]
    assert stored_files(settings) == [] and row_counts(settings) == (0, 0, 0)


def test_oversize_upload_413(tmp_path, clip, enqueued):
    settings = make_settings(tmp_path, max_upload_mb=1)
    try:
        client = make_app(settings, HAR_ENQUEUE=enqueued).test_client()
        r = upload(client, b"\0" * (1024 * 1024 + 10), "big.mp4")
        assert r.status_code == 413
        assert r.json["error"] == "file_too_large"
        assert "1 MB" in r.json["message"]
        assert stored_files(settings) == [] and row_counts(settings) == (0, 0, 0)
        # a small file still goes through
        assert upload(client, clip, "ok.mp4").status_code == 202
    finally:
        dispose_engines()


@pytest.mark.parametrize("limits,error,words", [
    ({"max_video_width": 160, "max_video_height": 90}, "video_resolution_too_high", ["pixels", "160×90", "scale="]),
    ({"max_video_width": 90, "max_video_height": 160}, "video_resolution_too_high", ["160×90"]),  # either orientation
    ({"max_video_fps": 5.0}, "video_fps_too_high", ["frames per second", "the most accepted is 5", "-r 30"]),
])
def test_too_large_frames_or_too_high_frame_rate_422(tmp_path, clip, enqueued, limits, error, words):
    """8K frames or a 240 fps slow-motion file: refused at upload with how to convert it, nothing kept."""
    from models.video import probe_video

    info = probe_video(clip)
    assert max(info.width, info.height) > 160 and info.fps > 5  # the test clip is over these limits
    settings = make_settings(tmp_path, **limits)
    try:
        client = make_app(settings, HAR_ENQUEUE=enqueued).test_client()
        r = upload(client, clip, "big.mp4")
        assert r.status_code == 422 and r.json["error"] == error, r.json
        assert all(w in r.json["message"] for w in words), r.json["message"]
        assert stored_files(settings) == [] and row_counts(settings) == (0, 0, 0) and enqueued == []
        ok = make_settings(tmp_path / "ok", max_video_width=max(info.width, info.height),
                           max_video_height=min(info.width, info.height), max_video_fps=info.fps)
        assert upload(make_app(ok, HAR_ENQUEUE=enqueued).test_client(), clip, "ok.mp4").status_code == 202
    finally:
        dispose_engines()


def test_too_long_video_422(tmp_path, clip, enqueued):
    settings = make_settings(tmp_path, max_video_seconds=0.5)
    try:
        client = make_app(settings, HAR_ENQUEUE=enqueued).test_client()
        r = upload(client, clip, "long.mp4")
        assert r.status_code == 422
        assert r.json["error"] == "video_too_long" and "0.5 seconds" in r.json["message"]
        assert stored_files(settings) == [] and row_counts(settings) == (0, 0, 0)
        assert enqueued == []
    finally:
        dispose_engines()


def test_enqueue_to_real_redis(tmp_path, clip, redis_server):
    """Without a hook the app sends the pose task to the pose queue of a real redis-server."""
    import redis

    web_redis = f"{redis_server}/5"  # a database of its own on the shared test server

    settings = make_settings(tmp_path, redis_url=web_redis)
    client_r = redis.Redis.from_url(web_redis)
    client_r.flushdb()
    try:
        client = make_app(settings).test_client()
        r = upload(client, clip, "clip.mp4")
        assert r.status_code == 202, r.json
        assert client_r.llen(settings.pose_queue) == 1
        assert r.json["id"].encode() in client_r.lindex(settings.pose_queue, 0)
        with session_scope(settings) as s:  # the publish is recorded: the sweep gives it the long wait
            job = s.get(Job, r.json["id"])
            assert job.status == QUEUED and job.enqueued_at is not None
        health = client.get("/api/health")
        assert health.status_code == 200
        assert health.json == {"status": "ok", "checks": {"database": {"ok": True}, "redis": {"ok": True}}}
    finally:
        client_r.flushdb()
        dispose_engines()


def test_enqueue_failure_marks_job_failed_503(settings, clip):
    """Redis down: the job is not left queued; it is failed with the reason and the client gets 503."""
    client = make_app(settings).test_client()  # settings point Redis at a closed port
    started = time.monotonic()
    r = upload(client, clip, "clip.mp4")
    assert time.monotonic() - started < 10
    assert r.status_code == 503
    assert r.json["error"] == "queue_unavailable"
    assert "unavailable" in r.json["message"]
    job_id = r.json["id"]
    detail = client.get(r.json["status_url"]).json
    assert detail["status"] == FAILED and detail["final"] is True
    assert "could not be queued" in detail["error"]
    assert [e["status"] for e in detail["events"]] == [QUEUED, FAILED]
    health = client.get("/api/health")
    assert health.status_code == 503
    assert health.json["checks"]["database"]["ok"] is True and health.json["checks"]["redis"]["ok"] is False
    page = client.get(f"/jobs/{job_id}")
    assert b"could not be queued" in page.data


# --------------------------------------------------------------------------- reading jobs


def test_unknown_job_404_json(client):
    for url in ("/api/jobs/nope", "/api/jobs/nope/report.json", "/api/jobs/nope/report.csv",
                "/api/jobs/nope/report.html", "/api/jobs/nope/video", "/api/nothing-here"):
        r = client.get(url)
        assert r.status_code == 404, url
        assert r.is_json and set(r.json) >= {"error", "message"}, url


def test_method_not_allowed_is_json(client):
    r = client.delete("/api/jobs")
    assert r.status_code == 405 and r.is_json and r.json["error"] == "method_not_allowed"


def test_progress_and_eta_while_extracting(client, settings):
    job_id = add_job(settings, status="extracting", frames_done=50, frames_total=200,
                     started_at=datetime.now(timezone.utc) - timedelta(seconds=10), stage="pose 50/200")
    j = client.get(f"/api/jobs/{job_id}").json
    assert j["status"] == "extracting" and j["stage"] == "pose 50/200"
    p = j["progress"]
    assert (p["frames_done"], p["frames_total"]) == (50, 200)
    assert p["fraction"] == pytest.approx(0.85 * 0.25)
    assert p["eta_s"] == pytest.approx(30.0, abs=2.0)  # 10 s for 50 frames, 150 to go
    assert [e["status"] for e in j["events"]] == ["queued", "extracting"]


def test_reports_409_until_done(client, settings):
    job_id = add_job(settings, status="classifying")
    for fmt in ("json", "csv", "html"):
        r = client.get(f"/api/jobs/{job_id}/report.{fmt}")
        assert r.status_code == 409 and r.json["error"] == "not_ready" and "not finished" in r.json["message"]
    failed = add_job(settings, status=FAILED, error="The video could not be decoded.")
    r = client.get(f"/api/jobs/{failed}/report.json")
    assert r.status_code == 409 and "could not be decoded" in r.json["message"]
    assert client.get(f"/api/jobs/{job_id}/report.pdf").status_code == 404


def test_done_job_detail_and_reports_rendered_on_demand(client, settings):
    job_id = add_done_job(settings)
    j = client.get(f"/api/jobs/{job_id}").json
    assert j["status"] == "done" and j["final"] is True
    assert j["progress"]["fraction"] == 1.0
    assert j["result"] == sample_result()
    assert j["models"]["pose"]["name"] == "yolo11n-pose"
    assert j["timings"] == {"pose_s": 12.5, "classify_s": 0.25}
    assert j["summary"] == {"overall_label": "BOXING", "overall_confidence": 0.934, "persons": 2}
    assert j["links"]["report_csv"] == f"/api/jobs/{job_id}/report.csv"
    assert j["links"]["video"] is None
    assert j["annotated_video"] == {"status": None, "url": None, "error": None}  # none was asked for

    r = client.get(f"/api/jobs/{job_id}/report.json")
    assert r.status_code == 200 and r.mimetype == "application/json"
    assert r.json["persons"] == sample_result()["persons"] and r.json["job"]["id"] == job_id
    r = client.get(f"/api/jobs/{job_id}/report.csv?download=1")
    assert r.status_code == 200 and r.mimetype == "text/csv"
    assert "attachment" in r.headers["Content-Disposition"]
    lines = r.data.decode().splitlines()
    assert lines[0] == "job_id,track_id,row_type,label,start_s,end_s,duration_s,confidence,frames"
    assert lines[1] == f"{job_id},1,person,BOXING,0.000,9.950,9.950,0.9340,219"
    r = client.get(f"/api/jobs/{job_id}/report.html")
    assert r.status_code == 200 and r.mimetype == "text/html" and b"93 %" in r.data
    assert client.get(f"/api/jobs/{job_id}/video").status_code == 404


def test_stored_reports_and_video_are_served(client, settings, app):
    from har import reports

    job_id = add_done_job(settings)
    storage = app.extensions["har"]["storage"]
    with session_scope(settings) as s:
        job = s.get(Job, job_id)
        files = reports.render_reports(job, storage)
        video_path, video_rel = storage.job_path(job_id, "annotated.webm")
        video_path.write_bytes(b"\x1a\x45\xdf\xa3" + bytes(range(256)) * 40)  # served as bytes, not decoded
        files.append(("video", video_rel, "video/webm"))
        job.video_status = "ready"
        for kind, rel, media_type in files:
            s.add(Report(job_id=job_id, kind=kind, path=rel, media_type=media_type,
                         size_bytes=storage.path(rel).stat().st_size, sha256="0" * 64))
        stored_csv = storage.path(files[1][1]).read_bytes()
    r = client.get(f"/api/jobs/{job_id}/report.csv")
    assert r.status_code == 200 and r.data == stored_csv
    j = client.get(f"/api/jobs/{job_id}").json
    assert j["links"]["video"] == f"/api/jobs/{job_id}/video"
    assert j["annotated_video"] == {"status": "ready", "url": f"/api/jobs/{job_id}/video", "error": None}
    r = client.get(f"/api/jobs/{job_id}/video")
    assert r.status_code == 200 and r.mimetype == "video/webm" and r.data == video_path.read_bytes()
    r = client.get(f"/api/jobs/{job_id}/video", headers={"Range": "bytes=0-9"})
    assert r.status_code == 206 and r.data == video_path.read_bytes()[:10]


def test_annotated_video_while_rendering_and_after_a_failure(client, settings):
    """A job is done, with its reports served, while its annotated video renders; a failed render leaves
    the job done and says why."""
    rendering = add_done_job(settings, video_status="rendering")
    j = client.get(f"/api/jobs/{rendering}").json
    assert (j["status"], j["final"], j["progress"]["fraction"]) == ("done", True, 1.0)
    assert j["annotated_video"] == {"status": "rendering", "url": None, "error": None}
    assert j["links"]["report_json"] == f"/api/jobs/{rendering}/report.json" and j["links"]["video"] is None
    for fmt in ("json", "csv", "html"):
        assert client.get(f"/api/jobs/{rendering}/report.{fmt}").status_code == 200
    r = client.get(f"/api/jobs/{rendering}/video")
    assert r.status_code == 404 and r.json["error"] == "not_available" and r.json["video_status"] == "rendering"
    assert "being rendered" in r.json["message"]

    reason = "Internal error in the video stage (EncoderError: ffmpeg failed (exit 1): No space left on device)."
    failed = add_done_job(settings, video_status="failed", video_error=reason)
    j = client.get(f"/api/jobs/{failed}").json
    assert j["status"] == "done" and j["error"] is None
    assert j["annotated_video"] == {"status": "failed", "url": None, "error": reason}
    r = client.get(f"/api/jobs/{failed}/video")
    assert r.status_code == 404 and r.json["video_status"] == "failed"
    assert r.json["message"] == f"The annotated video could not be rendered: {reason}"

    listed = {item["id"]: item for item in client.get("/api/jobs").json["items"]}
    assert listed[rendering]["status"] == listed[failed]["status"] == "done"
    assert (listed[rendering]["video_status"], listed[failed]["video_status"]) == ("rendering", "failed")
    assert [i["id"] for i in client.get("/api/jobs?status=done").json["items"]] == [failed, rendering]


# --------------------------------------------------------------------------- listing


def test_list_pagination_newest_first(client, settings):
    t0 = datetime(2026, 11, 1, tzinfo=timezone.utc)
    ids = [add_job(settings, created_at=t0 + timedelta(minutes=i), name=f"c{i:02d}.mp4",
                   status=(FAILED if i % 5 == 0 else QUEUED)) for i in range(25)]
    newest_first = ids[::-1]

    r = client.get("/api/jobs?per_page=10")
    body = r.json
    assert r.status_code == 200
    assert (body["page"], body["per_page"], body["total"], body["pages"]) == (1, 10, 25, 3)
    assert [j["id"] for j in body["items"]] == newest_first[:10]
    assert body["items"][0]["original_filename"] == "c24.mp4"
    assert body["links"]["prev"] is None
    assert body["links"]["next"] == "/api/jobs?page=2&per_page=10"

    body = client.get(body["links"]["next"]).json
    assert [j["id"] for j in body["items"]] == newest_first[10:20]
    body = client.get("/api/jobs?page=3&per_page=10").json
    assert [j["id"] for j in body["items"]] == newest_first[20:]
    assert body["links"]["next"] is None and body["links"]["prev"] == "/api/jobs?page=2&per_page=10"
    assert client.get("/api/jobs?page=9&per_page=10").json["items"] == []

    body = client.get("/api/jobs?status=failed&per_page=2").json
    assert body["total"] == 5 and all(j["status"] == "failed" for j in body["items"])
    assert body["links"]["next"] == "/api/jobs?page=2&per_page=2&status=failed"

    default = client.get("/api/jobs").json
    assert default["per_page"] == settings.jobs_per_page and len(default["items"]) == 20

    for bad in ("page=0", "page=x", "per_page=0", "per_page=101", "status=bogus"):
        r = client.get(f"/api/jobs?{bad}")
        assert r.status_code == 400 and r.json["error"] == "invalid_parameter", bad


# --------------------------------------------------------------------------- OpenAPI


def test_openapi_documents_every_route(app, client):
    spec = client.get("/api/openapi.json").json
    assert spec["openapi"].startswith("3.1")
    documented = {(path, method.upper()) for path, ops in spec["paths"].items() for method in ops}
    routes = set()
    for rule in app.url_map.iter_rules():
        if not rule.rule.startswith("/api/"):
            continue
        path = re.sub(r"<(?:\w+:)?(\w+)>", r"{\1}", rule.rule) if "<fmt>" not in rule.rule else \
            rule.rule.replace("<job_id>", "{job_id}")
        if "<fmt>" in path:
            expanded = [path.replace("<fmt>", f) for f in ("json", "csv", "html")]
        else:
            expanded = [path]
        for p in expanded:
            for method in rule.methods - {"HEAD", "OPTIONS"}:
                routes.add((p, method))
    assert routes, "no API routes found"
    assert routes - documented == set(), "routes missing from the OpenAPI document"
    assert documented - routes == set(), "documented paths that do not exist"

    # structure: unique operation ids, every operation answers, every $ref resolves
    op_ids = [op["operationId"] for ops in spec["paths"].values() for op in ops.values()]
    assert len(op_ids) == len(set(op_ids))
    schemas = spec["components"]["schemas"]

    def walk(node):
        if isinstance(node, dict):
            ref = node.get("$ref")
            if ref is not None:
                assert ref.startswith("#/components/schemas/") and ref.rsplit("/", 1)[1] in schemas, ref
            for v in node.values():
                walk(v)
        elif isinstance(node, list):
            for v in node:
                walk(v)

    walk(spec)
    for path, ops in spec["paths"].items():
        for method, op in ops.items():
            assert op["responses"], (path, method)
            if "{job_id}" in path:
                assert any(p["name"] == "job_id" and p["in"] == "path" for p in op["parameters"])

    docs = client.get("/api/docs")
    assert docs.status_code == 200 and docs.mimetype == "text/html"
    for path in spec["paths"]:
        assert path.encode() in docs.data
    assert b"http://" not in docs.data and b"https://" not in docs.data


# --------------------------------------------------------------------------- delete and run again


def add_finished_job_with_files(settings, app, clip, status=DONE, **fields) -> str:
    """A finished job as the workers leave it: its uploaded video in storage, pose/track/prediction/
    segment rows, and its report files and annotated video on disk with their Report rows."""
    from har import reports
    from har.db import PoseData, Prediction, Segment, Track

    storage = app.extensions["har"]["storage"]
    with open(clip, "rb") as f:
        rel, sha, size = storage.save_upload(f, "clip.mp4")
    job_id = add_done_job(settings, **fields) if status == DONE else add_job(settings, status=status, **fields)
    with session_scope(settings) as s:
        job = s.get(Job, job_id)
        job.video.path, job.video.sha256, job.video.size_bytes = rel, sha, size
        s.add(PoseData(job_id=job_id, sampled_fps=22.0, frames_sampled=220, data=b"\0" * 64))
        s.add(Track(job_id=job_id, track_id=1, start_s=0.0, end_s=9.95, frames=219, mean_score=0.9))
        s.add(Prediction(job_id=job_id, track_id=1, label="BOXING", confidence=0.93, start_s=0.0, end_s=9.95,
                         frames=219, probabilities={"BOXING": 0.93}))
        s.add(Segment(job_id=job_id, track_id=1, label="BOXING", start_s=0.0, end_s=9.95, confidence=0.93))
        files = reports.render_reports(job, storage) if status == DONE else []
        video_path, video_rel = storage.job_path(job_id, "annotated.webm")
        video_path.write_bytes(b"\x1a\x45\xdf\xa3 annotated")
        files.append(("video", video_rel, "video/webm"))
        job.video_status = "ready" if status == DONE else None
        for kind, path, media_type in files:
            s.add(Report(job_id=job_id, kind=kind, path=path, media_type=media_type,
                         size_bytes=storage.path(path).stat().st_size, sha256="0" * 64))
    return job_id


def job_rows(settings, job_id) -> dict[str, int]:
    """How many rows of each table belong to ``job_id``."""
    from har.db import PoseData, Prediction, Segment, Track

    with session_scope(settings) as s:
        counts = {m.__tablename__: s.scalar(select(func.count()).select_from(m).where(m.job_id == job_id))
                  for m in (JobEvent, PoseData, Track, Prediction, Segment, Report)}
        counts["jobs"] = s.scalar(select(func.count()).select_from(Job).where(Job.id == job_id))
        return counts


def video_of(settings, job_id) -> tuple[str, str]:
    with session_scope(settings) as s:
        job = s.get(Job, job_id)
        return job.video_id, job.video.path


def test_delete_finished_job_removes_rows_and_files(client, settings, app, clip):
    job_id = add_finished_job_with_files(settings, app, clip)
    other = add_finished_job_with_files(settings, app, clip, name="other.mp4")  # must stay untouched
    assert all(job_rows(settings, job_id).values())
    video_id, video_rel = video_of(settings, job_id)
    root = settings.resolved_storage_dir.resolve()
    assert (root / "jobs" / job_id / "annotated.webm").is_file() and (root / video_rel).is_file()
    other_files = {p for p in stored_files(settings) if job_id not in str(p) and p.name != Path(video_rel).name}

    r = client.delete(f"/api/jobs/{job_id}")
    assert r.status_code == 204 and r.data == b""
    assert set(job_rows(settings, job_id).values()) == {0}
    with session_scope(settings) as s:
        assert s.get(Video, video_id) is None
    assert not (root / "jobs" / job_id).exists() and not (root / video_rel).exists()
    assert set(stored_files(settings)) == other_files  # the other job's video and reports are still there
    assert client.get(f"/api/jobs/{job_id}").status_code == 404
    assert client.get(f"/api/jobs/{other}/report.csv").status_code == 200
    assert [j["id"] for j in client.get("/api/jobs").json["items"]] == [other]
    # a second delete: the job is gone
    r = client.delete(f"/api/jobs/{job_id}")
    assert r.status_code == 404 and r.json["error"] == "not_found"


def test_delete_failed_job_without_outputs(client, settings):
    job_id = add_job(settings, status=FAILED, error="The video could not be decoded.")
    assert client.delete(f"/api/jobs/{job_id}").status_code == 204
    assert row_counts(settings) == (0, 0, 0)


@pytest.mark.parametrize("status", [QUEUED, "extracting", "classifying", "reporting"])
def test_delete_refused_while_running(client, settings, app, clip, status):
    job_id = add_finished_job_with_files(settings, app, clip, status=status)
    before_rows, before_files = job_rows(settings, job_id), set(stored_files(settings))
    r = client.delete(f"/api/jobs/{job_id}")
    assert r.status_code == 409
    assert r.json["error"] == "job_running"
    assert f"status: {status}" in r.json["message"] and "wait for it to finish" in r.json["message"]
    assert job_rows(settings, job_id) == before_rows and set(stored_files(settings)) == before_files
    assert client.get(f"/api/jobs/{job_id}").json["status"] == status


def test_delete_unknown_job_404(client):
    for job_id in ("nope", "x" * 100):
        r = client.delete(f"/api/jobs/{job_id}")
        assert r.status_code == 404 and r.is_json and r.json["error"] == "not_found"


def test_rerun_creates_a_new_job_for_the_same_video(client, settings, app, clip, enqueued):
    old = add_finished_job_with_files(settings, app, clip, params={"imgsz": 480, "stride": 8})
    before = client.get(f"/api/jobs/{old}").json
    r = client.post(f"/api/jobs/{old}/rerun", data={"imgsz": "640"})
    assert r.status_code == 202, r.json
    new = r.json["id"]
    assert new != old and r.json["status"] == "queued"
    assert r.headers["Location"] == r.json["status_url"] == f"/api/jobs/{new}"
    assert r.json["url"] == f"/jobs/{new}"
    assert enqueued == [new]
    with session_scope(settings) as s:
        job, source = s.get(Job, new), s.get(Job, old)
        assert job.video_id == source.video_id and job.status == QUEUED
        assert job.params == {"imgsz": 640, "stride": 8}  # given values replace the old job's, the rest stay
        assert job.frames_total == source.video.frame_count and job.result is None
        assert [(e.status, e.message) for e in job.events] == [(QUEUED, f"run again from job {old}")]
        assert s.scalar(select(func.count()).select_from(Video)) == 1  # no second upload
    assert client.get(f"/api/jobs/{old}").json == before  # the old job stays as it was
    # JSON works too, and a failed job can be run again
    with session_scope(settings) as s:
        s.get(Job, new).status = FAILED
    r = client.post(f"/api/jobs/{new}/rerun", json={"stride": 4, "fps": 15})
    assert r.status_code == 202, r.json
    with session_scope(settings) as s:
        assert s.get(Job, r.json["id"]).params == {"imgsz": 640, "stride": 4, "sample_fps": 15.0}
    assert enqueued == [new, r.json["id"]]
    # no body: the same settings again
    r = client.post(f"/api/jobs/{old}/rerun")
    assert r.status_code == 202
    with session_scope(settings) as s:
        assert s.get(Job, r.json["id"]).params == {"imgsz": 480, "stride": 8}


@pytest.mark.parametrize("body", [{"imgsz": "500"}, {"imgsz": "abc"}, {"fps": "0"}, {"stride": "99"}])
def test_rerun_validates_parameters(client, settings, app, clip, enqueued, body):
    old = add_finished_job_with_files(settings, app, clip)
    r = client.post(f"/api/jobs/{old}/rerun", data=body)
    assert r.status_code == 400 and r.json["error"] == "invalid_parameter"
    assert next(iter(body)) in r.json["message"]
    r = client.post(f"/api/jobs/{old}/rerun", json={k: v for k, v in body.items()})
    assert r.status_code == 400 and r.json["error"] == "invalid_parameter"
    assert enqueued == [] and row_counts(settings)[1] == 1


def test_rerun_bad_json_body_400(client, settings, app, clip, enqueued):
    old = add_finished_job_with_files(settings, app, clip)
    for data in ("[1, 2]", "{not json"):
        r = client.post(f"/api/jobs/{old}/rerun", data=data, content_type="application/json")
        assert r.status_code == 400 and r.is_json, data
    assert enqueued == []


@pytest.mark.parametrize("status", [QUEUED, "extracting", "classifying", "reporting"])
def test_rerun_refused_while_running(client, settings, status, enqueued):
    job_id = add_job(settings, status=status)
    r = client.post(f"/api/jobs/{job_id}/rerun")
    assert r.status_code == 409 and r.json["error"] == "job_running" and "wait for it to finish" in r.json["message"]
    assert enqueued == [] and row_counts(settings)[1] == 1


def test_rerun_unknown_job_404(client, enqueued):
    r = client.post("/api/jobs/nope/rerun")
    assert r.status_code == 404 and r.json["error"] == "not_found" and enqueued == []


def test_rerun_when_the_stored_video_is_gone_410(client, settings, enqueued):
    job_id = add_done_job(settings)  # its video row points at a file that is not in storage
    r = client.post(f"/api/jobs/{job_id}/rerun")
    assert r.status_code == 410 and r.json["error"] == "video_gone"
    assert "no longer stored" in r.json["message"] and "Upload" in r.json["message"]
    assert enqueued == [] and row_counts(settings)[1] == 1


def test_rerun_checks_everything_before_it_locks_the_job(client, settings, app, clip, enqueued, monkeypatch):
    """A re-run that is refused (no such job, still running, video gone) never locks the job's row, and one that
    goes ahead checks the stored video (S3: a HEAD request) before it takes the lock, which it holds only to make
    the new job."""
    from web import actions

    calls = []
    real_lock = actions.lock_job

    def lock(session, job_id):
        calls.append(("lock", job_id))
        return real_lock(session, job_id)

    monkeypatch.setattr(actions, "lock_job", lock)
    running, gone = add_job(settings, status="extracting"), add_done_job(settings)
    assert client.post("/api/jobs/nope/rerun").status_code == 404
    assert client.post(f"/api/jobs/{running}/rerun").status_code == 409
    assert client.post(f"/api/jobs/{gone}/rerun").status_code == 410
    assert calls == [] and enqueued == []

    old = add_finished_job_with_files(settings, app, clip)
    storage = app.extensions["har"]["storage"]
    real_exists = storage.exists
    monkeypatch.setattr(storage, "exists", lambda key: (calls.append(("exists", key)), real_exists(key))[1])
    r = client.post(f"/api/jobs/{old}/rerun")
    assert r.status_code == 202, r.json
    assert [c[0] for c in calls] == ["exists", "lock"] and calls[1] == ("lock", old)


def test_rerun_with_the_queue_down_503_and_the_new_job_failed(settings, clip):
    app = make_app(settings)  # Redis points at a closed port
    old = add_finished_job_with_files(settings, app, clip)
    client = app.test_client()
    r = client.post(f"/api/jobs/{old}/rerun")
    assert r.status_code == 503 and r.json["error"] == "queue_unavailable"
    new = r.json["id"]
    assert new != old and r.json["status_url"] == f"/api/jobs/{new}"
    assert client.get(f"/api/jobs/{new}").json["status"] == FAILED
    assert client.get(f"/api/jobs/{old}").json["status"] == DONE


def test_deleting_a_job_keeps_the_video_another_job_uses(client, settings, app, clip):
    old = add_finished_job_with_files(settings, app, clip)
    video_id, video_rel = video_of(settings, old)
    new = client.post(f"/api/jobs/{old}/rerun").json["id"]
    assert client.delete(f"/api/jobs/{new}").status_code == 409  # queued: not yet
    with session_scope(settings) as s:
        s.get(Job, new).status = DONE
    root = settings.resolved_storage_dir.resolve()

    assert client.delete(f"/api/jobs/{old}").status_code == 204
    assert (root / video_rel).is_file() and not (root / "jobs" / old).exists()
    with session_scope(settings) as s:
        assert s.get(Video, video_id) is not None and s.get(Job, new).video_id == video_id
    # the remaining job can still be run again from that video
    assert client.post(f"/api/jobs/{new}/rerun").status_code == 202

    assert client.delete(f"/api/jobs/{new}").status_code == 204
    assert (root / video_rel).is_file()  # still used by the rerun of the rerun
    with session_scope(settings) as s:
        last = s.scalars(select(Job)).one()
        last.status = FAILED
        last_id = last.id
    assert client.delete(f"/api/jobs/{last_id}").status_code == 204
    assert not (root / video_rel).exists()
    assert row_counts(settings) == (0, 0, 0) and stored_files(settings) == []


def test_delete_and_rerun_on_postgresql(tmp_path, clip, postgres_url, enqueued):
    """The same paths on PostgreSQL (row locks, ON DELETE CASCADE), in a database of their own."""
    import psycopg
    from sqlalchemy.engine import make_url

    u = make_url(postgres_url)
    with psycopg.connect(host=u.host, port=u.port, user=u.username, dbname=u.database, autocommit=True) as conn:
        conn.execute("DROP DATABASE IF EXISTS har_web_delete")
        conn.execute("CREATE DATABASE har_web_delete")
    settings = make_settings(tmp_path, database_url=u.set(database="har_web_delete").render_as_string(False))
    try:
        app = make_app(settings, HAR_ENQUEUE=enqueued)
        client = app.test_client()
        old = add_finished_job_with_files(settings, app, clip)
        video_id, video_rel = video_of(settings, old)
        r = client.post(f"/api/jobs/{old}/rerun", json={"imgsz": 320})
        assert r.status_code == 202, r.json
        new = r.json["id"]
        assert enqueued == [new]
        assert client.delete(f"/api/jobs/{new}").status_code == 409
        assert client.delete(f"/api/jobs/{old}").status_code == 204
        assert set(job_rows(settings, old).values()) == {0}
        with session_scope(settings) as s:
            job = s.get(Job, new)
            assert job.video_id == video_id and job.params == {"imgsz": 320}
            job.status = FAILED
        assert client.delete(f"/api/jobs/{new}").status_code == 204
        assert row_counts(settings) == (0, 0, 0) and stored_files(settings) == []
    finally:
        dispose_engines()


def test_a_job_keeps_the_action_model_version_it_ran_with(client, settings):
    """A new action model does not rewrite history: a job classified by an earlier version is still served with
    the version that produced its result."""
    import json as _json

    from models.action.classifier import DEFAULT_MODEL, find_card
    current = _json.loads(find_card(DEFAULT_MODEL).read_text())["version"]
    assert current != "1.3.0"
    job_id = add_done_job(settings, action_model="gru_har 1.3.0")
    with session_scope(settings) as s:
        job = s.get(Job, job_id)
        result = dict(job.result)
        result["models"] = dict(result["models"], action={"name": "gru_har", "version": "1.3.0", "sha256": "b" * 64})
        job.result = result
    body = client.get(f"/api/jobs/{job_id}").json
    assert body["models"]["action"]["version"] == "1.3.0"
