"""Reads about consent that several views share."""

from __future__ import annotations

from datetime import datetime

from django.utils import timezone

from accounts.models import DataSubject, User
from consent.models import GuardianConsent
from consent.services import is_child


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
