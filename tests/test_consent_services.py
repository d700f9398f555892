from __future__ import annotations

import copy
from collections.abc import Iterator
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
import time_machine
from django.core.exceptions import ValidationError
from django.utils import timezone, translation

from consent import receipts
from consent.models import ConsentEvent, ConsentState, LegalBasis, PolicyVersion, Purpose
from consent.services import consent_record, guardian_consent_record, may_process, truncate_ip
from core.audit import SYSTEM, Actor
from core.models import AuditEntry
from tests import factories
from tests.conftest import ALL

pytestmark = pytest.mark.django_db(databases=ALL)
SHANGHAI = ZoneInfo("Asia/Shanghai")
WEB = ConsentEvent.Channel.WEB


@pytest.fixture(autouse=True)
def _english() -> Iterator[None]:
    with translation.override("en"):
        yield


@pytest.fixture
def policy() -> PolicyVersion:
    at = datetime(2024, 7, 10, tzinfo=SHANGHAI)
    return PolicyVersion.objects.create(
        version=1,
        title_zh="隐私政策",
        title_en="Privacy policy",
        body_zh="……",
        body_en="...",
        effective_at=at,
        published_at=at,
    )


def _purpose(code: str, **kwargs: object) -> Purpose:
    defaults: dict[str, object] = {
        "name_zh": code,
        "name_en": code,
        "description_zh": "-",
        "description_en": "-",
    }
    defaults.update(kwargs)
    return Purpose.objects.create(code=code, **defaults)


@pytest.fixture
def marketing(policy: PolicyVersion) -> Purpose:
    return _purpose("marketing_push", marketing=True, categories=["contact"], recipients=["短信服务商"])


@pytest.fixture
def health(policy: PolicyVersion) -> Purpose:
    return _purpose("doctor_view_health", sensitive=True, categories=["health"])


def _at(y: int, m: int, d: int, h: int = 10) -> datetime:
    return datetime(y, m, d, h, tzinfo=SHANGHAI)


def test_withdrawal_stops_future_processing_and_leaves_the_past_lawful(marketing: Purpose) -> None:
    s = factories.subject()
    with time_machine.travel(_at(2026, 3, 1), tick=False):
        consent_record(subject=s, purpose=marketing, action="grant", channel=WEB, actor=SYSTEM)
    with time_machine.travel(_at(2026, 6, 1), tick=False):
        consent_record(subject=s, purpose=marketing, action="withdraw", channel=WEB, actor=SYSTEM)

    assert may_process(subject=s, purpose=marketing, at=_at(2026, 2, 28)).allowed is False
    assert may_process(subject=s, purpose=marketing, at=_at(2026, 4, 1)).allowed is True
    assert may_process(subject=s, purpose=marketing, at=_at(2026, 6, 1, 9)).allowed is True
    assert may_process(subject=s, purpose=marketing, at=_at(2026, 6, 2)).allowed is False
    assert may_process(subject=s, purpose=marketing).allowed is False
    assert list(ConsentEvent.objects.filter(subject=s).values_list("action", flat=True)) == [
        "grant",
        "withdraw",
    ]


def test_the_ledger_is_append_only(marketing: Purpose) -> None:
    s = factories.subject()
    event = consent_record(subject=s, purpose=marketing, action="grant", channel=WEB, actor=SYSTEM)

    with pytest.raises(RuntimeError):
        ConsentEvent.objects.filter(pk=event.pk).update(action="withdraw")
    with pytest.raises(RuntimeError):
        event.delete()
    event.action = "withdraw"
    with pytest.raises(RuntimeError):
        event.save()
    assert ConsentEvent.objects.get(pk=event.pk).action == "grant"


def test_repeating_a_grant_or_a_withdrawal_adds_no_event(marketing: Purpose) -> None:
    s = factories.subject()
    first = consent_record(subject=s, purpose=marketing, action="grant", channel=WEB, actor=SYSTEM)
    again = consent_record(subject=s, purpose=marketing, action="grant", channel=WEB, actor=SYSTEM)
    consent_record(subject=s, purpose=marketing, action="withdraw", channel=WEB, actor=SYSTEM)
    consent_record(subject=s, purpose=marketing, action="withdraw", channel=WEB, actor=SYSTEM)

    assert again == first
    assert ConsentEvent.objects.filter(subject=s).count() == 2
    assert AuditEntry.objects.filter(action__startswith="consent.").count() == 2


def test_a_sensitive_purpose_needs_separate_consent(health: Purpose) -> None:
    s = factories.subject()
    with pytest.raises(ValidationError) as exc:
        consent_record(subject=s, purpose=health, action="grant", channel=WEB, actor=SYSTEM)
    assert "separate" in exc.value.message_dict
    assert not ConsentEvent.objects.exists()
    assert may_process(subject=s, purpose=health).allowed is False

    consent_record(subject=s, purpose=health, action="grant", channel=WEB, actor=SYSTEM, separate=True)
    assert may_process(subject=s, purpose=health).allowed is True


def test_a_purpose_on_another_legal_basis_needs_no_consent(policy: PolicyVersion) -> None:
    delivery = _purpose("order_delivery", legal_basis=LegalBasis.CONTRACT, required=True)
    decision = may_process(subject=factories.subject(), purpose=delivery)
    assert decision.allowed is True and "contract" in decision.reason


def test_a_childs_optional_purpose_counts_only_with_guardian_consent(marketing: Purpose) -> None:
    child = factories.subject(birth_date=(timezone.now().date() - timedelta(days=365 * 10)).isoformat())
    consent_record(subject=child, purpose=marketing, action="grant", channel=WEB, actor=SYSTEM)

    assert may_process(subject=child, purpose=marketing).allowed is False
    assert "guardian" in may_process(subject=child, purpose=marketing).reason

    guardian_consent_record(
        subject=child,
        actor=SYSTEM,
        guardian_name="王母",
        relationship="母亲",
        guardian_contact="mother@example.cn",
        verification="in_person",
    )
    assert may_process(subject=child, purpose=marketing).allowed is True


def test_staff_acting_for_a_subject_must_give_a_reason(marketing: Purpose) -> None:
    s = factories.subject()
    with pytest.raises(ValidationError):
        consent_record(
            subject=s, purpose=marketing, action="grant", channel="staff", actor=Actor("user", "9")
        )
    event = consent_record(
        subject=s,
        purpose=marketing,
        action="withdraw",
        channel="staff",
        actor=Actor("user", "9"),
        reason="电话要求退订",
    )
    assert event.action == "decline" and event.reason == "电话要求退订"


def test_evidence_keeps_only_the_network_of_the_address(marketing: Purpose) -> None:
    assert truncate_ip("203.0.113.77") == "203.0.113.0/24"
    assert truncate_ip("2001:db8:abcd:12::1") == "2001:db8:abcd::/48"
    assert truncate_ip("not-an-ip") == ""
    event = consent_record(
        subject=factories.subject(),
        purpose=marketing,
        action="grant",
        channel=WEB,
        actor=SYSTEM,
        ip="203.0.113.77",
        user_agent="Mozilla/5.0",
    )
    assert event.evidence_ip == "203.0.113.0/24"


def test_a_receipt_verifies_with_the_published_key_and_fails_when_altered(marketing: Purpose) -> None:
    from cryptography.hazmat.primitives.serialization import load_pem_public_key

    event = consent_record(
        subject=factories.subject(), purpose=marketing, action="grant", channel=WEB, actor=SYSTEM
    )
    signed = receipts.receipt_sign(event)
    published = load_pem_public_key(receipts.public_key_pem().encode())

    assert receipts.receipt_verify(signed, published)  # type: ignore[arg-type]
    body = signed["receipt"]
    assert body["receipt_id"] == str(event.receipt_id)
    assert body["purposes"][0]["code"] == "marketing_push"
    assert body["notice"]["policy_version"] == 1
    assert body["principal"]["id"].startswith("DS-")

    forged = copy.deepcopy(signed)
    forged["receipt"]["event"]["type"] = "withdraw"
    assert not receipts.receipt_verify(forged, published)  # type: ignore[arg-type]
    assert not receipts.receipt_verify({"receipt": body}, published)  # type: ignore[arg-type]


def test_current_state_is_kept_with_each_event(marketing: Purpose) -> None:
    s = factories.subject()
    grant = consent_record(subject=s, purpose=marketing, action="grant", channel=WEB, actor=SYSTEM)
    assert ConsentState.objects.get(subject=s, purpose=marketing).event == grant
    withdraw = consent_record(subject=s, purpose=marketing, action="withdraw", channel=WEB, actor=SYSTEM)
    state = ConsentState.objects.get(subject=s, purpose=marketing)
    assert (state.granted, state.event) == (False, withdraw)


def test_no_published_policy_means_no_consent_can_be_recorded() -> None:
    purpose = _purpose("marketing_push")
    with pytest.raises(ValidationError):
        consent_record(
            subject=factories.subject(), purpose=purpose, action="grant", channel=WEB, actor=SYSTEM
        )


def test_withdrawing_tells_the_recipients_the_purpose_shares_with_once(marketing: Purpose) -> None:
    from core.models import NoticeKind, RecipientKind, RecipientNotice
    from core.recipients import disclosure_record

    subject = factories.subject(email="li@example.cn")
    made = {}
    for code in ("xintong", "cloud"):
        made[code] = factories.recipient(
            code=code, name=code, kind=RecipientKind.ENTRUSTED, purpose="推送", categories=["contact"]
        )
        disclosure_record(
            recipient=made[code], subject=subject, categories=["contact"], external_ref="x-1", actor=SYSTEM
        )
    marketing.shares_with.add(made["xintong"])  # the cloud host is not this purpose's recipient
    consent_record(subject=subject, purpose=marketing, action="grant", channel="web", actor=SYSTEM)

    withdrawal = consent_record(
        subject=subject, purpose=marketing, action="withdraw", channel="web", actor=SYSTEM
    )
    consent_record(
        subject=subject, purpose=marketing, action="withdraw", channel="web", actor=SYSTEM
    )  # no-op

    notices = list(RecipientNotice.objects.all())
    assert [(n.recipient.code, n.kind, n.reference) for n in notices] == [
        ("xintong", NoticeKind.CONSENT_WITHDRAWAL, f"consent/{withdrawal.receipt_id}")
    ]
