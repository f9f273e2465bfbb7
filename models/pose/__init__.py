"""Pose estimation: YOLO11n-pose (ONNX, onnxruntime) → per-frame persons → tracks.

``load_pose_estimator(backend="onnx", imgsz=..., threads=...)`` returns an object with
``predict(list_of_bgr_images) -> list[PoseDetections]`` and ``name``/``version``/``sha256``.
"""
from __future__ import annotations

from .extract import extract_tracks
from .onnx_backend import DEFAULT_MODEL, OnnxPoseEstimator, PoseDetections
from .tracker import PoseTracker

DEFAULT_IMGSZ = 640

__all__ = ["DEFAULT_IMGSZ", "DEFAULT_MODEL", "OnnxPoseEstimator", "PoseDetections", "PoseTracker",
           "extract_tracks", "load_pose_estimator"]


def load_pose_estimator(backend: str = "onnx", **kw):
    """``backend``: "onnx" (default, runtime) or "ultralytics" (reference; needs the export extra)."""
    kw.setdefault("imgsz", DEFAULT_IMGSZ)
    if backend == "onnx":
        return OnnxPoseEstimator(**kw)
    if backend == "ultralytics":
        from .ultralytics_backend import UltralyticsPoseEstimator

        return UltralyticsPoseEstimator(**kw)
    raise ValueError(f"unknown pose backend {backend!r} (expected 'onnx' or 'ultralytics')")
