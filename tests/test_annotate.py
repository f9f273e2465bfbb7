"""The annotated video (worker/annotate.py): H.264 .mp4 through ffmpeg when it is on PATH, OpenCV VP8
.webm without it or when ffmpeg fails; one output frame per sampled frame, decodable by OpenCV."""
from __future__ import annotations

import shutil
import stat

import cv2
import numpy as np
import pytest

from models.layouts import get_layout
from models.tracks import PoseExtraction, PoseTrack
from models.video import sample_frames
from tests.media import make_people_video
from worker import annotate
from worker.annotate import AnnotatedVideo, EncoderError, output_size, write_annotated_video

FPS = 22.0
HAS_FFMPEG = shutil.which("ffmpeg") is not None
needs_ffmpeg = pytest.mark.skipif(not HAS_FFMPEG, reason="no ffmpeg on PATH")


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    """(video path, extraction with one synthetic track on every sampled frame, result document)."""
    path = make_people_video(tmp_path_factory.mktemp("annotate") / "clip.mp4", seconds=1.5, fps=30.0,
                             size=(480, 270))
    times = np.array([t for _i, t, _f in sample_frames(path, FPS)], np.float64)
    n, k = len(times), len(get_layout("coco17"))
    rng = np.random.default_rng(0)
    kpts = np.zeros((n, k, 3), np.float32)
    kpts[..., 0] = 150 + 80 * rng.random((n, k))
    kpts[..., 1] = 60 + 150 * rng.random((n, k))
    kpts[..., 2] = 0.9
    track = PoseTrack(track_id=1, frame_indices=np.arange(n, dtype=np.int64), times=times, keypoints=kpts,
                      boxes=np.tile(np.array([140, 50, 240, 220], np.float32), (n, 1)),
                      scores=np.full(n, 0.9, np.float32))
    extraction = PoseExtraction(width=480, height=270, sampled_fps=FPS, frame_times=times, tracks=[track],
                                meta={"target_fps": FPS})
    half = float(times[-1]) / 2
    result = {"persons": [{
        "track_id": 1, "label": "BOXING", "confidence": 0.9,
        "windows": [{"start_s": 0.0, "end_s": half, "label": "BOXING", "confidence": 0.93},
                    {"start_s": half, "end_s": float(times[-1]), "label": "CLAPPING_HANDS", "confidence": 0.71}],
        "segments": [],
    }]}
    return path, extraction, result


def decoded(path) -> tuple[int, tuple[int, int] | None]:
    """(frames OpenCV decodes from ``path``, (w, h) of the first one)."""
    cap = cv2.VideoCapture(str(path))
    n, size = 0, None
    while True:
        ok, frame = cap.read()
        if not ok:
            break
        size = size or (frame.shape[1], frame.shape[0])
        n += 1
    cap.release()
    return n, size


def hide_ffmpeg(monkeypatch, tmp_path):
    """PATH without any ffmpeg on it."""
    empty = tmp_path / "empty-bin"
    empty.mkdir(exist_ok=True)
    monkeypatch.setenv("PATH", str(empty))
    assert shutil.which("ffmpeg") is None


def fake_ffmpeg(monkeypatch, tmp_path, script: str):
    """PATH whose only ffmpeg is a shell script (``script`` is its body)."""
    bindir = tmp_path / "fake-bin"
    bindir.mkdir(exist_ok=True)
    exe = bindir / "ffmpeg"
    exe.write_text(f"#!/bin/sh\n{script}\n")
    exe.chmod(exe.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    monkeypatch.setenv("PATH", f"{bindir}:/usr/bin:/bin")
    assert shutil.which("ffmpeg") == str(exe)


def only_output(tmp_path, video: AnnotatedVideo) -> None:
    """The video is the only file left in its directory (no temporary file, no other format)."""
    assert sorted(p.name for p in video.path.parent.iterdir()) == [video.path.name]


@needs_ffmpeg
def test_ffmpeg_writes_h264_mp4(clip, tmp_path):
    path, extraction, result = clip
    out = tmp_path / "job" / "annotated.mp4"
    video = write_annotated_video(path, extraction, result, out)
    assert video == AnnotatedVideo(out, "video/mp4", extraction.n_frames, "ffmpeg")
    assert decoded(out) == (extraction.n_frames, (480, 270))
    with out.open("rb") as f:
        head = f.read(64)
    assert head[4:8] == b"ftyp" and b"moov" in out.read_bytes()[:4096]  # +faststart: the index comes first
    only_output(tmp_path, video)


def test_without_ffmpeg_falls_back_to_vp8_webm(clip, tmp_path, monkeypatch):
    path, extraction, result = clip
    hide_ffmpeg(monkeypatch, tmp_path)
    out = tmp_path / "job" / "annotated.mp4"  # the suffix follows the format written
    video = write_annotated_video(path, extraction, result, out)
    assert video == AnnotatedVideo(out.with_suffix(".webm"), "video/webm", extraction.n_frames, "opencv")
    assert decoded(video.path) == (extraction.n_frames, (480, 270))
    only_output(tmp_path, video)


def test_which_returning_none_means_opencv(clip, tmp_path, monkeypatch):
    path, extraction, result = clip
    monkeypatch.setattr(annotate.shutil, "which", lambda name, *a, **kw: None)
    video = write_annotated_video(path, extraction, result, tmp_path / "annotated.webm")
    assert (video.encoder, video.media_type, video.path.suffix) == ("opencv", "video/webm", ".webm")
    assert decoded(video.path)[0] == extraction.n_frames


@pytest.mark.parametrize("script", [
    "exit 1",  # fails at once: the frames meet a closed pipe
    "cat > /dev/null; echo 'Unknown encoder libx264' >&2; exit 1",  # takes every frame, then fails
])
def test_failing_ffmpeg_falls_back_to_opencv(clip, tmp_path, monkeypatch, caplog, script):
    path, extraction, result = clip
    fake_ffmpeg(monkeypatch, tmp_path, script)
    out = tmp_path / "job" / "annotated.mp4"
    with caplog.at_level("WARNING", logger="worker"):
        video = write_annotated_video(path, extraction, result, out)
    assert "ffmpeg failed" in caplog.text
    assert (video.encoder, video.media_type, video.path) == ("opencv", "video/webm", out.with_suffix(".webm"))
    assert decoded(video.path)[0] == video.frames == extraction.n_frames
    only_output(tmp_path, video)


def test_forced_encoders(clip, tmp_path, monkeypatch):
    path, extraction, result = clip
    fake_ffmpeg(monkeypatch, tmp_path, "cat > /dev/null; echo 'boom' >&2; exit 1")
    with pytest.raises(EncoderError, match="boom"):
        write_annotated_video(path, extraction, result, tmp_path / "job" / "a.mp4", encoder="ffmpeg")
    assert list((tmp_path / "job").iterdir()) == []  # no half-written file left
    hide_ffmpeg(monkeypatch, tmp_path)
    with pytest.raises(EncoderError, match="not on PATH"):
        write_annotated_video(path, extraction, result, tmp_path / "job" / "a.mp4", encoder="ffmpeg")
    with pytest.raises(ValueError):
        write_annotated_video(path, extraction, result, tmp_path / "job" / "a.mp4", encoder="x264")


@pytest.mark.parametrize("use_ffmpeg", [pytest.param(True, marks=needs_ffmpeg), False])
def test_longest_side_is_capped(clip, tmp_path, monkeypatch, use_ffmpeg):
    path, extraction, result = clip
    if not use_ffmpeg:
        hide_ffmpeg(monkeypatch, tmp_path)
    video = write_annotated_video(path, extraction, result, tmp_path / "annotated.mp4", max_side=240)
    assert decoded(video.path) == (extraction.n_frames, (240, 134))  # 480x270 halved, even sizes


def test_output_size():
    assert output_size(640, 360) == (640, 360)
    assert output_size(1920, 1080) == (960, 540)
    assert output_size(1080, 1920) == (540, 960)  # portrait: the height is the longest side
    assert output_size(3840, 2160, max_side=1280) == (1280, 720)
    assert output_size(641, 361) == (640, 360)  # even sizes (yuv420p)
    assert all(v % 2 == 0 for v in output_size(1001, 777))
