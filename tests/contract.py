"""The API contract: every response an API test receives through Flask's test client is checked against the app's own
OpenAPI document (``/api/openapi.json``, web/openapi.py) with ``jsonschema`` (JSON Schema 2020-12, the dialect of
OpenAPI 3.1).

A response to a documented operation must have a documented status (or ``default``), and when its body is JSON, the
body must match that status's schema: error bodies included (``Error``). The document's object schemas list their
properties and allow no others (``additionalProperties: false``), so a field added to a response without its
documentation fails here, as does a documented field that is ``required`` and missing.

``install()`` wraps ``FlaskClient.open`` (tests/conftest.py does it for the whole suite); ``check(app, method, path,
response)`` is the check itself; ``CHECKED`` counts the responses checked per operation.
"""
from __future__ import annotations

import collections
import re
from functools import lru_cache

CHECKED: collections.Counter = collections.Counter()


class ContractError(AssertionError):
    pass


@lru_cache(maxsize=8)
def _compiled(doc_key: int, doc_json: str):
    import json

    doc = json.loads(doc_json)
    ops = []
    for template, item in doc["paths"].items():
        pattern = re.compile("^" + re.sub(r"\\\{[^/]+?\\\}", "[^/]+", re.escape(template)) + "$")
        ops.append((pattern, template, item))
    return doc, ops


def document(app) -> dict:
    from web.openapi import openapi_document

    return openapi_document(app.extensions["har"]["settings"])


def _validator(doc: dict, schema: dict):
    from jsonschema import Draft202012Validator, FormatChecker

    # the response schema, with the document's components beside it: its "#/components/..." references resolve
    root = {"$schema": "https://json-schema.org/draft/2020-12/schema", "components": doc["components"], **schema}
    return Draft202012Validator(root, format_checker=FormatChecker())


def check(app, method: str, path: str, response) -> None:
    """Raise :class:`ContractError` when ``response`` (to ``method path``) breaks the app's OpenAPI document."""
    import json

    method = method.lower()
    if not path.startswith("/api/") or method in ("head", "options"):
        return
    doc_now = document(app)
    doc, ops = _compiled(id(app), json.dumps(doc_now, sort_keys=True))
    path = path.split("?", 1)[0]
    match = next(((template, item) for pattern, template, item in ops if pattern.match(path)), None)
    if match is None or method not in match[1]:
        return  # not an operation of the API (an unknown path or method: Flask's 404/405, JSON too)
    template, item = match
    is_json = (response.mimetype or "") == "application/json"
    check_operation(doc, template, method, response.status_code,
                    response.get_json(silent=True) if is_json else None, is_json)


def check_operation(doc: dict, template: str, method: str, status: int, body, is_json: bool = True) -> None:
    """Check one answer of the operation ``method template`` of ``doc``: its status is documented, and a JSON
    ``body`` matches that status's schema."""
    op = doc["paths"][template][method.lower()]
    where = f"{method.upper()} {template} → {status}"
    documented = op["responses"].get(str(status)) or op["responses"].get("default")
    if documented is None:
        raise ContractError(f"{where}: status not documented (documented: {sorted(op['responses'])})")
    CHECKED[f"{method.upper()} {template} {status}"] += 1
    if not is_json:
        return
    content = documented.get("content") or {}
    if "application/json" not in content:
        raise ContractError(f"{where}: JSON body, but the document gives this response no JSON content")
    schema = content["application/json"].get("schema") or {}
    errors = sorted(_validator(doc, schema).iter_errors(body), key=lambda e: list(e.absolute_path))
    if errors:
        def deepest(e):  # for a "oneOf"/"anyOf" (a nullable object): the reason inside the alternative that got furthest
            while e.context:
                e = max(e.context, key=lambda c: len(c.absolute_path))
            return e

        errors = [deepest(e) for e in errors]
        lines = [f"  at /{'/'.join(map(str, e.absolute_path))}: {e.message[:300]}" for e in errors[:10]]
        raise ContractError(f"{where}: the body does not match the OpenAPI document:\n" + "\n".join(lines))


def install(monkeypatch) -> None:
    """Check every response of Flask test clients (for this test)."""
    from flask.testing import FlaskClient

    original = FlaskClient.open

    def open_and_check(self, *args, **kwargs):
        response = original(self, *args, **kwargs)
        request = getattr(response, "request", None)
        if request is not None:
            check(self.application, request.method, request.path, response)
        return response

    monkeypatch.setattr(FlaskClient, "open", open_and_check)
