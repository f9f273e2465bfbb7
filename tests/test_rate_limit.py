"""The rate limit of new jobs (web/ratelimit.py) against a real redis-server: 429 with Retry-After past the limit,
per client (token; anonymous identity and IP), for the API and the form, re-runs counted, and uploads let through
when Redis is down."""
from __future__ import annotations

import io
import shutil
import subprocess
import time

import pytest

from har.database import dispose_engines, session_scope
from har.db import Job
from tests.conftest import free_port, wait_for
from tests.test_auth import bearer, new_token, upload_with
from tests.test_web_api import clip, enqueued, make_app, make_settings, row_counts  # noqa: F401 - fixtures
from tests.test_web_ui import visible_text
from web.ratelimit import Rate, parse_rate

REDIS_DB = 6  # the stacks of the other tests use 0, 1, 2, 5, 7, 9, 11, 12


@pytest.fixture
def limited(tmp_path, redis_server, enqueued):
    """``limited(rate) -> (app, settings)``: an app whose new jobs are limited to ``rate``, on the test Redis."""
    import redis

    url = f"{redis_server}/{REDIS_DB}"
    redis.Redis.from_url(url).flushdb()

    def make(rate: str, **overrides):
        settings = make_settings(tmp_path, redis_url=url, upload_rate=rate, **overrides)
        return make_app(settings, HAR_ENQUEUE=enqueued), settings

    yield make
    dispose_engines()


def from_ip(app, ip: str, identity=None):
    client = app.test_client(identity=identity)
    client.environ_base["REMOTE_ADDR"] = ip
    return client


def assert_limited(r, window_s: int):
    assert r.status_code == 429, r.get_data(as_text=True)
    retry = int(r.headers["Retry-After"])
    assert 1 <= retry <= window_s
    return retry


def test_a_token_is_limited_and_another_is_not(limited, clip, enqueued):
    app, settings = limited("2/hour")
    alice, bob = new_token(settings, "alice"), new_token(settings, "bob")
    client = app.test_client(identity=None)
    assert [upload_with(client, clip, alice).status_code for _ in range(2)] == [202, 202]
    r = upload_with(client, clip, alice)
    assert_limited(r, 3600)
    assert r.json["error"] == "rate_limited"
    assert r.json["message"].startswith("Too many uploads: at most 2 new jobs (uploads and re-runs) per hour from "
                                        "one client. Try again in ")
    assert row_counts(settings)[1] == 2 and len(enqueued) == 2  # nothing stored for the refused one
    # another client is not affected, from the same address
    assert upload_with(client, clip, bob).status_code == 202
    # a token counts wherever it comes from
    assert_limited(upload_with(from_ip(app, "203.0.113.9"), clip, alice), 3600)
    # a re-run is a new job too
    with session_scope(settings) as s:
        s.get(Job, enqueued[0]).status = "failed"
    r = client.post(f"/api/jobs/{enqueued[0]}/rerun", headers=bearer(alice))
    assert_limited(r, 3600)
    assert client.post(f"/api/jobs/{enqueued[0]}/rerun", headers=bearer(bob)).status_code == 403  # not bob's
    assert row_counts(settings)[1] == 3


def test_anonymous_clients_are_limited_by_identity_and_by_address(limited, clip):
    app, settings = limited("2/hour")
    a = from_ip(app, "198.51.100.1", identity="a" * 32)
    assert [upload_with(a, clip).status_code for _ in range(2)] == [202, 202]
    assert_limited(upload_with(a, clip), 3600)
    # a new identity from the same address: still that address's limit (dropping the cookie does not help)
    assert_limited(upload_with(from_ip(app, "198.51.100.1"), clip), 3600)
    # the same identity from elsewhere: its own limit
    assert_limited(upload_with(from_ip(app, "192.0.2.7", identity="a" * 32), clip), 3600)
    # someone else, elsewhere: not affected
    assert upload_with(from_ip(app, "192.0.2.8", identity="b" * 32), clip).status_code == 202
    assert row_counts(settings)[1] == 3


def test_the_form_says_so_with_retry_after(limited, clip):
    app, settings = limited("1/hour")
    client = from_ip(app, "198.51.100.2")

    def post():
        return client.post("/", data={"video": (io.BytesIO(clip.read_bytes()), "clip.mp4")},
                           content_type="multipart/form-data")

    assert post().status_code == 303
    r = post()
    assert_limited(r, 3600)
    assert r.mimetype == "text/html" and 'id="upload-form"' in r.get_data(as_text=True)
    text = visible_text(r.data)
    assert "Too many uploads: at most 1 new jobs (uploads and re-runs) per hour from one client." in text
    assert row_counts(settings)[1] == 1


def test_the_window_slides(limited, clip):
    """Past Retry-After the client may upload again (a window of 2 s, on Redis' clock)."""
    app, _ = limited("1/2s")
    client = from_ip(app, "198.51.100.3")
    assert upload_with(client, clip).status_code == 202
    retry = assert_limited(upload_with(client, clip), 2)

    def allowed():
        r = upload_with(client, clip)
        assert r.status_code in (202, 429)
        return r.status_code == 202

    time.sleep(retry)
    wait_for(allowed, 10, "the window to let the client in again", interval=0.3)


def test_no_limit_when_off(limited, clip):
    app, settings = limited("0")
    client = from_ip(app, "198.51.100.4")
    assert all(upload_with(client, clip).status_code == 202 for _ in range(4))


def test_uploads_pass_when_redis_is_down(tmp_path, clip, enqueued):
    """The limiter is on (its own redis-server) until that Redis stops: then uploads are let through."""
    exe = shutil.which("redis-server")
    if not exe:
        pytest.skip("redis-server is not installed")
    import redis

    port = free_port()
    proc = subprocess.Popen([exe, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
    try:
        wait_for(lambda: _pings(redis, port), 20, "redis-server")
        settings = make_settings(tmp_path, redis_url=f"redis://127.0.0.1:{port}/0", upload_rate="1/hour")
        app = make_app(settings, HAR_ENQUEUE=enqueued)
        client = from_ip(app, "198.51.100.5")
        assert upload_with(client, clip).status_code == 202
        assert_limited(upload_with(client, clip), 3600)
        proc.terminate()
        proc.wait(10)
        assert [upload_with(client, clip).status_code for _ in range(2)] == [202, 202]
        assert row_counts(settings)[1] == 3
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        dispose_engines()


def _pings(redis, port) -> bool:
    try:
        return redis.Redis(port=port, socket_timeout=1).ping()
    except redis.RedisError:
        return False


@pytest.mark.parametrize("raw, rate", [("20/hour", Rate(20, 3600)), ("5/10min", Rate(5, 600)),
                                       ("100 per day", Rate(100, 86400)), ("3/s", Rate(3, 1)),
                                       ("0", None), ("off", None), ("", None), ("0/hour", None)])
def test_parse_rate(raw, rate):
    assert parse_rate(raw) == rate


@pytest.mark.parametrize("raw", ["20", "20/fortnight", "a/hour", "20/0min", "-1/hour"])
def test_a_bad_rate_stops_the_app(tmp_path, raw):
    with pytest.raises(ValueError, match="HAR_UPLOAD_RATE"):
        make_app(make_settings(tmp_path, upload_rate=raw))
    dispose_engines()


def test_a_request_sent_by_another_site_is_refused_before_it_counts(limited, clip, enqueued):
    """Another site's page posting with the browser's cookie (form or fetch): 403 before the rate limit counts it, so
    it can neither submit for the browser nor use up its quota; the service's own pages and API tokens still work."""
    app, settings = limited("1/hour")
    client = app.test_client()
    video = clip.read_bytes()
    cross = {"Sec-Fetch-Site": "cross-site", "Origin": "https://elsewhere.example"}
    for url in ("/api/jobs", "/"):
        r = client.post(url, data={"video": (io.BytesIO(video), "clip.mp4")}, content_type="multipart/form-data",
                        headers=cross)
        assert r.status_code == 403, (url, r.status_code)
    assert r.mimetype == "text/html" and "another web site" in visible_text(r.data)
    assert client.post("/api/jobs", data={"video": (io.BytesIO(video), "clip.mp4")},
                       content_type="multipart/form-data",
                       headers={"Sec-Fetch-Site": "same-site"}).json["error"] == "cross_site_request"
    assert row_counts(settings)[1] == 0 and not enqueued
    r = client.post("/api/jobs", data={"video": (io.BytesIO(video), "clip.mp4")}, content_type="multipart/form-data",
                    headers={"Sec-Fetch-Site": "same-origin"})
    assert r.status_code == 202  # the quota of one was not used up by the refused requests
    token = new_token(settings, "ci")
    r = upload_with(app.test_client(identity=None), clip, token)  # a token is not a cookie: fine from anywhere
    assert r.status_code == 202
