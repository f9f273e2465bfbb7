"""Loader and writer for the RNN-HAR-2D-Pose-database format.

On disk (one directory)::

    X_train.txt, X_test.txt   one frame per line: 36 comma-separated floats = OpenPose-18 (x, y)
                              pixels in a 640x480 frame; 32 consecutive lines = one window
    Y_train.txt, Y_test.txt   one label per line (1..6), one line per window

Missing joints are (0, 0). Labels are 1-based on disk and 0-based in memory.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

CLASSES = ("JUMPING", "JUMPING_JACKS", "BOXING", "WAVING_2HANDS", "WAVING_1HAND", "CLAPPING_HANDS")
LAYOUT = "openpose18"
N_JOINTS = 18
WINDOW = 32
FRAME_W, FRAME_H = 640, 480
FPS = 22.0


@dataclass
class WindowSet:
    """Windows of keypoints in the file layout: ``x`` (N, 32, 18, 2) pixels, ``y`` (N,) 0-based labels."""

    x: np.ndarray
    y: np.ndarray

    def __len__(self) -> int:
        return int(len(self.y))


def read_x(path, window: int = WINDOW) -> np.ndarray:
    """``X_*.txt`` -> float32 (N, window, 18, 2)."""
    rows = []
    with open(path, "r", encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            line = line.strip()
            if not line:
                continue
            vals = [float(v) for v in line.replace(" ", "").split(",") if v != ""]
            if len(vals) != 2 * N_JOINTS:
                raise ValueError(f"{path}:{lineno}: expected {2 * N_JOINTS} values, got {len(vals)}")
            rows.append(vals)
    arr = np.asarray(rows, dtype=np.float32).reshape(-1, 2 * N_JOINTS)
    if len(arr) % window:
        raise ValueError(f"{path}: {len(arr)} frames is not a multiple of the window ({window})")
    return arr.reshape(-1, window, N_JOINTS, 2)


def read_y(path) -> np.ndarray:
    """``Y_*.txt`` -> int64 (N,) 0-based labels."""
    with open(path, "r", encoding="utf-8") as f:
        labels = [int(float(line)) for line in f if line.strip()]
    y = np.asarray(labels, dtype=np.int64) - 1
    if len(y) and (y.min() < 0 or y.max() >= len(CLASSES)):
        raise ValueError(f"{path}: labels must be 1..{len(CLASSES)}")
    return y


def load_split(directory, split: str, window: int = WINDOW) -> WindowSet:
    """Load ``X_{split}.txt`` / ``Y_{split}.txt`` from ``directory``."""
    d = Path(directory)
    x = read_x(d / f"X_{split}.txt", window)
    y = read_y(d / f"Y_{split}.txt")
    if len(x) != len(y):
        raise ValueError(f"{d}: {len(x)} windows in X_{split}.txt but {len(y)} labels in Y_{split}.txt")
    return WindowSet(x, y)


def write_split(directory, split: str, x: np.ndarray, y: np.ndarray) -> None:
    """Write windows (N, W, 18, 2) pixels and 0-based labels in the on-disk format."""
    d = Path(directory)
    d.mkdir(parents=True, exist_ok=True)
    x = np.asarray(x, dtype=np.float64)
    if x.ndim != 4 or x.shape[2:] != (N_JOINTS, 2):
        raise ValueError(f"expected (N, W, {N_JOINTS}, 2), got {x.shape}")
    flat = x.reshape(-1, 2 * N_JOINTS)
    with open(d / f"X_{split}.txt", "w", encoding="utf-8") as f:
        for row in flat:
            f.write(",".join(f"{v:.3f}".rstrip("0").rstrip(".") if v else "0" for v in row) + "\n")
    with open(d / f"Y_{split}.txt", "w", encoding="utf-8") as f:
        for label in np.asarray(y, dtype=np.int64):
            f.write(f"{int(label) + 1}\n")
