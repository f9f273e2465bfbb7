"""Real test videos built from the bundled photos (people) or from synthetic scenes (no people)."""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

ASSETS = Path(__file__).resolve().parent / "assets"
FOURCC = {".mp4": "mp4v", ".avi": "MJPG", ".mkv": "MJPG", ".mov": "mp4v", ".webm": "VP80"}


def _writer(path: Path, fps: float, size: tuple[int, int]) -> cv2.VideoWriter:
    fourcc = cv2.VideoWriter_fourcc(*FOURCC[path.suffix.lower()])
    writer = cv2.VideoWriter(str(path), fourcc, fps, size)
    if not writer.isOpened():
        raise RuntimeError(f"OpenCV cannot write {path.suffix} here")
    return writer


def make_people_video(path, seconds: float = 3.0, fps: float = 30.0, size=(640, 360),
                      image: str = "zidane.jpg") -> Path:
    """A clip of a real photo with people, panned and zoomed slowly so frames differ."""
    path = Path(path)
    src = cv2.imread(str(ASSETS / image))
    h, w = src.shape[:2]
    out_w, out_h = size
    n = max(1, int(round(seconds * fps)))
    writer = _writer(path, fps, size)
    try:
        for i in range(n):
            a = i / max(1, n - 1)
            zoom = 1.0 - 0.08 * a  # crop shrinks to 92 % of the photo
            cw, ch = int(w * zoom), int(h * zoom)
            x0 = int((w - cw) * a)
            y0 = int((h - ch) * 0.5)
            frame = cv2.resize(src[y0:y0 + ch, x0:x0 + cw], (out_w, out_h), interpolation=cv2.INTER_AREA)
            writer.write(frame)
    finally:
        writer.release()
    return path


def make_empty_video(path, seconds: float = 2.0, fps: float = 30.0, size=(320, 240)) -> Path:
    """A clip with moving shapes and no person in it."""
    path = Path(path)
    out_w, out_h = size
    n = max(1, int(round(seconds * fps)))
    yy, xx = np.mgrid[0:out_h, 0:out_w]
    writer = _writer(path, fps, size)
    try:
        for i in range(n):
            frame = np.zeros((out_h, out_w, 3), np.uint8)
            frame[..., 0] = (xx + 3 * i) % 256
            frame[..., 1] = (yy * 2) % 256
            cx = int((i * 7) % out_w)
            cv2.circle(frame, (cx, out_h // 2), 20, (0, 0, 255), -1)
            writer.write(frame)
    finally:
        writer.release()
    return path


def truncate_file(src, dst, keep_fraction: float = 0.3) -> Path:
    """Copy the first part of a file only: a download or upload cut short."""
    data = Path(src).read_bytes()
    dst = Path(dst)
    dst.write_bytes(data[: max(1, int(len(data) * keep_fraction))])
    return dst


# --------------------------------------------------------------------------------------- numbered frames
# make_numbered_video writes each frame's index in binary in a band along the bottom (CODE_BAND_FRACTION of the
# height) over the right two thirds of the width (the annotated video's clock is drawn at the bottom left): white
# cell = 1, black = 0, most significant bit first. frame_number reads it back from the picture, also scaled.
CODE_BITS = 10
CODE_BAND_FRACTION = 1 / 12
CODE_X0_FRACTION = 1 / 3


def _code_cells(width: int, height: int):
    """(x0, x1, y0, y1) of the middle of each bit's cell."""
    y0 = int(round(height * (1 - CODE_BAND_FRACTION)))
    band_h = height - y0
    x0 = int(round(width * CODE_X0_FRACTION))
    cell_w = (width - x0) / CODE_BITS
    return [(int(x0 + (b + 0.25) * cell_w), int(x0 + (b + 0.75) * cell_w),
             y0 + band_h // 4, height - band_h // 4) for b in range(CODE_BITS)]


def _numbered(picture: np.ndarray, index: int) -> np.ndarray:
    img = picture.copy()
    h, w = img.shape[:2]
    y0 = int(round(h * (1 - CODE_BAND_FRACTION)))
    x0 = int(round(w * CODE_X0_FRACTION))
    img[y0:, x0:] = 0
    cell_w = (w - x0) / CODE_BITS
    for b in range(CODE_BITS):
        if (index >> (CODE_BITS - 1 - b)) & 1:
            img[y0:, int(round(x0 + b * cell_w)):int(round(x0 + (b + 1) * cell_w))] = 255
    return img


def frame_number(img: np.ndarray) -> int:
    """The index written by :func:`make_numbered_video` into this frame (or a scaled copy of it)."""
    h, w = img.shape[:2]
    gray = img if img.ndim == 2 else img.mean(axis=2)
    n = 0
    for x0, x1, y0, y1 in _code_cells(w, h):
        n = (n << 1) | int(np.median(gray[y0:y1, x0:x1]) > 127)
    return n


def make_numbered_video(path, times, end_s: float | None = None, size=(480, 288), image: str | None = None,
                        start_s: float = 0.0) -> Path:
    """A real video (MPEG-4 in .mp4, made with ffmpeg) whose frame ``i`` is shown from ``times[i]`` seconds (rounded
    to milliseconds, the first 0): variable frame rate when the intervals differ. The last frame lasts until
    ``end_s`` (default: as long as the interval before it). Every frame carries its index (:func:`frame_number`).
    The picture is ``image`` from the assets panned slowly, or black. ``start_s``: the first frame's timestamp in
    the file (a stream that does not start at 0)."""
    import shutil
    import subprocess

    path = Path(path)
    times = [round(float(t), 3) for t in times]
    if times[0] != 0 or any(b <= a for a, b in zip(times, times[1:])) or len(times) >= 2 ** CODE_BITS:
        raise ValueError("times must start at 0, increase and number fewer than 2 ** CODE_BITS")
    last = (end_s - times[-1]) if end_s is not None else (times[-1] - times[-2] if len(times) > 1 else 1 / 30)
    if not last > 0:
        raise ValueError("end_s must be after the last frame")
    binary = shutil.which("ffmpeg")
    if binary is None:
        raise RuntimeError("make_numbered_video needs ffmpeg on PATH")
    out_w, out_h = size
    if image:
        src = cv2.imread(str(ASSETS / image))
        sh, sw = src.shape[:2]
    tmp = path.with_name(f".{path.stem}.src.avi")
    writer = _writer(tmp, 1.0 / last, size)  # MJPG: the frame rate gives the last frame its duration
    try:
        for i in range(len(times)):
            if image:
                a = i / max(1, len(times) - 1)
                cw, ch = int(sw * (1.0 - 0.08 * a)), int(sh * (1.0 - 0.08 * a))
                x0, y0 = int((sw - cw) * a), int((sh - ch) * 0.5)
                picture = cv2.resize(src[y0:y0 + ch, x0:x0 + cw], (out_w, out_h), interpolation=cv2.INTER_AREA)
            else:
                picture = np.zeros((out_h, out_w, 3), np.uint8)
            writer.write(_numbered(picture, i))
    finally:
        writer.release()
    # presentation timestamps in whole milliseconds (time base 1/1000), exact; a balanced sum, as FFmpeg's
    # expression parser limits the nesting of a long chain
    def total(terms: list[str]) -> str:
        return terms[0] if len(terms) == 1 else f"({total(terms[:len(terms) // 2])}+{total(terms[len(terms) // 2:])})"

    pts = total([f"{round(1000 * (start_s + t))}*eq(N,{i})" for i, t in enumerate(times)])
    try:
        subprocess.run([binary, "-v", "error", "-nostdin", "-y", "-i", str(tmp),
                        "-vf", f"settb=1/1000,setpts='{pts}'", "-fps_mode", "passthrough",
                        "-enc_time_base", "1:1000", "-c:v", "mpeg4", "-q:v", "2", "-an", str(path)],
                       check=True, timeout=120, capture_output=True)
    finally:
        tmp.unlink(missing_ok=True)
    return path
