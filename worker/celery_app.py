"""The one Celery app of the service, and :func:`enqueue_job` for the web app.

Start the workers (one per queue)::

    celery -A worker.celery_app worker -Q pose --concurrency 1
    celery -A worker.celery_app worker -Q classify --concurrency 1
    celery -A worker.celery_app worker -Q video --concurrency 1
    celery -A worker.celery_app worker -Q webhook --concurrency 2

The annotated videos render on their own queue (``HAR_VIDEO_QUEUE``, default ``video``), so that a render never
holds up the classification or the reports of the next job. Webhook deliveries (har/webhooks.py) have a queue of
their own too (``HAR_WEBHOOK_QUEUE``, default ``webhook``): a slow receiver never delays a stage.

Importing this module imports no model code: the web app only sends the first task by name.
"""
from __future__ import annotations

import logging

from celery import Celery, signals

from har import logcontext
from har.config import Settings, load_settings
from har.db import CLASSIFYING, EXTRACTING, QUEUED, RENDERING, REPORTING

log = logging.getLogger(__name__)

POSE_TASK = "har.pose"
CLASSIFY_TASK = "har.classify"
REPORT_TASK = "har.report"
VIDEO_TASK = "har.video"
SWEEP_TASK = "har.sweep"
WEBHOOK_TASK = "har.webhook"

TASK_MODULES = ["worker.tasks.pose", "worker.tasks.classify", "worker.tasks.report", "worker.tasks.video",
                "worker.sweep", "worker.lifecycle", "worker.webhooks"]

# A task whose message is not acknowledged within this many seconds is delivered again (Redis
# broker with acks late): it must exceed the longest task; the job's own attempt limit and the
# heartbeat (worker.runtime) keep a redelivered duplicate from running the same stage twice at once.
VISIBILITY_TIMEOUT_S = 4 * 3600
TASK_SOFT_TIME_LIMIT_S = 3 * 3600
TASK_TIME_LIMIT_S = TASK_SOFT_TIME_LIMIT_S + 300


def celery_config(settings: Settings) -> dict:
    return dict(
        broker_url=settings.redis_url,
        result_backend=settings.redis_url,
        task_serializer="json",
        result_serializer="json",
        accept_content=["json"],
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,
        task_routes={
            POSE_TASK: {"queue": settings.pose_queue},
            CLASSIFY_TASK: {"queue": settings.classify_queue},
            REPORT_TASK: {"queue": settings.report_queue},
            VIDEO_TASK: {"queue": settings.video_queue},
            SWEEP_TASK: {"queue": settings.classify_queue},
            WEBHOOK_TASK: {"queue": settings.webhook_queue},
        },
        task_default_queue=settings.classify_queue,
        task_ignore_result=True,  # the job row in the database is the result
        result_expires=24 * 3600,
        broker_connection_retry_on_startup=True,
        broker_transport_options={"visibility_timeout": VISIBILITY_TIMEOUT_S},
        result_backend_transport_options={"visibility_timeout": VISIBILITY_TIMEOUT_S},
        task_soft_time_limit=TASK_SOFT_TIME_LIMIT_S,
        task_time_limit=TASK_TIME_LIMIT_S,
        task_always_eager=settings.task_always_eager,
        task_eager_propagates=False,
        worker_send_task_events=False,
        worker_cancel_long_running_tasks_on_connection_loss=True,
        # SIGTERM (remapped to Celery's cold shutdown by REMAP_SIGTERM=SIGQUIT, which scripts/run_local.py, the
        # Dockerfile and the test stack set): a running task gets this long to finish, then it is stopped and its
        # unacknowledged message goes back to the queue, so another worker takes the job over at once instead of
        # the job waiting for the stopped worker's heartbeat to go stale (HAR_STALE_AFTER_S)
        worker_soft_shutdown_timeout=float(settings.worker_shutdown_grace_s),
        enable_utc=True,
        timezone="UTC",
        # every line logged while a stage task runs carries " job=<id>" (har.logcontext)
        worker_log_format=logcontext.WORKER_FORMAT,
        worker_task_log_format=logcontext.WORKER_TASK_FORMAT,
    )


def make_celery(settings: Settings | None = None) -> Celery:
    settings = settings or load_settings()
    app = Celery("har", include=TASK_MODULES)
    app.conf.update(celery_config(settings))
    app.conf.har_settings = settings
    return app


celery_app = make_celery()
app = celery_app  # `celery -A worker.celery_app` finds either name


def get_settings() -> Settings:
    return celery_app.conf.har_settings


# Logs: " job=<id>" on every line logged while a stage task handles a job (har.logcontext).
STAGE_TASKS = frozenset({POSE_TASK, CLASSIFY_TASK, REPORT_TASK, VIDEO_TASK})
logcontext.install()


@signals.after_setup_logger.connect
@signals.after_setup_task_logger.connect
def _log_job_filter(logger=None, **_kw) -> None:
    for handler in getattr(logger, "handlers", ()):
        handler.addFilter(logcontext.JOB_FILTER)


_log_tokens: dict = {}  # task id -> logcontext token (eager tasks run nested)


@signals.task_prerun.connect
def _log_job_bind(task_id=None, task=None, args=None, **_kw) -> None:
    if task is not None and task.name in STAGE_TASKS and args:
        from billiard.process import current_process

        # a prefork pool process runs this task alone: the threads it starts log the job too
        _log_tokens[task_id] = logcontext.bind(str(args[0]), process_wide=current_process().name != "MainProcess")


@signals.task_postrun.connect
def _log_job_unbind(task_id=None, task=None, **_kw) -> None:
    if task is not None and task.name in STAGE_TASKS:
        logcontext.unbind(_log_tokens.pop(task_id, None))


# stage task -> the job states (har.jobs.worker_state) in which a job waits for that task (extracting: released
# by the sweep)
WAITING_STATES = {POSE_TASK: (QUEUED, EXTRACTING), CLASSIFY_TASK: (CLASSIFYING,), REPORT_TASK: (REPORTING,),
                  VIDEO_TASK: (RENDERING,)}


def task_queue(task_name: str, settings: Settings) -> str:
    """The queue a task is sent to."""
    queues = {POSE_TASK: settings.pose_queue, CLASSIFY_TASK: settings.classify_queue,
              REPORT_TASK: settings.report_queue, VIDEO_TASK: settings.video_queue,
              WEBHOOK_TASK: settings.webhook_queue}
    return queues.get(task_name, settings.classify_queue)


def send_stage(task_name: str, job_id: str, settings: Settings | None = None, countdown: float | None = None):
    """Send one stage's task for ``job_id`` (to its queue, on the settings' broker), then record on the
    job that its message was published (``jobs.enqueued_at``): the one place that publishes a stage, for
    the web app's first task, the workers' hand-overs and the sweep. A job whose message was never
    published (the sender died first, or the publish failed) is sent again by the sweep soon
    (``settings.unsent_after_s``), one whose message is in the queue only after ``settings.requeue_after_s``."""
    settings = settings or get_settings()
    result = send_task(task_name, job_id, settings, countdown)
    if settings.task_always_eager:
        return result
    if task_name in WAITING_STATES:
        _record_published(task_name, job_id, settings)
    return result


def send_task(task_name: str, arg, settings: Settings | None = None, countdown: float | None = None):
    """Publish ``task_name(arg)`` to its queue on the settings' broker (or run it now when tasks are eager)."""
    settings = settings or get_settings()
    if settings.task_always_eager:
        # In-process (development/tests without a broker): run the task now (nothing waits in a queue).
        import importlib

        for module in TASK_MODULES:
            importlib.import_module(module)
        return celery_app.tasks[task_name].apply(args=[arg])
    queue = task_queue(task_name, settings)
    if settings.redis_url == celery_app.conf.broker_url:
        return celery_app.send_task(task_name, args=[arg], queue=queue, countdown=countdown, ignore_result=True)
    with celery_app.connection_for_write(settings.redis_url) as conn:
        return celery_app.send_task(task_name, args=[arg], queue=queue, countdown=countdown, ignore_result=True,
                                    connection=conn)


def _record_published(task_name: str, job_id: str, settings: Settings) -> None:
    """Set ``jobs.enqueued_at`` after a successful publish. A failure here only costs a harmless
    duplicate message later (the sweep sees no publish): it is logged, never raised, since the task
    is on its way."""
    from har.database import session_scope
    from har.jobs import mark_enqueued

    try:
        with session_scope(settings) as s:
            mark_enqueued(s, job_id, WAITING_STATES[task_name])
    except Exception:
        log.warning("job %s: %s sent, but its publish time could not be recorded", job_id, task_name,
                    exc_info=True)


def enqueue_job(job_id: str, settings: Settings | None = None) -> None:
    """Start processing a job that is committed as ``queued``: send the pose task by name.

    Raises the broker's error (e.g. ``kombu.exceptions.OperationalError``) when Redis is down; the
    job stays ``queued`` with no publish recorded, and the workers' sweep (worker.sweep) enqueues it
    again after ``settings.unsent_after_s`` (the web app fails it first when it sees the error).
    """
    send_stage(POSE_TASK, str(job_id), settings)
    log.info("job %s enqueued", job_id)
