"""Real-footage benchmark: our action model beside the original app's, on real labelled clips (a script, not a test).

    python bench/real_footage.py [DIR] [--markdown bench/results/real_footage.md] [--json out.json]

DIR (default ``../shared/real-clips`` beside the repository) holds the clips and a ``labels.csv`` with the
columns ``path,label``: ``path`` relative to DIR, ``label`` one of the six classes or ``none`` (the person does
none of them: the right answer is "uncertain"). The clips are never copied into the repository.

Every clip goes through exactly the service's pipeline: pose at the service's default settings (size, rect
letterbox, the action model's sampling rate) -> tracks -> ``classify_extraction`` with the service's window
stride -> our label for the main person (the longest track) and for any person. The original app's Keras GRU
(``bench/seed_model.py``) runs on the same tracks with its own preprocessing (OpenPose order without the neck,
x / width, y / height, 32-frame windows; no abstention). Pose extractions are cached per clip under
``var/bench-cache/real-footage`` keyed by the file's hash and the pose settings, so a model change re-runs in
seconds.

Outcomes per clip and model: ``correct``, ``uncertain`` (ours only), ``wrong``, ``too short`` (a person is
tracked but for too short a time to classify) and ``no person`` (nobody tracked).
"""
from __future__ import annotations

import argparse
import collections
import csv
import hashlib
import json
import os
import re
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from models.action.classifier import ActionClassifier  # noqa: E402
from models.action.dataset import CLASSES  # noqa: E402
from models.action.timeline import UNCERTAIN, classify_extraction, resample_track  # noqa: E402
from models.hashing import sha256_file  # noqa: E402
from models.pose.guided import CROP_IMGSZ, CROP_MARGIN  # noqa: E402
from models.tracks import PoseExtraction  # noqa: E402

DEFAULT_DIR = ROOT.parent / "shared" / "real-clips"
CACHE = ROOT / "var" / "bench-cache" / "real-footage"
NONE = "none"
OUTCOMES = ("correct", "uncertain", "wrong", "too short", "no person")
DEFAULT_STRIDE = 8  # the service's HAR_WINDOW_STRIDE default


def read_labels(clip_dir: Path) -> list[tuple[str, str]]:
    with open(clip_dir / "labels.csv", newline="", encoding="utf-8") as fh:
        return [(r["path"], r["label"]) for r in csv.DictReader(fh)]


# HMDB51 file names: <video title>_<class>_<visible body part>_<camera motion>_<people>_<view>_<quality>_<n>
_HMDB = re.compile(r"^(?P<video>.+?)_(?P<cls>[a-z_]+?)_[fhlu]_(?:cm|nm)_np\d+_(?:fr|ba|le|ri)_(?:bad|med|goo)_\d+$")


def read_sources(clip_dir: Path) -> dict[str, str]:
    """{clip path: its source}: the repository from ``sources.csv`` when it lists the clip."""
    f = clip_dir / "sources.csv"
    if not f.exists():
        return {}
    with open(f, newline="", encoding="utf-8") as fh:
        return {r["path"]: r.get("repository") or "" for r in csv.DictReader(fh)}


def source_of(path: str, sources: dict[str, str]) -> tuple[str, str]:
    """(source, collection) of a clip: the repository ``sources.csv`` names (collection "other"); for an HMDB51
    clip the video it was cut from (collection "hmdb51": its clips of one video share a source); otherwise the
    clip's folder (one unlisted source per folder)."""
    if sources.get(path):
        return sources[path], "other"
    stem = Path(path).stem
    m = _HMDB.match(stem)
    if m:
        return f"hmdb51:{m.group('video')}", "hmdb51"
    return f"unlisted:{Path(path).parent.as_posix() or '.'}", "other"


def pose_key(video: Path, estimator, fps: float, mode: str, crop_imgsz: int, margin: float) -> str:
    from models.pose.extract import EXTRACTION_VERSION
    from models.pose.guided import REDETECT_S

    h = hashlib.sha256()
    h.update(sha256_file(video).encode())
    h.update(json.dumps({"imgsz": estimator.imgsz, "rect": bool(estimator.rect), "fps": fps, "mode": mode, "threads": estimator.threads,
                         "crop": crop_imgsz if mode == "guided" else None, "redetect": REDETECT_S,
                         "margin": margin if mode == "guided" else None,
                         "model": estimator.sha256[:16], "extraction": EXTRACTION_VERSION}, sort_keys=True).encode())
    return h.hexdigest()[:24]


def extract_cached(video: Path, estimator, fps: float, cache: Path, mode: str, crop_imgsz: int, margin: float
                   ) -> tuple[PoseExtraction, bool]:
    from models.pose.extract import extract_tracks

    cache.mkdir(parents=True, exist_ok=True)
    f = cache / f"{pose_key(video, estimator, fps, mode, crop_imgsz, margin)}.npz"
    if f.exists():
        return PoseExtraction.from_bytes(f.read_bytes()), True
    ex = extract_tracks(str(video), estimator, target_fps=fps, batch_size=8, mode=mode, crop_imgsz=crop_imgsz,
                       crop_margin=margin)
    tmp = f.with_suffix(".tmp")
    tmp.write_bytes(ex.to_bytes())
    os.replace(tmp, f)
    return ex, False


def main_track(extraction: PoseExtraction):
    """The longest track (most frames; ties: the longer time span), or None."""
    if not extraction.tracks:
        return None
    return max(extraction.tracks, key=lambda t: (len(t), t.duration_s))


def outcome(label: str | None, truth: str) -> str:
    if label is None:
        return "no person"
    if label == "too short":
        return "too short"
    if truth == NONE:
        return "correct" if label == UNCERTAIN else "wrong"
    if label == UNCERTAIN:
        return "uncertain"
    return "correct" if label == truth else "wrong"


def ours(result: dict, extraction: PoseExtraction) -> tuple[str | None, float | None, list[str], dict | None]:
    """(main person's label or "too short"/None, its confidence, every classified person's label, the main
    person's mean class probabilities)."""
    persons = {p["track_id"]: p for p in result["persons"]}
    labels = [p["label"] for p in result["persons"]]
    main = main_track(extraction)
    if main is None:
        return None, None, labels, None
    p = persons.get(main.track_id)
    if p is None:  # the longest track was not classified: fall back to the longest classified person
        if not persons:
            return "too short", None, labels, None
        p = max(result["persons"], key=lambda q: q["frames"])
    return p["label"], p["confidence"], labels, p["probabilities"]


def original(model, extraction: PoseExtraction, fps: float, stride: int) -> tuple[str | None, float | None]:
    from seed_model import CLASSES, classify_track, seed_features

    main = main_track(extraction)
    if main is None:
        return None, None
    _, k = resample_track(main.times, main.keypoints, fps, extraction.sampled_fps or None)
    feats = seed_features(k, extraction.layout, extraction.width, extraction.height)
    probs = classify_track(model, feats, stride)
    if probs is None:
        return None, None
    return CLASSES[int(probs.argmax())], float(probs.max())


def summarize(rows: list[dict], key: str) -> dict:
    """{truth: Counter(outcome)} plus "all"."""
    out: dict[str, collections.Counter] = collections.defaultdict(collections.Counter)
    for r in rows:
        out[r["truth"]][r[key]] += 1
        out["all"][r[key]] += 1
    return out


def pct(n: int, total: int) -> str:
    return f"{100 * n / total:.0f} % ({n})" if total else "–"


def threshold_sweep(rows: list[dict], thresholds=(0.35, 0.4, 0.45, 0.5, 0.6, 0.7, 0.8, 0.9)) -> list[str]:
    """Our main-person outcomes if the "uncertain" threshold were another (the probabilities are the model's)."""
    truths = class_order(rows)
    L = ["| threshold | " + " | ".join(f"{t}: correct / wrong / uncertain" for t in truths) + " |",
         "|---|" + "---|" * len(truths)]
    for thr in thresholds:
        cells = []
        for t in truths:
            c = collections.Counter()
            for r in rows:
                if r["truth"] != t:
                    continue
                if r["ours_probs"] is None:
                    c[outcome(r["ours_label"], t)] += 1
                    continue
                best = max(r["ours_probs"], key=r["ours_probs"].get)
                c[outcome(best if r["ours_probs"][best] >= thr else UNCERTAIN, t)] += 1
            cells.append(f"{c['correct']} / {c['wrong']} / {c['uncertain']}")
        L.append(f"| {thr:.2f} | " + " | ".join(cells) + " |")
    return L


def class_order(rows: list[dict]) -> list[str]:
    """The truths present, in the model's class order, then ``none``."""
    present = {r["truth"] for r in rows}
    return [c for c in CLASSES if c in present] + sorted(present - set(CLASSES))


def source_mean(rows: list[dict], key: str) -> float | None:
    """The share of correct outcomes averaged over sources (each source's own share, then the mean), so a source
    with many clips counts as much as one with a single clip."""
    per: dict[str, list[bool]] = collections.defaultdict(list)
    for r in rows:
        per[r.get("source") or r["clip"]].append(r[key] == "correct")
    return sum(sum(v) / len(v) for v in per.values()) / len(per) if per else None


def _groups(rows: list[dict]) -> list[tuple[str, list[dict]]]:
    """(name, rows) per truth in class order; clapping also split into its HMDB51 clips and the others when both
    are present; then all."""
    out = []
    for t in class_order(rows):
        rs = [r for r in rows if r["truth"] == t]
        out.append((t, rs))
        cols = {r.get("collection", "other") for r in rs}
        if len(cols) > 1:
            for col in sorted(cols):
                out.append((f"{t} ({'HMDB51' if col == 'hmdb51' else 'other sources'})",
                            [r for r in rs if r.get("collection", "other") == col]))
    out.append(("all", list(rows)))
    return out


def summary_table(rows: list[dict]) -> list[str]:
    """Outcomes per truth and in all, ours beside the original model's, with each class's distinct sources and the
    correct share averaged over sources (Markdown lines)."""
    L = ["| truth | clips | sources | model | " + " | ".join(OUTCOMES) + " | correct, mean over sources | any person right |",
         "|---|---|---|---|" + "---|" * len(OUTCOMES) + "---|---|"]
    for name, rs in _groups(rows):
        n = len(rs)
        o = collections.Counter(r["ours_outcome"] for r in rs)
        g = collections.Counter(r["orig_outcome"] for r in rs)
        a = collections.Counter(r["ours_any_outcome"] for r in rs)
        ns = len({r.get("source") or r["clip"] for r in rs})
        so, sg = source_mean(rs, "ours_outcome"), source_mean(rs, "orig_outcome")
        L.append(f"| {name} | {n} | {ns} | ours | " + " | ".join(pct(o[k], n) for k in OUTCOMES)
                 + f" | {100 * so:.0f} % | {pct(a['correct'], n)} |")
        L.append("| | | | original | " + " | ".join(pct(g[k], n) if k != "uncertain" else "–" for k in OUTCOMES)
                 + f" | {100 * sg:.0f} % | |")
    return L


PREDICTED = list(CLASSES) + [UNCERTAIN, "too short", "no person"]


def confusion(rows: list[dict], key: str) -> tuple[list[str], list[str], list[list[int]]]:
    """(truths, predicted labels, counts[truth][predicted]) of the main person's label (``ours_label`` or
    ``orig_label``)."""
    truths = class_order(rows)
    m = [[0] * len(PREDICTED) for _ in truths]
    for r in rows:
        lab = r[key] or "no person"
        m[truths.index(r["truth"])][PREDICTED.index(lab if lab in PREDICTED else "no person")] += 1
    return truths, PREDICTED, m


def confusion_markdown(rows: list[dict], key: str) -> list[str]:
    truths, preds, m = confusion(rows, key)
    used = [j for j in range(len(preds)) if any(row[j] for row in m) or j < len(CLASSES) + 1]
    short = {"JUMPING": "JUMP", "JUMPING_JACKS": "JACKS", "BOXING": "BOX", "WAVING_2HANDS": "WAVE2",
             "WAVING_1HAND": "WAVE1", "CLAPPING_HANDS": "CLAP"}
    L = ["| truth \\ label | " + " | ".join(short.get(preds[j], preds[j]) for j in used) + " |",
         "|---|" + "---|" * len(used)]
    for t, row in zip(truths, m):
        L.append(f"| {t} | " + " | ".join(f"**{row[j]}**" if preds[j] == t or (t == NONE and preds[j] == UNCERTAIN)
                                           else str(row[j]) for j in used) + " |")
    return L


def confusion_png(rows: list[dict], path, titles=("ours", "original")) -> None:
    """Both models' confusion matrices side by side as a picture (rows: truth; cells shaded by the share of the
    truth's clips; the right answers outlined)."""
    import cv2
    import numpy as np

    cell, left, top, gap = 46, 150, 160, 40
    short = {"JUMPING": "jump", "JUMPING_JACKS": "jacks", "BOXING": "box", "WAVING_2HANDS": "wave2",
             "WAVING_1HAND": "wave1", "CLAPPING_HANDS": "clap", UNCERTAIN: "uncert.", "too short": "short",
             "no person": "nobody"}
    panels = []
    for key, title in zip(("ours_label", "orig_label"), titles):
        truths, preds, m = confusion(rows, key)
        h, w = top + cell * len(truths) + 10, left + cell * len(preds) + 10
        img = np.full((h, w, 3), 255, np.uint8)
        cv2.putText(img, title, (left, 28), cv2.FONT_HERSHEY_SIMPLEX, 0.8, (0, 0, 0), 2, cv2.LINE_AA)
        for j, p in enumerate(preds):
            x = left + j * cell + cell // 2
            org = (x - 6, top - 8)
            tmp = np.full((cell * 2, 200, 3), 255, np.uint8)
            cv2.putText(tmp, short.get(p, p), (2, 30), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (0, 0, 0), 1, cv2.LINE_AA)
            rot = cv2.rotate(tmp[:40, :110], cv2.ROTATE_90_COUNTERCLOCKWISE)
            y0 = max(0, org[1] - rot.shape[0])
            img[y0:y0 + rot.shape[0], org[0] - 28:org[0] - 28 + rot.shape[1]] = rot[: top - 8 - y0 if y0 == 0 else rot.shape[0]]
        for i, (t, row) in enumerate(zip(truths, m)):
            y = top + i * cell
            n = max(1, sum(row))
            cv2.putText(img, f"{short.get(t, t)} ({sum(row)})", (8, y + cell // 2 + 5), cv2.FONT_HERSHEY_SIMPLEX, 0.5,
                        (0, 0, 0), 1, cv2.LINE_AA)
            for j, v in enumerate(row):
                x = left + j * cell
                shade = int(255 - 200 * v / n)
                right = preds[j] == t or (t == NONE and preds[j] == UNCERTAIN)
                colour = (shade, 255, shade) if right else (shade, shade, 255)
                cv2.rectangle(img, (x, y), (x + cell - 2, y + cell - 2), colour if v else (245, 245, 245), -1)
                if right:
                    cv2.rectangle(img, (x, y), (x + cell - 2, y + cell - 2), (0, 120, 0), 2)
                if v:
                    cv2.putText(img, str(v), (x + 8, y + cell // 2 + 6), cv2.FONT_HERSHEY_SIMPLEX, 0.55, (0, 0, 0),
                                1, cv2.LINE_AA)
        panels.append(img)
    H = max(p.shape[0] for p in panels)
    out = np.full((H, sum(p.shape[1] for p in panels) + gap, 3), 255, np.uint8)
    x = 0
    for p in panels:
        out[:p.shape[0], x:x + p.shape[1]] = p
        x += p.shape[1] + gap
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(path), out)


def header(rows: list[dict], meta: dict) -> list[str]:
    return [f"Clips: `{meta['dir']}` ({len(rows)}); pose {meta['pose']}; window stride {meta['stride']}; "
            f"command: `{meta['command']}`", "",
            "Main person = the longest track. \"uncertain\" is the right answer for `none` clips; the original model "
            "cannot abstain."]


def markdown(rows: list[dict], meta: dict) -> str:
    L = [f"# Real-footage benchmark: {meta['model']} vs the original app's GRU", ""] + header(rows, meta) + [""]
    L += summary_table(rows)
    L += ["", "Main person's label, ours (rows: truth; bold: the right answer; for `none`, uncertain):", ""]
    L += confusion_markdown(rows, "ours_label")
    L += ["", "The original model's:", ""] + confusion_markdown(rows, "orig_label")
    if meta.get("picture"):
        L += ["", f"![confusion matrices]({meta['picture']})"]
    L += ["", f"Our main-person outcomes at other \"uncertain\" thresholds (the model card's is {meta['threshold']:g}; "
          "for `none` clips, correct = uncertain):", ""] + threshold_sweep(rows)
    L += ["", "<details><summary>Per clip</summary>", "",
          "| clip | source | truth | s | tracks | ours (main) | conf | any person | original | conf |",
          "|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        oc = "" if r["ours_conf"] is None else f"{100 * r['ours_conf']:.0f} %"
        gc = "" if r["orig_conf"] is None else f"{100 * r['orig_conf']:.0f} %"
        L.append(f"| {r['clip']} | {r.get('source', '')} | {r['truth']} | {r['duration_s']:.1f} | {r['tracks']} | "
                 f"{r['ours_label']} | {oc} | "
                 f"{', '.join(r['ours_all']) or '–'} | {r['orig_label']} | {gc} |")
    L += ["", "</details>", ""]
    return "\n".join(L)


def run(clip_dir: Path, cache: Path, stride: int, classifier: ActionClassifier, seed, imgsz=None,
        only=None, quiet=False, fps: float | None = None, mode: str = "guided", crop_imgsz: int = CROP_IMGSZ,
        crop_margin: float = CROP_MARGIN) -> list[dict]:
    from models.pose import default_sample_fps

    fps = fps or default_sample_fps(classifier.fps)
    from models.pose import load_pose_estimator

    kw = {"imgsz": imgsz} if imgsz else {}
    estimator = load_pose_estimator("onnx", **kw)  # the service's threads (results may differ in the last bits)
    rows = []
    sources = read_sources(clip_dir)
    for path, truth in read_labels(clip_dir):
        if only and not any(s in path for s in only):
            continue
        video = clip_dir / path
        t0 = time.perf_counter()
        ex, hit = extract_cached(video, estimator, fps, cache, mode, crop_imgsz, crop_margin)
        result = classify_extraction(ex, classifier, stride=stride)
        label, conf, labels, probs = ours(result, ex)
        orig_label, orig_conf = original(seed, ex, classifier.fps, stride) if seed is not None else (None, None)
        if orig_label is None and label == "too short":
            orig_label = "too short"
        truth_any = UNCERTAIN if truth == NONE else truth
        any_ok = (truth_any in labels) if truth != NONE else (bool(labels) and all(x == UNCERTAIN for x in labels))
        source, collection = source_of(path, sources)
        row = {"clip": path, "truth": truth, "source": source, "collection": collection,
               "duration_s": float(ex.meta.get("duration_s") or 0.0), "tracks": len(ex.tracks),
               "ours_label": label, "ours_conf": conf, "ours_all": labels, "ours_probs": probs,
               "ours_outcome": outcome(label, truth),
               "ours_any_outcome": "correct" if any_ok else outcome(label, truth),
               "orig_label": orig_label, "orig_conf": orig_conf, "orig_outcome": outcome(orig_label, truth),
               "status": result["status"]}
        rows.append(row)
        if not quiet:
            print(f"{path[:60]:60s} {truth[:8]:8s} ours {str(label):15s} orig {str(orig_label):15s} "
                  f"{'cached' if hit else f'{time.perf_counter() - t0:.1f} s'}", file=sys.stderr)
    return rows


def update_card(card_path: Path, classifier: ActionClassifier, rows: list[dict], meta: dict) -> None:
    """Write the results into the model card (JSON, then its Markdown), for this model file only."""
    from models.action.card import card_markdown

    card = json.loads(card_path.read_text(encoding="utf-8"))
    card["real_footage"] = {"model_sha256": classifier.sha256, "header": header(rows, meta),
                            "table": summary_table(rows), "threshold_sweep": threshold_sweep(rows)}
    card_path.write_text(json.dumps(card, indent=2) + "\n", encoding="utf-8")
    card_path.with_suffix("").with_suffix(".card.md").write_text(card_markdown(card), encoding="utf-8")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("dir", nargs="?", default=str(DEFAULT_DIR))
    p.add_argument("--model", default=None, help="action model (default: the shipped int8 model)")
    p.add_argument("--seed-model", default=None, help="the original app's GRU_model.keras "
                   "(default: ../shared/seed-model/GRU_model.keras)")
    p.add_argument("--stride", type=int, default=DEFAULT_STRIDE)
    p.add_argument("--imgsz", type=int, default=None, help="pose input size (default: the service's)")
    p.add_argument("--fps", type=float, default=None, help="sampling rate (default: the service's for this model)")
    p.add_argument("--crop-imgsz", type=int, default=CROP_IMGSZ, help="guided pose crop size (default: the service's)")
    p.add_argument("--crop-margin", type=float, default=CROP_MARGIN,
                   help="guided pose crop margin (default: the service's)")
    p.add_argument("--pose-mode", choices=("guided", "full"), default="guided",
                   help="person-guided crops (the service's default) or every frame whole")
    p.add_argument("--cache", default=str(CACHE))
    p.add_argument("--only", nargs="*", default=None, help="only clips whose path contains one of these")
    p.add_argument("--markdown", default=None, help="write the Markdown report here")
    p.add_argument("--json", default=None, help="write per-clip rows here")
    p.add_argument("--picture", default=None, help="write the confusion matrices as a PNG here (default with "
                   "--markdown: real_footage_confusion.png beside it)")
    p.add_argument("--update-card", action="store_true", help="write the results into the action model's card")
    p.add_argument("--quiet", action="store_true")
    a = p.parse_args(argv)

    clip_dir = Path(a.dir)
    if not (clip_dir / "labels.csv").exists():
        print(f"error: {clip_dir}/labels.csv not found", file=sys.stderr)
        return 2
    classifier = ActionClassifier(a.model, threads=1)
    seed = None
    try:
        from seed_model import DEFAULT_PATH, SeedGru
        seed = SeedGru(a.seed_model or DEFAULT_PATH)
    except (ImportError, OSError) as exc:
        print(f"warning: the original model is not run: {exc}", file=sys.stderr)
    rows = run(clip_dir, Path(a.cache), a.stride, classifier, seed, a.imgsz, a.only, a.quiet, a.fps, a.pose_mode,
               a.crop_imgsz, a.crop_margin)
    from models.pose import DEFAULT_IMGSZ, DEFAULT_RECT, default_sample_fps
    meta = {"model": f"{classifier.name} {classifier.version}", "threshold": classifier.uncertain_threshold,
            "dir": a.dir if a.dir != str(DEFAULT_DIR) else "../shared/real-clips", "stride": a.stride,
            "pose": f"YOLO11n-pose ONNX {a.imgsz or DEFAULT_IMGSZ}{' rect' if DEFAULT_RECT else ''} at "
                    f"{a.fps or default_sample_fps(classifier.fps):g} Hz, {a.pose_mode}"
                    + (f" (crops {a.crop_imgsz}, margin {a.crop_margin:g})" if a.pose_mode == "guided" else ""),
            "command": "python bench/real_footage.py" + (f" {' '.join(argv)}" if argv else
                                                         (" " + " ".join(sys.argv[1:]) if sys.argv[1:] else ""))}
    picture = a.picture or (str(Path(a.markdown).with_name("real_footage_confusion.png")) if a.markdown else None)
    if picture:
        confusion_png(rows, picture)
        meta["picture"] = os.path.relpath(picture, Path(a.markdown).parent) if a.markdown else picture
    text = markdown(rows, meta)
    print(text.split("<details>")[0])
    if a.markdown:
        Path(a.markdown).parent.mkdir(parents=True, exist_ok=True)
        Path(a.markdown).write_text(text, encoding="utf-8")
    if a.update_card:
        update_card(classifier.card_path, classifier, rows, meta)
    if a.json:
        Path(a.json).write_text(json.dumps({"meta": meta, "rows": rows}, indent=1), encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
