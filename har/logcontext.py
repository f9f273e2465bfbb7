"""The job a log line is about: every line logged while a job is handled carries ``job=<id>``.

:func:`install` (once per process; idempotent) wraps the logging record factory so that every record gets two
attributes, whatever logger emits it (ours, Celery's, a library's):

* ``har_job_id``: the id of the job being handled, or None;
* ``har_job``: ``" job=<id>"``, or ``""`` outside a job — for format strings, e.g.
  ``"[%(asctime)s: %(levelname)s/%(processName)s]%(har_job)s %(message)s"`` (:data:`WORKER_FORMAT`).

The job is set with :func:`bind` / :func:`unbind`: by the workers around each stage task (Celery's
``task_prerun`` / ``task_postrun`` signals, worker/celery_app.py) and by the web app around each request whose
URL names a job (web/__init__.py). It is a context variable, so threads that serve other requests or tasks are
not tagged. A prefork pool process runs one task at a time, so there the job is also bound process-wide
(``process_wide=True``): the threads a stage starts (heartbeat, frame decoding) log it too.
"""
from __future__ import annotations

import contextvars
import logging

_job: contextvars.ContextVar[str | None] = contextvars.ContextVar("har_log_job", default=None)
_process_job: str | None = None
_installed = False

WORKER_FORMAT = "[%(asctime)s: %(levelname)s/%(processName)s]%(har_job)s %(message)s"
WORKER_TASK_FORMAT = "[%(asctime)s: %(levelname)s/%(processName)s]%(har_job)s %(task_name)s[%(task_id)s]: %(message)s"
WEB_FORMAT = "[%(asctime)s] %(levelname)s in %(module)s:%(har_job)s %(message)s"


def current_job() -> str | None:
    """The job being handled by this thread (or, in a pool process, by this process), if any."""
    return _job.get() or _process_job


def bind(job_id: str, process_wide: bool = False) -> contextvars.Token:
    """Tag what this thread logs from now on with ``job_id`` (and, ``process_wide``, every thread of the process
    that has no job of its own). Returns the token for :func:`unbind`."""
    global _process_job
    if process_wide:
        _process_job = job_id
    return _job.set(job_id)


def unbind(token: contextvars.Token | None = None) -> None:
    """Stop tagging: restore the job before :func:`bind` (``token``), or none; and drop the process-wide job."""
    global _process_job
    _process_job = None
    if token is not None:
        try:
            _job.reset(token)
            return
        except ValueError:  # created in another context: fall back to clearing
            pass
    _job.set(None)


def install() -> None:
    """Give every log record of this process the ``har_job_id`` and ``har_job`` attributes (once)."""
    global _installed
    if _installed:
        return
    previous = logging.getLogRecordFactory()

    def record_factory(*args, **kwargs):
        record = previous(*args, **kwargs)
        job_id = current_job()
        record.har_job_id = job_id
        record.har_job = f" job={job_id}" if job_id else ""
        return record

    logging.setLogRecordFactory(record_factory)
    _installed = True


class JobFilter(logging.Filter):
    """For a handler whose format uses ``%(har_job)s``: fills the attributes in on records made elsewhere
    (before :func:`install`, or by ``logging.makeLogRecord``), so formatting never fails."""

    def filter(self, record: logging.LogRecord) -> bool:
        if not hasattr(record, "har_job"):
            job_id = current_job()
            record.har_job_id = job_id
            record.har_job = f" job={job_id}" if job_id else ""
        return True


JOB_FILTER = JobFilter()  # one instance: adding it to a handler again is a no-op
