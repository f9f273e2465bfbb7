"""The original app's Keras GRU (``GRU_model.keras``), run in numpy: the baseline we measure against.

The ``.keras`` file is a zip whose ``model.weights.h5`` holds the weights; h5py reads it, no TensorFlow.
Architecture (from its ``config.json``): GRU(128, return_sequences) -> Dropout -> GRU(64) -> Dropout ->
Dense(64, relu) -> Dense(6, softmax); Keras GRU cells with ``reset_after=True``, gate order z, r, h,
recurrent activation sigmoid, activation tanh.

Its preprocessing, as the original app fed it: COCO-17 keypoints *in COCO order* (the app's bug:
``result.keypoints.xyn``, never reordered) would be a wrong comparison for the model itself, so
:func:`seed_features` gives it what it was trained on — the 17 OpenPose joints without the neck, in
OpenPose order, x / frame width, y / frame height, missing joints (0, 0) — the fairest input it can get.
"""
from __future__ import annotations

import io
import json
import zipfile
from pathlib import Path

import numpy as np

from models.layouts import remap

CLASSES = ("JUMPING", "JUMPING_JACKS", "BOXING", "WAVING_2HANDS", "WAVING_1HAND", "CLAPPING_HANDS")
LAYOUT = "openpose17"
WINDOW = 32
DEFAULT_PATH = Path(__file__).resolve().parents[2] / "shared" / "seed-model" / "GRU_model.keras"


def _sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))


class SeedGru:
    """``predict(x)`` with x (N, T, 34) float features -> (N, 6) softmax probabilities."""

    def __init__(self, path=DEFAULT_PATH):
        import h5py

        self.path = Path(path)
        with zipfile.ZipFile(self.path) as z:
            config = json.loads(z.read("config.json"))
            blob = z.read("model.weights.h5")
        layers = [layer["class_name"] for layer in config["config"]["layers"]]
        if layers != ["InputLayer", "GRU", "Dropout", "GRU", "Dropout", "Dense", "Dense"]:
            raise ValueError(f"{self.path.name}: unexpected architecture {layers}")
        with h5py.File(io.BytesIO(blob), "r") as f:
            def var(p):
                return np.asarray(f[p], np.float32)
            self.gru1 = [var(f"layers/gru/cell/vars/{i}") for i in range(3)]
            self.gru2 = [var(f"layers/gru_1/cell/vars/{i}") for i in range(3)]
            self.fc1 = [var(f"layers/dense/vars/{i}") for i in range(2)]
            self.fc2 = [var(f"layers/dense_1/vars/{i}") for i in range(2)]

    @staticmethod
    def _gru(x, kernel, recurrent, bias):
        """Keras GRU, reset_after=True: x (N, T, I) -> all hidden states (N, T, H)."""
        H = recurrent.shape[0]
        N, T, _ = x.shape
        xp = x @ kernel + bias[0]  # (N, T, 3H): z, r, h
        h = np.zeros((N, H), np.float32)
        out = np.empty((N, T, H), np.float32)
        for t in range(T):
            hp = h @ recurrent + bias[1]
            z = _sigmoid(xp[:, t, :H] + hp[:, :H])
            r = _sigmoid(xp[:, t, H:2 * H] + hp[:, H:2 * H])
            hh = np.tanh(xp[:, t, 2 * H:] + r * hp[:, 2 * H:])
            h = z * h + (1.0 - z) * hh
            out[:, t] = h
        return out

    def predict(self, x: np.ndarray) -> np.ndarray:
        x = np.asarray(x, np.float32)
        if x.ndim == 2:
            x = x[None]
        if len(x) == 0:
            return np.zeros((0, len(CLASSES)), np.float32)
        s = self._gru(x, *self.gru1)
        h = self._gru(s, *self.gru2)[:, -1]
        d = np.maximum(h @ self.fc1[0] + self.fc1[1], 0.0)
        logits = d @ self.fc2[0] + self.fc2[1]
        e = np.exp(logits - logits.max(-1, keepdims=True))
        return (e / e.sum(-1, keepdims=True)).astype(np.float32)


def seed_features(kpts: np.ndarray, src_layout: str, width: float, height: float,
                  min_conf: float = 0.0) -> np.ndarray:
    """(T, K, 3) keypoints in ``src_layout`` pixels -> (T, 34): OpenPose order without the neck,
    x / width, y / height, missing (or below ``min_conf``) joints (0, 0)."""
    k = np.asarray(kpts, np.float32)
    k = np.where((k[..., 2:3] > min_conf), k, 0)
    k = remap(k, src_layout, LAYOUT)
    present = k[..., 2] > 0
    f = k[..., :2] / np.array([width, height], np.float32)
    f = np.where(present[..., None], f, 0.0)
    return f.reshape(len(f), -1).astype(np.float32)


def classify_track(model: SeedGru, feats: np.ndarray, stride: int = 8) -> np.ndarray | None:
    """Mean probabilities over the 32-frame windows of one track's (T, 34) features at the model's rate; a
    track shorter than one window is fed whole (a GRU takes any length), as the original app did."""
    T = len(feats)
    if T == 0:
        return None
    if T < WINDOW:
        return model.predict(feats[None])[0]
    starts = list(range(0, T - WINDOW + 1, stride))
    if starts[-1] + WINDOW < T:
        starts.append(T - WINDOW)
    return model.predict(np.stack([feats[s:s + WINDOW] for s in starts])).mean(0)
