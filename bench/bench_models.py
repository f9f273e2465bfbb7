"""Model speed / agreement benchmark (a script, not a test).

Pose: ms per frame of YOLO11n-pose through Ultralytics (.pt in torch, when importable) and through our
onnxruntime backend at 640 / 480 / 384 / 320, batch 1 and batch 8, on the bundled photos, with ratios
against ONNX 640 measured in the same run, and keypoint agreement of every size with ONNX 640.
Action: GRU fp32 vs int8 ONNX latency per 32-frame window (batch 1 and a batch of windows), when the
files exist in models/artifacts/action/. Peak RSS after each phase (ONNX first, torch last).

    python bench/bench_models.py [--threads 2] [--repeat 10] [--json out.json]

Run it with an environment that has Ultralytics to include the .pt baseline; without it, that row is
skipped.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import sys
import time
from pathlib import Path

import cv2
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from models.pose.onnx_backend import OnnxPoseEstimator, box_iou  # noqa: E402

ASSETS = ROOT / "tests" / "assets"
ACTION = ROOT / "models" / "artifacts" / "action"
SIZES = (640, 480, 384, 320)
CONF_JOINT = 0.5


def peak_rss_mb() -> float:
    """Peak resident set size of this process image (VmHWM; unlike ru_maxrss it is not inherited across exec)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # Linux: KiB


def time_ms(fn, repeat: int, warmup: int = 2) -> tuple[float, float]:
    """(median, min) wall time in ms. The min is the figure least disturbed by other load on the machine."""
    for _ in range(warmup):
        fn()
    runs = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        runs.append((time.perf_counter() - t) * 1000)
    return statistics.median(runs), min(runs)


def agreement_images() -> list[np.ndarray]:
    """The photos plus video-like frames (1280x720 landscape, 720x1280 portrait) panned over them."""
    import tempfile

    from tests.media import make_people_video

    out = [cv2.imread(str(ASSETS / n)) for n in ("bus.jpg", "zidane.jpg")]
    with tempfile.TemporaryDirectory() as tmp:
        for name, size in (("zidane.jpg", (1280, 720)), ("bus.jpg", (720, 1280))):
            p = make_people_video(Path(tmp) / f"{name}.avi", seconds=1.0, fps=6.0, size=size, image=name)
            cap = cv2.VideoCapture(str(p))
            while True:
                ok, f = cap.read()
                if not ok:
                    break
                out.append(f)
            cap.release()
    return out


def _rss_child(spec: str, threads: int) -> None:
    """In a fresh process: load one backend, run a batch of 8 of each photo, print the peak RSS (MB)."""
    kind, size, rect = spec.split(":")
    images = [cv2.imread(str(ASSETS / n)) for n in ("bus.jpg", "zidane.jpg")]
    if kind == "onnx":
        est = OnnxPoseEstimator(imgsz=int(size), threads=threads, rect=rect == "1")
    else:
        from models.pose.ultralytics_backend import UltralyticsPoseEstimator

        est = UltralyticsPoseEstimator(imgsz=int(size), threads=threads)
    for im in images:
        est.predict([im] * 8)
    print(f"{peak_rss_mb():.1f}")


def peak_rss_of(spec: str, threads: int) -> float | None:
    import subprocess

    try:
        r = subprocess.run([sys.executable, __file__, "--rss-child", spec, "--threads", str(threads)],
                           capture_output=True, text=True, timeout=300, check=True)
        return float(r.stdout.strip().splitlines()[-1])
    except Exception:
        return None


def agreement(base, other, diag_frac: float = 0.05) -> dict:
    """Keypoint agreement of ``other`` with ``base`` (per image PoseDetections lists)."""
    n_base = n_matched = 0
    errs, rel, pck = [], [], []
    for b, o in zip(base, other):
        n_base += len(b)
        if not len(b) or not len(o):
            continue
        iou = box_iou(b.boxes, o.boxes)
        for i in range(len(b)):
            j = int(iou[i].argmax())
            if iou[i, j] < 0.5:
                continue
            n_matched += 1
            both = (b.keypoints[i, :, 2] > CONF_JOINT) & (o.keypoints[j, :, 2] > CONF_JOINT)
            e = np.linalg.norm(b.keypoints[i, both, :2] - o.keypoints[j, both, :2], axis=-1)
            h = float(b.boxes[i, 3] - b.boxes[i, 1])
            errs += e.tolist()
            rel += (e / max(h, 1.0)).tolist()
            pck += (e < diag_frac * max(h, 1.0)).tolist()
    return {
        "persons_base": n_base, "persons_matched": n_matched,
        "kpt_err_px_median": float(np.median(errs)) if errs else None,
        "kpt_err_px_mean": float(np.mean(errs)) if errs else None,
        "kpt_err_px_max": float(np.max(errs)) if errs else None,
        "kpt_err_pct_height_mean": 100 * float(np.mean(rel)) if rel else None,
        "pck_5pct_height": float(np.mean(pck)) if pck else None,
    }


def bench_gru(threads: int, repeat: int) -> dict:
    import onnxruntime as ort

    out = {}
    for tag in ("fp32", "int8"):
        path = ACTION / f"gru_har_{tag}.onnx"
        if not path.is_file():
            out[tag] = {"skipped": f"{path.relative_to(ROOT)} not found"}
            continue
        so = ort.SessionOptions()
        so.intra_op_num_threads = threads
        sess = ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
        inp = sess.get_inputs()[0]
        feat = inp.shape[2] if isinstance(inp.shape[2], int) else 34
        win = inp.shape[1] if isinstance(inp.shape[1], int) else 32
        res = {"file_mb": path.stat().st_size / 1e6, "input": [str(d) for d in inp.shape]}
        rng = np.random.default_rng(0)
        for bs in (1, 64):
            if isinstance(inp.shape[0], int) and inp.shape[0] != bs:
                continue
            x = rng.random((bs, win, feat), dtype=np.float32)
            med, best = time_ms(lambda sess=sess, name=inp.name, x=x: sess.run(None, {name: x}), repeat * 5)
            res[f"ms_per_window_b{bs}"] = med / bs
            res[f"ms_per_window_b{bs}_min"] = best / bs
        out[tag] = res
    if "ms_per_window_b1" in out.get("fp32", {}) and "ms_per_window_b1" in out.get("int8", {}):
        for key in ("ms_per_window_b1", "ms_per_window_b64"):
            if key in out["fp32"] and key in out["int8"]:
                out[f"int8_vs_fp32_{key}"] = out["int8"][key] / out["fp32"][key]
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--threads", type=int, default=min(4, os.cpu_count() or 1))
    ap.add_argument("--repeat", type=int, default=10)
    ap.add_argument("--sizes", type=int, nargs="+", default=list(SIZES))
    ap.add_argument("--rect-sizes", type=int, nargs="*", default=[640, 480],
                    help="also time rect letterbox (pad to a multiple of 32, not the full square) at these sizes")
    ap.add_argument("--no-ultralytics", action="store_true")
    ap.add_argument("--json", type=Path)
    ap.add_argument("--rss-child", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.rss_child:
        _rss_child(args.rss_child, args.threads)
        return 0

    images = [cv2.imread(str(ASSETS / n)) for n in ("bus.jpg", "zidane.jpg")]
    report: dict = {"threads": args.threads, "repeat": args.repeat, "images": ["bus.jpg (810x1080)",
                    "zidane.jpg (1280x720)"], "pose": {}, "rss_mb": {"start": peak_rss_mb()}}
    print(f"threads={args.threads} repeat={args.repeat} cpu_count={os.cpu_count()}")

    agree_imgs = agreement_images()
    report["agreement_images"] = len(agree_imgs)
    batch8 = [images[i % len(images)] for i in range(8)]  # warm-up only
    # batches of 8 frames of one shape, as video frames are: 8 x bus, then 8 x zidane
    batches = [[im] * 8 for im in images]

    # Load every backend first (smallest ONNX size first: the cumulative peak RSS after each warm-up shows
    # what it needs; torch last), then time them in interleaved rounds, so that load from other processes
    # on the machine hits all of them alike and the ratios stay fair.
    backends: dict = {}
    preds: dict = {}
    configs = [(size, False) for size in sorted(args.sizes)] + [(size, True) for size in args.rect_sizes]
    for size, rect in configs:
        name = f"onnx_{size}" + ("_rect" if rect else "")
        est = OnnxPoseEstimator(imgsz=size, threads=args.threads, rect=rect)
        est.predict(batch8)
        preds[name] = [est.predict([im])[0] for im in agree_imgs]
        backends[name] = est
    report["gru"] = bench_gru(args.threads, args.repeat)
    if not args.no_ultralytics:
        try:
            from models.pose.ultralytics_backend import UltralyticsPoseEstimator

            ul = UltralyticsPoseEstimator(imgsz=640, threads=args.threads)
            ul.predict(batch8)
        except Exception as e:  # not installed here
            report["pose"]["ultralytics_pt_640"] = {"skipped": f"{type(e).__name__}: {e}"[:200]}
        else:
            preds["ultralytics_pt_640"] = [ul.predict([im])[0] for im in agree_imgs]
            backends["ultralytics_pt_640"] = ul

    times: dict = {k: {"b1": [], "b8": []} for k in backends}
    order = sorted(backends, key=lambda k: (k.startswith("ultra"), k.endswith("rect"), -int([p for p in k.split("_") if p.isdigit()][0])))
    for _ in range(args.repeat):
        for name in order:
            est = backends[name]
            t = time.perf_counter()
            for im in images:
                est.predict([im])
            times[name]["b1"].append((time.perf_counter() - t) * 1000 / len(images))
            t = time.perf_counter()
            for b in batches:
                est.predict(b)
            times[name]["b8"].append((time.perf_counter() - t) * 1000 / (8 * len(batches)))
    for name in order:
        tb = times[name]
        report["pose"][name] = {
            "ms_per_frame_b1": statistics.median(tb["b1"]), "ms_per_frame_b1_min": min(tb["b1"]),
            "ms_per_frame_b8": statistics.median(tb["b8"]), "ms_per_frame_b8_min": min(tb["b8"]),
        }
    report["pose"] = {k: report["pose"][k] for k in order + [k for k in report["pose"] if k not in order]}
    base = report["pose"].get("onnx_640")
    ref_preds = preds.get("onnx_640")
    for name in order:
        r = report["pose"][name]
        if base:
            for b in ("b1", "b8"):
                r[f"speedup_{b}_vs_onnx640"] = base[f"ms_per_frame_{b}"] / r[f"ms_per_frame_{b}"]
                r[f"speedup_{b}_min_vs_onnx640"] = base[f"ms_per_frame_{b}_min"] / r[f"ms_per_frame_{b}_min"]
        if ref_preds is not None:
            r["agreement_vs_onnx640"] = agreement(ref_preds, preds[name])

    # peak RSS of each backend alone, in a fresh process (batches of 8)
    for name in order:
        if name.startswith("ultra"):
            spec = "ultralytics:640:0"
        else:
            parts = name.split("_")
            spec = f"onnx:{parts[1]}:{int(name.endswith('rect'))}"
        report["rss_mb"][name] = peak_rss_of(spec, args.threads)
    report["rss_mb"]["this_process_all_loaded"] = peak_rss_mb()

    # --- print ---
    print("\nPose on the 2 photos: ms/frame median (min) of interleaved rounds; x = speed-up, ONNX-640 / this "
          "(median; min in brackets);")
    print(f"agreement with ONNX 640 on {len(agree_imgs)} images: persons matched (IoU>0.5), keypoint error of "
          f"joints with conf>{CONF_JOINT} (px, % of person height), PCK@5% height")
    print(f"{'backend':<20}{'b1 ms':>14}{'b8 ms':>14}{'x b1':>13}{'x b8':>13}{'persons':>9}{'med px':>8}"
          f"{'mean px':>8}{'%h':>6}{'PCK5':>6}")
    for name, r in report["pose"].items():
        if "skipped" in r:
            print(f"{name:<22}skipped: {r['skipped']}")
            continue
        a = r.get("agreement_vs_onnx640", {})

        def f(v, fmt):
            return format(v, fmt) if v is not None else "-"

        b1 = f"{r['ms_per_frame_b1']:.1f} ({r['ms_per_frame_b1_min']:.1f})"
        b8 = f"{r['ms_per_frame_b8']:.1f} ({r['ms_per_frame_b8_min']:.1f})"
        x1 = f"{f(r.get('speedup_b1_vs_onnx640'), '.2f')} ({f(r.get('speedup_b1_min_vs_onnx640'), '.2f')})"
        x8 = f"{f(r.get('speedup_b8_vs_onnx640'), '.2f')} ({f(r.get('speedup_b8_min_vs_onnx640'), '.2f')})"
        print(f"{name:<20}{b1:>14}{b8:>14}{x1:>13}{x8:>13}"
              f"{a.get('persons_matched', '-')!s:>5}/{a.get('persons_base', '-')!s:<3}"
              f"{f(a.get('kpt_err_px_median'), '.2f'):>8}{f(a.get('kpt_err_px_mean'), '.2f'):>8}"
              f"{f(a.get('kpt_err_pct_height_mean'), '.2f'):>6}{f(a.get('pck_5pct_height'), '.2f'):>6}")
    print("\nAction GRU (ms per 32-frame window)")
    for k, v in report["gru"].items():
        print(f"  {k}: {json.dumps(v, default=float) if isinstance(v, dict) else f'{v:.3f}'}")
    print("\nPeak RSS (MB) of each pose backend alone in a fresh process, batch 8: "
          + ", ".join(f"{k}={v:.0f}" if v is not None else f"{k}=?" for k, v in report["rss_mb"].items()))
    if args.json:
        args.json.write_text(json.dumps(report, indent=2, default=float))
    return 0


if __name__ == "__main__":
    sys.exit(main())
