"""``bench/bench_pipeline.py --real``: the original pipeline against ours on every real clip (see that file).

The original's timings are cached by the clip's sha256 (:class:`OriginalCache`), because the original never changes;
ours are measured on every run. :func:`summarize` and :func:`markdown` turn the rows into the distribution and the
table of the worst clips, with what each spent.
"""
from __future__ import annotations

import json
import os
import statistics
import sys
import time
from pathlib import Path

from real_footage import read_labels

from models.hashing import sha256_file
from models.tracks import PoseExtraction
from models.video import probe_video

ROOT = Path(__file__).resolve().parents[1]
CACHE = ROOT / "bench" / "results" / "original_timings.json"
WORST = 5


def real_clips(clip_dir: Path, min_seconds: float) -> list[tuple[str, str, Path]]:
    """(relative path, label, path) of every clip in ``clip_dir/labels.csv`` at least ``min_seconds`` long."""
    out = []
    for rel, label in read_labels(clip_dir):
        path = clip_dir / rel
        if path.is_file() and probe_video(path).duration_s >= min_seconds:
            out.append((rel, label, path))
    return out


class OriginalCache:
    """The original pipeline's timings per clip sha256, in a JSON file that is rewritten after every new entry."""

    def __init__(self, path: Path = CACHE):
        self.path = Path(path)
        self.data = json.loads(self.path.read_text()) if self.path.is_file() else {"machine": {}, "clips": {}}

    def get(self, sha: str) -> dict | None:
        return self.data["clips"].get(sha)

    def put(self, sha: str, entry: dict) -> None:
        self.data["clips"][sha] = entry
        self.data["machine"] = {"cpus": os.cpu_count()}
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.data, indent=1, sort_keys=True) + "\n", encoding="utf-8")
        tmp.replace(self.path)


def bench_real_clip(rel: str, label: str, video: Path, cache: OriginalCache, export_py: Path, work: Path,
                    timed, env: dict, run_original: bool) -> dict | None:
    """One clip: the original's timings (cached, or measured once when ``run_original``) and ours (measured now,
    a fresh process). None when the original's are neither cached nor to be measured."""
    sha = sha256_file(video)
    orig = cache.get(sha)
    if orig is None:
        if not run_original:
            return None
        r = timed([str(export_py), str(ROOT / "bench" / "original_pipeline.py"), str(video), str(work / "orig.npz")],
                  env)
        out = json.loads(r["stdout"].strip().splitlines()[-1])
        orig = {"clip": rel, "wall_s": round(r["wall_s"], 3), "cpu_s": round(r["cpu_s"], 3),
                "rss_mib": round(r["rss_mib"], 1), "frames": out.get("frames"), "label": out.get("label"),
                "measured": time.strftime("%Y-%m-%d")}
        cache.put(sha, orig)
    ours = timed([sys.executable, "-m", "models", "run", str(video), "--quiet", "--out", str(work / "ours.json"),
                   "--save-extraction", str(work / "ours.npz")], env)
    ex = PoseExtraction.from_bytes((work / "ours.npz").read_bytes())
    info = probe_video(video)
    g = ex.meta.get("guided") or {}
    cpu = ex.meta.get("cpu_s") or {}
    return {"clip": rel, "label": label, "size": f"{info.width}x{info.height}", "fps": round(info.fps, 2),
            "duration_s": round(info.duration_s, 2),
            "orig_wall_s": orig["wall_s"], "orig_cpu_s": orig["cpu_s"],
            "ours_wall_s": ours["wall_s"], "ours_cpu_s": ours["cpu_s"], "ours_rss_mib": ours["rss_mib"],
            "wall_ratio": orig["wall_s"] / ours["wall_s"], "cpu_ratio": orig["cpu_s"] / ours["cpu_s"],
            "frames": int(ex.n_frames), "full_frames": g.get("full_frames"), "crops": g.get("crops"),
            "lost_in_crops": g.get("lost_in_crops", g.get("hard_tracks")), "crowd_frames": g.get("crowd_frames"), "tracks": len(ex.tracks),
            "decode_share": (cpu.get("decode", 0.0) / ours["cpu_s"]) if ours["cpu_s"] else 0.0}


def summarize(rows: list[dict]) -> dict:
    """Median and worst of both ratios, and the clips below a ratio of 10."""
    out = {"clips": len(rows)}
    for k in ("cpu_ratio", "wall_ratio"):
        v = [r[k] for r in rows]
        out[k] = {"median": statistics.median(v), "worst": min(v), "below_10": sum(x < 10 for x in v)} if v else {}
    return out


def _row(r: dict) -> str:
    return (f"| {r['clip']} | {r['size']} {r['fps']:g} fps, {r['duration_s']:g} s | {r['orig_wall_s']:.1f} / "
            f"{r['orig_cpu_s']:.1f} | {r['ours_wall_s']:.2f} / {r['ours_cpu_s']:.2f} | **{r['wall_ratio']:.1f}×** | "
            f"**{r['cpu_ratio']:.1f}×** | {r['full_frames']} / {r['frames']} | {r['crops']} | {r['lost_in_crops']} | "
            f"{r['tracks']} | {100 * r['decode_share']:.0f} % |")


def markdown(rows: list[dict], meta: dict) -> str:
    s = summarize(rows)
    c, w = s["cpu_ratio"], s["wall_ratio"]
    head = ("| clip | size, length | original wall / CPU s | ours wall / CPU s | × wall | × CPU | whole frames / "
            "sampled | crops | persons lost in a crop | tracks | decoding's share of our CPU |")
    L = [f"Pose + classify on every clip of `real-clips` at least {meta['min_seconds']:g} s long ({s['clips']} clips), "
         f"the original app's pipeline against the service's, on this machine ({meta['cpus']} CPUs); one run of each, "
         "a fresh process (imports and model loading included); the original's timings from "
         "`bench/results/original_timings.json` (measured once per clip, by sha256).", "",
         "| | × CPU | × wall |", "|---|---|---|",
         f"| median | **{c['median']:.1f}×** | **{w['median']:.1f}×** |",
         f"| worst | **{c['worst']:.1f}×** | **{w['worst']:.1f}×** |",
         f"| clips below 10× | {c['below_10']} | {w['below_10']} |", "",
         f"The {WORST} worst clips by CPU ratio:", "", head, "|---|---|---|---|---|---|---|---|---|---|---|"]
    L += [_row(r) for r in sorted(rows, key=lambda r: r["cpu_ratio"])[:WORST]]
    L += ["", "Every clip:", "", head, "|---|---|---|---|---|---|---|---|---|---|---|"]
    L += [_row(r) for r in sorted(rows, key=lambda r: r["clip"])]
    L += ["", f"Command: `{meta['command']}`", ""]
    return "\n".join(L)
