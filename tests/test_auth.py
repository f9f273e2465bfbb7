"""Job ownership (web/auth.py): browser identities in a signed cookie, API tokens (and the ``flask tokens`` CLI),
who sees and manages which jobs, HAR_AUTH=required. Real uploads into a migrated SQLite database."""
from __future__ import annotations

import hashlib
import io
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from sqlalchemy import func, select

from har.database import dispose_engines, session_scope
from har.db import ApiToken, Job
from tests.conftest import TEST_OWNER
from tests.test_web_api import (  # noqa: F401 - fixtures
    add_done_job,
    add_finished_job_with_files,
    add_job,
    clip,
    enqueued,
    job_rows,
    make_app,
    make_settings,
    row_counts,
    settings,
    upload,
)
from tests.test_web_ui import action_forms, csrf_token, visible_text

ROOT = Path(__file__).resolve().parent.parent
OTHER = "0b" * 16  # another browser's identity


@pytest.fixture
def app(settings, enqueued):
    return make_app(settings, HAR_ENQUEUE=enqueued)


def new_token(settings, name: str, admin: bool = False) -> str:
    from web.auth import create_token

    with session_scope(settings) as s:
        return create_token(s, name, admin=admin)[1]


def revoke(settings, name: str) -> None:
    from web.auth import revoke_token

    with session_scope(settings) as s:
        assert revoke_token(s, name) == 1


def bearer(token: str) -> dict:
    return {"Authorization": f"Bearer {token}"}


def listed(client, headers=None, **args) -> list[str]:
    r = client.get("/api/jobs", query_string=args, headers=headers or {})
    assert r.status_code == 200, r.json
    return [j["id"] for j in r.json["items"]]


def owner_of(settings, job_id) -> str | None:
    with session_scope(settings) as s:
        return s.get(Job, job_id).owner


def identity_cookie(resp):
    from web.auth import IDENTITY_COOKIE

    return next((v for k, v in resp.headers.items() if k == "Set-Cookie" and v.startswith(IDENTITY_COOKIE + "=")),
                None)


# ------------------------------------------------------------------------------- browser identity
def test_a_browser_gets_a_signed_long_lived_identity_cookie(app):
    client = app.test_client(identity=None)
    cookie = identity_cookie(client.get("/"))
    assert cookie is not None
    attrs = {a.strip().split("=")[0].lower(): a.strip() for a in cookie.split(";")[1:]}
    assert "httponly" in attrs and attrs["samesite"] == "SameSite=Lax" and "secure" not in attrs
    assert int(attrs["max-age"].split("=")[1]) >= 300 * 86400
    value = cookie.split(";")[0].split("=", 1)[1]
    # the same identity on the next pages (sent back, refreshed, not replaced)
    again = identity_cookie(client.get("/jobs"))
    assert again is not None and again.split(";")[0].split("=", 1)[1] == value
    # over https it is Secure; a forged or tampered cookie is not taken: a new identity is issued
    https = app.test_client(identity=None)
    assert "Secure" in identity_cookie(https.get("/", base_url="https://localhost"))
    forged = app.test_client(identity=None)
    forged.set_cookie("har_identity", value[:-2] + ("AA" if not value.endswith("AA") else "BB"))
    new = identity_cookie(forged.get("/"))
    assert new is not None and new.split(";")[0].split("=", 1)[1] != value


def test_an_identity_survives_restarts_and_is_shared_by_web_processes(tmp_path, clip, enqueued):
    """The key is HAR_SECRET_KEY or the one generated once in HAR_DATA_DIR: two apps on the same data directory
    (two gunicorn workers, or before and after a restart) know the same browser."""
    settings = make_settings(tmp_path, secret_key="")
    try:
        first = make_app(settings, HAR_ENQUEUE=enqueued).test_client(identity=None)
        r = upload(first, clip, "mine.mp4")
        assert r.status_code == 202
        cookie = first.get_cookie("har_identity")
        second = make_app(settings, HAR_ENQUEUE=enqueued).test_client(identity=None)
        second.set_cookie("har_identity", cookie.value)
        assert listed(second) == [r.json["id"]]
        assert second.delete(f"/api/jobs/{r.json['id']}").status_code == 409  # queued: but it is theirs
        # an app with another key does not accept it
        other = make_app(make_settings(tmp_path / "other", secret_key="another-key"), HAR_ENQUEUE=enqueued)
        stranger = other.test_client(identity=None)
        stranger.set_cookie("har_identity", cookie.value)
        assert identity_cookie(stranger.get("/")).split(";")[0].split("=", 1)[1] != cookie.value
    finally:
        dispose_engines()


# ------------------------------------------------------------------------------- what others see and do
def test_uploads_belong_to_their_browser_and_the_history_lists_only_yours(app, settings, clip):
    mine, theirs = app.test_client(), app.test_client(identity=OTHER)
    a = upload(mine, clip, "a.mp4").json["id"]
    b = upload(theirs, clip, "b.mp4").json["id"]
    assert owner_of(settings, a) == TEST_OWNER and owner_of(settings, b) == f"anon:{OTHER}"
    assert listed(mine) == [a] and listed(theirs) == [b]
    assert mine.get("/api/jobs").json["total"] == 1
    page = mine.get("/jobs").data.decode()
    assert "a.mp4" in page and "b.mp4" not in page and "Page 1 of 1 · 1 job" in visible_text(page.encode())
    fresh = app.test_client(identity=None)
    assert listed(fresh) == [] and "No jobs" in visible_text(fresh.get("/jobs").data)
    # old jobs without an owner are nobody's
    add_job(settings, name="legacy.mp4", owner=None, status="done")
    assert listed(mine) == [a] and "legacy.mp4" not in mine.get("/jobs").data.decode()


def test_others_can_view_and_download_but_not_delete_or_rerun(app, settings, clip, enqueued):
    job_id = add_finished_job_with_files(settings, app, clip)  # the test client's (TEST_OWNER)
    other = app.test_client(identity=OTHER)
    # shareable by id: status, page, reports, the annotated video
    assert other.get(f"/api/jobs/{job_id}").json["status"] == "done"
    page = other.get(f"/jobs/{job_id}")
    assert page.status_code == 200 and action_forms(page.data.decode()) == {}
    assert "Only whoever submitted this job can delete it or run it again" in visible_text(page.data)
    for fmt in ("json", "csv", "html"):
        assert other.get(f"/api/jobs/{job_id}/report.{fmt}").status_code == 200
    assert other.get(f"/api/jobs/{job_id}/video", headers={"Range": "bytes=0-3"}).status_code == 206
    # but not delete or run again: 403 with the reason, nothing changed
    before = job_rows(settings, job_id)
    r = other.delete(f"/api/jobs/{job_id}")
    assert r.status_code == 403 and r.json["error"] == "forbidden"
    assert r.json["message"].startswith("This job is not yours: only whoever submitted it can delete it.")
    r = other.post(f"/api/jobs/{job_id}/rerun")
    assert r.status_code == 403 and "can run it again" in r.json["message"] and enqueued == []
    r = other.post(f"/jobs/{job_id}/delete")  # the page's form (CSRF is off in this app)
    assert r.status_code == 403 and "This job is not yours" in visible_text(r.data) and r.mimetype == "text/html"
    r = other.post(f"/jobs/{job_id}/rerun")
    assert r.status_code == 403 and enqueued == []
    assert job_rows(settings, job_id) == before
    # the owner can: its page has the buttons, a re-run is its own new job, a delete works
    mine = app.test_client()
    assert set(action_forms(mine.get(f"/jobs/{job_id}").data.decode())) == {f"/jobs/{job_id}/rerun",
                                                                              f"/jobs/{job_id}/delete"}
    r = mine.post(f"/api/jobs/{job_id}/rerun")
    assert r.status_code == 202 and enqueued == [r.json["id"]] and owner_of(settings, r.json["id"]) == TEST_OWNER
    assert mine.delete(f"/api/jobs/{job_id}").status_code == 204
    assert listed(mine) == [r.json["id"]]


def test_the_owners_browser_form_deletes_with_csrf(settings, clip, enqueued):
    app = make_app(settings, HAR_ENQUEUE=enqueued, WTF_CSRF_ENABLED=True)
    job_id = add_finished_job_with_files(settings, app, clip)
    other = app.test_client(identity=OTHER)
    token = csrf_token(other.get("/").data)  # a valid form token, but not the owner
    assert other.post(f"/jobs/{job_id}/delete", data={"csrf_token": token}).status_code == 403
    mine = app.test_client()
    token = csrf_token(mine.get(f"/jobs/{job_id}").data)
    r = mine.post(f"/jobs/{job_id}/delete", data={"csrf_token": token})
    assert r.status_code == 303 and job_rows(settings, job_id)["jobs"] == 0


# ------------------------------------------------------------------------------- tokens
def test_token_clients_own_their_jobs(app, settings, clip, enqueued):
    alice, bob = new_token(settings, "alice"), new_token(settings, "bob")
    client = app.test_client(identity=None)
    r = client.post("/api/jobs", data={"video": (io.BytesIO(clip.read_bytes()), "a.mp4")},
                    content_type="multipart/form-data", headers=bearer(alice))
    assert r.status_code == 202
    job_id = r.json["id"]
    assert owner_of(settings, job_id) == "token:alice"
    assert "har_identity" not in r.headers.get("Set-Cookie", "")  # token clients get no cookie
    assert listed(client, bearer(alice)) == [job_id]
    assert listed(client, bearer(bob)) == [] and listed(app.test_client()) == []
    with session_scope(settings) as s:
        s.get(Job, job_id).status = "failed"
    for who in (bearer(bob), {}):  # another token, a browser
        r = client.delete(f"/api/jobs/{job_id}", headers=who)
        assert r.status_code == 403 and r.json["error"] == "forbidden"
        assert client.post(f"/api/jobs/{job_id}/rerun", headers=who).status_code == 403
    assert client.get(f"/api/jobs/{job_id}", headers=bearer(bob)).status_code == 200  # readable by id
    r = client.post(f"/api/jobs/{job_id}/rerun", headers=bearer(alice))
    assert r.status_code == 202 and owner_of(settings, r.json["id"]) == "token:alice"
    assert client.delete(f"/api/jobs/{job_id}", headers=bearer(alice)).status_code == 204
    with session_scope(settings) as s:  # the token was used: recorded
        assert s.scalar(select(ApiToken.last_used_at).where(ApiToken.name == "alice")) is not None


@pytest.mark.parametrize("header", ["Bearer har_not-a-real-token", "Bearer ", "bearer har_x"])
def test_an_invalid_token_is_refused_everywhere(app, settings, clip, header):
    job_id = add_done_job(settings)
    client = app.test_client()
    for method, path in (("GET", "/api/jobs"), ("GET", f"/api/jobs/{job_id}"), ("GET", f"/api/jobs/{job_id}/report.csv"),
                         ("POST", "/api/jobs"), ("DELETE", f"/api/jobs/{job_id}"), ("POST", f"/api/jobs/{job_id}/rerun")):
        r = client.open(path, method=method, headers={"Authorization": header})
        assert r.status_code == 401, (method, path)
        assert r.json["error"] == "invalid_token" and r.headers["WWW-Authenticate"].startswith("Bearer")
    r = client.get(f"/jobs/{job_id}", headers={"Authorization": header})  # pages too
    assert r.status_code == 401 and r.mimetype == "text/html" and "Invalid API token" in visible_text(r.data)
    assert client.get("/healthz", headers={"Authorization": header}).status_code == 200  # not a token of ours
    assert row_counts(settings)[1] == 1


def test_another_authorization_scheme_is_not_a_token(app, settings, clip):
    """A reverse proxy's own login (``Authorization: Basic``) passes through: the client is known by its cookie."""
    job_id = add_done_job(settings)
    client = app.test_client()
    basic = {"Authorization": "Basic dXNlcjpwdw=="}
    assert client.get(f"/jobs/{job_id}", headers=basic).status_code == 200
    assert client.get("/api/jobs", headers=basic).status_code == 200
    r = client.post("/api/jobs", data={"video": (io.BytesIO(clip.read_bytes()), "clip.mp4")},
                    content_type="multipart/form-data", headers=basic)
    assert r.status_code == 202


def test_a_revoked_token_is_refused(app, settings, clip):
    token = new_token(settings, "ci")
    client = app.test_client(identity=None)
    assert upload_with(client, clip, token).status_code == 202
    revoke(settings, "ci")
    r = upload_with(client, clip, token)
    assert r.status_code == 401 and "revoked" in r.json["message"]
    assert client.get("/api/jobs", headers=bearer(token)).status_code == 401
    assert row_counts(settings)[1] == 1


def upload_with(client, clip, token=None, name="clip.mp4"):
    return client.post("/api/jobs", data={"video": (io.BytesIO(clip.read_bytes()), name)},
                       content_type="multipart/form-data", headers=bearer(token) if token else {})


def test_a_browser_can_use_a_token(app, settings, clip, enqueued):
    """The /token page keeps the token's id in the signed session: the browser's uploads are the token's, its
    history shows the token's jobs with its own, and revoking the token signs it out."""
    token = new_token(settings, "alice")
    api_job = upload_with(app.test_client(identity=None), clip, token, "api.mp4").json["id"]
    browser = app.test_client()
    own_job = upload(browser, clip, "browser.mp4").json["id"]
    r = browser.post("/token", data={"token": "har_wrong"})
    assert r.status_code == 401 and "not valid" in visible_text(r.data)
    r = browser.post("/token", data={"token": token})
    assert r.status_code == 303
    assert "API token “alice”" in visible_text(browser.get("/").data)
    form_job = browser.post("/", data={"video": (io.BytesIO(clip.read_bytes()), "form.mp4")},
                            content_type="multipart/form-data").headers["Location"].rsplit("/", 1)[1]
    assert owner_of(settings, form_job) == "token:alice"
    assert set(listed(browser)) == {api_job, own_job, form_job}
    with session_scope(settings) as s:
        s.get(Job, api_job).status = "failed"
    assert browser.delete(f"/api/jobs/{api_job}").status_code == 204
    revoke(settings, "alice")
    r = browser.get("/jobs")
    assert r.status_code == 200 and "has been revoked" in visible_text(r.data)
    assert set(listed(browser)) == {own_job}
    r = browser.post("/token/forget")
    assert r.status_code == 303


def test_jobs_from_before_owners_only_an_admin_token_may_manage(app, settings, clip, enqueued):
    legacy = add_finished_job_with_files(settings, app, clip, owner=None)
    mine = add_job(settings, status="failed", name="mine.mp4")
    admin, user = new_token(settings, "ops", admin=True), new_token(settings, "user")
    client = app.test_client()
    r = client.delete(f"/api/jobs/{legacy}")
    assert r.status_code == 403 and "before jobs had owners" in r.json["message"]
    assert client.delete(f"/api/jobs/{legacy}", headers=bearer(user)).status_code == 403
    assert listed(client, bearer(admin)) == []  # an admin's history is its own
    assert set(listed(client, bearer(admin), scope="all")) == {legacy, mine}
    r = client.get("/api/jobs?scope=all", headers=bearer(user))
    assert r.status_code == 403 and "admin" in r.json["message"]
    assert client.get("/api/jobs?scope=all").status_code == 403
    assert client.get("/api/jobs?scope=bogus").status_code == 400
    r = client.post(f"/api/jobs/{legacy}/rerun", headers=bearer(admin))
    assert r.status_code == 202 and owner_of(settings, r.json["id"]) == "token:ops"
    assert client.delete(f"/api/jobs/{legacy}", headers=bearer(admin)).status_code == 204
    assert client.delete(f"/api/jobs/{mine}", headers=bearer(admin)).status_code == 204


# ------------------------------------------------------------------------------- HAR_AUTH=required
def test_auth_required_refuses_anonymous_submissions(tmp_path, clip, enqueued):
    settings = make_settings(tmp_path, auth="required")
    try:
        app = make_app(settings, HAR_ENQUEUE=enqueued)
        token = new_token(settings, "alice")
        client = app.test_client()
        r = upload_with(client, clip)
        assert r.status_code == 401 and r.json["error"] == "token_required"
        assert "Authorization: Bearer <token>" in r.json["message"] and r.headers["WWW-Authenticate"]
        assert row_counts(settings) == (0, 0, 0) and enqueued == []
        # the form: no upload form, a way to enter a token; a post anyway is refused with the reason
        page = client.get("/").data.decode()
        assert 'id="upload-form"' not in page and 'href="/token"' in page
        r = client.post("/", data={"video": (io.BytesIO(clip.read_bytes()), "clip.mp4")},
                        content_type="multipart/form-data")
        assert r.status_code == 401 and "needs an API token" in visible_text(r.data)
        assert row_counts(settings) == (0, 0, 0)
        # with a token: accepted; anonymous re-runs are refused too
        r = upload_with(client, clip, token)
        assert r.status_code == 202
        job_id = r.json["id"]
        with session_scope(settings) as s:
            s.get(Job, job_id).status = "failed"
        assert client.post(f"/api/jobs/{job_id}/rerun").status_code == 401
        assert client.get(f"/api/jobs/{job_id}").status_code == 200  # reading needs no token
        # a browser that entered the token uploads through the form
        assert client.post("/token", data={"token": token}).status_code == 303
        assert 'id="upload-form"' in client.get("/").data.decode()
        r = client.post("/", data={"video": (io.BytesIO(clip.read_bytes()), "clip.mp4")},
                        content_type="multipart/form-data")
        assert r.status_code == 303
        revoke(settings, "alice")
        assert upload_with(client, clip, token).status_code == 401
        assert client.post("/", data={"video": (io.BytesIO(clip.read_bytes()), "c.mp4")},
                           content_type="multipart/form-data").status_code == 401
        assert row_counts(settings)[1] == 2
    finally:
        dispose_engines()


def test_an_unknown_auth_mode_stops_the_app(tmp_path):
    with pytest.raises(ValueError, match="HAR_AUTH"):
        make_app(make_settings(tmp_path, auth="sometimes"))
    dispose_engines()


# ------------------------------------------------------------------------------- flask tokens ...
def flask_cli(settings, *args) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("HAR_")}
    env.update(HAR_DATA_DIR=settings.data_dir, HAR_DATABASE_URL=settings.resolved_database_url,
               HAR_REDIS_URL=settings.redis_url, HAR_SECRET_KEY="test-secret",
               PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    return subprocess.run([sys.executable, "-m", "flask", "--app", "web", "tokens", *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=120)


def test_tokens_cli_create_list_revoke(app, settings, clip):
    created = flask_cli(settings, "create", "ci-bot")
    assert created.returncode == 0, created.stderr
    token = created.stdout.strip()
    assert re.fullmatch(r"har_[A-Za-z0-9_-]{43}", token) and "cannot be shown again" in created.stderr
    with session_scope(settings) as s:  # only the hash is stored
        row = s.scalars(select(ApiToken)).one()
        assert (row.name, row.admin, row.revoked_at) == ("ci-bot", False, None)
        assert row.token_hash == hashlib.sha256(token.encode()).hexdigest()
    # nor anywhere in the database's files (read by another process: closing a file SQLite has open would drop this
    # process's locks on it)
    scan = subprocess.run([sys.executable, "-c", "import glob, sys; sys.exit(any(sys.argv[2].encode() in "
                           "open(p, 'rb').read() for p in glob.glob(sys.argv[1] + '*')))",
                           settings.resolved_database_url.removeprefix("sqlite:///"), token[4:]], timeout=60)
    assert scan.returncode == 0, "the token is stored in the database"
    client = app.test_client(identity=None)
    job_id = upload_with(client, clip, token).json["id"]

    again = flask_cli(settings, "create", "ci-bot")  # one active token per name
    assert again.returncode == 1 and "already an active token named 'ci-bot'" in again.stderr
    assert flask_cli(settings, "create", "bad name!").returncode != 0
    admin = flask_cli(settings, "create", "ops", "--admin")
    assert admin.returncode == 0

    listing = flask_cli(settings, "list")
    assert listing.returncode == 0, listing.stderr
    lines = listing.stdout.splitlines()
    assert lines[0].split() == ["NAME", "STATUS", "ADMIN", "CREATED", "LAST", "USED"]
    assert lines[1].split()[:3] == ["ci-bot", "active", "no"] and lines[2].split()[:3] == ["ops", "active", "yes"]
    assert token not in listing.stdout and row.token_hash not in listing.stdout

    revoked = flask_cli(settings, "revoke", "ci-bot")
    assert revoked.returncode == 0 and "Revoked token 'ci-bot'" in revoked.stdout
    assert upload_with(client, clip, token).status_code == 401
    assert flask_cli(settings, "list").stdout.splitlines()[1].split()[:2] == ["ci-bot", "revoked"]
    missing = flask_cli(settings, "revoke", "ci-bot")
    assert missing.returncode == 1 and "no active token named 'ci-bot'" in missing.stderr

    # a new token under the name takes over its jobs (rotation)
    rotated = flask_cli(settings, "create", "ci-bot").stdout.strip()
    assert rotated != token and listed(client, bearer(rotated)) == [job_id]
    with session_scope(settings) as s:
        assert sorted((t.name, t.revoked_at is None) for t in s.scalars(select(ApiToken))) == [
            ("ci-bot", False), ("ci-bot", True), ("ops", True)]
