#!/usr/bin/env python3
"""Run the whole service on this machine: migrations, Redis, one worker per queue (pose, classify, video),
the web app.

    python scripts/run_local.py            # http://127.0.0.1:8000 (HAR_PORT / --port to change)

Everything it starts is its own child process and is stopped on Ctrl-C (or SIGTERM). The Redis
it starts keeps its data (append-only file on) under var/redis/. Logs are printed with a prefix.
"""
from __future__ import annotations

import argparse
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path
from urllib.parse import urlparse

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

LOCAL_HOSTS = {"127.0.0.1", "localhost", "::1", ""}


def port_open(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Service:
    def __init__(self, name: str, cmd: list[str], env: dict, stop_timeout: float = 30.0):
        self.name, self.cmd, self.env, self.stop_timeout = name, cmd, env, stop_timeout
        self.proc: subprocess.Popen | None = None

    def start(self) -> "Service":
        self.proc = subprocess.Popen(self.cmd, cwd=ROOT, env=self.env, stdout=subprocess.PIPE,
                                     stderr=subprocess.STDOUT, text=True, bufsize=1,
                                     start_new_session=True)  # Ctrl-C reaches us only; we stop them in order
        threading.Thread(target=self._pump, daemon=True).start()
        return self

    def _pump(self) -> None:
        assert self.proc and self.proc.stdout
        for line in self.proc.stdout:
            sys.stdout.write(f"[{self.name}] {line}")
            sys.stdout.flush()

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self) -> None:
        if not self.alive():
            return
        self.proc.send_signal(signal.SIGTERM)  # celery: warm shutdown; redis: save and exit
        try:
            self.proc.wait(self.stop_timeout)
        except subprocess.TimeoutExpired:
            print(f"[run] {self.name} did not stop in {self.stop_timeout:.0f} s; killing it", flush=True)
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--host", default=os.environ.get("HAR_HOST", "127.0.0.1"))
    ap.add_argument("--port", type=int, default=int(os.environ.get("HAR_PORT", "8000")))
    ap.add_argument("--web-workers", type=int, default=int(os.environ.get("HAR_WEB_WORKERS", "2")))
    ap.add_argument("--pose-workers", type=int, default=int(os.environ.get("HAR_POSE_WORKERS", "1")),
                    help="pose worker processes (each takes one video at a time; see the README's sizing advice)")
    args = ap.parse_args(argv)

    from har.config import load_settings
    from har.database import upgrade_database

    env = dict(os.environ)
    settings = load_settings()
    data_dir = Path(settings.data_dir)
    data_dir.mkdir(parents=True, exist_ok=True)
    env["HAR_DATA_DIR"] = str(data_dir)
    env["PYTHONUNBUFFERED"] = "1"
    py = sys.executable
    services: list[Service] = []

    if port_open(args.host if args.host not in ("0.0.0.0", "::") else "127.0.0.1", args.port):
        print(f"[run] port {args.port} is already in use: set HAR_PORT (or --port) to another one", flush=True)
        return 2

    print(f"[run] database: migrating {settings.resolved_database_url}", flush=True)
    upgrade_database(settings.resolved_database_url)

    # Redis: our own server, unless HAR_REDIS_URL names one that already runs.
    redis_url = urlparse(settings.redis_url)
    redis_host, redis_port = redis_url.hostname or "127.0.0.1", redis_url.port or 6379
    explicit = bool(os.environ.get("HAR_REDIS_URL"))
    if redis_host in LOCAL_HOSTS or redis_host == "127.0.0.1":
        if port_open("127.0.0.1", redis_port) and not explicit:
            redis_port = free_port()  # something else owns 6379: run ours beside it
        if not port_open("127.0.0.1", redis_port):
            exe = shutil.which("redis-server")
            if not exe:
                print("[run] redis-server is not installed (scripts/start.sh installs it)", flush=True)
                return 2
            redis_dir = data_dir / "redis"
            redis_dir.mkdir(parents=True, exist_ok=True)
            services.append(Service("redis", [
                exe, "--port", str(redis_port), "--bind", "127.0.0.1", "--dir", str(redis_dir),
                "--appendonly", "yes", "--appendfsync", "everysec", "--save", "",
                "--daemonize", "no", "--protected-mode", "yes", "--loglevel", "warning",
            ], env, stop_timeout=15).start())
            deadline = time.monotonic() + 15
            while not port_open("127.0.0.1", redis_port):
                if time.monotonic() > deadline or not services[-1].alive():
                    print("[run] redis-server did not start", flush=True)
                    stop_all(services)
                    return 1
                time.sleep(0.1)
        db = (redis_url.path or "/0").lstrip("/") or "0"
        env["HAR_REDIS_URL"] = f"redis://127.0.0.1:{redis_port}/{db}"
    print(f"[run] redis: {env.get('HAR_REDIS_URL', settings.redis_url)}", flush=True)

    celery = [py, "-m", "celery", "-A", "worker.celery_app", "worker", "--loglevel", "INFO",
              "--without-gossip", "--without-mingle"]
    for name, queues in worker_queues(settings).items():
        concurrency = max(1, args.pose_workers) if name == "pose" else 1
        services.append(Service(name, celery + ["--concurrency", str(concurrency), "-Q", ",".join(queues),
                                                "-n", f"{name}@%h"], env, 60).start())

    if shutil.which("gunicorn", path=str(Path(py).parent)) or shutil.which("gunicorn"):
        gunicorn = shutil.which("gunicorn", path=str(Path(py).parent)) or shutil.which("gunicorn")
        web = [gunicorn, "web:create_app()", "--bind", f"{args.host}:{args.port}", "--workers",
               str(args.web_workers), "--threads", "4", "--timeout", "300", "--access-logfile", "-"]
    else:
        web = [py, "-m", "flask", "--app", "web:create_app()", "run", "--host", args.host, "--port", str(args.port)]
    services.append(Service("web", web, env, 15).start())

    url = f"http://{'127.0.0.1' if args.host in ('0.0.0.0', '::') else args.host}:{args.port}"
    stopping = threading.Event()

    def on_signal(signum, _frame):
        stopping.set()

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)

    ready = False
    deadline = time.monotonic() + 120
    rc = 0
    while not stopping.is_set():
        dead = [s for s in services if not s.alive()]
        if dead:
            print(f"[run] {dead[0].name} exited (code {dead[0].proc.returncode}); stopping everything", flush=True)
            rc = 1
            break
        if not ready:
            try:
                urllib.request.urlopen(url + "/", timeout=2).close()
                ready = True
            except urllib.error.HTTPError:
                ready = True  # it answers
            except OSError:
                if time.monotonic() > deadline:
                    print("[run] the web app did not answer within 120 s", flush=True)
                    rc = 1
                    break
            if ready:
                print(f"\n[run] ready: open {url}   (Ctrl-C stops everything)\n", flush=True)
        stopping.wait(0.5)

    print("[run] stopping ...", flush=True)
    stop_all(services)
    print("[run] stopped", flush=True)
    return rc


def worker_queues(settings) -> dict[str, list[str]]:
    """One worker per kind of work: pose, classify (with the reports) and video (the annotated videos); a
    queue that another worker already consumes (the same name in two settings) is not started twice."""
    owner: dict[str, str] = {}
    for name, queue in (("pose", settings.pose_queue), ("classify", settings.classify_queue),
                        ("classify", settings.report_queue), ("video", settings.video_queue)):
        owner.setdefault(queue, name)
    workers: dict[str, list[str]] = {}
    for queue, name in owner.items():
        workers.setdefault(name, []).append(queue)
    return workers


def stop_all(services: list[Service]) -> None:
    for s in reversed(services):  # web first, then the workers, Redis last
        s.stop()


if __name__ == "__main__":
    sys.exit(main())
