"""The OpenAPI schema as the app serves it, for tests that check a response is documented."""

from __future__ import annotations

from typing import Any

from django.test import Client


def served_schema() -> dict[str, Any]:
    response = Client().get("/api/schema/?format=json")
    assert response.status_code == 200
    return dict(response.json())


def resolve(schema: dict[str, Any], node: dict[str, Any]) -> dict[str, Any]:
    """Follow a local `$ref` (one level)."""
    ref = node.get("$ref")
    if ref is None:
        return node
    found: Any = schema
    for part in ref.removeprefix("#/").split("/"):
        found = found[part]
    return dict(found)


def documented(path: str, method: str, status: int) -> dict[str, Any]:
    """The JSON body schema the served schema gives for this answer (resolved one level)."""
    schema = served_schema()
    answers = schema["paths"][path][method.lower()]["responses"]
    assert str(status) in answers, f"{method} {path} does not document {status}: {sorted(answers)}"
    body = answers[str(status)].get("content", {}).get("application/json", {}).get("schema", {})
    return resolve(schema, body)
