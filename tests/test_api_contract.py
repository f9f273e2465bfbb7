"""The API contract (tests/contract.py): the OpenAPI document is valid OpenAPI 3.1, and the check that every API
test's responses go through fails for a field the document does not name, a required field missing, an
undocumented status, and an error body that is not an ``Error``."""
from __future__ import annotations

import copy

import pytest

from tests import contract
from tests.test_reports import sample_result
from tests.test_web_api import add_job, app, client, enqueued, settings  # noqa: F401 - fixtures


@pytest.fixture
def doc(app):  # noqa: F811
    return contract.document(app)


def test_the_document_is_valid_openapi_3_1(doc):
    from openapi_spec_validator import validate

    validate(doc)  # the version it checks against comes from the document's "openapi": 3.1
    assert doc["openapi"] == "3.1.0"


def test_a_real_job_answer_matches_and_a_field_removed_from_the_document_fails(client, settings, doc):  # noqa: F811
    job_id = add_job(settings, status="done", result=sample_result(), overall_label="BOXING",
                     overall_confidence=0.93, persons=2)
    body = client.get(f"/api/jobs/{job_id}").json  # checked on the way (tests/conftest.py)
    contract.check_operation(doc, "/api/jobs/{job_id}", "get", 200, body)

    for schema, field in (("Job", "stage"), ("Progress", "eta_s"), ("Person", "windows"), ("AnnotatedVideo", "url")):
        smaller = copy.deepcopy(doc)
        del smaller["components"]["schemas"][schema]["properties"][field]
        with pytest.raises(contract.ContractError, match=f"'{field}' was unexpected"):
            contract.check_operation(smaller, "/api/jobs/{job_id}", "get", 200, body)


def test_a_field_added_without_its_documentation_fails(client, settings, monkeypatch):  # noqa: F811
    from web import api, serialize

    job_id = add_job(settings)
    original = serialize.job_detail
    monkeypatch.setattr(api, "job_detail", lambda job: {**original(job), "shiny_new_field": 1})
    with pytest.raises(contract.ContractError, match="'shiny_new_field' was unexpected"):
        client.get(f"/api/jobs/{job_id}")


def test_a_missing_required_field_an_undocumented_status_and_a_bad_error_body_fail(doc):
    with pytest.raises(contract.ContractError, match="'status' is a required property"):
        contract.check_operation(doc, "/api/health", "get", 200, {"checks": {}})
    with pytest.raises(contract.ContractError, match="status not documented"):
        contract.check_operation(doc, "/api/jobs/{job_id}", "delete", 418, {"error": "teapot", "message": "no"})
    with pytest.raises(contract.ContractError, match="'message' is a required property"):
        contract.check_operation(doc, "/api/jobs/{job_id}", "get", 404, {"error": "not_found"})
    contract.check_operation(doc, "/api/jobs/{job_id}", "get", 404, {"error": "not_found", "message": "No job."})


def test_error_answers_are_checked_too(client):  # noqa: F811
    before = sum(n for key, n in contract.CHECKED.items() if key.endswith(" 404"))
    r = client.get("/api/jobs/00000000-0000-0000-0000-000000000000")
    assert r.status_code == 404 and r.json["error"] == "not_found"
    assert sum(n for key, n in contract.CHECKED.items() if key.endswith(" 404")) == before + 1
