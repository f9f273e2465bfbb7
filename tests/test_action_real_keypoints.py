"""Real keypoints from the shipped pose model: motionless people are no action.

The clips pan and zoom slowly over a still photo (tests/media.make_people_video), so every person
holds still relative to their body while the camera moves. The shipped pose model + action model,
through the same path as ``python -m models run``, must label every tracked person and every window
"uncertain" (a still pose with the hands in front of the body once came out as CLAPPING_HANDS at
100 %). The same timeline path still recognises real (generated) actions.
"""
import numpy as np
import pytest

from models.action import synth
from models.action.classifier import DEFAULT_MODEL, ActionClassifier
from models.action.timeline import UNCERTAIN, classify_extraction
from models.layouts import remap
from models.tracks import PoseExtraction, PoseTrack

pytestmark = pytest.mark.skipif(not DEFAULT_MODEL.exists(), reason="shipped action model missing")

IMGSZ = 480


@pytest.fixture(scope="module")
def clf():
    return ActionClassifier()


@pytest.fixture(scope="module")
def estimator():
    from models.pose import load_pose_estimator
    try:
        return load_pose_estimator("onnx", imgsz=IMGSZ, threads=2)
    except (OSError, ValueError) as exc:  # pragma: no cover - pose model not shipped
        pytest.skip(f"pose model unavailable: {exc}")


@pytest.mark.parametrize("image,size", [("bus.jpg", (540, 720)), ("zidane.jpg", (960, 540))])
def test_still_people_in_a_panned_photo_are_uncertain(clf, estimator, tmp_path, image, size):
    from media import make_people_video

    from models.pose import default_sample_fps
    from models.pose.extract import extract_tracks

    video = make_people_video(tmp_path / f"{image}.mp4", seconds=4.0, fps=30.0, size=size, image=image)
    extraction = extract_tracks(video, estimator, target_fps=default_sample_fps(clf.fps))  # as the service runs
    r = classify_extraction(extraction, clf)
    assert r["status"] == "ok" and r["persons"], r["short_tracks"]
    labelled = [(p["track_id"], p["label"], p["confidence"]) for p in r["persons"] if p["label"] != UNCERTAIN]
    assert not labelled, labelled
    windows = [(p["track_id"], w["start_s"], w["label"], w["confidence"])
               for p in r["persons"] for w in p["windows"] if w["label"] != UNCERTAIN]
    assert not windows, windows
    segments = [(p["track_id"], s["label"]) for p in r["persons"] for s in p["segments"] if s["label"] != UNCERTAIN]
    assert not segments, segments


def _coco_track(seq18, fps, track_id=1):
    """OpenPose-18 pixels (640x480) -> COCO-17 (x, y, conf) in a 1280x720 video."""
    present = (seq18 != 0).any(-1, keepdims=True)
    xy = np.where(present, seq18 * 1.5 + np.array([200.0, 60.0], np.float32), 0)
    k = remap(np.concatenate([xy, present.astype(np.float32) * 0.9], -1), "openpose18", "coco17")
    n = len(k)
    return PoseTrack(track_id=track_id, frame_indices=np.arange(n), times=np.arange(n) / fps,
                     keypoints=k.astype(np.float32), boxes=np.zeros((n, 4), np.float32),
                     scores=np.full(n, 0.9, np.float32))


def test_actions_still_recognised_and_their_frozen_frames_are_not(clf):
    """Through the same timeline path at 30 fps: each action performed is recognised; the same action
    frozen (a random phase held still, with a slow camera drift) is uncertain."""
    fps, wrong, frozen = 30.0, [], []
    for c, name in enumerate(clf.classes):
        tracks = []
        for tid, ts in ((1, 1.0), (2, 0.0)):
            rng = np.random.default_rng(300 + c)
            seq = synth.render([(c, int(4.0 * fps))], rng, split="test", fps=fps, ramp=6, time_scale=ts,
                               camera_drift=ts == 0.0)
            tracks.append(_coco_track(seq, fps, track_id=tid))
        r = classify_extraction(PoseExtraction(width=1280, height=720, sampled_fps=fps,
                                               frame_times=np.arange(len(seq)) / fps, tracks=tracks,
                                               layout="coco17", meta={}), clf)
        moving, still = sorted(r["persons"], key=lambda p: p["track_id"])
        if moving["label"] != name:
            wrong.append((name, moving["label"], moving["confidence"]))
        if still["label"] != UNCERTAIN:
            frozen.append((name, still["label"], still["confidence"]))
    assert len(wrong) <= 1, wrong
    assert not frozen, frozen
