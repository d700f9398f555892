from __future__ import annotations

from consent.models import (
    ApiKey,
    ConsentEvent,
    ConsentState,
    GuardianConsent,
    IncidentSubject,
    NoticeCampaign,
    NoticeDelivery,
    PolicyResponse,
    PolicyVersion,
    Purpose,
    SecurityIncident,
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

# Notices: which person was told what and when. The e-mail address is looked up when sending and
# never stored here; `last_error` holds the kind of failure and an SMTP code, never the server's
# text (which may quote the address).
register(
    NoticeCampaign,
    subject="",
    not_personal=[
        "id",
        "kind",
        "policy",
        "incident",
        "termination",
        "status",
        "targeted",
        "sent",
        "failed",
        "interrupted",
        "targets_after",
        "lease_until",
        "lease_token",
        "created_by",
        "created_at",
        "started_at",
        "finished_at",
    ],
)
register(
    NoticeDelivery,
    subject="subject",
    not_personal=[
        "id",
        "campaign",
        "subject",
        "status",
        "claimed_at",
        "attempted_at",
        "sent_at",
        "attempts",
        "last_error",
    ],
)
# An incident's texts describe the incident, not a person (the DPO writes them for the public
# page too); who was affected is IncidentSubject.
register(
    SecurityIncident,
    subject="",
    not_personal=[
        "id",
        "title_zh",
        "title_en",
        "what_happened_zh",
        "what_happened_en",
        "occurred_at",
        "discovered_at",
        "categories",
        "impact_zh",
        "impact_en",
        "measures_zh",
        "measures_en",
        "advice_zh",
        "advice_en",
        "remedies_zh",
        "remedies_en",
        "contact",
        "reported_to_regulator_at",
        "regulator",
        "status",
        "announced_at",
        "notified_at",
        "closed_at",
        "created_by",
        "created_at",
        "updated_at",
    ],
)
register(
    IncidentSubject,
    subject="subject",
    not_personal=["id", "incident", "subject", "added_by", "added_at"],
)
