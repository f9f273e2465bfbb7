"""What happens to the keypoints after rendering: a real detector's errors on a hard, still person, clips
shorter than a window, and poses sampled below the model's rate and interpolated back."""
from __future__ import annotations

import numpy as np

from ...layouts import OPENPOSE18
from ..features import pad_indices

_UPPER = [i for i, n in enumerate(OPENPOSE18) if not n.endswith(("hip", "knee", "ankle"))]
_GROUPS = {"head": ("nose", "r_eye", "l_eye", "r_ear", "l_ear"), "r_arm": ("r_elbow", "r_wrist"),
           "l_arm": ("l_elbow", "l_wrist"), "r_side": ("r_shoulder", "r_elbow", "r_wrist", "r_ear", "r_eye"),
           "l_side": ("l_shoulder", "l_elbow", "l_wrist", "l_ear", "l_eye"), "arms": ("r_wrist", "l_wrist",
           "r_elbow", "l_elbow")}
_SWAPS = {"arms": ("elbow", "wrist"), "upper": ("shoulder", "elbow", "wrist"), "legs": ("knee", "ankle"),
          "head": ("eye", "ear")}


def _detector_artefacts(u, v, present, s: dict, rng: np.random.Generator, fps: float):
    """What a real pose detector does to a hard, still person (seen from the side, cut by the frame edge,
    small or blurred): a slow non-rigid wobble of the upper body (up to 0.1 of the stature, < 0.5 Hz) and
    of single joints (up to 0.02, < 0.4 Hz: far slower than any action), left/right labels swapped for a
    few frames, a group of joints flickering."""
    T, J = u.shape
    t = np.arange(T) / fps
    st = s["stature_px"]
    idx = {n: i for i, n in enumerate(OPENPOSE18)}

    def slow(amp, f_max=0.5):
        return amp * np.sin(2 * np.pi * t * rng.uniform(0.05, f_max) + rng.uniform(0, 2 * np.pi))

    up = np.zeros((T, J), bool)
    up[:, _UPPER] = True
    a = rng.uniform(0.0, 0.1) * st
    u = u + np.where(up, slow(0.4 * a)[:, None], 0.0)
    v = v + np.where(up, slow(a)[:, None], 0.0)
    aj = rng.uniform(0.0, 0.02) * st
    u = u + np.stack([slow(aj, 0.4) for _ in range(J)], -1)
    v = v + np.stack([slow(aj, 0.4) for _ in range(J)], -1)
    if rng.random() < 0.5:  # left/right labels swapped for a stretch of frames
        parts = _SWAPS[list(_SWAPS)[int(rng.integers(len(_SWAPS)))]]
        n = int(rng.integers(3, max(4, T // 2)))
        a0 = int(rng.integers(0, max(1, T - n)))
        for part in parts:
            li, ri = idx[f"l_{part}"], idx[f"r_{part}"]
            for arr in (u, v, present):
                arr[a0:a0 + n, [li, ri]] = arr[a0:a0 + n, [ri, li]]
    if rng.random() < 0.6:  # a group of joints flickers (low detector confidence)
        g = _GROUPS[list(_GROUPS)[int(rng.integers(len(_GROUPS)))]]
        cols = [idx[n] for n in g]
        present[:, cols] &= rng.random((T, len(cols))) >= rng.uniform(0.3, 0.9)
    return u, v, present


# windows of short clips: a share of windows keep only 15..31 of their frames, played back and forth to fill
# the window (features.pad_indices), as the timeline does for tracks shorter than one window
SHORT_CLIP_FRAMES = (15, 31)
# low_rate: poses taken every LOW_RATE_STEPS-th frame (11 or 7.3 Hz of a 22 Hz window), the rest interpolated
LOW_RATE_STEPS = (2, 3)


def short_clip(x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A window (T, J, 2) cut to a random run of SHORT_CLIP_FRAMES frames, played back and forth to fill it."""
    T = len(x)
    n = int(rng.integers(SHORT_CLIP_FRAMES[0], min(SHORT_CLIP_FRAMES[1], T - 1) + 1))
    a0 = int(rng.integers(0, T - n + 1))
    return x[a0:a0 + n][pad_indices(n, T)]


def low_rate(x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A window (T, J, 2) as the service sees one when it samples poses below the model's rate and interpolates
    them back to it (models.action.timeline.resample_track): every d-th frame kept (d from LOW_RATE_STEPS, random
    phase), the frames between linearly interpolated where the joint is present at both ends (missing otherwise),
    the first and last kept frames held to the window's ends."""
    T = len(x)
    d = int(rng.choice(LOW_RATE_STEPS))
    idx = np.arange(int(rng.integers(d)), T, d)
    t = np.arange(T)
    pos = np.clip(np.searchsorted(idx, t, side="right") - 1, 0, len(idx) - 1)
    i0 = idx[pos]
    i1 = idx[np.minimum(pos + 1, len(idx) - 1)]
    i1 = np.where(t <= i0, i0, i1)  # before the first kept frame or on a kept frame: that frame
    w = np.where(i1 > i0, (t - i0) / np.maximum(i1 - i0, 1), 0.0).astype(np.float32)[:, None, None]
    present = np.abs(x).sum(-1) > 0
    both = present[i0] & (present[i1] | (w[..., 0] == 0))
    out = x[i0] + (x[i1] - x[i0]) * w
    return np.where(both[..., None], out, 0.0).astype(x.dtype)
