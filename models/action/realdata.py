"""Real training data: keypoint tracks of people in public videos, one labelled action per clip (numpy only).

The videos themselves never enter the repository; what does, in ``models/data/real/``:

- ``manifest.csv``: one row per clip, i.e. a one-action part of a public video: ``clip_id, label, group, repo,
  path, commit, start_s, end_s, licence, people, view, notes, sha256``. ``label`` is one of the six classes or
  ``none`` (a person doing none of them); ``group`` is the original recording it comes from (a repository, or a
  data set's person/video such as ``kth:person07`` when several repositories carry copies of one data set), so
  cross-validation leaves whole groups out and one prolific source cannot carry a class.
- ``tracks.npz``: per clip the main person's track as the service's pose stage saw it (YOLO11n-pose ONNX, the
  service's sampling rate and crop settings): ``<clip_id>.t`` times in seconds from the clip's start (float32),
  ``<clip_id>.k`` keypoints (T, 17, 3) COCO-17 pixels + confidence (float16), and a JSON header (pose settings,
  frame sizes). :func:`build_tracks` makes it from the manifest and a folder of the videos.

Training windows are cut from these tracks with the timeline's own preprocessing
(:func:`models.action.timeline.prepare_track`, :func:`~models.action.timeline.classifiable_windows`), so the model is
trained on what it is shown at run time; time-stretched copies (``tempos``) add speed variation.
"""
from __future__ import annotations

import csv
import io
import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .dataset import CLASSES

DATA_DIR = Path(__file__).resolve().parents[1] / "data" / "real"
NONE = "none"
LABELS = tuple(CLASSES) + (NONE,)
MANIFEST_COLUMNS = ("clip_id", "label", "group", "repo", "path", "commit", "start_s", "end_s", "licence", "people",
                    "view", "notes", "sha256")
TRACK_LAYOUT = "coco17"


@dataclass
class RealClip:
    """One labelled clip: the main person's track (times from the clip's start, COCO-17 keypoints)."""

    clip_id: str
    label: str                 # a class name or "none"
    group: str                 # the original recording (cross-validation groups)
    times: np.ndarray          # (T,) float64
    keypoints: np.ndarray      # (T, 17, 3) float32
    sampled_fps: float
    meta: dict = field(default_factory=dict)

    @property
    def y(self) -> int:
        """0-based class index, -1 for "none"."""
        return -1 if self.label == NONE else CLASSES.index(self.label)

    @property
    def duration_s(self) -> float:
        return float(self.times[-1] - self.times[0]) if len(self.times) else 0.0


def read_manifest(path) -> list[dict]:
    """Rows of a manifest CSV, checked: known labels, unique ids, every column present."""
    with open(path, newline="", encoding="utf-8") as fh:
        reader = csv.DictReader(fh)
        missing = [c for c in MANIFEST_COLUMNS if c not in (reader.fieldnames or [])]
        if missing:
            raise ValueError(f"{path}: missing columns {missing}")
        rows = list(reader)
    seen = set()
    for i, r in enumerate(rows, 2):
        if r["label"] not in LABELS:
            raise ValueError(f"{path}:{i}: unknown label {r['label']!r}")
        if r["clip_id"] in seen:
            raise ValueError(f"{path}:{i}: duplicate clip_id {r['clip_id']!r}")
        seen.add(r["clip_id"])
    return rows


def write_manifest(path, rows: list[dict]) -> None:
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="", encoding="utf-8") as fh:
        w = csv.DictWriter(fh, fieldnames=MANIFEST_COLUMNS, extrasaction="ignore")
        w.writeheader()
        for r in rows:
            w.writerow({c: r.get(c, "") for c in MANIFEST_COLUMNS})


def save_tracks(path, clips: list[RealClip], header: dict) -> None:
    """Write clips to a compressed ``.npz``: float32 times, float16 keypoints (within half a pixel on frames up to
    2048 px, far below a pose detector's own error)."""
    arrays = {}
    for c in clips:
        arrays[f"{c.clip_id}.t"] = np.asarray(c.times, np.float32)
        arrays[f"{c.clip_id}.k"] = np.asarray(c.keypoints, np.float16)
    h = dict(header)
    h["clips"] = {c.clip_id: {"sampled_fps": c.sampled_fps, **c.meta} for c in clips}
    arrays["header"] = np.frombuffer(json.dumps(h, sort_keys=True).encode("utf-8"), np.uint8)
    buf = io.BytesIO()
    np.savez_compressed(buf, **arrays)
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Path(path).write_bytes(buf.getvalue())


def load_header(tracks_path) -> dict:
    with np.load(tracks_path, allow_pickle=False) as z:
        return json.loads(bytes(z["header"]).decode("utf-8"))


def load_clips(data_dir=DATA_DIR, labels=None, groups=None) -> list[RealClip]:
    """The clips of ``data_dir``'s manifest with their tracks (optionally only some labels or groups). Raises
    ValueError when the manifest and the tracks disagree (a clip without a track, or a track without a row)."""
    d = Path(data_dir)
    rows = read_manifest(d / "manifest.csv")
    with np.load(d / "tracks.npz", allow_pickle=False) as z:
        header = json.loads(bytes(z["header"]).decode("utf-8"))
        stored = {k[:-2] for k in z.files if k.endswith(".t")}
        ids = {r["clip_id"] for r in rows}
        if stored != ids:
            raise ValueError(f"{d}: manifest and tracks.npz disagree: {len(ids - stored)} clips without a track "
                             f"({sorted(ids - stored)[:3]}), {len(stored - ids)} tracks without a row "
                             f"({sorted(stored - ids)[:3]})")
        clips = []
        for r in rows:
            if (labels is not None and r["label"] not in labels) or (groups is not None and r["group"] not in groups):
                continue
            info = header["clips"][r["clip_id"]]
            clips.append(RealClip(r["clip_id"], r["label"], r["group"], z[f"{r['clip_id']}.t"].astype(np.float64),
                                  z[f"{r['clip_id']}.k"].astype(np.float32), float(info["sampled_fps"]),
                                  {k: v for k, v in info.items() if k != "sampled_fps"}))
    return clips


def clip_windows(clip: RealClip, window: int, fps: float, stride: int, model_layout, min_keypoint_conf: float,
                 tempo: float = 1.0) -> np.ndarray:
    """The windows (N, window, K, 3) the timeline would classify on ``clip``'s track, in ``model_layout``, after
    playing the clip ``tempo`` times as fast (1 = as recorded). Empty (0, window, K, 3) when none qualifies."""
    from ..layouts import get_layout
    from .timeline import classifiable_windows, cut_windows, prepare_track

    times = (clip.times - clip.times[0]) / float(tempo)
    _, frames = prepare_track(times, clip.keypoints, TRACK_LAYOUT, model_layout, fps, clip.sampled_fps * tempo,
                              min_keypoint_conf)
    starts, padded = classifiable_windows(frames, window, stride)
    if not starts:
        return np.zeros((0, window, len(get_layout(model_layout)), 3), np.float32)
    return cut_windows(frames, starts, padded, window).astype(np.float32)


def summary(clips: list[RealClip]) -> dict:
    """Per label: clips, distinct groups, seconds of track."""
    out = {}
    for lab in LABELS:
        cs = [c for c in clips if c.label == lab]
        out[lab] = {"clips": len(cs), "groups": len({c.group for c in cs}),
                    "seconds": round(float(sum(c.duration_s for c in cs)), 1)}
    return out


# --- building tracks.npz from the videos (needs the pose model: onnxruntime + OpenCV, no torch)

def _main_track_in(extraction, start_s: float, end_s: float | None):
    """The track with the most sampled frames inside [start_s, end_s), cut to that range; or None."""
    best, best_n = None, 0
    for t in extraction.tracks:
        inside = (t.times >= start_s - 1e-6) & ((t.times < end_s) if end_s is not None else True)
        n = int(inside.sum())
        if n > best_n:
            best, best_n = (t.times[inside], t.keypoints[inside]), n
    return best


def build_tracks(manifest_path, videos_dir, out_dir=DATA_DIR, cache_dir=None, progress=print) -> dict:
    """Run the service's pose stage over every manifest row's video part and write ``out_dir/manifest.csv`` and
    ``out_dir/tracks.npz``. Rows whose video is missing, or where nobody is tracked long enough (1 s), are left out
    (and listed in the returned summary). Extractions are cached per video file under ``cache_dir``."""
    import hashlib
    import os

    from ..hashing import sha256_file
    from ..pose import DEFAULT_IMGSZ, DEFAULT_RECT, default_sample_fps, load_pose_estimator
    from ..pose.extract import EXTRACTION_VERSION, extract_tracks
    from ..pose.guided import CROP_IMGSZ, CROP_MARGIN, REDETECT_S
    from ..tracks import PoseExtraction
    from .dataset import FPS

    rows = read_manifest(manifest_path)
    estimator = load_pose_estimator("onnx")
    fps = default_sample_fps(FPS)
    settings = {"pose_model": "yolo11n-pose ONNX", "pose_sha256": estimator.sha256, "imgsz": DEFAULT_IMGSZ,
                "rect": DEFAULT_RECT, "sample_fps": fps, "mode": "guided", "crop_imgsz": CROP_IMGSZ,
                "crop_margin": CROP_MARGIN, "redetect_s": REDETECT_S, "extraction": EXTRACTION_VERSION,
                "layout": TRACK_LAYOUT}
    cache = Path(cache_dir) if cache_dir else None
    kept, clips, dropped = [], [], []
    for r in rows:
        video = Path(videos_dir) / r["local_file"] if r.get("local_file") else None
        if video is None or not video.exists():
            dropped.append((r["clip_id"], "video not found"))
            continue
        sha = sha256_file(video)
        if r.get("sha256") and r["sha256"] != sha:
            dropped.append((r["clip_id"], "sha256 differs from the manifest"))
            continue
        key = hashlib.sha256((sha + json.dumps(settings, sort_keys=True)).encode()).hexdigest()[:24]
        f = cache / f"{key}.npz" if cache else None
        if f is not None and f.exists():
            ex = PoseExtraction.from_bytes(f.read_bytes())
        else:
            ex = extract_tracks(str(video), estimator, target_fps=fps, mode="guided", crop_imgsz=CROP_IMGSZ,
                                crop_margin=CROP_MARGIN, redetect_s=REDETECT_S)
            if f is not None:
                f.parent.mkdir(parents=True, exist_ok=True)
                f.with_suffix(".tmp").write_bytes(ex.to_bytes())
                os.replace(f.with_suffix(".tmp"), f)
        start = float(r["start_s"] or 0.0)
        end = float(r["end_s"]) if r.get("end_s") not in (None, "") else None
        tr = _main_track_in(ex, start, end)
        if tr is None or len(tr[0]) < 2 or tr[0][-1] - tr[0][0] < 1.0:
            dropped.append((r["clip_id"], "no person tracked for 1 s"))
            continue
        times, k = tr
        clips.append(RealClip(r["clip_id"], r["label"], r["group"], times - start, k, float(ex.sampled_fps),
                              {"width": int(ex.width), "height": int(ex.height)}))
        kept.append({**r, "sha256": sha})
        if progress:
            progress(f"{r['clip_id']}: {r['label']} {len(times)} frames")
    out = Path(out_dir)
    write_manifest(out / "manifest.csv", kept)
    save_tracks(out / "tracks.npz", clips, settings)
    return {"kept": len(kept), "dropped": dropped, "summary": summary(clips)}
