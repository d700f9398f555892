"""Quanyi's own records under retention rules: which kinds there are, what their clock is,
and what a rule may do to them.

The apps that own the records register them (dsar in its AppConfig.ready: requests and their
identity documents), so retention never imports the requests app, which itself builds on
retention. Each kind says which records a rule would still change (`pending`: a record
already redacted no longer counts) and how to change a batch of them (`apply`, run inside
the sweep's transaction together with its cursor).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from django.db.models import QuerySet
from django.utils.translation import gettext_noop

from core.datamap import Category
from retention.models import Action, Scope, Trigger


@dataclass(frozen=True)
class RecordKind:
    scope: str  # a Scope value
    category: str  # the category a rule for this kind must name
    triggers: frozenset[str]
    actions: frozenset[str]
    timestamp: str  # ORM path of the date the clock starts from
    subject: str  # ORM path of the subject's id (legal holds)
    pending: Callable[[], QuerySet[Any]]
    apply: Callable[[Sequence[Any], str], int]  # (primary keys, action) -> records changed
    note: str = ""  # shown with the unit in reports (translated when shown: gettext_noop)


_kinds: dict[str, RecordKind] = {}

# What rules for the product's databases may say (their clock is each table's timestamp).
PRODUCT_TRIGGERS = frozenset({Trigger.COLLECTION, Trigger.LAST_ACTIVITY})
PRODUCT_ACTIONS = frozenset(Action.values)


def record_kind_register(kind: RecordKind) -> None:
    """Idempotent: an app registers its kinds from AppConfig.ready."""
    if kind.scope not in Scope.values or kind.scope == Scope.PRODUCT:
        raise ValueError(f"unknown record kind {kind.scope!r}")
    _kinds[kind.scope] = kind


def record_kind(scope: str) -> RecordKind | None:
    return _kinds.get(scope)


def record_kinds() -> list[RecordKind]:
    return [_kinds[s] for s in Scope.values if s in _kinds]


# --- Kinds retention holds itself ---------------------------------------------------------


def _consent_pending() -> QuerySet[Any]:
    from consent.models import ConsentEvent

    return ConsentEvent.objects.filter(subject__erased_at__isnull=False).exclude(
        evidence_ip="", evidence_user_agent="", reason=""
    )


def _consent_apply(pks: Sequence[Any], action: str) -> int:
    from consent.services import consent_evidence_redact

    return consent_evidence_redact(event_ids=list(pks))


def _audit_pending() -> QuerySet[Any]:
    # Audit entries hold ids, codes and hashes only (core.audit refuses anything else in
    # their data, and callers pass no names or contact details): there is nothing personal
    # to redact, and each entry is hashed into the chain, so changing one would break
    # verify_audit. Once a person is erased their DataSubject row is empty and their key
    # destroyed, so the ids in the chain no longer lead to anyone.
    from core.models import AuditEntry

    return AuditEntry.objects.none()


def _audit_apply(pks: Sequence[Any], action: str) -> int:
    return 0


def register_own() -> None:
    record_kind_register(
        RecordKind(
            scope=Scope.CONSENT_EVENTS,
            category=Category.INTERACTION,
            triggers=frozenset({Trigger.ACCOUNT_CANCELLATION}),
            actions=frozenset({Action.ANONYMISE}),
            timestamp="subject__erased_at",
            subject="subject_id",
            pending=_consent_pending,
            apply=_consent_apply,
            note=gettext_noop(
                "the decisions stay as evidence; the network, device and free-text reason are removed"
            ),
        )
    )
    record_kind_register(
        RecordKind(
            scope=Scope.AUDIT_ENTRIES,
            category=Category.INTERACTION,
            triggers=frozenset({Trigger.COLLECTION, Trigger.ACCOUNT_CANCELLATION}),
            actions=frozenset({Action.ANONYMISE}),
            timestamp="at",
            subject="",
            pending=_audit_pending,
            apply=_audit_apply,
            note=gettext_noop(
                "never deleted; entries hold ids and codes only, so there is nothing to redact"
            ),
        )
    )
