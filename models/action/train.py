"""Train, prune, export, quantize and evaluate the GRU action model (needs torch: training extra).

    python -m models train                         # the shipped model: generated + real tracks (models/data/real)
    python -m models train --synthetic             # generated windows only
    python -m models train --data /path/to/RNN-HAR-2D-Pose-database --out DIR

Pipeline, top to bottom:
1. data (:mod:`models.action.trainset`): generated windows in every split, and the real tracks' windows;
2. leave-groups-out cross-validation on the real clips (:mod:`models.action.crossval`): a model per fold, trained
   like the final one without the fold's groups, scores the fold's clips as the timeline would; these out-of-fold
   scores are the real-footage estimate and calibrate the "uncertain" threshold;
3. the final network (:mod:`models.action.network`) on everything -> magnitude pruning + masked fine-tuning;
4. ONNX fp32 (explicit MatMul GRU) -> dynamic int8 (:mod:`models.action.export`);
5. evaluation on the held-out generator ranges, threshold calibration, report and card (:mod:`models.action.card`).
"""
from __future__ import annotations

import json
import os
import platform
import time
from pathlib import Path

import numpy as np

from ..hashing import sha256_file
from ..layouts import get_layout
from . import synth
from .card import card_markdown, make_card, report_markdown
from .crossval import assign_folds, person_outcomes
from .dataset import CLASSES, WINDOW
from .evaluate import calibrate_rejection, calibrate_threshold, latency, metrics, onnx_probs
from .export import build_onnx, quantize_int8, save_onnx
from .network import apply_masks, fit, magnitude_masks, make_model, set_seeds, sparsity_of, state_numpy, torch_probs
from .trainset import (
    MODEL_LAYOUT,
    P_ARTEFACTS_TRAIN,
    P_LOW_RATE,
    P_SHORT,
    REAL_STRIDE,
    REAL_TEMPOS,
    RealPool,
    featurize,
    holdout_split,
    load_data,
    real_track_windows,
    track_means,
    track_probs,
)

__all__ = ["train", "holdout_split", "card_markdown"]

NAME = "gru_har"
VERSION = "2.0.0"
# evaluate, calibrate and run the model on each window and its mirror image, averaged (card: test_time_mirror)
TEST_TIME_MIRROR = True
# The "uncertain" threshold is calibrated on what a user is shown: a person's label, the mean of the window
# probabilities over the person's track (models.action.timeline): on synthetic person tracks (accepted ones
# >= TARGET_PRECISION right) and, with real data, on the real clips' out-of-fold scores (>= REAL_NONE_REJECTED of the
# "none" clips uncertain, the accepted action clips >= REAL_TARGET_PRECISION right); the higher threshold is taken.
TARGET_PRECISION = 0.98
REAL_TARGET_PRECISION = 0.90
REAL_NONE_REJECTED = 0.90
THRESHOLD_FLOOR = 0.35
# real windows drawn per class (and for "none") per synthetic training window of a class
REAL_PER_SYNTHETIC = 1.0
REAL_NONE_PER_CLASS_DRAW = 2.0
DEFAULT_CV_FOLDS = 5


def _real_draw(pool: RealPool, n_train: int, seed: int) -> np.ndarray:
    n = int(round(REAL_PER_SYNTHETIC * n_train))
    want = {c: n for c in range(len(CLASSES))}
    want[-1] = int(round(REAL_NONE_PER_CLASS_DRAW * n))
    return pool.draw(want, np.random.default_rng(seed + 7))


def _fit_set(f: dict, y_synth: np.ndarray, pool: RealPool | None, idx: np.ndarray | None):
    """Training arrays: generated windows (and no-action windows) plus the drawn real windows."""
    x, xf, y = f["train"], f["train_flip"], y_synth
    if pool is not None and idx is not None and len(idx):
        x = np.concatenate([x, pool.x[idx]])
        xf = np.concatenate([xf, pool.xf[idx]])
        y = np.concatenate([y, pool.y[idx]])
    return x, xf, y


def _person_probs_torch(model, tracks: list[np.ndarray], mirror: bool) -> list[np.ndarray | None]:
    from .features import mirror_features
    x = np.concatenate(tracks) if tracks else np.zeros((0, WINDOW, 0), np.float32)
    if not len(x):
        return [None] * len(tracks)
    p = torch_probs(model, x)
    if mirror:
        p = (p + torch_probs(model, mirror_features(x, MODEL_LAYOUT, "person"))) / 2
    return track_means(p, tracks)


def cross_validate(clips, f: dict, y_synth: np.ndarray, k: int, seed: int, epochs: int, lr: float, progress: bool,
                   max_steps: int | None, n_train: int) -> dict:
    """Leave-groups-out cross-validation on the real clips; returns the folds and each clip's out-of-fold mean
    probabilities (None where the clip has no classifiable window)."""
    F, C = f["train"].shape[-1], len(CLASSES)
    folds = assign_folds([c.group for c in clips], [c.label for c in clips], k)
    oof: list = [None] * len(clips)
    for j in range(k):
        tr = [c for c, fo in zip(clips, folds) if fo != j]
        te = [i for i, fo in enumerate(folds) if fo == j]
        pool = RealPool(tr, seed=seed + j)
        set_seeds(seed)
        m = make_model(F, C)
        x, xf, y = _fit_set(f, y_synth, pool, _real_draw(pool, n_train, seed + j))
        fit(m, x, xf, y, epochs, lr, seed, desc=f"cv fold {j + 1}/{k}", progress=progress, max_steps=max_steps)
        for i, p in zip(te, _person_probs_torch(m, real_track_windows([clips[i] for i in te]), TEST_TIME_MIRROR)):
            oof[i] = p
    return {"folds": folds.tolist(), "oof": oof}


def calibrate(int8_path, data: dict, normalization: str, mirror, clips, oof) -> dict:
    """The "uncertain" threshold: synthetic person tracks (TARGET_PRECISION) and, where given, the real clips'
    out-of-fold person scores (REAL_NONE_REJECTED, REAL_TARGET_PRECISION); the higher threshold."""
    tracks, track_y = data["cal_tracks"]["tracks"], data["cal_tracks"]["y"]
    cal = calibrate_threshold(track_probs(int8_path, tracks, normalization, mirror), track_y,
                              target_precision=TARGET_PRECISION, floor=THRESHOLD_FLOOR)
    cal["level"] = "person (track)"
    if clips and oof is not None:
        have = [i for i, p in enumerate(oof) if p is not None]
        if have:
            rp = np.stack([oof[i] for i in have])
            ry = np.array([clips[i].y for i in have])
            real = calibrate_rejection(rp, ry, none_rejected=REAL_NONE_REJECTED, action_precision=REAL_TARGET_PRECISION,
                                       floor=THRESHOLD_FLOOR)
            cal["synthetic_threshold"] = cal["threshold"]
            cal["real_out_of_fold"] = real
            cal["threshold"] = max(cal["threshold"], real["threshold"])
    return cal


def _shown_path(path) -> str:
    """``path`` relative to the repository when it lies inside it (the card names no machine's folders)."""
    root = Path(__file__).resolve().parents[2]
    try:
        return Path(path).resolve().relative_to(root).as_posix()
    except ValueError:
        return str(path)


def train(out_dir, data_dir=None, synthetic: bool = True, real_dir=None, seed: int = 0, n_train: int = 2500,
          n_val: int = 150, n_test: int = 300, epochs: int = 24, finetune_epochs: int = 4, sparsity: float = 0.5,
          lr: float = 3e-3, normalization: str = "auto", progress: bool = True, threads: int = 2,
          max_steps: int | None = None, latency_runs: int = 200, keep_pruned: bool = False,
          cv_folds: int = DEFAULT_CV_FOLDS) -> dict:
    """The whole pipeline; writes ONNX files, card and report into ``out_dir``; returns the report.

    ``real_dir``: a folder with ``manifest.csv`` and ``tracks.npz`` (:mod:`models.action.realdata`) whose windows
    join the generated ones (person normalization); ``cv_folds`` >= 2 cross-validates on them first."""
    import torch

    from .realdata import load_clips, summary
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
    clips = load_clips(real_dir) if real_dir is not None else []
    if clips:
        normalization = "person"  # real tracks come from videos of every size: frame normalization cannot apply
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

    # --- leave-groups-out cross-validation on the real clips (before the final model; it calibrates the threshold)
    cv = None
    t_cv = 0.0
    if clips and cv_folds >= 2:
        t0 = time.time()
        cv = cross_validate(clips, feats("person"), y_fit, cv_folds, seed, epochs, lr, progress, max_steps, n_train)
        t_cv = time.time() - t0

    pool = RealPool(clips, seed=seed) if clips else None
    real_idx = _real_draw(pool, n_train, seed) if pool is not None else None

    def train_one(norm, f):
        set_seeds(seed)
        m = make_model(F, C)
        t0 = time.time()
        x, xf, y = _fit_set(f, y_fit, pool, real_idx)
        fit(m, x, xf, y, epochs, lr, seed, desc=f"train[{norm}]", progress=progress, max_steps=max_steps)
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
            "val_accuracy": metrics(data["val"][1], torch_probs(m, f["val"]), classes)["accuracy"],
            "heldout_val_accuracy": metrics(data["heldout_val"][1], torch_probs(m, f["heldout_val"]),
                                            classes)["accuracy"],
            "test_accuracy_for_information": metrics(data["test"][1], torch_probs(m, f["test"]),
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
    x, xf, y = _fit_set(f, y_fit, pool, real_idx)
    fit(model, x, xf, y, finetune_epochs, lr / 3, seed + 1, masks=masks, desc="finetune",
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
    diff = float(np.abs(onnx_probs(pruned_path, chk) - torch_probs(model, chk)).max())

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

    # --- calibrate the uncertain threshold (int8 model)
    if data.get("cal_tracks") is not None:
        cal = calibrate(int8_path, data, normalization, mirror, clips, cv["oof"] if cv else None)
        cal_x = [f["val"], f["heldout_val"]] + ([f["idle"]] if "idle" in f else [])
        cal_y = [data["val"][1], data["heldout_val"][1]] + ([np.full(len(f["idle"]), -1)] if "idle" in f else [])
        win_probs, win_y = onnx_probs(int8_path, np.concatenate(cal_x), mirror=mirror), np.concatenate(cal_y)
        win_acc = win_probs.max(1) >= cal["threshold"]
        win_ok = (win_probs.argmax(1) == win_y) & (win_y >= 0)
        cal["windows_at_threshold"] = {
            "precision_accepted": float(win_ok[win_acc].mean()) if win_acc.any() else 0.0,
            "coverage_action_windows": float(win_acc[win_y >= 0].mean()),
            "idle_windows_rejected": float((~win_acc[win_y < 0]).mean()) if (win_y < 0).any() else None}
    else:  # the real dataset has no no-action windows and no tracks: window level
        win_probs = onnx_probs(int8_path, np.concatenate([f["val"], f["heldout_val"]]), mirror=mirror)
        cal = calibrate_threshold(win_probs, np.concatenate([data["val"][1], data["heldout_val"][1]]),
                                  target_precision=TARGET_PRECISION)
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

    # --- the real clips: cross-validated person outcomes at the calibrated threshold, and the final int8 model
    # on its own training clips (for information: how well it fits them)
    real = None
    if clips:
        tracks = real_track_windows(clips)
        x = np.concatenate(tracks)
        fitted = track_means(onnx_probs(int8_path, x, mirror=mirror), tracks) if len(x) else [None] * len(clips)
        labels, groups = [c.label for c in clips], [c.group for c in clips]
        real = {"dir": _shown_path(real_dir), "summary": summary(clips), "windows": pool.windows_per_label(),
                "window_stride": REAL_STRIDE, "pool_windows": len(pool),
                "drawn_windows": int(len(real_idx)), "tempos": list(REAL_TEMPOS),
                "training_fit": person_outcomes(fitted, labels, groups, classes, cal["threshold"])}
        if cv is not None:
            real["cross_validation"] = {
                "folds": cv_folds, "method": "leave groups out (models.action.crossval.assign_folds); a model per fold "
                "trained like the final one (fp32, before pruning), scoring each held-out clip as the timeline scores "
                "a person: mean of its windows (stride 8) with the mirror image",
                "outcomes": person_outcomes(cv["oof"], labels, groups, classes, cal["threshold"]),
                "per_clip": [{"clip_id": c.clip_id, "label": c.label, "group": c.group, "fold": fo,
                              "probabilities": None if p is None else [round(float(v), 4) for v in p]}
                             for c, fo, p in zip(clips, cv["folds"], cv["oof"])]}

    t_total = time.time() - t_start
    if data_dir is not None:
        regenerate = f"python -m models train --data {data_dir} --seed {seed} --out {out_dir}"
    elif clips:
        regenerate = f"python -m models train --seed {seed} --out {out_dir}"
    else:
        regenerate = f"python -m models train --synthetic --seed {seed} --out {out_dir}"
    report = {
        "model": NAME, "version": VERSION, "data": data["source"] + (f" + real tracks ({_shown_path(real_dir)})" if clips else ""),
        "seed": seed,
        "splits": {k: int(len(v[1])) for k, v in data.items() if isinstance(v, tuple)},
        "normalization": normalization, "normalization_comparison": comparison,
        "metrics": results,
        "accuracy_drop_int8_vs_fp32_points": 100 * (results["test"]["fp32"]["accuracy"]
                                                      - results["test"]["int8"]["accuracy"]),
        "sizes_bytes": sizes, "int8_vs_fp32_size_ratio": sizes["fp32"] / sizes["int8"],
        "latency": lat, "sparsity": sparsity_of(pruned_state), "target_sparsity": sparsity,
        "onnx_vs_torch_max_abs_diff": diff,
        "calibration": cal,
        "real": real,
        "timing_s": {"data": t_data, "cross_validation": t_cv, "train": t_train, "finetune": t_finetune,
                     "total": t_total},
        "hyperparameters": {"epochs": epochs, "finetune_epochs": finetune_epochs, "lr": lr, "batch": 128,
                            "dropout": 0.2, "optimizer": "Adam, one-cycle LR",
                            "augmentation": "horizontal flip with left/right joint swap (p=0.5), feature noise; "
                                            f"{P_SHORT:.0%} of the windows of every split are short clips "
                                            f"(synth.short_clip), {P_LOW_RATE:.0%} sampled at 1/2 or 1/3 of the "
                                            "rate and interpolated back (synth.low_rate); the generator's upper-body shots "
                                            f"({synth.P_UPPER_BODY:.0%}), side ({synth.P_SIDE_VIEW:.0%}) and back "
                                            f"({synth.P_BACK_VIEW:.0%}) views; real clips played at "
                                            f"{', '.join(f'{t:g}' for t in REAL_TEMPOS)}x, each copy slightly "
                                            "rotated and stretched",
                            "real_windows_drawn": {"per_class": int(round(REAL_PER_SYNTHETIC * n_train)),
                                                   "none": int(round(REAL_NONE_PER_CLASS_DRAW * REAL_PER_SYNTHETIC
                                                                     * n_train))} if clips else None,
                            "test_time_mirror": TEST_TIME_MIRROR,
                            "idle_windows": "no-action windows (synth.generate_negatives: idle stance, frozen and "
                                            "near-frozen action frames, everyday still poses, slow non-action "
                                            "movement, mostly with a slow camera pan/zoom) and real 'none' clips "
                                            "trained toward the uniform distribution; the same detector errors on "
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
    card = make_card(report, data_dir, seed, n_train, n_val, n_test, normalization, shipped, cal,
                     name=NAME, version=VERSION, test_time_mirror=TEST_TIME_MIRROR, threshold_floor=THRESHOLD_FLOOR,
                     real_target_precision=REAL_TARGET_PRECISION, real_none_rejected=REAL_NONE_REJECTED)
    if not keep_pruned:  # an intermediate: int8 is quantized from it; metrics and hash are in the report
        Path(pruned_path).unlink()
    (out / f"{NAME}.card.json").write_text(json.dumps(card, indent=2) + "\n", encoding="utf-8")
    (out / f"{NAME}.card.md").write_text(card_markdown(card), encoding="utf-8")
    (out / "eval_report.json").write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    (out / "eval_report.md").write_text(report_markdown(report, classes), encoding="utf-8")
    return report



