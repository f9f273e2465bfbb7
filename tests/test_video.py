"""Video probing and resampling (models.video) and the pose stage end to end (models.pose.extract)."""
from __future__ import annotations

import shutil
import struct
import subprocess
from typing import ClassVar

import numpy as np
import pytest

from models.pose import load_pose_estimator
from models.pose.extract import extract_tracks
from models.pose.onnx_backend import PoseDetections
from models.tracks import PoseExtraction
from models.video import FrameSelector, VideoError, expected_sample_count, probe_video, sample_frames
from tests.media import ASSETS, make_empty_video, make_people_video, truncate_file

needs_ffmpeg = pytest.mark.skipif(shutil.which("ffmpeg") is None, reason="ffmpeg not on PATH")


def _ffmpeg(*args):
    subprocess.run(["ffmpeg", "-v", "error", "-nostdin", "-y", *map(str, args)], check=True, timeout=60)


@pytest.fixture(scope="module")
def people_30fps(tmp_path_factory):
    return make_people_video(tmp_path_factory.mktemp("v") / "people.mp4", seconds=3.0, fps=30.0)


@pytest.fixture(scope="module")
def estimator():
    return load_pose_estimator(imgsz=320, threads=2)


def test_probe(people_30fps):
    info = probe_video(people_30fps)
    assert (info.width, info.height) == (640, 360)
    assert info.fps == pytest.approx(30.0)
    assert info.frame_count == 90
    assert info.duration_s == pytest.approx(3.0)
    assert info.rotation_deg == 0
    assert info.codec.lower() in {"mp4v", "fmp4"}


def test_sample_30fps_to_22hz(people_30fps):
    samples = list(sample_frames(people_30fps, 22.0))
    assert len(samples) == 66 == expected_sample_count(probe_video(people_30fps), 22.0)
    idx = [s[0] for s in samples]
    times = np.array([s[1] for s in samples])
    assert idx == list(range(66))
    assert times[0] == 0.0
    assert (np.diff(times) > 0).all()
    # each sample is the source frame nearest to its grid point k/22 (within half a source frame)
    grid = np.arange(66) / 22.0
    assert np.abs(times - grid).max() <= 0.5 / 30 + 1e-6
    # sampled from real source frame times (multiples of 1/30)
    np.testing.assert_allclose(times * 30, np.round(times * 30), atol=1e-3)
    assert np.diff(times).mean() == pytest.approx(1 / 22, rel=0.03)
    assert samples[0][2].shape == (360, 640, 3) and samples[0][2].dtype == np.uint8


def test_opencv_reader_converts_only_sampled_frames(people_30fps, monkeypatch):
    """OpenCV's reader (files PyAV does not read): frames the sampling skips are only grabbed (demuxed and
    decoded), never converted into images."""
    import models.video as video

    calls = {"grab": 0, "retrieve": 0}

    class Counting:
        def __init__(self, cap):
            self.cap = cap

        def grab(self):
            calls["grab"] += 1
            return self.cap.grab()

        def retrieve(self):
            calls["retrieve"] += 1
            return self.cap.retrieve()

        def __getattr__(self, name):
            return getattr(self.cap, name)

    real_open = video._open
    monkeypatch.setattr(video, "_open", lambda path, *a: Counting(real_open(path, *a)))
    frames = list(video._sample_cv2(people_30fps, 11.0))
    assert len(frames) == calls["retrieve"] == 33  # 3 s at 11 Hz
    assert calls["grab"] == 91  # every one of the 90 frames, and the end of the file
    assert [round(t * 30) for _, t, _ in frames][:6] == [0, 3, 5, 8, 11, 14]  # the frame nearest each k / 11 s


def test_avi_is_read_with_opencv(tmp_path):
    """AVI packets carry no presentation timestamps (FFmpeg guesses them from the decoding order): OpenCV reads
    it; MP4 goes through PyAV's reader."""
    import models.video as video

    avi = make_people_video(tmp_path / "a.avi", seconds=0.5, size=(160, 90))
    mp4 = make_people_video(tmp_path / "a.mp4", seconds=0.5, size=(160, 90))
    assert video._plan_av(avi, 11.0) is None
    assert video._plan_av(mp4, 11.0) is not None


@needs_ffmpeg
def test_pyav_reader_decodes_only_what_the_samples_need(people_30fps, tmp_path, monkeypatch):
    """An H.264 clip with B-frames sampled at 11 Hz: the non-reference frames that are not sampled are never
    decoded, only sampled frames are converted to images, and the result is the same frames, at the same
    times, as OpenCV decoding every frame."""
    import models.video as video

    clip = tmp_path / "bframes.mp4"
    _ffmpeg("-i", people_30fps, "-c:v", "libx264", "-bf", "3", "-b_strategy", "0", "-g", "60", "-pix_fmt", "yuv420p", clip)
    decoded, converted = [], []
    real_decode, real_displayed = video._decode, video._displayed

    def counting_decode(packet):
        frames = real_decode(packet)
        decoded.extend(frames)
        return frames

    def counting_displayed(frame, *args):
        converted.append(frame.pts)
        return real_displayed(frame, *args)

    monkeypatch.setattr(video, "_decode", counting_decode)
    monkeypatch.setattr(video, "_displayed", counting_displayed)
    frames = list(video.sample_frames(clip, 11.0))
    assert len(frames) == len(converted) == 33
    assert 33 < len(decoded) < 90  # reference frames are decoded whether sampled or not; the others only if sampled
    reference = list(video._sample_cv2(clip, 11.0))
    assert [round(t, 6) for _, t, _ in frames] == [round(t, 6) for _, t, _ in reference]
    assert all(np.array_equal(a, b) for (_, _, a), (_, _, b) in zip(frames, reference))
    assert len(list(video.sample_frames(clip, None))) == 90


def test_every_frame_and_no_upsampling(people_30fps):
    assert len(list(sample_frames(people_30fps, None))) == 90
    assert len(list(sample_frames(people_30fps, 60.0))) == 90  # never above the source rate
    assert len(list(sample_frames(people_30fps, 15.0))) == 45


def test_frame_selector_variable_frame_rate():
    """Timestamps from a variable-rate phone video: 60 fps, then 20 fps, then a 0.5 s gap."""
    ts = list(np.arange(0, 1.0, 1 / 60)) + list(np.arange(1.0, 2.0, 1 / 20)) + list(np.arange(2.5, 3.0, 1 / 30))
    sel = FrameSelector(22.0, source_fps=len(ts) / 3.0)
    kept = [t for t in ts if sel.keep(sel.timestamp(t))]
    kept = np.array(kept)
    assert (np.diff(kept) > 0).all()
    # 60 fps part: ~22 Hz; 20 fps part: every frame (never more than the source); the gap is not filled
    assert abs(np.sum(kept < 1.0) - 22) <= 1
    assert np.sum((kept >= 1.0) & (kept < 2.0)) == 20
    assert np.sum((kept >= 2.0) & (kept < 2.5)) == 0
    assert abs(np.sum(kept >= 2.5) - 11) <= 1
    assert np.diff(kept[kept < 1.0]).mean() == pytest.approx(1 / 22, rel=0.05)


def test_frame_selector_bad_timestamps():
    sel = FrameSelector(None, source_fps=25.0)
    cleaned = [sel.timestamp(t) for t in [5.0, 5.04, float("nan"), 5.04, 5.16]]
    np.testing.assert_allclose(cleaned, [0.0, 0.04, 0.08, 0.12, 0.16], atol=1e-9)
    with pytest.raises(ValueError):
        FrameSelector(0.0)


def test_frame_selector_ignores_a_bogus_container_rate():
    """Missing timestamps are extrapolated from the observed interval, not from a 1000 fps time-base "rate"."""
    sel = FrameSelector(None, source_fps=1000.0)
    cleaned = [sel.timestamp(t) for t in [0.0, 0.04, 0.0, 0.0, 0.16]]
    np.testing.assert_allclose(cleaned, [0.0, 0.04, 0.08, 0.12, 0.16], atol=1e-9)


def test_odd_size_and_avi(tmp_path):
    p = make_empty_video(tmp_path / "odd.avi", seconds=1.0, fps=25.0, size=(161, 97))
    info = probe_video(p)
    frames = list(sample_frames(p, 22.0))
    assert frames and frames[0][2].shape[:2] == (info.height, info.width)
    assert len(frames) == expected_sample_count(info, 22.0)


def test_not_a_video(tmp_path):
    p = tmp_path / "notes.mp4"
    p.write_text("this is not a video\n" * 100)
    with pytest.raises(VideoError) as e:
        probe_video(p)
    assert "video" in str(e.value).lower()
    with pytest.raises(VideoError):
        list(sample_frames(p, 22.0))
    with pytest.raises(VideoError, match="still image"):  # FFmpeg opens a JPEG as one frame
        probe_video(ASSETS / "bus.jpg")


def test_empty_and_missing(tmp_path):
    p = tmp_path / "empty.mp4"
    p.write_bytes(b"")
    with pytest.raises(VideoError, match="empty"):
        probe_video(p)
    with pytest.raises(VideoError, match="not exist"):
        probe_video(tmp_path / "missing.mp4")


@pytest.mark.parametrize("suffix", [".mp4", ".avi"])
def test_truncated(tmp_path, suffix):
    src = make_people_video(tmp_path / f"full{suffix}", seconds=1.0, size=(160, 90))
    cut = truncate_file(src, tmp_path / f"cut{suffix}", keep_fraction=0.02)
    with pytest.raises(VideoError):
        probe_video(cut)


def _rotate_mp4(src, dst, clockwise_deg: int = 90):
    """Write the rotation into the track header's display matrix (what phones do)."""
    data = bytearray(open(src, "rb").read())
    i = data.find(b"tkhd")
    off = i + 4 + (40 if data[i + 4] == 0 else 52)
    one = 0x10000
    a, b, c, d = {90: (0, one, -one, 0), 180: (-one, 0, 0, -one), 270: (0, -one, one, 0)}[clockwise_deg]
    data[off:off + 36] = struct.pack(">9i", a, b, 0, c, d, 0, 0, 0, 0x40000000)
    open(dst, "wb").write(data)
    return dst


@pytest.mark.parametrize("deg", [90, 270])
def test_rotation_metadata_applied(tmp_path, deg):
    src = make_people_video(tmp_path / "land.mp4", seconds=0.5, size=(320, 180))
    rot = _rotate_mp4(src, tmp_path / f"rot{deg}.mp4", deg)
    info = probe_video(rot)
    assert info.rotation_deg in (90, 270)
    assert (info.width, info.height) == (180, 320)
    _, _, frame = next(iter(sample_frames(rot, None)))
    assert frame.shape == (320, 180, 3)
    _, _, upright = next(iter(sample_frames(src, None)))
    import cv2

    expect = cv2.rotate(upright, cv2.ROTATE_90_CLOCKWISE if info.rotation_deg == 90 else cv2.ROTATE_90_COUNTERCLOCKWISE)
    assert np.abs(expect.astype(int) - frame).mean() < 2


@pytest.mark.parametrize("suffix", [".mp4", ".avi"])  # PyAV scales with its colour conversion, OpenCV after it
def test_frames_scaled_to_a_size_match_area_resizing(tmp_path, suffix):
    import cv2

    src = make_people_video(tmp_path / f"people{suffix}", seconds=0.5, size=(640, 360))
    full = [(t, f) for _, t, f in sample_frames(src, 22.0)]
    small = [(t, f) for _, t, f in sample_frames(src, 22.0, size=(320, 180))]
    assert [t for t, _ in small] == [t for t, _ in full] and len(small) >= 10
    for (_, big), (_, little) in zip(full, small):
        assert little.shape == (180, 320, 3) and little.dtype == np.uint8
        expect = cv2.resize(big, (320, 180), interpolation=cv2.INTER_AREA)
        assert np.abs(expect.astype(int) - little).mean() < 1.5
    same = next(iter(sample_frames(src, None, size=(640, 360))))[2]  # already that size: not scaled
    assert np.array_equal(same, full[0][1])


@pytest.mark.parametrize("deg", [90, 270])
def test_scaled_frames_of_a_rotated_video_are_upright(tmp_path, deg):
    src = make_people_video(tmp_path / "land.mp4", seconds=0.3, size=(320, 180))
    rot = _rotate_mp4(src, tmp_path / f"rot{deg}.mp4", deg)
    full = next(iter(sample_frames(rot, None)))[2]
    small = next(iter(sample_frames(rot, None, size=(90, 160))))[2]
    assert full.shape == (320, 180, 3) and small.shape == (160, 90, 3)
    import cv2

    assert np.abs(cv2.resize(full, (90, 160), interpolation=cv2.INTER_AREA).astype(int) - small).mean() < 1.5


@needs_ffmpeg
def test_rotation_with_ffmpeg(tmp_path):
    src = make_empty_video(tmp_path / "land.avi", seconds=0.5, size=(160, 96))
    dst = tmp_path / "rot.mp4"
    _ffmpeg("-i", src, "-metadata:s:v:0", "rotate=90", "-c", "copy", dst)
    info = probe_video(dst)
    assert info.rotation_deg in (90, 270) and (info.width, info.height) == (96, 160)
    assert next(iter(sample_frames(dst, None)))[2].shape == (160, 96, 3)


def _make_vfr_video(tmp_path):
    """A real VFR file: 0.5 s at 60 fps, 0.75 s at 20 fps, a 0.8 s gap, 0.5 s at 30 fps."""
    src = make_empty_video(tmp_path / "src.avi", seconds=2.0, fps=30.0, size=(160, 96))
    dst = tmp_path / "vfr.mp4"
    pts = "if(lt(N,30),N/60,if(lt(N,45),0.5+(N-30)/20,2.0+(N-45)/30))/TB"
    _ffmpeg("-i", src, "-vf", f"settb=1/600,setpts='{pts}'", "-fps_mode", "passthrough",
            "-enc_time_base", "1:600", "-c:v", "mpeg4", "-q:v", "5", dst)
    return dst


@needs_ffmpeg
def test_variable_frame_rate_file(tmp_path):
    dst = _make_vfr_video(tmp_path)
    all_t = np.array([t for _, t, _ in sample_frames(dst, None)])
    assert len(all_t) == 60 and all_t[-1] == pytest.approx(2.467, abs=0.01)
    t = np.array([t for _, t, _ in sample_frames(dst, 22.0)])
    assert (np.diff(t) > 0).all()
    assert abs(np.sum(t < 0.5) - 11) <= 1  # 60 fps part resampled to ~22 Hz
    assert np.sum((t >= 0.5) & (t < 1.25)) == 15  # 20 fps part: every frame, never duplicated
    assert np.sum((t > 1.25) & (t < 2.0)) == 0  # the gap stays a gap
    assert abs(np.sum(t >= 2.0) - 11) <= 1


@needs_ffmpeg
def test_progress_ends_at_100_percent_when_a_vfr_file_has_fewer_frames_than_expected(tmp_path):
    dst = _make_vfr_video(tmp_path)

    class NoOne:
        def predict(self, images):
            return [PoseDetections.empty() for _ in images]

    calls = []
    ext = extract_tracks(dst, NoOne(), target_fps=22.0, progress=lambda d, t: calls.append((d, t)))
    assert expected_sample_count(probe_video(dst), 22.0) > ext.n_frames  # the container promised more
    assert calls[-1] == (ext.n_frames, ext.n_frames)


# --- pose stage end to end ---------------------------------------------------------------------------------

def test_extract_tracks_people(people_30fps, estimator):
    calls = []
    ext = extract_tracks(people_30fps, estimator, target_fps=22.0, batch_size=8,
                         progress=lambda done, total: calls.append((done, total)))
    assert ext.n_frames == 66 and ext.sampled_fps == 22.0
    assert (ext.width, ext.height) == (640, 360)
    assert calls[-1] == (66, 66) and len(calls) == 9
    assert [c[0] for c in calls] == sorted(c[0] for c in calls)
    # zidane.jpg: two persons, followed through the whole clip with stable ids
    long = [t for t in ext.tracks if len(t) >= 50]
    assert len(long) == 2
    assert sorted(t.track_id for t in ext.tracks) == list(range(1, len(ext.tracks) + 1))
    for t in long:
        assert t.keypoints.shape == (len(t), 17, 3)
        assert (np.diff(t.times) > 0).all()
        np.testing.assert_allclose(t.times, ext.frame_times[t.frame_indices])
        assert (t.keypoints[..., 0] <= 640).all() and (t.keypoints[..., 1] <= 360).all()
    meta = ext.meta
    assert meta["pose_model"]["name"] == "yolo11n-pose" and len(meta["pose_model"]["sha256"]) == 64
    assert meta["pose_model"]["version"] and meta["imgsz"] == 320 and meta["source_fps"] == pytest.approx(30)
    # where the CPU went: decoding (its own thread) and the pose network with tracking (this one), within the total
    cpu = meta["cpu_s"]
    assert cpu["decode"] > 0 and cpu["pose"] > 0 and cpu["total"] >= 0.9 * (cpu["decode"] + cpu["pose"])
    back = PoseExtraction.from_bytes(ext.to_bytes())
    assert [t.track_id for t in back.tracks] == [t.track_id for t in ext.tracks]
    assert back.meta == meta


def test_extract_tracks_empty(tmp_path, estimator):
    p = make_empty_video(tmp_path / "empty.mp4", seconds=1.0)
    ext = extract_tracks(p, estimator, target_fps=22.0)
    assert ext.tracks == [] and ext.n_frames == 22


def test_extract_tracks_bad_file(tmp_path, estimator):
    p = tmp_path / "x.mp4"
    p.write_bytes(b"\x00" * 1000)
    with pytest.raises(VideoError):
        extract_tracks(p, estimator)


class _CaptureWithBogusMetadata:
    """A real capture whose container metadata (frame rate, frame count) is replaced."""

    fake: ClassVar[dict] = {}
    real = __import__("cv2").VideoCapture

    def __init__(self, *args):
        self._cap = self.real(*args)

    def get(self, prop):
        return self.fake.get(prop, self._cap.get(prop))

    def __getattr__(self, name):
        return getattr(self._cap, name)


@pytest.mark.parametrize("fps, count", [(1000.0, 0), (1000.0, 3000), (0.0, 90), (0.0, 0), (90000.0, 270000)])
def test_probe_distrusts_missing_or_bogus_frame_rate(people_30fps, monkeypatch, fps, count):
    """WebM/MKV without a frame rate make FFmpeg report 1 / time base (1000 fps) and a count to match."""
    import cv2

    from models import video
    monkeypatch.setattr(_CaptureWithBogusMetadata, "fake",
                        {cv2.CAP_PROP_FPS: fps, cv2.CAP_PROP_FRAME_COUNT: count})
    monkeypatch.setattr(video.cv2, "VideoCapture", _CaptureWithBogusMetadata)
    info = probe_video(people_30fps)
    assert info.fps == pytest.approx(30.0, rel=1e-3)
    assert info.frame_count == 90
    assert info.duration_s == pytest.approx(3.0, rel=1e-3)
    assert expected_sample_count(info, 22.0) == 66 == len(list(sample_frames(people_30fps, 22.0)))


@needs_ffmpeg
def test_uncompressed_avi_is_read_with_pyav_never_opencv(tmp_path, monkeypatch):
    """Uncompressed (rawvideo) AVI: OpenCV's reader aborts the process on some of these files, so probing and
    sampling go through PyAV, whose timestamps are right for codecs without inter-frame prediction."""
    import models.video as video

    src = make_people_video(tmp_path / "a.mp4", seconds=1.0, fps=25.0, size=(180, 144))
    raw = tmp_path / "raw.avi"
    _ffmpeg("-i", src, "-c:v", "rawvideo", "-pix_fmt", "bgr24", raw)

    def no_opencv(*a, **k):
        raise AssertionError("OpenCV's reader must not open an uncompressed video")

    monkeypatch.setattr(video, "_open", no_opencv)
    monkeypatch.setattr(video, "_sample_cv2", no_opencv)
    info = video.probe_video(raw)
    assert (info.width, info.height, info.frame_count, info.codec) == (180, 144, 25, "rawvideo")
    assert info.fps == pytest.approx(25.0)
    frames = list(video.sample_frames(raw, 12.5))
    assert len(frames) == 13 and frames[0][2].shape == (144, 180, 3)
    assert [round(t * 25) for _, t, _ in frames][:4] == [0, 2, 4, 6]
