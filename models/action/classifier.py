"""Action classifier at run time: onnxruntime + numpy only (no torch)."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from ..hashing import sha256_file  # noqa: F401 (re-exported)
from ..layouts import get_layout
from .evaluate import onnx_probs
from .features import window_features

ARTIFACTS = Path(__file__).resolve().parent.parent / "artifacts" / "action"
DEFAULT_MODEL = ARTIFACTS / "gru_har_int8.onnx"



def find_card(model_path) -> Path:
    """The model card next to ``model_path``: ``<stem without _int8/_fp32/_pruned>.card.json``,
    else any ``*.card.json`` in the same directory that lists the file."""
    model_path = Path(model_path)
    stem = model_path.stem
    for suffix in ("_int8", "_fp32", "_pruned"):
        if stem.endswith(suffix):
            stem = stem[: -len(suffix)]
            break
    cand = model_path.with_name(stem + ".card.json")
    if cand.exists():
        return cand
    for c in sorted(model_path.parent.glob("*.card.json")):
        card = json.loads(c.read_text(encoding="utf-8"))
        if any(f.get("path") == model_path.name for f in card.get("files", {}).values()):
            return c
    raise FileNotFoundError(f"no model card next to {model_path}")


class ActionClassifier:
    """A GRU window classifier with its model card.

    ``predict(windows)`` accepts either features ``(N, window, features)`` or keypoint windows in
    the model's layout ``(N, window, joints, 2|3)`` (pixels; then ``frame_size`` matters only for
    frame-size normalization) and returns probabilities ``(N, classes)``.
    """

    def __init__(self, model_path=None, threads: int = 1, card_path=None):
        import onnxruntime as ort

        self.model_path = Path(model_path) if model_path is not None else DEFAULT_MODEL
        if not self.model_path.exists():
            raise FileNotFoundError(f"action model not found: {self.model_path}")
        self.card_path = Path(card_path) if card_path is not None else find_card(self.model_path)
        self.card = json.loads(self.card_path.read_text(encoding="utf-8"))
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = max(1, int(threads or 1))
        opts.inter_op_num_threads = 1
        opts.log_severity_level = 3
        self.session = ort.InferenceSession(str(self.model_path), sess_options=opts,
                                            providers=["CPUExecutionProvider"])
        self.input_name = self.session.get_inputs()[0].name
        self.sha256 = sha256_file(self.model_path)
        c = self.card
        self.classes: list[str] = list(c["classes"])
        self.window: int = int(c["window"])
        self.fps: float = float(c["fps"])
        self.layout: str = c["layout"]
        self.joints: list[str] = list(c.get("joints", []))
        self.normalization: str = c["normalization"]
        self.max_gap: int = int(c.get("features", {}).get("max_gap", 4))
        self.min_keypoint_conf: float = float(c.get("features", {}).get("min_keypoint_conf", 0.3))
        self.uncertain_threshold: float = float(c["uncertain_threshold"])
        # average each window's output with its mirror image's (the card says whether the model was calibrated so)
        self.mirror: bool = bool(c.get("test_time_mirror", False))
        self.name: str = c.get("name", self.model_path.stem)
        self.version: str = str(c.get("version", "0"))
        self._check_card()

    def _check_card(self) -> None:
        """The card must describe this model: joint order, window and sizes (a mismatch would feed the
        model silently wrong inputs)."""
        names = get_layout(self.layout)
        if self.joints and tuple(self.joints) != names:
            raise ValueError(f"{self.card_path.name}: joints {self.joints} are not layout {self.layout!r}")
        dims = self.session.get_inputs()[0].shape
        want = [None, self.window, 2 * len(names)]
        if len(dims) != 3 or any(isinstance(d, int) and w is not None and d != w for d, w in zip(dims, want)):
            raise ValueError(f"{self.model_path.name}: input shape {dims} does not match the card (window "
                             f"{self.window}, {len(names)} joints)")
        out = next((o for o in self.session.get_outputs() if o.name == "probs"), None)
        if out is None or (isinstance(out.shape[-1], int) and out.shape[-1] != len(self.classes)):
            raise ValueError(f"{self.model_path.name}: no 'probs' output over the card's {len(self.classes)} classes")

    @property
    def info(self) -> dict:
        return {"name": self.name, "version": self.version, "sha256": self.sha256}

    def features(self, kpts: np.ndarray, frame_size=(640.0, 480.0)) -> np.ndarray:
        return window_features(kpts, self.layout, self.normalization, frame_size, self.max_gap)

    def predict(self, windows: np.ndarray, frame_size=(640.0, 480.0), batch_size: int = 256) -> np.ndarray:
        x = np.asarray(windows, dtype=np.float32)
        if x.ndim == 4:
            x = self.features(x, frame_size)
        elif x.ndim == 2:
            x = x[None]
        if x.ndim != 3 or x.shape[1] != self.window:
            raise ValueError(f"expected windows of {self.window} frames, got shape {np.shape(windows)}")
        if len(x) == 0:
            return np.zeros((0, len(self.classes)), np.float32)
        if not np.isfinite(x).all():  # never feed NaN/inf to the model: treat such features as missing (0)
            x = np.where(np.isfinite(x), x, 0.0).astype(np.float32)
        mirror = (self.layout, self.normalization) if self.mirror else None
        return onnx_probs(self.session, x, batch_size, mirror=mirror).astype(np.float32)
