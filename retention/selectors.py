"""Reads about backups that erasure, the admin and the commands share."""

from __future__ import annotations

from datetime import date, datetime

from django.utils import timezone

from retention.models import Backup, Erasure


def backups_holding(erasure_or_time: Erasure | datetime) -> list[Backup]:
    """The catalogued backups that may still hold what an erasure removed: taken before it
    finished (or before the given time), and not deleted yet. Oldest first."""
    if isinstance(erasure_or_time, Erasure):
        when = erasure_or_time.finished_at or timezone.now()
    else:
        when = erasure_or_time
    return list(
        Backup.objects.exclude(status=Backup.Status.DELETED)
        .exclude(path="")  # a dump that failed wrote no file
        .filter(taken_at__lt=when)
        .order_by("taken_at", "database")
    )


def backups_clear_by(erasure_or_time: Erasure | datetime) -> date | None:
    """The day the last of those backups expires (rotation deletes it then); None when no
    catalogued backup holds the data."""
    holding = backups_holding(erasure_or_time)
    if not holding:
        return None
    return timezone.localdate(max(b.expires_at for b in holding))


def backups_in_use() -> bool:
    """Whether the catalogue is in use at all (else erasure reports fall back to the setting)."""
    return Backup.objects.exists()
