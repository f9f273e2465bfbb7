"""Load test of the whole service on this machine: N concurrent uploads of short clips, Redis killed and restarted
midway, every job checked to end done exactly once.

The service is started with ``scripts/run_local.py`` (its own Redis, append-only, supervised; a fresh data
directory; loopback only). Then ``--jobs`` clients upload at once through the REST API (an upload answered 503,
the queue being down, is retried after a pause, as a client should, and counted). While the jobs run, Redis is
killed with SIGKILL (``--kill-redis-after``: once that many jobs are done); the runner restarts it. At the end
it prints the upload latencies (percentiles), jobs per minute, and checks in the database that every accepted
job is ``done`` with exactly one "done" event, its four reports (JSON, CSV, HTML, video) and no stray jobs::

    python bench/load_test.py [--jobs 50] [--clip-seconds 2] [--kill-redis-after 10] [--markdown out.md]

Exit status 0 only when every check passes. Bounded: ``--timeout`` for the whole run.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import signal
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.bench_scale import get, video_state  # noqa: E402
from scripts.run_local import free_port  # noqa: E402
from tests.media import make_people_video  # noqa: E402

REPORTS_PER_JOB = 4  # JSON, CSV, HTML and the annotated video
STARTED = re.compile(r"\[run\] redis-server (?:started|restarted) \(pid (\d+)\)")


def percentile(values: list[float], q: float) -> float:
    v = sorted(values)
    if not v:
        return float("nan")
    k = (len(v) - 1) * q
    lo, hi = int(k), min(int(k) + 1, len(v) - 1)
    return v[lo] + (v[hi] - v[lo]) * (k - lo)


def post_video(base: str, path: Path, timeout: float = 120.0) -> tuple[int, dict]:
    boundary = uuid.uuid4().hex
    body = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"video\"; filename=\"{path.name}\"\r\n"
            f"Content-Type: application/octet-stream\r\n\r\n").encode() + path.read_bytes() + f"\r\n--{boundary}--\r\n".encode()
    req = urllib.request.Request(f"{base}/api/jobs", data=body, method="POST",
                                 headers={"Content-Type": f"multipart/form-data; boundary={boundary}"})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        try:
            return e.code, json.loads(e.read())
        except ValueError:
            return e.code, {}


class Runner:
    """``scripts/run_local.py`` in its own process group, its output kept (and searched for Redis' pid); ``env``:
    settings of its own on top of this process' environment."""

    def __init__(self, data_dir: Path, env: dict | None = None):
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        env = {**os.environ, "HAR_DATA_DIR": str(data_dir), "HAR_PORT": str(self.port),
               "HAR_REDIS_URL": f"redis://127.0.0.1:{free_port()}/0", "HAR_UPLOAD_RATE": "0", **(env or {})}
        self.proc = subprocess.Popen([sys.executable, str(ROOT / "scripts" / "run_local.py")], cwd=ROOT, env=env,
                                     stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                     start_new_session=True)
        self.log: list[str] = []
        self.ready = threading.Event()
        threading.Thread(target=self._pump, daemon=True).start()

    def _pump(self) -> None:
        for line in self.proc.stdout:
            self.log.append(line)
            if "[run] ready" in line:
                self.ready.set()

    def redis_pids(self) -> list[int]:
        return [int(m.group(1)) for line in list(self.log) if (m := STARTED.search(line))]

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGINT)
            try:
                self.proc.wait(90)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)


def run(jobs: int, clip_seconds: float, kill_after: int, timeout_s: float) -> dict:
    with tempfile.TemporaryDirectory(prefix="har-load-") as tmp:
        tmp = Path(tmp)
        clip = make_people_video(tmp / "clip.mp4", seconds=clip_seconds, size=(480, 270))
        runner = Runner(tmp / "data")
        t_start = time.monotonic()
        try:
            if not runner.ready.wait(180):
                raise RuntimeError("the service did not start:\n" + "".join(runner.log[-40:]))
            latencies: list[float] = []
            retries = 0
            ids: list[str] = []
            lock = threading.Lock()

            def submit(_i: int) -> None:
                nonlocal retries
                while time.monotonic() - t_start < timeout_s:
                    t0 = time.monotonic()
                    code, body = post_video(runner.base, clip)
                    with lock:
                        latencies.append(time.monotonic() - t0)
                        if code in (201, 202):
                            ids.append(body["id"])
                            return
                        if code != 503:
                            raise RuntimeError(f"upload refused: {code} {body}")
                        retries += 1  # the queue was down: the job was recorded failed; send again
                    time.sleep(1.0)
                raise RuntimeError("upload kept failing until the timeout")

            t0 = time.monotonic()
            with ThreadPoolExecutor(max_workers=jobs) as pool:
                list(pool.map(submit, range(jobs)))
            submitted_s = time.monotonic() - t0
            killed_at = None
            done_at: dict[str, float] = {}
            final: dict[str, str] = {}
            while len(final) < len(ids):
                if time.monotonic() - t_start > timeout_s:
                    raise RuntimeError(f"timed out: {len(final)} of {len(ids)} jobs finished")
                for jid in ids:
                    if jid in final:
                        continue
                    try:
                        j = get(runner.base, jid)
                    except (urllib.error.URLError, OSError):
                        continue
                    if j["status"] in ("done", "failed"):
                        done_at.setdefault(jid, time.monotonic() - t0)
                        # finished once its annotated video is too (its report row comes with it)
                        if j["status"] == "failed" or video_state(j) in ("ready", "failed", None):
                            final[jid] = j["status"] if j["status"] == "done" else f"failed: {j.get('error')}"
                if killed_at is None and len(done_at) >= kill_after:
                    pids = runner.redis_pids()
                    os.kill(pids[-1], signal.SIGKILL)
                    killed_at = (time.monotonic() - t0, len(done_at))
                time.sleep(0.3)
            restarted = len(runner.redis_pids()) > 1
        finally:
            runner.stop()
        db = sqlite3.connect(tmp / "data" / "har.sqlite3")
        try:
            rows = db.execute("SELECT id, status FROM jobs").fetchall()
            done_events = dict(db.execute("SELECT job_id, COUNT(*) FROM job_events WHERE status = 'done' GROUP BY job_id"))
            reports = dict(db.execute("SELECT job_id, COUNT(*) FROM reports GROUP BY job_id"))
        finally:
            db.close()
    status = dict(rows)
    accepted = set(ids)
    problems = []
    for jid in ids:
        if status.get(jid) != "done":
            problems.append(f"{jid}: {status.get(jid)} ({final.get(jid)})")
        if done_events.get(jid, 0) != 1:
            problems.append(f"{jid}: {done_events.get(jid, 0)} 'done' events")
    extra = [jid for jid, st in status.items() if jid not in accepted and st != "failed"]
    problems += [f"{jid}: a job no client was given, {status[jid]}" for jid in extra]
    problems += [f"{jid}: {reports.get(jid, 0)} reports, not {REPORTS_PER_JOB}" for jid in ids
                 if status.get(jid) == "done" and reports.get(jid, 0) != REPORTS_PER_JOB]
    if not restarted:
        problems.append("Redis was not restarted by the runner")
    last = max(done_at.values()) if done_at else float("nan")
    return {
        "jobs": jobs, "accepted": len(ids), "done": sum(status.get(j) == "done" for j in ids),
        "done_once": sum(done_events.get(j, 0) == 1 for j in ids), "upload_retries_503": retries,
        "refused_jobs_recorded_failed": sum(1 for jid, st in status.items() if jid not in accepted and st == "failed"),
        "report_sets": sorted(set(reports.get(j, 0) for j in ids)),
        "submit_p50_s": round(percentile(latencies, 0.5), 3), "submit_p90_s": round(percentile(latencies, 0.9), 3),
        "submit_p99_s": round(percentile(latencies, 0.99), 3), "submit_max_s": round(max(latencies), 3),
        "all_submitted_s": round(submitted_s, 1), "redis_killed_at": killed_at, "redis_restarted": restarted,
        "all_done_s": round(last, 1), "jobs_per_min": round(60 * len(ids) / last, 1) if last == last else None,
        "median_to_done_s": round(statistics.median(done_at.values()), 1) if done_at else None,
        "problems": problems,
    }


def markdown(r: dict, command: str) -> str:
    killed = r["redis_killed_at"]
    return "\n".join([
        f"{r['jobs']} clients uploading a {r['clip_seconds']} s 480×270 clip at once to `scripts/run_local.py` on this "
        f"machine ({os.cpu_count()} CPUs), Redis killed (SIGKILL) once {killed[1]} jobs were finished "
        f"({killed[0]:.1f} s after the first upload) and restarted by the runner.", "",
        "| accepted | done | done exactly once | 503 retries | upload latency p50 / p90 / p99 / max (s) "
        "| all uploaded (s) | all done (s) | jobs/min |",
        "|---|---|---|---|---|---|---|---|",
        f"| {r['accepted']} | {r['done']} | {r['done_once']} | {r['upload_retries_503']} | {r['submit_p50_s']} / "
        f"{r['submit_p90_s']} / {r['submit_p99_s']} / {r['submit_max_s']} | {r['all_submitted_s']} | {r['all_done_s']} "
        f"| {r['jobs_per_min']} |", "",
        "Problems: " + ("none" if not r["problems"] else "; ".join(r["problems"])), "",
        f"Command: `{command}`", ""])


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--jobs", type=int, default=50)
    p.add_argument("--clip-seconds", type=float, default=2.0)
    p.add_argument("--kill-redis-after", type=int, default=None,
                   help="kill Redis once this many jobs have finished (default: a fifth of --jobs)")
    p.add_argument("--timeout", type=float, default=1200)
    p.add_argument("--markdown", default=None)
    a = p.parse_args(argv)
    kill_after = a.kill_redis_after if a.kill_redis_after is not None else max(1, a.jobs // 5)
    if not 1 <= kill_after <= a.jobs:
        p.error("--kill-redis-after must be between 1 and --jobs")
    r = run(a.jobs, a.clip_seconds, kill_after, a.timeout)
    r["clip_seconds"] = a.clip_seconds
    print(json.dumps(r), file=sys.stderr)
    text = markdown(r, "python bench/load_test.py " + " ".join(argv if argv is not None else sys.argv[1:]))
    print(text)
    if a.markdown:
        Path(a.markdown).write_text(text, encoding="utf-8")
    return 0 if not r["problems"] else 1


if __name__ == "__main__":
    raise SystemExit(main())
