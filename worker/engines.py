"""The models, loaded once per worker process (lazy singletons, warmed when the process starts)."""
from __future__ import annotations

import logging
import threading
import time

from har.config import Settings

log = logging.getLogger("worker")

_lock = threading.Lock()
_pose: dict[tuple, object] = {}
_classifier = None


def get_pose_estimator(settings: Settings, imgsz: int | None = None):
    """The pose estimator for (backend, imgsz, threads), created at first use in this process."""
    key = (settings.pose_backend, int(imgsz or settings.pose_imgsz), int(settings.pose_threads))
    with _lock:
        est = _pose.get(key)
        if est is None:
            from models.pose import load_pose_estimator

            t0 = time.monotonic()
            est = _pose[key] = load_pose_estimator(backend=key[0], imgsz=key[1], threads=key[2])
            log.info("pose model %s loaded (imgsz %d) in %.2f s", getattr(est, "name", "?"), key[1],
                     time.monotonic() - t0)
        return est


def get_classifier():
    global _classifier
    with _lock:
        if _classifier is None:
            from models.action.classifier import ActionClassifier

            t0 = time.monotonic()
            _classifier = ActionClassifier()
            log.info("action model %s %s loaded in %.2f s", _classifier.name, _classifier.version,
                     time.monotonic() - t0)
        return _classifier


def warm_up(settings: Settings, queues: set[str] | None = None) -> None:
    """Load the models the worker's queues need (all when ``queues`` is unknown)."""
    want_pose = queues is None or settings.pose_queue in queues
    want_classify = queues is None or settings.classify_queue in queues or settings.report_queue in queues
    try:
        if want_pose:
            get_pose_estimator(settings)
        if want_pose or want_classify:
            get_classifier()  # the pose stage needs its frame rate too
    except Exception:  # the task reports the error on the job; the worker stays up
        log.exception("could not load the models at start-up")
