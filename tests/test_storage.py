"""The storage interface (har/storage.py), the same tests on both backends: local files, and an S3 bucket on a real
S3-compatible server (moto's, its own process; a fresh bucket per test).

Put / get / stream / range / delete / exists, uploads staged and validated before anything is stored, inputs
fetched into temporary directories that go away (also on errors), downloads with HTTP ranges, and the rule that an
upload shared by several jobs stays while one of them does (web.actions.delete_job, worker.retention).
"""
from __future__ import annotations

import hashlib
import io
import os
import re
from dataclasses import dataclass, replace
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import update

from har.storage import BaseStorage, NotStored, StorageError, UploadTooLarge
from tests.conftest import TEST_IMGSZ, bucket_keys

pytestmark = pytest.mark.timeout(300)

PREFIX = "har-test"


@dataclass
class Backend:
    kind: str
    settings: object
    storage: BaseStorage
    endpoint: str | None = None
    bucket: str | None = None

    def keys(self) -> list[str]:
        """Every stored key (hidden local files, i.e. partial writes, are listed by :meth:`leftovers`)."""
        if self.kind == "s3":
            return [k[len(PREFIX) + 1:] for k in bucket_keys(self.endpoint, self.bucket, PREFIX + "/")]
        root = self.storage.root
        return sorted(p.relative_to(root).as_posix() for p in root.rglob("*")
                      if p.is_file() and not any(part.startswith(".") for part in p.relative_to(root).parts))

    def leftovers(self) -> list[str]:
        """Local files that should not be there: on S3 anything in the spool, locally hidden (temporary) files."""
        root = self.storage.spool_dir
        files = [p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file()]
        if self.kind == "s3":
            return sorted(files)
        return sorted(f for f in files if any(part.startswith(".") for part in f.split("/")))


def _settings(tmp_path, **more):
    from har.config import load_settings

    return load_settings(**{**dict(data_dir=str(tmp_path / "data"), database_url=f"sqlite:///{tmp_path / 'har.sqlite3'}",
                                   pose_imgsz=int(TEST_IMGSZ), task_always_eager=False, secret_key="test-secret"),
                            **more})


@pytest.fixture(params=["local", "s3"])
def backend(request, tmp_path) -> Backend:
    from har.storage import open_storage

    if request.param == "s3":
        endpoint = request.getfixturevalue("s3_server")
        bucket = request.getfixturevalue("s3_bucket")
        settings = _settings(tmp_path, storage_url=f"s3://{bucket}/{PREFIX}", s3_endpoint_url=endpoint)
        storage = open_storage(settings)
        assert storage.kind == "s3" and storage.url == f"s3://{bucket}/{PREFIX}/"
        return Backend("s3", settings, storage, endpoint, bucket)
    settings = _settings(tmp_path)
    storage = open_storage(settings)
    assert storage.kind == "local" and storage.root == settings.resolved_storage_dir.resolve()
    return Backend("local", settings, storage)


@pytest.fixture
def db_backend(backend) -> Backend:
    """The backend with a migrated SQLite database in its settings."""
    from har.database import dispose_engines, upgrade_database

    upgrade_database(backend.settings.resolved_database_url)
    yield backend
    dispose_engines()


# ------------------------------------------------------------------------------------------- basics
def test_put_get_stat_exists_delete(backend):
    s = backend.storage
    key = "jobs/job-1/report.json"
    assert not s.exists(key) and s.stat(key) is None and s.size(key) is None
    data = b'{"a": 1}\n'
    assert s.put_bytes(key, data, "application/json") == len(data)
    assert s.exists(key) and s.size(key) == len(data) and s.read_bytes(key) == data
    info = s.stat(key)
    assert info.key == key and info.size == len(data)
    with s.open_read(key) as f:
        assert f.read() == data

    # replaced by a local file's contents
    src = backend.settings.resolved_storage_dir.parent / "src.bin"
    src.write_bytes(b"second version")
    assert s.put_file(src, key) == len(b"second version")
    assert s.read_bytes(key) == b"second version" and src.read_bytes() == b"second version"

    assert s.delete(key) is True
    assert not s.exists(key) and s.delete(key) is False
    with pytest.raises(NotStored):
        s.read_bytes(key)
    assert backend.keys() == [] and backend.leftovers() == []


def test_delete_job_files_removes_the_job_folder_and_the_given_files(backend):
    s = backend.storage
    for key in ("jobs/job-a/report.json", "jobs/job-a/sub/frames.bin", "jobs/job-ab/report.json", "uploads/u.mp4",
                "uploads/v.mp4"):
        s.put_bytes(key, b"x")
    assert s.delete_job_files("job-a", ["uploads/u.mp4", "uploads/missing.mp4"]) == []
    assert backend.keys() == ["jobs/job-ab/report.json", "uploads/v.mp4"]  # job-ab is another job
    assert s.delete_job_files("job-a") == []  # again: nothing left to remove is no error
    assert s.delete_prefix("jobs/job-ab/") == 1 and s.delete_prefix("jobs/none/") == 0
    assert backend.keys() == ["uploads/v.mp4"] and backend.leftovers() == []


@pytest.mark.parametrize("key", ["../outside", "/etc/passwd", "jobs/../../outside", "", "a\x00b"])
def test_keys_outside_the_storage_are_refused(backend, key):
    s = backend.storage
    assert s.exists(key) is False and s.delete(key) is False
    with pytest.raises(StorageError):
        s.put_bytes(key, b"x")
    with pytest.raises(StorageError):
        s.job_key("../job", "x")
    assert backend.keys() == []


def test_streamed_reads_and_ranges(backend):
    s = backend.storage
    data = os.urandom(3 * 1024 * 1024 + 123)  # above boto3's 8 MiB multipart threshold is tested with the upload
    key = "jobs/job-1/annotated.mp4"
    s.put_bytes(key, data)
    with s.open_read(key) as f:
        chunks = []
        while chunk := f.read(256 * 1024):
            chunks.append(chunk)
        assert b"".join(chunks) == data and f.tell() == len(data)
        f.seek(1000)
        assert f.read(500) == data[1000:1500] and f.tell() == 1500
        f.seek(-100, io.SEEK_END)
        assert f.read() == data[-100:]
        f.seek(len(data) + 10)
        assert f.read(10) == b""
        if hasattr(f, "limit"):  # the S3 reader asks for just that range
            f.seek(4096)
            f.limit(4096 + 77)
            assert f.read() == data[4096:4096 + 77]


def test_a_pinned_reader_never_mixes_two_versions(backend):
    """A download reads the version its headers describe: once the object is replaced (a re-rendered video), the
    next ranged read of a pinned reader fails instead of returning the new version's bytes; a local file replaced by
    renaming keeps serving the old one to a reader that has it open."""
    from har.storage import Changed

    s = backend.storage
    key = "jobs/job-1/annotated.mp4"
    old, new = os.urandom(64 * 1024), os.urandom(64 * 1024)
    s.put_bytes(key, old)
    info = s.stat(key)
    with s.open_read(key, etag=info.etag) as f:
        assert f.read(1000) == old[:1000]
        s.put_bytes(key, new)
        if backend.kind == "s3":
            f.seek(5000)  # the next ranged GET
            with pytest.raises(Changed):
                f.read(10)
        else:
            f.seek(5000)
            assert f.read(10) == old[5000:5010]
    with s.open_read(key, etag=s.stat(key).etag) as f:  # the new version, pinned to itself, reads as usual
        assert f.read() == new
    with s.open_read(key) as f:  # unpinned: whatever is stored
        assert f.read() == new


def test_local_copy_is_removed_afterwards_also_on_errors(backend):
    s = backend.storage
    data = os.urandom(200_000)
    s.put_bytes("uploads/abc.mp4", data)
    with s.local_copy("uploads/abc.mp4", job_id="job-1") as path:
        assert path.is_file() and path.read_bytes() == data
        if backend.kind == "s3":  # fetched into a per-job temporary folder under the spool
            assert path.parent.parent == s.spool_dir / "work" and path.parent.name.startswith("job-1-")
        else:  # read where it lies, never copied
            assert path == s.path("uploads/abc.mp4")
    assert path.is_file() == (backend.kind == "local")
    with pytest.raises(RuntimeError), s.local_copy("uploads/abc.mp4", job_id="job-1") as path:
        raise RuntimeError("the stage failed")
    assert path.is_file() == (backend.kind == "local")
    with pytest.raises(NotStored), s.local_copy("uploads/missing.mp4", job_id="job-1"):
        pass
    assert backend.leftovers() == [] and backend.keys() == ["uploads/abc.mp4"]


def test_job_output_stores_the_files_written_into_it(backend):
    s = backend.storage
    with s.job_output("job-1") as folder:
        (folder / "report.json").write_bytes(b"{}")
        (folder / "annotated.mp4").write_bytes(b"\0" * 1000)
        (folder / ".annotated.123.mp4").write_bytes(b"partial")  # a writer's temporary file: not stored
    assert backend.keys() == ["jobs/job-1/annotated.mp4", "jobs/job-1/report.json"]
    assert s.read_bytes("jobs/job-1/annotated.mp4") == b"\0" * 1000
    if backend.kind == "s3":
        assert not folder.exists() and backend.leftovers() == []
        with pytest.raises(RuntimeError), s.job_output("job-2") as folder:
            (folder / "report.json").write_bytes(b"{}")
            raise RuntimeError("the stage failed")
        assert not folder.exists() and backend.leftovers() == []
        assert not s.exists("jobs/job-2/report.json")  # a failed stage stores nothing


# ------------------------------------------------------------------------------------------- uploads
def test_an_upload_is_staged_locally_and_stored_only_when_committed(backend):
    s = backend.storage
    data = os.urandom(9 * 1024 * 1024 + 5)  # S3: above the multipart threshold
    with s.stage_upload(io.BytesIO(data), "Clip One.MP4", max_bytes=len(data)) as staged:
        assert re.fullmatch(r"uploads/[0-9a-f]{32}\.mp4", staged.key)
        assert staged.size == len(data) and staged.sha256 == hashlib.sha256(data).hexdigest()
        assert staged.path.is_file() and staged.path.read_bytes() == data and staged.path.suffix == ".mp4"
        assert not s.exists(staged.key) and backend.keys() == []  # nothing stored before the commit
        key = staged.commit()
    assert key == staged.key and s.exists(key) and s.size(key) == len(data) and s.read_bytes(key) == data
    assert backend.keys() == [key] and backend.leftovers() == [] and not staged.path.exists()

    # not committed (refused after validation): nothing is kept
    with s.stage_upload(io.BytesIO(b"not a video"), "x.mp4") as refused:
        pass
    assert not refused.path.exists() and not s.exists(refused.key)
    # too large: refused while it is written
    with pytest.raises(UploadTooLarge):
        s.stage_upload(io.BytesIO(b"x" * 5000), "big.mp4", max_bytes=4096)
    assert backend.keys() == [key] and backend.leftovers() == []


def test_uploads_through_the_api_keep_nothing_when_refused(db_backend, people_video):
    from web import create_app

    b = db_backend
    enqueued: list[str] = []
    client = create_app(b.settings, TESTING=True, HAR_ENQUEUE=enqueued.append).test_client()

    def post(data: bytes, name: str):
        return client.post("/api/jobs", data={"video": (io.BytesIO(data), name)}, content_type="multipart/form-data")

    r = post(b"\0\0\0\x18ftypmp42 but not really a video" * 100, "clip.mp4")
    assert r.status_code == 422 and r.get_json()["error"] == "invalid_video"
    r = post(b"", "clip.mp4")
    assert r.status_code == 400 and r.get_json()["error"] == "empty_file"
    assert backend_is_empty(b) and enqueued == []

    r = post(people_video.read_bytes(), "people.mp4")
    assert r.status_code == 202, r.get_json()
    from har.database import session_scope
    from har.db import Job

    with session_scope(b.settings) as s:
        video = s.get(Job, r.get_json()["id"]).video
        key, sha, size = video.path, video.sha256, video.size_bytes
    assert enqueued == [r.get_json()["id"]] and b.keys() == [key] and b.leftovers() == []
    assert b.storage.read_bytes(key) == people_video.read_bytes() and size == people_video.stat().st_size
    assert sha == hashlib.sha256(people_video.read_bytes()).hexdigest()


def backend_is_empty(b: Backend) -> bool:
    return b.keys() == [] and b.leftovers() == []


# ------------------------------------------------------------------------------------------- downloads
@pytest.fixture
def download_client(backend):
    from flask import Flask, abort

    from web.downloads import send_stored

    app = Flask(__name__)

    @app.get("/files/<path:key>")
    def get_file(key):
        resp = send_stored(backend.storage, key, mimetype="video/mp4", download_name="clip.mp4")
        if resp is None:
            abort(404)
        return resp

    return app.test_client()


class _RecordingClient:
    """An S3 client that records the Range of every GET."""

    def __init__(self, client):
        self._client, self.ranges = client, []

    def get_object(self, **kwargs):
        self.ranges.append(kwargs.get("Range"))
        return self._client.get_object(**kwargs)

    def __getattr__(self, name):
        return getattr(self._client, name)


class _UnseekableFileWrapper:
    """A WSGI server's file wrapper without ``seekable`` (as gunicorn's)."""

    def __init__(self, filelike, blksize=8192):
        self.filelike, self.blksize = filelike, blksize

    def __iter__(self):
        return self

    def __next__(self):
        data = self.filelike.read(self.blksize)
        if data:
            return data
        raise StopIteration

    def close(self):
        self.filelike.close()


def test_downloads_answer_range_requests(backend, download_client):
    data = os.urandom(300_000)
    key = "jobs/job-1/annotated.mp4"
    backend.storage.put_bytes(key, data, "video/mp4")
    url = f"/files/{key}"
    if backend.kind == "s3":  # proxied: each response is one GET of just the bytes it sends
        recorder = backend.storage._client = _RecordingClient(backend.storage.client)
        r = download_client.get(url, headers={"Range": "bytes=1000-1999"})
        assert r.status_code == 206 and r.data == data[1000:2000] and recorder.ranges == ["bytes=1000-1999"]
        r = download_client.get(url)
        assert r.data == data and recorder.ranges == ["bytes=1000-1999", None]
        r = download_client.head(url)
        assert r.data == b"" and len(recorder.ranges) == 2  # HEAD: no GET at all
        # a server whose file wrapper cannot seek (gunicorn's): still one GET of just the range
        r = download_client.get(url, headers={"Range": "bytes=250000-250099"},
                                environ_overrides={"wsgi.file_wrapper": _UnseekableFileWrapper})
        assert r.status_code == 206 and r.data == data[250000:250100]
        assert recorder.ranges[-1] == "bytes=250000-250099"

    r = download_client.get(url)
    assert r.status_code == 200 and r.data == data and r.headers["Accept-Ranges"] == "bytes"
    assert r.mimetype == "video/mp4" and int(r.headers["Content-Length"]) == len(data)
    etag = r.headers["ETag"]

    r = download_client.get(url, headers={"Range": "bytes=1000-1999"})
    assert r.status_code == 206 and r.data == data[1000:2000]
    assert r.headers["Content-Range"] == f"bytes 1000-1999/{len(data)}" and r.headers["Content-Length"] == "1000"
    r = download_client.get(url, headers={"Range": "bytes=-10"})  # the last ten bytes
    assert r.status_code == 206 and r.data == data[-10:]
    r = download_client.get(url, headers={"Range": f"bytes={len(data) - 5}-"})  # open-ended: to the end
    assert r.status_code == 206 and r.data == data[-5:]
    r = download_client.get(url, headers={"Range": f"bytes={len(data)}-"})
    assert r.status_code == 416
    r = download_client.get(url, headers={"Range": "bytes=0-9", "If-Range": '"stale"'})  # changed since: all of it
    assert r.status_code == 200 and r.data == data
    r = download_client.get(url, headers={"If-None-Match": etag})
    assert r.status_code == 304 and r.data == b""
    r = download_client.head(url)
    assert r.status_code == 200 and r.data == b"" and int(r.headers["Content-Length"]) == len(data)
    assert download_client.get("/files/jobs/job-1/missing.mp4").status_code == 404
    assert download_client.get("/files/jobs/../../etc/passwd").status_code == 404
    assert backend.leftovers() == []


# ------------------------------------------------------------------------------------ shared uploads
def _finished_job(settings, storage, *, video_id=None, ended_days_ago: float = 10.0) -> str:
    """A done job with report files (tests.test_retention.add_job), plus a file left by a retried render that has
    no row; its own upload, or the video row ``video_id`` (a re-run)."""
    from tests.test_retention import add_job

    job_id = add_job(settings, "done", ended_days_ago, video_id=video_id, storage=storage)
    storage.put_bytes(storage.job_key(job_id, "annotated.webm"), b"\0")
    return job_id


def test_a_shared_upload_stays_while_a_job_uses_it(db_backend):
    """Deleted by a user (as web.actions.delete_job does: the rows, committed, then the files), then by retention
    (worker.retention): the upload of a job that was run again goes with the last job that uses it, and each job's
    files go with the job."""
    from har.database import session_scope
    from har.db import Job
    from har.jobs import delete_job, lock_job
    from worker.retention import remove_expired

    b = db_backend
    first = _finished_job(b.settings, b.storage)
    with session_scope(b.settings) as s:
        video_id, upload = s.get(Job, first).video_id, s.get(Job, first).video.path
    rerun = _finished_job(b.settings, b.storage, video_id=video_id, ended_days_ago=40)
    other = _finished_job(b.settings, b.storage, ended_days_ago=1)  # a job of its own, kept
    with session_scope(b.settings) as s:
        other_upload = s.get(Job, other).video.path
    assert upload != other_upload and b.storage.exists(upload)

    with session_scope(b.settings) as s:
        files = delete_job(s, lock_job(s, first))
    assert upload not in files
    assert b.storage.delete_job_files(first, files) == []
    assert b.storage.exists(upload), "the re-run still uses the upload"
    assert not any(k.startswith(f"jobs/{first}/") for k in b.keys())
    assert b.storage.exists(f"jobs/{rerun}/report.json")

    run = remove_expired(b.settings, days=30)  # the re-run ended 40 days ago; `other` yesterday
    assert run.job_ids == [rerun] and run.files_left == []
    assert b.keys() == sorted([other_upload, f"jobs/{other}/annotated.mp4", f"jobs/{other}/annotated.webm",
                               f"jobs/{other}/report.json"])
    assert b.leftovers() == []


# ------------------------------------------------------------------------------------------- workers
def test_a_failing_stage_leaves_no_temporary_files(db_backend, people_video, monkeypatch):
    """The pose stage fetches the upload (S3: into a per-job temporary folder) and fails: the job fails with the
    reason, and nothing of the fetched copy is left in the worker's spool."""
    from har.database import session_scope
    from har.db import Job
    from har.jobs import create_job
    from models.pose import extract
    from worker import runtime
    from worker.tasks.pose import run_pose

    b = db_backend
    with open(people_video, "rb") as f:
        key, sha, size = b.storage.save_upload(f, people_video.name)
    with session_scope(b.settings) as s:
        job_id = create_job(s, dict(path=key, original_filename=people_video.name, sha256=sha, size_bytes=size,
                                    container="mp4", codec="h264", duration_s=2.5, fps=30.0, frame_count=75,
                                    width=480, height=270, rotation_deg=0), {}).id
    monkeypatch.setattr(runtime, "hand_over", lambda settings, task, jid: None)
    seen: list[Path] = []

    def broken(video_path, *args, **kwargs):
        seen.append(Path(video_path))
        assert Path(video_path).read_bytes() == people_video.read_bytes()
        raise RuntimeError("decoder exploded")

    monkeypatch.setattr(extract, "extract_tracks", broken)
    assert run_pose(b.settings, job_id, "pose-1") is False
    with session_scope(b.settings) as s:
        job = s.get(Job, job_id)
        assert job.status == "failed" and "decoder exploded" in job.error
    assert len(seen) == 1 and seen[0].exists() == (b.kind == "local")
    assert b.leftovers() == [] and b.keys() == [key]


def test_readiness_checks_the_bucket_with_s3_storage(backend):
    """/readyz: with S3 storage the bucket is one of the checks (a missing bucket → 503 naming it); with local
    storage there is no bucket check."""
    from har.database import get_engine
    from web.health import readiness

    engine = get_engine(backend.settings.resolved_database_url)
    checks = readiness(backend.settings, engine)["checks"]
    if backend.kind == "local":
        assert "bucket" not in checks
        return
    assert checks["bucket"] == {"ok": True}
    gone = replace(backend.settings, storage_url="s3://no-such-bucket-here/x")
    body = readiness(gone, engine)
    assert "bucket" in body["failed"] and body["checks"]["bucket"]["ok"] is False


def test_temporary_folders_of_stopped_processes_are_removed(backend):
    """A worker killed in the middle of a stage leaves its temporary copy: the sweep removes the folders of
    processes that no longer run (and old enough), never those of a running process."""
    import subprocess
    import sys
    import time

    from worker.sweep import sweep_once

    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    work = backend.storage.spool_dir / "work"
    work.mkdir(parents=True, exist_ok=True)
    from har.storage_base import _temp_dir_host

    host = _temp_dir_host()
    stale = work / f"job-1-@{host}@p{dead.pid}-abc123"
    fresh = work / f"job-2-@{host}@p{dead.pid}-def456"  # just made: left alone for now
    alive = work / f"job-3-@{host}@p{os.getpid()}-ghi789"
    elsewhere = work / f"job-5-@another-machine@p{dead.pid}-jkl012"  # a spool shared with another machine
    other = work / "not-one-of-ours"
    for d in (stale, fresh, alive, elsewhere, other):
        d.mkdir()
        (d / "clip.mp4").write_bytes(b"\0" * 16)
    old = time.time() - 3600
    for d in (stale, alive, elsewhere, other):
        os.utime(d, (old, old))
    with backend.storage.temp_dir("job-4") as mine:  # this process's own, in use
        os.utime(mine, (old, old))
        sweep_once(backend.settings, locked=False)
        assert mine.is_dir()
    assert not stale.exists()
    assert fresh.is_dir() and alive.is_dir() and elsewhere.is_dir() and other.is_dir()


def test_unfinished_multipart_uploads_are_aborted_by_the_sweep(backend, tmp_path):
    """A process that dies while it uploads a large file to S3 leaves the parts stored (invisible, billed): the
    sweep aborts the uploads started more than HAR_MULTIPART_ABORT_AFTER_S ago, and only those under the
    service's prefix."""
    from dataclasses import replace

    from worker.sweep import sweep_once

    s = backend.storage
    if backend.kind != "s3":
        assert s.abort_stale_uploads(0) == []
        return
    client = s.client

    def start(name):
        up = client.create_multipart_upload(Bucket=backend.bucket, Key=name)
        client.upload_part(Bucket=backend.bucket, Key=name, UploadId=up["UploadId"], PartNumber=1,
                           Body=b"x" * (5 * 1024 * 1024))
        return up["UploadId"]

    start(s.name("jobs/job-1/annotated.mp4"))
    start("someone-else/big.bin")  # outside the prefix: not ours

    def pending():
        return sorted(u["Key"] for u in client.list_multipart_uploads(Bucket=backend.bucket).get("Uploads") or [])

    # (the S3 server here dates every upload 2010-11-10: "recent" is anything younger than a century)
    assert s.abort_stale_uploads(100 * 365 * 86400.0) == []  # recent: it may still be running
    sweep_once(replace(backend.settings, multipart_abort_after_s=100 * 365 * 86400.0), locked=False)
    assert pending() == sorted([s.name("jobs/job-1/annotated.mp4"), "someone-else/big.bin"])
    sweep_once(replace(backend.settings, multipart_abort_after_s=0.0), locked=False)
    assert pending() == ["someone-else/big.bin"]
    assert backend.keys() == []  # nothing was stored by it
    client.abort_multipart_upload(Bucket=backend.bucket, Key="someone-else/big.bin",
                                  UploadId=client.list_multipart_uploads(Bucket=backend.bucket)["Uploads"][0]["UploadId"])


def test_s3_timeouts_and_overload_count_as_transient():
    """A stage that meets these is retried (worker.runtime.transient), not failed: the bucket's connection errors and
    timeouts, boto3's transfer errors once its retries ran out, and answers 5xx / SlowDown."""
    pytest.importorskip("boto3")
    from boto3.exceptions import RetriesExceededError, S3UploadFailedError
    from botocore.exceptions import ClientError, ConnectTimeoutError, ReadTimeoutError

    from worker.runtime import transient

    def answer(code):
        return ClientError({"Error": {"Code": code, "Message": code}}, "GetObject")

    for exc in (ConnectTimeoutError(endpoint_url="http://s3"), ReadTimeoutError(endpoint_url="http://s3"),
                RetriesExceededError(Exception("boom")), S3UploadFailedError("boom"), answer("SlowDown"),
                answer("503"), answer("InternalError")):
        assert transient(exc), exc
    for exc in (answer("AccessDenied"), answer("NoSuchBucket"), ValueError("no")):
        assert not transient(exc), exc


def test_a_download_while_the_bucket_is_unreachable_is_503(backend, download_client):
    """Not a 500: the object storage cannot be reached (here, the S3 endpoint of a server that is not there)."""
    if backend.kind != "s3":
        pytest.skip("the object storage only")
    from har.storage_s3 import client_for

    backend.storage._client = client_for("http://127.0.0.1:9", quick=True)
    r = download_client.get("/files/jobs/job-1/annotated.mp4")
    assert r.status_code == 503
