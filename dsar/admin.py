"""The staff triage admin for data-subject requests, and the working-day calendar.

Thin by design: every change goes through a `dsar.services` function (which writes the audit
entry in the same transaction); this module parses input, checks permissions and renders.
The request form is read-only for everyone; staff act through small per-action forms at
`<pk>/act/<action>/` (GET shows the form, only POST changes state).

Personal data: the change list shows the requester masked and never selects the other
encrypted columns; the detail page masks the requester's name, e-mail and phone unless the
user holds `accounts.view_sensitive` (each unmasked view is audited). Identity documents are
listed and opened only with `dsar.view_verification`, and every opening is audited.

No inline styles or scripts anywhere (the site's CSP forbids them): colours are CSS classes
from static/css/admin_dsar.css, loaded through `Media`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from django import forms
from django.contrib import admin, messages
from django.contrib.admin.utils import flatten_fieldsets
from django.contrib.admin.views.main import ChangeList
from django.core.exceptions import PermissionDenied, ValidationError
from django.db import transaction
from django.db.models import F, QuerySet
from django.http import (
    Http404,
    HttpRequest,
    HttpResponse,
    HttpResponseBase,
    HttpResponseNotAllowed,
    HttpResponseRedirect,
)
from django.template.response import SimpleTemplateResponse, TemplateResponse
from django.urls import URLPattern, path, reverse
from django.utils import timezone
from django.utils.html import format_html, format_html_join
from django.utils.http import content_disposition_header
from django.utils.translation import gettext
from django.utils.translation import gettext_lazy as _

from accounts.models import User
from core.admin import ReadOnlyAdmin, SensitiveFieldsMixin
from core.audit import Actor, audit_log
from core.masking import VIEW_SENSITIVE, mask_email, mask_name, mask_phone, shown
from core.paginator import CappedCountPaginator
from dsar import corrections, selectors, services
from dsar import erasure as dsar_erasure
from dsar.models import (
    CLOCK_RUNNING,
    OPEN_STATUSES,
    AccountCancellation,
    CalendarDay,
    CalendarYear,
    CorrectionItem,
    DataExport,
    DataSubjectRequest,
    RefusalGround,
    RequestType,
    Status,
    VerificationDocument,
    VerificationMethod,
)
from dsar.selectors import Clock, DeadlineState
from dsar.workdays import business_tz
from retention.models import Erasure

CONFIRM_ERASURE = "retention.confirm_erasure"

WORK = "dsar.work_request"
LIVE = ("queued", "building", "ready")
REASSIGN = "dsar.reassign_request"
VIEW_VERIFICATION = "dsar.view_verification"


def page_clock(request: HttpRequest) -> Clock:
    """One clock (and one working-day index) per request, shared by filters and rows."""
    clock: Clock | None = getattr(request, "_dsar_clock", None)
    if clock is None:
        clock = Clock.current()
        request._dsar_clock = clock  # type: ignore[attr-defined]
    return clock


def in_business_time(response: Any) -> Any:
    """Render now, under the business time zone: staff read every time on these pages in
    Asia/Shanghai, like the deadlines themselves (stored times stay UTC)."""
    if isinstance(response, SimpleTemplateResponse) and not response.is_rendered:
        with timezone.override(business_tz()):
            response.render()
    return response


# --- Change-list filters -----------------------------------------------------------------------


class DeadlineFilter(admin.SimpleListFilter):
    title = _("deadline")
    parameter_name = "deadline"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, Any]]:
        return [("overdue", _("overdue")), ("soon", _("due within 3 working days"))]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Any]) -> QuerySet[Any]:
        if self.value() == "overdue":
            return selectors.requests_overdue(queryset, clock=page_clock(request))
        if self.value() == "soon":
            return selectors.requests_due_soon(queryset, clock=page_clock(request))
        return queryset


class AssigneeFilter(admin.SimpleListFilter):
    title = _("assignee")
    parameter_name = "assignee"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, Any]]:
        staff = [(str(u.pk), str(u)) for u in selectors.assignable_staff()]
        return [("me", _("mine")), ("none", _("unassigned")), *staff]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Any]) -> QuerySet[Any]:
        value = self.value()
        if value == "me":
            return queryset.filter(assignee_id=request.user.pk)
        if value == "none":
            return queryset.filter(assignee__isnull=True)
        if value and value.isdigit():
            return queryset.filter(assignee_id=int(value))
        return queryset


class CancellationFilter(admin.SimpleListFilter):
    """Self-service account cancellations: in their cooling-off, or stopped (a legal hold
    blocked the erasure) and waiting for staff."""

    title = _("account cancellation")
    parameter_name = "cancellation"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, Any]]:
        return [("cooling_off", _("in the cooling-off")), ("blocked", _("blocked: staff decide"))]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Any]) -> QuerySet[Any]:
        if self.value() == "cooling_off":
            return queryset.filter(
                cancellation__undone_at__isnull=True, cancellation__started_at__isnull=True
            )
        if self.value() == "blocked":
            return queryset.filter(
                cancellation__undone_at__isnull=True,
                cancellation__blocked_at__isnull=False,
                status__in=OPEN_STATUSES,
            )
        return queryset


class RequestChangeList(ChangeList):
    """Selects the page's rows without the encrypted columns it does not show, then masks the
    requester and works out the deadline state of the whole page in one pass."""

    def get_queryset(self, request: HttpRequest, exclude_parameters: Any = None) -> QuerySet[Any]:
        return selectors.requests_for_list(super().get_queryset(request, exclude_parameters))

    def get_results(self, request: HttpRequest) -> None:
        super().get_results(request)
        rows = list(self.result_list)
        selectors.attach_list_values(rows, clock=page_clock(request))
        self.result_list = rows


# --- Per-action forms --------------------------------------------------------------------------


class ConfirmForm(forms.Form):
    pass


class AssignForm(forms.Form):
    assignee = forms.ModelChoiceField(
        label=_("assignee"),
        queryset=User.objects.none(),
        required=False,
        empty_label=_("nobody (unassign)"),
    )

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        field = self.fields["assignee"]
        assert isinstance(field, forms.ModelChoiceField)  # noqa: S101 - narrows the type
        field.queryset = selectors.assignable_staff()


class VerifyForm(forms.Form):
    # Reauthentication is recorded by the portal itself; staff never choose it.
    method = forms.ChoiceField(
        label=_("verification method"),
        choices=[c for c in VerificationMethod.choices if c[0] != VerificationMethod.REAUTHENTICATION],
        initial=VerificationMethod.DOCUMENTS,
    )


class AskInfoForm(forms.Form):
    message = forms.CharField(
        label=_("message to the requester"),
        widget=forms.Textarea(attrs={"rows": 6}),
        help_text=_("Say exactly what is missing. The requester reads this."),
    )


class CompleteForm(forms.Form):
    answer = forms.CharField(
        label=_("answer to the requester"),
        widget=forms.Textarea(attrs={"rows": 10}),
        help_text=_("The written answer the requester will see."),
    )


class RefuseForm(forms.Form):
    ground = forms.ChoiceField(label=_("refusal ground"), choices=[("", "---------"), *RefusalGround.choices])
    explanation = forms.CharField(
        label=_("explanation of the refusal"),
        widget=forms.Textarea(attrs={"rows": 8}),
        help_text=_("The requester reads this explanation."),
    )


class NoteForm(forms.Form):
    body = forms.CharField(
        label=_("internal note"),
        widget=forms.Textarea(attrs={"rows": 6}),
        help_text=_("Seen by staff only."),
    )


class ApproveCorrectionForm(forms.Form):
    reason = forms.CharField(
        label=_("note to the requester"),
        required=False,
        max_length=corrections.MAX_REASON,
        widget=forms.Textarea(attrs={"rows": 4}),
        help_text=_("Optional. The requester reads it. The new value is written at once."),
    )


class RejectCorrectionForm(forms.Form):
    reason = forms.CharField(
        label=_("why the value is not changed"),
        max_length=corrections.MAX_REASON,
        widget=forms.Textarea(attrs={"rows": 6}),
        help_text=_("The requester reads this explanation."),
    )


@dataclass(frozen=True)
class CorrectionAction:
    name: str
    label: Any  # lazy text
    done: Any  # lazy text
    form_class: type[forms.Form]
    run: Callable[[CorrectionItem, HttpRequest, dict[str, Any]], object]
    offered: Callable[[CorrectionItem], bool]


CORRECTION_ACTIONS: dict[str, CorrectionAction] = {
    a.name: a
    for a in [
        CorrectionAction(
            name="approve",
            label=_("Approve and apply"),
            done=_("The correction is approved and the new value written."),
            form_class=ApproveCorrectionForm,
            run=lambda item, request, data: corrections.correction_decide(
                item=item, actor=_actor(request), approve=True, reason=data["reason"]
            ),
            offered=lambda item: item.is_pending,
        ),
        CorrectionAction(
            name="reject",
            label=_("Reject"),
            done=_("The correction is rejected; the requester will read why."),
            form_class=RejectCorrectionForm,
            run=lambda item, request, data: corrections.correction_decide(
                item=item, actor=_actor(request), approve=False, reason=data["reason"]
            ),
            offered=lambda item: item.is_pending,
        ),
        CorrectionAction(
            name="apply",
            label=_("Apply again"),
            done=_("The new value is written."),
            form_class=ConfirmForm,
            run=lambda item, request, data: corrections.correction_apply(item=item, actor=_actor(request)),
            offered=lambda item: item.awaits_apply,
        ),
    ]
}


# --- The actions -------------------------------------------------------------------------------

Runner = Callable[[DataSubjectRequest, HttpRequest, dict[str, Any]], object]


def _actor(request: HttpRequest) -> Actor:
    return Actor.of(request.user)


def _staff(request: HttpRequest) -> User:
    user = request.user
    assert isinstance(user, User)  # noqa: S101 - admin views only run for signed-in staff
    return user


def _erasure_status(obj: DataSubjectRequest) -> str | None:
    erasure = dsar_erasure.erasure_of(obj)
    return erasure.status if erasure else None


def _in_cooling_off(obj: DataSubjectRequest) -> bool:
    """A self-service cancellation the subject can still undo: the sweep plans its erasure
    when the cooling-off ends, staff do not pre-empt it."""
    return AccountCancellation.objects.filter(
        request_id=obj.pk, undone_at__isnull=True, started_at__isnull=True
    ).exists()


def _may_export(obj: DataSubjectRequest, user: Any) -> bool:
    # Offered while a package can be started and none is queued, being built or ready.
    return not services.export_startable(obj) and not obj.exports.filter(status__in=LIVE).exists()


def _may_take(obj: DataSubjectRequest, user: Any) -> bool:
    # Agents take an unassigned request or keep their own; taking one from a colleague is the
    # DPO's reassignment.
    return obj.is_open and (obj.assignee_id in (None, user.pk) or user.has_perm(REASSIGN))


@dataclass(frozen=True)
class StaffAction:
    name: str
    label: Any  # lazy text
    done: Any  # lazy text, the success message
    permission: str
    form_class: type[forms.Form]
    run: Runner
    # The services transition that must be allowed in the current status, if any.
    transition: str | None = None
    available: Callable[[DataSubjectRequest, Any], bool] = lambda obj, user: True

    def allowed(self, obj: DataSubjectRequest, user: Any) -> bool:
        if self.transition is not None and self.transition not in services.allowed_actions(obj):
            return False
        return self.available(obj, user)


ACTIONS: dict[str, StaffAction] = {
    a.name: a
    for a in [
        StaffAction(
            name="assign_me",
            label=_("Assign to me"),
            done=_("The request is assigned to you."),
            permission=WORK,
            form_class=ConfirmForm,
            run=lambda obj, request, data: services.request_claim(
                request=obj,
                actor=_actor(request),
                assignee=_staff(request),
                take_over=request.user.has_perm(REASSIGN),
            ),
            available=_may_take,
        ),
        StaffAction(
            name="assign",
            label=_("Assign to an agent"),
            done=_("The assignee is changed."),
            permission=REASSIGN,
            form_class=AssignForm,
            run=lambda obj, request, data: services.request_assign(
                request=obj, actor=_actor(request), assignee=data["assignee"]
            ),
            available=lambda obj, user: obj.is_open,
        ),
        StaffAction(
            name="verify",
            label=_("Verify identity"),
            done=_("Identity verified: the 15-working-day clock is running."),
            permission=WORK,
            form_class=VerifyForm,
            transition="verify",
            run=lambda obj, request, data: services.request_verify(
                request=obj, actor=_actor(request), method=data["method"], verified_by=_staff(request)
            ),
        ),
        StaffAction(
            name="ask_info",
            label=_("Ask for information"),
            done=_("The requester is asked for more information."),
            permission=WORK,
            form_class=AskInfoForm,
            transition="ask_info",
            run=lambda obj, request, data: services.request_ask_info(
                request=obj, actor=_actor(request), author=_staff(request), message=data["message"]
            ),
        ),
        StaffAction(
            name="start",
            label=_("Start work"),
            done=_("Work on the request has started."),
            permission=WORK,
            form_class=ConfirmForm,
            transition="start",
            run=lambda obj, request, data: services.request_start(request=obj, actor=_actor(request)),
        ),
        StaffAction(
            name="export",
            label=_("Prepare the access package"),
            done=_(
                "The package is being prepared. Its progress shows below; the requester is e-mailed "
                "when it is ready."
            ),
            permission=WORK,
            form_class=ConfirmForm,
            run=lambda obj, request, data: services.export_start(request=obj, actor=_actor(request)),
            available=_may_export,
        ),
        StaffAction(
            name="complete",
            label=_("Complete with an answer"),
            done=_("The request is completed and the requester is told."),
            permission=WORK,
            form_class=CompleteForm,
            transition="complete",
            run=lambda obj, request, data: services.request_complete(
                request=obj, actor=_actor(request), answer=data["answer"]
            ),
        ),
        StaffAction(
            name="refuse",
            label=_("Refuse"),
            done=_("The request is refused and the requester is told why."),
            permission=WORK,
            form_class=RefuseForm,
            transition="refuse",
            run=lambda obj, request, data: services.request_refuse(
                request=obj, actor=_actor(request), ground=data["ground"], explanation=data["explanation"]
            ),
        ),
        StaffAction(
            name="plan_erasure",
            label=_("Plan the erasure"),
            done=_("The erasure plan is ready: read it below, then confirm it."),
            permission=WORK,
            form_class=ConfirmForm,
            run=lambda obj, request, data: dsar_erasure.request_erasure_plan(
                request=obj, actor=_actor(request), user=_staff(request)
            ),
            available=lambda obj, user: (
                obj.type in dsar_erasure.ERASING_TYPES
                and obj.status in (Status.VERIFIED, Status.IN_PROGRESS)
                and dsar_erasure.erasure_of(obj) is None
                and not _in_cooling_off(obj)
            ),
        ),
        StaffAction(
            name="replan_erasure",
            label=_("Rebuild the erasure plan"),
            done=_("The erasure plan is rebuilt from the data as it is now."),
            permission=WORK,
            form_class=ConfirmForm,
            run=lambda obj, request, data: dsar_erasure.request_erasure_replan(
                request=obj, actor=_actor(request)
            ),
            available=lambda obj, user: _erasure_status(obj) == Erasure.Status.PLANNED,
        ),
        StaffAction(
            name="confirm_erasure",
            label=_("Confirm the plan and erase"),
            done=_("Confirmed: the erasure runs in the background; progress is shown below."),
            permission=CONFIRM_ERASURE,
            form_class=ConfirmForm,
            run=lambda obj, request, data: dsar_erasure.request_erasure_confirm(
                request=obj, actor=_actor(request), user=_staff(request)
            ),
            available=lambda obj, user: _erasure_status(obj) == Erasure.Status.PLANNED,
        ),
        StaffAction(
            name="note",
            label=_("Add an internal note"),
            done=_("The note is added."),
            permission=WORK,
            form_class=NoteForm,
            run=lambda obj, request, data: services.request_note(
                request=obj, actor=_actor(request), author=_staff(request), body=data["body"]
            ),
        ),
    ]
}


# --- Requests ----------------------------------------------------------------------------------


@admin.register(DataSubjectRequest)
class DataSubjectRequestAdmin(SensitiveFieldsMixin, admin.ModelAdmin):  # type: ignore[type-arg]
    sensitive_view_action = "request.sensitive_viewed"
    list_display = [
        "reference",
        "type",
        "requester",
        "status",
        "assignee",
        "due_date",
        "days_left",
        "provisional",
    ]
    list_display_links = ["reference"]
    list_select_related = ["assignee"]
    list_filter = [
        "status",
        "type",
        DeadlineFilter,
        "deadline_provisional",
        AssigneeFilter,
        CancellationFilter,
    ]
    list_per_page = 50
    # Marks the search box as present; the search itself is `get_search_results` (exact only).
    search_fields = ["=reference"]
    search_help_text = _("Exact reference (DSR-2026-000123), e-mail address or phone number.")
    # Nulls last: requests without a running clock come after every deadline. (The stubs only
    # know string orderings; the admin takes expressions.)
    ordering = [F("due_at").asc(nulls_last=True), "id"]  # type: ignore[list-item]
    show_full_result_count = False
    show_facets = admin.ShowFacets.NEVER
    paginator = CappedCountPaginator
    actions = ["assign_to_me"]
    fieldsets = [
        (
            None,
            {
                "fields": [
                    "reference",
                    "type",
                    "status",
                    "subject",
                    "on_behalf",
                    "relationship",
                    "language",
                    "submitted_at",
                ]
            },
        ),
        (
            _("Requester"),
            {"fields": ["requester_name_shown", "requester_email_shown", "requester_phone_shown"]},
        ),
        (_("Request"), {"fields": ["details"]}),
        (
            _("Verification and deadline"),
            {
                "fields": [
                    "contact_verified_at",
                    "verified_at",
                    "verified_by",
                    "verification_method",
                    "deadline",
                    "days_left",
                ]
            },
        ),
        (
            _("Handling"),
            {
                "fields": [
                    "assignee",
                    "started_at",
                    "closed_at",
                    "answer",
                    "refusal_ground",
                    "refusal_explanation",
                ]
            },
        ),
    ]

    class Media:
        css = {"all": ["css/admin_dsar.css"]}

    # -- permissions: read-only for everyone; changes go through the actions --

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False  # requests come from the portal and the API

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False  # closed requests are evidence; retention removes them, never a button

    def has_work_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm(WORK)

    def get_fieldsets(self, request: HttpRequest, obj: Any = None) -> Any:
        fieldsets = list(super().get_fieldsets(request, obj))
        if obj is not None and obj.type == RequestType.CANCELLATION:
            fieldsets.append((_("Account cancellation"), {"fields": ["cancellation_schedule"]}))
        return fieldsets

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> list[str]:
        return list(flatten_fieldsets(self.get_fieldsets(request, obj)))

    # -- the list --

    def get_changelist(self, request: HttpRequest, **kwargs: Any) -> type[ChangeList]:
        return RequestChangeList

    def get_search_results(
        self, request: HttpRequest, queryset: QuerySet[DataSubjectRequest], search_term: str
    ) -> tuple[QuerySet[DataSubjectRequest], bool]:
        return selectors.requests_search(queryset, search_term), False

    @admin.display(description=_("requester"))
    def requester(self, obj: DataSubjectRequest) -> str:
        return getattr(obj, "requester_masked", "—")

    def _deadline_state(self, obj: DataSubjectRequest) -> DeadlineState | None:
        # List rows carry it already (computed once per page); the detail page computes it.
        if not hasattr(obj, "deadline_state"):
            obj.deadline_state = selectors.deadline_state(obj, clock=Clock.current())  # type: ignore[attr-defined]
        state: DeadlineState | None = obj.deadline_state  # type: ignore[attr-defined]
        return state

    @admin.display(description=_("working days left"), ordering=F("due_at").asc(nulls_last=True))
    def days_left(self, obj: DataSubjectRequest) -> str:
        state = self._deadline_state(obj)
        if state is None:
            return "—"
        if state.overdue:
            # Zero when the due date was the last working day and today is not one.
            text = (
                gettext("overdue (%(days)s)") % {"days": state.days_left}
                if state.days_left
                else gettext("overdue")
            )
        else:
            text = str(state.days_left)
        return format_html('<span class="dsar-days dsar-days--{}">{}</span>', state.level, text)

    @admin.display(description=_("provisional"))
    def provisional(self, obj: DataSubjectRequest) -> str:
        if not obj.deadline_provisional:
            return ""
        year = obj.deadline_missing_year or "?"
        return format_html(
            '<span class="dsar-provisional" title="{}">{}</span>',
            gettext("The official schedule for %(year)s is not loaded yet.") % {"year": year},
            gettext("provisional (%(year)s)") % {"year": year},
        )

    @admin.action(description=_("Assign to me"), permissions=["work"])
    def assign_to_me(self, request: HttpRequest, queryset: QuerySet[DataSubjectRequest]) -> None:
        user = _staff(request)
        taken = skipped = 0
        rows = DataSubjectRequest.objects.filter(pk__in=queryset.values("pk")).only(
            "pk", "reference", "status", "assignee_id"
        )
        for obj in rows.iterator(chunk_size=500):
            if not _may_take(obj, user):
                skipped += 1
                continue
            try:
                services.request_claim(
                    request=obj,
                    actor=_actor(request),
                    assignee=user,
                    take_over=request.user.has_perm(REASSIGN),
                )
            except ValidationError:
                skipped += 1
            else:
                taken += 1
        if taken:
            messages.success(request, gettext("%(n)d request(s) assigned to you.") % {"n": taken})
        if skipped:
            messages.warning(
                request,
                gettext("%(n)d request(s) skipped: closed, or assigned to someone else.") % {"n": skipped},
            )

    def changelist_view(self, request: HttpRequest, extra_context: dict[str, Any] | None = None) -> Any:
        context = {
            "provisional_years": selectors.provisional_missing_years(),
            "dsar_overview_url": reverse("admin:dsar_datasubjectrequest_overview"),
            **(extra_context or {}),
        }
        return in_business_time(super().changelist_view(request, extra_context=context))

    def change_view(
        self,
        request: HttpRequest,
        object_id: str,
        form_url: str = "",
        extra_context: dict[str, Any] | None = None,
    ) -> Any:
        return in_business_time(super().change_view(request, object_id, form_url, extra_context))

    # -- the detail page --

    @admin.display(description=_("requester name"))
    def requester_name_shown(self, obj: DataSubjectRequest) -> str:
        value = obj.requester_name
        return shown(value, mask_name, unmasked=getattr(obj, "unmasked", False))

    @admin.display(description=_("requester e-mail"))
    def requester_email_shown(self, obj: DataSubjectRequest) -> str:
        value = obj.requester_email
        return shown(value, mask_email, unmasked=getattr(obj, "unmasked", False))

    @admin.display(description=_("requester phone"))
    def requester_phone_shown(self, obj: DataSubjectRequest) -> str:
        value = obj.requester_phone
        return shown(value, mask_phone, unmasked=getattr(obj, "unmasked", False))

    @admin.display(description=_("cooling-off"))
    def cancellation_schedule(self, obj: DataSubjectRequest) -> str:
        schedule = AccountCancellation.objects.filter(request=obj).first()
        if schedule is None:
            return gettext("none: made through the request form, so staff plan and confirm the erasure")

        def at(value: Any) -> str:
            return value.astimezone(business_tz()).strftime("%Y-%m-%d %H:%M") if value else "—"

        rows = [
            (gettext("confirmed by the subject"), at(schedule.confirmed_at)),
            (gettext("cooling-off ends, erasure starts"), at(schedule.scheduled_for)),
        ]
        if schedule.undone_at:
            rows.append(
                (gettext("undone"), f"{at(schedule.undone_at)} · {schedule.get_undone_via_display()}")
            )
        if schedule.started_at:
            rows.append((gettext("erasure planned and confirmed"), at(schedule.started_at)))
        if schedule.blocked_at:
            rows.append(
                (
                    gettext("BLOCKED: staff decide"),
                    f"{at(schedule.blocked_at)} · "
                    + gettext("a legal hold stopped the erasure; see the internal note"),
                )
            )
        return format_html(
            '<dl class="dsar-cancellation">{}</dl>',
            format_html_join("", "<dt>{}</dt><dd>{}</dd>", rows),
        )

    @admin.display(description=_("deadline"))
    def deadline(self, obj: DataSubjectRequest) -> str:
        if obj.due_at is None:
            return gettext("not running: identity is not verified yet")
        due = obj.due_at.astimezone(business_tz()).strftime("%Y-%m-%d %H:%M")
        if not obj.deadline_provisional:
            return f"{due} ({business_tz().key})"
        return format_html(
            '{} ({}) <span class="dsar-provisional">{}</span>',
            due,
            business_tz().key,
            gettext("provisional: the official schedule for %(year)s is not loaded")
            % {"year": obj.deadline_missing_year or "?"},
        )

    def offered_actions(self, request: HttpRequest, obj: DataSubjectRequest) -> list[dict[str, Any]]:
        user = request.user
        offered = []
        for action in ACTIONS.values():
            if not user.has_perm(action.permission) or not action.allowed(obj, user):
                continue
            if action.name == "assign_me" and obj.assignee_id == user.pk:
                continue  # already theirs
            offered.append(
                {
                    "name": action.name,
                    "label": action.label,
                    "url": reverse("admin:dsar_datasubjectrequest_act", args=[obj.pk, action.name]),
                }
            )
        return offered

    def correction_rows(self, request: HttpRequest, obj: DataSubjectRequest) -> list[dict[str, Any]] | None:
        """The proposed corrections, values masked unless the user may see them, with the
        decisions this user may take now (identity verified, request open)."""
        if obj.type != RequestType.CORRECTION:
            return None
        rows = corrections.items_for_staff(
            corrections.correction_items(obj), unmasked=getattr(obj, "unmasked", False)
        )
        may_decide = request.user.has_perm(WORK) and obj.status in CLOCK_RUNNING
        for row in rows:
            item = row["item"]
            row["actions"] = [
                {
                    "name": a.name,
                    "label": a.label,
                    "url": reverse(
                        "admin:dsar_datasubjectrequest_correction", args=[obj.pk, item.pk, a.name]
                    ),
                }
                for a in CORRECTION_ACTIONS.values()
                if may_decide and a.offered(item)
            ]
        return rows

    def render_change_form(
        self,
        request: HttpRequest,
        context: dict[str, Any],
        add: bool = False,
        change: bool = False,
        form_url: str = "",
        obj: Any = None,
    ) -> Any:
        if obj is not None:
            documents = None
            if request.user.has_perm(VIEW_VERIFICATION):
                documents = list(
                    VerificationDocument.objects.filter(request=obj).defer("content").order_by("uploaded_at")
                )
            context.update(
                dsar_actions=self.offered_actions(request, obj),
                dsar_corrections=self.correction_rows(request, obj),
                dsar_timeline=selectors.request_timeline(obj),
                dsar_documents=documents,
                dsar_messages=list(obj.messages.select_related("author")),
                dsar_erasure=dsar_erasure.plan_context(dsar_erasure.erasure_of(obj)),
                dsar_exports=list(DataExport.objects.filter(request=obj).defer("wrapped_key")),
                provisional_years=selectors.provisional_missing_years(),
            )
        return super().render_change_form(request, context, add, change, form_url, obj)

    # -- custom views --

    def get_urls(self) -> list[URLPattern]:  # type: ignore[override]
        wrap = self.admin_site.admin_view
        return [
            path("overview/", wrap(self.overview_view), name="dsar_datasubjectrequest_overview"),
            path(
                "<int:object_id>/act/<str:action>/",
                wrap(self.action_view),
                name="dsar_datasubjectrequest_act",
            ),
            path(
                "<int:object_id>/corrections/<int:item_id>/<str:action>/",
                wrap(self.correction_view),
                name="dsar_datasubjectrequest_correction",
            ),
            path(
                "<int:object_id>/documents/<int:document_id>/",
                wrap(self.document_view),
                name="dsar_datasubjectrequest_document",
            ),
            *super().get_urls(),
        ]

    def _page_context(self, request: HttpRequest, **extra: Any) -> dict[str, Any]:
        return {
            **self.admin_site.each_context(request),
            "opts": self.opts,
            "media": self.media,
            "provisional_years": selectors.provisional_missing_years(),
            **extra,
        }

    def action_view(self, request: HttpRequest, object_id: int, action: str) -> HttpResponseBase:
        if request.method not in ("GET", "POST"):
            return HttpResponseNotAllowed(["GET", "POST"])
        spec = ACTIONS.get(action)
        if spec is None:
            raise Http404
        if not (self.has_view_permission(request) and request.user.has_perm(spec.permission)):
            raise PermissionDenied
        obj = DataSubjectRequest.objects.select_related("assignee").filter(pk=object_id).first()
        if obj is None:
            raise Http404
        change_url = reverse("admin:dsar_datasubjectrequest_change", args=[obj.pk])
        if not spec.allowed(obj, request.user):
            messages.error(
                request,
                gettext("“%(action)s” is not possible for %(reference)s now (%(status)s).")
                % {"action": spec.label, "reference": obj.reference, "status": obj.get_status_display()},
            )
            return HttpResponseRedirect(change_url)
        form = spec.form_class(request.POST if request.method == "POST" else None)
        if request.method == "POST":
            if form.is_valid():
                try:
                    spec.run(obj, request, form.cleaned_data)
                except services.TransitionError as exc:
                    messages.error(request, " ".join(exc.messages))
                    return HttpResponseRedirect(change_url)
                except ValidationError as exc:
                    messages.error(request, " ".join(exc.messages))
                else:
                    messages.success(request, spec.done)
                    return HttpResponseRedirect(change_url)
            else:
                messages.error(request, gettext("Please correct the errors below."))
        context = self._page_context(
            request,
            title=f"{spec.label}: {obj.reference}",
            original=obj,
            form=form,
            action=spec,
            change_url=change_url,
            media=self.media + form.media,
        )
        return in_business_time(
            TemplateResponse(request, "admin/dsar/datasubjectrequest/action_form.html", context)
        )

    def correction_view(
        self, request: HttpRequest, object_id: int, item_id: int, action: str
    ) -> HttpResponseBase:
        """Approve, reject or apply one proposed correction: GET shows the item and the form,
        only POST decides."""
        if request.method not in ("GET", "POST"):
            return HttpResponseNotAllowed(["GET", "POST"])
        spec = CORRECTION_ACTIONS.get(action)
        if spec is None:
            raise Http404
        if not (self.has_view_permission(request) and request.user.has_perm(WORK)):
            raise PermissionDenied
        item = (
            CorrectionItem.objects.select_related("request__subject", "request__assignee")
            .filter(pk=item_id, request_id=object_id)
            .first()
        )
        if item is None:
            raise Http404
        obj = item.request
        change_url = reverse("admin:dsar_datasubjectrequest_change", args=[obj.pk])
        if not spec.offered(item) or obj.status not in CLOCK_RUNNING:
            messages.error(
                request,
                gettext("“%(action)s” is not possible for this correction now.") % {"action": spec.label},
            )
            return HttpResponseRedirect(change_url)
        form = spec.form_class(request.POST if request.method == "POST" else None)
        if request.method == "POST":
            if form.is_valid():
                try:
                    spec.run(item, request, form.cleaned_data)
                except ValidationError as exc:
                    messages.error(request, " ".join(exc.messages))
                    return HttpResponseRedirect(change_url)
                messages.success(request, spec.done)
                return HttpResponseRedirect(change_url)
            messages.error(request, gettext("Please correct the errors below."))
        unmasked = request.user.has_perm(VIEW_SENSITIVE)
        if unmasked:
            audit_log(actor=_actor(request), action="request.sensitive_viewed", obj=obj)
        context = self._page_context(
            request,
            title=f"{spec.label}: {obj.reference}",
            original=obj,
            form=form,
            action=spec,
            change_url=change_url,
            correction=corrections.items_for_staff([item], unmasked=unmasked)[0],
            media=self.media + form.media,
        )
        return in_business_time(
            TemplateResponse(request, "admin/dsar/datasubjectrequest/correction_form.html", context)
        )

    def document_view(self, request: HttpRequest, object_id: int, document_id: int) -> HttpResponseBase:
        if request.method != "GET":
            return HttpResponseNotAllowed(["GET"])
        if not (self.has_view_permission(request) and request.user.has_perm(VIEW_VERIFICATION)):
            raise PermissionDenied
        document = (
            VerificationDocument.objects.select_related("request")
            .filter(pk=document_id, request_id=object_id)
            .first()
        )
        if document is None:
            raise Http404
        data = services.document_open(document=document, actor=_actor(request))
        response = HttpResponse(data, content_type=document.content_type)
        response["Content-Disposition"] = (
            content_disposition_header(True, document.filename or f"document-{document.pk}") or "attachment"
        )
        response["Cache-Control"] = "no-store, private"
        return response

    def overview_view(self, request: HttpRequest) -> HttpResponseBase:
        if not self.has_view_permission(request):
            raise PermissionDenied
        overview = selectors.requests_overview(clock=page_clock(request))
        changelist = reverse("admin:dsar_datasubjectrequest_changelist")
        open_statuses = ",".join(str(s) for s in selectors.OPEN_STATUSES)
        context = self._page_context(
            request,
            title=gettext("Requests overview"),
            overview=overview,
            provisional_years=overview.missing_years,
            links={
                "open": f"{changelist}?status__in={open_statuses}",
                "due_soon": f"{changelist}?deadline=soon",
                "overdue": f"{changelist}?deadline=overdue",
                "provisional": f"{changelist}?deadline_provisional__exact=1&status__in={open_statuses}",
                "changelist": changelist,
            },
        )
        return in_business_time(TemplateResponse(request, "admin/dsar/overview.html", context))


# --- Access packages ---------------------------------------------------------------------------


_EXPORT_FIELDS: list[str] = [
    "request_link",
    "subject",
    "status",
    "progress",
    "rows",
    "step",
    "attempts",
    "lease_until",
    "language",
    "created_at",
    "started_at",
    "finished_at",
    "expires_at",
    "size",
    "sha256",
    "file_path",
    "download_count",
    "last_downloaded_at",
    "last_error",
]


@admin.register(DataExport)
class DataExportAdmin(ReadOnlyAdmin):
    """Progress and outcome of every access package, read-only: packages are started from the
    request's page and built by the worker. The file key is never shown."""

    list_display = [
        "id",
        "request_reference",
        "status",
        "progress",
        "rows",
        "created_at",
        "finished_at",
        "expires_at",
        "download_count",
    ]
    list_filter = ["status"]
    search_fields = ["=request__reference"]
    search_help_text = _("Exact request reference (DSR-2026-000123).")
    show_full_result_count = False
    ordering = ["-created_at", "-id"]
    fields = tuple(_EXPORT_FIELDS)
    readonly_fields = _EXPORT_FIELDS

    class Media:
        css = {"all": ["css/admin_dsar.css"]}

    def get_queryset(self, request: HttpRequest) -> QuerySet[DataExport]:
        # The reference only: joining the request would load (and decrypt) its personal fields.
        return super().get_queryset(request).defer("wrapped_key").annotate(reference=F("request__reference"))

    @admin.display(description=_("request"), ordering="request__reference")
    def request_reference(self, obj: DataExport) -> str:
        return str(getattr(obj, "reference", obj.request_id))

    @admin.display(description=_("request"))
    def request_link(self, obj: DataExport) -> str:
        url = reverse("admin:dsar_datasubjectrequest_change", args=[obj.request_id])
        return format_html('<a href="{}">{}</a>', url, getattr(obj, "reference", obj.request_id))

    @admin.display(description=_("progress"))
    def progress(self, obj: DataExport) -> str:
        return export_progress(obj)

    @admin.display(description=_("rows"))
    def rows(self, obj: DataExport) -> str:
        return f"{obj.rows_done} / {obj.rows_total}"


def export_progress(obj: DataExport) -> str:
    """A <progress> bar and its percentage (no inline style: the CSP forbids it)."""
    return format_html(
        '<progress class="dsar-progress" max="100" value="{}">{}%</progress> {}%',
        obj.percent,
        obj.percent,
        obj.percent,
    )


# --- The working-day calendar ------------------------------------------------------------------


@admin.register(CalendarYear)
class CalendarYearAdmin(ReadOnlyAdmin):
    """Years arrive through `import_workdays` (or the seed), never by hand."""

    list_display = ["year", "source", "loaded_at"]


class CalendarYearFilter(admin.SimpleListFilter):
    title = _("year")
    parameter_name = "year"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, Any]]:
        return [(str(d.year), str(d.year)) for d in CalendarDay.objects.dates("date", "year", order="DESC")]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Any]) -> QuerySet[Any]:
        value = self.value()
        if value and value.isdigit():
            return queryset.filter(date__year=int(value))
        return queryset


@admin.register(CalendarDay)
class CalendarDayAdmin(admin.ModelAdmin):  # type: ignore[type-arg]
    """Editable by the DPO only (the role's add/change/delete permissions). Each save or delete
    goes through the calendar services: audited, and the affected deadlines recomputed."""

    list_display = ["date", "weekday", "kind", "name"]
    list_filter = ["kind", CalendarYearFilter]
    date_hierarchy = "date"
    search_fields = ["name"]
    ordering = ["-date"]
    fields = ["date", "kind", "name"]

    class Media:
        css = {"all": ["css/admin_dsar.css"]}

    @admin.display(description=_("weekday"))
    def weekday(self, obj: CalendarDay) -> str:
        return str(_WEEKDAYS[obj.date.weekday()])

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> list[str]:
        return ["date"] if obj is not None else []  # the date is the key: delete and add instead

    def save_model(self, request: HttpRequest, obj: CalendarDay, form: Any, change: bool) -> None:
        services.calendar_day_save(actor=_actor(request), day=obj.date, kind=obj.kind, name=obj.name)

    def delete_model(self, request: HttpRequest, obj: CalendarDay) -> None:
        services.calendar_day_delete(actor=_actor(request), day=obj.date)

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet[CalendarDay]) -> None:
        with transaction.atomic():
            for day in list(queryset.order_by("date").values_list("date", flat=True)):
                services.calendar_day_delete(actor=_actor(request), day=day)


_WEEKDAYS = [
    _("Monday"),
    _("Tuesday"),
    _("Wednesday"),
    _("Thursday"),
    _("Friday"),
    _("Saturday"),
    _("Sunday"),
]
