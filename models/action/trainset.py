"""Training data for the action model: generated windows, the RNN-HAR-2D-Pose files, and real tracks.

- Synthetic (:mod:`models.action.synth`): every action and no-action windows, from training ranges (train, val) and
  held-out generator ranges (heldout_val, test), and synthetic person tracks for calibrating the "uncertain"
  threshold the way the timeline labels a person.
- The RNN-HAR-2D-Pose-database files (:mod:`models.action.dataset`), when someone holds them.
- Real tracks (:mod:`models.action.realdata`): windows cut by the timeline's own preprocessing, at several tempos,
  mirrored and slightly rotated/stretched, drawn so that every group (original recording) of a class weighs about
  the square root of its clip count: a source with 20 clips counts more than one with 1, but not 20 times more.

Synthetic and file windows are OpenPose-18 pixels (the file format) and become features through :func:`featurize`;
real windows are already in the model's layout and become features through the same
:func:`models.action.features.window_features`.
"""
from __future__ import annotations

import numpy as np

from ..layouts import flip_horizontal, get_layout, remap
from . import synth
from .dataset import CLASSES, FRAME_H, FRAME_W, WINDOW, load_split
from .dataset import LAYOUT as FILE_LAYOUT
from .evaluate import onnx_probs
from .features import MAX_GAP, mirror_features, window_features
from .timeline import cut_windows, window_plan

MODEL_LAYOUT = "openpose17"
MIN_KEYPOINT_CONF = 0.3
# share of synthetic training action windows given the detector errors of the hard negatives
P_ARTEFACTS_TRAIN = 0.2
# no-action training windows: this many per training window per class (1 in 3 training windows)
NEGATIVES_PER_TRAIN_WINDOW_PER_CLASS = 3.0
# share of short-clip windows (synth.short_clip) in every synthetic split, actions and no-action alike
P_SHORT = 0.15
# share of windows sampled below the model's rate and interpolated back (synth.low_rate), in every synthetic split
# and the calibration tracks: the service samples poses at half the model's rate (models.pose.default_sample_fps)
P_LOW_RATE = 0.5
CALIBRATION_TRACK_FRAMES = (20, 28, 40, 56, 80)
CALIBRATION_TRACKS_PER_CLASS = 40  # per length, and as many no-action tracks
CALIBRATION_STRIDE = 8  # the service's default window stride

# real tracks: windows every REAL_STRIDE frames, the clip also played at these speeds
REAL_STRIDE = 4
REAL_TEMPOS = (0.8, 0.9, 1.0, 1.12, 1.25)
# each (clip, tempo) copy is rotated by up to this many degrees and stretched horizontally by this factor range
# (a slightly tilted camera, a slightly different view angle); its mirror image joins too
REAL_ROTATION_DEG = 8.0
REAL_X_STRETCH = (0.85, 1.15)


def n_negatives_train(n_train: int) -> int:
    return max(6, int(round(NEGATIVES_PER_TRAIN_WINDOW_PER_CLASS * n_train)))


def _to_model_layout(x18: np.ndarray) -> np.ndarray:
    return remap(x18, FILE_LAYOUT, MODEL_LAYOUT)


def featurize(x18: np.ndarray, normalization: str, flip: bool = False) -> np.ndarray:
    """OpenPose-18 pixel windows (file format) -> model features, optionally mirrored."""
    if flip:
        x18 = flip_horizontal(x18, FILE_LAYOUT, FRAME_W)
    return window_features(_to_model_layout(x18), MODEL_LAYOUT, normalization, (FRAME_W, FRAME_H), MAX_GAP)


# Consecutive windows of the RNN-HAR-2D-Pose files overlap by 26 of 32 frames (stride 6): a window shares
# frames with the 5 windows after it.
OVERLAPPING_NEIGHBOURS = 5


def holdout_split(y: np.ndarray, fraction: float = 0.1, guard: int = OVERLAPPING_NEIGHBOURS
                  ) -> tuple[np.ndarray, np.ndarray]:
    """Indices (fit, val) of file-ordered, overlapping windows: per class, the last ``fraction`` of its
    windows in file order, with the ``guard`` windows just before them left out of both, so no
    validation window shares frames with a training window (a random split of overlapping windows
    leaks, and the normalization choice and the "uncertain" threshold are calibrated on val)."""
    y = np.asarray(y)
    fit, val = [], []
    for c in np.unique(y):
        idx = np.nonzero(y == c)[0]
        if len(idx) < 2:
            fit.append(idx)
            continue
        nv = max(1, int(len(idx) * fraction))
        g = min(guard, len(idx) - nv - 1)  # tiny sets: a shorter guard, at least one training window
        val.append(idx[-nv:])
        fit.append(idx[:len(idx) - nv - g])
    return np.sort(np.concatenate(fit)), np.sort(np.concatenate(val) if val else np.zeros(0, np.int64))


def load_data(data_dir=None, synthetic: bool = True, n_train: int = 1000, n_val: int = 150, n_test: int = 300,
              seed: int = 0) -> dict:
    """Splits of OpenPose-18 pixel windows: train, val (train distribution), heldout_val (held-out
    generator ranges, used to choose the normalization), test (held-out ranges, reported), and
    no-action windows (synth.generate_negatives): idle_train (trained toward the uniform distribution),
    idle (threshold calibration) and idle_test (held-out ranges, rejection reported)."""
    if data_dir is not None:
        tr = load_split(data_dir, "train")
        te = load_split(data_dir, "test")
        fit_idx, val_idx = holdout_split(tr.y)
        return {"source": f"RNN-HAR-2D-Pose files in {data_dir}",
                "train": (tr.x[fit_idx], tr.y[fit_idx]), "val": (tr.x[val_idx], tr.y[val_idx]),
                "heldout_val": (tr.x[val_idx], tr.y[val_idx]), "test": (te.x, te.y), "idle": None,
                "idle_train": None, "idle_test": None}
    g = synth.generate_windows
    # no-action windows (idle stance, frozen action frames, still poses, slow movement; see
    # synth.generate_negatives): training (uniform targets), calibration (val) and a held-out report (test)
    idle, idle_kinds = synth.generate_negatives(max(6, 2 * n_val), "val", seed + 100, p_short=P_SHORT, p_low_rate=P_LOW_RATE)
    idle_train, _ = synth.generate_negatives(n_negatives_train(n_train), "train", seed + 10 ** 6, p_short=P_SHORT, p_low_rate=P_LOW_RATE)
    idle_test, idle_test_kinds = synth.generate_negatives(max(6, n_test), "test", seed + 200, p_short=P_SHORT, p_low_rate=P_LOW_RATE)
    return {
        "idle_train": idle_train, "idle_kinds": idle_kinds,
        "idle_test": idle_test, "idle_test_kinds": idle_test_kinds,
        "source": f"synthetic generator models.action.synth v{synth.GENERATOR_VERSION}",
        "train": g(n_train, "train", seed, p_artefacts=P_ARTEFACTS_TRAIN, p_short=P_SHORT, p_low_rate=P_LOW_RATE),
        "val": g(n_val, "val", seed + 1, p_short=P_SHORT, p_low_rate=P_LOW_RATE),
        "heldout_val": g(n_val, "test", seed + 2, p_short=P_SHORT, p_low_rate=P_LOW_RATE),
        "test": g(n_test, "test", seed + 3, p_short=P_SHORT, p_low_rate=P_LOW_RATE),
        "idle": idle,
        "cal_tracks": dict(zip(("tracks", "y"), calibration_tracks(seed + 300))),
    }


def calibration_tracks(seed: int, split: str = "val", per_class: int = CALIBRATION_TRACKS_PER_CLASS,
                       lengths=CALIBRATION_TRACK_FRAMES) -> tuple[list[np.ndarray], np.ndarray]:
    """Synthetic person tracks, each as the OpenPose-18 windows the timeline would classify, and their labels
    (-1 = no action): per length, ``per_class`` tracks of every action and ``per_class`` no-action tracks."""
    tracks, ys = [], []
    for i, n in enumerate(lengths):
        x, y = synth.generate_windows(per_class, split, seed + 10 * i, window=n, p_low_rate=P_LOW_RATE)
        neg, _ = synth.generate_negatives(per_class, split, seed + 10 * i + 5, window=n, p_low_rate=P_LOW_RATE)
        starts, padded = window_plan(n, WINDOW, CALIBRATION_STRIDE)
        tracks += [cut_windows(seq, starts, padded, WINDOW) for seq in list(x) + list(neg)]
        ys += list(y) + [-1] * len(neg)
    return tracks, np.asarray(ys, np.int64)


def track_probs(path, tracks: list[np.ndarray], normalization: str, mirror=None) -> np.ndarray:
    """A person's probabilities per track: the mean over its windows (as the timeline labels a person)."""
    p = onnx_probs(path, featurize(np.concatenate(tracks), normalization), mirror=mirror)
    return np.stack(track_means(p, tracks))


def track_means(probs: np.ndarray, tracks: list[np.ndarray]) -> list[np.ndarray | None]:
    """Split window probabilities (of ``tracks``' windows, concatenated in order) back per track and average each:
    a person's probabilities as the timeline labels them; None for a track with no window."""
    parts = np.split(probs, np.cumsum([len(t) for t in tracks])[:-1]) if tracks else []
    return [w.mean(0) if len(w) else None for w in parts]


# --- real tracks

class RealPool:
    """Every training window of a set of real clips, as features: ``x`` (N, W, F) and its mirror image ``xf``,
    ``y`` (0-based class, -1 for "none"), ``clip`` (index into ``clips``) and ``weight`` (per window: each clip of a
    label weighs 1 / sqrt(clips of its group), shared by its windows)."""

    def __init__(self, clips, seed: int = 0, tempos=REAL_TEMPOS, stride: int = REAL_STRIDE,
                 fps: float = 22.0, augment: bool = True):
        from .realdata import clip_windows

        rng = np.random.default_rng(seed)
        self.clips = list(clips)
        xs, ys, idx, tp = [], [], [], []
        for i, c in enumerate(self.clips):
            for tempo in (tempos if augment else (1.0,)):
                w = clip_windows(c, WINDOW, fps, stride, MODEL_LAYOUT, MIN_KEYPOINT_CONF, tempo)
                if not len(w):
                    continue
                f = window_features(w, MODEL_LAYOUT, "person", max_gap=MAX_GAP)
                if augment:
                    f = _rotate_stretch(f, rng)
                xs.append(f)
                ys += [c.y] * len(f)
                idx += [i] * len(f)
                tp += [tempo] * len(f)
        F = 2 * len(get_layout(MODEL_LAYOUT))
        self.x = np.concatenate(xs).astype(np.float32) if xs else np.zeros((0, WINDOW, F), np.float32)
        self.xf = mirror_features(self.x, MODEL_LAYOUT, "person") if len(self.x) else self.x.copy()
        self.y = np.asarray(ys, np.int64)
        self.clip = np.asarray(idx, np.int64)
        self.tempo = np.asarray(tp, np.float64)
        self.weight = np.zeros(len(self.y))
        labels = {c.label for c in self.clips}
        for lab in labels:
            in_lab = [i for i, c in enumerate(self.clips) if c.label == lab]
            per_group: dict[str, int] = {}
            for i in in_lab:
                per_group[self.clips[i].group] = per_group.get(self.clips[i].group, 0) + 1
            for i in in_lab:
                m = self.clip == i
                if m.any():
                    self.weight[m] = 1.0 / np.sqrt(per_group[self.clips[i].group]) / m.sum()

    def __len__(self) -> int:
        return int(len(self.y))

    def windows_per_label(self) -> dict:
        """Per label: the windows of the clips as recorded (tempo 1) and in the whole pool (every tempo)."""
        out = {}
        for c in sorted({c.label for c in self.clips}, key=lambda lab: (lab == "none", lab)):
            y = -1 if c == "none" else list(CLASSES).index(c)
            m = self.y == y
            out[c] = {"as_recorded": int((m & (self.tempo == 1.0)).sum()), "all_tempos": int(m.sum())}
        return out

    def draw(self, n_per_label: dict, rng: np.random.Generator) -> np.ndarray:
        """Window indices: ``n_per_label[y]`` windows of each label y (with replacement, by weight)."""
        out = []
        for y, n in n_per_label.items():
            cand = np.nonzero(self.y == y)[0]
            if not len(cand) or n <= 0:
                continue
            p = self.weight[cand] / self.weight[cand].sum()
            out.append(rng.choice(cand, size=int(n), replace=True, p=p))
        return np.concatenate(out) if out else np.zeros(0, np.int64)


def _rotate_stretch(f: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Person-normalized features (N, W, F) of one copy rotated about the person's centre by a random angle and
    stretched horizontally by a random factor (the same for the copy's windows); missing joints stay 0."""
    a = np.deg2rad(rng.uniform(-REAL_ROTATION_DEG, REAL_ROTATION_DEG))
    sx = rng.uniform(*REAL_X_STRETCH)
    N, W, F = f.shape
    k = f.reshape(N, W, F // 2, 2)
    present = (k != 0).any(-1, keepdims=True)
    x, y = k[..., 0] * sx, k[..., 1]
    r = np.stack([np.cos(a) * x - np.sin(a) * y, np.sin(a) * x + np.cos(a) * y], -1)
    return np.where(present, r, 0.0).astype(np.float32).reshape(N, W, F)


def real_track_windows(clips, stride: int = CALIBRATION_STRIDE, fps: float = 22.0) -> list[np.ndarray]:
    """Each clip as the features of the windows the timeline classifies (the service's stride; no augmentation),
    in the clips' order; (0, window, F) for a clip with no classifiable window."""
    from .realdata import clip_windows

    return [window_features(clip_windows(c, WINDOW, fps, stride, MODEL_LAYOUT, MIN_KEYPOINT_CONF), MODEL_LAYOUT,
                            "person", max_gap=MAX_GAP) for c in clips]
