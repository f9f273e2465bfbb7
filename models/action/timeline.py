"""Per-person action timelines from a :class:`~models.tracks.PoseExtraction` (numpy + onnxruntime).

For every track: keypoints below the card's confidence floor become missing, joints are mapped
from the extraction's layout to the model's by name, the track is resampled onto a uniform grid
at the model's frame rate, cut into sliding windows, classified, and the window labels are
smoothed (a single window that disagrees with two agreeing neighbours takes their label) and
merged into segments. A track shorter than one window but at least :data:`MIN_TRACK_S` long is
classified as one window, its frames played back and forth to fill it (as the model saw short
clips in training). The result is the report document of ``docs/contracts.md``: ``status`` is
``ok`` when a person was classified, ``too_short`` when people were tracked but none long enough
to classify, ``no_person`` when nobody was tracked.
"""
from __future__ import annotations

import itertools

import numpy as np

from ..layouts import remap
from ..tracks import PoseExtraction, PoseTrack
from .features import pad_indices

UNCERTAIN = "uncertain"
OK, TOO_SHORT, NO_PERSON = "ok", "too_short", "no_person"
MIN_TRACK_S = 0.7            # shorter tracks are "too short to classify"
MIN_JOINTS_PER_FRAME = 5     # a frame "has a person" with at least this many joints
MIN_FILLED_FRACTION = 0.75   # windows with fewer such frames are not classified (a quarter missing: ~0.36 s,
                             # the longest gap resample_track bridges; with more missing, windows were wrong far more often)


def resample_track(times: np.ndarray, kpts: np.ndarray, fps: float, src_fps: float | None = None,
                   max_gap_s: float = 0.35) -> tuple[np.ndarray, np.ndarray]:
    """Resample (T, K, 3) keypoints at ``times`` onto a uniform grid at ``fps`` from the first time.

    Joints present on both sides of a grid time (at most ``max_gap_s`` apart) are linearly
    interpolated; a joint present on one side only is taken from that frame when it lies within one
    source frame interval; otherwise the joint is missing. Returns (grid_times (G,), (G, K, 3)).
    """
    times = np.asarray(times, np.float64)
    kpts = np.asarray(kpts, np.float32)
    if len(times) == 0:
        return times, kpts
    if src_fps is None or src_fps <= 0:
        src_fps = 1.0 / np.median(np.diff(times)) if len(times) > 1 else fps
    n = int(np.floor((times[-1] - times[0]) * fps + 1e-6)) + 1
    grid = times[0] + np.arange(n) / fps
    i1 = np.clip(np.searchsorted(times, grid, side="right"), 1, len(times) - 1) if len(times) > 1 \
        else np.zeros(n, np.int64)
    i0 = np.maximum(i1 - 1, 0)
    if len(times) == 1:
        i1 = i0
    t0, t1 = times[i0], times[i1]
    span = t1 - t0
    w = np.where(span > 0, (grid - t0) / np.where(span > 0, span, 1), 0.0).clip(0, 1)
    p0 = kpts[i0, :, 2] > 0
    p1 = kpts[i1, :, 2] > 0
    tol = 1.0 / src_fps + 1e-6
    both = p0 & p1 & (span <= max_gap_s)[:, None]
    near0 = p0 & (np.abs(grid - t0) <= tol)[:, None]
    near1 = p1 & (np.abs(t1 - grid) <= tol)[:, None]
    out = np.zeros((n,) + kpts.shape[1:], np.float32)
    lerp = kpts[i0] + (kpts[i1] - kpts[i0]) * w[:, None, None].astype(np.float32)
    take1 = ~both & near1 & (~near0 | (w[:, None] > 0.5))
    take0 = ~both & near0 & ~take1
    out = np.where(both[..., None], lerp, out)
    out = np.where(take0[..., None], kpts[i0], out)
    out = np.where(take1[..., None], kpts[i1], out)
    return grid, out.astype(np.float32)


def window_starts(n: int, window: int, stride: int) -> list[int]:
    """Window start indices; a last window aligned to the end covers any remainder."""
    if n < window:
        return []
    starts = list(range(0, n - window + 1, max(1, int(stride))))
    if starts[-1] + window < n:
        starts.append(n - window)
    return starts


def window_plan(n: int, window: int, stride: int) -> tuple[list[int], bool]:
    """The windows the timeline classifies over a track of ``n`` (resampled) frames: their start indices, and
    whether the track is shorter than one window (then one window of its frames played back and forth)."""
    if n < window:
        return ([0] if n > 0 else []), True
    return window_starts(n, window, stride), False


def cut_windows(frames: np.ndarray, starts: list[int], padded: bool, window: int) -> np.ndarray:
    """The windows of :func:`window_plan` cut from ``frames`` (T, ...) -> (len(starts), window, ...)."""
    if padded:
        return frames[pad_indices(len(frames), window)][None]
    return np.stack([frames[s:s + window] for s in starts])


def prepare_track(times: np.ndarray, keypoints: np.ndarray, layout, model_layout, fps: float,
                  src_fps: float | None, min_keypoint_conf: float) -> tuple[np.ndarray, np.ndarray]:
    """A track's keypoints as the action model sees them: joints below ``min_keypoint_conf`` missing, mapped from
    ``layout`` to ``model_layout`` by joint name, resampled at the model's ``fps``. Returns (grid_times (G,),
    (G, K, 3)). The timeline and the real training windows (:mod:`models.action.realdata`) both use it, so the
    model is trained on exactly what it is shown."""
    k = np.asarray(keypoints, np.float32)
    if k.shape[-1] == 2:  # no confidence channel: (0, 0) = missing
        k = np.concatenate([k, np.any(k != 0, -1, keepdims=True).astype(np.float32)], -1)
    k = np.where((k[..., 2:3] >= min_keypoint_conf) & (k[..., 2:3] > 0), k, 0).astype(np.float32)
    k = remap(k, layout, model_layout)
    return resample_track(times, k, fps, src_fps)


def classifiable_windows(frames: np.ndarray, window: int, stride: int) -> tuple[list[int], bool]:
    """:func:`window_plan` over resampled frames (G, K, 3), keeping only windows with enough frames that show a
    person (:data:`MIN_FILLED_FRACTION` of them with :data:`MIN_JOINTS_PER_FRAME` joints)."""
    filled = (frames[..., 2] > 0).sum(-1) >= MIN_JOINTS_PER_FRAME
    starts, padded = window_plan(len(frames), window, stride)
    return [s for s in starts if filled[s:s + window].mean() >= MIN_FILLED_FRACTION], padded


def smooth_labels(labels: list[str]) -> list[str]:
    """Remove one-window flickers: A B A -> A A A."""
    out = list(labels)
    for i in range(1, len(out) - 1):
        if labels[i - 1] == labels[i + 1] != labels[i]:
            out[i] = labels[i - 1]
    return out


def _r(v, nd=3):
    return float(round(float(v), nd))


def _models_info(extraction: PoseExtraction, classifier) -> dict:
    meta = extraction.meta or {}
    pose = next((meta[k] for k in ("pose_model", "pose") if isinstance(meta.get(k), dict)), {})
    pose = {"name": str(pose.get("name", meta.get("pose_name", meta.get("model", "unknown")))),
            "version": str(pose.get("version", meta.get("pose_version", ""))),
            "sha256": str(pose.get("sha256", meta.get("pose_sha256", "")))}
    return {"pose": pose, "action": dict(classifier.info)}


def classify_extraction(extraction: PoseExtraction, classifier, stride: int = 8,
                        uncertain_threshold: float | None = None, min_track_s: float | None = None,
                        min_keypoint_conf: float | None = None, smooth: bool = True) -> dict:
    """Classify every long-enough track of ``extraction``; returns the report document."""
    classes = list(classifier.classes)
    W, fps = int(classifier.window), float(classifier.fps)
    thr = float(classifier.uncertain_threshold if uncertain_threshold is None else uncertain_threshold)
    min_s = float(MIN_TRACK_S if min_track_s is None else min_track_s)
    kconf = float(classifier.min_keypoint_conf if min_keypoint_conf is None else min_keypoint_conf)
    stride = max(1, int(stride))
    src_fps = float(extraction.sampled_fps) if extraction.sampled_fps else None
    frame_dt = 1.0 / src_fps if src_fps else 1.0 / fps
    frame_size = (float(extraction.width), float(extraction.height))

    persons, short = [], []
    for track in sorted(extraction.tracks, key=lambda t: t.track_id):
        res = _classify_track(track, extraction.layout, classifier, classes, W, fps, stride, thr, kconf,
                              src_fps, frame_dt, frame_size, min_s, smooth)
        if res is None:
            short.append({"track_id": int(track.track_id),
                          "start_s": _r(track.times[0]) if len(track) else 0.0,
                          "end_s": _r(track.times[-1] + frame_dt) if len(track) else 0.0,
                          "frames": int(len(track))})
        else:
            persons.append(res)

    n = extraction.n_frames
    duration = extraction.meta.get("duration_s") if extraction.meta else None
    if duration is None:
        duration = float(extraction.frame_times[-1] + frame_dt) if n else 0.0
    return {
        "status": OK if persons else (TOO_SHORT if short else NO_PERSON),
        "classes": classes,
        "models": _models_info(extraction, classifier),
        "video": {"width": int(extraction.width), "height": int(extraction.height),
                  "duration_s": _r(duration), "sampled_fps": _r(extraction.sampled_fps),
                  "frames_sampled": int(n)},
        "params": {"window": W, "stride": stride, "uncertain_threshold": _r(thr), "min_track_s": _r(min_s)},
        "persons": persons,
        "short_tracks": short,
    }


def _classify_track(track: PoseTrack, layout, classifier, classes, W, fps, stride, thr, kconf, src_fps,
                    frame_dt, frame_size, min_s, smooth):
    if len(track) == 0:
        return None
    start_s, end_s = float(track.times[0]), float(track.times[-1]) + frame_dt
    if end_s - start_s < min_s - 1e-6:
        return None
    grid, kr = prepare_track(track.times, track.keypoints, layout, classifier.layout, fps, src_fps, kconf)
    starts, padded = classifiable_windows(kr, W, stride)
    if not starts:
        return None
    wins = cut_windows(kr, starts, padded, W)
    probs = classifier.predict(wins, frame_size=frame_size)
    conf = probs.max(1)
    raw = [classes[i] if c >= thr else UNCERTAIN for i, c in zip(probs.argmax(1), conf)]
    # runs of windows that overlap or touch: neither smoothing nor a segment bridges a stretch of the
    # track without a classified window (joints missing there)
    run = np.cumsum([0] + [int(b - a > W) for a, b in itertools.pairwise(starts)])
    labels = []
    for r in range(int(run[-1]) + 1):
        part = [lab for lab, rr in zip(raw, run) if rr == r]
        labels += smooth_labels(part) if smooth else part
    # a window's confidence is the probability of the label it shows (smoothing may have changed it)
    win_conf = np.array([conf[i] if lab == UNCERTAIN else probs[i, classes.index(lab)]
                         for i, lab in enumerate(labels)])
    win_t0 = np.array([grid[s] for s in starts])
    win_t1 = np.array([end_s]) if padded else win_t0 + W / fps
    windows = [{"start_s": _r(t0), "end_s": _r(t1), "label": lab, "confidence": _r(c, 4),
                "probabilities": [_r(p, 4) for p in pr]}
               for t0, t1, lab, c, pr in zip(win_t0, win_t1, labels, win_conf, probs)]
    # segments: consecutive windows of one run with the same (smoothed) label; boundaries halfway
    # between the centres of neighbouring windows; at the edges of a run, the window's own start/end,
    # or the track's ends for windows at the ends of the track
    centres = (win_t0 + win_t1) / 2
    segments = []
    i = 0
    while i < len(labels):
        j = i
        while j + 1 < len(labels) and labels[j + 1] == labels[i] and run[j + 1] == run[i]:
            j += 1
        lab = labels[i]
        if lab == UNCERTAIN:
            c = float(conf[i:j + 1].mean())
        else:
            c = float(probs[i:j + 1, classes.index(lab)].mean())
        if i > 0 and run[i - 1] == run[i]:
            seg_start = (centres[i - 1] + centres[i]) / 2
        else:
            seg_start = start_s if starts[i] == 0 else win_t0[i]
        if j + 1 < len(labels) and run[j + 1] == run[j]:
            seg_end = (centres[j] + centres[j + 1]) / 2
        else:
            seg_end = end_s if starts[j] + W >= len(grid) else win_t1[j]
        segments.append({"label": lab, "start_s": _r(seg_start), "end_s": _r(seg_end), "confidence": _r(c, 4)})
        i = j + 1
    mean = probs.mean(0)
    best = int(mean.argmax())
    return {
        "track_id": int(track.track_id),
        "start_s": _r(start_s), "end_s": _r(end_s), "frames": len(track),
        "label": classes[best] if mean[best] >= thr else UNCERTAIN,
        "confidence": _r(mean[best], 4),
        "probabilities": {c: _r(p, 4) for c, p in zip(classes, mean)},
        "segments": segments,
        "windows": windows,
    }
