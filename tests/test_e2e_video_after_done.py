"""The annotated video never delays "done", through the real stack: a stack whose ``video`` queue has no worker
yet finishes its jobs, with their reports downloadable and the video shown as rendering; once a video worker
starts, the videos are rendered (or fail with a reason while the job stays done). On local files and on S3 storage
(the video worker then reads the upload from the bucket and stores the video there)."""
from __future__ import annotations

import re

import pytest
from sqlalchemy import delete, select

from har.db import PoseData, Report
from har.jobs import as_utc
from models.video import sample_frames
from tests.conftest import S3_PREFIX, Stack, new_bucket
from tests.test_e2e import STATES, db_snapshot, frame_count
from worker.annotate import DISPLAY_FPS

pytestmark = pytest.mark.timeout(600)


REDIS_DB = {"local": 2, "s3": 12}


@pytest.fixture(scope="module", params=list(REDIS_DB))
def stack_without_video_worker(request, tmp_path_factory, redis_server):
    """A stack (on local files, or on S3 storage with workers of their own data dir) with no video worker yet."""
    storage = {}
    if request.param == "s3":
        endpoint = request.getfixturevalue("s3_server")
        storage = dict(storage_url=f"s3://{new_bucket(endpoint)}/{S3_PREFIX}", s3_endpoint_url=endpoint)
    name = f"video-later-{request.param}"
    base = tmp_path_factory.mktemp(f"stack-{name}")
    stack = Stack(name, base, f"sqlite:///{base / 'har.sqlite3'}", f"{redis_server}/{REDIS_DB[request.param]}",
                  **storage)
    assert stack.storage().kind == ("s3" if storage else "local")
    queues = stack.queues
    assert stack.settings.video_queue == "video" and stack.settings.video_queue in queues
    stack.start(queues=tuple(q for q in queues if q != stack.settings.video_queue))
    yield stack
    stack.stop()


def visible_text(html: str) -> str:
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", html))


def test_reports_are_done_before_the_video_is_rendered(stack_without_video_worker, people_video):
    stack = stack_without_video_worker
    client = stack.client()
    job_id = stack.upload(people_video)
    broken_id = stack.upload(people_video)  # its pose data goes before its render: that video fails
    for jid in (job_id, broken_id):
        assert stack.wait_final(jid, client=client)["status"] == "done", stack.log_text()

    # done, with its results and reports, while nothing has rendered the video yet
    detail = client.get(f"/api/jobs/{job_id}").get_json()
    assert detail["final"] is True and detail["result"]["persons"]
    assert detail["annotated_video"] == {"status": "rendering", "url": None, "error": None}
    assert detail["links"]["video"] is None
    for fmt in ("json", "csv", "html"):
        resp = client.get(f"/api/jobs/{job_id}/report.{fmt}?download=1")
        assert resp.status_code == 200 and len(resp.data) > 100, fmt
    resp = client.get(f"/api/jobs/{job_id}/video")
    assert resp.status_code == 404 and resp.get_json()["video_status"] == "rendering"
    page = client.get(f"/jobs/{job_id}").get_data(as_text=True)
    assert "Rendering the annotated video…" in visible_text(page) and "<video" not in page
    listing = client.get("/jobs").get_data(as_text=True)
    assert listing.count('<span class="badge badge-done">done</span>') == 2
    snap = db_snapshot(stack, job_id)
    assert set(snap["reports"]) == {"json", "csv", "html"}
    assert [e[0] for e in snap["events"]] == STATES and snap["job"]["video_status"] == "rendering"

    with stack.session() as s:
        s.execute(delete(PoseData).where(PoseData.job_id == broken_id))

    # a video worker starts: the waiting renders run
    stack.start_worker(stack.settings.video_queue)
    stack.wait_ready()
    detail = stack.wait_video(job_id, client=client)
    assert detail["status"] == "done"
    assert detail["annotated_video"] == {"status": "ready", "url": f"/api/jobs/{job_id}/video", "error": None}
    resp = client.get(f"/api/jobs/{job_id}/video")
    assert resp.status_code == 200 and resp.mimetype in ("video/mp4", "video/webm")
    resp.close()
    after = db_snapshot(stack, job_id)
    assert after["events"] == snap["events"]  # the video changed no state of the job
    times = after["report_times"]
    assert max(times[k] for k in ("json", "csv", "html")) <= times["video"]
    with stack.session() as s:
        video_path = s.scalar(select(Report.path).where(Report.job_id == job_id, Report.kind == "video"))
    frames = frame_count(stack.storage(), video_path)
    # the video's own frames at the display rate, whatever the pose sampling rate (poses are held between samples)
    assert after["pose"] < frames == len(list(sample_frames(people_video, DISPLAY_FPS)))
    page = client.get(f"/jobs/{job_id}").get_data(as_text=True)
    assert '<video id="player"' in page and "Rendering the annotated video" not in page

    broken = stack.wait_video(broken_id, client=client)
    assert broken["status"] == "done" and broken["error"] is None
    assert broken["annotated_video"]["status"] == "failed"
    assert "pose data" in broken["annotated_video"]["error"]
    assert client.get(f"/api/jobs/{broken_id}/report.json").status_code == 200
    page = visible_text(client.get(f"/jobs/{broken_id}").get_data(as_text=True))
    assert "The annotated video could not be rendered." in page
    assert as_utc(db_snapshot(stack, broken_id)["job"]["finished_at"]) is not None


# about the sweep and the database, not the storage: on local files only
@pytest.mark.parametrize("stack_without_video_worker", ["local"], indirect=True)
def test_the_sweep_sends_a_dead_render_again(stack_without_video_worker, people_video):
    """The worker rendering a video died and its message is gone: the sweep enqueues the render again and a
    video worker renders it (attempt 2)."""
    import socket
    from datetime import timedelta

    from har.db import Job, utcnow
    from tests.test_jobs import dead_pid
    from worker.sweep import sweep

    stack = stack_without_video_worker
    if stack.settings.video_queue not in stack.workers:
        stack.start_worker(stack.settings.video_queue)
        stack.wait_ready()
    job_id = stack.upload(people_video)
    assert stack.wait_final(job_id)["status"] == "done"
    assert stack.wait_video(job_id)["annotated_video"]["status"] == "ready"
    with stack.session() as s:  # as a render whose worker died midway leaves the job
        s.execute(delete(Report).where(Report.job_id == job_id, Report.kind == "video"))
        job = s.get(Job, job_id)
        job.video_status, job.task_id, job.attempts = "rendering", "dead-render", 1
        job.worker, job.heartbeat_at = f"{socket.gethostname()}:{dead_pid()}", utcnow() - timedelta(hours=1)
    actions = dict(sweep(stack.settings))
    assert actions.get(job_id) in ("requeued", None)  # None: a worker's own sweep got there first
    detail = stack.wait_video(job_id)
    assert detail["annotated_video"]["status"] == "ready" and detail["status"] == "done"
    assert detail["attempts"] == 2
    assert f"video: job {job_id}: attempt 2" in stack.logs[stack.settings.video_queue].read_text(errors="replace")
