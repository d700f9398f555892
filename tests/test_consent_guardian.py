"""A guardian acts for a child under 14 in the portal (seed 000 §5, PIPL Art. 31): the list of
children, the child's switches, history and receipts, and who may not see them."""

from __future__ import annotations

from typing import Any, cast

import pytest
from django.contrib.messages import get_messages
from django.http import HttpResponse
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from accounts.models import DataSubject, User
from consent.demo import load_demo
from consent.models import ConsentEvent, ConsentState, GuardianConsent, Purpose
from consent.services import guardian_consent_record, may_process
from core.audit import SYSTEM
from core.models import AuditEntry
from tests import factories
from tests.conftest import ALL

pytestmark = pytest.mark.django_db(databases=ALL)

CHILD_BIRTH = "2016-05-01"


@pytest.fixture
def loaded() -> dict[str, int]:
    return load_demo()


def subject_user(**fields: Any) -> User:
    user = cast(User, factories.UserFactory())
    factories.subject(user=user, **fields)
    return user


@pytest.fixture
def guardian() -> User:
    return subject_user()


@pytest.fixture
def child_user() -> User:
    """The child's own account."""
    return subject_user(full_name="王小明", birth_date=CHILD_BIRTH)


@pytest.fixture
def child(child_user: User) -> DataSubject:
    return DataSubject.objects.get(user=child_user)


@pytest.fixture
def guardianship(loaded: dict[str, int], child: DataSubject, guardian: User) -> GuardianConsent:
    return guardian_consent_record(
        subject=child,
        actor=SYSTEM,
        guardian_name="王大明",
        relationship="父亲",
        guardian_contact=guardian.email,
        verification=GuardianConsent.Verification.ACCOUNT,
        guardian_user=guardian,
    )


def child_url(child: DataSubject) -> str:
    return reverse("consent:child", args=[child.pk])


def post_choice(client: Client, child: DataSubject, purpose: str, action: str, **extra: str) -> HttpResponse:
    return cast(
        HttpResponse,
        client.post(
            child_url(child), {"purpose": purpose, "action": action, **extra}, HTTP_ACCEPT_LANGUAGE="en"
        ),
    )


def texts(response: HttpResponse) -> list[str]:
    return [str(m) for m in get_messages(response.wsgi_request)]  # type: ignore[attr-defined]


def test_the_guardian_sees_the_child_in_the_list_and_on_the_consents_page(
    client: Client, guardianship: GuardianConsent, guardian: User, child: DataSubject
) -> None:
    client.force_login(guardian)

    listing = client.get(reverse("consent:children"), HTTP_ACCEPT_LANGUAGE="en").content.decode()
    mine = client.get(reverse("consent:mine"), HTTP_ACCEPT_LANGUAGE="en").content.decode()

    for html in (listing, mine):
        assert "Children in my care" in html
        assert f'href="{child_url(child)}"' in html and "王小明" in html


def test_the_pages_are_chinese_by_default(
    client: Client, guardianship: GuardianConsent, guardian: User, child: DataSubject
) -> None:
    client.force_login(guardian)

    listing = client.get(reverse("consent:children")).content.decode()
    page = client.get(child_url(child)).content.decode()

    assert "我监护的儿童" in listing
    assert "监护人" in page and "营销推送消息" in page


def test_the_guardian_grants_and_withdraws_for_the_child_and_the_ledger_says_so(
    client: Client, guardianship: GuardianConsent, guardian: User, child: DataSubject
) -> None:
    client.force_login(guardian)
    marketing = Purpose.objects.get(code="marketing_push")
    assert may_process(subject=child, purpose=marketing).allowed is False

    granted = post_choice(client, child, "marketing_push", "grant")

    assert granted.status_code == 302 and granted["Location"] == child_url(child)
    assert any("is recorded" in t for t in texts(granted))
    event = ConsentEvent.objects.get(subject=child)
    assert (event.action, event.channel, event.actor_id) == ("grant", "guardian", guardian.pk)
    assert may_process(subject=child, purpose=marketing).allowed is True
    entry = AuditEntry.objects.get(action="consent.grant", object_id=str(child.pk))
    assert (entry.actor_type, entry.actor_id, entry.data["channel"]) == ("user", str(guardian.pk), "guardian")

    post_choice(client, child, "marketing_push", "withdraw")

    assert may_process(subject=child, purpose=marketing).allowed is False
    assert list(
        ConsentEvent.objects.filter(subject=child).order_by("id").values_list("action", "channel")
    ) == [
        ("grant", "guardian"),
        ("withdraw", "guardian"),
    ]
    # The guardian's own consents are untouched.
    assert not ConsentEvent.objects.filter(subject__user=guardian).exists()


def test_a_sensitive_purpose_still_needs_the_separate_checkbox(
    client: Client, guardianship: GuardianConsent, guardian: User, child: DataSubject
) -> None:
    client.force_login(guardian)

    refused = post_choice(client, child, "doctor_view_health", "grant")

    assert refused.status_code == 302
    assert any("separate" in t for t in texts(refused))
    assert not ConsentEvent.objects.filter(subject=child).exists()

    post_choice(client, child, "doctor_view_health", "grant", separate="on")

    event = ConsentEvent.objects.get(subject=child)
    assert (event.separate, event.channel) == (True, "guardian")


def test_bad_input_is_a_message_not_an_error(
    client: Client, guardianship: GuardianConsent, guardian: User, child: DataSubject
) -> None:
    client.force_login(guardian)

    for data in (
        {"purpose": "no_such_purpose", "action": "grant"},
        {"purpose": "account_service", "action": "x"},
    ):
        response = client.post(child_url(child), data, HTTP_ACCEPT_LANGUAGE="en")
        assert response.status_code == 302
        assert any("could not be saved" in t for t in texts(response))
    assert not ConsentEvent.objects.filter(subject=child).exists()


def test_the_history_and_receipts_of_the_child_are_open_to_the_guardian(
    client: Client, guardianship: GuardianConsent, guardian: User, child: DataSubject
) -> None:
    client.force_login(guardian)
    post_choice(client, child, "marketing_push", "grant")
    event = ConsentEvent.objects.get(subject=child)

    html = client.get(child_url(child), HTTP_ACCEPT_LANGUAGE="en").content.decode()
    receipt = client.get(reverse("consent:receipt", args=[event.receipt_id]))

    assert reverse("consent:receipt", args=[event.receipt_id]) in html
    assert receipt.status_code == 200
    assert AuditEntry.objects.get(action="consent.receipt_downloaded").actor_id == str(guardian.pk)


@pytest.mark.parametrize("who", ["other_user", "child_itself", "staff"])
def test_anyone_but_the_guardian_gets_404(
    client: Client, guardianship: GuardianConsent, child: DataSubject, child_user: User, who: str
) -> None:
    users = {
        "other_user": subject_user,
        "child_itself": lambda: child_user,
        "staff": lambda: factories.staff("dpo"),
    }
    client.force_login(users[who]())

    assert client.get(child_url(child)).status_code == 404
    assert client.post(child_url(child), {"purpose": "marketing_push", "action": "grant"}).status_code == 404
    assert not ConsentEvent.objects.filter(subject=child).exists()


def test_the_anonymous_visitor_is_sent_to_sign_in(
    client: Client, guardianship: GuardianConsent, child: DataSubject
) -> None:
    response = client.get(child_url(child))

    assert response.status_code == 302 and response["Location"].startswith(reverse("account_login"))


def test_after_the_guardian_consent_is_revoked_the_guardian_gets_404(
    client: Client, guardianship: GuardianConsent, guardian: User, child: DataSubject
) -> None:
    client.force_login(guardian)
    post_choice(client, child, "marketing_push", "grant")
    event = ConsentEvent.objects.get(subject=child)
    GuardianConsent.objects.filter(pk=guardianship.pk).update(revoked_at=timezone.now())

    assert client.get(child_url(child)).status_code == 404
    assert post_choice(client, child, "marketing_push", "withdraw").status_code == 404
    assert client.get(reverse("consent:receipt", args=[event.receipt_id])).status_code == 404
    assert 'id="children"' not in client.get(reverse("consent:mine")).content.decode()
    assert ConsentEvent.objects.filter(subject=child).count() == 1


def test_the_childs_own_account_is_unaffected(
    client: Client, guardianship: GuardianConsent, guardian: User, child: DataSubject, child_user: User
) -> None:
    guardian_client = Client()
    guardian_client.force_login(guardian)
    post_choice(guardian_client, child, "marketing_push", "grant")
    client.force_login(child_user)

    html = client.get(reverse("consent:mine"), HTTP_ACCEPT_LANGUAGE="en").content.decode()

    assert "My consents" in html and 'id="children"' not in html
    assert "guardian" in html.split('id="history"', 1)[1]
    assert ConsentState.objects.get(subject=child, purpose__code="marketing_push").granted is True
    assert DataSubject.objects.get(user=child_user).pk == child.pk


def test_a_post_without_the_csrf_token_is_refused(
    guardianship: GuardianConsent, guardian: User, child: DataSubject
) -> None:
    client = Client(enforce_csrf_checks=True)
    client.force_login(guardian)

    response = client.post(child_url(child), {"purpose": "marketing_push", "action": "grant"})

    assert response.status_code == 403
    assert not ConsentEvent.objects.filter(subject=child).exists()
