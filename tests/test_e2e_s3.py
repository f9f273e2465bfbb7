"""End to end on S3 storage: the web app (test client) → Redis → Celery workers (one per queue, their own
processes) → an S3 bucket on a real S3-compatible server (moto's, its own process).

The web app and the workers share nothing but the three URLs — database, Redis, storage: the workers' data
directory is another, empty one, and the upload never stays in the web's, so a worker can only have read the video
from the bucket. The job must reach done with its reports and annotated video in the bucket, downloadable through
the web app (range requests on the video), and deleting it must empty the bucket.
"""
from __future__ import annotations

import hashlib
import json
import uuid
from pathlib import Path

import cv2
import pytest

from har.db import Job
from models.video import sample_frames
from tests.conftest import S3_ENV, Stack, bucket_keys
from worker.annotate import DISPLAY_FPS

pytestmark = pytest.mark.timeout(600)

PREFIX = "har"


def files_under(path: Path) -> list[str]:
    return sorted(p.relative_to(path).as_posix() for p in path.rglob("*") if p.is_file()) if path.exists() else []


@pytest.fixture(scope="module")
def s3_database_url(request, tmp_path_factory):
    """A database of its own: in the test PostgreSQL cluster when there is one, else an SQLite file."""
    try:
        url = request.getfixturevalue("postgres_url")
    except pytest.skip.Exception:
        return f"sqlite:///{tmp_path_factory.mktemp('s3-db') / 'har.sqlite3'}"
    from sqlalchemy import create_engine, text

    name = f"har_s3_{uuid.uuid4().hex[:8]}"
    engine = create_engine(url, isolation_level="AUTOCOMMIT")
    try:
        with engine.connect() as conn:
            conn.execute(text(f"CREATE DATABASE {name}"))
    finally:
        engine.dispose()
    return url.rsplit("/", 1)[0] + f"/{name}"


@pytest.fixture(scope="module")
def s3_stack(tmp_path_factory, redis_server, s3_server, s3_database_url):
    from har.storage_s3 import client_for

    bucket = f"har-e2e-{uuid.uuid4().hex[:12]}"
    client_for(s3_server).create_bucket(Bucket=bucket)
    storage_url = f"s3://{bucket}/{PREFIX}"
    base = tmp_path_factory.mktemp("stack-s3")
    worker_dir = base / "worker-data"  # the workers' own data dir (and spool): not the web's
    worker_dir.mkdir()
    env = {"HAR_DATA_DIR": str(worker_dir), "HAR_STORAGE_URL": storage_url, "HAR_S3_ENDPOINT_URL": s3_server,
           **S3_ENV}
    stack = Stack("s3", base, s3_database_url, f"{redis_server}/11", env=env, storage_url=storage_url,
                  s3_endpoint_url=s3_server)
    stack.env.pop("HAR_STORAGE_DIR", None)  # the workers' spool: in their own data dir
    assert Path(stack.settings.data_dir) != worker_dir
    stack.start()
    yield stack, bucket, s3_server, worker_dir
    stack.stop()


def test_a_job_on_s3_storage_end_to_end(s3_stack, people_video, tmp_path):
    stack, bucket, endpoint, worker_dir = s3_stack
    storage = stack.storage()
    assert storage.kind == "s3"
    web_dir = Path(stack.settings.data_dir)
    client = stack.client()

    job_id = stack.upload(people_video, client=client)
    # the upload is in the bucket only: nothing of it stays on the web's side
    with stack.session() as s:
        upload = s.get(Job, job_id).video.path
    assert bucket_keys(endpoint, bucket) == [f"{PREFIX}/{upload}"]
    assert storage.read_bytes(upload) == people_video.read_bytes()
    assert files_under(web_dir) == []

    detail = stack.wait_final(job_id, client=client)
    assert detail["status"] == "done", (detail, stack.log_text())
    detail = stack.wait_video(job_id, client=client)
    assert detail["annotated_video"] == {"status": "ready", "url": f"/api/jobs/{job_id}/video", "error": None}, \
        stack.log_text()

    with stack.session() as s:
        job = s.get(Job, job_id)
        result = job.result
        reports = {r.kind: (r.path, r.size_bytes, r.sha256, r.media_type) for r in job.reports}
    assert set(reports) == {"json", "csv", "html", "video"}
    assert result["status"] == "ok" and result["persons"]
    # everything the workers wrote is in the bucket, under the job's prefix, as its rows say
    assert bucket_keys(endpoint, bucket) == sorted(f"{PREFIX}/{k}" for k in [upload] + [r[0] for r in reports.values()])
    for kind, (key, size, sha, _media) in reports.items():
        assert key.startswith(f"jobs/{job_id}/"), kind
        data = storage.read_bytes(key)
        assert len(data) == size and hashlib.sha256(data).hexdigest() == sha, kind

    # the reports, downloaded through the web app, are the stored objects
    for fmt, content_type in (("json", "application/json"), ("csv", "text/csv; charset=utf-8"),
                              ("html", "text/html; charset=utf-8")):
        r = client.get(f"/api/jobs/{job_id}/report.{fmt}")
        assert r.status_code == 200 and r.headers["Content-Type"] == content_type, fmt
        assert r.data == storage.read_bytes(reports[fmt][0]), fmt
    doc = json.loads(client.get(f"/api/jobs/{job_id}/report.json").data)
    assert doc["persons"] == result["persons"] and doc["job"]["id"] == job_id

    # the annotated video: whole, and in ranges as a <video> element asks for them
    video_key, video_size, _sha, video_type = reports["video"]
    video = storage.read_bytes(video_key)
    r = client.get(f"/api/jobs/{job_id}/video")
    assert r.status_code == 200 and r.mimetype == video_type and r.data == video
    assert r.headers["Accept-Ranges"] == "bytes" and int(r.headers["Content-Length"]) == video_size
    r = client.get(f"/api/jobs/{job_id}/video", headers={"Range": "bytes=100-4195"})
    assert r.status_code == 206 and r.data == video[100:4196]
    assert r.headers["Content-Range"] == f"bytes 100-4195/{video_size}"
    r = client.get(f"/api/jobs/{job_id}/video", headers={"Range": "bytes=-1000"})
    assert r.status_code == 206 and r.data == video[-1000:]
    r = client.get(f"/api/jobs/{job_id}/video", headers={"Range": f"bytes={video_size}-"})
    assert r.status_code == 416
    # it plays: every frame of the upload at the display rate
    (tmp_path / "annotated").write_bytes(video)
    (tmp_path / "upload.mp4").write_bytes(people_video.read_bytes())
    cap = cv2.VideoCapture(str(tmp_path / "annotated"))
    n = 0
    while cap.read()[0]:
        n += 1
    cap.release()
    assert n == len(list(sample_frames(tmp_path / "upload.mp4", DISPLAY_FPS))) > 0

    # nothing was kept locally on either side: the workers fetched into temporary folders of their own and
    # removed them; the web app's data dir never held the video after the upload
    assert files_under(worker_dir) == [], files_under(worker_dir)
    assert files_under(web_dir) == []
    assert (worker_dir / "storage" / "work").is_dir(), "the workers' spool was used"

    # deleting the job empties the bucket (its upload was used by no other job)
    r = client.delete(f"/api/jobs/{job_id}")
    assert r.status_code == 204, r.get_data(as_text=True)
    assert bucket_keys(endpoint, bucket) == []
