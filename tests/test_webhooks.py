"""Webhooks (har/webhooks.py, worker/webhooks.py): signed deliveries to a real HTTP receiver on a free port, retries
with backoff, giving up, refused addresses, the delivery log and "send again" in the API and on the job page, the
job key of an anonymous submission; and end to end with the real workers: job.done, then video.ready."""
from __future__ import annotations

import dataclasses
import json

import pytest

from har import webhooks
from har.database import dispose_engines, session_scope
from har.db import DONE, FAILED, RENDERING, REPORTING, Job, WebhookDelivery
from har.jobs import set_status
from tests.conftest import wait_for
from tests.test_web_api import add_job, make_app, make_settings, upload
from tests.webhook_receiver import Receiver
from worker import webhooks as worker_webhooks


@pytest.fixture
def receiver():
    with Receiver() as r:
        yield r


@pytest.fixture
def published(monkeypatch):
    """The deliveries' task messages, recorded instead of sent to a broker (these tests run the task's function
    themselves)."""
    sent: list[tuple[int, float | None]] = []
    monkeypatch.setattr(webhooks, "publish", lambda settings, delivery_id, countdown=None:
                        sent.append((delivery_id, countdown)) or True)
    return sent


def hook_settings(tmp_path, **overrides):
    from har.database import upgrade_database

    base = dict(webhook_allow_private=True, webhook_retry_base_s=0.2, webhook_retry_max_s=5.0,
                webhook_connect_timeout_s=2.0, webhook_read_timeout_s=2.0)
    base.update(overrides)
    settings = make_settings(tmp_path, **base)
    upgrade_database(settings)
    return settings


@pytest.fixture
def settings(tmp_path):
    yield hook_settings(tmp_path)
    dispose_engines()


def job_with_hook(settings, url: str, status=REPORTING, **fields) -> tuple[str, str]:
    """A job with a callback URL and its own key; (job id, key)."""
    key = webhooks.new_job_key()
    job_id = add_job(settings, status=status, callback_url=url, job_key=key, public_url="http://har.test", **fields)
    return job_id, key


def end_job(settings, job_id: str, status: str = DONE, message: str | None = None) -> int:
    """Move the job to ``status`` as a worker would (its webhook is recorded then); the delivery id."""
    with session_scope(settings) as s:
        set_status(s, s.get(Job, job_id), status, message)
    with session_scope(settings) as s:
        return max(d.id for d in s.get(Job, job_id).webhook_deliveries)


def delivery(settings, delivery_id: int) -> WebhookDelivery:
    with session_scope(settings) as s:
        d = s.get(WebhookDelivery, delivery_id)
        s.expunge(d)
        return d


def deliver_until_settled(settings, delivery_id: int, max_attempts: int = 10) -> WebhookDelivery:
    """Run the task's function each time the delivery is due, until it is delivered or failed."""
    for _ in range(max_attempts):
        state = wait_for(lambda: worker_webhooks.deliver(settings, delivery_id), 30, "the delivery to be due",
                         interval=0.05)
        if state != webhooks.PENDING:
            break
    return delivery(settings, delivery_id)


# ------------------------------------------------------------------------------------------ signing
def test_signature_verifies_and_refuses_tampering_and_replays():
    body = b'{"event":"job.done"}'
    header = webhooks.sign("whsec_abc", body, timestamp=1_700_000_000)
    assert header.startswith("t=1700000000,v1=")
    assert webhooks.verify_signature("whsec_abc", body, header, now=1_700_000_010)
    assert not webhooks.verify_signature("whsec_abc", body + b" ", header, now=1_700_000_010)  # body changed
    assert not webhooks.verify_signature("whsec_other", body, header, now=1_700_000_010)  # another secret
    assert not webhooks.verify_signature("whsec_abc", body, header, now=1_700_000_000 + 3600)  # replayed later
    assert not webhooks.verify_signature("whsec_abc", body, "v1=" + header.split("v1=")[1], now=1_700_000_010)


@pytest.mark.parametrize("url, why", [
    ("ftp://example.com/hook", "http"),
    ("file:///etc/passwd", "http"),
    ("http://127.0.0.1:8000/hook", "loopback"),
    ("http://localhost:8000/hook", "loopback"),
    ("http://[::1]/hook", "loopback"),
    ("http://10.1.2.3/hook", "private"),
    ("http://192.168.1.20/hook", "private"),
    ("http://[::ffff:10.0.0.1]/hook", "private"),
    ("http://169.254.169.254/latest/meta-data/", "metadata"),
    ("http://0.0.0.0/hook", "not a host"),
])
def test_unsafe_callback_urls_are_refused(url, why):
    with pytest.raises(webhooks.UnsafeURL, match=why):
        webhooks.check_url(url)


def test_private_addresses_are_allowed_only_when_configured_metadata_never():
    assert webhooks.check_url("http://93.184.216.34/hook") == "http://93.184.216.34/hook"  # a public address
    assert webhooks.check_url(" http://127.0.0.1:9/hook ", allow_private=True) == "http://127.0.0.1:9/hook"
    assert webhooks.check_url("http://10.1.2.3/hook", allow_private=True)
    with pytest.raises(webhooks.UnsafeURL, match="metadata"):
        webhooks.check_url("http://169.254.169.254/", allow_private=True)


# ------------------------------------------------------------------------------- delivery (one task)
def test_a_delivery_is_signed_with_the_job_key_and_carries_the_result(settings, receiver, published):
    job_id, key = job_with_hook(settings, receiver.url("/in?x=1"), overall_label="BOXING", overall_confidence=0.9,
                                persons=1, result={"persons": [{"track_id": 1, "label": "BOXING", "confidence": 0.9}]})
    delivery_id = end_job(settings, job_id, DONE)
    assert published == [(delivery_id, None)]  # its task was sent once the state change was committed
    assert worker_webhooks.deliver(settings, delivery_id) == webhooks.DELIVERED
    (got,) = receiver.received
    assert got.path == "/in?x=1"
    assert webhooks.verify_signature(key, got.body, got.headers["Har-Signature"])
    assert got.headers["Har-Event"] == "job.done" and got.headers["Har-Job"] == job_id
    doc = got.json
    assert doc["event"] == "job.done" and doc["job"]["id"] == job_id and doc["job"]["status"] == "done"
    assert doc["summary"]["overall_label"] == "BOXING" and doc["summary"]["people"][0]["label"] == "BOXING"
    assert doc["links"]["self"] == f"http://har.test/api/jobs/{job_id}"
    assert doc["links"]["report_json"] == f"http://har.test/api/jobs/{job_id}/report.json"
    d = delivery(settings, delivery_id)
    assert d.status == "delivered" and d.attempts == 1 and d.last_status_code == 200
    assert d.response_excerpt == '{"ok": true}'
    # a second message for the same delivery (a duplicate) sends nothing
    assert worker_webhooks.deliver(settings, delivery_id) is None and len(receiver.received) == 1


def test_failed_attempts_are_retried_with_exponential_backoff(settings, receiver, published):
    receiver.statuses = [500, 503, 200]
    job_id, key = job_with_hook(settings, receiver.url())
    delivery_id = end_job(settings, job_id, FAILED, "the video could not be read")
    d = deliver_until_settled(settings, delivery_id)
    assert d.status == "delivered" and d.attempts == 3
    assert [a["status_code"] for a in d.attempt_log] == [500, 503, 200]
    assert [a["retry_in_s"] for a in d.attempt_log] == [0.2, 0.4, None]  # doubled after each failure
    # the retries were queued with those countdowns, and every attempt sent the same signed body
    assert published == [(delivery_id, None), (delivery_id, 0.2), (delivery_id, 0.4)]
    bodies = {r.body for r in receiver.received}
    assert len(bodies) == 1 and json.loads(bodies.pop())["job"]["error"] == "the video could not be read"
    assert all(webhooks.verify_signature(key, r.body, r.headers["Har-Signature"]) for r in receiver.received)


def test_a_delivery_gives_up_after_the_retry_window(tmp_path, receiver, published):
    settings = hook_settings(tmp_path, webhook_retry_base_s=0.1, webhook_give_up_s=0.5)
    receiver.default = 502
    job_id, _ = job_with_hook(settings, receiver.url())
    delivery_id = end_job(settings, job_id, DONE)
    d = deliver_until_settled(settings, delivery_id)
    assert d.status == "failed" and d.attempts == len(receiver.received) >= 2
    assert "gave up" in d.last_error and d.attempt_log[-1]["retry_in_s"] is None
    waits = [a["retry_in_s"] for a in d.attempt_log[:-1]]
    assert waits == [0.1 * 2 ** i for i in range(len(waits))]
    assert worker_webhooks.deliver(settings, delivery_id) is None  # given up: never sent again
    dispose_engines()


def test_a_timeout_is_retried_and_a_4xx_or_redirect_is_not(settings, receiver, published):
    slow = Receiver(delay_s=1.5)
    try:
        fast_settings = dataclasses.replace(settings, webhook_read_timeout_s=0.3)
        job_id, _ = job_with_hook(settings, slow.url())
        delivery_id = end_job(settings, job_id, DONE)
        assert worker_webhooks.deliver(fast_settings, delivery_id) == webhooks.PENDING
        d = delivery(settings, delivery_id)
        assert "timed out" in d.last_error and d.attempt_log[0]["retry_in_s"] == 0.2
    finally:
        slow.close()

    for status, extra in ((410, {}), (302, {"location": "http://169.254.169.254/"})):
        r = Receiver(default=status, **extra)
        try:
            job_id, _ = job_with_hook(settings, r.url())
            delivery_id = end_job(settings, job_id, DONE)
            assert worker_webhooks.deliver(settings, delivery_id) == webhooks.FAILED
            d = delivery(settings, delivery_id)
            assert d.attempts == 1 and d.last_status_code == status and len(r.received) == 1
            if status == 302:
                assert "not followed" in d.last_error
        finally:
            r.close()


def test_only_an_excerpt_of_the_answer_is_kept(settings, published):
    with Receiver(answer_body=b"x" * 20000) as r:
        job_id, _ = job_with_hook(settings, r.url())
        delivery_id = end_job(settings, job_id, DONE)
        worker_webhooks.deliver(settings, delivery_id)
    d = delivery(settings, delivery_id)
    assert d.status == "delivered" and len(d.response_excerpt) == webhooks.EXCERPT_CHARS


def test_a_private_address_is_refused_at_delivery_time(tmp_path, receiver, published):
    """A URL accepted earlier (or a name that resolves to a private address by now) is checked again at each
    attempt: nothing reaches the receiver."""
    settings = hook_settings(tmp_path, webhook_allow_private=False)
    job_id, _ = job_with_hook(settings, receiver.url())
    delivery_id = end_job(settings, job_id, DONE)
    assert worker_webhooks.deliver(settings, delivery_id) == webhooks.FAILED
    d = delivery(settings, delivery_id)
    assert d.last_error.startswith("refused:") and "loopback" in d.last_error and d.attempts == 1
    assert receiver.received == []
    dispose_engines()


def test_a_jobs_events_go_out_in_order(settings, receiver, published):
    """video.ready waits while job.done is still being retried; when job.done is delivered the next one is sent."""
    receiver.statuses = [500]
    job_id, _ = job_with_hook(settings, receiver.url())
    done_id = end_job(settings, job_id, RENDERING)  # done, its annotated video to render
    ready_id = end_job(settings, job_id, DONE)  # the video is ready
    assert [delivery(settings, i).event for i in (done_id, ready_id)] == ["job.done", "video.ready"]
    assert worker_webhooks.deliver(settings, done_id) == webhooks.PENDING  # 500: retried later
    assert worker_webhooks.deliver(settings, ready_id) is None  # waits for job.done
    published.clear()
    assert deliver_until_settled(settings, done_id).status == "delivered"
    assert published == [(ready_id, None)]  # job.done delivered: video.ready is sent next
    assert worker_webhooks.deliver(settings, ready_id) == webhooks.DELIVERED
    assert receiver.events() == ["job.done", "video.ready"]


def test_the_sweep_sends_deliveries_whose_message_was_lost(settings, receiver, published):
    job_id, _ = job_with_hook(settings, receiver.url())
    first = end_job(settings, job_id, RENDERING)
    end_job(settings, job_id, DONE)
    assert worker_webhooks.sweep_deliveries(settings, grace_s=3600) == []  # not overdue yet
    assert worker_webhooks.sweep_deliveries(settings, grace_s=0) == [first]  # only the job's first pending one


# ----------------------------------------------------------------------------- the API and the page
@pytest.fixture
def app(settings):
    return make_app(settings, HAR_ENQUEUE=lambda job_id: None)


@pytest.fixture
def web_clip(tmp_path_factory):
    from tests.media import make_people_video

    return make_people_video(tmp_path_factory.mktemp("hook-media") / "people.mp4", seconds=1.0, fps=15.0)


def test_an_anonymous_submission_gets_a_job_key_that_manages_that_job_only(app, settings, web_clip, receiver):
    anon = app.test_client(identity=None)  # a curl user: no cookie kept between commands
    r = upload(anon, web_clip, "clip.mp4", callback_url=receiver.url())
    assert r.status_code == 202, r.json
    job_id, key = r.json["id"], r.json["job_key"]
    assert r.json["callback_url"] == receiver.url() and key.startswith("hjk_")
    other = upload(app.test_client(identity=None), web_clip, "other.mp4").json["id"]
    with session_scope(settings) as s:  # both finished
        for jid in (job_id, other):
            set_status(s, s.get(Job, jid), FAILED, "stopped for the test")
    bearer = {"Authorization": f"Bearer {key}"}
    fresh = app.test_client(identity=None)
    assert fresh.delete(f"/api/jobs/{job_id}").status_code == 403  # no key: not yours
    assert fresh.delete(f"/api/jobs/{other}", headers=bearer).status_code == 403  # the key is for its job only
    assert fresh.get(f"/api/jobs/{job_id}/webhooks").status_code == 403
    log = fresh.get(f"/api/jobs/{job_id}/webhooks", headers=bearer)
    assert log.status_code == 200 and [d["event"] for d in log.json["items"]] == ["job.failed"]
    rerun = fresh.post(f"/api/jobs/{job_id}/rerun", headers=bearer)
    assert rerun.status_code == 202 and rerun.json["job_key"] != key  # the new job has a key of its own
    assert rerun.json["callback_url"] == receiver.url()  # and keeps the webhook
    assert fresh.delete(f"/api/jobs/{job_id}", headers=bearer).status_code == 204
    assert fresh.delete(f"/api/jobs/{job_id}", headers=bearer).status_code == 401  # its job is gone: so is the key


def test_refused_callback_urls_are_400_and_nothing_is_stored(tmp_path, web_clip):
    settings = hook_settings(tmp_path, webhook_allow_private=False)
    client = make_app(settings, HAR_ENQUEUE=lambda job_id: None).test_client()
    for url in ("ftp://example.com/x", "http://127.0.0.1:9/x", "http://169.254.169.254/", "http://[::1]/"):
        r = upload(client, web_clip, "clip.mp4", callback_url=url)
        assert r.status_code == 400 and r.json["error"] == "invalid_callback_url", (url, r.json)
    with session_scope(settings) as s:
        assert s.query(Job).count() == 0
    assert not any(p.is_file() for p in settings.resolved_storage_dir.rglob("*"))
    dispose_engines()


def test_a_token_signs_its_jobs_webhooks_and_gives_its_default_callback_url(app, settings, web_clip, receiver):
    from web.auth import create_token

    with session_scope(settings) as s:
        row, token = create_token(s, "ci")
        row.callback_url = receiver.url("/ci")
        secret = row.webhook_secret
    assert secret.startswith("whsec_")
    with open(web_clip, "rb") as f:
        r = app.test_client().post("/api/jobs", data={"video": (f, "clip.mp4")},
                                   headers={"Authorization": f"Bearer {token}"}, content_type="multipart/form-data")
    assert r.status_code == 202 and "job_key" not in r.json and r.json["callback_url"] == receiver.url("/ci")
    with session_scope(settings) as s:
        job = s.get(Job, r.json["id"])
        assert webhooks.signing_secret(s, job) == secret


def test_tokens_webhook_command_prints_the_secret_and_sets_the_default_url(app, settings):
    from har.db import ApiToken
    from web.auth import create_token

    with session_scope(settings) as s:
        create_token(s, "bob")
    runner = app.test_cli_runner()
    with app.app_context():  # as `flask --app web` runs it
        res = runner.invoke(args=["tokens", "webhook", "bob", "--url", "http://127.0.0.1:9/bob"])
        assert res.exit_code == 0, res.output
        secret = res.stdout.strip()
        assert secret.startswith("whsec_")
        again = runner.invoke(args=["tokens", "webhook", "bob", "--new-secret"])
        assert again.exit_code == 0 and again.stdout.strip() not in ("", secret)
        bad = runner.invoke(args=["tokens", "webhook", "bob", "--url", "http://169.254.169.254/"])
        assert bad.exit_code != 0 and "metadata" in bad.output
        assert runner.invoke(args=["tokens", "webhook", "nobody"]).exit_code != 0
    with session_scope(settings) as s:
        row = s.query(ApiToken).filter_by(name="bob").one()
        assert row.callback_url == "http://127.0.0.1:9/bob" and row.webhook_secret == again.stdout.strip()


def test_job_page_shows_the_delivery_log_and_send_again(app, settings, receiver, published):
    job_id, key = job_with_hook(settings, receiver.url(), owner="anon:" + "7e57" * 8)
    delivery_id = end_job(settings, job_id, DONE)
    worker_webhooks.deliver(settings, delivery_id)
    client = app.test_client()  # the owner (the tests' identity)
    page = client.get(f"/jobs/{job_id}").get_data(as_text=True)
    assert 'id="webhook-log"' in page and "job.done" in page and "delivered" in page and "Send again" in page
    assert 'id="webhook-log"' not in app.test_client(identity=None).get(f"/jobs/{job_id}").get_data(as_text=True)
    r = client.post(f"/jobs/{job_id}/webhooks/{delivery_id}/resend")
    assert r.status_code == 303
    api = client.post(f"/api/jobs/{job_id}/webhooks/{delivery_id}/resend")
    assert api.status_code == 202 and api.json["redelivery_of"] == delivery_id and api.json["status"] == "pending"
    assert app.test_client(identity=None).post(f"/api/jobs/{job_id}/webhooks/{delivery_id}/resend").status_code == 403
    with session_scope(settings) as s:
        rows = s.get(Job, job_id).webhook_deliveries
        assert [(d.event, d.redelivery_of) for d in rows] == [("job.done", None), ("job.done", delivery_id),
                                                                ("job.done", delivery_id)]
        assert len({d.body for d in rows}) == 1  # the same event, byte for byte
    # the first resend is sent next, then the second
    for d in rows[1:]:
        assert deliver_until_settled(settings, d.id).status == "delivered"
    assert receiver.events() == ["job.done"] * 3


# ------------------------------------------------------------------------------ end to end (workers)
def test_end_to_end_done_then_video_ready_signed_after_two_failures(sqlite_stack, people_video):
    """The real workers and the webhook worker: the receiver fails the first two attempts; job.done arrives on the
    third, video.ready after it (never before), both signed with the job's key."""
    with Receiver(statuses=[500, 500]) as receiver:
        client = sqlite_stack.client()
        with open(people_video, "rb") as f:
            r = client.post("/api/jobs", data={"video": (f, "people.mp4"), "callback_url": receiver.url()},
                            content_type="multipart/form-data")
        assert r.status_code == 202, r.json
        job_id, key = r.json["id"], r.json["job_key"]
        sqlite_stack.wait_final(job_id)
        sqlite_stack.wait_video(job_id)
        wait_for(lambda: len(receiver.events()) == 2, 60, "the two webhooks", interval=0.1)
        assert receiver.events() == ["job.done", "video.ready"]
        assert [r.answered for r in receiver.received] == [500, 500, 200, 200]
        for got in receiver.received:
            assert webhooks.verify_signature(key, got.body, got.headers["Har-Signature"])
        done, ready = (r.json for r in receiver.received[2:])
        assert done["job"]["status"] == "done" and done["links"]["video"] is None
        assert ready["job"]["video_status"] == "ready" and ready["links"]["video"].endswith(f"/api/jobs/{job_id}/video")
        log = client.get(f"/api/jobs/{job_id}/webhooks", headers={"Authorization": f"Bearer {key}"}).json
        assert [(d["event"], d["status"], d["attempts"]) for d in log["items"]] == [
            ("job.done", "delivered", 3), ("video.ready", "delivered", 1)]
        assert [a["status_code"] for a in log["items"][0]["attempt_log"]] == [500, 500, 200]
