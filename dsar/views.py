"""The requester's side of data-subject requests: portal pages.

Who may see a request: the account that submitted it (or the subject it is about, when they
asked for themselves), or a browser session that proved control of the requester's e-mail
with a code. Anyone else gets the same answer as for a request that does not exist. Pages
that take a reference or an e-mail from a stranger never say whether it exists.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from types import SimpleNamespace
from typing import Any, cast

from allauth.account.adapter import get_adapter
from allauth.account.internal.flows.login import get_authentication_records
from allauth.account.internal.flows.reauthentication import did_recently_reauthenticate
from django.conf import settings
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.contrib.sessions.backends.base import SessionBase
from django.core.exceptions import PermissionDenied, ValidationError
from django.db.models import Q, QuerySet
from django.http import (
    Http404,
    HttpRequest,
    HttpResponse,
    HttpResponseBase,
    HttpResponseRedirect,
    StreamingHttpResponse,
)
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils import timezone, translation
from django.utils.http import content_disposition_header, urlencode
from django.utils.translation import gettext as _
from django.views.decorators.http import require_http_methods, require_POST

from accounts.models import DataSubject, User
from accounts.services import subject_for_user
from core.audit import Actor
from core.ratelimit import rate_limited
from dsar import cancellation as cancellation_services
from dsar import corrections, services
from dsar import erasure as dsar_erasure
from dsar.forms import (
    REFERENCE_MAX,
    TYPE_EXPLANATIONS,
    CancellationForm,
    CodeForm,
    CorrectionForm,
    FindRequestForm,
    ProvideInfoForm,
    PublicRequestForm,
    SubjectRequestForm,
    apply_service_errors,
)
from dsar.models import (
    CLOCK_RUNNING,
    EXPORT_TYPES,
    AccountCancellation,
    DataExport,
    DataSubjectRequest,
    OnBehalf,
    RequestMessage,
    RequestType,
    Status,
)
from dsar.notifications import requester_address
from dsar.selectors import LIST_DEFERRED
from dsar.workdays import working_days_left

# --- Rate limits (fixed windows in the shared cache) -----------------------------------------

SUBMIT_PER_IP = (10, 3600)
CODE_SEND_PER_EMAIL = (5, 3600)
CODE_SEND_PER_IP = (20, 3600)
CODE_CHECK_PER_IP = (30, 600)
MAX_INT_ID = 2**63 - 1


def client_ip(request: HttpRequest) -> str:
    # allauth's view of the client address, so its limits and ours count the same client.
    return str(get_adapter(request).get_client_ip(request))


def submission_limited(request: HttpRequest) -> bool:
    limit, window = SUBMIT_PER_IP
    return rate_limited("dsar-submit-ip", client_ip(request), limit=limit, window=window)


def email_key(email: str) -> str:
    return hashlib.sha256(email.strip().lower().encode()).hexdigest()


def code_sending_limited(request: HttpRequest, address_key: str) -> bool:
    """Counts one code e-mail against the client and the address (by `email_key`, so the
    resend button, which only knows the key, shares the counter); both counters move."""
    ip_limit, ip_window = CODE_SEND_PER_IP
    by_ip = rate_limited("dsar-code-ip", client_ip(request), limit=ip_limit, window=ip_window)
    limit, window = CODE_SEND_PER_EMAIL
    by_email = rate_limited("dsar-code-email", address_key, limit=limit, window=window)
    return by_ip or by_email


def code_checking_limited(request: HttpRequest) -> bool:
    limit, window = CODE_CHECK_PER_IP
    return rate_limited("dsar-check-ip", client_ip(request), limit=limit, window=window)


def limited_message() -> str:
    return _("Too many attempts from your network or for this address. Wait an hour and try again.")


# --- Shared reads ----------------------------------------------------------------------------


def is_subject_user(user: Any) -> bool:
    """Signed in as a data subject. Staff accounts have no subject and no requests."""
    return bool(user.is_authenticated and not user.is_staff)


def own_requests(user: Any) -> QuerySet[DataSubjectRequest]:
    """Requests this account submitted, and the ones about its subject that were made by the
    subject themselves (e.g. before they had an account). Never someone else's."""
    if not is_subject_user(user):
        return DataSubjectRequest.objects.none()
    subject_id = DataSubject.objects.filter(user=user).values_list("pk", flat=True).first()
    mine = Q(user=user)
    if subject_id is not None:
        mine |= Q(subject_id=subject_id, on_behalf=OnBehalf.SELF)
    return DataSubjectRequest.objects.filter(mine).order_by("-submitted_at", "-pk")


def own_requests_for_list(user: Any) -> QuerySet[DataSubjectRequest]:
    return own_requests(user).defer(*LIST_DEFERRED)


def own_request(user: Any, pk: int) -> DataSubjectRequest:
    if pk > MAX_INT_ID:
        raise Http404
    found = own_requests(user).filter(pk=pk).first()
    if found is None:
        raise Http404
    return found


def recently_reauthenticated(user: Any, session: SessionBase | None) -> bool:
    """allauth's own test (a reauthentication within ACCOUNT_REAUTHENTICATION_TIMEOUT), on the
    session that authenticated this call: the cookie session, or the one behind an app's
    X-Session-Token. allauth waives the test for accounts that cannot reauthenticate at all;
    identity is not waived here, so a reauthentication record must exist."""
    if session is None or not is_subject_user(user):
        return False
    shim = cast(HttpRequest, SimpleNamespace(user=user, session=session))
    records = get_authentication_records(shim, user)
    if not any(r.get("reauthenticated") for r in records):
        return False
    return did_recently_reauthenticate(shim)


@dataclass(frozen=True)
class TimelineEntry:
    at: datetime
    kind: str
    label: str
    body: str = ""


def requester_timeline(request: DataSubjectRequest) -> list[TimelineEntry]:
    """What the requester may see of the history: derived from the request's own dates and the
    messages to and from them. Internal notes and staff identities never appear."""
    entries = [TimelineEntry(request.submitted_at, "submitted", _("Request received"))]
    if request.contact_verified_at:
        entries.append(TimelineEntry(request.contact_verified_at, "contact", _("E-mail address confirmed")))
    if request.verified_at:
        entries.append(
            TimelineEntry(
                request.verified_at, "verified", _("Identity verified: the 15-working-day clock started")
            )
        )
    for message in request.messages.filter(
        kind__in=[RequestMessage.Kind.TO_REQUESTER, RequestMessage.Kind.FROM_REQUESTER]
    ).only("kind", "body", "created_at", "request_id"):
        if message.kind == RequestMessage.Kind.TO_REQUESTER:
            entries.append(
                TimelineEntry(
                    message.created_at, "to_requester", _("We asked for more information"), message.body or ""
                )
            )
        else:
            entries.append(
                TimelineEntry(
                    message.created_at, "from_requester", _("You sent information"), message.body or ""
                )
            )
    if request.started_at:
        entries.append(TimelineEntry(request.started_at, "started", _("Work on the request started")))
    if request.closed_at:
        closing = {
            Status.COMPLETED: _("Request completed"),
            Status.REFUSED: _("Request refused"),
            Status.WITHDRAWN: _("Request withdrawn"),
        }
        entries.append(
            TimelineEntry(request.closed_at, request.status, closing.get(Status(request.status), _("Closed")))
        )
    return sorted(entries, key=lambda e: e.at)


def days_left(request: DataSubjectRequest) -> int | None:
    if request.status in CLOCK_RUNNING and request.due_date:
        return working_days_left(request.due_date)
    return None


# --- Shared writes (thin: parse, call the services, nothing else) ----------------------------


def submit_for_user(
    *,
    user: User,
    session: SessionBase | None,
    type: str,
    on_behalf: str,
    details: str,
    relationship: str = "",
    subject_name: str = "",
    subject_email: str = "",
    documents: list[Any] | None = None,
    changes: Sequence[Mapping[str, Any]] = (),
) -> DataSubjectRequest:
    return corrections.request_submit_with_changes(
        user=user,
        changes=changes,
        type=type,
        on_behalf=on_behalf,
        details=details,
        relationship=relationship,
        subject_name=subject_name,
        subject_email=subject_email,
        documents=documents or [],
        language=translation.get_language() or "",
        reauthenticated=recently_reauthenticated(user, session),
    )


def submit_public(
    *,
    type: str,
    name: str,
    email: str,
    phone: str,
    on_behalf: str,
    details: str,
    relationship: str = "",
    subject_name: str = "",
    subject_email: str = "",
    documents: list[Any] | None = None,
) -> DataSubjectRequest:
    return services.request_submit_public(
        type=type,
        name=name,
        email=email,
        phone=phone,
        on_behalf=on_behalf,
        details=details,
        relationship=relationship,
        subject_name=subject_name,
        subject_email=subject_email,
        documents=documents or [],
        language=translation.get_language() or "",
    )


# --- Session proof for requesters without an account ------------------------------------------

PENDING_KEY = "dsar_pending"
VERIFIED_KEY = "dsar_verified"
MAX_VERIFIED_IN_SESSION = 20


def _set_pending(request: HttpRequest, request_id: int | None, email: str) -> None:
    """What the code page checks against. `id` None means the reference and e-mail did not
    match: the page then behaves exactly like a real one with a wrong code (including the
    expiry and the 5-try lock), so it reveals nothing."""
    request.session[PENDING_KEY] = {
        "id": request_id,
        "email": email_key(email),
        "issued": time.time(),
        "tries": 0,
    }


def session_verified_ids(request: HttpRequest) -> list[int]:
    return [int(i) for i in request.session.get(VERIFIED_KEY, [])]


def _remember_verified(request: HttpRequest, request_id: int) -> None:
    ids = [i for i in session_verified_ids(request) if i != request_id] + [request_id]
    request.session[VERIFIED_KEY] = ids[-MAX_VERIFIED_IN_SESSION:]
    # A fresh session key once the browser holds a proof (no fixation).
    request.session.cycle_key()


def _requester_request(request: HttpRequest, pk: int) -> DataSubjectRequest:
    """The request if this browser may act on it, else 404."""
    if pk > MAX_INT_ID:
        raise Http404
    if is_subject_user(request.user):
        found = own_requests(request.user).filter(pk=pk).first()
        if found is not None:
            return found
    if pk in session_verified_ids(request):
        found = DataSubjectRequest.objects.filter(pk=pk).first()
        if found is not None:
            return found
    raise Http404


def _page_url(request: HttpRequest, dsr: DataSubjectRequest) -> str:
    if own_requests(request.user).filter(pk=dsr.pk).exists():
        return reverse("dsar:detail", args=[dsr.pk])
    return reverse("dsar:status", args=[dsr.reference])


def _fake_check(pending: dict[str, Any]) -> str:
    """The answer a real challenge would give to a wrong code, for a pending state that has no
    request behind it."""
    if time.time() - float(pending.get("issued", 0)) > services.CODE_TTL.total_seconds():
        return _("The code has expired. Ask for a new one.")
    if int(pending.get("tries", 0)) >= services.CODE_MAX_ATTEMPTS:
        return _("Too many wrong codes. Ask for a new one.")
    pending["tries"] = int(pending.get("tries", 0)) + 1
    return _("That code is not right.")


# --- Pages -----------------------------------------------------------------------------------


def _status(form: Any) -> int:
    """Form errors re-render with 200 (as allauth's pages do); a rate limit answers 429."""
    return 429 if limited_message() in form.non_field_errors() else 200


def _bound(request: HttpRequest) -> dict[str, Any]:
    """Form data for a POST (bound even when empty, so it is validated), nothing for a GET."""
    return {"data": request.POST, "files": request.FILES} if request.method == "POST" else {}


def _render(request: HttpRequest, template: str, context: dict[str, Any], status: int = 200) -> HttpResponse:
    # Times are shown in the business time zone, the one the deadlines are counted in.
    return render(request, template, {**context, "business_tz": settings.QUANYI_BUSINESS_TZ}, status=status)


def new(request: HttpRequest) -> HttpResponse:
    """Choose what to ask for."""
    types = [
        {"value": value, "label": label, "explanation": TYPE_EXPLANATIONS[value]}
        for value, label in RequestType.choices
    ]
    return _render(request, "dsar/new.html", {"types": types})


@require_http_methods(["GET", "POST"])
def submit(request: HttpRequest, type: str) -> HttpResponse:
    if type not in RequestType.values:
        raise Http404
    if request.user.is_authenticated and not is_subject_user(request.user):
        raise PermissionDenied(_("Staff accounts cannot submit requests."))
    context: dict[str, Any] = {
        "type": type,
        "type_label": RequestType(type).label,
        "explanation": TYPE_EXPLANATIONS[type],
    }
    if is_subject_user(request.user):
        return _submit_as_subject(request, type, context)
    return _submit_public(request, type, context)


def correction_form(request: HttpRequest, user: User) -> tuple[CorrectionForm | None, list[str]]:
    """The field-by-field part of a correction request, for an account holder: their correctable
    fields with the values held now (and the sources that could not be read just now)."""
    subject = DataSubject.objects.filter(user=user).first()
    if subject is None or subject.is_erased:
        return None, []
    listing = corrections.correctable_fields(subject=subject)
    return CorrectionForm(**_bound(request), fields=listing.fields, prefix="c"), listing.unavailable


def _submit_as_subject(request: HttpRequest, type: str, context: dict[str, Any]) -> HttpResponse:
    user = cast(User, request.user)
    form = SubjectRequestForm(**_bound(request))
    changes_form, unavailable = (
        correction_form(request, user) if type == RequestType.CORRECTION else (None, [])
    )
    changes_ok = changes_form is None or not changes_form.is_bound or changes_form.is_valid()
    if form.is_bound and form.is_valid() and changes_ok:
        data = form.cleaned_data
        try:
            dsr = submit_for_user(
                user=user,
                session=request.session,
                type=type,
                on_behalf=data["on_behalf"],
                details=data["details"],
                relationship=data["relationship"],
                subject_name=data["subject_name"],
                subject_email=data["subject_email"],
                documents=data["documents"],
                changes=changes_form.changes() if changes_form is not None else (),
            )
        except corrections.ChangeErrors as exc:
            assert changes_form is not None  # noqa: S101 - changes come only from this form
            changes_form.apply_change_errors(exc.changes)
        except ValidationError as exc:
            apply_service_errors(form, exc)
        else:
            if dsr.status == Status.VERIFIED and dsr.due_date:
                messages.success(
                    request,
                    _("Request %(ref)s received and your identity verified. We answer by %(due)s.")
                    % {"ref": dsr.reference, "due": dsr.due_date.isoformat()},
                )
            else:
                messages.success(
                    request,
                    _("Request %(ref)s received. We verify your identity before the 15 working days start.")
                    % {"ref": dsr.reference},
                )
            return redirect("dsar:detail", pk=dsr.pk)
    context.update(
        form=form,
        changes_form=changes_form,
        unavailable=unavailable,
        public=False,
        reauthenticated=recently_reauthenticated(user, request.session),
        reauthenticate_url=reverse("account_reauthenticate")
        + "?"
        + urlencode({"next": request.get_full_path()}),
    )
    return _render(request, "dsar/submit.html", context)


def _submit_public(request: HttpRequest, type: str, context: dict[str, Any]) -> HttpResponse:
    form = PublicRequestForm(**_bound(request))
    if form.is_bound and form.is_valid():
        data = form.cleaned_data
        if submission_limited(request) or code_sending_limited(request, email_key(data["email"])):
            form.add_error(None, limited_message())
        else:
            try:
                dsr = submit_public(
                    type=type,
                    name=data["name"],
                    email=data["email"],
                    phone=data["phone"],
                    on_behalf=data["on_behalf"],
                    details=data["details"],
                    relationship=data["relationship"],
                    subject_name=data["subject_name"],
                    subject_email=data["subject_email"],
                    documents=data["documents"],
                )
            except ValidationError as exc:
                apply_service_errors(form, exc)
            else:
                _set_pending(request, dsr.pk, data["email"])
                messages.success(
                    request,
                    _("Request %(ref)s received. Enter the code we sent to your e-mail address.")
                    % {"ref": dsr.reference},
                )
                return redirect("dsar:code")
    context.update(
        form=form,
        public=True,
        login_url=reverse("account_login") + "?" + urlencode({"next": request.get_full_path()}),
    )
    return _render(request, "dsar/submit.html", context, status=_status(form))


@login_required
def mine(request: HttpRequest) -> HttpResponse:
    if not is_subject_user(request.user):
        raise PermissionDenied(_("Staff accounts have no requests of their own."))
    rows = [{"request": r, "days_left": days_left(r)} for r in own_requests_for_list(request.user)]
    return _render(request, "dsar/mine.html", {"rows": rows})


@login_required
def detail(request: HttpRequest, pk: int) -> HttpResponse:
    return _render_request(request, own_request(request.user, pk))


def status(request: HttpRequest, reference: str) -> HttpResponse:
    """The link in every e-mail. The owner (signed in) or a session that entered a code sees the
    request; anybody else is asked to prove it, whether or not the reference exists."""
    reference = reference.strip().upper()[:REFERENCE_MAX]
    dsr = DataSubjectRequest.objects.filter(reference=reference).first()
    if dsr is not None:
        if own_requests(request.user).filter(pk=dsr.pk).exists():
            return redirect("dsar:detail", pk=dsr.pk)
        if dsr.pk in session_verified_ids(request):
            return _render_request(request, dsr)
    return HttpResponseRedirect(reverse("dsar:find") + "?" + urlencode({"reference": reference}))


def _render_request(
    request: HttpRequest, dsr: DataSubjectRequest, info_form: ProvideInfoForm | None = None
) -> HttpResponse:
    if info_form is None and dsr.status == Status.INFO_REQUESTED:
        info_form = ProvideInfoForm()
    export = services.export_latest(dsr) if dsr.type in EXPORT_TYPES else None
    context = {
        "dsr": dsr,
        "timeline": requester_timeline(dsr),
        "days_left": days_left(dsr),
        "info_form": info_form,
        "explanation": TYPE_EXPLANATIONS.get(dsr.type, ""),
        "corrections": corrections.correction_outcomes(dsr) if dsr.type == RequestType.CORRECTION else [],
        "may_propose": may_propose(request.user, dsr),
        "export": export,
        "export_owner": export is not None and is_export_owner(request.user, export),
        "export_expired": export is not None and export_expired(export),
        # The progress script asks the API, which answers signed-in subjects only.
        "export_poll": export is not None
        and export.status in ("queued", "building")
        and is_subject_user(request.user),
        # What the erasure plan says will be deleted and kept, and how far it has got.
        "erasure": dsar_erasure.plan_context(dsar_erasure.erasure_of(dsr), dsr.language)
        if dsr.type in dsar_erasure.ERASING_TYPES
        else None,
    }
    return _render(request, "dsar/detail.html", context)


def may_propose(user: Any, dsr: DataSubjectRequest) -> bool:
    """Field-level corrections: the account holder's own open correction request."""
    return (
        dsr.type == RequestType.CORRECTION
        and dsr.is_open
        and dsr.on_behalf == OnBehalf.SELF
        and is_subject_user(user)
        and dsr.user_id == user.pk
    )


@login_required
@require_http_methods(["GET", "POST"])
def propose(request: HttpRequest, pk: int) -> HttpResponse:
    """More new values for one's own open correction request."""
    dsr = own_request(request.user, pk)
    if not may_propose(request.user, dsr):
        raise Http404
    user = cast(User, request.user)
    form, unavailable = correction_form(request, user)
    if form is None:
        raise Http404
    if form.is_bound and form.is_valid():
        changes = form.changes()
        if not changes:
            form.add_error(None, _("Enter at least one new value."))
        else:
            try:
                corrections.corrections_propose(request=dsr, actor=Actor.of(user), changes=changes)
            except corrections.ChangeErrors as exc:
                form.apply_change_errors(exc.changes)
            except ValidationError as exc:
                form.add_error(None, exc.messages)
            else:
                messages.success(request, _("Thank you: we will look at the new values you proposed."))
                return redirect("dsar:detail", pk=dsr.pk)
    context = {"dsr": dsr, "changes_form": form, "unavailable": unavailable}
    return _render(request, "dsar/propose.html", context)


# --- The access package ----------------------------------------------------------------------


def is_export_owner(user: Any, export: DataExport) -> bool:
    """Only the account of the person the package is about may download it: not a guardian or
    an agent who asked for them, not staff."""
    return is_subject_user(user) and export.subject.user_id == user.pk


def export_expired(export: DataExport) -> bool:
    return export.status == "expired" or (
        export.status == "ready" and export.expires_at is not None and export.expires_at <= timezone.now()
    )


def reauthenticate_url(request: HttpRequest) -> str:
    return reverse("account_reauthenticate") + "?" + urlencode({"next": request.get_full_path()})


# A package that can never be opened again is gone (410); a file that is damaged or missing
# while the package should be there is our fault (500), shown on the same clear page.
GONE_STATUS = {"expired": 410, "key_destroyed": 410, "missing": 500, "corrupt": 500}


@login_required
def download(request: HttpRequest, pk: int) -> HttpResponseBase:
    """The package, decrypted as it streams out. The owner only, after a recent
    reauthentication (allauth's page, coming back here), while ready and not expired."""
    dsr = own_request(request.user, pk)
    export = services.export_latest(dsr)
    if export is None or not is_export_owner(request.user, export):
        raise Http404
    if not recently_reauthenticated(request.user, request.session):
        return HttpResponseRedirect(reauthenticate_url(request))
    try:
        stream = services.export_download(export=export, actor=Actor.of(request.user))
    except services.ExportUnavailable as exc:
        if exc.reason == "not_ready":
            messages.info(request, str(exc))
            return redirect("dsar:detail", pk=dsr.pk)
        context = {"dsr": dsr, "message": str(exc), "reason": exc.reason}
        return _render(request, "dsar/export_gone.html", context, status=GONE_STATUS.get(exc.reason, 500))
    response = StreamingHttpResponse(stream, content_type="application/zip")
    response["Content-Disposition"] = (
        content_disposition_header(True, services.export_filename(export)) or "attachment"
    )
    if export.size is not None:
        response["Content-Length"] = str(export.size)
    response["Cache-Control"] = "no-store, private"
    return response


@require_http_methods(["GET", "POST"])
def find(request: HttpRequest) -> HttpResponse:
    """Come back to a request without an account: reference + e-mail, then a fresh code."""
    form = FindRequestForm(
        **_bound(request), initial={"reference": request.GET.get("reference", "")[:REFERENCE_MAX]}
    )
    if form.is_bound and form.is_valid():
        reference, email = form.cleaned_data["reference"], form.cleaned_data["email"]
        if code_sending_limited(request, email_key(email)):
            form.add_error(None, limited_message())
        else:
            dsr = DataSubjectRequest.objects.filter(reference=reference).first()
            match = dsr is not None and requester_address(dsr).strip().lower() == email.strip().lower()
            if match and dsr is not None:
                services.challenge_issue(request=dsr)
            _set_pending(request, dsr.pk if match and dsr is not None else None, email)
            messages.info(
                request,
                _(
                    "If the reference and the e-mail address belong to a request, we have sent a "
                    "6-digit code to that address. It is valid for 10 minutes."
                ),
            )
            return redirect("dsar:code")
    return _render(request, "dsar/find.html", {"form": form}, status=_status(form))


@require_http_methods(["GET", "POST"])
def code(request: HttpRequest) -> HttpResponse:
    pending = request.session.get(PENDING_KEY)
    if not pending:
        return redirect("dsar:find")
    form = CodeForm(**_bound(request))
    if form.is_bound and form.is_valid():
        if code_checking_limited(request):
            form.add_error(None, limited_message())
        elif pending.get("id") is None:
            form.add_error("code", _fake_check(pending))
            request.session[PENDING_KEY] = pending
        else:
            dsr = DataSubjectRequest.objects.filter(pk=pending["id"]).first()
            result = (
                services.challenge_verify(request=dsr, code=form.cleaned_data["code"])
                if dsr is not None
                else services.CodeResult(False, _("That code is not right."))
            )
            if result.ok and dsr is not None:
                del request.session[PENDING_KEY]
                _remember_verified(request, dsr.pk)
                messages.success(request, _("Thank you: your e-mail address is confirmed."))
                return redirect("dsar:status", reference=dsr.reference)
            form.add_error("code", result.reason)
    return _render(request, "dsar/code.html", {"form": form}, status=_status(form))


@require_POST
def resend(request: HttpRequest) -> HttpResponse:
    pending = request.session.get(PENDING_KEY)
    if not pending:
        return redirect("dsar:find")
    if code_sending_limited(request, str(pending.get("email", ""))):
        messages.error(request, limited_message())
        return redirect("dsar:code")
    dsr = DataSubjectRequest.objects.filter(pk=pending["id"]).first() if pending.get("id") else None
    if dsr is not None:
        services.challenge_issue(request=dsr)
    pending.update(issued=time.time(), tries=0)
    request.session[PENDING_KEY] = pending
    messages.info(request, _("We sent a new code. Earlier codes no longer work."))
    return redirect("dsar:code")


@require_http_methods(["GET", "POST"])
def withdraw(request: HttpRequest, pk: int) -> HttpResponse:
    dsr = _requester_request(request, pk)
    back = _page_url(request, dsr)
    if request.method == "GET":
        return _render(request, "dsar/withdraw.html", {"dsr": dsr, "back": back})
    try:
        dsr = services.request_withdraw(request=dsr, actor=Actor.of(request.user))
    except ValidationError as exc:
        messages.error(request, " ".join(exc.messages))
    else:
        messages.success(request, _("Request %(ref)s is withdrawn.") % {"ref": dsr.reference})
    return redirect(back)


@require_POST
def provide_info(request: HttpRequest, pk: int) -> HttpResponse:
    dsr = _requester_request(request, pk)
    form = ProvideInfoForm(request.POST, request.FILES)
    if form.is_valid():
        try:
            services.request_provide_info(
                request=dsr,
                actor=Actor.of(request.user),
                message=form.cleaned_data["message"],
                documents=form.cleaned_data["documents"],
            )
        except ValidationError as exc:
            apply_service_errors(form, exc)
        else:
            messages.success(request, _("Thank you: we have your information and continue with the request."))
            return redirect(_page_url(request, dsr))
    return _render_request(request, dsr, info_form=form)


# --- Account cancellation (seed 000 §4.5) ------------------------------------------------------


def _subject_only(request: HttpRequest) -> User:
    if not is_subject_user(request.user):
        raise PermissionDenied(_("Staff accounts are closed by an administrator, not here."))
    return cast(User, request.user)


@login_required
@require_http_methods(["GET", "POST"])
def cancellation(request: HttpRequest) -> HttpResponse:
    """What cancelling deletes and keeps, then the confirmation (after a fresh
    reauthentication). With a cancellation pending, its state and the undo button."""
    user = _subject_only(request)
    state = cancellation_services.cancellation_state(user=user)
    if state is not None:
        return _render(request, "dsar/cancellation_status.html", {"state": state})
    if not recently_reauthenticated(user, request.session):
        return redirect(reauthenticate_url(request))
    form = CancellationForm(**_bound(request))
    if form.is_bound and form.is_valid():
        try:
            cancellation_services.cancellation_schedule(
                user=user,
                reauthenticated=recently_reauthenticated(user, request.session),
                reason=form.cleaned_data["reason"],
                language=translation.get_language() or "",
            )
        except ValidationError as exc:
            apply_service_errors(form, exc)
        else:
            messages.success(
                request, _("Your account cancellation is scheduled. You can undo it until it starts.")
            )
            return redirect("cancellation:start")
    subject = subject_for_user(user=user)
    preview = cancellation_services.cancellation_preview(subject=subject, language=translation.get_language())
    return _render(request, "dsar/cancellation.html", {"form": form, "preview": preview})


@login_required
@require_POST
def cancellation_undo(request: HttpRequest) -> HttpResponse:
    """The undo button (banner, account settings). Acts only on the signed-in account's own
    cancellation; no reauthentication: keeping an account must be as easy as leaving."""
    user = _subject_only(request)
    current = cancellation_services.cancellation_current(user=user)
    if current is None:
        messages.info(request, _("There is no account cancellation to undo."))
        return redirect("portal:account")
    try:
        cancellation_services.cancellation_undo(
            cancellation=current, actor=Actor.of(user), via=AccountCancellation.Via.BUTTON
        )
    except ValidationError as exc:
        messages.error(request, " ".join(exc.messages))
    else:
        messages.success(request, _("Your account cancellation is undone. Your account stays as it is."))
    return redirect("portal:account")
