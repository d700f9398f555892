"""Schemathesis fuzzes every operation of the OpenAPI schema the app serves at /api/schema/.

Three callers: anonymous, a signed-in subject (an allauth headless app session token, from the
real login endpoint) and a product service with an API key (the consent checks). Each operation
gets a bounded number of generated requests, valid and invalid, unsafe methods included; no
answer may be a 5xx, and every answer must be documented in the schema and match it.

The requests go through the real WSGI application in this process, so they share the test's
database transaction: what one example writes, the next one sees, and all of it is rolled back
after the operation. Generation is seeded and derandomized so CI sees the same cases each run.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any, cast

import hypothesis
import pytest
import schemathesis
from django.core.signals import request_finished, request_started
from django.db import close_old_connections
from django.utils import timezone
from schemathesis import Case
from schemathesis.config import SchemathesisConfig
from werkzeug.test import Client as WsgiClient

from accounts.models import User
from config.wsgi import application
from consent import apikeys, services
from consent.models import ConsentEvent, PolicyVersion, Purpose
from core.audit import Actor
from dsar import services as dsar_services
from dsar.models import RequestType
from tests import factories
from tests.conftest import ALL

pytestmark = pytest.mark.django_db(databases=ALL)

SCHEMA_URL = "/api/schema/"
# Kept small so the whole file stays well within two minutes per CI pass on two CPUs.
MAX_EXAMPLES = 12
CONFIG = {
    "seed": 20261201,
    "generation": {"mode": "all", "max-examples": MAX_EXAMPLES, "deterministic": True, "database": "none"},
    "phases": {
        "examples": {"enabled": True},
        "coverage": {"enabled": True},
        "fuzzing": {"enabled": True},
        "stateful": {"enabled": False},
    },
    "suppress-health-check": ["too_slow", "filter_too_much", "data_too_large"],
    "checks": {
        "enabled": False,
        "not_a_server_error": {"enabled": True},
        "status_code_conformance": {"enabled": True},
        "content_type_conformance": {"enabled": True},
        "response_schema_conformance": {"enabled": True},
        "response_headers_conformance": {"enabled": True},
    },
}


def _app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
    # A WSGI server always names the peer; werkzeug's test client does not.
    environ.setdefault("REMOTE_ADDR", "203.0.113.9")
    return cast(Iterable[bytes], application(environ, start_response))


schema = schemathesis.openapi.from_wsgi(SCHEMA_URL, _app, config=SchemathesisConfig.from_dict(CONFIG))
# Operations that take a person's session; the public ones ignore it, the consent checks
# take nothing but an API key.
personal = schema.exclude(path_regex=r"^/api/v1/(public/|consent-check/|policies/|receipt-key/)")
service = schema.include(path_regex=r"^/api/v1/consent-check/")


@pytest.fixture(autouse=True)
def policy() -> PolicyVersion:
    """A privacy policy in force (consents are recorded against it)."""
    yesterday = timezone.now() - timedelta(days=1)
    return PolicyVersion.objects.create(
        version=1,
        title_zh="隐私政策",
        title_en="Privacy policy",
        body_zh="我们如何处理您的个人信息。",
        body_en="How we handle your personal information.",
        summary_zh="首个版本",
        summary_en="First version",
        effective_at=yesterday,
        published_at=yesterday,
    )


@pytest.fixture(autouse=True)
def _one_connection() -> Iterator[None]:
    """Like Django's test client: a request must not close the connection that holds the
    test's transaction (a WSGI server would, between requests)."""
    request_started.disconnect(close_old_connections)
    request_finished.disconnect(close_old_connections)
    yield
    request_started.connect(close_old_connections)
    request_finished.connect(close_old_connections)


@dataclass(frozen=True)
class Subject:
    token: str  # the allauth headless session token, sent as X-Session-Token
    reference: str  # DS-…, what a product's consent check names
    request_ids: list[int]  # their own requests: access (package ready), correction, deletion
    receipt_id: str  # of their consent event
    purpose: str  # the code of a purpose they consented to


@pytest.fixture
def subject(settings: Any, tmp_path: Path) -> Subject:
    """A data subject with requests, a package ready to download and a consent, signed in
    through allauth headless as an app does, and freshly reauthenticated so the calls that
    need it (cancel the account, download the package) get past that gate."""
    settings.QUANYI_EXPORT_DIR = tmp_path / "exports"
    user = cast(User, factories.UserFactory())
    person = factories.subject(user=user)
    actor = Actor.of(user)
    requests = [
        dsar_services.request_submit(
            actor=actor, subject=person, user=user, type=kind, details="我的病历", reauthenticated=True
        )
        for kind in (RequestType.ACCESS, RequestType.CORRECTION, RequestType.DELETION)
    ]
    export = dsar_services.export_latest(requests[0])
    assert export is not None
    assert dsar_services.export_build(export_id=export.pk) == dsar_services.BUILT, export.last_error
    purpose = Purpose.objects.create(
        code="marketing_push", name_zh="营销推送", name_en="Marketing", description_zh="-", description_en="-"
    )
    web = ConsentEvent.Channel.WEB
    event = services.consent_record(
        subject=person, purpose=purpose, action="grant", channel=web, actor=actor, user=user
    )
    # Through the same WSGI application as the fuzzed calls (Django's test client would
    # reconnect the signal that closes the test's connection).
    app = WsgiClient(_app)
    credentials = {"email": user.email, "password": factories.PASSWORD}
    login = app.post("/_allauth/app/v1/auth/login", json=credentials)
    assert login.status_code == 200, login.text
    token = str(login.json["meta"]["session_token"])
    reauth = app.post(
        "/_allauth/app/v1/auth/reauthenticate",
        json={"password": factories.PASSWORD},
        headers={"X-Session-Token": token},
    )
    assert reauth.status_code == 200, reauth.text
    return Subject(
        token=token,
        reference=person.reference,
        request_ids=[r.pk for r in requests],
        receipt_id=str(event.receipt_id),
        purpose=purpose.code,
    )


@pytest.fixture
def api_key() -> str:
    return apikeys.api_key_create(name="fuzz", scopes=[apikeys.CONSENT_CHECK])[1]


def _aim(case: Case, subject: Subject) -> None:
    """Point about half the generated ids, receipts, subject references and purpose codes at the
    subject's own, so the code past the "does it exist, is it yours" lookup is fuzzed too
    (serializers over real rows, withdrawing, downloading, receipts, consent checks); the rest
    stay as generated (not found, too large, malformed). Which ones depends only on the
    generated values, so it stays deterministic."""

    def odd(value: object) -> bool:
        return len(str(value)) % 2 == 1

    path = case.path_parameters if isinstance(case.path_parameters, dict) else {}
    if isinstance(path.get("id"), int) and odd(path["id"]):
        path["id"] = subject.request_ids[path["id"] % len(subject.request_ids)]
    if isinstance(path.get("receipt_id"), str) and odd(path["receipt_id"]):
        path["receipt_id"] = subject.receipt_id
    for fields in (case.query, case.body):
        if not isinstance(fields, dict):
            continue
        if isinstance(fields.get("subject"), str) and odd(fields["subject"]):
            fields["subject"] = subject.reference
        if isinstance(fields.get("purpose"), str) and odd(fields["purpose"]):
            fields["purpose"] = subject.purpose


# The fixtures are function-scoped on purpose: the examples of one operation share them.
fixtures_shared = hypothesis.settings(suppress_health_check=[hypothesis.HealthCheck.function_scoped_fixture])


@schema.parametrize()
@fixtures_shared
def test_anonymous(case: Case) -> None:
    case.call_and_validate()


@personal.parametrize()
@fixtures_shared
def test_signed_in_subject(case: Case, subject: Subject) -> None:
    _aim(case, subject)
    case.call_and_validate(headers={"X-Session-Token": subject.token})


@service.parametrize()
@fixtures_shared
def test_service_with_api_key(case: Case, api_key: str, subject: Subject) -> None:
    _aim(case, subject)
    case.call_and_validate(headers={"Authorization": f"Api-Key {api_key}"})
