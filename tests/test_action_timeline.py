"""Window / timeline logic of ``classify_extraction`` with a scripted classifier (no model needed)."""
import json

import numpy as np
import pytest

from models.action.features import pad_indices
from models.action.timeline import (
    MIN_TRACK_S,
    NO_PERSON,
    OK,
    TOO_SHORT,
    classify_extraction,
    resample_track,
    smooth_labels,
    window_starts,
)
from models.tracks import PoseExtraction, PoseTrack

CLASSES = ["JUMPING", "JUMPING_JACKS", "BOXING", "WAVING_2HANDS", "WAVING_1HAND", "CLAPPING_HANDS"]


class ScriptedClassifier:
    """Stands in for ActionClassifier: returns the next rows of ``script`` (or ``fn(windows)``)."""

    classes = CLASSES
    window = 32
    fps = 22.0
    layout = "openpose17"
    min_keypoint_conf = 0.3
    uncertain_threshold = 0.6
    info = {"name": "scripted", "version": "0", "sha256": "0" * 64}

    def __init__(self, fn):
        self.fn = fn
        self.calls = []

    def predict(self, windows, frame_size=(640.0, 480.0)):
        self.calls.append(np.array(windows))
        return np.asarray(self.fn(np.asarray(windows)), np.float32)


def onehot(c, p=0.9):
    row = np.full(6, (1 - p) / 5, np.float32)
    row[c] = p
    return row


def by_nose_x(windows):
    """Class = floor(median nose x / 100) over the window (openpose17: nose is joint 0)."""
    return np.stack([onehot(int(np.median(w[:, 0, 0]) // 100) % 6) for w in windows])


def make_track(n, fps=22.0, t0=0.0, track_id=1, nose_x=None, drop=()):
    times = t0 + np.arange(n) / fps
    k = np.zeros((n, 17, 3), np.float32)
    k[..., 0] = 300 + np.arange(17)
    k[..., 1] = 200 + 10 * np.arange(17)
    k[..., 2] = 0.9
    if nose_x is not None:
        k[:, 0, 0] = nose_x
    for i in drop:
        k[i] = 0
    return PoseTrack(track_id=track_id, frame_indices=np.arange(n) + int(round(t0 * fps)), times=times,
                     keypoints=k, boxes=np.zeros((n, 4), np.float32), scores=np.full(n, 0.9, np.float32))


def extraction(tracks, fps=22.0, seconds=10.0, meta=None):
    return PoseExtraction(width=1280, height=720, sampled_fps=fps, frame_times=np.arange(int(seconds * fps)) / fps,
                          tracks=tracks, layout="coco17",
                          meta=meta or {"pose_model": {"name": "yolo11n-pose", "version": "1", "sha256": "ab"}})


def test_window_starts_cover_the_track():
    assert window_starts(31, 32, 8) == []
    assert window_starts(32, 32, 8) == [0]
    assert window_starts(50, 32, 8) == [0, 8, 16, 18]
    assert window_starts(48, 32, 8) == [0, 8, 16]


def test_smoothing_removes_single_window_flickers_only():
    assert smooth_labels(list("AABAA")) == list("AAAAA")
    assert smooth_labels(list("AABBAA")) == list("AABBAA")
    assert smooth_labels(list("ABC")) == list("ABC")


def test_segments_and_result_format():
    nose = np.where(np.arange(220) < 110, 250.0, 50.0)  # BOXING (2) then JUMPING (0)
    ex = extraction([make_track(220, nose_x=nose)])
    clf = ScriptedClassifier(by_nose_x)
    r = classify_extraction(ex, clf, stride=8)
    json.dumps(r)  # serializable
    assert set(r) == {"status", "classes", "models", "video", "params", "persons", "short_tracks"}
    assert r["status"] == "ok" and r["classes"] == CLASSES
    assert r["models"]["pose"]["name"] == "yolo11n-pose" and r["models"]["action"]["name"] == "scripted"
    assert r["video"] == {"width": 1280, "height": 720, "duration_s": 10.0, "sampled_fps": 22.0,
                          "frames_sampled": 220}
    assert r["params"] == {"window": 32, "stride": 8, "uncertain_threshold": 0.6, "min_track_s": 0.7}
    (p,) = r["persons"]
    assert p["track_id"] == 1 and p["frames"] == 220 and p["start_s"] == 0.0 and p["end_s"] == 10.0
    assert set(p) == {"track_id", "start_s", "end_s", "frames", "label", "confidence", "probabilities",
                      "segments", "windows"}
    assert [s["label"] for s in p["segments"]] == ["BOXING", "JUMPING"]
    boundary = p["segments"][0]["end_s"]
    assert abs(boundary - 5.0) < 0.5 and p["segments"][1]["start_s"] == boundary
    assert p["segments"][0]["start_s"] == 0.0 and p["segments"][-1]["end_s"] == 10.0
    assert len(p["windows"]) == len(window_starts(220, 32, 8))
    w = p["windows"][0]
    assert w["start_s"] == 0.0 and w["end_s"] == 1.455 and len(w["probabilities"]) == 6
    assert 0 <= p["confidence"] <= 1 and set(p["probabilities"]) == set(CLASSES)
    assert r["short_tracks"] == []


def test_one_window_flicker_is_smoothed_in_segments():
    rows = [onehot(2)] * 5 + [onehot(5)] + [onehot(2)] * 5
    clf = ScriptedClassifier(lambda w: np.stack(rows[: len(w)]))
    n = 32 + 8 * 10  # exactly 11 windows
    r = classify_extraction(extraction([make_track(n)]), clf, stride=8)
    (p,) = r["persons"]
    assert len(p["windows"]) == 11
    assert [s["label"] for s in p["segments"]] == ["BOXING"]
    raw = classify_extraction(extraction([make_track(n)]), ScriptedClassifier(lambda w: np.stack(rows)), stride=8)
    from models.action import timeline
    assert timeline.smooth_labels([w["label"] for w in raw["persons"][0]["windows"]]) == ["BOXING"] * 11


def test_uncertain_below_threshold():
    flat = np.full(6, 1 / 6, np.float32)
    clf = ScriptedClassifier(lambda w: np.stack([flat] * len(w)))
    r = classify_extraction(extraction([make_track(100)]), clf)
    (p,) = r["persons"]
    assert p["label"] == "uncertain" and abs(p["confidence"] - 1 / 6) < 1e-3
    assert {w["label"] for w in p["windows"]} == {"uncertain"}
    assert [s["label"] for s in p["segments"]] == ["uncertain"]
    # the card's threshold can be overridden per call
    r = classify_extraction(extraction([make_track(100)]), clf, uncertain_threshold=0.1)
    assert r["persons"][0]["label"] == "JUMPING" and r["params"]["uncertain_threshold"] == 0.1


def test_status_constants():
    assert (OK, TOO_SHORT, NO_PERSON) == ("ok", "too_short", "no_person") and MIN_TRACK_S == 0.7


def test_no_person_and_too_short_tracks():
    clf = ScriptedClassifier(by_nose_x)
    r = classify_extraction(extraction([]), clf)
    assert r["status"] == "no_person" and r["persons"] == [] and r["short_tracks"] == []
    # people were tracked, but only for less than min_track_s: "too_short", not "no_person"
    r = classify_extraction(extraction([make_track(11, t0=3.1, track_id=7), make_track(1, track_id=8)]), clf)
    assert r["status"] == "too_short" and r["persons"] == []
    assert r["short_tracks"][0] == {"track_id": 7, "start_s": 3.1, "end_s": 3.6, "frames": 11}
    assert r["short_tracks"][1]["frames"] == 1
    assert clf.calls == []  # nothing was classified


def test_track_length_boundary_and_min_track_s():
    clf = ScriptedClassifier(by_nose_x)
    # 0.7 s at 22 Hz: 15 frames (0.68 s) are too short, 16 (0.73 s) are classified
    tracks = [make_track(15, track_id=1), make_track(16, track_id=2), make_track(31, track_id=3),
              make_track(32, track_id=4)]
    r = classify_extraction(extraction(tracks), clf)
    assert r["status"] == "ok" and [p["track_id"] for p in r["persons"]] == [2, 3, 4]
    assert all(len(p["windows"]) == 1 for p in r["persons"])
    assert [s["track_id"] for s in r["short_tracks"]] == [1]
    # the old minimum (one full window) can still be asked for
    r = classify_extraction(extraction(tracks), clf, min_track_s=1.45)
    assert [p["track_id"] for p in r["persons"]] == [4] and [s["track_id"] for s in r["short_tracks"]] == [1, 2, 3]
    r = classify_extraction(extraction([make_track(60)]), clf, min_track_s=3.0)
    assert r["status"] == "too_short" and r["params"]["min_track_s"] == 3.0
    assert r["short_tracks"] == [{"track_id": 1, "start_s": 0.0, "end_s": 2.727, "frames": 60}]


def test_track_shorter_than_a_window_is_one_padded_window():
    clf = ScriptedClassifier(by_nose_x)
    nose = 250.0 + np.arange(22)  # BOXING; a distinct x per frame to follow the frames into the window
    r = classify_extraction(extraction([make_track(22, t0=2.0, track_id=3, nose_x=nose)]), clf)  # 1.0 s
    assert r["status"] == "ok" and r["short_tracks"] == []
    (p,) = r["persons"]
    assert p["track_id"] == 3 and p["frames"] == 22 and p["start_s"] == 2.0 and p["end_s"] == 3.0
    (w,) = p["windows"]
    assert w["start_s"] == p["start_s"] == 2.0 and w["end_s"] == p["end_s"] == 3.0
    assert w["label"] == p["label"] == "BOXING"
    assert [(s["label"], s["start_s"], s["end_s"]) for s in p["segments"]] == [("BOXING", 2.0, 3.0)]
    (x,) = clf.calls  # one window of 32 frames: the track's frames played back and forth
    assert x.shape == (1, 32, 17, 3)
    np.testing.assert_allclose(x[0, :, 0, 0], nose[pad_indices(22, 32)], atol=1e-3)
    # half a second is below min_track_s: too short, nothing classified
    clf = ScriptedClassifier(by_nose_x)
    r = classify_extraction(extraction([make_track(11, t0=2.0, track_id=3)]), clf)
    assert r["status"] == "too_short" and r["persons"] == [] and clf.calls == []
    assert r["short_tracks"] == [{"track_id": 3, "start_s": 2.0, "end_s": 2.5, "frames": 11}]


def test_mostly_empty_windows_are_not_classified():
    clf = ScriptedClassifier(by_nose_x)
    r = classify_extraction(extraction([make_track(40, drop=range(5, 40))]), clf)
    assert r["status"] == "too_short" and r["persons"] == [] and r["short_tracks"][0]["frames"] == 40


def test_windows_with_more_than_a_quarter_missing_are_not_classified():
    """A 0.6 s gap (longer than resample_track bridges) in a 6 s track: no classified window has more than a
    quarter of its frames in the gap (windows with more missing were wrong far more often)."""
    n = 132
    tr = make_track(n, nose_x=np.full(n, 250.0))
    gap = (tr.times >= 2.7) & (tr.times < 3.3)
    tr.keypoints[gap, :, 2] = 0.1  # below the keypoint confidence floor
    clf = ScriptedClassifier(by_nose_x)
    r = classify_extraction(extraction([tr]), clf, stride=4)
    (p,) = r["persons"]
    assert p["windows"]
    missing = [float(((tr.times >= w["start_s"]) & (tr.times < w["end_s"]) & gap).sum()) / 32 for w in p["windows"]]
    assert max(missing) <= 0.25 + 2 / 32 + 1e-6  # a frame at each edge of the gap is held (resample_track)
    assert any(0 < m for m in missing)  # windows reach into the gap as far as allowed


def test_low_confidence_keypoints_become_missing_before_the_model():
    clf = ScriptedClassifier(by_nose_x)
    tr = make_track(32)
    tr.keypoints[:, 9, 2] = 0.1  # COCO l_wrist below the floor
    classify_extraction(extraction([tr]), clf)
    (w,) = clf.calls
    assert w.shape == (1, 32, 17, 3)
    assert (w[0, :, 6] == 0).all()  # openpose17 l_wrist
    np.testing.assert_array_equal(w[0, :, 0, 0], tr.keypoints[:, 0, 0])  # nose mapped by name


def test_resample_track_linear_motion_from_30hz():
    t = np.arange(90) / 30.0
    k = np.zeros((90, 2, 3), np.float32)
    k[:, 0, 0] = 100 * t
    k[:, 0, 1] = 5
    k[:, :, 2] = 1
    k[40:44, 1] = 0  # a joint gone for 4 frames (0.13 s): interpolated
    grid, r = resample_track(t, k, 22.0, 30.0)
    assert len(grid) == 66 and np.allclose(np.diff(grid), 1 / 22)
    np.testing.assert_allclose(r[:, 0, 0], 100 * grid, atol=1e-3)
    assert (r[:, 0, 2] == 1).all()
    k[20:60, 1] = 0  # a long gap stays missing
    _, r = resample_track(t, k, 22.0, 30.0)
    assert (r[(grid > 0.75) & (grid < 1.9), 1, 2] == 0).all()


@pytest.mark.parametrize("src_fps", [11.0, 7.3])
def test_resample_track_interpolates_a_lower_rate_up_to_the_model_rate(src_fps):
    """Poses sampled below the model's rate are interpolated to it: linear motion exactly, a wrist's swing
    through the frames between samples, a joint missing in one sample filled from its neighbours."""
    t = np.arange(int(3 * src_fps)) / src_fps
    k = np.zeros((len(t), 2, 3), np.float32)
    k[:, 0, 0] = 40 + 100 * t
    k[:, 1, 1] = 200 + 50 * np.sin(2 * np.pi * 1.0 * t)  # 1 Hz swing
    k[:, :, 2] = 1
    grid, r = resample_track(t, k, 22.0, src_fps)
    assert len(grid) == int(np.floor(t[-1] * 22 + 1e-6)) + 1 and np.allclose(np.diff(grid), 1 / 22)
    np.testing.assert_allclose(r[:, 0, 0], 40 + 100 * grid, atol=1e-3)
    swing = 200 + 50 * np.sin(2 * np.pi * grid)
    assert np.abs(r[:, 1, 1] - swing).max() < 50 * (2 * np.pi / src_fps) ** 2 / 8 + 1e-3  # a chord's sag
    k[5, 1] = 0
    _, r = resample_track(t, k, 22.0, src_fps)
    assert (r[:, :, 2] == 1).all()  # a gap of 2 / src_fps is bridged


@pytest.mark.parametrize("fps", [30.0, 11.0])
def test_timeline_resamples_an_extraction_to_model_rate(fps):
    """A 30 fps source, or poses sampled at 11 Hz (the service's rate): the model gets 22 Hz windows."""
    n = int(5 * fps)  # 5 s
    nose = np.where(np.arange(n) < n // 2, 150.0, 450.0)  # JUMPING_JACKS then WAVING_1HAND
    ex = extraction([make_track(n, fps=fps, nose_x=nose)], fps=fps, seconds=5.0)
    clf = ScriptedClassifier(by_nose_x)
    r = classify_extraction(ex, clf, stride=8)
    (p,) = r["persons"]
    (w,) = clf.calls
    assert w.shape[1] == 32 and len(w) == len(p["windows"]) >= 10
    assert r["video"]["sampled_fps"] == fps
    # windows are 32 frames at 22 Hz = 1.455 s of video regardless of the source rate
    assert all(abs((x["end_s"] - x["start_s"]) - 32 / 22) < 2e-3 for x in p["windows"])
    assert [s["label"] for s in p["segments"]] == ["JUMPING_JACKS", "WAVING_1HAND"]
    assert abs(p["segments"][0]["end_s"] - 2.5) < 0.4


def test_multiple_tracks_are_reported_in_track_order():
    clf = ScriptedClassifier(by_nose_x)
    ex = extraction([make_track(60, track_id=5, nose_x=np.full(60, 350.0)),
                     make_track(80, track_id=2, nose_x=np.full(80, 50.0)),
                     make_track(10, track_id=9)])
    r = classify_extraction(ex, clf)
    assert [(p["track_id"], p["label"]) for p in r["persons"]] == [(2, "JUMPING"), (5, "WAVING_2HANDS")]
    assert [s["track_id"] for s in r["short_tracks"]] == [9]


@pytest.mark.parametrize("stride", [1, 4, 16])
def test_stride_is_configurable(stride):
    r = classify_extraction(extraction([make_track(64)]), ScriptedClassifier(by_nose_x), stride=stride)
    assert len(r["persons"][0]["windows"]) == len(window_starts(64, 32, stride))
    assert r["params"]["stride"] == stride


def test_smoothed_window_reports_the_probability_of_its_new_label():
    rows = [onehot(2)] * 5 + [onehot(5)] + [onehot(2)] * 5  # one CLAPPING window among BOXING ones
    clf = ScriptedClassifier(lambda w: np.stack(rows[: len(w)]))
    r = classify_extraction(extraction([make_track(32 + 8 * 10)]), clf, stride=8)
    w = r["persons"][0]["windows"][5]
    assert w["label"] == "BOXING"
    assert w["confidence"] == w["probabilities"][CLASSES.index("BOXING")] == 0.02
    for w in r["persons"][0]["windows"]:
        assert w["confidence"] == w["probabilities"][CLASSES.index(w["label"])]


def test_segments_do_not_bridge_a_stretch_without_classified_windows():
    # 10 s track: joints unusable from 3 s to 7 s (too few joints for a window), BOXING around it
    n = 220
    tr = make_track(n, nose_x=np.full(n, 250.0))
    t = tr.times
    tr.keypoints[(t >= 3.0) & (t < 7.0), :, 2] = 0.1  # below the keypoint confidence floor
    r = classify_extraction(extraction([tr]), ScriptedClassifier(by_nose_x), stride=8)
    (p,) = r["persons"]
    segs = p["segments"]
    assert [s["label"] for s in segs] == ["BOXING", "BOXING"]
    assert segs[0]["start_s"] == 0.0 and segs[-1]["end_s"] == 10.0
    assert segs[0]["end_s"] < 4.0 and segs[1]["start_s"] > 6.0  # the hole is not claimed
    for w in p["windows"]:  # no classified window lies inside the hole
        assert w["end_s"] <= segs[0]["end_s"] + 1e-6 or w["start_s"] >= segs[1]["start_s"] - 1e-6
    # the last window before the hole is not smoothed with a label from across it
    k = sum(w["start_s"] < 3.0 for w in p["windows"])
    rows = [onehot(2)] * (k - 1) + [onehot(5)] + [onehot(2)] * (len(p["windows"]) - k)
    r = classify_extraction(extraction([tr]), ScriptedClassifier(lambda w: np.stack(rows)), stride=8)
    assert [s["label"] for s in r["persons"][0]["segments"]] == ["BOXING", "CLAPPING_HANDS", "BOXING"]
