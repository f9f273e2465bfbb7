"""What is particular to S3 storage, end to end (``s3_stack``: the web app and Celery workers on a bucket of a real
S3-compatible server, moto's, in its own process). The rest of the e2e suite runs on this stack too
(tests/test_e2e.py, tests/test_e2e_video_after_done.py).

The web app and the workers share nothing but the three URLs — database, Redis, storage: the workers' data
directory is another one, and the upload never stays in the web's, so a worker can only have read the video
from the bucket. Here: the bucket holds exactly the job's files, under the job's prefix, as its rows name them;
neither side keeps anything of the job locally; the video is served in ranges (proxied ranged GETs); deleting the
job removes its objects.
"""
from __future__ import annotations

from pathlib import Path

import pytest

from har.db import Job
from tests.conftest import bucket_keys
from worker.celery_app import enqueue_job

pytestmark = pytest.mark.timeout(600)


def files_under(path: Path) -> list[str]:
    return sorted(p.relative_to(path).as_posix() for p in path.rglob("*") if p.is_file()) if path.exists() else []


def test_a_job_on_s3_storage_is_in_the_bucket_only(s3_stack, people_video):
    stack = s3_stack
    storage = stack.storage()
    assert storage.kind == "s3"
    endpoint, bucket, prefix = storage.endpoint_url, storage.bucket, storage.prefix
    web_dir, worker_dir = Path(stack.settings.data_dir), stack.worker_dir
    assert web_dir != worker_dir and web_dir not in worker_dir.parents and worker_dir not in web_dir.parents
    # the earlier tests on this stack leave their jobs behind (and a pool process killed in the middle of a stage,
    # tests/test_e2e.py, leaves its temporary copy in the workers' spool until a sweep, a minute later at the
    # soonest, removes it: tests/test_storage.py): only what this job adds is looked at
    keys_before = bucket_keys(endpoint, bucket)
    worker_files_before = files_under(worker_dir)
    client = stack.client()

    held: list[str] = []  # the job is enqueued once the upload has been looked at
    stack.app.config["HAR_ENQUEUE"] = held.append
    try:
        job_id = stack.upload(people_video, client=client)
    finally:
        stack.app.config["HAR_ENQUEUE"] = None
    assert held == [job_id]
    # the upload is in the bucket only: nothing of it stays on the web's side
    with stack.session() as s:
        upload = s.get(Job, job_id).video.path
    assert sorted(set(bucket_keys(endpoint, bucket)) - set(keys_before)) == [f"{prefix}{upload}"]
    assert storage.read_bytes(upload) == people_video.read_bytes()
    assert files_under(web_dir) == []

    enqueue_job(job_id, stack.settings)
    detail = stack.wait_final(job_id, client=client)
    assert detail["status"] == "done", (detail, stack.log_text())
    detail = stack.wait_video(job_id, client=client)
    assert detail["annotated_video"]["status"] == "ready", stack.log_text()

    with stack.session() as s:
        reports = {r.kind: (r.path, r.size_bytes, r.media_type) for r in s.get(Job, job_id).reports}
    assert set(reports) == {"json", "csv", "html", "video"}
    # everything the workers wrote is in the bucket, under the job's prefix, as its rows say, and nothing else
    added = sorted(set(bucket_keys(endpoint, bucket)) - set(keys_before))
    assert added == sorted(f"{prefix}{k}" for k in [upload] + [r[0] for r in reports.values()])
    assert all(key.startswith(f"jobs/{job_id}/") for key, *_rest in reports.values())

    # the annotated video: whole, and in ranges as a <video> element asks for them
    video_key, video_size, video_type = reports["video"]
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

    # nothing was kept locally on either side: the workers fetched into temporary folders of their own and
    # removed them; the web app's data dir never held the video after the upload
    assert files_under(worker_dir) == worker_files_before
    assert files_under(web_dir) == []
    assert (worker_dir / "storage" / "work").is_dir(), "the workers' spool was used"

    # deleting the job removes its objects (its upload was used by no other job)
    r = client.delete(f"/api/jobs/{job_id}")
    assert r.status_code == 204, r.get_data(as_text=True)
    assert bucket_keys(endpoint, bucket) == keys_before
