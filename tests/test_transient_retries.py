"""A stage stopped by a transient error (the database, the broker or the object storage unreachable) is retried by its
task without using up the job's attempts: ``HAR_MAX_ATTEMPTS`` bounds the runs that crashed. Found by bench/soak.py: a
10 s storage outage (two retries) and one worker kill failed a render with "Gave up after 3 attempts"."""
from __future__ import annotations

import pytest
from sqlalchemy.exc import OperationalError

from har.database import session_scope
from har.db import EXTRACTING, FAILED, Job


def attempts(settings, job_id) -> tuple[str, int]:
    with session_scope(settings) as s:
        job = s.get(Job, job_id)
        return job.status, job.attempts


def unreachable(_settings, _claim):
    raise OperationalError("SELECT 1", {}, ConnectionRefusedError("connection refused"))


def test_a_transient_error_gives_the_attempt_back(video_job):
    from worker import runtime

    settings, job_id, sent = video_job
    for _ in range(settings.max_attempts + 2):  # more retries than attempts: none of them counts
        with pytest.raises(OperationalError):
            runtime.run_claimed(settings, job_id, "pose", "pose-1", unreachable)
        assert attempts(settings, job_id) == (EXTRACTING, 0)
    # the retry of the same task then runs the stage as its first attempt
    claim = runtime.claim(settings, job_id, "pose", "pose-1")
    assert claim is not None and claim.attempt == 1 and sent == []


def test_crashed_attempts_still_count_up_to_the_limit(video_job):
    """A run that never came back (its worker killed: nothing gave the attempt back) counts, as before."""
    from worker import runtime

    settings, job_id, _sent = video_job
    for n in range(1, settings.max_attempts):
        claim = runtime.claim(settings, job_id, "pose", "pose-1")  # the redelivered message, same task id
        assert claim is not None and claim.attempt == n
    with pytest.raises(OperationalError):  # a transient error gives back only its own attempt
        runtime.run_claimed(settings, job_id, "pose", "pose-1", unreachable)
    assert attempts(settings, job_id) == (EXTRACTING, settings.max_attempts - 1)
    last = runtime.claim(settings, job_id, "pose", "pose-1")
    assert last is not None and last.attempt == settings.max_attempts
    assert runtime.claim(settings, job_id, "pose", "pose-1") is None  # that one crashed too: the limit
    status, _ = attempts(settings, job_id)
    assert status == FAILED


def test_when_the_database_cannot_record_it_the_attempt_counts(video_job, monkeypatch):
    from worker import runtime

    settings, job_id, _sent = video_job
    claim = runtime.claim(settings, job_id, "pose", "pose-1")

    def down(_settings):
        raise OperationalError("BEGIN", {}, ConnectionRefusedError("connection refused"))

    monkeypatch.setattr(runtime, "session_scope", down)
    runtime.give_back_attempt(settings, claim)  # logged, not raised
    monkeypatch.undo()
    assert attempts(settings, job_id) == (EXTRACTING, 1)
