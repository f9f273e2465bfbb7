"""``python -m models``: run (end to end on real video files), evaluate, train (smoke)."""
import json
import subprocess
import sys
from pathlib import Path

import pytest

from models.cli import build_parser, main

ROOT = Path(__file__).resolve().parent.parent
ACTION_MODEL = ROOT / "models" / "artifacts" / "action" / "gru_har_int8.onnx"
POSE_MODEL = ROOT / "models" / "artifacts" / "pose" / "yolo11n-pose.onnx"
need_models = pytest.mark.skipif(not (ACTION_MODEL.exists() and POSE_MODEL.exists()), reason="models missing")


def test_parser_knows_the_commands():
    p = build_parser()
    a = p.parse_args(["run", "v.mp4", "--imgsz", "320", "--fps", "15", "--stride", "4", "--out", "r.json"])
    assert (a.video, a.imgsz, a.fps, a.stride, a.out) == ("v.mp4", 320, 15.0, 4, "r.json")
    a = p.parse_args(["train", "--synthetic", "--out", "x"])
    assert a.synthetic and a.out == "x" and a.data is None
    a = p.parse_args(["evaluate", "--n", "5"])
    assert a.n == 5
    with pytest.raises(SystemExit):
        p.parse_args(["train", "--synthetic", "--data", "d"])


@need_models
def test_run_people_video_end_to_end(tmp_path):
    from media import make_people_video
    video = make_people_video(tmp_path / "people.mp4", seconds=2.5, fps=30.0)
    out = tmp_path / "report.json"
    saved = tmp_path / "tracks.npz"
    proc = subprocess.run([sys.executable, "-m", "models", "run", str(video), "--imgsz", "320", "--stride", "8",
                           "--out", str(out), "--save-extraction", str(saved), "--quiet"],
                          cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    r = json.loads(out.read_text())
    assert r["status"] == "ok"
    assert r["classes"][0] == "JUMPING" and len(r["classes"]) == 6
    assert r["video"]["width"] == 640 and r["video"]["height"] == 360
    # poses sampled at half the model's 22 Hz (models.pose.default_sample_fps), interpolated back by the timeline
    assert abs(r["video"]["sampled_fps"] - 11.0) < 0.5
    assert r["models"]["action"]["name"] == "gru_har" and len(r["models"]["action"]["sha256"]) == 64
    assert r["models"]["pose"]["name"]
    assert len(r["persons"]) == 2, "the photo has two people, tracked for the whole 2.5 s clip"
    for p in r["persons"]:
        assert p["label"] in r["classes"] + ["uncertain"] and p["windows"] and p["segments"]
    assert "torch" not in proc.stderr
    from models.tracks import PoseExtraction
    ex = PoseExtraction.from_bytes(saved.read_bytes())
    assert sorted(t.track_id for t in ex.tracks) == [p["track_id"] for p in r["persons"]]
    # guided: between the scheduled whole frames, crops, or (at --imgsz 320 the whole frame costs less than two
    # 224 px crops) the whole frame for the pair
    g = ex.meta["guided"]
    assert ex.meta["pose_mode"] == "guided" and g["crop_frames"] + g["crowd_frames"] > 0


@need_models
def test_run_empty_video_reports_no_person(tmp_path, capsys):
    from media import make_empty_video
    video = make_empty_video(tmp_path / "empty.mp4", seconds=2.0)
    assert main(["run", str(video), "--imgsz", "320", "--quiet"]) == 0
    r = json.loads(capsys.readouterr().out)
    assert r["status"] == "no_person" and r["persons"] == []


def test_run_bad_file_fails_cleanly(tmp_path, capsys):
    if not (ACTION_MODEL.exists() and POSE_MODEL.exists()):
        pytest.skip("models missing")
    bad = tmp_path / "bad.mp4"
    bad.write_bytes(b"not a video")
    assert main(["run", str(bad), "--imgsz", "320", "--quiet"]) == 2
    assert "error" in capsys.readouterr().err


@pytest.mark.skipif(not ACTION_MODEL.exists(), reason="action model missing")
def test_evaluate_command(capsys):
    assert main(["evaluate", "--n", "10"]) == 0
    r = json.loads(capsys.readouterr().out)
    assert r["n"] == 60 and r["accuracy"] >= 0.9 and len(r["confusion"]) == 6


@pytest.mark.skipif(not ACTION_MODEL.exists(), reason="action model missing")
def test_evaluate_on_files_in_dataset_format(capsys):
    assert main(["evaluate", "--data", str(ROOT / "tests" / "data" / "har_sample"), "--split", "test"]) == 0
    r = json.loads(capsys.readouterr().out)
    assert r["n"] == 12 and r["accuracy"] >= 0.75


def test_train_command_smoke(tmp_path, capsys):
    pytest.importorskip("torch")
    pytest.importorskip("onnx")
    rc = main(["train", "--synthetic", "--out", str(tmp_path), "--n-train", "4", "--n-val", "2", "--n-test", "2",
               "--epochs", "1", "--finetune-epochs", "1", "--max-steps", "1", "--normalization", "person",
               "--threads", "1", "--quiet"])
    assert rc == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["normalization"] == "person" and set(summary["test_accuracy"]) == {"fp32", "pruned", "int8"}
    assert (tmp_path / "gru_har_int8.onnx").exists() and (tmp_path / "gru_har.card.json").exists()


def test_train_command_needs_its_real_tracks(tmp_path, capsys):
    """Without --data or --synthetic, training uses the real tracks (models/data/real by default): a folder
    without them is a clear error, not a model trained on something else."""
    pytest.importorskip("torch")
    assert main(["train", "--real", str(tmp_path / "missing"), "--out", str(tmp_path / "out")]) == 2
    assert "no real tracks" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


@need_models
def test_video_shorter_than_min_track_s_reports_too_short_with_its_short_tracks(tmp_path, capsys):
    from media import make_people_video
    video = make_people_video(tmp_path / "short.mp4", seconds=0.5, fps=30.0)  # 11 frames at 22 Hz: 0.5 s < 0.7 s
    assert main(["run", str(video), "--imgsz", "320", "--fps", "22", "--quiet"]) == 0
    r = json.loads(capsys.readouterr().out)
    assert r["status"] == "too_short" and r["persons"] == [] and r["params"]["min_track_s"] == 0.7
    assert len(r["short_tracks"]) == 2
    assert all(t["frames"] == r["video"]["frames_sampled"] == 11 for t in r["short_tracks"])
    assert main(["run", str(video), "--imgsz", "320", "--out", str(tmp_path / "r.json")]) == 0
    assert "too_short: people tracked too briefly to classify" in capsys.readouterr().err


@need_models
def test_single_frame_video_is_refused_with_a_reason(tmp_path, capsys):
    from media import make_people_video
    video = make_people_video(tmp_path / "one.mp4", seconds=1 / 30, fps=30.0)
    assert main(["run", str(video), "--imgsz", "320", "--quiet"]) == 2
    assert "single still image" in capsys.readouterr().err


@pytest.mark.parametrize("args", [["--fps", "-5"], ["--fps", "0"], ["--fps", "nan"], ["--imgsz", "300"],
                                  ["--imgsz", "0"], ["--stride", "0"], ["--threads", "-1"], ["--batch-size", "0"],
                                  ["--min-track-s", "-1"]])
def test_run_rejects_bad_numbers_before_loading_anything(args, capsys):
    with pytest.raises(SystemExit) as exc:
        build_parser().parse_args(["run", "v.mp4", *args])
    assert exc.value.code == 2 and args[0] in capsys.readouterr().err


@need_models
@pytest.mark.parametrize("flag", ["--action-model", "--pose-model"])
def test_run_with_a_missing_model_fails_cleanly(tmp_path, capsys, flag):
    assert main(["run", str(tmp_path / "v.mp4"), flag, str(tmp_path / "nope.onnx"), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error:") and "nope.onnx" in err and "Traceback" not in err


@need_models
def test_run_with_an_unwritable_out_fails_cleanly(tmp_path, capsys):
    from media import make_people_video
    video = make_people_video(tmp_path / "short.mp4", seconds=0.5, fps=30.0)
    (tmp_path / "dir").mkdir()
    assert main(["run", str(video), "--imgsz", "320", "--quiet", "--out", str(tmp_path / "dir")]) == 2
    assert capsys.readouterr().err.startswith("error: cannot write")
