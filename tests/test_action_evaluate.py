import numpy as np

from models.action.evaluate import calibrate_threshold, confusion_matrix, metrics


def test_metrics_and_confusion():
    y = np.array([0, 0, 1, 1, 2])
    p = np.eye(3)[[0, 1, 1, 1, 2]]
    m = metrics(y, p, ["a", "b", "c"])
    assert m["accuracy"] == 0.8
    assert m["confusion"] == [[1, 1, 0], [0, 2, 0], [0, 0, 1]]
    assert abs(m["per_class"]["a"]["f1"] - 2 / 3) < 1e-9 and m["per_class"]["c"]["f1"] == 1.0
    assert confusion_matrix([2], [0], 3)[2, 0] == 1


def test_threshold_rejects_low_confidence_errors_and_idle():
    rng = np.random.default_rng(0)
    n = 200
    y = rng.integers(0, 3, n)
    p = np.full((n, 3), 0.02)
    p[np.arange(n), y] = 0.96  # confident and right
    wrong = np.arange(20)
    p[wrong] = [0.3, 0.4, 0.3]  # unsure and mostly wrong
    y[wrong] = 0
    idle = np.tile([0.34, 0.33, 0.33], (30, 1))
    cal = calibrate_threshold(np.concatenate([p, idle]), np.concatenate([y, np.full(30, -1)]), 0.99)
    assert 0.4 < cal["threshold"] <= 0.96
    assert cal["precision_accepted"] >= 0.99 and cal["idle_windows_rejected"] == 1.0
    assert cal["coverage_action_windows"] == 0.9
