"""Dataset loader/writer, synthetic generator and window features."""
from pathlib import Path

import numpy as np
import pytest

from models.action import synth
from models.action.dataset import CLASSES, load_split, read_x, write_split
from models.action.features import fill_gaps, window_features
from models.layouts import OPENPOSE18, remap

SAMPLE = Path(__file__).resolve().parent / "data" / "har_sample"


def test_loader_reads_the_sample_file_pair():
    ws = load_split(SAMPLE, "test")
    assert ws.x.shape == (12, 32, 18, 2) and ws.x.dtype == np.float32
    assert sorted(ws.y.tolist()) == sorted(list(range(6)) * 2)  # labels 1..6 on disk -> 0..5
    assert ws.x.max() < 640 and ws.x.min() >= 0
    assert ((ws.x == 0).all(-1)).any(), "the sample has missing joints (0, 0)"
    first = [float(v) for v in (SAMPLE / "X_test.txt").read_text().splitlines()[0].split(",")]
    np.testing.assert_allclose(ws.x[0, 0].reshape(-1), first, rtol=1e-6)


def test_writer_round_trip(tmp_path):
    x, y = synth.generate_windows(1, "train", seed=5)
    write_split(tmp_path, "train", x, y)
    back = load_split(tmp_path, "train")
    np.testing.assert_allclose(back.x, x, atol=1e-3)
    np.testing.assert_array_equal(back.y, y)
    assert (tmp_path / "Y_train.txt").read_text().split() == [str(v + 1) for v in y]


def test_loader_rejects_bad_files(tmp_path):
    (tmp_path / "X_test.txt").write_text("1,2,3\n")
    with pytest.raises(ValueError):
        read_x(tmp_path / "X_test.txt")
    (tmp_path / "X_test.txt").write_text(",".join(["1"] * 36) + "\n")  # 1 frame, not a window
    with pytest.raises(ValueError):
        read_x(tmp_path / "X_test.txt")


def test_generator_is_deterministic_and_shaped():
    a = synth.generate_windows(2, "train", seed=11)
    b = synth.generate_windows(2, "train", seed=11)
    c = synth.generate_windows(2, "train", seed=12)
    np.testing.assert_array_equal(a[0], b[0])
    np.testing.assert_array_equal(a[1], b[1])
    assert not np.array_equal(a[0], c[0])
    x, y = a
    assert x.shape == (12, 32, 18, 2) and y.shape == (12,)
    assert sorted(np.bincount(y).tolist()) == [2] * len(CLASSES)
    present = (x != 0).any(-1)
    assert present.mean() > 0.6
    assert (x[..., 0][present] < 640).all() and (x[..., 1][present] < 480).all()
    seq = synth.generate_sequence([(0, 2.0), (2, 2.0)], seed=1)
    assert seq.shape == (88, 18, 2)


def test_heldout_split_uses_other_generator_ranges():
    rng = np.random.default_rng(0)
    tr = [synth.sample_subject(rng, "train") for _ in range(200)]
    te = [synth.sample_subject(rng, "test") for _ in range(200)]
    for key in ("shoulder_w", "yaw_deg", "center_x"):
        lo, hi = synth.SPLIT_PARAMS["train"][key][0]
        # side and back views are drawn alike in every split, beyond the split's yaw range
        assert all(lo <= s[key] <= hi for s in tr if key != "yaw_deg" or s["view"] == "front")
        assert all(not (lo < s[key] < hi) for s in te), key
    views = [s["view"] for s in tr]
    assert 0.1 < views.count("side") / len(views) < 0.3 and 0.02 < views.count("back") / len(views) < 0.15
    assert all(abs(s["yaw_deg"]) > 40 for s in tr + te if s["view"] != "front")


def test_generated_actions_look_like_the_actions():
    rng = np.random.default_rng(7)
    s = synth.sample_subject(rng, "train")
    s.update(p_drop=0.0, p_occlude=0.0, yaw_deg=0.0, roll_deg=0.0, feet_y=420.0, stature_px=300.0, jitter=0.004)
    j = {n: i for i, n in enumerate(OPENPOSE18)}

    def render(a):
        return synth.render([(a, 64)], np.random.default_rng(1), subject=s)

    jacks, jump, wave2, clap = render(1), render(0), render(3), render(5)
    # jumping jacks raise the wrists above the head and open the legs; jumping moves the hips, feet together
    assert (jacks[:, j["l_wrist"], 1] < jacks[:, j["nose"], 1]).mean() > 0.2
    ankles = np.abs(jacks[:, j["l_ankle"], 0] - jacks[:, j["r_ankle"], 0])
    assert np.ptp(ankles) > 20
    assert np.ptp(np.abs(jump[:, j["l_ankle"], 0] - jump[:, j["r_ankle"], 0])) < 0.5 * np.ptp(ankles)
    assert np.ptp(jump[:, j["r_hip"], 1]) > 15
    # clapping: the wrists come close together, then part, at the body's midline
    ww = np.abs(clap[:, j["l_wrist"], 0] - clap[:, j["r_wrist"], 0])
    sw = np.abs(clap[:, j["l_shoulder"], 0] - clap[:, j["r_shoulder"], 0]).mean()
    assert ww.min() < 0.5 * sw and ww.max() > ww.min() + 0.15 * sw
    # two-hand waving keeps both wrists above the shoulders all the time
    assert (wave2[:, j["l_wrist"], 1] < wave2[:, j["l_shoulder"], 1]).all()
    assert (wave2[:, j["r_wrist"], 1] < wave2[:, j["r_shoulder"], 1]).all()


def test_fill_gaps_interpolates_short_gaps_only():
    k = np.zeros((1, 12, 1, 2), np.float32)
    k[0, :, 0, 0] = np.arange(12) + 1.0
    k[0, :, 0, 1] = 7.0
    k[0, [0, 3, 4, 7, 8, 9, 10, 11], 0] = 0
    xy, p = fill_gaps(k, max_gap=2)
    np.testing.assert_allclose(xy[0, :7, 0, 0], [2, 2, 3, 4, 5, 6, 7])  # inner gap interpolated, start held
    assert not p[0, 7:, 0].any()  # a 5-frame gap at the end stays missing


def test_person_normalization_is_invariant_to_framing():
    x, _ = synth.generate_windows(1, "train", seed=3, p_transition=0.0)
    k = remap(x, "openpose18", "openpose17")
    moved = np.where((k != 0).any(-1, keepdims=True), k * 0.6 + np.array([50.0, 30.0], np.float32), 0)
    a = window_features(k, "openpose17", "person")
    b = window_features(moved, "openpose17", "person")
    np.testing.assert_allclose(a, b, atol=1e-4)
    fa = window_features(k, "openpose17", "frame")
    fb = window_features(moved, "openpose17", "frame")
    assert np.abs(fa - fb).max() > 0.05  # frame-size normalization is not
    assert a.shape == (6, 32, 34) and np.isfinite(a).all()


def test_person_scale_holds_in_a_side_view_without_hips():
    """Upper body, no hips: the scale must not collapse when the shoulders overlap (a profile view)."""
    rng = np.random.default_rng(2)
    s = synth.sample_subject(rng, "train")
    s.update(p_drop=0.0, p_occlude=0.0, feet_y=440.0, stature_px=300.0, pitch_deg=0.0, roll_deg=0.0)
    feats = {}
    for yaw in (0.0, 88.0):
        s["yaw_deg"] = yaw
        x = synth.render([(5, 32)], np.random.default_rng(0), subject=s)
        k = remap(x[None], "openpose18", "openpose17")
        k[:, :, [7, 8, 9, 10, 11, 12]] = 0  # hips, knees, ankles out of the frame
        feats[yaw] = window_features(k, "openpose17", "person")
    spread = {yaw: np.abs(f[f != 0]).max() for yaw, f in feats.items()}
    assert spread[88.0] < 2.0 * spread[0.0], spread


def test_features_survive_missing_hips_and_empty_windows():
    x, _ = synth.generate_windows(1, "train", seed=4, p_transition=0.0)
    k = remap(x, "openpose18", "openpose17")
    k[:, :, [7, 10]] = 0  # both hips gone (openpose17: r_hip 7, l_hip 10)
    f = window_features(k, "openpose17", "person")
    assert np.isfinite(f).all() and np.abs(f).max() < 20
    empty = window_features(np.zeros((2, 32, 17, 3), np.float32), "openpose17", "person")
    assert (empty == 0).all()


def test_non_finite_keypoints_are_missing_not_nan_features():
    x, _ = synth.generate_windows(1, "train", seed=5, p_transition=0.0)
    k = remap(x[:1], "openpose18", "openpose17")
    k = np.concatenate([k, np.ones(k.shape[:-1] + (1,), np.float32)], -1)
    k[0, 3, 4, 0] = np.inf  # a corrupt coordinate on a "present" joint
    k[0, 5, 2, 1] = np.nan
    f = window_features(k, "openpose17", "person")
    assert np.isfinite(f).all()
    from models.layouts import present_mask
    assert not present_mask(k)[0, 3, 4] and not present_mask(k)[0, 5, 2]


def test_real_data_validation_windows_share_no_frames_with_training_windows():
    from models.action.train import holdout_split
    # file order as in RNN-HAR-2D-Pose: per class, consecutive windows sliding by 6 frames (26 of 32 shared)
    frames, y = [], []
    for c in range(6):
        start = 10_000 * c
        for w in range(40):
            frames.append(start + 6 * w + np.arange(32))
            y.append(c)
    frames, y = np.array(frames), np.array(y)
    fit, val = holdout_split(y)
    assert len(val) >= 6 and set(y[val]) == set(range(6)) and not set(fit) & set(val)
    assert not set(frames[fit].ravel()) & set(frames[val].ravel())


def test_negatives_cover_every_kind_and_are_deterministic():
    x, kinds = synth.generate_negatives(120, "train", seed=3)
    assert x.shape == (120, 32, 18, 2) and x.dtype == np.float32 and np.isfinite(x).all()
    assert set(kinds) == set(synth.NEGATIVE_KINDS)
    x2, kinds2 = synth.generate_negatives(120, "train", seed=3)
    np.testing.assert_array_equal(x, x2)
    assert kinds == kinds2
    rng = np.random.default_rng(0)
    upper = [i for i, n in enumerate(OPENPOSE18) if n in ("nose", "neck", "l_shoulder", "r_shoulder")]
    for name in synth.STILL_POSES + synth.SLOW_MOVES:
        seq = synth.render([(name, 32)], rng, split="test", camera_drift=True)
        assert np.isfinite(seq).all() and ((seq[:, upper] != 0).any(-1)).mean() > 0.5, name


def _wrist_motion(seq18):
    """Spread (temporal std) of both wrists over the window in person-normalized units."""
    f = window_features(remap(seq18[None], "openpose18", "openpose17"), "openpose17", "person")[0]
    w = f.reshape(32, 17, 2)[:, [3, 6]]  # openpose17: r_wrist 3, l_wrist 6
    return float(np.linalg.norm(w.std(axis=0), axis=-1).mean())


def test_every_action_needs_its_motion():
    """The same subject and phase: performing an action moves the wrists far more than the same
    action frozen (time_scale 0) or nearly frozen (the slowest negative), detector jitter included."""
    for c in range(len(CLASSES)):
        s = synth.sample_subject(np.random.default_rng(c), "train")
        s.update(jitter=0.004, p_drop=0.0, p_occlude=0.0, feet_y=440.0, stature_px=300.0)  # full body in view
        moving = synth.render([(c, 32)], np.random.default_rng(50 + c), subject=s, time_scale=1.0)
        frozen = synth.render([(c, 32)], np.random.default_rng(50 + c), subject=s, time_scale=0.0)
        slow = synth.render([(c, 32)], np.random.default_rng(50 + c), subject=s,
                            time_scale=synth.MAX_FROZEN_TIME_SCALE)
        m, f, sl = _wrist_motion(moving), _wrist_motion(frozen), _wrist_motion(slow)
        assert m > 2.0 * max(f, sl), (CLASSES[c], m, f, sl)


def test_pad_indices_play_a_short_clip_back_and_forth():
    from models.action.features import pad_indices
    assert pad_indices(5, 12).tolist() == [0, 1, 2, 3, 4, 3, 2, 1, 0, 1, 2, 3]
    assert pad_indices(1, 4).tolist() == [0, 0, 0, 0]
    assert pad_indices(32, 32).tolist() == list(range(32))
    with pytest.raises(ValueError):
        pad_indices(0, 32)


def test_short_clip_windows_are_a_run_of_frames_played_back_and_forth():
    from models.action.features import pad_indices
    x, _ = synth.generate_windows(1, "train", seed=6, p_transition=0.0)
    w = x[0]
    s = synth.short_clip(w, np.random.default_rng(0))
    assert s.shape == w.shape
    # find the run: the first frames of the short clip are consecutive frames of the window
    a0 = next(i for i in range(32) if np.array_equal(w[i], s[0]))
    n = next(n for n in range(synth.SHORT_CLIP_FRAMES[0], synth.SHORT_CLIP_FRAMES[1] + 1)
             if np.array_equal(w[a0:a0 + n][pad_indices(n, 32)], s))
    assert synth.SHORT_CLIP_FRAMES[0] <= n <= synth.SHORT_CLIP_FRAMES[1]


def test_mirror_features_are_the_features_of_the_mirrored_video():
    from models.action.features import mirror_features
    from models.layouts import flip_horizontal
    x, _ = synth.generate_windows(2, "train", seed=8)
    k = remap(x, "openpose18", "openpose17")
    for norm in ("person", "frame"):
        a = mirror_features(window_features(k, "openpose17", norm), "openpose17", norm)
        b = window_features(flip_horizontal(k, "openpose17", 640.0), "openpose17", norm)
        np.testing.assert_allclose(a, b, atol=1e-4)


def test_upper_body_shots_lose_the_legs_but_keep_the_arms():
    rng = np.random.default_rng(3)
    subjects = [synth.sample_subject(rng, "train") for _ in range(400)]
    upper = [s for s in subjects if s["upper_body"]]
    front = [s for s in upper if s["view"] == "front"]  # (a side view hides the far arm at times)
    assert 0.25 < len(upper) / len(subjects) < 0.55
    j = {n: i for i, n in enumerate(OPENPOSE18)}
    for i, s in enumerate(front[:20]):
        s.update(p_drop=0.0, p_occlude=0.0)
        seq = synth.render([(5, 32)], np.random.default_rng(i), subject=s)  # clapping
        present = (seq != 0).any(-1)
        assert not present[:, [j["l_ankle"], j["r_ankle"]]].any()
        assert present[:, [j["l_shoulder"], j["r_shoulder"], j["l_wrist"], j["r_wrist"]]].mean() > 0.9
