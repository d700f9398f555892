from __future__ import annotations

from datetime import date

from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils import timezone
from django.utils.translation import gettext as _

from accounts.models import DataSubject, User
from core.audit import Actor, audit_log
from core.datamap import Category
from retention.models import HoldGround, LegalHold


@transaction.atomic
def hold_place(
    *,
    actor: Actor,
    ground: str,
    reason: str,
    review_on: date,
    subject: DataSubject | None = None,
    category: str = "",
    set_by: User | None = None,
) -> LegalHold:
    """Keep a subject's data (or a category's, or a category of one subject) despite
    erasure and retention, on one of the five grounds of seed 000 §6."""
    if ground not in HoldGround.values:
        raise ValidationError({"ground": _("Choose one of the five grounds of the privacy policy.")})
    if category and category not in Category.values:
        raise ValidationError({"category": _("Unknown category.")})
    if subject is None and not category:
        raise ValidationError(_("A hold covers a person, a category, or a category of one person."))
    if not reason.strip():
        raise ValidationError({"reason": _("Say why (case number, authority, scope).")})
    if review_on < timezone.localdate():
        raise ValidationError({"review_on": _("The review date cannot be in the past.")})
    hold = LegalHold.objects.create(
        subject=subject,
        category=category,
        ground=ground,
        reason=reason.strip(),
        review_on=review_on,
        set_by=set_by,
    )
    audit_log(
        actor=actor,
        action="hold.placed",
        obj=hold,
        data={"subject": subject.pk if subject else None, "category": category, "ground": ground},
    )
    return hold


@transaction.atomic
def hold_release(*, hold: LegalHold, actor: Actor, released_by: User | None = None) -> LegalHold:
    if hold.released_at is not None:
        return hold
    LegalHold.objects.filter(pk=hold.pk, released_at__isnull=True).update(
        released_at=timezone.now(), released_by=released_by
    )
    audit_log(actor=actor, action="hold.released", obj=hold)
    hold.refresh_from_db()
    return hold
