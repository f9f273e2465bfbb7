#!/usr/bin/env python3
"""Run the whole service on this machine: migrations, Redis, one worker per queue (pose, classify, video, webhook),
the web app behind its reverse proxy.

    python scripts/run_local.py            # http://127.0.0.1:8000 (HAR_PORT / --port to change)

The public port is nginx's (``HAR_PROXY=nginx``, the default; har/proxy.py writes its configuration to
``HAR_DATA_DIR/proxy/nginx.conf`` at every start): it reads each request whole, spooling bodies to
``HAR_DATA_DIR/proxy/spool/``, before gunicorn gets it over a unix socket (``HAR_DATA_DIR/proxy/web.sock``), so clients
that send slowly hold no gunicorn thread. ``HAR_PROXY=none`` serves gunicorn on the public port itself, as before.

Everything it starts is its own child process, supervised: a part that stops (Redis, a worker, the web
server) is started again after a pause (``HAR_RESTART_DELAY_S``, doubling up to ``HAR_RESTART_DELAY_MAX_S``;
back to the first once it ran ``HAR_RESTART_STABLE_S``) while the others keep running; a part that stops
``HAR_RESTART_GIVE_UP`` times in a row, each time before it ran ``HAR_RESTART_STABLE_S``, stops the whole
service (exit status 1). Ctrl-C (or SIGTERM, or SIGHUP) stops everything, a second one at once. The Redis it starts
keeps its data (append-only file, fsync every second) under var/redis/ and is restarted on the same port, so
the queued tasks survive a crash; the Celery workers reconnect to it by themselves. Logs are printed with a
prefix; every start of a part is logged with its pid ("[run] pose worker started (pid 1234)").
"""
from __future__ import annotations

import argparse
import importlib.util
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from dataclasses import dataclass
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


def find_nginx() -> str | None:
    """nginx's executable: on the PATH, or in the sbin directories a user's PATH often lacks (Debian: /usr/sbin)."""
    return shutil.which("nginx") or shutil.which("nginx", path="/usr/sbin:/usr/local/sbin:/sbin")


def bind_open(bind: str) -> bool:
    """Whether the web server accepts connections on its gunicorn-style address (``unix:/path``, ``host:port``)."""
    if bind.startswith("unix:"):
        try:
            with socket.socket(socket.AF_UNIX) as s:
                s.settimeout(0.5)
                s.connect(bind[len("unix:"):])
            return True
        except OSError:
            return False
    host, _, port = bind.rpartition(":")
    return port_open(host.strip("[]") if host not in ("0.0.0.0", "[::]") else "127.0.0.1", int(port))


def listen_address(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


class ProxyError(RuntimeError):
    """nginx cannot run: not installed, or it refuses the configuration written for it."""


def setup_proxy(settings, data_dir: Path, host: str, port: int, gunicorn: bool, py_env: dict):
    """The reverse proxy (har/proxy.py): its directory, the address the web app binds to behind it (a unix socket, or
    a local port when the socket's path is too long or the web server is Flask's), and nginx's command line after its
    configuration was written and checked (``nginx -t``). Returns (web bind address, nginx command); raises
    :class:`ProxyError` with the reason when nginx cannot run."""
    from har.proxy import render_main

    exe = find_nginx()
    if not exe:
        raise ProxyError("[run] nginx is not installed (scripts/start.sh installs it; HAR_PROXY=none serves the web app "
                         "without it, unprotected from slow clients)")
    proxy_dir = data_dir / "proxy"
    spool = proxy_dir / "spool"
    spool.mkdir(parents=True, exist_ok=True)
    os.chmod(proxy_dir, 0o700)  # the web app's socket and the spooled uploads: for this account only
    sock = proxy_dir / "web.sock"
    if gunicorn and len(str(sock)) < 100:  # sun_path holds 107 bytes
        bind, upstream = f"unix:{sock}", f"unix:{sock}"
    else:
        bind = f"127.0.0.1:{free_port()}"
        upstream = bind
    conf = proxy_dir / "nginx.conf"
    conf.write_text(render_main(
        settings, upstreams=[upstream], listen=listen_address(host, port), spool_dir=spool,
        pid_file=proxy_dir / "nginx.pid",
        # started as root, nginx runs its workers as nobody, who may not reach the socket or the spool: run them
        # as the account that runs the rest of the service
        user="root" if os.geteuid() == 0 else None))
    cmd = [exe, "-p", str(proxy_dir), "-c", str(conf)]
    check = subprocess.run(cmd + ["-t", "-q"], cwd=ROOT, env=py_env, capture_output=True, text=True)
    if check.returncode != 0:
        raise ProxyError(f"[run] nginx refuses its configuration ({conf}):\n{(check.stderr or check.stdout).strip()}")
    return bind, cmd


class Service:
    """One child process (started in its own session, so Ctrl-C reaches the runner only) and its restarts."""

    def __init__(self, name: str, what: str, cmd: list[str], env: dict, stop_timeout: float = 30.0):
        self.name, self.what, self.cmd, self.env, self.stop_timeout = name, what, cmd, env, stop_timeout
        self.proc: subprocess.Popen | None = None
        self.starts = 0
        self.started_at = 0.0  # time.monotonic() of the last start
        self.quick_exits = 0  # exits in a row, each before the part ran RestartPolicy.stable_s
        self.delay = 0.0  # pause before the next restart (0: the policy's first delay)
        self.restart_at: float | None = None  # a restart is due at this time.monotonic()

    def start(self) -> "Service":
        self.proc = subprocess.Popen(self.cmd, cwd=ROOT, env=self.env, stdout=subprocess.PIPE,
                                     stderr=subprocess.STDOUT, text=True, bufsize=1,
                                     start_new_session=True)  # Ctrl-C reaches us only; we stop them in order
        self.starts += 1
        self.started_at = time.monotonic()
        self.restart_at = None
        threading.Thread(target=self._pump, args=(self.proc,), daemon=True).start()
        print(f"[run] {self.what} {'started' if self.starts == 1 else 'restarted'} (pid {self.proc.pid})", flush=True)
        return self

    def _pump(self, proc: subprocess.Popen) -> None:
        assert proc.stdout
        for line in proc.stdout:
            sys.stdout.write(f"[{self.name}] {line}")
            sys.stdout.flush()

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def kill_leftovers(self) -> None:
        """SIGKILL what is left of the part's process group once its main process is gone, so that nothing of it
        runs on (holding a job, the port) beside its replacement: gunicorn's workers serve on for a while after
        their master was killed, a Redis child may be saving; a Celery worker's pool processes die with their
        parent by themselves (prefork sets a parent-death signal), this only makes sure. Called right after the
        main process ended: its pid, the group's id, is not reused while a process of the group is left."""
        if self.proc is None:
            return
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass  # nothing left

    def stop(self, force: threading.Event | None = None) -> None:
        if not self.alive():
            self.kill_leftovers()
            return
        self.proc.send_signal(signal.SIGTERM)  # celery: warm shutdown; redis: save and exit
        deadline = time.monotonic() + self.stop_timeout
        while self.proc.poll() is None:
            if force is not None and force.is_set():
                print(f"[run] killing {self.what}", flush=True)
                break
            if time.monotonic() > deadline:
                print(f"[run] {self.what} did not stop in {self.stop_timeout:.0f} s; killing it", flush=True)
                break
            try:
                self.proc.wait(0.2)
            except subprocess.TimeoutExpired:
                pass
        self.kill_leftovers()
        self.proc.wait()


@dataclass(frozen=True)
class RestartPolicy:
    delay_s: float = 1.0  # the first pause before a restart; doubled after each quick exit
    delay_max_s: float = 30.0
    stable_s: float = 60.0  # a part that ran this long is well again: the pause and the count start over
    give_up: int = 5  # this many quick exits in a row stop the whole service

    @classmethod
    def from_settings(cls, settings) -> "RestartPolicy":
        return cls(delay_s=max(0.0, settings.restart_delay_s), delay_max_s=max(0.0, settings.restart_delay_max_s),
                   stable_s=max(0.0, settings.restart_stable_s), give_up=max(1, settings.restart_give_up))


def fmt_s(seconds: float) -> str:
    return f"{seconds:.1f}".rstrip("0").rstrip(".") + " s"


def supervise(services: list[Service], policy: RestartPolicy, now: float) -> str | None:
    """One look at every part: schedule the restart of a part that stopped, start those that are due.
    Returns why the whole service must stop (a part keeps stopping right after it starts), or None."""
    for s in services:
        if s.restart_at is not None:
            if now >= s.restart_at:
                s.start()
            continue
        if s.alive():
            continue
        code = s.proc.returncode
        s.kill_leftovers()
        if now - s.started_at >= policy.stable_s:
            s.quick_exits, s.delay = 0, 0.0  # it ran well for a while: a new failure starts over
        else:
            s.quick_exits += 1
            if s.quick_exits >= policy.give_up:
                return (f"{s.what} exited (code {code}), {s.quick_exits} times in a row within "
                        f"{fmt_s(policy.stable_s)} of starting; giving up (see its log above)")
        delay = min(s.delay or policy.delay_s, policy.delay_max_s)
        s.delay = min(delay * 2, policy.delay_max_s)
        s.restart_at = now + delay
        print(f"[run] {s.what} exited (code {code}); restarting in {fmt_s(delay)}", flush=True)
    return None


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
    policy = RestartPolicy.from_settings(settings)
    data_dir = Path(settings.data_dir)
    data_dir.mkdir(parents=True, exist_ok=True)
    env["HAR_DATA_DIR"] = str(data_dir)
    env["PYTHONUNBUFFERED"] = "1"
    py = sys.executable
    services: list[Service] = []

    if port_open(args.host if args.host not in ("0.0.0.0", "::") else "127.0.0.1", args.port):
        print(f"[run] port {args.port} is already in use: set HAR_PORT (or --port) to another one", flush=True)
        return 2
    proxy = settings.proxy.strip().lower() or "nginx"
    if proxy not in ("nginx", "none"):
        print(f"[run] HAR_PROXY={settings.proxy!r}: use nginx (the default) or none", flush=True)
        return 2

    stopping, force = threading.Event(), threading.Event()

    def on_signal(signum, _frame):
        if stopping.is_set():
            force.set()  # a second Ctrl-C: stop now
        stopping.set()

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGHUP, on_signal)  # the terminal closed: its children run in sessions of their own

    print(f"[run] database: migrating {settings.resolved_database_url}", flush=True)
    upgrade_database(settings.resolved_database_url)

    rc = 0
    try:
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
                # Append-only file, fsync'd every second: a restarted Redis (same port, same dir) still has the
                # queued tasks and the unacknowledged ones of a crash.
                services.append(Service("redis", "redis-server", [
                    exe, "--port", str(redis_port), "--bind", "127.0.0.1", "--dir", str(redis_dir),
                    "--appendonly", "yes", "--appendfsync", "everysec", "--save", "",
                    "--daemonize", "no", "--protected-mode", "yes", "--loglevel", "warning",
                ], env, stop_timeout=15).start())
                deadline = time.monotonic() + 15
                while not port_open("127.0.0.1", redis_port):
                    if time.monotonic() > deadline or not services[-1].alive():
                        print("[run] redis-server did not start", flush=True)
                        return 1
                    if stopping.wait(0.1):
                        return 0
            db = (redis_url.path or "/0").lstrip("/") or "0"
            env["HAR_REDIS_URL"] = f"redis://127.0.0.1:{redis_port}/{db}"
        print(f"[run] redis: {env.get('HAR_REDIS_URL', settings.redis_url)}", flush=True)

        # The workers are not restarted when Redis is: they reconnect by themselves (broker_connection_retry).
        # SIGTERM makes a worker hand its running task back to the queue after HAR_WORKER_SHUTDOWN_GRACE_S (Celery's
        # cold shutdown), not wait for it to finish: a restart never leaves a job waiting for a stale heartbeat.
        env.setdefault("REMAP_SIGTERM", "SIGQUIT")
        celery = [py, "-m", "celery", "-A", "worker.celery_app", "worker", "--loglevel", "INFO",
                  "--without-gossip", "--without-mingle"]
        for name, queues in worker_queues(settings).items():
            if stopping.is_set():
                return 0
            concurrency = max(1, args.pose_workers) if name == "pose" else 1
            services.append(Service(name, f"{name} worker", celery + [
                "--concurrency", str(concurrency), "-Q", ",".join(queues), "-n", f"{name}@%h"], env, 60).start())

        gunicorn = shutil.which("gunicorn", path=str(Path(py).parent)) or shutil.which("gunicorn")
        web_env, nginx = env, None
        bind = listen_address(args.host, args.port)
        if proxy == "nginx":
            try:
                bind, nginx = setup_proxy(settings, data_dir, args.host, args.port, bool(gunicorn), env)
            except ProxyError as exc:
                print(exc, flush=True)
                return 2
            # the proxy appends the client's address and scheme to X-Forwarded-For / -Proto: trust one hop (more
            # when HAR_TRUSTED_PROXIES says there are more proxies in front of this machine)
            web_env = dict(env, HAR_TRUSTED_PROXIES=str(max(1, settings.trusted_proxies)))
        if gunicorn:
            web = [gunicorn, "web:create_app()", "--bind", bind, "--workers",
                   str(args.web_workers), "--threads", "4", "--timeout", "300", "--access-logfile", "-"]
        else:
            host, _, port = bind.rpartition(":")
            web = [py, "-m", "flask", "--app", "web:create_app()", "run", "--host", host.strip("[]"), "--port", port]
        if stopping.is_set():
            return 0
        services.append(Service("web", "web server", web, web_env, 15).start())
        if nginx:
            services.append(Service("proxy", "nginx", nginx, env, 15).start())
            print(f"[run] proxy: nginx on {listen_address(args.host, args.port)} -> web app on {bind}", flush=True)

        if os.environ.get("HAR_FLOWER", "").strip().lower() in ("1", "true", "yes"):
            # Celery's monitoring UI, on this machine only (it has no login of its own)
            if importlib.util.find_spec("flower") is None:
                print("[run] HAR_FLOWER is set but the flower package is not installed: no Flower", flush=True)
            else:
                port = os.environ.get("HAR_FLOWER_PORT", "5555")
                services.append(Service("flower", "Flower", [py, "-m", "celery", "-A", "worker.celery_app", "flower",
                                                            "--address=127.0.0.1", f"--port={port}"], env, 15).start())
                print(f"[run] Flower: http://127.0.0.1:{port}", flush=True)

        url = f"http://{'127.0.0.1' if args.host in ('0.0.0.0', '::') else args.host}:{args.port}"
        ready = False
        # ready once the web app answers through the proxy (the proxy alone answers 503 while the app starts)
        deadline = time.monotonic() + 120
        while not stopping.is_set():
            failed = supervise(services, policy, time.monotonic())
            if failed:
                print(f"[run] {failed}: stopping everything", flush=True)
                rc = 1
                break
            if not ready:
                try:
                    if not bind_open(bind):  # the web server does not listen yet (nginx would answer 503)
                        raise ConnectionRefusedError(bind)
                    urllib.request.urlopen(url + "/healthz", timeout=2).close()
                    ready = True
                except OSError:  # not listening yet, or an HTTP error (urllib raises both as OSError)
                    if time.monotonic() > deadline:
                        print("[run] the web app did not answer within 120 s", flush=True)
                        rc = 1
                        break
                if ready:
                    print(f"\n[run] ready: open {url}   (Ctrl-C stops everything)\n", flush=True)
            stopping.wait(0.25)
    finally:
        print("[run] stopping ...", flush=True)
        stop_all(services, force)
        print("[run] stopped", flush=True)
    return rc


def worker_queues(settings) -> dict[str, list[str]]:
    """One worker per kind of work: pose, classify (with the reports), video (the annotated videos) and webhook (the
    webhook deliveries); a queue that another worker already consumes (the same name in two settings) is not started
    twice."""
    owner: dict[str, str] = {}
    for name, queue in (("pose", settings.pose_queue), ("classify", settings.classify_queue),
                        ("classify", settings.report_queue), ("video", settings.video_queue),
                        ("webhook", settings.webhook_queue)):
        owner.setdefault(queue, name)
    workers: dict[str, list[str]] = {}
    for queue, name in owner.items():
        workers.setdefault(name, []).append(queue)
    return workers


def stop_all(services: list[Service], force: threading.Event | None = None) -> None:
    for s in reversed(services):  # web first, then the workers, Redis last; none is restarted any more
        s.restart_at = None
        s.stop(force)


if __name__ == "__main__":
    sys.exit(main())
