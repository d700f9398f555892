from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import ValidationError
from django.db.models import QuerySet
from django.http import HttpRequest
from django.utils import timezone
from django.utils.html import format_html, format_html_join
from django.utils.translation import gettext
from django.utils.translation import gettext_lazy as _

from core.admin import ReadOnlyAdmin
from core.audit import Actor
from core.datamap import Category
from retention import services
from retention.models import Backup, ChildDataFinding, Erasure, LegalHold, RetentionRule, SweepRun, Tombstone


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
