"""The README's REST API examples, run as written with the real ``curl`` against the web app served over HTTP on a
free port, with the real workers behind it; and its webhook verification snippet against a real signed delivery.

Only the placeholders are filled in (the base URL, ``<id>`` and ``<job_key>`` from the answer of the anonymous upload
above the line, ``$HAR_TOKEN`` from the environment, the webhook receiver's URL), and ``-sS -w`` is added to read the
HTTP status, which must be the one the line's comment promises (``→ 202``)."""
from __future__ import annotations

import json
import re
import shutil
import subprocess
import threading

import pytest

from tests.conftest import ROOT, wait_for
from tests.webhook_receiver import Receiver

README = ROOT / "README.md"
BASE = "http://127.0.0.1:8000"
MARKER = "These lines run as written in `tests/test_readme_examples.py`"


def readme_block(after: str, lang: str) -> str:
    text = README.read_text()
    start = text.index(after)
    m = re.compile(rf"```{lang}\n(.*?)```", re.S).search(text, start)
    assert m, f"no ```{lang} block after {after!r}"
    return m.group(1)


def curl_lines() -> list[tuple[str, int]]:
    """(command, promised status) for each line of the README's REST API block."""
    lines = []
    for line in readme_block(MARKER, "bash").splitlines():
        if not line.strip():
            continue
        command, _, comment = line.partition("  #")
        m = re.search(r"→ (\d{3})", comment)
        assert command.startswith("curl ") and m, f"a README example without a promised status: {line!r}"
        lines.append((command.strip(), int(m.group(1))))
    return lines


def test_every_readme_api_example_promises_a_status():
    lines = curl_lines()
    assert len(lines) >= 10
    assert any("-X DELETE" in c and "<job_key>" in c for c, _ in lines)  # an anonymous user can delete their job


@pytest.fixture
def served(sqlite_stack):
    """The stack's web app on a real HTTP server (a free port)."""
    from werkzeug.serving import make_server

    server = make_server("127.0.0.1", 0, sqlite_stack.app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}"
    server.shutdown()


def test_readme_curl_examples_run_as_written(sqlite_stack, served, people_video, tmp_path):
    if shutil.which("curl") is None:
        pytest.skip("curl is not installed")
    from web.auth import create_token

    with sqlite_stack.session() as s:
        _, token = create_token(s, "readme")
    shutil.copy(people_video, tmp_path / "clip.mp4")
    env = {"PATH": "/usr/bin:/bin", "HAR_TOKEN": token, "HOME": str(tmp_path)}
    job = {}  # the latest anonymous upload's answer
    with Receiver() as receiver:
        for command, promised in curl_lines():
            if "<id>" in command:
                if "/report." in command:  # the README: 409 until done; a user waits for it
                    sqlite_stack.wait_final(job["id"])
                if command.rstrip("'\"").endswith("/video"):
                    sqlite_stack.wait_video(job["id"])
                if command.endswith("/webhooks"):
                    sqlite_stack.wait_final(job["id"])
                    wait_for(lambda: receiver.events(), 60, "the webhook", interval=0.1)
            run = (command.replace(BASE, served).replace("https://hooks.example.com/har", receiver.url())
                   .replace("<id>", job.get("id", "<id>")).replace("<job_key>", job.get("job_key", "<job_key>")))
            run = "curl -sS -w '\\n%{http_code}' " + run[len("curl "):]
            res = subprocess.run(["bash", "-c", run], cwd=tmp_path, env=env, capture_output=True, text=True,
                                 timeout=120)
            assert res.returncode == 0, (command, res.stderr)
            body, _, status = res.stdout.rpartition("\n")
            assert int(status) == promised, (command, status, body)
            if promised == 202 and "-F video=" in command:
                doc = json.loads(body)
                assert doc["status"] == "queued" and doc["status_url"] == f"/api/jobs/{doc['id']}"
                if "Authorization" not in command:
                    assert doc["job_key"].startswith("hjk_")
                    job = doc
                else:
                    assert "job_key" not in doc  # a token's job: the token manages it
            elif "-X DELETE" in command:
                assert sqlite_stack.client().get(f"/api/jobs/{job['id']}").status_code == 404
            elif command.endswith("/rerun"):
                assert json.loads(body)["id"] != job["id"]
            elif command.endswith("/webhooks"):
                items = json.loads(body)["items"]
                assert items and items[0]["event"] == "job.done" and items[0]["status"] == "delivered"
        assert (tmp_path / "report.json").stat().st_size > 0 and json.loads((tmp_path / "report.json").read_text())
        assert (tmp_path / "video").stat().st_size > 1000  # curl -O names the file after the URL
        listed = sqlite_stack.client().get("/api/jobs", headers={"Authorization": f"Bearer {token}"}).json
        assert listed["total"] == 1  # the token's job

        # the README's verification snippet accepts the real signed delivery, and refuses it altered
        scope: dict = {}
        exec(compile(readme_block("## Webhooks", "python"), "README.md", "exec"), scope)  # noqa: S102
        got = receiver.received[0]
        assert scope["verify"](job["job_key"], got.body, got.headers["Har-Signature"])
        assert not scope["verify"](job["job_key"], got.body.replace(b"done", b"DONE"), got.headers["Har-Signature"])
        assert not scope["verify"]("hjk_someone-else", got.body, got.headers["Har-Signature"])

