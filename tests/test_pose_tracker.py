"""Multi-person tracker: stable ids through crossings and short occlusions."""
from __future__ import annotations

import itertools

import numpy as np
import pytest

from models.pose.onnx_backend import PoseDetections
from models.pose.tracker import PoseTracker, linear_sum_assignment

# A standing person skeleton in a unit box (x, y in 0..1), COCO-17 order.
SKELETON = np.array([
    [.50, .08], [.53, .06], [.47, .06], [.57, .08], [.43, .08],  # nose, eyes, ears
    [.68, .22], [.32, .22], [.75, .38], [.25, .38], [.78, .52], [.22, .52],  # shoulders, elbows, wrists
    [.62, .55], [.38, .55], [.63, .76], [.37, .76], [.64, .97], [.36, .97],  # hips, knees, ankles
])


def person(cx: float, cy: float = 240.0, w: float = 80.0, h: float = 200.0, arm: float = 0.0):
    box = np.array([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], np.float32)
    kp = np.ones((17, 3), np.float32)
    kp[:, 0] = box[0] + SKELETON[:, 0] * w
    kp[:, 1] = box[1] + SKELETON[:, 1] * h
    kp[9, 1] -= arm  # raise the left wrist: a pose difference between the two persons
    kp[:, 2] = 0.9
    return box, kp


def dets(*people) -> PoseDetections:
    if not people:
        return PoseDetections.empty()
    boxes, kps = zip(*people)
    return PoseDetections(np.stack(boxes), np.full(len(people), 0.9, np.float32), np.stack(kps))


def run(frames, **kw):
    tr = PoseTracker(**kw)
    per_frame = []
    for i, d in enumerate(frames):
        per_frame.append(dict(tr.update(i, i / 22.0, d)))
    return tr.finish(), per_frame


@pytest.mark.parametrize("arm", [0.0, 60.0])  # identical poses (motion only) or different poses
@pytest.mark.parametrize("occluded", [False, True])  # while crossing, the one behind is not detected
def test_two_people_crossing_keep_their_ids(arm, occluded):
    frames = []
    hidden = range(18, 23) if occluded else range(0)
    for i in range(40):
        a = person(100 + 10 * i, arm=arm)  # walks right
        b = person(500 - 10 * i, cy=250)  # walks left; the boxes fully overlap around frame 20
        if i in hidden:
            frames.append(dets(a))
        else:
            frames.append(dets(a, b) if i % 2 else dets(b, a))  # detection order must not matter
    tracks, _ = run(frames)
    assert len(tracks) == 2
    assert sorted(len(t) for t in tracks) == [40 - len(hidden), 40]
    for t in tracks:
        xs = (t.boxes[:, 0] + t.boxes[:, 2]) / 2
        d = np.diff(xs)
        assert (d > 0).all() or (d < 0).all(), "a track switched persons while they crossed"


def test_short_occlusion_keeps_id():
    frames = []
    for i in range(30):
        a = person(100 + 4 * i)
        b = person(450, cy=240)
        frames.append(dets(a) if 10 <= i < 16 else dets(a, b))  # b hidden for 6 frames
    tracks, per_frame = run(frames, max_age=10)
    assert len(tracks) == 2
    b_track = [t for t in tracks if t.boxes[0, 0] > 300][0]
    assert len(b_track) == 24
    assert 10 not in b_track.frame_indices and 16 in b_track.frame_indices
    ids_b = {tid for f in (per_frame[5], per_frame[20]) for tid, j in f.items() if j == 1}
    assert len(ids_b) == 1


def test_long_absence_starts_a_new_track():
    frames = [dets(person(200)) for _ in range(10)] + [dets() for _ in range(12)] + \
             [dets(person(200)) for _ in range(10)]
    tracks, _ = run(frames, max_age=5)
    assert [t.track_id for t in tracks] == [1, 2]
    assert tracks[0].frame_indices.tolist() == list(range(10))
    assert tracks[1].frame_indices.tolist() == list(range(22, 32))


def test_min_hits_drops_flicker_and_keeps_history():
    frames = [dets(person(100)) for _ in range(6)]
    frames[3] = dets(person(100), person(500))  # one-frame false positive
    tracks, per_frame = run(frames, min_hits=3)
    assert len(tracks) == 1 and len(tracks[0]) == 6
    # before confirmation a detection has no id; once confirmed, the earlier frames are kept in the track
    assert per_frame[0] == {} and per_frame[2] == {1: 0}
    assert tracks[0].frame_indices.tolist() == list(range(6))


def test_fast_mover_without_overlap_is_followed():
    # moves 60 px per frame with an 80 px wide box: consecutive boxes barely overlap
    frames = [dets(person(50 + 60 * i)) for i in range(10)]
    tracks, _ = run(frames)
    assert len(tracks) == 1 and len(tracks[0]) == 10


def test_no_detections_no_tracks():
    tracks, _ = run([dets() for _ in range(5)])
    assert tracks == []


def test_low_score_detections_are_ignored():
    d = dets(person(100))
    d.scores[:] = 0.1
    tracks, _ = run([d] * 5, min_score=0.25)
    assert tracks == []


def test_hungarian_is_optimal():
    rng = np.random.default_rng(0)
    for _ in range(100):
        n, m = (int(x) for x in rng.integers(1, 6, 2))
        c = rng.random((n, m))
        r, k = linear_sum_assignment(c)
        assert len(r) == min(n, m) and len(set(r.tolist())) == len(r) and len(set(k.tolist())) == len(k)
        if n <= m:
            best = min(sum(c[i, p[i]] for i in range(n)) for p in itertools.permutations(range(m), n))
        else:
            best = min(sum(c[p[j], j] for j in range(m)) for p in itertools.permutations(range(n), m))
        assert c[r, k].sum() == pytest.approx(best)
    r, k = linear_sum_assignment(np.zeros((0, 3)))
    assert len(r) == 0 and len(k) == 0


@pytest.mark.parametrize("fps", [10.0, 22.0, 30.0, 60.0])
def test_occlusion_tolerance_is_the_same_in_seconds_at_any_rate(fps):
    def frames(hidden_s):
        n = int(round(3.0 * fps))
        lo, hi = int(round(1.0 * fps)), int(round((1.0 + hidden_s) * fps))
        return [dets() if lo <= i < hi else dets(person(200 + 30 * i / fps)) for i in range(n)]

    def count_tracks(hidden_s):
        tr = PoseTracker.for_rate(fps)
        for i, d in enumerate(frames(hidden_s)):
            tr.update(i, i / fps, d)
        return len(tr.finish())

    assert count_tracks(0.5) == 1  # half a second behind something: the same person
    assert count_tracks(1.5) == 2  # gone for longer: a new track


def test_a_shot_cut_ends_every_track():
    """After a cut, whoever stands where a tracked person stood is someone else: a new track."""
    tr = PoseTracker(min_hits=2)
    for i in range(10):
        tr.update(i, i / 22.0, dets(person(200.0), person(400.0)))
    tr.cut()
    for i in range(10, 20):
        tr.update(i, i / 22.0, dets(person(205.0), person(400.0)))
    tracks = tr.finish()
    assert len(tracks) == 4
    assert sorted((float(t.times[0]), float(t.times[-1])) for t in tracks)[::2] == [(0.0, 9 / 22.0), (10 / 22.0, 19 / 22.0)]


def test_prediction_keys_stay_with_their_track_and_are_never_reused():
    """Guided pose remembers persons by these keys: a one-frame false positive's key never comes back."""
    tr = PoseTracker(max_age=3, min_hits=2)
    seen: list[int] = []
    for i in range(12):
        people = [person(100 + 2 * i)] + ([person(500)] if i % 3 == 0 else [])  # a flicker, dropped each time
        tr.update(i, i / 10, dets(*people))
        keys = [k for k, _ in tr.predictions()]
        seen += [k for k in keys if k not in seen]
        assert keys[0] == 1  # the steady person keeps theirs
        box = tr.predictions()[0][1]
        if i >= 2:  # once it has a velocity: predicted one frame ahead
            assert abs((box[0] + box[2]) / 2 - (100 + 2 * (i + 1))) < 1.0
    assert seen == sorted(seen) and len(seen) == len(set(seen)) == 5  # the steady one and 4 flickers
