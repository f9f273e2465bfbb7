"""Videos at the limits the service accepts: the longest video with a crowd that comes and goes, and the largest upload.

1. **The longest video** (``HAR_MAX_VIDEO_SECONDS``, just under it): a mosaic of real clips (``--clips``, e.g.
   ``../shared/real-clips``) built with ffmpeg into ``--work`` (default ``var/limits/``, which git ignores): a ``--grid`` of tiles,
   each showing one clip after another with a black pause between them, the tiles out of step, so people enter
   and leave all the time (every clip shown is a person, or a few, coming and going). It is uploaded with the
   command-line client to the whole service started by ``scripts/run_local.py`` (Redis, one worker per queue,
   gunicorn behind nginx; local storage) and followed until the job is done and its annotated video ready. Each
   worker's memory is sampled (``--sample-s``) over its process tree (the Celery main process, its pool process
   and what they start, e.g. the ffmpeg encoder): the peak of the tree's summed RSS while the job ran (an upper
   bound: a prefork child shares its parent's pages) and the peak RSS (VmHWM) of its largest process.
2. **The largest upload** (``HAR_MAX_UPLOAD_MB``, just under it): a valid H.264 video of noise, uploaded to the
   service (one gunicorn process, so both uploads reach the same one) after a small one, with local storage and
   with S3 storage (moto's S3 server); the web process's RSS is sampled during each upload and its VmHWM read
   after each, so growth with the upload's size shows.

::

    nice -n 5 python bench/limits.py --markdown bench/results/limits.md   # clips from ../shared/real-clips
    python bench/limits.py --clips ../shared/real-clips --seconds 60 --skip-upload     # a short try
    python bench/limits.py --skip-long --upload-mb 100 --storage local                 # the upload part alone

Exit status 0 when every job finished and every figure is within its bound (pose and video workers 1 GiB,
classify 512 MiB, the web process's growth from a small to the largest upload under ``--web-growth-mib``).
"""
from __future__ import annotations

import argparse
import json
import math
import os
import random
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.bench_scale import get, proc_stats, video_state  # noqa: E402
from bench.load_test import Runner  # noqa: E402
from bench.soak import S3_ENV, Soak, pick_clips, start_s3_server  # noqa: E402

MIB = 1024 * 1024
BOUNDS_MIB = {"pose": 1024, "classify": 512, "video": 1024}
STARTED = re.compile(r"\[run\] (pose worker|classify worker|video worker|web server) (?:started|restarted) \(pid (\d+)\)")
PAGE = os.sysconf("SC_PAGE_SIZE")


# ------------------------------------------------------------------------------------------------ the mosaic
def run_ffmpeg(args: list[str]) -> None:
    cmd = ["ffmpeg", "-hide_banner", "-loglevel", "error", "-y", *args]
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=1800)
    if res.returncode:
        raise RuntimeError(f"ffmpeg failed ({res.returncode}): {' '.join(cmd)}\n{res.stderr[-2000:]}")


def make_mosaic(clips_dir: Path, out: Path, seconds: float, grid: tuple[int, int], size: tuple[int, int],
                fps: int, clips: int, seed: int) -> dict:
    """The crowd video: ``grid`` (columns, rows) tiles of ``size`` // grid, each a sequence of real clips (4-10 s
    each, short ones looped) with black pauses of 1-5 s between them, every tile starting with a pause of its own
    length; ``seconds`` long at ``fps``. Returns what it holds (clips used, appearances)."""
    out = out.resolve()
    facts = out.with_suffix(".json")
    if out.exists() and facts.exists():  # made before with the same arguments (they are in its name)
        return json.loads(facts.read_text())
    cols, rows = grid
    tw, th = size[0] // cols // 2 * 2, size[1] // rows // 2 * 2
    rng = random.Random(seed)
    work = out.parent / f"{out.stem}-parts"
    work.mkdir(parents=True, exist_ok=True)
    enc = ["-an", "-r", str(fps), "-c:v", "libx264", "-preset", "ultrafast", "-crf", "20", "-pix_fmt", "yuv420p",
           "-g", str(2 * fps), "-video_track_timescale", str(fps * 512)]
    fit = (f"scale={tw}:{th}:force_original_aspect_ratio=decrease,pad={tw}:{th}:(ow-iw)/2:(oh-ih)/2,"
           f"setsar=1,fps={fps}")
    from models.video import probe_video

    chosen = pick_clips(clips_dir, clips)
    segments: list[tuple[Path, float]] = []
    for i, clip in enumerate(chosen):
        own = probe_video(clip).duration_s
        length = min(max(own, 4.0), 10.0)
        seg = work / f"clip{i:03d}.mp4"
        if not seg.exists():  # a clip shorter than 4 s is played again (ffmpeg's -stream_loop hangs on some AVIs)
            times = max(1, math.ceil(length / max(own, 0.1) - 1e-6))
            inputs = [a for _ in range(times) for a in ("-i", str(clip))]
            chain = "".join(f"[{j}:v:0]{fit}[v{j}];" for j in range(times))
            chain += "".join(f"[v{j}]" for j in range(times)) + f"concat=n={times}:v=1:a=0[out]"
            run_ffmpeg([*inputs, "-filter_complex", chain, "-map", "[out]", "-t", f"{length:.2f}", *enc, str(seg)])
        segments.append((seg, probe_video(seg).duration_s))
    pauses = {}
    for s in range(1, 6):
        pauses[s] = work / f"pause{s}.mp4"
        if not pauses[s].exists():
            run_ffmpeg(["-f", "lavfi", "-i", f"color=c=black:s={tw}x{th}:r={fps}", "-t", str(s), *enc,
                        str(pauses[s])])
    appearances, tiles = 0, []
    for k in range(cols * rows):
        order = list(range(len(segments)))
        rng.shuffle(order)
        lines, t = [], 0.0
        first = rng.randint(1, 5)
        lines.append(pauses[first])
        t += first
        while t < seconds:
            for i in order:
                if t >= seconds:
                    break
                seg, length = segments[i]
                lines.append(seg)
                appearances += 1
                t += length
                pause = rng.randint(1, 5)
                lines.append(pauses[pause])
                t += pause
        listing = work / f"tile{k}.txt"
        listing.write_text("".join(f"file '{p}'\n" for p in lines))
        tile = work / f"tile{k}.mp4"
        run_ffmpeg(["-f", "concat", "-safe", "0", "-i", str(listing), "-c", "copy", "-t", f"{seconds:.3f}", str(tile)])
        tiles.append(tile)
    layout = "|".join(f"{c * tw}_{r * th}" for r in range(rows) for c in range(cols))
    inputs = [a for t in tiles for a in ("-i", str(t))]
    run_ffmpeg([*inputs, "-filter_complex", f"xstack=inputs={len(tiles)}:layout={layout}", "-t", f"{seconds:.3f}",
                "-an", "-r", str(fps), "-c:v", "libx264", "-preset", "veryfast", "-crf", "23", "-pix_fmt", "yuv420p",
                "-movflags", "+faststart", str(out)])
    shutil.rmtree(work, ignore_errors=True)
    info = probe_video(out)
    made = {"clips": len(chosen), "appearances": appearances, "tiles": cols * rows, "tile_size": f"{tw}x{th}",
            "width": info.width, "height": info.height, "fps": round(info.fps, 2), "duration_s": round(info.duration_s, 2),
            "size_mb": round(out.stat().st_size / MIB, 1)}
    facts.write_text(json.dumps(made))
    return made


def make_large_upload(out: Path, max_mb: int) -> Path:
    """A valid H.264 .mp4 of noise (lossless: ~2 MB a frame) between 4 and 0.5 MiB under ``max_mb`` MiB: the frame
    count is estimated from a short encode, then corrected until the file fits."""
    target, low = max_mb * MIB - MIB // 2, max_mb * MIB - 4 * MIB

    def encode(frames: int) -> int:
        run_ffmpeg(["-f", "rawvideo", "-pix_fmt", "yuv420p", "-s", "1280x720", "-r", "25", "-i", "/dev/urandom",
                    "-frames:v", str(frames), "-c:v", "libx264", "-preset", "ultrafast", "-qp", "0", str(out)])
        return out.stat().st_size

    if out.exists() and low <= out.stat().st_size <= target:
        return out
    frames, size = 10, encode(10)
    for _ in range(6):
        if low <= size <= target:
            return out
        frames = max(1, int(frames * target / size) - (size > target))
        size = encode(frames)
    raise RuntimeError(f"could not make a video of {max_mb} MiB (last: {size} bytes)")


# ------------------------------------------------------------------------------------------------ processes
def process_table() -> dict[int, list[int]]:
    """Parent pid → child pids, from /proc."""
    return proc_stats()[1]


def tree(root: int, children: dict[int, list[int]]) -> list[int]:
    out, todo = [], [root]
    while todo:
        pid = todo.pop()
        out.append(pid)
        todo += children.get(pid, [])
    return out


def rss(pid: int) -> int:
    try:
        return int(Path(f"/proc/{pid}/statm").read_text().split()[1]) * PAGE
    except (OSError, IndexError, ValueError):
        return 0


def hwm(pid: int) -> int:
    """The process's peak RSS so far (VmHWM), bytes."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


class Sampler:
    """Every ``interval`` s, the summed RSS of each part's process tree (root pid: the runner's log); keeps each
    part's peak since :meth:`reset`, and the peak VmHWM of any one process of it."""

    def __init__(self, roots: dict[str, int], interval: float):
        self.roots, self.interval = roots, interval
        self.lock = threading.Lock()
        self.stop = threading.Event()
        self.peak: dict[str, int] = {}
        self.hwm: dict[str, int] = {}
        self.samples = 0
        self.reset()
        self.thread = threading.Thread(target=self._loop, daemon=True)
        self.thread.start()

    def now(self) -> dict[str, tuple[int, int]]:
        """Part → (summed RSS of its tree, largest VmHWM of one of its processes)."""
        table = process_table()
        out = {}
        for name, root in self.roots.items():
            pids = tree(root, table)
            out[name] = (sum(rss(p) for p in pids), max((hwm(p) for p in pids), default=0))
        return out

    def reset(self) -> None:
        with self.lock:
            self.peak = {name: 0 for name in self.roots}
            self.hwm = {name: 0 for name in self.roots}
            self.samples = 0

    def _loop(self) -> None:
        while not self.stop.wait(self.interval):
            cur = self.now()
            with self.lock:
                for name, (total, high) in cur.items():
                    self.peak[name] = max(self.peak[name], total)
                    self.hwm[name] = max(self.hwm[name], high)
                self.samples += 1

    def snapshot(self) -> dict:
        with self.lock:
            return {"peak_rss_mib": {k: round(v / MIB, 1) for k, v in self.peak.items()},
                    "peak_process_hwm_mib": {k: round(v / MIB, 1) for k, v in self.hwm.items()},
                    "samples": self.samples}

    def close(self) -> None:
        self.stop.set()
        self.thread.join(5)


def part_pids(runner: Runner) -> dict[str, int]:
    """The runner's parts → their (latest) main process ids, from its log."""
    pids = {}
    for line in list(runner.log):
        m = STARTED.search(line)
        if m:
            pids[m.group(1).split()[0]] = int(m.group(2))
    return pids


def start_runner(data: Path, env: dict) -> tuple[Runner, dict[str, int]]:
    runner = Runner(data, env)
    if not runner.ready.wait(240):
        runner.stop()
        raise RuntimeError("the service did not start:\n" + "".join(runner.log[-40:]))
    return runner, part_pids(runner)


def submit(base: str, path: Path, timeout: float = 1800) -> tuple[str, float]:
    """Upload ``path`` with the command-line client (streamed from disk) → (job id, seconds the upload took)."""
    t0 = time.monotonic()
    res = subprocess.run([sys.executable, "-m", "har.client", "submit", str(path), "--url", base, "--quiet"],
                         cwd=ROOT, capture_output=True, text=True, timeout=timeout)
    if res.returncode:
        raise RuntimeError(f"the upload of {path.name} failed ({res.returncode}): {res.stderr.strip()[-800:]}")
    return res.stdout.split()[0], time.monotonic() - t0


# ------------------------------------------------------------------------------------------------ 1. the long video
def run_long(video: Path, data: Path, interval: float, timeout_s: float) -> dict:
    runner, roots = start_runner(data, {"HAR_MIN_FREE_MB": "0"})
    try:
        roots = {k: v for k, v in roots.items() if k in BOUNDS_MIB}
        time.sleep(5)  # the workers' pool processes have started
        sampler = Sampler(roots, interval)
        idle = {k: round(v[0] / MIB, 1) for k, v in sampler.now().items()}
        t0 = time.monotonic()
        job_id, upload_s = submit(runner.base, video)
        stages: dict[str, float] = {}  # state → seconds after the upload began, first seen
        job = {}
        while True:
            if time.monotonic() - t0 > timeout_s:
                raise RuntimeError(f"timed out in state {job.get('status')} / video {video_state(job)}")
            try:
                job = get(runner.base, job_id)
            except (urllib.error.URLError, OSError):
                time.sleep(1)
                continue
            key = job["status"] if job["status"] != "done" else f"done, video {video_state(job)}"
            stages.setdefault(key, round(time.monotonic() - t0, 1))
            if job["status"] == "failed" or video_state(job) in ("ready", "failed", None) and job["status"] == "done":
                break
            time.sleep(1)
        peaks = sampler.snapshot()
        sampler.close()
    finally:
        runner.stop()
    result = job.get("result") or {}
    persons = result.get("persons") or []
    return {"job": job_id, "status": job["status"], "error": job.get("error"), "video": video_state(job),
            "upload_s": round(upload_s, 1), "stages_s": stages, "timings": job.get("timings") or {},
            "persons": len(persons), "classified": sum(1 for p in persons if p.get("label")),
            "result_status": result.get("status"), "idle_rss_mib": idle, **peaks}


# ------------------------------------------------------------------------------------------------ 2. the largest upload
def run_upload(storage: str, small: Path, large: Path, max_mb: int, data: Path, interval: float) -> dict:
    env = {"HAR_WEB_WORKERS": "1", "HAR_MAX_UPLOAD_MB": str(max_mb), "HAR_MIN_FREE_MB": "0"}
    moto = None
    if storage == "s3":
        moto, port = start_s3_server(data.parent / f"moto-{data.name}.log")
        endpoint = f"http://127.0.0.1:{port}"
        Soak._s3_client(endpoint).create_bucket(Bucket="har-limits")
        env.update(S3_ENV, HAR_STORAGE_URL="s3://har-limits/har", HAR_S3_ENDPOINT_URL=endpoint)
    try:
        runner, roots = start_runner(data, env)
        try:
            sampler = Sampler({"web": roots["web"]}, interval)
            rows = []
            for label, path in (("small (first)", small), ("small", small), ("largest", large)):
                before = sampler.now()["web"]
                sampler.reset()
                job_id, took = submit(runner.base, path)
                snap = sampler.snapshot()
                after = sampler.now()["web"]
                stored = None
                if moto is not None:
                    head = Soak._s3_client(endpoint).list_objects_v2(Bucket="har-limits", Prefix="har/")
                    stored = max((o["Size"] for o in head.get("Contents", [])), default=0)
                rows.append({"upload": label, "file": path.name, "size_mb": round(path.stat().st_size / MIB, 1),
                             "seconds": round(took, 1), "rss_before_mib": round(before[0] / MIB, 1),
                             "peak_rss_mib": max(snap["peak_rss_mib"]["web"], round(after[0] / MIB, 1)),
                             "hwm_after_mib": round(after[1] / MIB, 1), "samples": snap["samples"],
                             "largest_object_mb": None if stored is None else round(stored / MIB, 1), "job": job_id})
            sampler.close()
        finally:
            runner.stop()
    finally:
        if moto is not None:
            moto.kill()
            moto.wait(10)
    return {"storage": storage, "uploads": rows}


# ------------------------------------------------------------------------------------------------ report
def markdown(r: dict, command: str) -> str:
    L = [f"Measured on this machine ({os.cpu_count()} CPUs, shared with other work), through "
         "`scripts/run_local.py` (Redis, one Celery worker per queue, gunicorn behind nginx).", ""]
    long_ = r.get("long")
    if long_:
        m = r["mosaic"]
        L += ["## The longest video", "",
              f"A {m['duration_s']} s {m['width']}×{m['height']} {m['fps']} fps mosaic ({m['size_mb']} MiB) of "
              f"{m['tiles']} tiles ({m['tile_size']}), each showing real clips one after another with 1–5 s black "
              f"pauses, out of step: {m['clips']} different clips, {m['appearances']} appearances (people entering "
              f"and leaving). Job: {long_['status']}"
              + (f" ({long_['error']})" if long_.get("error") else "")
              + f", annotated video {long_['video']}; {long_['persons']} persons in the result "
              f"({long_['classified']} classified).", "",
              "| worker | idle RSS (MiB) | peak RSS, process tree (MiB) | peak RSS of one process (VmHWM, MiB) "
              "| bound (MiB) | within |", "|---|---|---|---|---|---|"]
        for name, bound in BOUNDS_MIB.items():
            peak = long_["peak_rss_mib"].get(name)
            L.append(f"| {name} | {long_['idle_rss_mib'].get(name)} | {peak} | "
                     f"{long_['peak_process_hwm_mib'].get(name)} | {bound} | {'yes' if peak and peak <= bound else 'NO'} |")
        t = long_["timings"]
        L += ["", "| step | seconds |", "|---|---|", f"| upload (command-line client) | {long_['upload_s']} |"]
        for key, what in (("pose_s", "pose stage"), ("pose_extract_s", "of which pose extraction"),
                          ("classify_s", "classify stage"), ("report_s", "report stage"), ("video_s", "annotated video")):
            if key in t:
                L.append(f"| {what} | {round(float(t[key]), 1)} |")
        for state, at in long_["stages_s"].items():
            L.append(f"| first seen `{state}`, after the upload began | {at} |")
        L += ["", f"RSS sampled every {r['sample_s']} s ({long_['samples']} samples); the process tree is the worker's "
              "Celery main process, its pool process and their children (the ffmpeg encoder of the annotated video), "
              "summed (an upper bound: the pool process shares pages with its parent).", ""]
    for up in r.get("uploads") or []:
        L += [f"## The largest upload, {up['storage']} storage", "",
              "| upload | size (MiB) | seconds | web RSS before (MiB) | peak web RSS during (MiB) "
              "| web worker's VmHWM after (MiB) |" + (" stored object (MiB) |" if up["storage"] == "s3" else ""),
              "|---|---|---|---|---|---|" + ("---|" if up["storage"] == "s3" else "")]
        for u in up["uploads"]:
            L.append(f"| {u['upload']} | {u['size_mb']} | {u['seconds']} | {u['rss_before_mib']} | {u['peak_rss_mib']} "
                     f"| {u['hwm_after_mib']} |" + (f" {u['largest_object_mb']} |" if up["storage"] == "s3" else ""))
        L += [""]
    if r.get("uploads"):
        L += ["One gunicorn process (`HAR_WEB_WORKERS=1`: every upload reaches the same one) with its master, "
              "summed; nginx spools the body to disk first. The first small upload loads the video decoder.", ""]
    L += ["Problems: " + ("none" if not r["problems"] else "; ".join(r["problems"])), "",
          f"Command: `{command}`", ""]
    return "\n".join(L)


def check(r: dict, web_growth_mib: float) -> list[str]:
    problems = []
    long_ = r.get("long")
    if long_:
        if long_["status"] != "done" or long_["video"] != "ready":
            problems.append(f"the long video's job ended {long_['status']} (video {long_['video']}): {long_.get('error')}")
        for name, bound in BOUNDS_MIB.items():
            peak = long_["peak_rss_mib"].get(name) or 0
            if peak > bound:
                problems.append(f"the {name} worker peaked at {peak} MiB (bound {bound} MiB)")
    for up in r.get("uploads") or []:
        rows = {u["upload"]: u for u in up["uploads"]}
        growth = rows["largest"]["peak_rss_mib"] - rows["small"]["peak_rss_mib"]
        if growth > web_growth_mib:
            problems.append(f"{up['storage']}: the web process grew {growth:.0f} MiB more for the largest upload "
                            f"than for a small one (bound {web_growth_mib:g} MiB)")
    return problems


def main(argv=None) -> int:
    from har.config import load_settings

    settings = load_settings()
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--clips", default=str(ROOT.parent / "shared" / "real-clips"), help="real clips, a folder per label")
    p.add_argument("--work", default=str(ROOT / "var" / "limits"), help="where the generated videos go")
    p.add_argument("--seconds", type=float, default=settings.max_video_seconds - 1,
                   help="the mosaic's length (default: a second under HAR_MAX_VIDEO_SECONDS)")
    p.add_argument("--grid", default="3x3", help="tiles, columns x rows")
    p.add_argument("--mosaic-clips", type=int, default=60, help="how many different clips the mosaic shows")
    p.add_argument("--upload-mb", type=int, default=settings.max_upload_mb, help="HAR_MAX_UPLOAD_MB for part 2")
    p.add_argument("--storage", nargs="*", default=["local", "s3"], choices=["local", "s3"])
    p.add_argument("--skip-long", action="store_true")
    p.add_argument("--skip-upload", action="store_true")
    p.add_argument("--sample-s", type=float, default=0.25)
    p.add_argument("--web-growth-mib", type=float, default=64.0)
    p.add_argument("--timeout", type=float, default=3600)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--markdown", default=None)
    a = p.parse_args(argv)
    work = Path(a.work)
    work.mkdir(parents=True, exist_ok=True)
    r: dict = {"sample_s": a.sample_s}
    with tempfile.TemporaryDirectory(prefix="har-limits-") as tmp:
        tmp = Path(tmp)
        if not a.skip_long:
            cols, rows = (int(x) for x in a.grid.split("x"))
            video = work / f"mosaic-{a.grid}-{a.seconds:g}s-{a.mosaic_clips}-{a.seed}.mp4"
            t0 = time.monotonic()
            r["mosaic"] = make_mosaic(Path(a.clips), video, a.seconds, (cols, rows), (1280, 720), 25,
                                      a.mosaic_clips, a.seed)
            print(f"[limits] mosaic {video} ({time.monotonic() - t0:.0f} s): {json.dumps(r['mosaic'])}", file=sys.stderr)
            r["long"] = run_long(video, tmp / "long", a.sample_s, a.timeout)
            print(f"[limits] long video: {json.dumps(r['long'])}", file=sys.stderr)
        if not a.skip_upload:
            from tests.media import make_people_video

            small = make_people_video(work / "small.mp4", seconds=2.0, size=(640, 360))
            large = make_large_upload(work / f"largest-{a.upload_mb}mb.mp4", a.upload_mb)
            r["uploads"] = []
            for storage in a.storage:
                r["uploads"].append(run_upload(storage, small, large, a.upload_mb, tmp / f"up-{storage}", a.sample_s))
                print(f"[limits] upload: {json.dumps(r['uploads'][-1])}", file=sys.stderr)
    r["problems"] = check(r, a.web_growth_mib)
    text = markdown(r, "python bench/limits.py " + " ".join(argv if argv is not None else sys.argv[1:]))
    print(text)
    if a.markdown:
        Path(a.markdown).write_text(text, encoding="utf-8")
    return 0 if not r["problems"] else 1


if __name__ == "__main__":
    raise SystemExit(main())
