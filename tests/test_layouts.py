import numpy as np
import pytest

from models.layouts import (
    COCO17,
    OPENPOSE17,
    OPENPOSE18,
    flip_horizontal,
    flip_permutation,
    get_layout,
    mirror_name,
    remap,
)


def _named(layout, with_conf=True):
    """Keypoints whose x encodes the joint name's index in COCO-17 (+1) so we can track them."""
    names = get_layout(layout)
    k = np.zeros((len(names), 3 if with_conf else 2), np.float32)
    for i, n in enumerate(names):
        k[i, 0] = 10 * (COCO17.index(n) + 1) if n in COCO17 else 999
        k[i, 1] = 100 + i
        if with_conf:
            k[i, 2] = 0.9
    return k


def test_layout_orders_match_the_documented_ones():
    assert COCO17[:7] == ("nose", "l_eye", "r_eye", "l_ear", "r_ear", "l_shoulder", "r_shoulder")
    assert OPENPOSE18[:5] == ("nose", "neck", "r_shoulder", "r_elbow", "r_wrist")
    assert len(OPENPOSE18) == 18 and len(OPENPOSE17) == 17 and "neck" not in OPENPOSE17
    # dropping the neck does NOT give COCO order: the bug of the original app
    assert OPENPOSE17 != COCO17 and set(OPENPOSE17) == set(COCO17)


def test_remap_coco_to_openpose17_by_name_and_back():
    k = _named("coco17")
    op = remap(k, "coco17", "openpose17")
    for j, name in enumerate(OPENPOSE17):
        assert op[j, 0] == 10 * (COCO17.index(name) + 1), name
    np.testing.assert_array_equal(remap(op, "openpose17", "coco17"), k)
    # concrete spot checks
    assert op[OPENPOSE17.index("r_wrist"), 0] == k[COCO17.index("r_wrist"), 0]
    assert op[OPENPOSE17.index("l_ankle"), 0] == k[COCO17.index("l_ankle"), 0]


def test_remap_synthesizes_neck_from_shoulders():
    k = _named("coco17")
    k[COCO17.index("l_shoulder")] = [200, 100, 0.8]
    k[COCO17.index("r_shoulder")] = [100, 120, 0.6]
    op = remap(k, "coco17", "openpose18")
    np.testing.assert_allclose(op[OPENPOSE18.index("neck")], [150, 110, 0.6])
    # one shoulder missing: the neck is missing too
    k[COCO17.index("r_shoulder")] = 0
    op = remap(k, "coco17", "openpose18")
    np.testing.assert_array_equal(op[OPENPOSE18.index("neck")], [0, 0, 0])
    # neck dropped when going back to a layout without it
    back = remap(remap(_named("coco17"), "coco17", "openpose18"), "openpose18", "coco17")
    np.testing.assert_array_equal(back, _named("coco17"))


def test_remap_keeps_missing_joints_missing_and_batches():
    k = np.stack([_named("coco17")] * 4)[None]  # (1, 4, 17, 3)
    k[0, 2, COCO17.index("nose"), 2] = 0  # missing by confidence, coordinates left over
    op = remap(k, "coco17", "openpose18")
    assert op.shape == (1, 4, 18, 3)
    np.testing.assert_array_equal(op[0, 2, OPENPOSE18.index("nose")], [0, 0, 0])
    # 2-channel arrays: (0, 0) is missing
    k2 = _named("openpose18", with_conf=False)
    k2[OPENPOSE18.index("l_shoulder")] = 0
    out = remap(k2, "openpose18", "coco17")
    np.testing.assert_array_equal(out[COCO17.index("l_shoulder")], [0, 0])


def test_remap_rejects_wrong_joint_count():
    with pytest.raises(ValueError):
        remap(np.zeros((18, 3)), "coco17", "openpose17")
    with pytest.raises(ValueError):
        get_layout("mpii")


def test_flip_mirrors_x_and_swaps_left_right():
    k = _named("openpose18")
    f = flip_horizontal(k, "openpose18", 640)
    li, ri = OPENPOSE18.index("l_wrist"), OPENPOSE18.index("r_wrist")
    assert f[li, 0] == 640 - k[ri, 0] and f[li, 1] == k[ri, 1]
    assert f[ri, 0] == 640 - k[li, 0]
    ni = OPENPOSE18.index("nose")
    assert f[ni, 0] == 640 - k[ni, 0]
    np.testing.assert_allclose(flip_horizontal(f, "openpose18", 640), k)
    assert mirror_name("l_ear") == "r_ear" and mirror_name("neck") == "neck"
    perm = flip_permutation("coco17")
    assert COCO17[perm[COCO17.index("l_hip")]] == "r_hip"


def test_flip_leaves_missing_joints_missing():
    k = _named("coco17")
    k[COCO17.index("r_elbow")] = 0
    f = flip_horizontal(k, "coco17", 100)
    np.testing.assert_array_equal(f[COCO17.index("l_elbow")], [0, 0, 0])
    k2 = _named("openpose18", with_conf=False)
    k2[OPENPOSE18.index("l_knee")] = 0
    f2 = flip_horizontal(k2, "openpose18", 640)
    np.testing.assert_array_equal(f2[OPENPOSE18.index("r_knee")], [0, 0])


def test_flipped_right_hand_wave_is_a_left_hand_wave():
    from models.action import synth

    rng = np.random.default_rng(3)
    s = synth.sample_subject(rng, "train")
    s["hand"] = "right"
    s["yaw_deg"] = 0.0
    s["p_drop"] = 0.0
    s["p_occlude"] = 0.0
    s.update(feet_y=440.0, stature_px=300.0, jitter=0.004)  # full body in view
    x = synth.render([(4, 64)], rng, subject=s)  # WAVING_1HAND with the right hand
    f = flip_horizontal(x, "openpose18", 640)

    def wrist_motion(seq, side):
        w = seq[:, OPENPOSE18.index(f"{side}_wrist")]
        sh = seq[:, OPENPOSE18.index(f"{side}_shoulder")]
        ok = (w != 0).all(1) & (sh != 0).all(1)
        raised = (w[ok, 1] < sh[ok, 1]).mean()  # image y grows downward
        return raised, w[ok].std(0).sum()

    assert wrist_motion(x, "r")[0] > 0.8 and wrist_motion(x, "l")[0] < 0.2
    assert wrist_motion(f, "l")[0] > 0.8 and wrist_motion(f, "r")[0] < 0.2
    # in the image the waving hand stays on the mirrored side: person's right is image-left
    rw = x[:, OPENPOSE18.index("r_wrist"), 0]
    lw = f[:, OPENPOSE18.index("l_wrist"), 0]
    ok = (rw > 0) & (lw > 0)
    np.testing.assert_allclose(lw[ok], 640 - rw[ok], atol=1e-3)
