"""Pose estimation: YOLO11n-pose (ONNX, onnxruntime) → per-frame persons → tracks.

``load_pose_estimator(backend="onnx", imgsz=..., threads=...)`` returns an object with
``predict(list_of_bgr_images) -> list[PoseDetections]`` and ``name``/``version``/``sha256``.
"""
from __future__ import annotations

from .extract import extract_tracks
from .onnx_backend import DEFAULT_MODEL, OnnxPoseEstimator, PoseDetections
from .tracker import PoseTracker

# Service defaults, chosen with bench/bench_models.py: 480 px with rect letterbox (frames of a video share a shape,
# so they are padded only to a multiple of 32) runs ~2.5x faster than a 640 px square on CPU and keeps 95 % of
# confident joints within 5 % of the person's height of the 640 px result.
DEFAULT_IMGSZ = 480
DEFAULT_RECT = True
# onnxruntime threads per pose model: one, the decoding thread (models.video.prefetch) uses a second core, and a
# machine is filled with worker processes (README, Speed); two threads cost ~1.5x the CPU per small crop here.
DEFAULT_THREADS = 1
# Poses are sampled at the action model's rate divided by this and interpolated back to it by the timeline
# (bench/sample_rate.py, bench/real_footage.py --fps).
SAMPLE_RATE_DIVISOR = 2


def default_sample_fps(model_fps: float) -> float:
    """The service's pose sampling rate for an action model trained at ``model_fps``."""
    return float(model_fps) / SAMPLE_RATE_DIVISOR

__all__ = ["DEFAULT_IMGSZ", "DEFAULT_MODEL", "DEFAULT_RECT", "DEFAULT_THREADS", "SAMPLE_RATE_DIVISOR",
           "OnnxPoseEstimator", "PoseDetections", "PoseTracker", "default_sample_fps", "extract_tracks",
           "load_pose_estimator"]


def load_pose_estimator(backend: str = "onnx", **kw):
    """``backend``: "onnx" (default, runtime) or "ultralytics" (reference; needs the export extra).

    Keyword arguments go to the estimator (``imgsz``, ``threads``, ``conf``, ``iou``, ``rect``, ...);
    ``imgsz`` defaults to :data:`DEFAULT_IMGSZ`, ``rect`` to :data:`DEFAULT_RECT`, ``threads`` to
    :data:`DEFAULT_THREADS`.
    """
    kw.setdefault("imgsz", DEFAULT_IMGSZ)
    kw.setdefault("rect", DEFAULT_RECT)
    if kw.get("threads") is None:
        kw["threads"] = DEFAULT_THREADS  # 0: onnxruntime's default (a thread per core)
    if backend == "onnx":
        return OnnxPoseEstimator(**kw)
    if backend == "ultralytics":
        from .ultralytics_backend import UltralyticsPoseEstimator

        return UltralyticsPoseEstimator(**kw)
    raise ValueError(f"unknown pose backend {backend!r} (expected 'onnx' or 'ultralytics')")
