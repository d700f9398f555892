from __future__ import annotations

from typing import Any

from django import forms
from django.conf import settings as django_settings
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied, ValidationError
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse, HttpResponseBase
from django.shortcuts import redirect
from django.template.response import TemplateResponse
from django.urls import reverse
from django.utils import timezone
from django.utils.html import format_html, format_html_join
from django.utils.http import urlencode
from django.utils.translation import gettext
from django.utils.translation import gettext_lazy as _

from accounts.models import DataSubject, User
from consent.admin import confirm_page
from core.admin import ReadOnlyAdmin
from core.audit import Actor
from core.datamap import Category
from retention import services, termination
from retention.models import (
    Backup,
    ChildDataFinding,
    Erasure,
    LegalHold,
    RetentionRule,
    ServiceTermination,
    SweepRun,
    Tombstone,
)


class LegalHoldForm(forms.ModelForm):  # type: ignore[type-arg]
    category = forms.ChoiceField(choices=[("", _("everything"))] + list(Category.choices), required=False)

    class Meta:
        model = LegalHold
        fields = ["subject", "category", "ground", "reason", "review_on"]

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        if not data.get("subject") and not data.get("category"):
            raise ValidationError(_("A hold covers a person, a category, or a category of one person."))
        review_on = data.get("review_on")
        if review_on and review_on < timezone.localdate():
            self.add_error("review_on", _("The review date cannot be in the past."))
        return data


class ReviewOverdueFilter(admin.SimpleListFilter):
    title = _("review")
    parameter_name = "review"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, Any]]:
        return [("overdue", _("overdue review"))]

    def queryset(self, request: HttpRequest, queryset: QuerySet[LegalHold]) -> QuerySet[LegalHold]:
        if self.value() == "overdue":
            return queryset & services.holds_overdue()
        return queryset


@admin.register(LegalHold)
class LegalHoldAdmin(admin.ModelAdmin):  # type: ignore[type-arg]
    form = LegalHoldForm
    list_display = ["__str__", "subject", "category", "ground", "review_on", "set_at", "released_at"]
    list_filter = [ReviewOverdueFilter, "ground", "released_at"]
    raw_id_fields = ["subject"]
    actions = ["release"]

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> list[str]:
        # A hold is placed once and then only released: its scope and ground are evidence.
        return ["subject", "category", "ground", "reason", "review_on"] if obj else []

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def save_model(self, request: HttpRequest, obj: LegalHold, form: Any, change: bool) -> None:
        if change:
            return
        saved = services.hold_place(  # the form has already checked what the service checks
            actor=Actor.of(request.user),
            ground=obj.ground,
            reason=obj.reason,
            review_on=obj.review_on,
            subject=obj.subject,
            category=obj.category,
            set_by=request.user,  # type: ignore[arg-type]
        )
        obj.pk = saved.pk

    @admin.action(description=_("Release the selected holds"), permissions=["change"])
    def release(self, request: HttpRequest, queryset: QuerySet[LegalHold]) -> None:
        for hold in queryset:
            services.hold_release(hold=hold, actor=Actor.of(request.user), released_by=request.user)  # type: ignore[arg-type]
        messages.success(request, _("Released."))


@admin.register(Erasure)
class ErasureAdmin(ReadOnlyAdmin):
    list_display = [
        "__str__",
        "reference",
        "origin",
        "status",
        "rows_done",
        "rows_total",
        "created_at",
        "finished_at",
    ]
    list_filter = ["status", "origin"]
    search_fields = ["=reference"]
    exclude = ["roots"]


@admin.register(Tombstone)
class TombstoneAdmin(ReadOnlyAdmin):
    list_display = ["__str__", "subject_id_ref", "erased_at"]
    exclude = ["identifier_hashes", "roots"]


@admin.register(Backup)
class BackupAdmin(ReadOnlyAdmin):
    """The backup catalogue: taken, verified and rotated by `python manage.py backup` and the
    nightly job; restored only from the command line (`python manage.py restore`)."""

    list_display = ["__str__", "database", "taken_at", "size", "status", "verified_at", "expires_at"]
    list_filter = ["status", "database"]
    search_fields = ["=id", "=set_id"]


class RetentionRuleForm(forms.ModelForm):  # type: ignore[type-arg]
    class Meta:
        model = RetentionRule
        fields = ["category", "scope", "period_days", "trigger", "action", "legal_basis", "active"]


@admin.register(RetentionRule)
class RetentionRuleAdmin(admin.ModelAdmin):  # type: ignore[type-arg]
    """The DPO edits rules (audited through services.rule_save); a rule is switched off, never
    deleted, so the audit trail keeps pointing at it."""

    form = RetentionRuleForm
    list_display = ["category", "scope", "period_days", "trigger", "action", "active", "updated_at"]
    list_filter = ["scope", "action", "active"]
    readonly_fields = ["updated_by", "updated_at"]

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def save_model(self, request: HttpRequest, obj: RetentionRule, form: Any, change: bool) -> None:
        services.rule_save(rule=obj, actor=Actor.of(request.user), user=request.user)  # type: ignore[arg-type]


@admin.register(SweepRun)
class SweepRunAdmin(ReadOnlyAdmin):
    list_display = ["__str__", "started_at", "finished_at", "dry_run", "status", "rows", "children_found"]
    list_filter = ["status", "dry_run"]
    fields = ("started_at", "finished_at", "dry_run", "status", "error", "report")
    readonly_fields = fields

    @admin.display(description=_("rows"))
    def rows(self, obj: SweepRun) -> int:
        return sum(int(u.get("rows", 0)) for u in obj.counts.get("units", {}).values())

    @admin.display(description=_("children found"))
    def children_found(self, obj: SweepRun) -> int:
        return int(obj.counts.get("children", {}).get("found", 0))

    @admin.display(description=_("per rule and table"))
    def report(self, obj: SweepRun) -> str:
        head = format_html(
            "<tr><th>{}</th><th>{}</th><th>{}</th><th>{}</th><th></th></tr>",
            _("category:source.table"),
            _("action"),
            _("rows"),
            _("status"),
        )
        body = format_html_join(
            "",
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            (
                (
                    label,
                    u.get("action", ""),
                    u.get("rows", 0),
                    u.get("status", ""),
                    gettext(u.get("note") or ""),
                )
                for label, u in obj.counts.get("units", {}).items()
            ),
        )
        children = obj.counts.get("children")
        tail = (
            format_html(
                "<p>{}</p>",
                _("Children without guardian consent: %(found)s found, %(resolved)s resolved, %(open)s open")
                % {k: children.get(k, 0) for k in ("found", "resolved", "open")},
            )
            if children
            else ""
        )
        return format_html("<table>{}{}</table>{}", head, body, tail)


@admin.register(ChildDataFinding)
class ChildDataFindingAdmin(admin.ModelAdmin):  # type: ignore[type-arg]
    """A to-do list: children under 14 whose data is held without a guardian's consent."""

    list_display = ["__str__", "subject", "found_at", "resolved_at", "resolution"]
    list_filter = [("resolved_at", admin.EmptyFieldListFilter), "resolution"]
    raw_id_fields = ["subject"]
    readonly_fields = ["subject", "found_at", "resolved_at", "resolution", "resolved_by"]
    actions = ["mark_resolved"]

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False  # the sweep finds them

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    @admin.action(
        description=_("Mark done: the data was deleted or the guardian's consent recorded"),
        permissions=["change"],
    )
    def mark_resolved(self, request: HttpRequest, queryset: QuerySet[ChildDataFinding]) -> None:
        for finding in queryset.filter(resolved_at__isnull=True):
            services.child_finding_resolve(
                finding=finding,
                actor=Actor.of(request.user),
                resolution=ChildDataFinding.Resolution.STAFF,
                user=request.user,  # type: ignore[arg-type]
            )
        messages.success(request, _("Marked done."))


# --- Service termination -------------------------------------------------------------------------


class TerminationStartForm(forms.Form):
    stop_on = forms.DateField(
        label=_("The service stops on"),
        help_text=_("YYYY-MM-DD. Every person's data is erased from this day."),
    )
    reason = forms.CharField(
        label=_("Reason"),
        widget=forms.Textarea(attrs={"rows": 4}),
        help_text=_("Public: shown in the announcement and the e-mail. Name no person."),
    )

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        if "stop_on" in data and "reason" in data:
            try:
                data["reason"] = termination.termination_validate(
                    stop_on=data["stop_on"], reason=data["reason"]
                )
            except ValidationError as exc:
                self.add_error(None, exc)
        return data


TERMINATION_FIELDS: tuple[str, ...] = (
    "status",
    "stop_on",
    "notice_days",
    "reason",
    "public_link",
    "started_by",
    "started_at",
    "campaign_shown",
    "notified_at",
    "erasing_at",
    "subjects_erased",
    "subjects_held",
    "subjects_remaining",
    "finished_at",
    "report_shown",
    "cancelled_at",
    "cancelled_by",
)


@admin.register(ServiceTermination)
class ServiceTerminationAdmin(admin.ModelAdmin):  # type: ignore[type-arg]
    """The DPO starts the termination here (a form, then a confirmation page) and may cancel it
    until erasure starts; everyone on staff follows its progress. The record itself is read-only."""

    list_display = [
        "__str__",
        "status",
        "stop_on",
        "started_at",
        "subjects_erased",
        "subjects_held",
        "subjects_remaining",
        "finished_at",
    ]
    fields = TERMINATION_FIELDS
    readonly_fields = TERMINATION_FIELDS
    actions = ["cancel"]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm(termination.PERMISSION)

    def has_start_termination_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm(termination.PERMISSION)

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    @admin.display(description=_("public announcement"))
    def public_link(self, obj: ServiceTermination) -> str:
        if obj.status == ServiceTermination.Status.CANCELLED:
            return "—"
        url = reverse("retention:termination")
        return format_html('<a href="{}">{}</a>', url, url)

    @admin.display(description=_("notice e-mails"))
    def campaign_shown(self, obj: ServiceTermination) -> str:
        campaign = termination.termination_campaign(obj)
        if campaign is None:
            return "—"
        return format_html(
            '<a href="{}">{}</a>',
            reverse("admin:consent_noticecampaign_change", args=[campaign.pk]),
            gettext(
                "%(status)s: %(sent)d of %(targeted)d sent, %(failed)d failed, %(interrupted)d interrupted"
            )
            % {
                "status": campaign.get_status_display(),
                "sent": campaign.sent,
                "targeted": campaign.targeted,
                "failed": campaign.failed,
                "interrupted": campaign.interrupted,
            },
        )

    @admin.display(description=_("final report"))
    def report_shown(self, obj: ServiceTermination) -> str:
        report = obj.report or {}
        if not report:
            return "—"
        erasures = reverse("admin:retention_erasure_changelist") + "?" + urlencode({"q": obj.reference})
        held = format_html_join(
            "",
            "<li>{}: {}</li>",
            (
                (
                    f"DS-{h['subject']:06d}",
                    ", ".join(
                        f"#{x['id']} {x['ground']}{' / ' + x['category'] if x['category'] else ''}"
                        for x in h["holds"]
                    ),
                )
                for h in report.get("held", [])
            ),
        )
        kept = ", ".join(f"{k} ({n})" for k, n in sorted(report.get("kept_under_category_holds", {}).items()))
        return format_html(
            '<p>{}</p><p>{}</p><ul>{}</ul><p>{}</p><p>{}</p><p><a href="{}">{}</a></p>',
            gettext("%(n)d people erased; backups holding their data roll over by %(day)s.")
            % {"n": report.get("erased", 0), "day": report.get("backups_roll_over_by") or "—"},
            gettext("Kept under a legal hold (hold, ground):"),
            held or format_html("<li>{}</li>", gettext("nobody")),
            gettext("Tables kept for erased people under a hold on a category: %(tables)s")
            % {"tables": kept or "—"},
            gettext(
                "Quanyi's own records of these people (requests, consent ledger, audit log) follow their "
                "retention rules; the audit log is never deleted."
            ),
            erasures,
            gettext("The erasures of this termination"),
        )

    def add_view(self, request: HttpRequest, form_url: str = "", extra_context: Any = None) -> HttpResponse:
        """Step 1: the date and the reason. Step 2: what will happen, confirmed. Then it starts."""
        if not self.has_add_permission(request):
            raise PermissionDenied
        form = TerminationStartForm(request.POST if request.method == "POST" else None)
        confirming = False
        if request.method == "POST" and form.is_valid():
            if "confirm" in request.POST:
                user = request.user if isinstance(request.user, User) else None
                try:
                    started = termination.termination_start(
                        actor=Actor.of(request.user),
                        stop_on=form.cleaned_data["stop_on"],
                        reason=form.cleaned_data["reason"],
                        user=user,
                    )
                except ValidationError as exc:
                    form.add_error(None, exc)
                else:
                    messages.success(
                        request,
                        gettext("The termination is announced; the notices are being sent."),
                    )
                    return redirect("admin:retention_servicetermination_change", started.pk)
            else:
                confirming = True
        context = {
            **self.admin_site.each_context(request),
            "title": gettext("Terminate the service"),
            "opts": self.opts,
            "form": form,
            "confirming": confirming,
            "reachable": termination.reachable_count(),
            "subjects": DataSubject.objects.filter(erased_at__isnull=True).count(),
            "holds": LegalHold.objects.filter(released_at__isnull=True).count(),
            "earliest": termination.earliest_stop_on(),
            "notice_days": django_settings.QUANYI_TERMINATION_NOTICE_DAYS,
        }
        return TemplateResponse(request, "admin/retention/termination_start.html", context)

    @admin.action(
        description=_("Cancel the termination (before erasure starts)"), permissions=["start_termination"]
    )
    def cancel(self, request: HttpRequest, queryset: QuerySet[ServiceTermination]) -> HttpResponseBase | None:
        chosen = list(queryset.order_by("pk"))
        if "apply" not in request.POST:
            return confirm_page(
                self,
                request,
                action="cancel",
                title=gettext("Cancel the termination"),
                intro=[
                    gettext(
                        "The announcement is taken down and no more notice e-mails are sent; e-mails "
                        "already sent are not called back. Once erasure has started it cannot be cancelled."
                    )
                ],
                rows=[(t, t.get_status_display()) for t in chosen],
                button=gettext("Cancel the termination"),
            )
        user = request.user if isinstance(request.user, User) else None
        for item in chosen:
            try:
                termination.termination_cancel(termination=item, actor=Actor.of(request.user), user=user)
            except ValidationError as exc:
                messages.error(request, f"{item}: {' '.join(exc.messages)}")
            else:
                messages.success(request, gettext("%(t)s: cancelled.") % {"t": item})
        return None
