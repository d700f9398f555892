from __future__ import annotations

from core.datamap import Category as C
from core.datamap import Erase, Export, PersonalField, register
from core.models import AuditChainHead, AuditEntry, Heartbeat, JobState, OutboxMessage, SubjectKey

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
