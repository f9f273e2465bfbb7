"""Metrics, ONNX evaluation, latency and threshold calibration (numpy + onnxruntime)."""
from __future__ import annotations

import time

import numpy as np

from .features import mirror_features


def confusion_matrix(y_true, y_pred, n_classes: int) -> np.ndarray:
    cm = np.zeros((n_classes, n_classes), np.int64)
    np.add.at(cm, (np.asarray(y_true, np.int64), np.asarray(y_pred, np.int64)), 1)
    return cm


def metrics(y_true, probs, classes) -> dict:
    """Accuracy, macro and per-class precision/recall/F1, confusion matrix (rows = truth)."""
    y_true = np.asarray(y_true, np.int64)
    y_pred = np.asarray(probs).argmax(1)
    cm = confusion_matrix(y_true, y_pred, len(classes))
    tp = np.diag(cm).astype(np.float64)
    prec = tp / np.maximum(cm.sum(0), 1)
    rec = tp / np.maximum(cm.sum(1), 1)
    f1 = np.where(prec + rec > 0, 2 * prec * rec / np.maximum(prec + rec, 1e-12), 0.0)
    return {
        "n": int(len(y_true)),
        "accuracy": float((y_pred == y_true).mean()) if len(y_true) else 0.0,
        "macro_f1": float(f1.mean()),
        "per_class": {c: {"precision": float(prec[i]), "recall": float(rec[i]), "f1": float(f1[i]),
                          "support": int(cm[i].sum())} for i, c in enumerate(classes)},
        "confusion": cm.tolist(),
    }


def onnx_session(path, threads: int = 1):
    import onnxruntime as ort
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    opts.log_severity_level = 3
    return ort.InferenceSession(str(path), sess_options=opts, providers=["CPUExecutionProvider"])


def onnx_probs(path_or_session, x: np.ndarray, batch_size: int = 256, mirror: tuple | None = None) -> np.ndarray:
    """Probabilities of an ONNX action model on features ``x``; with ``mirror=(layout, normalization)`` the mean
    over each window and its mirror image (:func:`features.mirror_features`), as the classifier does when its
    card asks for it."""
    sess = path_or_session if hasattr(path_or_session, "run") else onnx_session(path_or_session)
    name = sess.get_inputs()[0].name
    x = np.asarray(x, np.float32)

    def run(v):
        return np.concatenate([sess.run(["probs"], {name: v[i:i + batch_size]})[0]
                               for i in range(0, len(v), batch_size)])
    if mirror is None:
        return run(x)
    return (run(x) + run(mirror_features(x, *mirror))) / 2


def latency(path, x_one: np.ndarray, runs: int = 200, threads: int = 1, batch: int = 64) -> dict:
    """Per-window latency (batch of 1, ``threads`` intra-op threads) and batched per-window time."""
    sess = onnx_session(path, threads)
    name = sess.get_inputs()[0].name
    one = np.asarray(x_one[:1], np.float32)
    for _ in range(10):
        sess.run(["probs"], {name: one})
    ts = []
    for _ in range(runs):
        t0 = time.perf_counter()
        sess.run(["probs"], {name: one})
        ts.append(time.perf_counter() - t0)
    xb = np.repeat(one, batch, 0)
    sess.run(["probs"], {name: xb})
    tb = []
    for _ in range(max(5, runs // 20)):
        t0 = time.perf_counter()
        sess.run(["probs"], {name: xb})
        tb.append(time.perf_counter() - t0)
    return {"threads": threads, "batch1_median_ms": float(np.median(ts) * 1e3),
            "batch1_p90_ms": float(np.percentile(ts, 90) * 1e3),
            f"batch{batch}_per_window_ms": float(np.median(tb) * 1e3 / batch)}


def calibrate_threshold(probs: np.ndarray, y: np.ndarray, target_precision: float = 0.99,
                        floor: float = 0.5) -> dict:
    """Lowest confidence threshold at which accepted windows are >= ``target_precision`` correct.

    ``y`` = -1 marks windows with no correct class (idle/transition), which count as errors
    whenever accepted. Returns the threshold (at least ``floor``) and what it does on this set.
    """
    conf = probs.max(1)
    correct = (probs.argmax(1) == y) & (y >= 0)
    grid = np.round(np.arange(floor, 0.996, 0.01), 2)
    chosen = float(grid[-1])
    for t in grid:
        acc = conf >= t
        if acc.sum() == 0:
            break
        if correct[acc].mean() >= target_precision:
            chosen = float(t)
            break
    acc = conf >= chosen
    act = y >= 0
    return {
        "threshold": chosen,
        "target_precision": target_precision,
        "precision_accepted": float(correct[acc].mean()) if acc.any() else 0.0,
        "coverage_action_windows": float(acc[act].mean()) if act.any() else 0.0,
        "idle_windows_rejected": float((~acc[~act]).mean()) if (~act).any() else None,
        "n_action": int(act.sum()), "n_idle": int((~act).sum()),
    }


def calibrate_rejection(probs: np.ndarray, y: np.ndarray, none_rejected: float = 0.9, action_precision: float = 0.9,
                        floor: float = 0.5) -> dict:
    """Lowest confidence threshold at which at least ``none_rejected`` of the no-action items (``y`` = -1) are
    rejected and the accepted action items (``y`` >= 0) are at least ``action_precision`` right. For people's
    scores on real clips, where "uncertain" is the right answer for someone doing none of the actions."""
    conf = probs.max(1)
    act = y >= 0
    correct = (probs.argmax(1) == y) & act
    grid = np.round(np.arange(floor, 0.996, 0.01), 2)
    chosen = float(grid[-1])
    for t in grid:
        acc = conf >= t
        rej = float((~acc[~act]).mean()) if (~act).any() else 1.0
        prec = float(correct[acc & act].mean()) if (acc & act).any() else 1.0
        if rej >= none_rejected and prec >= action_precision:
            chosen = float(t)
            break
    acc = conf >= chosen
    return {
        "threshold": chosen, "none_rejected_target": none_rejected, "action_precision_target": action_precision,
        "none_rejected": float((~acc[~act]).mean()) if (~act).any() else None,
        "action_precision_accepted": float(correct[acc & act].mean()) if (acc & act).any() else 0.0,
        "action_coverage": float(acc[act].mean()) if act.any() else 0.0,
        "action_correct": float((correct & acc)[act].mean()) if act.any() else 0.0,
        "n_action": int(act.sum()), "n_none": int((~act).sum()),
    }
