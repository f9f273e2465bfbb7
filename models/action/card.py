"""The model card and the evaluation report of a trained action model (JSON + Markdown)."""
from __future__ import annotations

import json
import os
from pathlib import Path

from ..hashing import sha256_file
from ..layouts import get_layout
from . import synth
from .crossval import outcomes_markdown
from .dataset import CLASSES, FPS, WINDOW
from .features import MAX_GAP
from .trainset import (
    CALIBRATION_STRIDE,
    CALIBRATION_TRACK_FRAMES,
    CALIBRATION_TRACKS_PER_CLASS,
    MIN_KEYPOINT_CONF,
    MODEL_LAYOUT,
    n_negatives_train,
)


def make_card(report, data_dir, seed, n_train, n_val, n_test, normalization, variants, cal, *, name: str,
              version: str, test_time_mirror: bool, threshold_floor: float, real_target_precision: float,
              real_none_rejected: float) -> dict:
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
    if report.get("real"):
        training_data["kind"] = "synthetic + real tracks"
        training_data["real"] = {"dir": report["real"]["dir"], "summary": report["real"]["summary"],
                                 "manifest": f"{report['real']['dir']}/manifest.csv"}
    t = report["metrics"]["test"]
    return {
        "name": name, "version": version, "task": "human action recognition from 2D pose windows",
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
        "test_time_mirror": test_time_mirror,
        "calibration": dict(cal, method=(
            "int8 model, each window averaged with its mirror image (test_time_mirror), on synthetic person tracks "
            f"of {', '.join(f'{n / FPS:.1f}' for n in CALIBRATION_TRACK_FRAMES)} s (validation ranges; "
            f"{CALIBRATION_TRACKS_PER_CLASS} per length of every action and as many no-action tracks: idle stance, "
            "frozen action frames, still poses, slow movement, detector errors), cut into windows as the timeline "
            f"does (stride {CALIBRATION_STRIDE}; shorter tracks as one window played back and forth); a person's "
            "confidence = the mean of its windows' probabilities; no-action tracks count as errors when accepted; "
            f"threshold = lowest confidence in [{threshold_floor:.2f}, 0.99] (step 0.01) at which accepted tracks "
            f"are >= {cal['target_precision']:.0%} right. The same threshold marks single windows uncertain "
            "(windows_at_threshold: what it does on validation windows)"
            + (". With real clips: also their out-of-fold person scores from the leave-groups-out cross-validation: "
               f"the lowest threshold at which >= {real_none_rejected:.0%} of the 'none' clips are uncertain and the "
               f"accepted action clips are >= {real_target_precision:.0%} right; the higher of the two thresholds "
               "(real_out_of_fold, synthetic_threshold)" if cal.get("real_out_of_fold") else "")
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
        "real_training": _real_section(report.get("real")),
        "limitations": _limitations(report.get("real")),
    }


def _real_section(real: dict | None) -> dict | None:
    """The card's summary of the real training clips and their cross-validation (no per-clip rows)."""
    if not real:
        return None
    out = {k: v for k, v in real.items() if k != "cross_validation"}
    cv = real.get("cross_validation")
    if cv:
        out["cross_validation"] = {k: v for k, v in cv.items() if k != "per_clip"}
    return out


def _limitations(real: dict | None) -> str:
    if not real:
        return ("trained on procedurally generated poses only, never on real video; measured on real labelled clips "
                "with bench/real_footage.py. Retrain with real tracks (`python -m models train`) or on the "
                "RNN-HAR-2D-Pose-database with `python -m models train --data DIR` when it is available.")
    return ("real training clips come from public repositories (models/data/real/manifest.csv): exercise demos, "
            "boxing, sign-language and gesture clips, research action data sets (KTH, Weizmann, UCF101 samples) and "
            "everyday motion; few sources per class for some actions, mostly one person in view, and the labels "
            "are per clip (the main person). People doing none of the six actions are rejected only as far as the "
            "'none' clips and the generator's no-action windows cover what they do; the threshold trades "
            "abstaining against naming (real_out_of_fold in the calibration).")


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
    rt = c.get("real_training")
    if rt:
        win = rt.get("windows", {})
        L += ["## Real training clips", "", f"`{rt['dir']}/manifest.csv`; windows every "
              f"{rt.get('window_stride', '')} frames at 22 Hz, as recorded (and with the clips also played at "
              f"{', '.join(f'{t:g}' for t in rt.get('tempos', []))}x)", "",
              "| label | clips | groups (sources) | seconds | windows as recorded | windows, all tempos |",
              "|---|---|---|---|---|---|"]
        L += [f"| {k} | {v['clips']} | {v['groups']} | {v['seconds']} | {win.get(k, {}).get('as_recorded', '')} | "
              f"{win.get(k, {}).get('all_tempos', '')} |" for k, v in rt["summary"].items()]
        cv = rt.get("cross_validation")
        if cv:
            L += ["", f"Cross-validated ({cv['folds']} folds, {cv['method']}), at the threshold below:", "",
                  *outcomes_markdown(cv["outcomes"])]
        L.append("")
    L += ["## Uncertain threshold", "", f"**{c['uncertain_threshold']}**: {c['calibration']['method']}", "",
          "## Architecture", "", c["architecture"], "", c["quantization"], "",
          "## Limitations", "", c["limitations"], "", "## Regenerate", "", f"`{c['regenerate']}`", ""]
    return "\n".join(L)
