"""End to end through the real stack: the web app (test client) → Redis → Celery workers (one per
queue, separate processes) → the database (SQLite, and PostgreSQL) → the stored files.

The tests that involve the stored files run on both storage backends (the ``stack`` fixture): local files that
the web app and the workers share (``sqlite_stack``), and an S3 bucket (``s3_stack``), whose workers have a data
directory of their own and share nothing with the web app but the database, Redis and storage URLs. They read the
stored files through the storage interface only."""
from __future__ import annotations

import csv
import hashlib
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
from models.video import sample_frames
from worker.annotate import DISPLAY_FPS

pytestmark = pytest.mark.timeout(600)

STATES = ["queued", "extracting", "classifying", "reporting", "done"]
TIMING_KEYS = {"queue_wait_s", "pose_s", "pose_cpu_s", "pose_decode_cpu_s", "classify_s", "report_s", "total_s"}
STACKS = {"local": "sqlite_stack", "s3": "s3_stack"}  # storage backend → the stack that uses it


@pytest.fixture(scope="module", params=list(STACKS))
def stack(request):
    """The stack on each storage backend in turn."""
    return request.getfixturevalue(STACKS[request.param])


def frame_count(storage, key: str) -> int:
    """How many frames OpenCV decodes from the stored video ``key``."""
    with storage.local_copy(key) as path:
        cap = cv2.VideoCapture(str(path))
        n = 0
        while cap.read()[0]:
            n += 1
        cap.release()
    return n


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
    assert job["timings"]["pose_cpu_s"] >= job["timings"]["pose_decode_cpu_s"]
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

    # the files behind the Report rows are stored, match their recorded size and hash, and are what the
    # downloads serve
    storage = stack.storage()
    assert {"json", "csv", "html"} <= set(snap["reports"])
    stored = {}
    for kind, (path, _media_type, size, sha) in snap["reports"].items():
        assert path.startswith(f"jobs/{job_id}/"), (kind, path)
        stored[kind] = storage.read_bytes(path)
        assert len(stored[kind]) == size and hashlib.sha256(stored[kind]).hexdigest() == sha, kind
    assert json.loads(stored["json"]) == doc
    for kind in ("json", "csv", "html"):
        assert client.get(f"/api/jobs/{job_id}/report.{kind}").data == stored[kind], kind

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
    assert resp.status_code == 200 and resp.mimetype == video_type and resp.data == stored["video"]
    resp.close()
    # every frame of the upload at the display rate (poses, sampled more sparsely, are held between samples)
    with stack.session() as s:
        upload = s.get(Job, job_id).video.path
    with storage.local_copy(upload) as path:
        expected = len(list(sample_frames(path, DISPLAY_FPS)))
    assert frame_count(storage, snap["reports"]["video"][0]) == expected >= snap["pose"]
    return snap


@pytest.fixture(scope="module")
def people_job(stack, people_video):
    job_id = stack.upload(people_video)
    return job_id, check_done_job(stack, job_id, expect_people=True)


def test_people_video_end_to_end(people_job):
    job_id, snap = people_job
    assert snap["predictions"]


def test_people_video_end_to_end_postgres(postgres_stack, people_video):
    job_id = postgres_stack.upload(people_video)
    snap = check_done_job(postgres_stack, job_id, expect_people=True)
    assert snap["predictions"]


def test_no_person_video_is_done_with_status_no_person(stack, empty_video):
    job_id = stack.upload(empty_video)
    snap = check_done_job(stack, job_id, expect_people=False)
    assert snap["tracks"] == {} and snap["segments"] == []


def test_duplicate_tasks_for_a_done_job_change_nothing(stack, people_job, empty_video):
    """Late or duplicate deliveries of every stage's task, sent through the real broker."""
    from worker.celery_app import CLASSIFY_TASK, POSE_TASK, REPORT_TASK, VIDEO_TASK, send_stage

    job_id, _ = people_job
    before = db_snapshot(stack, job_id)
    stored = {kind: stack.storage().read_bytes(path) for kind, (path, *_rest) in before["reports"].items()}
    for task in (POSE_TASK, CLASSIFY_TASK, REPORT_TASK, VIDEO_TASK):
        send_stage(task, job_id, stack.settings)
    # one worker process per queue takes messages in order: once a later job is done and its video
    # rendered, the duplicates ahead of it have been handled
    probe = stack.upload(empty_video)
    assert stack.wait_final(probe)["status"] == "done"
    assert stack.wait_video(probe)["annotated_video"]["status"] == "ready"
    assert db_snapshot(stack, job_id) == before
    assert {kind: stack.storage().read_bytes(path) for kind, (path, *_rest) in before["reports"].items()} == stored


def test_a_rerun_reuses_the_stored_upload_and_deleting_it_keeps_the_first_jobs_files(stack, people_job):
    """A re-run is a new job for the same stored upload: the workers read it again (on S3, from the bucket) and
    store reports of their own. Deleting the re-run removes its own files only: the upload, which the first job
    still uses, and the first job's reports stay."""
    job_id, first = people_job
    client = stack.client()
    storage = stack.storage()
    r = client.post(f"/api/jobs/{job_id}/rerun")
    assert r.status_code == 202, r.get_data(as_text=True)
    rerun_id = r.get_json()["id"]
    assert rerun_id != job_id
    snap = check_done_job(stack, rerun_id, expect_people=True)
    with stack.session() as s:
        upload = s.get(Job, job_id).video.path
        assert s.get(Job, rerun_id).video.path == upload
    assert snap["job"]["result"]["video"] == first["job"]["result"]["video"]  # the same video, read again
    mine = [path for path, *_rest in snap["reports"].values()]
    theirs = [path for path, *_rest in first["reports"].values()]
    assert not set(mine) & set(theirs)

    r = client.delete(f"/api/jobs/{rerun_id}")
    assert r.status_code == 204, r.get_data(as_text=True)
    assert client.get(f"/api/jobs/{rerun_id}").status_code == 404
    assert not any(storage.exists(path) for path in mine)
    assert storage.delete_prefix(storage.job_prefix(rerun_id)) == 0  # nothing else was left under the job's folder
    assert storage.exists(upload) and all(storage.exists(path) for path in theirs)
    for kind in ("json", "csv", "html"):
        assert client.get(f"/api/jobs/{job_id}/report.{kind}").status_code == 200, kind
    assert client.get(f"/api/jobs/{job_id}/video").status_code == 200


def test_deleting_the_last_job_of_an_upload_removes_every_stored_file(stack, empty_video):
    client = stack.client()
    storage = stack.storage()
    job_id = stack.upload(empty_video, client=client)
    assert stack.wait_final(job_id, client=client)["status"] == "done", stack.log_text()
    assert stack.wait_video(job_id, client=client)["annotated_video"]["status"] == "ready", stack.log_text()
    with stack.session() as s:
        upload = s.get(Job, job_id).video.path
    keys = [upload] + [path for path, *_rest in db_snapshot(stack, job_id)["reports"].values()]
    assert len(keys) == 5 and all(storage.exists(k) for k in keys)

    r = client.delete(f"/api/jobs/{job_id}")
    assert r.status_code == 204, r.get_data(as_text=True)
    assert not any(storage.exists(k) for k in keys)
    assert storage.delete_prefix(storage.job_prefix(job_id)) == 0
    assert client.get(f"/api/jobs/{job_id}").status_code == 404
    assert client.get(f"/api/jobs/{job_id}/report.json").status_code == 404
    with stack.session() as s:
        assert s.get(Job, job_id) is None


def test_a_failure_inside_a_task_ends_failed_with_a_reason(stack, people_video):
    """The stored video disappears between the upload and the pose task."""
    from worker.celery_app import enqueue_job

    held: list[str] = []
    app = stack.app
    app.config["HAR_ENQUEUE"] = held.append
    try:
        job_id = stack.upload(people_video, client=app.test_client())
    finally:
        app.config["HAR_ENQUEUE"] = None
    assert held == [job_id]
    with stack.session() as s:
        rel = s.get(Job, job_id).video.path
    assert stack.storage().delete(rel)
    assert not stack.storage().exists(rel)
    enqueue_job(job_id, stack.settings)
    detail = stack.wait_final(job_id)
    assert detail["status"] == "failed"
    snap = db_snapshot(stack, job_id)
    assert "missing" in snap["job"]["error"]
    assert [e[0] for e in snap["events"]] == ["queued", "extracting", "failed"]
    assert snap["events"][-1][2] == snap["job"]["error"]
    resp = stack.client().get(f"/api/jobs/{job_id}/report.json")
    assert resp.status_code == 409


def pose_holder(stack, job_id) -> str | None:
    """``host:pid`` of the pool process running the job's pose stage, None while it is not in that stage."""
    with stack.session() as s:
        job = s.get(Job, job_id)
        return job.worker if job.status == "extracting" and job.worker else None


def test_a_killed_worker_process_is_replaced_and_the_job_finishes(stack, people_video):
    """acks late + reject on worker lost: kill the pool process in the middle of the pose stage;
    the message is delivered again, the stage runs again (attempt 2: on S3, from a fresh copy of the upload)
    and the job completes."""
    job_id = stack.upload(people_video, imgsz=960)  # slower, so there is time to kill it

    from tests.conftest import wait_for

    holder = wait_for(lambda: pose_holder(stack, job_id), 120, "the pose stage to start", interval=0.05)
    pid = int(holder.rsplit(":", 1)[1])
    assert pid in stack.worker_child_pids("pose")
    os.kill(pid, signal.SIGKILL)
    snap = check_done_job(stack, job_id, expect_people=True)
    log = stack.logs["pose"].read_text(errors="replace")
    assert f"job {job_id}: attempt 2" in log
    assert [e[0] for e in snap["events"]] == STATES


def test_a_worker_stopped_with_sigterm_hands_its_stage_back_at_once(sqlite_stack, people_video):
    """``docker stop`` / the runner's Ctrl-C: SIGTERM to a pose worker in the middle of a stage stops the stage
    after the shutdown grace and puts its message back in the queue, so a second pose worker takes the job over at
    once (attempt 2) rather than after the stopped worker's heartbeat has gone stale (HAR_STALE_AFTER_S, 120 s here,
    and the sweep's period after that)."""
    import subprocess

    from tests.conftest import wait_for

    stack = sqlite_stack
    stack.start_worker(stack.settings.pose_queue, key="pose-second")
    second = stack.workers["pose-second"]
    try:
        stack.wait_ready()
        # long and slow enough that the stage is still running when the worker is stopped, and after its grace
        longer = stack.base / "people-looped.mp4"
        subprocess.run(["ffmpeg", "-v", "error", "-y", "-stream_loop", "7", "-i", str(people_video), "-c", "copy",
                        str(longer)], check=True)
        job_id = stack.upload(longer, imgsz=960)

        def holder():
            return pose_holder(stack, job_id)

        first = wait_for(holder, 120, "the pose stage to start", interval=0.05)
        pid = int(first.rsplit(":", 1)[1])
        mine = pid in stack.worker_child_pids("pose")
        stopped = stack.workers["pose"] if mine else second
        os.kill(stopped.pid, signal.SIGTERM)  # the main process, as `docker stop` does
        assert stopped.wait(60) == 0  # a clean exit, not a kill
        # another worker holds the stage well before the stopped one's heartbeat could count as stale
        taken = wait_for(lambda: (h := holder()) not in (None, first) and h, 90, "another worker to take the stage",
                         interval=0.1)
        assert taken != first
        snap = check_done_job(stack, job_id, expect_people=True)
        assert [e[0] for e in snap["events"]] == STATES
        took_over = stack.logs["pose" if stopped is second else "pose-second"]
        assert f"job {job_id}: attempt 2" in took_over.read_text(errors="replace")
    finally:
        stack.workers.pop("pose-second")
        if second.poll() is None:
            os.killpg(second.pid, signal.SIGTERM)
            second.wait(60)
        if stack.workers["pose"].poll() is not None:  # the shared stack gets its pose worker back
            stack.start_worker("pose")
            stack.wait_ready()
