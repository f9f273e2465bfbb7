"""Keypoint tracks: the hand-off between pose extraction and action classification.

A :class:`PoseExtraction` is what the pose stage produces for one video and what the
classify stage consumes. It serializes to a compact compressed ``.npz`` byte string so the
service can store it in the database (or on disk) between the two tasks.

Keypoints are always stored in the pose model's own layout (COCO-17 for YOLO pose) in
original-video pixels, as ``(x, y, confidence)``; the action model maps them to its own
layout by joint name (see :mod:`models.layouts`).
"""
from __future__ import annotations

import io
import json
from dataclasses import dataclass, field

import numpy as np


@dataclass
class PoseTrack:
    """One person followed across sampled frames."""

    track_id: int
    frame_indices: np.ndarray  # (T,) int64: index into PoseExtraction.frame_times
    times: np.ndarray  # (T,) float64 seconds from the start of the video
    keypoints: np.ndarray  # (T, K, 3) float32: x, y (pixels), confidence
    boxes: np.ndarray  # (T, 4) float32 xyxy pixels
    scores: np.ndarray  # (T,) float32 detection confidence

    def __len__(self) -> int:
        return int(len(self.times))

    @property
    def duration_s(self) -> float:
        return float(self.times[-1] - self.times[0]) if len(self) else 0.0


@dataclass
class PoseExtraction:
    """All tracks of one video, plus the sampling facts needed to interpret them."""

    width: int
    height: int
    sampled_fps: float
    frame_times: np.ndarray  # (F,) float64 seconds of every sampled frame (with or without people)
    tracks: list[PoseTrack] = field(default_factory=list)
    layout: str = "coco17"
    meta: dict = field(default_factory=dict)  # free-form: pose model name/version, source fps, ...

    @property
    def n_frames(self) -> int:
        return int(len(self.frame_times))

    def to_bytes(self) -> bytes:
        arrays: dict[str, np.ndarray] = {"frame_times": np.asarray(self.frame_times, np.float64)}
        for i, t in enumerate(self.tracks):
            arrays[f"t{i}_frame_indices"] = np.asarray(t.frame_indices, np.int64)
            arrays[f"t{i}_times"] = np.asarray(t.times, np.float64)
            arrays[f"t{i}_keypoints"] = np.asarray(t.keypoints, np.float32)
            arrays[f"t{i}_boxes"] = np.asarray(t.boxes, np.float32)
            arrays[f"t{i}_scores"] = np.asarray(t.scores, np.float32)
        header = {
            "version": 1,
            "width": int(self.width),
            "height": int(self.height),
            "sampled_fps": float(self.sampled_fps),
            "layout": self.layout,
            "meta": self.meta,
            "track_ids": [int(t.track_id) for t in self.tracks],
        }
        arrays["header"] = np.frombuffer(json.dumps(header).encode("utf-8"), dtype=np.uint8)
        buf = io.BytesIO()
        np.savez_compressed(buf, **arrays)
        return buf.getvalue()

    @classmethod
    def from_bytes(cls, data: bytes) -> "PoseExtraction":
        with np.load(io.BytesIO(data), allow_pickle=False) as z:
            header = json.loads(bytes(z["header"]).decode("utf-8"))
            tracks = [
                PoseTrack(
                    track_id=tid,
                    frame_indices=z[f"t{i}_frame_indices"],
                    times=z[f"t{i}_times"],
                    keypoints=z[f"t{i}_keypoints"],
                    boxes=z[f"t{i}_boxes"],
                    scores=z[f"t{i}_scores"],
                )
                for i, tid in enumerate(header["track_ids"])
            ]
            return cls(
                width=header["width"],
                height=header["height"],
                sampled_fps=header["sampled_fps"],
                frame_times=z["frame_times"],
                tracks=tracks,
                layout=header["layout"],
                meta=header.get("meta", {}),
            )
