"""REST API v1 for consents: /api/v1/consents/, /api/v1/policies/current/, /api/v1/receipt-key/
and the service accounts' /api/v1/consent-check/."""

from __future__ import annotations

import hashlib
import io
import time
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, cast

import pytest
import time_machine
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from django.core.management import call_command
from django.test import Client, RequestFactory
from django.utils import timezone, translation

from accounts.models import DataSubject, User
from accounts.roles import AGENT, AUDITOR, DPO
from consent import api, apikeys, receipts, services
from consent.models import ApiKey, ChangeKind, ConsentEvent, LegalBasis, PolicyVersion, Purpose
from core.audit import SYSTEM, Actor
from core.models import AuditEntry
from tests import factories
from tests.conftest import ALL
from tests.openapi import documented, resolve, served_schema

pytestmark = pytest.mark.django_db(databases=ALL)

CONSENTS = "/api/v1/consents/"
HISTORY = "/api/v1/consents/history/"
POLICY = "/api/v1/policies/current/"
KEY = "/api/v1/receipt-key/"
CHECK = "/api/v1/consent-check/"
BULK = "/api/v1/consent-check/bulk/"
MARKETING, HEALTH, SERVICE = "marketing_push", "doctor_view_health", "account_service"


def _receipt_url(receipt_id: Any) -> str:
    return f"/api/v1/consents/events/{receipt_id}/receipt/"


@pytest.fixture(autouse=True)
def catalogue() -> dict[str, Any]:
    """A published policy in force since yesterday and three purposes."""
    yesterday = timezone.now() - timedelta(days=1)
    policy = PolicyVersion.objects.create(
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
    purposes = {
        SERVICE: Purpose.objects.create(
            code=SERVICE,
            name_zh="提供账户服务",
            name_en="Providing the account",
            description_zh="登录与账户管理",
            description_en="Sign-in and account management",
            legal_basis=LegalBasis.CONTRACT,
            required=True,
            order=1,
        ),
        MARKETING: Purpose.objects.create(
            code=MARKETING,
            name_zh="营销推送",
            name_en="Marketing notifications",
            description_zh="活动与优惠推送",
            description_en="Offers and campaigns",
            marketing=True,
            order=2,
        ),
        HEALTH: Purpose.objects.create(
            code=HEALTH,
            name_zh="医生查看健康信息",
            name_en="Doctors see health information",
            description_zh="问诊时医生查看您的健康档案",
            description_en="Doctors read your health record during a consultation",
            sensitive=True,
            categories=["health"],
            order=3,
        ),
    }
    return {"policy": policy, **purposes}


def _subject_user() -> User:
    user = cast(User, factories.UserFactory())
    factories.subject(user=user)
    return user


def _subject_of(user: User) -> DataSubject:
    return DataSubject.objects.get(user=user)


def _grant(user: User, code: str = MARKETING, **kwargs: Any) -> ConsentEvent:
    return services.consent_record(
        subject=_subject_of(user),
        purpose=Purpose.objects.get(code=code),
        action=kwargs.pop("action", "grant"),
        channel=ConsentEvent.Channel.WEB,
        actor=Actor.of(user),
        user=user,
        **kwargs,
    )


def _json(client: Client, url: str, data: Any, **extra: Any) -> Any:
    return client.post(url, data, content_type="application/json", **extra)


def _key(*scopes: str) -> str:
    return apikeys.api_key_create(name="app-backend", scopes=list(scopes))[1]


def _auth(plaintext: str) -> dict[str, str]:
    return {"HTTP_AUTHORIZATION": f"Api-Key {plaintext}"}


def _service() -> dict[str, str]:
    return _auth(_key(apikeys.CONSENT_CHECK))


# --- The subject's choices -----------------------------------------------------------------------


def test_list_shows_every_active_purpose_with_my_current_choice(client: Client) -> None:
    user = _subject_user()
    granted = _grant(user, HEALTH, separate=True)
    Purpose.objects.create(
        code="retired", name_zh="旧", name_en="old", description_zh="-", description_en="-", active=False
    )
    client.force_login(user)

    response = client.get(CONSENTS, HTTP_ACCEPT_LANGUAGE="en")

    assert response.status_code == 200
    rows = {row["purpose"]: row for row in response.json()}
    assert list(rows) == [SERVICE, MARKETING, HEALTH]
    assert rows[HEALTH] == {
        "purpose": HEALTH,
        "name_zh": "医生查看健康信息",
        "name_en": "Doctors see health information",
        "description_zh": "问诊时医生查看您的健康档案",
        "description_en": "Doctors read your health record during a consultation",
        "legal_basis": "consent",
        "legal_basis_label": "consent",
        "needs_consent": True,
        "required": False,
        "sensitive": True,
        "marketing": False,
        "granted": True,
        "separate": True,
        "receipt_id": str(granted.receipt_id),
        "since": granted.occurred_at.isoformat().replace("+00:00", "Z"),
    }
    assert (rows[MARKETING]["granted"], rows[MARKETING]["receipt_id"], rows[MARKETING]["since"]) == (
        False,
        None,
        None,
    )
    assert (rows[SERVICE]["required"], rows[SERVICE]["legal_basis"], rows[SERVICE]["needs_consent"]) == (
        True,
        "contract",
        False,
    )


def test_a_signed_in_user_without_a_subject_gets_one(client: Client) -> None:
    user = cast(User, factories.UserFactory())
    client.force_login(user)

    response = client.get(CONSENTS)

    assert response.status_code == 200
    assert len(response.json()) == 3
    assert DataSubject.objects.filter(user=user).count() == 1


def test_an_app_uses_its_allauth_session_token() -> None:
    user = _subject_user()
    app = Client()
    login = _json(app, "/_allauth/app/v1/auth/login", {"email": user.email, "password": factories.PASSWORD})
    token = login.json()["meta"]["session_token"]

    granted = _json(app, CONSENTS, {"purpose": MARKETING, "action": "grant"}, HTTP_X_SESSION_TOKEN=token)

    assert granted.status_code == 201, granted.content
    assert app.get(CONSENTS, HTTP_X_SESSION_TOKEN="not-a-token").status_code == 403


def test_grant_and_withdraw_record_api_events_with_evidence(client: Client) -> None:
    user = _subject_user()
    client.force_login(user)
    ua = {"REMOTE_ADDR": "203.0.113.77", "HTTP_USER_AGENT": "QuanyiApp/2.1 (iOS)"}

    granted = _json(client, CONSENTS, {"purpose": MARKETING, "action": "grant"}, **ua)
    withdrawn = _json(client, CONSENTS, {"purpose": MARKETING, "action": "withdraw"}, **ua)

    assert (granted.status_code, withdrawn.status_code) == (201, 201)
    events = list(ConsentEvent.objects.filter(subject__user=user).order_by("id"))
    assert [(e.action, e.channel, e.actor_id) for e in events] == [
        ("grant", "api", user.pk),
        ("withdraw", "api", user.pk),
    ]
    assert (events[0].evidence_ip, events[0].evidence_user_agent) == ("203.0.113.0/24", "QuanyiApp/2.1 (iOS)")
    body = withdrawn.json()
    assert body["receipt_id"] == str(events[1].receipt_id)
    assert (body["purpose"], body["action"], body["grants"], body["channel"]) == (
        MARKETING,
        "withdraw",
        False,
        "api",
    )
    assert (body["policy_version"], body["separate"]) == (1, False)
    actions = AuditEntry.objects.filter(object_id=str(_subject_of(user).pk)).values_list("action", flat=True)
    assert list(actions.order_by("seq"))[-2:] == ["consent.grant", "consent.withdraw"]


def test_repeating_a_choice_records_nothing_and_answers_200(client: Client) -> None:
    user = _subject_user()
    client.force_login(user)
    first = _json(client, CONSENTS, {"purpose": MARKETING, "action": "grant"})
    audit = AuditEntry.objects.count()

    again = _json(client, CONSENTS, {"purpose": MARKETING, "action": "grant"})

    assert (first.status_code, again.status_code) == (201, 200)
    assert again.json()["receipt_id"] == first.json()["receipt_id"]
    assert ConsentEvent.objects.count() == 1
    assert AuditEntry.objects.count() == audit


def test_sensitive_purpose_needs_a_separate_consent(client: Client) -> None:
    user = _subject_user()
    client.force_login(user)
    audit = AuditEntry.objects.count()

    refused = _json(client, CONSENTS, {"purpose": HEALTH, "action": "grant"}, HTTP_ACCEPT_LANGUAGE="en")
    loose = _json(client, CONSENTS, {"purpose": HEALTH, "action": "grant", "separate": "yes"})

    assert refused.status_code == 400
    assert refused.json() == {
        "separate": ["Sensitive personal information needs a separate, explicit consent."]
    }
    assert loose.status_code == 400 and "separate" in loose.json()
    assert not ConsentEvent.objects.exists()
    assert AuditEntry.objects.count() == audit

    granted = _json(client, CONSENTS, {"purpose": HEALTH, "action": "grant", "separate": True})

    assert granted.status_code == 201
    assert granted.json()["separate"] is True
    assert services.may_process(subject=_subject_of(user), purpose=Purpose.objects.get(code=HEALTH)).allowed


def test_a_purpose_no_longer_in_use_cannot_be_granted(client: Client) -> None:
    Purpose.objects.filter(code=MARKETING).update(active=False)
    client.force_login(_subject_user())

    response = _json(client, CONSENTS, {"purpose": MARKETING, "action": "grant"}, HTTP_ACCEPT_LANGUAGE="en")

    assert (response.status_code, response.json()) == (
        400,
        {"purpose": ["This purpose is no longer in use."]},
    )
    assert not ConsentEvent.objects.exists()


@pytest.mark.parametrize(
    ("payload", "field"),
    [
        ({}, "purpose"),
        ({"action": "grant"}, "purpose"),
        ({"purpose": "no_such_purpose", "action": "grant"}, "purpose"),
        ({"purpose": [MARKETING], "action": "grant"}, "purpose"),
        ({"purpose": "x" * 65, "action": "grant"}, "purpose"),
        ({"purpose": MARKETING}, "action"),
        ({"purpose": MARKETING, "action": "approve"}, "action"),
        ({"purpose": MARKETING, "action": "renew"}, "action"),
        ({"purpose": MARKETING, "action": "grant", "separate": 1}, "separate"),
        ({"purpose": MARKETING, "action": "grant", "separate": None}, "separate"),
    ],
)
def test_bad_input_answers_400_with_field_messages(client: Client, payload: Any, field: str) -> None:
    client.force_login(_subject_user())
    audit = AuditEntry.objects.count()

    response = _json(client, CONSENTS, payload)

    assert response.status_code == 400, response.content
    assert field in response.json(), response.json()
    assert not ConsentEvent.objects.exists()
    assert AuditEntry.objects.count() == audit


def test_a_body_that_is_not_json_answers_400(client: Client) -> None:
    client.force_login(_subject_user())

    broken = client.post(CONSENTS, "{not json", content_type="application/json")
    listed = _json(client, CONSENTS, [MARKETING, "grant"])
    form = client.post(CONSENTS, {"purpose": MARKETING, "action": "grant"})

    assert broken.status_code == 400 and "detail" in broken.json()
    assert listed.status_code == 400
    assert form.status_code == 415
    assert not ConsentEvent.objects.exists()


def test_history_is_my_ledger_newest_first_and_paginated(client: Client) -> None:
    me, other = _subject_user(), _subject_user()
    base = timezone.now()
    for i in range(51):
        with time_machine.travel(base + timedelta(minutes=i), tick=False):
            _grant(me, action="grant" if i % 2 == 0 else "withdraw")
    _grant(other)
    client.force_login(me)

    first = client.get(HISTORY).json()
    second = client.get(HISTORY, {"page": 2}).json()

    ledger = list(ConsentEvent.objects.filter(subject__user=me).order_by("-occurred_at"))
    assert first["count"] == 51 and len(first["results"]) == 50 and first["next"]
    assert [r["receipt_id"] for r in first["results"] + second["results"]] == [
        str(e.receipt_id) for e in ledger
    ]
    assert (first["results"][0]["action"], second["results"][0]["action"]) == ("grant", "grant")
    assert first["results"][1]["action"] == "withdraw"


def test_a_page_past_the_end_of_the_ledger_answers_404_as_documented(client: Client) -> None:
    # Found by schemathesis: ?page=-267470347 answered an undocumented 404.
    client.force_login(_subject_user())

    responses = [client.get(HISTORY, {"page": page}, HTTP_ACCEPT_LANGUAGE="en") for page in ("-1", "9", "x")]

    assert [(r.status_code, r.json()) for r in responses] == [(404, {"detail": "Invalid page."})] * 3
    assert documented("/api/v1/consents/history/", "GET", 404)["required"] == ["detail"]


# --- Receipts ----------------------------------------------------------------------------------


def test_a_receipt_verifies_and_fails_once_altered(client: Client) -> None:
    user = _subject_user()
    event = _grant(user, HEALTH, separate=True)
    client.force_login(user)

    response = client.get(_receipt_url(event.receipt_id))

    assert response.status_code == 200
    assert response["Content-Disposition"] == (
        f'attachment; filename="consent-receipt-{event.receipt_id}.json"'
    )
    signed = response.json()
    assert signed["receipt"]["receipt_id"] == str(event.receipt_id)
    assert signed["receipt"]["principal"] == {"id": _subject_of(user).reference}
    assert signed["receipt"]["purposes"][0]["separate_consent"] is True
    assert signed["signature"]["kid"] == receipts.key_id()
    assert receipts.receipt_verify(signed)

    signed["receipt"]["purposes"][0]["code"] = MARKETING
    assert not receipts.receipt_verify(signed)

    downloads = AuditEntry.objects.filter(action="consent.receipt_downloaded")
    assert list(downloads.values_list("actor_id", "object_id", "data")) == [
        (
            str(user.pk),
            str(_subject_of(user).pk),
            {"event": event.pk, "receipt_id": str(event.receipt_id), "purpose": HEALTH},
        )
    ]


@pytest.mark.parametrize("receipt_id", ["not-a-uuid", "12345", "00000000-0000-0000-0000-000000000000"])
def test_a_malformed_or_unknown_receipt_id_is_not_found(client: Client, receipt_id: str) -> None:
    _grant(_subject_user())
    client.force_login(_subject_user())

    response = client.get(_receipt_url(receipt_id))

    assert response.status_code == 404
    assert "detail" in response.json()
    assert not AuditEntry.objects.filter(action="consent.receipt_downloaded").exists()


def test_the_published_key_verifies_receipts(client: Client) -> None:
    user = _subject_user()
    event = _grant(user)
    client.force_login(user)
    signed = client.get(_receipt_url(event.receipt_id)).json()

    published = Client().get(KEY).json()
    pem = api.receipt_key_pem(RequestFactory().get("/.well-known/quanyi-receipt-key.pem"))

    assert published["algorithm"] == "Ed25519"
    assert published["key_id"] == signed["signature"]["kid"]
    assert pem.status_code == 200 and pem["Content-Type"] == "text/plain; charset=utf-8"
    assert pem.content.decode() == published["public_key_pem"]
    key = serialization.load_pem_public_key(pem.content)
    assert isinstance(key, Ed25519PublicKey)
    assert receipts.receipt_verify(signed, key)
    assert (
        api.receipt_key_pem(RequestFactory().post("/.well-known/quanyi-receipt-key.pem")).status_code == 405
    )


# --- The policy --------------------------------------------------------------------------------


def test_the_current_policy_is_public(catalogue: dict[str, Any]) -> None:
    tomorrow = timezone.now() + timedelta(days=1)
    PolicyVersion.objects.create(
        version=2, title_zh="新政策", title_en="New", body_zh="-", body_en="-", effective_at=tomorrow,
        published_at=timezone.now(), material=True, change_kind="recipients",
    )  # fmt: skip
    PolicyVersion.objects.create(
        version=3, title_zh="草稿", title_en="Draft", body_zh="-", body_en="-",
        effective_at=timezone.now() - timedelta(hours=1),
    )  # fmt: skip

    response = Client().get(POLICY, HTTP_AUTHORIZATION="Api-Key garbage")

    assert response.status_code == 200
    body = response.json()
    assert (body["version"], body["title_zh"], body["title_en"]) == (1, "隐私政策", "Privacy policy")
    assert (body["summary_zh"], body["material"], body["change_kind"]) == ("首个版本", False, "")
    assert body["effective_at"] == catalogue["policy"].effective_at.isoformat().replace("+00:00", "Z")


def test_a_policy_that_is_no_material_change_has_a_blank_kind_as_documented() -> None:
    # Found by schemathesis: "change_kind": "" was not one of the documented values.
    response = Client().get(POLICY)

    assert (response.json()["change_kind"], response.json()["change_kind_label"]) == ("", "")
    schema = served_schema()
    kinds = schema["components"]["schemas"]["Policy"]["properties"]["change_kind"]["oneOf"]
    assert [resolve(schema, kind)["enum"] for kind in kinds] == [[c.value for c in ChangeKind], [""]]


def test_without_a_published_policy_the_answer_is_404() -> None:
    PolicyVersion.objects.update(published_at=None)

    response = Client().get(POLICY, HTTP_ACCEPT_LANGUAGE="en")

    assert (response.status_code, response.json()) == (404, {"detail": "No privacy policy is published yet."})


# --- The consent check -----------------------------------------------------------------------------


def test_a_withdrawal_is_not_retroactive() -> None:
    user = _subject_user()
    reference = _subject_of(user).reference
    start = timezone.now()
    with time_machine.travel(start + timedelta(hours=1), tick=False):
        granted = _grant(user)
    with time_machine.travel(start + timedelta(hours=3), tick=False):
        withdrawn = _grant(user, action="withdraw")
    service = Client()
    auth = _service()

    def check(at: datetime | None) -> dict[str, Any]:
        query = {"subject": reference, "purpose": MARKETING} | ({"at": at.isoformat()} if at else {})
        response = service.get(CHECK, query, **auth)
        assert response.status_code == 200, response.content
        return cast(dict[str, Any], response.json())

    before, during, after, now = (
        check(start),
        check(start + timedelta(hours=2)),
        check(start + timedelta(hours=4)),
        check(None),
    )

    assert (before["allowed"], before["reason"], before["receipt_id"]) == (False, "no consent recorded", None)
    assert (during["allowed"], during["reason"], during["receipt_id"]) == (
        True,
        "consent granted",
        str(granted.receipt_id),
    )
    assert during["event_at"] == granted.occurred_at.isoformat().replace("+00:00", "Z")
    assert (after["allowed"], after["reason"], after["receipt_id"]) == (
        False,
        "consent withdrawn",
        str(withdrawn.receipt_id),
    )
    assert (now["allowed"], now["receipt_id"], now["subject"], now["purpose"]) == (
        False,
        str(withdrawn.receipt_id),
        reference,
        MARKETING,
    )


def test_the_check_knows_other_legal_bases_and_separate_consent() -> None:
    user = _subject_user()
    _grant(user, HEALTH, separate=True)
    reference = _subject_of(user).reference
    auth = _service()

    service = Client().get(CHECK, {"subject": reference, "purpose": SERVICE}, **auth).json()
    health = Client().get(CHECK, {"subject": reference, "purpose": HEALTH}, **auth).json()

    assert (service["allowed"], service["reason"]) == (True, "legal basis: contract")
    assert (health["allowed"], health["reason"]) == (True, "consent granted")


@pytest.mark.parametrize(
    ("subject", "purpose", "reason"),
    [
        ("DS-999999", MARKETING, "unknown subject"),
        ("DS-99999999999999999999", MARKETING, "unknown subject"),
        ("DS-٣", MARKETING, "unknown subject"),
        ("patient@example.cn", MARKETING, "unknown subject"),
        (None, "no_such_purpose", "unknown purpose"),
    ],
)
def test_an_unknown_subject_or_purpose_is_404(subject: str | None, purpose: str, reason: str) -> None:
    reference = subject or _subject_of(_subject_user()).reference

    response = Client().get(CHECK, {"subject": reference, "purpose": purpose}, **_service())

    assert response.status_code == 404
    assert response.json()["reason"] == reason


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ({"purpose": MARKETING}, "subject"),
        ({"subject": "DS-000001"}, "purpose"),
        ({"subject": "DS-000001", "purpose": MARKETING, "at": "yesterday"}, "at"),
        ({"subject": "DS-000001", "purpose": MARKETING, "at": "2026-13-45T10:00:00+08:00"}, "at"),
        ({"subject": "DS-000001", "purpose": MARKETING, "at": "2026-03-02T10:00:00"}, "at"),
        ({"subject": "DS-000001", "purpose": "x" * 65}, "purpose"),
    ],
)
def test_bad_check_queries_answer_400(query: dict[str, str], field: str) -> None:
    response = Client().get(CHECK, query, **_service())

    assert response.status_code == 400, response.content
    assert field in response.json()


def test_bulk_answers_each_check_in_order() -> None:
    me, other = _subject_user(), _subject_user()
    granted = _grant(me)
    mine, theirs = _subject_of(me).reference, _subject_of(other).reference
    checks = [
        {"subject": mine, "purpose": MARKETING},
        {"subject": theirs, "purpose": MARKETING},
        {"subject": "DS-999999", "purpose": MARKETING},
        {"subject": mine, "purpose": "no_such_purpose"},
        {"subject": "nobody", "purpose": "no_such_purpose"},
        {
            "subject": mine,
            "purpose": MARKETING,
            "at": (granted.occurred_at - timedelta(seconds=1)).isoformat(),
        },
        {"subject": mine, "purpose": SERVICE},
    ]

    response = _json(Client(), BULK, {"checks": checks}, **_service())

    assert response.status_code == 200, response.content
    results = response.json()["results"]
    assert [(r["subject"], r["purpose"], r["allowed"], r["reason"]) for r in results] == [
        (mine, MARKETING, True, "consent granted"),
        (theirs, MARKETING, False, "no consent recorded"),
        ("DS-999999", MARKETING, False, "unknown subject"),
        (mine, "no_such_purpose", False, "unknown purpose"),
        ("nobody", "no_such_purpose", False, "unknown subject"),
        (mine, MARKETING, False, "no consent recorded"),
        (mine, SERVICE, True, "legal basis: contract"),
    ]
    assert results[0]["receipt_id"] == str(granted.receipt_id)
    assert results[2]["receipt_id"] is None and results[2]["event_at"] is None


def test_bulk_takes_500_checks_and_no_more() -> None:
    reference = _subject_of(_subject_user()).reference
    auth = _service()
    check = {"subject": reference, "purpose": MARKETING}

    full = _json(Client(), BULK, {"checks": [check] * 500}, **auth)
    over = _json(Client(), BULK, {"checks": [check] * 501}, **auth)

    assert full.status_code == 200 and len(full.json()["results"]) == 500
    assert over.status_code == 400 and "checks" in over.json()


@pytest.mark.parametrize(
    "body",
    [
        "{not json",
        "[]",
        "{}",
        '{"checks": []}',
        '{"checks": "DS-000001"}',
        '{"checks": [{"subject": "DS-000001"}]}',
        '{"checks": [{"subject": "DS-000001", "purpose": "marketing_push", "at": "soon"}]}',
        '{"checks": [{"subject": ["DS-000001"], "purpose": "marketing_push"}]}',
    ],
)
def test_bad_bulk_bodies_answer_400(body: str) -> None:
    response = Client().post(BULK, body, content_type="application/json", **_service())

    assert response.status_code == 400, response.content


def test_checks_are_rate_limited_per_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(api, "CHECK_LIMIT", 3)  # QUANYI_CONSENT_CHECK_RATE unset: the built-in limit
    reference = _subject_of(_subject_user()).reference
    query = {"subject": reference, "purpose": MARKETING}
    busy, quiet = _service(), _service()

    answers = [Client().get(CHECK, query, **busy).status_code for _ in range(3)]
    limited = _json(Client(), BULK, {"checks": [query]}, **busy)

    assert answers == [200, 200, 200]
    assert limited.status_code == 429 and "detail" in limited.json()
    assert Client().get(CHECK, query, **quiet).status_code == 200


def test_batched_limits_hold_exactly_in_one_process_and_across_processes(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A busy key takes its limit from the shared counter in batches; no more than the limit
    ever passes, whether the hits come from one process or several (each with its own
    unspent batch)."""
    from core import ratelimit

    def hit() -> bool:
        return ratelimit.rate_limited("test-batched", "key-1", limit=50, window=3600, batch=10)

    first = [hit() for _ in range(23)]
    other_process: dict[tuple[str, str], tuple[int, int]] = {}
    monkeypatch.setattr(ratelimit, "_reserved", other_process)  # a second process: nothing held
    second = [hit() for _ in range(40)]

    assert first == [False] * 23
    # The first process still holds 7 of the 30 it took; the second gets the other 20.
    assert second == [False] * 20 + [True] * 20
    assert sum(not limited for limited in first + second) <= 50


def _child_user() -> User:
    user = cast(User, factories.UserFactory())
    factories.subject(user=user, birth_date=(timezone.now().date() - timedelta(days=365 * 10)).isoformat())
    return user


@pytest.mark.parametrize(
    "case",
    [
        "granted",
        "withdrawn",
        "nothing",
        "sensitive-not-separate",
        "sensitive-separate",
        "contract",
        "child",
        "child-with-guardian",
    ],
)
def test_the_one_statement_check_answers_as_may_process(case: str) -> None:
    from consent.selectors import consent_check_now

    user = _child_user() if case.startswith("child") else _subject_user()
    code = {"contract": SERVICE, "sensitive-separate": HEALTH}.get(case, MARKETING)
    if case in ("granted", "withdrawn", "child", "child-with-guardian"):
        _grant(user)
    if case == "withdrawn":
        _grant(user, action="withdraw")
    if case == "sensitive-separate":
        _grant(user, HEALTH, separate=True)
    if case == "sensitive-not-separate":  # granted, then the purpose was found to be sensitive
        _grant(user, MARKETING)
        Purpose.objects.filter(code=MARKETING).update(sensitive=True)
    subject = _subject_of(user)
    if case == "child-with-guardian":
        services.guardian_consent_record(
            subject=subject,
            actor=SYSTEM,
            guardian_name="王芳",
            relationship="mother",
            guardian_contact="mother@example.cn",
            verification="documents",
        )

    fast = consent_check_now(subject_pk=subject.pk, purpose_code=code)
    reference = services.may_process(subject=subject, purpose=Purpose.objects.get(code=code))

    assert fast.decision is not None
    assert (fast.decision.allowed, fast.decision.reason) == (reference.allowed, reference.reason)
    fast_event, reference_event = fast.decision.event, reference.event
    assert (fast_event and fast_event.receipt_id) == (reference_event and reference_event.receipt_id)
    assert (fast_event and fast_event.occurred_at) == (reference_event and reference_event.occurred_at)
    expected = {
        "granted": True,
        "withdrawn": False,
        "nothing": False,
        "sensitive-not-separate": False,
        "sensitive-separate": True,
        "contract": True,
        "child": False,
        "child-with-guardian": True,
    }
    assert fast.decision.allowed is expected[case]


# --- API keys ----------------------------------------------------------------------------------


def test_the_plaintext_of_a_key_is_never_stored() -> None:
    key, plaintext = apikeys.api_key_create(name="app-backend", scopes=[apikeys.CONSENT_CHECK])
    prefix, secret = plaintext.split(".", 1)

    key.refresh_from_db()
    assert (key.prefix, len(prefix)) == (prefix, 8)
    assert key.key_hash == hashlib.sha256(secret.encode()).hexdigest()
    assert len(secret) >= 43
    stored = [str(v) for v in ApiKey.objects.values().get(pk=key.pk).values()]
    audited = [str(e.data) for e in AuditEntry.objects.all()]
    assert not any(secret in value for value in stored + audited)
    entry = AuditEntry.objects.get(action="apikey.created")
    assert entry.data == {"name": "app-backend", "prefix": prefix, "scopes": ["consent:check"]}


def test_the_command_prints_a_working_key_once() -> None:
    out = io.StringIO()

    call_command("create_api_key", "crm-sync", "--scope", "consent:check", stdout=out)

    key = ApiKey.objects.get(name="crm-sync")
    plaintext = next(line for line in out.getvalue().splitlines() if line.startswith(f"{key.prefix}."))
    assert key.scopes == ["consent:check"]
    assert key.key_hash == hashlib.sha256(plaintext.split(".", 1)[1].encode()).hexdigest()
    reference = _subject_of(_subject_user()).reference
    response = Client().get(CHECK, {"subject": reference, "purpose": MARKETING}, **_auth(plaintext))
    assert response.status_code == 200
    assert AuditEntry.objects.get(action="apikey.created").actor_type == "command"


def test_revoking_a_key_stops_it_at_once_and_twice_is_harmless() -> None:
    key, plaintext = apikeys.api_key_create(name="app-backend", scopes=[apikeys.CONSENT_CHECK])
    reference = _subject_of(_subject_user()).reference
    query = {"subject": reference, "purpose": MARKETING}
    assert Client().get(CHECK, query, **_auth(plaintext)).status_code == 200

    apikeys.api_key_revoke(key=key, actor=SYSTEM)
    apikeys.api_key_revoke(key=key, actor=SYSTEM)

    assert Client().get(CHECK, query, **_auth(plaintext)).status_code == 401
    assert AuditEntry.objects.filter(action="apikey.revoked").count() == 1


def test_a_key_revoked_elsewhere_stops_within_the_cache_time(settings: Any) -> None:
    """Another process revokes (here: the row changes behind this process's back): this
    process stops accepting the key once its cached copy is older than the setting."""
    settings.QUANYI_API_KEY_CACHE_SECONDS = 0.3
    key, plaintext = apikeys.api_key_create(name="app-backend", scopes=[apikeys.CONSENT_CHECK])
    query = {"subject": _subject_of(_subject_user()).reference, "purpose": MARKETING}
    assert Client().get(CHECK, query, **_auth(plaintext)).status_code == 200

    ApiKey.objects.filter(pk=key.pk).update(revoked_at=timezone.now())
    time.sleep(0.4)

    assert Client().get(CHECK, query, **_auth(plaintext)).status_code == 401


def test_without_the_cache_a_key_is_read_on_every_call(settings: Any) -> None:
    settings.QUANYI_API_KEY_CACHE_SECONDS = 0
    key, plaintext = apikeys.api_key_create(name="app-backend", scopes=[apikeys.CONSENT_CHECK])
    query = {"subject": _subject_of(_subject_user()).reference, "purpose": MARKETING}
    assert Client().get(CHECK, query, **_auth(plaintext)).status_code == 200

    ApiKey.objects.filter(pk=key.pk).update(revoked_at=timezone.now())

    assert Client().get(CHECK, query, **_auth(plaintext)).status_code == 401


def test_last_use_is_recorded_at_most_once_a_minute() -> None:
    key, plaintext = apikeys.api_key_create(name="app-backend", scopes=[apikeys.CONSENT_CHECK])
    query = {"subject": _subject_of(_subject_user()).reference, "purpose": MARKETING}
    start = timezone.now()

    def use(seconds: int) -> datetime | None:
        with time_machine.travel(start + timedelta(seconds=seconds), tick=False):
            assert Client().get(CHECK, query, **_auth(plaintext)).status_code == 200
        key.refresh_from_db()
        return key.last_used_at

    assert use(0) == start
    assert use(59) == start
    assert use(61) == start + timedelta(seconds=61)


def test_unknown_scopes_and_empty_names_are_refused() -> None:
    with translation.override("en"), pytest.raises(Exception, match="Unknown scope"):
        apikeys.api_key_create(name="x", scopes=["consent:write"])
    with translation.override("en"), pytest.raises(Exception, match="Name the service account"):
        apikeys.api_key_create(name="  ", scopes=[apikeys.CONSENT_CHECK])
    assert not ApiKey.objects.exists()


# --- Permissions -------------------------------------------------------------------------------

ENDPOINTS = ["list", "record", "history", "receipt", "policy", "receipt_key", "check", "bulk"]
SUBJECT_DENIED = {"list": 403, "record": 403, "history": 403, "receipt": 403}
PUBLIC_OK = {"policy": 200, "receipt_key": 200}
NO_KEY = {"check": 401, "bulk": 401}


@pytest.mark.parametrize(
    ("role", "expected"),
    [
        ("anonymous", {**SUBJECT_DENIED, **PUBLIC_OK, **NO_KEY}),
        ("subject", {"list": 200, "record": 201, "history": 200, "receipt": 200, **PUBLIC_OK, **NO_KEY}),
        (
            "other subject",
            {"list": 200, "record": 201, "history": 200, "receipt": 404, **PUBLIC_OK, **NO_KEY},
        ),
        (AGENT, {**SUBJECT_DENIED, **PUBLIC_OK, **NO_KEY}),
        (DPO, {**SUBJECT_DENIED, **PUBLIC_OK, **NO_KEY}),
        (AUDITOR, {**SUBJECT_DENIED, **PUBLIC_OK, **NO_KEY}),
        ("key with scope", {**SUBJECT_DENIED, **PUBLIC_OK, "check": 200, "bulk": 200}),
        ("key without scope", {**SUBJECT_DENIED, **PUBLIC_OK, "check": 403, "bulk": 403}),
        ("revoked key", {**SUBJECT_DENIED, **PUBLIC_OK, **NO_KEY}),
        ("garbage key", {**SUBJECT_DENIED, **PUBLIC_OK, **NO_KEY}),
    ],
)
def test_endpoint_permissions(role: str, expected: dict[str, int]) -> None:
    owner = _subject_user()
    event = _grant(owner)
    client, headers = Client(), {}
    if role == "subject":
        client.force_login(owner)
    elif role == "other subject":
        client.force_login(_subject_user())
    elif role in (AGENT, DPO, AUDITOR):
        client.force_login(factories.staff(role))
    elif role == "key with scope":
        headers = _auth(_key(apikeys.CONSENT_CHECK))
    elif role == "key without scope":
        headers = _auth(_key())
    elif role == "revoked key":
        key, plaintext = apikeys.api_key_create(name="old", scopes=[apikeys.CONSENT_CHECK])
        apikeys.api_key_revoke(key=key)
        headers = _auth(plaintext)
    elif role == "garbage key":
        headers = _auth("abcdefgh.not-the-secret")
    events, audit, subjects = (
        ConsentEvent.objects.count(),
        AuditEntry.objects.count(),
        DataSubject.objects.count(),
    )
    reference = _subject_of(owner).reference
    check = {"subject": reference, "purpose": MARKETING}

    listed = client.get(CONSENTS, **headers)
    got = {
        "list": listed.status_code,
        "record": _json(
            client, CONSENTS, {"purpose": MARKETING, "action": "withdraw"}, **headers
        ).status_code,
        "history": client.get(HISTORY, **headers).status_code,
        "receipt": client.get(_receipt_url(event.receipt_id), **headers).status_code,
        "policy": client.get(POLICY, **headers).status_code,
        "receipt_key": client.get(KEY, **headers).status_code,
        "check": client.get(CHECK, check, **headers).status_code,
        "bulk": _json(client, BULK, {"checks": [check]}, **headers).status_code,
    }

    assert got == expected
    assert DataSubject.objects.count() == subjects
    if expected["record"] != 201:
        assert ConsentEvent.objects.count() == events
    if role != "subject":
        assert ConsentEvent.objects.filter(subject__user=owner).count() == 1
        assert not AuditEntry.objects.filter(action="consent.receipt_downloaded").exists()
    if role not in ("subject", "other subject"):
        assert AuditEntry.objects.count() == audit
    if role == "other subject":
        assert str(event.receipt_id) not in listed.content.decode()


def test_a_session_never_reaches_the_consent_check(client: Client) -> None:
    client.force_login(factories.staff(DPO, is_superuser=True))
    reference = _subject_of(_subject_user()).reference

    response = client.get(CHECK, {"subject": reference, "purpose": MARKETING})

    assert response.status_code == 401
    assert response["WWW-Authenticate"] == "Api-Key"


@pytest.mark.parametrize(
    "header",
    ["Api-Key", "Api-Key a b", "Api-Key nodot", "Api-Key .secret", "Api-Key abcdefgh.", "Api-Key ééééééé.x"],
)
def test_malformed_key_headers_answer_401(header: str) -> None:
    response = Client().get(CHECK, {"subject": "DS-000001", "purpose": MARKETING}, HTTP_AUTHORIZATION=header)
    assert response.status_code == 401


# --- The schema --------------------------------------------------------------------------------


def test_the_schema_documents_every_endpoint_without_warnings(tmp_path: Path) -> None:
    target = tmp_path / "schema.yaml"
    call_command("spectacular", "--validate", "--fail-on-warn", "--file", str(target))
    schema = target.read_text()
    for path in (
        "/api/v1/consents/:",
        "/api/v1/consents/history/:",
        "/api/v1/consents/events/{receipt_id}/receipt/:",
        "/api/v1/policies/current/:",
        "/api/v1/receipt-key/:",
        "/api/v1/consent-check/:",
        "/api/v1/consent-check/bulk/:",
    ):
        assert path in schema
    assert "ApiKeyAuth" in schema


@pytest.mark.django_db(databases=ALL, transaction=True)
def test_the_check_survives_a_connection_that_died_between_requests() -> None:
    """The hot path skips Django's `SELECT 1` health check and lets its own statement find a
    dead connection: killed between two requests, the next check still answers (once
    reconnected), exactly as with the health check."""
    from django.core.signals import request_finished, request_started
    from django.db import connection

    if connection.vendor != "postgresql":
        pytest.skip("pg_terminate_backend is PostgreSQL's")
    import psycopg

    from core.db import database_url

    user = _subject_user()
    _grant(user)
    query = {"subject": _subject_of(user).reference, "purpose": MARKETING}
    auth = _service()
    assert Client().get(CHECK, query, **auth).json()["allowed"] is True
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_backend_pid()")
        (before,) = cursor.fetchone()
    request_finished.send(sender=None)  # the connection is kept (CONN_MAX_AGE) ...
    with psycopg.connect(database_url("default").replace("postgres://", "postgresql://")) as other:
        other.execute("SELECT pg_terminate_backend(%s)", [before])  # ... and dies in between

    request_started.send(sender=None)
    answer = Client().get(CHECK, query, **auth)

    assert answer.status_code == 200 and answer.json()["allowed"] is True
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_backend_pid()")
        assert cursor.fetchone()[0] != before


@pytest.mark.django_db(databases=ALL)
@pytest.mark.parametrize("enabled", [True, False])
def test_only_the_hot_path_statements_are_prepared(settings: Any, enabled: bool) -> None:
    """Django opens PostgreSQL connections with prepared statements off, which also silences
    psycopg's `prepare=True`: the check's statement must really be prepared (planning its join
    cost more than running it) — and the API key's lookup — and nothing else, however often it
    runs."""
    from django.db import connection

    if connection.vendor != "postgresql":
        pytest.skip("prepared statements are PostgreSQL's")
    settings.QUANYI_DB_PREPARED_STATEMENTS = enabled
    user = _subject_user()
    _grant(user)
    query = {"subject": _subject_of(user).reference, "purpose": MARKETING}
    auth = _service()
    for _ in range(8):
        assert Client().get(CHECK, query, **auth).json()["allowed"] is True
        assert DataSubject.objects.filter(pk=_subject_of(user).pk).exists()  # an ORM statement
    with connection.cursor() as cursor:
        cursor.execute("SELECT statement FROM pg_prepared_statements")
        prepared = [row[0] for row in cursor.fetchall()]
    if not enabled:
        assert prepared == []
        return
    # The API key's lookup (when not cached) and the check itself.
    assert len(prepared) == 2, prepared
    assert {"consent_apikey" in p for p in prepared} == {True, False}
    assert any("consent_consentstate" in p for p in prepared)


@pytest.mark.parametrize("case", ["granted", "withdrawn", "nothing", "contract"])
def test_the_short_path_answers_exactly_as_drf_does(case: str) -> None:
    """The common question skips DRF's machinery (`_answered_plainly`); its answer must be
    DRF's, byte for byte."""
    user = _subject_user()
    if case in ("granted", "withdrawn"):
        _grant(user)
    if case == "withdrawn":
        _grant(user, action="withdraw")
    code = SERVICE if case == "contract" else MARKETING
    query = {"subject": _subject_of(user).reference, "purpose": code}
    auth = _service()
    view = api.ConsentCheck.as_view()

    with time_machine.travel(timezone.now(), tick=False):
        short = api._answered_plainly(RequestFactory().get(CHECK, query, **auth))
        drf = view.__wrapped__(RequestFactory().get(CHECK, query, **auth))  # type: ignore[attr-defined]
        drf.render()

    assert short is not None
    assert (short.status_code, short.content) == (drf.status_code, drf.content)
    assert short["Content-Type"] == drf["Content-Type"]


@pytest.mark.parametrize(
    "trouble",
    ["no key", "bad key", "no scope", "unknown subject", "unknown purpose", "at", "malformed"],
)
def test_anything_but_the_plain_question_falls_through_to_drf(trouble: str) -> None:
    reference = _subject_of(_subject_user()).reference
    query = {"subject": reference, "purpose": MARKETING}
    auth = _service()
    if trouble == "no key":
        auth = {}
    if trouble == "bad key":
        auth = _auth("abcdefgh.not-the-secret")
    if trouble == "no scope":
        auth = _auth(apikeys.api_key_create(name="other", scopes=[])[1])
    if trouble == "unknown subject":
        query["subject"] = "DS-999999"
    if trouble == "unknown purpose":
        query["purpose"] = "no_such_purpose"
    if trouble == "at":
        query["at"] = timezone.now().isoformat()
    if trouble == "malformed":
        query["subject"] = "DS-" + "9" * 40

    assert api._answered_plainly(RequestFactory().get(CHECK, query, **auth)) is None
