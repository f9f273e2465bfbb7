"""A stage message taken from its queue and lost (Redis killed while a worker held it unacknowledged: the worker cannot
hand it back, and it sits in Redis' unacked set for the 4 h visibility timeout) is sent again by the sweep after
``unsent_after_s``, not ``requeue_after_s`` (30 min); a message still in its queue keeps the long wait. Found by
bench/soak.py: a job uploaded a second before Redis was SIGKILLed stayed "queued" for good. On a real redis-server,
with real Celery publishes."""
from __future__ import annotations

import dataclasses
from datetime import timedelta

import pytest

from har.db import Job, utcnow
from tests.test_jobs import job_row, new_job


@pytest.fixture
def real_broker(sqlite_db, redis_server):
    import redis

    url = f"{redis_server}/7"
    client = redis.Redis.from_url(url)
    client.flushdb()
    yield dataclasses.replace(sqlite_db, redis_url=url), client
    client.flushdb()
    client.close()


def test_the_sweep_sends_again_a_message_that_left_its_queue_but_never_started(real_broker):
    from har.database import session_scope
    from worker import runtime
    from worker.celery_app import POSE_TASK
    from worker.sweep import queued_job_ids, sweep

    settings, client = real_broker
    lost, waiting = new_job(settings), new_job(settings)
    for job_id in (lost, waiting):
        assert runtime.hand_over(settings, POSE_TASK, job_id) is True
    assert queued_job_ids(settings) == {lost, waiting}
    # a worker takes the first message (BRPOP: the oldest, at the right end), then loses it
    taken = client.rpop(settings.pose_queue)
    assert taken is not None and queued_job_ids(settings) == {waiting}
    later = utcnow() + timedelta(seconds=settings.unsent_after_s + 5)
    assert settings.unsent_after_s + 5 < settings.requeue_after_s
    assert sweep(settings, now=later) == [(lost, "requeued")]  # the other one is only behind in the queue
    assert queued_job_ids(settings) == {lost, waiting}  # published again
    assert job_row(settings, lost).enqueued_at is not None
    # a fresh publish is left alone, in the queue or not
    assert sweep(settings, now=utcnow()) == []
    # a job held by a live worker is not "waiting": its message being gone is normal
    with session_scope(settings) as s:
        assert s.get(Job, waiting).task_id is None
    assert runtime.claim(settings, waiting, "pose", "pose-1") is not None
    client.delete(settings.pose_queue)
    assert sweep(settings, now=later) == [(lost, "requeued")]


def test_when_the_queues_cannot_be_read_a_sent_message_keeps_the_long_wait(sqlite_db):
    from worker.sweep import queued_job_ids, sweep

    settings = dataclasses.replace(sqlite_db, redis_url="redis://127.0.0.1:1/0")  # nothing listens there
    job_id = new_job(settings)
    from har.database import session_scope

    with session_scope(settings) as s:
        s.get(Job, job_id).enqueued_at = utcnow()
    assert queued_job_ids(settings) is None
    later = utcnow() + timedelta(seconds=settings.unsent_after_s + 5)
    assert sweep(settings, now=later, enqueue=False) == []
    assert sweep(settings, now=utcnow() + timedelta(seconds=settings.requeue_after_s + 5), enqueue=False) == [
        (job_id, "requeued")]
