"""Chaos soak on the production layout: PostgreSQL, Redis (append-only), S3-compatible storage, two web processes
(gunicorn) and one worker per queue (pose, classify, video, webhook), each a local process, under load and faults.

Started here, each in a temporary directory of its own:

- PostgreSQL: its own cluster (``initdb`` / ``pg_ctl`` from the Debian package; as root, run as ``postgres``);
- Redis with its append-only file (fsync every second), supervised: restarted on the same port with the same dir;
- moto's S3 server (``python -m moto.server``) behind a small TCP proxy this script controls: the service only knows
  the proxy's address, so "the object storage unreachable" is the proxy refusing and cutting connections (moto keeps
  its objects in memory: stopping it would lose them);
- two gunicorn masters (2 workers x 4 threads each, as in ``docker-compose.yml``) on two ports, and the Celery
  workers of the four queues; all supervised as ``scripts/run_local.py`` supervises its parts (its ``supervise``:
  restarted after 1 s, doubling while a part keeps dying).

Load: ``--clients`` concurrent clients, each a loop that uploads a real clip with the command-line client
(``python -m har.client submit CLIP --url ...``, the two web processes in turn), waits until its job is done or
failed, then uploads the next, until ``--jobs`` uploads were accepted. An upload refused with a 5xx or cut off is sent
again (to the other web process) after a pause, and counted. Meanwhile finished jobs are re-run (``--reruns``) and
deleted (``--deletes``) through the API.

Faults: a random worker process (a Celery worker's main process or its pool process) SIGKILLed every 20-30 s; Redis
SIGKILLed (the supervisor restarts it); PostgreSQL stopped with ``pg_ctl stop -m immediate`` for ``--outage-s``
then started again; the object storage unreachable for ``--outage-s``; a web process (gunicorn master) SIGKILLed.
The four single faults fire when the given share of the uploads was accepted (``--fault-points``). While the
database is down the web processes are probed (a job's status, the job list, an upload, a page) and what the
clients got is recorded.

Checks, once every job has ended: every accepted job ends done, or failed with a reason (which is printed) and can
be re-run (each failed one is re-run here and must end done); exactly one "done" event per done job; every report
row's object is in the bucket with the row's size and sha256 (uploads: the videos rows' too); no object in the bucket
without a row and no row without its object; deleted jobs leave no row and no object behind; nothing stuck (no job
unfinished, no video rendering); during the database outage the web answered 503 with a message, never 500.

    nice -n 5 python bench/soak.py --jobs 200 --clients 20 --markdown bench/results/soak.md
    nice -n 10 python bench/soak.py --jobs 16 --clients 4 --reruns 2 --deletes 2 --fault-points \\
        redis=0.2,postgres=0.4,storage=0.6,web=0.8        # a short version: a few minutes

Exit status 0 only when every check passes.
"""
from __future__ import annotations

import argparse
import collections
import glob
import hashlib
import json
import os
import random
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
import uuid
from datetime import datetime, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.load_test import percentile  # noqa: E402
from scripts.run_local import RestartPolicy, Service, free_port, port_open, supervise  # noqa: E402

S3_ENV = {"AWS_ACCESS_KEY_ID": "soak", "AWS_SECRET_ACCESS_KEY": "soak-secret", "AWS_DEFAULT_REGION": "us-east-1"}
BUCKET, PREFIX = "har-soak", "har"
WORKER_QUEUES = ("pose", "classify", "video", "webhook")
FAULTS = ("redis", "postgres", "storage", "web")
VIDEO_EXTS = (".mp4", ".avi", ".mov", ".mkv", ".webm")


def now() -> float:
    return time.time()


def iso(t: float) -> str:
    return datetime.fromtimestamp(t, timezone.utc).strftime("%H:%M:%S")


def wait_until(pred, timeout: float, interval: float = 0.2):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = pred()
        if value:
            return value
        time.sleep(interval)
    return None


# ----------------------------------------------------------------------------------------------- parts
class Part(Service):
    """A supervised child process (scripts/run_local.py's Service) whose output goes to a log file; every start is
    remembered (time, pid)."""

    def __init__(self, name: str, what: str, cmd: list[str], env: dict, log: Path, stop_timeout: float = 30.0):
        super().__init__(name, what, cmd, env, stop_timeout)
        self.log = log
        self.start_log: list[tuple[float, int]] = []

    def start(self) -> "Part":
        with open(self.log, "a") as out:
            out.write(f"\n===== [soak] {self.what} {'started' if not self.starts else 'restarted'} at {iso(now())}\n")
            out.flush()
            self.proc = subprocess.Popen(self.cmd, cwd=ROOT, env=self.env, stdout=out, stderr=subprocess.STDOUT,
                                         start_new_session=True)
        self.starts += 1
        self.started_at = time.monotonic()
        self.restart_at = None
        self.start_log.append((now(), self.proc.pid))
        return self

    def ready_count(self) -> int:
        try:
            return self.log.read_text(errors="replace").count(" ready.")
        except OSError:
            return 0

    def children(self) -> list[int]:
        if not self.alive():
            return []
        out = subprocess.run(["ps", "-o", "pid=", "--ppid", str(self.proc.pid)], capture_output=True, text=True)
        return [int(p) for p in out.stdout.split()]


class Supervisor:
    """Restarts the parts that die, as scripts/run_local.py does (its supervise() and restart policy)."""

    def __init__(self, parts: list[Part]):
        self.parts = parts
        self.policy = RestartPolicy(delay_s=1.0, delay_max_s=30.0, stable_s=60.0, give_up=10**6)
        self.stop = threading.Event()
        self.lock = threading.Lock()
        self.thread = threading.Thread(target=self._loop, daemon=True)

    def _loop(self) -> None:
        import contextlib
        import io

        while not self.stop.is_set():
            with self.lock, contextlib.redirect_stdout(io.StringIO()):  # its "[run] ... restarting" lines
                supervise(self.parts, self.policy, time.monotonic())
            self.stop.wait(0.2)

    def shutdown(self) -> None:
        self.stop.set()
        self.thread.join(5)
        for p in reversed(self.parts):
            p.restart_at = None
            try:
                p.stop()
            except Exception:  # noqa: BLE001 - stop the rest anyway
                p.kill_leftovers()


class TcpProxy:
    """A TCP forwarder in front of the S3 server. ``down()``: the port refuses connections and every open one is cut
    (reset); ``up()``: it listens again on the same port."""

    def __init__(self, target_port: int):
        self.target = ("127.0.0.1", target_port)
        self.port = free_port()
        self.lock = threading.Lock()
        self.conns: set[socket.socket] = set()
        self.listener: socket.socket | None = None
        self.up()

    def up(self) -> None:
        s = socket.socket()
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind(("127.0.0.1", self.port))
        s.listen(128)
        self.listener = s
        threading.Thread(target=self._accept, args=(s,), daemon=True).start()

    def down(self) -> None:
        s, self.listener = self.listener, None
        if s is not None:
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            s.close()
        with self.lock:
            conns, self.conns = list(self.conns), set()
        for c in conns:
            try:
                c.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")  # RST
                c.close()
            except OSError:
                pass

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return
            try:
                upstream = socket.create_connection(self.target, timeout=5)
                upstream.settimeout(None)
            except OSError:
                client.close()
                continue
            with self.lock:
                self.conns.update((client, upstream))
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(a, b), daemon=True).start()

    def _pump(self, src: socket.socket, dst: socket.socket) -> None:
        try:
            while True:
                data = src.recv(65536)
                if not data:
                    break
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
            with self.lock:
                for s in (src, dst):
                    if s in self.conns:
                        self.conns.discard(s)
                        s.close()


def start_s3_server(log: Path) -> tuple[subprocess.Popen, int]:
    """moto's S3 server on a free local port, in its own session (its output to ``log``): (process, port)."""
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
                            stdout=open(log, "w"), stderr=subprocess.STDOUT, start_new_session=True,
                            env={**os.environ, **S3_ENV})
    if not wait_until(lambda: port_open("127.0.0.1", port), 60):
        proc.kill()
        raise RuntimeError("the S3 server did not start")
    return proc, port


class Postgres:
    """A throw-away cluster (trust auth, 127.0.0.1, a free port), as tests/conftest.py starts it."""

    def __init__(self, base: Path):
        found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
        if not found:
            raise SystemExit("PostgreSQL server binaries are not installed (apt-get install postgresql)")
        self.bindir = Path(found[-1]).parent
        self.base = base
        self.prefix: list[str] = []
        if os.geteuid() == 0:
            import pwd

            pw = pwd.getpwnam("postgres")
            os.chown(base, pw.pw_uid, pw.pw_gid)
            self.prefix = ["runuser", "-u", "postgres", "--"]
        self.data, self.logfile = base / "data", base / "server.log"
        self.port = free_port()
        self.url = f"postgresql+psycopg://har@127.0.0.1:{self.port}/har"

    def _run(self, *cmd, check: bool = True) -> subprocess.CompletedProcess:
        res = subprocess.run(self.prefix + [str(c) for c in cmd], capture_output=True, text=True, timeout=120)
        if check and res.returncode:
            raise RuntimeError(f"{cmd[0]} failed ({res.returncode}):\n{res.stdout}\n{res.stderr}")
        return res

    def init(self) -> None:
        self._run(self.bindir / "initdb", "-D", self.data, "-U", "har", "-A", "trust", "-E", "UTF8", "--no-sync",
                  "--no-instructions")
        self.start()
        self._run(self.bindir / "createdb", "-h", "127.0.0.1", "-p", self.port, "-U", "har", "har")

    def start(self) -> None:
        self._run(self.bindir / "pg_ctl", "-D", self.data, "-l", self.logfile, "-w", "-t", "60", "-o",
                  f"-p {self.port} -k {self.base} -h 127.0.0.1 -c max_connections=200", "start")

    def stop(self, mode: str = "fast") -> None:
        self._run(self.bindir / "pg_ctl", "-D", self.data, "-m", mode, "-w", "stop", check=False)


# ----------------------------------------------------------------------------------------------- HTTP
def http(method: str, url: str, token: str | None = None, data: bytes | None = None,
         headers: dict | None = None, timeout: float = 30.0) -> tuple[int, dict | str]:
    """(status, JSON body or text); status 0 and the error when there was no answer."""
    h = {"Accept": "application/json", **(headers or {})}
    if token:
        h["Authorization"] = f"Bearer {token}"
    req = urllib.request.Request(url, data=data, method=method, headers=h)
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            raw, code = r.read(), r.status
    except urllib.error.HTTPError as e:
        raw, code = e.read(), e.code
    except (OSError, urllib.error.URLError) as e:
        return 0, f"{type(e).__name__}: {e}"
    try:
        return code, json.loads(raw or b"{}")
    except ValueError:
        return code, raw.decode("utf-8", "replace")[:300]


def multipart(path: Path) -> tuple[bytes, dict]:
    boundary = uuid.uuid4().hex
    body = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"video\"; filename=\"{path.name}\"\r\n"
            f"Content-Type: application/octet-stream\r\n\r\n").encode() + path.read_bytes() + \
        f"\r\n--{boundary}--\r\n".encode()
    return body, {"Content-Type": f"multipart/form-data; boundary={boundary}"}


# ----------------------------------------------------------------------------------------------- clips
def pick_clips(folder: Path, count: int) -> list[Path]:
    """``count`` clips, the cheapest (duration x pixels) of each label folder in turn, so that every class is there."""
    from models.video import probe_video

    per_label: dict[str, list[tuple[float, Path]]] = {}
    subs = sorted(p for p in folder.iterdir() if p.is_dir()) or [folder]  # a folder per label, or one flat folder
    for sub in subs:
        for f in sorted(sub.iterdir()):
            if f.suffix.lower() not in VIDEO_EXTS or f.stat().st_size < 4096:
                continue
            try:
                info = probe_video(f)
            except Exception:  # noqa: BLE001 - not a readable video: skip it
                continue
            if not info.duration_s or info.duration_s < 0.8:
                continue  # too short for one action window: would only say too_short
            per_label.setdefault(sub.name, []).append((info.duration_s * info.width * info.height, f))
    queues = [sorted(v) for _, v in sorted(per_label.items())]
    chosen: list[Path] = []
    while len(chosen) < count and any(queues):
        for q in queues:
            if q and len(chosen) < count:
                chosen.append(q.pop(0)[1])
    return chosen


# ----------------------------------------------------------------------------------------------- the soak
class Soak:
    def __init__(self, args):
        self.args = args
        self.rng = random.Random(args.seed)
        self.tmp = Path(tempfile.mkdtemp(prefix="har-soak-"))
        self.logs = self.tmp / "logs"
        self.logs.mkdir()
        self.lock = threading.Lock()
        self.events: list[dict] = []  # faults and what happened around them
        self.accepted: dict[str, dict] = {}  # job id -> {kind, clip, t_submit, url}
        self.attempts: list[dict] = []  # every upload attempt of the clients: t0, t1, url, rc, message
        self.refused_jobs: list[str] = []  # ids a 503 named (the job was recorded failed)
        self.deleted: dict[str, dict] = {}  # job id -> {t, video_path, report paths, video_shared}
        self.rerun_of: dict[str, str] = {}
        self.outcomes: dict[str, str] = {}  # job id -> final status the clients saw
        self.db_probes: list[dict] = []
        self.polls: list[tuple[float, int, str | None]] = []  # the clients' status requests: (t, HTTP status, error)
        self.n_started = 0
        self.load_done = threading.Event()
        self.stop_faults = threading.Event()
        self.fired: dict[str, bool] = {f: False for f in FAULTS}

    # -- setup --------------------------------------------------------------------------------------
    def start(self) -> None:
        a = self.args
        py = sys.executable
        self.pg = Postgres(Path(tempfile.mkdtemp(prefix="har-soak-pg-")))
        self.pg.init()
        from har.database import upgrade_database

        upgrade_database(self.pg.url)

        self.moto, moto_port = start_s3_server(self.logs / "moto.log")
        self.moto_url = f"http://127.0.0.1:{moto_port}"
        self.proxy = TcpProxy(moto_port)
        self.s3 = self._s3_client(self.moto_url)
        self.s3.create_bucket(Bucket=BUCKET)

        self.redis_port = free_port()
        redis_dir = self.tmp / "redis"
        redis_dir.mkdir()
        env = dict(os.environ)
        for k in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3"):
            env.pop(k, None)
        env.update(S3_ENV)
        env.update({
            "HAR_DATABASE_URL": self.pg.url,
            "HAR_REDIS_URL": f"redis://127.0.0.1:{self.redis_port}/0",
            "HAR_STORAGE_URL": f"s3://{BUCKET}/{PREFIX}",
            "HAR_S3_ENDPOINT_URL": f"http://127.0.0.1:{self.proxy.port}",
            "HAR_SECRET_KEY": "soak-" + uuid.uuid4().hex,
            "HAR_UPLOAD_RATE": "0",
            "HAR_MIN_FREE_MB": "0",
            "PYTHONUNBUFFERED": "1",
            "PYTHONPATH": str(ROOT),
            "REMAP_SIGTERM": "SIGQUIT",
        })
        if a.pose_imgsz:
            env["HAR_POSE_IMGSZ"] = str(a.pose_imgsz)
        self.env = env

        def own_dir(name: str) -> dict:
            d = self.tmp / "data" / name
            d.mkdir(parents=True)
            return {**env, "HAR_DATA_DIR": str(d), "HAR_STORAGE_DIR": str(d / "spool")}

        self.redis = Part("redis", "redis-server", [
            shutil.which("redis-server") or "redis-server", "--port", str(self.redis_port), "--bind", "127.0.0.1",
            "--dir", str(redis_dir), "--appendonly", "yes", "--appendfsync", "everysec", "--save", "",
            "--daemonize", "no", "--protected-mode", "yes", "--loglevel", "warning"], env, self.logs / "redis.log", 15)
        self.redis.start()
        if not wait_until(lambda: port_open("127.0.0.1", self.redis_port), 15):
            raise RuntimeError("redis-server did not start")

        celery = [py, "-m", "celery", "-A", "worker.celery_app", "worker", "--loglevel", "INFO",
                  "--without-gossip", "--without-mingle"]
        self.workers: dict[str, Part] = {}
        for q in WORKER_QUEUES:
            self.workers[q] = Part(q, f"{q} worker", celery + ["-Q", q, "-n", f"{q}@soak",
                                                                "--concurrency", "2" if q == "webhook" else "1"],
                                   own_dir(q), self.logs / f"worker-{q}.log", 60).start()
        gunicorn = str(Path(py).parent / "gunicorn") if (Path(py).parent / "gunicorn").exists() else "gunicorn"
        self.webs: list[Part] = []
        self.urls: list[str] = []
        for i in range(2):
            port = free_port()
            self.urls.append(f"http://127.0.0.1:{port}")
            self.webs.append(Part(f"web{i + 1}", f"web process {i + 1}", [
                gunicorn, "web:create_app()", "--bind", f"127.0.0.1:{port}", "--workers", str(a.web_workers),
                "--threads", "4", "--timeout", "300", "--access-logfile", "-"],
                own_dir(f"web{i + 1}"), self.logs / f"web{i + 1}.log", 15).start())
        self.supervisor = Supervisor([self.redis, *self.workers.values(), *self.webs])
        for q, w in self.workers.items():
            if not wait_until(lambda w=w: w.ready_count() >= 1, 180, 0.5):
                raise RuntimeError(f"the {q} worker did not start:\n{w.log.read_text()[-3000:]}")
        for url in self.urls:
            if not wait_until(lambda url=url: http("GET", url + "/readyz", timeout=5)[0] == 200, 120, 0.5):
                raise RuntimeError(f"{url} did not become ready: {http('GET', url + '/readyz')}")
        self.supervisor.thread.start()
        res = subprocess.run([py, "-m", "flask", "--app", "web", "tokens", "create", "soak"], cwd=ROOT,
                             env=own_dir("cli"), capture_output=True, text=True, timeout=120)
        if res.returncode:
            raise RuntimeError(f"could not create the token: {res.stderr}")
        self.token = res.stdout.strip().splitlines()[-1]
        from sqlalchemy import create_engine

        self.engine = create_engine(self.pg.url, pool_pre_ping=True)

    @staticmethod
    def _s3_client(endpoint: str):
        import boto3
        from botocore.config import Config

        return boto3.session.Session(aws_access_key_id=S3_ENV["AWS_ACCESS_KEY_ID"],
                                     aws_secret_access_key=S3_ENV["AWS_SECRET_ACCESS_KEY"],
                                     region_name="us-east-1").client(
            "s3", endpoint_url=endpoint, config=Config(s3={"addressing_style": "path"}))

    def shutdown(self) -> None:
        self.stop_faults.set()
        try:
            self.supervisor.shutdown()
        except AttributeError:
            pass
        if getattr(self, "proxy", None):
            self.proxy.down()
        if getattr(self, "moto", None) and self.moto.poll() is None:
            os.killpg(self.moto.pid, signal.SIGTERM)
            try:
                self.moto.wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(self.moto.pid, signal.SIGKILL)
        if getattr(self, "engine", None):
            self.engine.dispose()
        if getattr(self, "pg", None):
            self.pg.stop("fast")
            shutil.rmtree(self.pg.base, ignore_errors=True)
        if self.args.keep:
            print(f"[soak] logs kept in {self.tmp}", file=sys.stderr)
        else:
            shutil.rmtree(self.tmp, ignore_errors=True)

    # -- database helpers (the checks' own view) -----------------------------------------------------
    def query(self, sql: str, **params) -> list:
        from sqlalchemy import text

        with self.engine.connect() as c:
            return list(c.execute(text(sql), params))

    def try_query(self, sql: str, **params) -> list | None:
        try:
            return self.query(sql, **params)
        except Exception:  # noqa: BLE001 - the database is down right now
            return None

    # -- load -----------------------------------------------------------------------------------------
    def client_submit(self, clip: Path, k: int) -> str | None:
        """Upload ``clip`` with the command-line client, sending it again (to the other web process) after a
        5xx or a broken connection; the job id, or None when it was never accepted."""
        for attempt in range(60):
            url = self.urls[(k + attempt) % len(self.urls)]
            t0 = now()
            cmd = [sys.executable, "-m", "har.client", "submit", str(clip), "--url", url, "--token", self.token,
                   "--quiet"]
            try:
                res = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300)
                rc, out, err = res.returncode, res.stdout, res.stderr
            except subprocess.TimeoutExpired:
                rc, out, err = -1, "", "timed out after 300 s"
            t1 = now()
            message = (err.strip().splitlines() or [""])[-1]
            with self.lock:
                self.attempts.append(dict(t0=t0, t1=t1, url=url, rc=rc, message=message[:300]))
            if rc == 0:
                job_id = out.split()[0]
                with self.lock:
                    self.accepted[job_id] = dict(kind="upload", clip=clip.name, t_submit=t0, t_answer=t1, url=url)
                return job_id
            m = re.search(r"job ([0-9a-f-]{36}) was recorded as failed", err)
            if m:
                with self.lock:
                    self.refused_jobs.append(m.group(1))
            if rc == 4:  # refused for good (4xx): not the faults' doing
                return None
            time.sleep(2.0 + self.rng.random())
        return None

    def wait_job(self, job_id: str, timeout: float) -> str:
        """Poll the job through the web processes until it is done or failed (errors: tried again)."""
        deadline = time.monotonic() + timeout
        i = 0
        while time.monotonic() < deadline:
            t0 = now()
            code, body = http("GET", f"{self.urls[i % 2]}/api/jobs/{job_id}", self.token, timeout=15)
            with self.lock:
                self.polls.append((t0, code, body.get("error") if isinstance(body, dict) else None))
            i += 1
            if code == 200 and isinstance(body, dict) and body.get("status") in ("done", "failed"):
                with self.lock:
                    self.outcomes[job_id] = body["status"]
                return body["status"]
            time.sleep(1.0)
        return "timeout"

    def client_loop(self, k: int) -> None:
        while not self.abort.is_set():
            with self.lock:
                if self.n_started >= self.args.jobs:
                    return
                n = self.n_started
                self.n_started += 1
            clip = self.clips[n % len(self.clips)]
            job_id = self.client_submit(clip, k)
            if job_id:
                self.wait_job(job_id, self.args.job_timeout)

    def manager_loop(self) -> None:
        """Re-runs and deletes of finished jobs while the rest run."""
        a = self.args
        reruns = deletes = 0
        acted: set[str] = set()
        shared_tried: set[str] = set()
        while not self.abort.is_set() and (reruns < a.reruns or deletes < a.deletes):
            if self.load_done.is_set() and now() - self.t_load_done > 180:
                break  # the load ended long ago and no job is left to act on
            time.sleep(a.manage_every_s)
            with self.lock:
                done = [j for j, s in self.outcomes.items() if s == "done" and j not in acted
                        and self.accepted.get(j, {}).get("kind") == "upload"]
            if not done:
                continue
            job_id = self.rng.choice(done)
            rerun_next = reruns < a.reruns and (deletes >= a.deletes or reruns <= deletes)
            with self.lock:  # every other delete: a job whose upload a finished re-run shares (the upload stays)
                shared = [old for new, old in self.rerun_of.items() if self.outcomes.get(new) == "done"
                          and old not in self.deleted and old not in shared_tried]
            if not rerun_next and deletes % 2 == 1 and shared:
                job_id = shared[0]
                shared_tried.add(job_id)
            acted.add(job_id)
            url = self.urls[self.rng.randrange(2)]
            if rerun_next:
                t0 = now()
                code, body = http("POST", f"{url}/api/jobs/{job_id}/rerun", self.token, data=b"",
                                  headers={"Content-Type": "application/x-www-form-urlencoded"})
                self._log_event("rerun", job_id=job_id, code=code,
                                new=body.get("id") if isinstance(body, dict) else None,
                                error=body.get("error") if isinstance(body, dict) else None)
                if code != 202:
                    acted.discard(job_id)  # refused for now (5xx, 409): tried again later, as a user would
                if code == 202:
                    reruns += 1
                    new = body["id"]
                    with self.lock:
                        self.accepted[new] = dict(kind="rerun", clip=self.accepted[job_id]["clip"], t_submit=t0,
                                                  t_answer=now(), url=url)
                        self.rerun_of[new] = job_id
                    threading.Thread(target=self.wait_job, args=(new, a.job_timeout), daemon=True).start()
            else:
                rows = self.try_query("SELECT v.path, (SELECT COUNT(*) FROM jobs o WHERE o.video_id = v.id) "
                                      "FROM jobs j JOIN videos v ON v.id = j.video_id WHERE j.id = :id", id=job_id)
                reports = self.try_query("SELECT path FROM reports WHERE job_id = :id", id=job_id)
                if not rows or reports is None:
                    acted.discard(job_id)
                    continue
                code, body = http("DELETE", f"{url}/api/jobs/{job_id}", self.token)
                self._log_event("delete", job_id=job_id, code=code,
                                error=body.get("error") if isinstance(body, dict) else None)
                if code != 204:
                    acted.discard(job_id)
                if code == 204:
                    deletes += 1
                    with self.lock:
                        self.deleted[job_id] = dict(t=now(), video_path=rows[0][0], shared=rows[0][1] > 1,
                                                    reports=[r[0] for r in reports])

    def _log_event(self, kind: str, **fields) -> dict:
        ev = dict(kind=kind, t=now(), **fields)
        with self.lock:
            self.events.append(ev)
        return ev

    # -- faults ---------------------------------------------------------------------------------------
    def running_jobs_of(self, pid: int) -> list[str]:
        rows = self.try_query("SELECT id FROM jobs WHERE worker LIKE :w AND status NOT IN ('done', 'failed') "
                              "OR (worker LIKE :w AND video_status = 'rendering')", w=f"%:{pid}")
        return [r[0] for r in rows or []]

    def kill_worker(self) -> None:
        q = self.rng.choice(WORKER_QUEUES)
        w = self.workers[q]
        with self.supervisor.lock:
            if not w.alive():
                return
            children = w.children()
            which = "pool process" if children and self.rng.random() < 0.5 else "main process"
            pid = self.rng.choice(children) if which == "pool process" else w.proc.pid
            jobs = self.running_jobs_of(children[0] if children else pid)
            ready_before = w.ready_count()
            t = now()
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                return
        ev = self._log_event("worker", queue=q, which=which, pid=pid, jobs=jobs)
        if which == "main process":
            back = wait_until(lambda: w.ready_count() > ready_before, 180, 0.2)
        else:
            back = wait_until(lambda: any(c != pid for c in w.children()), 60, 0.1)
        ev["restored"] = now() if back else None
        ev["t"] = t

    def fault_redis(self) -> None:
        import redis

        with self.supervisor.lock:
            pid = self.redis.proc.pid
            t = now()
            os.kill(pid, signal.SIGKILL)
        ev = self._log_event("redis", pid=pid)
        ev["t"] = t

        def ping():
            try:
                return redis.Redis(port=self.redis_port, socket_timeout=1).ping()
            except redis.RedisError:
                return False

        time.sleep(0.3)
        ev["restored"] = now() if wait_until(ping, 120, 0.1) else None
        ev["web_ok"] = self._web_ready_after()

    def _web_ready_after(self, timeout: float = 120) -> float | None:
        ok = wait_until(lambda: all(http("GET", u + "/readyz", timeout=5)[0] == 200 for u in self.urls), timeout, 0.2)
        return now() if ok else None

    def fault_postgres(self) -> None:
        probing = threading.Event()
        probe = threading.Thread(target=self._probe_db_down, args=(probing,), daemon=True)
        t = now()
        self.pg.stop("immediate")
        ev = self._log_event("postgres", down_s=self.args.outage_s)
        ev["t"] = t
        probe.start()
        time.sleep(self.args.outage_s)
        probing.set()
        probe.join(30)
        ev["start_t"] = now()
        self.pg.start()
        ev["restored"] = now()
        ev["web_ok"] = self._web_ready_after()

    def _probe_db_down(self, stop: threading.Event) -> None:
        """What the web processes answer while the database is down: a job's status, the job list, an upload, the
        upload page."""
        with self.lock:
            some = next(iter(self.accepted), str(uuid.uuid4()))
        body, headers = multipart(self.clips[0])
        i = 0
        while not stop.is_set():
            url = self.urls[i % 2]
            for what, method, path, data, h in (
                    ("job status", "GET", f"/api/jobs/{some}", None, None),
                    ("job list", "GET", "/api/jobs?page=1", None, None),
                    ("upload", "POST", "/api/jobs", body, headers),
                    ("page /jobs", "GET", "/jobs", None, {"Accept": "text/html"})):
                # the upload without a token: it gets past the token check and stores the file before the database
                code, resp = http(method, url + path, None if what == "upload" else self.token, data=data,
                                  headers=h, timeout=20)
                msg = resp.get("message") if isinstance(resp, dict) else (resp or "")[:120]
                err = resp.get("error") if isinstance(resp, dict) else None
                with self.lock:
                    self.db_probes.append(dict(t=now(), url=url, what=what, code=code, error=err, message=msg))
                if what == "upload" and isinstance(resp, dict) and code == 202:
                    with self.lock:
                        self.accepted[resp["id"]] = dict(kind="probe upload", clip=self.clips[0].name, t_submit=now(),
                                                         t_answer=now(), url=url)
            # and what the command-line client tells its user (its exit status and message)
            try:
                res = subprocess.run([sys.executable, "-m", "har.client", "submit", str(self.clips[0]), "--url", url,
                                      "--token", self.token, "--quiet"], cwd=ROOT, capture_output=True, text=True,
                                     timeout=60)
            except subprocess.TimeoutExpired:
                res = subprocess.CompletedProcess([], -1, "", "no answer within 60 s")
            with self.lock:
                self.db_probes.append(dict(t=now(), url=url, what="har.client submit", code=f"exit {res.returncode}",
                                           error=None, message=(res.stderr.strip().splitlines() or [""])[-1][:200]))
                if res.returncode == 0:
                    self.accepted[res.stdout.split()[0]] = dict(kind="probe upload", clip=self.clips[0].name,
                                                                t_submit=now(), t_answer=now(), url=url)
            i += 1
            stop.wait(0.5)

    def fault_storage(self) -> None:
        t = now()
        self.proxy.down()
        ev = self._log_event("storage", down_s=self.args.outage_s)
        ev["t"] = t
        time.sleep(self.args.outage_s)
        ev["start_t"] = now()
        self.proxy.up()
        ev["restored"] = now()
        ev["web_ok"] = self._web_ready_after()

    def fault_web(self) -> None:
        i = self.rng.randrange(2)
        w = self.webs[i]
        with self.supervisor.lock:
            pid = w.proc.pid
            t = now()
            os.kill(pid, signal.SIGKILL)
        ev = self._log_event("web", which=f"web process {i + 1} (gunicorn master)", pid=pid)
        ev["t"] = t
        time.sleep(0.2)
        ok = wait_until(lambda: w.alive() and w.proc.pid != pid
                        and http("GET", self.urls[i] + "/healthz", timeout=2)[0] == 200, 120, 0.1)
        ev["restored"] = now() if ok else None

    def fault_loop(self) -> None:
        a = self.args
        points = dict(a.fault_points)
        next_kill = now() + self.rng.uniform(a.kill_every[0], a.kill_every[1])
        while not self.stop_faults.is_set():
            with self.lock:
                share = len([j for j, v in self.accepted.items() if v["kind"] == "upload"]) / max(1, a.jobs)
            for fault in FAULTS:
                if not self.fired[fault] and share >= points[fault]:
                    self.fired[fault] = True
                    print(f"[soak] {iso(now())} fault: {fault}", file=sys.stderr, flush=True)
                    getattr(self, f"fault_{fault}")()
            if a.kill_every[1] > 0 and now() >= next_kill:
                self.kill_worker()
                next_kill = now() + self.rng.uniform(a.kill_every[0], a.kill_every[1])
            self.stop_faults.wait(0.5)

    # -- run ------------------------------------------------------------------------------------------
    def run(self) -> dict:
        a = self.args
        self.abort = threading.Event()
        self.clips = pick_clips(Path(a.clips), a.clip_count)
        if len(self.clips) < a.clip_count:
            raise SystemExit(f"only {len(self.clips)} usable clips in {a.clips}")
        print(f"[soak] {len(self.clips)} clips: {', '.join(c.name for c in self.clips)}", file=sys.stderr)
        self.start()
        print(f"[soak] service up ({', '.join(self.urls)}); logs in {self.tmp}", file=sys.stderr, flush=True)
        self.t_start = now()
        faults = threading.Thread(target=self.fault_loop, daemon=True)
        manager = threading.Thread(target=self.manager_loop, daemon=True)
        clients = [threading.Thread(target=self.client_loop, args=(k,), daemon=True) for k in range(a.clients)]
        progress = threading.Thread(target=self._progress, daemon=True)
        for t in (faults, manager, progress, *clients):
            t.start()
        deadline = time.monotonic() + a.timeout
        for t in clients:
            t.join(max(1.0, deadline - time.monotonic()))
        self.t_uploads_done = now()
        self.stop_faults.set()
        faults.join(300)
        for f in FAULTS:  # every fault fires, even when the load ended before its point
            if not self.fired[f]:
                self.fired[f] = True
                self._log_event("note", text=f"{f} fault fired after the load ended")
                getattr(self, f"fault_{f}")()
        self.t_load_done = now()
        self.load_done.set()
        manager.join(300)
        self.settle(max(60.0, deadline - time.monotonic()))
        self.t_end = now()
        self.rerun_failed()
        return self.check()

    def _progress(self) -> None:
        while not self.stop_faults.is_set():
            rows = self.try_query("SELECT status, COUNT(*) FROM jobs GROUP BY status")
            with self.lock:
                acc = len(self.accepted)
            print(f"[soak] {iso(now())} accepted {acc}; db: "
                  f"{dict(rows) if rows is not None else 'unreachable'}", file=sys.stderr, flush=True)
            self.stop_faults.wait(15)

    def settle(self, timeout: float) -> None:
        """Wait until no job is unfinished and no annotated video is rendering."""
        def quiet():
            rows = self.try_query("SELECT COUNT(*) FROM jobs WHERE status NOT IN ('done', 'failed') "
                                  "OR video_status = 'rendering'")
            return rows is not None and rows[0][0] == 0

        if not wait_until(quiet, timeout, 1.0):
            print("[soak] jobs still unfinished at the timeout", file=sys.stderr)
        time.sleep(3)

    def rerun_failed(self) -> None:
        """Every failed job that a client got (accepted, or named by a 503) is re-run once: it must end done."""
        rows = self.query("SELECT id, error FROM jobs WHERE status = 'failed'")
        self.failed_reruns: dict[str, dict] = {}
        for job_id, error in rows:
            code, body = http("POST", f"{self.urls[0]}/api/jobs/{job_id}/rerun", self.token, data=b"",
                              headers={"Content-Type": "application/x-www-form-urlencoded"})
            new = body.get("id") if isinstance(body, dict) and code == 202 else None
            self.failed_reruns[job_id] = dict(error=error, code=code, new=new, status=None)
        for r in self.failed_reruns.values():
            if r["new"]:
                r["status"] = self.wait_job(r["new"], self.args.job_timeout)
        self.settle(300)

    # -- checks ---------------------------------------------------------------------------------------
    def check(self) -> dict:
        a = self.args
        jobs = {r[0]: r for r in self.query(
            "SELECT j.id, j.status, j.error, j.video_status, j.video_error, j.finished_at, j.video_id, j.created_at, "
            "(SELECT MAX(r.created_at) FROM reports r WHERE r.job_id = j.id) FROM jobs j")}
        done_events = dict(self.query("SELECT job_id, COUNT(*) FROM job_events WHERE status = 'done' GROUP BY job_id"))
        reports = self.query("SELECT job_id, kind, path, size_bytes, sha256 FROM reports")
        videos = {r[0]: r for r in self.query("SELECT id, path, size_bytes, sha256 FROM videos")}
        keys: dict[str, int] = {}
        for page in self.s3.get_paginator("list_objects_v2").paginate(Bucket=BUCKET):
            for o in page.get("Contents") or ():
                keys[o["Key"]] = o["Size"]
        multipart_left = self.s3.list_multipart_uploads(Bucket=BUCKET).get("Uploads") or []

        def key(path: str) -> str:
            return f"{PREFIX}/{path}"

        checks: list[tuple[str, bool, str]] = []
        accepted = [j for j in self.accepted]
        deleted = set(self.deleted)
        live = [j for j in accepted if j not in deleted]
        # 1. every accepted job ends done (or failed with a reason, and re-runnable), done exactly once
        bad, failed = [], []
        for j in live:
            row = jobs.get(j)
            if row is None:
                bad.append(f"{j}: no row")
            elif row[1] == "done":
                if done_events.get(j, 0) != 1:
                    bad.append(f"{j}: {done_events.get(j, 0)} done events")
            elif row[1] == "failed":
                r = self.failed_reruns.get(j, {})
                failed.append(f"{j[:8]}: {row[2]!r} → re-run {r.get('code')} {r.get('status')}")
                if not row[2] or r.get("status") != "done":
                    bad.append(f"{j}: failed ({row[2]!r}), re-run {r.get('code')} → {r.get('status')}")
            else:
                bad.append(f"{j}: {row[1]}")
        extra_done = [j for j, n in done_events.items() if n != 1]
        bad += [f"{j}: {n} done events" for j, n in done_events.items() if n != 1 and j not in live]
        n_done = sum(1 for j in live if jobs.get(j) and jobs[j][1] == "done")
        checks.append(("every accepted job ends done (or failed with a reason and re-runs to done), exactly one "
                       "'done' event each", not bad,
                       f"{len(live)} accepted and not deleted: {n_done} done, {len(failed)} failed"
                       + ("; failed: " + "; ".join(failed) if failed else "")
                       + ("; problems: " + "; ".join(bad[:20]) if bad else "") + (
                           f" (+{len(extra_done)} jobs with more than one)" if extra_done else "")))
        # 2. reports: in the bucket with the rows' sizes and sha256
        mism, missing = [], []

        def check_object(what: str, path: str, size: int, sha: str) -> None:
            k = key(path)
            if k not in keys:
                missing.append(f"{what}: {path}")
                return
            data = self.s3.get_object(Bucket=BUCKET, Key=k)["Body"].read()
            if len(data) != size or hashlib.sha256(data).hexdigest() != sha:
                mism.append(f"{what}: {len(data)} B / row {size} B")

        for job_id, kind, path, size, sha in reports:
            check_object(f"{job_id[:8]} {kind}", path, size, sha)
        for vid, path, size, sha in videos.values():
            check_object(f"video {vid[:8]}", path, size, sha)
        no_reports = [j for j in live if jobs.get(j) and jobs[j][1] == "done"
                      and {r[1] for r in reports if r[0] == j} < {"json", "csv", "html"}]
        no_video = [j for j in live if jobs.get(j) and jobs[j][1] == "done" and jobs[j][3] == "ready"
                    and "video" not in {r[1] for r in reports if r[0] == j}]
        checks.append(("every done job's reports are in the bucket with the database's sizes and sha256 "
                       "(uploads too)", not (mism or missing or no_reports or no_video),
                       f"{len(reports)} report rows and {len(videos)} uploads read back and hashed"
                       + (f"; wrong: {mism[:10]}" if mism else "") + (f"; missing: {missing[:10]}" if missing else "")
                       + (f"; done jobs without all 3 reports: {no_reports[:10]}" if no_reports else "")
                       + (f"; video ready without its row: {no_video[:10]}" if no_video else "")))
        # 3. bucket <-> rows
        wanted = {key(r[2]) for r in reports} | {key(v[1]) for v in videos.values()}
        orphans = sorted(set(keys) - wanted)
        rowless = sorted(wanted - set(keys))
        checks.append(("no object in the bucket without a row, no row without its object",
                       not orphans and not rowless and not multipart_left,
                       f"{len(keys)} objects, {len(wanted)} rows"
                       + (f"; objects without a row: {orphans[:10]}" if orphans else "")
                       + (f"; rows without an object: {rowless[:10]}" if rowless else "")
                       + (f"; unfinished multipart uploads: {len(multipart_left)}" if multipart_left else "")))
        # 4. deleted jobs leave nothing behind
        left = []
        for j, d in self.deleted.items():
            if j in jobs:
                left.append(f"{j[:8]}: job row")
            n = self.query("SELECT (SELECT COUNT(*) FROM job_events WHERE job_id = :j) + (SELECT COUNT(*) FROM reports "
                           "WHERE job_id = :j) + (SELECT COUNT(*) FROM tracks WHERE job_id = :j) + (SELECT COUNT(*) "
                           "FROM predictions WHERE job_id = :j) + (SELECT COUNT(*) FROM pose_data WHERE job_id = :j)",
                           j=j)[0][0]
            if n:
                left.append(f"{j[:8]}: {n} rows")
            objs = [k for k in keys if k.startswith(key(f"jobs/{j}/"))]
            if objs:
                left.append(f"{j[:8]}: {len(objs)} objects")
            still_used = any(v[1] == d["video_path"] for v in videos.values())
            if key(d["video_path"]) in keys and not still_used:
                left.append(f"{j[:8]}: its upload, used by no job")
        checks.append(("deleted jobs leave nothing behind (rows, reports, upload when no other job uses it)",
                       bool(self.deleted) and not left,
                       f"{len(self.deleted)} deleted ({sum(d['shared'] for d in self.deleted.values())} shared their "
                       "upload with a re-run)" + (f"; left: {left}" if left else "")))
        # 5. nothing stuck
        stuck = [f"{j[:8]}: {r[1]}" + (f"/video {r[3]}" if r[3] == "rendering" else "") for j, r in jobs.items()
                 if r[1] not in ("done", "failed") or r[3] == "rendering"]
        checks.append(("no job stuck (unfinished, or its video rendering)", not stuck,
                       f"{len(jobs)} jobs in the database" + (f"; stuck: {stuck}" if stuck else "")))
        # 6. database down: 503 with a message, never 500
        probes = self.db_probes
        codes = collections.Counter((p["what"], p["code"], p["error"]) for p in probes if p["what"] != "har.client submit")
        pg = next((e for e in self.events if e["kind"] == "postgres"), None)
        seen = []
        if pg:
            t0, t1 = pg["t"], pg["restored"] or pg["t"] + a.outage_s
            seen = [x for x in self.attempts if x["t1"] >= t0 and x["t0"] <= t1]
        bad_probes = [p for p in probes if p["code"] == 500 or (p["code"] == 503 and not p["message"])
                      or (p["what"] == "har.client submit" and "went wrong" in p["message"])]
        cli = collections.Counter(f"{p['code']}: {p['message']}" for p in probes if p["what"] == "har.client submit")
        client_500 = [x for x in seen if "went wrong" in x["message"]]
        polls = collections.Counter(f"{c} {e or ''}".strip() for t, c, e in self.polls
                                    if pg and pg["t"] <= t <= (pg["restored"] or pg["t"] + a.outage_s))
        client_500 += [k for k in polls if k.startswith("500")]
        checks.append(("while the database is down the web answers 503 with a message, not 500",
                       bool(probes) and not bad_probes and not client_500,
                       "probes: " + ", ".join(f"{w} → {c} {e or ''}".strip() + f" ×{n}"
                                              for (w, c, e), n in sorted(codes.items(), key=str))
                       + "; the command-line client's uploads: "
                       + (", ".join(f"{k!r} ×{n}" for k, n in cli.most_common()) or "none")
                       + "; clients' status requests in the outage: "
                       + (", ".join(f"{k} ×{n}" for k, n in polls.most_common()) or "none")
                       + f"; clients' uploads in the outage: {len(seen)}"
                       + ("" if not seen else " (" + ", ".join(
                           f"{m!r} ×{n}" for m, n in collections.Counter(
                               (x["message"] or "accepted") for x in seen).most_common()) + ")")))
        # every fault fired
        kinds = collections.Counter(e["kind"] for e in self.events)
        missing_faults = [f for f in ("worker", *FAULTS) if not kinds.get(f)]
        checks.append(("every fault happened at least once, and the part came back", not missing_faults and all(
            e.get("restored") for e in self.events if e["kind"] in ("worker", *FAULTS)),
            ", ".join(f"{k} ×{kinds[k]}" for k in ("worker", *FAULTS))))
        return self.figures(jobs, checks)

    def figures(self, jobs: dict, checks: list) -> dict:
        finished = {j: r[5].timestamp() for j, r in jobs.items() if r[5] is not None and r[1] == "done"}
        lat = [finished[j] - v["t_submit"] for j, v in self.accepted.items()
               if j in finished and v["kind"] in ("upload", "rerun")]
        ups = [v for v in self.accepted.values() if v["kind"] == "upload"]
        answered = collections.Counter()
        for x in self.attempts:
            answered["202 accepted" if x["rc"] == 0 else f"exit {x['rc']}: {x['message'][:110]}"] += 1
        done_times = sorted(finished.values())
        t_first = min(v["t_submit"] for v in self.accepted.values()) if self.accepted else self.t_start
        span = (max(done_times) - t_first) if done_times else float("nan")
        n_done_run = sum(1 for j in finished if j in self.accepted)
        faults = []
        for e in self.events:
            if e["kind"] not in ("worker", *FAULTS):
                continue
            after = [t for t in done_times if t > (e.get("restored") or e["t"])]
            nxt = (after[0] - e["t"]) if after else None
            what = {"worker": f"SIGKILL {e.get('queue')} worker's {e.get('which')} (pid {e.get('pid')})"
                              + (f", running {len(e['jobs'])} job(s)" if e.get("jobs") else ", idle"),
                    "redis": f"SIGKILL redis-server (pid {e.get('pid')}), restarted by the supervisor",
                    "postgres": f"pg_ctl stop -m immediate, {e.get('down_s')} s down, pg_ctl start",
                    "storage": f"S3 proxy refusing and cutting connections for {e.get('down_s')} s",
                    "web": f"SIGKILL {e.get('which')} (pid {e.get('pid')}), restarted by the supervisor"}[e["kind"]]
            interrupted = []
            for j in e.get("jobs") or []:
                r = jobs.get(j)
                last = max((x.timestamp() for x in (r[5], r[8]) if x is not None), default=None) if r else None
                if r and last is not None:
                    interrupted.append(f"{j[:8]} {r[1]}{' + video ' + r[3] if r[3] else ''} "
                                       f"{last - e['t']:.0f} s later")
                elif r:
                    interrupted.append(f"{j[:8]} {r[1]}")
            faults.append(dict(kind=e["kind"], at=e["t"] - self.t_start, what=what,
                               back=(e["restored"] - e["t"]) if e.get("restored") else None,
                               web_ok=(e["web_ok"] - e["t"]) if e.get("web_ok") else None,
                               next_done=nxt, interrupted=interrupted))
        return dict(
            started=datetime.fromtimestamp(self.t_start, timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
            jobs=self.args.jobs, clients=self.args.clients, clips=[c.name for c in self.clips],
            uploads_accepted=len(ups), reruns=sum(1 for v in self.accepted.values() if v["kind"] == "rerun"),
            deleted=len(self.deleted), upload_attempts=len(self.attempts), answered=dict(answered),
            refused_jobs=len(self.refused_jobs), done=n_done_run,
            p50=percentile(lat, 0.5), p95=percentile(lat, 0.95), max=max(lat) if lat else float("nan"),
            jobs_per_min=60 * n_done_run / span if span == span and span > 0 else float("nan"),
            span_s=span, wall_s=self.t_end - self.t_start, faults=faults, checks=checks,
            failed_reruns=self.failed_reruns, probes=len(self.db_probes),
            managed=dict(collections.Counter(
                f"{e['kind']} → {e['code'] or 'no answer'}{' ' + e['error'] if e.get('error') else ''}"
                for e in self.events if e["kind"] in ("rerun", "delete"))),
            ok=all(ok for _, ok, _ in checks))


def fmt(v, unit: str = " s", nd: int = 1) -> str:
    if v is None or v != v:
        return "–"
    return f"{v:.{nd}f}{unit}"


def markdown(r: dict, command: str, note: str = "") -> str:
    lines = [
        "# Chaos soak on the production layout", "",
        "PostgreSQL (own cluster), Redis (append-only file), moto's S3 server behind a TCP proxy, two gunicorn web "
        "processes (2 workers × 4 threads each, two ports) and one Celery worker per queue (pose, classify, video, "
        "webhook), each a local process, supervised as `scripts/run_local.py` supervises its parts; "
        f"{r['clients']} concurrent clients uploading with `python -m har.client submit` (the two web processes in "
        f"turn, each client waiting for its job before the next upload), {r['reruns']} re-runs and {r['deleted']} "
        f"deletes of finished jobs meanwhile. Machine: {os.cpu_count()} CPUs; run {r['started']}, "
        f"{r['wall_s'] / 60:.1f} min.", "",
        f"Clips ({len(r['clips'])}, from `../shared/real-clips`, the cheapest of each class in turn): "
        + ", ".join(f"`{c}`" for c in r["clips"]) + ".", "",
    ]
    if note:
        lines += [note, ""]
    lines += [
        "## Load", "",
        "| uploads accepted | re-runs | deleted | upload attempts | jobs done | upload → done p50 / p95 / max "
        "| jobs/min | first upload → last done |",
        "|---|---|---|---|---|---|---|---|",
        f"| {r['uploads_accepted']} | {r['reruns']} | {r['deleted']} | {r['upload_attempts']} | {r['done']} | "
        f"{fmt(r['p50'])} / {fmt(r['p95'])} / {fmt(r['max'])} | {fmt(r['jobs_per_min'], '')} | {fmt(r['span_s'])} |",
        "", "Uploads answered (what the command-line client ended with, every attempt; a refused one was sent "
        "again to the other web process):", "",
        "| answer | count |", "|---|---|",
    ]
    lines += [f"| {k.replace('|', '/')} | {n} |" for k, n in sorted(r["answered"].items(), key=lambda kv: -kv[1])]
    lines += ["", f"Jobs that a 503 named (created, then recorded failed: the queue was down): {r['refused_jobs']}.", "",
              "Re-runs and deletes of finished jobs (the API's answers; one refused is tried again later): "
              + (", ".join(f"{k} ×{n}" for k, n in sorted(r["managed"].items())) or "none") + ".", "",
              "Every job that ended failed (whoever had submitted it), its reason, and its re-run at the end:", ""]
    if r["failed_reruns"]:
        lines += ["| job | reason | re-run | re-run ended |", "|---|---|---|---|"]
        lines += [f"| {j[:8]} | {(f['error'] or '').replace('|', '/')} | {f['code']} | {f['status']} |"
                  for j, f in r["failed_reruns"].items()]
    else:
        lines += ["none"]
    lines += ["",
              "## Faults", "",
              "Times from the start of the load. *back*: the part answers again (worker: its process is back and "
              "ready; Redis: PING; PostgreSQL / storage: after the outage, the restart; web: `/healthz` on its "
              "port). *web ready*: both web processes' `/readyz` 200 again. *next done*: the first job to finish "
              "after the part was back, counted from the fault.", "",
              "| at | fault | back after | web ready after | next job done after | jobs it was running |",
              "|---|---|---|---|---|---|"]
    for f in r["faults"]:
        lines.append(f"| {fmt(f['at'], ' s', 0)} | {f['what']} | {fmt(f['back'])} | {fmt(f['web_ok'])} | "
                     f"{fmt(f['next_done'])} | {', '.join(f['interrupted']) or '–'} |")
    lines += ["", "## Checks", "", "| check | result | detail |", "|---|---|---|"]
    for name, ok, detail in r["checks"]:
        lines.append(f"| {name} | {'PASS' if ok else '**FAIL**'} | {detail.replace('|', '/')} |")
    lines += ["", f"Overall: {'PASS' if r['ok'] else '**FAIL**'}.", "", f"Command: `{command}`", ""]
    return "\n".join(lines)


def parse_points(text: str) -> dict[str, float]:
    points = {"redis": 0.2, "postgres": 0.4, "storage": 0.6, "web": 0.8}
    for part in filter(None, text.split(",")):
        name, _, value = part.partition("=")
        if name not in points:
            raise argparse.ArgumentTypeError(f"unknown fault {name!r} (one of {', '.join(points)})")
        points[name] = float(value)
    return points


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--jobs", type=int, default=200, help="uploads to have accepted (default 200)")
    p.add_argument("--clients", type=int, default=20)
    p.add_argument("--clips", default=str(ROOT.parent / "shared" / "real-clips"))
    p.add_argument("--clip-count", type=int, default=12)
    p.add_argument("--reruns", type=int, default=None, help="re-runs of finished jobs (default: a tenth of --jobs)")
    p.add_argument("--deletes", type=int, default=None, help="deletes of finished jobs (default: a tenth of --jobs)")
    p.add_argument("--manage-every-s", type=float, default=5.0)
    p.add_argument("--fault-points", type=parse_points, default=parse_points(""),
                   help="when each single fault fires, as the share of --jobs accepted: "
                        "redis=0.2,postgres=0.4,storage=0.6,web=0.8")
    p.add_argument("--kill-every", type=float, nargs=2, default=(20.0, 30.0), metavar=("MIN_S", "MAX_S"),
                   help="SIGKILL a random worker process every MIN..MAX s (0 0: never)")
    p.add_argument("--outage-s", type=float, default=10.0, help="PostgreSQL and storage outages (s)")
    p.add_argument("--web-workers", type=int, default=2)
    p.add_argument("--pose-imgsz", type=int, default=0, help="HAR_POSE_IMGSZ (default: the service's)")
    p.add_argument("--job-timeout", type=float, default=1800)
    p.add_argument("--timeout", type=float, default=3600, help="the whole load (s)")
    p.add_argument("--seed", type=int, default=18)
    p.add_argument("--keep", action="store_true", help="keep the logs (their folder is printed)")
    p.add_argument("--markdown", default=None)
    p.add_argument("--note", default="", help="a line for the report")
    a = p.parse_args(argv)
    a.reruns = max(1, a.jobs // 10) if a.reruns is None else a.reruns
    a.deletes = max(1, a.jobs // 10) if a.deletes is None else a.deletes
    soak = Soak(a)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # stopped from outside: the parts are stopped too
    try:
        r = soak.run()
    finally:
        soak.shutdown()
    command = "python bench/soak.py " + " ".join(argv if argv is not None else sys.argv[1:])
    print(json.dumps({k: v for k, v in r.items() if k not in ("checks", "faults", "failed_reruns")}, default=str),
          file=sys.stderr)
    text = markdown(r, command, a.note)
    print(text)
    if a.markdown:
        Path(a.markdown).write_text(text, encoding="utf-8")
    return 0 if r["ok"] else 1


if __name__ == "__main__":
    raise SystemExit(main())
