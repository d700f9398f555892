from __future__ import annotations

from core.datamap import Category as C
from core.datamap import Erase, Export, PersonalField, register
from retention.models import Backup, Erasure, ErasureStep, LegalHold, Tombstone

register(
    LegalHold,
    subject="subject",
    fields={
        "reason": PersonalField(
            C.INTERACTION,
            export=Export.OMIT,
            erase=Erase.KEEP,
            note="case numbers and scope, no personal data",
        ),
    },
    not_personal=[
        "id",
        "subject",
        "category",
        "ground",
        "set_by",
        "set_at",
        "review_on",
        "released_at",
        "released_by",
    ],
)
# Plans and reports hold labels, counts and row keys, never values.
register(
    Erasure,
    subject="subject",
    fields={
        "roots": PersonalField(
            C.INTERACTION, export=Export.OMIT, erase=Erase.KEEP, note="primary keys in the product database"
        ),
    },
    not_personal=[
        "id",
        "subject",
        "reference",
        "origin",
        "runner",
        "status",
        "plan",
        "report",
        "rows_total",
        "rows_done",
        "created_at",
        "created_by",
        "confirmed_at",
        "confirmed_by",
        "started_at",
        "finished_at",
        "lease_until",
        "runs",
        "notified_at",
        "backups_until",
    ],
)
register(
    ErasureStep,
    subject="erasure.subject",
    not_personal=["id", "erasure", "position", "source", "table", "cursor", "rows_done", "done_at"],
)
register(
    Tombstone,
    subject="",
    fields={
        "identifier_hashes": PersonalField(
            C.CONTACT,
            export=Export.OMIT,
            erase=Erase.KEEP,
            note="keyed HMACs, kept so a restored backup can be erased again",
        ),
        "roots": PersonalField(C.INTERACTION, export=Export.OMIT, erase=Erase.KEEP, note="product row keys"),
    },
    not_personal=["id", "erasure", "subject_id_ref", "key_id", "erased_at"],
)
# The catalogue describes files, not people (the files themselves are encrypted, and each
# subject's values in them under the subject's own key).
register(
    Backup,
    subject="",
    not_personal=[
        "id",
        "set_id",
        "database",
        "engine",
        "taken_at",
        "path",
        "size",
        "sha256",
        "plaintext_sha256",
        "key_id",
        "expires_at",
        "status",
        "verified_at",
        "deleted_at",
        "detail",
    ],
)
