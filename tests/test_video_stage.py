"""The annotated video's own stage (worker/tasks/video.py), in-process with the real models: the job is done
with its reports first and the video renders after; a failed render leaves the job done with a reason;
recovery (redelivery, heartbeat, sweep, attempt limit); deleting or running again a job whose video renders."""
from __future__ import annotations

import os
import socket
from datetime import timedelta

import pytest
from sqlalchemy import select

from har.db import (
    CLASSIFYING,
    DONE,
    EXTRACTING,
    FAILED,
    QUEUED,
    RENDERING,
    REPORTING,
    Job,
    PoseData,
    Report,
    utcnow,
)
from har.jobs import (
    TransitionError,
    as_utc,
    can_transition,
    create_rerun,
    delete_job,
    lock_job,
    set_status,
    worker_state,
)
from tests.test_jobs import ORDER, broker, dead_pid, events, job_row, new_job, rows  # broker: a fixture

pytestmark = pytest.mark.timeout(300)


def done_with_reports(settings, job_id, sent) -> None:
    """Run pose, classify and report in-process: the job is done, its video not rendered yet."""
    from worker.celery_app import VIDEO_TASK
    from worker.tasks.classify import run_classify
    from worker.tasks.pose import run_pose
    from worker.tasks.report import run_report

    assert run_pose(settings, job_id, "pose-1") is True
    assert run_classify(settings, job_id, "classify-1") is True
    assert run_report(settings, job_id, "report-1") is True
    assert sent[-1] == (VIDEO_TASK, job_id)


def report_rows(settings, job_id) -> dict[str, tuple]:
    from har.database import session_scope

    with session_scope(settings) as s:
        return {r.kind: (r.path, as_utc(r.created_at)) for r in
                s.scalars(select(Report).where(Report.job_id == job_id))}


def test_the_rendering_stage_in_the_lifecycle(sqlite_db):
    """For the workers a done job whose video renders is one more stage; for its users it is done."""
    from har.database import session_scope

    assert can_transition(REPORTING, RENDERING) and can_transition(REPORTING, DONE)
    assert can_transition(RENDERING, DONE) and can_transition(RENDERING, FAILED)
    assert can_transition(RENDERING, RENDERING)
    for old, new in [(CLASSIFYING, RENDERING), (DONE, RENDERING), (RENDERING, REPORTING), (FAILED, RENDERING)]:
        assert not can_transition(old, new), (old, new)

    job_id = new_job(sqlite_db)
    with session_scope(sqlite_db) as s:
        job = s.get(Job, job_id)
        for state in (EXTRACTING, CLASSIFYING, REPORTING):
            set_status(s, job, state, state)
        assert set_status(s, job, RENDERING, "done", task_id=None) is True
        assert (job.status, job.video_status, worker_state(job)) == (DONE, "rendering", RENDERING)
        assert job.finished_at is not None and job.stage == "done"
        finished = job.finished_at
        assert set_status(s, job, FAILED, "The encoder crashed.") is True  # the video failed, not the job
        assert (job.status, job.error, job.video_status, job.video_error) == (DONE, None, "failed",
                                                                              "The encoder crashed.")
        assert worker_state(job) == DONE and job.finished_at == finished
        with pytest.raises(TransitionError):
            set_status(s, job, RENDERING)
    assert [e[0] for e in events(sqlite_db, job_id)] == ORDER  # one "done" event; the video adds none


def test_done_with_reports_first_then_the_video(video_job):
    from worker.tasks.video import run_video

    settings, job_id, sent = video_job
    done_with_reports(settings, job_id, sent)
    job = job_row(settings, job_id)
    assert (job.status, job.video_status, job.task_id, job.finished_at is not None) == (DONE, "rendering", None, True)
    assert set(report_rows(settings, job_id)) == {"json", "csv", "html"}
    assert not list((settings.resolved_storage_dir / "jobs" / job_id).glob("annotated.*"))

    assert run_video(settings, job_id, "video-1") is True
    reports = report_rows(settings, job_id)
    assert set(reports) == {"json", "csv", "html", "video"}
    done_at = next(e[2] for e in events(settings, job_id) if e[0] == DONE)
    assert done_at <= reports["json"][1] <= reports["video"][1]  # done and the reports come before the video
    job = job_row(settings, job_id)
    assert (job.status, job.video_status, job.video_error, job.task_id) == (DONE, "ready", None, None)
    assert as_utc(job.finished_at) == done_at and job.timings["video_s"] >= 0
    assert (settings.resolved_storage_dir / reports["video"][0]).is_file()
    assert run_video(settings, job_id, "video-2") is False  # a late duplicate changes nothing
    assert report_rows(settings, job_id) == reports


def test_without_an_annotated_video_there_is_no_video_stage(video_job):
    from har.database import session_scope
    from worker.celery_app import REPORT_TASK
    from worker.tasks.classify import run_classify
    from worker.tasks.pose import run_pose
    from worker.tasks.report import run_report
    from worker.tasks.video import run_video

    settings, job_id, sent = video_job
    with session_scope(settings) as s:
        s.get(Job, job_id).params = {"annotate": False}
    assert run_pose(settings, job_id, "pose-1") and run_classify(settings, job_id, "classify-1")
    assert run_report(settings, job_id, "report-1") is True
    assert sent[-1] == (REPORT_TASK, job_id)  # nothing enqueued after the report
    job = job_row(settings, job_id)
    assert (job.status, job.video_status) == (DONE, None)
    assert run_video(settings, job_id, "video-1") is False
    assert set(report_rows(settings, job_id)) == {"json", "csv", "html"}


def test_a_failed_render_leaves_the_job_done_with_the_reason(video_job, monkeypatch):
    from har.disk import disk_full_reason
    from worker import annotate
    from worker.tasks.video import run_video

    settings, job_id, sent = video_job
    done_with_reports(settings, job_id, sent)
    before = events(settings, job_id)

    def broken(*args, **kwargs):
        raise annotate.EncoderError("ffmpeg failed (exit 1): No space left on device")

    monkeypatch.setattr(annotate, "write_annotated_video", broken)
    assert run_video(settings, job_id, "video-1") is False
    job = job_row(settings, job_id)
    assert (job.status, job.error, job.video_status, job.task_id) == (DONE, None, "failed", None)
    # ffmpeg's own message says why: the reason given is the full disk's (har.disk)
    assert job.video_error == disk_full_reason("video")
    assert events(settings, job_id) == before
    assert set(report_rows(settings, job_id)) == {"json", "csv", "html"}  # the reports stay
    assert run_video(settings, job_id, "video-2") is False  # the failure is final


def test_a_render_without_its_pose_data_fails_with_a_reason(video_job):
    from har.database import session_scope
    from worker.tasks.video import run_video

    settings, job_id, sent = video_job
    done_with_reports(settings, job_id, sent)
    with session_scope(settings) as s:
        s.delete(s.get(PoseData, job_id))
    assert run_video(settings, job_id, "video-1") is False
    job = job_row(settings, job_id)
    assert (job.status, job.video_status) == (DONE, "failed") and "pose data" in job.video_error


def test_a_redelivered_render_runs_again_and_a_live_one_is_not_doubled(video_job):
    """acks late: the worker died mid-render and the broker delivers the task again (attempt 2); a duplicate
    while a live worker renders is skipped; the heartbeat keeps the render alive until it ends."""
    from har.database import session_scope
    from worker import runtime
    from worker.tasks.video import run_video

    settings, job_id, sent = video_job
    done_with_reports(settings, job_id, sent)
    first = runtime.claim(settings, job_id, "video", "video-1")
    assert first is not None and first.attempt == 1
    assert runtime.beat(settings, job_id, "video-1") is True  # a done job's render beats like a stage
    job = job_row(settings, job_id)
    assert (job.status, job.task_id, job.stage) == (DONE, "video-1", "done; rendering the annotated video")
    with session_scope(settings) as s:
        s.get(Job, job_id).worker = f"{socket.gethostname()}:{os.getppid()}"  # alive, in another process
    assert run_video(settings, job_id, "video-2") is False
    assert job_row(settings, job_id).task_id == "video-1"
    with session_scope(settings) as s:
        s.get(Job, job_id).worker = f"{socket.gethostname()}:{dead_pid()}"  # ... and then it died
    assert run_video(settings, job_id, "video-1") is True
    job = job_row(settings, job_id)
    assert (job.video_status, job.attempts, job.stage) == ("ready", 2, "done")
    assert runtime.beat(settings, job_id, "video-1") is False  # over: nothing left to beat for


def test_a_render_that_keeps_killing_its_worker_gives_up_and_the_job_stays_done(video_job):
    from har.database import session_scope
    from worker.tasks.video import run_video

    settings, job_id, sent = video_job
    done_with_reports(settings, job_id, sent)
    with session_scope(settings) as s:
        job = s.get(Job, job_id)
        job.task_id, job.attempts = "video-1", settings.max_attempts
        job.worker, job.heartbeat_at = f"{socket.gethostname()}:{dead_pid()}", utcnow()
    assert run_video(settings, job_id, "video-1") is False
    job = job_row(settings, job_id)
    assert (job.status, job.video_status) == (DONE, "failed")
    assert job.video_error.startswith(f"Gave up after {settings.max_attempts} attempts at the video stage")


def rendering_job(settings, **fields) -> str:
    """A done job whose annotated video is to be rendered (as the report stage leaves it)."""
    from har.database import session_scope

    job_id = new_job(settings)
    with session_scope(settings) as s:
        job = s.get(Job, job_id)
        for state in (EXTRACTING, CLASSIFYING, REPORTING):
            set_status(s, job, state, state)
        set_status(s, job, RENDERING, "done", task_id=None, worker=None)
        for name, value in fields.items():
            setattr(job, name, value)
    return job_id


def test_sweep_requeues_a_dead_render_and_fails_an_exhausted_one(broker):
    """The render's worker died (no heartbeat): the sweep enqueues the video task again, or once the render
    used its attempts marks the video failed with the reason; a render never stays ``rendering``."""
    from har.database import session_scope
    from worker import runtime
    from worker.celery_app import VIDEO_TASK
    from worker.sweep import sweep

    settings, state = broker
    now = utcnow()
    old = now - timedelta(hours=1)
    me = socket.gethostname()
    lost = rendering_job(settings, task_id="video-1", attempts=1, worker=f"{me}:{dead_pid()}", heartbeat_at=old)
    exhausted = rendering_job(settings, task_id="video-1", attempts=settings.max_attempts,
                              worker=f"{me}:{dead_pid()}", heartbeat_at=old)
    alive = rendering_job(settings, task_id="video-1", attempts=1, worker=f"{me}:{os.getppid()}", heartbeat_at=now)
    unsent = rendering_job(settings, created_at=old, updated_at=old, heartbeat_at=old)  # hand-over never got out
    ready = rendering_job(settings)
    with session_scope(settings) as s:
        set_status(s, lock_job(s, ready), DONE, "done")
    state["sent"].clear()
    assert dict(sweep(settings, now=now)) == {lost: "requeued", exhausted: "failed", unsent: "requeued"}
    assert sorted(state["sent"]) == sorted([(VIDEO_TASK, lost), (VIDEO_TASK, unsent)])
    assert job_row(settings, lost).worker is None and job_row(settings, lost).enqueued_at is not None
    job = job_row(settings, exhausted)
    assert (job.status, job.video_status) == (DONE, "failed") and "Gave up after" in job.video_error
    assert job_row(settings, alive).video_status == "rendering"
    assert sweep(settings, now=now + timedelta(seconds=1)) == []
    claimed = runtime.claim(settings, lost, "video", "video-2")  # the requeued render: its next attempt
    assert claimed is not None and claimed.attempt == 2


def delete_as_the_web_app_does(settings, job_id) -> None:
    """web.actions.delete_job: the rows in one transaction, then the files."""
    from har.database import session_scope
    from har.storage import Storage

    with session_scope(settings) as s:
        files = delete_job(s, lock_job(s, job_id))
    Storage(settings.resolved_storage_dir).delete_job_files(job_id, files)


def test_a_job_whose_video_renders_can_be_deleted_or_run_again(video_job, monkeypatch):
    """It is done: deleting it is allowed, and its render then stops quietly and leaves no files behind;
    running it again makes a new job with its own video to come."""
    from har.database import session_scope
    from worker import annotate
    from worker.tasks.video import run_video

    settings, job_id, sent = video_job
    done_with_reports(settings, job_id, sent)
    with session_scope(settings) as s:
        rerun = create_rerun(s, lock_job(s, job_id))
        rerun_id = rerun.id
        assert (rerun.status, rerun.video_status) == (QUEUED, None)
    delete_as_the_web_app_does(settings, job_id)
    assert run_video(settings, job_id, "video-1") is False  # the job is gone before the render starts
    assert not (settings.resolved_storage_dir / "jobs" / job_id).exists()
    assert job_row(settings, rerun_id).video_status is None

    # deleted while rendering: the render finishes writing, finds the job gone and removes its files
    done_with_reports(settings, rerun_id, sent)
    real_write = annotate.write_annotated_video

    def write_then_deleted(*args, **kwargs):
        video = real_write(*args, **kwargs)
        delete_as_the_web_app_does(settings, rerun_id)
        return video

    monkeypatch.setattr(annotate, "write_annotated_video", write_then_deleted)
    assert run_video(settings, rerun_id, "video-2") is False
    assert not (settings.resolved_storage_dir / "jobs" / rerun_id).exists()
    assert rows(settings, rerun_id)["reports"] == []
