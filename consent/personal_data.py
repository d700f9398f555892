from __future__ import annotations

from consent.models import (
    ApiKey,
    ConsentEvent,
    ConsentState,
    GuardianConsent,
    PolicyResponse,
    PolicyVersion,
    Purpose,
)
from core.datamap import Category as C
from core.datamap import Erase, Export, PersonalField, register

# The ledger is evidence of lawful processing (PIPL Art. 13-15): kept, with the network of the
# device only (the host part of the IP address is never stored).
register(
    ConsentEvent,
    subject="subject",
    fields={
        "evidence_ip": PersonalField(C.DEVICE, erase=Erase.NULL, note="truncated to /24 or /48"),
        "evidence_user_agent": PersonalField(C.DEVICE, erase=Erase.NULL),
        "reason": PersonalField(C.INTERACTION, erase=Erase.NULL),
    },
    not_personal=[
        "id",
        "receipt_id",
        "subject",
        "purpose",
        "policy_version",
        "action",
        "channel",
        "separate",
        "actor",
        "occurred_at",
    ],
)
register(
    ConsentState,
    subject="subject",
    not_personal=["id", "subject", "purpose", "granted", "separate", "event", "since"],
)
register(
    GuardianConsent,
    subject="subject",
    fields={
        "guardian_name": PersonalField(C.CONTACT, erase=Erase.NULL),
        "guardian_contact": PersonalField(C.CONTACT, erase=Erase.NULL),
        "guardian_contact_index": PersonalField(
            C.CONTACT, export=Export.OMIT, erase=Erase.NULL, note="keyed HMAC"
        ),
        "relationship": PersonalField(C.BIRTH_GENDER_ORIGIN, erase=Erase.NULL),
    },
    not_personal=[
        "id",
        "subject",
        "guardian_user",
        "verification",
        "recorded_by",
        "recorded_at",
        "revoked_at",
    ],
)
register(
    PolicyVersion,
    subject="",
    not_personal=[
        "id",
        "version",
        "title_zh",
        "title_en",
        "body_zh",
        "body_en",
        "summary_zh",
        "summary_en",
        "material",
        "change_kind",
        "effective_at",
        "published_at",
        "created_at",
    ],
)
register(
    Purpose,
    subject="",
    not_personal=[
        "id",
        "code",
        "name_zh",
        "name_en",
        "description_zh",
        "description_en",
        "legal_basis",
        "required",
        "sensitive",
        "categories",
        "recipients",
        "retention",
        "marketing",
        "active",
        "order",
    ],
)
register(
    ApiKey,
    subject="",
    not_personal=["id", "name", "prefix", "key_hash", "scopes", "created_at", "last_used_at", "revoked_at"],
)
register(
    PolicyResponse,
    subject="subject",
    fields={"evidence_ip": PersonalField(C.DEVICE, erase=Erase.NULL, note="truncated to /24 or /48")},
    not_personal=["id", "subject", "policy_version", "decision", "at"],
)
