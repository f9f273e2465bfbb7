"""Shot boundaries (hard cuts) between consecutive sampled frames, so no track continues into another scene.

Edited footage (films, TV, compilations) cuts from one shot to the next; without this the tracker can hand one
person's track to whoever stands at the same place after the cut, and the jump looks like motion (a "jump").
Each frame is reduced to a colour histogram of a small copy (HSV, 16 hue x 4 saturation x 4 value bins); a cut
is where its correlation with the previous frame's falls below ``min_correlation``. Camera motion, zooms and
people moving keep the correlation high (>= 0.84 on the real clips measured with bench/real_footage.py, where
cuts fall to about 0.1 or below).
"""
from __future__ import annotations

import cv2
import numpy as np

MIN_CORRELATION = 0.5


def colour_histogram(frame: np.ndarray) -> np.ndarray:
    # every k-th pixel first (a view, no copy): area-averaging a whole 1080p frame costs more than the rest
    step = max(1, min(frame.shape[0] // 96, frame.shape[1] // 128))
    small = cv2.resize(frame[::step, ::step], (64, 48), interpolation=cv2.INTER_AREA)
    hsv = cv2.cvtColor(small, cv2.COLOR_BGR2HSV)
    h = cv2.calcHist([hsv], [0, 1, 2], None, [16, 4, 4], [0, 180, 0, 256, 0, 256])
    return cv2.normalize(h, h).flatten()


class ShotDetector:
    """``is_cut(frame)``: True when ``frame`` starts a new shot (never for the first frame)."""

    def __init__(self, min_correlation: float = MIN_CORRELATION):
        self.min_correlation = float(min_correlation)
        self._prev: np.ndarray | None = None

    def is_cut(self, frame: np.ndarray) -> bool:
        h = colour_histogram(frame)
        prev, self._prev = self._prev, h
        if prev is None:
            return False
        return float(cv2.compareHist(prev, h, cv2.HISTCMP_CORREL)) < self.min_correlation
