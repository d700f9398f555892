"""The consent pages a person sees (their choices, history and receipts), the public privacy
policy pages, the consent admin, and the demo data behind them."""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any, cast
from zoneinfo import ZoneInfo

import pytest
from django.contrib.messages import get_messages
from django.http import HttpResponse
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from accounts.models import DataSubject, User
from accounts.roles import AGENT, AUDITOR, DPO
from consent import demo, receipts
from consent.demo import load_demo
from consent.models import (
    ApiKey,
    ConsentEvent,
    ConsentState,
    GuardianConsent,
    PolicyVersion,
    Purpose,
)
from consent.services import consent_record
from consent.views import diff_rows, policy_blocks
from core.audit import Actor
from core.models import AuditEntry
from tests import factories
from tests.conftest import ALL

pytestmark = pytest.mark.django_db(databases=ALL)

SHANGHAI = ZoneInfo("Asia/Shanghai")
MINE = "consent:mine"
OPTIONAL = ["doctor_view_health", "troubleshooting", "research_deidentified", "marketing_push"]
STAFF_ROLES = [AGENT, DPO, AUDITOR]


@pytest.fixture
def loaded() -> dict[str, int]:
    return load_demo()


def subject_user(**kwargs: Any) -> User:
    user = cast(User, factories.UserFactory(**kwargs))
    factories.subject(user=user)
    return user


def subject_of(user: User) -> DataSubject:
    return DataSubject.objects.get(user=user)


def texts(response: HttpResponse) -> list[str]:
    return [str(m) for m in get_messages(response.wsgi_request)]  # type: ignore[attr-defined]


def post_choice(client: Client, purpose: str, action: str, **extra: str) -> HttpResponse:
    return cast(
        HttpResponse,
        client.post(
            reverse(MINE),
            {"purpose": purpose, "action": action, **extra},
            REMOTE_ADDR="203.0.113.77",
            HTTP_USER_AGENT="pytest browser",
            HTTP_ACCEPT_LANGUAGE="en",
        ),
    )


def grant(user: User, code: str, **kwargs: Any) -> ConsentEvent:
    return consent_record(
        subject=subject_of(user),
        purpose=Purpose.objects.get(code=code),
        action=ConsentEvent.Action.GRANT,
        channel=ConsentEvent.Channel.WEB,
        actor=Actor.of(user),
        user=user,
        **kwargs,
    )


def login_as(client: Client, role: str, owner: User) -> User | None:
    if role == "anonymous":
        return None
    if role == "subject":
        user = owner
    elif role == "other_subject":
        user = subject_user()
    else:
        user = factories.staff(role)
    client.force_login(user)
    return user


def redirected_to_login(response: HttpResponse) -> bool:
    return response.status_code == 302 and response["Location"].startswith(reverse("account_login"))


# --- My consents ---------------------------------------------------------------------------------


def test_the_consents_page_has_switches_only_for_optional_consent_purposes(
    client: Client, loaded: dict[str, int]
) -> None:
    client.force_login(subject_user())

    html = client.get(reverse(MINE), HTTP_ACCEPT_LANGUAGE="en").content.decode()

    assert html.count('class="consent-switch"') == len(OPTIONAL)
    for code in OPTIONAL:
        assert f'<input type="hidden" name="purpose" value="{code}">' in html
    for code in ["account_service", "order_delivery"]:
        assert f'name="purpose" value="{code}"' not in html
        section = html.split(f'id="purpose-{code}"', 1)[1].split("</li>", 1)[0]
        assert "Needed for the service" in section
        assert "necessary for a contract with the individual" in section
    assert 'id="no-cost"' in html and "never costs you the service" in html
    # Only the sensitive purpose asks for the separate consent.
    assert html.count('name="separate"') == 1
    assert 'id="separate-doctor_view_health"' in html
    assert 'id="no-history"' in html
    assert reverse("consent:receipt_key") in html


def test_the_consents_page_is_chinese_by_default(client: Client, loaded: dict[str, int]) -> None:
    client.force_login(subject_user())

    html = client.get(reverse(MINE)).content.decode()

    assert "营销推送消息" in html and "医生查看健康信息" in html


def test_grant_then_withdraw_moves_the_state_and_appends_two_events(
    client: Client, loaded: dict[str, int]
) -> None:
    user = subject_user()
    subject = subject_of(user)
    client.force_login(user)

    granted = post_choice(client, "marketing_push", "grant")

    assert granted.status_code == 302 and granted["Location"] == reverse(MINE)
    state = ConsentState.objects.get(subject=subject, purpose__code="marketing_push")
    assert state.granted is True
    assert any("is recorded" in t for t in texts(granted))

    withdrawn = post_choice(client, "marketing_push", "withdraw")

    state.refresh_from_db()
    assert state.granted is False
    events = list(ConsentEvent.objects.filter(subject=subject).order_by("occurred_at", "id"))
    assert [(e.purpose.code, e.action) for e in events] == [
        ("marketing_push", "grant"),
        ("marketing_push", "withdraw"),
    ]
    assert {(e.channel, e.evidence_ip, e.evidence_user_agent, e.actor_id) for e in events} == {
        ("web", "203.0.113.0/24", "pytest browser", user.pk)
    }
    assert all(e.policy_version.version == 2 for e in events)
    assert any("withdrawn" in t for t in texts(withdrawn))
    assert list(
        AuditEntry.objects.filter(object_id=str(subject.pk), action__startswith="consent.")
        .order_by("seq")
        .values_list("action", flat=True)
    ) == ["consent.grant", "consent.withdraw"]

    html = client.get(reverse(MINE), HTTP_ACCEPT_LANGUAGE="en").content.decode()
    history = html.split('id="history"', 1)[1]
    assert history.count('class="receipt-link"') == 2
    # Newest first.
    assert history.index("consent-event-withdraw") < history.index("consent-event-grant")


def test_granting_twice_records_one_event(client: Client, loaded: dict[str, int]) -> None:
    user = subject_user()
    client.force_login(user)

    post_choice(client, "troubleshooting", "grant")
    again = post_choice(client, "troubleshooting", "grant")

    assert ConsentEvent.objects.filter(subject=subject_of(user)).count() == 1
    assert any("Nothing changed" in t for t in texts(again))


def test_a_sensitive_purpose_without_the_separate_checkbox_records_nothing(
    client: Client, loaded: dict[str, int]
) -> None:
    user = subject_user()
    subject = subject_of(user)
    client.force_login(user)
    audit_before = AuditEntry.objects.count()

    response = post_choice(client, "doctor_view_health", "grant")

    assert response.status_code == 302
    assert any("separate, explicit consent" in t for t in texts(response))
    assert not ConsentEvent.objects.filter(subject=subject).exists()
    assert not ConsentState.objects.filter(subject=subject).exists()
    assert AuditEntry.objects.count() == audit_before

    post_choice(client, "doctor_view_health", "grant", separate="on")

    state = ConsentState.objects.get(subject=subject, purpose__code="doctor_view_health")
    assert (state.granted, state.separate, state.event.separate) == (True, True, True)


@pytest.mark.parametrize(
    "data",
    [
        {"purpose": "account_service", "action": "grant"},  # contract: nothing to switch
        {"purpose": "order_delivery", "action": "withdraw"},
        {"purpose": "marketing_push", "action": "expire"},  # not a choice a person makes
        {"purpose": "no_such_purpose", "action": "grant"},
        {"action": "grant"},
    ],
)
def test_choices_that_are_not_switches_are_refused_without_a_change(
    client: Client, loaded: dict[str, int], data: dict[str, str]
) -> None:
    user = subject_user()
    client.force_login(user)

    response = client.post(reverse(MINE), data, HTTP_ACCEPT_LANGUAGE="en")

    assert response.status_code == 302
    assert any("could not be saved" in t for t in texts(cast(HttpResponse, response)))
    assert not ConsentEvent.objects.filter(subject=subject_of(user)).exists()


def test_an_inactive_purpose_is_refused_with_a_message(client: Client, loaded: dict[str, int]) -> None:
    user = subject_user()
    client.force_login(user)
    Purpose.objects.filter(code="marketing_push").update(active=False)

    response = post_choice(client, "marketing_push", "grant")

    assert response.status_code == 302
    assert texts(response) == ["This choice could not be saved. Reload the page and try again."]
    assert not ConsentEvent.objects.exists()


def test_without_a_published_policy_the_error_is_a_message_not_a_500(client: Client) -> None:
    load_demo()
    PolicyVersion.objects.update(published_at=None)
    user = subject_user()
    client.force_login(user)

    response = post_choice(client, "marketing_push", "grant")

    assert response.status_code == 302
    assert any("No privacy policy is published yet" in t for t in texts(response))
    assert not ConsentEvent.objects.exists()


# --- Receipts ------------------------------------------------------------------------------------


def test_the_owner_downloads_a_receipt_that_verifies(client: Client, loaded: dict[str, int]) -> None:
    user = subject_user()
    event = grant(user, "doctor_view_health", separate=True)
    client.force_login(user)

    response = client.get(reverse("consent:receipt", args=[event.receipt_id]))

    assert response.status_code == 200
    assert response["Content-Type"].startswith("application/json")
    assert (
        response["Content-Disposition"] == f'attachment; filename="consent-receipt-{event.receipt_id}.json"'
    )
    assert "no-store" in response["Cache-Control"]
    signed = json.loads(response.content)
    assert receipts.receipt_verify(signed) is True
    body = signed["receipt"]
    assert body["receipt_id"] == str(event.receipt_id)
    assert body["principal"] == {"id": subject_of(user).reference}
    assert body["purposes"][0]["code"] == "doctor_view_health"
    assert body["purposes"][0]["separate_consent"] is True
    assert body["notice"]["policy_version"] == 2
    tampered = {**signed, "receipt": {**body, "event": {**body["event"], "type": "withdraw"}}}
    assert receipts.receipt_verify(tampered) is False
    entry = AuditEntry.objects.get(action="consent.receipt_downloaded")
    assert (entry.actor_type, entry.actor_id) == ("user", str(user.pk))
    assert entry.data == {
        "event": event.pk,
        "receipt_id": str(event.receipt_id),
        "purpose": "doctor_view_health",
    }


def test_someone_elses_receipt_is_not_found(client: Client, loaded: dict[str, int]) -> None:
    owner = subject_user()
    event = grant(owner, "marketing_push")
    client.force_login(subject_user())

    response = client.get(reverse("consent:receipt", args=[event.receipt_id]))

    assert response.status_code == 404
    assert not AuditEntry.objects.filter(action="consent.receipt_downloaded").exists()


def test_the_public_key_is_published_and_checks_receipts(client: Client) -> None:
    response = client.get(reverse("consent:receipt_key"))

    assert response.status_code == 200
    assert response.content.decode() == receipts.public_key_pem()
    assert reverse("consent:receipt_key") == "/.well-known/quanyi-receipt-key.pem"


# --- The privacy policy ----------------------------------------------------------------------------


def test_the_policy_page_shows_the_current_version_in_the_request_language(
    client: Client, loaded: dict[str, int]
) -> None:
    v2 = PolicyVersion.objects.get(version=2)
    day = v2.effective_at.astimezone(SHANGHAI).date().isoformat()

    zh = client.get(reverse("consent:policy")).content.decode()
    en = client.get(reverse("consent:policy"), HTTP_ACCEPT_LANGUAGE="en").content.decode()

    assert "博联众科(武汉)科技有限公司" in zh
    assert "去标识化数据的研究使用" in zh
    assert "Bolian Zhongke (Wuhan) Technology" not in zh
    assert f"Version 2, effective {day}" in en
    assert "<h2>4. Your rights</h2>" in en
    assert "<h3>4.4 Change the scope of your consent</h3>" in en
    assert "Research with de-identified data." in en
    assert "Material change: (1) major change of the service model" in en
    assert f"{reverse('consent:policy_diff')}?a=1&amp;b=2" in en


def test_a_version_that_is_not_yet_effective_is_not_the_current_one(client: Client) -> None:
    load_demo()
    PolicyVersion.objects.filter(version=2).update(effective_at=timezone.now() + timedelta(days=10))

    en = client.get(reverse("consent:policy"), HTTP_ACCEPT_LANGUAGE="en").content.decode()
    history = client.get(reverse("consent:policy_history"), HTTP_ACCEPT_LANGUAGE="en").content.decode()

    assert "Version 1, effective 2024-07-10" in en
    assert "Research with de-identified data." not in en
    assert "upcoming" in history.split('id="version-2"', 1)[1].split("</li>", 1)[0]


def test_the_policy_page_without_a_policy(client: Client) -> None:
    response = client.get(reverse("consent:policy"), HTTP_ACCEPT_LANGUAGE="en")

    assert response.status_code == 200
    assert 'id="no-policy"' in response.content.decode()


def test_the_history_lists_published_versions_with_their_changes(
    client: Client, loaded: dict[str, int]
) -> None:
    PolicyVersion.objects.create(
        version=3,
        title_zh="隐私政策(草稿)",
        title_en="Privacy policy (draft)",
        body_zh="草稿",
        body_en="draft",
        effective_at=timezone.now() + timedelta(days=30),
    )

    html = client.get(reverse("consent:policy_history"), HTTP_ACCEPT_LANGUAGE="en").content.decode()

    assert 'id="version-2"' in html and 'id="version-1"' in html
    assert 'id="version-3"' not in html and "draft" not in html
    assert html.index('id="version-2"') < html.index('id="version-1"')
    v2 = html.split('id="version-2"', 1)[1].split("</li>", 1)[0]
    assert "in force" in v2 and "material change" in v2
    assert "(1) major change of the service model" in v2
    assert demo.V2_SUMMARY_EN in v2
    assert f"{reverse('consent:policy_diff')}?a=1&amp;b=2" in v2
    v1 = html.split('id="version-1"', 1)[1].split("</li>", 1)[0]
    assert "First version." in v1 and "material change" not in v1


def test_the_diff_shows_what_version_2_added(client: Client, loaded: dict[str, int]) -> None:
    url = reverse("consent:policy_diff")

    en = client.get(url, {"a": 1, "b": 2}, HTTP_ACCEPT_LANGUAGE="en")
    zh = client.get(url, {"a": 1, "b": 2})
    back = client.get(url, {"a": 2, "b": 1}, HTTP_ACCEPT_LANGUAGE="en")

    assert en.status_code == zh.status_code == back.status_code == 200
    html = en.content.decode()
    added = [row.split("<ins>", 1)[1].split("</ins>", 1)[0] for row in html.split('class="diff-added"')[1:]]
    assert len(added) == 3
    assert added[1] == demo.V2_RESEARCH_EN and added[2] == demo.V2_RECIPIENT_EN
    assert html.count('class="diff-removed"') == 1
    assert "<del>Last updated: 10 July 2024</del>" in html
    assert 'class="diff-skip"' in html and 'class="diff-same"' in html
    assert "3 paragraphs added" in html and "1 paragraph removed" in html
    assert demo.V2_SUMMARY_EN in html
    assert demo.V2_RESEARCH_ZH in zh.content.decode()
    reverse_html = back.content.decode()
    assert reverse_html.count('class="diff-removed"') == 3
    assert f"<del>{demo.V2_RESEARCH_EN}</del>" in reverse_html


@pytest.mark.parametrize(
    "query",
    [
        {},
        {"a": 1},
        {"a": "x", "b": 2},
        {"a": 0, "b": 2},
        {"a": -1, "b": 2},
        {"a": "1.5", "b": 2},
        {"a": "9" * 30, "b": 1},
    ],
)
def test_bad_diff_parameters_answer_400(
    client: Client, loaded: dict[str, int], query: dict[str, Any]
) -> None:
    response = client.get(reverse("consent:policy_diff"), query, HTTP_ACCEPT_LANGUAGE="en")

    assert response.status_code == 400
    assert 'id="diff-error"' in response.content.decode()
    assert "Choose two version numbers" in response.content.decode()


def test_unknown_or_unpublished_versions_answer_404(client: Client, loaded: dict[str, int]) -> None:
    PolicyVersion.objects.create(
        version=3,
        title_zh="草稿",
        title_en="draft",
        body_zh="草稿",
        body_en="draft",
        effective_at=timezone.now(),
    )
    url = reverse("consent:policy_diff")

    assert client.get(url, {"a": 1, "b": 99}).status_code == 404
    assert client.get(url, {"a": 2, "b": 3}).status_code == 404


def test_policy_blocks_and_diff_rows() -> None:
    blocks = policy_blocks(
        "Privacy policy\n\n1. Who we are\n\n1.1 Scope\n\nText.\n\n· an item", "Privacy policy"
    )
    assert [(b.kind, b.text) for b in blocks] == [
        ("h2", "1. Who we are"),
        ("h3", "1.1 Scope"),
        ("p", "Text."),
        ("li", "an item"),
    ]
    old = "\n\n".join(f"p{i}" for i in range(10))
    new = old.replace("p5", "p5 changed")
    rows = diff_rows(old, new, context=1)
    assert [(r.kind, r.a, r.b, r.text, r.folded) for r in rows] == [
        ("skip", None, None, "", 4),
        ("same", 5, 5, "p4", 0),
        ("removed", 6, None, "p5", 0),
        ("added", None, 6, "p5 changed", 0),
        ("same", 7, 7, "p6", 0),
        ("skip", None, None, "", 3),
    ]
    assert diff_rows(old, old) == []


# --- Who may see what --------------------------------------------------------------------------------

ROLES = ["anonymous", "subject", "other_subject", *STAFF_ROLES]


@pytest.mark.parametrize("role", ROLES)
def test_permission_matrix(client: Client, loaded: dict[str, int], role: str) -> None:
    owner = subject_user()
    event = grant(owner, "marketing_push")
    login_as(client, role, owner)

    mine = client.get(reverse(MINE))
    post = client.post(reverse(MINE), {"purpose": "troubleshooting", "action": "grant"})
    receipt = client.get(reverse("consent:receipt", args=[event.receipt_id]))
    public = [
        client.get(reverse("consent:policy")).status_code,
        client.get(reverse("consent:policy_history")).status_code,
        client.get(reverse("consent:policy_diff"), {"a": 1, "b": 2}).status_code,
        client.get(reverse("consent:receipt_key")).status_code,
    ]

    assert public == [200, 200, 200, 200]
    if role == "anonymous":
        assert redirected_to_login(cast(HttpResponse, mine))
        assert redirected_to_login(cast(HttpResponse, post))
        assert redirected_to_login(cast(HttpResponse, receipt))
    elif role == "subject":
        assert (mine.status_code, post.status_code, receipt.status_code) == (200, 302, 200)
    elif role == "other_subject":
        assert (mine.status_code, post.status_code, receipt.status_code) == (200, 302, 404)
        assert "marketing_push" not in mine.content.decode().split('id="history"', 1)[1]
    else:
        assert (mine.status_code, post.status_code, receipt.status_code) == (403, 403, 403)
    # Only the owner's own POST changed anything, and only for themselves.
    changed = role in ("subject", "other_subject")
    assert ConsentEvent.objects.filter(purpose__code="troubleshooting").count() == int(changed)
    assert ConsentEvent.objects.filter(subject=subject_of(owner)).count() == 1 + (role == "subject")


def test_the_home_page_links_to_the_consents(client: Client, loaded: dict[str, int]) -> None:
    anonymous = client.get(reverse("portal:home")).content.decode()
    client.force_login(subject_user())
    signed_in = client.get(reverse("portal:home")).content.decode()

    assert reverse("consent:policy") in anonymous and reverse(MINE) not in anonymous
    assert 'id="consents"' in signed_in and reverse(MINE) in signed_in


# --- Admin ---------------------------------------------------------------------------------------------


def admin_url(model: str, view: str, *args: Any) -> str:
    return reverse(f"admin:consent_{model}_{view}", args=args)


def purpose_form(purpose: Purpose, **changes: Any) -> dict[str, Any]:
    data: dict[str, Any] = {
        "name_zh": purpose.name_zh,
        "name_en": purpose.name_en,
        "description_zh": purpose.description_zh,
        "description_en": purpose.description_en,
        "legal_basis": purpose.legal_basis,
        "categories": json.dumps(purpose.categories),
        "recipients": json.dumps(purpose.recipients, ensure_ascii=False),
        # Fields with a callable default carry their initial value in a hidden input.
        "initial-categories": json.dumps(purpose.categories),
        "initial-recipients": json.dumps(purpose.recipients, ensure_ascii=False),
        "retention": purpose.retention,
        "active": "on" if purpose.active else "",
        "order": purpose.order,
    }
    for flag in ("required", "sensitive", "marketing"):
        if getattr(purpose, flag):
            data[flag] = "on"
    data.update(changes)
    return {k: v for k, v in data.items() if v != ""}


@pytest.mark.parametrize("role", STAFF_ROLES)
def test_the_ledger_is_read_only_in_the_admin(client: Client, loaded: dict[str, int], role: str) -> None:
    owner = subject_user()
    event = grant(owner, "marketing_push")
    client.force_login(factories.staff(role))

    listing = client.get(admin_url("consentevent", "changelist"))
    detail = client.get(admin_url("consentevent", "change", event.pk))
    change = client.post(admin_url("consentevent", "change", event.pk), {"action": "withdraw"})
    add = client.get(admin_url("consentevent", "add"))
    delete = client.post(admin_url("consentevent", "delete", event.pk), {"post": "yes"})
    bulk = client.post(
        admin_url("consentevent", "changelist"),
        {"action": "delete_selected", "_selected_action": [event.pk], "post": "yes"},
    )

    assert listing.status_code == detail.status_code == 200
    assert 'name="_save"' not in detail.content.decode()
    assert (change.status_code, add.status_code, delete.status_code) == (403, 403, 403)
    assert bulk.status_code in (200, 302)
    assert ConsentEvent.objects.filter(pk=event.pk, action="grant").count() == 1
    assert client.get(admin_url("consentstate", "changelist")).status_code == 200
    state = ConsentState.objects.get(event=event)
    assert client.post(admin_url("consentstate", "change", state.pk), {"granted": ""}).status_code == 403


def test_the_ledger_is_searched_by_subject_number(client: Client, loaded: dict[str, int]) -> None:
    mine_user, other_user = subject_user(), subject_user()
    mine, other = grant(mine_user, "marketing_push"), grant(other_user, "marketing_push")
    client.force_login(factories.staff(DPO))
    changelist = admin_url("consentevent", "changelist")

    found = client.get(changelist, {"q": subject_of(mine_user).reference}).content.decode()
    by_number = client.get(changelist, {"q": str(subject_of(other_user).pk)}).content.decode()
    nothing = client.get(changelist, {"q": "DS-abc"}).content.decode()
    filtered = client.get(changelist, {"action__exact": "withdraw"}).content.decode()

    assert admin_url("consentevent", "change", mine.pk) in found
    assert admin_url("consentevent", "change", other.pk) not in found
    assert admin_url("consentevent", "change", other.pk) in by_number
    assert admin_url("consentevent", "change", mine.pk) not in nothing
    assert admin_url("consentevent", "change", mine.pk) not in filtered


def test_the_dpo_edits_a_purpose_and_the_change_is_audited(client: Client, loaded: dict[str, int]) -> None:
    purpose = Purpose.objects.get(code="marketing_push")
    client.force_login(factories.staff(DPO))

    response = client.post(
        admin_url("purpose", "change", purpose.pk), purpose_form(purpose, name_en="Marketing messages")
    )

    assert response.status_code == 302, response.content.decode()[:2000]
    purpose.refresh_from_db()
    assert (purpose.name_en, purpose.code) == ("Marketing messages", "marketing_push")
    entry = AuditEntry.objects.get(action="consent.purpose_changed")
    assert entry.data == {"code": "marketing_push", "fields": ["name_en"]}


def test_a_purpose_with_an_unknown_category_is_refused(client: Client, loaded: dict[str, int]) -> None:
    purpose = Purpose.objects.get(code="marketing_push")
    client.force_login(factories.staff(DPO))

    response = client.post(
        admin_url("purpose", "change", purpose.pk),
        purpose_form(purpose, categories='["contact", "horoscope"]'),
        HTTP_ACCEPT_LANGUAGE="en",
    )

    assert response.status_code == 200
    assert "Unknown categories: horoscope" in response.content.decode()
    purpose.refresh_from_db()
    assert purpose.categories == ["contact", "unique_device_identifiers"]


@pytest.mark.parametrize("role", [AGENT, AUDITOR])
def test_agents_and_auditors_cannot_edit_purposes_or_policies(
    client: Client, loaded: dict[str, int], role: str
) -> None:
    purpose = Purpose.objects.get(code="marketing_push")
    client.force_login(factories.staff(role))

    view = client.get(admin_url("purpose", "change", purpose.pk))
    change = client.post(admin_url("purpose", "change", purpose.pk), purpose_form(purpose, name_en="Spam"))
    add = client.get(admin_url("purpose", "add"))
    policy_add = client.get(admin_url("policyversion", "add"))

    assert view.status_code == 200 and 'name="_save"' not in view.content.decode()
    assert (change.status_code, add.status_code, policy_add.status_code) == (403, 403, 403)
    purpose.refresh_from_db()
    assert purpose.name_en == "Marketing push messages"


def test_a_published_policy_is_read_only_even_for_the_dpo(client: Client, loaded: dict[str, int]) -> None:
    v2 = PolicyVersion.objects.get(version=2)
    client.force_login(factories.staff(DPO))

    response = client.post(admin_url("policyversion", "change", v2.pk), {"body_en": "changed"})
    delete = client.post(admin_url("policyversion", "delete", v2.pk), {"post": "yes"})

    assert (response.status_code, delete.status_code) == (403, 403)
    assert client.get(admin_url("policyversion", "add")).status_code == 200
    v2.refresh_from_db()
    assert v2.body_en.startswith("Privacy policy")


def test_a_guardian_consent_is_added_through_the_service_and_masked(
    client: Client, loaded: dict[str, int]
) -> None:
    child = factories.subject(email="child@example.cn", birth_date="2016-05-01")
    agent = factories.staff(AGENT)
    client.force_login(agent)

    response = client.post(
        admin_url("guardianconsent", "add"),
        {
            "subject": child.pk,
            "guardian_name": "王大明",
            "relationship": "父亲",
            "guardian_contact": "Wang.Daming@example.cn",
            "verification": GuardianConsent.Verification.IN_PERSON,
        },
    )

    assert response.status_code == 302, response.content.decode()[:2000]
    record = GuardianConsent.objects.get(subject=child)
    assert (record.guardian_contact, record.recorded_by_id) == ("wang.daming@example.cn", agent.pk)
    assert AuditEntry.objects.filter(action="consent.guardian_recorded", object_id=str(child.pk)).count() == 1
    masked = client.get(admin_url("guardianconsent", "change", record.pk)).content.decode()
    assert "王**" in masked and "w***@example.cn" in masked
    assert "王大明" not in masked and "wang.daming@example.cn" not in masked and 'name="_save"' not in masked
    edit = client.post(admin_url("guardianconsent", "change", record.pk), {"relationship": "母亲"})
    assert edit.status_code == 403

    client.force_login(factories.staff(DPO))
    unmasked = client.get(admin_url("guardianconsent", "change", record.pk)).content.decode()
    assert "王大明" in unmasked and "wang.daming@example.cn" in unmasked
    assert AuditEntry.objects.filter(action="consent.guardian_sensitive_viewed").count() == 1


def test_api_keys_are_listed_without_their_hash(client: Client) -> None:
    key = ApiKey.objects.create(
        name="dental app", prefix="qk_demo1", key_hash="f" * 64, scopes=["consent:check"]
    )
    client.force_login(factories.staff(DPO))

    listing = client.get(admin_url("apikey", "changelist")).content.decode()
    detail = client.get(admin_url("apikey", "change", key.pk)).content.decode()

    assert "qk_demo1" in listing and "f" * 64 not in listing
    assert "qk_demo1" in detail and "f" * 64 not in detail and 'name="_save"' not in detail
    assert client.post(admin_url("apikey", "change", key.pk), {"name": "x"}).status_code == 403


# --- Demo data -------------------------------------------------------------------------------------------


def test_load_demo_is_idempotent_and_gives_the_demo_subject_a_history() -> None:
    demo_user = cast(User, factories.UserFactory(email=demo.DEMO_SUBJECT_EMAIL))
    factories.subject(user=demo_user)

    first = load_demo()
    counts = (
        PolicyVersion.objects.count(),
        Purpose.objects.count(),
        ConsentEvent.objects.count(),
        ConsentState.objects.count(),
        AuditEntry.objects.count(),
    )
    second = load_demo()

    assert first == {"policies": 2, "purposes": 6, "events": 3}
    assert second == {"policies": 2, "purposes": 6, "events": 0}
    assert counts == (
        PolicyVersion.objects.count(),
        Purpose.objects.count(),
        ConsentEvent.objects.count(),
        ConsentState.objects.count(),
        AuditEntry.objects.count(),
    )
    subject = subject_of(demo_user)
    assert [
        (e.purpose.code, e.action, e.separate)
        for e in ConsentEvent.objects.filter(subject=subject).order_by("id")
    ] == [
        ("doctor_view_health", "grant", True),
        ("marketing_push", "grant", False),
        ("marketing_push", "withdraw", False),
    ]
    v1, v2 = PolicyVersion.objects.get(version=1), PolicyVersion.objects.get(version=2)
    assert v1.effective_at.astimezone(SHANGHAI).isoformat() == "2024-07-10T00:00:00+08:00"
    assert v1.published_at is not None and not v1.material
    assert v2.material and v2.change_kind == "service_model" and v2.summary_zh and v2.summary_en
    assert v2.published_at is not None and v2.published_at <= v2.effective_at <= timezone.now()
    assert (timezone.now() - v2.effective_at).days in (2, 3)
    assert "<" not in v1.body_zh and "最近更新日期:2024年7月10日" in v1.body_zh
    assert len(v1.body_zh.split("\n\n")) == len(v1.body_en.split("\n\n"))
    assert demo.V2_RESEARCH_ZH in v2.body_zh and demo.V2_RESEARCH_EN in v2.body_en
    codes = dict(Purpose.objects.values_list("code", "legal_basis"))
    assert codes == {
        "account_service": "contract",
        "order_delivery": "contract",
        "doctor_view_health": "consent",
        "troubleshooting": "consent",
        "research_deidentified": "consent",
        "marketing_push": "consent",
    }
    assert list(Purpose.objects.filter(sensitive=True).values_list("code", flat=True)) == [
        "doctor_view_health"
    ]
    assert list(Purpose.objects.filter(marketing=True).values_list("code", flat=True)) == ["marketing_push"]


def test_the_dpo_revokes_an_api_key_from_the_admin_and_an_agent_cannot(client: Client) -> None:
    from consent.apikeys import api_key_create
    from consent.models import ApiKey

    key, _plain = api_key_create(name="mobile app", scopes=["consent:check"])
    url = "/admin/consent/apikey/"
    client.force_login(factories.staff("agent"))
    denied = client.post(url, {"action": "revoke", "_selected_action": [key.pk]})
    assert denied.status_code in (200, 302, 403)
    assert ApiKey.objects.get(pk=key.pk).revoked_at is None

    client.force_login(factories.staff("dpo"))
    done = client.post(url, {"action": "revoke", "_selected_action": [key.pk]})
    assert done.status_code == 302
    assert ApiKey.objects.get(pk=key.pk).revoked_at is not None
