"""Window features for the action model (numpy only; shared by training and inference).

Input: windows of keypoints in the model's layout, ``(N, W, K, 2)`` pixels with missing joints
(0, 0), or ``(N, W, K, 3)`` with a confidence channel (0 = missing). Output: float32
``(N, W, 2K)`` = per frame (x0, y0, x1, y1, ...), missing joints 0.

Two normalizations:

- ``"frame"`` (the original app's): x / frame width, y / frame height.
- ``"person"``: centred on the window's mean hip midpoint (neck/shoulder midpoint as a
  fallback), scaled by the window's median torso length (shoulder midpoint to hip midpoint;
  when the hips are missing, the larger of 1.25 x the shoulder width and 2.7 x the nose's distance to
  the shoulder midpoint, which holds in a side view where the shoulders overlap; body height last). The centre and
  scale are per *window*, not per frame, so whole-body motion (jumping) is kept.

Short gaps (a joint missing for at most ``max_gap`` consecutive frames) are linearly
interpolated (held at the ends) before normalizing.
"""
from __future__ import annotations

import warnings

import numpy as np

from ..layouts import flip_permutation, get_layout, present_mask

NORMALIZATIONS = ("person", "frame")
MAX_GAP = 4


def pad_indices(n: int, window: int) -> np.ndarray:
    """Frame indices that stretch ``n`` frames (1 <= n) to ``window`` by playing them back and forth
    (0, 1, ..., n-1, n-2, ..., 1, 0, 1, ...): a clip shorter than one window becomes a window with no jump
    in position, and a periodic action keeps its rhythm. Used for short tracks at run time and for the
    short-clip windows of training, so both see the same kind of window."""
    n, window = int(n), int(window)
    if n < 1:
        raise ValueError("need at least one frame")
    if n == 1:
        return np.zeros(window, np.int64)
    cycle = np.concatenate([np.arange(n), np.arange(n - 2, 0, -1)])
    return np.resize(cycle, window).astype(np.int64)


def fill_gaps(kpts: np.ndarray, max_gap: int = MAX_GAP) -> tuple[np.ndarray, np.ndarray]:
    """Fill gaps of at most ``max_gap`` frames per joint: linear interpolation between the present
    frames around an inner gap, the nearest present value for a gap at either end of the window.
    Returns (xy (N, W, K, 2), present (N, W, K))."""
    kpts = np.asarray(kpts, dtype=np.float32)
    present = present_mask(kpts)
    xy = np.where(present[..., None], kpts[..., :2], 0).astype(np.float32)
    if max_gap <= 0 or present.all():
        return xy, present
    W = present.shape[1]
    t = np.arange(W).reshape(1, W, 1)
    prev = np.maximum.accumulate(np.where(present, t, -1), axis=1)          # last present <= t
    nxt = np.flip(np.minimum.accumulate(np.flip(np.where(present, t, W), 1), axis=1), 1)  # first >= t
    has_p, has_n = prev >= 0, nxt < W
    gap = np.where(has_p & has_n, nxt - prev - 1, np.where(has_p, W - 1 - prev, nxt))
    fill = ~present & (has_p | has_n) & (gap <= max_gap)
    if not fill.any():
        return xy, present
    pi, ni = np.clip(prev, 0, W - 1), np.clip(nxt, 0, W - 1)
    xp = np.take_along_axis(xy, pi[..., None], axis=1)
    xn = np.take_along_axis(xy, ni[..., None], axis=1)
    w = np.where(has_p & has_n, (t - prev) / np.maximum(nxt - prev, 1), np.where(has_p, 0.0, 1.0))
    val = xp + (xn - xp) * w[..., None].astype(np.float32)
    xy = np.where(fill[..., None], val, xy).astype(np.float32)
    return xy, present | fill


def _mid(xy, present, a, b):
    both = present[..., a] & present[..., b]
    return (xy[..., a, :] + xy[..., b, :]) / 2.0, both


def _nanmean_frames(v, ok):
    """Mean over frames (axis 1) of v (N, W, 2) where ok (N, W); NaN where no frame is ok."""
    cnt = ok.sum(1)
    s = np.where(ok[..., None], v, 0).sum(1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(cnt[:, None] > 0, s / np.maximum(cnt[:, None], 1), np.nan)


def _nanmedian_frames(v, ok):
    vv = np.where(ok, v, np.nan)
    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN windows give NaN, handled by the caller
        return np.nanmedian(vv, axis=1)


def person_frame(xy: np.ndarray, present: np.ndarray, layout) -> tuple[np.ndarray, np.ndarray]:
    """Centre (N, 2) and scale (N,) of each window for person-centric normalization."""
    names = get_layout(layout)
    j = {n: i for i, n in enumerate(names)}
    N = xy.shape[0]
    hip, hip_ok = _mid(xy, present, j["l_hip"], j["r_hip"])
    sh, sh_ok = _mid(xy, present, j["l_shoulder"], j["r_shoulder"])
    if "neck" in j:  # a detected neck is better than nothing when a shoulder is missing
        neck_ok = present[..., j["neck"]]
        sh = np.where(sh_ok[..., None], sh, xy[..., j["neck"], :])
        sh_ok = sh_ok | neck_ok
    torso = np.linalg.norm(sh - hip, axis=-1)
    scale = _nanmedian_frames(torso, sh_ok & hip_ok)
    sw = np.linalg.norm(xy[..., j["l_shoulder"], :] - xy[..., j["r_shoulder"], :], axis=-1)
    sw_ok = present[..., j["l_shoulder"]] & present[..., j["r_shoulder"]]
    scale_sw = _nanmedian_frames(sw, sw_ok) * 1.25  # torso ~ 1.25 x shoulder width (frontal)
    # the shoulders overlap in a side view: the nose's distance to the shoulder midpoint does not (torso ~ 2.7 x it)
    head = np.linalg.norm(xy[..., j["nose"], :] - sh, axis=-1)
    scale_head = _nanmedian_frames(head, sh_ok & present[..., j["nose"]]) * 2.7
    scale_sw = np.fmax(scale_sw, scale_head)  # NaN only where both are missing
    # extent of all present joints / 3 as the last resort
    ys = np.where(present, xy[..., 1], np.nan)
    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        ext = np.nanmax(ys, axis=(1, 2)) - np.nanmin(ys, axis=(1, 2))
    scale = np.where(np.isfinite(scale) & (scale > 1e-3), scale,
                     np.where(np.isfinite(scale_sw) & (scale_sw > 1e-3), scale_sw, ext / 3.0))
    scale = np.where(np.isfinite(scale) & (scale > 1e-3), scale, 1.0)
    centre = _nanmean_frames(hip, hip_ok)
    sh_c = _nanmean_frames(sh, sh_ok)
    # no hips: shoulder midpoint moved down by one torso length
    alt = sh_c + np.stack([np.zeros(N), scale], -1)
    centre = np.where(np.isfinite(centre), centre, alt)
    allc = _nanmean_frames(xy.reshape(N, -1, 2), present.reshape(N, -1))
    centre = np.where(np.isfinite(centre), centre, allc)
    centre = np.where(np.isfinite(centre), centre, 0.0)
    return centre.astype(np.float32), scale.astype(np.float32)


def window_features(kpts: np.ndarray, layout, normalization: str = "person",
                    frame_size: tuple[float, float] = (640.0, 480.0), max_gap: int = MAX_GAP) -> np.ndarray:
    """Keypoint windows (N, W, K, 2|3) in ``layout`` -> float32 features (N, W, 2K)."""
    kpts = np.asarray(kpts, dtype=np.float32)
    if kpts.ndim == 3:
        kpts = kpts[None]
    K = len(get_layout(layout))
    if kpts.shape[2] != K:
        raise ValueError(f"expected {K} joints for layout {layout!r}, got {kpts.shape[2]}")
    if normalization not in NORMALIZATIONS:
        raise ValueError(f"normalization must be one of {NORMALIZATIONS}")
    if not len(kpts):  # no windows (a track too short or too sparse to classify)
        return np.zeros((0, kpts.shape[1], 2 * K), np.float32)
    xy, present = fill_gaps(kpts, max_gap)
    if normalization == "frame":
        w, h = frame_size
        f = xy / np.array([w, h], np.float32)
    elif normalization == "person":
        centre, scale = person_frame(xy, present, layout)
        f = (xy - centre[:, None, None, :]) / scale[:, None, None, None]
    else:
        raise ValueError(f"normalization must be one of {NORMALIZATIONS}")
    f = np.where(present[..., None], f, 0.0).astype(np.float32)
    return f.reshape(f.shape[0], f.shape[1], -1)


def mirror_features(f: np.ndarray, layout, normalization: str = "person") -> np.ndarray:
    """Features (N, W, 2K) of the horizontally mirrored video: x negated about the person's centre ("person") or
    x -> 1 - x ("frame"), and every left/right joint pair swapped. Missing joints (0, 0) stay missing. The model
    is trained on mirrored windows as well, so averaging its output over a window and its mirror image removes
    any left/right bias it has left (test-time augmentation)."""
    f = np.asarray(f, np.float32)
    N, W, F = f.shape
    k = f.reshape(N, W, F // 2, 2).copy()
    present = (k != 0).any(-1)
    if normalization == "person":
        k[..., 0] = -k[..., 0]
    elif normalization == "frame":
        k[..., 0] = np.where(present, 1.0 - k[..., 0], 0.0)
    else:
        raise ValueError(f"normalization must be one of {NORMALIZATIONS}")
    k = k[:, :, flip_permutation(layout)]
    return k.reshape(N, W, F)
