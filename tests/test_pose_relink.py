"""Re-linking of tracklets (models.pose.relink): a person lost for up to about a second stays one track, two people
stay two.

Real keypoints throughout: the shipped pose model's tracks of the two people of tests/assets/zidane.jpg in a clip
made by tests/media.py, cut into pieces, displaced or moved along crossing paths; and an end-to-end run of
extract_tracks on a clip where nobody can be detected for 0.9 s (longer than the tracker's own ``max_age``).
"""
from __future__ import annotations

import cv2
import numpy as np
import pytest

from models.action.features import MAX_GAP
from models.action.timeline import MIN_FILLED_FRACTION, classify_extraction, resample_track
from models.pose.onnx_backend import PoseDetections
from models.pose.relink import MAX_OVERLAP_S, link_cost, plan_links, pose_distance, relink_tracks
from models.pose.tracker import PoseTracker
from models.tracks import PoseExtraction, PoseTrack
from tests.media import make_people_video

SIZE = 320  # pose input for the real-model tests (as the rest of the suite)
FPS = 11.0  # the service's pose sampling rate


@pytest.fixture(scope="module")
def estimator():
    from models.pose import load_pose_estimator

    return load_pose_estimator("onnx", imgsz=SIZE, threads=2)


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    # 22 fps: sampled at 11 Hz, every other frame, so the samples are evenly spaced
    return make_people_video(tmp_path_factory.mktemp("relink") / "people.avi", seconds=4.5, fps=22.0, size=(640, 360))


@pytest.fixture(scope="module")
def people(clip, estimator):
    """The two persons' real tracks (11 Hz, 4.5 s), left one first."""
    from models.pose.extract import extract_tracks

    ex = extract_tracks(clip, estimator, target_fps=FPS, mode="full")
    assert len(ex.tracks) == 2 and all(len(t) == ex.n_frames for t in ex.tracks)
    assert np.allclose(np.diff(ex.frame_times), 1 / FPS, atol=2e-3)
    return sorted(ex.tracks, key=lambda t: float(t.boxes[:, 0].mean()))


def piece(track: PoseTrack, rows, track_id: int, shift=(0.0, 0.0)) -> PoseTrack:
    """The samples ``rows`` of ``track`` as a tracklet, boxes and keypoints moved by ``shift`` pixels."""
    rows = np.asarray(rows)
    kp = track.keypoints[rows].copy()
    kp[..., :2] += np.asarray(shift, np.float32)
    return PoseTrack(track_id=track_id, frame_indices=track.frame_indices[rows].copy(), times=track.times[rows].copy(),
                     keypoints=kp, boxes=track.boxes[rows] + np.tile(np.asarray(shift, np.float32), 2),
                     scores=track.scores[rows].copy())


def person_size(track: PoseTrack) -> float:
    w, h = track.boxes[:, 2] - track.boxes[:, 0], track.boxes[:, 3] - track.boxes[:, 1]
    return float(np.median(np.sqrt(w * h)))


def split(track: PoseTrack, at: int, missing: int, ids=(1, 3)) -> tuple[PoseTrack, PoseTrack]:
    """``track`` cut after sample ``at``, ``missing`` samples left out (the person unseen ``missing / FPS`` s)."""
    n = len(track)
    return piece(track, range(0, at + 1), ids[0]), piece(track, range(at + 1 + missing, n), ids[1])


def same_samples(a: PoseTrack, b: PoseTrack) -> bool:
    return (np.array_equal(a.frame_indices, b.frame_indices) and np.array_equal(a.times, b.times)
            and np.array_equal(a.keypoints, b.keypoints) and np.array_equal(a.boxes, b.boxes))


# --- gaps ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("unseen_s", [0.3, 1.0])
def test_a_person_unseen_up_to_a_second_stays_one_track(people, unseen_s):
    left, right = people
    missing = int(round(unseen_s * FPS))
    a, b = split(right, 15, missing)
    out = relink_tracks([a, piece(left, range(len(left)), 2), b])
    assert [t.track_id for t in out] == [1, 2]  # compact, in the order of each person's first piece
    joined, other = out
    keep = np.r_[0:16, 16 + missing:len(right)]
    assert same_samples(joined, piece(right, keep, 1))  # both pieces, nothing invented: the gap stays a gap
    assert joined.times[16] - joined.times[15] == pytest.approx((missing + 1) / FPS, abs=2e-3)
    assert same_samples(other, piece(left, range(len(left)), 2))


def test_a_person_gone_for_two_seconds_is_a_new_track(people):
    left, right = people
    a, b = split(right, 10, int(round(2.0 * FPS)))
    out = relink_tracks([a, piece(left, range(len(left)), 2), b])
    assert [t.track_id for t in out] == [1, 2, 3]
    assert [len(t) for t in out] == [len(a), len(left), len(b)]


def test_no_join_across_a_shot_cut(people):
    _, right = people
    a, b = split(right, 15, 3)
    assert len(relink_tracks([a, b])) == 1
    cut_at = float(round(right.times[17], 3))  # within the gap: the next shot starts there
    assert len(relink_tracks([a, b], cuts_s=[cut_at])) == 2


# --- overlaps --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("stray", ["old", "new"])
def test_a_few_frames_of_overlap_are_joined_keeping_the_samples_that_continue(people, stray):
    """The old track was matched once or twice more after the new one began (here on three frames): one person.
    On the shared frames one of the two had a stray detection (moved by a third of the person's size); the merged
    track keeps the samples on the person's path, once per frame."""
    _, right = people
    at = 20
    off = 0.33 * person_size(right)
    a = piece(right, range(0, at + 1), 1)
    b = piece(right, range(at - 2, len(right)), 2)
    wrong = a if stray == "old" else b
    rows = np.isin(wrong.frame_indices, right.frame_indices[at - 2:at + 1])
    wrong.boxes[rows] += np.float32(off)
    wrong.keypoints[rows, :, :2] += np.float32(off)
    assert a.times[-1] - b.times[0] <= MAX_OVERLAP_S
    (joined,) = relink_tracks([a, b])
    assert same_samples(joined, piece(right, range(len(right)), 1))


def test_tracklets_that_coexist_longer_are_two_people(people):
    """The same body seen twice for most of a second (e.g. a mirror, a screen, a duplicate detection) is not
    joined into one track."""
    _, right = people
    a = piece(right, range(0, 25), 1)
    b = piece(right, range(14, len(right)), 2)
    assert a.times[-1] - b.times[0] > MAX_OVERLAP_S
    assert plan_links([a, b]) == [] and len(relink_tracks([a, b])) == 2


# --- place, size and pose --------------------------------------------------------------------------------


@pytest.mark.parametrize("shift,joined", [(0.3, True), (2.5, False), (-2.5, False)])
def test_a_restart_far_from_where_the_person_was_is_another_track(people, shift, joined):
    left, right = people
    a, b = split(right, 15, 3)
    b = piece(b, range(len(b)), 3, shift=(shift * person_size(right), 0.0))
    out = relink_tracks([a, piece(left, range(len(left)), 2), b])
    assert len(out) == (2 if joined else 3)


def test_another_size_or_pose_is_another_track(people):
    left, right = people
    a, b = split(right, 15, 3)
    assert np.isfinite(link_cost(a, b))
    # the same place and path, but a body two and a half times as big
    big = piece(b, range(len(b)), 3)
    centre = (big.boxes[:, :2] + big.boxes[:, 2:]) / 2
    half = (big.boxes[:, 2:] - big.boxes[:, :2]) / 2
    big.boxes = np.concatenate([centre - 2.5 * half, centre + 2.5 * half], 1).astype(np.float32)
    big.keypoints[..., :2] = centre[:, None] + (big.keypoints[..., :2] - centre[:, None]) * 2.5
    assert np.isinf(link_cost(a, big))
    # the same place, but upside down (a handstand a third of a second later): another pose
    flipped = piece(b, range(len(b)), 3)
    flipped.keypoints[..., 1] = centre[:, None, 1] * 2 - flipped.keypoints[..., 1]
    assert pose_distance(b.keypoints[0], flipped.keypoints[0]) > 1.0
    assert np.isinf(link_cost(a, flipped))


def test_the_body_that_continues_the_pose_wins_over_another_at_the_same_place(people):
    """Two candidates start where the person was: their own continuation and the other person's body laid over
    the same boxes. The pose tells them apart; the assignment takes the continuation, not the first one listed."""
    left, right = people
    a, b = split(right, 15, 3, ids=(1, 2))
    other = piece(left, range(19, len(left)), 3)
    c_r = (right.boxes[19:, :2] + right.boxes[19:, 2:]) / 2
    c_l = (left.boxes[19:, :2] + left.boxes[19:, 2:]) / 2
    other.keypoints[..., :2] += (c_r - c_l)[:, None].astype(np.float32)
    other.boxes = right.boxes[19:].copy()  # the very same boxes: only the pose differs
    assert pose_distance(right.keypoints[15], left.keypoints[15]) > 5 * pose_distance(right.keypoints[15],
                                                                                        right.keypoints[19])
    assert link_cost(a, b) < link_cost(a, other)
    for order in ([a, other, b], [a, b, other]):
        (lk,) = plan_links(order)
        assert (lk.head, lk.tail) == (1, 2)


def test_pose_distance_ignores_position_and_size_and_needs_shared_joints(people):
    _, right = people
    kp = right.keypoints[10].copy()
    moved = kp.copy()
    moved[:, :2] = moved[:, :2] * 0.5 + 300.0
    assert pose_distance(kp, moved) == pytest.approx(0.0, abs=1e-6)
    few = kp.copy()
    few[4:, 2] = 0.0  # four joints left
    assert np.isnan(pose_distance(kp, few))


# --- two people crossing ---------------------------------------------------------------------------------


def crossing(people, hide: str, same_body: bool = False) -> list[PoseDetections]:
    """The two real tracks' bodies (their joints relative to their box centre, sample by sample), at 40 % of their
    size, walking towards each other across a 1280x720 frame; their boxes pass through each other in the middle.
    ``hide``: who is not detected for 0.9 s around the crossing ("both", "behind": the one walking left, "none").
    ``same_body``: both are the right person's body, at the same height (only their motion tells them apart)."""
    left, right = people
    ys = (370.0, 370.0) if same_body else (360.0, 380.0)
    if same_body:
        left = right
    n = min(len(left), len(right))
    t = np.arange(n) / FPS
    mid = t[-1] / 2
    xs = (100 + 1080 * t / t[-1], 1180 - 1080 * t / t[-1])
    frames = []
    for k in range(n):
        people_k = []
        for who, (track, x, y) in enumerate(zip((left, right), xs, ys)):
            if abs(t[k] - mid) < 0.45 and (hide == "both" or (hide == "behind" and who == 1)):
                continue
            box = track.boxes[k].astype(np.float64)
            c = (box[:2] + box[2:]) / 2
            kp = track.keypoints[k].copy()
            kp[:, :2] = (kp[:, :2] - c) * 0.4 + (x[k], y)
            people_k.append((np.r_[(box[:2] - c) * 0.4 + (x[k], y), (box[2:] - c) * 0.4 + (x[k], y)], kp,
                             float(track.scores[k])))
        if not people_k:
            frames.append(PoseDetections.empty())
            continue
        boxes, kps, scores = zip(*people_k)
        frames.append(PoseDetections(np.asarray(boxes, np.float32), np.asarray(scores, np.float32),
                                     np.stack(kps).astype(np.float32)))
    return frames


@pytest.mark.parametrize("same_body", [False, True])
@pytest.mark.parametrize("hide,pieces", [("both", 4), ("behind", 3), ("none", 2)])
def test_two_people_crossing_stay_two_with_their_own_ids(people, hide, pieces, same_body):
    frames = crossing(people, hide, same_body)
    tracker = PoseTracker.for_rate(FPS)
    for k, dets in enumerate(frames):
        tracker.update(k, k / FPS, dets if k % 2 else PoseDetections(dets.boxes[::-1], dets.scores[::-1],
                                                                     dets.keypoints[::-1]))
    tracklets = tracker.finish()
    assert len(tracklets) == pieces  # the tracker lost whoever was hidden longer than its max_age
    out = relink_tracks(tracklets)
    assert [t.track_id for t in out] == [1, 2]
    hidden = sum(abs(k / FPS - (len(frames) - 1) / FPS / 2) < 0.45 for k in range(len(frames)))
    for track in out:
        x = (track.boxes[:, 0] + track.boxes[:, 2]) / 2
        d = np.diff(x)
        assert (d > 0).all() or (d < 0).all(), "a track switched persons while they crossed"
        assert x[0] < 300 or x[0] > 980  # from one side of the frame to the other
        assert abs(x[-1] - x[0]) > 900
    walking_right = next(t for t in out if t.boxes[0, 0] < 640)
    assert len(walking_right) == len(frames) - (hidden if hide == "both" else 0)


# --- the action timeline over a joined track's gap ------------------------------------------------------


def test_the_timeline_interpolates_a_short_gap_and_skips_a_long_one(people):
    """A joined track keeps its gap: the timeline interpolates a short one and leaves a long one empty, never
    classifying a window that lies mostly in it."""
    from models.action.classifier import ActionClassifier

    _, right = people
    grid_fps = 22.0
    a, b = split(right, 15, 2)  # unseen 0.18 s
    (short,) = relink_tracks([a, b])
    _, kr = resample_track(short.times, short.keypoints, grid_fps, FPS)
    filled = (kr[..., 2] > 0).sum(-1) >= 5
    assert filled.all()  # interpolated

    a, b = split(right, 15, 11)  # unseen 1 s
    (long_,) = relink_tracks([a, b])
    grid, kr = resample_track(long_.times, long_.keypoints, grid_fps, FPS)
    filled = (kr[..., 2] > 0).sum(-1) >= 5
    lo, hi = long_.times[15], long_.times[16]
    inside = (grid > lo + 1 / FPS) & (grid < hi - 1 / FPS)
    assert inside.sum() >= 14 and not filled[inside].any()  # nothing invented in the gap
    runs = np.diff(np.flatnonzero(np.diff(np.r_[1, filled.astype(int), 1]) != 0))[::2]
    assert runs.max() > MAX_GAP  # longer than the features' own gap filling

    clf = ActionClassifier()
    ex = PoseExtraction(width=640, height=360, sampled_fps=FPS, frame_times=right.times.copy(), tracks=[long_],
                        layout="coco17", meta={})
    report = classify_extraction(ex, clf)
    (person,) = report["persons"]
    assert person["track_id"] == 1 and person["frames"] == len(long_)
    assert person["windows"]
    for w in person["windows"]:
        span = (grid >= w["start_s"] - 1e-6) & (grid < w["end_s"] - 1e-6)
        assert filled[span].mean() >= MIN_FILLED_FRACTION


# --- end to end ------------------------------------------------------------------------------------------


def blur_people(src, dst, start_s: float, seconds: float):
    """A copy of the clip whose frames from ``start_s`` on are pixelated for ``seconds`` (out of focus: nobody can
    be detected, yet the picture's colours stay, so it is no shot cut)."""
    cap = cv2.VideoCapture(str(src))
    fps = cap.get(cv2.CAP_PROP_FPS)
    frames = []
    while True:
        ok, frame = cap.read()
        if not ok:
            break
        frames.append(frame)
    cap.release()
    h, w = frames[0].shape[:2]
    writer = cv2.VideoWriter(str(dst), cv2.VideoWriter_fourcc(*"MJPG"), fps, (w, h))
    for i, frame in enumerate(frames):
        if start_s <= i / fps < start_s + seconds:
            frame = cv2.resize(cv2.resize(frame, (w // 16, h // 16), interpolation=cv2.INTER_AREA), (w, h),
                               interpolation=cv2.INTER_NEAREST)
        writer.write(frame)
    writer.release()
    return dst


@pytest.mark.parametrize("mode", ["guided", "full"])
def test_extract_tracks_keeps_one_track_per_person_through_a_detection_gap(clip, estimator, tmp_path, mode):
    from models.pose.extract import extract_tracks

    start, gone = 1.5, 0.9
    path = blur_people(clip, tmp_path / "gap.avi", start, gone)
    ex = extract_tracks(path, estimator, target_fps=FPS, mode=mode)
    assert ex.meta["shot_cuts_s"] == []
    assert ex.meta["tracker"]["tracklets"] == 4  # the tracker alone split both persons
    assert [t.track_id for t in ex.tracks] == [1, 2]
    for t in ex.tracks:
        assert t.times[0] < 0.2 and t.times[-1] > 4.3
        assert (np.diff(t.frame_indices) > 0).all()
        np.testing.assert_array_equal(ex.frame_times[t.frame_indices], t.times)
        steps = np.diff(t.times)
        assert steps.max() >= gone - 1e-6  # the gap is kept, not filled
        assert not ((t.times > start + 0.1) & (t.times < start + gone - 0.1)).any()
        # the same person on both sides of the gap (the camera pans slowly)
        k = int(np.argmax(steps))
        c = (t.boxes[:, :2] + t.boxes[:, 2:]) / 2
        w = float(np.median(t.boxes[:, 2] - t.boxes[:, 0]))
        assert np.linalg.norm(c[k + 1] - c[k]) < 0.25 * w
    restored = PoseExtraction.from_bytes(ex.to_bytes())
    assert [len(t) for t in restored.tracks] == [len(t) for t in ex.tracks]


def _dense_plan(tracks, cuts_s=()):
    """The joins as a dense all-pairs matrix makes them (the rule plan_links implements sparsely)."""
    from models.pose import relink

    n = len(tracks)
    step = relink.sample_step(tracks)
    cost = np.full((n, n), np.inf)
    for i in range(n):
        for j in range(n):
            if i != j and tracks[j].times[0] > tracks[i].times[0]:
                cost[i, j] = link_cost(tracks[i], tracks[j], cuts_s, step)
    rows = [i for i in range(n) if np.isfinite(cost[i]).any()]
    cols = [j for j in range(n) if np.isfinite(cost[:, j]).any()]
    if not rows:
        return []
    links = relink._assign(tracks, cost[np.ix_(rows, cols)], np.asarray(rows), np.asarray(cols))
    return sorted((lk.head, lk.tail, round(lk.cost, 9)) for lk in links)


def _edges(tracks):
    from models.pose import relink

    step = relink.sample_step(tracks)
    return {(i, j): c for i in range(len(tracks)) for j in range(len(tracks))
            if i != j and tracks[j].times[0] > tracks[i].times[0]
            and np.isfinite(c := link_cost(tracks[i], tracks[j], (), step))}


def _crowd(people, n_pieces: int, seed: int, span_s: float) -> list[PoseTrack]:
    """``n_pieces`` tracklets cut from the two real people, placed at random times over ``span_s`` seconds and at
    random places (a crowd that comes and goes)."""
    rng = np.random.default_rng(seed)
    out = []
    for k in range(n_pieces):
        src = people[k % 2]
        a = int(rng.integers(0, len(src) - 8))
        rows = np.arange(a, min(len(src), a + int(rng.integers(4, 20))))
        p = piece(src, rows, k + 1, shift=(float(rng.uniform(-200, 800)), float(rng.uniform(-100, 300))))
        dt = float(rng.uniform(0, span_s)) - float(p.times[0])
        out.append(PoseTrack(track_id=p.track_id, frame_indices=p.frame_indices, times=p.times + dt,
                             keypoints=p.keypoints, boxes=p.boxes, scores=p.scores))
    return out


def test_sparse_planning_makes_the_joins_a_dense_matrix_makes(people):
    """Only the pairs in each other's join window are costed, and each group of candidates is assigned on its own:
    the same joins as a minimum-cost assignment over the full matrix, on crowds of tracklets that come and go."""
    for seed in range(4):
        tracks = _crowd(people, 60, seed, span_s=20.0)
        sparse = sorted((lk.head, lk.tail, round(lk.cost, 9)) for lk in plan_links(tracks))
        assert sparse == _dense_plan(tracks), seed
        assert sparse or seed  # the crowd does give joins to make


def test_a_crowd_over_minutes_is_assigned_in_blocks_with_valid_joins(people, monkeypatch):
    """A group of candidate joins larger than MAX_BLOCK ends (people coming and going in one place for minutes) is
    assigned in time-ordered blocks: every tracklet still continues at most one other and is continued by at most
    one, every join is a feasible one, and with blocks as large as the group the joins are the exact ones."""
    from models.pose import relink

    tracks = _crowd(people, 300, seed=3, span_s=40.0)
    monkeypatch.setattr(relink, "MAX_BLOCK", 10 ** 6)
    exact = sorted((lk.head, lk.tail, round(lk.cost, 9)) for lk in plan_links(tracks))
    assert exact == _dense_plan(tracks)
    assert max(len(rows) for rows, _ in relink._components(_edges(tracks))) > 7  # a group that needs blocks below
    monkeypatch.setattr(relink, "MAX_BLOCK", 7)
    blocks = plan_links(tracks)
    assert len({lk.head for lk in blocks}) == len(blocks) == len({lk.tail for lk in blocks})
    by_id = {t.track_id: t for t in tracks}
    step = relink.sample_step(tracks)
    for lk in blocks:
        assert np.isclose(lk.cost, link_cost(by_id[lk.head], by_id[lk.tail], (), step))
    assert abs(len(blocks) - len(exact)) <= max(3, len(exact) // 10)  # close to the exact assignment


def test_planning_a_long_crowded_video_needs_no_square_matrix(people):
    """Ten minutes of a crowd that comes and goes (1500 tracklets): the planner's memory stays far below what an
    n x n matrix of costs would take (18 MB here; 100 MB at 3600 tracklets)."""
    import tracemalloc

    tracks = _crowd(people, 1500, seed=7, span_s=600.0)
    tracemalloc.start()
    try:
        links = plan_links(tracks)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert links
    dense_bytes = len(tracks) ** 2 * 8
    assert peak < dense_bytes / 5, (peak, dense_bytes)
