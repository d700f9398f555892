"""The retention rules Quanyi ships (README "Retention"). A data migration installs them; from
then on the DPO owns them in the admin, and a rule already there is never overwritten."""

from __future__ import annotations

from typing import Any

YEAR = 365

# (category, scope, days, trigger, action, legal basis)
DEFAULT_RULES: list[tuple[str, str, int, str, str, str]] = [
    (
        "location",
        "product",
        90,
        "collection",
        "delete",
        "PIPL Art. 19 (shortest time necessary); seed 004 §1: location is used to suggest nearby "
        "clinics, for which a quarter's history is enough. 个人信息保护法第十九条。",
    ),
    (
        "unique_device_identifiers",
        "product",
        YEAR,
        "last_activity",
        "anonymise",
        "PIPL Art. 19; seed 004 §1: device identifiers serve account security and troubleshooting, "
        "which need a year of history. 个人信息保护法第十九条。",
    ),
    (
        "communications",
        "product",
        3 * YEAR,
        "collection",
        "delete",
        "PIPL Art. 19; seed 004 §2(3): messages are kept to follow up questions and complaints; "
        "3 years matches the limitation period for civil claims (Civil Code Art. 188).",
    ),
    (
        "orders_delivery",
        "product",
        3 * YEAR,
        "collection",
        "anonymise",
        "E-Commerce Law Art. 31: transaction information kept at least 3 years after the "
        "transaction. 《电子商务法》第三十一条。",
    ),
    (
        "payment_status",
        "product",
        3 * YEAR,
        "collection",
        "anonymise",
        "E-Commerce Law Art. 31: transaction information kept at least 3 years after the "
        "transaction. 《电子商务法》第三十一条。",
    ),
    (
        "health",
        "product",
        15 * YEAR + 4,  # 15 calendar years, leap days included
        "last_activity",
        "restrict",
        "Regulations on the Administration of Medical Records of Medical Institutions, Art. 29: "
        "outpatient records at least 15 years after the last visit; then restricted to storage "
        "and security (PIPL Art. 47). 《医疗机构病历管理规定》第二十九条。",
    ),
    (
        "interaction_records",
        "requests",
        3 * YEAR,
        "request_closed",
        "anonymise",
        "PIPL Art. 54 (compliance audits) and Art. 50: requests and their answers are evidence of "
        "how each right was honoured; after 3 years the facts stay and the text goes.",
    ),
    (
        "identity_documents",
        "verification_documents",
        3 * YEAR,
        "request_closed",
        "delete",
        "PIPL Art. 19 and 54: identity documents proved who asked; kept as long as the request "
        "may be questioned, then deleted.",
    ),
    (
        "interaction_records",
        "consent_events",
        3 * YEAR,
        "account_cancellation",
        "anonymise",
        "PIPL Art. 13-15: consent must be provable; after the person is erased the decisions stay "
        "as evidence and the network, device and free-text reason are removed.",
    ),
    (
        "interaction_records",
        "audit_entries",
        3 * YEAR,
        "account_cancellation",
        "anonymise",
        "PIPL Art. 54: the audit log is never deleted. Entries hold ids and codes only, so nothing "
        "needs redacting; once a person is erased the ids lead to no one.",
    ),
]


def rules_install(apps: Any) -> int:
    """Add the shipped rules that are missing (by category and scope). Returns how many."""
    RetentionRule = apps.get_model("retention", "RetentionRule")
    added = 0
    for category, scope, days, trigger, action, basis in DEFAULT_RULES:
        _rule, created = RetentionRule.objects.get_or_create(
            category=category,
            scope=scope,
            defaults={"period_days": days, "trigger": trigger, "action": action, "legal_basis": basis},
        )
        added += int(created)
    return added
