"""``python -m har.client`` end to end: the client runs as a subprocess against the test stack's web app served
over real HTTP (werkzeug, in a thread), with real Redis and Celery workers behind it.

One full job (submit --wait --out) serves the status and download tests; the timeout and "not ready" cases use
jobs that are held back from the queue (no work for the workers), and the refusals create no job at all."""
from __future__ import annotations

import csv
import io
import json
import os
import subprocess
import sys
import threading
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from sqlalchemy import select

from har.db import Job, Report
from tests.conftest import free_port

pytestmark = pytest.mark.timeout(600)

ROOT = Path(__file__).resolve().parent.parent
NO_SUCH_JOB = "00000000-0000-4000-8000-000000000000"


@dataclass
class Server:
    url: str
    stack: object
    requests: list = field(default_factory=list)  # (method, path, Authorization header) of every request


@pytest.fixture(scope="module")
def server(sqlite_stack):
    from werkzeug.serving import WSGIRequestHandler, make_server

    class QuietHandler(WSGIRequestHandler):
        def log_request(self, *args, **kwargs):
            pass

    srv = Server(url="", stack=sqlite_stack)

    def app(environ, start_response):
        srv.requests.append((environ["REQUEST_METHOD"], environ.get("PATH_INFO"), environ.get("HTTP_AUTHORIZATION")))
        return sqlite_stack.app(environ, start_response)

    httpd = make_server("127.0.0.1", 0, app, threaded=True, request_handler=QuietHandler)
    srv.url = f"http://127.0.0.1:{httpd.server_port}"
    thread = threading.Thread(target=httpd.serve_forever, name="har-client-test-server", daemon=True)
    thread.start()
    yield srv
    httpd.shutdown()
    thread.join(10)
    httpd.server_close()


def run_client(server: Server | None, *args, cwd: Path | None = None, env: dict | None = None,
               timeout: float = 300, text: bool = True) -> subprocess.CompletedProcess:
    e = {k: v for k, v in os.environ.items() if k not in ("HAR_URL", "HAR_TOKEN")}
    e["PYTHONPATH"] = str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")
    if server is not None:
        e["HAR_URL"] = server.url
    e.update(env or {})
    return subprocess.run([sys.executable, "-m", "har.client", *map(str, args)], cwd=cwd or ROOT, env=e,
                          capture_output=True, text=text, timeout=timeout)


def api_get(server: Server, path: str):
    return server.stack.client().get(path)


@pytest.fixture(scope="module")
def tokens(server) -> dict[str, str]:
    """Two API tokens of the stack (web/auth.py): "env" (given as HAR_TOKEN) and "cli" (given as --token)."""
    import uuid

    from web.auth import create_token

    with server.stack.session() as s:
        return {which: create_token(s, f"client-{which}-{uuid.uuid4().hex[:8]}")[1] for which in ("env", "cli")}


@pytest.fixture(scope="module")
def done_job(server, people_video, tmp_path_factory, tokens):
    """The one full job: ``submit --wait --out``, with a token from the environment."""
    out = tmp_path_factory.mktemp("client") / "report.json"
    proc = run_client(server, "submit", people_video, "--wait", "--out", out, "--stride", "8",
                      env={"HAR_TOKEN": tokens["env"]})
    assert proc.returncode == 0, (proc.stdout, proc.stderr, server.stack.log_text())
    job_id = proc.stdout.splitlines()[0]
    return job_id, proc, out


@pytest.fixture
def held_jobs(server):
    """Uploads while this fixture is active create queued jobs that are never sent to the workers; they are
    marked failed at the end (so no sweep ever runs them)."""
    from har.jobs import fail_job

    app = server.stack.app
    held: list[str] = []
    app.config["HAR_ENQUEUE"] = held.append
    try:
        yield held
    finally:
        app.config["HAR_ENQUEUE"] = None
        with server.stack.session() as s:
            for job_id in held:
                fail_job(s, s.get(Job, job_id), "held back by the test")


# ------------------------------------------------------------------------------------------ the full job
def test_submit_wait_out_writes_the_report(server, done_job, people_video, tokens):
    job_id, proc, out = done_job
    lines = proc.stdout.splitlines()
    assert lines[1] == f"{server.url}/jobs/{job_id}"
    assert "State:     done" in proc.stdout
    report = json.loads(out.read_text())
    assert report["status"] == "ok" and report["persons"]
    assert report["job"]["id"] == job_id and report["params"]["stride"] == 8
    assert report == api_get(server, f"/api/jobs/{job_id}/report.json").get_json()
    for p in report["persons"]:  # every person's overall action is printed
        assert f"person {p['track_id']}: {p['label']}" in proc.stdout
    # progress on stderr: not a terminal here, so plain lines (the upload, the stages, the end)
    err = proc.stderr
    assert f"uploading {people_video.name}" in err and "100.0 % done" in err and "\r" not in err
    assert f"saved the JSON report to {out}" in err
    # the token from HAR_TOKEN went with every request of the client, and the job is the token's
    sent = f"Bearer {tokens['env']}"
    mine = [r for r in server.requests if r[2] == sent]
    assert ("POST", "/api/jobs", sent) in mine
    assert ("GET", f"/api/jobs/{job_id}", sent) in mine
    assert ("GET", f"/api/jobs/{job_id}/report.json", sent) in mine
    with server.stack.session() as s:
        assert s.get(Job, job_id).owner.startswith("token:client-env-")


def test_download_video_waits_for_the_render(server, done_job, tmp_path):
    job_id, _, _ = done_job
    out = tmp_path / "annotated.bin"
    proc = run_client(server, "download", job_id, "--format", "video", "--wait", "--out", out)
    assert proc.returncode == 0, proc.stderr
    resp = api_get(server, f"/api/jobs/{job_id}/video")
    assert resp.status_code == 200 and out.read_bytes() == resp.get_data() and len(resp.get_data()) > 1000
    assert f"saved annotated video of job {job_id} to {out}" in proc.stdout
    # the default name: the job id and the video's own extension (in the current folder, or the one given)
    ext = "mp4" if resp.mimetype == "video/mp4" else "webm"
    proc = run_client(server, "--quiet", "download", job_id, "-f", "video", cwd=tmp_path)
    assert proc.returncode == 0 and proc.stderr == "", proc.stderr
    assert (tmp_path / f"{job_id}.{ext}").read_bytes() == resp.get_data()
    (tmp_path / "videos").mkdir()
    proc = run_client(server, "-q", "download", job_id, "-f", "video", "--out", tmp_path / "videos")
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "videos" / f"{job_id}.{ext}").read_bytes() == resp.get_data()


@pytest.mark.parametrize("fmt", ["csv", "json", "html"])
def test_download_reports(server, done_job, tmp_path, fmt):
    job_id, _, _ = done_job
    expected = api_get(server, f"/api/jobs/{job_id}/report.{fmt}").get_data()
    proc = run_client(server, "download", job_id, "--format", fmt, cwd=tmp_path)  # default file name
    assert proc.returncode == 0, proc.stderr
    saved = tmp_path / f"{job_id}.{fmt}"
    assert saved.read_bytes() == expected
    assert [p.name for p in tmp_path.iterdir()] == [saved.name]  # no partial file left behind
    if fmt == "csv":
        rows = list(csv.DictReader(io.StringIO(saved.read_text())))
        assert rows and {r["job_id"] for r in rows} == {job_id}
    proc = run_client(server, "download", job_id, "-f", fmt, "--out", "-", "--quiet", text=False)
    assert proc.returncode == 0 and proc.stdout == expected and proc.stderr == b""


def test_status(server, done_job, tokens):
    job_id, _, _ = done_job
    report = api_get(server, f"/api/jobs/{job_id}/report.json").get_json()
    proc = run_client(server, "status", job_id, "--token", tokens["cli"])
    assert proc.returncode == 0, proc.stderr
    assert f"Job:       {job_id}" in proc.stdout and "State:     done" in proc.stdout
    assert f"Result:    {len(report['persons'])} person" in proc.stdout
    for p in report["persons"]:
        assert f"person {p['track_id']}: {p['label']} {p['confidence'] * 100:.0f} %" in proc.stdout
    assert f"{server.url}/api/jobs/{job_id}/report.csv" in proc.stdout
    assert ("GET", f"/api/jobs/{job_id}", f"Bearer {tokens['cli']}") in server.requests

    proc = run_client(server, "status", job_id, "--json")
    assert proc.returncode == 0
    doc = json.loads(proc.stdout)
    assert doc["id"] == job_id and doc["status"] == "done" and doc["result"]["persons"] == report["persons"]


def test_video_still_rendering_is_not_ready(server, done_job, tmp_path):
    """A done job whose annotated video renders: exit 6 with a clear message, 5 when --wait times out, and the
    download once it is ready. (The state of a render in progress is set in the database for the test.)"""
    job_id, _, _ = done_job
    stack = server.stack
    assert stack.wait_video(job_id)["annotated_video"]["status"] == "ready"
    with stack.session() as s:
        row = s.scalar(select(Report).where(Report.job_id == job_id, Report.kind == "video"))
        saved = {c: getattr(row, c) for c in ("job_id", "kind", "path", "media_type", "size_bytes", "sha256",
                                             "created_at")}
        s.delete(row)
        job = s.get(Job, job_id)
        job.video_status = "rendering"
    try:
        proc = run_client(server, "download", job_id, "--format", "video", cwd=tmp_path)
        assert proc.returncode == 6, proc.stderr
        assert "still being rendered" in proc.stderr and "--wait" in proc.stderr
        proc = run_client(server, "download", job_id, "--format", "video", "--wait", "--timeout", "1.5", cwd=tmp_path)
        assert proc.returncode == 5, proc.stderr
        assert "timed out after 1.5 s waiting for the annotated video" in proc.stderr
        assert list(tmp_path.iterdir()) == []
    finally:
        with stack.session() as s:
            s.add(Report(**saved))
            s.get(Job, job_id).video_status = "ready"
    assert run_client(server, "download", job_id, "--format", "video", cwd=tmp_path).returncode == 0


# ------------------------------------------------------------------------------- jobs held from the queue
def test_timeout_not_ready_and_failed(server, people_video, held_jobs, tmp_path):
    proc = run_client(server, "submit", people_video, "--wait", "--timeout", "1.5")
    assert proc.returncode == 5, proc.stderr
    job_id = proc.stdout.splitlines()[0]
    assert held_jobs == [job_id]
    assert "timed out after 1.5 s waiting for the job" in proc.stderr and "queued" in proc.stderr

    proc = run_client(server, "status", job_id)
    assert proc.returncode == 0 and "State:     queued" in proc.stdout and "Progress:" in proc.stdout
    for fmt in ("csv", "video"):
        proc = run_client(server, "download", job_id, "--format", fmt, cwd=tmp_path)
        assert proc.returncode == 6, proc.stderr
        assert "not ready: the job is not done yet (it is queued)" in proc.stderr
    proc = run_client(server, "download", job_id, "--format", "json", "--wait", "--timeout", "1", cwd=tmp_path)
    assert proc.returncode == 5, proc.stderr
    assert list(tmp_path.iterdir()) == []

    from har.jobs import fail_job

    with server.stack.session() as s:
        fail_job(s, s.get(Job, job_id), "The test stopped this job.")
    proc = run_client(server, "status", job_id)
    assert proc.returncode == 1
    assert "State:     failed" in proc.stdout and f"job {job_id} failed: The test stopped this job." in proc.stderr
    for fmt in ("html", "video"):
        proc = run_client(server, "download", job_id, "--format", fmt, "--wait", cwd=tmp_path)
        assert proc.returncode == 1 and "The test stopped this job." in proc.stderr, proc.stderr


def test_queue_unavailable_is_a_server_error(server, people_video):
    """503 from the upload (the broker is down): exit 3; the job it recorded as failed says why (exit 1)."""
    app = server.stack.app

    def broker_down(job_id):
        raise ConnectionError("redis is down")

    app.config["HAR_ENQUEUE"] = broker_down
    try:
        proc = run_client(server, "submit", people_video, "--wait")
    finally:
        app.config["HAR_ENQUEUE"] = None
    assert proc.returncode == 3, proc.stderr
    assert "processing service is unavailable" in proc.stderr and "HTTP 503" in proc.stderr
    job_id = proc.stderr.split("; job ")[1].split()[0]
    proc = run_client(server, "status", job_id)
    assert proc.returncode == 1 and "could not be queued" in proc.stderr


# ------------------------------------------------------------------------------------------ refusals
@pytest.mark.parametrize("name, content, status, message", [
    ("notes.txt", b"just some text\n", 415, ".txt is not supported"),
    ("fake.mp4", b"not a video at all" * 100, 422, "cannot be read as a video"),
])
def test_an_upload_the_server_refuses(server, tmp_path, name, content, status, message):
    path = tmp_path / name
    path.write_bytes(content)
    before = job_count(server)  # every job: the history would list only the test identity's
    proc = run_client(server, "submit", path, "--wait")
    assert proc.returncode == 4, proc.stderr
    assert message in proc.stderr and f"HTTP {status}" in proc.stderr
    assert proc.stdout == ""
    assert job_count(server) == before


def job_count(server) -> int:
    from sqlalchemy import func

    with server.stack.session() as s:
        return s.scalar(select(func.count()).select_from(Job))


def test_an_invalid_token_is_refused(server, people_video):
    before = job_count(server)
    for args in (["submit", people_video], ["status", NO_SUCH_JOB]):
        proc = run_client(server, *args, env={"HAR_TOKEN": "har_not-a-token"})
        assert proc.returncode == 4, proc.stderr
        assert "The API token is not valid: it is unknown or has been revoked." in proc.stderr, proc.stderr
        assert "HTTP 401" in proc.stderr
    assert job_count(server) == before


def test_an_invalid_setting_is_refused(server, people_video):
    proc = run_client(server, "submit", people_video, "--imgsz", "333")
    assert proc.returncode == 4 and "imgsz must be a multiple of 32" in proc.stderr, proc.stderr


def test_an_unknown_job(server):
    for args in (["status", NO_SUCH_JOB], ["download", NO_SUCH_JOB, "-f", "csv"], ["download", NO_SUCH_JOB, "-f", "video"]):
        proc = run_client(server, *args)
        assert proc.returncode == 4, (args, proc.stderr)
        assert f"No job with id {NO_SUCH_JOB}." in proc.stderr and "HTTP 404" in proc.stderr


def test_an_unreachable_server(people_video):
    url = f"http://127.0.0.1:{free_port()}"
    proc = run_client(None, "--url", url, "status", NO_SUCH_JOB)
    assert proc.returncode == 3 and f"cannot reach the HAR server at {url}" in proc.stderr
    proc = run_client(None, "submit", people_video, "--url", url, env={"HAR_URL": "http://127.0.0.1:9"})
    assert proc.returncode == 3 and f"cannot reach the HAR server at {url}" in proc.stderr


def test_usage_errors(tmp_path):
    for args in ([], ["submit"], ["submit", tmp_path / "missing.mp4"], ["download", NO_SUCH_JOB],
                 ["download", NO_SUCH_JOB, "--format", "pdf"], ["status", NO_SUCH_JOB, "--timeout", "0"]):
        proc = run_client(None, *args)
        assert proc.returncode == 2, (args, proc.stderr)
        assert "usage:" in proc.stderr
