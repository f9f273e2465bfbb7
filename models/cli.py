"""``python -m models``: run (video -> pose -> action timeline JSON), train, evaluate.

``run`` and ``evaluate`` need only numpy, OpenCV and onnxruntime; ``train`` needs the training
extra (torch, onnx, tqdm).
"""
from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

DEFAULT_ACTION_OUT = "models/artifacts/action"


def _progress_printer(quiet: bool):
    if quiet:
        return None
    state = {"last": -1}

    def progress(done: int, total: int) -> None:
        pct = int(100 * done / max(total, 1))
        if pct != state["last"]:
            state["last"] = pct
            print(f"\rpose: {done}/{total} frames ({pct} %)", end="", file=sys.stderr, flush=True)
            if done >= total:
                print(file=sys.stderr)
    return progress


def cmd_run(args) -> int:
    from .action.classifier import ActionClassifier
    from .action.timeline import classify_extraction
    from .pose import default_sample_fps, load_pose_estimator
    from .pose.extract import extract_tracks
    from .video import VideoError

    kw = {"imgsz": args.imgsz} if args.imgsz else {}
    if args.threads is not None:
        kw["threads"] = args.threads
    if args.pose_model:
        kw["model_path"] = args.pose_model
    try:
        classifier = ActionClassifier(args.action_model, threads=args.threads or 1)
        estimator = load_pose_estimator("onnx", **kw)
    except (OSError, ValueError, KeyError) as exc:  # missing/unreadable model or card, bad --imgsz
        print(f"error: cannot load the models: {exc}", file=sys.stderr)
        return 2
    fps = args.fps if args.fps else default_sample_fps(classifier.fps)
    try:
        extraction = extract_tracks(args.video, estimator, target_fps=fps, batch_size=args.batch_size,
                                    progress=_progress_printer(args.quiet), mode=args.pose_mode,
                                    crop_imgsz=args.crop_imgsz, redetect_s=args.redetect_s,
                                    crop_margin=args.crop_margin)
    except VideoError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if args.save_extraction:
        try:
            Path(args.save_extraction).parent.mkdir(parents=True, exist_ok=True)
            Path(args.save_extraction).write_bytes(extraction.to_bytes())
        except OSError as exc:
            print(f"error: cannot write {args.save_extraction}: {exc}", file=sys.stderr)
            return 2
    result = classify_extraction(extraction, classifier, stride=args.stride,
                                 uncertain_threshold=args.uncertain_threshold, min_track_s=args.min_track_s)
    text = json.dumps(result, indent=2 if args.indent else None)
    if args.out:
        try:
            Path(args.out).parent.mkdir(parents=True, exist_ok=True)
            Path(args.out).write_text(text + "\n", encoding="utf-8")
        except OSError as exc:
            print(f"error: cannot write {args.out}: {exc}", file=sys.stderr)
            return 2
        if not args.quiet:
            summary = ", ".join(f"#{p['track_id']} {p['label']} ({round(100 * p['confidence'])} %)"
                                for p in result["persons"]) or _NO_RESULT.get(result["status"], "no person")
            print(f"{result['status']}: {summary} -> {args.out}", file=sys.stderr)
    else:
        print(text)
    return 0


_NO_RESULT = {"too_short": "people tracked too briefly to classify", "no_person": "no person"}


def cmd_train(args) -> int:
    try:
        from .action.train import train
    except ImportError as exc:  # pragma: no cover - depends on the training extra
        print(f"error: training needs the training extra (pip install -r requirements-train.txt): {exc}",
              file=sys.stderr)
        return 2
    real_dir = None
    if not args.data and not args.synthetic:  # the shipped recipe: generated windows + the bundled real tracks
        from .action.realdata import DATA_DIR
        real_dir = args.real or DATA_DIR
        if not (Path(real_dir) / "manifest.csv").exists():
            print(f"error: no real tracks in {real_dir} (manifest.csv, tracks.npz); give --synthetic or --data DIR",
                  file=sys.stderr)
            return 2
    report = train(args.out, data_dir=args.data, synthetic=True, real_dir=real_dir, cv_folds=args.cv_folds,
                   seed=args.seed, n_train=args.n_train,
                   n_val=args.n_val, n_test=args.n_test, epochs=args.epochs, finetune_epochs=args.finetune_epochs,
                   sparsity=args.sparsity, lr=args.lr, normalization=args.normalization,
                   progress=not args.quiet, threads=args.threads, max_steps=args.max_steps)
    t = report["metrics"]["test"]
    print(json.dumps({
        "normalization": report["normalization"],
        "test_accuracy": {v: round(m["accuracy"], 4) for v, m in t.items()},
        "sizes_bytes": report["sizes_bytes"],
        "uncertain_threshold": report["calibration"]["threshold"],
        "checks": report["checks"],
        "real_cross_validation": {k: {"clips": v["clips"], "correct": round(v["correct_share"], 3),
                                      "wrong": round(v["wrong_share"], 3)}
                                  for k, v in report["real"]["cross_validation"]["outcomes"].items()}
        if report.get("real") and report["real"].get("cross_validation") else None,
        "seconds": round(report["timing_s"]["total"], 1),
        "out": str(args.out),
    }, indent=2))
    failed = [k for k, ok in report["checks"].items() if not ok]
    if failed:
        print(f"warning: checks failed: {', '.join(failed)}", file=sys.stderr)
    return 0


def cmd_real_tracks(args) -> int:
    from .action.realdata import build_tracks

    try:
        res = build_tracks(args.manifest, args.videos, args.out, cache_dir=args.cache,
                           progress=None if args.quiet else (lambda m: print(m, file=sys.stderr)))
    except (OSError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(json.dumps({"kept": res["kept"], "dropped": [list(d) for d in res["dropped"]], "summary": res["summary"]},
                     indent=2))
    return 0


def cmd_evaluate(args) -> int:
    from .action.classifier import ActionClassifier
    from .action.dataset import load_split
    from .action.evaluate import metrics
    from .layouts import remap

    clf = ActionClassifier(args.model, threads=args.threads)
    if args.data:
        ws = load_split(args.data, args.split)
        x, y, source = ws.x, ws.y, f"{args.data} ({args.split})"
    else:
        from .action import synth
        seed = clf.card.get("training_data", {}).get("seed", 0) if args.seed is None else args.seed
        x, y = synth.generate_windows(args.n, "test", seed + 3)
        source = f"synthetic held-out split (generator v{synth.GENERATOR_VERSION}, seed {seed + 3}, {args.n}/class)"
    probs = clf.predict(remap(x, "openpose18", clf.layout), frame_size=(640.0, 480.0))
    m = metrics(y, probs, clf.classes)
    conf = probs.max(1)
    acc = conf >= clf.uncertain_threshold
    out = {"model": str(clf.model_path), "sha256": clf.sha256, "data": source, "n": m["n"],
           "accuracy": round(m["accuracy"], 4), "macro_f1": round(m["macro_f1"], 4),
           "per_class_f1": {c: round(v["f1"], 4) for c, v in m["per_class"].items()},
           "confusion": m["confusion"],
           "uncertain_threshold": clf.uncertain_threshold, "coverage": round(float(acc.mean()), 4),
           "accuracy_accepted": round(float((probs.argmax(1) == y)[acc].mean()), 4) if acc.any() else None}
    print(json.dumps(out, indent=2))
    return 0


def _number(kind, minimum: float, strict: bool = False, multiple_of: int | None = None):
    """argparse type: a number >= minimum (> minimum if strict), optionally a multiple of ``multiple_of``."""
    def parse(text: str):
        try:
            v = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
        if math.isnan(v) or v < minimum or (strict and v == minimum):
            raise argparse.ArgumentTypeError(f"must be {'>' if strict else '>='} {minimum:g}, got {text}")
        if multiple_of and v % multiple_of:
            raise argparse.ArgumentTypeError(f"must be a multiple of {multiple_of}, got {text}")
        return v
    return parse


def build_parser() -> argparse.ArgumentParser:
    from .pose.guided import CROP_IMGSZ, CROP_MARGIN, REDETECT_S

    p = argparse.ArgumentParser(prog="python -m models", description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="command", required=True)

    r = sub.add_parser("run", help="video -> pose -> action timeline JSON")
    r.add_argument("video")
    r.add_argument("--imgsz", type=_number(int, 32, multiple_of=32), default=None,
                   help="pose model input size (default: models.pose.DEFAULT_IMGSZ, 480)")
    r.add_argument("--fps", type=_number(float, 0, strict=True), default=None,
                   help="sampling rate (default: models.pose.default_sample_fps of the action model's rate)")
    r.add_argument("--pose-mode", choices=("guided", "full"), default="guided",
                   help="guided: whole frames now and then, crops around tracked persons between (default); "
                        "full: every sampled frame whole")
    r.add_argument("--crop-imgsz", type=_number(int, 32, multiple_of=32), default=CROP_IMGSZ,
                   help=f"longest side of a person crop's network input (guided mode; default {CROP_IMGSZ})")
    r.add_argument("--redetect-s", type=_number(float, 0, strict=True), default=REDETECT_S,
                   help="the whole frame at least this often, seconds (guided mode)")
    r.add_argument("--crop-margin", type=_number(float, 0), default=CROP_MARGIN,
                   help="margin around a tracked person's predicted box, as a share of its longer side, on every "
                        f"side (guided mode; default {CROP_MARGIN})")
    r.add_argument("--save-extraction", default=None, metavar="NPZ",
                   help="also write the tracked keypoints (models.tracks.PoseExtraction bytes) here")
    r.add_argument("--stride", type=_number(int, 1), default=8, help="window stride in frames")
    r.add_argument("--out", default=None, help="write the JSON here (default: stdout)")
    r.add_argument("--threads", type=_number(int, 0), default=None,
                   help="pose model threads (default models.pose.DEFAULT_THREADS, 1; 0 = one per core)")
    r.add_argument("--batch-size", type=_number(int, 1), default=8)
    r.add_argument("--uncertain-threshold", type=_number(float, 0), default=None, help="default: the model card's")
    r.add_argument("--min-track-s", type=_number(float, 0), default=None,
                   help="shorter tracks are too short to classify (default 0.7 s)")
    r.add_argument("--action-model", default=None, help="default: the shipped int8 model")
    r.add_argument("--pose-model", default=None)
    r.add_argument("--indent", action="store_true")
    r.add_argument("--quiet", action="store_true")
    r.set_defaults(func=cmd_run)

    t = sub.add_parser("train", help="train + prune + export + quantize + evaluate the action model (torch); "
                       "default: generated windows + the real tracks of models/data/real (the shipped model)")
    src = t.add_mutually_exclusive_group()
    src.add_argument("--data", default=None, help="RNN-HAR-2D-Pose-database directory (X_train.txt, ...)")
    src.add_argument("--synthetic", action="store_true", help="generated windows only (no real tracks)")
    src.add_argument("--real", default=None, metavar="DIR",
                     help="real tracks (manifest.csv + tracks.npz; default models/data/real) beside generated windows")
    t.add_argument("--cv-folds", type=_number(int, 0), default=5,
                   help="leave-groups-out cross-validation folds on the real clips (0 or 1: none)")
    t.add_argument("--out", default=DEFAULT_ACTION_OUT)
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--n-train", type=int, default=2500, help="synthetic training windows per class (and real windows drawn "
                   "per class)")
    t.add_argument("--n-val", type=int, default=150)
    t.add_argument("--n-test", type=int, default=300)
    t.add_argument("--epochs", type=int, default=24)
    t.add_argument("--finetune-epochs", type=int, default=4)
    t.add_argument("--sparsity", type=float, default=0.5)
    t.add_argument("--lr", type=float, default=3e-3)
    t.add_argument("--normalization", choices=("auto", "person", "frame"), default="auto")
    t.add_argument("--threads", type=int, default=2)
    t.add_argument("--max-steps", type=int, default=None, help="cap optimizer steps per phase (smoke runs)")
    t.add_argument("--quiet", action="store_true")
    t.set_defaults(func=cmd_train)

    g = sub.add_parser("real-tracks", help="extract the real training tracks (tracks.npz + manifest.csv) from "
                       "the videos a manifest names (the service's pose stage; no torch)")
    g.add_argument("--manifest", required=True, help="manifest CSV (models.action.realdata columns + local_file)")
    g.add_argument("--videos", required=True, help="folder the manifest's local_file paths are relative to")
    g.add_argument("--out", default="models/data/real")
    g.add_argument("--cache", default="var/real-tracks-cache", help="pose extractions cached per video here")
    g.add_argument("--quiet", action="store_true")
    g.set_defaults(func=cmd_real_tracks)

    e = sub.add_parser("evaluate", help="evaluate an action model (onnxruntime)")
    e.add_argument("--model", default=None, help="default: the shipped int8 model")
    e.add_argument("--data", default=None, help="RNN-HAR-2D-Pose directory (default: synthetic held-out split)")
    e.add_argument("--split", default="test")
    e.add_argument("--n", type=int, default=300, help="synthetic windows per class")
    e.add_argument("--seed", type=int, default=None, help="default: the card's training seed")
    e.add_argument("--threads", type=int, default=1)
    e.set_defaults(func=cmd_evaluate)
    return p


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    return int(args.func(args) or 0)
