"""The pages in a real browser: uploads with their progress (file input and drop), the job page following a job to
done, the timeline seeking the annotated video, delete and re-run, the history's pages, the server's upload errors,
a phone-width layout, and no console errors anywhere. The jobs run on the real workers of the test stack."""
from __future__ import annotations

import base64
import os
import re
import signal
from contextlib import contextmanager
from datetime import datetime, timedelta, timezone

import pytest
from sqlalchemy import func, select

from har.db import DONE, Job, JobEvent
from tests.conftest import TEST_OWNER

try:
    from playwright.sync_api import expect
except ImportError:  # the `browser` fixture says why (a skip, or a failure under CI)
    expect = None

JOB_URL = re.compile(r"/jobs/([0-9a-f-]{36})$")
PIPELINE_TIMEOUT_MS = 240_000
TIMEOUT_MS = 30_000
PHONE = {"width": 390, "height": 844}
SEEK_TOLERANCE_S = 0.1

# Every state change of the upload bar and of the job page, across navigations, reported to the test.
RECORDER = """
(() => {
  let last = "";
  const snap = () => {
    const q = (s) => document.querySelector(s);
    const box = q("#upload-progress"), up = q("#upload-bar"), bar = q("#progressbar");
    const badge = q("#status-badge .badge"), job = q("#job"), cancel = q("#upload-cancel");
    return {
      path: location.pathname,
      upload_pct: box && !box.hidden && up ? Number(up.getAttribute("aria-valuenow")) : null,
      upload_text: q("#upload-status") ? q("#upload-status").textContent : null,
      cancel_shown: cancel ? cancel.offsetParent !== null : null,
      job_status: badge ? badge.textContent.trim() : null,
      job_final: job ? job.getAttribute("data-final") : null,
      job_pct: bar ? Number(bar.getAttribute("aria-valuenow")) : null,
    };
  };
  const report = () => {
    const s = snap(), key = JSON.stringify(s);
    if (key !== last) { last = key; window.harRecord(s); }
  };
  document.addEventListener("DOMContentLoaded", () => {
    report();
    new MutationObserver(report).observe(document.documentElement,
      { subtree: true, childList: true, attributes: true, characterData: true });
  });
})();
"""

DROP = """([b64, name, type]) => {
  const bytes = Uint8Array.from(atob(b64), (c) => c.charCodeAt(0));
  const dt = new DataTransfer();
  dt.items.add(new File([bytes], name, { type }));
  const zone = document.getElementById("drop");
  const fire = (kind) => zone.dispatchEvent(new DragEvent(kind, { bubbles: true, cancelable: true, dataTransfer: dt }));
  fire("dragenter"); fire("dragover");
  const highlighted = zone.classList.contains("over");
  fire("drop");
  return { highlighted, after: zone.classList.contains("over") };
}"""


# ------------------------------------------------------------------------------------ helpers
def record_states(ui) -> list[dict]:
    states: list[dict] = []
    ui.page.expose_function("harRecord", lambda state: states.append(state))
    ui.page.add_init_script(RECORDER)
    return states


def upload_speed(page, bytes_per_s: int) -> None:
    """Limit the tab's upload speed (Chrome's network emulation), so an upload's progress can be watched."""
    cdp = getattr(page, "har_devtools", None)  # one DevTools session per tab
    if cdp is None:
        cdp = page.har_devtools = page.context.new_cdp_session(page)
        cdp.send("Network.enable")
    cdp.send("Network.emulateNetworkConditions",
             {"offline": False, "latency": 0, "downloadThroughput": -1, "uploadThroughput": bytes_per_s})


@contextmanager
def paused_worker(stack, queue: str):
    """Stop a worker's processes (SIGSTOP) and let them go on afterwards: a job waits at that stage meanwhile."""
    pgid = stack.workers[queue].pid
    os.killpg(pgid, signal.SIGSTOP)
    try:
        yield
    finally:
        os.killpg(pgid, signal.SIGCONT)


def job_ids(stack) -> set[str]:
    with stack.session() as s:
        return set(s.scalars(select(Job.id)))


def get_job(stack, job_id):
    with stack.session() as s:
        job = s.get(Job, job_id)
        if job is None:
            return None
        return {"status": job.status, "params": dict(job.params or {}), "video_id": job.video_id,
                "filename": job.video.original_filename if job.video else None, "result": job.result}


def upload_runs(states) -> list[list[dict]]:
    """The upload page's states while its progress bar was shown, one list per upload sent."""
    runs: list[list[dict]] = []
    shown = False
    for s in states:
        if s["path"] == "/" and s["upload_pct"] is not None:
            if not shown:
                runs.append([])
            runs[-1].append(s)
        shown = s["path"] == "/" and s["upload_pct"] is not None
    return runs


def job_states(states, job_id) -> list[dict]:
    return [s for s in states if s["path"] == f"/jobs/{job_id}"]


def assert_upload_progress_shown(run: list[dict], size: int) -> None:
    """One upload's states: percent rising to 100, with "<sent> of <total> sent · <percent> %" on the way."""
    pcts = [s["upload_pct"] for s in run]
    assert pcts == sorted(pcts), f"upload progress went backwards: {pcts}"
    assert any(0 < p < 100 for p in pcts), f"no progress shown between 0 and 100 %: {pcts}"
    assert pcts[-1] == 100, pcts
    texts = [s["upload_text"] for s in run if s["upload_text"]]
    shown = re.compile(r"[\d.]+ (B|KB|MB) of [\d.]+ (B|KB|MB) sent · (\d+) %")
    partial = [t for t in texts if (m := shown.fullmatch(t)) and 0 < int(m.group(3)) < 100]
    assert partial, f"no 'sent of total · percent' line while uploading: {texts}"
    total = f"{size / 1024:.1f} KB" if size < 1048576 else f"{size / 1048576:.1f} MB"
    assert all(t.split(" of ")[1].startswith(total) for t in partial), (total, partial)
    # Cancel while sending; once all is sent the server checks the video, and Cancel goes away
    assert all(s["cancel_shown"] for s in run if s["upload_text"] in partial), run
    checking = [s for s in run if s["upload_text"] == f"{total} sent · 100 % · checking the video…"]
    assert checking and not any(s["cancel_shown"] for s in checking), run


def wait_until_done(ui, job_id: str) -> None:
    """The job page follows the job by itself (job.js) and shows it done."""
    page = ui.page
    expect(page.locator("#job")).to_have_attribute("data-final", "true", timeout=PIPELINE_TIMEOUT_MS)
    expect(page.locator("#status-badge .badge")).to_have_text("done")
    assert get_job(ui.server.stack, job_id)["status"] == DONE


def wait_for_player(page) -> None:
    """The annotated video renders after the job is done; the page puts the player in when it is ready."""
    expect(page.locator("#player")).to_be_attached(timeout=PIPELINE_TIMEOUT_MS)
    page.wait_for_function("() => document.getElementById('player').readyState >= 1", timeout=TIMEOUT_MS)


def page_widths(page) -> tuple[int, int]:
    return page.evaluate("() => [document.documentElement.scrollWidth, document.documentElement.clientWidth]")


# ------------------------------------------------------------------------------------ fixtures
@pytest.fixture(scope="module")
def finished_job(live_server, people_video) -> str:
    """A job for the two-person clip, done, with its annotated video rendered (uploaded through the API)."""
    stack = live_server.stack
    job_id = stack.upload(people_video)
    assert stack.wait_final(job_id)["status"] == DONE
    assert stack.wait_video(job_id)["annotated_video"]["status"] == "ready"
    return job_id


@pytest.fixture(scope="module")
def limited_server(tmp_path_factory, http_server):
    """A second app: uploads limited to 1 MB and a Redis that does not answer (port 1), so uploads get 413 / 503."""
    from har.config import load_settings
    from har.database import upgrade_database
    from web import create_app

    base = tmp_path_factory.mktemp("limited")
    settings = load_settings(data_dir=str(base / "data"), database_url=f"sqlite:///{base / 'har.sqlite3'}",
                             redis_url="redis://127.0.0.1:1/0", secret_key="test-secret", max_upload_mb=1,
                             task_always_eager=False)
    upgrade_database(settings.resolved_database_url)
    server = http_server(create_app(settings), "limited")
    server.settings = settings
    return server


# ------------------------------------------------------------------------------------ uploads
def test_upload_with_the_file_input_progress_cancel_then_job_to_done(ui, people_video):
    """Choose a file, send it slowly: bytes / total and percent climb; Cancel aborts and nothing is created; sent
    again, the upload hands over to the job page, whose own bar follows the job (held at classifying by pausing
    that worker, so the running page is seen for sure) to done."""
    stack, page = ui.server.stack, ui.page
    states = record_states(ui)
    size = people_video.stat().st_size
    ui.goto("/")
    expect(page.locator("#upload-progress")).to_be_hidden()
    page.set_input_files("#video", people_video)
    expect(page.locator("#file-name")).to_contain_text(people_video.name)
    ui.screenshot("upload.png")

    # slow enough to cancel half-way
    upload_speed(page, max(4096, size // 20))
    before = job_ids(stack)
    page.click("#submit")
    expect(page.locator("#upload-progress")).to_be_visible()
    expect(page.locator("#submit")).to_be_disabled()
    page.wait_for_function("() => +document.getElementById('upload-bar').getAttribute('aria-valuenow') >= 5")
    expect(page.locator("#upload-status")).to_contain_text(" sent · ")
    page.click("#upload-cancel")
    expect(page.locator("#upload-error")).to_contain_text("Upload cancelled")
    expect(page.locator("#upload-progress")).to_be_hidden()
    expect(page.locator("#submit")).to_be_enabled()
    expect(page.locator("#file-name")).to_contain_text(people_video.name)  # the file is still chosen
    assert page.url == ui.url("/")
    cancelled = upload_runs(states)
    assert len(cancelled) == 1 and 0 < max(s["upload_pct"] for s in cancelled[0]) < 100, cancelled

    # sent again (about 3 s), with the classify worker paused so the job stops at "classifying"
    upload_speed(page, max(4096, size // 3))
    with paused_worker(stack, stack.settings.classify_queue):
        page.click("#submit")
        expect(page.locator("#upload-error")).to_be_hidden()
        page.wait_for_function("() => +document.getElementById('upload-bar').getAttribute('aria-valuenow') > 0")
        ui.screenshot("upload-progress.png")
        page.wait_for_url(JOB_URL, timeout=PIPELINE_TIMEOUT_MS)
        job_id = JOB_URL.search(page.url).group(1)
        assert job_ids(stack) - before == {job_id}, "the cancelled upload must not have created a job"
        expect(page.locator("#progressbar")).to_be_visible()
        expect(page.locator("#status-badge .badge")).to_have_text("classifying", timeout=PIPELINE_TIMEOUT_MS)
        expect(page.locator("#progressbar")).to_have_attribute("aria-valuenow", "90")
        expect(page.locator("#frames")).to_contain_text(" frames")
        ui.screenshot("job-running.png")
    wait_until_done(ui, job_id)
    expect(page.locator("#progressbar")).to_have_count(0)
    expect(page.locator("#results-title")).to_be_visible()

    runs = upload_runs(states)
    assert len(runs) == 2, runs
    assert_upload_progress_shown(runs[1], size)
    seen = job_states(states, job_id)
    pcts = [s["job_pct"] for s in seen if s["job_pct"] is not None]
    assert pcts and pcts == sorted(pcts) and 90 in pcts, f"job progress: {pcts}"
    assert seen[0]["job_final"] == "false" and seen[-1]["job_status"] == "done", seen
    assert get_job(stack, job_id)["filename"] == people_video.name


def test_upload_by_drag_and_drop_with_settings(ui, people_video):
    """A file dropped on the zone (a DragEvent carrying a DataTransfer made in the page) is sent the same way,
    with the advanced settings of the form."""
    stack, page = ui.server.stack, ui.page
    states = record_states(ui)
    ui.goto("/")
    data = people_video.read_bytes()
    drag = page.evaluate(DROP, [base64.b64encode(data).decode(), "dropped clip.mp4", "video/mp4"])
    assert drag == {"highlighted": True, "after": False}
    expect(page.locator("#file-name")).to_contain_text("dropped clip.mp4")
    page.click(".advanced summary")
    page.fill("input[name=stride]", "4")
    upload_speed(page, max(4096, len(data) // 2))
    page.click("#submit")
    page.wait_for_url(JOB_URL, timeout=PIPELINE_TIMEOUT_MS)
    job_id = JOB_URL.search(page.url).group(1)
    job = get_job(stack, job_id)
    assert job["filename"] == "dropped clip.mp4" and job["params"] == {"stride": 4}
    with stack.session() as s:
        assert s.get(Job, job_id).video.size_bytes == len(data)
    assert len(upload_runs(states)) == 1
    assert_upload_progress_shown(upload_runs(states)[0], len(data))
    wait_until_done(ui, job_id)


@pytest.mark.parametrize("name,data,status,words", [
    ("notes.mp4", b"plain text, not a video\n" * 40, 422, "“notes.mp4” cannot be read as a video"),
    ("notes.txt", b"plain text\n", 415, ".txt is not supported. Upload one of: .avi, .mkv, .mov, .mp4, .webm."),
    ("empty.mp4", b"", 400, "“empty.mp4” is empty (0 bytes)."),
], ids=["not-a-video", "extension", "empty"])
def test_a_refused_upload_shows_the_servers_reason(ui, name, data, status, words):
    stack, page = ui.server.stack, ui.page
    ui.allow_console(rf"status of {status}\b")  # Chromium notes every 4xx answer
    ui.goto("/")
    before = job_ids(stack)
    page.set_input_files("#video", files=[{"name": name, "mimeType": "video/mp4", "buffer": data}])
    page.click(".advanced summary")
    page.fill("input[name=imgsz]", "320")
    with page.expect_response(lambda r: r.request.method == "POST") as answer:
        page.click("#submit")
    assert answer.value.status == status
    error = page.locator("#upload-error")
    expect(error).to_be_visible()
    expect(error).to_contain_text(words)
    expect(error).to_be_focused()
    # nothing lost: same page, the file and the settings still there, ready to send again
    assert page.url == ui.url("/")
    expect(page.locator("#file-name")).to_contain_text(name)
    expect(page.locator("input[name=imgsz]")).to_have_value("320")
    expect(page.locator("#submit")).to_be_enabled()
    expect(page.locator("#upload-progress")).to_be_hidden()
    assert job_ids(stack) == before
    if status == 422:
        ui.screenshot("upload-error.png")


def test_without_javascript_the_form_posts_as_before(open_ui, live_server, people_video):
    """No script: the plain form post answers with the form and the reason, or the job page."""
    ui = open_ui(live_server, java_script_enabled=False)
    page, stack = ui.page, live_server.stack
    ui.allow_console(r"status of 415\b")
    ui.goto("/")
    page.set_input_files("#video", files=[{"name": "notes.txt", "mimeType": "text/plain", "buffer": b"text"}])
    with page.expect_navigation():
        page.click("#submit")
    expect(page.get_by_role("alert").first).to_contain_text(".txt is not supported")
    expect(page.locator("#upload-error")).to_be_hidden()
    page.set_input_files("#video", people_video)
    with page.expect_navigation():
        page.click("#submit")
    assert JOB_URL.search(page.url), page.url
    job_id = JOB_URL.search(page.url).group(1)
    expect(page.locator("noscript")).to_have_count(1)
    assert get_job(stack, job_id)["filename"] == people_video.name
    assert stack.wait_final(job_id)["status"] == DONE


def test_an_expired_form_says_so(ui, people_video):
    """The form's CSRF token is checked for uploads sent by the page too; the error page's reason is shown."""
    page = ui.page
    ui.allow_console(r"status of 400\b")
    ui.goto("/")
    before = job_ids(ui.server.stack)
    page.set_input_files("#video", people_video)
    page.eval_on_selector("input[name=csrf_token]", "el => { el.value = 'expired'; }")
    page.click("#submit")
    expect(page.locator("#upload-error")).to_contain_text(
        "Form expired: The form expired or was not sent from this site. Reload the page and try again.")
    assert job_ids(ui.server.stack) == before


def test_size_limit_and_unavailable_queue(open_ui, limited_server, people_video, tmp_path):
    """413 (checked in the page before sending, and by the server) and 503 (Redis down: the job is recorded as failed,
    its page is linked)."""
    assert people_video.stat().st_size < 1024 * 1024
    ui = open_ui(limited_server)
    page = ui.page
    ui.allow_console(r"status of (413|503)\b")
    posts = []
    page.on("request", lambda r: posts.append(r.url) if r.method == "POST" else None)
    ui.goto("/")
    big = tmp_path / "big.mp4"
    big.write_bytes(people_video.read_bytes() + b"\0" * (1024 * 1024))
    page.set_input_files("#video", big)
    page.click("#submit")
    limit = "The file is too large: uploads are limited to 1 MB."
    expect(page.locator("#upload-error")).to_have_text(limit)
    assert posts == []  # refused before sending

    page.eval_on_selector("#upload-form", "f => f.removeAttribute('data-max-bytes')")  # the server's own check
    page.click("#submit")
    expect(page.locator("#upload-error")).to_contain_text(limit)
    assert len(posts) == 1

    page.set_input_files("#video", people_video)
    page.click("#submit")
    error = page.locator("#upload-error")
    expect(error).to_contain_text("The job could not be queued: the processing service is unavailable. "
                                  "Please try again later.", timeout=PIPELINE_TIMEOUT_MS)
    error.get_by_role("link", name="See the failed job’s page").click()
    page.wait_for_url(JOB_URL)
    expect(page.locator("#failure")).to_contain_text("processing service is unavailable")
    expect(page.locator("#status-badge .badge")).to_have_text("failed")


# ------------------------------------------------------------------------------------ the job page
def test_timeline_per_person_and_segments_seek_the_video(ui, finished_job):
    stack, page = ui.server.stack, ui.page
    result = get_job(stack, finished_job)["result"]
    persons = result["persons"]
    assert persons, "the clip has people: the timeline needs them"
    ui.goto(f"/jobs/{finished_job}")
    rows = page.locator("#timeline .tl-row")
    expect(rows).to_have_count(len(persons))
    for i, person in enumerate(persons):
        expect(rows.nth(i).locator(".tl-name")).to_have_text(f"Person {person['track_id']}")
        expect(rows.nth(i).locator(".tl-seg")).to_have_count(len(person["segments"]))
        expect(page.locator(".person-card h3").nth(i)).to_have_text(f"Person {person['track_id']}")
    wait_for_player(page)
    duration = page.evaluate("() => document.getElementById('player').duration")
    assert duration > 1.0

    segments = page.locator("#timeline .tl-seg")
    assert segments.count() == sum(len(p["segments"]) for p in persons) > 0
    for i in range(segments.count()):
        seg = segments.nth(i)
        start = float(seg.get_attribute("data-start"))
        away = start + 1.0 if start + 1.0 < duration - 0.1 else max(0.0, start - 1.0)
        # move away first, so the click has to move the video
        page.evaluate("""(t) => new Promise((done) => {
            const v = document.getElementById('player'); v.pause();
            v.addEventListener('seeked', () => done(), { once: true }); v.currentTime = t; })""", away)
        page.evaluate("""() => { const v = document.getElementById('player'); window.harSeeked = null;
            v.addEventListener('seeked', () => { window.harSeeked = v.currentTime; v.pause(); }, { once: true }); }""")
        seg.click()
        page.wait_for_function("() => window.harSeeked !== null", timeout=10_000)
        at = page.evaluate("() => window.harSeeked")
        assert abs(at - start) <= SEEK_TOLERANCE_S, f"segment {i} starts at {start} s, the video went to {at} s"
    expect(page.locator(".tl-playhead").first).to_be_visible()
    # the frame at the last segment's start is decoded and shown (the browser plays the annotated video)
    page.wait_for_function("() => document.getElementById('player').readyState >= 2")
    ui.screenshot("job-done.png")


def test_rerun_then_delete_from_the_job_page(ui, finished_job):
    """Both buttons post their form with its CSRF token; a form without a valid token is refused."""
    stack, page = ui.server.stack, ui.page
    ui.goto(f"/jobs/{finished_job}")
    page.click(".job-actions .advanced summary")
    page.fill("#rerun-form input[name=stride]", "16")
    page.get_by_role("button", name="Run again").click()
    page.wait_for_url(JOB_URL)
    new_id = JOB_URL.search(page.url).group(1)
    assert new_id != finished_job
    expect(page.get_by_role("alert").first).to_contain_text("Started again as a new job")
    old, new = get_job(stack, finished_job), get_job(stack, new_id)
    assert new["video_id"] == old["video_id"] and new["params"]["stride"] == 16
    wait_until_done(ui, new_id)
    wait_for_player(page)

    # a delete without a valid token is refused and changes nothing
    ui.allow_console(r"status of 400\b")
    page.eval_on_selector("#delete-form input[name=csrf_token]", "el => { el.value = 'forged'; }")
    page.once("dialog", lambda d: d.accept())
    with page.expect_navigation():
        page.locator("#delete-form button").click()
    expect(page.locator("h1")).to_have_text("Form expired")
    assert get_job(stack, new_id) is not None

    ui.goto(f"/jobs/{new_id}")
    page.once("dialog", lambda d: d.dismiss())  # asked first: "no" keeps it
    page.locator("#delete-form button").click()
    assert page.url == ui.url(f"/jobs/{new_id}") and get_job(stack, new_id) is not None
    page.once("dialog", lambda d: d.accept())
    page.locator("#delete-form button").click()
    page.wait_for_url(ui.url("/jobs"))
    expect(page.get_by_role("alert").first).to_contain_text("Deleted the job for “people.mp4” and its files.")
    assert get_job(stack, new_id) is None
    assert get_job(stack, finished_job)["status"] == DONE  # the first run and the shared video stay
    expect(page.locator(f"a[href='/jobs/{new_id}']")).to_have_count(0)


# ------------------------------------------------------------------------------------ history
@pytest.fixture
def many_jobs(live_server):
    """Finished jobs written straight into the database (no pipeline), older than the others; removed after."""
    stack = live_server.stack
    n = 2 * stack.settings.jobs_per_page + 3
    t0 = datetime.now(timezone.utc) - timedelta(days=1)
    ids = []
    with stack.session() as s:
        from har.db import Video

        for i in range(n):
            at = t0 - timedelta(minutes=i)
            video = Video(path=f"uploads/paged-{i:02d}.mp4", original_filename=f"paged-{i:02d}.mp4", sha256="e" * 64,
                          size_bytes=1000, container="mp4", codec="mp4v", duration_s=4.0, fps=25.0, frame_count=100,
                          width=640, height=360, rotation_deg=0)
            job = Job(video=video, status=DONE, stage=DONE, created_at=at, updated_at=at, frames_total=44,
                      owner=TEST_OWNER,  # the browser's (its identity cookie: tests/browser/conftest.py)
                      frames_done=44, params={}, timings={}, persons=0, overall_label="no_person",
                      result={"status": "no_person", "persons": [], "short_tracks": []})
            s.add(job)
            s.flush()
            s.add(JobEvent(job_id=job.id, status=DONE, message="done", at=at))
            ids.append(job.id)
    yield ids
    with stack.session() as s:
        for job_id in ids:
            job = s.get(Job, job_id)
            if job is not None:
                video = job.video
                s.delete(job)
                s.flush()
                s.delete(video)


def test_history_pages(ui, many_jobs):
    stack, page = ui.server.stack, ui.page
    per_page = stack.settings.jobs_per_page
    with stack.session() as s:  # the history is the browser's own jobs
        total = s.scalar(select(func.count()).select_from(Job).where(Job.owner == TEST_OWNER))
    pages = -(-total // per_page)
    assert pages >= 3
    ui.goto("/jobs")
    seen: list[list[str]] = []
    for number in range(1, pages + 1):
        expect(page.locator(".pager")).to_contain_text(f"Page {number} of {pages} · {total} jobs")
        links = page.locator("table.jobs tbody tr td:first-child a")
        expect(links).to_have_count(per_page if number < pages else total - per_page * (pages - 1))
        seen.append([h.split("/")[-1] for h in links.evaluate_all("els => els.map(e => e.getAttribute('href'))")])
        if number == 1:
            ui.screenshot("jobs.png")
            expect(page.locator("a[rel=prev]")).to_have_count(0)
        if number < pages:
            page.click("a[rel=next]")
            page.wait_for_url(re.compile(rf"/jobs\?page={number + 1}$"))
    expect(page.locator("a[rel=next]")).to_have_count(0)
    listed = [job_id for ids in seen for job_id in ids]
    assert len(listed) == len(set(listed)) == total, "every job once across the pages"
    assert listed[-len(many_jobs):] == many_jobs, "newest first: the old jobs come last, in order"
    page.click("a[rel=prev]")
    page.wait_for_url(re.compile(rf"/jobs\?page={pages - 1}$"))
    expect(page.locator(".pager")).to_contain_text(f"Page {pages - 1} of {pages}")


# ------------------------------------------------------------------------------------ phone width
def test_phone_width_has_no_horizontal_scrolling(open_ui, live_server, finished_job):
    ui = open_ui(live_server, viewport=PHONE, device_scale_factor=2, is_mobile=True, has_touch=True)
    page = ui.page
    for path, shot in (("/", "phone-upload.png"), ("/jobs", "phone-jobs.png"),
                       (f"/jobs/{finished_job}", "phone-job-done.png")):
        ui.goto(path)
        if path == f"/jobs/{finished_job}":
            wait_for_player(page)
        width, client = page_widths(page)
        assert width <= client, f"{path} scrolls sideways at {PHONE['width']} px: {width} > {client}"
        ui.screenshot(shot)
    # the upload page while a file is on its way
    ui.goto("/")
    long_name = "VID_" + "20240101120000" * 5 + ".mp4"  # nowhere to break the line
    page.set_input_files("#video", files=[{"name": long_name, "mimeType": "video/mp4", "buffer": b"\0" * 200_000}])
    upload_speed(page, 4096)
    page.click("#submit")
    page.wait_for_function("() => +document.getElementById('upload-bar').getAttribute('aria-valuenow') > 0")
    width, client = page_widths(page)
    assert width <= client, f"the upload progress scrolls sideways: {width} > {client}"
    ui.screenshot("phone-upload-progress.png")
    page.click("#upload-cancel")
    expect(page.locator("#upload-error")).to_contain_text("Upload cancelled")


# ------------------------------------------------------------------------------------ who sees what
def test_a_new_browser_gets_its_own_identity_and_cannot_manage_others_jobs(open_ui, live_server, finished_job):
    """A browser the service has not seen gets a signed identity cookie with its first page; another browser's job
    is not in its history, but its link works: the results, without the delete and re-run buttons."""
    ui = open_ui(live_server, identity=None)
    page = ui.page
    ui.goto("/")
    cookie = next(c for c in page.context.cookies() if c["name"] == "har_identity")
    assert cookie["httpOnly"] and cookie["sameSite"] == "Lax" and not cookie["secure"]
    assert cookie["expires"] > datetime.now(timezone.utc).timestamp() + 300 * 86400  # long-lived
    ui.goto("/jobs")
    expect(page.locator(".panel")).to_contain_text("No jobs yet.")
    expect(page.locator(f"a[href='/jobs/{finished_job}']")).to_have_count(0)
    ui.goto(f"/jobs/{finished_job}")
    expect(page.locator("#status-badge .badge")).to_have_text("done")
    expect(page.locator("#timeline .tl-row").first).to_be_visible()
    expect(page.locator("#not-owner")).to_contain_text("Only whoever submitted this job can delete it")
    expect(page.locator("#delete-form")).to_have_count(0)
    expect(page.locator("#rerun-form")).to_have_count(0)
    wait_for_player(page)
    # the same identity on the next visit: still not the owner, still nobody else's jobs listed
    ui.goto("/jobs")
    assert [c["value"] for c in page.context.cookies() if c["name"] == "har_identity"] == [cookie["value"]]


def test_the_content_security_policy_holds_on_every_page(ui, finished_job):
    """The pages (and the HTML report) load under their Content-Security-Policy with no violation (each would be a
    console error, which fails the test), and the browser does enforce it: an inline script or style is refused."""
    page = ui.page
    for path in ("/", "/jobs", f"/jobs/{finished_job}", "/token", "/api/docs",
                 f"/api/jobs/{finished_job}/report.html"):
        resp = ui.goto(path)
        policy = resp.header_value("content-security-policy") or ""
        assert "frame-ancestors 'none'" in policy and "unsafe-eval" not in policy, (path, policy)
        assert ("sandbox" in policy) == path.endswith("report.html"), (path, policy)
        if path == f"/jobs/{finished_job}":
            wait_for_player(page)
            page.locator("#timeline .tl-seg").first.click()  # the page's own script runs
    ui.check_console()

    ui.goto("/")
    ui.allow_console(r"Content Security Policy")
    before = len(ui.errors)
    ran = page.evaluate("""() => {
        window.harInline = false;
        const s = document.createElement('script');
        s.textContent = 'window.harInline = true';
        document.head.append(s);
        const st = document.createElement('style');
        st.textContent = 'body { margin-top: 77px }';
        document.head.append(st);
        return [window.harInline, getComputedStyle(document.body).marginTop === '77px'];
    }""")
    assert ran == [False, False], ran
    for _ in range(50):
        if len(ui.errors) >= before + 2:
            break
        page.wait_for_timeout(100)  # lets the console events through
    refused = [e for e in ui.errors[before:] if "Content Security Policy" in e]
    assert any("script" in e for e in refused) and any("style" in e for e in refused), ui.errors[before:]


def test_no_console_errors_are_tolerated(open_ui, live_server):
    """The watch itself: an error in the page is caught (so the other tests' silence means something)."""
    ui = open_ui(live_server)
    ui.goto("/")
    ui.page.evaluate("() => { console.error('boom'); setTimeout(() => { throw new Error('uncaught'); }); }")
    for _ in range(100):
        if len(ui.errors) >= 2:
            break
        ui.page.wait_for_timeout(100)  # lets the page's events through
    assert any("boom" in e for e in ui.errors) and any("uncaught" in e for e in ui.errors)
    ui.allow_console("boom|uncaught")
