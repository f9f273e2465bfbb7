"""The web app while a dependency cannot be reached. The database (PostgreSQL stopped or restarting): every page and API
call that needs it answers 503 ``database_unavailable`` with a message and ``Retry-After`` (never a 500 "something went
wrong"), an upload leaves nothing stored, and ``/healthz`` still answers. The object storage: a delete deletes nothing
(its rows would go and its files stay, unfindable) and a re-run answers 503 ``storage_unavailable``. bench/soak.py
makes both outages on the whole service under load; these are the same answers without the rest."""
from __future__ import annotations

import uuid

import pytest

from tests.conftest import free_port
from tests.test_web_api import app, client, clip, enqueued, make_settings, settings, stored_files  # noqa: F401
from tests.test_web_ui import visible_text
from web import DATABASE_UNAVAILABLE_MESSAGE, STORAGE_UNAVAILABLE_MESSAGE


@pytest.fixture
def down_app(tmp_path):
    """The app on a PostgreSQL URL where nothing listens (a stopped server: connections are refused)."""
    pytest.importorskip("psycopg")
    from har.database import dispose_engines
    from tests.conftest import identity_client_class
    from web import create_app

    settings = make_settings(tmp_path, database_url=f"postgresql+psycopg://har@127.0.0.1:{free_port()}/har",
                             upload_rate="0", min_free_mb=0)
    app = create_app(settings, TESTING=True, WTF_CSRF_ENABLED=False, HAR_ENQUEUE=lambda job_id: None)
    app.test_client_class = identity_client_class()
    yield app
    dispose_engines()


def assert_unavailable(resp):
    assert resp.status_code == 503, resp.get_data(as_text=True)[:500]
    assert resp.headers["Retry-After"] == "10"
    body = resp.get_json()
    assert body == {"error": "database_unavailable", "message": DATABASE_UNAVAILABLE_MESSAGE}


def test_api_answers_503_with_a_message_while_the_database_is_down(down_app):
    client = down_app.test_client()
    assert_unavailable(client.get(f"/api/jobs/{uuid.uuid4()}"))
    assert_unavailable(client.get("/api/jobs?page=1"))
    assert_unavailable(client.delete(f"/api/jobs/{uuid.uuid4()}"))
    assert_unavailable(client.post(f"/api/jobs/{uuid.uuid4()}/rerun"))
    # a token is looked up in the database before anything else
    bearer = {"Authorization": "Bearer har_" + "0" * 40}
    assert_unavailable(client.get("/api/jobs?page=1", headers=bearer))
    # liveness does not touch the database; readiness names it
    assert client.get("/healthz").status_code == 200
    ready = client.get("/readyz")
    assert ready.status_code == 503 and "database" in ready.get_json()["failed"]


def test_an_upload_while_the_database_is_down_is_refused_with_503_and_nothing_is_stored(down_app, clip):  # noqa: F811
    client = down_app.test_client()
    with open(clip, "rb") as f:
        resp = client.post("/api/jobs", data={"video": (f, "people.mp4")}, content_type="multipart/form-data")
    assert_unavailable(resp)
    assert stored_files(down_app.extensions["har"]["settings"]) == []  # the stored upload was removed again


def test_pages_answer_503_with_the_message_while_the_database_is_down(down_app):
    client = down_app.test_client()
    for path in ("/jobs", f"/jobs/{uuid.uuid4()}"):
        resp = client.get(path)
        assert resp.status_code == 503, path
        assert resp.headers["Retry-After"] == "10"
        assert DATABASE_UNAVAILABLE_MESSAGE in visible_text(resp.data)


# ------------------------------------------------------------------------------------ object storage
@pytest.fixture
def storage_down(app, monkeypatch):
    """The app's storage unreachable, as botocore reports it (connection refused)."""
    botocore = pytest.importorskip("botocore.exceptions")

    def refuse(*_args, **_kwargs):
        raise botocore.EndpointConnectionError(endpoint_url="http://127.0.0.1:1/bucket")

    storage = app.extensions["har"]["storage"]
    for name in ("check", "exists", "stat", "delete", "delete_prefix"):
        monkeypatch.setattr(storage, name, refuse)
    return monkeypatch


def test_a_delete_while_the_storage_is_down_deletes_nothing_and_answers_503(client, settings, app, storage_down):
    from tests.test_web_api import add_done_job, row_counts

    job_id = add_done_job(settings)
    before = row_counts(settings)
    resp = client.delete(f"/api/jobs/{job_id}")
    assert resp.status_code == 503
    assert resp.get_json()["error"] == "storage_unavailable"
    assert "not deleted" in resp.get_json()["message"]
    assert row_counts(settings) == before  # the rows stay: the files they name could not be removed
    storage_down.undo()  # the storage is back: the same request deletes the job
    assert client.delete(f"/api/jobs/{job_id}").status_code == 204
    assert client.get(f"/api/jobs/{job_id}").status_code == 404


def test_a_rerun_while_the_storage_is_down_answers_503_not_500(client, settings, storage_down):
    from tests.test_web_api import add_done_job

    job_id = add_done_job(settings)
    resp = client.post(f"/api/jobs/{job_id}/rerun")
    assert resp.status_code == 503, resp.get_data(as_text=True)
    assert resp.get_json() == {"error": "storage_unavailable", "message": STORAGE_UNAVAILABLE_MESSAGE}
    assert resp.headers["Retry-After"] == "10"
