"""The annotated video keeps the source's timing (worker/annotate.py): it lasts as long as the source, for constant
and variable frame rates, the picture at output time t is the source frame current at t, the overlay at t comes
from the latest pose sample at or before t, and a time in the result document (a timeline segment's start, where
the job page seeks the player) is that same moment in the annotated video.

The clips are real files made with ffmpeg whose frames carry their index (tests/media.py: make_numbered_video), so
the test reads which source frame the annotated video shows at any time.
"""
from __future__ import annotations

import shutil
import subprocess

import cv2
import numpy as np
import pytest

from models.tracks import PoseExtraction, PoseTrack
from models.video import probe_video, sample_frames
from tests.media import frame_number, make_numbered_video
from worker import annotate
from worker.annotate import on_grid, write_annotated_video

pytestmark = pytest.mark.skipif(shutil.which("ffmpeg") is None or shutil.which("ffprobe") is None,
                                reason="ffmpeg and ffprobe are needed to make the test clips")

EPS = annotate.SAME_TIME_S
POSE_FPS = 11.0  # the service's default pose sampling rate


def vfr_times(seed: int = 0, grid_fps: float = annotate.DISPLAY_FPS) -> list[float]:
    """Irregular frame timestamps (ms) like a phone's: ~60 fps, then ~12 fps, a 0.7 s stall, ~30 fps, ~45 fps.
    None lies within 2 ms of the output grid k / grid_fps, so "at or before t" is never a rounding question."""
    rng = np.random.default_rng(seed)
    parts = [(0.6, 0.014, 0.020), (1.0, 0.070, 0.095), (0.7, 0.700, 0.700), (1.0, 0.028, 0.038),
             (0.5, 0.020, 0.025)]
    times, t = [0.0], 0.0
    for length, lo, hi in parts:
        end = t + length
        while True:
            t = round(t + rng.uniform(lo, hi), 3)
            k = round(t * grid_fps)
            if abs(t - k / grid_fps) < 0.002:
                t = round(t + 0.004, 3)
            times.append(t)
            if t >= end - 1e-9:
                break
    return times


def stream_duration(path) -> float:
    """The video stream's duration as ffprobe reads it from the file (the format's when the stream has none)."""
    def probe(entry: str, *select: str) -> str:
        return subprocess.run(["ffprobe", "-v", "error", *select, "-show_entries", entry, "-of", "csv=p=0",
                               str(path)], capture_output=True, text=True, check=True).stdout.strip()

    value = probe("stream=duration", "-select_streams", "v:0")
    return float(value if value not in ("", "N/A") else probe("format=duration"))  # WebM: no stream duration


def decode(path) -> list[tuple[float, np.ndarray]]:
    """Every frame of ``path`` with its presentation time (s), as a player shows them."""
    cap = cv2.VideoCapture(str(path))
    frames = []
    while True:
        ok, img = cap.read()
        if not ok:
            break
        frames.append((cap.get(cv2.CAP_PROP_POS_MSEC) / 1000.0, img))
    cap.release()
    return frames


def latest_at_or_before(times, t: float) -> int:
    """Index of the latest of ``times`` at or before ``t`` (-1: none)."""
    return int(np.searchsorted(np.asarray(times, np.float64), t + EPS, side="right")) - 1


def extraction_for(path, track_samples: int | None = 0, size=(480, 288)) -> PoseExtraction:
    """The pose stage's view of ``path`` (real probe, real sampling at 11 Hz), with one synthetic person on the
    first ``track_samples`` pose samples (None: all) whose box moves 8 px right per sample (see box_sample)."""
    w, h = size
    info = probe_video(path)
    times = np.array([t for _i, t, _f in sample_frames(path, POSE_FPS)], np.float64)
    n = len(times) if track_samples is None else min(track_samples, len(times))
    tracks = []
    if n:
        idx = np.arange(n)
        boxes = np.stack([16 + 8 * idx, np.full(n, 0.35 * h), 56 + 8 * idx, np.full(n, 0.75 * h)], 1)
        kpts = np.zeros((n, 17, 3), np.float32)  # confidence 0: no skeleton, only the box
        tracks.append(PoseTrack(track_id=1, frame_indices=idx.astype(np.int64), times=times[:n], keypoints=kpts,
                                boxes=boxes.astype(np.float32), scores=np.full(n, 0.9, np.float32)))
    return PoseExtraction(width=w, height=h, sampled_fps=POSE_FPS, frame_times=times, tracks=tracks,
                          meta={"source_fps": info.fps, "duration_s": info.duration_s, "target_fps": POSE_FPS})


def box_sample(img: np.ndarray) -> int | None:
    """Which pose sample's box is drawn on ``img`` (see extraction_for), None when there is none."""
    h = img.shape[0]
    row = img[int(0.55 * h), :].max(axis=1)
    xs = np.flatnonzero(row > 100)
    if not len(xs):
        return None
    return int(round((xs[0] + 1 - 16) / 8))


def check_pictures(out_frames, fps: float, src_times) -> None:
    """Output frame k is at k / fps and shows the latest source frame at or before that time."""
    for k, (t, img) in enumerate(out_frames):
        assert t == pytest.approx(k / fps, abs=0.002)
        expected = latest_at_or_before(src_times, k / fps)
        assert frame_number(img) == expected, f"output frame {k} at {k / fps:.3f} s"


# ------------------------------------------------------------------------------------------------ the grid
def test_on_grid_places_frames_on_the_output_clock():
    """Against a brute-force reference: every grid point from 0 to the end, the latest frame at or before it."""
    rng = np.random.default_rng(3)
    for fps in (22.0, 10.0, 30.0):
        for _ in range(20):
            steps = rng.choice([0.008, 0.016, 0.033, 0.09, 0.4], 40) * rng.uniform(0.9, 1.1, 40)
            times = np.cumsum(np.r_[0.0, steps])
            got = list(on_grid(((float(t), i) for i, t in enumerate(times)), fps))
            assert [round(t * fps, 6) for t, *_ in got] == list(range(len(got)))
            for t, t_frame, i, left in got:
                assert i == latest_at_or_before(times, t) and t_frame == times[i]
                assert left == sum(1 for _t, _tf, j, _l in got if j == i and _t > t)
            end = times[-1] + (times[-1] - times[-2])
            assert abs(len(got) / fps - end) < 1 / fps
    assert list(on_grid(iter([]), 22.0)) == []
    assert [(t, i) for t, _tf, i, _l in on_grid([(0.0, "only")], 10.0)] == [(0.0, "only")]


def test_leaving_out_the_frames_not_shown_changes_nothing():
    """shown_frames: on_grid over the frames it keeps gives exactly what on_grid over all of them gives (every grid
    point, its frame, how long it is held, where the video ends), and it keeps few more frames than are shown."""
    rng = np.random.default_rng(5)
    cases = [np.arange(n) / rate for rate, n in ((30.0, 45), (60.0, 90), (120.0, 181), (22.0, 33), (24.0, 2))]
    cases += [np.cumsum(np.r_[0.0, rng.choice([0.008, 0.016, 0.033, 0.09, 0.4], 40) * rng.uniform(0.9, 1.1, 40)])
              for _ in range(30)]
    cases.append(np.array(vfr_times(1)))
    for times in cases:
        for fps, source_fps in ((22.0, None), (22.0, 30.0), (10.0, 60.0)):
            full = list(on_grid(((float(t), i) for i, t in enumerate(times)), fps, source_fps))
            mask = annotate.shown_frames(times, fps, source_fps)
            kept = np.nonzero(mask)[0]
            part = list(on_grid(((float(times[i]), int(i)) for i in kept), fps, source_fps))
            assert part == full, (fps, source_fps, times)
            assert len(kept) <= len({i for _t, _tf, i, _l in full}) + 2


# ------------------------------------------------------------------------------------------- real clips
@pytest.mark.parametrize("encoder", ["ffmpeg", "opencv"])
def test_constant_rate_clip_keeps_its_duration_and_pictures(tmp_path, encoder):
    times = [i / 30 for i in range(60)]
    src = make_numbered_video(tmp_path / "cfr.mp4", times)
    extraction = extraction_for(src)
    fps = annotate.display_fps(extraction)
    assert fps == annotate.DISPLAY_FPS
    video = write_annotated_video(src, extraction, None, tmp_path / "job" / "annotated.mp4", encoder=encoder)
    assert video.encoder == encoder
    assert stream_duration(video.path) == pytest.approx(stream_duration(src), abs=0.1)
    out = decode(video.path)
    assert len(out) == video.frames
    check_pictures(out, fps, [t for _i, t, _f in sample_frames(src, None)])


def test_only_the_frames_the_video_shows_are_converted(tmp_path, monkeypatch):
    """A 60 fps clip rendered at 22 fps: the decoder converts (and scales) only the source frames the output shows
    (and the last two), not all 60 a second; the pictures are still the right ones."""
    from models import video as video_module

    times = [i / 60 for i in range(90)]
    src = make_numbered_video(tmp_path / "sixty.mp4", times)
    extraction = extraction_for(src)
    converted = []
    real = video_module._displayed

    def counting(frame, *args):
        converted.append(frame.pts)
        return real(frame, *args)

    monkeypatch.setattr(video_module, "_displayed", counting)
    video = write_annotated_video(src, extraction, None, tmp_path / "annotated.mp4")
    out = decode(video.path)
    shown = {frame_number(img) for _t, img in out}
    assert len(converted) <= len(shown) + 2 < len(times) / 2
    check_pictures(out, annotate.display_fps(extraction), times)


def test_a_high_rate_clip_is_decoded_at_a_multiple_of_the_output_rate(tmp_path):
    """120 fps (slow-motion footage): not every frame is decoded, yet the duration is kept and each picture is the
    source's at most one decoding step (1 / (DECODE_RATE_FACTOR * fps)) plus one source frame before its time."""
    times = [i / 120 for i in range(180)]
    src = make_numbered_video(tmp_path / "fast.mp4", times)
    extraction = extraction_for(src)
    fps = annotate.display_fps(extraction)
    assert fps == annotate.DISPLAY_FPS and annotate._decode_fps(extraction, fps) < 120
    video = write_annotated_video(src, extraction, None, tmp_path / "annotated.mp4")
    assert stream_duration(video.path) == pytest.approx(stream_duration(src), abs=0.1)
    out = decode(video.path)
    assert len(out) == video.frames
    for k, (_t, img) in enumerate(out):
        shown = times[frame_number(img)]
        assert -EPS <= k / fps - shown < 1 / (annotate.DECODE_RATE_FACTOR * fps) + 1 / 120 + EPS


@pytest.mark.parametrize("start_s", [0.0, 0.6])
def test_variable_rate_clip_keeps_its_duration_and_pictures(tmp_path, start_s):
    """A phone-like VFR clip (bursts, slow parts, a stall), also one whose first frame is not at 0: the annotated
    video is as long as the source and shows at every moment the source frame current then."""
    times = vfr_times()
    src = make_numbered_video(tmp_path / "vfr.mp4", times, start_s=start_s)
    read = [(t, frame_number(f)) for _i, t, f in sample_frames(src, None)]
    assert [i for _t, i in read] == list(range(len(times)))  # the service's clock: relative to the first frame
    assert np.allclose([t for t, _i in read], times, atol=EPS)
    extraction = extraction_for(src)
    fps = annotate.display_fps(extraction)
    assert fps == annotate.DISPLAY_FPS
    video = write_annotated_video(src, extraction, None, tmp_path / "job" / "annotated.mp4")
    assert stream_duration(src) == pytest.approx(times[-1] + (times[-1] - times[-2]), abs=0.002)
    assert stream_duration(video.path) == pytest.approx(stream_duration(src), abs=0.1)
    out = decode(video.path)
    assert len(out) == video.frames
    check_pictures(out, fps, times)
    # the stall: its first frame is held on the output grid until the next one arrives
    stall = int(np.argmax(np.diff(times)))
    held = [k for k, (_t, img) in enumerate(out) if frame_number(img) == stall]
    assert len(held) >= int((times[stall + 1] - times[stall]) * fps) - 1


def test_overlay_comes_from_the_pose_sample_at_or_before_each_moment(tmp_path):
    """The box of pose sample j is drawn from that sample's picture on, held while the picture is less than one
    sampling interval after it (so through a stall, with its picture), never before it; none once the person
    is gone."""
    times = vfr_times(seed=1)
    src = make_numbered_video(tmp_path / "vfr.mp4", times)
    n_pose = len([t for _i, t, _f in sample_frames(src, POSE_FPS)])
    extraction = extraction_for(src, track_samples=int(0.7 * n_pose))
    pose_t = extraction.frame_times
    m = len(extraction.tracks[0])
    hold = 1.0 / POSE_FPS
    fps = annotate.display_fps(extraction)
    video = write_annotated_video(src, extraction, None, tmp_path / "annotated.mp4")
    out = decode(video.path)
    shown = 0
    for k, (_t, img) in enumerate(out):
        t = k / fps
        j = latest_at_or_before(pose_t, t)
        picture_t = times[latest_at_or_before(times, t)]
        drawn = box_sample(img)
        if drawn is not None:
            assert pose_t[drawn] <= t + EPS, f"frame {k}: the overlay runs ahead of the video"
        if j < m and t - pose_t[j] < hold:
            assert drawn == j, f"output frame {k} at {t:.3f} s"
        expected = j if j < m and picture_t - pose_t[j] < hold + EPS else None
        assert drawn == expected, f"output frame {k} at {t:.3f} s"
        shown += drawn is not None
    stall = int(np.argmax(np.diff(times)))
    in_stall = [box_sample(img) for t, img in out if times[stall] + 0.2 < t < times[stall + 1] - 0.05]
    assert in_stall and all(d is not None for d in in_stall)  # held with the stalled picture
    assert 0 < shown < len(out)


# ------------------------------------------------------------------------- with the real models, end to end
@pytest.fixture(scope="module")
def real_run(tmp_path_factory):
    """A numbered VFR clip of two people, through the real pose model, tracker and action model."""
    from models.action.classifier import DEFAULT_MODEL, ActionClassifier
    from models.action.timeline import classify_extraction
    from models.pose import load_pose_estimator
    from models.pose.extract import extract_tracks

    if not DEFAULT_MODEL.exists():
        pytest.skip("shipped action model missing")
    d = tmp_path_factory.mktemp("real")
    times = vfr_times(seed=2)
    src = make_numbered_video(d / "people.mp4", times, image="zidane.jpg")
    extraction = extract_tracks(src, load_pose_estimator(imgsz=320, threads=2), target_fps=POSE_FPS)
    result = classify_extraction(extraction, ActionClassifier(), stride=8)
    video = write_annotated_video(src, extraction, result, d / "job" / "annotated.mp4")
    return times, src, extraction, result, video


def test_a_segment_start_is_that_moment_in_the_annotated_video(real_run):
    """Seeking the player to a segment's (or window's) start shows the source frame of that moment."""
    times, src, extraction, result, video = real_run
    assert stream_duration(video.path) == pytest.approx(stream_duration(src), abs=0.1)
    fps = annotate.display_fps(extraction)
    out = decode(video.path)
    out_t = [t for t, _img in out]
    starts = [float(s["start_s"]) for p in result["persons"] for s in p["segments"] + p["windows"]]
    assert result["persons"] and starts
    assert max(starts) > 0.6 * times[-1]  # late in the clip too, where a fast-running video drifted most
    for s in starts:
        k = latest_at_or_before(out_t, s)  # the frame a player shows at currentTime = s
        assert s - 1.0 / fps - EPS < out_t[k] <= s + EPS
        shown = frame_number(out[k][1])
        assert shown == latest_at_or_before(times, k / fps), f"at {s:.3f} s"
        assert times[shown] <= s + EPS
        later = [t for t in times if t > times[shown]]
        assert not later or later[0] > s - 1.0 / fps - EPS, f"at {s:.3f} s the picture is more than a frame old"
