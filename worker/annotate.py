"""The annotated video: the video's pictures, on the source's own clock, at :func:`display_fps` with each
person's skeleton, box, track id and the action label (with its confidence) at that moment.

Timing: the output is constant-rate, frame ``k`` at ``k / fps``, from the first source frame (time 0, the clock of
:func:`models.video.sample_frames`, which the pose extraction's ``frame_times`` and so the result's ``start_s`` /
``end_s`` also use) to the source's end (the last frame's timestamp plus its display interval). Each output frame
shows the source frame current at its time (the latest one whose timestamp is at or before it, repeated across a
variable-frame-rate gap) and the overlay of the latest pose sample at or before that picture, held while the
picture is less than one sampling interval after that sample. So the annotated video lasts as long as the source,
whatever its frame rate, and a time in the result (a timeline segment's start) is the same moment in it.

Encoding: when an ``ffmpeg`` binary is on PATH the frames are piped to it raw and encoded as H.264
(libx264, yuv420p, ``+faststart``) into .mp4, which every browser plays inline; that is several times
faster than OpenCV's VP8 encoder and the file is far smaller. Without ffmpeg, or when it fails, the
video is written with OpenCV as WebM (VP8). :func:`write_annotated_video` says which one it wrote
(path, media type) in its :class:`AnnotatedVideo`. The frames are scaled down to 720p at most
(:data:`MAX_SIZE`, :func:`output_size`).
"""
from __future__ import annotations

import logging
import math
import os
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Iterator, TypeVar

import cv2
import numpy as np

from models.layouts import get_layout
from models.tracks import PoseExtraction

log = logging.getLogger("worker")
T = TypeVar("T")

# The annotated video fits within 1280x720 (landscape, square) or 720x1280 (portrait): never above 720p.
MAX_SIZE = (1280, 720)
FOURCC = "VP80"  # the OpenCV fallback
# "superfast": measured on 720p annotated frames it takes about a third less encoder CPU than "veryfast"
# (the render shares the machine with the next job's pose extraction), for files about twice as large that
# are still ~1 Mbit/s at 720p; "ultrafast" drops CABAC and the deblocking filter (blocky, 2.5x larger again).
X264_PRESET = "superfast"
# Frames per second of the annotated video (the action model's rate); poses sampled more sparsely are held.
DISPLAY_FPS = 22.0
# Every source frame is decoded for the annotated video unless the source is faster than this many times its rate.
DECODE_RATE_FACTOR = 4
# Timestamps this close count as the same moment (containers round them, e.g. Matroska to milliseconds).
SAME_TIME_S = 1e-3
X264_CRF = 23
FFMPEG_FINISH_TIMEOUT_S = 120.0  # for ffmpeg to flush and exit once all frames are written
ENCODERS = ("auto", "ffmpeg", "opencv")
FORMATS = {"ffmpeg": (".mp4", "video/mp4"), "opencv": (".webm", "video/webm")}
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


class EncoderError(RuntimeError):
    """The video encoder (not the input video) failed."""


@dataclass(frozen=True)
class AnnotatedVideo:
    path: Path  # the file written: ``out_path`` with the suffix of the format used
    media_type: str  # "video/mp4" or "video/webm"
    frames: int
    encoder: str  # "ffmpeg" (H.264 .mp4) or "opencv" (VP8 .webm)


def ffmpeg_binary() -> str | None:
    """The ``ffmpeg`` executable on PATH, or None."""
    return shutil.which("ffmpeg")


class _FfmpegWriter:
    """Raw BGR frames on stdin → H.264 .mp4 (libx264, yuv420p, moov atom first). (Converting to yuv420p here
    instead would save ffmpeg's conversion, ~1 ms a 720p frame, but OpenCV takes each 2x2 block's colour from one
    pixel, which frays the thin coloured lines of the overlay.)"""

    def __init__(self, binary: str, path: Path, size: tuple[int, int], fps: float):
        self._err = tempfile.TemporaryFile()
        cmd = [binary, "-hide_banner", "-loglevel", "error", "-y",
               "-f", "rawvideo", "-pix_fmt", "bgr24", "-s", f"{size[0]}x{size[1]}", "-framerate", f"{fps:.6g}",
               "-i", "pipe:0", "-an", "-c:v", "libx264", "-preset", X264_PRESET, "-crf", str(X264_CRF),
               "-pix_fmt", "yuv420p", "-movflags", "+faststart", "-f", "mp4", str(path)]
        try:
            self._proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=self._err)
        except OSError as exc:
            self._err.close()
            raise EncoderError(f"cannot start ffmpeg: {exc}") from exc

    def _stderr(self) -> str:
        try:
            self._err.seek(0)
            text = self._err.read().decode("utf-8", "replace").strip()
        except (OSError, ValueError):
            return ""
        return text[-500:]

    def write(self, frame: np.ndarray) -> None:
        try:
            self._proc.stdin.write(np.ascontiguousarray(frame).data)
        except (OSError, ValueError) as exc:  # BrokenPipeError: ffmpeg exited
            self._proc.wait()
            raise EncoderError(f"ffmpeg stopped (exit {self._proc.returncode}): {self._stderr()}") from exc

    def close(self) -> None:
        try:
            try:
                self._proc.stdin.close()
            except OSError:
                pass
            try:
                rc = self._proc.wait(timeout=FFMPEG_FINISH_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()
                raise EncoderError(f"ffmpeg did not finish within {FFMPEG_FINISH_TIMEOUT_S:.0f} s") from None
            if rc != 0:
                raise EncoderError(f"ffmpeg failed (exit {rc}): {self._stderr()}")
        finally:
            self._err.close()

    def abort(self) -> None:
        if self._proc.poll() is None:
            self._proc.kill()
        try:
            self._proc.stdin.close()
        except OSError:
            pass
        self._proc.wait()
        self._err.close()


class _OpenCVWriter:
    """OpenCV's VP8 encoder → .webm (slow, but needs nothing beyond OpenCV)."""

    def __init__(self, path: Path, size: tuple[int, int], fps: float):
        self._writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*FOURCC), fps, size)
        if not self._writer.isOpened():
            self._writer.release()
            raise EncoderError(f"OpenCV cannot write {FOURCC} video here")

    def write(self, frame: np.ndarray) -> None:
        self._writer.write(frame)

    def close(self) -> None:
        self._writer.release()

    abort = close


def display_fps(extraction: PoseExtraction) -> float:
    """The annotated video's frame rate: :data:`DISPLAY_FPS`, or the pose sampling rate when that is higher,
    never above the source's (average) rate."""
    meta = extraction.meta or {}
    fps = max(DISPLAY_FPS, float(extraction.sampled_fps or 0.0))
    source = float(meta.get("source_fps") or 0.0)
    return min(fps, source) if source > 0 else fps


def _decode_fps(extraction: PoseExtraction, fps: float) -> float | None:
    """The rate to decode the source at for an output at ``fps``: every frame (None), unless the source is faster
    than :data:`DECODE_RATE_FACTOR` times the output (slow-motion footage), then that many frames per output frame
    (the picture shown is then at most 1 / (factor * fps) older than the latest source frame)."""
    source = float((extraction.meta or {}).get("source_fps") or 0.0)
    cap = DECODE_RATE_FACTOR * float(fps)
    return cap if source > cap else None


def on_grid(frames: Iterable[tuple[float, T]], fps: float, source_fps: float | None = None
            ) -> Iterator[tuple[float, float, T, int]]:
    """Place timed source frames on the constant-rate grid ``k / fps``.

    ``frames``: ``(t_seconds, frame)`` in timestamp order, the first at 0. Yields ``(t, t_frame, frame, left)`` for
    every grid point ``t`` from 0 to the source's end, the last frame's timestamp plus its display interval (the
    interval to the frame before it, at most one average source interval ``1 / source_fps``): the frame shown at
    ``t`` is the latest one whose timestamp ``t_frame`` is at or before ``t`` (within :data:`SAME_TIME_S`), so a
    frame is repeated across a gap and frames between two grid points are left out. ``left`` is how many more
    grid points show this same frame after this one (0 at its last), so a caller may draw on its last use only.
    """
    step = 1.0 / float(fps)
    k = 0
    held: tuple[float, T] | None = None
    prev_t: float | None = None

    def slots(until: float) -> int:  # grid points k.. whose time is before ``until`` (less the tolerance)
        return max(0, int(math.ceil((until - SAME_TIME_S) / step - 1e-9)) - k)

    for t, frame in frames:
        t = float(t)
        if held is not None:
            n = slots(t)
            for i in range(n):
                yield (k + i) * step, held[0], held[1], n - 1 - i
            k += n
            prev_t = held[0]
        held = (t, frame)
    if held is None:
        return
    interval = held[0] - prev_t if prev_t is not None else step
    if source_fps and source_fps > 0:
        interval = min(interval, 1.0 / float(source_fps))
    end = max(k, 1, int(round((held[0] + interval) / step)))
    for i in range(end - k):
        yield (k + i) * step, held[0], held[1], end - k - 1 - i


def shown_frames(times: np.ndarray, fps: float, source_fps: float | None = None) -> np.ndarray:
    """Which frames, at ``times``, :func:`on_grid` shows at ``fps`` (a boolean mask), plus the last two (they set
    where the video ends, even when the last is not shown): the render leaves the others out, which changes
    nothing in the output (none of them is the latest frame at or before any grid point) and saves converting
    them (a 60 fps source at 22 fps: nearly two frames in three)."""
    n = len(times)
    mask = np.zeros(n, bool)
    for _t, _t_frame, i, _left in on_grid(zip(times, range(n)), fps, source_fps):
        mask[i] = True
    mask[-2:] = True
    return mask


def _annotated_frames(video_path, extraction: PoseExtraction, result: dict | None, out_size: tuple[int, int],
                      fps: float | None = None):
    """Yield the annotated frames, ``out_size`` (w, h) each, at ``fps`` (default :func:`display_fps`) on the
    source's clock (:func:`on_grid`). Poses may be sampled more sparsely than that: a frame shows the overlay of
    the latest pose sample at or before its picture, while the picture is less than one sampling interval after
    that sample, so the overlay never runs ahead of the picture and is held (with the picture) between samples."""
    from models.video import sample_frames

    fps = float(fps or display_fps(extraction))
    meta = extraction.meta or {}
    persons = {int(p["track_id"]): p for p in (result or {}).get("persons") or []}
    edges = _edges(extraction.layout)
    by_frame: dict[int, list] = {}
    for tr in extraction.tracks:
        for row, fi in enumerate(np.asarray(tr.frame_indices)):
            by_frame.setdefault(int(fi), []).append((tr, row))
    w = int(extraction.width)
    out_w = out_size[0]
    times = np.asarray(extraction.frame_times, np.float64)
    hold = 1.0 / float(extraction.sampled_fps) if extraction.sampled_fps else 0.0
    # nothing else runs beside the render: FFmpeg may decode on several threads; only the pictures the output
    # shows are converted, each scaled to the output's size in the same pass as its colour conversion
    source_fps = meta.get("source_fps")
    source = ((t, frame) for _idx, t, frame in sample_frames(
        video_path, _decode_fps(extraction, fps), threads=0, size=out_size,
        needed=lambda times: shown_frames(times, fps, source_fps)))
    for t, t_frame, picture, left in on_grid(source, fps, source_fps):
        img = picture if left == 0 else picture.copy()  # drawn on: a copy while it is shown again
        j = int(np.searchsorted(times, t_frame + SAME_TIME_S, side="right")) - 1
        entries = []
        if j >= 0 and t_frame - times[j] < hold + SAME_TIME_S:
            for tr, row in by_frame.get(j, []):
                label, conf = label_at(persons.get(int(tr.track_id)), float(t))
                entries.append((int(tr.track_id), tr.keypoints[row], tr.boxes[row], label, conf))
        yield draw_frame(img, entries, edges, out_w / w if w else 1.0, float(t))


def output_size(width: int, height: int, max_size: tuple[int, int] = MAX_SIZE) -> tuple[int, int]:
    """(w, h) of the annotated video: the frame scaled down (never up) to fit within ``max_size`` (w, h) for a
    landscape or square frame, and within its transpose for a portrait one; even numbers (yuv420p)."""
    width, height = int(width), int(height)
    long_side, short_side = max(max_size), min(max_size)
    box_w, box_h = (long_side, short_side) if width >= height else (short_side, long_side)
    scale = min(1.0, box_w / float(width), box_h / float(height)) if width > 0 and height > 0 else 1.0
    return (max(2, int(round(width * scale)) // 2 * 2), max(2, int(round(height * scale)) // 2 * 2))


def _write(kind: str, binary: str | None, video_path, extraction, result, out_path: Path,
           max_size: tuple[int, int]) -> AnnotatedVideo:
    suffix, media_type = FORMATS[kind]
    final = out_path.with_suffix(suffix)
    tmp = final.with_name(f".{final.stem}.{os.getpid()}{suffix}")
    size = output_size(extraction.width, extraction.height, max_size)
    fps = display_fps(extraction)
    writer = None
    written = 0
    try:
        for frame in _annotated_frames(video_path, extraction, result, size, fps):
            if writer is None:  # opened at the first frame: no encoder is started for an unreadable video
                writer = (_FfmpegWriter(binary, tmp, size, fps) if kind == "ffmpeg" else _OpenCVWriter(tmp, size, fps))
            writer.write(frame)
            written += 1
        if writer is not None:
            w, writer = writer, None
            w.close()
    except BaseException:
        if writer is not None:
            writer.abort()
        tmp.unlink(missing_ok=True)
        raise
    if written == 0:
        tmp.unlink(missing_ok=True)
        raise RuntimeError("no frames could be read for the annotated video")
    os.replace(tmp, final)
    return AnnotatedVideo(final, media_type, written, kind)


def write_annotated_video(video_path: str | os.PathLike, extraction: PoseExtraction, result: dict | None,
                          out_path: str | os.PathLike, max_size: tuple[int, int] = MAX_SIZE,
                          encoder: str = "auto") -> AnnotatedVideo:
    """Write the annotated video next to ``out_path`` (its suffix is replaced by the format's): as long as the
    source and on its clock (see the module's docstring), scaled to fit within ``max_size`` (:func:`output_size`).

    ``encoder``: "auto" = H.264 .mp4 through ffmpeg when it is on PATH, else (or when it fails) VP8 .webm
    through OpenCV; "ffmpeg" or "opencv" force one (no fallback).
    """
    if encoder not in ENCODERS:
        raise ValueError(f"encoder must be one of {ENCODERS}, not {encoder!r}")
    out_path = Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    if encoder in ("auto", "ffmpeg"):
        binary = ffmpeg_binary()
        if binary is None and encoder == "ffmpeg":
            raise EncoderError("ffmpeg is not on PATH")
        if binary is not None:
            try:
                return _write("ffmpeg", binary, video_path, extraction, result, out_path, max_size)
            except EncoderError as exc:
                if encoder == "ffmpeg":
                    raise
                log.warning("annotated video: ffmpeg failed (%s); writing VP8 WebM with OpenCV instead", exc)
    return _write("opencv", None, video_path, extraction, result, out_path, max_size)
