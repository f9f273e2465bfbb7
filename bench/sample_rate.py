"""How low can the pose sampling rate go? Accuracy of the action model when poses are taken at a lower rate and
interpolated back to the model's rate, as the service does (``models.action.timeline.resample_track``).

Synthetic held-out subjects (the test split of the generator) are rendered at 3x the model's rate (66 Hz for a
22 Hz model), sampled every d-th frame from a random phase (rates 22, 16.5, 11, 8.25, 7.3, 5.5 Hz), resampled
to the model's rate and cut into the model's window. Prints accuracy (argmax), coverage (share of windows at or
above the card's uncertainty threshold) and accuracy of the accepted windows, per class and overall::

    python bench/sample_rate.py [--n 200] [--markdown bench/results/sample_rate.md]

The real-footage side of the question is ``python bench/real_footage.py --fps RATE``.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from models.action import synth  # noqa: E402
from models.action.classifier import ActionClassifier  # noqa: E402
from models.action.timeline import resample_track  # noqa: E402
from models.layouts import remap  # noqa: E402

UPSAMPLE = 3  # render at this multiple of the model's rate
DIVISORS = (3, 4, 6, 8, 9, 12)  # of the render rate: 22, 16.5, 11, 8.25, 7.3, 5.5 Hz for a 22 Hz model


def render_clips(n_per_class: int, window: int, fps: float, seed: int) -> tuple[list[np.ndarray], np.ndarray]:
    """Per class ``n_per_class`` clips (T, 18, 3) at ``UPSAMPLE * fps``, long enough for one window plus margin."""
    rng = np.random.default_rng(seed)
    src_fps = UPSAMPLE * fps
    frames = UPSAMPLE * (window + 10)
    clips, labels = [], []
    for c in range(len(synth.CLASSES)):
        for _ in range(n_per_class):
            x = synth.render([(c, frames)], rng, split="test", fps=src_fps, ramp=UPSAMPLE * 4,
                             camera_drift=bool(rng.random() < 0.3))
            conf = (np.abs(x).sum(-1, keepdims=True) > 0).astype(np.float32)
            clips.append(np.concatenate([x, conf], -1))
            labels.append(c)
    return clips, np.asarray(labels, np.int64)


def windows_at(clips: list[np.ndarray], divisor: int, window: int, fps: float, seed: int) -> np.ndarray:
    """Each clip sampled every ``divisor``-th frame (random phase), resampled to ``fps``: (N, window, 18, 3)."""
    rng = np.random.default_rng(seed + divisor)
    src_fps = UPSAMPLE * fps
    out = []
    for x in clips:
        idx = np.arange(int(rng.integers(divisor)), len(x), divisor)
        _, k = resample_track(idx / src_fps, x[idx], fps, src_fps / divisor)
        out.append(k[:window])
    return np.stack(out)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default=None, help="action model (default: the shipped int8 model)")
    p.add_argument("--n", type=int, default=200, help="clips per class")
    p.add_argument("--seed", type=int, default=11)
    p.add_argument("--markdown", default=None)
    a = p.parse_args(argv)
    clf = ActionClassifier(a.model)
    clips, y = render_clips(a.n, clf.window, clf.fps, a.seed)
    rows = []
    for d in DIVISORS:
        x = windows_at(clips, d, clf.window, clf.fps, a.seed)
        probs = clf.predict(remap(x, "openpose18", clf.layout), frame_size=(640.0, 480.0))
        pred, conf = probs.argmax(1), probs.max(1)
        acc = conf >= clf.uncertain_threshold
        per_class = [float((pred[y == c] == c).mean()) for c in range(len(clf.classes))]
        rows.append((UPSAMPLE * clf.fps / d, float((pred == y).mean()), float(acc.mean()),
                     float((pred == y)[acc].mean()) if acc.any() else float("nan"), per_class))
    lines = [f"Action model {clf.name} {clf.version}: accuracy against the pose sampling rate (synthetic held-out "
             f"subjects, {a.n} clips per class, interpolated to {clf.fps:g} Hz; threshold "
             f"{clf.uncertain_threshold:g}).", "",
             "| rate (Hz) | accuracy | coverage | accuracy of accepted | " + " | ".join(clf.classes) + " |",
             "|---|---|---|---|" + "---|" * len(clf.classes)]
    for rate, accuracy, coverage, acc_ok, per_class in rows:
        lines.append(f"| {rate:.1f} | {100 * accuracy:.1f} % | {100 * coverage:.1f} % | {100 * acc_ok:.1f} % | "
                     + " | ".join(f"{100 * v:.0f} %" for v in per_class) + " |")
    lines += ["", f"Command: `python bench/sample_rate.py --n {a.n} --seed {a.seed}`", ""]
    text = "\n".join(lines)
    print(text)
    if a.markdown:
        Path(a.markdown).write_text(text, encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
