from __future__ import annotations

from core.datamap import Category as C
from core.datamap import Erase, Export, PersonalField, register
from dsar.models import (
    AccountCancellation,
    CalendarDay,
    CalendarYear,
    CorrectionItem,
    DataExport,
    DataSubjectRequest,
    EmailChallenge,
    Reminder,
    RequestCounter,
    RequestMessage,
    VerificationDocument,
)

# A request is itself a record about the subject (seed 000 §4): kept for accountability
# after it closes (retention issue), its free text encrypted under the subject's key.
register(
    DataSubjectRequest,
    subject="subject",
    fields={
        "requester_name": PersonalField(C.CONTACT, erase=Erase.NULL),
        "requester_email": PersonalField(C.CONTACT, erase=Erase.NULL),
        "requester_email_index": PersonalField(
            C.CONTACT, export=Export.OMIT, erase=Erase.NULL, note="keyed HMAC"
        ),
        "requester_phone": PersonalField(C.CONTACT, erase=Erase.NULL),
        "requester_phone_index": PersonalField(
            C.CONTACT, export=Export.OMIT, erase=Erase.NULL, note="keyed HMAC"
        ),
        "relationship": PersonalField(C.INTERACTION, erase=Erase.NULL),
        "details": PersonalField(C.INTERACTION, erase=Erase.NULL),
        "answer": PersonalField(C.INTERACTION, erase=Erase.NULL),
        "refusal_explanation": PersonalField(C.INTERACTION, erase=Erase.NULL),
        "language": PersonalField(C.INTERACTION, erase=Erase.KEEP),
    },
    not_personal=[
        "id",
        "reference",
        "type",
        "status",
        "subject",
        "user",
        "on_behalf",
        "submitted_at",
        "contact_verified_at",
        "verified_at",
        "verified_by",
        "verification_method",
        "due_date",
        "due_at",
        "deadline_provisional",
        "deadline_missing_year",
        "assignee",
        "started_at",
        "closed_at",
        "refusal_ground",
    ],
    note="the request's workflow facts are kept as evidence; its text is encrypted",
)
register(
    RequestMessage,
    subject="request.subject",
    fields={"body": PersonalField(C.COMMUNICATIONS, erase=Erase.NULL)},
    not_personal=["id", "request", "kind", "author", "created_at"],
)
register(
    VerificationDocument,
    subject="request.subject",
    fields={
        "filename": PersonalField(
            C.IDENTITY_DOCUMENTS, sensitive=True, export=Export.OMIT, erase=Erase.DELETE
        ),
        "content": PersonalField(
            C.IDENTITY_DOCUMENTS, sensitive=True, export=Export.OMIT, erase=Erase.DELETE
        ),
    },
    not_personal=["id", "request", "content_type", "size", "sha256", "uploaded_at"],
)
register(
    EmailChallenge,
    subject="request.subject",
    not_personal=["id", "request", "code_hash", "created_at", "expires_at", "attempts", "used_at"],
)
register(Reminder, subject="request.subject", not_personal=["id", "request", "threshold", "created_at"])
register(RequestCounter, subject="", not_personal=["year", "last"])
register(CalendarDay, subject="", not_personal=["date", "kind", "name"])
register(CalendarYear, subject="", not_personal=["year", "source", "loaded_at"])
register(
    CorrectionItem,
    subject="request.subject",
    fields={
        # A value of whichever field is corrected, health information included: treated as
        # sensitive whatever the field.
        "current_value": PersonalField(C.INTERACTION, sensitive=True, erase=Erase.NULL),
        "proposed_value": PersonalField(C.INTERACTION, sensitive=True, erase=Erase.NULL),
        "reason": PersonalField(C.INTERACTION, erase=Erase.NULL),
        "decision_reason": PersonalField(C.INTERACTION, erase=Erase.NULL),
    },
    not_personal=[
        "id",
        "request",
        "target",
        "table",
        "column",
        "row",
        "decision",
        "decided_by",
        "decided_at",
        "applied_at",
        "rows_changed",
        "created_at",
    ],
    note="which field was corrected, and the decision, are kept as evidence; the values are encrypted",
)
# The cooling-off schedule of a self-service cancellation: dates and how it was undone. The
# optional reason the subject gave is the request's `details` (encrypted there).
register(
    AccountCancellation,
    subject="request.subject",
    not_personal=[
        "id",
        "request",
        "user",
        "confirmed_at",
        "scheduled_for",
        "undone_at",
        "undone_via",
        "started_at",
        "blocked_at",
    ],
)
# The package file itself is encrypted under a key wrapped by the subject's key: destroying
# that key (erasure) makes it unreadable, and the hourly job deletes it after its window.
register(
    DataExport,
    subject="subject",
    fields={
        "wrapped_key": PersonalField(
            C.ACCOUNT,
            export=Export.OMIT,
            erase=Erase.NULL,
            note="the package's file key, wrapped under the subject key",
        ),
        "language": PersonalField(C.INTERACTION, erase=Erase.KEEP),
    },
    not_personal=[
        "id",
        "request",
        "subject",
        "status",
        "attempts",
        "lease_until",
        "rows_done",
        "rows_total",
        "step",
        "file_path",
        "size",
        "sha256",
        "created_at",
        "started_at",
        "finished_at",
        "expires_at",
        "download_count",
        "last_downloaded_at",
        "last_error",
    ],
    note="a file of every personal data we hold about the subject, encrypted; deleted after its window",
)
