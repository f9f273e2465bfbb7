"""Windows, clips and datasets: labelled action windows, no-action windows, longer multi-action clips, and
a dataset written in the RNN-HAR-2D-Pose format."""
from __future__ import annotations

import numpy as np

from ...layouts import OPENPOSE18
from ..dataset import CLASSES, FPS, WINDOW, write_split
from .degrade import low_rate, short_clip
from .negatives import NEGATIVE_KINDS, NEGATIVE_MIX, _negative_segment
from .params import IDLE, sample_subject
from .render import render


def generate_negatives(n: int, split: str = "train", seed: int = 0, window: int = WINDOW,
                       p_drift: float = 0.8, p_hard: float = 0.4, mix=NEGATIVE_MIX,
                       p_short: float = 0.0, p_low_rate: float = 0.0) -> tuple[np.ndarray, list[str]]:
    """``n`` windows with no action (N, window, 18, 2) pixels and their kinds (NEGATIVE_KINDS): idle
    stance, frozen/near-frozen action frames, everyday still poses, slow non-action movement; most
    with a slow camera pan/zoom (``p_drift``); a share ``p_hard`` with a real detector's errors on a hard
    person (seen from the side, cut by the frame edge, wobbling/flickering/swapped joints); a share ``p_short``
    are short clips (:func:`short_clip`), a share ``p_low_rate`` sampled at a lower rate (:func:`low_rate`)."""
    rng = np.random.default_rng(seed)
    mix = np.asarray(mix, np.float64) / np.sum(mix)
    xs, kinds = [], []
    for _ in range(int(n)):
        kind = NEGATIVE_KINDS[int(rng.choice(len(NEGATIVE_KINDS), p=mix))]
        segs, ts = _negative_segment(kind, rng, window)
        subj = sample_subject(rng, split)
        hard = bool(rng.random() < p_hard)
        if hard and rng.random() < 0.4:  # seen from the side
            subj["yaw_deg"] = float(rng.choice([-1.0, 1.0]) * rng.uniform(35.0, 85.0))
        if hard and rng.random() < 0.4:  # cut by the left or right edge of the frame
            subj["center_x"] = float(rng.uniform(-0.03, 0.08) if rng.random() < 0.5 else rng.uniform(0.92, 1.03))
        x = render(segs, rng, subject=subj, time_scale=ts, camera_drift=bool(rng.random() < p_drift),
                   artefacts=hard)
        if p_low_rate > 0 and rng.random() < p_low_rate:
            x = low_rate(x, rng)
        xs.append(short_clip(x, rng) if p_short > 0 and rng.random() < p_short else x)
        kinds.append(kind)
    x = np.stack(xs) if xs else np.zeros((0, window, len(OPENPOSE18), 2), np.float32)
    return x, kinds


def generate_windows(n_per_class: int, split: str = "train", seed: int = 0, window: int = WINDOW,
                     p_transition: float = 0.3, classes=range(len(CLASSES)), p_drift: float = 0.3,
                     p_artefacts: float = 0.0, p_short: float = 0.0, p_low_rate: float = 0.0
                     ) -> tuple[np.ndarray, np.ndarray]:
    """Independent labelled windows: x (N, window, 18, 2) pixels, y (N,) 0-based labels.

    With probability ``p_transition`` a window starts or ends with 2..8 idle/transition frames; with
    probability ``p_drift`` the camera pans/zooms slowly (so camera motion alone never means "idle"); with
    probability ``p_artefacts`` the detector errors of the hard negatives are added too (training only, so
    those errors alone never mean "no action"); with probability ``p_short`` the window is a short clip
    (:func:`short_clip`); with probability ``p_low_rate`` its poses are sampled at a lower rate and
    interpolated (:func:`low_rate`).
    """
    rng = np.random.default_rng(seed)
    xs, ys = [], []
    for c in classes:
        for _ in range(n_per_class):
            if rng.random() < p_transition:
                k = int(rng.integers(2, 9))
                segs = [(IDLE, k), (c, window - k)] if rng.random() < 0.5 else [(c, window - k), (IDLE, k)]
            else:
                segs = [(c, window)]
            drift = bool(rng.random() < p_drift)
            art = bool(p_artefacts > 0 and rng.random() < p_artefacts)
            x = render(segs, rng, split=split, camera_drift=drift, artefacts=art)
            if p_low_rate > 0 and rng.random() < p_low_rate:
                x = low_rate(x, rng)
            xs.append(short_clip(x, rng) if p_short > 0 and rng.random() < p_short else x)
            ys.append(c)
    x = np.stack(xs)
    y = np.asarray(ys, np.int64)
    perm = rng.permutation(len(y))
    return x[perm], y[perm]


def generate_sequence(segments: list[tuple[int, float]], split: str = "test", seed: int = 0,
                      fps: float = FPS, subject: dict | None = None) -> np.ndarray:
    """A longer clip of ``(action, seconds)`` segments, e.g. for timeline tests: (T, 18, 2) pixels."""
    rng = np.random.default_rng(seed)
    frames = [(a, max(1, int(round(sec * fps)))) for a, sec in segments]
    return render(frames, rng, subject=subject, split=split, fps=fps, ramp=max(2, int(0.2 * fps)))


def write_dataset(out_dir, n_train_per_class: int = 1200, n_test_per_class: int = 300, seed: int = 0) -> dict:
    """Write a synthetic dataset in the RNN-HAR-2D-Pose format (train from training ranges,
    test from the held-out ranges)."""
    xtr, ytr = generate_windows(n_train_per_class, "train", seed)
    xte, yte = generate_windows(n_test_per_class, "test", seed + 1)
    write_split(out_dir, "train", xtr, ytr)
    write_split(out_dir, "test", xte, yte)
    return {"train": len(ytr), "test": len(yte)}
