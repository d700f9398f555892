"""Erasure for deletion and cancellation requests: the request's side of retention.erasure.

Staff make the plan from the request, read it, and confirm it; a Celery worker then erases
(retention.erasure.erasure_run), which also tells the recipients. Just before the subject's
key is destroyed, while the requester's address can still be decrypted, this module sends the
requester the report and completes the request.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils import timezone
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy

from accounts.models import User
from core.audit import SYSTEM, Actor
from core.sources import text
from dsar import notifications, services
from dsar.models import OPEN_STATUSES, DataSubjectRequest, RequestType, Status
from retention import erasure as engine
from retention.models import Erasure
from retention.termination import termination_of

RUNNER = "dsar.tasks.run_erasure"
ERASING_TYPES = (RequestType.DELETION, RequestType.CANCELLATION)


def erasure_of(request: DataSubjectRequest) -> Erasure | None:
    return (
        Erasure.objects.filter(subject_id=request.subject_id, reference=request.reference)
        .exclude(status=Erasure.Status.CANCELLED)
        .first()
    )


@transaction.atomic
def request_erasure_plan(
    *, request: DataSubjectRequest, actor: Actor, user: User | None = None, origin: str = ""
) -> Erasure:
    """Plan the erasure a deletion or cancellation request asks for (starting the work)."""
    if request.type not in ERASING_TYPES:
        raise ValidationError(_("Only deletion and account-cancellation requests erase data."))
    if request.status not in (Status.VERIFIED, Status.IN_PROGRESS):
        raise ValidationError(_("Verify the requester's identity before planning an erasure."))
    if request.status == Status.VERIFIED:
        request = services.request_start(request=request, actor=actor)
    if not origin:
        origin = (
            Erasure.Origin.CANCELLATION
            if request.type == RequestType.CANCELLATION
            else Erasure.Origin.REQUEST
        )
    return engine.erasure_plan(
        subject=request.subject,
        actor=actor,
        reference=request.reference,
        origin=origin,
        runner=RUNNER,
        created_by=user,
    )


def request_erasure_confirm(
    *, request: DataSubjectRequest, actor: Actor, user: User | None = None, enqueue: bool = True
) -> Erasure:
    erasure = erasure_of(request)
    if erasure is None:
        raise ValidationError(_("There is no erasure plan to confirm yet."))
    return engine.erasure_confirm(erasure=erasure, actor=actor, confirmed_by=user, enqueue=enqueue)


def request_erasure_replan(*, request: DataSubjectRequest, actor: Actor) -> Erasure:
    erasure = erasure_of(request)
    if erasure is None:
        raise ValidationError(_("There is no erasure plan yet."))
    return engine.erasure_replan(erasure=erasure, actor=actor)


def run_erasure(*, erasure_id: int) -> str:
    return engine.erasure_run(erasure_id=erasure_id, before_seal=_before_seal)


def _before_seal(erasure: Erasure) -> None:
    """Everything that needs the subject's key, done once before it is destroyed."""
    request = (
        DataSubjectRequest.objects.select_related("subject", "user")
        .filter(subject_id=erasure.subject_id, reference=erasure.reference)
        .first()
    )
    if request is None:
        return
    # The engine has told the recipients already (retention.erasure.recipients_tell).
    if erasure.notified_at is None:
        erasure.backups_until = engine.backups_roll_over_by(timezone.now())
        notifications.send_erasure_report(request=request, erasure=erasure)
        Erasure.objects.filter(pk=erasure.pk).update(
            notified_at=timezone.now(), backups_until=erasure.backups_until
        )
    if request.is_open:
        summary = "\n".join(
            f"{line.label}: {line.outcome}" for line in report_lines(erasure.plan, request.language)
        )
        services.request_complete(request=request, actor=Actor("system"), answer=summary, email=False)


def requests_close_on_termination(erasure: Erasure) -> None:
    """Registered with the engine (before_seal_register): when the service termination erases a
    person, their open requests, a pending account cancellation among them, are closed with an
    answer that says why (services.request_close_terminated), and a plan one of them made that
    was never confirmed is cancelled, so nobody is left chasing an erased person. Idempotent:
    a resumed run finds nothing open."""
    termination = termination_of(erasure)
    if termination is None:
        return
    open_requests = DataSubjectRequest.objects.filter(
        subject_id=erasure.subject_id, status__in=OPEN_STATUSES
    ).order_by("pk")
    for request in open_requests:
        with transaction.atomic():
            own = erasure_of(request)
            if own is not None and own.status == Erasure.Status.PLANNED:
                try:
                    engine.erasure_cancel(erasure=own, actor=SYSTEM)
                except ValidationError:
                    pass  # confirmed a moment ago: it runs to its end, which erases nothing more
            services.request_close_terminated(
                request=request, actor=SYSTEM, reference=termination.reference, stop_on=termination.stop_on
            )


# --- Reading a plan or a report -------------------------------------------------------------


@dataclass(frozen=True)
class Line:
    label: str
    rows: int
    action: str
    outcome: str
    why: str
    sensitive: bool


QUANYI_LABELS: dict[str, tuple[Any, Any]] = {
    "profile": (
        gettext_lazy("Your profile in Quanyi (name, e-mail, phone, ID number, birth date)"),
        gettext_lazy("erased"),
    ),
    "account": (gettext_lazy("Your account"), gettext_lazy("closed: it can no longer sign in")),
    "verification_documents": (
        gettext_lazy("Identity documents you sent"),
        gettext_lazy("made unreadable at once (key destroyed)"),
    ),
    "requests": (
        gettext_lazy("Your requests"),
        gettext_lazy("kept as a record that we answered; their content is unreadable"),
    ),
    "consent_ledger": (
        gettext_lazy("Your consent history"),
        gettext_lazy("kept as evidence of consent (PIPL Art. 13–14)"),
    ),
    "audit_log": (gettext_lazy("The audit log"), gettext_lazy("kept; it holds no personal data in clear")),
}


def report_lines(plan: dict[str, Any], language: str | None = None) -> list[Line]:
    """Human-readable lines (in the active language) for a plan or a report."""
    lines: list[Line] = []
    for item in plan.get("items", []):
        label = f"{text(item['source_label'], language)} · {text(item['label'], language)}"
        sensitive = any(c.get("sensitive") for c in item.get("columns", []))
        if item.get("held"):
            outcome = _("kept under a legal hold")
            why = ", ".join(item["held"])
        elif item["action"] == "delete":
            outcome, why = _("deleted"), ""
        elif item["action"] == "anonymise":
            kept = [c["name"] for c in item["columns"] if c["strategy"] == "keep"]
            outcome = (
                _("anonymised")
                if not kept
                else _("partly anonymised; kept: %(cols)s") % {"cols": ", ".join(kept)}
            )
            why = ""
        else:
            outcome, why = _("kept"), ""
        grounds = item.get("grounds", [])
        if grounds and not item.get("held"):
            why = "; ".join(
                f"{text(g['label'], language)} — {text(g['law'], language)}"
                + (f" ({g['years']} {_('years')})" if g.get("years") else "")
                for g in grounds
            )
        if item.get("restricted"):
            outcome += _("; restricted to storage and security only (PIPL Art. 47)")
        lines.append(Line(label, int(item.get("rows", 0)), str(item["action"]), outcome, why, sensitive))
    for entry in plan.get("quanyi", []):
        if entry["action"] == "none":
            continue
        what, outcome = QUANYI_LABELS.get(entry["what"], (entry["what"], entry["action"]))
        lines.append(Line(str(what), 0, entry["action"], str(outcome), "", False))
    return lines


def plan_context(erasure: Erasure | None, language: str | None = None) -> dict[str, Any] | None:
    if erasure is None:
        return None
    return {
        "erasure": erasure,
        "lines": report_lines(erasure.report or erasure.plan, language),
        "holds": erasure.plan.get("holds", []),
        "blocked": erasure.plan.get("blocked", False),
        "percent": int(100 * erasure.rows_done / erasure.rows_total) if erasure.rows_total else 100,
    }
