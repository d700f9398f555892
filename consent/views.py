"""The consent side of the portal: a person's choices and their history, signed receipts, and
the public privacy-policy pages.

Thin: every change goes through `consent.services.consent_record` (which appends the ledger
event, moves the current state and writes the audit entry in one transaction). A person only
ever sees their own ledger; a receipt of someone else's answers 404, like one that does not
exist. Refusing or withdrawing an optional purpose never costs the service (PIPL Art. 16), and
the page says so.
"""

from __future__ import annotations

import difflib
import json
import re
import uuid
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied, ValidationError
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils import translation
from django.utils.http import content_disposition_header
from django.utils.translation import gettext as _
from django.views.decorators.cache import never_cache
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_GET, require_http_methods

from accounts.models import DataSubject, User
from accounts.services import subject_for_user
from consent import receipts, services
from consent.campaigns import category_labels
from consent.forms import ConsentChoiceForm, PolicyDiffForm
from consent.models import (
    ChangeKind,
    ConsentEvent,
    ConsentState,
    LegalBasis,
    PolicyVersion,
    Purpose,
    SecurityIncident,
)
from consent.selectors import guardian_wards
from consent.services import consent_record, current_policy
from core.audit import Actor
from core.datamap import Category

HISTORY_LIMIT = 200
DIFF_CONTEXT = 2


def _render(request: HttpRequest, template: str, context: dict[str, Any], status: int = 200) -> HttpResponse:
    # Times are shown in the business time zone, as on the request pages.
    return render(request, template, {**context, "business_tz": settings.QUANYI_BUSINESS_TZ}, status=status)


def _language() -> str:
    return translation.get_language() or settings.LANGUAGE_CODE


def _subject(user: Any) -> DataSubject:
    """The signed-in person's data subject. Staff accounts have none and no consents."""
    if user.is_staff:
        subject = DataSubject.objects.filter(user=user).first()
        if subject is None:
            raise PermissionDenied(_("Staff accounts have no consents of their own."))
        return subject
    return subject_for_user(user=user)


# --- My consents ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class PurposeRow:
    purpose: Purpose
    name: str
    description: str
    categories: list[str]
    switchable: bool
    state: ConsentState | None

    @property
    def granted(self) -> bool:
        return bool(self.state and self.state.granted)

    @property
    def legal_basis(self) -> str:
        return str(LegalBasis(self.purpose.legal_basis).label)


def _category_label(code: str) -> str:
    return str(Category(code).label) if code in Category.values else code


def purpose_rows(subject: DataSubject, language: str) -> list[PurposeRow]:
    states = {
        s.purpose_id: s
        for s in ConsentState.objects.filter(subject=subject).select_related("event", "event__policy_version")
    }
    return [
        PurposeRow(
            purpose=p,
            name=p.localised("name", language),
            description=p.localised("description", language),
            categories=[_category_label(c) for c in p.categories],
            switchable=p.needs_consent and not p.required,
            state=states.get(p.pk),
        )
        for p in Purpose.objects.filter(active=True)
    ]


def _record_choice(
    request: HttpRequest, subject: DataSubject, user: User, channel: str = ConsentEvent.Channel.WEB
) -> None:
    form = ConsentChoiceForm(request.POST)
    if not form.is_valid():
        messages.error(request, _("This choice could not be saved. Reload the page and try again."))
        return
    purpose: Purpose = form.cleaned_data["purpose"]
    action: str = form.cleaned_data["action"]
    name = purpose.localised("name", _language())
    before = (
        ConsentState.objects.filter(subject=subject, purpose=purpose)
        .values_list("event_id", flat=True)
        .first()
    )
    try:
        event = consent_record(
            subject=subject,
            purpose=purpose,
            action=action,
            channel=channel,
            actor=Actor.of(user),
            user=user,
            separate=form.cleaned_data["separate"],
            ip=request.META.get("REMOTE_ADDR", ""),
            user_agent=request.META.get("HTTP_USER_AGENT", ""),
        )
    except ValidationError as exc:
        messages.error(request, " ".join(exc.messages))
        return
    if event.pk == before:
        messages.info(
            request,
            _("Nothing changed: your choice for “%(purpose)s” was already recorded.") % {"purpose": name},
        )
    elif event.grants:
        messages.success(
            request, _("Thank you: your consent to “%(purpose)s” is recorded.") % {"purpose": name}
        )
    else:
        messages.success(
            request,
            _(
                "Your consent to “%(purpose)s” is withdrawn from now on. Everything else you use keeps "
                "working."
            )
            % {"purpose": name},
        )


def _consents_context(subject: DataSubject) -> dict[str, Any]:
    """What the consents page shows for one subject: the switches and the history."""
    language = _language()
    events = list(
        ConsentEvent.objects.filter(subject=subject)
        .select_related("purpose", "policy_version")
        .order_by("-occurred_at", "-id")[: HISTORY_LIMIT + 1]
    )
    return {
        "subject": subject,
        "rows": purpose_rows(subject, language),
        "events": [
            {"event": e, "purpose_name": e.purpose.localised("name", language)}
            for e in events[:HISTORY_LIMIT]
        ],
        "history_truncated": len(events) > HISTORY_LIMIT,
        "history_limit": HISTORY_LIMIT,
        "policy": current_policy(),
    }


def _signed_in(request: HttpRequest) -> User:
    user = request.user
    assert isinstance(user, User)  # noqa: S101 - login_required guarantees it
    return user


@never_cache
@login_required
@require_http_methods(["GET", "POST"])
def mine(request: HttpRequest) -> HttpResponse:
    subject = _subject(request.user)
    user = _signed_in(request)
    if request.method == "POST":
        _record_choice(request, subject, user)
        return redirect("consent:mine")
    context = {
        **_consents_context(subject),
        "form_action": reverse("consent:mine"),
        "wards": guardian_wards(user=user),
    }
    return _render(request, "consent/mine.html", context)


def _child_name(child: DataSubject) -> str:
    return child.full_name or child.reference


@never_cache
@login_required
@require_GET
def children(request: HttpRequest) -> HttpResponse:
    """The children whose active guardian consent names the signed-in user."""
    return _render(request, "consent/children.html", {"wards": guardian_wards(user=_signed_in(request))})


@never_cache
@login_required
@require_http_methods(["GET", "POST"])
def child(request: HttpRequest, pk: int) -> HttpResponse:
    """A guardian's switches for one child (PIPL Art. 31). Anyone who is not an active guardian
    of the child gets 404, as for a subject that does not exist: the page reveals nobody."""
    user = _signed_in(request)
    wards = guardian_wards(user=user, pk=pk)
    if not wards:
        raise Http404
    subject = wards[0]
    if request.method == "POST":
        _record_choice(request, subject, user, channel=ConsentEvent.Channel.GUARDIAN)
        return redirect("consent:child", pk=subject.pk)
    context = {
        **_consents_context(subject),
        "form_action": reverse("consent:child", args=[subject.pk]),
        "child": subject,
        "child_name": _child_name(subject),
    }
    return _render(request, "consent/mine.html", context)


@never_cache
@login_required
@require_GET
def receipt(request: HttpRequest, receipt_id: uuid.UUID) -> HttpResponse:
    subject = _subject(request.user)
    # A guardian also gets the receipts of the children they act for.
    wards = guardian_wards(user=_signed_in(request))
    event = (
        ConsentEvent.objects.select_related("purpose", "policy_version", "subject")
        .filter(receipt_id=receipt_id, subject_id__in=[subject.pk, *(w.pk for w in wards)])
        .first()
    )
    if event is None:
        raise Http404
    signed = services.receipt_issue(event=event, actor=Actor.of(request.user))
    response = HttpResponse(
        json.dumps(signed, ensure_ascii=False, indent=2, sort_keys=True),
        content_type="application/json; charset=utf-8",
    )
    response["Content-Disposition"] = (
        content_disposition_header(True, f"consent-receipt-{event.receipt_id}.json") or "attachment"
    )
    response["Cache-Control"] = "no-store, private"
    return response


@require_GET
def receipt_key(request: HttpRequest) -> HttpResponse:
    """The public key that verifies every receipt (Ed25519, PEM)."""
    response = HttpResponse(receipts.public_key_pem(), content_type="text/plain; charset=utf-8")
    response["Cache-Control"] = "public, max-age=3600"
    return response


# --- The privacy policy --------------------------------------------------------------------------

_HEADING = re.compile(r"^(\d+(?:\.\d+)*)\.?\s+\S")


@dataclass(frozen=True)
class Block:
    kind: str  # "h2", "h3", "h4", "li" or "p"
    text: str


def policy_blocks(text: str, title: str = "") -> list[Block]:
    """Plain policy text (paragraphs separated by blank lines) as headings, list items and
    paragraphs. A short numbered paragraph without closing punctuation is a heading."""
    blocks = []
    for paragraph in (p.strip() for p in text.split("\n\n")):
        if not paragraph or paragraph == title:
            continue
        match = _HEADING.match(paragraph)
        if match and len(paragraph) <= 80 and paragraph[-1] not in "。.;;::":
            depth = match.group(1).count(".")
            blocks.append(Block(f"h{min(depth + 2, 4)}", paragraph))
        elif paragraph.startswith("· "):
            blocks.append(Block("li", paragraph[2:]))
        else:
            blocks.append(Block("p", paragraph))
    return blocks


def _published() -> Any:
    return PolicyVersion.objects.filter(published_at__isnull=False)


def _change_kind_label(policy: PolicyVersion) -> str:
    return str(ChangeKind(policy.change_kind).label) if policy.change_kind in ChangeKind.values else ""


@require_GET
def policy(request: HttpRequest) -> HttpResponse:
    language = _language()
    current = current_policy()
    context: dict[str, Any] = {"policy": current}
    if current is not None:
        title = current.localised("title", language)
        context.update(
            title=title,
            blocks=policy_blocks(current.localised("body", language), title),
            summary=current.localised("summary", language),
            change_kind=_change_kind_label(current),
            previous=_published().filter(version__lt=current.version).order_by("-version").first(),
        )
    return _render(request, "consent/policy.html", context)


@require_GET
def policy_history(request: HttpRequest) -> HttpResponse:
    language = _language()
    current = current_policy()
    versions = list(_published().order_by("-version"))
    rows = []
    for i, version in enumerate(versions):
        previous = versions[i + 1] if i + 1 < len(versions) else None
        rows.append(
            {
                "policy": version,
                "title": version.localised("title", language),
                "summary": version.localised("summary", language),
                "change_kind": _change_kind_label(version),
                "previous": previous,
                "current": current is not None and version.pk == current.pk,
                "upcoming": current is None or version.version > current.version,
            }
        )
    return _render(request, "consent/policy_history.html", {"rows": rows})


@dataclass(frozen=True)
class DiffRow:
    kind: str  # "same", "removed", "added" or "skip"
    a: int | None
    b: int | None
    text: str
    folded: int = 0  # for "skip": how many unchanged paragraphs are not shown


def diff_rows(old: str, new: str, context: int = DIFF_CONTEXT) -> list[DiffRow]:
    """Paragraph by paragraph: removed and added paragraphs, with `context` unchanged ones
    around each change and the rest folded into a "skip" row."""
    a = [p.strip() for p in old.split("\n\n") if p.strip()]
    b = [p.strip() for p in new.split("\n\n") if p.strip()]
    rows: list[DiffRow] = []
    matcher = difflib.SequenceMatcher(a=a, b=b, autojunk=False)
    shown_until = 0  # index in `a` after the last row shown
    for group in matcher.get_grouped_opcodes(context):
        if group[0][1] > shown_until:
            rows.append(DiffRow("skip", None, None, "", group[0][1] - shown_until))
        for tag, i1, i2, j1, j2 in group:
            if tag == "equal":
                rows.extend(DiffRow("same", i1 + k + 1, j1 + k + 1, a[i1 + k]) for k in range(i2 - i1))
                continue
            if tag in ("replace", "delete"):
                rows.extend(DiffRow("removed", i + 1, None, a[i]) for i in range(i1, i2))
            if tag in ("replace", "insert"):
                rows.extend(DiffRow("added", None, j + 1, b[j]) for j in range(j1, j2))
        shown_until = group[-1][2]
    if rows and shown_until < len(a):
        rows.append(DiffRow("skip", None, None, "", len(a) - shown_until))
    return rows


@require_GET
def policy_diff(request: HttpRequest) -> HttpResponse:
    form = PolicyDiffForm(request.GET)
    if not form.is_valid():
        return _render(
            request,
            "consent/policy_diff.html",
            {"error": _("Choose two version numbers to compare, for example ?a=1&b=2.")},
            status=400,
        )
    versions = {
        p.version: p
        for p in _published().filter(version__in=[form.cleaned_data["a"], form.cleaned_data["b"]])
    }
    old, new = versions.get(form.cleaned_data["a"]), versions.get(form.cleaned_data["b"])
    if old is None or new is None:
        raise Http404
    language = _language()
    rows = diff_rows(old.localised("body", language), new.localised("body", language))
    context = {
        "old": old,
        "new": new,
        "rows": rows,
        "added": sum(r.kind == "added" for r in rows),
        "removed": sum(r.kind == "removed" for r in rows),
        "summary": new.localised("summary", language) if new.version > old.version else "",
    }
    return _render(request, "consent/policy_diff.html", context)


@csrf_exempt  # RFC 8058 one-click: the mail client POSTs without a form; the signed token is the proof
@require_http_methods(["GET", "POST"])
def unsubscribe(request: HttpRequest, token: str) -> HttpResponse:
    """One-click unsubscribe from marketing, no login. GET asks to confirm (link scanners
    must not unsubscribe anyone); POST withdraws."""
    subject = services.unsubscribe_subject(token)
    if subject is None:
        return _render(request, "consent/unsubscribe.html", {"invalid": True}, status=400)
    if request.method == "POST":
        withdrawn = services.marketing_unsubscribe(
            subject=subject,
            ip=request.META.get("REMOTE_ADDR", ""),
            user_agent=request.META.get("HTTP_USER_AGENT", ""),
        )
        return _render(request, "consent/unsubscribe.html", {"done": True, "count": len(withdrawn)})
    return _render(request, "consent/unsubscribe.html", {"token": token})


@login_required
@require_http_methods(["POST"])
def policy_respond(request: HttpRequest) -> HttpResponse:
    """Accept or decline the notice of a material change. Declining never blocks silently:
    the answer page says what it means and offers account cancellation instead."""
    subject = _subject(request.user)
    policy = PolicyVersion.objects.filter(
        version=request.POST.get("version", "") if str(request.POST.get("version", "")).isdigit() else -1,
        published_at__isnull=False,
    ).first()
    decision = request.POST.get("decision", "")
    if policy is None or decision not in ("accept", "decline"):
        return _render(request, "consent/policy_declined.html", {"invalid": True}, status=400)
    services.policy_respond(
        subject=subject,
        policy=policy,
        decision=decision,
        actor=Actor.of(request.user),
        ip=request.META.get("REMOTE_ADDR", ""),
    )
    if decision == "accept":
        messages.success(
            request, _("Thank you: you accepted version %(v)s of the privacy policy.") % {"v": policy.version}
        )
        return redirect("consent:mine")
    return _render(request, "consent/policy_declined.html", {"policy": policy})


# --- Security incident announcements (public) ---------------------------------------------------


def _announced() -> Any:
    # Only what the DPO published: a draft, or an incident told only person by person, is not here.
    return SecurityIncident.objects.filter(announced_at__isnull=False)


@require_GET
def incidents(request: HttpRequest) -> HttpResponse:
    language = _language()
    rows = [
        {"incident": i, "title": i.localised("title", language)}
        for i in _announced().order_by("-announced_at", "-id")
    ]
    return _render(request, "consent/incidents.html", {"rows": rows})


@require_GET
def incident(request: HttpRequest, pk: int) -> HttpResponse:
    """The announcement for when telling each person is impracticable (seed 004 §4(7)): the
    same parts as the e-mail, and nothing about any person."""
    found = _announced().filter(pk=pk).first()
    if found is None:
        raise Http404
    language = _language()
    context = {
        "incident": found,
        "title": found.localised("title", language),
        "parts": [
            ("what-happened", _("What happened"), found.localised("what_happened", language)),
            ("categories", _("Personal information concerned"), ", ".join(category_labels(found.categories))),
            ("impact", _("Possible impact"), found.localised("impact", language)),
            ("measures", _("What we have done and will do"), found.localised("measures", language)),
            ("advice", _("What you can do to protect yourself"), found.localised("advice", language)),
            ("remedies", _("Remedies for you"), found.localised("remedies", language)),
            ("contact", _("How to contact us"), found.contact),
        ],
    }
    return _render(request, "consent/incident.html", context)
