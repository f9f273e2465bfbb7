"""The shipped int8 action model: card, hash, accuracy on generated held-out data, timelines."""
import json

import numpy as np
import pytest

from models.action import synth
from models.action.classifier import DEFAULT_MODEL, ActionClassifier, find_card, sha256_file
from models.action.timeline import classify_extraction
from models.layouts import remap
from models.tracks import PoseExtraction, PoseTrack

pytestmark = pytest.mark.skipif(not DEFAULT_MODEL.exists(), reason="shipped action model missing")


@pytest.fixture(scope="module")
def clf():
    return ActionClassifier()


def test_card_describes_the_model(clf):
    card = json.loads(clf.card_path.read_text())
    assert clf.classes == card["classes"] and len(clf.classes) == 6
    assert clf.window == 32 and abs(clf.fps - 22.0) < 1e-6
    assert clf.layout == "openpose17" and clf.joints[0] == "nose" and "neck" not in clf.joints
    assert clf.normalization in ("person", "frame")
    assert 0.0 < clf.uncertain_threshold < 1.0
    assert clf.sha256 == sha256_file(DEFAULT_MODEL) == card["files"]["int8"]["sha256"]
    assert clf.info == {"name": card["name"], "version": card["version"], "sha256": clf.sha256}
    fp32 = DEFAULT_MODEL.with_name(card["files"]["fp32"]["path"])
    assert fp32.stat().st_size >= 3 * DEFAULT_MODEL.stat().st_size
    assert card["metrics"]["int8"]["accuracy"] >= 0.97
    assert card["metrics"]["accuracy_drop_int8_vs_fp32_points"] <= 1.0
    assert all(card["metrics"]["checks"].values()), card["metrics"]["checks"]
    assert "python -m models train" in card["regenerate"]


def test_inference_modules_do_not_import_torch():
    import subprocess
    import sys
    code = ("import sys; import models.action.classifier, models.action.timeline, models.cli; "
            "from models.action.classifier import ActionClassifier; ActionClassifier(); "
            "assert 'torch' not in sys.modules, 'torch imported'")
    subprocess.run([sys.executable, "-c", code], check=True, cwd=str(DEFAULT_MODEL.parents[3]))


def test_int8_accuracy_on_fresh_heldout_windows(clf):
    x, y = synth.generate_windows(25, "test", seed=4242)  # held-out generator ranges, unseen seed
    probs = clf.predict(remap(x, "openpose18", clf.layout))
    assert probs.shape == (150, 6)
    np.testing.assert_allclose(probs.sum(1), 1, atol=1e-4)
    acc = (probs.argmax(1) == y).mean()
    assert acc >= 0.95, acc


def test_a_window_and_its_mirror_image_get_the_same_probabilities(clf):
    """The card asks for test-time mirroring: the output is the mean over a window and its mirror image, so a
    mirrored video (left and right swapped) gets the same answer."""
    from models.layouts import flip_horizontal
    assert clf.mirror
    x, _ = synth.generate_windows(2, "test", seed=77)
    k = remap(x, "openpose18", clf.layout)
    np.testing.assert_allclose(clf.predict(k), clf.predict(flip_horizontal(k, clf.layout, 640.0)), atol=1e-4)


def test_predict_accepts_features_and_rejects_wrong_windows(clf):
    x, _ = synth.generate_windows(1, "test", seed=1)
    k = remap(x, "openpose18", clf.layout)
    np.testing.assert_allclose(clf.predict(k), clf.predict(clf.features(k)), atol=1e-6)
    with pytest.raises(ValueError):
        clf.predict(np.zeros((1, 16, 34), np.float32))
    assert clf.predict(np.zeros((0, 32, 34), np.float32)).shape == (0, 6)


def _coco_track(seq18, fps, scale=1.5, offset=(200.0, 60.0), track_id=1):
    """OpenPose-18 pixels (640x480) -> COCO-17 (x, y, conf) in a 1280x720 video."""
    present = (seq18 != 0).any(-1, keepdims=True)
    xy = np.where(present, seq18 * scale + np.array(offset, np.float32), 0)
    k = np.concatenate([xy, present.astype(np.float32) * 0.9], -1)
    k = remap(k, "openpose18", "coco17")
    n = len(k)
    return PoseTrack(track_id=track_id, frame_indices=np.arange(n), times=np.arange(n) / fps,
                     keypoints=k.astype(np.float32), boxes=np.zeros((n, 4), np.float32),
                     scores=np.full(n, 0.9, np.float32))


def _extraction(tracks, fps, n):
    return PoseExtraction(width=1280, height=720, sampled_fps=fps, frame_times=np.arange(n) / fps,
                          tracks=tracks, layout="coco17", meta={})


@pytest.mark.parametrize("fps", [22.0, 30.0])
def test_timeline_labels_each_action_from_coco_tracks(clf, fps):
    """Real-speed motion sampled at 22 or 30 Hz, COCO-17 order, another frame size: all six right."""
    wrong = []
    for c, name in enumerate(clf.classes):
        seq = synth.generate_sequence([(c, 4.0)], split="test", seed=100 + c, fps=fps)
        r = classify_extraction(_extraction([_coco_track(seq, fps)], fps, len(seq)), clf)
        (p,) = r["persons"]
        if p["label"] != name:
            wrong.append((name, p["label"], p["confidence"]))
    assert len(wrong) <= 1, wrong


def test_timeline_finds_two_actions_in_order(clf):
    seq = synth.generate_sequence([(1, 4.0), (4, 4.0)], split="test", seed=7)
    r = classify_extraction(_extraction([_coco_track(seq, 22.0)], 22.0, len(seq)), clf, stride=4)
    labels = [s["label"] for s in r["persons"][0]["segments"]
              if s["end_s"] - s["start_s"] > 0.5 and s["label"] != "uncertain"]
    assert labels == ["JUMPING_JACKS", "WAVING_1HAND"], r["persons"][0]["segments"]


def test_mirrored_video_keeps_the_label(clf):
    from models.layouts import flip_horizontal
    x, y = synth.generate_windows(10, "test", seed=99)
    k = remap(x, "openpose18", clf.layout)
    a = clf.predict(k).argmax(1)
    b = clf.predict(flip_horizontal(k, clf.layout, 640)).argmax(1)
    assert (a == y).mean() >= 0.9 and (b == y).mean() >= 0.9


def test_static_poses_are_uncertain(clf):
    """No periodic motion (standing, or holding any pose) is none of the six actions."""
    idle = np.stack([synth.render([(synth.IDLE, 32)], np.random.default_rng(5000 + i), split="test")
                     for i in range(60)])
    probs = clf.predict(remap(idle, "openpose18", clf.layout))
    assert (probs.max(1) < clf.uncertain_threshold).mean() >= 0.85


def test_non_finite_input_never_reaches_the_model(clf):
    x, _ = synth.generate_windows(1, "test", seed=2)
    k = remap(x, "openpose18", clf.layout)
    k = np.concatenate([k, np.ones(k.shape[:-1] + (1,), np.float32)], -1)
    k[0, 3, 4, 0] = np.inf
    p = clf.predict(k)
    assert np.isfinite(p).all()
    np.testing.assert_allclose(p.sum(1), 1, atol=1e-3)
    f = clf.features(k[:, :, :, :2].copy())
    f[0, 0, 0], f[0, 1, 1] = np.nan, np.inf
    assert np.isfinite(clf.predict(f)).all()


@pytest.mark.parametrize("change", [
    lambda c: c.update(joints=c["joints"][1:] + c["joints"][:1]),  # another joint order
    lambda c: c.update(window=16),
    lambda c: c.update(classes=c["classes"][:5]),
])
def test_a_card_that_does_not_describe_the_model_is_refused(tmp_path, change):
    import shutil
    model = tmp_path / DEFAULT_MODEL.name
    shutil.copy(DEFAULT_MODEL, model)
    card = json.loads(find_card(DEFAULT_MODEL).read_text())
    change(card)
    (tmp_path / "gru_har.card.json").write_text(json.dumps(card))
    with pytest.raises(ValueError):
        ActionClassifier(model)
