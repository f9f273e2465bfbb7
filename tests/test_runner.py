"""The local runner (scripts/run_local.py) heals itself: the real runner on free ports and a temporary data
directory, with its own redis-server, Celery workers and gunicorn, and real jobs through the HTTP API.

* Redis killed (SIGKILL) while a job runs and another waits in the queue: restarted on the same port with its
  data (append-only file), the web keeps answering (an upload meanwhile gets the 503), the workers reconnect
  by themselves and both jobs end done.
* a worker's main process killed in the middle of a job: its pool processes go with it, the worker is started
  again and the job ends done, once.
* slow and hostile clients (README: The reverse proxy): 50 uploads that trickle 10 bytes a second, each from a
  loopback address of its own, hold connections to the runner's public port (nginx) while /healthz and a normal
  upload are answered; once they stop sending, the proxy cuts each off after its body timeout and nothing of them
  reaches the web app or the storage. The per-address connection limit (429) and the upload limit (413 from the
  proxy for a declared length far over it, from the app just over it; the same JSON) on the same port.
* SIGTERM: everything stops, nothing is restarted.
* a part that fails right after every start: the runner gives up and stops everything (exit status 1).
"""
from __future__ import annotations

import http.client
import json
import os
import re
import select
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path

import pytest

from tests.conftest import ROOT, TEST_IMGSZ, _tail, free_port, wait_for

RUNNER = ROOT / "scripts" / "run_local.py"
RESTART_DELAY_S = 3  # long enough to see the service while Redis is down
START_TIMEOUT_S = 180
JOB_TIMEOUT_S = 240
STARTED = re.compile(r"^\[run\] (.+?) (?:started|restarted) \(pid (\d+)\)$", re.M)
# the proxy's limits in the runner below: short, so that the slow-client test takes seconds
BODY_TIMEOUT_S = 3
CONN_PER_IP = 8
MAX_UPLOAD_MB = 2


class Runner:
    """``scripts/run_local.py`` as a subprocess; its output goes to ``log``."""

    def __init__(self, base: Path, **env):
        self.base, self.port, self.redis_port = base, free_port(), free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = base / "run.log"
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("HAR_") and k != "GUNICORN_CMD_ARGS"}
        self.env.update({
            "HAR_DATA_DIR": str(base / "data"),
            "HAR_PORT": str(self.port),
            "HAR_REDIS_URL": f"redis://127.0.0.1:{self.redis_port}/0",
            "HAR_POSE_IMGSZ": TEST_IMGSZ,
            "HAR_ANNOTATE_VIDEO": "0",
            "HAR_SECRET_KEY": "test-secret",
            "HAR_WEB_WORKERS": "1",
            # no periodic pass during a test: only the start-up pass of a (re)started worker and the passes after a
            # broker reconnection (worker.lifecycle.SweepAfterReconnect) recover jobs here
            "HAR_SWEEP_INTERVAL_S": "3600",
            "HAR_RESTART_DELAY_S": str(RESTART_DELAY_S),
            "PYTHONUNBUFFERED": "1",
        })
        self.env.update(env)
        with open(self.log, "w") as out:
            self.proc = subprocess.Popen([sys.executable, str(RUNNER)], cwd=ROOT, env=self.env, stdout=out,
                                         stderr=subprocess.STDOUT, start_new_session=True)

    def text(self) -> str:
        return self.log.read_text(errors="replace")

    def pids(self) -> dict[str, int]:
        """The latest pid of each part ("redis-server", "pose worker", ..., "web server"), from the log."""
        return {name: int(pid) for name, pid in STARTED.findall(self.text())}

    def all_pids(self) -> set[int]:
        return {int(pid) for _, pid in STARTED.findall(self.text())}

    def wait_log(self, pattern: str, timeout: float, what: str) -> re.Match:
        def found():
            m = re.search(pattern, self.text(), re.M)
            if m is None and self.proc.poll() is not None:
                raise AssertionError(f"the runner exited ({self.proc.returncode}) before {what}:\n{_tail(self.log, 80)}")
            return m

        try:
            return wait_for(found, timeout, what, interval=0.2)
        except TimeoutError:
            raise AssertionError(f"timed out waiting for {what}:\n{_tail(self.log, 80)}") from None

    def wait_ready(self) -> None:
        self.wait_log(r"^\[run\] ready: open ", START_TIMEOUT_S, "the runner to be ready")
        for name in ("pose", "classify", "video", "webhook"):  # the workers are consuming their queues
            self.wait_log(rf"^\[{name}\] .* {name}@\S+ ready\.", START_TIMEOUT_S, f"the {name} worker")

    def stop(self) -> None:
        """SIGTERM, then (only if it hangs) SIGKILL the runner and whatever it started."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(120)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        for pid in self.all_pids():
            kill_group(pid)

    # http ------------------------------------------------------------------------------------------
    def request(self, path: str, data: bytes | None = None, headers: dict | None = None) -> tuple[int, bytes]:
        req = urllib.request.Request(self.url + path, data=data, headers=headers or {})
        try:
            with urllib.request.urlopen(req, timeout=30) as resp:
                return resp.status, resp.read()
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read()

    def upload(self, path: Path) -> tuple[int, dict]:
        boundary = uuid.uuid4().hex
        body = (f'--{boundary}\r\nContent-Disposition: form-data; name="video"; filename="{path.name}"\r\n'
                f"Content-Type: video/mp4\r\n\r\n").encode() + path.read_bytes() + f"\r\n--{boundary}--\r\n".encode()
        status, raw = self.request("/api/jobs", body, {"Content-Type": f"multipart/form-data; boundary={boundary}"})
        return status, json.loads(raw)

    def submit(self, path: Path) -> str:
        """Upload a clip; the new job's id."""
        status, body = self.upload(path)
        assert status == 202, f"{status} {body}\n{_tail(self.log, 60)}"
        return body["id"]

    def job(self, job_id: str) -> dict:
        status, raw = self.request(f"/api/jobs/{job_id}")
        assert status == 200, raw
        return json.loads(raw)

    def wait_job(self, job_id: str, states: tuple[str, ...], timeout: float = JOB_TIMEOUT_S) -> dict:
        last: dict = {}

        def reached():
            nonlocal last
            last = self.job(job_id)
            return last if last["status"] in states else None

        try:
            return wait_for(reached, timeout, f"job {job_id}", interval=0.1)
        except TimeoutError:
            raise AssertionError(f"job {job_id} stuck at {last.get('status')}:\n{_tail(self.log, 120)}") from None


def kill_group(pgid: int) -> None:
    try:
        os.killpg(pgid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def group_alive(pgid: int) -> bool:
    """Whether a process of the group still runs (a zombie, exited and waiting to be reaped, does not)."""
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(") ", 1)[1].split()
        except (OSError, IndexError):
            continue
        if int(fields[2]) == pgid and fields[0] != "Z":  # state, ppid, pgrp, ...
            return True
    return False


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:  # a zombie (exited, not yet reaped by its parent) is gone
        return Path(f"/proc/{pid}/stat").read_text().split(") ")[-1][0] != "Z"
    except OSError:
        return False


def child_pids(pid: int) -> list[int]:
    out = subprocess.run(["ps", "-o", "pid=", "--ppid", str(pid)], capture_output=True, text=True)
    return [int(p) for p in out.stdout.split()]


def redis_ping(port: int) -> bool:
    import redis

    try:
        return bool(redis.Redis(port=port, socket_timeout=1, socket_connect_timeout=1).ping())
    except redis.RedisError:
        return False


def done_once(job: dict) -> None:
    assert job["status"] == "done", job.get("error")
    assert [e["status"] for e in job["events"]].count("done") == 1, job["events"]
    assert job["result"]["status"] == "ok" and job["result"]["persons"], job["result"]


needs_redis = pytest.mark.skipif(not shutil.which("redis-server"), reason="redis-server is not installed")


@pytest.fixture(scope="module")
def clip(tmp_path_factory) -> Path:
    from tests.media import make_people_video

    return make_people_video(tmp_path_factory.mktemp("runner-media") / "people.mp4", seconds=3.0, fps=30.0,
                             size=(480, 270))


@pytest.fixture(scope="module")
def runner(tmp_path_factory):
    run = Runner(tmp_path_factory.mktemp("runner"), HAR_PROXY_BODY_TIMEOUT_S=str(BODY_TIMEOUT_S),
                 HAR_PROXY_CONN_PER_IP=str(CONN_PER_IP), HAR_MAX_UPLOAD_MB=str(MAX_UPLOAD_MB))
    try:
        run.wait_ready()
        yield run
    finally:
        run.stop()


@needs_redis
def test_redis_killed_is_restarted_while_the_rest_keeps_running(runner, clip):
    before = runner.pids()
    job_id = runner.submit(clip)
    assert runner.wait_job(job_id, ("extracting", "classifying", "reporting", "done"))["status"] == "extracting"
    # a second job waits in the queue (one pose process): only Redis' append-only file keeps its message; the
    # sweep would send it again only after HAR_REQUEUE_AFTER_S (30 min)
    waiting_id = runner.submit(clip)
    assert runner.job(waiting_id)["status"] == "queued"

    os.kill(before["redis-server"], signal.SIGKILL)
    runner.wait_log(rf"^\[run\] redis-server exited \(code -9\); restarting in {RESTART_DELAY_S} s$", 30,
                    "the runner to see Redis gone")
    # Redis is down: the web answers, says so, and refuses an upload with the reason (the job is failed)
    status, raw = runner.request("/api/health")
    assert status == 503 and json.loads(raw)["checks"]["redis"]["ok"] is False, raw
    status, raw = runner.request("/")
    assert status == 200, raw[:300]
    status, refused = runner.upload(clip)
    assert status == 503 and refused["error"] == "queue_unavailable", refused
    assert runner.job(refused["id"])["status"] == "failed"

    runner.wait_log(r"^\[run\] redis-server restarted \(pid \d+\)$", 60, "Redis to be restarted")
    wait_for(lambda: redis_ping(runner.redis_port), 30, "Redis to answer on the same port")
    done_once(runner.wait_job(job_id, ("done", "failed")))
    done_once(runner.wait_job(waiting_id, ("done", "failed")))
    # the workers swept as soon as they were connected again (the periodic sweep is an hour away here)
    assert re.search(r"broker connection restored; sweeping for jobs interrupted", runner.text()), runner.text()[-3000:]

    after = runner.pids()
    assert after["redis-server"] != before["redis-server"]
    # the workers reconnected by themselves and the web server kept running: none of them was restarted
    assert {k: v for k, v in after.items() if k != "redis-server"} == \
        {k: v for k, v in before.items() if k != "redis-server"}
    assert re.findall(r"^\[run\] (.+?) exited", runner.text(), re.M) == ["redis-server"]
    status, body = runner.request("/api/health")  # Redis is reachable again
    assert status == 200, body


@needs_redis
def test_worker_killed_in_the_middle_of_a_job_is_restarted(runner, clip):
    before = runner.pids()
    worker = before["pose worker"]
    job_id = runner.submit(clip)
    assert runner.wait_job(job_id, ("extracting", "classifying", "reporting", "done"))["status"] == "extracting"
    pool = child_pids(worker)  # the pool process running the pose stage
    assert pool

    os.kill(worker, signal.SIGKILL)
    runner.wait_log(rf"^\[run\] pose worker exited \(code -9\); restarting in {RESTART_DELAY_S} s$", 30,
                    "the runner to see the worker gone")
    wait_for(lambda: not any(pid_alive(p) for p in pool), 15, "the killed worker's pool processes to be gone")
    runner.wait_log(r"^\[run\] pose worker restarted \(pid \d+\)$", 60, "the worker to be restarted")

    done_once(runner.wait_job(job_id, ("done", "failed")))
    assert re.search(rf"pose: job {job_id}: attempt 2 ", runner.text()), "the stage was not run again"
    after = runner.pids()
    assert after["pose worker"] != worker and pid_alive(after["pose worker"])
    assert {k: v for k, v in after.items() if k != "pose worker"} == {k: v for k, v in before.items() if k != "pose worker"}


# ----------------------------------------------------------------------------------- slow and hostile clients
SLOW_CLIENTS = 50
REQUEST_TIMEOUT_S = 5  # "answers within a second", as a client's timeout with room for a loaded machine
SLOW_BOUNDARY = "slow-client-boundary"


def multipart(boundary: str, filename: str, content: bytes) -> bytes:
    return (f'--{boundary}\r\nContent-Disposition: form-data; name="video"; filename="{filename}"\r\n'
            f"Content-Type: video/mp4\r\n\r\n").encode() + content + f"\r\n--{boundary}--\r\n".encode()


def start_slow_upload(port: int, source: str, video_bytes: int = 1024 * 1024) -> socket.socket:
    """A connection from ``source`` (a loopback address) that starts an upload of ``video_bytes``: the request's
    headers and the start of its multipart body, nothing more."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=10, source_address=(source, 0))
    head = (f'--{SLOW_BOUNDARY}\r\nContent-Disposition: form-data; name="video"; filename="slow.mp4"\r\n'
            f"Content-Type: video/mp4\r\n\r\n").encode()
    length = len(head) + video_bytes + len(f"\r\n--{SLOW_BOUNDARY}--\r\n")
    sock.sendall(f"POST /api/jobs HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
                 f"Content-Type: multipart/form-data; boundary={SLOW_BOUNDARY}\r\n"
                 f"Content-Length: {length}\r\n\r\n".encode() + head)
    return sock


def timed_request(port: int, method: str, path: str, body: bytes | None = None, headers: dict | None = None,
                  source: str = "127.0.0.1", timeout: float = REQUEST_TIMEOUT_S) -> tuple[int, dict, bytes, float]:
    """(status, headers, body, seconds) of one request from ``source``; the client gives up after ``timeout``."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout, source_address=(source, 0))
    t0 = time.monotonic()
    try:
        conn.request(method, path, body=body, headers=headers or {})
        resp = conn.getresponse()
        data = resp.read()
        return resp.status, {k.lower(): v for k, v in resp.getheaders()}, data, time.monotonic() - t0
    finally:
        conn.close()


def storage_uploads(runner) -> list[str]:
    root = runner.base / "data" / "storage" / "uploads"
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file()) if root.exists() else []


def spooled_bodies(runner) -> list[Path]:
    return [p for p in (runner.base / "data" / "proxy" / "spool" / "body").rglob("*") if p.is_file()]


def job_count(runner) -> int:
    with sqlite3.connect(runner.base / "data" / "har.sqlite3", timeout=30) as db:
        return db.execute("SELECT count(*) FROM jobs").fetchone()[0]


def is_open(sock: socket.socket) -> bool:
    """Nothing came back on the connection: no answer, no close, no reset."""
    readable, _, _ = select.select([sock], [], [], 0)
    return not readable


@needs_redis
def test_slow_uploads_hold_no_web_thread_and_are_cut_off_after_the_body_timeout(runner, clip):
    log_mark = len(runner.text())
    uploads_before, jobs_before = storage_uploads(runner), job_count(runner)

    # 50 uploads from 50 addresses (127.0.1.1 ...), each sending 10 bytes a second: together they are far more than
    # the web server's threads (1 gunicorn worker x 4 threads here)
    slow = [start_slow_upload(runner.port, f"127.0.1.{i + 1}") for i in range(SLOW_CLIENTS)]
    last_sent = [time.monotonic()] * SLOW_CLIENTS
    trickling = threading.Event()
    trickling.set()

    def trickle():
        while trickling.is_set():
            for i, sock in enumerate(slow):
                try:
                    sock.sendall(b"\0" * 10)
                    last_sent[i] = time.monotonic()
                except OSError:
                    pass  # cut off: seen below
            trickling.wait(1.0)

    sender = threading.Thread(target=trickle, daemon=True)
    sender.start()
    try:
        time.sleep(1.5)  # every slow upload has sent its first bytes of video
        status, _, body, healthz_s = timed_request(runner.port, "GET", "/healthz")
        assert status == 200 and json.loads(body) == {"status": "ok"}, body
        boundary = uuid.uuid4().hex
        status, _, raw, upload_s = timed_request(
            runner.port, "POST", "/api/jobs", multipart(boundary, clip.name, clip.read_bytes()),
            {"Content-Type": f"multipart/form-data; boundary={boundary}"}, source="127.0.0.2")
        assert status == 202, raw
        job_id = json.loads(raw)["id"]
        time.sleep(BODY_TIMEOUT_S + 0.5)  # longer than the body timeout: the trickling uploads are kept
        held = sum(is_open(s) for s in slow)
    finally:
        trickling.clear()
        sender.join()
    stopped = max(last_sent)
    print(f"\n{SLOW_CLIENTS} slow uploads open (10 bytes/s each): /healthz answered in {healthz_s * 1000:.0f} ms, a "
          f"normal upload ({clip.stat().st_size} bytes) in {upload_s * 1000:.0f} ms; {held} of them still open "
          f"{BODY_TIMEOUT_S + 0.5:.1f} s later")
    assert held == SLOW_CLIENTS, "a slow upload was cut off while it was still sending"

    # they stop sending: the proxy cuts each off after the body timeout (a reset, or a close without an answer)
    closed_after: dict[int, float] = {}
    pending = {s.fileno(): i for i, s in enumerate(slow)}
    deadline = time.monotonic() + BODY_TIMEOUT_S + 30
    while pending and time.monotonic() < deadline:
        readable, _, _ = select.select([slow[i] for i in pending.values()], [], [], 0.5)
        for sock in readable:
            try:
                answer = sock.recv(4096)
            except OSError:  # reset: reset_timedout_connection
                answer = b""
            assert answer == b"", f"a slow upload got an answer: {answer[:200]!r}"
            closed_after[pending.pop(sock.fileno())] = time.monotonic() - last_sent[slow.index(sock)]
    for sock in slow:
        sock.close()
    assert not pending, f"{len(pending)} slow uploads were not cut off within {BODY_TIMEOUT_S + 30} s"
    times = sorted(closed_after.values())
    print(f"cut off {times[0]:.2f} to {times[-1]:.2f} s (median {times[len(times) // 2]:.2f} s) after their last "
          f"bytes (body timeout {BODY_TIMEOUT_S} s); all {len(times)} within "
          f"{time.monotonic() - stopped:.2f} s of the last one sent")
    assert times[0] >= BODY_TIMEOUT_S - 0.5, times  # by the body timeout, not before it

    # nothing of them was stored, nor reached the web app: one new job and one new upload (the normal one); the
    # proxy logged each slow one as 408 and removed what it had spooled; gunicorn saw one POST, from the client's
    # address (X-Forwarded-For, trusted: HAR_TRUSTED_PROXIES=1)
    timed_out = re.compile(r'^\[proxy\] 127\.0\.1\.\d+ .*"POST /api/jobs HTTP/1\.1" 408 ', re.M)
    wait_for(lambda: len(timed_out.findall(runner.text()[log_mark:])) == SLOW_CLIENTS, 30,
             "the proxy to log every slow upload as timed out (408)")
    assert job_count(runner) == jobs_before + 1
    assert len(storage_uploads(runner)) == len(uploads_before) + 1, storage_uploads(runner)
    assert not spooled_bodies(runner)
    web_posts = re.findall(r"^\[web\] (\S+) .*\"POST /api/jobs HTTP/1\.\d\" (\d+)", runner.text()[log_mark:], re.M)
    assert web_posts == [("127.0.0.2", "202")], web_posts
    assert runner.job(job_id)["status"] in ("queued", "extracting", "classifying", "reporting", "done")


@needs_redis
def test_proxy_limits_connections_per_address_and_upload_size(runner):
    # HAR_PROXY_CONN_PER_IP requests in progress from one address; one more gets 429 at once, another address not
    held = [start_slow_upload(runner.port, "127.0.3.1") for _ in range(CONN_PER_IP)]
    try:
        time.sleep(0.5)
        status, headers, body, _ = timed_request(runner.port, "GET", "/api/health", source="127.0.3.1")
        assert status == 429, body
        assert json.loads(body)["error"] == "too_many_connections" and headers["retry-after"] == "5", body
        status, _, body, _ = timed_request(runner.port, "GET", "/", source="127.0.3.1")
        assert status == 429 and b"Too many requests" in body, body
        assert timed_request(runner.port, "GET", "/healthz", source="127.0.3.2")[0] == 200
    finally:
        for sock in held:
            sock.close()
    wait_for(lambda: timed_request(runner.port, "GET", "/healthz", source="127.0.3.1")[0] == 200, 15,
             "the address's connections to be released")

    # a declared length over the proxy's limit (the upload limit + 1 MB): 413 before the body is read, the app's JSON
    log_mark = len(runner.text())
    conn = http.client.HTTPConnection("127.0.0.1", runner.port, timeout=REQUEST_TIMEOUT_S)
    try:
        conn.putrequest("POST", "/api/jobs")
        conn.putheader("Content-Type", f"multipart/form-data; boundary={SLOW_BOUNDARY}")
        conn.putheader("Content-Length", str((MAX_UPLOAD_MB + 10) * 1024 * 1024))
        conn.endheaders()  # no body is sent
        resp = conn.getresponse()
        proxy_answer = (resp.status, resp.getheader("Content-Type"), json.loads(resp.read()))
    finally:
        conn.close()
    # just over the app's limit, under the proxy's: the whole body reaches the app, whose own check answers
    body = multipart(SLOW_BOUNDARY, "big.mp4", b"\0" * (MAX_UPLOAD_MB * 1024 * 1024 + 1000))
    status, headers, raw, _ = timed_request(runner.port, "POST", "/api/jobs", body,
                                            {"Content-Type": f"multipart/form-data; boundary={SLOW_BOUNDARY}"})
    app_answer = (status, headers["content-type"], json.loads(raw))
    expected = {"error": "file_too_large", "max_upload_mb": MAX_UPLOAD_MB,
                "message": f"The file is too large: uploads are limited to {MAX_UPLOAD_MB} MB."}
    assert proxy_answer == (413, "application/json", expected), proxy_answer
    assert app_answer == (413, "application/json", expected), app_answer
    def web_posts():
        return re.findall(r'^\[web\] .*"POST /api/jobs HTTP/1\.\d" (\d+)', runner.text()[log_mark:], re.M)

    wait_for(web_posts, 10, "the web app's access log line (the runner relays it)")
    assert web_posts() == ["413"], web_posts()  # only the second reached the web app


@needs_redis
def test_sigterm_stops_everything(runner):
    groups = runner.pids().values()
    assert all(group_alive(g) for g in groups)
    runner.proc.send_signal(signal.SIGTERM)
    assert runner.proc.wait(150) == 0, _tail(runner.log, 80)
    text = runner.text()
    assert text.rstrip().endswith("[run] stopped"), text[-3000:]
    assert not re.search(r"^\[run\] .*restart", text[text.index("[run] stopping"):], re.M), text[-3000:]
    assert not [g for g in runner.all_pids() if group_alive(g)], _tail(runner.log, 80)
    assert not redis_ping(runner.redis_port)


@needs_redis
def test_a_part_that_keeps_failing_stops_the_service(tmp_path):
    if not shutil.which("gunicorn", path=str(Path(sys.executable).parent)) and not shutil.which("gunicorn"):
        pytest.skip("gunicorn is not installed")
    # a broken configuration: gunicorn refuses its options and exits at once, every time
    run = Runner(tmp_path, GUNICORN_CMD_ARGS="--no-such-option", HAR_RESTART_DELAY_S="0.2", HAR_RESTART_GIVE_UP="3")
    try:
        assert run.proc.wait(START_TIMEOUT_S) == 1, _tail(run.log, 80)
        text = run.text()
        assert len(re.findall(r"^\[run\] web server exited \(code 2\); restarting in ", text, re.M)) == 2, text[-3000:]
        assert re.search(r"^\[run\] web server exited \(code 2\), 3 times in a row within 60 s of starting; giving up",
                         text, re.M), text[-3000:]
        assert text.rstrip().endswith("[run] stopped"), text[-3000:]
        assert not [g for g in run.all_pids() if group_alive(g)]
        with pytest.raises(OSError):
            socket.create_connection(("127.0.0.1", run.redis_port), timeout=1).close()
    finally:
        run.stop()
