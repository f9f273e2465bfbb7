"""Train, prune, export, quantize and evaluate the GRU action model (needs torch: training extra).

    python -m models train --synthetic --out models/artifacts/action
    python -m models train --data /path/to/RNN-HAR-2D-Pose-database --out DIR

Pipeline: data (synthetic generator or the RNN-HAR-2D-Pose files) -> remap OpenPose-18 to the model
layout by joint name -> features (normalization measured: person-centric vs frame-size) ->
GRU(128, seq) -> Dropout -> GRU(64) -> Dropout -> Dense(64, relu) -> Dense(6), trained with
horizontal-flip augmentation that swaps left/right joints -> magnitude pruning + masked
fine-tuning -> ONNX fp32 (explicit MatMul GRU) -> dynamic int8 -> evaluation report + model card.
"""
from __future__ import annotations

import json
import os
import platform
import random
import time
from pathlib import Path

import numpy as np

from ..hashing import sha256_file
from ..layouts import flip_horizontal, get_layout, remap
from . import synth
from .dataset import CLASSES, FPS, FRAME_H, FRAME_W, WINDOW, load_split
from .dataset import LAYOUT as FILE_LAYOUT
from .evaluate import calibrate_threshold, latency, metrics, onnx_probs
from .export import build_onnx, quantize_int8, save_onnx
from .features import MAX_GAP, window_features
from .timeline import cut_windows, window_plan

MODEL_LAYOUT = "openpose17"
NAME = "gru_har"
VERSION = "1.3.0"
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
# evaluate, calibrate and run the model on each window and its mirror image, averaged (card: test_time_mirror)
TEST_TIME_MIRROR = True
# The "uncertain" threshold is calibrated on what a user is shown: a person's label, the mean of the window
# probabilities over the person's track (models.action.timeline). Synthetic person tracks of several lengths (shorter
# than one window to 3.6 s), each action and "no action" equally often, cut into windows as the timeline does; the
# threshold is the lowest (from THRESHOLD_FLOOR) at which accepted tracks are >= TARGET_PRECISION right.
TARGET_PRECISION = 0.98
THRESHOLD_FLOOR = 0.35
CALIBRATION_TRACK_FRAMES = (20, 28, 40, 56, 80)
CALIBRATION_TRACKS_PER_CLASS = 40  # per length, and as many no-action tracks
CALIBRATION_STRIDE = 8  # the service's default window stride


def n_negatives_train(n_train: int) -> int:
    return max(6, int(round(NEGATIVES_PER_TRAIN_WINDOW_PER_CLASS * n_train)))


def set_seeds(seed: int) -> None:
    import torch
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def make_model(n_features: int, n_classes: int, dropout: float = 0.2):
    import torch
    from torch import nn

    class GruHar(nn.Module):
        def __init__(self):
            super().__init__()
            self.gru1 = nn.GRU(n_features, 128, batch_first=True)
            self.drop1 = nn.Dropout(dropout)
            self.gru2 = nn.GRU(128, 64, batch_first=True)
            self.drop2 = nn.Dropout(dropout)
            self.fc1 = nn.Linear(64, 64)
            self.fc2 = nn.Linear(64, n_classes)

        def forward(self, x):
            s, _ = self.gru1(x)
            s = self.drop1(s)
            _, h = self.gru2(s)
            h = self.drop2(h[0])
            return self.fc2(torch.relu(self.fc1(h)))

    return GruHar()


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
    return np.stack([w.mean(0) for w in np.split(p, np.cumsum([len(t) for t in tracks])[:-1])])


def _torch_probs(model, x: np.ndarray, batch: int = 512) -> np.ndarray:
    import torch
    model.eval()
    with torch.no_grad():
        out = [torch.softmax(model(torch.from_numpy(x[i:i + batch])), -1).numpy() for i in range(0, len(x), batch)]
    return np.concatenate(out)


PRUNABLE = ("gru1.weight_ih_l0", "gru1.weight_hh_l0", "gru2.weight_ih_l0", "gru2.weight_hh_l0",
            "fc1.weight", "fc2.weight")


def magnitude_masks(model, sparsity: float) -> dict:
    import torch
    masks = {}
    for name, p in model.named_parameters():
        if name in PRUNABLE:
            k = int(round(sparsity * p.numel()))
            if k <= 0:
                continue
            thr = p.detach().abs().flatten().kthvalue(k).values
            masks[name] = (p.detach().abs() > thr).to(torch.float32)
    return masks


def apply_masks(model, masks: dict) -> None:
    import torch
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name in masks:
                p.mul_(masks[name])


def sparsity_of(weights: dict) -> dict:
    per = {k: float((weights[k] == 0).mean()) for k in PRUNABLE}
    tot = sum(weights[k].size for k in PRUNABLE)
    per["overall_prunable"] = float(sum((weights[k] == 0).sum() for k in PRUNABLE) / tot)
    return per


def fit(model, X: np.ndarray, Xf: np.ndarray, y: np.ndarray, epochs: int, lr: float, seed: int,
        batch: int = 64, masks: dict | None = None, desc: str = "train", progress: bool = True,
        max_steps: int | None = None, n_classes: int = len(CLASSES)) -> list[float]:
    """Adam + one-cycle LR; each sample is mirrored (left/right swapped) with probability 1/2.

    Label -1 marks idle windows (no action): their target is the uniform distribution, so the
    model learns to be unsure outside the six actions (used by the "uncertain" threshold)."""
    import torch
    from tqdm import tqdm
    rng = np.random.default_rng(seed)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    steps_per_epoch = max(1, int(np.ceil(len(y) / batch)))
    total = epochs * steps_per_epoch if max_steps is None else min(max_steps, epochs * steps_per_epoch)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=max(total, 2), pct_start=0.15)
    losses = []
    step = 0
    bar = tqdm(total=total, desc=desc, disable=not progress, mininterval=1.0)
    for _ in range(epochs):
        model.train()
        perm = rng.permutation(len(y))
        for i in range(0, len(y), batch):
            if step >= total:
                break
            idx = perm[i:i + batch]
            flip = rng.random(len(idx)) < 0.5
            xb = np.where(flip[:, None, None], Xf[idx], X[idx])
            xb = xb + rng.normal(0, 0.01, xb.shape).astype(np.float32) * (xb != 0)
            yb = y[idx]
            target = np.full((len(idx), n_classes), 1.0 / n_classes, np.float32)
            target[yb >= 0] = 0.0
            target[np.nonzero(yb >= 0)[0], yb[yb >= 0]] = 1.0
            logp = torch.log_softmax(model(torch.from_numpy(xb.astype(np.float32))), -1)
            loss = -(torch.from_numpy(target) * logp).sum(1).mean()
            opt.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            sched.step()
            if masks:
                apply_masks(model, masks)
            losses.append(float(loss.detach()))
            step += 1
            bar.update(1)
            if step % 20 == 0:
                bar.set_postfix(loss=f"{np.mean(losses[-20:]):.3f}")
    bar.close()
    return losses


def state_numpy(model) -> dict:
    return {k: v.detach().cpu().numpy().copy() for k, v in model.state_dict().items()}


def train(out_dir, data_dir=None, synthetic: bool = True, seed: int = 0, n_train: int = 2500, n_val: int = 150,
          n_test: int = 300, epochs: int = 24, finetune_epochs: int = 4, sparsity: float = 0.5, lr: float = 3e-3,
          normalization: str = "auto", progress: bool = True, threads: int = 2,
          max_steps: int | None = None, latency_runs: int = 200, keep_pruned: bool = False) -> dict:
    """The whole pipeline; writes ONNX files, card and report into ``out_dir``; returns the report."""
    import torch
    t_start = time.time()
    torch.set_num_threads(threads)
    set_seeds(seed)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    classes = list(CLASSES)
    C = len(classes)
    F = 2 * len(get_layout(MODEL_LAYOUT))

    t0 = time.time()
    data = load_data(data_dir, synthetic and data_dir is None, n_train, n_val, n_test, seed)
    t_data = time.time() - t0
    x_tr, y_tr = data["train"]

    def feats(norm):
        d = {k: featurize(v[0], norm) for k, v in data.items() if isinstance(v, tuple)}
        d["train_flip"] = featurize(x_tr, norm, flip=True)
        if data["idle"] is not None:
            d["idle"] = featurize(data["idle"], norm)
        if data.get("idle_test") is not None:
            d["idle_test"] = featurize(data["idle_test"], norm)
        if data["idle_train"] is not None:  # idle windows join training with uniform targets
            d["train"] = np.concatenate([d["train"], featurize(data["idle_train"], norm)])
            d["train_flip"] = np.concatenate([d["train_flip"], featurize(data["idle_train"], norm, flip=True)])
        return d

    y_fit = y_tr if data["idle_train"] is None else np.concatenate([y_tr, np.full(len(data["idle_train"]), -1)])

    def train_one(norm, f):
        set_seeds(seed)
        m = make_model(F, C)
        t0 = time.time()
        fit(m, f["train"], f["train_flip"], y_fit, epochs, lr, seed, desc=f"train[{norm}]", progress=progress,
            max_steps=max_steps)
        return m, time.time() - t0

    # --- measure both normalizations (same schedule); choose on the held-out-range validation split
    comparison = {}
    norms = ("person", "frame") if normalization == "auto" else (normalization,)
    trained = {}
    for norm in norms:
        f = feats(norm)
        m, secs = train_one(norm, f)
        trained[norm] = (m, f, secs)
        comparison[norm] = {
            "epochs": epochs,
            "val_accuracy": metrics(data["val"][1], _torch_probs(m, f["val"]), classes)["accuracy"],
            "heldout_val_accuracy": metrics(data["heldout_val"][1], _torch_probs(m, f["heldout_val"]),
                                            classes)["accuracy"],
            "test_accuracy_for_information": metrics(data["test"][1], _torch_probs(m, f["test"]),
                                                     classes)["accuracy"],
            "train_s": secs,
        }
    if len(norms) > 1:
        normalization = max(comparison, key=lambda k: (comparison[k]["heldout_val_accuracy"],
                                                      comparison[k]["val_accuracy"], k == "person"))
    model, f, t_train = trained[normalization]
    dense_state = state_numpy(model)

    # --- prune + masked fine-tune
    masks = magnitude_masks(model, sparsity)
    apply_masks(model, masks)
    t0 = time.time()
    fit(model, f["train"], f["train_flip"], y_fit, finetune_epochs, lr / 3, seed + 1, masks=masks, desc="finetune",
        progress=progress, max_steps=max_steps)
    t_finetune = time.time() - t0
    pruned_state = state_numpy(model)

    # --- export
    doc = f"{NAME} {VERSION}: GRU action classifier, layout {MODEL_LAYOUT}, {normalization} normalization"
    fp32_path = save_onnx(build_onnx(dense_state, WINDOW, F, C, doc), out / f"{NAME}_fp32.onnx")
    pruned_path = save_onnx(build_onnx(pruned_state, WINDOW, F, C, doc + ", pruned"), out / f"{NAME}_pruned.onnx")
    int8_path = quantize_int8(pruned_path, out / f"{NAME}_int8.onnx")
    # sanity: the hand-built graph reproduces torch
    model.eval()
    chk = f["val"][:64]
    diff = float(np.abs(onnx_probs(pruned_path, chk) - _torch_probs(model, chk)).max())

    # --- evaluate
    variants = {"fp32": fp32_path, "pruned": pruned_path, "int8": int8_path}
    mirror = (MODEL_LAYOUT, normalization) if TEST_TIME_MIRROR else None
    results: dict = {"val": {}, "test": {}}
    probs_cache = {}
    for split in ("val", "test"):
        for v, p in variants.items():
            pr = onnx_probs(p, f[split], mirror=mirror)
            probs_cache[(split, v)] = pr
            results[split][v] = metrics(data[split][1], pr, classes)
    sizes = {v: os.path.getsize(p) for v, p in variants.items()}
    lat = {v: latency(p, f["val"], runs=latency_runs) for v, p in variants.items()}

    # --- calibrate the uncertain threshold on validation windows + idle windows (int8 model)
    cal_x = [f["val"], f["heldout_val"]]
    cal_y = [data["val"][1], data["heldout_val"][1]]
    if "idle" in f:
        cal_x.append(f["idle"])
        cal_y.append(np.full(len(f["idle"]), -1))
    win_probs, win_y = onnx_probs(int8_path, np.concatenate(cal_x), mirror=mirror), np.concatenate(cal_y)
    if data.get("cal_tracks") is not None:  # person level (synthetic tracks); the windows' figures for information
        tracks, track_y = data["cal_tracks"]["tracks"], data["cal_tracks"]["y"]
        cal = calibrate_threshold(track_probs(int8_path, tracks, normalization, mirror), track_y,
                                  target_precision=TARGET_PRECISION, floor=THRESHOLD_FLOOR)
        cal["level"] = "person (track)"
        win_acc = win_probs.max(1) >= cal["threshold"]
        win_ok = (win_probs.argmax(1) == win_y) & (win_y >= 0)
        cal["windows_at_threshold"] = {
            "precision_accepted": float(win_ok[win_acc].mean()) if win_acc.any() else 0.0,
            "coverage_action_windows": float(win_acc[win_y >= 0].mean()),
            "idle_windows_rejected": float((~win_acc[win_y < 0]).mean()) if (win_y < 0).any() else None}
    else:  # the real dataset has no no-action windows and no tracks: window level
        cal = calibrate_threshold(win_probs, win_y, target_precision=TARGET_PRECISION)
        cal["level"] = "window"
    test_int8 = probs_cache[("test", "int8")]
    acc_mask = test_int8.max(1) >= cal["threshold"]
    cal["test_coverage"] = float(acc_mask.mean())
    cal["test_accuracy_accepted"] = float((test_int8.argmax(1) == data["test"][1])[acc_mask].mean()) \
        if acc_mask.any() else 0.0
    if "idle_test" in f:  # no-action windows from the held-out ranges: share rejected, overall and per kind
        rej = onnx_probs(int8_path, f["idle_test"], mirror=mirror).max(1) < cal["threshold"]
        kinds = np.asarray(data["idle_test_kinds"])
        cal["test_idle_rejected"] = float(rej.mean())
        cal["test_idle_rejected_by_kind"] = {k: float(rej[kinds == k].mean()) for k in synth.NEGATIVE_KINDS
                                             if (kinds == k).any()}
        cal["n_test_idle"] = int(len(rej))

    t_total = time.time() - t_start
    regenerate = ("python -m models train --synthetic --seed {s} --out {o}".format(s=seed, o=out_dir)
                  if data_dir is None else f"python -m models train --data {data_dir} --seed {seed} --out {out_dir}")
    report = {
        "model": NAME, "version": VERSION, "data": data["source"], "seed": seed,
        "splits": {k: int(len(v[1])) for k, v in data.items() if isinstance(v, tuple)},
        "normalization": normalization, "normalization_comparison": comparison,
        "metrics": results,
        "accuracy_drop_int8_vs_fp32_points": 100 * (results["test"]["fp32"]["accuracy"]
                                                      - results["test"]["int8"]["accuracy"]),
        "sizes_bytes": sizes, "int8_vs_fp32_size_ratio": sizes["fp32"] / sizes["int8"],
        "latency": lat, "sparsity": sparsity_of(pruned_state), "target_sparsity": sparsity,
        "onnx_vs_torch_max_abs_diff": diff,
        "calibration": cal,
        "timing_s": {"data": t_data, "train": t_train, "finetune": t_finetune, "total": t_total},
        "hyperparameters": {"epochs": epochs, "finetune_epochs": finetune_epochs, "lr": lr, "batch": 64,
                            "dropout": 0.2, "optimizer": "Adam, one-cycle LR",
                            "augmentation": "horizontal flip with left/right joint swap (p=0.5), feature noise; "
                                            f"{P_SHORT:.0%} of the windows of every split are short clips "
                                            f"(synth.short_clip), {P_LOW_RATE:.0%} sampled at 1/2 or 1/3 of the "
                                            "rate and interpolated back (synth.low_rate); the generator's upper-body shots "
                                            f"({synth.P_UPPER_BODY:.0%}), side ({synth.P_SIDE_VIEW:.0%}) and back "
                                            f"({synth.P_BACK_VIEW:.0%}) views",
                            "test_time_mirror": TEST_TIME_MIRROR,
                            "idle_windows": "no-action windows (synth.generate_negatives: idle stance, frozen and "
                                            "near-frozen action frames, everyday still poses, slow non-action "
                                            "movement, mostly with a slow camera pan/zoom) trained toward the "
                                            "uniform distribution; the same detector errors on "
                                            f"{P_ARTEFACTS_TRAIN:.0%} of the training action windows",
                            "max_steps": max_steps},
        "environment": {"torch": torch.__version__, "python": platform.python_version(),
                        "threads": threads, "machine": platform.machine()},
        "regenerate": regenerate,
    }
    report["sha256"] = {v: sha256_file(p) for v, p in variants.items()}
    report["accuracy_drop_int8_vs_pruned_points"] = 100 * (results["test"]["pruned"]["accuracy"]
                                                           - results["test"]["int8"]["accuracy"])
    report["checks"] = {
        "int8_at_least_3x_smaller_than_fp32": report["int8_vs_fp32_size_ratio"] >= 3.0,
        "int8_test_accuracy_at_least_97pct": results["test"]["int8"]["accuracy"] >= 0.97,
        "int8_drop_vs_fp32_at_most_1pt": report["accuracy_drop_int8_vs_fp32_points"] <= 1.0,
        "onnx_matches_torch": diff < 1e-4,
    }
    shipped = {v: p for v, p in variants.items() if v != "pruned" or keep_pruned}
    card = make_card(report, data_dir, seed, n_train, n_val, n_test, normalization, shipped, cal)
    if not keep_pruned:  # an intermediate: int8 is quantized from it; metrics and hash are in the report
        Path(pruned_path).unlink()
    (out / f"{NAME}.card.json").write_text(json.dumps(card, indent=2) + "\n", encoding="utf-8")
    (out / f"{NAME}.card.md").write_text(card_markdown(card), encoding="utf-8")
    (out / "eval_report.json").write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    (out / "eval_report.md").write_text(report_markdown(report, classes), encoding="utf-8")
    return report


def make_card(report, data_dir, seed, n_train, n_val, n_test, normalization, variants, cal) -> dict:
    files = {v: {"path": Path(p).name, "sha256": sha256_file(p), "bytes": os.path.getsize(p)}
             for v, p in variants.items()}
    if data_dir is None:
        training_data = {
            "kind": "synthetic",
            "generator": "models.action.synth", "generator_version": synth.GENERATOR_VERSION, "seed": seed,
            "windows_per_class": {"train": n_train, "val": n_val, "heldout_val": n_val, "test": n_test},
            "no_action_windows": {"train": n_negatives_train(n_train), "calibration": max(6, 2 * n_val),
                                  "test": max(6, n_test), "kinds": list(synth.NEGATIVE_KINDS),
                                  "mix": list(synth.NEGATIVE_MIX), "still_poses": list(synth.STILL_POSES),
                                  "slow_moves": list(synth.SLOW_MOVES)},
            "train_parameter_ranges": synth.SPLIT_PARAMS["train"],
            "heldout_parameter_ranges": synth.SPLIT_PARAMS["test"],
            "note": "test = windows drawn from held-out generator ranges (body proportions, camera "
                    "distance, position, view angles, tempo) outside the training ranges; seeds: train "
                    f"{seed}, val {seed + 1}, heldout_val {seed + 2}, test {seed + 3}",
        }
    else:
        training_data = {"kind": "RNN-HAR-2D-Pose-database", "path": str(data_dir), "seed": seed}
    t = report["metrics"]["test"]
    return {
        "name": NAME, "version": VERSION, "task": "human action recognition from 2D pose windows",
        "files": files, "default": "int8",
        "classes": list(CLASSES),
        "layout": MODEL_LAYOUT, "joints": list(get_layout(MODEL_LAYOUT)),
        "keypoint_source": "any layout, mapped by joint name (models.layouts.remap)",
        "fps": FPS, "window": WINDOW,
        "input": {"name": "windows", "shape": ["N", WINDOW, 2 * len(get_layout(MODEL_LAYOUT))],
                  "per_frame": "x0, y0, x1, y1, ... in the joint order above; missing joints 0"},
        "outputs": {"probs": "softmax over classes", "logits": "pre-softmax"},
        "normalization": normalization,
        "normalization_details": {
            "person": "centre = window mean of the hip midpoint (shoulder midpoint + one torso length down "
                      "when hips are missing); scale = window median torso length (shoulder midpoint to hip "
                      "midpoint), fallbacks max(1.25 x shoulder width, 2.7 x nose to shoulder midpoint), then body extent / 3",
            "frame": "x / frame width, y / frame height (the original app's)",
            "comparison": report["normalization_comparison"],
            "chosen_by": "accuracy on the held-out-range validation split (not the test split)",
        },
        "features": {"max_gap": MAX_GAP, "gap_filling": "linear interpolation of gaps up to max_gap frames",
                     "min_keypoint_conf": MIN_KEYPOINT_CONF},
        "architecture": "GRU(128, seq) -> Dropout(0.2) -> GRU(64) -> Dropout(0.2) -> Dense(64, relu) -> Dense(6) "
                        "-> softmax; GRU exported as explicit MatMul ops unrolled over the window",
        "pruning": {"method": "per-tensor magnitude pruning of GRU and dense weights + masked fine-tuning",
                    "sparsity": report["sparsity"]},
        "quantization": "onnxruntime.quantization.quantize_dynamic, MatMul weights int8 (per tensor), "
                        "activations uint8 dynamic",
        "uncertain_threshold": cal["threshold"],
        "test_time_mirror": TEST_TIME_MIRROR,
        "calibration": dict(cal, method=(
            "int8 model, each window averaged with its mirror image (test_time_mirror), on synthetic person tracks "
            f"of {', '.join(f'{n / FPS:.1f}' for n in CALIBRATION_TRACK_FRAMES)} s (validation ranges; "
            f"{CALIBRATION_TRACKS_PER_CLASS} per length of every action and as many no-action tracks: idle stance, "
            "frozen action frames, still poses, slow movement, detector errors), cut into windows as the timeline "
            f"does (stride {CALIBRATION_STRIDE}; shorter tracks as one window played back and forth); a person's "
            "confidence = the mean of its windows' probabilities; no-action tracks count as errors when accepted; "
            f"threshold = lowest confidence in [{THRESHOLD_FLOOR:.2f}, 0.99] (step 0.01) at which accepted tracks "
            f"are >= {cal['target_precision']:.0%} right. The same threshold marks single windows uncertain "
            "(windows_at_threshold: what it does on validation windows)"
            if cal.get("level", "").startswith("person") else
            "int8 model on validation windows counted per window; threshold = lowest confidence in [0.50, 0.99] "
            f"(step 0.01) at which accepted windows are >= {cal['target_precision']:.0%} correct")),
        "training_data": training_data,
        "metrics": {
            "split": "test (held-out generator ranges)" if data_dir is None else "X_test/Y_test",
            **{v: {"accuracy": t[v]["accuracy"], "macro_f1": t[v]["macro_f1"],
                   "per_class_f1": {c: t[v]["per_class"][c]["f1"] for c in CLASSES}} for v in t},
            "accuracy_drop_int8_vs_fp32_points": report["accuracy_drop_int8_vs_fp32_points"],
            "accuracy_drop_int8_vs_pruned_points": report["accuracy_drop_int8_vs_pruned_points"],
            "checks": report["checks"],
            "latency_ms_per_window_int8": report["latency"]["int8"]["batch1_median_ms"],
        },
        "sizes_bytes": report["sizes_bytes"],
        "regenerate": report["regenerate"],
        "limitations": "trained on procedurally generated poses only, never on real video; measured on real "
                       "labelled clips with bench/real_footage.py (section above, when run on this model file): "
                       "mostly clapping clips, so the other actions' real-video accuracy rests on one jumping-jacks "
                       "clip and the generator. Retrain on the RNN-HAR-2D-Pose-database with `python -m models "
                       "train --data DIR` when it is available.",
    }


def _fmt_pct(v):
    return f"{100 * v:.2f} %"


def report_markdown(r: dict, classes) -> str:
    L = [f"# Evaluation report: {r['model']} {r['version']}", "",
         f"Data: {r['data']} (seed {r['seed']}); windows: "
         + ", ".join(f"{k} {v}" for k, v in r["splits"].items()), "",
         f"Normalization: **{r['normalization']}**", ""]
    if r["normalization_comparison"]:
        L += ["| normalization | epochs | val accuracy | held-out-range val accuracy | test accuracy (info) |",
              "|---|---|---|---|---|"]
        for k, v in r["normalization_comparison"].items():
            L.append(f"| {k} | {v['epochs']} | {_fmt_pct(v['val_accuracy'])} | {_fmt_pct(v['heldout_val_accuracy'])} "
                     f"| {_fmt_pct(v['test_accuracy_for_information'])} |")
        L.append("")
    for split in ("test", "val"):
        L += [f"## {split} split" + (" (held-out generator ranges)" if split == "test" else ""), "",
              "| model | accuracy | macro F1 | " + " | ".join(f"F1 {c}" for c in classes) + " |",
              "|---|---|---|" + "---|" * len(classes)]
        for v, m in r["metrics"][split].items():
            L.append(f"| {v} | {_fmt_pct(m['accuracy'])} | {m['macro_f1']:.4f} | "
                     + " | ".join(f"{m['per_class'][c]['f1']:.4f}" for c in classes) + " |")
        L.append("")
    L += ["## Confusion matrices (test; rows = truth, columns = prediction)", ""]
    short = [c[:8] for c in classes]
    for v, m in r["metrics"]["test"].items():
        L += [f"**{v}**", "", "| truth \\ pred | " + " | ".join(short) + " |", "|---|" + "---|" * len(classes)]
        for c, row in zip(short, m["confusion"]):
            L.append(f"| {c} | " + " | ".join(str(x) for x in row) + " |")
        L.append("")
    L += ["## Size, latency, sparsity", "",
          "| model | bytes | batch-1 median ms | batch-1 p90 ms | batched ms/window |", "|---|---|---|---|---|"]
    for v, b in r["sizes_bytes"].items():
        lt = r["latency"][v]
        bk = [k for k in lt if k.startswith("batch") and k.endswith("per_window_ms")][0]
        L.append(f"| {v} | {b} | {lt['batch1_median_ms']:.3f} | {lt['batch1_p90_ms']:.3f} | {lt[bk]:.4f} |")
    L += ["", f"int8 / fp32 size ratio: {r['int8_vs_fp32_size_ratio']:.2f}x smaller; "
          f"int8 accuracy drop vs fp32: {r['accuracy_drop_int8_vs_fp32_points']:.2f} points, vs pruned (its "
          f"source): {r['accuracy_drop_int8_vs_pruned_points']:.2f} points (test).",
          "Checks: " + ", ".join(f"{k} {'OK' if v else 'FAILED'}" for k, v in r["checks"].items()) + ".",
          f"Latency: onnxruntime CPU, {r['latency']['int8']['threads']} thread(s).", "",
          "Sparsity (fraction of zero weights): " + ", ".join(f"{k} {v:.3f}" for k, v in r["sparsity"].items()),
          f"ONNX vs torch max |probability difference| (pruned): {r['onnx_vs_torch_max_abs_diff']:.2e}", "",
          "## Uncertain threshold", "", "```", json.dumps(r["calibration"], indent=2), "```", "",
          "## Timing", "", ", ".join(f"{k} {v:.1f} s" for k, v in r["timing_s"].items()),
          f"(torch {r['environment']['torch']}, {r['environment']['threads']} threads)", "",
          f"Regenerate: `{r['regenerate']}`", ""]
    return "\n".join(L)


def card_markdown(c: dict) -> str:
    m = c["metrics"]
    L = [f"# Model card: {c['name']} {c['version']}", "", c["task"], "",
         "## Files", ""]
    for v, f in c["files"].items():
        L.append(f"- `{f['path']}` ({v}, {f['bytes']} bytes) sha256 `{f['sha256']}`")
    L += ["", "## Input", "",
          f"- Layout **{c['layout']}** (by joint name): {', '.join(c['joints'])}",
          f"- {c['window']} frames at {c['fps']} Hz per window; features {c['input']['per_frame']}",
          f"- Normalization: **{c['normalization']}**: {c['normalization_details'][c['normalization']]}",
          f"- Gaps up to {c['features']['max_gap']} frames interpolated; keypoints below confidence "
          f"{c['features']['min_keypoint_conf']} treated as missing",
          "", "## Classes", "", ", ".join(c["classes"]), "",
          "## Training data", "", "```", json.dumps(c["training_data"], indent=2), "```", "",
          "## Metrics (" + m["split"] + ")", "", "| model | accuracy | macro F1 |", "|---|---|---|"]
    for v in [k for k in ("fp32", "pruned", "int8") if k in m]:
        L.append(f"| {v} | {_fmt_pct(m[v]['accuracy'])} | {m[v]['macro_f1']:.4f} |")
    L += ["", f"int8 drop vs fp32: {m['accuracy_drop_int8_vs_fp32_points']:.2f} points; int8 latency "
          f"{m['latency_ms_per_window_int8']:.3f} ms per window (batch 1, 1 thread).", ""]
    rf = c.get("real_footage")
    if rf and rf.get("model_sha256") == c["files"].get("int8", {}).get("sha256"):
        L += ["## Real footage (bench/real_footage.py)", "", *rf["header"], "", *rf["table"], "",
              "Main-person outcomes at other thresholds (correct / wrong / uncertain):", "", *rf["threshold_sweep"], ""]
    L += ["## Uncertain threshold", "", f"**{c['uncertain_threshold']}**: {c['calibration']['method']}", "",
          "## Architecture", "", c["architecture"], "", c["quantization"], "",
          "## Limitations", "", c["limitations"], "", "## Regenerate", "", f"`{c['regenerate']}`", ""]
    return "\n".join(L)
