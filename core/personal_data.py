from __future__ import annotations

from core.datamap import Category as C
from core.datamap import Erase, Export, PersonalField, register
from core.models import (
    AuditChainHead,
    AuditEntry,
    Disclosure,
    Heartbeat,
    JobState,
    OutboxMessage,
    Recipient,
    RecipientNotice,
    SubjectKey,
)

# The audit log holds pseudonymous ids only; it is kept (and later redacted, never deleted)
# so that the chain stays verifiable after erasure.
register(
    AuditEntry,
    subject="",
    fields={
        "actor_id": PersonalField(C.INTERACTION, export=Export.OMIT, erase=Erase.KEEP, note="user id only"),
    },
    not_personal=[
        "seq",
        "at",
        "actor_type",
        "action",
        "object_type",
        "object_id",
        "data",
        "prev_hash",
        "hash",
    ],
)
register(
    SubjectKey,
    subject="",
    fields={
        "wrapped": PersonalField(
            C.ACCOUNT,
            export=Export.OMIT,
            erase=Erase.NULL,
            note="destroying it shreds the subject's ciphertexts",
        ),
    },
    not_personal=["key_id", "master_key_id", "created_at", "rotated_at", "destroyed_at"],
)
register(AuditChainHead, subject="", not_personal=["id", "seq", "hash"])
register(
    OutboxMessage,
    subject="",
    not_personal=[
        "id",
        "task_name",
        "kwargs",
        "created_at",
        "dispatched_at",
        "attempts",
        "completed_at",
        "last_error",
    ],
    note="task arguments are ids only",
)
register(
    JobState,
    subject="",
    not_personal=[
        "name",
        "claimed_until",
        "last_started_at",
        "last_finished_at",
        "last_status",
        "last_detail",
        "runs",
    ],
)
register(Heartbeat, subject="", not_personal=["source", "at", "hostname"])


# The disclosure register. Recipients are organisations; their contact is a business address.
register(
    Recipient,
    subject="",
    not_personal=[
        "id",
        "code",
        "name",
        "kind",
        "purpose",
        "legal_basis",
        "categories",
        "country",
        "contact_email",
        "webhook_url",
        "webhook_secret",
        "active",
        "created_at",
        "updated_at",
    ],
    note="organisations that receive personal data; the webhook secret is sealed",
)
# Who received a person's data is part of what the person may ask to see (PIPL Art. 45).
register(
    Disclosure,
    subject="subject",
    fields={
        "external_ref": PersonalField(
            C.ACCOUNT, erase=Erase.NULL, note="the recipient's own id for the person; subject key"
        ),
    },
    not_personal=["id", "recipient", "subject", "categories", "first_at", "last_at"],
)
register(
    RecipientNotice,
    subject="subject",
    fields={
        # Kept through erasure on purpose: the deletion notice is still owed after the subject's
        # key is destroyed. Cleared as soon as the notice is delivered or done.
        "personal_sealed": PersonalField(
            C.ACCOUNT,
            export=Export.OMIT,
            erase=Erase.KEEP,
            note="recipient's reference and corrected values, sealed; cleared once delivered",
        ),
        "handled_note": PersonalField(
            C.INTERACTION,
            export=Export.OMIT,
            erase=Erase.KEEP,
            note="how staff told the recipient; evidence the notice was given",
        ),
    },
    not_personal=[
        "id",
        "recipient",
        "subject",
        "kind",
        "reference",
        "idempotency_key",
        "payload",
        "status",
        "attempts",
        "next_attempt_at",
        "dispatched_at",
        "last_status_code",
        "last_error",
        "delivered_at",
        "created_at",
        "handled_by",
        "handled_at",
    ],
    note="the payload holds no personal data; see personal_sealed",
)
