"""The annotated video (worker/annotate.py): H.264 .mp4 through ffmpeg when it is on PATH, OpenCV VP8
.webm without it or when ffmpeg fails; frames at the display rate on the source's clock (for a constant-rate
source as many as the pose sampling at that rate has), decodable by OpenCV. Timing in detail:
tests/test_annotate_timing.py."""
from __future__ import annotations

import shutil
import stat
import subprocess

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


def synthetic_clip(path, size: tuple[int, int], seconds: float = 1.5, fps: float = FPS):
    """(video path, extraction with one synthetic track on every frame sampled at ``fps``, result document) for a
    people video of ``size`` (w, h)."""
    w, h = size
    path = make_people_video(path, seconds=seconds, fps=30.0, size=size)
    times = np.array([t for _i, t, _f in sample_frames(path, fps)], np.float64)
    n, k = len(times), len(get_layout("coco17"))
    rng = np.random.default_rng(0)
    kpts = np.zeros((n, k, 3), np.float32)
    kpts[..., 0] = w * (0.3 + 0.15 * rng.random((n, k)))
    kpts[..., 1] = h * (0.2 + 0.55 * rng.random((n, k)))
    kpts[..., 2] = 0.9
    box = np.array([0.29 * w, 0.18 * h, 0.5 * w, 0.82 * h], np.float32)
    track = PoseTrack(track_id=1, frame_indices=np.arange(n, dtype=np.int64), times=times, keypoints=kpts,
                      boxes=np.tile(box, (n, 1)), scores=np.full(n, 0.9, np.float32))
    extraction = PoseExtraction(width=w, height=h, sampled_fps=fps, frame_times=times, tracks=[track],
                                meta={"target_fps": fps, "source_fps": 30.0})
    half = float(times[-1]) / 2
    result = {"persons": [{
        "track_id": 1, "label": "BOXING", "confidence": 0.9,
        "windows": [{"start_s": 0.0, "end_s": half, "label": "BOXING", "confidence": 0.93},
                    {"start_s": half, "end_s": float(times[-1]), "label": "CLAPPING_HANDS", "confidence": 0.71}],
        "segments": [],
    }]}
    return path, extraction, result


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    """A 480x270 clip (see :func:`synthetic_clip`)."""
    return synthetic_clip(tmp_path_factory.mktemp("annotate") / "clip.mp4", (480, 270))


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
def test_poses_sampled_below_the_display_rate_are_held_between_samples(tmp_path):
    """Poses at 11 Hz: the video still has a frame every 1/22 s (the source's frame current then), and every frame
    shows the overlay (the last sample's, never a later one)."""
    path, extraction, result = synthetic_clip(tmp_path / "sparse.mp4", (480, 270), fps=11.0)
    assert annotate.display_fps(extraction) == annotate.DISPLAY_FPS == 22.0
    video = write_annotated_video(path, extraction, result, tmp_path / "out" / "annotated.mp4")
    source = list(sample_frames(path, None))
    times = np.array([t for _i, t, _f in source])
    n = len(list(sample_frames(path, 22.0)))
    raw = [source[int(np.searchsorted(times, k / 22.0 + 1e-3, side="right")) - 1][2] for k in range(n)]
    assert video.frames == len(raw) == 2 * extraction.n_frames - 1
    cap = cv2.VideoCapture(str(video.path))
    assert cap.get(cv2.CAP_PROP_FPS) == pytest.approx(22.0, abs=0.01)
    x0, x1, y = int(0.3 * 480), int(0.49 * 480), int(0.18 * 270)  # the box's top edge
    for frame in raw:
        ok, out = cap.read()
        assert ok
        edge = np.abs(out[y - 1:y + 2, x0:x1].astype(int) - frame[y - 1:y + 2, x0:x1].astype(int)).mean()
        assert edge > 30, "the box is drawn on every frame"
    cap.release()


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
def test_size_is_capped(clip, tmp_path, monkeypatch, use_ffmpeg):
    path, extraction, result = clip
    if not use_ffmpeg:
        hide_ffmpeg(monkeypatch, tmp_path)
    video = write_annotated_video(path, extraction, result, tmp_path / "annotated.mp4", max_size=(240, 240))
    assert decoded(video.path) == (extraction.n_frames, (240, 134))  # 480x270 halved, even sizes


def probed_size(path) -> tuple[int, int]:
    """(w, h) of the video stream as ffprobe reads it from the file's header."""
    out = subprocess.run(["ffprobe", "-v", "error", "-select_streams", "v:0", "-show_entries",
                          "stream=width,height", "-of", "csv=p=0:s=x", str(path)],
                         capture_output=True, text=True, check=True).stdout.strip()
    w, h = out.split("x")
    return int(w), int(h)


@needs_ffmpeg
@pytest.mark.parametrize("size,expected", [((1920, 1080), (1280, 720)), ((1080, 1920), (720, 1280))])
def test_a_1080p_video_is_rendered_at_720p(tmp_path, size, expected):
    """Full HD in, 720p out (landscape within 1280x720, portrait within 720x1280), every frame there."""
    path, extraction, result = synthetic_clip(tmp_path / "hd.mp4", size, seconds=0.5)
    video = write_annotated_video(path, extraction, result, tmp_path / "job" / "annotated.mp4")
    assert video.encoder == "ffmpeg" and probed_size(video.path) == expected
    assert decoded(video.path) == (extraction.n_frames, expected)


def test_output_size_never_exceeds_720p():
    assert annotate.MAX_SIZE == (1280, 720) and annotate.X264_PRESET in ("veryfast", "superfast")
    assert output_size(640, 360) == (640, 360)  # never scaled up
    assert output_size(1280, 720) == (1280, 720)
    assert output_size(1920, 1080) == (1280, 720)
    assert output_size(3840, 2160) == (1280, 720)
    assert output_size(1080, 1920) == (720, 1280)  # portrait: within 720x1280
    assert output_size(1440, 1080) == (960, 720)  # 4:3: the height is the limit
    assert output_size(1080, 1080) == (720, 720)
    assert output_size(2560, 1080) == (1280, 540)  # ultra-wide: the width is the limit
    assert output_size(641, 361) == (640, 360)  # even sizes (yuv420p)
    assert all(v % 2 == 0 for v in output_size(1001, 777))
    assert output_size(3840, 2160, max_size=(640, 360)) == (640, 360)
    for w, h in [(1920, 1080), (1080, 1920), (4000, 3000), (3000, 4000), (1234, 1235)]:
        ow, oh = output_size(w, h)
        assert min(ow, oh) <= 720 and max(ow, oh) <= 1280
