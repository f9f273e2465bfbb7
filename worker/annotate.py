"""The annotated video: the sampled frames with each person's skeleton, box, track id and the action
label (with its confidence) at that moment. Written as WebM (VP8), which browsers play inline."""
from __future__ import annotations

import os
from pathlib import Path

import cv2
import numpy as np

from models.layouts import get_layout
from models.tracks import PoseExtraction

MAX_WIDTH = 960
FOURCC = "VP80"
KPT_CONF = 0.3
EDGES_BY_NAME = [
    ("nose", "l_eye"), ("nose", "r_eye"), ("l_eye", "l_ear"), ("r_eye", "r_ear"),
    ("l_shoulder", "r_shoulder"), ("l_shoulder", "l_elbow"), ("l_elbow", "l_wrist"),
    ("r_shoulder", "r_elbow"), ("r_elbow", "r_wrist"), ("l_shoulder", "l_hip"), ("r_shoulder", "r_hip"),
    ("l_hip", "r_hip"), ("l_hip", "l_knee"), ("l_knee", "l_ankle"), ("r_hip", "r_knee"), ("r_knee", "r_ankle"),
    ("neck", "l_shoulder"), ("neck", "r_shoulder"), ("neck", "nose"),
]
# Okabe-Ito colours in BGR, one per track id.
PALETTE = [(0, 159, 230), (233, 180, 86), (115, 158, 0), (66, 228, 240), (178, 114, 0), (0, 94, 213),
           (167, 121, 204)]


def _colour(track_id: int) -> tuple[int, int, int]:
    return PALETTE[int(track_id) % len(PALETTE)]


def _edges(layout) -> list[tuple[int, int]]:
    names = get_layout(layout)
    pos = {n: i for i, n in enumerate(names)}
    return [(pos[a], pos[b]) for a, b in EDGES_BY_NAME if a in pos and b in pos]


def label_at(person: dict | None, t: float) -> tuple[str, float | None]:
    """The label shown at time ``t``: the window centred closest to ``t`` among those covering it,
    else the timeline segment covering it, else the person's overall label."""
    if not person:
        return "", None
    covering = [w for w in person.get("windows") or [] if w["start_s"] - 1e-6 <= t <= w["end_s"] + 1e-6]
    if covering:
        w = min(covering, key=lambda w: abs((w["start_s"] + w["end_s"]) / 2 - t))
        return str(w["label"]), float(w["confidence"])
    for seg in person.get("segments") or []:
        if seg["start_s"] - 1e-6 <= t <= seg["end_s"] + 1e-6:
            return str(seg["label"]), float(seg["confidence"])
    return str(person.get("label", "")), person.get("confidence")


def _text(img, text, org, colour, scale) -> None:
    font = cv2.FONT_HERSHEY_SIMPLEX
    thick = max(1, int(round(scale * 2)))
    (tw, th), base = cv2.getTextSize(text, font, scale, thick)
    x, y = int(org[0]), int(max(th + 4, org[1]))
    cv2.rectangle(img, (x, y - th - 4), (x + tw + 4, y + base), colour, -1)
    lum = 0.114 * colour[0] + 0.587 * colour[1] + 0.299 * colour[2]
    cv2.putText(img, text, (x + 2, y - 2), font, scale, (0, 0, 0) if lum > 140 else (255, 255, 255), thick,
                cv2.LINE_AA)


def draw_frame(img: np.ndarray, entries, edges, scale: float, t: float) -> np.ndarray:
    """``entries``: (track_id, keypoints (K,3), box xyxy, label, confidence) in original pixels."""
    font_scale = max(0.4, 0.5 * img.shape[1] / 640)
    for track_id, kpts, box, label, conf in entries:
        col = _colour(track_id)
        k = kpts.astype(np.float64).copy()
        k[:, :2] *= scale
        b = (np.asarray(box, np.float64) * scale).astype(int)
        cv2.rectangle(img, (b[0], b[1]), (b[2], b[3]), col, 2)
        ok = k[:, 2] >= KPT_CONF
        for i, j in edges:
            if ok[i] and ok[j]:
                cv2.line(img, (int(k[i, 0]), int(k[i, 1])), (int(k[j, 0]), int(k[j, 1])), col, 2, cv2.LINE_AA)
        for x, y in k[ok, :2]:
            cv2.circle(img, (int(x), int(y)), 3, (255, 255, 255), -1, cv2.LINE_AA)
        text = f"#{track_id}"
        if label:
            text += f" {label}" + (f" {round(100 * conf)} %" if conf is not None else "")
        _text(img, text, (b[0], b[1] - 2), col, font_scale)
    _text(img, f"{t:6.2f} s", (4, img.shape[0] - 6), (40, 40, 40), font_scale * 0.8)
    return img


def write_annotated_video(video_path: str | os.PathLike, extraction: PoseExtraction, result: dict | None,
                          out_path: str | os.PathLike, max_width: int = MAX_WIDTH) -> int:
    """Write the annotated sampled frames to ``out_path`` (.webm); returns the number of frames."""
    from models.video import sample_frames

    out_path = Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    persons = {int(p["track_id"]): p for p in (result or {}).get("persons") or []}
    edges = _edges(extraction.layout)
    by_frame: dict[int, list] = {}
    for tr in extraction.tracks:
        for row, fi in enumerate(np.asarray(tr.frame_indices)):
            by_frame.setdefault(int(fi), []).append((tr, row))

    w, h = int(extraction.width), int(extraction.height)
    scale = min(1.0, max_width / float(w)) if w else 1.0
    out_w, out_h = max(2, int(round(w * scale)) // 2 * 2), max(2, int(round(h * scale)) // 2 * 2)
    fps = float(extraction.sampled_fps) or 10.0
    tmp = out_path.with_name(f".{out_path.stem}.{os.getpid()}{out_path.suffix}")
    writer = cv2.VideoWriter(str(tmp), cv2.VideoWriter_fourcc(*FOURCC), fps, (out_w, out_h))
    if not writer.isOpened():
        raise RuntimeError(f"OpenCV cannot write {FOURCC} video here")
    target = extraction.meta.get("target_fps", extraction.sampled_fps) if extraction.meta else extraction.sampled_fps
    written = 0
    try:
        for idx, t, frame in sample_frames(video_path, target or None):
            if frame.shape[1] != w or frame.shape[0] != h:
                frame = cv2.resize(frame, (w, h), interpolation=cv2.INTER_AREA)
            if scale != 1.0 or (out_w, out_h) != (w, h):
                frame = cv2.resize(frame, (out_w, out_h), interpolation=cv2.INTER_AREA)
            t_s = float(extraction.frame_times[idx]) if idx < len(extraction.frame_times) else float(t)
            entries = []
            for tr, row in by_frame.get(idx, []):
                label, conf = label_at(persons.get(int(tr.track_id)), t_s)
                entries.append((int(tr.track_id), tr.keypoints[row], tr.boxes[row], label, conf))
            writer.write(draw_frame(frame, entries, edges, out_w / w if w else 1.0, t_s))
            written += 1
    except BaseException:
        writer.release()
        tmp.unlink(missing_ok=True)
        raise
    writer.release()
    if written == 0:
        tmp.unlink(missing_ok=True)
        raise RuntimeError("no frames could be read for the annotated video")
    os.replace(tmp, out_path)
    return written
