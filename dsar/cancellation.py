"""Self-service account cancellation (seed 000 §4.5 "账号设置-注销账户").

The subject reads what will be deleted and what kept (a preview of the erasure plan, nothing
stored), reauthenticates and confirms. That records a cancellation request, verified at once
(the 15-working-day clock runs), and starts a cooling-off. Signing in during it, or the undo
button, withdraws the request. When it ends, the sweep plans and confirms the erasure; the
engine (retention.erasure) then erases, closes the account, sends the report and completes
the request.

How it stays safe:
- Nothing is erased at confirmation, and nothing before the cooling-off has run out.
- The undo and the sweep claim the same schedule row with conditional UPDATEs, so exactly
  one of them wins. Once the sweep has confirmed the erasure, nobody undoes it from here.
- The erasure is planned when it starts, from the data and the legal holds as they are then.
  A hold that blocks it leaves the request open for staff (an internal note, an e-mail)
  instead of erasing; the subject may still undo until staff confirm the plan.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import transaction
from django.db.models import Q
from django.utils import timezone, translation
from django.utils.translation import gettext as _

from accounts.models import DataSubject, User
from accounts.services import subject_for_user
from core.audit import SYSTEM, Actor, audit_log
from core.outbox import outbox_enqueue
from dsar import services
from dsar.erasure import Line, erasure_of, report_lines, request_erasure_confirm, request_erasure_plan
from dsar.models import CLOCK_RUNNING, OPEN_STATUSES, AccountCancellation, RequestType
from dsar.workdays import business_today, workday_index
from retention import erasure as engine
from retention.models import Erasure

log = logging.getLogger(__name__)

# Plan entries that stay (with their reason) rather than go.
KEPT_ACTIONS = frozenset({"keep", "keep_shredded"})


def cooling_off() -> timedelta:
    return timedelta(days=settings.QUANYI_CANCELLATION_COOLING_OFF_DAYS)


# --- Reads --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Preview:
    """What cancelling now would do, for the page the subject confirms on."""

    deleted: list[Line]
    kept: list[Line]
    blocked: bool
    scheduled_for: datetime
    due_date: date
    cooling_off_days: int


def cancellation_preview(*, subject: DataSubject, language: str | None = None) -> Preview:
    """Built from the erasure plan as it would be made now (retention.erasure.plan_build),
    read in `language`. Nothing is stored."""
    plan, _roots, _steps = engine.plan_build(subject)
    lines = report_lines(plan, language)
    now = timezone.now()
    return Preview(
        deleted=[line for line in lines if line.action not in KEPT_ACTIONS],
        kept=[line for line in lines if line.action in KEPT_ACTIONS],
        blocked=bool(plan.get("blocked")),
        scheduled_for=now + cooling_off(),
        due_date=workday_index().deadline(business_today(now)).due_date,
        cooling_off_days=settings.QUANYI_CANCELLATION_COOLING_OFF_DAYS,
    )


def cancellation_current(*, user: Any) -> AccountCancellation | None:
    """The account's cancellation that is neither undone nor finished (its request open)."""
    if user is None or not getattr(user, "is_authenticated", False) or user.is_staff:
        return None
    return (
        AccountCancellation.objects.select_related("request")
        .filter(user_id=user.pk, undone_at__isnull=True, request__status__in=OPEN_STATUSES)
        .order_by("-confirmed_at")
        .first()
    )


@dataclass(frozen=True)
class State:
    """What the portal's banner and the API say about a cancellation."""

    cancellation: AccountCancellation
    status: str  # "scheduled" (cooling-off), "blocked" (staff decide), "erasing"
    can_undo: bool

    @property
    def reference(self) -> str:
        return self.cancellation.request.reference

    @property
    def scheduled_for(self) -> datetime:
        return self.cancellation.scheduled_for

    @property
    def due_date(self) -> date | None:
        return self.cancellation.request.due_date


def cancellation_state(*, user: Any) -> State | None:
    current = cancellation_current(user=user)
    if current is None:
        return None
    if current.started_at is None:
        return State(current, "scheduled", True)
    if current.blocked_at is not None:
        # Staff may have released the hold and confirmed the plan since: then it is erasing.
        erasure = erasure_of(current.request)
        if erasure is None or erasure.status == Erasure.Status.PLANNED:
            return State(current, "blocked", True)
    return State(current, "erasing", False)


# --- Confirm, undo ------------------------------------------------------------------------------


@transaction.atomic
def cancellation_schedule(
    *, user: User, reauthenticated: bool, reason: str = "", language: str = ""
) -> AccountCancellation:
    """The subject confirmed: a cancellation request, verified by the reauthentication (the
    clock starts), and the cooling-off. Confirming again returns the same one."""
    if user.is_staff:
        raise ValidationError(_("Staff accounts are closed by an administrator, not here."))
    if not reauthenticated:
        raise ValidationError(
            _("Confirm it is you (enter your password again) before cancelling your account.")
        )
    # One cancellation at a time: the account row is locked, so a double click or a second
    # device finds the first one instead of making another.
    User.objects.select_for_update().filter(pk=user.pk).first()
    current = cancellation_current(user=user)
    if current is not None:
        return current
    subject = subject_for_user(user=user)
    if subject.is_erased:
        raise ValidationError(_("This account has already been erased."))
    request = services.request_submit(
        actor=Actor.of(user),
        type=RequestType.CANCELLATION,
        subject=subject,
        user=user,
        details=reason.strip(),
        language=language,
        reauthenticated=True,
        email=False,  # one e-mail with the schedule instead of "received" and "verified"
    )
    confirmed_at = request.verified_at or timezone.now()
    cancellation = AccountCancellation.objects.create(
        request=request, user=user, confirmed_at=confirmed_at, scheduled_for=confirmed_at + cooling_off()
    )
    audit_log(
        actor=Actor.of(user),
        action="cancellation.scheduled",
        obj=request,
        data={"scheduled_for": cancellation.scheduled_for.isoformat()},
    )
    outbox_enqueue("dsar.tasks.send_requester_email", request_id=request.pk, kind="cancellation_scheduled")
    return cancellation


def cancellation_undo(*, cancellation: AccountCancellation, actor: Actor, via: str) -> AccountCancellation:
    """Undo: the request is withdrawn and the schedule marked undone (request_withdraw does
    both, in one transaction, and e-mails "cancellation undone"). Repeating it is harmless."""
    services.request_withdraw(request=cancellation.request, actor=actor, undo_via=via)
    cancellation.refresh_from_db()
    return cancellation


def cancellation_undo_on_login(*, user: User) -> AccountCancellation | None:
    """Signing in during the cooling-off undoes the cancellation: the password (and second
    factor) just worked, which is the evidence that the account holder wants it back.
    Returns the undone cancellation, or None when there was nothing to undo."""
    current = cancellation_current(user=user)
    if current is None or current.started_at is not None:
        return None  # after the cooling-off only the undo button (or staff) can stop it
    try:
        return cancellation_undo(
            cancellation=current, actor=Actor.of(user), via=AccountCancellation.Via.LOGIN
        )
    except services.TransitionError:
        return None  # the sweep started it a moment ago


def cancellation_stop(*, request: Any, actor: Actor, via: str) -> bool:
    """The schedule's part of withdrawing a cancellation request (called by
    services.request_withdraw, inside its transaction). True when this call undid it, False
    when there is no schedule or it is undone already; TransitionError once the erasure has
    been confirmed (and then nothing changes: the caller's transaction rolls back)."""
    if via not in AccountCancellation.Via.values:
        raise ValueError(f"unknown undo channel {via!r}")
    now = timezone.now()
    waiting = AccountCancellation.objects.filter(request_id=request.pk, undone_at__isnull=True)
    # In the cooling-off the schedule is claimed here, so the sweep can no longer start it.
    if not waiting.filter(started_at__isnull=True).update(undone_at=now, undone_via=via):
        if not waiting.update(undone_at=now, undone_via=via):
            return False  # no schedule, or undone already
    erasure = erasure_of(request)
    if erasure is not None:
        # The sweep planned it and a legal hold stopped it before confirmation. The plan is
        # cancelled with the request; cancelling claims it on its status, so staff confirming
        # it at the same moment and this undo never both win. A confirmed erasure stays.
        try:
            engine.erasure_cancel(erasure=erasure, actor=actor)
        except ValidationError:
            raise services.TransitionError(
                _("The deletion of this account has started; it can no longer be undone.")
            ) from None
    audit_log(actor=actor, action="cancellation.undone", obj=request, data={"via": via})
    return True


# --- After the cooling-off ----------------------------------------------------------------------


def cancellation_start(*, cancellation_id: int, now: datetime | None = None) -> str:
    """Claim one due schedule and plan and confirm its erasure, in one transaction (a crash
    leaves it unclaimed for the next sweep). Returns what happened."""
    now = now or timezone.now()
    with transaction.atomic():
        claimed = AccountCancellation.objects.filter(
            pk=cancellation_id, started_at__isnull=True, undone_at__isnull=True, scheduled_for__lte=now
        ).update(started_at=now)
        if not claimed:
            return "not claimed"
        cancellation = AccountCancellation.objects.select_related("request__subject", "user").get(
            pk=cancellation_id
        )
        request = cancellation.request
        if request.status not in CLOCK_RUNNING:
            return "closed"  # staff closed the request meanwhile: nothing to erase
        erasure: Erasure | None = None
        try:
            erasure = request_erasure_plan(request=request, actor=SYSTEM)
            # No staff confirmation here, by design: the subject confirmed this cancellation
            # themselves, after reading what it deletes and keeps, and let the cooling-off
            # run out. The engine still reads the legal holds again before it confirms.
            erasure = request_erasure_confirm(request=request, actor=SYSTEM, user=cancellation.user)
        except ValidationError as exc:
            # The note is for staff: the reason in their language, like the rest of the note.
            with translation.override(settings.LANGUAGE_CODE):
                reason = " ".join(str(m) for m in exc.messages)
            _blocked(cancellation, erasure, reason, now)
            return "blocked"
        audit_log(actor=SYSTEM, action="cancellation.started", obj=request, data={"erasure": erasure.pk})
        return "started"


def _blocked(cancellation: AccountCancellation, erasure: Erasure | None, reason: str, now: datetime) -> None:
    """Leave the request to staff: open (its clock and reminders run on), with a note that
    says why and what to do, and an e-mail to whoever handles it."""
    request = cancellation.request
    AccountCancellation.objects.filter(pk=cancellation.pk).update(blocked_at=now)
    with translation.override(settings.LANGUAGE_CODE):
        note = _(
            "The cooling-off of this account cancellation has ended, but the erasure could not "
            "start: %(reason)s Release the hold, rebuild and confirm the erasure plan; or refuse "
            "the request on a legal ground. Until the plan is confirmed the subject can still "
            "undo the cancellation."
        ) % {"reason": reason}
    services.request_note(request=request, actor=SYSTEM, author=None, body=note)
    audit_log(
        actor=SYSTEM,
        action="cancellation.blocked",
        obj=request,
        data={"erasure": erasure.pk if erasure else None},
    )
    outbox_enqueue("dsar.tasks.send_cancellation_blocked", request_id=request.pk)
    log.warning("cancellation of request %s blocked: %s", request.reference, reason)


def cancellations_sweep(*, now: datetime | None = None, batch: int = 100) -> int:
    """Start every cancellation whose cooling-off has ended. Reads candidates through the
    partial index on scheduled_for (schedules neither started nor undone) in keyset
    batches; each is claimed on its own, so sweeps running at the same time (or twice)
    start each one once. Returns how many this call started or handed to staff."""
    now = now or timezone.now()
    base = AccountCancellation.objects.filter(
        started_at__isnull=True,
        undone_at__isnull=True,
        scheduled_for__lte=now,
        request__status__in=CLOCK_RUNNING,
    )
    handled = 0
    last: tuple[datetime, int] | None = None
    while True:
        qs = base
        if last is not None:
            qs = qs.filter(Q(scheduled_for__gt=last[0]) | Q(scheduled_for=last[0], pk__gt=last[1]))
        rows = list(qs.order_by("scheduled_for", "pk").values_list("pk", "scheduled_for")[:batch])
        if not rows:
            return handled
        for pk, _scheduled in rows:
            if cancellation_start(cancellation_id=pk, now=now) in ("started", "blocked"):
                handled += 1
        last = (rows[-1][1], rows[-1][0])
