"""Requests and their identity documents under Quanyi's own retention rules (registered with
retention.records from DsarConfig.ready, so retention never imports this app).

A closed request is an accountability record (PIPL Art. 54 audits; seed 000 §4.7): its
workflow facts (type, dates, who verified and answered, the refusal ground) stay; after the
rule's period its free text and the requester's contact details are redacted, and the
identity documents sent with it are deleted.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from django.db.models import Exists, OuterRef, Q, QuerySet
from django.utils.translation import gettext_noop

from core.datamap import Category
from dsar.models import CorrectionItem, DataSubjectRequest, RequestMessage, VerificationDocument
from retention.models import Action, Scope, Trigger
from retention.records import RecordKind, record_kind_register

_REQUEST_TEXT = Q(
    Q(requester_name__isnull=False)
    | Q(requester_email__isnull=False)
    | Q(requester_phone__isnull=False)
    | Q(details__isnull=False)
    | Q(answer__isnull=False)
    | Q(refusal_explanation__isnull=False)
    | ~Q(relationship="")
    | ~Q(requester_email_index="")
    | ~Q(requester_phone_index="")
)
_ITEM_TEXT = (
    Q(current_value__isnull=False)
    | Q(proposed_value__isnull=False)
    | Q(reason__isnull=False)
    | Q(decision_reason__isnull=False)
)


def requests_pending() -> QuerySet[Any]:
    """Closed requests that still hold text or contact details."""
    messages = RequestMessage.objects.filter(request=OuterRef("pk"), body__isnull=False)
    items = CorrectionItem.objects.filter(_ITEM_TEXT, request=OuterRef("pk"))
    return DataSubjectRequest.objects.filter(closed_at__isnull=False).filter(
        _REQUEST_TEXT | Exists(messages) | Exists(items)
    )


def requests_redact(pks: Sequence[Any], action: str) -> int:
    """Redact closed requests: idempotent, in the caller's transaction."""
    ids = list(requests_pending().filter(pk__in=pks).values_list("pk", flat=True))
    if not ids:
        return 0
    DataSubjectRequest.objects.filter(pk__in=ids).update(
        requester_name=None,
        requester_email=None,
        requester_email_index="",
        requester_phone=None,
        requester_phone_index="",
        relationship="",
        details=None,
        answer=None,
        refusal_explanation=None,
    )
    RequestMessage.objects.filter(request_id__in=ids).update(body=None)
    CorrectionItem.objects.filter(request_id__in=ids).update(
        current_value=None, proposed_value=None, reason=None, decision_reason=None
    )
    return len(ids)


def documents_pending() -> QuerySet[Any]:
    return VerificationDocument.objects.filter(request__closed_at__isnull=False)


def documents_delete(pks: Sequence[Any], action: str) -> int:
    deleted, _by_model = VerificationDocument.objects.filter(pk__in=pks).delete()
    return int(deleted)


def register() -> None:
    record_kind_register(
        RecordKind(
            scope=Scope.REQUESTS,
            category=Category.INTERACTION,
            triggers=frozenset({Trigger.REQUEST_CLOSED}),
            actions=frozenset({Action.ANONYMISE}),
            timestamp="closed_at",
            subject="subject_id",
            pending=requests_pending,
            apply=requests_redact,
            note=gettext_noop(
                "type, dates, decisions and refusal grounds stay; text and contact details are removed"
            ),
        )
    )
    record_kind_register(
        RecordKind(
            scope=Scope.VERIFICATION_DOCUMENTS,
            category=Category.IDENTITY_DOCUMENTS,
            triggers=frozenset({Trigger.REQUEST_CLOSED}),
            actions=frozenset({Action.DELETE}),
            timestamp="request__closed_at",
            subject="request__subject_id",
            pending=documents_pending,
            apply=documents_delete,
            note=gettext_noop("deleted with their content"),
        )
    )
