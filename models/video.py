"""Reading uploaded videos: probing and resampling to a target frame rate (FFmpeg, through PyAV and OpenCV).

* :func:`probe_video` checks that a file is a video with at least one decodable frame and returns
  its facts (:class:`VideoInfo`); anything else raises :class:`VideoError` with a message that can
  be shown to the user as is.
* :func:`sample_frames` yields frames chosen by their presentation timestamps, so variable frame
  rate phone videos are resampled correctly; it never repeats a frame (no upsampling). Rotation
  metadata is applied (frames come out as displayed). Frames that are not sampled are not converted, and
  in MP4/MOV/Matroska/MPEG-TS files the non-reference ones (no other frame is predicted from them) are not
  even decoded.
"""
from __future__ import annotations

import math
import os
import queue
import threading
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable, Iterable, Iterator, TypeVar

import cv2
import numpy as np

T = TypeVar("T")
# Cap on how many frames probe_video decodes to find the length when the container does not say.
_COUNT_LIMIT = 100_000
# Frames whose timestamps probe_video reads to check the container's frame rate. A container rate above
# _MAX_PLAUSIBLE_FPS and _BOGUS_RATE_FACTOR times the frames' own is FFmpeg's 1 / time base fallback
# (1000 for Matroska/WebM, 90000 for MPEG-TS), not a frame rate.
_CHECK_FRAMES = 9
_BOGUS_RATE_FACTOR = 2.0
_MAX_PLAUSIBLE_FPS = 240.0


class VideoError(Exception):
    """The file cannot be used as a video. ``str(err)`` is a user-facing explanation."""


@dataclass(frozen=True)
class VideoInfo:
    width: int  # as displayed (after rotation)
    height: int
    fps: float  # average source frame rate
    frame_count: int
    duration_s: float
    rotation_deg: int  # rotation metadata applied when decoding (0, 90, 180, 270)
    codec: str  # FourCC, e.g. "h264", "mp4v", "MJPG"

    def to_dict(self) -> dict:
        return asdict(self)


def _fourcc(value: float) -> str:
    code = int(value)
    if code <= 0:
        return ""
    s = "".join(chr((code >> (8 * i)) & 0xFF) for i in range(4))
    return s.strip("\x00 ").strip() if s.isprintable() else ""


def _open(path: str | os.PathLike, threads: int = 1) -> cv2.VideoCapture:
    """OpenCV's FFmpeg reader of ``path``, decoding on ``threads`` threads (0: FFmpeg's choice, one per core)."""
    p = Path(path)
    if not p.is_file():
        raise VideoError(f"The file {p.name!r} does not exist.")
    if p.stat().st_size == 0:
        raise VideoError("The file is empty.")
    params = [cv2.CAP_PROP_N_THREADS, int(threads)] if threads > 0 else []
    cap = cv2.VideoCapture(str(p), cv2.CAP_FFMPEG, params)
    if not cap.isOpened():
        cap.release()
        raise VideoError("This file is not a video we can read (unknown format, or the file is damaged "
                         "or incomplete).")
    cap.set(cv2.CAP_PROP_ORIENTATION_AUTO, 1)
    return cap


def _pos_s(cap: cv2.VideoCapture) -> float:
    """Timestamp (seconds) of the frame just read or grabbed; NaN when unknown."""
    ms = cap.get(cv2.CAP_PROP_POS_MSEC)
    return float(ms) / 1000.0 if ms is not None and math.isfinite(ms) else float("nan")


def _rotation(cap: cv2.VideoCapture) -> int:
    rot = cap.get(cv2.CAP_PROP_ORIENTATION_META)
    if not math.isfinite(rot):
        return 0
    return int(round(rot)) % 360


# Uncompressed codecs: every frame stands alone, so decoding order is display order and FFmpeg's timestamps are
# right in any container (AVI included). Files in these codecs are read with PyAV, never OpenCV: OpenCV's reader
# corrupts its heap and aborts the whole process on some uncompressed AVIs (the bgr24 rawvideo clips of the
# Weizmann action data set, for one), which would take a web or pose worker down with it.
_UNCOMPRESSED_CODECS = {"rawvideo", "v210", "r210", "v308", "v408", "v410", "yuv4", "ayuv", "bmp"}


def _uncompressed_stream(path: str | os.PathLike) -> bool:
    """Whether ``path``'s first video stream is uncompressed (read with PyAV, not OpenCV)."""
    try:
        import av
    except ImportError:  # pragma: no cover - a runtime dependency
        return False
    p = Path(path)
    if not p.is_file() or p.stat().st_size == 0:
        return False
    try:
        with av.open(str(p)) as c:
            return bool(c.streams.video) and c.streams.video[0].codec_context.name in _UNCOMPRESSED_CODECS
    except (av.error.FFmpegError, ValueError):
        return False


def _probe_av(path: str | os.PathLike) -> VideoInfo:
    """:func:`probe_video` through PyAV (uncompressed video): size and rotation from the first decoded frame, the
    length and rate from the packets' timestamps."""
    import av

    try:
        with av.open(str(path)) as c:
            stream = c.streams.video[0]
            tb = float(stream.time_base or 0.0)
            pts = [int(pkt.pts) for pkt in c.demux(stream) if pkt.size and pkt.pts is not None]
            c.seek(0)
            frame = next((f for pkt in c.demux(stream) for f in _decode(pkt)), None)
            rate = stream.average_rate or stream.guessed_rate
    except (av.error.FFmpegError, ValueError):
        raise VideoError("This file is not a video we can read (unknown format, or the file is damaged "
                         "or incomplete).") from None
    if frame is None:
        raise VideoError("The video has no frames that can be decoded (the file may be incomplete or damaged).")
    img = _displayed(frame)
    height, width = img.shape[:2]
    count = len(pts)
    if count < 2:
        raise VideoError("The file holds a single still image, not a video.")
    span = (max(pts) - min(pts)) * tb if tb else 0.0
    fps = (count - 1) / span if span > 0 else (float(rate) if rate else 0.0)
    duration = count / fps if fps > 0 else 0.0
    if not duration > 0:
        raise VideoError("The video has zero duration.")
    rotation = (-int(round(frame.rotation or 0))) % 360
    return VideoInfo(int(width), int(height), float(fps), int(count), float(duration), rotation,
                     stream.codec_context.name)


def probe_video(path: str | os.PathLike) -> VideoInfo:
    """Facts about a video; raises :class:`VideoError` if it is not usable."""
    if _uncompressed_stream(path):
        return _probe_av(path)
    cap = _open(path)
    try:
        ok, frame = cap.read()
        if not ok or frame is None or frame.size == 0:
            raise VideoError("The video has no frames that can be decoded (the file may be incomplete or "
                             "damaged).")
        height, width = frame.shape[:2]  # displayed size: orientation is applied to decoded frames
        fps = cap.get(cv2.CAP_PROP_FPS)
        fps = float(fps) if fps and math.isfinite(fps) and fps > 0 else 0.0
        count = cap.get(cv2.CAP_PROP_FRAME_COUNT)
        count = int(count) if count and math.isfinite(count) and count > 0 else 0
        rotation = _rotation(cap)
        codec = _fourcc(cap.get(cv2.CAP_PROP_FOURCC))
        # Frame timestamps: of every frame when the container gives no length or no rate, else of the
        # first few, to check the container's rate (without one FFmpeg reports 1 / time base, e.g. 1000 fps).
        full = count <= 0 or fps <= 0
        limit = _COUNT_LIMIT if full else _CHECK_FRAMES
        stamps = [_pos_s(cap)]
        while len(stamps) < limit and cap.grab():
            stamps.append(_pos_s(cap))
        n = len(stamps)
        known = np.asarray(stamps)[np.isfinite(stamps)]
        if full or n < limit:  # decoded to the end: the frames and their timestamps are the facts
            count = n if n < limit or not count else count
            span = float(known.max() - known.min()) if len(known) > 1 else 0.0
            if n > 1 and span > 0:
                fps = (n - 1) / span
        else:
            dts = np.diff(known)
            dts = dts[dts > 0]
            measured = 1.0 / float(np.median(dts)) if len(dts) else 0.0
            if measured > 0 and fps > max(_BOGUS_RATE_FACTOR * measured, _MAX_PLAUSIBLE_FPS):
                # the container's rate is far above the frames' own: keep its duration, trust the timestamps
                duration = count / fps
                fps = measured
                count = max(n, round(duration * fps))
        if count < 2:
            raise VideoError("The file holds a single still image, not a video.")
        duration = count / fps if fps > 0 else 0.0
        if not duration > 0:
            raise VideoError("The video has zero duration.")
        return VideoInfo(int(width), int(height), fps, int(count), float(duration), rotation, codec)
    finally:
        cap.release()


def _tolerance(frame_dt: float, step: float) -> float:
    """A frame this close before a grid point counts for it (half a source frame interval)."""
    return min(0.5 * frame_dt, 0.5 * step) * (1 - 1e-6)


def expected_sample_count(info: VideoInfo, target_fps: float | None) -> int:
    """How many frames :func:`sample_frames` should yield for a constant-rate video with these facts."""
    if not target_fps or target_fps >= info.fps:
        return info.frame_count
    step = 1.0 / target_fps
    last_t = (info.frame_count - 1) / info.fps
    return int(math.floor((last_t + _tolerance(1.0 / info.fps, step)) / step + 1e-9)) + 1


def effective_fps(info: VideoInfo, target_fps: float | None) -> float:
    """The sampling rate actually delivered: the target, never above the source rate."""
    return float(info.fps if not target_fps else min(float(target_fps), info.fps))


class FrameSelector:
    """Decides, from frame timestamps alone, which frames to keep when resampling to ``target_fps``.

    For each point of the grid ``k / target_fps`` the first frame whose timestamp is at or after it
    (within half a source frame interval, so on constant-rate video the nearest frame wins) is kept;
    grid points that fall in gaps of a variable-rate video are skipped, never filled with repeated
    frames, so the output rate never exceeds the source rate. Missing or non-increasing timestamps
    are replaced by extrapolation from the nominal frame interval.
    """

    def __init__(self, target_fps: float | None, source_fps: float | None = None):
        if target_fps is not None and not target_fps > 0:
            raise ValueError("target_fps must be positive or None")
        self.step = 1.0 / target_fps if target_fps else 0.0
        # a container "rate" above any capture rate is FFmpeg's 1 / time base, not a frame interval
        plausible = source_fps and math.isfinite(source_fps) and 0 < source_fps <= _MAX_PLAUSIBLE_FPS
        self.nominal_dt = 1.0 / source_fps if plausible else None
        self._k = 0  # next grid point is k * step (an index, so the grid does not drift)
        self._t0: float | None = None
        self._prev: float | None = None
        self._dt = self.nominal_dt or 0.0

    def timestamp(self, raw_s: float | None) -> float:
        """Clean a raw timestamp (seconds): relative to the first frame, strictly increasing."""
        t = raw_s if raw_s is not None and math.isfinite(raw_s) else float("nan")
        if self._t0 is None:
            self._t0 = t if math.isfinite(t) else 0.0
        t = t - self._t0
        if self._prev is None:
            t = t if math.isfinite(t) else 0.0
        elif not math.isfinite(t) or t <= self._prev:
            t = self._prev + (self.nominal_dt or self._dt or 1 / 30)
        else:
            self._dt = t - self._prev
        self._prev = t
        return t

    def keep(self, t: float) -> bool:
        """Whether the frame at (cleaned) time ``t`` is sampled. Call once per frame, in order."""
        if not self.step:
            return True
        # half the local frame interval (last observed; the nominal one until there is one)
        tol = _tolerance(self._dt or self.nominal_dt or self.step, self.step)
        if t + tol < self._k * self.step:
            return False
        self._k = int(math.floor((t + tol) / self.step + 1e-9)) + 1
        return True


def sample_frames(path: str | os.PathLike, target_fps: float | None = None, threads: int = 1,
                  size: tuple[int, int] | None = None,
                  needed: Callable[[np.ndarray], np.ndarray] | None = None) -> Iterator[tuple[int, float, np.ndarray]]:
    """Yield ``(sample_index, t_seconds, bgr_image)`` at about ``target_fps`` (see :class:`FrameSelector`).

    ``target_fps=None`` yields every frame. ``t_seconds`` is the frame's own presentation timestamp, relative to
    the first frame. Frames come out as displayed (rotation applied). Raises :class:`VideoError` if the file
    cannot be opened as a video.

    Decoding goes through PyAV (:func:`_sample_av`) for containers with real timestamps: frames are chosen
    from the packets' timestamps before decoding, and the decoder skips the unsampled frames that no other frame
    is predicted from (non-reference frames: B-frames, mostly; reference frames are always decoded). Other
    files are read with OpenCV (:func:`_sample_cv2`), which decodes every frame. ``threads``: FFmpeg's decoding
    threads with PyAV (1: decode on the calling thread only, as the pose stage does beside its network; 0: as
    many as FFmpeg chooses). ``size``: (width, height) to scale the displayed frames to (area averaging); with
    PyAV the scaling is done with the colour conversion, in one pass from the decoder's picture, which costs a
    third of converting the whole picture and then resizing it. ``needed``: a hint, given the timestamps of the
    frames ``target_fps`` chose (as they would be yielded, in order), a boolean mask of the ones the caller will
    use; with PyAV the others are left out (neither converted nor, when no frame is predicted from them,
    decoded); OpenCV's reader yields them all.
    """
    plan = _plan_av(path, target_fps, needed)
    if plan is None:
        if _uncompressed_stream(path):  # PyAV could not plan it (no timestamps): never hand it to OpenCV
            raise VideoError("This file is not a video we can read (its frames carry no timestamps).")
        frames = _sample_cv2(path, target_fps, threads)
        if size is None:
            yield from frames
        else:
            size = (int(size[0]), int(size[1]))
            for i, t, img in frames:
                if (img.shape[1], img.shape[0]) != size:
                    img = cv2.resize(img, size, interpolation=cv2.INTER_AREA)
                yield i, t, img
    else:
        yield from _sample_av(path, *plan, threads=threads, size=size)


# Containers whose packets carry real presentation timestamps (in AVI, FFmpeg only guesses them from the
# decoding order, wrongly when the stream has B-frames): PyAV reads these, OpenCV the rest.
_PTS_CONTAINERS = {"mov", "mp4", "m4a", "3gp", "3g2", "mj2", "matroska", "webm", "mpegts"}


def _plan_av(path: str | os.PathLike, target_fps: float | None,
             needed: Callable[[np.ndarray], np.ndarray] | None = None) -> tuple[int, dict[int, float]] | None:
    """(video stream index, {pts of each frame to keep: its cleaned time in seconds}) from a pass over the packets
    alone (no decoding), or None when PyAV should not read this file (PyAV missing, a container without
    trustworthy timestamps, missing or repeated timestamps, anything FFmpeg cannot demux)."""
    try:
        import av
    except ImportError:  # pragma: no cover - a runtime dependency
        return None
    p = Path(path)
    if not p.is_file() or p.stat().st_size == 0:
        return None  # OpenCV's reader raises the user-facing VideoError
    pts: list[int] = []
    try:
        with av.open(str(p)) as c:
            if not c.streams.video or not (_PTS_CONTAINERS & set(c.format.name.split(","))
                                           or c.streams.video[0].codec_context.name in _UNCOMPRESSED_CODECS):
                return None
            stream = c.streams.video[0]
            tb = float(stream.time_base or 0.0)
            rate = stream.average_rate or stream.guessed_rate
            source_fps = float(rate) if rate else 0.0
            for pkt in c.demux(stream):
                if pkt.size == 0 or pkt.is_discard:
                    continue
                if pkt.pts is None or not tb:
                    return None
                pts.append(int(pkt.pts))
            index = stream.index
    except av.error.FFmpegError:
        return None
    pts.sort()
    if not pts or len(set(pts)) != len(pts):
        return None
    selector = FrameSelector(target_fps, source_fps)
    keep: dict[int, float] = {}
    for v in pts:
        t = selector.timestamp(v * tb)
        if selector.keep(t):
            keep[v] = t
    if needed is not None and keep:
        mask = np.asarray(needed(np.fromiter(keep.values(), np.float64, len(keep))), bool)
        keep = {v: t for (v, t), use in zip(keep.items(), mask) if use}
    return index, keep


def _sample_av(path: str | os.PathLike, stream_index: int, keep: dict[int, float], threads: int = 1,
               size: tuple[int, int] | None = None) -> Iterator[tuple[int, float, np.ndarray]]:
    """:func:`sample_frames` through PyAV, for the frames :func:`_plan_av` chose: the decoder skips the
    non-reference frames (no other frame is predicted from them) that are not sampled."""
    import av

    with av.open(str(path)) as container:
        stream = container.streams[stream_index]
        if threads == 1:
            stream.thread_type = "NONE"
        else:
            stream.thread_type = "AUTO"
            stream.thread_count = max(0, int(threads))
        ctx = stream.codec_context
        out_index = 0
        for packet in container.demux(stream):
            if packet.pts is not None:
                ctx.skip_frame = "DEFAULT" if int(packet.pts) in keep else "NONREF"
            try:
                frames = _decode(packet)
            except av.error.FFmpegError:  # a damaged packet: its frame is lost, the rest of the video is not
                continue
            for frame in frames:
                t = keep.get(frame.pts) if frame.pts is not None else None
                if t is None:
                    continue
                yield out_index, float(t), _displayed(frame, size)
                out_index += 1


def _decode(packet) -> list:
    return packet.decode()


def _displayed(frame, size: tuple[int, int] | None = None) -> np.ndarray:
    """A decoded PyAV frame as a BGR image, turned as its display matrix says (phones record sideways), and
    scaled to ``size`` (width, height as displayed) when given."""
    clockwise = (-int(round(frame.rotation or 0))) % 360
    if size is not None:
        w, h = (int(size[1]), int(size[0])) if clockwise in (90, 270) else (int(size[0]), int(size[1]))
        if (w, h) != (frame.width, frame.height):
            frame = frame.reformat(width=w, height=h, format="bgr24", interpolation="AREA")
    img = frame.to_ndarray(format="bgr24")
    if clockwise == 90:
        return cv2.rotate(img, cv2.ROTATE_90_CLOCKWISE)
    if clockwise == 180:
        return cv2.rotate(img, cv2.ROTATE_180)
    if clockwise == 270:
        return cv2.rotate(img, cv2.ROTATE_90_COUNTERCLOCKWISE)
    return img


def _sample_cv2(path: str | os.PathLike, target_fps: float | None, threads: int = 1
                ) -> Iterator[tuple[int, float, np.ndarray]]:
    """:func:`sample_frames` through OpenCV: every frame is decoded (``grab``), the sampled ones converted."""
    cap = _open(path, threads)
    try:
        selector = FrameSelector(target_fps, cap.get(cv2.CAP_PROP_FPS))
        out_index = 0
        while cap.grab():
            t = selector.timestamp(cap.get(cv2.CAP_PROP_POS_MSEC) / 1000.0)
            if not selector.keep(t):
                continue
            ok, frame = cap.retrieve()
            if not ok or frame is None:
                break
            yield out_index, float(t), frame
            out_index += 1
    finally:
        cap.release()


_END = object()


def prefetch(items: Iterable[T], depth: int = 4, stats: dict | None = None) -> Iterator[T]:
    """Iterate ``items`` in a background thread, up to ``depth`` items ahead of the consumer.

    ``stats``: when given, ``stats["cpu_s"]`` is set to the CPU seconds the thread spent (producing the items: decoding)
    once it ends.

    Decoding (FFmpeg) and OpenCV work release the GIL, so the next frames are decoded while the pose network
    runs on this one. Exceptions raised by ``items`` are raised here, in order; stopping early (``break``,
    an exception in the consumer) stops the thread and closes ``items``.
    """
    q: queue.Queue = queue.Queue(maxsize=max(1, int(depth)))
    stop = threading.Event()

    def put(item) -> bool:
        while not stop.is_set():
            try:
                q.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def run() -> None:
        it = iter(items)
        try:
            for item in it:
                if not put((True, item)):
                    break
        except BaseException as exc:  # handed to the consumer
            put((False, exc))
            return
        finally:
            close = getattr(it, "close", None)
            if close is not None:
                close()
            if stats is not None:
                stats["cpu_s"] = time.thread_time()
        put((True, _END))

    thread = threading.Thread(target=run, name="prefetch", daemon=True)
    thread.start()
    try:
        while True:
            ok, item = q.get()
            if not ok:
                raise item
            if item is _END:
                return
            yield item
    finally:
        stop.set()
        thread.join()
