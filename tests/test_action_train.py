"""A tiny training run: train -> prune -> export ONNX (MatMul GRU) -> int8 -> card + report."""
import json

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("onnx")
pytest.importorskip("tqdm")


def test_smoke_train_exports_and_quantizes(tmp_path):
    from models.action.classifier import ActionClassifier
    from models.action.train import train

    r = train(tmp_path, n_train=8, n_val=4, n_test=4, epochs=1, finetune_epochs=1, max_steps=2,
              progress=False, latency_runs=5, normalization="person", threads=1)
    assert not (tmp_path / "gru_har_pruned.onnx").exists()  # intermediate, not shipped
    for name in ("gru_har_fp32.onnx", "gru_har_int8.onnx", "gru_har.card.json",
                 "gru_har.card.md", "eval_report.md", "eval_report.json"):
        assert (tmp_path / name).exists(), name
    assert r["int8_vs_fp32_size_ratio"] >= 3.0
    assert r["onnx_vs_torch_max_abs_diff"] < 1e-4
    assert abs(r["sparsity"]["overall_prunable"] - 0.5) < 0.01
    import onnx
    ops = {n.op_type for n in onnx.load(str(tmp_path / "gru_har_int8.onnx")).graph.node}
    assert "MatMulInteger" in ops and "GRU" not in ops
    card = json.loads((tmp_path / "gru_har.card.json").read_text())
    assert card["layout"] == "openpose17" and card["normalization"] == "person"
    assert card["test_time_mirror"] is True
    cal = card["calibration"]
    assert cal["level"].startswith("person") and cal["n_idle"] > 0 and "windows_at_threshold" in cal
    assert card["uncertain_threshold"] == cal["threshold"] >= 0.35
    clf = ActionClassifier(tmp_path / "gru_har_int8.onnx")
    p = clf.predict(np.zeros((2, 32, 34), np.float32))
    assert p.shape == (2, 6)


def test_smoke_train_from_files_in_dataset_format(tmp_path):
    """``--data DIR``: the RNN-HAR-2D-Pose file format drives the same pipeline."""
    from models.action import synth
    from models.action.dataset import write_split
    from models.action.train import train

    data = tmp_path / "data"
    write_split(data, "train", *synth.generate_windows(6, "train", seed=1))
    write_split(data, "test", *synth.generate_windows(2, "test", seed=2))
    r = train(tmp_path / "out", data_dir=data, synthetic=False, epochs=1, finetune_epochs=1, max_steps=2,
              progress=False, latency_runs=5, normalization="auto", threads=1)
    # per class: the last window validates, the ones overlapping it are left out, the first one trains
    assert r["splits"]["test"] == 12 and r["splits"]["train"] == 6 and r["splits"]["val"] == 6
    assert set(r["normalization_comparison"]) == {"person", "frame"}
    card = json.loads((tmp_path / "out" / "gru_har.card.json").read_text())
    assert card["training_data"]["kind"] == "RNN-HAR-2D-Pose-database"
    assert card["regenerate"].startswith("python -m models train --data ")
