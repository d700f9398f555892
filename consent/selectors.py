"""Reads about consent that several views share."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from functools import cache
from typing import Any

from django.db import connection
from django.utils import timezone

from accounts.models import DataSubject, User
from consent.models import ConsentEvent, ConsentState, GuardianConsent, Purpose
from consent.services import Decision, decide, is_child
from core.db import M, Selected, fetch_one


def guardian_wards(*, user: User, pk: int | None = None, at: datetime | None = None) -> list[DataSubject]:
    """The children `user` may act for in the portal (PIPL Art. 31): an active (not revoked)
    guardian consent names `user` as the guardian, and the child is still under 14. Another
    guardian's consent for the same child does not end this one. `pk` narrows to one child."""
    at = at or timezone.now()
    consents = GuardianConsent.objects.filter(guardian_user=user, recorded_at__lte=at).exclude(
        revoked_at__lte=at
    )
    subjects = DataSubject.objects.filter(pk__in=consents.values("subject_id"), erased_at__isnull=True)
    if pk is not None:
        subjects = subjects.filter(pk=pk)
    # The birth date is encrypted, so the age is checked here rather than in the query.
    return [s for s in subjects.order_by("pk") if is_child(s, at)]


# --- The consent check's hot path ----------------------------------------------------------------


@dataclass(frozen=True)
class Check:
    """What `consent_check_now` found: no subject or no purpose leaves `decision` None."""

    subject: DataSubject | None
    purpose: Purpose | None
    decision: Decision | None


_SELECTED: dict[Any, tuple[str, ...]] = {
    DataSubject: ("id", "key_id", "birth_date"),
    Purpose: ("id", "legal_basis", "required", "sensitive"),
    ConsentEvent: ("id", "action", "separate", "receipt_id", "occurred_at"),
}


@cache
def _check_plan() -> tuple[str, Selected]:
    """Subject, purpose and the governing event by primary and unique keys, in one statement
    (names come from the models; values pass the backend's converters, as with the ORM)."""
    q = connection.ops.quote_name

    def col(model: Any, name: str) -> str:
        return q(model._meta.get_field(name).column)

    fields = tuple(model._meta.get_field(name) for model, names in _SELECTED.items() for name in names)
    alias = {DataSubject: "s", Purpose: "p", ConsentEvent: "e"}
    columns = ", ".join(f"{alias[f.model]}.{col(f.model, f.name)}" for f in fields)
    s, p, cs, e = (q(m._meta.db_table) for m in (DataSubject, Purpose, ConsentState, ConsentEvent))
    # Only identifiers quoted by the backend are interpolated; the values are parameters.
    sql = (
        f"SELECT {columns} FROM (SELECT 1 AS one) AS x"  # noqa: S608
        f" LEFT JOIN {s} s ON s.{col(DataSubject, 'id')} = %s"
        f" LEFT JOIN {p} p ON p.{col(Purpose, 'code')} = %s"
        f" LEFT JOIN {cs} cs ON cs.{col(ConsentState, 'subject')} = s.{col(DataSubject, 'id')}"
        f" AND cs.{col(ConsentState, 'purpose')} = p.{col(Purpose, 'id')}"
        f" LEFT JOIN {e} e ON e.{col(ConsentEvent, 'id')} = cs.{col(ConsentState, 'event')}"
    )
    return sql, Selected(fields)  # type: ignore[arg-type]


def _loaded(model: type[M], **values: Any) -> M:
    """An instance as the ORM builds a loaded row (the other fields deferred): far cheaper
    than __init__ with keywords. `from_db` takes the values in the model's field order."""
    names = [f.attname for f in model._meta.concrete_fields if f.attname in values]
    return model.from_db("default", names, [values[name] for name in names])


def consent_check_now(*, subject_pk: int, purpose_code: str) -> Check:
    """`may_process` for now, answered by one indexed statement instead of an ORM query per
    model: the consent-check API's hot path (see benchmarks/bench_consent_check.py). Same
    decision as `may_process`, which stays the reference (a test holds them equal)."""
    sql, selected = _check_plan()
    row = selected.convert(fetch_one(sql, [subject_pk, purpose_code]) or ())
    sid, key_id, birth, pid, basis, required, sensitive, eid, action, separate, receipt, occurred = row
    subject = _loaded(DataSubject, id=sid, key_id=key_id, birth_date=birth) if sid is not None else None
    purpose = None
    if pid is not None:
        purpose = _loaded(
            Purpose, id=pid, code=purpose_code, legal_basis=basis, required=required, sensitive=sensitive
        )
    if subject is None or purpose is None:
        return Check(subject, purpose, None)
    if not purpose.needs_consent:
        return Check(subject, purpose, Decision(True, f"legal basis: {purpose.legal_basis}"))
    event = None
    if eid is not None:
        event = _loaded(
            ConsentEvent,
            id=eid,
            subject_id=sid,
            purpose_id=pid,
            action=action,
            separate=separate,
            receipt_id=receipt,
            occurred_at=occurred,
        )
    return Check(subject, purpose, decide(subject=subject, purpose=purpose, event=event))
