"""Notice campaigns: one e-mail to many people (a material policy change, a security
incident, the termination of the service), sent in batches by Celery, resumable after a
crash, and never twice to one person.

How it runs:

1. **Choosing the people.** `campaign_start` queues the campaign. Its first steps walk the
   audience in subject-id order, `QUANYI_CAMPAIGN_TARGET_BATCH` people per transaction, and
   insert one pending `NoticeDelivery` each. The unique (campaign, subject) constraint makes a
   repeated batch insert nothing, and the cursor moves by a conditional UPDATE, so each person
   is targeted and counted once however often a step runs.
2. **Sending.** A step holds the campaign's lease (handed from each batch to the next by a
   token), claims up to `QUANYI_CAMPAIGN_BATCH` pending rows with a conditional UPDATE to
   `sending` and commits. Then, row by row: commit `attempted_at`, hand the e-mail to the mail
   server, commit `sent` (or `failed`) together with the campaign's totals. The step then queues
   the next one through the outbox. The beat job `notice-campaigns` queues campaigns whose lease
   ran out (a lost message, a killed worker): the database, not the broker, knows what is left.

At most once, not at least once. A worker can die after handing an e-mail to the mail server
and before committing `sent`; nothing then tells whether the person got it. Sending again could
tell them twice, and a repeated notice about a data breach or about their rights is confusing
and looks like phishing, while a missing one is visible and can be fixed. So when the next step
takes over a dead batch, its rows never attempted (no `attempted_at`: certainly not sent) go back
to pending, and the row that was in flight becomes `interrupted`. Interrupted rows are counted on
the campaign and listed for staff, who may deliberately send them again (`deliveries_resend`,
audited). A send the mail server refused is `failed`, final in the same way. A batch stops taking
rows after half the lease and bounds each SMTP call by a timeout, so a live batch is not mistaken
for a dead one; if it still were, its late confirmation is recorded (`interrupted` → `sent`) and
rows it had not attempted are skipped, because every write is conditional on its own claim.

Policy-change, incident and termination e-mails are service notices, not marketing: they go to everyone
concerned whatever their marketing consent, and carry no unsubscribe link.
"""

from __future__ import annotations

import logging
import smtplib
import time
import uuid
from collections.abc import Iterable
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.mail import EmailMessage, get_connection
from django.db import IntegrityError, transaction
from django.db.models import Count, F, Q, QuerySet
from django.template.loader import render_to_string
from django.urls import reverse
from django.utils import timezone, translation
from django.utils.http import urlencode
from django.utils.translation import gettext as _

from accounts.models import DataSubject, User
from consent.models import (
    ChangeKind,
    NoticeCampaign,
    NoticeDelivery,
    PolicyVersion,
    SecurityIncident,
)
from core.audit import SYSTEM, Actor, audit_log
from core.datamap import Category
from core.outbox import outbox_enqueue

if TYPE_CHECKING:
    from retention.models import ServiceTermination

log = logging.getLogger(__name__)

STEP_TASK = "consent.tasks.campaign_step"
SMTP_TIMEOUT_SECONDS = 30
# A campaign started this recently has its first step on the way: the sweep leaves it alone.
RESUME_GRACE = timedelta(seconds=30)
# A running batch looks at the campaign's status this often (cancelled?), in e-mails.
STATUS_CHECK_EVERY = 10

Status = NoticeCampaign.Status
Row = NoticeDelivery.Status
RUNNING = (Status.QUEUED, Status.SENDING)


def _lease() -> timedelta:
    return timedelta(seconds=settings.QUANYI_CAMPAIGN_LEASE_SECONDS)


# --- Who is told -----------------------------------------------------------------------------------


def reachable_subjects() -> QuerySet[DataSubject]:
    """People we can e-mail: not erased, with an active account or an e-mail in their profile."""
    return DataSubject.objects.filter(erased_at__isnull=True).filter(
        Q(user__is_active=True) | ~Q(email_index="")
    )


def campaign_audience(campaign: NoticeCampaign) -> QuerySet[DataSubject]:
    subjects = reachable_subjects()
    if campaign.kind == NoticeCampaign.Kind.POLICY_CHANGE:
        policy = campaign.policy
        if policy is None or policy.published_at is None:
            return subjects.none()
        # Whoever joined after publication agreed to the new version when signing up (the
        # portal's notice makes the same cut).
        return subjects.filter(created_at__lt=policy.published_at)
    if campaign.kind == NoticeCampaign.Kind.SERVICE_TERMINATION:
        return subjects  # everyone we can reach
    return subjects.filter(security_incidents=campaign.incident_id)


def delivery_address(subject: DataSubject) -> str:
    """Where the notice goes: the account's address (verified at sign-up), else the profile's."""
    if subject.erased_at is not None:
        return ""
    user = subject.user
    if user is not None and user.is_active and user.email:
        return user.email
    return subject.email or ""


# --- Creating and starting -------------------------------------------------------------------------


@transaction.atomic
def campaign_create(
    *,
    kind: str,
    actor: Actor,
    policy: PolicyVersion | None = None,
    incident: SecurityIncident | None = None,
    termination: ServiceTermination | None = None,
    user: User | None = None,
    start: bool = True,
) -> NoticeCampaign:
    """The campaign about `policy`, `incident` or `termination` (one each: a second call
    returns it, started again when `start`)."""
    if [policy, incident, termination].count(None) != 2:
        raise ValidationError(_("A campaign is about one policy version or one incident."))
    if policy:
        existing = NoticeCampaign.objects.filter(policy=policy)
    elif incident:
        existing = NoticeCampaign.objects.filter(incident=incident)
    else:
        existing = NoticeCampaign.objects.filter(termination=termination)
    campaign = existing.first()
    if campaign is None:
        campaign = NoticeCampaign(
            kind=kind, policy=policy, incident=incident, termination=termination, created_by=user
        )
        try:
            campaign.full_clean()
        except ValidationError as exc:
            raise ValidationError(_("A campaign is about one policy version or one incident.")) from exc
        try:
            with transaction.atomic():
                campaign.save(force_insert=True)
        except IntegrityError:  # created concurrently: theirs stands
            return existing.get()
        audit_log(
            actor=actor,
            action="campaign.created",
            obj=campaign,
            data={
                "kind": kind,
                "policy": policy.version if policy else None,
                "incident": incident.pk if incident else None,
                "termination": termination.pk if termination else None,
            },
        )
    if start:
        campaign = campaign_start(campaign=campaign, actor=actor)
    return campaign


@transaction.atomic
def campaign_start(*, campaign: NoticeCampaign, actor: Actor) -> NoticeCampaign:
    """Queue the campaign: choose its people, then send. Starting it again (an incident's people
    added later, a cancelled campaign resumed) looks for people not yet targeted — the unique
    row per person keeps everyone else from a second e-mail — and sends what is pending."""
    locked = NoticeCampaign.objects.select_for_update().get(pk=campaign.pk)
    restarted = locked.status != Status.DRAFT
    changes: dict[str, Any] = {
        "status": Status.QUEUED,
        "targets_after": 0,
        "started_at": locked.started_at or timezone.now(),
        "finished_at": None,
    }
    if locked.status not in RUNNING:
        changes.update(lease_until=None, lease_token=None)  # nobody runs it: the next step may
    NoticeCampaign.objects.filter(pk=locked.pk).update(**changes)
    audit_log(
        actor=actor,
        action="campaign.started",
        obj=locked,
        data={"kind": locked.kind, "restarted": restarted, "previous_status": locked.status},
    )
    # A running campaign's own chain of steps picks the new status up; this step then finds
    # the lease taken and does nothing.
    outbox_enqueue(STEP_TASK, campaign_id=locked.pk)
    locked.refresh_from_db()
    return locked


@transaction.atomic
def campaign_cancel(*, campaign: NoticeCampaign, actor: Actor) -> NoticeCampaign:
    """Stop sending: pending rows stay pending (start the campaign again to send them). E-mails
    already with the mail server are not called back."""
    moved = NoticeCampaign.objects.filter(
        pk=campaign.pk, status__in=[Status.DRAFT, Status.QUEUED, Status.SENDING]
    ).update(status=Status.CANCELLED, finished_at=timezone.now(), lease_until=None, lease_token=None)
    campaign.refresh_from_db()
    if moved:
        audit_log(
            actor=actor,
            action="campaign.cancelled",
            obj=campaign,
            data={"pending": campaign.deliveries.filter(status=Row.PENDING).count()},
        )
    return campaign


@transaction.atomic
def deliveries_resend(
    *, campaign: NoticeCampaign, actor: Actor, delivery_ids: Iterable[int] | None = None
) -> int:
    """Staff chose to send interrupted or failed e-mails again, knowing an interrupted one may
    have arrived already. Returns how many rows went back to pending."""
    locked = NoticeCampaign.objects.select_for_update().get(pk=campaign.pk)
    if locked.status == Status.CANCELLED:
        raise ValidationError(_("The campaign is cancelled: start it again first."))
    rows = NoticeDelivery.objects.filter(campaign=locked)
    chosen = sorted(set(delivery_ids)) if delivery_ids is not None else None
    if chosen is not None:
        rows = rows.filter(pk__in=chosen)
    back = {"claimed_at": None, "attempted_at": None, "status": Row.PENDING}
    interrupted = rows.filter(status=Row.INTERRUPTED).update(**back)
    failed = rows.filter(status=Row.FAILED).update(**back)
    if not (interrupted or failed):
        return 0
    changes: dict[str, Any] = {
        "interrupted": F("interrupted") - interrupted,
        "failed": F("failed") - failed,
    }
    if locked.status in (Status.DONE, Status.DRAFT):
        changes.update(status=Status.SENDING, finished_at=None)
    NoticeCampaign.objects.filter(pk=locked.pk).update(**changes)
    audit_log(
        actor=actor,
        action="campaign.resent",
        obj=locked,
        data={"interrupted": interrupted, "failed": failed, "deliveries": chosen},
    )
    outbox_enqueue(STEP_TASK, campaign_id=locked.pk)  # a running chain picks them up itself
    return interrupted + failed


# --- Choosing the people ---------------------------------------------------------------------------


def targets_materialise(*, campaign: NoticeCampaign, batch: int | None = None) -> int | None:
    """Add the next `batch` people of the audience as pending deliveries, in one transaction.
    Returns how many rows were new, or None once the whole audience has been walked."""
    size = batch or settings.QUANYI_CAMPAIGN_TARGET_BATCH
    after = NoticeCampaign.objects.values_list("targets_after", flat=True).get(pk=campaign.pk)
    ids = list(
        campaign_audience(campaign).filter(pk__gt=after).order_by("pk").values_list("pk", flat=True)[:size]
    )
    if not ids:
        return None
    last = ids[-1]
    with transaction.atomic():
        span = NoticeDelivery.objects.filter(campaign=campaign, subject_id__gt=after, subject_id__lte=last)
        before = span.count()
        NoticeDelivery.objects.bulk_create(
            [NoticeDelivery(campaign=campaign, subject_id=pk) for pk in ids], ignore_conflicts=True
        )
        added = span.count() - before
        moved = NoticeCampaign.objects.filter(pk=campaign.pk, targets_after=after).update(
            targets_after=last, targeted=F("targeted") + added
        )
        if not moved:  # another step did this stretch (or the campaign was restarted): theirs counts
            transaction.set_rollback(True)
            return 0
    campaign.targets_after = last
    return added


def _choose(campaign: NoticeCampaign, deadline: float) -> bool:
    """Walk the audience until done (True) or out of time (False)."""
    while time.monotonic() < deadline:
        if targets_materialise(campaign=campaign) is None:
            return True
    return False


# --- Sending ---------------------------------------------------------------------------------------


def _claim_lease(campaign_id: int, token: str | None) -> uuid.UUID | None:
    now = timezone.now()
    free = Q(lease_until__isnull=True) | Q(lease_until__lt=now)
    if token:
        free |= Q(lease_token=token)
    mine = uuid.uuid4()
    claimed = (
        NoticeCampaign.objects.filter(pk=campaign_id, status__in=RUNNING)
        .filter(free)
        .update(lease_until=now + _lease(), lease_token=mine)
    )
    return mine if claimed else None


def _hand_over(campaign_id: int, token: uuid.UUID) -> bool:
    """Queue the next step with the lease's token (extended so the message has time to arrive)."""
    with transaction.atomic():
        kept = NoticeCampaign.objects.filter(pk=campaign_id, lease_token=token, status__in=RUNNING).update(
            lease_until=timezone.now() + _lease()
        )
        if kept:
            outbox_enqueue(STEP_TASK, campaign_id=campaign_id, token=str(token))
    return bool(kept)


def _release(campaign_id: int, token: uuid.UUID) -> None:
    NoticeCampaign.objects.filter(pk=campaign_id, lease_token=token).update(
        lease_until=None, lease_token=None
    )


def _resolve_dead_rows(campaign: NoticeCampaign) -> int:
    """Rows left `sending` by a batch that no longer holds the lease: never attempted → pending
    (they were certainly not sent); attempted → interrupted (they may have been). Returns how
    many became interrupted."""
    stale = NoticeDelivery.objects.filter(campaign=campaign, status=Row.SENDING)
    stale.filter(attempted_at__isnull=True).update(status=Row.PENDING, claimed_at=None)
    with transaction.atomic():
        interrupted = stale.filter(attempted_at__isnull=False).update(status=Row.INTERRUPTED)
        if interrupted:
            NoticeCampaign.objects.filter(pk=campaign.pk).update(interrupted=F("interrupted") + interrupted)
            audit_log(
                actor=SYSTEM,
                action="campaign.deliveries_interrupted",
                obj=campaign,
                data={"count": interrupted},
            )
    if interrupted:
        log.warning(
            "campaign %s: %d e-mail(s) interrupted by a dead worker; not resent automatically",
            campaign.pk,
            interrupted,
        )
    return interrupted


def _short_error(exc: BaseException) -> str:
    """The kind of failure and the SMTP code, never the server's text (it may quote the address)."""
    codes: list[str] = []
    if isinstance(exc, smtplib.SMTPRecipientsRefused):
        codes = sorted({str(code) for code, _msg in exc.recipients.values()})
    elif isinstance(exc, smtplib.SMTPResponseException):
        codes = [str(exc.smtp_code)]
    return " ".join([type(exc).__name__, *codes])[:200]


def _finish_row(row: NoticeDelivery, claimed_at: datetime, *, sent: bool, error: str = "") -> bool:
    status, counter = (Row.SENT, "sent") if sent else (Row.FAILED, "failed")
    fields: dict[str, Any] = {
        "status": status,
        "sent_at": timezone.now() if sent else None,
        "last_error": error[:200],
    }
    mine = NoticeDelivery.objects.filter(pk=row.pk, claimed_at=claimed_at)
    with transaction.atomic():
        if mine.filter(status=Row.SENDING).update(**fields):
            NoticeCampaign.objects.filter(pk=row.campaign_id).update(**{counter: F(counter) + 1})
            return True
        # Declared dead while this batch was still at it (it outlived its lease): we know now.
        if mine.filter(status=Row.INTERRUPTED).update(**fields):
            NoticeCampaign.objects.filter(pk=row.campaign_id).update(
                **{counter: F(counter) + 1, "interrupted": F("interrupted") - 1}
            )
            return True
    return False


def _put_back(ids: list[int], claimed_at: datetime) -> None:
    """Rows claimed by this batch and never attempted go back to pending."""
    NoticeDelivery.objects.filter(
        pk__in=ids, status=Row.SENDING, claimed_at=claimed_at, attempted_at__isnull=True
    ).update(status=Row.PENDING, claimed_at=None)


def _still_sending(campaign_id: int) -> bool:
    return NoticeCampaign.objects.filter(pk=campaign_id, status=Status.SENDING).exists()


def _send_batch(campaign: NoticeCampaign, deadline: float) -> int:
    """Claim and send one batch. Returns how many rows were claimed."""
    ids = list(
        NoticeDelivery.objects.filter(campaign=campaign, status=Row.PENDING)
        .order_by("id")
        .values_list("id", flat=True)[: settings.QUANYI_CAMPAIGN_BATCH]
    )
    if not ids:
        return 0
    claimed_at = timezone.now()
    NoticeDelivery.objects.filter(pk__in=ids, status=Row.PENDING).update(
        status=Row.SENDING, claimed_at=claimed_at, attempted_at=None
    )
    rows = list(
        NoticeDelivery.objects.filter(pk__in=ids, status=Row.SENDING, claimed_at=claimed_at)
        .select_related("subject", "subject__user")
        .order_by("id")
    )
    connection = get_connection(timeout=SMTP_TIMEOUT_SECONDS)
    try:
        connection.open()
    except Exception as exc:  # the mail server is down: nothing was attempted, try again later
        log.warning("campaign %s: cannot reach the mail server: %s", campaign.pk, _short_error(exc))
        _put_back(ids, claimed_at)
        return len(rows)
    composer = Composer(campaign)
    try:
        for index, row in enumerate(rows):
            if time.monotonic() > deadline or (
                index and index % STATUS_CHECK_EVERY == 0 and not _still_sending(campaign.pk)
            ):
                break
            try:
                address = delivery_address(row.subject)
                message = composer.message(row.subject, address) if address else None
            except Exception as exc:  # a key that cannot be read, a broken template
                log.exception("campaign %s: cannot compose delivery %s", campaign.pk, row.pk)
                _finish_row(row, claimed_at, sent=False, error=f"cannot compose: {type(exc).__name__}")
                continue
            if message is None:
                _finish_row(row, claimed_at, sent=False, error="no e-mail address")
                continue
            # Committed before the mail server sees the e-mail: from here on, a crash leaves
            # this row interrupted instead of pending.
            if not NoticeDelivery.objects.filter(pk=row.pk, status=Row.SENDING, claimed_at=claimed_at).update(
                attempted_at=timezone.now(), attempts=F("attempts") + 1
            ):
                continue  # taken over by another step: not ours any more
            try:
                accepted = connection.send_messages([message])
            except Exception as exc:
                _finish_row(row, claimed_at, sent=False, error=_short_error(exc))
                continue
            if accepted:
                _finish_row(row, claimed_at, sent=True)
            else:
                _finish_row(row, claimed_at, sent=False, error="not accepted")
    finally:
        _put_back(ids, claimed_at)
        connection.close()
    return len(rows)


def _finish(campaign: NoticeCampaign, token: uuid.UUID) -> bool:
    """Mark the campaign done once nothing is pending or sending; totals recounted from rows."""
    with transaction.atomic():
        counts = dict(
            NoticeDelivery.objects.filter(campaign=campaign)
            .order_by()
            .values("status")
            .annotate(n=Count("id"))
            .values_list("status", "n")
        )
        if counts.get(Row.PENDING) or counts.get(Row.SENDING):
            return False
        totals = {
            "targeted": sum(counts.values()),
            "sent": counts.get(Row.SENT, 0),
            "failed": counts.get(Row.FAILED, 0),
            "interrupted": counts.get(Row.INTERRUPTED, 0),
        }
        done = NoticeCampaign.objects.filter(pk=campaign.pk, status=Status.SENDING, lease_token=token).update(
            status=Status.DONE, finished_at=timezone.now(), lease_until=None, lease_token=None, **totals
        )
        if done:
            audit_log(actor=SYSTEM, action="campaign.finished", obj=campaign, data=totals)
    return bool(done)


def campaign_step(*, campaign_id: int, token: str | None = None) -> str:
    """One step of a running campaign: choose people for a while, or send one batch; then queue
    the next step. Does nothing unless it gets the lease (its token from the previous step, or
    an expired lease). Returns what happened."""
    mine = _claim_lease(campaign_id, token)
    if mine is None:
        return "not mine"  # another step holds the lease, or the campaign is not running
    campaign = NoticeCampaign.objects.select_related("policy", "incident", "termination").get(pk=campaign_id)
    deadline = time.monotonic() + _lease().total_seconds() / 2
    _resolve_dead_rows(campaign)
    if campaign.status == Status.QUEUED:
        if _choose(campaign, deadline):
            with transaction.atomic():
                chosen = NoticeCampaign.objects.filter(
                    pk=campaign_id, status=Status.QUEUED, lease_token=mine
                ).update(status=Status.SENDING)
                if chosen:
                    campaign.refresh_from_db()
                    audit_log(
                        actor=SYSTEM,
                        action="campaign.targets_chosen",
                        obj=campaign,
                        data={"targeted": campaign.targeted},
                    )
        return "choosing" if _hand_over(campaign_id, mine) else "stopped"
    _send_batch(campaign, deadline)
    if _finish(campaign, mine):
        return "done"
    restarted = NoticeCampaign.objects.filter(pk=campaign_id, status=Status.QUEUED).exists()
    if not restarted and not NoticeDelivery.objects.filter(campaign=campaign, status=Row.PENDING).exists():
        # Only rows of a batch that outlived its lease are left: the sweep comes back for them.
        _release(campaign_id, mine)
        return "waiting"
    return "sent batch" if _hand_over(campaign_id, mine) else "stopped"


def campaigns_resume(*, limit: int = 100) -> int:
    """Queue a step for every running campaign whose lease ran out (a killed worker, a lost
    message) or that never got one. Returns how many were queued."""
    now = timezone.now()
    stale = (
        NoticeCampaign.objects.filter(status__in=RUNNING)
        .filter(Q(lease_until__lt=now) | Q(lease_until__isnull=True, started_at__lt=now - RESUME_GRACE))
        .order_by("pk")
        .values_list("pk", flat=True)[:limit]
    )
    queued = 0
    for pk in list(stale):
        with transaction.atomic():
            outbox_enqueue(STEP_TASK, campaign_id=pk)
        queued += 1
    return queued


# --- The e-mails -----------------------------------------------------------------------------------


def _site(path: str) -> str:
    return settings.SITE_URL.rstrip("/") + path


def _local_day(at: datetime | None) -> str:
    return at.astimezone(ZoneInfo(settings.QUANYI_BUSINESS_TZ)).strftime("%Y-%m-%d") if at else ""


def _local_minute(at: datetime | None) -> str:
    """Date and time in the business time zone, with its offset: 2026-03-01 17:00 UTC+08:00."""
    if at is None:
        return ""
    local = at.astimezone(ZoneInfo(settings.QUANYI_BUSINESS_TZ))
    offset = local.strftime("%z")
    return f"{local:%Y-%m-%d %H:%M} UTC{offset[:3]}:{offset[3:]}"


def category_labels(codes: Iterable[str]) -> list[str]:
    """In the active language."""
    return [str(Category(c).label) if c in Category.values else c for c in codes]


def policy_notice_context(policy: PolicyVersion, language: str) -> dict[str, Any]:
    previous = (
        PolicyVersion.objects.filter(published_at__isnull=False, version__lt=policy.version)
        .order_by("-version")
        .values_list("version", flat=True)
        .first()
    )
    diff = (
        _site(reverse("consent:policy_diff") + "?" + urlencode({"a": previous, "b": policy.version}))
        if previous
        else ""
    )
    return {
        "version": policy.version,
        "title": policy.localised("title", language),
        "summary": policy.localised("summary", language),
        "change_kind": str(ChangeKind(policy.change_kind).label)
        if policy.change_kind in ChangeKind.values
        else "",
        "effective": _local_day(policy.effective_at),
        "policy_url": _site(reverse("consent:policy")),
        "diff_url": diff,
        "respond_url": _site(reverse("account_login") + "?" + urlencode({"next": reverse("consent:policy")})),
        "request_url": _site(reverse("dsar:new")),
        "site_url": settings.SITE_URL,
    }


def incident_notice_context(incident: SecurityIncident, language: str) -> dict[str, Any]:
    return {
        "incident": incident,
        "reference": str(incident),
        "title": incident.localised("title", language),
        "what_happened": incident.localised("what_happened", language),
        "occurred": _local_minute(incident.occurred_at),
        "discovered": _local_minute(incident.discovered_at),
        "categories": category_labels(incident.categories),
        "impact": incident.localised("impact", language),
        "measures": incident.localised("measures", language),
        "advice": incident.localised("advice", language),
        "remedies": incident.localised("remedies", language),
        "contact": incident.contact,
        "regulator": incident.regulator,
        "reported": _local_day(incident.reported_to_regulator_at),
        "announcement_url": _site(reverse("consent:incident", args=[incident.pk]))
        if incident.announced_at
        else "",
        "site_url": settings.SITE_URL,
    }


def termination_notice_context(termination: ServiceTermination, language: str) -> dict[str, Any]:
    return {
        "stop_on": termination.stop_on.isoformat(),
        "reason": termination.reason,
        "announcement_url": _site(reverse("retention:termination")),
        "request_url": _site(reverse("dsar:new")),
        "contact": settings.QUANYI_CONTROLLER_CONTACT,
        "controller": settings.QUANYI_CONTROLLER_NAME,
        "site_url": settings.SITE_URL,
    }


class Composer:
    """Renders one campaign's e-mail per person, in their language (contexts cached per language)."""

    def __init__(self, campaign: NoticeCampaign) -> None:
        self.campaign = campaign
        self._contexts: dict[str, dict[str, Any]] = {}

    def _context(self, language: str) -> dict[str, Any]:
        if language not in self._contexts:
            if self.campaign.kind == NoticeCampaign.Kind.POLICY_CHANGE:
                assert self.campaign.policy is not None  # noqa: S101 - the model's check constraint
                self._contexts[language] = policy_notice_context(self.campaign.policy, language)
            elif self.campaign.kind == NoticeCampaign.Kind.SERVICE_TERMINATION:
                assert self.campaign.termination is not None  # noqa: S101 - the model's check constraint
                self._contexts[language] = termination_notice_context(self.campaign.termination, language)
            else:
                assert self.campaign.incident is not None  # noqa: S101 - the model's check constraint
                self._contexts[language] = incident_notice_context(self.campaign.incident, language)
        return self._contexts[language]

    def message(self, subject: DataSubject, address: str) -> EmailMessage:
        language = subject.language or settings.LANGUAGE_CODE
        has_account = subject.user is not None and subject.user.is_active
        with translation.override(language):
            context = {**self._context(language), "has_account": has_account}
            template = f"consent/email/{self.campaign.kind}"
            title = render_to_string(f"{template}_subject.txt", context).strip()
            body = render_to_string(f"{template}.txt", context)
        return EmailMessage(" ".join(title.split()), body, settings.DEFAULT_FROM_EMAIL, [address])
