"""Prometheus metrics at ``GET /metrics``, computed at scrape time from the shared state.

Every value is read from the database and Redis when Prometheus scrapes (a custom collector, no in-process
counters), so any web process answers the same whatever the number of gunicorn workers, web containers and
worker machines. One scrape costs a handful of aggregate queries (``GROUP BY``, no rows loaded), a few Redis
``LLEN``/``HLEN`` and a ``statvfs`` of the storage directory.

When ``HAR_METRICS_TOKEN`` is set a scrape must send ``Authorization: Bearer <token>`` (else 401).

Metrics (all prefixed ``har_``):

=========================================  =========  ==================================================================
``har_jobs{state}``                        gauge      jobs by state (queued, extracting, classifying, reporting, done,
                                                      failed)
``har_jobs_waiting{stage}``                gauge      jobs waiting for a worker to take their next stage (pose, classify,
                                                      report, video); no task holds them
``har_jobs_running{stage}``                gauge      jobs whose stage a worker holds now
``har_annotated_videos{status}``           gauge      annotated videos by status (rendering, ready, failed)
``har_job_failures_total{reason}``         counter    failed jobs by reason category (:data:`FAILURE_REASONS`)
``har_video_failures_total{reason}``       counter    annotated videos that failed (the job stays done), same categories
``har_stage_duration_seconds{stage}``      histogram  run time of each stage (pose, classify, report, video) of the
                                                      last successful attempt (``jobs.timings``)
``har_job_duration_seconds``               histogram  upload to done (reports ready), ``timings.total_s``
``har_job_queue_wait_seconds``             histogram  time a job spent waiting in the queues, ``timings.queue_wait_s``
``har_queue_messages{queue}``              gauge      messages waiting in each Celery queue in Redis (LLEN)
``har_queue_unacked_messages{queue}``      gauge      messages taken by a worker and not yet acknowledged
``har_worker_heartbeat_age_seconds``       gauge      seconds since the last heartbeat of each worker holding a stage,
  ``{stage, worker}``                                 (``jobs.heartbeat_at``; ``worker`` is "host:pid")
``har_heartbeat_stale_after_seconds``      gauge      ``HAR_STALE_AFTER_S``: a heartbeat older than this is a dead stage
``har_uploads`` / ``har_uploads_bytes``    gauge      stored uploaded videos, and their total size
``har_reports_bytes{kind}``                gauge      total size of the generated files (json, csv, html, video)
``har_storage_free_bytes``                 gauge      free space on the storage directory's file system
``har_storage_min_free_bytes``             gauge      ``HAR_MIN_FREE_MB``: uploads are refused (507) below this
``har_metrics_source_up{source}``          gauge      1 when the database / Redis answered this scrape, else 0 (their
                                                      metrics are then missing from the scrape)
=========================================  =========  ==================================================================

Window: the counters and histograms cover every job in the database (they only grow, as Prometheus expects,
except when jobs are deleted; Prometheus then sees a counter reset). Use ``rate()``/``increase()`` over them for
recent behaviour, e.g. ``histogram_quantile(0.9, rate(har_stage_duration_seconds_bucket[1h]))``.
"""
from __future__ import annotations

import hmac
import json
import logging
from datetime import timezone

from flask import Blueprint, Response, current_app, request
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily
from sqlalchemy import and_, case, func, literal, or_, select

from har.config import Settings
from har.db import (
    CLASSIFYING,
    DONE,
    EXTRACTING,
    FAILED,
    QUEUED,
    REPORTING,
    STATES,
    VIDEO_FAILED,
    VIDEO_RENDERING,
    VIDEO_STATES,
    Job,
    Report,
    Video,
    utcnow,
)
from har.jobs import as_utc

log = logging.getLogger(__name__)

bp = Blueprint("metrics", __name__)

STAGES = ("pose", "classify", "report", "video")
# (job status, it is a done job whose video renders) -> the workers' stage that runs or is awaited in that state
_STAGE_OF = {(QUEUED, False): "pose", (EXTRACTING, False): "pose", (CLASSIFYING, False): "classify",
             (REPORTING, False): "report", (DONE, True): "video"}

# Failure reasons (jobs.error, jobs.video_error) normalized to a few categories, so the label stays bounded:
# (category, SQL LIKE patterns), the first that matches wins; anything else is "other". The texts are those
# written by web/uploads.py, worker/runtime.py (readable_reason, the attempt limit) and worker/sweep.py.
FAILURE_PATTERNS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("queue_unavailable", ("The job could not be queued%",)),  # Redis down at upload
    ("attempts_exhausted", ("Gave up after %",)),  # the worker died at every attempt (crash, OOM kill, restart)
    ("no_space", ("%ran out of disk space%", "%No space left on device%")),  # har.disk.disk_full_reason
    ("internal_error", ("Internal error in the %",)),  # an unexpected exception in a stage
    ("video_unreadable", ("The video could not be read%",)),  # the decoder failed on the upload
    ("timeout", ("%took longer than the time limit%",)),
    ("out_of_memory", ("%ran out of memory%",)),
    ("input_missing", ("%missing%", "%no longer stored%")),  # upload, pose data gone from storage / database
)
FAILURE_REASONS = tuple(name for name, _ in FAILURE_PATTERNS) + ("other",)

# Histogram buckets (seconds): stages take from milliseconds (reports) to many minutes (pose on long videos).
DURATION_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0, 3600.0)
# histogram name -> (help, [(label value or None, jobs.timings key)])
DURATIONS = {
    "har_stage_duration_seconds": (
        "Run time of each stage of a job (its last, successful attempt), from jobs.timings; every job in the database.",
        [("pose", "pose_s"), ("classify", "classify_s"), ("report", "report_s"), ("video", "video_s")]),
    "har_job_duration_seconds": (
        "Seconds from upload to done (reports ready; the annotated video is rendered after), every job in the database.",
        [(None, "total_s")]),
    "har_job_queue_wait_seconds": (
        "Seconds a job waited in the queues for its stages, every job in the database.",
        [(None, "queue_wait_s")]),
}

# kombu's Redis transport: a queue is a list under its name, plus one list per priority step beyond 0
# (name + "\x06\x16" + step); unacknowledged messages are in the "unacked" hash ([message, exchange, routing key]).
PRIORITY_SEP = "\x06\x16"
PRIORITY_STEPS = (3, 6, 9)
UNACKED_KEY = "unacked"
UNACKED_PARSE_MAX = 1000  # per-queue unacked counts only while the hash is small (it holds whole messages)
REDIS_TIMEOUT_S = 2.0


def failure_reason(text: str | None) -> str:
    """The category of a failure reason (what the SQL of :func:`_reason_sql` computes), for tests and tools."""
    import fnmatch

    for name, patterns in FAILURE_PATTERNS:
        if any(fnmatch.fnmatchcase(text or "", p.replace("%", "*")) for p in patterns):
            return name
    return "other"


def _reason_sql(column):
    whens = [(or_(*[column.like(p) for p in patterns]), literal(name)) for name, patterns in FAILURE_PATTERNS]
    return case(*whens, else_=literal("other"))


def queue_names(settings: Settings) -> tuple[str, ...]:
    return tuple(dict.fromkeys((settings.pose_queue, settings.classify_queue, settings.report_queue,
                                settings.video_queue, settings.webhook_queue)))


def _gauge(name: str, doc: str, label: str, values: dict) -> GaugeMetricFamily:
    """A gauge with one labelled sample per item of ``values``."""
    g = GaugeMetricFamily(name, doc, labels=[label])
    for key, n in values.items():
        g.add_metric([key], n)
    return g


class HarCollector:
    """Reads the shared state at every scrape (see the module doc)."""

    def __init__(self, settings: Settings, engine):
        self.settings, self.engine = settings, engine

    def collect(self):
        db_ok = redis_ok = True
        try:
            with self.engine.connect() as conn:
                families = list(self._database(conn))
        except Exception as exc:  # noqa: BLE001 - a scrape must still answer
            log.warning("metrics: the database could not be read (%s: %s)", type(exc).__name__, exc)
            db_ok, families = False, []
        yield from families
        try:
            families = list(self._redis())
        except Exception as exc:  # noqa: BLE001
            log.warning("metrics: Redis could not be read (%s: %s)", type(exc).__name__, exc)
            redis_ok, families = False, []
        yield from families
        yield from self._storage()
        up = GaugeMetricFamily("har_metrics_source_up", "1 when the source answered this scrape, else 0.",
                               labels=["source"])
        up.add_metric(["database"], 1.0 if db_ok else 0.0)
        up.add_metric(["redis"], 1.0 if redis_ok else 0.0)
        yield up

    # database --------------------------------------------------------------------------------------
    def _database(self, conn):
        yield from self._states(conn)
        yield from self._failures(conn)
        yield from self._durations(conn)
        yield from self._heartbeats(conn)
        yield from self._stored(conn)

    def _states(self, conn):
        # held: a task and its worker are recorded on the job (a stage the sweep released keeps its task id)
        held_sql = func.count(case((and_(Job.task_id.is_not(None), Job.worker.is_not(None)), 1)))
        rows = conn.execute(
            select(Job.status, Job.video_status, func.count(), held_sql).group_by(Job.status, Job.video_status)
        ).all()
        states = dict.fromkeys(STATES, 0)
        videos = dict.fromkeys(VIDEO_STATES, 0)
        waiting = dict.fromkeys(STAGES, 0)
        running = dict.fromkeys(STAGES, 0)
        for status, video_status, total, held in rows:
            states[status] = states.get(status, 0) + total
            if video_status:
                videos[video_status] = videos.get(video_status, 0) + total
            stage = _STAGE_OF.get((status, video_status == VIDEO_RENDERING))
            if stage is not None:
                waiting[stage] += total - held
                running[stage] += held
        yield _gauge("har_jobs", "Jobs by state.", "state", states)
        yield _gauge("har_jobs_waiting", "Jobs waiting for a worker to take their next stage.", "stage", waiting)
        yield _gauge("har_jobs_running", "Jobs whose stage a worker holds now.", "stage", running)
        yield _gauge("har_annotated_videos", "Annotated videos by status (rendered after the job is done).", "status",
                     videos)

    def _failures(self, conn):
        for name, doc, column, condition in (
            ("har_job_failures", "Failed jobs by reason category (every job in the database).", Job.error,
             Job.status == FAILED),
            ("har_video_failures", "Annotated videos that failed by reason category (their jobs stay done).",
             Job.video_error, Job.video_status == VIDEO_FAILED),
        ):
            reasons = select(_reason_sql(column).label("reason")).where(condition).subquery()
            counts = dict.fromkeys(FAILURE_REASONS, 0)
            for reason, n in conn.execute(select(reasons.c.reason, func.count()).group_by(reasons.c.reason)):
                counts[reason] = counts.get(reason, 0) + n
            c = CounterMetricFamily(name, doc, labels=["reason"])
            for reason, n in counts.items():
                c.add_metric([reason], n)
            yield c

    def _durations(self, conn):
        keys = [key for _doc, series in DURATIONS.values() for _label, key in series]
        values = select(*[Job.timings[key].as_float().label(key) for key in keys]).where(
            Job.timings.is_not(None)).subquery()
        columns = []
        for key in keys:
            v = values.c[key]
            columns += [func.count(v), func.coalesce(func.sum(v), 0.0)]
            columns += [func.coalesce(func.sum(case((v <= b, 1), else_=0)), 0) for b in DURATION_BUCKETS]
        row = conn.execute(select(*columns)).one()
        width = 2 + len(DURATION_BUCKETS)
        stats = {key: row[i * width:(i + 1) * width] for i, key in enumerate(keys)}
        for name, (doc, series) in DURATIONS.items():
            h = HistogramMetricFamily(name, doc, labels=["stage"] if series[0][0] else None)
            for label, key in series:
                count, total, *cumulative = stats[key]
                buckets = [(_le(b), int(n)) for b, n in zip(DURATION_BUCKETS, cumulative)]
                buckets.append(("+Inf", int(count)))
                h.add_metric([label] if label else [], buckets, float(total))
            yield h

    def _heartbeats(self, conn):
        rows = conn.execute(
            select(Job.status, Job.video_status, Job.worker, func.max(Job.heartbeat_at))
            .where(Job.task_id.is_not(None), Job.worker.is_not(None), Job.heartbeat_at.is_not(None),
                   or_(Job.status.in_((EXTRACTING, CLASSIFYING, REPORTING)),
                       and_(Job.status == DONE, Job.video_status == VIDEO_RENDERING)))
            .group_by(Job.status, Job.video_status, Job.worker)
        ).all()
        now = utcnow()
        g = GaugeMetricFamily("har_worker_heartbeat_age_seconds",
                              "Seconds since the last heartbeat of each worker holding a stage (host:pid).",
                              labels=["stage", "worker"])
        ages: dict[tuple[str, str], float] = {}
        for status, video_status, worker, beat in rows:
            stage = _STAGE_OF.get((status, video_status == VIDEO_RENDERING))
            beat = as_utc(beat)
            if stage is None or beat is None:
                continue
            age = max(0.0, (now - beat.astimezone(timezone.utc)).total_seconds())
            key = (stage, worker)
            ages[key] = min(age, ages.get(key, age))
        for (stage, worker), age in sorted(ages.items()):
            g.add_metric([stage, worker], round(age, 3))
        yield g
        yield GaugeMetricFamily("har_heartbeat_stale_after_seconds",
                                "A stage whose heartbeat is older than this counts as dead (HAR_STALE_AFTER_S).",
                                value=float(self.settings.stale_after_s))

    def _stored(self, conn):
        n, size = conn.execute(select(func.count(), func.coalesce(func.sum(Video.size_bytes), 0))).one()
        yield GaugeMetricFamily("har_uploads", "Uploaded videos stored.", value=float(n))
        yield GaugeMetricFamily("har_uploads_bytes", "Total size of the stored uploaded videos.", value=float(size))
        g = GaugeMetricFamily("har_reports_bytes", "Total size of the generated files by kind.", labels=["kind"])
        sizes = {"json": 0, "csv": 0, "html": 0, "video": 0}
        for kind, total in conn.execute(select(Report.kind, func.coalesce(func.sum(Report.size_bytes), 0))
                                        .group_by(Report.kind)):
            sizes[kind] = total
        for kind, total in sizes.items():
            g.add_metric([kind], float(total))
        yield g

    # redis -----------------------------------------------------------------------------------------
    def _redis(self):
        import redis

        queues = queue_names(self.settings)
        client = redis.Redis.from_url(self.settings.redis_url, socket_connect_timeout=REDIS_TIMEOUT_S,
                                      socket_timeout=REDIS_TIMEOUT_S)
        try:
            pipe = client.pipeline(transaction=False)
            for q in queues:
                pipe.llen(q)
                for step in PRIORITY_STEPS:
                    pipe.llen(f"{q}{PRIORITY_SEP}{step}")
            pipe.hlen(UNACKED_KEY)
            results = pipe.execute()
            unacked_total = results[-1]
            unacked = dict.fromkeys(queues, 0)
            if unacked_total and unacked_total <= UNACKED_PARSE_MAX:
                for raw in client.hvals(UNACKED_KEY):
                    try:
                        routing_key = json.loads(raw)[2]
                    except (ValueError, IndexError, TypeError):
                        continue
                    if routing_key in unacked:
                        unacked[routing_key] += 1
        finally:
            client.close()
        per = 1 + len(PRIORITY_STEPS)
        g = GaugeMetricFamily("har_queue_messages", "Messages waiting in a Celery queue (Redis).", labels=["queue"])
        for i, q in enumerate(queues):
            g.add_metric([q], float(sum(results[i * per:(i + 1) * per])))
        yield g
        if unacked_total <= UNACKED_PARSE_MAX:
            g = GaugeMetricFamily("har_queue_unacked_messages",
                                  "Messages of a queue delivered to a worker and not yet acknowledged.",
                                  labels=["queue"])
            for q, n in unacked.items():
                g.add_metric([q], float(n))
            yield g

    # storage ---------------------------------------------------------------------------------------
    def _storage(self):
        from har.disk import MB, free_bytes

        try:
            free = free_bytes(self.settings.resolved_storage_dir)
        except OSError:
            return
        yield GaugeMetricFamily("har_storage_free_bytes", "Free space on the storage directory's file system.",
                                value=float(free))
        yield GaugeMetricFamily("har_storage_min_free_bytes",
                                "Uploads are refused (507) below this much free space (HAR_MIN_FREE_MB).",
                                value=float(max(0.0, self.settings.min_free_mb) * MB))


def _le(bound: float) -> str:
    return repr(float(bound))


def make_registry(settings: Settings, engine) -> CollectorRegistry:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(HarCollector(settings, engine))
    return registry


def _authorized(settings: Settings) -> bool:
    token = settings.metrics_token
    if not token:
        return True
    scheme, _, given = request.headers.get("Authorization", "").partition(" ")
    return scheme.lower() == "bearer" and hmac.compare_digest(given.strip().encode(), token.encode())


@bp.get("/metrics")
def metrics():
    har = current_app.extensions["har"]
    settings = har["settings"]
    if not _authorized(settings):
        return Response("metrics: a bearer token is required\n", status=401, mimetype="text/plain",
                        headers={"WWW-Authenticate": 'Bearer realm="metrics"'})
    registry = har.get("metrics_registry")
    if registry is None:
        registry = har["metrics_registry"] = make_registry(settings, har["engine"])
    resp = Response(generate_latest(registry), mimetype=None)
    resp.headers["Content-Type"] = CONTENT_TYPE_LATEST
    resp.headers["Cache-Control"] = "no-store"
    return resp
