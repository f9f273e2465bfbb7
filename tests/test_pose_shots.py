"""Shot boundaries: a hard cut in a real clip is found, camera motion is not a cut, and no track crosses a cut."""
from __future__ import annotations

import cv2
import numpy as np
import pytest

from models.pose.shots import ShotDetector
from models.video import sample_frames
from tests.media import make_people_video


@pytest.fixture(scope="module")
def cut_video(tmp_path_factory):
    """1.5 s of the panned zidane photo, then 1.5 s of the panned bus photo: one hard cut at 1.5 s."""
    d = tmp_path_factory.mktemp("cut")
    a = make_people_video(d / "a.mp4", seconds=1.5, fps=30.0, size=(640, 360), image="zidane.jpg")
    b = make_people_video(d / "b.mp4", seconds=1.5, fps=30.0, size=(640, 360), image="bus.jpg")
    out = d / "cut.mp4"
    writer = cv2.VideoWriter(str(out), cv2.VideoWriter_fourcc(*"mp4v"), 30.0, (640, 360))
    for src in (a, b):
        cap = cv2.VideoCapture(str(src))
        ok, frame = cap.read()
        while ok:
            writer.write(frame)
            ok, frame = cap.read()
        cap.release()
    writer.release()
    return out


def test_the_cut_is_found_and_the_pan_is_not(cut_video, tmp_path):
    det = ShotDetector()
    cuts = [t for _, t, frame in sample_frames(cut_video, 22.0) if det.is_cut(frame)]
    assert len(cuts) == 1 and abs(cuts[0] - 1.5) < 0.1, cuts
    det = ShotDetector()
    pan = make_people_video(tmp_path / "pan.mp4", seconds=3.0, image="zidane.jpg")
    assert not any(det.is_cut(frame) for _, _, frame in sample_frames(pan, 22.0))


def test_no_track_crosses_the_cut(cut_video):
    from models.pose import load_pose_estimator
    from models.pose.extract import extract_tracks

    ex = extract_tracks(cut_video, load_pose_estimator("onnx", threads=2), target_fps=22.0)
    cuts = ex.meta["shot_cuts_s"]
    assert len(cuts) == 1
    assert ex.tracks and all(t.times[-1] < cuts[0] or t.times[0] >= cuts[0] for t in ex.tracks)
    # people on both sides of the cut
    assert any(t.times[-1] < cuts[0] for t in ex.tracks) and any(t.times[0] >= cuts[0] for t in ex.tracks)
    assert np.isfinite(np.concatenate([t.keypoints.ravel() for t in ex.tracks])).all()
