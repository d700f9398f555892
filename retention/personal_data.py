from __future__ import annotations

from core.datamap import Category as C
from core.datamap import Erase, Export, PersonalField, register
from retention.models import (
    Backup,
    ChildDataFinding,
    Erasure,
    ErasureStep,
    LegalHold,
    RetentionRule,
    ServiceTermination,
    SweepCursor,
    SweepRun,
    Tombstone,
)

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
        "review_alerted_on",
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

# Rules, sweep reports and cursors: categories, counts, table names and row keys of the
# product (a position in a table), never values.
register(
    RetentionRule,
    subject="",
    not_personal=[
        "id",
        "category",
        "scope",
        "period_days",
        "trigger",
        "action",
        "legal_basis",
        "active",
        "updated_by",
        "updated_at",
    ],
)
register(
    SweepRun,
    subject="",
    not_personal=["id", "started_at", "finished_at", "dry_run", "status", "counts", "error"],
)
register(
    SweepCursor,
    subject="",
    not_personal=[
        "id",
        "rule",
        "source",
        "table",
        "run",
        "lease_until",
        "position",
        "pass_started_at",
        "pass_rows",
        "finished_at",
    ],
    note="position: the (timestamp, primary key) of the last product row swept",
)
# That a person is a child is derived from their (encrypted) birth date; the finding itself
# holds only the link and dates.
register(
    ChildDataFinding,
    subject="subject",
    not_personal=["id", "subject", "found_at", "resolved_at", "resolution", "resolved_by"],
)
register(
    ServiceTermination,
    subject="",
    # The reason is the public announcement; the report lists people kept under a hold by
    # their reference and the hold's ground only.
    not_personal=[
        "id",
        "status",
        "active",
        "stop_on",
        "notice_days",
        "reason",
        "started_by",
        "started_at",
        "notified_at",
        "erasing_at",
        "finished_at",
        "cancelled_at",
        "cancelled_by",
        "subjects_after",
        "lease_until",
        "subjects_erased",
        "subjects_held",
        "subjects_remaining",
        "report",
    ],
)
