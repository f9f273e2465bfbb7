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
