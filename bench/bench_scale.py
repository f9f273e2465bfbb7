"""How many jobs a machine finishes: N clips submitted at once to the whole service, for several worker layouts.

For each layout (pose worker processes x onnxruntime threads per process) the service is started with
``scripts/run_local.py`` on a fresh data directory and its own Redis, the clips are uploaded at once through the
REST API, and the job states are polled until every job is done and every annotated video is ready. Prints, per
layout: jobs per minute (to done = reports ready, and to the last annotated video), the median and worst time from
upload to done, and CPU seconds per second of video (all processes of the service: web, workers, Redis)::

    python bench/bench_scale.py [--clip var/bench-clips/jj_720p.mp4] [--jobs 6] [--layouts 1x2 1x1 2x1]

A layout ``PxT`` is P pose worker processes (``HAR_POSE_WORKERS``) with T onnxruntime threads each
(``HAR_POSE_THREADS``); the classify and video workers are one process each, as ``scripts/run_local.py`` starts
them.
"""
from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from models.video import probe_video  # noqa: E402
from scripts.run_local import free_port  # noqa: E402

CLK = os.sysconf("SC_CLK_TCK")


def proc_stats() -> tuple[dict[int, list[str]], dict[int, list[int]]]:
    """Every live process's ``/proc/PID/stat`` fields from the state field on, and parent pid → child pids."""
    stats: dict[int, list[str]] = {}
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            raw = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        fields = raw[raw.rindex(")") + 2:].split()
        pid = int(entry)
        stats[pid] = fields
        children.setdefault(int(fields[1]), []).append(pid)
    return stats, children


def tree_cpu_s(root_pid: int) -> float:
    """CPU seconds (user + system) used so far by ``root_pid`` and all its live descendants, plus what their
    finished children used (as the kernel accounts it)."""
    stats, children = proc_stats()
    total, todo = 0.0, [root_pid]
    while todo:
        pid = todo.pop()
        f = stats.get(pid)
        if f is None:
            continue
        # utime, stime, cutime, cstime: fields 14-17 of stat, here 11-14 (counting from the state field)
        total += sum(int(x) for x in f[11:15]) / CLK
        todo += children.get(pid, [])
    return total


def upload(base: str, path: Path) -> str:
    boundary = uuid.uuid4().hex
    body = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"video\"; filename=\"{path.name}\"\r\n"
            f"Content-Type: application/octet-stream\r\n\r\n").encode() + path.read_bytes() + f"\r\n--{boundary}--\r\n".encode()
    req = urllib.request.Request(f"{base}/api/jobs", data=body, method="POST",
                                 headers={"Content-Type": f"multipart/form-data; boundary={boundary}"})
    with urllib.request.urlopen(req, timeout=120) as r:
        return json.loads(r.read())["id"]


def get(base: str, job_id: str) -> dict:
    with urllib.request.urlopen(f"{base}/api/jobs/{job_id}", timeout=30) as r:
        return json.loads(r.read())


def video_state(job: dict) -> str | None:
    """The annotated video's state in the job JSON (``annotated_video.status``; None when none is made)."""
    v = job.get("annotated_video")
    return v.get("status") if isinstance(v, dict) else None


def run_layout(clip: Path, jobs: int, pose_workers: int, threads: int, timeout_s: float) -> dict:
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    with tempfile.TemporaryDirectory() as data:
        env = dict(os.environ, HAR_DATA_DIR=data, HAR_PORT=str(port), HAR_POSE_WORKERS=str(pose_workers),
                   HAR_POSE_THREADS=str(threads), HAR_REDIS_URL=f"redis://127.0.0.1:{free_port()}/0")
        proc = subprocess.Popen([sys.executable, str(ROOT / "scripts" / "run_local.py")], cwd=ROOT, env=env,
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)
        ready = threading.Event()
        log: list[str] = []

        def pump():
            for line in proc.stdout:
                log.append(line)
                if "[run] ready" in line:
                    ready.set()
        threading.Thread(target=pump, daemon=True).start()
        try:
            if not ready.wait(180):
                raise RuntimeError("the service did not start:\n" + "".join(log[-40:]))
            # the workers load their models at start; give them the moment a running service has had
            time.sleep(8)
            cpu0, t0 = tree_cpu_s(proc.pid), time.monotonic()
            ids: list[str] = [None] * jobs
            submitted: dict[str, float] = {}

            def send(i):
                ids[i] = upload(base, clip)
                submitted[ids[i]] = time.monotonic()
            threads_ = [threading.Thread(target=send, args=(i,)) for i in range(jobs)]
            for t in threads_:
                t.start()
            for t in threads_:
                t.join()
            done: dict[str, float] = {}
            video: dict[str, float] = {}
            failed: dict[str, str] = {}
            while len(video) + len(failed) < jobs:
                if time.monotonic() - t0 > timeout_s:
                    raise RuntimeError(f"timed out: {len(done)} done, {len(video)} videos of {jobs}")
                for jid in ids:
                    if jid in video or jid in failed:
                        continue
                    j = get(base, jid)
                    now = time.monotonic()
                    if j["status"] == "failed":
                        failed[jid] = j.get("error") or "failed"
                    elif j["status"] == "done":
                        done.setdefault(jid, now)
                        if video_state(j) in ("ready", "failed", None):
                            video[jid] = now
                time.sleep(0.2)
            cpu = tree_cpu_s(proc.pid) - cpu0
        finally:
            os.killpg(proc.pid, signal.SIGINT)
            try:
                proc.wait(90)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
    if failed:
        raise RuntimeError(f"jobs failed: {failed}")
    to_done = [done[j] - submitted[j] for j in ids]
    last_done, last_video = max(done.values()) - t0, max(video.values()) - t0
    video_s = probe_video(clip).duration_s * jobs
    return {"layout": f"{pose_workers}x{threads}", "pose_workers": pose_workers, "threads": threads, "jobs": jobs,
            "video_s": round(video_s, 1), "last_done_s": round(last_done, 1), "last_video_s": round(last_video, 1),
            "jobs_per_min_done": round(60 * jobs / last_done, 2), "jobs_per_min_video": round(60 * jobs / last_video, 2),
            "median_to_done_s": round(statistics.median(to_done), 1), "max_to_done_s": round(max(to_done), 1),
            "cpu_s": round(cpu, 1), "cpu_per_video_s": round(cpu / video_s, 3)}


def markdown(rows: list[dict], meta: dict) -> str:
    L = [f"{meta['jobs']} copies of `{meta['clip']}` ({meta['clip_s']:.1f} s of video each) uploaded at once to "
         f"`scripts/run_local.py` on this machine ({os.cpu_count()} CPUs); layout = pose worker processes × "
         "onnxruntime threads each; one classify and one video worker.", "",
         "| layout | all done (s) | jobs/min to done | all videos (s) | jobs/min with video | upload → done, median / worst (s) "
         "| CPU s per video s |", "|---|---|---|---|---|---|---|"]
    for r in rows:
        L.append(f"| {r['pose_workers']} × {r['threads']} | {r['last_done_s']} | {r['jobs_per_min_done']} | "
                 f"{r['last_video_s']} | {r['jobs_per_min_video']} | {r['median_to_done_s']} / {r['max_to_done_s']} | "
                 f"{r['cpu_per_video_s']} |")
    L += ["", f"Command: `{meta['command']}`", ""]
    return "\n".join(L)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--clip", default=str(ROOT / "var" / "bench-clips" / "jj_720p.mp4"))
    p.add_argument("--jobs", type=int, default=6)
    p.add_argument("--layouts", nargs="*", default=["1x2", "1x1", "2x1"])
    p.add_argument("--timeout", type=float, default=900)
    p.add_argument("--markdown", default=None)
    a = p.parse_args(argv)
    clip = Path(a.clip)
    rows = []
    for layout in a.layouts:
        workers, threads = (int(x) for x in layout.split("x"))
        row = run_layout(clip, a.jobs, workers, threads, a.timeout)
        rows.append(row)
        print(json.dumps(row), file=sys.stderr)
    meta = {"jobs": a.jobs, "clip": clip.name, "clip_s": probe_video(clip).duration_s,
            "command": "python bench/bench_scale.py " + " ".join(argv if argv is not None else sys.argv[1:])}
    text = markdown(rows, meta)
    print(text)
    if a.markdown:
        Path(a.markdown).write_text(text, encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
