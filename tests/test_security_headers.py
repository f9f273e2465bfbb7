"""Security headers (web/security.py) on HTML pages, JSON, stored files, static files and errors; the pages need no
inline script, handler or style element (so the Content-Security-Policy holds); the HTML report's own policy."""
from __future__ import annotations

import re

import pytest

from tests.test_web_api import (  # noqa: F401 - fixtures
    add_done_job,
    add_finished_job_with_files,
    add_job,
    app,
    client,
    clip,
    enqueued,
    settings,
)
from web.security import CSP, REPORT_CSP


def directives(policy: str) -> dict[str, list[str]]:
    out = {}
    for part in policy.split(";"):
        words = part.split()
        if words:
            out[words[0]] = words[1:]
    return out


def assert_secure(r, csp=CSP):
    h = r.headers
    assert h["Content-Security-Policy"] == csp, r.request.path
    assert h["X-Content-Type-Options"] == "nosniff"
    assert h["X-Frame-Options"] == "DENY"
    assert h["Referrer-Policy"] == "same-origin"
    assert "Strict-Transport-Security" not in h  # plain http
    d = directives(h["Content-Security-Policy"])
    assert d["frame-ancestors"] == ["'none'"]
    assert "'unsafe-inline'" not in d.get("script-src", []) and "'unsafe-eval'" not in d.get("script-src", [])


def test_the_policy():
    d = directives(CSP)
    assert d["default-src"] == ["'self'"] and d["script-src"] == ["'self'"] and d["object-src"] == ["'none'"]
    assert d["style-src-elem"] == ["'self'"]  # style attributes only (templates position the timeline with them)
    assert d["base-uri"] == ["'self'"] and d["form-action"] == ["'self'"]
    r = directives(REPORT_CSP)
    assert r["default-src"] == ["'none'"] and "script-src" not in r and "sandbox" in r
    assert r["frame-ancestors"] == ["'none'"]


def test_headers_on_pages_json_files_and_errors(client, settings, app, clip):
    job_id = add_finished_job_with_files(settings, app, clip)
    responses = {
        "upload page": client.get("/"),
        "history": client.get("/jobs"),
        "job page": client.get(f"/jobs/{job_id}"),
        "token page": client.get("/token"),
        "API docs": client.get("/api/docs"),
        "job JSON": client.get(f"/api/jobs/{job_id}"),
        "list JSON": client.get("/api/jobs"),
        "OpenAPI": client.get("/api/openapi.json"),
        "JSON report": client.get(f"/api/jobs/{job_id}/report.json"),
        "CSV report": client.get(f"/api/jobs/{job_id}/report.csv?download=1"),
        "video": client.get(f"/api/jobs/{job_id}/video", headers={"Range": "bytes=0-3"}),
        "static": client.get("/static/app.css"),
        "404 page": client.get("/jobs/nope"),
        "404 JSON": client.get("/api/jobs/nope"),
        "405 JSON": client.delete("/api/jobs"),
        "liveness": client.get("/healthz"),
    }
    for what, r in responses.items():
        assert r.status_code < 500, what
        assert_secure(r)
    assert responses["video"].status_code == 206 and responses["404 page"].status_code == 404


def test_the_html_report_has_its_own_policy(client, settings, app, clip):
    stored = add_finished_job_with_files(settings, app, clip)  # the report file written by the report stage
    on_demand = add_done_job(settings)  # no file: rendered when asked
    for job_id in (stored, on_demand):
        r = client.get(f"/api/jobs/{job_id}/report.html")
        assert r.status_code == 200 and r.mimetype == "text/html"
        assert_secure(r, REPORT_CSP)
        html = r.get_data(as_text=True)
        assert "<script" not in html.lower() and "<style>" in html  # its own inline styles, which its policy allows


def test_https_responses_ask_for_https(client):
    r = client.get("/", base_url="https://localhost")
    assert r.headers["Strict-Transport-Security"].startswith("max-age=")


INLINE_SCRIPT = re.compile(r"<script(?![^>]*\bsrc=)[^>]*>", re.I)
HANDLER = re.compile(r"<[^>]+\son[a-z]+\s*=", re.I)
STYLE_ELEMENT = re.compile(r"<style\b", re.I)
JS_URL = re.compile(r"""(href|src|action)\s*=\s*["']?\s*javascript:""", re.I)


@pytest.mark.parametrize("auth", ["optional", "required"])
def test_pages_have_no_inline_scripts_handlers_or_style_elements(tmp_path, clip, enqueued, auth):
    from tests.test_web_api import make_app, make_settings

    settings = make_settings(tmp_path, auth=auth)
    app = make_app(settings, HAR_ENQUEUE=enqueued)
    client = app.test_client()
    done = add_finished_job_with_files(settings, app, clip)
    running = add_job(settings, status="extracting", frames_done=10)
    pages = ["/", "/jobs", f"/jobs/{done}", f"/jobs/{running}", "/token", "/api/docs", "/jobs/nope"]
    for path in pages:
        html = client.get(path).get_data(as_text=True)
        assert "<html" in html, path
        for pattern in (INLINE_SCRIPT, HANDLER, STYLE_ELEMENT, JS_URL):
            found = pattern.search(html)
            assert found is None, f"{path}: {found.group(0) if found else ''}"
    # every script the pages load is one of ours
    scripts = set(re.findall(r'<script src="([^"]+)"', "".join(client.get(p).get_data(as_text=True) for p in pages)))
    assert scripts and all(s.startswith("/static/") for s in scripts)
