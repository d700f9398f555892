"""Data-subject requests: every write of the lifecycle.

Each transition claims the row with a conditional UPDATE on the expected status, writes its
audit entry in the same transaction, and returns early when the request already is where
the call would take it (so repeating a call is harmless). Permission checks belong to the
callers (admin, API, portal); these functions assume the actor may act.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import logging
import os
import secrets
import tempfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import IO, Any

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import connection, transaction
from django.db.models import F, Q
from django.utils import timezone, translation
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy

from accounts.models import DataSubject, User
from accounts.services import subject_create, subject_find
from core import crypto
from core.audit import SYSTEM, Actor, audit_log
from core.outbox import outbox_enqueue
from dsar import documents
from dsar import export as package
from dsar.models import (
    CLOCK_RUNNING,
    EXPORT_TYPES,
    LIVE_EXPORT_STATUSES,
    OPEN_STATUSES,
    CalendarDay,
    CalendarYear,
    CorrectionItem,
    DataExport,
    DataSubjectRequest,
    EmailChallenge,
    ExportStatus,
    OnBehalf,
    RefusalGround,
    Reminder,
    RequestCounter,
    RequestMessage,
    RequestType,
    Status,
    VerificationDocument,
    VerificationMethod,
)
from dsar.workdays import business_today, business_tz, workday_index
from retention.termination import termination_done

log = logging.getLogger(__name__)

CODE_TTL = timedelta(minutes=10)
CODE_MAX_ATTEMPTS = 5
MAX_DOCUMENT_BYTES = 5 * 1024 * 1024


class TransitionError(ValidationError):
    """The request is not in a state that allows this action."""


# --- Reference numbers ------------------------------------------------------------------------


def _next_reference(year: int) -> str:
    RequestCounter.objects.get_or_create(year=year)
    RequestCounter.objects.filter(year=year).update(last=F("last") + 1)  # row lock until commit
    last = RequestCounter.objects.values_list("last", flat=True).get(year=year)
    return f"DSR-{year}-{last:06d}"


# --- Submission -------------------------------------------------------------------------------


@transaction.atomic
def request_submit(
    *,
    actor: Actor,
    type: str,
    subject: DataSubject,
    user: User | None = None,
    on_behalf: str = OnBehalf.SELF,
    requester_name: str = "",
    requester_email: str = "",
    requester_phone: str = "",
    relationship: str = "",
    details: str = "",
    language: str = "",
    reauthenticated: bool = False,
    documents: Iterable[Any] = (),
    email: bool = True,
) -> DataSubjectRequest:
    """Record a request. A signed-in subject acting for themselves who reauthenticated
    recently is verified at once (the clock starts); everyone else awaits verification.
    `email=False` when the caller writes to the requester itself (an account cancellation
    sends one e-mail with the schedule instead of "received" and "verified")."""
    if type not in RequestType.values:
        raise ValidationError({"type": _("Unknown request type.")})
    if on_behalf not in OnBehalf.values:
        raise ValidationError({"on_behalf": _("Unknown choice.")})
    documents = list(documents)
    if on_behalf != OnBehalf.SELF and not documents:
        raise ValidationError({"documents": _("Acting for someone else needs proof of your authority.")})
    checked = [document_check(f) for f in documents]
    request = DataSubjectRequest(
        reference=_next_reference(business_today().year),
        type=type,
        status=Status.AWAITING_VERIFICATION,
        subject=subject,
        user=user,
        on_behalf=on_behalf,
        requester_name=requester_name.strip(),
        requester_email=requester_email.strip().lower(),
        requester_phone=requester_phone.strip(),
        relationship=relationship.strip(),
        details=details.strip(),
        language=language if language in dict(settings.LANGUAGES) else settings.LANGUAGE_CODE,
    )
    request.save()
    for name, content_type, data in checked:
        _store_document(request, name, content_type, data)
    audit_log(
        actor=actor,
        action="request.submitted",
        obj=request,
        data={"type": type, "on_behalf": on_behalf, "documents": len(checked)},
    )
    if email:
        outbox_enqueue("dsar.tasks.send_requester_email", request_id=request.pk, kind="received")
    if reauthenticated and on_behalf == OnBehalf.SELF and user is not None:
        request = request_verify(
            request=request, actor=actor, method=VerificationMethod.REAUTHENTICATION, email=email
        )
    return request


@transaction.atomic
def request_submit_for_user(
    *,
    user: User,
    type: str,
    on_behalf: str = OnBehalf.SELF,
    details: str = "",
    relationship: str = "",
    subject_name: str = "",
    subject_email: str = "",
    documents: Iterable[Any] = (),
    language: str = "",
    reauthenticated: bool = False,
) -> DataSubjectRequest:
    """A signed-in person's request: about themselves (their own subject), or for someone
    else (found or recorded by the e-mail given; proof required)."""
    from accounts.services import subject_for_user

    if on_behalf == OnBehalf.SELF:
        subject, requester_name, relationship = subject_for_user(user=user), "", ""
    else:
        subject = subject_for_public_request(email=subject_email, name=subject_name, language=language)
        requester_name = user.display_name
    return request_submit(
        actor=Actor.of(user),
        type=type,
        subject=subject,
        user=user,
        on_behalf=on_behalf,
        requester_name=requester_name,
        relationship=relationship,
        details=details,
        language=language,
        reauthenticated=reauthenticated,
        documents=documents,
    )


@transaction.atomic
def request_submit_public(
    *,
    type: str,
    name: str,
    email: str,
    phone: str = "",
    on_behalf: str = OnBehalf.SELF,
    details: str = "",
    relationship: str = "",
    subject_name: str = "",
    subject_email: str = "",
    documents: Iterable[Any] = (),
    language: str = "",
) -> DataSubjectRequest:
    """A request without an account: recorded, then a code is e-mailed to prove the address.
    Taken until the service termination has finished erasing (after that a request would
    record a person nobody erases any more)."""
    finished = termination_done()
    if finished is not None:
        raise ValidationError(
            _(
                "This service stopped on %(day)s and all personal information has been deleted or "
                "anonymised, so no new requests can be made here. For anything else write to %(contact)s."
            )
            % {"day": finished.stop_on.isoformat(), "contact": settings.QUANYI_CONTROLLER_CONTACT}
        )
    if on_behalf == OnBehalf.SELF:
        subject = subject_for_public_request(email=email, name=name, phone=phone, language=language)
        relationship = ""
    else:
        subject = subject_for_public_request(email=subject_email, name=subject_name, language=language)
    request = request_submit(
        actor=Actor("anonymous"),
        type=type,
        subject=subject,
        on_behalf=on_behalf,
        requester_name=name,
        requester_email=email,
        requester_phone=phone,
        relationship=relationship,
        details=details,
        language=language,
        documents=documents,
    )
    challenge_issue(request=request)
    return request


def subject_for_public_request(
    *, email: str, name: str = "", phone: str = "", language: str = ""
) -> DataSubject:
    """The subject a no-account request is about: found by exact e-mail, else a new contact."""
    return subject_find(email=email) or subject_create(
        actor=Actor("anonymous"),
        kind=DataSubject.Kind.CONTACT,
        email=email,
        full_name=name,
        phone=phone,
        language=language,
    )


# --- Documents --------------------------------------------------------------------------------

_SIGNATURES = (
    (b"%PDF-", "application/pdf"),
    (b"\xff\xd8\xff", "image/jpeg"),
    (b"\x89PNG\r\n\x1a\n", "image/png"),
)


def document_check(upload: Any) -> tuple[str, str, bytes]:
    """Size limit and type from the content's signature, never from the name."""
    size = getattr(upload, "size", None)
    if size is not None and size > MAX_DOCUMENT_BYTES:
        raise ValidationError({"documents": _("Each file may be at most 5 MB.")})
    data = upload.read(MAX_DOCUMENT_BYTES + 1)
    if len(data) > MAX_DOCUMENT_BYTES:
        raise ValidationError({"documents": _("Each file may be at most 5 MB.")})
    if not data:
        raise ValidationError({"documents": _("The file is empty.")})
    for magic, content_type in _SIGNATURES:
        if data.startswith(magic):
            if content_type == "application/pdf":
                _pdf_check(data)
            return (str(getattr(upload, "name", "document"))[:200], content_type, data)
    raise ValidationError({"documents": _("Only PDF, JPEG and PNG files are accepted.")})


def _pdf_check(data: bytes) -> None:
    try:
        active = documents.pdf_active_content(data)
    except documents.TooLargeToCheck:
        raise ValidationError({"documents": _("This PDF is too large to check once unpacked.")}) from None
    if active is not None:
        raise ValidationError(
            {"documents": _("PDF files with scripts, attachments or other active content are not accepted.")}
        )


def _store_document(
    request: DataSubjectRequest, name: str, content_type: str, data: bytes
) -> VerificationDocument:
    return VerificationDocument.objects.create(
        request=request,
        filename=name,
        content_type=content_type,
        size=len(data),
        sha256=hashlib.sha256(data).hexdigest(),
        content=base64.b64encode(data).decode(),
    )


@transaction.atomic
def document_add(*, request: DataSubjectRequest, actor: Actor, upload: Any) -> VerificationDocument:
    name, content_type, data = document_check(upload)
    doc = _store_document(request, name, content_type, data)
    audit_log(
        actor=actor,
        action="request.document_added",
        obj=request,
        data={"document": doc.pk, "sha256": doc.sha256},
    )
    return doc


def document_open(*, document: VerificationDocument, actor: Actor) -> bytes:
    """The decrypted file; every opening is audited."""
    audit_log(
        actor=actor, action="request.document_viewed", obj=document.request, data={"document": document.pk}
    )
    return base64.b64decode(document.content or "")


# --- E-mail codes -----------------------------------------------------------------------------


def _code_hash(challenge_id: int, code: str) -> str:
    key = settings.SECRET_KEY.encode()
    return hmac.new(key, f"dsar-code:{challenge_id}:{code}".encode(), hashlib.sha256).hexdigest()


@transaction.atomic
def challenge_issue(*, request: DataSubjectRequest) -> str:
    """Make a fresh 6-digit code (older ones stop working) and e-mail it after commit.
    The code goes straight to the mail server; only its keyed hash is stored."""
    EmailChallenge.objects.filter(request=request, used_at__isnull=True).update(used_at=timezone.now())
    code = f"{secrets.randbelow(10**6):06d}"
    challenge = EmailChallenge.objects.create(
        request=request, code_hash="", expires_at=timezone.now() + CODE_TTL
    )
    EmailChallenge.objects.filter(pk=challenge.pk).update(code_hash=_code_hash(challenge.pk, code))
    audit_log(actor=SYSTEM, action="request.code_sent", obj=request, data={"challenge": challenge.pk})
    from dsar import notifications

    transaction.on_commit(lambda: notifications.send_code(request_id=request.pk, code=code))
    return code


@dataclass(frozen=True)
class CodeResult:
    ok: bool
    reason: str = ""


@transaction.atomic
def challenge_verify(*, request: DataSubjectRequest, code: str) -> CodeResult:
    challenge = (
        EmailChallenge.objects.filter(request=request, used_at__isnull=True).order_by("-created_at").first()
    )
    if challenge is None:
        return CodeResult(False, _("No active code. Ask for a new one."))
    if challenge.expires_at < timezone.now():
        return CodeResult(False, _("The code has expired. Ask for a new one."))
    # Count the try first, with a conditional UPDATE, so parallel guesses cannot exceed 5.
    counted = EmailChallenge.objects.filter(pk=challenge.pk, attempts__lt=CODE_MAX_ATTEMPTS).update(
        attempts=F("attempts") + 1
    )
    if not counted:
        return CodeResult(False, _("Too many wrong codes. Ask for a new one."))
    if not hmac.compare_digest(challenge.code_hash, _code_hash(challenge.pk, code.strip())):
        audit_log(actor=Actor("anonymous"), action="request.code_failed", obj=request)
        return CodeResult(False, _("That code is not right."))
    EmailChallenge.objects.filter(pk=challenge.pk).update(used_at=timezone.now())
    if request.contact_verified_at is None:
        DataSubjectRequest.objects.filter(pk=request.pk).update(contact_verified_at=timezone.now())
        request.contact_verified_at = timezone.now()
        audit_log(actor=Actor("anonymous"), action="request.contact_verified", obj=request)
    return CodeResult(True)


# --- Transitions ------------------------------------------------------------------------------

_ALLOWED: dict[str, tuple[frozenset[str], str]] = {
    "verify": (
        frozenset({Status.SUBMITTED, Status.AWAITING_VERIFICATION, Status.INFO_REQUESTED}),
        Status.VERIFIED,
    ),
    "ask_info": (frozenset({Status.SUBMITTED, Status.AWAITING_VERIFICATION}), Status.INFO_REQUESTED),
    "provide_info": (frozenset({Status.INFO_REQUESTED}), Status.AWAITING_VERIFICATION),
    "start": (frozenset({Status.VERIFIED}), Status.IN_PROGRESS),
    "complete": (frozenset({Status.VERIFIED, Status.IN_PROGRESS}), Status.COMPLETED),
    "refuse": (frozenset(OPEN_STATUSES), Status.REFUSED),
    "withdraw": (frozenset(OPEN_STATUSES), Status.WITHDRAWN),
    # Only the service termination closes a request this way (request_close_terminated).
    "close_terminated": (frozenset(OPEN_STATUSES), Status.COMPLETED),
}


def allowed_actions(request: DataSubjectRequest) -> list[str]:
    return [name for name, (sources, _target) in _ALLOWED.items() if request.status in sources]


def _transition(
    request: DataSubjectRequest,
    action: str,
    *,
    actor: Actor,
    fields: dict[str, Any] | None = None,
    secret_fields: dict[str, str] | None = None,
    data: dict[str, Any] | None = None,
) -> tuple[DataSubjectRequest, bool]:
    """Move the request; returns (request, changed). Must run inside a transaction."""
    sources, target = _ALLOWED[action]
    current = DataSubjectRequest.objects.filter(pk=request.pk).values_list("status", flat=True).first()
    if current == target:
        request.refresh_from_db()
        return request, False
    if current not in sources:
        raise TransitionError(
            _("A request that is %(status)s cannot be %(action)s.")
            % {"status": Status(str(current)).label, "action": ACTION_LABELS.get(action, action)}
        )
    fields = dict(fields or {})
    claimed = DataSubjectRequest.objects.filter(pk=request.pk, status=current).update(status=target, **fields)
    if not claimed:  # somebody else moved it meanwhile: judge again against what they did
        return _transition(
            request, action, actor=actor, fields=fields, secret_fields=secret_fields, data=data
        )
    request.refresh_from_db()
    if secret_fields:
        for name, value in secret_fields.items():
            setattr(request, name, value)
        request.save(update_fields=list(secret_fields))
    audit_log(
        actor=actor,
        action=f"request.{action}",
        obj=request,
        data={"from": current, "to": target, **(data or {})},
    )
    return request, True


ACTION_LABELS = {
    "verify": gettext_lazy("verified"),
    "ask_info": gettext_lazy("asked for more information"),
    "provide_info": gettext_lazy("given information"),
    "start": gettext_lazy("started"),
    "complete": gettext_lazy("completed"),
    "refuse": gettext_lazy("refused"),
    "withdraw": gettext_lazy("withdrawn"),
    "close_terminated": gettext_lazy("closed because the service stopped"),
}


def _email(request: DataSubjectRequest, kind: str) -> None:
    outbox_enqueue("dsar.tasks.send_requester_email", request_id=request.pk, kind=kind)


@transaction.atomic
def request_verify(
    *,
    request: DataSubjectRequest,
    actor: Actor,
    method: str,
    verified_by: User | None = None,
    at: datetime | None = None,
    email: bool = True,
) -> DataSubjectRequest:
    if method not in VerificationMethod.values:
        raise ValidationError({"method": _("Unknown verification method.")})
    at = at or timezone.now()
    deadline = workday_index().deadline(business_today(at))
    request, changed = _transition(
        request,
        "verify",
        actor=actor,
        fields={
            "verified_at": at,
            "verified_by": verified_by,
            "verification_method": method,
            "due_date": deadline.due_date,
            "due_at": deadline.due_at,
            "deadline_provisional": deadline.provisional,
            "deadline_missing_year": deadline.missing_years[0] if deadline.missing_years else None,
        },
        data={"method": method, "due": deadline.due_date.isoformat(), "provisional": deadline.provisional},
    )
    if changed and email:
        _email(request, "verified")
        if (
            method == VerificationMethod.REAUTHENTICATION
            and export_self_service(request)
            and not export_startable(request)
        ):
            # Self-service (seed 000 §4.1): the account holder proved who they are a moment ago
            # and asked for their own data, so nobody needs to look first.
            export_start(request=request, actor=SYSTEM)
    return request


@transaction.atomic
def request_ask_info(
    *, request: DataSubjectRequest, actor: Actor, author: User, message: str
) -> DataSubjectRequest:
    if not message.strip():
        raise ValidationError({"message": _("Say what information is needed.")})
    request, changed = _transition(request, "ask_info", actor=actor)
    if changed:
        RequestMessage.objects.create(
            request=request, kind=RequestMessage.Kind.TO_REQUESTER, author=author, body=message.strip()
        )
        _email(request, "info_needed")
    return request


@transaction.atomic
def request_provide_info(
    *, request: DataSubjectRequest, actor: Actor, message: str, documents: Iterable[Any] = ()
) -> DataSubjectRequest:
    documents = list(documents)
    if not message.strip() and not documents:
        raise ValidationError({"message": _("Add a message or a document.")})
    checked = [document_check(f) for f in documents]
    request, changed = _transition(request, "provide_info", actor=actor, data={"documents": len(checked)})
    if changed:
        if message.strip():
            RequestMessage.objects.create(
                request=request, kind=RequestMessage.Kind.FROM_REQUESTER, body=message.strip()
            )
        for name, content_type, data in checked:
            _store_document(request, name, content_type, data)
    return request


@transaction.atomic
def request_start(*, request: DataSubjectRequest, actor: Actor) -> DataSubjectRequest:
    request, _changed = _transition(request, "start", actor=actor, fields={"started_at": timezone.now()})
    return request


@transaction.atomic
def request_complete(
    *, request: DataSubjectRequest, actor: Actor, answer: str, email: bool = True
) -> DataSubjectRequest:
    """Close with an answer. `email=False` when the caller has already told the requester
    (an erasure sends its report itself, before the address becomes unreadable)."""
    if not answer.strip():
        raise ValidationError({"answer": _("Write the answer the requester will see.")})
    if request.status != Status.COMPLETED and _corrections_open(request):
        raise TransitionError(
            _("Decide every proposed correction, and apply the approved ones, before completing the request.")
        )
    request, changed = _transition(
        request,
        "complete",
        actor=actor,
        fields={"closed_at": timezone.now()},
        secret_fields={"answer": answer.strip()},
        data={"on_time": _on_time(request)},
    )
    if changed and email:
        _email(request, "completed")
    return request


@transaction.atomic
def request_refuse(
    *, request: DataSubjectRequest, actor: Actor, ground: str, explanation: str
) -> DataSubjectRequest:
    if ground not in RefusalGround.values:
        raise ValidationError({"ground": _("Choose one of the legal grounds of the privacy policy.")})
    if not explanation.strip():
        raise ValidationError({"explanation": _("Explain the refusal: the requester will read it.")})
    request, changed = _transition(
        request,
        "refuse",
        actor=actor,
        fields={"closed_at": timezone.now(), "refusal_ground": ground},
        secret_fields={"refusal_explanation": explanation.strip()},
        data={"ground": ground, "on_time": _on_time(request)},
    )
    if changed:
        _email(request, "refused")
    return request


@transaction.atomic
def request_withdraw(
    *, request: DataSubjectRequest, actor: Actor, undo_via: str = "withdrawn"
) -> DataSubjectRequest:
    """Withdraw. A cancellation in its cooling-off is undone with it (`undo_via` says how:
    the undo button, signing in, the API); one whose erasure has started cannot be."""
    undone = False
    if request.type == RequestType.CANCELLATION:
        # dsar.cancellation builds on this module, so it is imported at call time.
        from dsar.cancellation import cancellation_stop

        undone = cancellation_stop(request=request, actor=actor, via=undo_via)
    request, changed = _transition(request, "withdraw", actor=actor, fields={"closed_at": timezone.now()})
    if changed:
        _email(request, "cancellation_undone" if undone else "withdrawn")
    return request


@transaction.atomic
def request_close_terminated(
    *, request: DataSubjectRequest, actor: Actor, reference: str, stop_on: date
) -> DataSubjectRequest:
    """The service termination erases the person (seed 000 §6): nothing is left to act on, so
    their open request is closed as completed, whatever step it had reached, with an answer
    that says why; staff queues, deadline reminders and the cancellation sweep stop chasing it.
    No e-mail: everyone was told of the termination, and the address is about to become
    unreadable. A request already closed is left as it is."""
    with translation.override(request.language or settings.LANGUAGE_CODE):
        answer = _(
            "The service stopped on %(day)s and all personal information was deleted or "
            "anonymised (%(reference)s). Nothing is left to act on, so this request is closed."
        ) % {"day": stop_on.isoformat(), "reference": reference}
    request, _changed = _transition(
        request,
        "close_terminated",
        actor=actor,
        fields={"closed_at": timezone.now()},
        secret_fields={"answer": answer},
        data={"reason": "service_terminated", "termination": reference, "on_time": _on_time(request)},
    )
    return request


def _corrections_open(request: DataSubjectRequest) -> bool:
    """Proposed corrections that still need staff: undecided, or approved and not written."""
    return (
        CorrectionItem.objects.filter(request=request)
        .filter(
            Q(decision=CorrectionItem.Decision.PENDING)
            | Q(decision=CorrectionItem.Decision.APPROVED, applied_at__isnull=True)
        )
        .exists()
    )


def _on_time(request: DataSubjectRequest) -> bool:
    return request.due_at is None or timezone.now() <= request.due_at


@transaction.atomic
def request_assign(*, request: DataSubjectRequest, actor: Actor, assignee: User | None) -> DataSubjectRequest:
    if assignee is not None and not (assignee.is_active and assignee.is_staff):
        raise ValidationError({"assignee": _("Only active staff can be assigned.")})
    new_id = assignee.pk if assignee else None
    if request.assignee_id == new_id:
        return request
    if request.status not in OPEN_STATUSES:
        raise TransitionError(_("A closed request cannot be reassigned."))
    old = request.assignee_id
    DataSubjectRequest.objects.filter(pk=request.pk).update(assignee=assignee)
    request.refresh_from_db()
    audit_log(actor=actor, action="request.assigned", obj=request, data={"from": old, "to": new_id})
    return request


@transaction.atomic
def request_claim(
    *, request: DataSubjectRequest, actor: Actor, assignee: User, take_over: bool = False
) -> DataSubjectRequest:
    """ "Assign to me": a conditional UPDATE, so two agents taking the same request at once
    cannot both win. Without `take_over` (the DPO's right) a colleague's request is refused."""
    if not (assignee.is_active and assignee.is_staff):
        raise ValidationError({"assignee": _("Only active staff can be assigned.")})
    qs = DataSubjectRequest.objects.filter(pk=request.pk, status__in=OPEN_STATUSES)
    if not take_over:
        qs = qs.filter(Q(assignee__isnull=True) | Q(assignee=assignee))
    old = DataSubjectRequest.objects.filter(pk=request.pk).values_list("assignee_id", flat=True).first()
    if old == assignee.pk:
        request.refresh_from_db()
        return request
    if not qs.update(assignee=assignee):
        request.refresh_from_db()
        if request.status not in OPEN_STATUSES:
            raise TransitionError(_("A closed request cannot be reassigned."))
        raise TransitionError(_("A colleague has already taken this request."))
    request.refresh_from_db()
    audit_log(actor=actor, action="request.assigned", obj=request, data={"from": old, "to": assignee.pk})
    return request


@transaction.atomic
def request_note(
    *, request: DataSubjectRequest, actor: Actor, author: User | None, body: str
) -> RequestMessage:
    """An internal note for staff (`author` None: written by the system)."""
    if not body.strip():
        raise ValidationError({"body": _("The note is empty.")})
    note = RequestMessage.objects.create(
        request=request, kind=RequestMessage.Kind.INTERNAL, author=author, body=body.strip()
    )
    audit_log(actor=actor, action="request.note_added", obj=request, data={"message": note.pk})
    return note


# --- Calendar ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class ScheduleImport:
    year: int
    holidays: int
    workdays: int
    created: bool


def parse_schedule(payload: Any) -> tuple[int, dict[date, str], dict[date, str]]:
    """Validate `{"year": 2027, "holidays": {"2027-01-01": "元旦"}, "workdays": {...}}`."""
    if not isinstance(payload, dict):
        raise ValidationError(_("The schedule must be a JSON object."))
    unknown = set(payload) - {"year", "holidays", "workdays"}
    if unknown:
        raise ValidationError(_("Unknown keys: %(keys)s") % {"keys": ", ".join(sorted(unknown))})
    year = payload.get("year")
    if not isinstance(year, int) or isinstance(year, bool) or not 2000 <= year <= 2100:
        raise ValidationError(_("'year' must be a year between 2000 and 2100."))
    parsed: list[dict[date, str]] = []
    for key in ("holidays", "workdays"):
        section = payload.get(key, {})
        if not isinstance(section, dict):
            raise ValidationError(_("'%(key)s' must map dates to names.") % {"key": key})
        days: dict[date, str] = {}
        for raw, name in section.items():
            try:
                day = date.fromisoformat(raw)
            except (TypeError, ValueError):
                raise ValidationError(
                    _("'%(raw)s' in %(key)s is not a date (YYYY-MM-DD).") % {"raw": raw, "key": key}
                ) from None
            if day.year != year:
                raise ValidationError(
                    _("%(day)s in %(key)s is not in %(year)s.") % {"day": raw, "key": key, "year": year}
                )
            if not isinstance(name, str) or not name.strip() or len(name) > 100:
                raise ValidationError(_("%(day)s in %(key)s needs a name.") % {"day": raw, "key": key})
            days[day] = name.strip()
        parsed.append(days)
    holidays, workdays = parsed
    both = sorted(set(holidays) & set(workdays))
    if both:
        raise ValidationError(
            _("%(day)s is both a holiday and a working day.") % {"day": both[0].isoformat()}
        )
    return year, holidays, workdays


@transaction.atomic
def calendar_import(*, actor: Actor, payload: Any, source: str = "import") -> ScheduleImport:
    """Load a year's official schedule (replacing what was there) and queue the recomputation
    of every provisional deadline. Idempotent: the same file twice changes nothing."""
    year, holidays, workdays = parse_schedule(payload)
    existing = {
        (d, k, n)
        for d, k, n in CalendarDay.objects.filter(date__year=year).values_list("date", "kind", "name")
    }
    wanted = {(d, "holiday", n) for d, n in holidays.items()} | {
        (d, "workday", n) for d, n in workdays.items()
    }
    known = CalendarYear.objects.filter(year=year).exists()
    if existing == wanted and known:
        return ScheduleImport(year, len(holidays), len(workdays), False)
    CalendarDay.objects.filter(date__year=year).delete()
    CalendarDay.objects.bulk_create(CalendarDay(date=d, kind=k, name=n) for d, k, n in sorted(wanted))
    CalendarYear.objects.update_or_create(year=year, defaults={"source": source[:100]})
    audit_log(
        actor=actor,
        action="calendar.imported",
        object_type="dsar.calendaryear",
        object_id=str(year),
        data={"holidays": len(holidays), "workdays": len(workdays), "source": source[:100]},
    )
    outbox_enqueue("dsar.tasks.recompute_deadlines", year=year)
    return ScheduleImport(year, len(holidays), len(workdays), True)


@transaction.atomic
def calendar_day_save(*, actor: Actor, day: date, kind: str, name: str) -> CalendarDay:
    if kind not in CalendarDay.Kind.values:
        raise ValidationError({"kind": _("Unknown kind.")})
    obj, _created = CalendarDay.objects.update_or_create(date=day, defaults={"kind": kind, "name": name})
    CalendarYear.objects.filter(year=day.year).update(loaded_at=timezone.now())
    audit_log(
        actor=actor,
        action="calendar.day_saved",
        object_type="dsar.calendarday",
        object_id=day.isoformat(),
        data={"kind": kind},
    )
    outbox_enqueue("dsar.tasks.recompute_deadlines", year=day.year)
    return obj


@transaction.atomic
def calendar_day_delete(*, actor: Actor, day: date) -> None:
    deleted, _ = CalendarDay.objects.filter(date=day).delete()
    if deleted:
        CalendarYear.objects.filter(year=day.year).update(loaded_at=timezone.now())
        audit_log(
            actor=actor,
            action="calendar.day_deleted",
            object_type="dsar.calendarday",
            object_id=day.isoformat(),
        )
        outbox_enqueue("dsar.tasks.recompute_deadlines", year=day.year)


def deadlines_recompute(*, year: int, batch: int = 1000) -> list[int]:
    """Recompute every open request whose deadline touches `year` (provisional ones, and ones
    counted with an older schedule). Returns the ids whose due date moved. Resumable: it
    works in batches by id and each batch commits on its own."""
    index = workday_index(refresh=True)
    moved: list[int] = []
    last_id = 0
    while True:
        rows = list(
            DataSubjectRequest.objects.filter(
                pk__gt=last_id,
                status__in=CLOCK_RUNNING,
                verified_at__isnull=False,
                due_date__year__gte=year,
            )
            .order_by("pk")
            .values_list("pk", "verified_at", "due_date", "deadline_provisional")[:batch]
        )
        if not rows:
            return moved
        with transaction.atomic():
            for pk, verified_at, due_date, provisional in rows:
                if verified_at is None or due_date is None:  # excluded by the query; for the type checker
                    continue
                first_counted = business_today(verified_at) + timedelta(days=1)
                if not (first_counted.year <= year <= due_date.year) and not provisional:
                    continue
                d = index.deadline(business_today(verified_at))
                missing = d.missing_years[0] if d.missing_years else None
                changed = (
                    DataSubjectRequest.objects.filter(pk=pk)
                    .exclude(due_date=d.due_date, deadline_provisional=d.provisional)
                    .update(
                        due_date=d.due_date,
                        due_at=d.due_at,
                        deadline_provisional=d.provisional,
                        deadline_missing_year=missing,
                    )
                )
                if changed:
                    audit_log(
                        actor=SYSTEM,
                        action="request.deadline_recomputed",
                        object_type="dsar.datasubjectrequest",
                        object_id=str(pk),
                        data={
                            "from": due_date.isoformat(),
                            "to": d.due_date.isoformat(),
                            "provisional": d.provisional,
                        },
                    )
                    if d.due_date != due_date:
                        moved.append(pk)
                        outbox_enqueue(
                            "dsar.tasks.send_deadline_moved", request_id=pk, old_due=due_date.isoformat()
                        )
        last_id = rows[-1][0]


# --- Reminders --------------------------------------------------------------------------------


def reminder_threshold(*, left: int, overdue: bool) -> str | None:
    if overdue:
        return Reminder.Threshold.OVERDUE
    if left <= 1:
        return Reminder.Threshold.ONE
    if left <= 2:
        return Reminder.Threshold.TWO
    if left <= 5:
        return Reminder.Threshold.FIVE
    return None


def reminders_sweep(*, now: datetime | None = None, batch: int = 500) -> int:
    """Queue the reminders that are due. Finds candidates through the (status, due_at) index:
    only requests due within 5 working days are read, however many requests exist. Each
    reminder is a row under a unique constraint, inserted with its e-mail in one
    transaction, so it goes out once however often (or concurrently) this runs."""
    now = now or timezone.now()
    index = workday_index()
    today = business_today(now)
    horizon = index.date_with_working_days_left(today, 5)
    sent = 0
    last_due: datetime | None = None
    last_id = 0
    base = DataSubjectRequest.objects.filter(status__in=CLOCK_RUNNING, due_at__lte=_end_of(horizon))
    while True:
        qs = base
        if last_due is not None:
            qs = qs.filter(due_at__gte=last_due).exclude(due_at=last_due, pk__lte=last_id)
        rows = list(qs.order_by("due_at", "pk").values_list("pk", "due_date", "due_at")[:batch])
        if not rows:
            return sent
        ids = [r[0] for r in rows]
        done = set(Reminder.objects.filter(request_id__in=ids).values_list("request_id", "threshold"))
        wanted: list[tuple[int, str]] = []
        for pk, due_date, due_at in rows:
            if due_date is None or due_at is None:  # a running clock always has both
                continue
            threshold = reminder_threshold(
                left=index.working_days_between(today, due_date), overdue=now > due_at
            )
            if threshold is not None and (pk, threshold) not in done:
                wanted.append((pk, threshold))
        if wanted:
            # One transaction per batch: the rows that this sweep inserts (and only those: a
            # concurrent sweep's rows conflict and are skipped) get their e-mail and audit entry.
            with transaction.atomic():
                for reminder_id, request_id, threshold in _insert_reminders(wanted, now):
                    outbox_enqueue("dsar.tasks.send_reminder", reminder_id=reminder_id)
                    audit_log(
                        actor=SYSTEM,
                        action="request.reminder",
                        object_type="dsar.datasubjectrequest",
                        object_id=str(request_id),
                        data={"threshold": threshold},
                    )
                    sent += 1
        last_due, last_id = rows[-1][2], rows[-1][0]


def _insert_reminders(wanted: list[tuple[int, str]], now: datetime) -> list[tuple[int, int, str]]:
    """INSERT ... ON CONFLICT DO NOTHING RETURNING (PostgreSQL, SQLite >= 3.35): the unique
    constraint decides who sends, in one statement for the whole batch."""
    table = Reminder._meta.db_table
    created = connection.ops.adapt_datetimefield_value(now)
    values = ", ".join(["(%s, %s, %s)"] * len(wanted))
    params: list[Any] = []
    for request_id, threshold in wanted:
        params.extend([request_id, threshold, created])
    with connection.cursor() as cursor:
        cursor.execute(
            f"INSERT INTO {table} (request_id, threshold, created_at) VALUES {values} "  # noqa: S608 - no input
            "ON CONFLICT (request_id, threshold) DO NOTHING RETURNING id, request_id, threshold",
            params,
        )
        return [(int(r[0]), int(r[1]), str(r[2])) for r in cursor.fetchall()]


def _end_of(day: date) -> datetime:
    from dsar.workdays import end_of_day

    return end_of_day(day)


# --- Access packages ------------------------------------------------------------------------------
#
# export_start queues a build (audited, through the outbox); the task runs export_build, which
# claims the export with a conditional UPDATE and a lease, writes the ZIP to an anonymous
# temporary file, encrypts it into a ".part" file and renames that into place. The lease is
# renewed with every batch of rows: a build whose worker died stops renewing it and the next
# run (the outbox relay re-publishes unfinished work) takes the export over and starts the file
# again. A stale run notices at its next batch that the export is no longer its own and stops.


def export_lease() -> timedelta:
    """How long a build's claim lasts without progress (QUANYI_EXPORT_LEASE_SECONDS)."""
    return timedelta(seconds=settings.QUANYI_EXPORT_LEASE_SECONDS)


BUILT = "ready"
BUILD_FAILED = "failed"
BUILD_BUSY = "busy"  # another worker holds a live lease
BUILD_NOTHING = "nothing"  # already ready, failed or expired


class ExportUnavailable(package.ExportError):
    """The package cannot be downloaded: `reason` is not_ready, expired, key_destroyed,
    missing or corrupt; the message is for the requester."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


class _Abandoned(Exception):
    """The export stopped being this run's (taken over after a lost lease, or expired)."""


def export_dir() -> Path:
    """The folder of package files, created private to this user. Never served by the web."""
    folder = Path(settings.QUANYI_EXPORT_DIR)
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    return folder


def export_self_service(request: DataSubjectRequest) -> bool:
    """A request the portal may answer with a package without staff starting it: access, copy
    or portability, asked by the account holder for themselves."""
    return (
        request.type in EXPORT_TYPES
        and request.on_behalf == OnBehalf.SELF
        and request.user_id is not None
        and request.subject.user_id == request.user_id
    )


def export_startable(request: DataSubjectRequest) -> str:
    """Why a package cannot be started for this request now ("" when it can)."""
    if request.type not in EXPORT_TYPES:
        return _("Only access, copy and portability requests are answered with a package.")
    if request.status not in CLOCK_RUNNING:
        return _("A package is prepared once the identity is verified and while the request is open.")
    if request.on_behalf != OnBehalf.SELF:
        # Only the person's own account downloads it; the requester here is someone else.
        return _(
            "The request was made on someone's behalf, and only the person's own account can "
            "download a package: build it with `manage.py export_subject` and deliver it."
        )
    if request.subject.user_id is None:
        return _(
            "The person has no account to download the package from: build it with "
            "`manage.py export_subject` and deliver it another way."
        )
    if request.subject.is_erased or crypto.subject_key_is_destroyed(request.subject.key_id):
        return _("The person's data was erased: there is nothing to put in a package.")
    return ""


def export_latest(request: DataSubjectRequest) -> DataExport | None:
    return DataExport.objects.filter(request=request).order_by("-created_at", "-pk").first()


@transaction.atomic
def export_start(*, request: DataSubjectRequest, actor: Actor) -> DataExport:
    """Queue the package for an access, copy or portability request whose identity is verified.
    Idempotent: while a package is queued, being built or ready, that one is returned."""
    request = DataSubjectRequest.objects.select_for_update().select_related("subject").get(pk=request.pk)
    live = DataExport.objects.filter(request=request, status__in=LIVE_EXPORT_STATUSES).first()
    if live is not None:
        if not (live.status == ExportStatus.READY and live.expires_at and live.expires_at <= timezone.now()):
            return live
        _export_expire_one(live.pk, request.pk)  # its window passed before the hourly job came
    problem = export_startable(request)
    if problem:
        raise TransitionError(problem)
    export = DataExport.objects.create(
        request=request,
        subject=request.subject,
        language=request.language or request.subject.language,
    )
    audit_log(actor=actor, action="export.queued", obj=request, data={"export": export.pk})
    outbox_enqueue("dsar.tasks.build_export", export_id=export.pk)
    return export


def export_build(*, export_id: int) -> str:
    """The body of the build task: claim, build, then ready or failed. Running it again on a
    ready, failed or expired export does nothing; on a build whose lease ran out it starts over."""
    now = timezone.now()
    claimed = (
        DataExport.objects.filter(pk=export_id)
        .filter(Q(status=ExportStatus.QUEUED) | Q(status=ExportStatus.BUILDING, lease_until__lt=now))
        .update(
            status=ExportStatus.BUILDING,
            lease_until=now + export_lease(),
            started_at=now,
            attempts=F("attempts") + 1,
            rows_done=0,
            step="",
            last_error="",
        )
    )
    if not claimed:
        current = DataExport.objects.filter(pk=export_id).values_list("status", flat=True).first()
        return BUILD_BUSY if current == ExportStatus.BUILDING else BUILD_NOTHING
    export = DataExport.objects.select_related("request", "subject", "subject__user").get(pk=export_id)
    attempt = export.attempts
    audit_log(
        actor=SYSTEM,
        action="export.building",
        obj=export.request,
        data={"export": export.pk, "attempt": attempt},
    )
    try:
        _export_build_file(export, attempt)
    except _Abandoned:
        log.warning("export %s: attempt %s lost its claim and stopped", export.pk, attempt)
        return BUILD_NOTHING
    except Exception as exc:
        log.exception("export %s: attempt %s failed", export.pk, attempt)
        _export_fail(export, attempt, exc)
        return BUILD_FAILED
    return BUILT


def _mine(export: DataExport, attempt: int) -> Any:
    return DataExport.objects.filter(pk=export.pk, status=ExportStatus.BUILDING, attempts=attempt)


def _export_build_file(export: DataExport, attempt: int) -> None:
    request, subject = export.request, export.subject
    if request.status in (Status.WITHDRAWN, Status.REFUSED):
        raise package.ExportError(_("The request was closed before the package was ready."))
    folder = export_dir()
    # Nothing of an export that is not ready is worth keeping: a crashed attempt's files go.
    for stale in folder.glob(f"export-{export.pk}-*"):
        stale.unlink(missing_ok=True)
    key = package.file_key_new()
    # Wrapped first: a subject whose key was destroyed fails here, before any work.
    wrapped = crypto.encrypt(subject.key_id, base64.b64encode(key).decode(), aad=f"dsar.export:{export.pk}")
    plan = package.package_plan(subject=subject, request=request, language=export.language)
    if not _mine(export, attempt).update(
        rows_total=plan.rows_total, step="plan", lease_until=timezone.now() + export_lease()
    ):
        raise _Abandoned

    def progress(done: int, step: str) -> None:
        renewed = _mine(export, attempt).update(
            rows_done=done, step=step[:120], lease_until=timezone.now() + export_lease()
        )
        if not renewed:
            raise _Abandoned

    name = f"export-{export.pk}-{secrets.token_hex(8)}.qyx"
    final, part = folder / name, folder / f"{name}.part"
    try:
        # The plaintext ZIP has no name on disk: it disappears when closed, also on a crash.
        with tempfile.TemporaryFile(dir=folder) as plain:
            stats = package.package_write(plain, plan, progress=progress, scratch_dir=folder)
            progress(stats.rows, "encrypt")
            plain.seek(0)
            with _open_private(part) as out:
                size, digest = package.encrypt_file(plain, out, key=key, export_id=export.pk)
                out.flush()
                os.fsync(out.fileno())
        os.replace(part, final)
    finally:
        part.unlink(missing_ok=True)
    try:
        _export_ready(export, attempt, name=name, size=size, digest=digest, wrapped=wrapped, rows=stats.rows)
    except BaseException:
        final.unlink(missing_ok=True)
        raise


def _open_private(path: Path) -> IO[bytes]:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    return os.fdopen(fd, "wb")


@transaction.atomic
def _export_ready(
    export: DataExport, attempt: int, *, name: str, size: int, digest: str, wrapped: str, rows: int
) -> None:
    now = timezone.now()
    expires = now + timedelta(days=settings.QUANYI_EXPORT_TTL_DAYS)
    if not _mine(export, attempt).update(
        status=ExportStatus.READY,
        file_path=name,
        size=size,
        sha256=digest,
        wrapped_key=wrapped,
        finished_at=now,
        expires_at=expires,
        rows_done=rows,
        step="",
        lease_until=None,
    ):
        raise _Abandoned
    export.refresh_from_db()
    request = export.request
    audit_log(
        actor=SYSTEM,
        action="export.ready",
        obj=request,
        data={"export": export.pk, "rows": rows, "size": size, "sha256": digest},
    )
    outbox_enqueue("dsar.tasks.send_export_ready", export_id=export.pk)
    # Access and copy are answered by the package itself, so the request is completed with an
    # answer that names it (the clock stops, no reminder fires for a request already served).
    # Portability stays open: staff may still have to send the data to the provider named.
    request.refresh_from_db()
    if request.type in (RequestType.ACCESS, RequestType.COPY) and request.status in CLOCK_RUNNING:
        with translation.override(request.language):
            answer = export_answer(export)
        request_complete(request=request, actor=SYSTEM, answer=answer, email=False)


def export_answer(export: DataExport) -> str:
    """The answer of a request served by its package, in the active language."""
    expires = export.expires_at.astimezone(business_tz()) if export.expires_at else None
    return _(
        "Your personal information package is ready: %(file)s (%(rows)d rows, SHA-256 %(sha)s). "
        "Download it from this page until %(expires)s (%(tz)s); you will be asked to confirm your "
        "password. It holds index.html to read, data.json with everything in a machine-readable "
        "format (described by schema.json) and one CSV file per table."
    ) % {
        "file": export_filename(export),
        "rows": export.rows_done,
        "sha": export.sha256,
        "expires": expires.strftime("%Y-%m-%d %H:%M") if expires else "—",
        "tz": business_tz().key,
    }


def export_filename(export: DataExport) -> str:
    return f"quanyi-{export.request.reference}.zip"


def _export_fail(export: DataExport, attempt: int, exc: BaseException) -> None:
    # Our own errors say what is wrong in words a person can act on; anything else is named by
    # its type only (a database error's text may quote the values it choked on).
    known = (package.ExportError, crypto.CryptoError)
    message = str(exc) if isinstance(exc, known) and str(exc) else type(exc).__name__
    if isinstance(exc, crypto.KeyDestroyed):
        message = _("The person's key was destroyed (their data was erased).")
    with transaction.atomic():
        failed = _mine(export, attempt).update(
            status=ExportStatus.FAILED,
            finished_at=timezone.now(),
            last_error=message[:500],
            lease_until=None,
            step="",
        )
        if failed:
            audit_log(
                actor=SYSTEM,
                action="export.failed",
                obj=export.request,
                data={"export": export.pk, "attempt": attempt, "error": type(exc).__name__},
            )


def _export_key(export: DataExport) -> bytes:
    try:
        text = crypto.decrypt(export.wrapped_key, aad=f"dsar.export:{export.pk}")
    except (crypto.KeyDestroyed, crypto.KeyMissing):
        raise ExportUnavailable(
            "key_destroyed",
            _("This package can no longer be opened: the personal data it held has been erased."),
        ) from None
    except crypto.DecryptionFailed:
        raise ExportUnavailable(
            "corrupt", _("This package cannot be opened: its key is damaged. Ask us for a new one.")
        ) from None
    return base64.b64decode(text)


def export_open(export: DataExport) -> Iterator[bytes]:
    """The decrypted ZIP, chunk by chunk, after checking that the whole file authenticates and
    matches its SHA-256 (so a damaged file gives a clear error instead of a broken download).
    For callers that already decided the reader may have it."""
    key = _export_key(export)
    path = _export_path(export.file_path)
    if not export.file_path or not path.is_file():
        raise ExportUnavailable("missing", _("This package's file is gone. Ask us for a new one."))
    digest = hashlib.sha256()
    try:
        with path.open("rb") as f:
            for chunk in package.decrypt_chunks(f, key=key, export_id=export.pk):
                digest.update(chunk)
    except package.ExportCorrupt as exc:
        raise ExportUnavailable("corrupt", str(exc)) from None
    if digest.hexdigest() != export.sha256:
        raise ExportUnavailable(
            "corrupt", _("The package file does not match its checksum. It cannot be opened.")
        )
    return _stream(path, key, export.pk)


def _stream(path: Path, key: bytes, export_id: int) -> Iterator[bytes]:
    with path.open("rb") as f:
        yield from package.decrypt_chunks(f, key=key, export_id=export_id)


def export_download(*, export: DataExport, actor: Actor) -> Iterator[bytes]:
    """Hand the package to its owner (the caller checked who asks and their reauthentication):
    only while ready and inside its window; every download is counted and audited."""
    export.refresh_from_db()
    now = timezone.now()
    if export.status == ExportStatus.EXPIRED or (
        export.status == ExportStatus.READY and export.expires_at is not None and export.expires_at <= now
    ):
        raise ExportUnavailable(
            "expired",
            _("This package has expired and was deleted. You can make a new request for a fresh one."),
        )
    if export.status != ExportStatus.READY:
        raise ExportUnavailable("not_ready", _("The package is not ready yet."))
    try:
        stream = export_open(export)
    except ExportUnavailable as exc:
        log.error("export %s: cannot be opened (%s)", export.pk, exc.reason)
        audit_log(
            actor=actor,
            action="export.unreadable",
            obj=export.request,
            data={"export": export.pk, "reason": exc.reason},
        )
        raise
    with transaction.atomic():
        counted = DataExport.objects.filter(pk=export.pk, status=ExportStatus.READY).update(
            download_count=F("download_count") + 1, last_downloaded_at=now
        )
        if not counted:
            raise ExportUnavailable("expired", _("This package has expired and was deleted."))
        audit_log(
            actor=actor,
            action="export.downloaded",
            obj=export.request,
            data={"export": export.pk, "sha256": export.sha256},
        )
    return stream


def exports_expire(*, now: datetime | None = None, batch: int = 200) -> int:
    """Expire the packages whose window has passed and delete their files; also forget the
    file key, so a copy of the file that survived somewhere cannot be opened either.
    Resumable: a package marked expired whose file is still there is deleted on the next run."""
    now = now or timezone.now()
    expired = 0
    while True:
        due = list(
            DataExport.objects.filter(status=ExportStatus.READY, expires_at__lte=now)
            .order_by("expires_at", "pk")
            .values_list("pk", "request_id")[:batch]
        )
        if not due:
            break
        for pk, request_id in due:
            expired += _export_expire_one(pk, request_id)
    leftovers = DataExport.objects.filter(status__in=[ExportStatus.EXPIRED, ExportStatus.FAILED]).exclude(
        file_path=""
    )
    for pk, file_path in list(leftovers.values_list("pk", "file_path")[: batch * 10]):
        _export_path(file_path).unlink(missing_ok=True)
        DataExport.objects.filter(pk=pk).update(file_path="")
    return expired


@transaction.atomic
def _export_expire_one(pk: int, request_id: int) -> int:
    """Ready → expired, the wrapped key forgotten; the file goes with the next sweep's cleanup."""
    if not DataExport.objects.filter(pk=pk, status=ExportStatus.READY).update(
        status=ExportStatus.EXPIRED, wrapped_key=""
    ):
        return 0
    audit_log(
        actor=SYSTEM,
        action="export.expired",
        object_type="dsar.datasubjectrequest",
        object_id=str(request_id),
        data={"export": pk},
    )
    return 1


def _export_path(file_path: str) -> Path:
    # The stored name only, inside the export folder, whatever the column holds.
    return export_dir() / Path(file_path).name


@dataclass(frozen=True)
class StaffPackage:
    path: Path
    rows: int
    size: int
    sha256: str


def export_to_file(*, subject: DataSubject, out: Path, actor: Actor, language: str = "") -> StaffPackage:
    """The same package as a plaintext ZIP at `out`, for staff work (answering a person
    without an account, a regulator's inquiry). Written beside `out` and renamed into place;
    the audit entry records who, how many rows and the checksum, never the content."""
    out = out.expanduser().absolute()
    plan = package.package_plan(subject=subject, request=None, language=language or subject.language)
    fd, tmp_name = tempfile.mkstemp(dir=out.parent, prefix=".quanyi-", suffix=".zip.part")
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "w+b") as f:
            stats = package.package_write(f, plan)
            f.flush()
            os.fsync(f.fileno())
            f.seek(0)
            digest = hashlib.file_digest(f, "sha256").hexdigest()
            size = f.tell()
        os.replace(tmp, out)
    finally:
        tmp.unlink(missing_ok=True)
    audit_log(
        actor=actor,
        action="export.staff_built",
        obj=subject,
        data={"rows": stats.rows, "size": size, "sha256": digest},
    )
    return StaffPackage(path=out, rows=stats.rows, size=size, sha256=digest)
