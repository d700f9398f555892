from __future__ import annotations

from datetime import timedelta

import pytest
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from consent.models import PolicyResponse, PolicyVersion
from core.models import AuditEntry
from tests import factories
from tests.conftest import ALL

pytestmark = pytest.mark.django_db(databases=ALL)


def _policy(version: int, *, material: bool, days_ago: int) -> PolicyVersion:
    at = timezone.now() - timedelta(days=days_ago)
    return PolicyVersion.objects.create(
        version=version,
        title_zh="隐私政策",
        title_en="Privacy policy",
        body_zh=f"第{version}版",
        body_en=f"version {version}",
        summary_zh="新增研究目的",
        summary_en="Adds a research purpose",
        material=material,
        change_kind="service_model" if material else "",
        effective_at=at,
        published_at=at,
    )


def _existing_subject_client(client: Client, *, joined_days_ago: int = 30) -> tuple[Client, object]:
    user = factories.UserFactory()
    subject = factories.subject(user=user)
    type(subject).objects.filter(pk=subject.pk).update(
        created_at=timezone.now() - timedelta(days=joined_days_ago)
    )
    client.force_login(user)
    return client, subject


def test_a_material_change_is_shown_until_accepted(client: Client) -> None:
    _policy(1, material=False, days_ago=400)
    _policy(2, material=True, days_ago=3)
    client, subject = _existing_subject_client(client)

    page = client.get(reverse("portal:home"), HTTP_ACCEPT_LANGUAGE="en")
    assert 'id="policy-notice"' in page.content.decode()
    assert "Adds a research purpose" in page.content.decode()
    assert "?a=1&amp;b=2" in page.content.decode()

    answer = client.post(reverse("consent:policy_respond"), {"version": "2", "decision": "accept"})
    again = client.post(reverse("consent:policy_respond"), {"version": "2", "decision": "decline"})

    assert answer.status_code == 302 and again.status_code == 200
    response = PolicyResponse.objects.get(subject=subject)
    assert response.decision == "accept"  # the first answer stands
    assert AuditEntry.objects.filter(action="policy.accept").count() == 1
    assert 'id="policy-notice"' not in client.get(reverse("portal:home")).content.decode()


def test_declining_offers_cancellation_instead_of_blocking(client: Client) -> None:
    _policy(2, material=True, days_ago=3)
    client, subject = _existing_subject_client(client)

    page = client.post(reverse("consent:policy_respond"), {"version": "2", "decision": "decline"})

    assert page.status_code == 200
    assert reverse("cancellation:start") in page.content.decode()  # self-service, with a cooling-off
    assert PolicyResponse.objects.get(subject=subject).decision == "decline"
    assert client.get(reverse("portal:home")).status_code == 200  # the portal still works


@pytest.mark.parametrize(
    "case",
    ["not material", "joined after", "staff", "anonymous"],
)
def test_no_notice_when_there_is_nothing_to_answer(client: Client, case: str) -> None:
    _policy(2, material=case != "not material", days_ago=3)
    if case == "staff":
        client.force_login(factories.staff("agent"))
    elif case != "anonymous":
        _existing_subject_client(client, joined_days_ago=1 if case == "joined after" else 30)

    page = client.get(reverse("portal:home"))

    assert 'id="policy-notice"' not in page.content.decode()


@pytest.mark.parametrize(
    "data",
    [
        {},
        {"version": "2"},
        {"version": "2", "decision": "maybe"},
        {"version": "x", "decision": "accept"},
        {"version": "9", "decision": "accept"},
    ],
)
def test_a_malformed_answer_is_refused_and_records_nothing(client: Client, data: dict[str, str]) -> None:
    _policy(2, material=True, days_ago=3)
    client, _subject = _existing_subject_client(client)

    response = client.post(reverse("consent:policy_respond"), data)

    assert response.status_code == 400
    assert not PolicyResponse.objects.exists()


def test_answering_needs_a_signed_in_subject(client: Client) -> None:
    _policy(2, material=True, days_ago=3)
    anonymous = client.post(reverse("consent:policy_respond"), {"version": "2", "decision": "accept"})
    client.force_login(factories.staff("dpo"))
    staff = client.post(reverse("consent:policy_respond"), {"version": "2", "decision": "accept"})

    assert anonymous.status_code == 302
    assert staff.status_code == 403
    assert not PolicyResponse.objects.exists()


def test_the_demo_patient_is_shown_the_material_change_notice(client: Client) -> None:
    from consent import demo

    user = factories.UserFactory(email=demo.DEMO_SUBJECT_EMAIL)
    factories.subject(user=user)
    demo.load_demo()
    client.force_login(user)

    assert 'id="policy-notice"' in client.get(reverse("portal:home")).content.decode()
