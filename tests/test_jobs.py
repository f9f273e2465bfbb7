"""Job lifecycle rules, idempotent stage tasks (real models, in-process), recovery sweep, migrations."""
from __future__ import annotations

import os
import socket
import subprocess
from datetime import timedelta

import pytest
from sqlalchemy import inspect, select

from har.database import current_revision, downgrade_database, get_engine, head_revision, upgrade_database
from har.db import (
    CLASSIFYING,
    DONE,
    EXTRACTING,
    FAILED,
    QUEUED,
    REPORTING,
    Base,
    Job,
    JobEvent,
    PoseData,
    Prediction,
    Report,
    Segment,
    Track,
    utcnow,
)
from har.jobs import (
    JobBusy,
    TransitionError,
    as_utc,
    can_transition,
    create_job,
    create_rerun,
    delete_job,
    fail_job,
    lock_job,
    set_status,
)
from har.storage import Storage

VIDEO = dict(path="uploads/x.mp4", original_filename="x.mp4", sha256="0" * 64, size_bytes=10, container="mp4",
             codec="mp4v", duration_s=2.0, fps=30.0, frame_count=60, width=320, height=240, rotation_deg=0)


def new_job(settings, **video) -> str:
    from har.database import session_scope

    with session_scope(settings) as s:
        return create_job(s, {**VIDEO, **video}, {}).id


def dead_pid() -> int:
    p = subprocess.Popen(["true"])
    p.wait()
    return p.pid


def events(settings, job_id):
    from har.database import session_scope

    with session_scope(settings) as s:
        return [(e.status, e.message, as_utc(e.at)) for e in
                s.scalars(select(JobEvent).where(JobEvent.job_id == job_id).order_by(JobEvent.id))]


# ------------------------------------------------------------------------------- transitions
ORDER = [QUEUED, EXTRACTING, CLASSIFYING, REPORTING, DONE]


@pytest.mark.parametrize("old", ORDER + [FAILED])
@pytest.mark.parametrize("new", ORDER + [FAILED])
def test_transition_rules(old, new):
    if old in (DONE, FAILED):
        expected = False  # final states never change
    elif new == FAILED or new == old:
        expected = True
    else:
        expected = ORDER.index(new) == ORDER.index(old) + 1  # one step forward only
    assert can_transition(old, new) is expected


def test_every_change_writes_an_event(sqlite_db):
    from har.database import session_scope

    job_id = new_job(sqlite_db)
    with session_scope(sqlite_db) as s:
        job = s.get(Job, job_id)
        assert job.status == QUEUED
        for state in ORDER[1:]:
            assert set_status(s, job, state, f"now {state}") is True
        assert job.started_at is not None and job.finished_at is not None
    ev = events(sqlite_db, job_id)
    assert [e[0] for e in ev] == ORDER
    times = [e[2] for e in ev]
    assert times == sorted(times)


def test_same_state_updates_fields_without_an_event(sqlite_db):
    from har.database import session_scope

    job_id = new_job(sqlite_db)
    with session_scope(sqlite_db) as s:
        job = s.get(Job, job_id)
        set_status(s, job, EXTRACTING, "pose")
        assert set_status(s, job, EXTRACTING, "pose 50 %", frames_done=5) is False
        assert job.frames_done == 5 and job.stage == "pose 50 %"
        with pytest.raises(AttributeError):
            set_status(s, job, EXTRACTING, no_such_field=1)
    assert [e[0] for e in events(sqlite_db, job_id)] == [QUEUED, EXTRACTING]


def test_no_going_back_no_skipping_no_leaving_final_states(sqlite_db):
    from har.database import session_scope

    job_id = new_job(sqlite_db)
    with session_scope(sqlite_db) as s:
        job = s.get(Job, job_id)
        with pytest.raises(TransitionError):
            set_status(s, job, CLASSIFYING)  # skipping extracting
        set_status(s, job, EXTRACTING)
        with pytest.raises(TransitionError):
            set_status(s, job, QUEUED)  # going back
        assert fail_job(s, job, "The video could not be read: broken") is True
        assert job.error == "The video could not be read: broken"
        assert fail_job(s, job, "again") is False  # already final: no-op
        with pytest.raises(TransitionError):
            set_status(s, job, DONE)
    ev = events(sqlite_db, job_id)
    assert [e[0] for e in ev] == [QUEUED, EXTRACTING, FAILED]
    assert ev[-1][1] == "The video could not be read: broken"


def test_lock_job_holds_other_writers_off_until_commit_on_sqlite(sqlite_db):
    """Two workers must never both read a job's old state and both act on it: while one transaction
    holds the job (lock_job), another lock_job waits and then sees the committed change."""
    import threading
    import time

    from har.database import session_scope
    from har.jobs import lock_job

    job_id = new_job(sqlite_db)
    seen = []
    with session_scope(sqlite_db) as s:
        job = lock_job(s, job_id)
        before = job.updated_at

        def second():
            with session_scope(sqlite_db) as s2:
                seen.append(lock_job(s2, job_id).status)

        t = threading.Thread(target=second)
        t.start()
        time.sleep(0.5)
        assert seen == [], "a second lock_job read the job while the first transaction held it"
        set_status(s, job, EXTRACTING, "claimed")
    t.join(10)
    assert seen == [EXTRACTING]
    with session_scope(sqlite_db) as s:  # the lock itself changes nothing (updated_at neither)
        assert s.get(Job, job_id).status == EXTRACTING
    with session_scope(sqlite_db) as s:
        job = lock_job(s, job_id)
        stamp = job.updated_at
    with session_scope(sqlite_db) as s:
        assert s.get(Job, job_id).updated_at == stamp != before


# ------------------------------------------------------------------------------- migrations
def check_0002_down_and_up(url):
    """0002 adds jobs.enqueued_at and jobs.stage_started_at; its downgrade removes them and keeps the rows."""
    from sqlalchemy import text

    def job_columns():
        engine = get_engine(url)
        engine.dispose()  # fresh metadata after the batch table rebuild (SQLite)
        return {c["name"] for c in inspect(engine).get_columns("jobs")}

    new = {"enqueued_at", "stage_started_at"}
    with get_engine(url).begin() as conn:
        conn.execute(text("INSERT INTO videos (id, path, original_filename, sha256, size_bytes, container, "
                          "duration_s, fps, frame_count, width, height, rotation_deg, created_at) VALUES ('v', "
                          "'p', 'x.mp4', 's', 1, 'mp4', 1, 30, 30, 2, 2, 0, CURRENT_TIMESTAMP)"))
        conn.execute(text("INSERT INTO jobs (id, video_id, status, frames_done, frames_total, params, timings, "
                          "attempts, created_at, updated_at, enqueued_at) VALUES ('j', 'v', 'queued', 0, 30, "
                          "'{}', '{}', 0, CURRENT_TIMESTAMP, CURRENT_TIMESTAMP, CURRENT_TIMESTAMP)"))
    assert new <= job_columns()
    downgrade_database(url, "0001")
    assert current_revision(url) == "0001" and not new & job_columns()
    upgrade_database(url)
    assert current_revision(url) == head_revision() and new <= job_columns()
    with get_engine(url).begin() as conn:  # the job survived both ways; a job waiting in a queue counts as
        # published when it was last changed (it keeps the long requeue wait, no burst after an upgrade)
        status, enqueued_at, updated_at = conn.execute(
            text("SELECT status, enqueued_at, updated_at FROM jobs WHERE id = 'j'")).one()
        assert status == "queued" and enqueued_at is not None and enqueued_at == updated_at
        conn.execute(text("DELETE FROM jobs"))
        conn.execute(text("DELETE FROM videos"))


def check_0003_down_and_up(url):
    """0003 adds jobs.video_status and jobs.video_error. Jobs done before it rendered their video in the report
    stage: one with a video report is ready, one whose stage says the video was not available failed with
    that reason, the others had none. Its downgrade removes the columns and keeps the rows."""
    from sqlalchemy import text

    def job_columns():
        engine = get_engine(url)
        engine.dispose()  # fresh metadata after the batch table rebuild (SQLite)
        return {c["name"] for c in inspect(engine).get_columns("jobs")}

    new = {"video_status", "video_error"}
    downgrade_database(url, "0002")
    assert current_revision(url) == "0002" and not new & job_columns()
    note = "done; annotated video not available (EncoderError: ffmpeg exit 1"  # cut at 64
    with get_engine(url).begin() as conn:
        conn.execute(text("INSERT INTO videos (id, path, original_filename, sha256, size_bytes, container, "
                          "duration_s, fps, frame_count, width, height, rotation_deg, created_at) VALUES ('v', "
                          "'p', 'x.mp4', 's', 1, 'mp4', 1, 30, 30, 2, 2, 0, CURRENT_TIMESTAMP)"))
        for job_id, status, stage in (("with-video", "done", "done"), ("video-failed", "done", note),
                                      ("no-video", "done", "done"), ("running", "extracting", "extracting")):
            conn.execute(text("INSERT INTO jobs (id, video_id, status, stage, frames_done, frames_total, params, "
                              "timings, attempts, created_at, updated_at) VALUES (:id, 'v', :status, :stage, 0, 30, "
                              "'{}', '{}', 0, CURRENT_TIMESTAMP, CURRENT_TIMESTAMP)"),
                         {"id": job_id, "status": status, "stage": stage})
        conn.execute(text("INSERT INTO reports (job_id, kind, path, media_type, size_bytes, sha256, created_at) "
                          "VALUES ('with-video', 'video', 'jobs/with-video/annotated.mp4', 'video/mp4', 1, 's', "
                          "CURRENT_TIMESTAMP)"))
    upgrade_database(url)
    assert current_revision(url) == head_revision() and new <= job_columns()

    def video_states():
        with get_engine(url).begin() as conn:
            return {r[0]: (r[1], r[2]) for r in conn.execute(
                text("SELECT id, video_status, video_error FROM jobs"))}

    assert video_states() == {"with-video": ("ready", None), "video-failed": ("failed", note),
                              "no-video": (None, None), "running": (None, None)}
    downgrade_database(url, "0002")
    assert not new & job_columns()
    with get_engine(url).begin() as conn:  # the rows survived
        assert conn.execute(text("SELECT COUNT(*) FROM jobs")).scalar() == 4
    upgrade_database(url)
    assert video_states()["with-video"] == ("ready", None)
    with get_engine(url).begin() as conn:
        conn.execute(text("DELETE FROM reports"))
        conn.execute(text("DELETE FROM jobs"))
        conn.execute(text("DELETE FROM videos"))


def check_0004_down_and_up(url):
    """0004 adds jobs.owner (indexed with created_at) and the api_tokens table (one active token per name). Jobs
    from before have no owner; its downgrade removes both and keeps the jobs."""
    from sqlalchemy import text
    from sqlalchemy.exc import IntegrityError

    def schema():
        engine = get_engine(url)
        engine.dispose()  # fresh metadata after the batch table rebuild (SQLite)
        insp = inspect(engine)
        return ({c["name"] for c in insp.get_columns("jobs")}, {i["name"] for i in insp.get_indexes("jobs")},
                set(insp.get_table_names()))

    columns, indexes, tables = schema()
    assert "owner" in columns and "ix_jobs_owner_created_at" in indexes and "api_tokens" in tables
    downgrade_database(url, "0003")
    columns, indexes, tables = schema()
    assert current_revision(url) == "0003" and "owner" not in columns and "api_tokens" not in tables
    assert "ix_jobs_owner_created_at" not in indexes
    with get_engine(url).begin() as conn:
        conn.execute(text("INSERT INTO videos (id, path, original_filename, sha256, size_bytes, container, "
                          "duration_s, fps, frame_count, width, height, rotation_deg, created_at) VALUES ('v', "
                          "'p', 'x.mp4', 's', 1, 'mp4', 1, 30, 30, 2, 2, 0, CURRENT_TIMESTAMP)"))
        conn.execute(text("INSERT INTO jobs (id, video_id, status, frames_done, frames_total, params, timings, "
                          "attempts, created_at, updated_at) VALUES ('old', 'v', 'done', 0, 30, '{}', '{}', 0, "
                          "CURRENT_TIMESTAMP, CURRENT_TIMESTAMP)"))
        conn.execute(text("INSERT INTO job_events (job_id, status, at) VALUES ('old', 'done', CURRENT_TIMESTAMP)"))
    upgrade_database(url)
    assert current_revision(url) == head_revision() and "owner" in schema()[0]
    token_row = ("INSERT INTO api_tokens (name, token_hash, admin, created_at, revoked_at) "
                 "VALUES (:name, :hash, false, CURRENT_TIMESTAMP, {})")
    with get_engine(url).begin() as conn:
        assert conn.execute(text("SELECT owner FROM jobs WHERE id = 'old'")).scalar() is None  # nobody's
        conn.execute(text("INSERT INTO jobs (id, video_id, status, frames_done, frames_total, params, timings, "
                          "attempts, created_at, updated_at, owner) VALUES ('new', 'v', 'queued', 0, 30, '{}', "
                          "'{}', 0, CURRENT_TIMESTAMP, CURRENT_TIMESTAMP, 'token:ci')"))
        conn.execute(text(token_row.format("CURRENT_TIMESTAMP")), {"name": "ci", "hash": "a" * 64})  # revoked
        conn.execute(text(token_row.format("NULL")), {"name": "ci", "hash": "b" * 64})  # its successor
    with pytest.raises(IntegrityError):  # a second active token under the name
        with get_engine(url).begin() as conn:
            conn.execute(text(token_row.format("NULL")), {"name": "ci", "hash": "c" * 64})
    with pytest.raises(IntegrityError):  # the same token twice
        with get_engine(url).begin() as conn:
            conn.execute(text(token_row.format("CURRENT_TIMESTAMP")), {"name": "other", "hash": "a" * 64})
    downgrade_database(url, "0003")
    with get_engine(url).begin() as conn:  # the jobs and their events survived
        assert conn.execute(text("SELECT COUNT(*) FROM jobs")).scalar() == 2
        assert conn.execute(text("SELECT COUNT(*) FROM job_events")).scalar() == 1
    upgrade_database(url)
    with get_engine(url).begin() as conn:
        assert conn.execute(text("SELECT COUNT(*) FROM api_tokens")).scalar() == 0
        conn.execute(text("DELETE FROM job_events"))
        conn.execute(text("DELETE FROM jobs"))
        conn.execute(text("DELETE FROM videos"))


def check_0005_down_and_up(url):
    """0005 adds the webhook columns of jobs and api_tokens and the webhook_deliveries table; tokens from before get a
    webhook secret; its downgrade removes them and keeps the jobs (and their deliveries go with the table)."""
    from sqlalchemy import text

    downgrade_database(url, "0004")
    with get_engine(url).begin() as conn:
        conn.execute(text("INSERT INTO videos (id, path, original_filename, sha256, size_bytes, container, duration_s, "
                          "fps, frame_count, width, height, rotation_deg, created_at) VALUES ('v5', 'uploads/a.mp4', "
                          "'a.mp4', 'x', 1, 'mp4', 1.0, 30.0, 30, 64, 64, 0, CURRENT_TIMESTAMP)"))
        conn.execute(text("INSERT INTO jobs (id, video_id, status, frames_done, frames_total, params, timings, "
                          "attempts, created_at, updated_at) VALUES ('j5', 'v5', 'done', 0, 30, '{}', '{}', 0, "
                          "CURRENT_TIMESTAMP, CURRENT_TIMESTAMP)"))
        conn.execute(text("INSERT INTO api_tokens (name, token_hash, admin, created_at) "
                          "VALUES ('old', :h, false, CURRENT_TIMESTAMP)"), {"h": "e" * 64})
    get_engine(url).dispose()
    upgrade_database(url)
    with get_engine(url).begin() as conn:
        assert conn.execute(text("SELECT webhook_secret FROM api_tokens WHERE name = 'old'")).scalar().startswith(
            "whsec_")
        assert conn.execute(text("SELECT callback_url, job_key FROM jobs WHERE id = 'j5'")).one() == (None, None)
        conn.execute(text("INSERT INTO webhook_deliveries (job_id, event, url, body, status, attempts, attempt_log, "
                          "created_at, updated_at) VALUES ('j5', 'job.done', 'http://x', '{}', 'pending', 0, '[]', "
                          "CURRENT_TIMESTAMP, CURRENT_TIMESTAMP)"))
    downgrade_database(url, "0004")
    get_engine(url).dispose()
    insp = inspect(get_engine(url))
    assert "webhook_deliveries" not in insp.get_table_names()
    assert "job_key" not in {c["name"] for c in insp.get_columns("jobs")}
    with get_engine(url).begin() as conn:
        assert conn.execute(text("SELECT COUNT(*) FROM jobs WHERE id = 'j5'")).scalar() == 1
        conn.execute(text("DELETE FROM jobs WHERE id = 'j5'"))
        conn.execute(text("DELETE FROM videos WHERE id = 'v5'"))
        conn.execute(text("DELETE FROM api_tokens"))
    upgrade_database(url)


def test_migrations_upgrade_downgrade_sqlite(tmp_path):
    from alembic.autogenerate import compare_metadata
    from alembic.runtime.migration import MigrationContext

    url = f"sqlite:///{tmp_path / 'm' / 'har.sqlite3'}"
    upgrade_database(url)
    assert current_revision(url) == head_revision()
    engine = get_engine(url)
    insp = inspect(engine)
    assert set(insp.get_table_names()) == set(Base.metadata.tables) | {"alembic_version"}
    assert "ix_jobs_created_at_id" in {i["name"] for i in insp.get_indexes("jobs")}
    with engine.connect() as conn:  # the migrations create exactly the models' schema
        assert compare_metadata(MigrationContext.configure(conn), Base.metadata) == []

    check_0002_down_and_up(url)
    check_0003_down_and_up(url)
    check_0004_down_and_up(url)
    check_0005_down_and_up(url)
    downgrade_database(url, "base")
    assert set(inspect(engine).get_table_names()) <= {"alembic_version"}
    assert current_revision(url) is None
    upgrade_database(url)  # and up again
    assert current_revision(url) == head_revision()


# ----------------------------------------------------------------------- stage tasks (real models)
def rows(settings, job_id):
    from har.database import session_scope

    with session_scope(settings) as s:
        return {
            "tracks": sorted((t.track_id, t.frames) for t in s.scalars(select(Track).where(Track.job_id == job_id))),
            "predictions": sorted((p.track_id, p.label) for p in
                                  s.scalars(select(Prediction).where(Prediction.job_id == job_id))),
            "segments": sorted((g.track_id, g.label, g.start_s) for g in
                               s.scalars(select(Segment).where(Segment.job_id == job_id))),
            "reports": sorted((r.kind, r.path) for r in s.scalars(select(Report).where(Report.job_id == job_id))),
            "pose": s.scalar(select(PoseData.frames_sampled).where(PoseData.job_id == job_id)),
        }


def job_row(settings, job_id) -> Job:
    from har.database import session_scope

    with session_scope(settings) as s:
        job = s.get(Job, job_id)
        s.expunge(job)
        return job


def test_overall_label_for_the_jobs_list():
    from models.action.timeline import NO_PERSON, TOO_SHORT
    from worker.tasks.classify import overall

    short = [{"track_id": 7, "start_s": 3.1, "end_s": 3.6, "frames": 11}]
    assert overall({"status": "too_short", "persons": [], "short_tracks": short}) == (TOO_SHORT, None) \
        == ("too_short", None)
    assert overall({"status": "no_person", "persons": [], "short_tracks": []}) == (NO_PERSON, None) \
        == ("no_person", None)
    assert overall({"status": "ok", "persons": []}) == ("no_person", None)  # nothing to summarise
    persons = [{"label": "BOXING", "confidence": 0.9, "frames": 40},
               {"label": "JUMPING", "confidence": 0.6, "frames": 200},
               {"label": "CLAPPING_HANDS", "confidence": 0.8, "frames": 200}]
    assert overall({"status": "ok", "persons": persons, "short_tracks": short}) == ("CLAPPING_HANDS", 0.8)


def test_the_report_stage_stores_its_files_before_it_locks_the_job(video_job, monkeypatch):
    """The reports are stored (S3: uploaded) while no row is locked, and the rows naming them are committed after:
    while the files are being stored, another writer gets the database at once and the job is not done yet;
    afterwards the Report rows carry the stored files' sizes and hashes, and the report says what the row says."""
    import json
    import sqlite3

    from har import reports
    from worker.tasks.classify import run_classify
    from worker.tasks.pose import run_pose
    from worker.tasks.report import run_report

    settings, job_id, sent = video_job
    assert run_pose(settings, job_id, "pose-1") and run_classify(settings, job_id, "classify-1")
    seen = {}
    real_store = reports.store_reports

    def store_while_checking(jid, storage, texts):
        con = sqlite3.connect(settings.resolved_database_url.split("sqlite:///", 1)[1], timeout=0.1)
        try:
            con.execute("BEGIN IMMEDIATE")  # a writer: fails at once while someone holds the write lock
            seen["writer_got_the_database"] = True
            seen["status_while_storing"] = con.execute("SELECT status FROM jobs WHERE id = ?", (jid,)).fetchone()[0]
            con.rollback()
        finally:
            con.close()
        return real_store(jid, storage, texts)

    monkeypatch.setattr(reports, "store_reports", store_while_checking)
    assert run_report(settings, job_id, "report-1") is True
    assert seen == {"writer_got_the_database": True, "status_while_storing": "reporting"}
    job = job_row(settings, job_id)
    assert job.status == DONE
    from har.database import session_scope
    from har.db import Report

    storage = settings.resolved_storage_dir
    with session_scope(settings) as s:
        stored = {r.kind: (r.path, r.size_bytes, r.sha256) for r in s.query(Report).filter_by(job_id=job_id)}
    assert set(stored) == {"json", "csv", "html"}
    for path, size, sha in stored.values():
        f = storage / path
        assert f.stat().st_size == size and reports.sha256_file(f) == sha
    doc = json.loads((storage / stored["json"][0]).read_text())
    assert doc["job"]["status"] == "done"
    assert doc["job"]["finished_at"].startswith(job.finished_at.strftime("%Y-%m-%dT%H:%M:%S"))


def test_stages_run_once_and_duplicates_are_no_ops(video_job):
    from worker.celery_app import CLASSIFY_TASK, REPORT_TASK, VIDEO_TASK
    from worker.tasks.classify import run_classify
    from worker.tasks.pose import run_pose
    from worker.tasks.report import run_report
    from worker.tasks.video import run_video

    settings, job_id, sent = video_job
    assert run_pose(settings, job_id, "pose-1") is True
    assert sent == [(CLASSIFY_TASK, job_id)]
    after_pose = rows(settings, job_id)
    assert after_pose["tracks"] and after_pose["pose"] > 0
    # a duplicate or redelivered pose task for a job past that stage changes nothing; while the job still
    # waits for its classify task it sends that again (the first one may never have been sent)
    assert run_pose(settings, job_id, "pose-1") is False
    assert run_pose(settings, job_id, "pose-2") is False
    assert rows(settings, job_id) == after_pose and sent == [(CLASSIFY_TASK, job_id)] * 3

    assert run_classify(settings, job_id, "classify-1") is True
    assert sent[-1] == (REPORT_TASK, job_id)
    assert run_classify(settings, job_id, "classify-2") is False
    assert run_report(settings, job_id, "report-1") is True
    # done with its reports; the annotated video is the next task's
    assert sent[-1] == (VIDEO_TASK, job_id)
    reported = rows(settings, job_id)
    assert {k for k, _ in reported["reports"]} == {"json", "csv", "html"}
    job = job_row(settings, job_id)
    assert (job.status, job.video_status, job.task_id) == (DONE, "rendering", None)
    assert [e[0] for e in events(settings, job_id)] == ORDER
    assert run_report(settings, job_id, "report-2") is False  # a duplicate sends the waiting video task again
    assert sent[-2:] == [(VIDEO_TASK, job_id)] * 2 and rows(settings, job_id) == reported

    assert run_video(settings, job_id, "video-1") is True
    done = rows(settings, job_id)
    assert {k for k, _ in done["reports"]} == {"json", "csv", "html", "video"}
    before = events(settings, job_id)
    sends = len(sent)
    for fn in (run_pose, run_classify, run_report, run_video):  # everything is a no-op on a done job
        assert fn(settings, job_id, "late-duplicate") is False
    assert rows(settings, job_id) == done and len(sent) == sends
    assert events(settings, job_id) == before
    assert [e[0] for e in before] == ORDER  # the video changes no state of the job
    job = job_row(settings, job_id)
    assert (job.status, job.video_status, job.video_error, job.task_id) == (DONE, "ready", None, None)
    assert {"queue_wait_s", "pose_s", "classify_s", "report_s", "total_s", "video_s"} <= set(job.timings)
    assert "annotate_s" not in job.timings


def test_redelivered_task_after_a_crash_replaces_partial_results(video_job):
    """The worker died mid-pose (after writing part of its output): the broker delivers the same
    message again and the stage runs once more, replacing what was there (delete, then insert)."""
    from har.database import session_scope
    from worker import runtime
    from worker.tasks.pose import run_pose

    settings, job_id, sent = video_job
    assert runtime.claim(settings, job_id, "pose", "pose-1") is not None
    with session_scope(settings) as s:
        s.get(Job, job_id).worker = f"{socket.gethostname()}:{dead_pid()}"
        s.add(Track(job_id=job_id, track_id=99, start_s=0, end_s=1, frames=3, mean_score=0.5))
    assert run_pose(settings, job_id, "pose-1") is True
    r = rows(settings, job_id)
    assert 99 not in {t for t, _ in r["tracks"]} and r["tracks"]
    assert [e[0] for e in events(settings, job_id)] == [QUEUED, EXTRACTING, CLASSIFYING]


def test_duplicate_while_a_live_worker_runs_the_stage_is_skipped(video_job):
    from har.database import session_scope
    from worker.tasks.pose import run_pose

    settings, job_id, sent = video_job
    with session_scope(settings) as s:
        job = s.get(Job, job_id)
        set_status(s, job, EXTRACTING, "extracting poses", task_id="pose-1", attempts=1,
                   worker=f"{socket.gethostname()}:{os.getppid()}", heartbeat_at=utcnow())
    assert run_pose(settings, job_id, "pose-2") is False
    job = job_row(settings, job_id)
    assert job.status == EXTRACTING and job.task_id == "pose-1" and sent == []


def test_a_stage_that_keeps_killing_its_worker_fails_at_the_attempt_limit(video_job):
    from har.database import session_scope
    from worker.tasks.pose import run_pose

    settings, job_id, sent = video_job
    with session_scope(settings) as s:
        job = s.get(Job, job_id)
        set_status(s, job, EXTRACTING, "extracting poses", task_id="pose-1", attempts=settings.max_attempts,
                   worker=f"{socket.gethostname()}:{dead_pid()}", heartbeat_at=utcnow())
    assert run_pose(settings, job_id, "pose-1") is False
    job = job_row(settings, job_id)
    assert job.status == FAILED and "Gave up after" in job.error and sent == []


def test_a_task_error_fails_the_job_with_a_readable_reason(video_job):
    from worker.tasks.pose import run_pose

    settings, job_id, sent = video_job
    Storage(settings.resolved_storage_dir).delete(job_row(settings, job_id).video.path)
    assert run_pose(settings, job_id, "pose-1") is False
    job = job_row(settings, job_id)
    assert job.status == FAILED and "missing" in job.error and sent == []
    assert [e[0] for e in events(settings, job_id)] == [QUEUED, EXTRACTING, FAILED]


# --------------------------------------------------------------------------------- the sweep
def test_sweep_requeues_lost_stages_and_fails_exhausted_ones(sqlite_db):
    from har.database import session_scope
    from worker.sweep import sweep

    now = utcnow()
    old = now - timedelta(hours=2)
    me = socket.gethostname()
    lost, exhausted, alive, waiting_old, waiting_new = (new_job(sqlite_db) for _ in range(5))
    with session_scope(sqlite_db) as s:
        for job_id, attempts, worker, beat in [
            (lost, 1, f"{me}:{dead_pid()}", old),
            (exhausted, sqlite_db.max_attempts, f"{me}:{dead_pid()}", old),
            (alive, 1, f"{me}:{os.getppid()}", now),
        ]:
            set_status(s, s.get(Job, job_id), EXTRACTING, "extracting poses", task_id="t-" + job_id[:8],
                       attempts=attempts, worker=worker, heartbeat_at=beat)
        s.get(Job, waiting_old).updated_at = old
        s.get(Job, waiting_old).created_at = old
    actions = dict(sweep(sqlite_db, now=now, enqueue=False))
    assert actions == {lost: "requeued", exhausted: "failed", waiting_old: "requeued"}
    assert job_row(sqlite_db, lost).worker is None  # released: the next start is attempt 2
    assert job_row(sqlite_db, exhausted).status == FAILED
    assert "Gave up after" in job_row(sqlite_db, exhausted).error
    assert job_row(sqlite_db, alive).status == EXTRACTING
    # a second pass right away does not enqueue the same jobs again
    assert sweep(sqlite_db, now=now + timedelta(seconds=1), enqueue=False) == []


@pytest.fixture
def broker(sqlite_db, monkeypatch):
    """The broker's publish, recorded (``ok`` False: the broker is unreachable); everything else is real."""
    import dataclasses

    from worker.celery_app import celery_app

    settings = dataclasses.replace(sqlite_db, redis_url=celery_app.conf.broker_url)
    state = {"ok": True, "sent": []}

    def send_task(name, args=None, **kwargs):
        if not state["ok"]:
            raise ConnectionError("broker unreachable")
        state["sent"].append((name, args[0]))

    monkeypatch.setattr(celery_app, "send_task", send_task)
    return settings, state


def test_publishing_a_stage_records_it_on_the_waiting_job(broker):
    """send_stage (the web app's first task, the workers' hand-overs, the sweep) records when the message
    of the stage a job waits for reached the broker; a failed publish records nothing, a state change or
    a claim clears it."""
    from har.database import session_scope
    from worker import runtime
    from worker.celery_app import CLASSIFY_TASK, POSE_TASK, enqueue_job

    settings, state = broker
    job_id = new_job(settings)
    state["ok"] = False
    assert runtime.hand_over(settings, POSE_TASK, job_id) is False
    assert job_row(settings, job_id).enqueued_at is None
    state["ok"] = True
    before = job_row(settings, job_id).updated_at
    enqueue_job(job_id, settings)
    job = job_row(settings, job_id)
    assert state["sent"] == [(POSE_TASK, job_id)]
    assert job.enqueued_at is not None and abs(as_utc(job.enqueued_at) - utcnow()) < timedelta(seconds=30)
    assert job.updated_at == before  # bookkeeping, not a change of the job
    claim = runtime.claim(settings, job_id, "pose", "pose-1")
    assert claim is not None and job_row(settings, job_id).enqueued_at is None  # taken by a worker
    runtime.hand_over(settings, POSE_TASK, job_id)  # a late duplicate publish while a worker holds it
    assert job_row(settings, job_id).enqueued_at is None
    with session_scope(settings) as s:  # the stage ends: the job waits for its classify message
        set_status(s, lock_job(s, job_id), CLASSIFYING, "waiting to classify", task_id=None, worker=None)
    assert job_row(settings, job_id).enqueued_at is None
    assert runtime.hand_over(settings, CLASSIFY_TASK, job_id) is True
    assert job_row(settings, job_id).enqueued_at is not None
    with session_scope(settings) as s:
        set_status(s, lock_job(s, job_id), FAILED, "boom")
    assert job_row(settings, job_id).enqueued_at is None


def test_a_job_whose_message_never_reached_the_broker_is_enqueued_after_a_short_grace(broker):
    """The web app (or a worker handing over) died between committing the job and publishing its task, or
    the publish failed: the sweep sends the task after ``unsent_after_s``, not ``requeue_after_s``. A job
    whose message was published keeps the long wait (it may only be behind others in the queue)."""
    from har.database import session_scope
    from worker import runtime
    from worker.celery_app import CLASSIFY_TASK, POSE_TASK
    from worker.sweep import sweep

    settings, state = broker
    assert settings.unsent_after_s < settings.requeue_after_s
    now = utcnow()
    lost, published, lost_hand_over, fresh = (new_job(settings) for _ in range(4))
    for job_id in (published, fresh):
        assert runtime.hand_over(settings, POSE_TASK, job_id) is True
    with session_scope(settings) as s:
        for job_id in (lost, published, lost_hand_over):
            job = s.get(Job, job_id)
            job.created_at = job.updated_at = now - timedelta(seconds=settings.unsent_after_s + 5)
        s.get(Job, published).enqueued_at = now - timedelta(seconds=settings.unsent_after_s + 5)
        job = s.get(Job, lost_hand_over)  # pose finished; the classify message was never published
        set_status(s, job, EXTRACTING, "extracting poses", task_id="pose-1", worker="gone:1", heartbeat_at=now)
        set_status(s, job, CLASSIFYING, "waiting to classify", task_id=None, worker=None,
                   heartbeat_at=now - timedelta(seconds=settings.unsent_after_s + 5))
        job.updated_at = now - timedelta(seconds=settings.unsent_after_s + 5)
    state["sent"].clear()
    assert dict(sweep(settings, now=now)) == {lost: "requeued", lost_hand_over: "requeued"}
    assert sorted(state["sent"]) == sorted([(POSE_TASK, lost), (CLASSIFY_TASK, lost_hand_over)])
    for job_id in (lost, lost_hand_over):  # now published: the next passes give them the long wait
        assert job_row(settings, job_id).enqueued_at is not None
    assert sweep(settings, now=now + timedelta(seconds=settings.unsent_after_s + 5)) == []
    later = now + timedelta(seconds=settings.requeue_after_s + 60)
    assert {j for j, _ in sweep(settings, now=later, enqueue=False)} == {lost, published, lost_hand_over, fresh}

    # a sweep whose publish fails leaves the job unsent: the next pass after the short grace tries again
    with session_scope(settings) as s:
        s.get(Job, fresh).enqueued_at = None
        s.get(Job, fresh).heartbeat_at = now
    state["ok"], state["sent"] = False, []
    t1 = now + timedelta(seconds=settings.unsent_after_s + 1)
    assert ("requeued" in dict(sweep(settings, now=t1)).get(fresh, "")) and state["sent"] == []
    assert job_row(settings, fresh).enqueued_at is None
    state["ok"] = True
    assert fresh not in dict(sweep(settings, now=t1 + timedelta(seconds=1)))  # not before the grace is over
    assert dict(sweep(settings, now=t1 + timedelta(seconds=settings.unsent_after_s + 1))).get(fresh) == "requeued"
    assert (POSE_TASK, fresh) in state["sent"] and job_row(settings, fresh).enqueued_at is not None


def test_eta_of_a_retried_pose_stage_counts_from_the_current_attempt(sqlite_db):
    """Attempt 1 did 500 of 1000 frames in 10 minutes and died; attempt 2 starts again from frame 0: its
    progress and ETA are its own, not a mix of the dead attempt's count and the first start time."""
    from har.database import session_scope
    from web.serialize import eta_seconds
    from worker import runtime

    job_id = new_job(sqlite_db)
    first = runtime.claim(sqlite_db, job_id, "pose", "pose-1")
    assert first is not None and first.attempt == 1
    job = job_row(sqlite_db, job_id)
    assert as_utc(job.stage_started_at) == as_utc(job.started_at)
    t0 = utcnow() - timedelta(minutes=10)
    with session_scope(sqlite_db) as s:  # attempt 1 started 10 min ago, did half, and its worker died
        job = s.get(Job, job_id)
        job.started_at = job.stage_started_at = t0
        job.frames_done, job.frames_total = 500, 1000
        job.worker, job.heartbeat_at = f"{socket.gethostname()}:{dead_pid()}", t0
    assert eta_seconds(job_row(sqlite_db, job_id), now=t0 + timedelta(minutes=10)) == 600.0  # 10 min × 500/500

    second = runtime.claim(sqlite_db, job_id, "pose", "pose-2")
    assert second is not None and second.attempt == 2
    job = job_row(sqlite_db, job_id)
    assert job.frames_done == 0 and job.frames_total == 1000  # the count starts again; the total is the same
    assert as_utc(job.started_at) == t0  # the job's start stays the first attempt's
    start2 = as_utc(job.stage_started_at)
    assert start2 > t0 + timedelta(minutes=9)
    assert eta_seconds(job, now=start2 + timedelta(seconds=5)) is None  # no frame done yet: unknown
    assert runtime.beat(sqlite_db, job_id, "pose-2", frames_done=100, frames_total=1000)
    job = job_row(sqlite_db, job_id)
    # 100 frames in 10 s → 900 left take 90 s (from the first start and the dead count it was 54 s or 5490 s)
    assert eta_seconds(job, now=start2 + timedelta(seconds=10)) == 90.0
    assert job.progress == pytest.approx(0.85 * 0.1)


def test_migrations_upgrade_downgrade_postgres(postgres_url):
    """The same migrations on PostgreSQL, in a database of their own."""
    import psycopg
    from sqlalchemy.engine import make_url

    u = make_url(postgres_url)
    with psycopg.connect(host=u.host, port=u.port, user=u.username, dbname=u.database, autocommit=True) as conn:
        conn.execute("DROP DATABASE IF EXISTS har_migrations")
        conn.execute("CREATE DATABASE har_migrations")
    url = u.set(database="har_migrations").render_as_string(hide_password=False)
    upgrade_database(url)
    assert current_revision(url) == head_revision()
    assert set(inspect(get_engine(url)).get_table_names()) == set(Base.metadata.tables) | {"alembic_version"}
    from alembic.autogenerate import compare_metadata
    from alembic.runtime.migration import MigrationContext

    with get_engine(url).connect() as conn:  # the migrations create exactly the models' schema here too
        assert compare_metadata(MigrationContext.configure(conn, opts={"compare_type": True}), Base.metadata) == []
    check_0002_down_and_up(url)
    check_0003_down_and_up(url)
    check_0004_down_and_up(url)
    check_0005_down_and_up(url)
    downgrade_database(url, "base")
    assert set(inspect(get_engine(url)).get_table_names()) <= {"alembic_version"}
    upgrade_database(url)
    assert current_revision(url) == head_revision()
    get_engine(url).dispose()


def test_an_error_in_a_superseded_task_does_not_fail_the_job_its_successor_runs(video_job, monkeypatch):
    """The sweep gave the pose stage to a new task while the old one was presumed dead; when the old one
    then hits an error, the job stays with the live task instead of being failed under it."""
    from har.database import session_scope
    from models.pose import extract as extract_mod
    from worker.tasks.pose import run_pose

    settings, job_id, sent = video_job

    def superseded_then_broken(*args, **kwargs):
        with session_scope(settings) as s:  # meanwhile: the sweep requeued, and pose-2 claimed the job
            job = s.get(Job, job_id)
            job.task_id, job.attempts = "pose-2", 2
            job.worker, job.heartbeat_at = f"{socket.gethostname()}:{os.getppid()}", utcnow()
        raise RuntimeError("lost the video decoder")

    monkeypatch.setattr(extract_mod, "extract_tracks", superseded_then_broken)
    assert run_pose(settings, job_id, "pose-1") is False
    job = job_row(settings, job_id)
    assert (job.status, job.task_id, job.error) == (EXTRACTING, "pose-2", None)
    assert [e[0] for e in events(settings, job_id)] == [QUEUED, EXTRACTING]
    # the task that holds the job fails it as usual
    from worker import runtime

    runtime.fail(settings, job_id, "pose", RuntimeError("boom"), "pose-2")
    assert job_row(settings, job_id).status == FAILED


def test_worker_killed_between_commit_and_hand_over_the_redelivered_task_enqueues_the_next_stage(video_job,
                                                                                                  monkeypatch):
    """The pose stage committed ``classifying`` and its worker died before sending the classify task: the
    broker redelivers the pose task (acks late), which sends the classify task instead of leaving the
    job to wait for the sweep; the classify task then runs once, and a duplicate of it is a no-op."""
    from worker import runtime
    from worker.celery_app import CLASSIFY_TASK, REPORT_TASK
    from worker.tasks.classify import run_classify
    from worker.tasks.pose import run_pose

    settings, job_id, sent = video_job
    monkeypatch.setattr(runtime, "hand_over", lambda *a: None)  # the process dies right after the commit
    assert run_pose(settings, job_id, "pose-1") is True
    assert job_row(settings, job_id).status == CLASSIFYING
    monkeypatch.setattr(runtime, "hand_over", lambda settings, task, jid: sent.append((task, jid)))
    assert run_pose(settings, job_id, "pose-1") is False  # the redelivery
    assert sent == [(CLASSIFY_TASK, job_id)]
    assert [e[0] for e in events(settings, job_id)] == [QUEUED, EXTRACTING, CLASSIFYING]
    assert run_classify(settings, job_id, "classify-1") is True
    assert sent == [(CLASSIFY_TASK, job_id), (REPORT_TASK, job_id)]
    assert run_pose(settings, job_id, "pose-1") is False  # past classifying now: nothing is sent
    assert len(sent) == 2


# ------------------------------------------------------------------------------ delete and run again
def test_delete_job_and_rerun_rules(sqlite_db):
    """Only finished jobs are deleted or run again; a rerun shares the video, which goes with its last job."""
    from har.database import session_scope
    from har.db import Video

    job_id = new_job(sqlite_db)
    with session_scope(sqlite_db) as s:
        job = lock_job(s, job_id)
        for status in (QUEUED, EXTRACTING):
            if status != QUEUED:
                set_status(s, job, status, status)
            with pytest.raises(JobBusy):
                delete_job(s, job)
            with pytest.raises(JobBusy):
                create_rerun(s, job)
        set_status(s, job, FAILED, "boom")
        s.add(Report(job_id=job_id, kind="json", path=f"jobs/{job_id}/report.json", media_type="application/json",
                     size_bytes=2, sha256="0" * 64))
    with session_scope(sqlite_db) as s:
        rerun = create_rerun(s, lock_job(s, job_id), {"imgsz": 320})
        rerun_id, video_id = rerun.id, rerun.video_id
        assert rerun.params == {"imgsz": 320} and rerun.status == QUEUED
    with session_scope(sqlite_db) as s:  # the video stays: the rerun uses it
        assert delete_job(s, lock_job(s, job_id)) == [f"jobs/{job_id}/report.json"]
    with session_scope(sqlite_db) as s:
        assert s.get(Job, job_id) is None and s.get(Video, video_id) is not None
        assert s.scalars(select(Report)).all() == [] and s.scalars(select(JobEvent).where(
            JobEvent.job_id == job_id)).all() == []
        set_status(s, s.get(Job, rerun_id), FAILED, "boom")
    with session_scope(sqlite_db) as s:  # the last job of the video: the video goes too
        assert delete_job(s, lock_job(s, rerun_id)) == [VIDEO["path"]]
    with session_scope(sqlite_db) as s:
        assert s.scalars(select(Job)).all() == [] and s.scalars(select(Video)).all() == []


def test_tasks_for_a_deleted_job_are_no_ops(sqlite_db, monkeypatch):
    from worker import runtime
    from worker.tasks.classify import run_classify
    from worker.tasks.pose import run_pose
    from worker.tasks.report import run_report
    from worker.tasks.video import run_video

    sent = []
    monkeypatch.setattr(runtime, "hand_over", lambda settings, task, jid: sent.append((task, jid)))
    missing = "0a0a0a0a-0000-4000-8000-000000000000"
    for fn in (run_pose, run_classify, run_report, run_video):
        assert fn(sqlite_db, missing, "task-1") is False
    runtime.fail(sqlite_db, missing, "pose", RuntimeError("boom"), "task-1")  # nothing to fail: no error
    assert sent == [] and not (sqlite_db.resolved_storage_dir / "jobs" / missing).exists()


def _delete_rows(settings, job_id):
    from sqlalchemy import delete

    from har.database import session_scope

    with session_scope(settings) as s:
        s.execute(delete(Job).where(Job.id == job_id))


def test_a_job_deleted_while_a_stage_runs_ends_quietly_and_leaves_no_files(video_job, monkeypatch):
    """The web app refuses to delete a running job, but a job that disappears mid-stage anyway (deleted
    by hand) must not break the worker: the stage stops, nothing is written, its files are removed."""
    from models.pose import extract as extract_mod
    from worker import annotate
    from worker.tasks.classify import run_classify
    from worker.tasks.pose import run_pose
    from worker.tasks.report import run_report
    from worker.tasks.video import run_video

    settings, job_id, sent = video_job
    assert run_pose(settings, job_id, "pose-1") is True
    assert run_classify(settings, job_id, "classify-1") is True
    assert run_report(settings, job_id, "report-1") is True
    real_write = annotate.write_annotated_video

    def write_then_vanish(*args, **kwargs):  # a done job may be deleted while its video renders
        video = real_write(*args, **kwargs)
        assert video.path.is_file()
        _delete_rows(settings, job_id)
        return video

    monkeypatch.setattr(annotate, "write_annotated_video", write_then_vanish)
    assert run_video(settings, job_id, "video-1") is False
    job_dir = settings.resolved_storage_dir / "jobs" / job_id
    assert not job_dir.exists()
    assert rows(settings, job_id) == {"tracks": [], "predictions": [], "segments": [], "reports": [], "pose": None}

    # the same during pose extraction: the job is gone before the results are written
    from har.database import session_scope
    from har.db import Video

    with session_scope(settings) as s:  # another job for the uploaded video (its row outlived the job)
        other = create_job(s, {**VIDEO, "path": s.scalars(select(Video.path)).one()}, {}).id

    def vanish(*args, **kwargs):
        _delete_rows(settings, other)
        raise RuntimeError("decoder lost")

    monkeypatch.setattr(extract_mod, "extract_tracks", vanish)
    assert run_pose(settings, other, "pose-2") is False
    assert rows(settings, other)["tracks"] == [] and events(settings, other) == []

