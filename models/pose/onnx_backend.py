"""YOLO11n-pose inference with onnxruntime + numpy + OpenCV only (no torch, no Ultralytics).

Pre- and post-processing reproduce Ultralytics' pose predictor: square letterbox (aspect kept,
``cv2.INTER_LINEAR``, centred padding of 114), RGB 0..1 NCHW input, score threshold, class-agnostic
NMS on xyxy boxes, then the letterbox undone with Ultralytics' rounding and the results clipped to
the image. The exported graph already decodes boxes (cx, cy, w, h) and keypoints (x, y) in input
pixels and applies the sigmoid to the person score and the keypoint confidences.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import cv2
import numpy as np

from ..hashing import sha256_file

ARTIFACT_DIR = Path(__file__).resolve().parents[1] / "artifacts" / "pose"
DEFAULT_MODEL = ARTIFACT_DIR / "yolo11n-pose.onnx"
NUM_KPTS = 17
PAD_VALUE = 114
STRIDE = 32


@dataclass
class PoseDetections:
    """Persons found in one image, in original-image pixels, COCO-17 keypoint order."""

    boxes: np.ndarray  # (N, 4) float32 xyxy
    scores: np.ndarray  # (N,) float32
    keypoints: np.ndarray  # (N, 17, 3) float32 x, y, conf

    def __len__(self) -> int:
        return int(len(self.scores))

    @classmethod
    def empty(cls) -> "PoseDetections":
        return cls(np.zeros((0, 4), np.float32), np.zeros((0,), np.float32),
                   np.zeros((0, NUM_KPTS, 3), np.float32))


@dataclass(frozen=True)
class LetterboxInfo:
    """How an image was placed in the square input: needed to map predictions back."""

    orig_shape: tuple[int, int]  # (h, w)
    new_unpad: tuple[int, int]  # (w, h) after resizing
    pad: tuple[int, int]  # (left, top)
    size: int  # imgsz: the longest side
    shape: tuple[int, int] | None = None  # (h, w) of the network input; None: (size, size)


def letterbox(img: np.ndarray, size: int, pad_value: int = PAD_VALUE, auto: bool = False,
              stride: int = STRIDE) -> tuple[np.ndarray, LetterboxInfo]:
    """Ultralytics ``LetterBox(center=True)``: fit in ``size`` x ``size`` keeping the aspect ratio, pad with 114.

    ``auto=False`` pads to the full square (one shape for any image, so any images batch together);
    ``auto=True`` pads only up to the next multiple of ``stride`` (Ultralytics' "rect" inference: e.g. 640x384
    for 16:9 video, fewer pixels to process; images batch together only if they share a shape).
    """
    h, w = img.shape[:2]
    r = min(size / h, size / w)
    new_w, new_h = max(round(w * r), 1), max(round(h * r), 1)
    dw, dh = size - new_w, size - new_h
    if auto:
        dw, dh = dw % stride, dh % stride
    dw, dh = dw / 2, dh / 2
    top, bottom = round(dh - 0.1), round(dh + 0.1)
    left, right = round(dw - 0.1), round(dw + 0.1)
    if (w, h) != (new_w, new_h):
        img = cv2.resize(img, (new_w, new_h), interpolation=cv2.INTER_LINEAR)
    img = cv2.copyMakeBorder(img, top, bottom, left, right, cv2.BORDER_CONSTANT, value=(pad_value,) * 3)
    return img, LetterboxInfo((h, w), (new_w, new_h), (left, top), size, img.shape[:2])


def unletterbox(xy: np.ndarray, info: LetterboxInfo) -> np.ndarray:
    """Map (..., 2k) x/y pairs from letterboxed input pixels back to the original image (in place)."""
    h, w = info.orig_shape
    new_w, new_h = info.new_unpad
    gain_x, gain_y = new_w / w, new_h / h
    xy[..., 0::2] = (xy[..., 0::2] - info.pad[0]) / gain_x
    xy[..., 1::2] = (xy[..., 1::2] - info.pad[1]) / gain_y
    xy[..., 0::2] = np.clip(xy[..., 0::2], 0, w)
    xy[..., 1::2] = np.clip(xy[..., 1::2], 0, h)
    return xy


def xywh2xyxy(b: np.ndarray) -> np.ndarray:
    out = np.empty_like(b)
    half_w, half_h = b[..., 2] / 2, b[..., 3] / 2
    out[..., 0] = b[..., 0] - half_w
    out[..., 1] = b[..., 1] - half_h
    out[..., 2] = b[..., 0] + half_w
    out[..., 3] = b[..., 1] + half_h
    return out


def box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU matrix (len(a), len(b)) of xyxy boxes."""
    a = np.asarray(a, np.float64).reshape(-1, 4)
    b = np.asarray(b, np.float64).reshape(-1, 4)
    lt = np.maximum(a[:, None, :2], b[None, :, :2])
    rb = np.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = np.clip(rb - lt, 0, None).prod(-1)
    area_a = np.clip(a[:, 2:] - a[:, :2], 0, None).prod(-1)
    area_b = np.clip(b[:, 2:] - b[:, :2], 0, None).prod(-1)
    union = area_a[:, None] + area_b[None, :] - inter
    return np.where(union > 0, inter / np.maximum(union, 1e-12), 0.0)


def nms(boxes: np.ndarray, scores: np.ndarray, iou_thres: float, max_det: int | None = None) -> np.ndarray:
    """Greedy NMS (torchvision semantics: drop boxes with IoU > iou_thres). Returns kept indices by score."""
    order = np.argsort(-scores, kind="stable")
    boxes = np.asarray(boxes, np.float64)
    x1, y1, x2, y2 = boxes[:, 0], boxes[:, 1], boxes[:, 2], boxes[:, 3]
    areas = np.clip(x2 - x1, 0, None) * np.clip(y2 - y1, 0, None)
    keep: list[int] = []
    while order.size:
        i = int(order[0])
        keep.append(i)
        if max_det is not None and len(keep) >= max_det:
            break
        rest = order[1:]
        w = np.clip(np.minimum(x2[i], x2[rest]) - np.maximum(x1[i], x1[rest]), 0, None)
        h = np.clip(np.minimum(y2[i], y2[rest]) - np.maximum(y1[i], y1[rest]), 0, None)
        inter = w * h
        iou = inter / np.maximum(areas[i] + areas[rest] - inter, 1e-12)
        order = rest[iou <= iou_thres]
    return np.asarray(keep, np.int64)


def decode(pred: np.ndarray, info: LetterboxInfo, conf: float = 0.25, iou: float = 0.7,
           max_det: int = 300, max_nms: int = 30000) -> PoseDetections:
    """One image's raw output (56, anchors) → detections in original pixels."""
    pred = np.asarray(pred)
    scores = pred[4]
    cand = np.nonzero(scores > conf)[0]
    if cand.size == 0:
        return PoseDetections.empty()
    x = pred[:, cand].T.astype(np.float32)  # (n, 56)
    if len(x) > max_nms:
        x = x[np.argsort(-x[:, 4], kind="stable")[:max_nms]]
    boxes = xywh2xyxy(x[:, :4])
    keep = nms(boxes, x[:, 4], iou, max_det)
    boxes = boxes[keep]
    scores = x[keep, 4]
    kpts = x[keep, 5:].reshape(-1, NUM_KPTS, 3).copy()
    unletterbox(boxes, info)
    kpts[..., :2] = unletterbox(kpts[..., :2].reshape(-1, 2 * NUM_KPTS), info).reshape(-1, NUM_KPTS, 2)
    return PoseDetections(boxes.astype(np.float32), scores.astype(np.float32), kpts.astype(np.float32))



class OnnxPoseEstimator:
    """Batch pose estimation with the shipped (or a given) YOLO pose ONNX file."""

    backend = "onnx"

    def __init__(self, model_path: str | os.PathLike | None = None, imgsz: int = 640, threads: int | None = None,
                 conf: float = 0.25, iou: float = 0.7, max_det: int = 100, rect: bool = False,
                 spin: bool = False):
        import onnxruntime as ort

        if imgsz % STRIDE:
            raise ValueError(f"imgsz must be a multiple of {STRIDE}, got {imgsz}")
        self.model_path = Path(model_path) if model_path else DEFAULT_MODEL
        if not self.model_path.is_file():
            raise FileNotFoundError(f"pose model not found: {self.model_path}")
        self.imgsz, self.conf, self.iou, self.max_det = int(imgsz), float(conf), float(iou), int(max_det)
        # rect: pad to a multiple of 32 instead of the full square when every image of a batch has the same
        # shape (video frames do); Ultralytics' own default for .pt inference. Off by default.
        self.rect = bool(rect)
        card_path = self.model_path.with_name(self.model_path.stem + ".card.json")
        card = json.loads(card_path.read_text()) if card_path.is_file() else {}
        self.card = card
        self.name = card.get("name", self.model_path.stem)
        self.version = card.get("version", "unknown")
        sha = card.get("sha256")
        self.sha256 = sha if sha and card.get("file") == self.model_path.name else sha256_file(self.model_path)

        so = ort.SessionOptions()
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        if threads:
            so.intra_op_num_threads = int(threads)
        so.inter_op_num_threads = 1
        so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        # Busy-waiting worker threads steal CPU from the other processes of the service (web, other workers)
        # and, on a loaded machine, made batch-1 inference ~2x slower here; off unless asked for.
        so.add_session_config_entry("session.intra_op.allow_spinning", "1" if spin else "0")
        self.threads = threads
        self.session = ort.InferenceSession(str(self.model_path), sess_options=so,
                                            providers=["CPUExecutionProvider"])
        self.input_name = self.session.get_inputs()[0].name
        self.output_name = self.session.get_outputs()[0].name

    @property
    def info(self) -> dict:
        return {"name": self.name, "version": self.version, "sha256": self.sha256}

    def preprocess(self, images: Sequence[np.ndarray], imgsz: int | None = None, rect: bool | None = None
                   ) -> tuple[np.ndarray, list[LetterboxInfo]]:
        """Letterbox ``images`` into one NCHW batch (``imgsz``/``rect``: this call's, else the estimator's)."""
        for img in images:
            if img is None or img.ndim != 3 or img.shape[2] != 3:
                raise ValueError("expected BGR images of shape (H, W, 3)")
        size = int(imgsz or self.imgsz)
        if size % STRIDE:
            raise ValueError(f"imgsz must be a multiple of {STRIDE}, got {size}")
        rect = self.rect if rect is None else bool(rect)
        auto = rect and len({img.shape for img in images}) == 1
        batch = None
        infos = []
        for i, img in enumerate(images):
            lb, info = letterbox(img, size, auto=auto)
            if batch is None:
                batch = np.empty((len(images), 3, *lb.shape[:2]), np.float32)
            rgb = lb[..., ::-1]
            batch[i] = np.transpose(rgb, (2, 0, 1)) * np.float32(1 / 255)
            infos.append(info)
        return batch, infos

    def infer(self, batch: np.ndarray) -> np.ndarray:
        return self.session.run([self.output_name], {self.input_name: batch})[0]

    def predict(self, images: Sequence[np.ndarray], imgsz: int | None = None, rect: bool | None = None
                ) -> list[PoseDetections]:
        """Persons in each image. ``imgsz``/``rect`` override the estimator's for this call (crops of
        person-guided pose run smaller than whole frames); with ``rect`` on, images of different shapes run as
        one batch per shape."""
        if len(images) == 0:
            return []
        rect = self.rect if rect is None else bool(rect)
        groups: dict[tuple, list[int]] = {}
        for i, img in enumerate(images):
            groups.setdefault(img.shape if rect else (), []).append(i)
        out: list[PoseDetections | None] = [None] * len(images)
        for idx in groups.values():
            batch, infos = self.preprocess([images[i] for i in idx], imgsz, rect)
            raw = self.infer(batch)
            for k, i in enumerate(idx):
                out[i] = decode(raw[k], infos[k], self.conf, self.iou, self.max_det)
        return out

    def __repr__(self) -> str:
        return (f"OnnxPoseEstimator({self.model_path.name}, imgsz={self.imgsz}, threads={self.threads}, "
                f"rect={self.rect})")
