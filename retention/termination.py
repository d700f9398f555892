"""Service termination (seed 000 §6): when the service stops operating, everyone is told, and
then all their personal data is deleted or anonymised.

1. The DPO starts it (`termination_start`) with a stop date at least
   QUANYI_TERMINATION_NOTICE_DAYS away and a public reason. From that moment the announcement is
   public (/service-termination/ and a banner on every portal page), and every reachable person
   is e-mailed through a notice campaign (consent.campaigns: batches, at most once each).
2. Until erasure starts the DPO may cancel it (`termination_cancel`): the campaign stops, the
   announcement goes.
3. From the stop date (00:00 in QUANYI_BUSINESS_TZ), once no notice is still being sent, the beat
   job `service-termination` (`termination_step`) erases every person.

How it stays safe:
- Nothing is erased before the stop date, nor while notices are still going out, nor once the
  termination is cancelled (erasure starts by a conditional UPDATE from a live status).
- Each person goes through the erasure engine (retention.erasure: plan, confirm, run, seal) under
  the reference TERMINATION-<id>; the engine asks each recipient of their data to delete it
  (one notice per recipient and person) and dsar closes their open requests before the seal.
  A person whose own erasure (a request's) is already under way is left to it. Planning again
  finds the same plan, confirming and running a finished one change nothing, so a repeated or
  crashed batch erases nobody twice.
- A legal hold on a person blocks their plan: it stays planned, listed with its ground, and their
  data stays as it is. Holds on categories keep those tables (the engine's rule). Quanyi's own
  records of erased people follow their retention rules; the audit chain is never deleted.
- People are walked in id order, a batch at a time, under a lease on the termination claimed by a
  conditional UPDATE, so two jobs never walk at once. The cursor moves only past people erased or
  held, so a crash repeats at most one person's (idempotent) erasure. Progress is recounted from
  the erasures, never incremented, so nothing is counted twice.
"""

from __future__ import annotations

import logging
import time as clock
from datetime import date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from django.conf import settings
from django.core.exceptions import PermissionDenied, ValidationError
from django.db import IntegrityError, transaction
from django.db.models import Max, Q, Value
from django.db.models.functions import Greatest
from django.utils import timezone
from django.utils.translation import gettext as _

from accounts.models import DataSubject, User
from consent.campaigns import RUNNING as CAMPAIGN_RUNNING
from consent.campaigns import campaign_cancel, campaign_create, reachable_subjects
from consent.models import NoticeCampaign
from core.audit import SYSTEM, Actor, audit_log
from retention.erasure import (
    ErasureBusy,
    erasure_confirm,
    erasure_plan,
    erasure_replan,
    erasure_run,
    holds_active,
)
from retention.models import Erasure, ServiceTermination

log = logging.getLogger(__name__)

PERMISSION = "retention.start_termination"
Status = ServiceTermination.Status
ACTIVE = (Status.ANNOUNCED, Status.NOTIFIED, Status.ERASING)
CANCELLABLE = (Status.ANNOUNCED, Status.NOTIFIED)
# A job stops taking new people after this long; the next beat (every minute) goes on.
TIME_BUDGET_SECONDS = 45.0


# --- Reads ---------------------------------------------------------------------------------------


def business_today(now: datetime | None = None) -> date:
    return (now or timezone.now()).astimezone(ZoneInfo(settings.QUANYI_BUSINESS_TZ)).date()


def earliest_stop_on(now: datetime | None = None) -> date:
    """The first stop date that leaves everyone the configured notice period."""
    return business_today(now) + timedelta(days=settings.QUANYI_TERMINATION_NOTICE_DAYS)


def stop_moment(termination: ServiceTermination) -> datetime:
    """When erasure may start: the stop date's first moment in the business time zone."""
    return datetime.combine(termination.stop_on, time.min, tzinfo=ZoneInfo(settings.QUANYI_BUSINESS_TZ))


def termination_active() -> ServiceTermination | None:
    return ServiceTermination.objects.filter(active=True).first()


def termination_announced() -> ServiceTermination | None:
    """What the public page and the banner show: the latest termination not cancelled."""
    return ServiceTermination.objects.exclude(status=Status.CANCELLED).order_by("-started_at", "-pk").first()


def termination_stopped(now: datetime | None = None) -> ServiceTermination | None:
    """The termination whose stop date has come (not cancelled): from then on nobody signs up."""
    found = termination_announced()
    if found is None or (now or timezone.now()) < stop_moment(found):
        return None
    return found


def termination_done() -> ServiceTermination | None:
    """The finished termination: everyone not under a legal hold has been erased."""
    return ServiceTermination.objects.filter(status=Status.DONE).order_by("-finished_at", "-pk").first()


def termination_of(erasure: Erasure) -> ServiceTermination | None:
    """The termination an erasure belongs to (its reference is the termination's)."""
    if erasure.origin != Erasure.Origin.TERMINATION:
        return None
    pk = erasure.reference.removeprefix("TERMINATION-")
    return ServiceTermination.objects.filter(pk=int(pk)).first() if pk.isdigit() else None


def termination_campaign(termination: ServiceTermination) -> NoticeCampaign | None:
    return NoticeCampaign.objects.filter(termination=termination).first()


# --- Start, cancel -------------------------------------------------------------------------------


def _check_permission(user: User | None) -> None:
    # user is None for the management command: whoever runs it has the server's shell.
    if user is not None and not user.has_perm(PERMISSION):
        raise PermissionDenied(_("Only the data-protection officer can start or cancel the termination."))


def termination_validate(*, stop_on: date | None, reason: str) -> str:
    """The start's input checks (the admin form runs them before its confirmation step).
    Returns the reason, stripped."""
    errors: dict[str, str] = {}
    reason = (reason or "").strip()
    if not reason:
        errors["reason"] = _("Say why the service stops: the announcement shows it.")
    earliest = earliest_stop_on()
    if stop_on is None:
        errors["stop_on"] = _("Give the date the service stops.")
    elif stop_on < earliest:
        errors["stop_on"] = _(
            "The stop date must leave everyone %(days)d days' notice: %(earliest)s or later."
        ) % {"days": settings.QUANYI_TERMINATION_NOTICE_DAYS, "earliest": earliest.isoformat()}
    if errors:
        raise ValidationError(errors)
    running = termination_active()
    if running is not None:
        raise ValidationError(
            _("The termination of the service has already been started (stop date %(day)s).")
            % {"day": running.stop_on.isoformat()}
        )
    return reason


@transaction.atomic
def termination_start(
    *, actor: Actor, stop_on: date, reason: str, user: User | None = None
) -> ServiceTermination:
    """Announce that the service stops on `stop_on` and e-mail every reachable person."""
    _check_permission(user)
    reason = termination_validate(stop_on=stop_on, reason=reason)
    try:
        with transaction.atomic():
            termination = ServiceTermination.objects.create(
                stop_on=stop_on,
                notice_days=settings.QUANYI_TERMINATION_NOTICE_DAYS,
                reason=reason,
                started_by=user,
            )
    except IntegrityError:  # started at the same moment elsewhere: theirs stands
        raise ValidationError(_("The termination of the service has already been started.")) from None
    audit_log(
        actor=actor,
        action="termination.started",
        obj=termination,
        data={"stop_on": stop_on.isoformat(), "notice_days": termination.notice_days},
    )
    campaign_create(
        kind=NoticeCampaign.Kind.SERVICE_TERMINATION, termination=termination, actor=actor, user=user
    )
    return termination


@transaction.atomic
def termination_cancel(
    *, termination: ServiceTermination, actor: Actor, user: User | None = None
) -> ServiceTermination:
    """Call it off before erasure starts: no more e-mails, no announcement. Cancelling twice is
    harmless; once erasure has started it is refused."""
    _check_permission(user)
    moved = ServiceTermination.objects.filter(pk=termination.pk, status__in=CANCELLABLE).update(
        status=Status.CANCELLED, active=False, cancelled_at=timezone.now(), cancelled_by=user
    )
    termination.refresh_from_db()
    if not moved:
        if termination.status == Status.CANCELLED:
            return termination
        raise ValidationError(_("Erasure has started: the termination can no longer be cancelled."))
    campaign = termination_campaign(termination)
    audit_log(
        actor=actor,
        action="termination.cancelled",
        obj=termination,
        data={"campaign": campaign.pk if campaign else None},
    )
    if campaign is not None:
        campaign_cancel(campaign=campaign, actor=actor)
    return termination


# --- The job -------------------------------------------------------------------------------------


def termination_step(
    *, batch: int | None = None, max_batches: int | None = None, seconds: float = TIME_BUDGET_SECONDS
) -> str:
    """What the beat job does every minute: mark the notices sent, start erasing on the stop date,
    erase people batch by batch, finish with the report. Returns what happened."""
    termination = termination_active()
    if termination is None:
        return "no termination"
    campaign = termination_campaign(termination)
    if (
        termination.status == Status.ANNOUNCED
        and campaign is not None
        and campaign.status == NoticeCampaign.Status.DONE
    ):
        with transaction.atomic():
            if ServiceTermination.objects.filter(pk=termination.pk, status=Status.ANNOUNCED).update(
                status=Status.NOTIFIED, notified_at=campaign.finished_at or timezone.now()
            ):
                audit_log(
                    actor=SYSTEM,
                    action="termination.notified",
                    obj=termination,
                    data={
                        "sent": campaign.sent,
                        "failed": campaign.failed,
                        "interrupted": campaign.interrupted,
                    },
                )
        termination.refresh_from_db()
    if termination.status in CANCELLABLE:
        if timezone.now() < stop_moment(termination):
            return "waiting for the stop date"
        if campaign is not None and campaign.status in CAMPAIGN_RUNNING:
            return "waiting for the notices to go out"
        with transaction.atomic():
            if ServiceTermination.objects.filter(pk=termination.pk, status__in=CANCELLABLE).update(
                status=Status.ERASING, erasing_at=timezone.now()
            ):
                audit_log(
                    actor=SYSTEM,
                    action="termination.erasing",
                    obj=termination,
                    data={"subjects": DataSubject.objects.filter(erased_at__isnull=True).count()},
                )
        termination.refresh_from_db()
    if termination.status != Status.ERASING:
        return str(termination.status)
    return _erase(termination, batch=batch, max_batches=max_batches, seconds=seconds)


def _lease() -> timedelta:
    return timedelta(seconds=settings.QUANYI_ERASURE_LEASE_SECONDS)


def _erase(
    termination: ServiceTermination, *, batch: int | None, max_batches: int | None, seconds: float
) -> str:
    now = timezone.now()
    mine = ServiceTermination.objects.filter(pk=termination.pk, status=Status.ERASING).filter(
        Q(lease_until__isnull=True) | Q(lease_until__lt=now)
    )
    lease = now + _lease()
    if not mine.update(lease_until=lease):
        return "busy"  # another job walks the people now
    size = batch or settings.QUANYI_TERMINATION_BATCH
    deadline = clock.monotonic() + seconds
    batches = 0
    try:
        while max_batches is None or batches < max_batches:
            if clock.monotonic() > deadline:
                return "erasing"
            after = ServiceTermination.objects.values_list("subjects_after", flat=True).get(pk=termination.pk)
            ids = list(
                DataSubject.objects.filter(pk__gt=after, erased_at__isnull=True)
                .order_by("pk")
                .values_list("pk", flat=True)[:size]
            )
            if not ids:
                return _finish(termination)
            batches += 1
            for pk in ids:
                if _erase_one(termination, pk) == "busy":
                    _progress(termination)
                    return "waiting for a running erasure"
                # Past this person for good; the lease is renewed with it.
                renewed = timezone.now() + _lease()
                if not ServiceTermination.objects.filter(pk=termination.pk, lease_until=lease).update(
                    subjects_after=Greatest("subjects_after", Value(pk)), lease_until=renewed
                ):
                    return "lease lost"  # another job took over after ours ran out: it goes on
                lease = renewed
            _progress(termination)
        return "erasing"
    finally:
        # Only our own lease: a job that outlived it must not free another job's.
        ServiceTermination.objects.filter(pk=termination.pk, lease_until=lease).update(lease_until=None)


def _blocked(subject: DataSubject) -> bool:
    return any(h.subject_id == subject.pk and not h.category for h in holds_active(subject))


def _erase_one(termination: ServiceTermination, subject_id: int) -> str:
    """Erase one person through the engine: "erased", "held" (a legal hold keeps them), or
    "busy" (their erasure is running elsewhere: come back later)."""
    subject = DataSubject.objects.get(pk=subject_id)
    if subject.is_erased:
        return "erased"
    if (
        Erasure.objects.filter(subject=subject, status__in=[Erasure.Status.CONFIRMED, Erasure.Status.RUNNING])
        .exclude(reference=termination.reference)
        .exists()
    ):
        # Their own erasure (a deletion request, a cancellation) is under way: it tells their
        # recipients, reports to them and closes their request. Erasing them twice at once
        # would notify the recipients twice; wait for it (erasures-resume keeps it going).
        return "busy"
    try:
        erasure = erasure_plan(
            subject=subject, actor=SYSTEM, reference=termination.reference, origin=Erasure.Origin.TERMINATION
        )
    except ValidationError:  # erased in the meantime
        return "erased"
    if erasure.status == Erasure.Status.PLANNED:
        if erasure.plan.get("blocked") and _blocked(subject):
            return "held"
        try:
            erasure = erasure_confirm(erasure=erasure, actor=SYSTEM, enqueue=False)
        except ErasureBusy:  # their own erasure was confirmed since the check above
            return "busy"
        except ValidationError:  # a hold was placed or released since the plan was made
            erasure = erasure_replan(erasure=erasure, actor=SYSTEM)
            if erasure.plan.get("blocked"):
                return "held"
            erasure = erasure_confirm(erasure=erasure, actor=SYSTEM, enqueue=False)
    if erasure.status != Erasure.Status.DONE:
        erasure_run(erasure_id=erasure.pk)
        erasure.refresh_from_db()
    return "erased" if erasure.status == Erasure.Status.DONE else "busy"


def _erasures(termination: ServiceTermination) -> Any:
    return Erasure.objects.filter(reference=termination.reference)


def _counts(termination: ServiceTermination) -> dict[str, int]:
    after = ServiceTermination.objects.values_list("subjects_after", flat=True).get(pk=termination.pk)
    erasures = _erasures(termination)
    return {
        "subjects_erased": erasures.filter(status=Erasure.Status.DONE).count(),
        "subjects_held": erasures.filter(status=Erasure.Status.PLANNED).count(),
        "subjects_remaining": DataSubject.objects.filter(pk__gt=after, erased_at__isnull=True).count(),
    }


def _progress(termination: ServiceTermination) -> None:
    ServiceTermination.objects.filter(pk=termination.pk).update(**_counts(termination))


def termination_report(termination: ServiceTermination) -> dict[str, Any]:
    """No personal data: counts, subject numbers of the people kept, hold ids and grounds."""
    erasures = _erasures(termination)
    done = erasures.filter(status=Erasure.Status.DONE)
    held = [
        {
            "subject": e.subject_id,
            "erasure": e.pk,
            "holds": [
                {"id": h["id"], "ground": h["ground"], "category": h["category"]} for h in e.plan["holds"]
            ],
        }
        for e in erasures.filter(status=Erasure.Status.PLANNED).order_by("subject_id")
    ]
    kept: dict[str, int] = {}
    for plan in done.values_list("plan", flat=True):
        for item in plan.get("items", []):
            if item.get("held"):
                key = f"{item['source']}.{item['table']}"
                kept[key] = kept.get(key, 0) + 1
    backups = done.aggregate(last=Max("backups_until"))["last"]
    return {
        "erased": done.count(),
        "held": held,
        # Tables kept for erased people because a hold covers one of their categories.
        "kept_under_category_holds": kept,
        "backups_roll_over_by": backups.isoformat() if backups else None,
        # Quanyi's own records of the erased (requests, consent ledger, audit log) follow their
        # retention rules (retention.records, dsar.records); the audit chain is never deleted.
        "own_records": "retention_rules",
    }


def _finish(termination: ServiceTermination) -> str:
    with transaction.atomic():
        report = termination_report(termination)
        done = ServiceTermination.objects.filter(pk=termination.pk, status=Status.ERASING).update(
            status=Status.DONE,
            active=False,
            finished_at=timezone.now(),
            report=report,
            **_counts(termination),
        )
        if done:
            audit_log(
                actor=SYSTEM,
                action="termination.done",
                obj=termination,
                data={"erased": report["erased"], "held": [h["subject"] for h in report["held"]]},
            )
    log.info(
        "service termination %s done: %s erased, %s held",
        termination.pk,
        report["erased"],
        len(report["held"]),
    )
    return "done"


def reachable_count() -> int:
    return reachable_subjects().count()
