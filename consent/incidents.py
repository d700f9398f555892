"""Security incidents (seed 004 §4(7), PIPL Art. 57).

The DPO records what happened and when, the categories of personal information affected, the
possible impact, the measures taken, advice to individuals, remedies, a contact and when the
regulator was told. The affected people are told by e-mail through a notice campaign
(`incident_notify`, consent.campaigns: batches, at most once each), and where telling each
person is impracticable a public announcement is published (`incident_announce`, the
/incidents/ pages). Every change is audited with field names and counts only: the audit log
never holds the texts or who was affected by name.
"""

from __future__ import annotations

from collections.abc import Iterable

from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils import timezone
from django.utils.translation import gettext as _

from accounts.models import DataSubject, User
from consent.campaigns import campaign_create
from consent.models import IncidentSubject, NoticeCampaign, SecurityIncident
from core.audit import Actor, audit_log
from core.crypto import blind_index

# The parts every notice carries (seed 004 §4(7)), in both languages, besides the categories
# and the contact.
NOTICE_PARTS = ("title", "what_happened", "impact", "measures", "advice", "remedies")
Status = SecurityIncident.Status


def incident_missing_parts(incident: SecurityIncident) -> list[str]:
    """Field names of the notice's parts that are still empty."""
    missing = [
        f"{part}_{lang}"
        for part in NOTICE_PARTS
        for lang in ("zh", "en")
        if not str(getattr(incident, f"{part}_{lang}") or "").strip()
    ]
    if not incident.categories:
        missing.append("categories")
    if not incident.contact.strip():
        missing.append("contact")
    return missing


def _check_complete(incident: SecurityIncident) -> None:
    missing = incident_missing_parts(incident)
    if missing:
        raise ValidationError(
            _("Fill in every part of the notice first, in Chinese and English: %(fields)s.")
            % {"fields": ", ".join(missing)}
        )


@transaction.atomic
def incident_save(
    *, incident: SecurityIncident, actor: Actor, user: User | None = None, changed: Iterable[str] = ()
) -> SecurityIncident:
    """Validate and save a new or changed incident. A closed incident is a record: it no longer
    changes."""
    adding = incident._state.adding
    if not adding and SecurityIncident.objects.filter(pk=incident.pk, status=Status.CLOSED).exists():
        raise ValidationError(_("This incident is closed: it can no longer be changed."))
    if adding:
        incident.created_by = user
        incident.status = Status.DRAFT
    incident.categories = sorted(set(incident.categories)) if isinstance(incident.categories, list) else []
    incident.full_clean()
    incident.save()
    audit_log(
        actor=actor,
        action="incident.added" if adding else "incident.changed",
        obj=incident,
        data={"fields": sorted(set(changed) - {"add_emails"}), "categories": incident.categories},
    )
    return incident


def subjects_by_email(emails: Iterable[str]) -> tuple[list[DataSubject], list[str]]:
    """The people with these e-mail addresses (profile or account), found through the blind
    index and the account table; and the addresses that match nobody."""
    found: dict[int, DataSubject] = {}
    missing: list[str] = []
    for email in dict.fromkeys(e.strip().lower() for e in emails if e.strip()):
        subject = (
            DataSubject.objects.filter(email_index=blind_index("email", email)).order_by("pk").first()
            or DataSubject.objects.filter(user__email__iexact=email).order_by("pk").first()
        )
        if subject is None:
            missing.append(email)
        else:
            found[subject.pk] = subject
    return list(found.values()), missing


@transaction.atomic
def incident_subjects_add(
    *, incident: SecurityIncident, subjects: Iterable[DataSubject], actor: Actor, user: User | None = None
) -> int:
    """Record people as affected (adding someone twice changes nothing). Returns how many were
    new. People added after notices went out are told when notices are sent again."""
    if incident.status == Status.CLOSED:
        raise ValidationError(_("This incident is closed: it can no longer be changed."))
    ids = sorted({s.pk for s in subjects})
    if not ids:
        return 0
    rows = IncidentSubject.objects.filter(incident=incident)
    before = rows.count()
    IncidentSubject.objects.bulk_create(
        [IncidentSubject(incident=incident, subject_id=pk, added_by=user) for pk in ids],
        ignore_conflicts=True,
    )
    added = rows.count() - before
    if added:
        audit_log(
            actor=actor,
            action="incident.subjects_added",
            obj=incident,
            data={"added": added, "affected": before + added},
        )
    return added


@transaction.atomic
def incident_notify(*, incident: SecurityIncident, actor: Actor, user: User | None = None) -> NoticeCampaign:
    """E-mail every affected person the notice, in their language, through a campaign (one per
    incident). Sending again tells only people added since; nobody gets it twice."""
    locked = SecurityIncident.objects.select_for_update().get(pk=incident.pk)
    if locked.status == Status.CLOSED:
        raise ValidationError(_("This incident is closed: it can no longer be changed."))
    _check_complete(locked)
    if not IncidentSubject.objects.filter(incident=locked).exists():
        raise ValidationError(
            _("Add the affected people first, or publish an announcement if telling each is impracticable.")
        )
    now = timezone.now()
    SecurityIncident.objects.filter(pk=locked.pk).update(
        status=Status.NOTIFIED, notified_at=locked.notified_at or now
    )
    audit_log(
        actor=actor,
        action="incident.notified",
        obj=locked,
        data={"affected": IncidentSubject.objects.filter(incident=locked).count()},
    )
    locked.refresh_from_db()
    return campaign_create(
        kind=NoticeCampaign.Kind.SECURITY_INCIDENT, incident=locked, actor=actor, user=user
    )


@transaction.atomic
def incident_announce(*, incident: SecurityIncident, actor: Actor) -> SecurityIncident:
    """Publish the public announcement (/incidents/<id>/): the same parts as the e-mail, no
    personal data. Announcing again changes nothing."""
    locked = SecurityIncident.objects.select_for_update().get(pk=incident.pk)
    if locked.announced_at is not None:
        return locked
    if locked.status == Status.CLOSED:
        raise ValidationError(_("This incident is closed: it can no longer be changed."))
    _check_complete(locked)
    now = timezone.now()
    SecurityIncident.objects.filter(pk=locked.pk).update(announced_at=now, status=Status.NOTIFIED)
    audit_log(actor=actor, action="incident.announced", obj=locked)
    locked.refresh_from_db()
    return locked


@transaction.atomic
def incident_close(*, incident: SecurityIncident, actor: Actor) -> SecurityIncident:
    """Close the record (its announcement, if any, stays public). Closing twice changes nothing."""
    moved = (
        SecurityIncident.objects.filter(pk=incident.pk)
        .exclude(status=Status.CLOSED)
        .update(status=Status.CLOSED, closed_at=timezone.now())
    )
    incident.refresh_from_db()
    if moved:
        audit_log(actor=actor, action="incident.closed", obj=incident)
    return incident
