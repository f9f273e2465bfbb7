"""End to end through the real stack: the web app (test client) → Redis → Celery workers (one per
queue, separate processes) → the database (SQLite, and PostgreSQL) → the reports on disk."""
from __future__ import annotations

import csv
import io
import json
import os
import shutil
import signal

import cv2
import pytest
from sqlalchemy import select

from har.db import Job, JobEvent, PoseData, Prediction, Report, Segment, Track
from har.jobs import as_utc
from har.storage import sha256_file
from models.video import sample_frames
from worker.annotate import DISPLAY_FPS

pytestmark = pytest.mark.timeout(600)

STATES = ["queued", "extracting", "classifying", "reporting", "done"]
TIMING_KEYS = {"queue_wait_s", "pose_s", "classify_s", "report_s", "total_s"}


def db_snapshot(stack, job_id) -> dict:
    with stack.session() as s:
        job = s.get(Job, job_id)
        return {
            "job": {c: getattr(job, c) for c in ("status", "error", "result", "timings", "overall_label",
                                                 "overall_confidence", "persons", "action_model", "pose_model",
                                                 "frames_done", "frames_total", "updated_at", "finished_at",
                                                 "video_status", "video_error")},
            "events": [(e.status, as_utc(e.at), e.message) for e in
                       s.scalars(select(JobEvent).where(JobEvent.job_id == job_id).order_by(JobEvent.id))],
            "tracks": {t.track_id: t.frames for t in s.scalars(select(Track).where(Track.job_id == job_id))},
            "predictions": {p.track_id: (p.label, p.confidence, p.frames, p.probabilities) for p in
                            s.scalars(select(Prediction).where(Prediction.job_id == job_id))},
            "segments": sorted((g.track_id, g.label, round(g.start_s, 3), round(g.end_s, 3), round(g.confidence, 4))
                               for g in s.scalars(select(Segment).where(Segment.job_id == job_id))),
            "reports": {r.kind: (r.path, r.media_type, r.size_bytes, r.sha256) for r in
                        s.scalars(select(Report).where(Report.job_id == job_id))},
            "report_times": {r.kind: as_utc(r.created_at) for r in
                             s.scalars(select(Report).where(Report.job_id == job_id))},
            "pose": s.scalar(select(PoseData.frames_sampled).where(PoseData.job_id == job_id)),
        }


def check_history(snap) -> None:
    assert [e[0] for e in snap["events"]] == STATES
    times = [e[1] for e in snap["events"]]
    assert times == sorted(times), "event times must not decrease"


def check_done_job(stack, job_id, expect_people: bool) -> dict:
    client = stack.client()
    detail = stack.wait_final(job_id, client=client)
    assert detail["status"] == "done", (detail, stack.log_text())
    detail = stack.wait_video(job_id, client=client)  # rendered after the job is done
    assert detail["annotated_video"] == {"status": "ready", "url": f"/api/jobs/{job_id}/video", "error": None}
    snap = db_snapshot(stack, job_id)
    check_history(snap)
    job = snap["job"]
    assert job["status"] == "done" and job["error"] is None
    assert TIMING_KEYS <= set(job["timings"]) and all(job["timings"][k] >= 0 for k in TIMING_KEYS)
    assert job["timings"]["total_s"] >= job["timings"]["pose_s"]
    assert job["pose_model"] and job["action_model"]
    assert job["frames_total"] == job["frames_done"] == snap["pose"] > 0

    # report.json = the stored result document, and it agrees with the rows
    resp = client.get(f"/api/jobs/{job_id}/report.json")
    assert resp.status_code == 200
    doc = json.loads(resp.get_data(as_text=True))
    for key in ("status", "classes", "persons", "short_tracks", "video", "params", "models"):
        assert doc[key] == job["result"][key]
    persons = doc["persons"]
    assert doc["status"] == ("ok" if expect_people else "no_person")
    assert job["persons"] == len(persons) == len(snap["predictions"])
    if expect_people:
        assert persons and snap["tracks"]
        assert job["overall_label"] in doc["classes"] + ["uncertain"]
        assert 0.0 <= job["overall_confidence"] <= 1.0
    else:
        assert persons == [] and job["overall_label"] == "no_person"
    assert {p["track_id"] for p in persons} <= set(snap["tracks"])
    for p in persons:
        label, conf, frames, probs = snap["predictions"][p["track_id"]]
        assert (label, frames) == (p["label"], p["frames"])
        assert conf == pytest.approx(p["confidence"], abs=1e-6)
        assert set(probs) == set(doc["classes"]) and sum(probs.values()) == pytest.approx(1.0, abs=1e-3)
        assert 0.0 <= p["confidence"] <= 1.0
    json_segments = sorted((p["track_id"], s["label"], round(s["start_s"], 3), round(s["end_s"], 3),
                            round(s["confidence"], 4)) for p in persons for s in p["segments"])
    assert json_segments == snap["segments"]

    # report.csv: one person row per prediction, one segment row per segment
    resp = client.get(f"/api/jobs/{job_id}/report.csv")
    assert resp.status_code == 200 and resp.headers["Content-Type"] == "text/csv; charset=utf-8"
    table = list(csv.DictReader(io.StringIO(resp.get_data(as_text=True))))
    person_rows = {int(r["track_id"]): r for r in table if r["row_type"] == "person"}
    assert set(person_rows) == set(snap["predictions"])
    for tid, r in person_rows.items():
        assert r["label"] == snap["predictions"][tid][0] and r["job_id"] == job_id
    seg_rows = sorted((int(r["track_id"]), r["label"], round(float(r["start_s"]), 3)) for r in table
                      if r["row_type"] == "segment")
    assert seg_rows == sorted((t, lab, s) for t, lab, s, _e, _c in snap["segments"])

    # report.html: a standalone page about this job
    resp = client.get(f"/api/jobs/{job_id}/report.html")
    assert resp.status_code == 200 and resp.headers["Content-Type"] == "text/html; charset=utf-8"
    html = resp.get_data(as_text=True)
    assert html.lstrip().lower().startswith("<!doctype html") and job_id[:8] in html

    # the files behind the Report rows exist and match their recorded hash
    storage = stack.storage()
    assert {"json", "csv", "html"} <= set(snap["reports"])
    for path, _media_type, size, sha in snap["reports"].values():
        p = storage.path(path)
        assert p.stat().st_size == size and sha256_file(p) == sha
    assert json.loads(storage.path(snap["reports"]["json"][0]).read_text()) == doc

    # the annotated video: playable
    # (H.264 .mp4 when ffmpeg is on PATH, else the OpenCV VP8 .webm fallback; worker/annotate.py)
    video_type, video_ext = ("video/mp4", ".mp4") if shutil.which("ffmpeg") else ("video/webm", ".webm")
    assert "video" in snap["reports"] and snap["reports"]["video"][1] == video_type
    assert snap["reports"]["video"][0].endswith(video_ext)
    # the job was done, with its reports, before its video was rendered
    done_at = next(at for status, at, _m in snap["events"] if status == "done")
    assert as_utc(job["finished_at"]) == done_at <= snap["report_times"]["json"] <= snap["report_times"]["video"]
    assert job["video_status"] == "ready" and job["video_error"] is None and "annotate_s" not in job["timings"]
    resp = client.get(f"/api/jobs/{job_id}/video")
    assert resp.status_code == 200 and resp.mimetype == video_type
    resp.close()
    cap = cv2.VideoCapture(str(storage.path(snap["reports"]["video"][0])))
    n = 0
    while cap.read()[0]:
        n += 1
    cap.release()
    # every frame of the upload at the display rate (poses, sampled more sparsely, are held between samples)
    with stack.session() as s:
        upload = storage.path(s.get(Job, job_id).video.path)
    assert n == len(list(sample_frames(upload, DISPLAY_FPS))) >= snap["pose"]
    return snap


@pytest.fixture(scope="module")
def people_job(sqlite_stack, people_video):
    job_id = sqlite_stack.upload(people_video)
    return job_id, check_done_job(sqlite_stack, job_id, expect_people=True)


def test_people_video_end_to_end_sqlite(people_job):
    job_id, snap = people_job
    assert snap["predictions"]


def test_people_video_end_to_end_postgres(postgres_stack, people_video):
    job_id = postgres_stack.upload(people_video)
    snap = check_done_job(postgres_stack, job_id, expect_people=True)
    assert snap["predictions"]


def test_no_person_video_is_done_with_status_no_person(sqlite_stack, empty_video):
    job_id = sqlite_stack.upload(empty_video)
    snap = check_done_job(sqlite_stack, job_id, expect_people=False)
    assert snap["tracks"] == {} and snap["segments"] == []


def test_duplicate_tasks_for_a_done_job_change_nothing(sqlite_stack, people_job, empty_video):
    """Late or duplicate deliveries of every stage's task, sent through the real broker."""
    from worker.celery_app import CLASSIFY_TASK, POSE_TASK, REPORT_TASK, VIDEO_TASK, send_stage

    job_id, _ = people_job
    before = db_snapshot(sqlite_stack, job_id)
    for task in (POSE_TASK, CLASSIFY_TASK, REPORT_TASK, VIDEO_TASK):
        send_stage(task, job_id, sqlite_stack.settings)
    # one worker process per queue takes messages in order: once a later job is done and its video
    # rendered, the duplicates ahead of it have been handled
    probe = sqlite_stack.upload(empty_video)
    assert sqlite_stack.wait_final(probe)["status"] == "done"
    assert sqlite_stack.wait_video(probe)["annotated_video"]["status"] == "ready"
    assert db_snapshot(sqlite_stack, job_id) == before


def test_a_failure_inside_a_task_ends_failed_with_a_reason(sqlite_stack, people_video):
    """The stored video disappears between the upload and the pose task."""
    from worker.celery_app import enqueue_job

    held: list[str] = []
    app = sqlite_stack.app
    app.config["HAR_ENQUEUE"] = held.append
    try:
        job_id = sqlite_stack.upload(people_video, client=app.test_client())
    finally:
        app.config["HAR_ENQUEUE"] = None
    assert held == [job_id]
    with sqlite_stack.session() as s:
        rel = s.get(Job, job_id).video.path
    assert sqlite_stack.storage().delete(rel)
    enqueue_job(job_id, sqlite_stack.settings)
    detail = sqlite_stack.wait_final(job_id)
    assert detail["status"] == "failed"
    snap = db_snapshot(sqlite_stack, job_id)
    assert "missing" in snap["job"]["error"]
    assert [e[0] for e in snap["events"]] == ["queued", "extracting", "failed"]
    assert snap["events"][-1][2] == snap["job"]["error"]
    resp = sqlite_stack.client().get(f"/api/jobs/{job_id}/report.json")
    assert resp.status_code == 409


def test_a_killed_worker_process_is_replaced_and_the_job_finishes(sqlite_stack, people_video):
    """acks late + reject on worker lost: kill the pool process in the middle of the pose stage;
    the message is delivered again, the stage runs again (attempt 2) and the job completes."""
    job_id = sqlite_stack.upload(people_video, imgsz=960)  # slower, so there is time to kill it

    def running():
        with sqlite_stack.session() as s:
            job = s.get(Job, job_id)
            return job.worker if job.status == "extracting" and job.worker else None

    from tests.conftest import wait_for

    holder = wait_for(running, 120, "the pose stage to start", interval=0.05)
    pid = int(holder.rsplit(":", 1)[1])
    assert pid in sqlite_stack.worker_child_pids("pose")
    os.kill(pid, signal.SIGKILL)
    snap = check_done_job(sqlite_stack, job_id, expect_people=True)
    log = sqlite_stack.logs["pose"].read_text(errors="replace")
    assert f"job {job_id}: attempt 2" in log
    assert [e[0] for e in snap["events"]] == STATES
