"""Real training tracks: the committed set matches its manifest, windows are cut as the timeline cuts them, the
cross-validation keeps whole sources out, and training on a slice of the real set runs end to end."""
import csv
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from models.action import realdata
from models.action.crossval import assign_folds, person_outcome, person_outcomes
from models.action.dataset import CLASSES

ROOT = Path(__file__).resolve().parents[1]
DATA = realdata.DATA_DIR


def test_the_committed_training_set_matches_its_manifest():
    rows = realdata.read_manifest(DATA / "manifest.csv")
    clips = realdata.load_clips(DATA)
    assert [c.clip_id for c in clips] == [r["clip_id"] for r in rows]
    with np.load(DATA / "tracks.npz") as z:  # small: float16 keypoints
        assert all(z[k].dtype == np.float16 for k in z.files if k.endswith(".k"))
    header = realdata.load_header(DATA / "tracks.npz")
    assert header["layout"] == "coco17" and header["sample_fps"] == 11.0
    for r, c in zip(rows, clips):
        assert c.label == r["label"] and c.group == r["group"]
        assert len(r["commit"]) == 40 and r["repo"].count("/") == 1 and len(r["sha256"]) == 64, r["clip_id"]
        assert c.keypoints.shape[1:] == (17, 3) and len(c.times) == len(c.keypoints) >= 2
        assert np.all(np.diff(c.times) > 0) and c.times[0] >= -1e-6
    s = realdata.summary(clips)
    for lab in realdata.LABELS:  # every class and "none", each from more than one source
        assert s[lab]["clips"] >= 2 and s[lab]["groups"] >= 2, (lab, s[lab])
    assert s["none"]["clips"] >= 100 and sum(v["clips"] for v in s.values()) >= 250


def test_held_out_sources_are_not_in_the_training_set():
    """No repository the project keeps for measuring (../shared/held-out-sources.md) feeds the training set."""
    held = ROOT.parent / "shared" / "held-out-sources.md"
    if not held.exists():
        pytest.skip("../shared/held-out-sources.md is not beside the repository")
    import re
    text = held.read_text(encoding="utf-8")
    repos = set(re.findall(r"([\w.-]+/[\w.-]+)", text))
    owners = {m for m in re.findall(r"([\w.-]+)/\*", text)}
    for r in realdata.read_manifest(DATA / "manifest.csv"):
        assert r["repo"] not in repos and r["repo"].split("/")[0] not in owners, r["clip_id"]


def _clip(label="BOXING", group="g1", n=40, fps=11.0, seed=0, clip_id=None):
    from models.action import synth
    from models.layouts import remap
    x, _ = synth.generate_windows(1, "train", seed, window=n, classes=[CLASSES.index(label)] if label in CLASSES
                                  else [0])
    k = remap(x[0], "openpose18", "coco17")
    conf = np.where((k != 0).any(-1), 0.9, 0.0)[..., None]
    return realdata.RealClip(clip_id or f"{label.lower()}-{group}-{seed}", label, group,
                             np.arange(n) / fps, np.concatenate([k, conf], -1).astype(np.float32), fps)


def test_clip_windows_are_the_windows_the_timeline_classifies():
    """Training windows come from the timeline's own preprocessing: the same windows the classifier is given."""
    from models.action.classifier import ActionClassifier
    from models.action.timeline import classify_extraction
    from models.tracks import PoseExtraction, PoseTrack

    clf = ActionClassifier()
    c = _clip(n=60)
    seen = []
    real_predict = clf.predict
    clf.predict = lambda w, frame_size=None: (seen.append(np.array(w)), real_predict(w))[1]
    t = PoseTrack(1, np.arange(len(c.times)), c.times, c.keypoints, np.zeros((len(c.times), 4), np.float32),
                  np.ones(len(c.times), np.float32))
    classify_extraction(PoseExtraction(640, 480, 11.0, c.times, [t]), clf, stride=8)
    mine = realdata.clip_windows(c, clf.window, clf.fps, 8, clf.layout, clf.min_keypoint_conf)
    assert len(seen) == 1 and np.array_equal(seen[0], mine)
    faster = realdata.clip_windows(c, clf.window, clf.fps, 8, clf.layout, clf.min_keypoint_conf, tempo=1.25)
    assert len(faster) < len(mine)  # the same clip played faster is shorter


def test_tracks_round_trip_and_a_manifest_mismatch_is_refused(tmp_path):
    clips = [_clip("BOXING", "a", seed=1), _clip("none", "b", seed=2)]
    realdata.save_tracks(tmp_path / "tracks.npz", clips, {"layout": "coco17"})
    rows = [{"clip_id": c.clip_id, "label": c.label, "group": c.group, "repo": "o/r", "path": "v.mp4",
             "commit": "0" * 40, "start_s": "0", "end_s": "", "sha256": "f" * 64} for c in clips]
    realdata.write_manifest(tmp_path / "manifest.csv", rows)
    back = realdata.load_clips(tmp_path)
    assert [c.y for c in back] == [CLASSES.index("BOXING"), -1]
    assert np.abs(back[0].keypoints[..., :2] - clips[0].keypoints[..., :2]).max() <= 0.25  # float16 below 1024 px
    realdata.write_manifest(tmp_path / "manifest.csv", rows[:1])
    with pytest.raises(ValueError, match="disagree"):
        realdata.load_clips(tmp_path)
    rows[0]["label"] = "DANCING"
    realdata.write_manifest(tmp_path / "manifest.csv", rows)
    with pytest.raises(ValueError, match="unknown label"):
        realdata.read_manifest(tmp_path / "manifest.csv")


def test_folds_keep_whole_groups_and_spread_each_label():
    groups = ["a"] * 5 + ["b"] * 3 + ["c"] * 3 + ["d"] * 2 + ["e"] + ["f"]
    labels = ["BOXING"] * 5 + ["BOXING"] * 3 + ["none"] * 3 + ["none"] * 2 + ["BOXING"] + ["none"]
    folds = assign_folds(groups, labels, 3)
    for g in set(groups):
        assert len({f for f, gg in zip(folds, groups) if gg == g}) == 1
    assert len(set(folds.tolist())) == 3
    box = [f for f, lab in zip(folds, labels) if lab == "BOXING"]
    assert len(set(box)) == 3  # the three boxing groups land in three folds
    with pytest.raises(ValueError):
        assign_folds(groups, labels, 1)


def test_person_outcomes_count_per_label_and_per_group():
    classes = list(CLASSES)
    box, none = np.eye(6)[2] * 0.9 + 0.02, np.full(6, 1 / 6)
    assert person_outcome(box, "BOXING", classes, 0.5) == "correct"
    assert person_outcome(box, "CLAPPING_HANDS", classes, 0.5) == "wrong"
    assert person_outcome(none, "BOXING", classes, 0.5) == "uncertain"
    assert person_outcome(none, "none", classes, 0.5) == "correct"
    assert person_outcome(box, "none", classes, 0.5) == "wrong"
    assert person_outcome(None, "none", classes, 0.5) == "no window"
    t = person_outcomes([box, box, none, box], ["BOXING"] * 3 + ["none"], ["a", "a", "b", "c"], classes, 0.5)
    assert t["BOXING"]["clips"] == 3 and t["BOXING"]["groups"] == 2 and t["BOXING"]["correct"] == 2
    assert t["BOXING"]["correct_share_group_mean"] == pytest.approx(0.5)  # group a: 2/2, group b: 0/1
    assert t["none"]["wrong"] == 1 and t["all"]["clips"] == 4


torch = pytest.importorskip("torch")


def test_a_clip_without_classifiable_windows_gives_no_windows():
    """A track where too few frames show the person yields no windows (and no error): training skips it, and its
    cross-validation score is None, as the timeline leaves such a person unclassified."""
    from models.action.features import window_features
    from models.action.trainset import real_track_windows

    sparse = _clip("BOXING", n=40)
    sparse.keypoints[3:, :, 2] = 0  # the person seen in the first three frames only
    w = real_track_windows([sparse, _clip("BOXING", n=60)])
    assert w[0].shape[0] == 0 and w[0].shape[1:] == w[1].shape[1:] and len(w[1]) > 0
    assert window_features(np.zeros((0, 32, 17, 3), np.float32), "openpose17").shape == (0, 32, 34)


def test_train_on_a_small_slice_of_the_real_set(tmp_path):
    """``python -m models train --real DIR``: generated windows plus real tracks, cross-validated by source."""
    rows = realdata.read_manifest(DATA / "manifest.csv")
    keep = []
    for lab in realdata.LABELS:  # three clips of every label, from different groups where possible
        seen = set()
        for r in rows:
            if r["label"] == lab and r["group"] not in seen and len(seen) < 3:
                seen.add(r["group"])
                keep.append(r)
    every = realdata.load_clips(DATA)
    # and a clip too short for any window (its out-of-fold score is None)
    from models.action.trainset import real_track_windows
    short = next(c for c, w in zip(every, real_track_windows(every)) if not len(w))
    keep.append(next(r for r in rows if r["clip_id"] == short.clip_id))
    ids = {r["clip_id"] for r in keep}
    clips = [c for c in every if c.clip_id in ids]
    slice_dir = tmp_path / "real"
    realdata.save_tracks(slice_dir / "tracks.npz", clips, realdata.load_header(DATA / "tracks.npz"))
    realdata.write_manifest(slice_dir / "manifest.csv", keep)
    out = tmp_path / "model"
    proc = subprocess.run([sys.executable, "-m", "models", "train", "--real", str(slice_dir), "--out", str(out),
                           "--n-train", "8", "--n-val", "4", "--n-test", "4", "--epochs", "1", "--finetune-epochs", "1",
                           "--max-steps", "2", "--cv-folds", "2", "--threads", "1", "--quiet"],
                          cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    card = json.loads((out / "gru_har.card.json").read_text())
    assert card["training_data"]["kind"] == "synthetic + real tracks"
    assert card["normalization"] == "person"
    cv = card["real_training"]["cross_validation"]
    assert cv["folds"] == 2 and cv["outcomes"]["all"]["clips"] == len(keep)
    report = json.loads((out / "eval_report.json").read_text())
    folds = {c["group"]: set() for c in report["real"]["cross_validation"]["per_clip"]}
    for c in report["real"]["cross_validation"]["per_clip"]:
        folds[c["group"]].add(c["fold"])
    assert all(len(f) == 1 for f in folds.values())  # a source is never split across folds
    assert "real_out_of_fold" in card["calibration"]
    with open(slice_dir / "manifest.csv", newline="") as fh:
        assert len(list(csv.DictReader(fh))) == len(keep)
    assert card["regenerate"] == f"python -m models train --seed 0 --out {out}"
