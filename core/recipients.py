"""The disclosure register and signed notices to recipients (seed 000 §2, §4.3; seed 004 §3).

When a person's data is deleted or corrected, or consent is withdrawn, every entity that received
it is asked to do the same. `recipients_notify` writes one notice per recipient holding a
disclosure for the subject; `notice_deliver` POSTs it, signed, to the recipient's webhook; the
sweep (beat, every minute) retries with exponential backoff until a 2xx. Recipients without a
webhook get a manual task that staff mark done with a note.

How it stays safe:
- A notice is written once per (recipient, kind, reference): triggering the same business event
  again returns the existing notices. Each notice carries a stable `Idempotency-Key`, so a
  recipient that sees a retry of a notice it already processed can recognise it.
- A worker claims a notice with a conditional UPDATE (due, pending or an expired lease) before
  sending and records the outcome only if its claim (the attempt number) still holds, so two
  workers never send the same notice at once. No database lock is held during the HTTP call.
- HTTP failures never raise out of the task: they become a later attempt. Redirects are not
  followed, response bodies are never read or stored, errors are kept short.
- The stored payload holds no personal data. What the recipient needs to find the person (its
  own reference, and the new values of a correction) is sealed under a key derived from the
  master key, not the subject's key, because a deletion notice is still owed after the subject's
  key is destroyed; it is cleared once the notice is delivered or done.
"""

from __future__ import annotations

import hashlib
import hmac
import http.client
import json
import logging
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from celery import current_app
from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.db.models import F, Q
from django.utils import timezone, translation
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy

from core import crypto
from core.audit import SYSTEM, Actor, audit_log
from core.datamap import Category
from core.models import (
    Disclosure,
    NoticeKind,
    NoticeStatus,
    Recipient,
    RecipientNotice,
    validate_webhook_url,
)
from core.outbox import outbox_enqueue

if TYPE_CHECKING:
    from accounts.models import DataSubject

log = logging.getLogger(__name__)

DELIVER_TASK = "core.tasks.deliver_recipient_notice"
TIMEOUT_SECONDS = 10
# A claimed notice is someone's for this long; a worker that died mid-send loses it after.
SEND_LEASE = timedelta(minutes=2)
# A notice queued this long ago and still due was lost on the way to a worker: queue it again.
REDISPATCH_AFTER = timedelta(minutes=10)
BACKOFF_FIRST = timedelta(minutes=1)
BACKOFF_CAP = timedelta(hours=6)
MIN_SECRET_LENGTH = 24
USER_AGENT = "Quanyi-Notices/1"

_SECRET_PURPOSE = "recipient-webhook-secret"  # noqa: S105 - a key-derivation label, not a secret
_SECRET_AAD = "core.recipient.webhook_secret"  # noqa: S105 - associated data, not a secret
_PERSONAL_PURPOSE = "recipient-notice-personal"

# The sentence each notice asks of the recipient (seed 000 §4.3 for deletions).
ACTION_REQUIRED = {
    NoticeKind.DELETION: gettext_lazy(
        "Delete this person's personal information of the listed categories that you received from "
        "us, unless a law requires you to keep it or the person has separately authorised you."
    ),
    NoticeKind.CORRECTION: gettext_lazy(
        "Correct this person's personal information: replace the listed fields with the values given."
    ),
    NoticeKind.CONSENT_WITHDRAWAL: gettext_lazy(
        "The person withdrew consent: stop processing their personal information of the listed "
        "categories from now on. Processing before the withdrawal remains lawful."
    ),
    NoticeKind.RESTRICTION: gettext_lazy(
        "The person restricted or objected to processing: stop processing their personal "
        "information of the listed categories, except storing it, until we tell you otherwise."
    ),
}


def backoff(attempts: int) -> timedelta:
    """The wait after the `attempts`-th failed attempt: 1, 2, 4, 8 ... minutes, at most 6 hours."""
    return min(BACKOFF_FIRST * (2 ** min(max(attempts - 1, 0), 20)), BACKOFF_CAP)


def _iso(at: datetime) -> str:
    return at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _categories(values: Iterable[str] | None, *, field: str = "categories") -> list[str]:
    if isinstance(values, str):  # a lone code is a mistake, not a list of characters
        values = [values]
    chosen = sorted(set(values or []))
    unknown = sorted(set(chosen) - set(Category.values))
    if unknown:
        raise ValidationError({field: _("Unknown categories: %(codes)s.") % {"codes": ", ".join(unknown)}})
    return chosen


# --- Recipients --------------------------------------------------------------------------------


def webhook_secret_check(secret: str) -> str:
    secret = secret.strip()
    if len(secret) < MIN_SECRET_LENGTH:
        raise ValidationError(
            {"webhook_secret": _("The secret must be at least %(n)d characters.") % {"n": MIN_SECRET_LENGTH}}
        )
    return secret


@transaction.atomic
def recipient_save(
    *,
    recipient: Recipient,
    actor: Actor,
    webhook_secret: str | None = None,
    changed: Iterable[str] = (),
) -> Recipient:
    """Validate and save a new or changed recipient. `webhook_secret`, when given, replaces the
    secret; it is sealed before it is stored and never returned."""
    adding = recipient._state.adding
    recipient.categories = _categories(recipient.categories)
    if webhook_secret is not None:
        recipient.webhook_secret = crypto.seal(
            webhook_secret_check(webhook_secret), purpose=_SECRET_PURPOSE, aad=_SECRET_AAD
        )
    if recipient.webhook_url and not recipient.webhook_secret:
        raise ValidationError({"webhook_secret": _("A webhook needs a secret to sign its notices.")})
    recipient.full_clean()
    recipient.save()
    audit_log(
        actor=actor,
        action="recipient.added" if adding else "recipient.changed",
        obj=recipient,
        data={
            "code": recipient.code,
            "active": recipient.active,
            "webhook": bool(recipient.webhook_url),
            "secret_changed": webhook_secret is not None,
            "fields": sorted(set(changed) - {"new_webhook_secret"}),
        },
    )
    return recipient


def recipient_secret(recipient: Recipient) -> str:
    """The webhook secret in clear, for signing only."""
    if not recipient.webhook_secret:
        raise crypto.DecryptionFailed(f"recipient {recipient.code} has no webhook secret")
    return crypto.unseal(recipient.webhook_secret, purpose=_SECRET_PURPOSE, aad=_SECRET_AAD)


@transaction.atomic
def disclosure_record(
    *,
    recipient: Recipient,
    subject: DataSubject,
    categories: Iterable[str],
    external_ref: str = "",
    actor: Actor,
    at: datetime | None = None,
) -> Disclosure:
    """Record that `recipient` received `subject`'s data of `categories` (an upsert: categories
    add up, first and last seen widen, a new external reference replaces the old one)."""
    if subject.erased_at is not None:
        raise ValidationError(_("This person's data was erased; nothing can be disclosed any more."))
    chosen = _categories(categories)
    at = at or timezone.now()
    external_ref = external_ref.strip()
    disclosure = Disclosure.objects.select_for_update().filter(recipient=recipient, subject=subject).first()
    created = disclosure is None
    if disclosure is None:
        try:
            with transaction.atomic():
                disclosure = Disclosure(
                    recipient=recipient,
                    subject=subject,
                    categories=chosen,
                    first_at=at,
                    last_at=at,
                    external_ref=external_ref,
                )
                disclosure.save()
        except IntegrityError:  # recorded concurrently: update theirs
            disclosure = Disclosure.objects.select_for_update().get(recipient=recipient, subject=subject)
            created = False
    if not created:
        disclosure.categories = sorted(set(disclosure.categories) | set(chosen))
        disclosure.first_at = min(disclosure.first_at, at)
        disclosure.last_at = max(disclosure.last_at, at)
        if external_ref:
            disclosure.external_ref = external_ref
        disclosure.save()
    audit_log(
        actor=actor,
        action="disclosure.recorded",
        obj=disclosure,
        data={"recipient": recipient.code, "categories": chosen, "created": created},
    )
    return disclosure


# --- Notices -----------------------------------------------------------------------------------


def _personal_aad(notice_key: uuid.UUID) -> str:
    # Bound to the notice: a sealed reference cannot be pasted into another notice.
    return f"core.recipientnotice.personal_sealed:{notice_key}"


def _check_fields(fields: Mapping[str, Any]) -> dict[str, str | None]:
    out: dict[str, str | None] = {}
    for name, value in fields.items():
        if not isinstance(name, str) or not name or not (value is None or isinstance(value, str)):
            raise ValidationError({"fields": _("Corrections map field names to text values.")})
        out[name] = value
    return out


@transaction.atomic
def recipients_notify(
    *,
    subject: DataSubject,
    kind: str,
    reference: str,
    actor: Actor,
    categories: Iterable[str] | None = None,
    fields: Mapping[str, Any] | None = None,
    only: Iterable[str] | None = None,
) -> list[RecipientNotice]:
    """Notify every active recipient that holds `subject`'s data (only those holding one of
    `categories`, when given) about a business event: one notice per recipient, queued for
    delivery after commit. `reference` names the event (a request reference, a consent receipt
    id) and must be unique to it: the same (recipient, kind, reference) is notified once, and a
    repeated call returns the existing notices. For corrections, `fields` maps each corrected
    field to its new value; it needs `categories`, so new values only reach recipients that
    received that kind of data. `only` limits the notices to the recipients with those codes
    (a purpose's recipients, for a consent withdrawal)."""
    if kind not in NoticeKind.values:
        raise ValidationError({"kind": _("Unknown notice kind.")})
    reference = reference.strip()
    if not reference or len(reference) > 64:
        raise ValidationError({"reference": _("Give the reference of the event (at most 64 characters).")})
    wanted = set(_categories(categories)) if categories is not None else None
    corrected: dict[str, str | None] = {}
    if fields:
        if kind != NoticeKind.CORRECTION:
            raise ValidationError({"fields": _("Only corrections carry new values.")})
        if not wanted:
            raise ValidationError({"fields": _("Say which categories the corrected fields belong to.")})
        corrected = _check_fields(fields)

    existing = {
        n.recipient_id: n
        for n in RecipientNotice.objects.filter(kind=kind, reference=reference).select_related("recipient")
    }
    for notice in existing.values():
        if notice.subject_id is not None and notice.subject_id != subject.pk:
            raise ValueError(f"reference {reference!r} already names a {kind} notice for another subject")

    created: list[RecipientNotice] = []
    disclosures = (
        Disclosure.objects.filter(subject=subject, recipient__active=True)
        .select_related("recipient")
        .order_by("recipient__code")
    )
    if only is not None:
        disclosures = disclosures.filter(recipient__code__in=list(only))
    for disclosure in disclosures:
        if disclosure.recipient_id in existing:
            continue
        held = set(disclosure.categories) or set(disclosure.recipient.categories)
        chosen = held & wanted if wanted is not None else held
        if wanted is not None and not chosen:
            continue
        new = _notice_create(
            disclosure=disclosure,
            kind=kind,
            reference=reference,
            categories=sorted(chosen),
            fields=corrected,
            actor=actor,
        )
        if new is not None:
            created.append(new)
    # Notices created concurrently by another call for the same event are theirs to report.
    return sorted([*existing.values(), *created], key=lambda n: n.recipient.code)


def _notice_create(
    *,
    disclosure: Disclosure,
    kind: str,
    reference: str,
    categories: list[str],
    fields: dict[str, str | None],
    actor: Actor,
) -> RecipientNotice | None:
    recipient = disclosure.recipient
    key = uuid.uuid4()
    now = timezone.now()
    with translation.override(settings.LANGUAGE_CODE):
        action_required = str(ACTION_REQUIRED[NoticeKind(kind)])
    payload = {
        "id": str(key),
        "type": kind,
        "reference": reference,
        "issued_at": _iso(now),
        "controller": {
            "name": settings.QUANYI_CONTROLLER_NAME,
            "contact": settings.QUANYI_CONTROLLER_CONTACT,
        },
        "categories": categories,
        "action_required": action_required,
    }
    personal: dict[str, Any] = {"external_ref": disclosure.external_ref or None}
    if kind == NoticeKind.CORRECTION:
        personal["fields"] = fields
    manual = not recipient.webhook_url
    notice = RecipientNotice(
        recipient=recipient,
        subject_id=disclosure.subject_id,
        kind=kind,
        reference=reference,
        idempotency_key=key,
        payload=payload,
        personal_sealed=crypto.seal(
            json.dumps(personal, ensure_ascii=False, sort_keys=True),
            purpose=_PERSONAL_PURPOSE,
            aad=_personal_aad(key),
        ),
        status=NoticeStatus.MANUAL if manual else NoticeStatus.PENDING,
        next_attempt_at=None if manual else now,
        dispatched_at=None if manual else now,
    )
    try:
        with transaction.atomic():
            notice.save(force_insert=True)
    except IntegrityError:  # the same event notified concurrently: theirs stands
        return None
    audit_log(
        actor=actor,
        action="recipient_notice.created",
        obj=notice,
        data={
            "recipient": recipient.code,
            "kind": kind,
            "reference": reference,
            "categories": categories,
            "manual": manual,
        },
    )
    if not manual:
        outbox_enqueue(DELIVER_TASK, notice_id=notice.pk)
    return notice


def notice_personal(notice: RecipientNotice) -> dict[str, Any]:
    """The sealed part of a notice: {"external_ref": ..., "fields": {...}}; empty once handled."""
    if not notice.personal_sealed:
        return {}
    value: dict[str, Any] = json.loads(
        crypto.unseal(
            notice.personal_sealed, purpose=_PERSONAL_PURPOSE, aad=_personal_aad(notice.idempotency_key)
        )
    )
    return value


def notice_body(notice: RecipientNotice) -> bytes:
    """The exact bytes POSTed: the same for every attempt of a notice."""
    personal = notice_personal(notice)
    body = dict(notice.payload)
    body["subject"] = {"external_ref": personal.get("external_ref")}
    if notice.kind == NoticeKind.CORRECTION:
        body["fields"] = personal.get("fields") or {}
    return json.dumps(body, ensure_ascii=False, sort_keys=True, separators=(",", ":")).encode()


# --- Signatures --------------------------------------------------------------------------------


def signature_header(secret: str | bytes, timestamp: str | int, body: bytes) -> str:
    key = secret.encode() if isinstance(secret, str) else secret
    digest = hmac.new(key, str(timestamp).encode() + b"." + body, hashlib.sha256).hexdigest()
    return f"sha256={digest}"


def signature_verify(
    secret: str | bytes,
    timestamp: str | int,
    body: bytes,
    header: str,
    tolerance: int = 300,
    *,
    now: float | None = None,
) -> bool:
    """How a recipient checks a notice (standard library only; copy it as it is).

    `timestamp` is the X-Quanyi-Timestamp header, `body` the raw request body (bytes, before
    any JSON parsing), `header` the X-Quanyi-Signature header. True when the signature is
    HMAC-SHA256 of "<timestamp>.<body>" under the shared secret and the timestamp is within
    `tolerance` seconds of now (which stops replays of old notices)."""
    try:
        sent_at = int(str(timestamp))
    except ValueError:
        return False
    if abs((time.time() if now is None else now) - sent_at) > tolerance:
        return False
    key = secret.encode() if isinstance(secret, str) else secret
    expected = "sha256=" + hmac.new(key, str(timestamp).encode() + b"." + body, hashlib.sha256).hexdigest()
    return hmac.compare_digest(expected.encode(), str(header).strip().encode())


# --- Delivery ----------------------------------------------------------------------------------


class _NoRedirects(urllib.request.HTTPRedirectHandler):
    # A redirect could take the signed notice somewhere else, or to plain http: a 3xx is a
    # failed attempt, like any other non-2xx answer.
    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None


_opener = urllib.request.build_opener(_NoRedirects)


def _post(url: str, body: bytes, headers: dict[str, str]) -> tuple[int | None, str]:
    """POST and return (status code, short error). Never raises for network or HTTP failures."""
    request = urllib.request.Request(url, data=body, headers=headers, method="POST")  # noqa: S310 - http(s) only, validated
    try:
        with _opener.open(request, timeout=TIMEOUT_SECONDS) as response:
            return int(response.status), ""
    except urllib.error.HTTPError as exc:
        exc.close()  # the body is never read: it may hold personal data
        return int(exc.code), f"HTTP {exc.code}"
    except urllib.error.URLError as exc:
        reason = exc.reason
        return None, f"{type(reason).__name__}: {reason}"[:200] if isinstance(reason, OSError) else "URLError"
    except (TimeoutError, OSError, http.client.HTTPException, ValueError) as exc:
        return None, type(exc).__name__


def notice_deliver(*, notice_id: int) -> str:
    """One delivery attempt, if the notice is due and nobody else holds it. Returns what
    happened: delivered, retry, not_due, manual, inactive, skipped, stale or missing."""
    notice = RecipientNotice.objects.select_related("recipient").filter(pk=notice_id).first()
    if notice is None:
        return "missing"
    if notice.status not in (NoticeStatus.PENDING, NoticeStatus.SENDING):
        return "skipped"
    recipient = notice.recipient
    if not recipient.active:
        return "inactive"  # kept pending: reactivating the recipient resumes it
    if not recipient.webhook_url:
        return _to_manual(notice)

    now = timezone.now()
    claimed = RecipientNotice.objects.filter(
        pk=notice_id,
        status__in=[NoticeStatus.PENDING, NoticeStatus.SENDING],
        next_attempt_at__lte=now,
    ).update(status=NoticeStatus.SENDING, next_attempt_at=now + SEND_LEASE, attempts=F("attempts") + 1)
    if not claimed:
        return "not_due"
    attempt = RecipientNotice.objects.values_list("attempts", flat=True).get(pk=notice_id)

    code: int | None
    try:
        validate_webhook_url(recipient.webhook_url)
        body = notice_body(notice)
        secret = recipient_secret(recipient)
    except ValidationError:
        code, error = None, "webhook URL not allowed"
    except crypto.CryptoError:
        code, error = None, "cannot unseal the secret or the reference"
    else:
        timestamp = str(int(timezone.now().timestamp()))
        code, error = _post(
            recipient.webhook_url,
            body,
            {
                "Content-Type": "application/json",
                "User-Agent": USER_AGENT,
                "Idempotency-Key": str(notice.idempotency_key),
                "X-Quanyi-Timestamp": timestamp,
                "X-Quanyi-Signature": signature_header(secret, timestamp, body),
            },
        )

    finished = timezone.now()
    mine = RecipientNotice.objects.filter(pk=notice_id, status=NoticeStatus.SENDING, attempts=attempt)
    if code is not None and 200 <= code < 300:
        with transaction.atomic():
            done = mine.update(
                status=NoticeStatus.DELIVERED,
                delivered_at=finished,
                next_attempt_at=None,
                dispatched_at=None,
                last_status_code=code,
                last_error="",
                personal_sealed=None,
            )
            if done:
                audit_log(
                    actor=SYSTEM,
                    action="recipient_notice.delivered",
                    obj=notice,
                    data={
                        "recipient": recipient.code,
                        "kind": notice.kind,
                        "reference": notice.reference,
                        "attempts": attempt,
                        "status_code": code,
                    },
                )
        return "delivered" if done else "stale"
    wait = backoff(attempt)
    updated = mine.update(
        status=NoticeStatus.PENDING,
        next_attempt_at=finished + wait,
        dispatched_at=None,
        last_status_code=code,
        last_error=(error or f"HTTP {code}")[:200],
    )
    log.warning(
        "recipient notice %s to %s: attempt %d failed (%s); next in %s",
        notice_id,
        recipient.code,
        attempt,
        error or code,
        wait,
    )
    return "retry" if updated else "stale"


def _to_manual(notice: RecipientNotice) -> str:
    # The recipient's webhook was removed after the notice was written: staff take it over.
    with transaction.atomic():
        moved = RecipientNotice.objects.filter(pk=notice.pk, status=NoticeStatus.PENDING).update(
            status=NoticeStatus.MANUAL, next_attempt_at=None, dispatched_at=None
        )
        if moved:
            audit_log(
                actor=SYSTEM,
                action="recipient_notice.manual",
                obj=notice,
                data={"recipient": notice.recipient.code, "reason": "no webhook"},
            )
    return "manual"


def notices_due_sweep(*, limit: int = 500) -> int:
    """Queue a delivery for every due notice (pending, or sending with an expired lease) not
    queued recently. Each is claimed by a conditional UPDATE of `dispatched_at`, so two sweeps
    at once queue it once; a duplicate message would be harmless anyway (the delivery claims).
    Returns how many were queued."""
    now = timezone.now()
    due = (
        RecipientNotice.objects.filter(
            status__in=[NoticeStatus.PENDING, NoticeStatus.SENDING],
            next_attempt_at__lte=now,
            recipient__active=True,
        )
        .filter(Q(dispatched_at__isnull=True) | Q(dispatched_at__lt=now - REDISPATCH_AFTER))
        .order_by("next_attempt_at")
        .values_list("id", "dispatched_at")[:limit]
    )
    queued = 0
    for notice_id, dispatched_at in list(due):
        if not RecipientNotice.objects.filter(pk=notice_id, dispatched_at=dispatched_at).update(
            dispatched_at=now
        ):
            continue
        try:
            current_app.send_task(DELIVER_TASK, kwargs={"notice_id": notice_id})
        except Exception as exc:  # broker down: give the claim back, the next sweep tries again
            log.warning("recipient notice %s: queueing failed: %r", notice_id, exc)
            RecipientNotice.objects.filter(pk=notice_id, dispatched_at=now).update(
                dispatched_at=dispatched_at
            )
            continue
        queued += 1
    return queued


# --- Staff -------------------------------------------------------------------------------------


def _user_id(actor: Actor) -> int | None:
    return int(actor.id) if actor.type == "user" and actor.id.isdigit() else None


@transaction.atomic
def notice_mark_done(*, notice: RecipientNotice, actor: Actor, note: str) -> RecipientNotice:
    """Staff told the recipient by other means (a manual notice, or a webhook that keeps
    failing): record who, when and how. Marking a done notice again changes nothing."""
    note = note.strip()
    if not note:
        raise ValidationError({"note": _("Say how and when the recipient was told.")})
    if notice.status == NoticeStatus.DONE:
        return notice
    done = RecipientNotice.objects.filter(
        pk=notice.pk, status__in=[NoticeStatus.MANUAL, NoticeStatus.PENDING]
    ).update(
        status=NoticeStatus.DONE,
        handled_by_id=_user_id(actor),
        handled_at=timezone.now(),
        handled_note=note[:2000],
        next_attempt_at=None,
        dispatched_at=None,
        personal_sealed=None,
    )
    notice.refresh_from_db()
    if not done:
        if notice.status == NoticeStatus.DONE:
            return notice
        raise ValidationError(
            _("This notice cannot be marked done now: it is %(status)s.")
            % {"status": notice.get_status_display()}
        )
    audit_log(
        actor=actor,
        action="recipient_notice.done",
        obj=notice,
        data={"recipient": notice.recipient.code, "kind": notice.kind, "reference": notice.reference},
    )
    return notice


@transaction.atomic
def notice_retry(*, notice: RecipientNotice, actor: Actor) -> RecipientNotice:
    """Attempt now instead of at the next backoff time (or send a manual notice once its
    recipient has a webhook). Delivered, done and in-flight notices are left alone."""
    recipient = notice.recipient
    if notice.status not in (NoticeStatus.PENDING, NoticeStatus.MANUAL):
        return notice
    if not recipient.active:
        raise ValidationError(_("The recipient is inactive: activate it first."))
    if not recipient.webhook_url:
        raise ValidationError(_("The recipient has no webhook: handle the notice by hand and mark it done."))
    now = timezone.now()
    moved = RecipientNotice.objects.filter(
        pk=notice.pk, status__in=[NoticeStatus.PENDING, NoticeStatus.MANUAL]
    ).update(status=NoticeStatus.PENDING, next_attempt_at=now, dispatched_at=now)
    notice.refresh_from_db()
    if moved:
        audit_log(
            actor=actor,
            action="recipient_notice.retried",
            obj=notice,
            data={"recipient": recipient.code, "attempts": notice.attempts},
        )
        outbox_enqueue(DELIVER_TASK, notice_id=notice.pk)
    return notice


# --- Master key rotation -----------------------------------------------------------------------


def sealed_rewrap(*, batch: int = 500) -> int:
    """Reseal webhook secrets and pending notices' references under the first master key
    (`rotate_master_key` runs it). Idempotent and resumable."""
    current = f"{crypto.SEALED_PREFIX}{crypto.master_keys()[0].kid}."
    done = 0
    for recipient in Recipient.objects.exclude(webhook_secret="").exclude(webhook_secret__startswith=current):
        fresh = crypto.seal(recipient_secret(recipient), purpose=_SECRET_PURPOSE, aad=_SECRET_AAD)
        done += Recipient.objects.filter(pk=recipient.pk, webhook_secret=recipient.webhook_secret).update(
            webhook_secret=fresh
        )
    while True:
        rows = list(
            RecipientNotice.objects.filter(personal_sealed__isnull=False)
            .exclude(personal_sealed__startswith=current)
            .only("pk", "idempotency_key", "personal_sealed")
            .order_by("pk")[:batch]
        )
        if not rows:
            return done
        for notice in rows:
            aad = _personal_aad(notice.idempotency_key)
            assert notice.personal_sealed is not None  # noqa: S101 - filtered above
            plain = crypto.unseal(notice.personal_sealed, purpose=_PERSONAL_PURPOSE, aad=aad)
            done += RecipientNotice.objects.filter(
                pk=notice.pk, personal_sealed=notice.personal_sealed
            ).update(personal_sealed=crypto.seal(plain, purpose=_PERSONAL_PURPOSE, aad=aad))
