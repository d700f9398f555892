"""E-mails about requests, in the requester's language. Bodies name the reference, the
status and what to do next; they never repeat the personal data of the request."""

from __future__ import annotations

from functools import partial
from typing import Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.mail import send_mail
from django.template.loader import render_to_string
from django.urls import reverse
from django.utils import translation

from dsar.models import AccountCancellation, DataSubjectRequest, Reminder, RequestType

REQUESTER_KINDS = {
    "received",
    "verified",
    "info_needed",
    "completed",
    "refused",
    "withdrawn",
    "cancellation_scheduled",
    "cancellation_undone",
}


def _send(template: str, to: list[str], context: dict[str, object], language: str) -> int:
    if not to:
        return 0
    with translation.override(language):
        subject = render_to_string(f"dsar/email/{template}_subject.txt", context).strip()
        body = render_to_string(f"dsar/email/{template}.txt", context)
    return send_mail(subject, body, settings.DEFAULT_FROM_EMAIL, to)


def _context(request: DataSubjectRequest) -> dict[str, object]:
    return {
        "request": request,
        "url": settings.SITE_URL.rstrip("/") + reverse("dsar:status", args=[request.reference]),
        "site_url": settings.SITE_URL,
        "business_tz": settings.QUANYI_BUSINESS_TZ,
    }


def requester_address(request: DataSubjectRequest) -> str:
    return (
        request.requester_email
        or (request.user.email if request.user else "")
        or (request.subject.email or "")
    )


def send_requester_email(*, request_id: int, kind: str) -> int:
    if kind not in REQUESTER_KINDS:
        raise ValueError(f"unknown e-mail kind {kind}")
    request = DataSubjectRequest.objects.select_related("subject", "user").get(pk=request_id)
    to = requester_address(request)
    context = _context(request)
    if kind == "completed" and request.type == RequestType.CORRECTION:
        from dsar.corrections import correction_outcomes

        # Called by the template, so that the labels are in the requester's language.
        context["corrections"] = partial(correction_outcomes, request)
    if kind.startswith("cancellation_"):
        context.update(
            cancellation=AccountCancellation.objects.filter(request=request).first(),
            account_url=settings.SITE_URL.rstrip("/") + reverse("portal:account"),
            cooling_off_days=settings.QUANYI_CANCELLATION_COOLING_OFF_DAYS,
        )
    return _send(f"requester_{kind}", [to] if to else [], context, request.language)


def send_erasure_report(*, request: DataSubjectRequest, erasure: Any) -> int:
    """The requester's report: what was erased, what was kept and why, and by when backups
    holding their data roll over. Sent synchronously by the erasure run, before the key that
    decrypts the address is destroyed."""
    from dsar.erasure import report_lines

    to = requester_address(request)
    with translation.override(request.language):
        lines = report_lines(erasure.plan, request.language)
    context = {**_context(request), "erasure": erasure, "lines": lines}
    return _send("requester_erased", [to] if to else [], context, request.language)


def send_code(*, request_id: int, code: str) -> int:
    request = DataSubjectRequest.objects.select_related("subject", "user").get(pk=request_id)
    to = requester_address(request)
    return _send("code", [to] if to else [], {**_context(request), "code": code}, request.language)


def _staff(group: str) -> list[str]:
    return list(
        get_user_model()
        .objects.filter(is_active=True, is_staff=True, groups__name=group)
        .values_list("email", flat=True)
    )


def send_reminder(*, reminder_id: int) -> int:
    reminder = Reminder.objects.select_related("request__assignee").get(pk=reminder_id)
    request = reminder.request
    to = [request.assignee.email] if request.assignee else _staff("agent")
    if reminder.threshold == Reminder.Threshold.OVERDUE:
        to = sorted(set(to) | set(_staff("dpo")))
    context = {
        **_context(request),
        "reminder": reminder,
        "admin_url": settings.SITE_URL.rstrip("/")
        + reverse("admin:dsar_datasubjectrequest_change", args=[request.pk]),
    }
    return _send("staff_reminder", to, context, settings.LANGUAGE_CODE)


def send_deadline_moved(*, request_id: int, old_due: str) -> int:
    request = DataSubjectRequest.objects.select_related("assignee").get(pk=request_id)
    to = [request.assignee.email] if request.assignee else _staff("agent")
    context = {
        **_context(request),
        "old_due": old_due,
        "admin_url": settings.SITE_URL.rstrip("/")
        + reverse("admin:dsar_datasubjectrequest_change", args=[request.pk]),
    }
    return _send("staff_deadline_moved", to, context, settings.LANGUAGE_CODE)


def send_cancellation_blocked(*, request_id: int) -> int:
    """Staff: a cancellation's cooling-off ended but a legal hold (or another reason in the
    request's internal note) stopped the erasure; the request waits for them."""
    request = DataSubjectRequest.objects.select_related("assignee").get(pk=request_id)
    to = [request.assignee.email] if request.assignee else _staff("agent")
    to = sorted(set(to) | set(_staff("dpo")))
    context = {
        **_context(request),
        "admin_url": settings.SITE_URL.rstrip("/")
        + reverse("admin:dsar_datasubjectrequest_change", args=[request.pk]),
    }
    return _send("staff_cancellation_blocked", to, context, settings.LANGUAGE_CODE)


def send_export_ready(*, export_id: int) -> int:
    """The requester's access package is ready: where and until when to download it. Never
    sent for a package that expired or failed meanwhile."""
    from dsar.models import DataExport, ExportStatus

    export = DataExport.objects.select_related("request__subject", "request__user").get(pk=export_id)
    if export.status != ExportStatus.READY:
        return 0
    request = export.request
    to = requester_address(request)
    context = {
        **_context(request),
        "export": export,
        "url": settings.SITE_URL.rstrip("/") + reverse("dsar:detail", args=[request.pk]),
    }
    return _send("requester_export_ready", [to] if to else [], context, request.language)
