from __future__ import annotations

from typing import Any

from django.db import transaction

from accounts.models import DataSubject, User
from core.audit import Actor, audit_log
from core.crypto import blind_index


def subject_for_user(*, user: User) -> DataSubject:
    """The data subject of an account holder, created on first need (idempotent)."""
    subject = DataSubject.objects.filter(user=user).first()
    if subject is not None:
        return subject
    return subject_create(actor=Actor.of(user), user=user, email=user.email, language=user.language)


@transaction.atomic
def subject_create(
    *,
    actor: Actor,
    user: User | None = None,
    kind: str = DataSubject.Kind.ACCOUNT_HOLDER,
    email: str = "",
    full_name: str = "",
    phone: str = "",
    id_number: str = "",
    birth_date: str = "",
    language: str = "",
) -> DataSubject:
    subject = DataSubject(
        user=user,
        kind=kind,
        email=email.strip().lower(),
        full_name=full_name.strip(),
        phone=phone.strip(),
        id_number=id_number.strip(),
        birth_date=birth_date,
    )
    if language:
        subject.language = language
    subject.save()
    audit_log(actor=actor, action="subject.created", obj=subject, data={"kind": kind})
    return subject


@transaction.atomic
def subject_update(*, actor: Actor, subject: DataSubject, **changes: Any) -> DataSubject:
    allowed = {"full_name", "email", "phone", "id_number", "birth_date", "language"}
    unknown = set(changes) - allowed
    if unknown:
        raise ValueError(f"cannot change {sorted(unknown)}")
    changed = [k for k, v in changes.items() if getattr(subject, k) != v]
    if not changed:
        return subject
    for k in changed:
        setattr(subject, k, changes[k])
    subject.save()
    # Field names only: the values are personal data and stay out of the audit log.
    audit_log(actor=actor, action="subject.updated", obj=subject, data={"fields": sorted(changed)})
    return subject


def subject_find(*, email: str = "", phone: str = "", id_number: str = "") -> DataSubject | None:
    """Exact match through the blind indexes: nothing is decrypted to search."""
    qs = DataSubject.objects.all()
    if email:
        qs = qs.filter(email_index=blind_index("email", email))
    if phone:
        qs = qs.filter(phone_index=blind_index("phone", phone))
    if id_number:
        qs = qs.filter(id_number_index=blind_index("id_number", id_number))
    if not (email or phone or id_number):
        return None
    return qs.order_by("pk").first()


def subject_identifiers(*, subject: DataSubject) -> dict[str, list[str]]:
    """What a product database may know the subject by: e-mail (the subject's and the
    account's), phone and ID number, normalised. Used to find their rows in each source."""
    emails = [subject.email]
    if subject.user is not None:
        emails.append(subject.user.email)
    return {
        "email": [e for e in emails if e],
        "phone": [subject.phone] if subject.phone else [],
        "id_number": [subject.id_number] if subject.id_number else [],
    }
