"""The pages (web.ui): upload form with CSRF, job page, jobs history; no external assets."""
from __future__ import annotations

import io
import re
from datetime import datetime, timedelta, timezone

import pytest

from har.database import dispose_engines, session_scope
from har.db import FAILED, QUEUED, Job, Report
from tests.test_web_api import (  # noqa: F401 - fixtures
    add_done_job,
    add_finished_job_with_files,
    add_job,
    app,
    client,
    clip,
    enqueued,
    job_rows,
    make_app,
    make_settings,
    row_counts,
    settings,
    stored_files,
)

EXTERNAL = re.compile(r"""(src|href|action)\s*=\s*["']?\s*(https?:)?//""", re.I)


def csrf_token(html: bytes) -> str:
    m = re.search(rb'name="csrf_token" type="hidden" value="([^"]+)"', html) or \
        re.search(rb'id="csrf_token" name="csrf_token" type="hidden" value="([^"]+)"', html)
    assert m, "no CSRF token in the form"
    return m.group(1).decode()


def visible_text(html: bytes) -> str:
    text = re.sub(rb"<(script|style)[^>]*>.*?</\1>", b" ", html, flags=re.S)
    return re.sub(r"\s+", " ", re.sub(rb"<[^>]+>", b" ", text).decode())


@pytest.fixture
def csrf_app(settings, enqueued):
    return make_app(settings, HAR_ENQUEUE=enqueued, WTF_CSRF_ENABLED=True)


def test_upload_page_states_formats_and_limits(client, settings):
    r = client.get("/")
    assert r.status_code == 200
    html = r.data
    assert b'enctype="multipart/form-data"' in html
    for ext in ("mp4", "mov", "avi", "mkv", "webm"):
        assert f"<code>.{ext}</code>".encode() in html
    assert f"Up to {settings.max_upload_mb} MB".encode() in html and b"10 minutes" in html
    assert b"upload.js" in html and b"app.css" in html
    assert not EXTERNAL.search(html.decode())


def test_csrf_enforced_on_form(csrf_app, settings, enqueued, clip):
    client = csrf_app.test_client()
    r = client.post("/", data={"video": (io.BytesIO(clip.read_bytes()), "clip.mp4")},
                    content_type="multipart/form-data")
    assert r.status_code == 400
    assert "form expired" in visible_text(r.data).lower()
    assert stored_files(settings) == [] and row_counts(settings) == (0, 0, 0) and enqueued == []

    token = csrf_token(client.get("/").data)
    r = client.post("/", data={"csrf_token": token, "video": (io.BytesIO(clip.read_bytes()), "clip.mp4")},
                    content_type="multipart/form-data")
    assert r.status_code == 303
    assert re.fullmatch(r"/jobs/[0-9a-f-]{36}", r.headers["Location"])
    assert enqueued == [r.headers["Location"].rsplit("/", 1)[1]]


def test_csrf_not_required_for_api(csrf_app, clip):
    r = csrf_app.test_client().post("/api/jobs", data={"video": (io.BytesIO(clip.read_bytes()), "clip.mp4")},
                                    content_type="multipart/form-data")
    assert r.status_code == 202


@pytest.mark.parametrize("data,name,status,words", [
    (b"", "empty.mp4", 400, "is empty"),
    (b"plain text, not a video" * 20, "notes.mp4", 422, "cannot be read as a video"),
    (b"GIF89a", "anim.gif", 415, "not supported"),
])
def test_form_rejects_bad_uploads_with_message(client, settings, enqueued, data, name, status, words):
    r = client.post("/", data={"video": (io.BytesIO(data), name)}, content_type="multipart/form-data")
    assert r.status_code == status
    text = visible_text(r.data)
    assert words in text and 'role="alert"' in r.data.decode()
    assert "Recognise actions in a video" in text  # the form is shown again
    assert stored_files(settings) == [] and row_counts(settings) == (0, 0, 0) and enqueued == []


def test_form_oversize_friendly_page(tmp_path, enqueued):
    settings = make_settings(tmp_path, max_upload_mb=1)
    try:
        client = make_app(settings, HAR_ENQUEUE=enqueued, WTF_CSRF_ENABLED=True).test_client()
        token = csrf_token(client.get("/").data)
        r = client.post("/", data={"csrf_token": token, "video": (io.BytesIO(b"\0" * (2 * 1024 * 1024)), "big.mp4")},
                        content_type="multipart/form-data")
        assert r.status_code == 413
        assert r.mimetype == "text/html"
        text = visible_text(r.data)
        assert "File too large" in text and "limited to 1 MB" in text and "Upload a video" in text
        assert stored_files(settings) == [] and row_counts(settings) == (0, 0, 0)
    finally:
        dispose_engines()


def test_job_page_while_running_polls_api(client, settings):
    job_id = add_job(settings, status="extracting", frames_done=40, frames_total=200,
                     started_at=datetime.now(timezone.utc) - timedelta(seconds=8), stage="pose 40/200")
    r = client.get(f"/jobs/{job_id}")
    assert r.status_code == 200
    html = r.data.decode()
    assert f'data-status-url="/api/jobs/{job_id}"' in html and 'data-final="false"' in html
    assert 'role="progressbar"' in html and 'aria-valuenow="17"' in html  # 0.85 * 40/200
    text = visible_text(r.data)
    assert "40 / 200 frames" in text and "pose 40/200" in text and "s left" in text
    assert "job.js" in html
    assert "Downloads" not in text


def test_job_page_done_shows_people_timeline_and_downloads(client, settings, app):
    job_id = add_done_job(settings, name="gym.mp4")
    storage = app.extensions["har"]["storage"]
    path, rel = storage.job_path(job_id, "annotated.webm")
    path.write_bytes(b"\x1a\x45\xdf\xa3 fake webm")
    with session_scope(settings) as s:
        s.add(Report(job_id=job_id, kind="video", path=rel, media_type="video/webm", size_bytes=16, sha256="0" * 64))
        s.get(Job, job_id).video_status = "ready"
    r = client.get(f"/jobs/{job_id}")
    assert r.status_code == 200
    html, text = r.data.decode(), visible_text(r.data)
    assert 'data-final="true"' in html and 'role="progressbar"' not in html
    # per person: label and confidence as a percentage
    assert "Person 1 Boxing 93 % confidence" in text
    assert "Person 4 Uncertain 41 % confidence" in text
    assert not re.search(r"\b0\.\d+\s?%", text)
    # timeline: one row per person, segments placed along the 10 s video, legend
    assert html.count('class="tl-track"') == 2
    assert 'style="left: 0.0%; width: 62.5%; background: #009E73' in html
    assert 'style="left: 62.5%; width: 37.0%; background: #D55E00' in html
    assert 'aria-label="Boxing from 0:00.0 to 0:06.2, 97 %"' in html
    assert 'aria-label="Legend"' in html and "Waving one hand" in text
    # video and downloads
    assert f'<video id="player" class="player" controls preload="metadata" src="/api/jobs/{job_id}/video">' in html
    assert 'data-video-status="ready"' in html and '<li id="video-download">' in html
    assert "Rendering the annotated video" not in text
    for fmt in ("html", "json", "csv"):
        assert f"/api/jobs/{job_id}/report.{fmt}" in html
    assert "yolo11n-pose" in text and "pose 12.50 s" in text
    assert not EXTERNAL.search(html)


def test_job_page_shows_the_results_while_the_video_renders(client, settings):
    """Done means the results and reports are there; the annotated video shows as rendering (job.js polls the
    status and puts the player in its place), and the history lists the job as done."""
    job_id = add_done_job(settings, name="gym.mp4", video_status="rendering")
    r = client.get(f"/jobs/{job_id}")
    html, text = r.data.decode(), visible_text(r.data)
    assert 'data-final="true"' in html and 'role="progressbar"' not in html
    assert "Person 1 Boxing 93 % confidence" in text and html.count('class="tl-track"') == 2
    for fmt in ("html", "json", "csv"):
        assert f"/api/jobs/{job_id}/report.{fmt}" in html
    assert "Rendering the annotated video… It appears here when it is ready" in text
    assert 'data-video-status="rendering"' in html and f'data-video-url="/api/jobs/{job_id}/video"' in html
    assert "<video" not in html and '<li id="video-download" hidden>' in html
    assert "job.js" in html and "<script>" not in html  # no inline script: the page's CSP forbids them
    listing = client.get("/jobs").data.decode()
    assert '<span class="badge badge-done">done</span></td>' in listing and "Boxing · 93 %" in visible_text(
        listing.encode())


def test_job_page_says_why_the_video_failed(client, settings):
    reason = "Internal error in the video stage (EncoderError: ffmpeg failed (exit 1): No space left on device)."
    job_id = add_done_job(settings, video_status="failed", video_error=reason)
    html = client.get(f"/jobs/{job_id}").data.decode()
    text = visible_text(html.encode())
    assert f"The annotated video could not be rendered. {reason}" in text
    assert "The analysis failed" not in text and "<video" not in html and "video-download" not in html
    assert "/api/jobs/" + job_id + "/report.csv" in html


def test_job_page_done_no_person(client, settings):
    job_id = add_job(settings, status="done", result={"status": "no_person", "persons": [], "short_tracks": []},
                     persons=0, overall_label="no_person")
    text = visible_text(client.get(f"/jobs/{job_id}").data)
    assert "No person was found" in text and "Timeline" not in text
    listing = visible_text(client.get("/jobs").data)
    assert "no person" in listing and "No person ·" not in listing
    assert "too short" not in listing.lower()


def test_job_page_done_too_short(client, settings):
    result = {"status": "too_short", "persons": [], "params": {"window": 32, "stride": 8, "min_track_s": 0.7},
              "short_tracks": [{"track_id": 7, "start_s": 3.1, "end_s": 3.6, "frames": 11},
                               {"track_id": 9, "start_s": 6.0, "end_s": 6.5, "frames": 11}]}
    job_id = add_job(settings, status="done", result=result, persons=0, overall_label="too_short")
    text = visible_text(client.get(f"/jobs/{job_id}").data)
    assert "Too short to classify." in text and "Timeline" not in text
    assert "No person" not in text and "no person" not in text
    assert "People were tracked in this video, but none long enough to recognise an action: " \
        "that needs a person seen for at least 0.7 s." in text
    assert "Track 7: 0:03.1–0:03.6 (11 frames)" in text and "Track 9: 0:06.0–0:06.5 (11 frames)" in text
    listing = visible_text(client.get("/jobs").data)
    assert "too short to classify" in listing
    assert "no person" not in listing and "Too short to classify ·" not in listing


def test_job_page_failed_shows_reason(client, settings):
    job_id = add_job(settings, status=FAILED, error="The video could not be decoded after 2 s.")
    text = visible_text(client.get(f"/jobs/{job_id}").data)
    assert "The analysis failed" in text and "The video could not be decoded after 2 s." in text


def test_unknown_job_page_404(client):
    r = client.get("/jobs/does-not-exist")
    assert r.status_code == 404 and r.mimetype == "text/html"
    assert "There is no job with id does-not-exist." in visible_text(r.data)


def test_jobs_list_newest_first_paginated_with_badges(tmp_path, enqueued):
    settings = make_settings(tmp_path, jobs_per_page=5)
    try:
        client = make_app(settings, HAR_ENQUEUE=enqueued).test_client()
        t0 = datetime(2026, 11, 1, tzinfo=timezone.utc)
        for i in range(12):
            add_job(settings, created_at=t0 + timedelta(minutes=i), name=f"clip{i:02d}.mp4",
                    status=FAILED if i == 11 else QUEUED, error="broken file" if i == 11 else None)
        html = client.get("/jobs").data.decode()
        names = re.findall(r">(clip\d\d\.mp4)</a>", html)
        assert names == ["clip11.mp4", "clip10.mp4", "clip09.mp4", "clip08.mp4", "clip07.mp4"]
        assert '<span class="badge badge-failed">failed</span>' in html and "broken file" in html
        assert '<span class="badge badge-queued">queued</span>' in html
        assert "Page 1 of 3" in visible_text(html.encode()) and 'href="/jobs?page=2"' in html
        assert 'rel="prev"' not in html
        page3 = client.get("/jobs?page=3").data.decode()
        assert re.findall(r">(clip\d\d\.mp4)</a>", page3) == ["clip01.mp4", "clip00.mp4"]
        assert 'rel="next"' not in page3 and 'href="/jobs?page=2"' in page3
        failed = client.get("/jobs?status=failed").data.decode()
        assert re.findall(r">(clip\d\d\.mp4)</a>", failed) == ["clip11.mp4"]
        assert client.get("/jobs?page=abc").status_code == 200
        for beyond in ("4", "99999999999999999999"):  # past the end, even past what the database can count
            r = client.get(f"/jobs?page={beyond}")
            assert r.status_code == 200
            assert "Page 3 of 3" in visible_text(r.data)
            assert re.findall(r">(clip\d\d\.mp4)</a>", r.data.decode()) == ["clip01.mp4", "clip00.mp4"]
    finally:
        dispose_engines()


def test_static_assets_are_local(client):
    for name in ("app.css", "job.js", "upload.js"):
        r = client.get(f"/static/{name}")
        assert r.status_code == 200 and len(r.data) > 200
        assert b"http://" not in r.data and b"https://" not in r.data


def test_generated_secret_key_is_never_replaced_once_handed_out(tmp_path, monkeypatch):
    """Gunicorn workers start together: one that checked for the key file just before another created it
    must read that key, not write its own (CSRF tokens would then fail at random between workers)."""
    from pathlib import Path

    from har.config import load_settings

    settings = load_settings(data_dir=str(tmp_path), secret_key="")
    first = settings.resolved_secret_key
    assert len(first) == 64 and (tmp_path / "secret_key").read_text() == first
    monkeypatch.setattr(Path, "exists", lambda self: False)  # the race: the file appears after the check
    assert settings.resolved_secret_key == first
    assert load_settings(data_dir=str(tmp_path), secret_key="").resolved_secret_key == first
    monkeypatch.undo()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["secret_key"]


# --------------------------------------------------------------------------- delete and run again


def action_forms(html: str) -> dict[str, str]:
    """action URL -> the form's HTML, for the POST forms on a page."""
    return {m.group(1): m.group(0) for m in re.finditer(r'<form method="post" action="([^"]+)".*?</form>', html, re.S)}


def test_finished_job_page_has_run_again_and_delete_forms_with_csrf(csrf_app, settings, clip):
    job_id = add_finished_job_with_files(settings, csrf_app, clip, params={"imgsz": 640})
    html = csrf_app.test_client().get(f"/jobs/{job_id}").data.decode()
    forms = action_forms(html)
    rerun, delete = forms[f"/jobs/{job_id}/rerun"], forms[f"/jobs/{job_id}/delete"]
    for form in (rerun, delete):
        assert re.search(r'name="csrf_token" type="hidden" value="[^"]+"', form)
    assert ">Run again</button>" in rerun and 'name="imgsz"' in rerun and 'placeholder="640"' in rerun
    assert ">Delete</button>" in delete and 'data-confirm="Delete this job' in delete
    assert "onsubmit" not in html and "and the uploaded video" in visible_text(html.encode())
    # the confirmation lives in the shipped script (the CSP allows no inline handlers)
    js = csrf_app.test_client().get("/static/job.js").data.decode()
    assert "form[data-confirm]" in js and "window.confirm" in js
    # a failed job has them too; a running one has neither
    failed = add_job(settings, status=FAILED, error="boom", name="f.mp4")
    assert f"/jobs/{failed}/delete" in action_forms(csrf_app.test_client().get(f"/jobs/{failed}").data.decode())
    running = add_job(settings, status="classifying", name="r.mp4")
    assert action_forms(csrf_app.test_client().get(f"/jobs/{running}").data.decode()) == {}


def test_job_page_without_stored_video_offers_no_run_again(client, settings):
    job_id = add_done_job(settings)  # no file behind its video row
    html = client.get(f"/jobs/{job_id}").data.decode()
    assert f"/jobs/{job_id}/rerun" not in action_forms(html) and f"/jobs/{job_id}/delete" in action_forms(html)
    assert "no longer stored" in visible_text(html.encode())


def test_delete_button_with_csrf(csrf_app, settings, clip):
    client = csrf_app.test_client()
    job_id = add_finished_job_with_files(settings, csrf_app, clip, name="gym.mp4")
    r = client.post(f"/jobs/{job_id}/delete")  # no token: refused, nothing deleted
    assert r.status_code == 400 and "form expired" in visible_text(r.data).lower()
    assert job_rows(settings, job_id)["jobs"] == 1

    token = csrf_token(client.get(f"/jobs/{job_id}").data)
    r = client.post(f"/jobs/{job_id}/delete", data={"csrf_token": token})
    assert r.status_code == 303 and r.headers["Location"] == "/jobs"
    assert set(job_rows(settings, job_id).values()) == {0} and stored_files(settings) == []
    text = visible_text(client.get("/jobs").data)
    assert "Deleted the job for “gym.mp4” and its files." in text
    assert client.get(f"/jobs/{job_id}").status_code == 404
    assert client.post(f"/jobs/{job_id}/delete", data={"csrf_token": token}).status_code == 404


def test_delete_button_refused_while_running(csrf_app, settings):
    client = csrf_app.test_client()
    job_id = add_job(settings, status="extracting")
    token = csrf_token(client.get("/").data)
    r = client.post(f"/jobs/{job_id}/delete", data={"csrf_token": token})
    assert r.status_code == 303 and r.headers["Location"] == f"/jobs/{job_id}"
    assert "wait for it to finish" in visible_text(client.get(r.headers["Location"]).data)
    assert job_rows(settings, job_id)["jobs"] == 1


def test_run_again_button_with_csrf(csrf_app, settings, enqueued, clip):
    client = csrf_app.test_client()
    old = add_finished_job_with_files(settings, csrf_app, clip)
    assert client.post(f"/jobs/{old}/rerun").status_code == 400 and enqueued == []

    token = csrf_token(client.get(f"/jobs/{old}").data)
    r = client.post(f"/jobs/{old}/rerun", data={"csrf_token": token, "imgsz": "320", "fps": "", "stride": ""})
    assert r.status_code == 303
    new = r.headers["Location"].rsplit("/", 1)[1]
    assert r.headers["Location"] == f"/jobs/{new}" and new != old and enqueued == [new]
    page = client.get(r.headers["Location"])
    assert "Started again as a new job" in visible_text(page.data) and 'data-final="false"' in page.data.decode()
    with session_scope(settings) as s:
        assert s.get(Job, new).params == {"imgsz": 320} and s.get(Job, new).video_id == s.get(Job, old).video_id

    # a bad value: back to the job page with the reason, no new job
    r = client.post(f"/jobs/{old}/rerun", data={"csrf_token": token, "imgsz": "333"})
    assert r.status_code == 303 and r.headers["Location"] == f"/jobs/{old}"
    assert "multiple of 32" in visible_text(client.get(f"/jobs/{old}").data) and enqueued == [new]


def test_job_page_and_report_show_each_persons_probability_plot(client, settings, app, clip):
    import xml.etree.ElementTree as ET

    from tests.test_plots import make_windows
    from tests.test_reports import sample_result, svg_end

    ns = {"svg": "http://www.w3.org/2000/svg"}
    # a finished job as the workers leave it (report files on disk): person 1 has one classified window,
    # person 4 none
    job_id = add_finished_job_with_files(settings, app, clip)
    html = client.get(f"/jobs/{job_id}").data.decode()
    assert html.count('class="prob-plot"') == 1 and html.count('class="tl-plot-row"') == 1
    start = html.index('<svg xmlns="http://www.w3.org/2000/svg" class="prob-plot"')
    plot = html[start:svg_end(html, start)]
    assert html.index('aria-label="Timeline of person 1"') < start < html.index('aria-label="Timeline of person 4"')
    root = ET.fromstring(plot)
    assert root.get("aria-label") == "Class probabilities of person 1 over time"
    assert root.find(".//svg:g[@data-class='BOXING']/svg:polyline", ns).get("points") == "0,3 145,3"
    assert not EXTERNAL.search(html)
    assert ".prob-plot" in client.get("/static/app.css").data.decode()
    # the stored report.html, written when the job finished, has the same plot
    assert plot in client.get(f"/api/jobs/{job_id}/report.html").data.decode()

    # both people with windows: a plot under each timeline, the lines through their probabilities
    result = sample_result()
    for i, person in enumerate(result["persons"]):
        person["windows"] = make_windows(12, start=person["start_s"], seed=i)
    job_id = add_job(settings, status="done", result=result, overall_label="BOXING", overall_confidence=0.934,
                     persons=2)
    html = client.get(f"/jobs/{job_id}").data.decode()
    assert html.count('class="prob-plot"') == 2
    for person in result["persons"]:
        start = html.rindex("<svg", 0, html.index(
            f'aria-label="Class probabilities of person {person["track_id"]} over time"'))
        root = ET.fromstring(html[start:svg_end(html, start)])
        line = root.find(".//svg:g[@data-class='JUMPING']/svg:polyline", ns)
        probs = [1 - float(xy.split(",")[1]) / 100 for xy in line.get("points").split()]
        assert probs == pytest.approx([w["probabilities"][0] for w in person["windows"]], abs=0.00051)

    # a job from before windows were stored: no plot on the page nor in its report
    for person in result["persons"]:
        del person["windows"]
    job_id = add_job(settings, status="done", result=result, overall_label="BOXING", overall_confidence=0.934,
                     persons=2)
    html = client.get(f"/jobs/{job_id}").data.decode()
    assert html.count('class="tl-track"') == 2 and 'class="prob-plot"' not in html
    report = client.get(f"/api/jobs/{job_id}/report.html").data.decode()
    assert report.count('aria-label="Timeline of person') == 2 and 'class="prob-plot"' not in report
