"""Consent: an append-only ledger and the current state derived from it.

Every grant, withdrawal, renewal or expiry is a new ConsentEvent; ConsentState (one row per
subject and purpose) is updated in the same transaction, together with the audit entry.
Withdrawal takes effect from its own timestamp: `may_process(at=...)` for an earlier moment
still answers from the events before it.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from datetime import date, datetime

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.mail import EmailMessage
from django.db import models, transaction
from django.template.loader import render_to_string
from django.urls import reverse
from django.utils import timezone, translation
from django.utils.translation import gettext as _

from accounts.models import DataSubject, User
from consent.campaigns import campaign_create, delivery_address
from consent.models import (
    ChangeKind,
    ConsentEvent,
    ConsentState,
    GuardianConsent,
    NoticeCampaign,
    PolicyResponse,
    PolicyVersion,
    Purpose,
)
from core.audit import SYSTEM, Actor, audit_log
from core.models import NoticeKind
from core.recipients import recipients_notify

CHILD_AGE = 14


def current_policy(at: datetime | None = None) -> PolicyVersion | None:
    at = at or timezone.now()
    return (
        PolicyVersion.objects.filter(published_at__isnull=False, effective_at__lte=at)
        .order_by("-version")
        .first()
    )


def truncate_ip(ip: str) -> str:
    """Keep the network, not the host: /24 for IPv4, /48 for IPv6."""
    try:
        address = ipaddress.ip_address(ip)
    except ValueError:
        return ""
    prefix = 24 if address.version == 4 else 48
    return str(ipaddress.ip_network(f"{address}/{prefix}", strict=False))


def age_on(subject: DataSubject, day: date) -> int | None:
    if not subject.birth_date:
        return None
    try:
        born = date.fromisoformat(subject.birth_date)
    except ValueError:
        return None
    return day.year - born.year - ((day.month, day.day) < (born.month, born.day))


def is_child(subject: DataSubject, at: datetime | None = None) -> bool:
    age = age_on(subject, (at or timezone.now()).date())
    return age is not None and age < CHILD_AGE


def guardian_consent_active(subject: DataSubject, at: datetime | None = None) -> GuardianConsent | None:
    at = at or timezone.now()
    return (
        GuardianConsent.objects.filter(subject=subject, recorded_at__lte=at)
        .exclude(revoked_at__lte=at)
        .order_by("-recorded_at")
        .first()
    )


def consent_evidence_redact(*, event_ids: list[int]) -> int:
    """Remove how consent events were given (the network, the device, a free-text reason) and
    keep what was decided, when, under which policy version: the one change the append-only
    ledger allows, made by the retention sweep once the person has been gone for the rule's
    period. Runs in the caller's transaction (with its audit entry); returns events changed."""
    events = ConsentEvent.objects.filter(pk__in=event_ids).exclude(
        evidence_ip="", evidence_user_agent="", reason=""
    )
    # The ledger's manager refuses update() so that nothing rewrites a decision; this write
    # is the deliberate exception and touches only the evidence columns.
    return models.QuerySet.update(events, evidence_ip="", evidence_user_agent="", reason="")


@transaction.atomic
def consent_record(
    *,
    subject: DataSubject,
    purpose: Purpose,
    action: str,
    channel: str,
    actor: Actor,
    user: User | None = None,
    separate: bool = False,
    reason: str = "",
    ip: str = "",
    user_agent: str = "",
) -> ConsentEvent:
    """Append one event and move the current state. Granting what is already granted (under
    the same policy version and with the same separateness) or withdrawing what is not
    granted changes nothing and returns the governing event."""
    if action not in ConsentEvent.Action.values:
        raise ValidationError({"action": _("Unknown consent action.")})
    if channel not in ConsentEvent.Channel.values:
        raise ValidationError({"channel": _("Unknown channel.")})
    if not purpose.active:
        raise ValidationError({"purpose": _("This purpose is no longer in use.")})
    if not purpose.needs_consent:
        raise ValidationError(
            {
                "purpose": _(
                    "This purpose rests on another legal basis, not on consent: there is nothing to change."
                )
            }
        )
    if channel == ConsentEvent.Channel.STAFF and not reason.strip():
        raise ValidationError({"reason": _("Staff acting for a subject must say why.")})
    grants = action in (ConsentEvent.Action.GRANT, ConsentEvent.Action.RENEW)
    if grants and purpose.sensitive and not separate:
        raise ValidationError(
            {"separate": _("Sensitive personal information needs a separate, explicit consent.")}
        )
    if channel == ConsentEvent.Channel.GUARDIAN and guardian_consent_active(subject) is None:
        raise ValidationError({"channel": _("No guardian consent is recorded for this subject.")})
    policy = current_policy()
    if policy is None:
        raise ValidationError(_("No privacy policy is published yet."))

    state = ConsentState.objects.select_for_update().filter(subject=subject, purpose=purpose).first()
    if state is not None and action != ConsentEvent.Action.RENEW:
        governing = state.event
        same_grant = (
            grants
            and state.granted
            and governing.policy_version_id == policy.pk
            and (state.separate or not separate)
        )
        if same_grant or (not grants and not state.granted):
            return governing
    if state is None and not grants:
        # Nothing to withdraw: record the refusal itself (a "decline" is evidence too).
        action = ConsentEvent.Action.DECLINE if action == ConsentEvent.Action.WITHDRAW else action

    now = timezone.now()
    event = ConsentEvent.objects.create(
        subject=subject,
        purpose=purpose,
        policy_version=policy,
        action=action,
        channel=channel,
        separate=separate and grants,
        actor=user,
        reason=reason.strip()[:300],
        evidence_ip=truncate_ip(ip),
        evidence_user_agent=user_agent[:200],
        occurred_at=now,
    )
    ConsentState.objects.update_or_create(
        subject=subject,
        purpose=purpose,
        defaults={"granted": grants, "separate": separate and grants, "event": event, "since": now},
    )
    audit_log(
        actor=actor,
        action=f"consent.{action}",
        obj=subject,
        data={"purpose": purpose.code, "event": event.pk, "channel": channel, "policy": policy.version},
    )
    if action == ConsentEvent.Action.WITHDRAW:
        _tell_recipients_of_withdrawal(event)
    return event


def _tell_recipients_of_withdrawal(event: ConsentEvent) -> None:
    """Recipients the purpose shares with, and that hold the subject's data, are told to stop
    (seed 000 §4.4): one notice each per withdrawal, queued after commit."""
    purpose = event.purpose
    codes = list(purpose.shares_with.values_list("code", flat=True))
    if not codes:
        return
    recipients_notify(
        subject=event.subject,
        kind=NoticeKind.CONSENT_WITHDRAWAL,
        reference=f"consent/{event.receipt_id}",
        actor=SYSTEM,
        categories=list(purpose.categories) or None,
        only=codes,
    )


def receipt_issue(*, event: ConsentEvent, actor: Actor) -> dict[str, object]:
    """The signed receipt of one event; every issue is audited."""
    from consent import receipts

    signed = receipts.receipt_sign(event)
    audit_log(
        actor=actor,
        action="consent.receipt_downloaded",
        obj=event.subject,
        data={"event": event.pk, "receipt_id": str(event.receipt_id), "purpose": event.purpose.code},
    )
    return signed


def policy_notice_due(subject: DataSubject) -> PolicyVersion | None:
    """The latest material policy version published after the subject joined that they have
    not answered yet: shown as a notice until they accept or decline."""
    policy = (
        PolicyVersion.objects.filter(
            published_at__isnull=False, material=True, published_at__lte=timezone.now()
        )
        .order_by("-version")
        .first()
    )
    if policy is None or policy.published_at is None or subject.created_at >= policy.published_at:
        return None
    if PolicyResponse.objects.filter(subject=subject, policy_version=policy).exists():
        return None
    return policy


@transaction.atomic
def policy_respond(
    *, subject: DataSubject, policy: PolicyVersion, decision: str, actor: Actor, ip: str = ""
) -> PolicyResponse:
    """Record the answer once; a second answer to the same version changes nothing."""
    if decision not in PolicyResponse.Decision.values:
        raise ValidationError({"decision": _("Answer accept or decline.")})
    if policy.published_at is None:
        raise ValidationError(_("This policy version is not published."))
    response, created = PolicyResponse.objects.get_or_create(
        subject=subject,
        policy_version=policy,
        defaults={"decision": decision, "at": timezone.now(), "evidence_ip": truncate_ip(ip)},
    )
    if created:
        audit_log(actor=actor, action=f"policy.{decision}", obj=subject, data={"policy": policy.version})
    return response


@transaction.atomic
def policy_publish(*, policy: PolicyVersion, actor: Actor, user: User | None = None) -> PolicyVersion:
    """Publish a version now. A material one (seed 000 §8, seed 004 §6) also starts the e-mail
    campaign to every active subject (consent.campaigns) besides the notice in the portal; it
    needs its kind of change and a summary in both languages, which the e-mail carries.
    Publishing a published version changes nothing."""
    locked = PolicyVersion.objects.select_for_update().get(pk=policy.pk)
    if locked.published_at is not None:
        return locked
    if locked.material:
        errors = {}
        if locked.change_kind not in ChangeKind.values:
            errors["change_kind"] = _("Say which kind of material change this is (seed 000 §8).")
        for field in ("summary_zh", "summary_en"):
            if not getattr(locked, field).strip():
                errors[field] = _("A material change needs a summary: it is what the notice e-mail says.")
        if errors:
            raise ValidationError(errors)
    now = timezone.now()
    PolicyVersion.objects.filter(pk=locked.pk, published_at__isnull=True).update(published_at=now)
    locked.published_at = now
    audit_log(
        actor=actor,
        action="consent.policy_published",
        obj=locked,
        data={"version": locked.version, "material": locked.material},
    )
    if locked.material:
        campaign_create(kind=NoticeCampaign.Kind.POLICY_CHANGE, policy=locked, actor=actor, user=user)
    return locked


UNSUBSCRIBE_SALT = "quanyi.consent.unsubscribe"


def unsubscribe_token(subject: DataSubject) -> str:
    """A signed, non-expiring token for the one-click unsubscribe link of marketing e-mails."""
    from django.core import signing

    return signing.dumps({"s": subject.pk}, salt=UNSUBSCRIBE_SALT, compress=True)


def unsubscribe_subject(token: str) -> DataSubject | None:
    from django.core import signing

    try:
        data = signing.loads(token, salt=UNSUBSCRIBE_SALT)
    except signing.BadSignature:
        return None
    pk = data.get("s") if isinstance(data, dict) else None
    return DataSubject.objects.filter(pk=pk).first() if isinstance(pk, int) else None


@transaction.atomic
def marketing_unsubscribe(*, subject: DataSubject, ip: str = "", user_agent: str = "") -> list[ConsentEvent]:
    """Withdraw every marketing purpose the subject has granted (no login: the signed link is
    the proof). Idempotent: a second click records nothing."""
    granted = ConsentState.objects.filter(
        subject=subject, granted=True, purpose__marketing=True, purpose__active=True
    ).select_related("purpose")
    return [
        consent_record(
            subject=subject,
            purpose=state.purpose,
            action=ConsentEvent.Action.WITHDRAW,
            channel=ConsentEvent.Channel.EMAIL,
            actor=Actor("subject", str(subject.pk)),
            ip=ip,
            user_agent=user_agent,
        )
        for state in granted
    ]


def marketing_send(*, subject: DataSubject, purpose: Purpose, title: str, body: str) -> bool:
    """Send one marketing e-mail, only with consent to `purpose` now, with the one-click
    unsubscribe link in the text and in the List-Unsubscribe headers (RFC 2369, RFC 8058).
    Returns whether it was sent. Service notices (policy changes, incidents) do not use this:
    they are not marketing and need no marketing consent."""
    if not purpose.marketing or not purpose.active:
        raise ValidationError({"purpose": _("Only an active marketing purpose sends marketing e-mails.")})
    if not may_process(subject=subject, purpose=purpose).allowed:
        return False
    address = delivery_address(subject)
    if not address:
        return False
    url = settings.SITE_URL.rstrip("/") + reverse("consent:unsubscribe", args=[unsubscribe_token(subject)])
    language = subject.language or settings.LANGUAGE_CODE
    with translation.override(language):
        footer = render_to_string(
            "consent/email/marketing_footer.txt",
            {"purpose": purpose.localised("name", language), "unsubscribe_url": url},
        )
    message = EmailMessage(
        title,
        body.rstrip() + "\n" + footer,
        settings.DEFAULT_FROM_EMAIL,
        [address],
        headers={"List-Unsubscribe": f"<{url}>", "List-Unsubscribe-Post": "List-Unsubscribe=One-Click"},
    )
    return message.send() == 1


@dataclass(frozen=True)
class Decision:
    allowed: bool
    reason: str
    event: ConsentEvent | None = None


def may_process(*, subject: DataSubject, purpose: Purpose, at: datetime | None = None) -> Decision:
    """May the product process `purpose` for `subject` at `at` (default now)?"""
    if not purpose.needs_consent:
        return Decision(True, f"legal basis: {purpose.legal_basis}")
    if at is None:
        state = ConsentState.objects.select_related("event").filter(subject=subject, purpose=purpose).first()
        event = state.event if state else None
    else:
        event = (
            ConsentEvent.objects.filter(subject=subject, purpose=purpose, occurred_at__lte=at)
            .order_by("-occurred_at", "-id")
            .first()
        )
    return decide(subject=subject, purpose=purpose, event=event, at=at)


def decide(
    *, subject: DataSubject, purpose: Purpose, event: ConsentEvent | None, at: datetime | None = None
) -> Decision:
    """The answer for a purpose that needs consent, given the event that governs at `at`."""
    if event is None:
        return Decision(False, "no consent recorded")
    if not event.grants:
        past = {"withdraw": "withdrawn", "decline": "declined", "expire": "expired"}
        return Decision(False, f"consent {past.get(event.action, event.action)}", event)
    if purpose.sensitive and not event.separate:
        return Decision(False, "sensitive purpose without separate consent", event)
    if not purpose.required and is_child(subject, at) and guardian_consent_active(subject, at) is None:
        return Decision(False, "child under 14 without guardian consent", event)
    return Decision(True, "consent granted", event)


@transaction.atomic
def guardian_consent_record(
    *,
    subject: DataSubject,
    actor: Actor,
    guardian_name: str,
    relationship: str,
    guardian_contact: str,
    verification: str,
    recorded_by: User | None = None,
    guardian_user: User | None = None,
) -> GuardianConsent:
    if verification not in GuardianConsent.Verification.values:
        raise ValidationError({"verification": _("Say how the guardian was verified.")})
    if not guardian_name.strip() or not relationship.strip() or not guardian_contact.strip():
        raise ValidationError(_("Name, relationship and contact of the guardian are required."))
    record = GuardianConsent.objects.create(
        subject=subject,
        guardian_name=guardian_name.strip(),
        relationship=relationship.strip()[:50],
        guardian_contact=guardian_contact.strip().lower(),
        verification=verification,
        recorded_by=recorded_by,
        guardian_user=guardian_user,
    )
    audit_log(
        actor=actor,
        action="consent.guardian_recorded",
        obj=subject,
        data={"guardian_consent": record.pk, "verification": verification},
    )
    return record
