"""REST API v1 for requesters: /api/v1/requests/ and /api/v1/public/requests/."""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import date, datetime
from pathlib import Path
from typing import Any, cast
from zoneinfo import ZoneInfo

import pytest
import time_machine
from django.core import mail
from django.core.files.uploadedfile import SimpleUploadedFile
from django.core.management import call_command
from django.test import Client
from django.urls import reverse

from accounts.models import DataSubject, User
from accounts.roles import AGENT
from core.audit import SYSTEM, Actor
from core.models import AuditEntry
from dsar import services
from dsar.models import (
    DataSubjectRequest,
    EmailChallenge,
    OnBehalf,
    RequestMessage,
    RequestType,
    Status,
    VerificationMethod,
)
from tests import factories
from tests.conftest import ALL
from tests.openapi import documented

pytestmark = pytest.mark.django_db(databases=ALL)
SHANGHAI = ZoneInfo("Asia/Shanghai")
PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 64
LIST = "/api/v1/requests/"
PUBLIC = "/api/v1/public/requests/"
Capture = Callable[..., Any]


def _at(y: int, m: int, d: int, hour: int = 10, minute: int = 0) -> datetime:
    return datetime(y, m, d, hour, minute, tzinfo=SHANGHAI)


def _subject_user() -> User:
    user = cast(User, factories.UserFactory())
    factories.subject(user=user)
    return user


def _request_of(user: User, **kwargs: Any) -> DataSubjectRequest:
    defaults: dict[str, Any] = {"type": RequestType.ACCESS, "details": "我的病历"}
    defaults.update(kwargs)
    return services.request_submit(
        actor=Actor.of(user), subject=DataSubject.objects.get(user=user), user=user, **defaults
    )


def _json(client: Client, url: str, data: Any, **extra: Any) -> Any:
    return client.post(url, data, content_type="application/json", **extra)


def _code_in(body: str) -> str:
    found = re.search(r"^\s+(\d{6})\s*$", body, re.MULTILINE)
    assert found, body
    return found.group(1)


def _public_body(**overrides: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "type": RequestType.DELETION,
        "name": "李四",
        "email": "li.si@example.cn",
        "phone": "13900139000",
        "details": "请删除我的就诊记录",
    }
    body.update(overrides)
    return body


def _public_create(client: Client, capture: Capture, **overrides: Any) -> tuple[dict[str, Any], str]:
    with capture(execute=True):
        response = _json(client, PUBLIC, _public_body(**overrides))
    assert response.status_code == 201, response.content
    return response.json(), _code_in(str(mail.outbox[-1].body))


def _snapshot(dsr: DataSubjectRequest) -> tuple[Any, ...]:
    dsr.refresh_from_db()
    return (
        dsr.status,
        dsr.closed_at,
        dsr.contact_verified_at,
        dsr.messages.count(),
        AuditEntry.objects.filter(object_type="dsar.datasubjectrequest", object_id=str(dsr.pk)).count(),
    )


# --- Signed-in subjects ------------------------------------------------------------------------


def test_list_shows_only_my_requests_paginated(client: Client) -> None:
    me = _subject_user()
    mine = [_request_of(me), _request_of(me, type=RequestType.COPY)]
    _request_of(_subject_user())
    client.force_login(me)

    response = client.get(LIST)

    assert response.status_code == 200
    body = response.json()
    assert body["count"] == 2
    assert [r["reference"] for r in body["results"]] == [mine[1].reference, mine[0].reference]
    assert body["results"][0]["type"] == "copy"
    assert body["results"][0]["status"] == Status.AWAITING_VERIFICATION
    assert "details" not in body["results"][0]


def test_create_with_a_recent_reauthentication_is_verified_with_the_due_date(client: Client) -> None:
    user = _subject_user()
    client.force_login(user)
    with time_machine.travel(_at(2025, 9, 30), tick=False):
        client.post(reverse("account_reauthenticate"), {"password": factories.PASSWORD})
        response = _json(client, LIST, {"type": "deletion", "details": "删除全部数据"})

    assert response.status_code == 201, response.content
    body = response.json()
    dsr = DataSubjectRequest.objects.get(pk=body["id"])
    assert (body["status"], body["due_date"], body["working_days_left"]) == ("verified", "2025-10-28", 15)
    assert dsr.status == Status.VERIFIED and dsr.due_date == date(2025, 10, 28)
    assert dsr.verification_method == VerificationMethod.REAUTHENTICATION
    assert dsr.user == user and dsr.subject.user == user


def test_create_without_a_recent_reauthentication_awaits_verification(client: Client) -> None:
    client.force_login(_subject_user())

    response = _json(client, LIST, {"type": "access"})

    assert response.status_code == 201
    assert response.json()["status"] == Status.AWAITING_VERIFICATION
    assert response.json()["due_date"] is None


def test_a_request_without_details_shows_them_as_empty_text(client: Client) -> None:
    # Found by schemathesis: "details": null (stored NULL when none are given) where the schema
    # says a string.
    client.force_login(_subject_user())

    created = _json(client, LIST, {"type": "access"})
    shown = client.get(f"{LIST}{created.json()['id']}/")

    assert (created.status_code, created.json()["details"]) == (201, "")
    assert (shown.status_code, shown.json()["details"]) == (200, "")
    assert DataSubjectRequest.objects.get(pk=created.json()["id"]).details is None


def test_a_page_past_the_end_of_my_requests_answers_404_as_documented(client: Client) -> None:
    # Found by schemathesis: ?page=-30243679632497 answered an undocumented 404.
    client.force_login(_subject_user())

    responses = [client.get(LIST, {"page": page}, HTTP_ACCEPT_LANGUAGE="en") for page in ("-1", "2", "x")]

    assert [(r.status_code, r.json()) for r in responses] == [(404, {"detail": "Invalid page."})] * 3
    assert documented("/api/v1/requests/", "GET", 404)["required"] == ["detail"]


def test_create_on_behalf_with_a_multipart_upload(client: Client) -> None:
    user = _subject_user()
    client.force_login(user)

    response = client.post(
        LIST,
        {
            "type": "access",
            "on_behalf": "relative",
            "subject_name": "王老先生",
            "relationship": "儿子",
            "documents": [
                SimpleUploadedFile("death.png", PNG),
                SimpleUploadedFile("kin.pdf", b"%PDF-1.4\n%%EOF"),
            ],
        },
    )

    assert response.status_code == 201, response.content
    dsr = DataSubjectRequest.objects.get(pk=response.json()["id"])
    assert dsr.on_behalf == OnBehalf.RELATIVE
    assert dsr.subject.full_name == "王老先生" and dsr.subject.user is None
    assert sorted(dsr.documents.values_list("content_type", flat=True)) == ["application/pdf", "image/png"]


def test_an_app_signs_in_with_allauth_headless_and_uses_its_session_token() -> None:
    user = _subject_user()
    mine = _request_of(user)
    app = Client()
    login = _json(app, "/_allauth/app/v1/auth/login", {"email": user.email, "password": factories.PASSWORD})
    assert login.status_code == 200, login.content
    token = login.json()["meta"]["session_token"]

    listed = app.get(LIST, HTTP_X_SESSION_TOKEN=token)
    with time_machine.travel(_at(2025, 9, 30), tick=False):
        reauth = _json(
            app,
            "/_allauth/app/v1/auth/reauthenticate",
            {"password": factories.PASSWORD},
            HTTP_X_SESSION_TOKEN=token,
        )
        assert reauth.status_code == 200, reauth.content
        created = _json(app, LIST, {"type": "copy"}, HTTP_X_SESSION_TOKEN=token)

    assert listed.status_code == 200
    assert [r["id"] for r in listed.json()["results"]] == [mine.pk]
    assert created.status_code == 201
    assert (created.json()["status"], created.json()["due_date"]) == ("verified", "2025-10-28")
    assert app.get(LIST, HTTP_X_SESSION_TOKEN="not-a-token").status_code == 403


def test_detail_shows_the_requester_timeline_and_never_notes_or_staff(client: Client) -> None:
    user = _subject_user()
    agent = factories.staff(AGENT, display_name="专员赵六")
    dsr = _request_of(user)
    services.request_note(request=dsr, actor=Actor.of(agent), author=agent, body="内部备注")
    services.request_ask_info(request=dsr, actor=Actor.of(agent), author=agent, message="请上传身份证")
    client.force_login(user)

    response = client.get(f"{LIST}{dsr.pk}/", HTTP_ACCEPT_LANGUAGE="en")

    body = response.json()
    assert response.status_code == 200
    assert body["details"] == "我的病历"
    assert [e["kind"] for e in body["timeline"]] == ["submitted", "to_requester"]
    assert body["timeline"][1]["body"] == "请上传身份证"
    assert "内部备注" not in response.content.decode()
    assert "专员赵六" not in response.content.decode()
    assert body["answer"] == "" and body["refusal_ground"] == ""


def test_withdraw_is_harmless_when_repeated(client: Client) -> None:
    user = _subject_user()
    dsr = _request_of(user)
    client.force_login(user)

    first = client.post(f"{LIST}{dsr.pk}/withdraw/")
    second = client.post(f"{LIST}{dsr.pk}/withdraw/")

    assert (first.status_code, second.status_code) == (200, 200)
    assert second.json()["status"] == "withdrawn" and second.json()["can_withdraw"] is False
    assert AuditEntry.objects.filter(action="request.withdraw", object_id=str(dsr.pk)).count() == 1


def test_a_closed_request_cannot_be_withdrawn(client: Client) -> None:
    user = _subject_user()
    dsr = _request_of(user, reauthenticated=True)
    services.request_complete(request=dsr, actor=SYSTEM, answer="已完成")
    before = _snapshot(dsr)
    client.force_login(user)

    response = client.post(f"{LIST}{dsr.pk}/withdraw/", HTTP_ACCEPT_LANGUAGE="en")

    assert response.status_code == 409
    assert response.json() == {"detail": "A request that is completed cannot be withdrawn."}
    assert _snapshot(dsr) == before


# --- Permissions ----------------------------------------------------------------------------------

ROLES = ["anonymous", "subject", "other subject", "agent"]


def _as(role: str, owner: User) -> Client:
    client = Client()
    if role == "subject":
        client.force_login(owner)
    elif role == "other subject":
        client.force_login(_subject_user())
    elif role in ("agent", "dpo", "auditor"):
        client.force_login(factories.staff(role))
    return client


@pytest.mark.parametrize(
    ("role", "expected"),
    [
        ("anonymous", {"list": 403, "create": 403, "detail": 403, "withdraw": 403}),
        ("subject", {"list": 200, "create": 201, "detail": 200, "withdraw": 200}),
        ("other subject", {"list": 200, "create": 201, "detail": 404, "withdraw": 404}),
        ("agent", {"list": 403, "create": 403, "detail": 403, "withdraw": 403}),
        ("dpo", {"list": 403, "create": 403, "detail": 403, "withdraw": 403}),
        ("auditor", {"list": 403, "create": 403, "detail": 403, "withdraw": 403}),
    ],
)
def test_endpoint_permissions(role: str, expected: dict[str, int]) -> None:
    owner = _subject_user()
    dsr = _request_of(owner)
    client = _as(role, owner)
    before = _snapshot(dsr)
    requests_before = DataSubjectRequest.objects.count()

    listed = client.get(LIST)
    got = {
        "list": listed.status_code,
        "create": _json(client, LIST, {"type": "access"}).status_code,
        "detail": client.get(f"{LIST}{dsr.pk}/").status_code,
        "withdraw": client.post(f"{LIST}{dsr.pk}/withdraw/").status_code,
    }

    assert got == expected
    if role == "other subject":
        assert dsr.reference not in listed.content.decode()
    if role != "subject":
        assert _snapshot(dsr) == before
    if expected["create"] != 201:
        assert DataSubjectRequest.objects.count() == requests_before


@pytest.mark.parametrize("role", ROLES)
def test_the_public_endpoints_do_not_depend_on_who_calls(
    role: str, django_capture_on_commit_callbacks: Capture
) -> None:
    client = _as(role, _subject_user())
    body, code = _public_create(client, django_capture_on_commit_callbacks)

    verified = _json(client, f"{PUBLIC}{body['id']}/verify/", {"code": code})

    assert verified.status_code == 200
    assert DataSubjectRequest.objects.get(pk=body["id"]).user is None


def test_ids_that_are_not_numbers_or_too_big_are_not_found(client: Client) -> None:
    client.force_login(_subject_user())
    for url in (f"{LIST}abc/", f"{LIST}{2**70}/", f"{LIST}{2**70}/withdraw/", f"{PUBLIC}x/verify/"):
        response = client.get(url) if "withdraw" not in url and "verify" not in url else client.post(url)
        assert response.status_code == 404, url
    assert _json(Client(), f"{PUBLIC}{2**70}/verify/", {"code": "123456"}).status_code == 404


# --- Bad input: 400 with field messages, never 500 -------------------------------------------------


@pytest.mark.parametrize(
    ("payload", "field"),
    [
        ({}, "type"),
        ({"type": "telepathy"}, "type"),
        ({"type": ["access"]}, "type"),
        ({"type": "access", "on_behalf": "cousin"}, "on_behalf"),
        ({"type": "access", "details": "x" * 5001}, "details"),
        ({"type": "access", "details": {"text": "x"}}, "details"),
        ({"type": "access", "documents": "not-a-file"}, "documents"),
        (
            {"type": "access", "on_behalf": "agent", "subject_name": "x" * 201, "relationship": "律师"},
            "subject_name",
        ),
        (
            {"type": "access", "on_behalf": "agent", "subject_name": "王五", "relationship": "律师"},
            "documents",
        ),
        ({"type": "access", "subject_email": "nope"}, "subject_email"),
    ],
)
def test_bad_input_answers_400_with_field_messages(client: Client, payload: Any, field: str) -> None:
    client.force_login(_subject_user())

    response = _json(client, LIST, payload)

    assert response.status_code == 400, response.content
    assert field in response.json(), response.json()
    assert not DataSubjectRequest.objects.exists()


def test_a_body_that_is_not_json_answers_400(client: Client) -> None:
    client.force_login(_subject_user())
    response = client.post(LIST, "{not json", content_type="application/json")
    assert response.status_code == 400
    assert "detail" in response.json()
    assert _json(client, LIST, ["access"]).status_code == 400
    assert not DataSubjectRequest.objects.exists()


@pytest.mark.parametrize(
    ("upload", "message"),
    [
        (SimpleUploadedFile("id.png", b"this is text pretending to be a picture"), "Only PDF, JPEG and PNG"),
        (SimpleUploadedFile("id.pdf", b"%PDF-1.4\n1 0 obj << /S /JavaScript /JS (x) >>"), "scripts"),
        (SimpleUploadedFile("empty.png", b""), "empty"),
    ],
)
def test_bad_documents_answer_400(
    client: Client, django_capture_on_commit_callbacks: Capture, upload: SimpleUploadedFile, message: str
) -> None:
    subjects = DataSubject.objects.count()
    response = client.post(
        PUBLIC,
        {
            **_public_body(),
            "on_behalf": "agent",
            "subject_name": "王五",
            "relationship": "律师",
            "documents": [upload],
        },
        HTTP_ACCEPT_LANGUAGE="en",
    )

    assert response.status_code == 400
    assert message in str(response.json()["documents"])
    assert not DataSubjectRequest.objects.exists()
    assert DataSubject.objects.count() == subjects
    assert not mail.outbox


@pytest.mark.parametrize(
    ("payload", "field"),
    [
        ({"email": "not-an-address"}, "email"),
        ({"name": ""}, "name"),
        ({"name": "x" * 201}, "name"),
        ({"details": ""}, "details"),
        ({"phone": "12"}, "phone"),
        ({"type": None}, "type"),
    ],
)
def test_public_bad_input_answers_400(client: Client, payload: dict[str, Any], field: str) -> None:
    response = _json(client, PUBLIC, _public_body(**payload))

    assert response.status_code == 400
    assert field in response.json()
    assert not DataSubjectRequest.objects.exists()


# --- Without an account ------------------------------------------------------------------------------


def test_public_create_then_wrong_code_then_right_code(
    client: Client, django_capture_on_commit_callbacks: Capture
) -> None:
    body, code = _public_create(client, django_capture_on_commit_callbacks)
    dsr = DataSubjectRequest.objects.get(pk=body["id"])
    url = f"{PUBLIC}{dsr.pk}/verify/"

    assert body["reference"] == dsr.reference and set(body) == {"id", "reference", "status", "detail"}
    assert mail.outbox[-1].to == ["li.si@example.cn"]
    wrong = _json(
        client, url, {"code": "000000" if code != "000000" else "111111"}, HTTP_ACCEPT_LANGUAGE="en"
    )
    assert (wrong.status_code, wrong.json()) == (400, {"detail": "That code is not right."})
    malformed = _json(client, url, {"code": "12ab"})
    assert malformed.status_code == 400 and "code" in malformed.json()

    right = _json(client, url, {"code": code})

    assert right.status_code == 200
    assert right.json() == {
        "id": dsr.pk,
        "reference": dsr.reference,
        "status": "awaiting_verification",
        "contact_verified": True,
    }
    dsr.refresh_from_db()
    assert dsr.contact_verified_at is not None


def test_a_missing_code_answers_field_messages_as_documented(client: Client) -> None:
    # Found by schemathesis: the 400 of verify was documented as {"detail"} only, but a
    # missing or malformed code answers field messages.
    dsr = _request_of(_subject_user())

    response = _json(client, f"{PUBLIC}{dsr.pk}/verify/", {}, HTTP_ACCEPT_LANGUAGE="en")

    assert (response.status_code, response.json()) == (400, {"code": ["This field is required."]})
    body = documented("/api/v1/public/requests/{id}/verify/", "POST", 400)
    assert (sorted(body["properties"]), body.get("required", [])) == (["code", "detail"], [])


def test_five_wrong_codes_lock_it_and_a_resent_code_unlocks(
    client: Client, django_capture_on_commit_callbacks: Capture
) -> None:
    body, code = _public_create(client, django_capture_on_commit_callbacks)
    url = f"{PUBLIC}{body['id']}/verify/"
    wrong = f"{(int(code) + 1) % 10**6:06d}"
    for _ in range(5):
        assert _json(client, url, {"code": wrong}).status_code == 400

    locked = _json(client, url, {"code": code}, HTTP_ACCEPT_LANGUAGE="en")
    assert (locked.status_code, locked.json()["detail"]) == (400, "Too many wrong codes. Ask for a new one.")

    with django_capture_on_commit_callbacks(execute=True):
        assert client.post(f"{PUBLIC}{body['id']}/resend/").status_code == 202
    assert _json(client, url, {"code": _code_in(str(mail.outbox[-1].body))}).status_code == 200


def test_an_expired_code_answers_400(client: Client, django_capture_on_commit_callbacks: Capture) -> None:
    with time_machine.travel(_at(2026, 3, 2, 10), tick=False):
        body, code = _public_create(client, django_capture_on_commit_callbacks)
    with time_machine.travel(_at(2026, 3, 2, 10, 11), tick=False):
        response = _json(client, f"{PUBLIC}{body['id']}/verify/", {"code": code}, HTTP_ACCEPT_LANGUAGE="en")

    assert (response.status_code, response.json()) == (
        400,
        {"detail": "The code has expired. Ask for a new one."},
    )
    assert DataSubjectRequest.objects.get(pk=body["id"]).contact_verified_at is None


def test_resend_never_writes_to_an_account_holders_request(client: Client) -> None:
    dsr = _request_of(_subject_user())
    response = client.post(f"{PUBLIC}{dsr.pk}/resend/")
    assert response.status_code == 202
    assert not EmailChallenge.objects.exists()


def test_public_submissions_are_limited_per_ip(
    client: Client, django_capture_on_commit_callbacks: Capture
) -> None:
    for i in range(10):
        _public_create(client, django_capture_on_commit_callbacks, email=f"p{i}@example.cn")

    limited = _json(client, PUBLIC, _public_body(email="p10@example.cn"), HTTP_ACCEPT_LANGUAGE="en")

    assert limited.status_code == 429
    assert "Too many attempts" in limited.json()["detail"]
    assert DataSubjectRequest.objects.count() == 10


def test_codes_are_limited_per_address(client: Client, django_capture_on_commit_callbacks: Capture) -> None:
    body, _code = _public_create(client, django_capture_on_commit_callbacks)
    with django_capture_on_commit_callbacks(execute=True):
        answers = [client.post(f"{PUBLIC}{body['id']}/resend/").status_code for _ in range(5)]
    assert answers == [202, 202, 202, 202, 429]  # the first code counted too
    assert len(mail.outbox) == 5

    # Another request for the same address is limited as well.
    other = _json(client, PUBLIC, _public_body())
    assert other.status_code == 429
    assert DataSubjectRequest.objects.count() == 1


def test_code_checks_are_limited_per_ip(client: Client, django_capture_on_commit_callbacks: Capture) -> None:
    body, code = _public_create(client, django_capture_on_commit_callbacks)
    url = f"{PUBLIC}{body['id']}/verify/"
    wrong = f"{(int(code) + 1) % 10**6:06d}"
    for _ in range(30):
        _json(client, url, {"code": wrong})
        EmailChallenge.objects.filter(request_id=body["id"]).update(attempts=0)

    limited = _json(client, url, {"code": code})

    assert limited.status_code == 429
    assert DataSubjectRequest.objects.get(pk=body["id"]).contact_verified_at is None
    assert not RequestMessage.objects.exists()


# --- The schema ------------------------------------------------------------------------------------


def test_the_schema_documents_every_endpoint_without_warnings(tmp_path: Path) -> None:
    target = tmp_path / "schema.yaml"
    call_command("spectacular", "--validate", "--fail-on-warn", "--file", str(target))
    schema = target.read_text()
    for path in (
        "/api/v1/requests/:",
        "/api/v1/requests/{id}/:",
        "/api/v1/requests/{id}/withdraw/:",
        "/api/v1/public/requests/:",
        "/api/v1/public/requests/{id}/verify/:",
        "/api/v1/public/requests/{id}/resend/:",
        "/api/v1/account/cancellation/:",
    ):
        assert path in schema
    assert "multipart/form-data" in schema
