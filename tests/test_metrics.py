"""Monitoring: ``/metrics`` (Prometheus, web/metrics.py), ``/healthz`` and ``/readyz`` (web/health.py), and the job
id on the log lines (har/logcontext.py).

Through the real stack (the web app's test client → Redis → Celery workers in their own processes → SQLite), and,
for the metrics' SQL, on rows written straight into SQLite and PostgreSQL.
"""
from __future__ import annotations

import dataclasses
import logging
import re
from datetime import datetime, timedelta, timezone

import pytest
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import func, select

from har.database import dispose_engines, session_scope
from har.db import STATES, Job, Video
from tests.conftest import Stack
from tests.test_web_api import add_finished_job_with_files, add_job, make_app, make_settings

pytestmark = pytest.mark.timeout(600)

STAGES = ("pose", "classify", "report", "video")
STAGE_TIMING = {"pose": "pose_s", "classify": "classify_s", "report": "report_s", "video": "video_s"}
DEAD_REDIS = "redis://127.0.0.1:1/0"


# ------------------------------------------------------------------------------------------- helpers
def scrape(client, headers=None) -> dict[str, dict[tuple, float]]:
    """``GET /metrics`` parsed by prometheus_client: {sample name: {sorted label pairs: value}}."""
    resp = client.get("/metrics", headers=headers or {})
    assert resp.status_code == 200, resp.get_data(as_text=True)
    assert resp.headers["Content-Type"].startswith("text/plain")
    samples: dict[str, dict[tuple, float]] = {}
    for family in text_string_to_metric_families(resp.get_data(as_text=True)):
        for s in family.samples:
            samples.setdefault(s.name, {})[tuple(sorted(s.labels.items()))] = s.value
    return samples


def value(samples, name: str, **labels) -> float:
    return samples[name][tuple(sorted(labels.items()))]


def label_values(samples, name: str, label: str) -> set[str]:
    return {dict(key)[label] for key in samples.get(name, {})}


def db_states(settings) -> dict[str, int]:
    with session_scope(settings) as s:
        counts = dict(s.execute(select(Job.status, func.count()).group_by(Job.status)).all())
    return {state: counts.get(state, 0) for state in STATES}


def check_job_states(samples, settings) -> None:
    assert {state: value(samples, "har_jobs", state=state) for state in STATES} == db_states(settings)


def check_histogram(samples, name: str, **labels) -> tuple[int, float]:
    """The histogram's count and sum, after checking its buckets are cumulative and end at the count."""
    buckets = sorted(((float(dict(k)["le"]), v) for k, v in samples[f"{name}_bucket"].items()
                      if all(dict(k).get(n) == lv for n, lv in labels.items())), key=lambda b: b[0])
    assert buckets and buckets[-1][0] == float("inf")
    counts = [v for _le, v in buckets]
    assert counts == sorted(counts), f"{name}{labels}: buckets must be cumulative"
    count = value(samples, f"{name}_count", **labels)
    assert counts[-1] == count
    return int(count), value(samples, f"{name}_sum", **labels)


def tagged_lines(log_text: str, job_id: str) -> list[str]:
    return [line for line in log_text.splitlines() if f" job={job_id} " in line]


def check_tags_name_the_right_job(log_text: str) -> None:
    """A tagged line that names a job in its message ("job <id>") names the job of its tag: never a stale one."""
    for line in log_text.splitlines():
        tag = re.search(r" job=(\S+) ", line)
        if tag:
            for named in re.findall(r"\bjob ([0-9a-f]{8}-[0-9a-f-]{27})\b", line):
                assert named == tag.group(1), line


# ------------------------------------------------------------------------------------ the real stack
@pytest.fixture(scope="module")
def monitored_stack(tmp_path_factory, redis_server):
    """A stack of its own (Redis database 9) whose ``video`` queue has no worker at first."""
    import redis

    base = tmp_path_factory.mktemp("stack-metrics")
    stack = Stack("metrics", base, f"sqlite:///{base / 'har.sqlite3'}", f"{redis_server}/9")
    redis.Redis.from_url(stack.settings.redis_url).flushdb()
    stack.start(queues=tuple(q for q in stack.queues if q != stack.settings.video_queue))
    yield stack
    stack.stop()


def test_metrics_and_logs_follow_jobs_through_the_real_stack(monitored_stack, people_video):
    from worker.celery_app import enqueue_job

    stack = monitored_stack
    client = stack.client()
    done_id = stack.upload(people_video, client=client)

    # a job whose processing fails: its stored video disappears between the upload and the pose task
    held: list[str] = []
    stack.app.config["HAR_ENQUEUE"] = held.append
    try:
        failed_id = stack.upload(people_video, client=client)
    finally:
        stack.app.config["HAR_ENQUEUE"] = None
    with stack.session() as s:
        rel = s.get(Job, failed_id).video.path
    assert stack.storage().delete(rel)
    enqueue_job(failed_id, stack.settings)

    assert stack.wait_final(done_id, client=client)["status"] == "done"
    failed = stack.wait_final(failed_id, client=client)
    assert failed["status"] == "failed" and "missing" in failed["error"]

    # no worker consumes the video queue yet: the done job's render waits there, and is counted
    m = scrape(client)
    assert value(m, "har_queue_messages", queue="video") == 1
    assert label_values(m, "har_queue_messages", "queue") == {"pose", "classify", "video", "webhook"}
    assert label_values(m, "har_queue_unacked_messages", "queue") == {"pose", "classify", "video", "webhook"}
    assert value(m, "har_jobs_waiting", stage="video") == 1
    assert value(m, "har_annotated_videos", status="rendering") == 1
    check_job_states(m, stack.settings)
    assert value(m, "har_jobs", state="done") == value(m, "har_jobs", state="failed") == 1
    assert value(m, "har_job_failures_total", reason="input_missing") == 1
    assert sum(m["har_job_failures_total"].values()) == 1
    assert value(m, "har_metrics_source_up", source="database") == value(m, "har_metrics_source_up", source="redis") == 1
    assert "har_stage_duration_seconds_count" in m and value(m, "har_stage_duration_seconds_count", stage="video") == 0

    # a video worker starts: the render runs, the queue empties, every stage has a duration
    stack.start_worker(stack.settings.video_queue)
    stack.wait_ready()
    assert stack.wait_video(done_id, client=client)["annotated_video"]["status"] == "ready"
    m = scrape(client)
    assert value(m, "har_queue_messages", queue="video") == 0
    assert value(m, "har_jobs_waiting", stage="video") == 0
    assert value(m, "har_annotated_videos", status="ready") == 1
    check_job_states(m, stack.settings)
    assert value(m, "har_job_failures_total", reason="input_missing") == 1
    with stack.session() as s:
        timings = [t or {} for t in s.scalars(select(Job.timings))]
        uploads = s.execute(select(func.count(), func.sum(Video.size_bytes)).select_from(Video)).one()
    for stage in STAGES:
        count, total = check_histogram(m, "har_stage_duration_seconds", stage=stage)
        assert count >= 1, stage
        assert count == sum(STAGE_TIMING[stage] in t for t in timings), stage
        assert total == pytest.approx(sum(t.get(STAGE_TIMING[stage], 0.0) for t in timings), abs=1e-6)
    assert check_histogram(m, "har_job_duration_seconds")[0] == 1
    assert check_histogram(m, "har_job_queue_wait_seconds")[0] == 1
    assert (value(m, "har_uploads"), value(m, "har_uploads_bytes")) == (uploads[0], uploads[1])
    assert value(m, "har_reports_bytes", kind="video") > 0 and value(m, "har_reports_bytes", kind="json") > 0
    assert value(m, "har_storage_free_bytes") > 0
    assert value(m, "har_storage_min_free_bytes") == stack.settings.min_free_mb * 1024 * 1024

    # the workers' log lines while a job is handled carry its id (and only its id)
    pose_log = stack.logs[stack.settings.pose_queue].read_text(errors="replace")
    done_lines = tagged_lines(pose_log, done_id)
    assert any("Task har.pose[" in line and "succeeded" in line for line in done_lines), pose_log[-3000:]
    assert any(f"pose: job {failed_id} failed" in line for line in tagged_lines(pose_log, failed_id)), pose_log[-3000:]
    assert not [line for line in pose_log.splitlines() if " ready." in line and " job=" in line]
    video_log = stack.logs[stack.settings.video_queue].read_text(errors="replace")
    assert any("Task har.video[" in line and "succeeded" in line for line in tagged_lines(video_log, done_id))
    classify_log = stack.logs[stack.settings.classify_queue].read_text(errors="replace")
    assert any("Task har.report[" in line for line in tagged_lines(classify_log, done_id))
    for text in (pose_log, classify_log, video_log):
        check_tags_name_the_right_job(text)


def test_healthz_and_readyz_on_the_real_stack(monitored_stack):
    stack = monitored_stack
    client = stack.client()
    resp = client.get("/healthz")
    assert resp.status_code == 200 and resp.get_json() == {"status": "ok"}
    resp = client.get("/readyz")
    assert resp.status_code == 200, resp.get_json()
    body = resp.get_json()
    assert body["status"] == "ok" and body["failed"] == []
    assert {name: check["ok"] for name, check in body["checks"].items()} == {"database": True, "redis": True,
                                                                            "storage": True}
    assert not list(stack.settings.resolved_storage_dir.glob(".check-*"))  # the probe file is removed

    # the same database and storage, but Redis unreachable: alive, not ready, and the metrics say which source
    from web import create_app

    app = create_app(dataclasses.replace(stack.settings, redis_url=DEAD_REDIS), TESTING=True)
    client = app.test_client()
    assert client.get("/healthz").status_code == 200
    resp = client.get("/readyz")
    assert resp.status_code == 503
    body = resp.get_json()
    assert body["status"] == "unavailable" and body["failed"] == ["redis"]
    assert body["checks"]["redis"]["ok"] is False and body["checks"]["redis"]["error"]
    assert body["checks"]["database"] == {"ok": True} and body["checks"]["storage"] == {"ok": True}
    m = scrape(client)
    assert value(m, "har_metrics_source_up", source="redis") == 0
    assert value(m, "har_metrics_source_up", source="database") == 1
    assert "har_queue_messages" not in m
    check_job_states(m, stack.settings)


# ------------------------------------------------------------------------ the metrics' SQL, on known rows
@pytest.fixture(params=["sqlite", "postgresql"])
def seeded_settings(request, tmp_path):
    """Settings (Redis unreachable) on a migrated database of the given kind, in a database of its own."""
    if request.param == "sqlite":
        settings = make_settings(tmp_path, redis_url=DEAD_REDIS)
    else:
        import psycopg
        from sqlalchemy.engine import make_url

        u = make_url(request.getfixturevalue("postgres_url"))
        with psycopg.connect(host=u.host, port=u.port, user=u.username, dbname=u.database, autocommit=True) as conn:
            conn.execute("DROP DATABASE IF EXISTS har_metrics")
            conn.execute("CREATE DATABASE har_metrics")
        settings = make_settings(tmp_path, redis_url=DEAD_REDIS,
                                 database_url=u.set(database="har_metrics").render_as_string(False))
    yield settings
    dispose_engines()


GAVE_UP = ("Gave up after 3 attempts at the pose stage: each attempt stopped before finishing (the worker crashed, "
           "ran out of memory, was restarted or lost its connection).")
QUEUE_DOWN = ("The job could not be queued: the processing service is unavailable. Please try again later. "
              "(OperationalError)")
INTERNAL = "Internal error in the classify stage (KeyError: 'the key is missing')."
NOT_READ = "The video could not be read: no video stream"
VIDEO_MISSING = "The annotated video could not be rendered: the pose data of this job is missing."
NO_SPACE = ("The server ran out of disk space during the report stage, so its results could not be written. "
            "Run the job again once space has been freed.")


def test_metrics_sql_on_known_rows(seeded_settings):
    from web.metrics import failure_reason

    settings = seeded_settings
    app = make_app(settings)
    now = datetime.now(timezone.utc)
    timings = {"pose_s": 1.5, "classify_s": 0.2, "report_s": 0.01, "total_s": 4.0, "queue_wait_s": 0.75}
    add_job(settings, status="queued")
    add_job(settings, status="extracting", task_id="t1", worker="host-a:11", heartbeat_at=now - timedelta(seconds=30))
    add_job(settings, status="extracting", task_id="t2", worker="host-b:22", heartbeat_at=now - timedelta(seconds=2))
    add_job(settings, status="extracting", task_id="t3", worker=None)  # released by the sweep: waits again
    add_job(settings, status="classifying")  # waits for its classify task
    add_job(settings, status="done", video_status="rendering", timings=timings,
            task_id="t4", worker="host-c:33", heartbeat_at=now - timedelta(seconds=5))
    add_job(settings, status="done", video_status="ready", timings={**timings, "video_s": 45.0})
    add_job(settings, status="done", video_status="failed", video_error=VIDEO_MISSING, timings=timings)
    for error in (GAVE_UP, GAVE_UP, QUEUE_DOWN, INTERNAL, NOT_READ, NO_SPACE, "something else entirely", None):
        add_job(settings, status="failed", error=error)

    m = scrape(app.test_client())
    check_job_states(m, settings)
    assert value(m, "har_jobs", state="extracting") == 3 and value(m, "har_jobs", state="failed") == 8
    assert {s: value(m, "har_jobs_waiting", stage=s) for s in STAGES} == {"pose": 2, "classify": 1, "report": 0,
                                                                          "video": 0}
    assert {s: value(m, "har_jobs_running", stage=s) for s in STAGES} == {"pose": 2, "classify": 0, "report": 0,
                                                                          "video": 1}
    assert {s: value(m, "har_annotated_videos", status=s) for s in ("rendering", "ready", "failed")} == {
        "rendering": 1, "ready": 1, "failed": 1}

    failures = {dict(k)["reason"]: v for k, v in m["har_job_failures_total"].items()}
    assert failures == {"attempts_exhausted": 2, "queue_unavailable": 1, "internal_error": 1, "video_unreadable": 1,
                        "no_space": 1, "other": 2, "timeout": 0, "out_of_memory": 0, "input_missing": 0}
    assert value(m, "har_video_failures_total", reason="input_missing") == 1
    assert sum(m["har_video_failures_total"].values()) == 1
    assert [failure_reason(t) for t in (GAVE_UP, QUEUE_DOWN, INTERNAL, NOT_READ, VIDEO_MISSING, NO_SPACE, None)] == [
        "attempts_exhausted", "queue_unavailable", "internal_error", "video_unreadable", "input_missing", "no_space",
        "other"]

    assert check_histogram(m, "har_stage_duration_seconds", stage="pose") == (3, pytest.approx(4.5))
    assert value(m, "har_stage_duration_seconds_bucket", stage="pose", le="1.0") == 0
    assert value(m, "har_stage_duration_seconds_bucket", stage="pose", le="2.5") == 3
    assert check_histogram(m, "har_stage_duration_seconds", stage="report") == (3, pytest.approx(0.03))
    assert value(m, "har_stage_duration_seconds_bucket", stage="report", le="0.05") == 3
    assert check_histogram(m, "har_stage_duration_seconds", stage="video") == (1, pytest.approx(45.0))
    assert value(m, "har_stage_duration_seconds_bucket", stage="video", le="30.0") == 0
    assert value(m, "har_stage_duration_seconds_bucket", stage="video", le="60.0") == 1
    assert check_histogram(m, "har_job_duration_seconds") == (3, pytest.approx(12.0))
    assert check_histogram(m, "har_job_queue_wait_seconds") == (3, pytest.approx(2.25))

    ages = {tuple(v for _k, v in key): age for key, age in m["har_worker_heartbeat_age_seconds"].items()}
    assert set(ages) == {("pose", "host-a:11"), ("pose", "host-b:22"), ("video", "host-c:33")}
    assert ages[("pose", "host-a:11")] > ages[("video", "host-c:33")] > ages[("pose", "host-b:22")] >= 0
    assert ages[("pose", "host-a:11")] >= 30
    assert value(m, "har_heartbeat_stale_after_seconds") == settings.stale_after_s
    assert value(m, "har_uploads") == 16 and value(m, "har_uploads_bytes") == 16 * 1000
    assert value(m, "har_metrics_source_up", source="database") == 1
    assert value(m, "har_metrics_source_up", source="redis") == 0


def test_metrics_token(tmp_path):
    settings = make_settings(tmp_path, metrics_token="s3cret-token")
    try:
        client = make_app(settings).test_client()
        resp = client.get("/metrics")
        assert resp.status_code == 401 and resp.headers["WWW-Authenticate"].startswith("Bearer")
        assert client.get("/metrics", headers={"Authorization": "Bearer wrong"}).status_code == 401
        m = scrape(client, headers={"Authorization": "Bearer s3cret-token"})
        assert value(m, "har_jobs", state="queued") == 0
        # health endpoints stay open to probes
        assert client.get("/healthz").status_code == 200
    finally:
        dispose_engines()


def test_readyz_names_unwritable_storage(tmp_path):
    import shutil

    settings = make_settings(tmp_path)
    try:
        client = make_app(settings).test_client()
        # the storage volume goes away under the running app: a file where its directory was
        shutil.rmtree(settings.resolved_storage_dir)
        settings.resolved_storage_dir.write_text("not a directory")
        resp = client.get("/readyz")
        assert resp.status_code == 503
        assert resp.get_json()["failed"] == ["redis", "storage"]  # Redis is unreachable in these settings too
        assert resp.get_json()["checks"]["database"] == {"ok": True}
    finally:
        dispose_engines()


def test_web_log_lines_of_a_job_request_carry_its_id(tmp_path, people_video, caplog):
    """Run a job again while Redis is down: the web app logs the failed enqueue, tagged with the job of the URL."""
    from har import logcontext

    settings = make_settings(tmp_path)  # Redis unreachable
    try:
        app = make_app(settings)
        old = add_finished_job_with_files(settings, app, people_video)
        with caplog.at_level(logging.WARNING, logger="web"):
            resp = app.test_client().post(f"/api/jobs/{old}/rerun")
        assert resp.status_code == 503
        records = [r for r in caplog.records if r.name.startswith("web.") and "could not enqueue" in r.getMessage()]
        assert records and all(r.har_job_id == old for r in records)
        assert f"job={old} " in logging.Formatter(logcontext.WEB_FORMAT).format(records[0])
        # outside a request about a job, nothing is tagged
        assert logcontext.current_job() is None
        record = logging.getLogger("web.test").makeRecord("web.test", logging.INFO, __file__, 1, "x", (), None)
        assert record.har_job == ""
    finally:
        dispose_engines()
