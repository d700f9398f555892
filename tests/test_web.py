from __future__ import annotations

import pytest
from django.test import Client

from tests.conftest import ALL

pytestmark = pytest.mark.django_db(databases=ALL)


def test_pages_carry_a_strict_content_security_policy(client: Client) -> None:
    response = client.get("/accounts/login/")
    csp = response["Content-Security-Policy"]
    assert "script-src 'self'" in csp
    assert "unsafe-inline" not in csp
    assert response["X-Frame-Options"] == "DENY"
    assert response["X-Content-Type-Options"] == "nosniff"


def test_the_login_page_is_chinese_first_and_switches_to_english(client: Client) -> None:
    zh = client.get("/accounts/login/")
    assert '<html lang="zh-hans">' in zh.content.decode()

    switched = client.post("/i18n/setlang/", {"language": "en", "next": "/accounts/login/"})
    assert switched.status_code == 302
    en = client.get("/accounts/login/")
    assert '<html lang="en">' in en.content.decode()


def test_healthz_reports_both_databases(client: Client) -> None:
    response = client.get("/healthz")
    assert response.status_code == 200
    assert response.json()["checks"]["default"] == "ok"
    assert response.json()["checks"]["keystore"] == "ok"


def test_api_schema_and_docs_are_served_without_a_cdn(client: Client) -> None:
    schema = client.get("/api/schema/")
    docs = client.get("/api/docs/")
    assert schema.status_code == 200
    assert b"openapi" in schema.content
    assert docs.status_code == 200
    assert b"cdn" not in docs.content.lower()


def test_the_openapi_schema_validates_without_warnings(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from django.core.management import call_command

    out = tmp_path / "schema.yaml"
    call_command("spectacular", "--validate", "--fail-on-warn", "--file", str(out))
    schema = out.read_text()
    for path in (
        "/api/v1/requests/",
        "/api/v1/requests/{id}/withdraw/",
        "/api/v1/public/requests/",
        "/api/v1/public/requests/{id}/verify/",
    ):
        assert f"  {path}:" in schema


def test_an_api_url_that_no_route_matches_answers_json_404_and_a_page_stays_html(client: Client) -> None:
    # Found by schemathesis: a path id that is not a number (/api/v1/requests/-0.05/) matched
    # no route and got Django's HTML page, which the schema does not document.
    api = client.get("/api/v1/requests/-0.05/", HTTP_ACCEPT_LANGUAGE="en")
    page = client.get("/no-such-page/", HTTP_ACCEPT_LANGUAGE="en")

    assert (api.status_code, api["Content-Type"]) == (404, "application/json")
    assert api.json() == {"detail": "Not found."}
    assert page.status_code == 404
    assert page["Content-Type"].startswith("text/html")
