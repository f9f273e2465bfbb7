"""Worker process hooks: load the models when a worker process starts, run the sweep."""
from __future__ import annotations

import logging

from celery import bootsteps, signals

from worker.celery_app import celery_app, get_settings

log = logging.getLogger("worker")
_sweeper = None


def _queues() -> set[str] | None:
    try:
        names = set(celery_app.amqp.queues.consume_from or {})
        return names or None
    except Exception:
        return None


@signals.worker_process_init.connect
def _warm(**_kw) -> None:
    """Once per worker process (prefork child or the solo worker): load the models."""
    from worker.engines import warm_up

    warm_up(get_settings(), _queues())


@signals.worker_ready.connect
def _start_sweep(**_kw) -> None:
    global _sweeper
    from worker.sweep import SweepThread

    if _sweeper is None:
        _sweeper = SweepThread(get_settings())
        _sweeper.start()


@signals.worker_shutdown.connect
def _stop_sweep(**_kw) -> None:
    if _sweeper is not None:
        _sweeper.stop()


class SweepAfterReconnect(bootsteps.StartStopStep):
    """A consumer step: Celery starts the consumer's steps again each time it has reconnected to the broker.
    Every start after the first wakes the sweep (worker.sweep.SweepThread.wake): a lost connection cancels
    the running stages (``worker_cancel_long_running_tasks_on_connection_loss``) and makes hand-overs fail,
    and those jobs are picked up again as soon as the broker is back."""

    requires = {"celery.worker.consumer.tasks:Tasks"}

    def __init__(self, parent, **kwargs):
        super().__init__(parent, **kwargs)
        self.starts = 0

    def start(self, parent) -> None:
        self.starts += 1
        if self.starts > 1 and _sweeper is not None:
            log.warning("broker connection restored; sweeping for jobs interrupted while it was down")
            _sweeper.wake()


celery_app.steps["consumer"].add(SweepAfterReconnect)
