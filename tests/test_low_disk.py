"""Low disk space: uploads refused with 507 before their body is read (API and form), nothing kept; a disk that
fills while an upload or a stage writes gives a 507 / a failed job with a readable reason.

A real small filesystem (tmpfs) is mounted where that is permitted (root); elsewhere the tests that need one skip,
and the stage test falls back to failing the report write with ENOSPC."""
from __future__ import annotations

import dataclasses
import errno
import io
import os
import re
import shutil
import sqlite3
import subprocess
from pathlib import Path

import pytest
from sqlalchemy import select
from werkzeug.datastructures import FileStorage

from har.database import dispose_engines, session_scope
from har.db import FAILED, Job, JobEvent
from har.disk import MB, disk_full_reason, free_bytes
from tests.test_web_api import (  # noqa: F401 - fixtures
    Enqueued,
    clip,
    make_app,
    make_settings,
    row_counts,
    stored_files,
    upload,
)
from tests.test_web_ui import csrf_token, visible_text
from web.uploads import LOW_DISK_MESSAGE, UploadError, accept_upload

HUGE_MB = 1 << 40  # more free space than any disk has


class Unreadable(io.RawIOBase):
    """A request body of ``size`` bytes that fails the test if anything reads it."""

    def __init__(self, size: int):
        self.size, self.pos = size, 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def seek(self, offset: int, whence: int = 0) -> int:
        self.pos = {0: 0, 1: self.pos, 2: self.size}[whence] + offset
        return self.pos

    def tell(self) -> int:
        return self.pos

    def readinto(self, b):
        raise AssertionError("the request body was read")


def post_unread(client, url: str, length: int, **kwargs):
    """A multipart POST declaring ``length`` bytes, none of which may be read."""
    return client.post(url, input_stream=Unreadable(length), content_type="multipart/form-data; boundary=----x",
                       **kwargs)


@pytest.fixture
def cleanup():
    yield
    dispose_engines()


@pytest.fixture
def small_volume(tmp_path):
    """``make(size_bytes)`` → a directory on a real tmpfs of that size (unmounted afterwards), or None when this
    process may not mount one."""
    mounted: list[Path] = []

    def make(size: int) -> Path | None:
        path = tmp_path / f"volume{len(mounted)}"
        path.mkdir()
        if os.geteuid() != 0 or not shutil.which("mount"):
            return None
        res = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size},mode=0755", "tmpfs", str(path)],
                             capture_output=True, text=True)
        if res.returncode:
            return None
        mounted.append(path)
        return path

    yield make
    dispose_engines()
    for path in reversed(mounted):
        if subprocess.run(["umount", str(path)], capture_output=True).returncode:
            subprocess.run(["umount", "-l", str(path)], capture_output=True)


def fill(volume: Path, leave: int = 0) -> None:
    """Fill the volume up (ENOSPC), then give back ``leave`` bytes."""
    fd = os.open(volume / "filler", os.O_WRONLY | os.O_CREAT, 0o644)
    try:
        for size in (1 << 16, 1 << 12):
            chunk = b"\0" * size
            while True:
                try:
                    os.write(fd, chunk)
                except OSError as exc:
                    if exc.errno != errno.ENOSPC:
                        raise
                    break
        if leave:
            os.ftruncate(fd, os.fstat(fd).st_size - leave)
    finally:
        os.close(fd)


def upload_files(settings) -> list[str]:
    d = settings.resolved_storage_dir / "uploads"
    return sorted(p.name for p in d.iterdir()) if d.is_dir() else []


# ----------------------------------------------------------------------------------------- uploads
def test_api_upload_refused_with_507_when_free_space_is_below_the_threshold(tmp_path, clip, cleanup):
    settings = make_settings(tmp_path, min_free_mb=HUGE_MB)
    enqueued = Enqueued()
    client = make_app(settings, HAR_ENQUEUE=enqueued).test_client()

    r = upload(client, clip, "clip.mp4")
    assert r.status_code == 507 and r.is_json
    assert r.json == {"error": "insufficient_storage", "message": LOW_DISK_MESSAGE}
    assert "disk space" in r.json["message"]
    # refused on its declared size, before its body is read
    r = post_unread(client, "/api/jobs", 10 * MB)
    assert r.status_code == 507 and r.json["error"] == "insufficient_storage"
    assert stored_files(settings) == [] and row_counts(settings) == (0, 0, 0) and enqueued == []


def test_upload_form_refused_with_507_and_the_reason_on_the_page(tmp_path, clip, cleanup):
    settings = make_settings(tmp_path, min_free_mb=HUGE_MB)
    enqueued = Enqueued()
    client = make_app(settings, HAR_ENQUEUE=enqueued, WTF_CSRF_ENABLED=True).test_client()

    token = csrf_token(client.get("/").data)
    r = client.post("/", data={"csrf_token": token, "video": (io.BytesIO(clip.read_bytes()), "clip.mp4")},
                    content_type="multipart/form-data")
    assert r.status_code == 507
    alerts = re.findall(r'class="alert alert-error"[^>]*>([^<]+)<', r.get_data(as_text=True))
    assert alerts == [LOW_DISK_MESSAGE]  # where the page (and upload.js) shows a refused upload's reason
    assert b'enctype="multipart/form-data"' in r.data  # the form again, to try later
    # before the body is read: before the CSRF check too, which would read the form (and spool the file)
    r = post_unread(client, "/", 10 * MB)
    assert r.status_code == 507 and LOW_DISK_MESSAGE in visible_text(r.data)
    assert stored_files(settings) == [] and row_counts(settings) == (0, 0, 0) and enqueued == []


def test_uploads_pass_with_the_default_threshold(tmp_path, clip, monkeypatch, cleanup):
    monkeypatch.delenv("HAR_MIN_FREE_MB", raising=False)
    settings = make_settings(tmp_path)
    assert settings.min_free_mb == 1024
    if free_bytes(tmp_path) < 2 * 1024 * MB:
        pytest.skip("needs 2 GB free on the test volume")
    enqueued = Enqueued()
    client = make_app(settings, HAR_ENQUEUE=enqueued, WTF_CSRF_ENABLED=True).test_client()
    r = upload(client, clip, "clip.mp4")
    assert r.status_code == 202, r.json
    token = csrf_token(client.get("/").data)
    r = client.post("/", data={"csrf_token": token, "video": (io.BytesIO(clip.read_bytes()), "clip.mp4")},
                    content_type="multipart/form-data")
    assert r.status_code == 303, r.data
    assert len(enqueued) == 2 and row_counts(settings)[:2] == (2, 2) and len(upload_files(settings)) == 2


def test_an_upload_bigger_than_the_free_space_is_refused_by_its_declared_size(tmp_path, clip, small_volume):
    volume = small_volume(8 * MB)
    if volume is None:
        pytest.skip("cannot mount a tmpfs here")
    settings = make_settings(tmp_path, storage_dir=str(volume), min_free_mb=1)
    enqueued = Enqueued()
    client = make_app(settings, HAR_ENQUEUE=enqueued).test_client()

    assert upload(client, clip, "clip.mp4").status_code == 202  # fits, with 1 MB left over
    r = post_unread(client, "/api/jobs", 16 * MB)  # within the upload limit, but not within the free space
    assert r.status_code == 507 and r.json["error"] == "insufficient_storage"
    r = post_unread(client, "/api/jobs", (settings.max_upload_mb + 1) * MB)  # over the limit: that is the answer
    assert r.status_code == 413 and r.json["error"] == "file_too_large"
    assert len(enqueued) == 1 and row_counts(settings)[:2] == (1, 1) and len(upload_files(settings)) == 1


def test_a_disk_that_fills_while_the_upload_is_written_gives_507_and_keeps_nothing(tmp_path, clip, small_volume):
    volume = small_volume(4 * MB)
    if volume is None:
        pytest.skip("cannot mount a tmpfs here")
    settings = make_settings(tmp_path, storage_dir=str(volume), min_free_mb=0)
    app = make_app(settings, HAR_ENQUEUE=Enqueued())
    fill(volume, leave=8 * 1024)
    assert clip.stat().st_size > 4 * 8 * 1024
    storage = app.extensions["har"]["storage"]
    with app.test_request_context("/api/jobs", method="POST"), open(clip, "rb") as f:
        session = app.extensions["har"]["session_factory"]()
        try:
            with pytest.raises(UploadError) as info:
                accept_upload(FileStorage(f, filename="clip.mp4"), {}, settings, storage, session)
        finally:
            session.close()
    assert (info.value.status, info.value.error, info.value.message) == (507, "insufficient_storage",
                                                                         LOW_DISK_MESSAGE)
    assert upload_files(settings) == [] and row_counts(settings) == (0, 0, 0)  # no part file, no rows


# ------------------------------------------------------------------------------------------ workers
def test_a_disk_that_fills_during_a_stage_fails_the_job_with_a_readable_reason(tmp_path, people_video, small_volume,
                                                                               sqlite_db, monkeypatch):
    from tests.conftest import stored_job
    from worker import runtime
    from worker.tasks.classify import run_classify
    from worker.tasks.pose import run_pose
    from worker.tasks.report import run_report

    volume = small_volume(people_video.stat().st_size + 2 * MB)
    settings = dataclasses.replace(sqlite_db, storage_dir=str(volume)) if volume is not None else sqlite_db
    job_id = stored_job(settings, people_video)
    monkeypatch.setattr(runtime, "hand_over", lambda settings, task, jid: None)
    assert run_pose(settings, job_id, "pose-1") is True
    assert run_classify(settings, job_id, "classify-1") is True

    if volume is not None:  # the disk fills up before the reports are written
        fill(volume)
    else:  # no tmpfs here: the report write hits ENOSPC
        from har import reports

        def no_space(path, text):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))

        monkeypatch.setattr(reports, "_write_atomic", no_space)
    assert run_report(settings, job_id, "report-1") is False

    with session_scope(settings) as s:
        job = s.get(Job, job_id)
        assert job.status == FAILED and job.error == disk_full_reason("report")
        assert job.stage == "failed while reporting" and job.reports == []
        last = s.scalars(select(JobEvent).where(JobEvent.job_id == job_id).order_by(JobEvent.id.desc())).first()
    assert last.status == FAILED and "ran out of disk space during the report stage" in last.message


def test_full_disk_errors_read_as_such():
    from sqlalchemy.exc import OperationalError

    from worker.runtime import readable_reason

    full_db = OperationalError("INSERT INTO pose_data ...", {}, sqlite3.OperationalError("database or disk is full"))
    assert readable_reason("pose", full_db) == disk_full_reason("pose")
    enospc = OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), "/srv/storage/jobs/x/report.json")
    assert readable_reason("report", enospc) == disk_full_reason("report")
    try:
        try:
            raise enospc
        except OSError as exc:
            raise RuntimeError("could not write the annotated video") from exc
    except RuntimeError as wrapped:
        assert readable_reason("video", wrapped) == disk_full_reason("video")
    assert readable_reason("report", PermissionError(errno.EACCES, "Permission denied")).startswith("Internal error")
