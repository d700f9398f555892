from __future__ import annotations

from typing import Any

from django.db import transaction
from django.utils import timezone

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


@transaction.atomic
def subject_erase(*, subject: DataSubject, actor: Actor) -> DataSubject:
    """Remove what Quanyi itself holds to identify the subject: the encrypted values and the
    blind indexes (a keyed hash of a phone number still singles a person out). The row stays,
    empty, so the requests and consent events that refer to it remain as accountability
    records. Idempotent."""
    if subject.erased_at is not None:
        return subject
    now = timezone.now()
    DataSubject.objects.filter(pk=subject.pk).update(
        full_name=None,
        email=None,
        email_index="",
        phone=None,
        phone_index="",
        id_number=None,
        id_number_index="",
        birth_date=None,
        erased_at=now,
    )
    audit_log(actor=actor, action="subject.erased", obj=subject)
    subject.refresh_from_db()
    if subject.user is not None:
        account_close(user=subject.user, actor=actor)
    return subject


@transaction.atomic
def account_close(*, user: User, actor: Actor) -> User:
    """Close an account for good: it can no longer sign in, its e-mail is replaced by a
    hash (the address stays unique without being kept), its addresses and authenticators
    are deleted. Idempotent."""
    from allauth.account.models import EmailAddress
    from allauth.mfa.models import Authenticator

    placeholder = f"erased-{blind_index('email', f'user:{user.pk}')[:24]}@invalid.quanyi"
    if user.email == placeholder and not user.is_active:
        return user
    user.email = placeholder
    user.display_name = ""
    user.is_active = False
    user.set_unusable_password()
    user.last_login = None
    user.save()
    EmailAddress.objects.filter(user=user).delete()
    Authenticator.objects.filter(user=user).delete()
    # Open sessions die on their next request: the password hash they were bound to is gone
    # (Django checks the session auth hash) and an inactive user never authenticates.
    audit_log(actor=actor, action="account.closed", obj=user)
    return user
