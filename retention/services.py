from __future__ import annotations

from datetime import date, datetime
from typing import Any

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.db.models import Q, QuerySet
from django.utils import timezone
from django.utils.translation import gettext as _

from accounts.models import DataSubject, User
from core.audit import SYSTEM, Actor, audit_log
from core.datamap import Category
from core.services import alert_dpo
from retention import sweep
from retention.models import ChildDataFinding, HoldGround, LegalHold, RetentionRule, SweepRun


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


# --- Retention rules --------------------------------------------------------------------------

_RULE_FIELDS = ("category", "scope", "period_days", "trigger", "action", "active")


@transaction.atomic
def rule_save(*, rule: RetentionRule, actor: Actor, user: User | None = None) -> RetentionRule:
    """Create or change a retention rule (the DPO, in the admin), audited with what changed.
    Saving a rule unchanged writes nothing."""
    rule.legal_basis = (rule.legal_basis or "").strip()
    rule.full_clean(exclude=["updated_by", "updated_at"])
    before = RetentionRule.objects.select_for_update().filter(pk=rule.pk).first() if rule.pk else None
    changes: dict[str, Any] = {}
    for name in _RULE_FIELDS:
        old = getattr(before, name) if before else None
        if old != getattr(rule, name):
            changes[name] = [old, getattr(rule, name)]
    if before is None or before.legal_basis != rule.legal_basis:
        changes["legal_basis"] = "changed" if before else "set"
    if before is not None and not changes:
        return before
    rule.updated_by, rule.updated_at = user, timezone.now()
    rule.save()
    audit_log(
        actor=actor,
        action="retention.rule_changed" if before else "retention.rule_created",
        obj=rule,
        data={"category": rule.category, "scope": rule.scope, "changes": changes},
    )
    return rule


# --- The sweep ------------------------------------------------------------------------------


def retention_sweep(
    *,
    dry_run: bool = False,
    batch: int | None = None,
    now: datetime | None = None,
    progress: sweep.Progress | None = None,
) -> SweepRun:
    """Apply every active retention rule (retention.sweep: claims, batches, holds, resume),
    then look for children's data without guardian consent. Returns the run's report."""
    return sweep.sweep(
        dry_run=dry_run,
        batch=batch,
        now=now,
        progress=progress,
        children=lambda run, at: children_sweep(now=at, dry_run=run.dry_run),
    )


def children_sweep(*, now: datetime | None = None, dry_run: bool = False) -> dict[str, int]:
    """Seed 000 §5: open one finding per subject under 14 without an active guardian consent
    (a to-do for staff: delete the data or record the consent); close open findings whose
    reason is gone. Returns counts: found (new), resolved, open."""
    from consent.models import GuardianConsent

    now = now or timezone.now()
    # The same test as consent.services.guardian_consent_active, for everyone at once.
    consented = set(
        GuardianConsent.objects.filter(recorded_at__lte=now)
        .exclude(revoked_at__lte=now)
        .values_list("subject_id", flat=True)
    )
    children = {s.pk for s in sweep.children_due(now=now)}
    due = children - consented
    open_findings = {
        f.subject_id: f
        for f in ChildDataFinding.objects.filter(resolved_at__isnull=True).select_related("subject")
    }
    new = sorted(due - set(open_findings))
    gone = [f for pk, f in open_findings.items() if pk not in due]
    if dry_run:
        return {"found": len(new), "resolved": len(gone), "open": len(open_findings) + len(new) - len(gone)}
    found = sum(1 for pk in new if child_finding_open(subject_id=pk, now=now) is not None)
    resolved = 0
    for finding in gone:
        if finding.subject.erased_at is not None:
            reason = ChildDataFinding.Resolution.ERASED
        elif finding.subject_id in consented:
            reason = ChildDataFinding.Resolution.GUARDIAN_CONSENT
        else:
            reason = ChildDataFinding.Resolution.TURNED_14
        if child_finding_resolve(finding=finding, actor=SYSTEM, resolution=reason).resolution == reason:
            resolved += 1
    return {
        "found": found,
        "resolved": resolved,
        "open": ChildDataFinding.objects.filter(resolved_at__isnull=True).count(),
    }


@transaction.atomic
def child_finding_open(*, subject_id: int, now: datetime | None = None) -> ChildDataFinding | None:
    """One open finding per subject: None when one is open already (also under a race: the
    partial unique constraint decides)."""
    if ChildDataFinding.objects.filter(subject_id=subject_id, resolved_at__isnull=True).exists():
        return None
    try:
        with transaction.atomic():
            finding = ChildDataFinding.objects.create(subject_id=subject_id, found_at=now or timezone.now())
    except IntegrityError:
        return None
    audit_log(actor=SYSTEM, action="retention.child_found", obj=finding, data={"subject": subject_id})
    return finding


@transaction.atomic
def child_finding_resolve(
    *, finding: ChildDataFinding, actor: Actor, resolution: str, user: User | None = None
) -> ChildDataFinding:
    if resolution not in ChildDataFinding.Resolution.values:
        raise ValidationError({"resolution": _("Unknown resolution.")})
    done = ChildDataFinding.objects.filter(pk=finding.pk, resolved_at__isnull=True).update(
        resolved_at=timezone.now(), resolution=resolution, resolved_by=user
    )
    if done:
        audit_log(
            actor=actor,
            action="retention.child_resolved",
            obj=finding,
            data={"subject": finding.subject_id, "resolution": resolution},
        )
    finding.refresh_from_db()
    return finding


# --- Legal holds due for review -----------------------------------------------------------


def holds_overdue(today: date | None = None) -> QuerySet[LegalHold]:
    today = today or timezone.localdate()
    return LegalHold.objects.filter(released_at__isnull=True, review_on__lt=today)


def holds_review_alert(*, today: date | None = None) -> int:
    """E-mail the DPO group about holds whose review date has passed: each hold at most once
    a day (claimed by a conditional UPDATE of the day it was last told). Returns how many."""
    today = today or timezone.localdate()
    claimed: list[LegalHold] = []
    for hold in holds_overdue(today).order_by("review_on", "pk"):
        if (
            LegalHold.objects.filter(pk=hold.pk)
            .filter(Q(review_alerted_on__isnull=True) | Q(review_alerted_on__lt=today))
            .update(review_alerted_on=today)
        ):
            claimed.append(hold)
    if not claimed:
        return 0
    site = settings.SITE_URL.rstrip("/")
    lines = [
        f"- hold #{h.pk} ({h.ground}{', ' + h.category if h.category else ''}): review was due {h.review_on}"
        f" — {site}/admin/retention/legalhold/{h.pk}/change/"
        for h in claimed
    ]
    alert_dpo(
        subject=f"{len(claimed)} legal hold(s) overdue for review",
        body="Review these legal holds: release them, or record why they still apply.\n\n" + "\n".join(lines),
    )
    return len(claimed)
