"""Data retention (worker/retention.py, run by the workers' sweep): expired jobs go with their rows and files, on
SQLite and PostgreSQL, with a real redis-server for the lock."""
from __future__ import annotations

import io
import logging
import threading
from datetime import timedelta

import pytest
from sqlalchemy import func, select, update

from har.config import load_settings
from har.database import dispose_engines, session_scope, upgrade_database
from har.db import (
    DONE,
    EXTRACTING,
    FAILED,
    VIDEO_READY,
    VIDEO_RENDERING,
    Job,
    JobEvent,
    PoseData,
    Prediction,
    Report,
    Segment,
    Track,
    Video,
    utcnow,
)
from har.jobs import create_job
from har.storage import Storage
from worker import retention
from worker.sweep import sweep_once

DAYS = 30
REDIS_DB = 7  # the stacks of the other tests use 0 and 1


def _settings(tmp_path, database_url: str, redis_url: str, **overrides):
    values = dict(data_dir=str(tmp_path / "data"), database_url=database_url, redis_url=redis_url,
                  retention_days=DAYS, retention_batch=100, sweep_interval_s=60.0, task_always_eager=False)
    values.update(overrides)
    return load_settings(**values)


@pytest.fixture
def redis_url(redis_server):
    import redis

    url = f"{redis_server}/{REDIS_DB}"
    client = redis.Redis.from_url(url)
    client.flushdb()  # no lock or last pass left by an earlier test
    client.close()
    return url


def _redis_get(url: str, key: str):
    import redis

    client = redis.Redis.from_url(url)
    try:
        return client.get(key)
    finally:
        client.close()


@pytest.fixture
def sqlite_settings(tmp_path, redis_url):
    settings = _settings(tmp_path, f"sqlite:///{tmp_path / 'har.sqlite3'}", redis_url)
    upgrade_database(settings.resolved_database_url)
    yield settings
    dispose_engines()


@pytest.fixture(params=["sqlite", "postgres"])
def db_settings(request, tmp_path, redis_url):
    """Settings on a fresh database of the kind in the parameter."""
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'har.sqlite3'}"
    else:
        import psycopg
        from sqlalchemy.engine import make_url

        u = make_url(request.getfixturevalue("postgres_url"))
        with psycopg.connect(host=u.host, port=u.port, user=u.username, dbname=u.database, autocommit=True) as conn:
            conn.execute("DROP DATABASE IF EXISTS har_retention")
            conn.execute("CREATE DATABASE har_retention")
        url = u.set(database="har_retention").render_as_string(False)
    settings = _settings(tmp_path, url, redis_url)
    upgrade_database(settings.resolved_database_url)
    yield settings
    dispose_engines()


# ------------------------------------------------------------------------------------------- helpers
def add_job(settings, status: str, ended_days_ago: float, *, video_id: str | None = None,
            updated_days_ago: float | None = None, video_status: str | None = None, outputs: bool = True,
            storage=None) -> str:
    """A job as the workers leave it: its own upload (or ``video_id``'s), pose data, a track, a prediction, a
    segment, report files and rows; ended and last changed that many days ago. ``storage``: where its files go
    (default: local files in the settings' storage directory)."""
    storage = storage if storage is not None else Storage(settings.resolved_storage_dir)
    now = utcnow()
    ended = now - timedelta(days=ended_days_ago)
    updated = now - timedelta(days=ended_days_ago if updated_days_ago is None else updated_days_ago)
    with session_scope(settings) as s:
        if video_id is None:
            rel, sha, size = storage.save_upload(io.BytesIO(b"\0\0\0\x18ftypmp42 not really a video"), "clip.mp4")
            job = create_job(s, dict(path=rel, original_filename="clip.mp4", sha256=sha, size_bytes=size,
                                     container="mp4", codec="h264", duration_s=2.0, fps=30.0, frame_count=60,
                                     width=320, height=240, rotation_deg=0), {})
        else:
            job = Job(video_id=video_id, status="queued", params={}, timings={}, frames_total=60)
            s.add(job)
            s.flush()
        job_id = job.id
        if outputs:
            s.add(PoseData(job_id=job_id, sampled_fps=11.0, frames_sampled=22, data=b"\1" * 256))
            s.add(Track(job_id=job_id, track_id=1, start_s=0.0, end_s=2.0, frames=22, mean_score=0.9))
            s.add(Prediction(job_id=job_id, track_id=1, label="BOXING", confidence=0.9, start_s=0.0, end_s=2.0,
                             frames=22, probabilities={"BOXING": 0.9}))
            s.add(Segment(job_id=job_id, track_id=1, label="BOXING", start_s=0.0, end_s=2.0, confidence=0.9))
            for kind, name in (("json", "report.json"), ("video", "annotated.mp4")):
                key, data = storage.job_key(job_id, name), b"{}" if kind == "json" else b"\0" * 64
                storage.put_bytes(key, data)
                s.add(Report(job_id=job_id, kind=kind, path=key, media_type="application/octet-stream",
                             size_bytes=len(data), sha256="0" * 64))
        s.add(JobEvent(job_id=job_id, status=status, message=status, at=ended))
    with session_scope(settings) as s:  # explicit timestamps (not the onupdate "now")
        finished = ended if status in (DONE, FAILED) else None
        s.execute(update(Job).where(Job.id == job_id).values(
            status=status, video_status=video_status, finished_at=finished, updated_at=updated,
            created_at=ended - timedelta(minutes=5), error="boom" if status == FAILED else None))
    return job_id


def video_of(settings, job_id: str) -> tuple[str, str]:
    with session_scope(settings) as s:
        job = s.get(Job, job_id)
        return job.video_id, job.video.path


def rows_of(settings, job_id: str) -> dict[str, int]:
    with session_scope(settings) as s:
        counts = {m.__tablename__: s.scalar(select(func.count()).select_from(m).where(m.job_id == job_id))
                  for m in (JobEvent, PoseData, Track, Prediction, Segment, Report)}
        counts["jobs"] = s.scalar(select(func.count()).select_from(Job).where(Job.id == job_id))
    return counts


def files_of(settings, job_id: str) -> list:
    d = settings.resolved_storage_dir / "jobs" / job_id
    return sorted(p.name for p in d.iterdir()) if d.is_dir() else []


def video_row(settings, video_id: str):
    with session_scope(settings) as s:
        return s.get(Video, video_id)


# --------------------------------------------------------------------------------------------- tests
def test_retention_removes_expired_jobs_rows_and_files_and_keeps_the_rest(db_settings, caplog):
    settings = db_settings
    root = settings.resolved_storage_dir
    old_done = add_job(settings, DONE, 40, video_status=VIDEO_READY)
    old_failed = add_job(settings, FAILED, 35, outputs=False)
    recent_done = add_job(settings, DONE, 2)
    old_running = add_job(settings, EXTRACTING, 40)  # never removed while the workers have it
    old_rendering = add_job(settings, DONE, 40, video_status=VIDEO_RENDERING)  # its video still renders
    changed_lately = add_job(settings, DONE, 40, updated_days_ago=1)  # ended long ago, changed yesterday
    # an upload shared by an old job and a recent re-run: the old job goes, the upload stays for the re-run
    shared_old = add_job(settings, DONE, 45)
    shared_video, shared_path = video_of(settings, shared_old)
    shared_new = add_job(settings, DONE, 1, video_id=shared_video)
    # an upload shared by two old jobs: both go, and the upload with the last of them
    pair_a = add_job(settings, FAILED, 50)
    pair_video, pair_path = video_of(settings, pair_a)
    pair_b = add_job(settings, DONE, 33, video_id=pair_video)

    expired = [old_done, old_failed, shared_old, pair_a, pair_b]
    kept = [recent_done, old_running, old_rendering, changed_lately, shared_new]
    own_uploads = {j: video_of(settings, j) for j in (old_done, old_failed, *kept)}
    assert files_of(settings, old_done) == ["annotated.mp4", "report.json"]

    with caplog.at_level(logging.INFO, logger="worker.retention"):
        run = retention.run_scheduled(settings)
    assert run is not None and sorted(run.job_ids) == sorted(expired) and run.removed == 5
    assert run.more is False and run.files_left == []

    for job_id in expired:
        assert set(rows_of(settings, job_id).values()) == {0}, job_id
        assert files_of(settings, job_id) == [] and not (root / "jobs" / job_id).exists()
        assert f"retention: removed job {job_id}" in caplog.text
    for job_id in (old_done, old_failed):  # their own uploads went with them
        video_id, path = own_uploads[job_id]
        assert video_row(settings, video_id) is None and not (root / path).exists()
    assert video_row(settings, pair_video) is None and not (root / pair_path).exists()
    assert "retention: removed 5 job(s)" in caplog.text

    for job_id in kept:
        counts = rows_of(settings, job_id)
        assert counts["jobs"] == 1 and counts["reports"] == 2 and counts["pose_data"] == 1, (job_id, counts)
        assert files_of(settings, job_id) == ["annotated.mp4", "report.json"]
        video_id, path = own_uploads[job_id]
        assert video_row(settings, video_id) is not None and (root / path).is_file()
    assert video_row(settings, shared_video) is not None and (root / shared_path).is_file()

    # the last pass, for any process (Redis), and nothing more to do right after
    last = retention.last_run(settings)
    assert last["removed"] == 5 and sorted(last["job_ids"]) == sorted(expired)
    again = retention.remove_expired(settings)
    assert again.removed == 0 and again.job_ids == []


def test_a_backlog_goes_in_bounded_batches_oldest_first(sqlite_settings):
    settings = sqlite_settings
    ages = [31, 50, 40, 45, 35]
    jobs = {age: add_job(settings, DONE, age, outputs=False) for age in ages}
    oldest_first = [jobs[a] for a in sorted(ages, reverse=True)]

    first = retention.remove_expired(settings, batch=2)
    assert first.job_ids == oldest_first[:2] and first.more is True
    second = retention.remove_expired(settings, batch=2)
    assert second.job_ids == oldest_first[2:4] and second.more is True
    third = retention.remove_expired(settings, batch=2)
    assert third.job_ids == oldest_first[4:] and third.more is False
    with session_scope(settings) as s:
        assert s.scalar(select(func.count()).select_from(Job)) == 0


def test_two_concurrent_sweeps_run_retention_once(sqlite_settings, monkeypatch):
    """Every worker's sweep calls retention; the Redis lock lets one of them do it per period."""
    settings = sqlite_settings
    expired = [add_job(settings, DONE, 40 + i) for i in range(3)]
    kept = add_job(settings, DONE, 1)
    passes: list[retention.RetentionRun] = []
    real = retention.remove_expired

    def counted(*args, **kwargs):
        run = real(*args, **kwargs)
        passes.append(run)
        return run

    monkeypatch.setattr(retention, "remove_expired", counted)
    barrier = threading.Barrier(2)
    errors: list[BaseException] = []

    def worker_sweep():
        try:
            barrier.wait(10)
            sweep_once(settings)
        except BaseException as exc:  # noqa: BLE001
            errors.append(exc)

    threads = [threading.Thread(target=worker_sweep) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert errors == [] and not any(t.is_alive() for t in threads)
    assert len(passes) == 1 and sorted(passes[0].job_ids) == sorted(expired)
    assert _redis_get(settings.redis_url, retention.LOCK_KEY) is not None
    # the next sweep in the same period leaves it to the next period
    sweep_once(settings)
    assert len(passes) == 1
    with session_scope(settings) as s:
        assert s.scalars(select(Job.id)).all() == [kept]


def test_retention_is_off_by_default(sqlite_settings, monkeypatch):
    monkeypatch.delenv("HAR_RETENTION_DAYS", raising=False)
    assert load_settings().retention_days == 0
    import dataclasses

    settings = dataclasses.replace(sqlite_settings, retention_days=load_settings().retention_days)
    ancient = add_job(settings, DONE, 3650)
    assert retention.run_scheduled(settings) is None
    sweep_once(settings)
    assert rows_of(settings, ancient)["jobs"] == 1 and files_of(settings, ancient) == ["annotated.mp4", "report.json"]
    assert _redis_get(settings.redis_url, retention.LOCK_KEY) is None
    assert _redis_get(settings.redis_url, retention.LAST_RUN_KEY) is None
