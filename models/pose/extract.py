"""Pose stage: video → sampled frames → pose per frame (batched) → tracked persons (:class:`PoseExtraction`)."""
from __future__ import annotations

import os
import time
from typing import Callable

import numpy as np

from ..tracks import PoseExtraction
from ..video import effective_fps, expected_sample_count, prefetch, probe_video, sample_frames
from .guided import CROP_IMGSZ, CROP_MARGIN, REDETECT_S, GuidedPose
from .relink import relink_tracks
from .shots import ShotDetector
from .tracker import PoseTracker

Progress = Callable[[int, int], None]
# what a PoseExtraction holds depends on this code as well as on the pose model and settings: caches of
# extractions key on it (2: tracks end at shot boundaries; 3, 4: person-guided pose, decoding in a thread; 5: the pieces
# of a person lost for up to a second are joined into one track, which may then have gaps; 6: the whole frame for a
# crowd whose crops would cost more, the tracker matches a person who turns back)
EXTRACTION_VERSION = 6
MODES = ("guided", "full")
PROGRESS_EVERY = 8  # frames between progress calls in guided mode


def extract_tracks(video_path: str | os.PathLike, estimator, target_fps: float | None = 22.0, batch_size: int = 8,
                   progress: Progress | None = None, tracker: PoseTracker | None = None,
                   shots: ShotDetector | None = None, mode: str = "guided", crop_imgsz: int = CROP_IMGSZ,
                   redetect_s: float = REDETECT_S, crop_margin: float = CROP_MARGIN) -> PoseExtraction:
    """Run ``estimator`` on ``video_path`` resampled to ``target_fps`` and track the persons.

    ``mode="guided"`` (default) runs the whole frame only now and then and crops around the tracked persons in
    between (:mod:`models.pose.guided`: ``crop_imgsz``, ``redetect_s``, ``crop_margin``); ``mode="full"`` runs every sampled
    frame whole, in batches of ``batch_size``. Frames are decoded in a thread beside the network.
    ``progress(done_frames, total_frames)`` is called as frames are done; ``total_frames`` is the expected
    number of sampled frames (from the container's frame count; raised to ``done_frames`` if the file holds
    more); the last call has ``done_frames == total_frames``. Tracks end at shot boundaries (hard cuts, see
    :mod:`models.pose.shots`; their times are in ``meta["shot_cuts_s"]``); within a shot, the pieces of a person lost
    for up to a second are joined into one track (:mod:`models.pose.relink`). Raises
    :class:`models.video.VideoError` for files that are not usable videos.
    """
    if mode not in MODES:
        raise ValueError(f"unknown pose mode {mode!r} (expected one of {', '.join(MODES)})")
    info = probe_video(video_path)
    total = expected_sample_count(info, target_fps)
    sampled_fps = effective_fps(info, target_fps)
    tracker = tracker or PoseTracker.for_rate(sampled_fps)
    shots = shots or ShotDetector()
    guide = GuidedPose(estimator, crop_imgsz=crop_imgsz, redetect_s=redetect_s, margin=crop_margin) if mode == "guided" else None
    times: list[float] = []
    cuts: list[float] = []
    batch_imgs: list[np.ndarray] = []
    batch_meta: list[tuple[int, float, bool]] = []
    batch_size = max(1, int(batch_size))

    def report() -> None:
        if progress is not None:
            progress(len(times), max(total, len(times)))

    def flush() -> None:
        if not batch_imgs:
            return
        for (idx, t, cut), dets in zip(batch_meta, estimator.predict(batch_imgs)):
            if cut:
                tracker.cut()
            tracker.update(idx, t, dets)
        batch_imgs.clear()
        batch_meta.clear()
        report()

    frames = ((idx, t, frame, shots.is_cut(frame)) for idx, t, frame in sample_frames(video_path, target_fps))
    decoding: dict = {}
    cpu0, main0 = time.process_time(), time.thread_time()
    for idx, t, frame, cut in prefetch(frames, stats=decoding):
        times.append(t)
        if cut:
            cuts.append(round(float(t), 3))
        if guide is not None:
            if cut:
                tracker.cut()
            dets, _ = guide.detect(frame, t, tracker.predictions(), cut)
            tracker.update(idx, t, dets)
            if len(times) % PROGRESS_EVERY == 0:
                report()
            continue
        batch_imgs.append(frame)
        batch_meta.append((idx, t, cut))
        if len(batch_imgs) >= batch_size:
            flush()
    flush()
    if guide is not None and len(times) % PROGRESS_EVERY:
        report()
    if progress is not None and total > len(times):
        # fewer frames than the container's count promised (variable frame rate, gaps): say it is done
        progress(len(times), len(times))

    tracklets = tracker.finish()  # pieces of one person are joined below (models.pose.relink)
    tracks = relink_tracks(tracklets, cuts_s=cuts)
    # where the CPU went: decoding and shot detection (the prefetch thread), the pose network and tracking (this
    # thread); "total" also counts onnxruntime's own threads when it has more than one
    cpu_s = {"total": round(time.process_time() - cpu0, 3), "decode": round(decoding.get("cpu_s", 0.0), 3),
             "pose": round(time.thread_time() - main0, 3)}
    model = getattr(estimator, "info", None) or {
        "name": getattr(estimator, "name", type(estimator).__name__),
        "version": getattr(estimator, "version", "unknown"),
        "sha256": getattr(estimator, "sha256", ""),
    }
    meta = {
        "pose_model": dict(model),
        "pose_backend": getattr(estimator, "backend", type(estimator).__name__),
        "imgsz": getattr(estimator, "imgsz", None),
        "rect": bool(getattr(estimator, "rect", False)),
        "source_fps": info.fps,
        "source_frame_count": info.frame_count,
        "duration_s": info.duration_s,
        "rotation_deg": info.rotation_deg,
        "codec": info.codec,
        "target_fps": target_fps,
        "tracker": {"max_age": tracker.max_age, "min_hits": tracker.min_hits, "tracklets": len(tracklets)},
        "shot_cuts_s": cuts,
        "pose_mode": mode,
        "guided": guide.stats if guide is not None else None,
        "extraction_version": EXTRACTION_VERSION,
        "cpu_s": cpu_s,
    }
    return PoseExtraction(
        width=info.width,
        height=info.height,
        sampled_fps=sampled_fps,
        frame_times=np.asarray(times, np.float64),
        tracks=tracks,
        layout="coco17",
        meta=meta,
    )
