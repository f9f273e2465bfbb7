"""Shared fixtures: a real redis-server, real Celery workers (one per queue: pose, classify, video, webhook), a migrated SQLite
database and a real PostgreSQL cluster, and the web app's test client on top.

Everything is started once per test session in temporary directories and stopped at the end.
Models run for real; the pose model runs at ``HAR_POSE_IMGSZ=320`` to keep the suite quick.
"""
from __future__ import annotations

import glob
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

TEST_IMGSZ = os.environ.get("HAR_TEST_POSE_IMGSZ", "320")
WORKER_START_TIMEOUT_S = 90
# The anonymous identity of the tests' web clients (web/auth.py): jobs the tests write straight into the
# database belong to TEST_OWNER, so the clients see and manage them as their submitter would.
TEST_IDENTITY = "7e57" * 8
TEST_OWNER = f"anon:{TEST_IDENTITY}"


def identity_client_class():
    """A Flask test client that carries TEST_IDENTITY's signed cookie (``identity=None``: a new anonymous client,
    ``identity="..."``: another one)."""
    from flask.testing import FlaskClient

    class IdentityClient(FlaskClient):
        def __init__(self, *args, identity: str | None = TEST_IDENTITY, **kwargs):
            super().__init__(*args, **kwargs)
            if identity:
                from web.auth import IDENTITY_COOKIE, identity_cookie_value

                with self.application.app_context():
                    self.set_cookie(IDENTITY_COOKIE, identity_cookie_value(identity))

    return IdentityClient


@pytest.fixture(autouse=True)
def api_contract(monkeypatch):
    """Every response a test receives from the API through Flask's test client is checked against the OpenAPI
    document (tests/contract.py): an undocumented status or field fails the test."""
    from tests import contract

    contract.install(monkeypatch)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(predicate, timeout: float, what: str, interval: float = 0.1):
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(interval)


def _tail(path: Path, n: int = 60) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-n:])
    except OSError:
        return "(no log)"


# --------------------------------------------------------------------------------------- redis
@pytest.fixture(scope="session")
def redis_server(tmp_path_factory):
    """A private redis-server on a free port; yields its base URL (``redis://127.0.0.1:PORT``)."""
    exe = shutil.which("redis-server")
    if not exe:
        pytest.skip("redis-server is not installed")
    import redis

    port = free_port()
    d = tmp_path_factory.mktemp("redis")
    log = open(d / "redis.log", "w")
    proc = subprocess.Popen([exe, "--port", str(port), "--bind", "127.0.0.1", "--dir", str(d), "--save", "",
                             "--appendonly", "no", "--protected-mode", "yes", "--daemonize", "no"],
                            stdout=log, stderr=subprocess.STDOUT)

    def ping():
        try:
            return redis.Redis(port=port, socket_timeout=1).ping()
        except redis.RedisError:
            if proc.poll() is not None:
                raise RuntimeError(f"redis-server exited:\n{_tail(d / 'redis.log')}") from None
            return False

    wait_for(ping, 20, "redis-server")
    yield f"redis://127.0.0.1:{port}"
    proc.terminate()
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        proc.kill()
    log.close()


# ------------------------------------------------------------------------------------ postgres
def _pg_bindir() -> Path | None:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    if found:
        return Path(found[-1]).parent
    exe = shutil.which("initdb")
    return Path(exe).parent if exe else None


@pytest.fixture(scope="session")
def postgres_url():
    """A throw-away PostgreSQL cluster (trust auth, 127.0.0.1 on a free port, socket in its own dir).

    PostgreSQL refuses to run as root, so as root the cluster belongs to the ``postgres`` user."""
    bindir = _pg_bindir()
    if bindir is None:
        pytest.skip("PostgreSQL server binaries are not installed")
    base = Path(tempfile.mkdtemp(prefix="har-pg-"))
    prefix: list[str] = []
    if os.geteuid() == 0:
        import pwd

        try:
            pw = pwd.getpwnam("postgres")
        except KeyError:
            pytest.skip("running as root and there is no postgres user")
        os.chown(base, pw.pw_uid, pw.pw_gid)
        prefix = ["runuser", "-u", "postgres", "--"]
    data, log = base / "data", base / "server.log"
    port = free_port()

    def run(*cmd):
        res = subprocess.run(prefix + [str(c) for c in cmd], capture_output=True, text=True, timeout=120)
        if res.returncode:
            raise RuntimeError(f"{cmd[0]} failed ({res.returncode}):\n{res.stdout}\n{res.stderr}\n{_tail(log)}")
        return res

    run(bindir / "initdb", "-D", data, "-U", "har", "-A", "trust", "-E", "UTF8", "--no-sync", "--no-instructions")
    run(bindir / "pg_ctl", "-D", data, "-l", log, "-w", "-t", "60", "-o",
        f"-p {port} -k {base} -h 127.0.0.1 -c fsync=off -c synchronous_commit=off -c full_page_writes=off",
        "start")
    try:
        run(bindir / "createdb", "-h", "127.0.0.1", "-p", port, "-U", "har", "har")
        yield f"postgresql+psycopg://har@127.0.0.1:{port}/har"
    finally:
        from har.database import dispose_engines

        dispose_engines()
        subprocess.run(prefix + [str(bindir / "pg_ctl"), "-D", str(data), "-m", "fast", "-w", "stop"],
                       capture_output=True, timeout=60)
        shutil.rmtree(base, ignore_errors=True)


# ------------------------------------------------------------------------------ the whole stack
class Stack:
    """Database + storage + real Celery workers (queues ``pose``, ``classify``, ``video`` and ``webhook``) + the web
    app."""

    def __init__(self, name: str, base: Path, database_url: str, redis_url: str, env: dict | None = None, *,
                 storage_url: str = "", s3_endpoint_url: str = "", **overrides):
        """``storage_url``: empty for local files (``<base>/data/storage``, the web app's and the workers' alike),
        or ``s3://bucket/prefix`` for a bucket on the S3-compatible server at ``s3_endpoint_url`` (credentials
        :data:`S3_ENV`); then the workers get a data dir and spool of their own (``<base>/worker-data``), so that
        the web app and the workers share nothing but the database, Redis and storage URLs.

        ``env``: more environment for the workers; ``overrides``: more settings for the web app."""
        from har.config import load_settings

        self.name, self.base = name, base
        self.storage_url, self.s3_endpoint_url = storage_url, s3_endpoint_url
        web_dir = base / "data"
        self.worker_dir = base / "worker-data" if storage_url else web_dir  # the workers' HAR_DATA_DIR
        self.worker_dir.mkdir(parents=True, exist_ok=True)
        self.env = dict(os.environ)
        self.env.update({
            "HAR_DATA_DIR": str(self.worker_dir),
            "HAR_STORAGE_DIR": str(self.worker_dir / "storage"),
            "HAR_STORAGE_URL": storage_url,
            "HAR_S3_ENDPOINT_URL": s3_endpoint_url,
            "HAR_DATABASE_URL": database_url,
            "HAR_REDIS_URL": redis_url,
            "HAR_POSE_IMGSZ": TEST_IMGSZ,
            "HAR_SECRET_KEY": "test-secret",
            # webhooks to the tests' receivers on 127.0.0.1, retried after short waits
            "HAR_WEBHOOK_ALLOW_PRIVATE": "1",
            "HAR_WEBHOOK_RETRY_BASE_S": "0.5",
            "HAR_WEBHOOK_RETRY_MAX_S": "4",
            "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""),
            "PYTHONUNBUFFERED": "1",
            # as the launchers set it: SIGTERM hands a running task back to the queue (worker/celery_app.py)
            "REMAP_SIGTERM": "SIGQUIT",
        })
        if storage_url.startswith("s3://"):
            self.env.update(S3_ENV)
        self.env.pop("HAR_TASK_ALWAYS_EAGER", None)
        self.env.update(env or {})
        self.settings = load_settings(**{**dict(data_dir=str(web_dir), storage_dir=str(web_dir / "storage"),
                                                storage_url=storage_url, s3_endpoint_url=s3_endpoint_url,
                                                database_url=database_url, redis_url=redis_url,
                                                pose_imgsz=int(TEST_IMGSZ), secret_key="test-secret",
                                                task_always_eager=False, webhook_allow_private=True,
                                                # no upload rate limit: the suite uploads from one address
                                                # (tests/test_rate_limit.py covers the limit)
                                                upload_rate="0"), **overrides})
        self.workers: dict[str, subprocess.Popen] = {}
        self.logs: dict[str, Path] = {}
        self._app = None

    # workers ---------------------------------------------------------------------------------
    def start_worker(self, queue: str, key: str | None = None) -> None:
        """A worker for ``queue``, known as ``key`` (default: the queue's name; another key starts a second
        worker on the same queue) in :attr:`workers` and :attr:`logs`."""
        key = key or queue
        log = self.base / f"worker-{key}.log"
        self.logs[key] = log
        cmd = [sys.executable, "-m", "celery", "-A", "worker.celery_app", "worker", "-Q", queue,
               "-n", f"{key}-{self.name}@%h", "--pool", "prefork", "--concurrency", "1", "--loglevel", "INFO",
               "--without-gossip", "--without-mingle", "--without-heartbeat"]
        with open(log, "w") as out:
            self.workers[key] = subprocess.Popen(cmd, cwd=ROOT, env=self.env, stdout=out,
                                                 stderr=subprocess.STDOUT, start_new_session=True)

    def wait_ready(self) -> None:
        for queue, proc in self.workers.items():
            def ready(queue=queue, proc=proc):
                if proc.poll() is not None:
                    raise RuntimeError(f"{queue} worker exited ({proc.returncode}):\n{_tail(self.logs[queue])}")
                return " ready." in self.logs[queue].read_text(errors="replace")

            wait_for(ready, WORKER_START_TIMEOUT_S, f"the {queue} worker", interval=0.2)

    def worker_child_pids(self, key: str) -> list[int]:
        """The prefork pool processes of a worker (the ones that run the tasks)."""
        parent = self.workers[key].pid
        out = subprocess.run(["ps", "-o", "pid=", "--ppid", str(parent)], capture_output=True, text=True)
        return [int(p) for p in out.stdout.split()]

    @property
    def queues(self) -> tuple[str, ...]:
        s = self.settings
        return tuple(dict.fromkeys((s.pose_queue, s.classify_queue, s.report_queue, s.video_queue, s.webhook_queue)))

    def start(self, queues: tuple[str, ...] | None = None) -> "Stack":
        """Migrate the database and start one worker per queue (``queues``: only those; the others can be
        started later with :meth:`start_worker` and :meth:`wait_ready`)."""
        from har.database import upgrade_database

        upgrade_database(self.settings.resolved_database_url)
        for queue in self.queues if queues is None else queues:
            self.start_worker(queue)
        self.wait_ready()
        return self

    def stop(self) -> None:
        for proc in self.workers.values():
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
        for proc in self.workers.values():
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()

    def log_text(self) -> str:
        return "\n".join(f"--- {q} ---\n{_tail(p, 80)}" for q, p in self.logs.items())

    # web ---------------------------------------------------------------------------------------
    @property
    def app(self):
        if self._app is None:
            from web import create_app

            self._app = create_app(self.settings, TESTING=True)
            self._app.test_client_class = identity_client_class()  # every client is the tests' own identity
        return self._app

    def client(self):
        return self.app.test_client()

    def session(self):
        from har.database import session_scope

        return session_scope(self.settings)

    def storage(self):
        from har.storage import open_storage

        return open_storage(self.settings)

    def upload(self, path: Path, client=None, **form) -> str:
        client = client or self.client()
        with open(path, "rb") as f:
            data = {"video": (f, Path(path).name), **{k: str(v) for k, v in form.items()}}
            resp = client.post("/api/jobs", data=data, content_type="multipart/form-data")
        assert resp.status_code == 202, resp.get_data(as_text=True)
        return resp.get_json()["id"]

    def wait_final(self, job_id: str, timeout: float = 240.0, client=None) -> dict:
        """Poll ``GET /api/jobs/<id>`` until the job is done or failed; returns its JSON."""
        return self._poll(job_id, lambda j: j["status"] in ("done", "failed"), lambda j: j.get("status"),
                          f"job {job_id}", timeout, client)

    def wait_video(self, job_id: str, timeout: float = 240.0, client=None) -> dict:
        """Poll ``GET /api/jobs/<id>`` until the job's annotated video is no longer rendering; returns its JSON."""
        return self._poll(job_id, lambda j: j["annotated_video"]["status"] != "rendering",
                          lambda j: j.get("annotated_video"), f"the video of job {job_id}", timeout, client)

    def _poll(self, job_id: str, done, state, what: str, timeout: float, client) -> dict:
        """The job's JSON once ``done(json)`` holds; an AssertionError with ``state(json)`` and the logs if never."""
        client = client or self.client()
        last = {}

        def check():
            nonlocal last
            resp = client.get(f"/api/jobs/{job_id}")
            assert resp.status_code == 200, resp.get_data(as_text=True)
            last = resp.get_json()
            return last if done(last) else None

        try:
            return wait_for(check, timeout, what, interval=0.25)
        except TimeoutError:
            raise AssertionError(f"{what} stuck at {state(last)}\n{self.log_text()}") from None


def _make_stack(name, tmp_path_factory, database_url_fn, redis_url, **storage):
    """A started :class:`Stack` in a new temporary directory; ``storage``: its ``storage_url`` and
    ``s3_endpoint_url`` (default: local files)."""
    base = tmp_path_factory.mktemp(f"stack-{name}")
    url = database_url_fn(base)
    return Stack(name, base, url, redis_url, **storage).start()


@pytest.fixture(scope="session")
def sqlite_stack(tmp_path_factory, redis_server):
    stack = _make_stack("sqlite", tmp_path_factory, lambda b: f"sqlite:///{b / 'har.sqlite3'}",
                        f"{redis_server}/0")
    yield stack
    stack.stop()


@pytest.fixture(scope="session")
def postgres_stack(tmp_path_factory, redis_server, postgres_url):
    stack = _make_stack("postgres", tmp_path_factory, lambda b: postgres_url, f"{redis_server}/1")
    yield stack
    stack.stop()


# ------------------------------------------------------------------------------- object storage
S3_ENV = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1"}


@pytest.fixture(scope="session")
def s3_server(tmp_path_factory):
    """A real S3-compatible server (moto's standalone server, its own process) on a free port; yields its endpoint
    URL. The AWS credentials it accepts (:data:`S3_ENV`) are set in this process's environment meanwhile."""
    pytest.importorskip("boto3")
    pytest.importorskip("moto.server")
    import urllib.request

    port = free_port()
    d = tmp_path_factory.mktemp("s3")
    log = open(d / "moto.log", "w")
    proc = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
                            stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    endpoint = f"http://127.0.0.1:{port}"

    def up():
        if proc.poll() is not None:
            raise RuntimeError(f"the S3 server exited:\n{_tail(d / 'moto.log')}")
        try:
            with urllib.request.urlopen(endpoint + "/", timeout=1):
                return True
        except OSError:
            return False

    with pytest.MonkeyPatch.context() as mp:
        for name, value in S3_ENV.items():
            mp.setenv(name, value)
        for name in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3"):
            mp.delenv(name, raising=False)
        try:
            wait_for(up, 60, "the S3 server", interval=0.2)
            yield endpoint
        finally:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
            log.close()


def new_bucket(endpoint: str) -> str:
    """A new, empty bucket on the S3 server; its name."""
    import uuid

    from har.storage_s3 import client_for

    name = f"har-test-{uuid.uuid4().hex[:12]}"
    client_for(endpoint).create_bucket(Bucket=name)
    return name


@pytest.fixture
def s3_bucket(s3_server):
    """A fresh, empty bucket on the S3 server; yields its name."""
    yield new_bucket(s3_server)


def bucket_keys(endpoint: str, bucket: str, prefix: str = "") -> list[str]:
    """Every object name in the bucket (under ``prefix``), sorted."""
    from har.storage_s3 import client_for

    pages = client_for(endpoint).get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
    return sorted(o["Key"] for page in pages for o in page.get("Contents") or ())


@pytest.fixture(scope="session")
def s3_database_url(request, tmp_path_factory):
    """A database of its own for the S3 stack: in the test PostgreSQL cluster when there is one, else an SQLite
    file."""
    try:
        url = request.getfixturevalue("postgres_url")
    except pytest.skip.Exception:
        return f"sqlite:///{tmp_path_factory.mktemp('s3-db') / 'har.sqlite3'}"
    import uuid

    from sqlalchemy import create_engine, text

    name = f"har_s3_{uuid.uuid4().hex[:8]}"
    engine = create_engine(url, isolation_level="AUTOCOMMIT")
    try:
        with engine.connect() as conn:
            conn.execute(text(f"CREATE DATABASE {name}"))
    finally:
        engine.dispose()
    return url.rsplit("/", 1)[0] + f"/{name}"


S3_PREFIX = "har"


@pytest.fixture(scope="session")
def s3_stack(tmp_path_factory, redis_server, s3_server, s3_database_url):
    """The stack on S3 storage: a bucket of its own on the S3 server (``s3://<bucket>/har``), and workers whose
    data dir and spool (``stack.worker_dir``) are not the web app's: they share nothing but the three URLs."""
    storage_url = f"s3://{new_bucket(s3_server)}/{S3_PREFIX}"
    stack = _make_stack("s3", tmp_path_factory, lambda b: s3_database_url, f"{redis_server}/11",
                        storage_url=storage_url, s3_endpoint_url=s3_server)
    yield stack
    stack.stop()


# ------------------------------------------------------------------------------------- media
@pytest.fixture(scope="session")
def media_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("media")


@pytest.fixture(scope="session")
def people_video(media_dir) -> Path:
    from tests.media import make_people_video

    return make_people_video(media_dir / "people.mp4", seconds=2.5, fps=30.0, size=(480, 270))


@pytest.fixture(scope="session")
def empty_video(media_dir) -> Path:
    from tests.media import make_empty_video

    return make_empty_video(media_dir / "empty.mp4", seconds=2.0, fps=30.0, size=(320, 240))


@pytest.fixture
def sqlite_db(tmp_path):
    """A freshly migrated SQLite database (its own file) and matching settings."""
    from har.config import load_settings
    from har.database import upgrade_database

    settings = load_settings(data_dir=str(tmp_path / "data"), database_url=f"sqlite:///{tmp_path / 'har.sqlite3'}",
                             pose_imgsz=int(TEST_IMGSZ), task_always_eager=False)
    upgrade_database(settings.resolved_database_url)
    return settings


def stored_job(settings, video: Path) -> str:
    """A queued job for ``video``, stored as an upload in the settings' (local) storage; its id."""
    from har.database import session_scope
    from har.jobs import create_job
    from har.storage import Storage
    from models.video import probe_video

    storage = Storage(settings.resolved_storage_dir)
    with open(video, "rb") as f:
        rel, sha, size = storage.save_upload(f, video.name)
    info = probe_video(storage.path(rel))
    with session_scope(settings) as s:
        return create_job(s, dict(path=rel, original_filename=video.name, sha256=sha, size_bytes=size,
                                  container=video.suffix.lstrip(".").lower(), codec=info.codec,
                                  duration_s=info.duration_s, fps=info.fps, frame_count=info.frame_count,
                                  width=info.width, height=info.height, rotation_deg=info.rotation_deg), {}).id


@pytest.fixture
def video_job(sqlite_db, people_video, monkeypatch):
    """A queued job for a real people video, with the next-stage hand-over recorded, not sent."""
    from worker import runtime

    job_id = stored_job(sqlite_db, people_video)
    sent: list[tuple[str, str]] = []
    monkeypatch.setattr(runtime, "hand_over", lambda settings, task, jid: sent.append((task, jid)))
    return sqlite_db, job_id, sent
